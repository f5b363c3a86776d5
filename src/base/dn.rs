//! Distinguished names: splitting into RDNs with RFC 4514 escapes honoured,
//! and a normalised form for comparing DNs that Active Directory returns in its
//! own case and spacing (`CN=Smith\, John,OU=Staff` vs `cn=smith\2c john, ou=staff`).

use std::fmt;
use std::hash::{Hash, Hasher};

use crate::base::escape::{UnescapeError, escape_dn_value, unescape_marked};

/// Why a string is not a DN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    /// An RDN (or one AVA of a multi-valued RDN) is empty, as in `CN=a,,DC=b`.
    #[error("RDN {index} is empty")]
    EmptyRdn {
        /// Zero-based RDN position, leftmost first.
        index: usize,
    },
    /// An AVA has no `=`.
    #[error("RDN {index} has no '=' between attribute type and value")]
    MissingEquals {
        /// Zero-based RDN position, leftmost first.
        index: usize,
    },
    /// The attribute type is neither a name (`cn`, `sAMAccountName`) nor an OID.
    #[error("RDN {index} has an invalid attribute type {attr:?}")]
    InvalidAttributeType {
        /// Zero-based RDN position, leftmost first.
        index: usize,
        /// The offending type as written.
        attr: String,
    },
    /// The value is empty, as in `CN=,DC=x`.
    #[error("RDN {index} has an empty value")]
    EmptyValue {
        /// Zero-based RDN position, leftmost first.
        index: usize,
    },
    /// The value starts with `#` but is not a BER hex string (`#` and pairs of hex digits), as
    /// in `CN=#x,DC=y`; a literal leading `#` is written `\#`.
    #[error(
        "RDN {index} has a value starting with '#' that is not a hex string (write a literal '#' as \\#)"
    )]
    InvalidHexValue {
        /// Zero-based RDN position, leftmost first.
        index: usize,
    },
    /// The value has a broken escape.
    #[error("RDN {index}: {source}")]
    Escape {
        /// Zero-based RDN position, leftmost first.
        index: usize,
        /// What is wrong with the escape.
        #[source]
        source: UnescapeError,
    },
}

/// One `type=value` pair of an RDN. `value` is unescaped.
#[derive(Debug, Clone)]
pub struct Ava {
    /// Attribute type as written (`CN`, `cn`, `2.5.4.3`).
    pub attr: String,
    /// Unescaped value; for a BER hex value (`CN=#0402...`) the `#hex` text as written.
    pub value: String,
    /// True when `value` is an RFC 4514 `#hex` BER encoding rather than a string.
    pub ber: bool,
}

/// A relative distinguished name: one AVA, or several joined with `+`.
#[derive(Debug, Clone)]
pub struct Rdn {
    /// The AVAs in the order written.
    pub avas: Vec<Ava>,
}

/// A parsed distinguished name.
///
/// Equality, hashing and [`Dn::normalized`] ignore the case of attribute types
/// and values, whitespace around `=`, `,` and `+`, the order of AVAs inside a
/// multi-valued RDN, and the way a character was escaped (`\,` and `\2c` are
/// the same). That is the comparison Active Directory applies to `member`
/// values for the attributes used in DNs.
#[derive(Debug, Clone)]
pub struct Dn {
    rdns: Vec<Rdn>,
    normalized: String,
}

impl Dn {
    /// Parses `s` as an RFC 4514 DN. The empty string is the (zero-RDN) root DN.
    pub fn parse(s: &str) -> Result<Dn, DnError> {
        parse_dn(s)
    }

    /// The RDNs, leftmost (most specific) first.
    pub fn rdns(&self) -> &[Rdn] {
        &self.rdns
    }

    /// True for the zero-RDN root DN.
    pub fn is_root(&self) -> bool {
        self.rdns.is_empty()
    }

    /// The normalised form: lower-case types and values, re-escaped, no
    /// insignificant whitespace. Two DNs are equal iff these strings are.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The DN without its first RDN; `None` for the root DN.
    pub fn parent(&self) -> Option<Dn> {
        if self.rdns.is_empty() {
            return None;
        }
        Some(Dn::from_rdns(self.rdns[1..].to_vec()))
    }

    /// True if `self` equals `base` or lies below it.
    pub fn is_within(&self, base: &Dn) -> bool {
        let (n, b) = (self.rdns.len(), base.rdns.len());
        n >= b
            && self.rdns[n - b..]
                .iter()
                .zip(&base.rdns)
                .all(|(x, y)| normalize_rdn(x) == normalize_rdn(y))
    }

    /// Value of the first AVA of the leftmost RDN (`Smith, John` for
    /// `CN=Smith\, John,OU=x`).
    pub fn first_value(&self) -> Option<&str> {
        self.rdns
            .first()
            .and_then(|r| r.avas.first())
            .map(|a| a.value.as_str())
    }

    fn from_rdns(rdns: Vec<Rdn>) -> Dn {
        let normalized = rdns.iter().map(normalize_rdn).collect::<Vec<_>>().join(",");
        Dn { rdns, normalized }
    }
}

impl PartialEq for Dn {
    fn eq(&self, other: &Self) -> bool {
        self.normalized == other.normalized
    }
}

impl Eq for Dn {}

impl Hash for Dn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.normalized.hash(state);
    }
}

/// The DN re-serialised per RFC 4514 with its original case: `CN=Smith\, John,OU=x`.
impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for (j, ava) in rdn.avas.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                f.write_str(&ava.attr)?;
                f.write_str("=")?;
                f.write_str(&escape_value(ava))?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Dn {
    type Err = DnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_dn(s)
    }
}

/// BER hex values are written as they are; string values are escaped.
fn escape_value(ava: &Ava) -> std::borrow::Cow<'_, str> {
    if ava.ber {
        std::borrow::Cow::Borrowed(&ava.value)
    } else {
        escape_dn_value(&ava.value)
    }
}

fn normalize_rdn(rdn: &Rdn) -> String {
    let mut avas: Vec<String> = rdn
        .avas
        .iter()
        .map(|a| {
            let value = a.value.to_lowercase();
            let value = if a.ber {
                value
            } else {
                escape_dn_value(&value).into_owned()
            };
            format!("{}={}", normalize_attr(&a.attr), value)
        })
        .collect();
    avas.sort();
    avas.join("+")
}

fn normalize_attr(attr: &str) -> String {
    let a = attr.to_ascii_lowercase();
    match a.strip_prefix("oid.") {
        Some(rest) => rest.to_owned(),
        None => a,
    }
}

/// Parses an RFC 4514 DN, honouring `\`-escapes (`CN=Smith\, John,OU=x` has
/// two RDNs) and trimming unescaped whitespace around `=`, `,` and `+`.
///
/// Around a value only the space (U+0020) is insignificant, as in RFC 4514:
/// other whitespace (a no-break space, U+0085, an ideographic space) is part of
/// the value even at its edges, since `escape_dn_value` leaves it unescaped and
/// Active Directory keeps it; trimming it would make two different entries'
/// DNs compare equal.
pub fn parse_dn(s: &str) -> Result<Dn, DnError> {
    if s.trim().is_empty() {
        return Ok(Dn::from_rdns(Vec::new()));
    }
    let mut rdns = Vec::new();
    for (index, rdn_str) in split_unescaped(s, ',').into_iter().enumerate() {
        if rdn_str.trim().is_empty() {
            return Err(DnError::EmptyRdn { index });
        }
        let mut avas = Vec::new();
        for ava_str in split_unescaped(rdn_str, '+') {
            avas.push(parse_ava(ava_str, index)?);
        }
        rdns.push(Rdn { avas });
    }
    Ok(Dn::from_rdns(rdns))
}

fn parse_ava(s: &str, index: usize) -> Result<Ava, DnError> {
    if s.trim().is_empty() {
        return Err(DnError::EmptyRdn { index });
    }
    // Attribute types never contain `\`, so the first `=` is unescaped.
    let (attr, raw_value) = s.split_once('=').ok_or(DnError::MissingEquals { index })?;
    let attr = attr.trim();
    if !valid_attr_type(attr) {
        return Err(DnError::InvalidAttributeType {
            index,
            attr: attr.to_owned(),
        });
    }
    let raw_value = raw_value.trim_start_matches(' ');
    let ber = raw_value.starts_with('#');
    let value = if ber {
        // BER-encoded value (RFC 4514 §2.4): `#` and hex pairs, compared as written. Anything
        // else is refused: it is not a value, and kept verbatim it could end in a backslash
        // that would escape the separator after it once the DN is written out again.
        let hex = raw_value.trim_end_matches(' ');
        let digits = &hex[1..];
        if digits.is_empty()
            || digits.len() % 2 != 0
            || !digits.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(DnError::InvalidHexValue { index });
        }
        hex.to_ascii_lowercase()
    } else {
        let marked =
            unescape_marked(raw_value).map_err(|source| DnError::Escape { index, source })?;
        let start = marked
            .iter()
            .position(|&(c, esc)| esc || c != ' ')
            .unwrap_or(marked.len());
        let end = marked
            .iter()
            .rposition(|&(c, esc)| esc || c != ' ')
            .map_or(start, |p| p + 1);
        marked[start..end.max(start)]
            .iter()
            .map(|&(c, _)| c)
            .collect()
    };
    if value.is_empty() {
        return Err(DnError::EmptyValue { index });
    }
    Ok(Ava {
        attr: attr.to_owned(),
        value,
        ber,
    })
}

/// `descr` (letter, then letters, digits, hyphens) or `numericoid`, optionally
/// with the legacy `OID.` prefix.
fn valid_attr_type(attr: &str) -> bool {
    let a = match attr.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("oid.") => &attr[4..],
        _ => attr,
    };
    let mut bytes = a.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() => bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        Some(b) if b.is_ascii_digit() => a
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())),
        _ => false,
    }
}

/// Splits on `sep` where it is not preceded by an escaping backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dn(s: &str) -> Dn {
        parse_dn(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn escaped_comma_is_one_rdn() {
        let d = dn("CN=Smith\\, John,OU=x");
        assert_eq!(d.rdns().len(), 2);
        assert_eq!(d.first_value(), Some("Smith, John"));
        assert_eq!(d.rdns()[1].avas[0].attr, "OU");
        assert_eq!(d.to_string(), "CN=Smith\\, John,OU=x");
    }

    #[test]
    fn hex_escape_equals_char_escape() {
        assert_eq!(dn("CN=Smith\\, John,OU=x"), dn("cn=smith\\2C john,ou=X"));
        assert_eq!(dn("CN=J\\C3\\B6rg,DC=x"), dn("CN=jörg,DC=x"));
    }

    #[test]
    fn normalisation_ignores_case_and_spacing() {
        let a = dn("CN=Alice Smith,OU=Staff,DC=Corp,DC=Example,DC=Test");
        let b = dn("cn = alice smith , ou=STAFF,  dc=corp,dc=example ,dc=test ");
        assert_eq!(a, b);
        assert_eq!(
            a.normalized(),
            "cn=alice smith,ou=staff,dc=corp,dc=example,dc=test"
        );
        // Internal whitespace is significant.
        assert_ne!(a, dn("CN=Alice  Smith,OU=Staff,DC=Corp,DC=Example,DC=Test"));
        // OID. prefix and type case.
        assert_eq!(dn("OID.2.5.4.3=x"), dn("2.5.4.3=X"));
    }

    #[test]
    fn escaped_edge_spaces_are_kept() {
        let d = dn("CN=\\ padded\\ ,DC=x");
        assert_eq!(d.first_value(), Some(" padded "));
        assert_ne!(d, dn("CN=padded,DC=x"));
        assert_eq!(d.to_string(), "CN=\\ padded\\ ,DC=x");
        // Escaped then unescaped trailing whitespace: only the unescaped is trimmed.
        assert_eq!(dn("CN=a\\  ,DC=x").first_value(), Some("a "));
    }

    /// Found by fuzzing (ldap_escape): the value `"\u{8}\0\0\0\0\0\0uid=Y,\u{fffd}\u{fffd}\u{85}"`
    /// escaped into `CN=…,OU=Users` parsed back without its final U+0085, which
    /// `char::is_whitespace` trimmed. Only spaces are insignificant at a value's edges (and
    /// only spaces are what escape_dn_value escapes there).
    #[test]
    fn edge_whitespace_other_than_space_is_part_of_the_value() {
        for v in [
            "x\u{85}",
            "\u{a0}x",
            "x\u{3000}",
            "\u{2028}",
            "\u{a0} x \u{a0}",
        ] {
            let s = format!("CN={},DC=x", escape_dn_value(v));
            assert_eq!(dn(&s).first_value(), Some(v), "{s:?}");
        }
        assert_ne!(dn("CN=x\u{a0},DC=y"), dn("CN=x,DC=y"));
        assert_eq!(dn("CN= \u{a0}x ,DC=y").first_value(), Some("\u{a0}x"));
    }

    #[test]
    fn multi_valued_rdn_order_insensitive() {
        let a = dn("CN=a+UID=b,DC=x");
        assert_eq!(a.rdns()[0].avas.len(), 2);
        assert_eq!(a, dn("uid=B + cn=A,dc=x"));
        // An escaped plus is not a separator.
        assert_eq!(dn("CN=a\\+b,DC=x").rdns()[0].avas.len(), 1);
    }

    #[test]
    fn round_trip_through_escape() {
        for v in [
            "Smith, John",
            "a,b=c",
            " lead",
            "trail ",
            "#hash",
            "#ab",
            "x\\y",
            "a+b",
            "*)(objectClass=*",
            "q\"uote",
            "nul\0byte",
            "ümläut; <ok>",
        ] {
            let s = format!("CN={},OU=Users,DC=x", escape_dn_value(v));
            let d = dn(&s);
            assert_eq!(d.rdns().len(), 3, "{s}");
            assert_eq!(d.first_value(), Some(v), "{s}");
            assert_eq!(dn(&d.to_string()), d);
            assert_eq!(d.to_string(), s);
        }
    }

    #[test]
    fn within_and_parent() {
        let base = dn("DC=corp,DC=example,DC=test");
        let user = dn("CN=a,OU=Staff,dc=CORP,dc=example,dc=test");
        assert!(user.is_within(&base));
        assert!(base.is_within(&base));
        assert!(!base.is_within(&user));
        assert!(!dn("CN=a,DC=other,DC=test").is_within(&base));
        assert!(user.is_within(&dn("")));
        assert_eq!(
            user.parent(),
            Some(dn("OU=Staff,DC=corp,DC=example,DC=test"))
        );
        assert_eq!(dn("").parent(), None);
        assert!(dn("  ").is_root());
        // Suffix match is per RDN, not per character.
        assert!(!dn("CN=a,DC=xcorp,DC=example,DC=test").is_within(&base));
    }

    #[test]
    fn ber_hex_value() {
        let d = dn("CN=#04024869,DC=x");
        assert_eq!(d.first_value(), Some("#04024869"));
        assert!(d.rdns()[0].avas[0].ber);
        assert_eq!(d.to_string(), "CN=#04024869,DC=x");
        // A literal leading '#' is escaped and is a different value.
        assert_ne!(d, dn("CN=\\#04024869,DC=x"));
    }

    /// Found by fuzzing (ldap_escape, principal): `CN=#a\\ ,OU=x` parsed as the "BER value"
    /// `#a\\` (its escaped space trimmed as if unescaped) and re-serialised as `CN=#a\\,OU=x`, in
    /// which the backslash escapes the comma: one RDN instead of two (and with `+`, one AVA
    /// instead of two). A `#` value must be a hex string.
    #[test]
    fn hex_values_must_be_hex_strings() {
        for bad in [
            "CN=#a\\ ,OU=x",
            "CN=#e\\ +CN2=x,OU=y",
            "CN=#,DC=x",
            "CN=#0,DC=x",
            "CN=#0g,DC=x",
            "CN=#ab cd,DC=x",
        ] {
            assert_eq!(
                parse_dn(bad).err(),
                Some(DnError::InvalidHexValue { index: 0 }),
                "{bad:?}"
            );
        }
        let d = dn("CN=#04024869 ,DC=x");
        assert_eq!(d.first_value(), Some("#04024869"));
        assert_eq!(dn(&d.to_string()), d);
        assert_eq!(dn("CN=#0A0b,DC=x"), dn("cn=#0a0B,dc=x"));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(
            parse_dn("a,b=c").err(),
            Some(DnError::MissingEquals { index: 0 })
        );
        assert!(matches!(
            parse_dn("*)(objectClass=*"),
            Err(DnError::InvalidAttributeType { index: 0, .. })
        ));
        assert_eq!(
            parse_dn("CN=a,,DC=x").err(),
            Some(DnError::EmptyRdn { index: 1 })
        );
        assert_eq!(
            parse_dn("CN=a,").err(),
            Some(DnError::EmptyRdn { index: 1 })
        );
        assert_eq!(
            parse_dn("CN=,DC=x").err(),
            Some(DnError::EmptyValue { index: 0 })
        );
        assert_eq!(
            parse_dn("CN=a+,DC=x").err(),
            Some(DnError::EmptyRdn { index: 0 })
        );
        assert!(matches!(
            parse_dn("CN=a\\"),
            Err(DnError::Escape { index: 0, .. })
        ));
        assert!(matches!(
            parse_dn("CN=\\C3,DC=x"),
            Err(DnError::Escape { index: 0, .. })
        ));
        assert!(matches!(
            parse_dn("1CN=a"),
            Err(DnError::InvalidAttributeType { .. })
        ));
        assert!(matches!(
            parse_dn("C N=a"),
            Err(DnError::InvalidAttributeType { .. })
        ));
        assert!(matches!(
            parse_dn("DOMAIN\\user"),
            Err(DnError::MissingEquals { .. })
        ));
        assert!(matches!(
            parse_dn("user@realm"),
            Err(DnError::MissingEquals { .. })
        ));
    }

    #[test]
    fn usable_as_set_key() {
        let mut set = std::collections::HashSet::new();
        set.insert(dn("CN=Smith\\, John,OU=x"));
        assert!(set.contains(&dn("cn=SMITH\\2c JOHN, ou=X")));
        assert!(!set.contains(&dn("CN=Smith,CN=John,OU=x")));
    }
}
