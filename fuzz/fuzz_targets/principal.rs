//! Principal parsing: the list vocabulary (`warden::principal`) and the directory's lookup for
//! it (`warden::directory::UserLookup`), which must read the same string the same way.
//!
//! Properties:
//! - a list principal is the input unchanged, within the length cap, without control characters
//!   or edge whitespace, and its parts put back together are the input;
//! - the directory has a lookup for every accepted list principal, of the same kind (a list
//!   entry that says "DN" is read as that DN, a `DOMAIN\user` searched by that user, and so on);
//! - the directory's search filter for a principal parses (ldap3) as exactly
//!   `(&(objectClass=user)(attr=value))` with `value` the principal's user part, byte for byte:
//!   nothing in a principal can add a clause or a wildcard;
//! - a DN principal is not the root DN and re-parses from its display form;
//! - the account the domain rules make of a principal (`warden::base::account`) is keyed by its
//!   canonical name, every one of its names canonicalises to that name, and resolving the
//!   canonical name again gives the same account; a login qualified by a gate's domain names
//!   that domain's account;
//! - objectGUID and objectSid bytes print without panicking, and a GUID's string reads back
//!   as its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::base::account::{Account, guid_bytes, guid_string, rules_key, sid_string};
use warden::base::dn::parse_dn;
use warden::base::identity::{Identity, qualify};
use warden::directory::UserLookup;
use warden::base::principal::{MAX_PRINCIPAL_LEN, Principal, PrincipalKind};
use warden_fuzz::{as_and, as_equality, parse_filter};

const MAX_LEN: usize = MAX_PRINCIPAL_LEN + 16;

fuzz_target!(|data: &[u8]| {
    let Some(s) = warden_fuzz::text(data, MAX_LEN) else {
        return;
    };
    let s: &str = &s;
    let list = Principal::parse(s);
    if let Ok(p) = &list {
        assert_eq!(p.as_str(), s);
        assert!(s.len() <= MAX_PRINCIPAL_LEN && !s.chars().any(char::is_control));
        assert_eq!(s.trim(), s);
        match (p.kind(), p.parts()) {
            (PrincipalKind::DomainUser, Some((d, u))) => {
                assert!(!d.is_empty() && !u.is_empty(), "{s:?}");
                assert_eq!(format!("{d}\\{u}"), s);
            }
            (PrincipalKind::Upn, Some((u, r))) => {
                assert!(!u.is_empty() && !r.is_empty(), "{s:?}");
                assert_eq!(format!("{u}@{r}"), s);
            }
            (PrincipalKind::Dn | PrincipalKind::SamAccountName, None) => {}
            (kind, parts) => panic!("{s:?}: {kind:?} with parts {parts:?}"),
        }
    }

    if let Some(guid) = guid_string(data) {
        assert_eq!(guid_bytes(&guid).map(|b| b.to_vec()), Some(data.to_vec()));
    }
    let _ = sid_string(data);

    let Ok(p) = &list else {
        return;
    };
    check_account(p);
    // The directory's lookup for every accepted list principal.
    match (p.kind(), UserLookup::for_principal(p)) {
        (PrincipalKind::Dn, Some(UserLookup::Dn(dn))) => {
            assert!(!dn.is_root(), "{s:?}");
            let shown = dn.to_string();
            assert_eq!(
                parse_dn(&shown).as_ref(),
                Ok(&dn),
                "{s:?} shown as {shown:?}"
            );
        }
        (PrincipalKind::Dn, None) => panic!("{s:?}: accepted as a DN the directory cannot read"),
        (kind, Some(UserLookup::Filter(filter))) => {
            let (attr, value): (&[u8], &str) = match kind {
                PrincipalKind::DomainUser => (
                    b"sAMAccountName",
                    p.parts().expect("domain user has parts").1,
                ),
                PrincipalKind::SamAccountName => (b"sAMAccountName", s),
                PrincipalKind::Upn => (b"userPrincipalName", s),
                PrincipalKind::Dn => unreachable!("handled above"),
            };
            check_filter(s, &filter, attr, value);
        }
        (kind, other) => panic!("{s:?}: the list reads {kind:?}, the directory {other:?}"),
    }
});

/// The filter is exactly `(&(objectClass=user)(attr=value))`, value byte for byte: nothing in
/// a principal can add a clause or a wildcard.
fn check_filter(s: &str, filter: &str, attr: &[u8], value: &str) {
    let tag = parse_filter(filter).unwrap_or_else(|| panic!("{s:?}: ldap3 rejects {filter:?}"));
    let ops = as_and(&tag).unwrap_or_else(|| panic!("{filter:?} is not an AND"));
    let eqs: Vec<(&[u8], &[u8])> = ops.iter().filter_map(as_equality).collect();
    assert_eq!(
        eqs.len(),
        2,
        "{filter:?} must have exactly two equality operands"
    );
    assert_eq!(ops.len(), 2, "{filter:?}");
    assert_eq!(eqs[0], (&b"objectClass"[..], &b"user"[..]), "{filter:?}");
    assert_eq!(eqs[1], (attr, value.as_bytes()), "{filter:?}");
}

/// The rules' account of a principal: one key for every spelling.
fn check_account(p: &Principal) {
    let identity = Identity::default();
    let s = p.as_str();
    if let Ok(account) = Account::by_rules(&identity, p) {
        assert_eq!(account.key, rules_key(&account.canonical), "{s:?}");
        assert_eq!(account.names[0], account.canonical, "{s:?}");
        for name in &account.names {
            assert_eq!(identity.canonical(name), account.canonical, "{s:?}: {name:?}");
        }
        let again = Principal::parse(&account.canonical)
            .ok()
            .and_then(|c| Account::by_rules(&identity, &c).ok())
            .unwrap_or_else(|| panic!("{s:?}: canonical {:?} names no account", account.canonical));
        assert_eq!(again.key, account.key, "{s:?}");
    }
    let login = qualify(s, Some("CORP"));
    if p.kind() == PrincipalKind::SamAccountName && !s.contains('=') {
        assert_eq!(login, format!("CORP\\{s}"), "{s:?}");
    }
}
