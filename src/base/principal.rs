//! Principals: the names analysts put on lists, in the four forms Active Directory knows —
//! `DOMAIN\user`, a UPN `user@realm`, a bare sAMAccountName, or a distinguished name.
//!
//! Parsing validates untrusted input (length, control characters, shape) and classifies it; it
//! does not escape anything. Whatever reaches an LDAP filter or DN is escaped in `directory`.
//! The classification is the one the directory resolves by (`directory::UserLookup`):
//! what is accepted here as a DN is a DN there, and so on for each form.

use std::fmt;

use crate::base::dn::{DnError, parse_dn};

/// The longest principal accepted (a DN can be long; AD caps most names far lower).
pub const MAX_PRINCIPAL_LEN: usize = 1024;

/// How a principal is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// `CORP\alice`
    DomainUser,
    /// `alice@corp.example.test`
    Upn,
    /// `alice`
    SamAccountName,
    /// `CN=Alice,CN=Users,DC=corp,DC=example,DC=test`
    Dn,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::DomainUser => "domain\\user",
            PrincipalKind::Upn => "upn",
            PrincipalKind::SamAccountName => "sAMAccountName",
            PrincipalKind::Dn => "dn",
        }
    }
}

/// A validated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    text: String,
    kind: PrincipalKind,
}

/// Why a principal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("principal is empty")]
    Empty,
    #[error("principal is {0} bytes long; at most {MAX_PRINCIPAL_LEN} are allowed")]
    TooLong(usize),
    #[error("principal contains a control character at byte {0}")]
    Control(usize),
    #[error("principal has leading or trailing whitespace")]
    Whitespace,
    #[error("{0:?} has an empty domain or user part; write DOMAIN\\user")]
    EmptyPart(String),
    #[error("{text:?} starts like a distinguished name but is not one: {source}")]
    InvalidDn {
        text: String,
        #[source]
        source: DnError,
    },
}

impl Principal {
    pub fn parse(text: &str) -> Result<Principal, PrincipalError> {
        if text.is_empty() {
            return Err(PrincipalError::Empty);
        }
        if text.len() > MAX_PRINCIPAL_LEN {
            return Err(PrincipalError::TooLong(text.len()));
        }
        if let Some((i, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
            return Err(PrincipalError::Control(i));
        }
        if text.trim() != text {
            return Err(PrincipalError::Whitespace);
        }
        let kind = classify(text)?;
        if kind == PrincipalKind::DomainUser {
            let (domain, user) = text.split_once('\\').unwrap_or((text, ""));
            if domain.is_empty() || user.is_empty() {
                return Err(PrincipalError::EmptyPart(text.to_string()));
            }
        }
        if kind == PrincipalKind::Upn {
            let (user, realm) = text.rsplit_once('@').unwrap_or((text, ""));
            if user.is_empty() || realm.is_empty() {
                return Err(PrincipalError::EmptyPart(text.to_string()));
            }
        }
        Ok(Principal {
            text: text.to_string(),
            kind,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// For `DOMAIN\user` the domain and user; for a UPN the user and realm.
    pub fn parts(&self) -> Option<(&str, &str)> {
        match self.kind {
            PrincipalKind::DomainUser => self.text.split_once('\\'),
            PrincipalKind::Upn => self.text.rsplit_once('@'),
            _ => None,
        }
    }
}

/// Classifies like the directory's resolver does: a string that parses as a DN is a DN (so
/// `CN=Smith\, John,…` is not `DOMAIN\user`); then `\` means `DOMAIN\user`, `@` a UPN, and
/// anything else a sAMAccountName. A string that starts like a DN (an attribute type and `=`,
/// as `CN=`, `uid=`, `OID.2.5.4.3=`) but does not parse is refused rather than classified as
/// something else: it is a mistyped DN (sAMAccountNames cannot contain `=`), and the directory
/// would look it up as a user name that cannot exist.
fn classify(text: &str) -> Result<PrincipalKind, PrincipalError> {
    if text.contains('=') {
        match parse_dn(text) {
            Ok(dn) if !dn.is_root() => return Ok(PrincipalKind::Dn),
            Ok(_) => {}
            Err(source) => {
                let looks_like_dn = text.split_once('=').is_some_and(|(ty, _)| {
                    !ty.is_empty()
                        && ty.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b' '
                        })
                });
                if looks_like_dn {
                    return Err(PrincipalError::InvalidDn {
                        text: text.to_string(),
                        source,
                    });
                }
            }
        }
    }
    Ok(if text.contains('\\') {
        PrincipalKind::DomainUser
    } else if text.contains('@') {
        PrincipalKind::Upn
    } else {
        PrincipalKind::SamAccountName
    })
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn classifies_the_four_forms() {
        let kind = |s| Principal::parse(s).unwrap().kind();
        assert_eq!(kind("CORP\\alice"), PrincipalKind::DomainUser);
        assert_eq!(kind("alice@corp.example.test"), PrincipalKind::Upn);
        assert_eq!(kind("alice"), PrincipalKind::SamAccountName);
        assert_eq!(kind("CN=Alice,CN=Users,DC=corp"), PrincipalKind::Dn);
        assert_eq!(kind("CN=Smith\\, John,OU=x"), PrincipalKind::Dn);
        // Hostile strings are valid principals (they are escaped where they reach LDAP).
        assert_eq!(kind("*)(objectClass=*"), PrincipalKind::SamAccountName);
        assert_eq!(kind("a,b=c"), PrincipalKind::SamAccountName);
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(Principal::parse(""), Err(PrincipalError::Empty));
        assert_eq!(Principal::parse(" alice"), Err(PrincipalError::Whitespace));
        assert_eq!(Principal::parse("al\nice"), Err(PrincipalError::Control(2)));
        assert!(matches!(
            Principal::parse("\\alice"),
            Err(PrincipalError::EmptyPart(_))
        ));
        assert!(matches!(
            Principal::parse("CORP\\"),
            Err(PrincipalError::EmptyPart(_))
        ));
        assert!(matches!(
            Principal::parse("@realm"),
            Err(PrincipalError::EmptyPart(_))
        ));
        assert!(matches!(
            Principal::parse(&"a".repeat(2000)),
            Err(PrincipalError::TooLong(2000))
        ));
    }
}
