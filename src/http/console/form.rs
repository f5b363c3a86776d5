//! Form bodies (`application/x-www-form-urlencoded`) as the console's pages post them: pairs in
//! order, a name given more than once kept every time (the checked users of a response).
//! Untrusted input: the body is already bounded by `max_body_bytes`; a pair that is not valid
//! percent-encoded UTF-8 refuses the whole form.

use super::super::query::decode;

/// Most pairs one form may carry.
pub const MAX_FIELDS: usize = 2000;

/// A form that cannot be read; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("form field {0:?} is not valid percent-encoded UTF-8")]
    Encoding(String),
    #[error("the form has more than {MAX_FIELDS} fields")]
    TooMany,
}

/// A parsed form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses a body (or a query string: the same syntax).
    pub fn parse(body: &[u8]) -> Result<Form, FormError> {
        let text = std::str::from_utf8(body).map_err(|_| FormError::Encoding(String::new()))?;
        let mut pairs = Vec::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            if pairs.len() == MAX_FIELDS {
                return Err(FormError::TooMany);
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(k).map_err(|_| FormError::Encoding(k.chars().take(40).collect()))?;
            let value = decode(v).map_err(|_| FormError::Encoding(name.to_string()))?;
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Form { pairs })
    }

    /// Every pair, decoded, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The first value of `name`, trimmed; `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// The first value of `name`, trimmed, or `None` when absent or blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        Some(self.get(name))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decodes_pairs_and_keeps_repeats() {
        let f =
            Form::parse(b"principal=corp%5Calice&reason=phish+kit&user=a&user=b&empty=").unwrap();
        assert_eq!(f.get("principal"), "corp\\alice");
        assert_eq!(f.get("reason"), "phish kit");
        assert_eq!(f.all("user"), vec!["a", "b"]);
        assert_eq!(f.optional("empty"), None);
        assert_eq!(f.get("missing"), "");
    }

    #[test]
    fn refuses_bad_escapes_and_too_many_fields() {
        assert!(matches!(Form::parse(b"a=%zz"), Err(FormError::Encoding(_))));
        assert!(matches!(Form::parse(b"a=%ff"), Err(FormError::Encoding(_))));
        let many = "a=1&".repeat(MAX_FIELDS + 1);
        assert_eq!(Form::parse(many.as_bytes()), Err(FormError::TooMany));
    }
}
