//! Escaping of untrusted strings before they reach an LDAP filter (RFC 4515)
//! or a DN attribute value (RFC 4514), and the matching unescaping of DN values; and of
//! control characters before untrusted text reaches a log or syslog line.

use std::borrow::Cow;

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, b: u8) {
    out.push('\\');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

/// Pushes the visible form of a control character: `\n`, `\r`, `\t`, else `\u{hex}`.
pub fn push_control(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
    }
}

/// Replaces control characters (CR, LF, ESC, NUL, C1 …) with their visible form so that
/// untrusted text — a principal, a service, a reason — written into a log or syslog line
/// cannot end that line and forge another, or drive a terminal. Borrows when there is none.
pub fn escape_control(value: &str) -> Cow<'_, str> {
    if !value.chars().any(char::is_control) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if c.is_control() {
            push_control(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Escapes a value for use inside an LDAP search filter assertion (RFC 4515 §3).
///
/// `*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`. Everything
/// else, non-ASCII UTF-8 included, is legal in a filter string and left alone, so
/// the result is always a single literal assertion value: `*)(objectClass=*`
/// cannot widen a filter into a wildcard or inject a clause.
///
/// Borrows when nothing needs escaping.
pub fn escape_filter_value(value: &str) -> Cow<'_, str> {
    let needs = |b: u8| matches!(b, b'*' | b'(' | b')' | b'\\' | 0);
    if !value.bytes().any(needs) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for ch in value.chars() {
        match u8::try_from(ch) {
            Ok(b) if needs(b) => push_hex(&mut out, b),
            _ => out.push(ch),
        }
    }
    Cow::Owned(out)
}

/// Escapes a string for use as an attribute value in an RDN (RFC 4514 §2.4).
///
/// * `,` `+` `"` `\` `<` `>` `;` `=` are backslash-escaped (`\,` …), the form
///   Active Directory itself returns;
/// * a leading space or `#` and a trailing space are backslash-escaped;
/// * NUL and other ASCII control characters become `\XX` hex pairs, so a value
///   never carries a raw newline into a log line or LDIF.
///
/// Borrows when nothing needs escaping. [`unescape_dn_value`] reverses it.
pub fn escape_dn_value(value: &str) -> Cow<'_, str> {
    let special = |c: char| matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=');
    let control = |c: char| c.is_ascii_control();
    let last = value.chars().count().saturating_sub(1);
    let needs = value.chars().enumerate().any(|(i, c)| {
        special(c) || control(c) || (i == 0 && (c == ' ' || c == '#')) || (i == last && c == ' ')
    });
    if !needs {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for (i, c) in value.chars().enumerate() {
        if control(c) {
            // ASCII control characters are single bytes.
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                push_hex(&mut out, b);
            }
        } else if special(c) || (i == 0 && (c == ' ' || c == '#')) || (i == last && c == ' ') {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Error from [`unescape_dn_value`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnescapeError {
    /// The value ends in a lone backslash.
    #[error("value ends with an unfinished escape")]
    TrailingBackslash,
    /// A backslash is followed by neither a special character nor two hex digits.
    #[error("invalid escape sequence at byte {0}")]
    BadEscape(usize),
    /// Hex escapes decode to bytes that are not UTF-8.
    #[error("escaped bytes are not valid UTF-8")]
    InvalidUtf8,
}

/// Reverses [`escape_dn_value`] (and any other RFC 4514 escaping: `\XX` hex
/// pairs, which may spell multi-byte UTF-8, and `\` before any printable
/// ASCII character). Does not trim.
pub fn unescape_dn_value(value: &str) -> Result<Cow<'_, str>, UnescapeError> {
    if !value.contains('\\') {
        return Ok(Cow::Borrowed(value));
    }
    Ok(Cow::Owned(
        unescape_marked(value)?
            .into_iter()
            .map(|(c, _)| c)
            .collect(),
    ))
}

/// Unescapes `value` and returns each character with whether it was escaped;
/// DN parsing needs that to trim only unescaped edge whitespace.
pub(crate) fn unescape_marked(value: &str) -> Result<Vec<(char, bool)>, UnescapeError> {
    let bytes = value.as_bytes();
    let mut out: Vec<(char, bool)> = Vec::with_capacity(value.len());
    // Hex-escaped bytes are collected and decoded as UTF-8 together, since a
    // non-ASCII character may be written as several `\XX` pairs.
    let mut pending: Vec<u8> = Vec::new();
    let flush = |pending: &mut Vec<u8>, out: &mut Vec<(char, bool)>| -> Result<(), UnescapeError> {
        if pending.is_empty() {
            return Ok(());
        }
        let s = std::str::from_utf8(pending).map_err(|_| UnescapeError::InvalidUtf8)?;
        out.extend(s.chars().map(|c| (c, true)));
        pending.clear();
        Ok(())
    };
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let next = *bytes.get(i + 1).ok_or(UnescapeError::TrailingBackslash)?;
            if let (Some(h), Some(l)) = (hex_val(next), bytes.get(i + 2).copied().and_then(hex_val))
            {
                pending.push((h << 4) | l);
                i += 3;
                continue;
            }
            flush(&mut pending, &mut out)?;
            if next.is_ascii() && !next.is_ascii_control() {
                out.push((char::from(next), true));
                i += 2;
                continue;
            }
            return Err(UnescapeError::BadEscape(i));
        }
        flush(&mut pending, &mut out)?;
        // `i` is always on a char boundary here: escapes consume ASCII only.
        let ch = value[i..]
            .chars()
            .next()
            .ok_or(UnescapeError::BadEscape(i))?;
        out.push((ch, false));
        i += ch.len_utf8();
    }
    flush(&mut pending, &mut out)?;
    Ok(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_and_plain_text_borrows() {
        assert!(matches!(escape_control("corp\\alice"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("eve\r\n<14>1 forged\t\u{1b}[2J\u{0}\u{85}"),
            "eve\\r\\n<14>1 forged\\t\\u{1b}[2J\\u{0}\\u{85}"
        );
        assert!(!escape_control("a\nb").contains('\n'));
    }

    #[test]
    fn filter_plain_values_borrow() {
        assert!(matches!(
            escape_filter_value("alice"),
            Cow::Borrowed("alice")
        ));
        assert!(matches!(
            escape_filter_value("Müller, Jörg"),
            Cow::Borrowed(_)
        ));
        assert_eq!(escape_filter_value(""), "");
    }

    #[test]
    fn filter_specials() {
        assert_eq!(escape_filter_value("*"), "\\2a");
        assert_eq!(escape_filter_value("("), "\\28");
        assert_eq!(escape_filter_value(")"), "\\29");
        assert_eq!(escape_filter_value("\\"), "\\5c");
        assert_eq!(escape_filter_value("\0"), "\\00");
        assert_eq!(escape_filter_value("a\0b"), "a\\00b");
        assert_eq!(escape_filter_value("é*ü"), "é\\2aü");
    }

    #[test]
    fn filter_hostile() {
        let esc = escape_filter_value("*)(objectClass=*");
        assert_eq!(esc, "\\2a\\29\\28objectClass=\\2a");
        assert!(!esc.contains(['*', '(', ')']));
        assert_eq!(escape_filter_value("a,b=c"), "a,b=c");
        assert_eq!(
            escape_filter_value("admin)(|(sAMAccountName=*"),
            "admin\\29\\28|\\28sAMAccountName=\\2a"
        );
        // An already escaped string is escaped again, never passed through.
        assert_eq!(escape_filter_value("\\2a"), "\\5c2a");
    }

    #[test]
    fn filter_escaped_value_parses_as_one_equality() {
        // ldap3's own filter parser accepts the escaped value as a plain
        // equality assertion.
        for hostile in ["*)(objectClass=*", "a,b=c", "x\0y", "\\", "((", "*"] {
            let f = format!("(sAMAccountName={})", escape_filter_value(hostile));
            assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
        }
    }

    #[test]
    fn dn_plain_values_borrow() {
        assert!(matches!(escape_dn_value("John Smith"), Cow::Borrowed(_)));
        assert!(matches!(escape_dn_value("a#b"), Cow::Borrowed(_)));
        assert_eq!(escape_dn_value(""), "");
    }

    #[test]
    fn dn_specials() {
        assert_eq!(escape_dn_value("Smith, John"), "Smith\\, John");
        assert_eq!(escape_dn_value("a,b=c"), "a\\,b\\=c");
        assert_eq!(escape_dn_value("a+b"), "a\\+b");
        assert_eq!(escape_dn_value("\"q\""), "\\\"q\\\"");
        assert_eq!(escape_dn_value("<>;\\"), "\\<\\>\\;\\\\");
        assert_eq!(escape_dn_value(" lead"), "\\ lead");
        assert_eq!(escape_dn_value("#lead"), "\\#lead");
        assert_eq!(escape_dn_value("trail "), "trail\\ ");
        assert_eq!(escape_dn_value(" "), "\\ ");
        assert_eq!(escape_dn_value("  two"), "\\  two");
        assert_eq!(escape_dn_value("a\0b"), "a\\00b");
        assert_eq!(escape_dn_value("line\nbreak"), "line\\0abreak");
        assert_eq!(escape_dn_value("*)(objectClass=*"), "*)(objectClass\\=*");
    }

    #[test]
    fn dn_round_trip() {
        let cases = [
            "",
            "plain",
            "Smith, John",
            "a,b=c",
            " leading and trailing ",
            "  ",
            "#hash",
            "in#side",
            "\\",
            "\\\\",
            "a\0b",
            "tab\there",
            "Ünïcødé + ümläut; <x>",
            "*)(objectClass=*",
            "\"quoted\"",
            "trailing\\",
        ];
        for c in cases {
            let esc = escape_dn_value(c);
            assert_eq!(unescape_dn_value(&esc).as_deref(), Ok(c), "escaped: {esc}");
        }
    }

    #[test]
    fn dn_unescape_hex_and_utf8() {
        assert_eq!(unescape_dn_value("a\\2cb").as_deref(), Ok("a,b"));
        assert_eq!(unescape_dn_value("a\\2Cb").as_deref(), Ok("a,b"));
        assert_eq!(unescape_dn_value("J\\C3\\B6rg").as_deref(), Ok("Jörg"));
        assert_eq!(unescape_dn_value("\\ x\\ ").as_deref(), Ok(" x "));
        assert_eq!(
            unescape_dn_value("x\\"),
            Err(UnescapeError::TrailingBackslash)
        );
        assert_eq!(unescape_dn_value("\\C3"), Err(UnescapeError::InvalidUtf8));
        assert_eq!(
            unescape_dn_value("a\\\u{7}"),
            Err(UnescapeError::BadEscape(1))
        );
    }
}
