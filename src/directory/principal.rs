//! How a list principal is written (`DOMAIN\user`, UPN, sAMAccountName, DN)
//! and the escaped filter that finds its user entry.

use super::dn::{Dn, parse_dn};
use super::escape::escape_filter_value;

/// A principal as written in a user list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// `DOMAIN\user`. The NetBIOS domain is kept but not checked: any prefix
    /// is accepted and the user is looked up by sAMAccountName under the base.
    DomainUser {
        /// The part before the first `\`.
        domain: String,
        /// The part after it (the sAMAccountName).
        user: String,
    },
    /// `user@realm`, matched against `userPrincipalName`.
    Upn(String),
    /// A DN, confirmed by a base-scope read.
    Dn(Dn),
    /// Anything else: a sAMAccountName.
    SamAccountName(String),
}

impl Principal {
    /// Classifies `s` (trimmed). `None` for an empty string or an empty part
    /// (`DOMAIN\`, `\user`).
    ///
    /// A string that parses as a DN is a DN (so `CN=Smith\, John,...` is not
    /// mistaken for `DOMAIN\user`); otherwise a `\` makes it `DOMAIN\user`, an
    /// `@` a UPN, and anything else a sAMAccountName. Hostile strings such as
    /// `*)(objectClass=*` or `a,b=c` are not DNs and end up as escaped
    /// sAMAccountName assertions that match nothing.
    pub fn parse(s: &str) -> Option<Principal> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        if s.contains('=')
            && let Ok(dn) = parse_dn(s)
            && !dn.is_root()
        {
            return Some(Principal::Dn(dn));
        }
        if let Some((domain, user)) = s.split_once('\\') {
            let (domain, user) = (domain.trim(), user.trim());
            if domain.is_empty() || user.is_empty() {
                return None;
            }
            return Some(Principal::DomainUser {
                domain: domain.to_owned(),
                user: user.to_owned(),
            });
        }
        if s.contains('@') {
            return Some(Principal::Upn(s.to_owned()));
        }
        Some(Principal::SamAccountName(s.to_owned()))
    }

    /// The subtree-search filter for this principal, with the user-supplied
    /// part escaped (RFC 4515). `None` for a DN, which is read directly.
    pub fn filter(&self) -> Option<String> {
        match self {
            Principal::DomainUser { user, .. } | Principal::SamAccountName(user) => Some(format!(
                "(&(objectClass=user)(sAMAccountName={}))",
                escape_filter_value(user)
            )),
            Principal::Upn(upn) => Some(format!(
                "(&(objectClass=user)(userPrincipalName={}))",
                escape_filter_value(upn)
            )),
            Principal::Dn(_) => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_four_forms() {
        assert_eq!(
            Principal::parse(r"CORP\alice"),
            Some(Principal::DomainUser {
                domain: "CORP".into(),
                user: "alice".into()
            })
        );
        assert_eq!(
            Principal::parse(" alice@corp.example.test "),
            Some(Principal::Upn("alice@corp.example.test".into()))
        );
        assert_eq!(
            Principal::parse("alice"),
            Some(Principal::SamAccountName("alice".into()))
        );
        let Some(Principal::Dn(dn)) = Principal::parse(r"CN=Smith\, John,CN=Users,DC=corp") else {
            panic!("not a DN");
        };
        assert_eq!(dn.rdns().len(), 3);
    }

    #[test]
    fn empty_parts_are_rejected() {
        for s in ["", "  ", r"CORP\", r"\alice", r" \ "] {
            assert_eq!(Principal::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn filters_are_escaped() {
        let f = |s: &str| Principal::parse(s).and_then(|p| p.filter());
        assert_eq!(
            f(r"CORP\alice").as_deref(),
            Some("(&(objectClass=user)(sAMAccountName=alice))")
        );
        assert_eq!(
            f("alice@corp").as_deref(),
            Some("(&(objectClass=user)(userPrincipalName=alice@corp))")
        );
        assert_eq!(
            f("*)(objectClass=*").as_deref(),
            Some("(&(objectClass=user)(sAMAccountName=\\2a\\29\\28objectClass=\\2a))")
        );
        assert_eq!(
            f("a,b=c").as_deref(),
            Some("(&(objectClass=user)(sAMAccountName=a,b=c))")
        );
        assert_eq!(
            f(r"CORP\*").as_deref(),
            Some("(&(objectClass=user)(sAMAccountName=\\2a))")
        );
        assert_eq!(
            f("*@corp").as_deref(),
            Some("(&(objectClass=user)(userPrincipalName=\\2a@corp))")
        );
        // A backslash after the first one belongs to the user part and is escaped.
        assert_eq!(
            f(r"CORP\a\b").as_deref(),
            Some("(&(objectClass=user)(sAMAccountName=a\\5cb))")
        );
        for s in ["*)(objectClass=*", "a,b=c", r"CORP\*)(|(x=*", "x\0y@r"] {
            let filter = f(s).unwrap();
            assert!(ldap3::parse_filter(&filter).is_ok(), "{filter}");
        }
    }
}
