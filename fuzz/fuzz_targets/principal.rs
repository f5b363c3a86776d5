//! Principal parsing: the list vocabulary (`warden::principal`) and the directory's resolver
//! (`warden::directory::Principal`), which must read the same string the same way.
//!
//! Properties:
//! - a list principal is the input unchanged, within the length cap, without control characters
//!   or edge whitespace, and its parts put back together are the input;
//! - the directory reads every accepted list principal, as the same kind (a list entry that
//!   says "DN" is resolved as a DN, a `DOMAIN\user` by that user, and so on);
//! - the directory's search filter for a principal parses (ldap3) as exactly
//!   `(&(objectClass=user)(attr=value))` with `value` the principal's user part, byte for byte:
//!   nothing in a principal can add a clause or a wildcard;
//! - a DN principal is not the root DN and re-parses from its display form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::directory::{Principal as DirPrincipal, parse_dn};
use warden::principal::{MAX_PRINCIPAL_LEN, Principal, PrincipalKind};
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

    let dir = DirPrincipal::parse(s);
    match &dir {
        None => {
            let t = s.trim();
            let empty_part = t
                .split_once('\\')
                .is_some_and(|(d, u)| d.trim().is_empty() || u.trim().is_empty());
            assert!(t.is_empty() || empty_part, "{s:?} refused by the directory");
        }
        Some(p) => check_directory(s, p),
    }

    if let Ok(p) = &list {
        let Some(d) = &dir else {
            panic!("list principal {s:?} ({:?}) cannot be resolved", p.kind());
        };
        match (p.kind(), d) {
            (PrincipalKind::Dn, DirPrincipal::Dn(_))
            | (PrincipalKind::SamAccountName, DirPrincipal::SamAccountName(_))
            | (PrincipalKind::Upn, DirPrincipal::Upn(_)) => {}
            (PrincipalKind::DomainUser, DirPrincipal::DomainUser { domain, user }) => {
                let (ld, lu) = p.parts().expect("domain user has parts");
                assert_eq!((ld.trim(), lu.trim()), (&**domain, &**user), "{s:?}");
            }
            (kind, d) => panic!("{s:?}: the list reads {kind:?}, the directory {d:?}"),
        }
    }
});

fn check_directory(s: &str, p: &DirPrincipal) {
    let (attr, value): (&[u8], &str) = match p {
        DirPrincipal::Dn(dn) => {
            assert!(!dn.is_root(), "{s:?}");
            assert!(p.filter().is_none());
            let shown = dn.to_string();
            assert_eq!(
                parse_dn(&shown).as_ref(),
                Ok(dn),
                "{s:?} shown as {shown:?}"
            );
            return;
        }
        DirPrincipal::DomainUser { domain, user } => {
            assert!(!domain.is_empty() && !user.is_empty(), "{s:?}");
            assert_eq!(domain.trim(), domain);
            assert_eq!(user.trim(), user);
            (b"sAMAccountName", user)
        }
        DirPrincipal::SamAccountName(name) => {
            assert_eq!(name, s.trim());
            (b"sAMAccountName", name)
        }
        DirPrincipal::Upn(upn) => {
            assert!(upn.contains('@'), "{s:?}");
            assert_eq!(upn, s.trim());
            (b"userPrincipalName", upn)
        }
    };
    let filter = p.filter().unwrap_or_else(|| panic!("{s:?}: no filter"));
    let tag = parse_filter(&filter).unwrap_or_else(|| panic!("{s:?}: ldap3 rejects {filter:?}"));
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
