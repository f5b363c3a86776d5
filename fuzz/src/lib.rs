//! Shared pieces of warden's fuzz targets: input framing, size caps, and small reference
//! implementations written from the specifications (docs/ARCHITECTURE.md, RFC 4515, the HTML
//! form encoding), not from warden's code, so that a target can assert what warden's answer must be rather than
//! only that it did not panic.
//!
//! # Input framing
//!
//! Targets whose natural input is one string (a TOML file, a query string, a principal) take the
//! fuzz input as that string. Targets that need several strings split the input into *fields* at
//! `0xFF` bytes, which never occur in UTF-8, so a seed is just the strings joined by `0xFF` and a
//! crash file reads as text. Each field is decoded lossily: every byte string is a valid input.

use std::borrow::Cow;

use ldap3::asn1::{ASNTag, PL, StructureTag, TagClass};

/// Separates fields in a multi-string fuzz input (never part of UTF-8).
pub const FIELD_SEP: u8 = 0xFF;
/// A field that is exactly this byte stands for "absent" (`None`).
pub const ABSENT: u8 = 0xFE;

/// Splits `data` at [`FIELD_SEP`]; `None` for a field that is exactly [`ABSENT`].
pub fn fields(data: &[u8]) -> Vec<Option<String>> {
    data.split(|&b| b == FIELD_SEP)
        .map(|f| match f {
            [ABSENT] => None,
            _ => Some(String::from_utf8_lossy(f).into_owned()),
        })
        .collect()
}

/// Joins fields back into a fuzz input (for seeds and reproducers).
pub fn join_fields<'a>(fields: impl IntoIterator<Item = Option<&'a str>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(FIELD_SEP);
        }
        match f {
            Some(s) => out.extend_from_slice(s.as_bytes()),
            None => out.push(ABSENT),
        }
    }
    out
}

/// The whole input as text, or `None` past `cap` bytes (size caps keep each run fast and make
/// the fuzzer spend its time on shape, not length).
pub fn text(data: &[u8], cap: usize) -> Option<Cow<'_, str>> {
    (data.len() <= cap).then(|| String::from_utf8_lossy(data))
}

// ------------------------------------------------------------------ substitution templates

/// One element of a substitution template, per docs/ARCHITECTURE.md "Substitution patterns".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePiece {
    Literal(String),
    Group(usize),
}

/// Parses a substitution template the way docs/ARCHITECTURE.md and the `pattern` module docs specify it:
/// `$N` (greedy ASCII digits), `${N}` / `${name}` insert a group, `$$` is a literal `$`, a `$`
/// before anything else or at the end is a literal `$`, every other character (the backslash
/// included) is literal. `None` when the template must be rejected: an unterminated `${`, an
/// empty `${}`, or a group that does not exist (`group_len` counts group 0).
pub fn parse_template(
    template: &str,
    group_len: usize,
    index_of: impl Fn(&str) -> Option<usize>,
) -> Option<Vec<TemplatePiece>> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    let group = |digits: &str| -> Option<usize> {
        // Any number of digits: an index that does not fit is simply a group that does not exist.
        let n = digits.trim_start_matches('0');
        if n.len() > 18 {
            return None;
        }
        let n: usize = if n.is_empty() { 0 } else { n.parse().ok()? };
        (n < group_len).then_some(n)
    };
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            literal.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                literal.push('$');
                i += 2;
            }
            Some(d) if d.is_ascii_digit() => {
                let end = (i + 1..chars.len())
                    .find(|&j| !chars[j].is_ascii_digit())
                    .unwrap_or(chars.len());
                let digits: String = chars[i + 1..end].iter().collect();
                let g = group(&digits)?;
                if !literal.is_empty() {
                    pieces.push(TemplatePiece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(TemplatePiece::Group(g));
                i = end;
            }
            Some('{') => {
                let close = (i + 2..chars.len()).find(|&j| chars[j] == '}')?;
                let inner: String = chars[i + 2..close].iter().collect();
                if inner.is_empty() {
                    return None;
                }
                let g = if inner.chars().all(|c| c.is_ascii_digit()) {
                    group(&inner)?
                } else {
                    index_of(&inner)?
                };
                if !literal.is_empty() {
                    pieces.push(TemplatePiece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(TemplatePiece::Group(g));
                i = close + 1;
            }
            _ => {
                literal.push('$');
                i += 1;
            }
        }
    }
    if !literal.is_empty() {
        pieces.push(TemplatePiece::Literal(literal));
    }
    Some(pieces)
}

/// Renders parsed pieces; a group that did not participate inserts nothing.
pub fn render_template<'h>(
    pieces: &[TemplatePiece],
    group: impl Fn(usize) -> Option<&'h str>,
) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            TemplatePiece::Literal(s) => out.push_str(s),
            TemplatePiece::Group(g) => out.push_str(group(*g).unwrap_or("")),
        }
    }
    out
}

// ------------------------------------------------------------------ RFC 4515 filters

/// Decodes an RFC 4515 assertion value: `\XX` is the byte `XX`; a raw `*`, `(`, `)`, NUL or a
/// `\` not followed by two hex digits makes it not a (single, literal) value.
pub fn unescape_filter_value(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' | b'(' | b')' | 0 => return None,
            b'\\' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            x => {
                out.push(x);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Parses an LDAP filter with ldap3's own parser (the one that puts it on the wire).
pub fn parse_filter(filter: &str) -> Option<StructureTag> {
    ldap3::parse_filter(filter).ok().map(|t| t.into_structure())
}

/// `(attr=value)` as (attribute, value bytes), if `tag` is an equality assertion.
pub fn as_equality(tag: &StructureTag) -> Option<(&[u8], &[u8])> {
    if tag.class != TagClass::Context || tag.id != 3 {
        return None;
    }
    let PL::C(inner) = &tag.payload else {
        return None;
    };
    match inner.as_slice() {
        [a, v] => match (&a.payload, &v.payload) {
            (PL::P(a), PL::P(v)) => Some((a, v)),
            _ => None,
        },
        _ => None,
    }
}

/// The operands of `(&…)`, if `tag` is an AND.
pub fn as_and(tag: &StructureTag) -> Option<&[StructureTag]> {
    if tag.class != TagClass::Context || tag.id != 0 {
        return None;
    }
    match &tag.payload {
        PL::C(inner) => Some(inner),
        PL::P(_) => None,
    }
}

// ------------------------------------------------------------------ form encoding

/// Why a form component does not decode (mirrors the two cases a server must tell apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormError {
    Escape,
    Utf8,
}

/// `application/x-www-form-urlencoded` decoding of one component: `+` is a space, `%XX` a byte,
/// anything else itself; the bytes must be UTF-8.
pub fn form_decode(s: &str) -> Result<String, FormError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(FormError::Escape)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(FormError::Escape);
                }
                let hex = std::str::from_utf8(hex).map_err(|_| FormError::Escape)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| FormError::Escape)?);
                i += 3;
            }
            x => {
                out.push(x);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| FormError::Utf8)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ------------------------------------------------------------------ CEF, read by the standard

/// A CEF line read by the character-encoding rules of the ArcSight CEF standard, written
/// from them (not from warden's reader): the seven header fields after `CEF:` split at
/// pipes no backslash escapes, `\|` and `\\` unescaped; the extension split into
/// `key=value` pairs at the equals signs no backslash escapes, a key being the word just
/// before one, `\\`, `\=`, `\n`, `\r` unescaped in values. `None` when the line has no
/// seven-field header.
pub fn cef_reference(line: &str) -> Option<(Vec<String>, Vec<(String, String)>)> {
    let body = &line[line.find("CEF:")? + 4..];
    let mut header = Vec::new();
    let mut field = String::new();
    let mut escaped = false;
    let mut rest_at = None;
    for (i, c) in body.char_indices() {
        if escaped {
            if c != '|' && c != '\\' {
                field.push('\\');
            }
            field.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '|' {
            header.push(std::mem::take(&mut field));
            if header.len() == 7 {
                rest_at = Some(i + 1);
                break;
            }
        } else {
            field.push(c);
        }
    }
    let extension = &body[rest_at?..];
    // Tokens between unescaped '=': each but the first ends with the next key.
    let mut pieces: Vec<String> = vec![String::new()];
    let mut chars = extension.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let last = pieces.last_mut()?;
                last.push('\\');
                if let Some(n) = chars.next() {
                    last.push(n);
                }
            }
            '=' => pieces.push(String::new()),
            c => pieces.last_mut()?.push(c),
        }
    }
    let mut pairs = Vec::new();
    let mut key = pieces.first()?.clone();
    for (i, piece) in pieces.iter().enumerate().skip(1) {
        let (value, next_key) = if i + 1 == pieces.len() {
            (piece.as_str(), "")
        } else {
            match piece.rfind(' ') {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None => ("", piece.as_str()),
            }
        };
        pairs.push((key, cef_value(value)));
        key = next_key.to_owned();
    }
    Some((header, pairs))
}

fn cef_value(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(e @ ('\\' | '=')) => out.push(e),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_reference_reads_design_examples() {
        let names = |n: &str| (n == "user").then_some(3);
        let p = parse_template(r"$2\$1", 3, names).unwrap();
        let groups = ["alice@corp.example.test", "alice", "corp"];
        assert_eq!(
            render_template(&p, |g| groups.get(g).copied()),
            r"corp\alice"
        );
        assert_eq!(parse_template("$10", 3, names), None);
        assert_eq!(
            parse_template("${1}0$$$x$", 3, names).unwrap(),
            [
                TemplatePiece::Group(1),
                TemplatePiece::Literal("0$$x$".into())
            ]
        );
        assert_eq!(parse_template("${user}", 4, names).unwrap().len(), 1);
        assert_eq!(parse_template("${", 3, names), None);
        assert_eq!(parse_template("${}", 3, names), None);
        assert_eq!(parse_template("$99999999999999999999999", 3, names), None);
        assert_eq!(
            parse_template("$0001", 3, names).unwrap(),
            [TemplatePiece::Group(1)]
        );
    }

    #[test]
    fn filter_and_form_references() {
        assert_eq!(unescape_filter_value(r"a\2ab").unwrap(), b"a*b");
        assert_eq!(unescape_filter_value("a*"), None);
        assert_eq!(unescape_filter_value(r"\2"), None);
        assert_eq!(form_decode("a+b%2Fc").unwrap(), "a b/c");
        assert_eq!(form_decode("%4"), Err(FormError::Escape));
        assert_eq!(form_decode("%FF"), Err(FormError::Utf8));
        assert_eq!(form_decode(&form_encode("é &=+%")).unwrap(), "é &=+%");
        let f = parse_filter(r"(&(objectClass=user)(cn=a\2a))").unwrap();
        let and = as_and(&f).unwrap();
        assert_eq!(as_equality(&and[1]).unwrap(), (&b"cn"[..], &b"a*"[..]));
    }

    #[test]
    fn cef_reference_reads_the_standards_examples() {
        let (h, ext) = cef_reference(
            r"CEF:0|sec\|urity|threat\\manager|1.0|100|name|10|src=10.0.0.1 act=blocked a \= b msg=two\nlines",
        )
        .unwrap();
        assert_eq!(h, ["0", "sec|urity", "threat\\manager", "1.0", "100", "name", "10"]);
        assert_eq!(
            ext,
            [
                ("src".to_owned(), "10.0.0.1".to_owned()),
                ("act".to_owned(), "blocked a = b".to_owned()),
                ("msg".to_owned(), "two\nlines".to_owned()),
            ]
        );
    }

    #[test]
    fn fields_round_trip() {
        let data = join_fields([Some("a"), None, Some(""), Some("é")]);
        assert_eq!(
            fields(&data),
            [
                Some("a".into()),
                None,
                Some(String::new()),
                Some("é".into())
            ]
        );
    }
}
