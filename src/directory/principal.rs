//! How a list principal finds its user entry: the DN to read, or the escaped filter to search.
//!
//! Which of the four forms a principal is written in is decided once, by
//! [`crate::base::principal::Principal`]; this module only turns that form into an LDAP lookup.

use crate::base::dn::{Dn, parse_dn};
use crate::base::escape::escape_filter_value;
use crate::base::identity::Identity;
use crate::base::principal::{Principal, PrincipalKind};

/// How to find the user entry a principal names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserLookup {
    /// A DN, confirmed by a base-scope read.
    Dn(Dn),
    /// A subtree search with this filter, the user-supplied part escaped (RFC 4515).
    Filter(String),
}

impl UserLookup {
    /// The lookup for `principal`, or `None` for a DN-shaped principal that is not a valid
    /// DN (it names no entry).
    ///
    /// `DOMAIN\user` and a bare name search `sAMAccountName` (the NetBIOS domain is not
    /// checked: the base DN decides which domain is searched); a UPN searches
    /// `userPrincipalName`. Hostile strings such as `*)(objectClass=*` or `a,b=c` end up as
    /// escaped assertions that match nothing.
    pub fn for_principal(principal: &Principal) -> Option<UserLookup> {
        let (attr, value) = match principal.kind() {
            PrincipalKind::Dn => {
                return parse_dn(principal.as_str())
                    .ok()
                    .filter(|dn| !dn.is_root())
                    .map(UserLookup::Dn);
            }
            PrincipalKind::DomainUser => ("sAMAccountName", principal.parts()?.1),
            PrincipalKind::SamAccountName => ("sAMAccountName", principal.as_str()),
            PrincipalKind::Upn => ("userPrincipalName", principal.as_str()),
        };
        Some(UserLookup::Filter(format!(
            "(&(objectClass=user)({attr}={}))",
            escape_filter_value(value)
        )))
    }

    /// The lookup for `principal` in the directory of NetBIOS domain `domain` (when the rules
    /// place it): a `DOMAIN\user` of another domain names no user there (`PARTNER\jsmith` is
    /// not CORP's jsmith), so it has no lookup. `DOMAIN` may be the NetBIOS or the DNS name.
    pub fn for_principal_in(
        principal: &Principal,
        domain: Option<&str>,
        identity: &Identity,
    ) -> Option<UserLookup> {
        if let (PrincipalKind::DomainUser, Some(domain)) = (principal.kind(), domain) {
            let canonical = identity.canonical(principal.as_str());
            let named = canonical.split_once('\\').map(|(d, _)| d);
            let named = named.map(|d| identity.netbios_spelling(d).into_owned());
            if !named.is_some_and(|d| d.eq_ignore_ascii_case(domain)) {
                return None;
            }
        }
        UserLookup::for_principal(principal)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lookup(s: &str) -> Option<UserLookup> {
        UserLookup::for_principal(&Principal::parse(s).unwrap())
    }

    fn filter(s: &str) -> String {
        match lookup(s) {
            Some(UserLookup::Filter(f)) => f,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn another_domain_names_no_user_here() {
        let id = Identity::default();
        let here = |s: &str| {
            UserLookup::for_principal_in(&Principal::parse(s).unwrap(), Some("CORP"), &id)
        };
        assert!(here(r"PARTNER\jsmith").is_none());
        assert!(here(r"partner.example.test\jsmith").is_none());
        for s in [r"CORP\jsmith", r"corp\jsmith", r"corp.example.test\jsmith"] {
            assert_eq!(
                here(s),
                Some(UserLookup::Filter(
                    "(&(objectClass=user)(sAMAccountName=jsmith))".into()
                )),
                "{s}"
            );
        }
        // Where the rules cannot place the directory, the base DN decides, as before.
        let p = Principal::parse(r"PARTNER\jsmith").unwrap();
        assert!(UserLookup::for_principal_in(&p, None, &id).is_some());
    }

    #[test]
    fn dns_are_read_directly() {
        let Some(UserLookup::Dn(dn)) = lookup(r"CN=Smith\, John,CN=Users,DC=corp") else {
            panic!("not a DN");
        };
        assert_eq!(dn.rdns().len(), 3);
    }

    #[test]
    fn filters_are_escaped() {
        assert_eq!(
            filter(r"CORP\alice"),
            "(&(objectClass=user)(sAMAccountName=alice))"
        );
        assert_eq!(
            filter("alice"),
            "(&(objectClass=user)(sAMAccountName=alice))"
        );
        assert_eq!(
            filter("alice@corp"),
            "(&(objectClass=user)(userPrincipalName=alice@corp))"
        );
        assert_eq!(
            filter("*)(objectClass=*"),
            "(&(objectClass=user)(sAMAccountName=\\2a\\29\\28objectClass=\\2a))"
        );
        assert_eq!(
            filter("a,b=c"),
            "(&(objectClass=user)(sAMAccountName=a,b=c))"
        );
        assert_eq!(
            filter(r"CORP\*"),
            "(&(objectClass=user)(sAMAccountName=\\2a))"
        );
        assert_eq!(
            filter("*@corp"),
            "(&(objectClass=user)(userPrincipalName=\\2a@corp))"
        );
        // A backslash after the first one belongs to the user part and is escaped.
        assert_eq!(
            filter(r"CORP\a\b"),
            "(&(objectClass=user)(sAMAccountName=a\\5cb))"
        );
        for s in ["*)(objectClass=*", "a,b=c", r"CORP\*)(|(x=*", "x@r)(y=*"] {
            assert!(ldap3::parse_filter(filter(s)).is_ok(), "{s}");
        }
    }

    /// Found by fuzzing (principal): `CN=J\C3\B6rg,DC\u{fffd}=x` was listed as a DN (it starts
    /// with `CN=`) while the directory, which could not parse it as one, resolved it as the
    /// domain user `C3\B6rg,…` of domain `CN=J`. A string that starts like a DN must be one.
    #[test]
    fn classification_agrees_with_the_directory() {
        for bad in [
            "CN=J\\C3\\B6rg,DC\u{fffd}=x",
            "CN=a,b",
            "CN=",
            "CN=x\\",
            "C N=x",
        ] {
            assert!(
                matches!(
                    Principal::parse(bad),
                    Err(crate::base::principal::PrincipalError::InvalidDn { .. })
                ),
                "{bad:?}"
            );
        }
        for (text, kind) in [
            ("CN=J\\C3\\B6rg,DC=x", PrincipalKind::Dn),
            ("CN=a\\,b,DC=x", PrincipalKind::Dn),
            ("x=y@corp", PrincipalKind::Dn),
            ("CORP\\x=y", PrincipalKind::DomainUser),
            ("a,b=c", PrincipalKind::SamAccountName),
            ("*)(objectClass=*", PrincipalKind::SamAccountName),
        ] {
            assert_eq!(Principal::parse(text).unwrap().kind(), kind, "{text:?}");
            let p = Principal::parse(text).unwrap();
            let lookup = UserLookup::for_principal(&p);
            let same = matches!(
                (kind, &lookup),
                (PrincipalKind::Dn, Some(UserLookup::Dn(_)))
                    | (PrincipalKind::DomainUser, Some(UserLookup::Filter(_)))
                    | (PrincipalKind::SamAccountName, Some(UserLookup::Filter(_)))
            );
            assert!(same, "{text:?}: {kind:?} vs {lookup:?}");
        }
    }
}
