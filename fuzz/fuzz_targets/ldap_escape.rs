//! LDAP filter escaping (RFC 4515), DN value escaping (RFC 4514) and DN parsing
//! (`warden::directory`, `warden::base::dn`). Input: one string, used both as
//! an untrusted value to escape and as a DN to parse.
//!
//! Properties:
//! - `escape_filter_value(v)` placed in `(attr=…)` contains no unescaped `*`, `(`, `)`, `\` or
//!   NUL, decodes back to `v`, and ldap3's parser reads it as one equality assertion on `v`;
//! - `escape_dn_value(v)` unescapes back to `v`; as the first RDN of a DN it parses to two RDNs
//!   whose first value is `v`, re-serialises to the same string, and `Dn::first_value` finds
//!   `v` in it;
//! - any string that parses as a DN re-parses from its display form and from its normalised form
//!   to an equal DN, lies within itself and within its parent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::base::dn::parse_dn;
use warden::base::escape::{escape_dn_value, escape_filter_value, unescape_dn_value};
use warden_fuzz::{as_equality, parse_filter, unescape_filter_value};

const MAX_LEN: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some(v) = warden_fuzz::text(data, MAX_LEN) else {
        return;
    };
    filter_value(&v);
    dn_value(&v);
    dn(&v);
});

fn filter_value(v: &str) {
    let esc = escape_filter_value(v);
    let bytes = esc.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        assert!(
            !matches!(b, b'*' | b'(' | b')' | 0),
            "escape_filter_value({v:?}) = {esc:?} has a raw {:?}",
            char::from(b)
        );
        if b == b'\\' {
            assert!(
                bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
                "escape_filter_value({v:?}) = {esc:?} has a bare backslash"
            );
        }
    }
    assert_eq!(
        unescape_filter_value(&esc).as_deref(),
        Some(v.as_bytes()),
        "escape_filter_value({v:?}) = {esc:?}"
    );
    let filter = format!("(sAMAccountName={esc})");
    let tag = parse_filter(&filter).unwrap_or_else(|| panic!("ldap3 rejects {filter:?}"));
    let (attr, value) =
        as_equality(&tag).unwrap_or_else(|| panic!("{filter:?} is not one equality assertion"));
    assert_eq!(attr, b"sAMAccountName");
    assert_eq!(value, v.as_bytes(), "{filter:?}");
}

fn dn_value(v: &str) {
    let esc = escape_dn_value(v);
    assert_eq!(
        unescape_dn_value(&esc).as_deref(),
        Ok(v),
        "escape_dn_value({v:?}) = {esc:?}"
    );
    let s = format!("CN={esc},OU=Users");
    if v.is_empty() {
        return;
    }
    let d = parse_dn(&s).unwrap_or_else(|e| panic!("parse_dn({s:?}): {e}"));
    assert_eq!(d.rdns().len(), 2, "{s:?}");
    assert_eq!(d.first_value(), Some(v), "{s:?}");
    assert_eq!(d.to_string(), s, "{s:?}");
}

fn dn(s: &str) {
    let Ok(d) = parse_dn(s) else { return };
    let shown = d.to_string();
    let again = parse_dn(&shown).unwrap_or_else(|e| panic!("{s:?} shown as {shown:?}: {e}"));
    assert_eq!(again, d, "{s:?} shown as {shown:?}");
    let normalized = d.normalized();
    let n =
        parse_dn(normalized).unwrap_or_else(|e| panic!("{s:?} normalised as {normalized:?}: {e}"));
    assert_eq!(n.normalized(), normalized, "{s:?}: normalising twice");
    assert_eq!(n, d, "{s:?} normalised as {normalized:?}");
    assert!(d.is_within(&d), "{s:?}");
    if let Some(parent) = d.parent() {
        assert!(d.is_within(&parent), "{s:?} not within its parent");
        assert!(!parent.is_within(&d), "{s:?}: parent within child");
        assert_eq!(parent.rdns().len() + 1, d.rdns().len());
    }
}
