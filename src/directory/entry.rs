//! Search result entries, decoded from ldap3's raw BER without panicking on
//! malformed server data (ldap3's `SearchEntry::construct` panics).

use std::collections::HashMap;

use ldap3::ResultEntry;
use ldap3::asn1::{PL, StructureTag};

/// Search scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only the base entry.
    Base,
    /// Entries immediately below the base.
    OneLevel,
    /// The base and everything below it.
    Subtree,
}

impl From<Scope> for ldap3::Scope {
    fn from(s: Scope) -> ldap3::Scope {
        match s {
            Scope::Base => ldap3::Scope::Base,
            Scope::OneLevel => ldap3::Scope::OneLevel,
            Scope::Subtree => ldap3::Scope::Subtree,
        }
    }
}

/// One search result entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The entry's DN as the server returned it.
    pub dn: String,
    /// UTF-8 attributes, keyed by the name the server returned (its case).
    /// Ranged attributes (`member;range=0-1499`) have been completed and are
    /// stored under the name without the range option.
    pub attrs: HashMap<String, Vec<String>>,
    /// Attributes with any value that is not UTF-8 (`objectGUID`, `objectSid`).
    pub bin_attrs: HashMap<String, Vec<Vec<u8>>>,
}

impl Entry {
    /// Values of `name`, matched case-insensitively.
    pub fn get(&self, name: &str) -> Option<&[String]> {
        if let Some(v) = self.attrs.get(name) {
            return Some(v);
        }
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// First value of `name`, matched case-insensitively.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    /// The first value of `name` as bytes, whichever map holds it: a binary value that
    /// happens to be valid UTF-8 (an objectGUID can be) is among the text attributes.
    pub fn raw(&self, name: &str) -> Option<Vec<u8>> {
        self.get_bin(name)
            .and_then(|v| v.first().cloned())
            .or_else(|| self.first(name).map(|s| s.as_bytes().to_vec()))
    }

    /// Binary values of `name`, matched case-insensitively.
    pub fn get_bin(&self, name: &str) -> Option<&[Vec<u8>]> {
        self.bin_attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Decodes a SearchResultEntry (`[APPLICATION 4] { objectName, attributes }`).
pub(crate) fn parse_entry(re: ResultEntry) -> Result<Entry, String> {
    let tag = re.0;
    if tag.id != 4 {
        return Err(format!(
            "expected a search entry, got protocol op {}",
            tag.id
        ));
    }
    let mut parts = constructed(tag, "entry")?.into_iter();
    let dn = utf8(
        primitive(parts.next().ok_or("entry without a DN")?, "DN")?,
        "DN",
    )?;
    let mut entry = Entry {
        dn,
        ..Entry::default()
    };
    let attrs = constructed(
        parts.next().ok_or("entry without attributes")?,
        "attributes",
    )?;
    for attr in attrs {
        let mut pa = constructed(attr, "attribute")?.into_iter();
        let name = utf8(
            primitive(
                pa.next().ok_or("attribute without a type")?,
                "attribute type",
            )?,
            "attribute type",
        )?;
        let vals = constructed(pa.next().ok_or("attribute without values")?, "values")?
            .into_iter()
            .map(|v| primitive(v, "value"))
            .collect::<Result<Vec<_>, _>>()?;
        if vals.iter().all(|v| std::str::from_utf8(v).is_ok()) {
            let strings = vals
                .into_iter()
                .filter_map(|v| String::from_utf8(v).ok())
                .collect();
            entry.attrs.insert(name, strings);
        } else {
            entry.bin_attrs.insert(name, vals);
        }
    }
    Ok(entry)
}

fn constructed(t: StructureTag, what: &str) -> Result<Vec<StructureTag>, String> {
    match t.payload {
        PL::C(v) => Ok(v),
        PL::P(_) => Err(format!("{what}: expected a constructed element")),
    }
}

fn primitive(t: StructureTag, what: &str) -> Result<Vec<u8>, String> {
    match t.payload {
        PL::P(v) => Ok(v),
        PL::C(_) => Err(format!("{what}: expected a primitive element")),
    }
}

fn utf8(v: Vec<u8>, what: &str) -> Result<String, String> {
    String::from_utf8(v).map_err(|_| format!("{what} is not UTF-8"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ldap3::asn1::TagClass;

    fn prim(b: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(b.to_vec()),
        }
    }
    fn cons(id: u64, v: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id,
            payload: PL::C(v),
        }
    }
    fn entry_tag(dn: &[u8], attrs: Vec<(&[u8], Vec<&[u8]>)>) -> ResultEntry {
        let attrs = attrs
            .into_iter()
            .map(|(n, vs)| {
                cons(
                    16,
                    vec![prim(n), cons(17, vs.into_iter().map(prim).collect())],
                )
            })
            .collect();
        let mut t = cons(4, vec![prim(dn), cons(16, attrs)]);
        t.class = TagClass::Application;
        ResultEntry::new(t)
    }

    #[test]
    fn decodes_text_and_binary() {
        let e = parse_entry(entry_tag(
            b"CN=a,DC=x",
            vec![
                (b"sAMAccountName", vec![b"a"]),
                (b"member;range=0-1", vec![b"CN=1", b"CN=2"]),
                (b"objectGUID", vec![b"\xff\xfe"]),
            ],
        ))
        .unwrap();
        assert_eq!(e.dn, "CN=a,DC=x");
        assert_eq!(e.first("samaccountname"), Some("a"));
        assert_eq!(e.get("SAMACCOUNTNAME").map(<[String]>::len), Some(1));
        assert_eq!(e.get("member;range=0-1").map(<[String]>::len), Some(2));
        assert_eq!(e.get_bin("objectguid"), Some(&[vec![0xff, 0xfe]][..]));
        assert_eq!(e.get("objectGUID"), None);
        assert_eq!(e.get("missing"), None);
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        assert!(parse_entry(entry_tag(b"\xff", vec![])).is_err());
        assert!(parse_entry(ResultEntry::new(cons(4, vec![]))).is_err());
        assert!(parse_entry(ResultEntry::new(prim(b"x"))).is_err());
        let mut t = cons(4, vec![prim(b"CN=a"), prim(b"not attrs")]);
        t.class = TagClass::Application;
        assert!(parse_entry(ResultEntry::new(t)).is_err());
    }
}
