//! JSON written by hand on the hot paths (decisions, data set records): string escaping.

/// Appends `s` as a JSON string literal.
pub fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `json` (a JSON text as serde_json writes it) with the control characters serde_json
/// leaves raw — DEL and the C1 controls, NEL among them — written as `\uXXXX`. Outside
/// strings a JSON text holds none, so the escape stands for the same character: the value is
/// unchanged, and no log line or syslog message carries a raw control character a reader
/// might take for a line end.
pub fn escape_raw_controls(json: String) -> String {
    if !json.chars().any(char::is_control) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
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

    #[test]
    fn raw_controls_become_escapes_with_the_same_value() {
        let v = serde_json::json!({ "a": "nel\u{85}del\u{7f}é\n" });
        let text = escape_raw_controls(v.to_string());
        assert!(!text.chars().any(char::is_control), "{text}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
    }
}
