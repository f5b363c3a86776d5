//! ArcSight Common Event Format (CEF), version 0: the writer of [`super::Event`]s, and a
//! reader that parses a line back (the tests and the fuzz target check one against the other).
//!
//! A line is `CEF:0|Device Vendor|Device Product|Device Version|Device Event Class ID|Name|
//! Severity|Extension`. Escaping follows the standard's character-encoding rules (Micro
//! Focus, *Implementing ArcSight Common Event Format (CEF)*, the CEF Implementation Standard
//! of the ArcSight SmartConnectors 8.3 documentation,
//! <https://www.microfocus.com/documentation/arcsight/arcsight-smartconnectors-8.3/cef-implementation-standard/>;
//! the same rules as restated in Forcepoint's SIEM integration guide, "SIEM integration
//! formats", and implemented by rsyslog's `tocef()` and `cef_ext_escape()`):
//!
//! - in the header, a pipe is `\|` and a backslash `\\`; nothing else is escaped there, and
//!   the header may not span lines;
//! - in an extension value, a backslash is `\\`, an equals sign `\=`, and a newline or
//!   carriage return `\n` / `\r` (multi-line values are allowed only there); a pipe is not
//!   escaped; spaces are literal;
//! - extension keys are fixed words of the dictionary (`rt`, `suser`, `duser`, `src`, `act`,
//!   `outcome`, `cs1Label`/`cs1` …, `cnt`, `msg`, `externalId`, `cat`).
//!
//! Other control characters have no escape in the standard; warden writes them in the
//! visible form its logs use (`\t`, `\u{1b}`, [`crate::base::escape::push_control`]), whose
//! backslash is itself escaped, so a reader gets the text `\u{1b}`, never the character — as
//! it does for CR and LF in a header, which cannot hold them.

use std::fmt::Write;

use super::event::Event;
use crate::base::escape::push_control;
use crate::base::json::escape_raw_controls;

/// What the CEF header says about warden and the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub vendor: String,
    pub product: String,
    pub version: String,
    pub signature: String,
    pub name: String,
    pub severity: u8,
}

/// Writes `header` and `extensions` as one CEF line (no line end).
pub fn write_line(out: &mut String, header: &Header, extensions: &[(&str, &str)]) {
    out.push_str("CEF:0|");
    for field in [
        &header.vendor,
        &header.product,
        &header.version,
        &header.signature,
        &header.name,
    ] {
        push_header_field(out, field);
        out.push('|');
    }
    let _ = write!(out, "{}|", header.severity);
    for (i, (key, value)) in extensions.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        push_extension_value(out, value);
    }
}

fn push_header_field(out: &mut String, field: &str) {
    for c in field.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => push_visible(out, c),
            c => out.push(c),
        }
    }
}

fn push_extension_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => push_visible(out, c),
            c => out.push(c),
        }
    }
}

/// A control character as visible text, its backslash escaped as CEF requires.
fn push_visible(out: &mut String, c: char) {
    let mut visible = String::new();
    push_control(&mut visible, c);
    out.push_str(&visible.replace('\\', "\\\\"));
}

/// The CEF line of `event`: `vendor` is the configured Device Vendor, the product `warden`
/// and its version this build's.
pub fn encode(event: &Event, vendor: &str) -> String {
    let header = Header {
        vendor: vendor.to_owned(),
        product: "warden".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        signature: event.signature.clone(),
        name: event.name.to_owned(),
        severity: event.severity.cef(),
    };
    let rt = event.at_ms.to_string();
    let count = event.count.map(|c| c.to_string());
    let (_, _, _, class) = event.activity.class();
    let (_, activity) = event.activity.activity();
    let detail = (!event.detail.is_empty())
        .then(|| escape_raw_controls(serde_json::Value::Object(event.detail.clone()).to_string()));
    let (src, spt) = event
        .source
        .as_deref()
        .map(split_address)
        .unwrap_or_default();
    let mut ext: Vec<(&str, &str)> = vec![
        ("rt", &rt),
        ("externalId", &event.uid),
        ("cat", class),
        ("act", activity),
        ("outcome", if event.success { "success" } else { "failure" }),
    ];
    let optional = [
        ("suser", event.actor.as_deref()),
        ("duser", event.user.as_deref()),
        ("src", src),
        ("spt", spt),
        // A source that is not an address says how the action came (`cli`, `expiry`).
        ("sproc", event.source.as_deref().filter(|_| src.is_none())),
        ("cnt", count.as_deref()),
    ];
    ext.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    let labelled = [
        ("cs1Label", "cs1", "target", event.target.as_deref()),
        ("cs2Label", "cs2", "incident", event.incident.as_deref()),
        ("cs3Label", "cs3", "policy", event.policy.as_deref()),
        ("cs4Label", "cs4", "reason", event.reason.as_deref()),
        ("cs5Label", "cs5", "service", event.service.as_deref()),
        ("cs6Label", "cs6", "detail", detail.as_deref()),
    ];
    for (label_key, key, label, value) in labelled {
        if let Some(v) = value {
            ext.push((label_key, label));
            ext.push((key, v));
        }
    }
    ext.push(("msg", &event.message));
    let mut out = String::with_capacity(256);
    write_line(&mut out, &header, &ext);
    out
}

/// `ip` or `ip:port` (`[v6]:port`) split into address and port; `(None, None)` when the
/// text is not an address.
fn split_address(text: &str) -> (Option<&str>, Option<&str>) {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return (Some(text), None);
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>()
        && let Some((host, port)) = text.rsplit_once(':')
    {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if addr.ip().to_string() == host || host.parse::<std::net::IpAddr>().is_ok() {
            return (Some(host), Some(port));
        }
    }
    (None, None)
}

/// A CEF line read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub version: String,
    pub header: Header,
    /// The severity field as written (a number for warden's lines).
    pub severity: String,
    pub extensions: Vec<(String, String)>,
}

impl Parsed {
    /// The value of extension `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the custom string whose label is `label` (`cs3` when `cs3Label=policy`).
    pub fn labelled(&self, label: &str) -> Option<&str> {
        let (label_key, _) = self
            .extensions
            .iter()
            .find(|(k, v)| k.ends_with("Label") && v == label)?;
        self.get(label_key.trim_end_matches("Label"))
    }
}

/// Why a line is not CEF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CefError {
    #[error("no \"CEF:\" prefix")]
    NoPrefix,
    #[error("the header has {0} fields; CEF has 7 before the extension")]
    ShortHeader(usize),
    #[error("extension text before the first key: {0:?}")]
    NoKey(String),
}

/// Parses one CEF line (anything before `CEF:` is ignored, as a syslog prefix would be).
pub fn parse(line: &str) -> Result<Parsed, CefError> {
    let start = line.find("CEF:").ok_or(CefError::NoPrefix)?;
    let rest = &line[start + 4..];
    let mut fields = Vec::with_capacity(7);
    let mut field = String::new();
    let mut chars = rest.char_indices();
    let mut extension_at = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('|' | '\\'))) => field.push(e),
                Some((_, other)) => {
                    field.push('\\');
                    field.push(other);
                }
                None => field.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut field));
                if fields.len() == 7 {
                    extension_at = Some(i + 1);
                    break;
                }
            }
            c => field.push(c),
        }
    }
    let Some(at) = extension_at else {
        return Err(CefError::ShortHeader(fields.len()));
    };
    let mut f = fields.into_iter();
    let mut next = || f.next().unwrap_or_default();
    let version = next();
    let (vendor, product, device_version, signature, name, severity) =
        (next(), next(), next(), next(), next(), next());
    let extensions = parse_extension(&rest[at..])?;
    Ok(Parsed {
        version,
        header: Header {
            vendor,
            product,
            version: device_version,
            signature,
            name,
            severity: severity.parse().unwrap_or(0),
        },
        severity,
        extensions,
    })
}

/// Splits `k1=v1 k2=v with spaces k3=v3` at the unescaped `=` signs: a key is the word
/// before one, its value everything up to the space before the next key.
fn parse_extension(text: &str) -> Result<Vec<(String, String)>, CefError> {
    let bytes = text.as_bytes();
    let mut equals = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' => {
                equals.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    // Each key starts after the last space before its `=` (or at the start).
    let mut keys: Vec<(usize, usize)> = Vec::with_capacity(equals.len());
    let mut floor = 0;
    for &eq in &equals {
        let start = text[floor..eq].rfind(' ').map_or(floor, |s| floor + s + 1);
        keys.push((start, eq));
        floor = eq + 1;
    }
    if let Some(&(first, _)) = keys.first()
        && !text[..first].trim().is_empty()
    {
        return Err(CefError::NoKey(text[..first].to_owned()));
    }
    if keys.is_empty() && !text.trim().is_empty() {
        return Err(CefError::NoKey(text.to_owned()));
    }
    let mut out = Vec::with_capacity(keys.len());
    for (n, &(start, eq)) in keys.iter().enumerate() {
        let end = keys
            .get(n + 1)
            .map_or(text.len(), |&(next, _)| next.saturating_sub(1).max(eq + 1));
        out.push((
            text[start..eq].to_owned(),
            unescape_value(&text[eq + 1..end]),
        ));
    }
    Ok(out)
}

fn unescape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('=') => out.push('='),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// What a header field reads back as: control characters in their visible form.
pub fn header_as_read(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        if c.is_control() {
            push_control(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// What an extension value reads back as: CR and LF kept, other control characters in their
/// visible form.
pub fn value_as_read(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() && c != '\n' && c != '\r' {
            push_control(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header(name: &str) -> Header {
        Header {
            vendor: "Acme|Corp\\".into(),
            product: "warden".into(),
            version: "1.0".into(),
            signature: "lists.add".into(),
            name: name.into(),
            severity: 8,
        }
    }

    #[test]
    fn escapes_as_the_standard_says() {
        let mut line = String::new();
        write_line(
            &mut line,
            &header("a|b=c"),
            &[("duser", "corp\\a|b=c"), ("msg", "one\ntwo\r")],
        );
        assert_eq!(
            line,
            "CEF:0|Acme\\|Corp\\\\|warden|1.0|lists.add|a\\|b=c|8|duser=corp\\\\a|b\\=c msg=one\\ntwo\\r"
        );
    }

    #[test]
    fn round_trips_hostile_text() {
        let values = [
            "plain",
            "with space",
            "trailing space ",
            " leading",
            "a=b",
            "x\\",
            "\\=",
            "key=value other=thing",
            "multi\nline\r\n",
            "pipe|here",
            "",
            "tab\tand\u{1b}esc",
            "ends with key k=",
        ];
        for v in values {
            for name in ["n|a\\me", "new\nline"] {
                let mut line = String::new();
                write_line(
                    &mut line,
                    &header(name),
                    &[("cs1", v), ("cs1Label", "target"), ("msg", v)],
                );
                let p = parse(&line).unwrap();
                assert_eq!(p.header.name, header_as_read(name), "{line}");
                assert_eq!(p.header.vendor, "Acme|Corp\\");
                assert_eq!(p.get("cs1"), Some(value_as_read(v).as_str()), "{line}");
                assert_eq!(p.get("msg"), Some(value_as_read(v).as_str()), "{line}");
                assert_eq!(p.labelled("target"), Some(value_as_read(v).as_str()));
            }
        }
    }

    #[test]
    fn reads_a_syslog_prefixed_line_and_refuses_non_cef() {
        let p = parse("<84>1 - host warden - x - CEF:0|v|p|1|s|n|3|a=1 b=two words").unwrap();
        assert_eq!(p.get("b"), Some("two words"));
        assert_eq!(parse("no cef"), Err(CefError::NoPrefix));
        assert_eq!(parse("CEF:0|a|b"), Err(CefError::ShortHeader(2)));
    }

    #[test]
    fn addresses_split_into_src_and_spt() {
        assert_eq!(split_address("10.0.0.1"), (Some("10.0.0.1"), None));
        assert_eq!(
            split_address("10.0.0.1:5432"),
            (Some("10.0.0.1"), Some("5432"))
        );
        assert_eq!(split_address("[::1]:80"), (Some("::1"), Some("80")));
        assert_eq!(split_address("cli"), (None, None));
    }
}
