//! Query strings: percent-decoding without allocation when nothing is escaped, and the
//! decision query (`service`, `db_user` (repeatable), `os_user`, `source_app`, `client_ip`).

use std::borrow::Cow;

use smallvec::SmallVec;

use crate::decide::Request;

/// The most `db_user` values one request may carry.
pub const MAX_DB_USERS: usize = 16;

/// A query string that cannot be read; the message says which parameter and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("parameter {param:?}: invalid percent-encoding")]
    Escape { param: String },
    #[error("parameter {param:?}: not valid UTF-8 once decoded")]
    Utf8 { param: String },
    #[error(
        "unknown parameter {0:?}; expected service, db_user, os_user, source_app, client_ip, \
         min_revision"
    )]
    Unknown(String),
    #[error("parameter \"min_revision\": must be a revision (a whole number ≥ 0), not {0:?}")]
    Revision(String),
    #[error("parameter {0:?} given more than once")]
    Repeated(&'static str),
    #[error("missing parameter \"service\" (the database service the session is for)")]
    MissingService,
    #[error("too many db_user values; at most {MAX_DB_USERS}")]
    TooManyUsers,
}

/// Why a component could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Escape,
    Utf8,
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
pub fn decode(raw: &str) -> Result<Cow<'_, str>, DecodeError> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |j: usize| bytes.get(j).and_then(|b| (*b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(DecodeError::Escape);
                };
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| DecodeError::Utf8)
}

fn decode_param<'a>(raw: &'a str, param: &str) -> Result<Cow<'a, str>, QueryError> {
    decode(raw).map_err(|e| match e {
        DecodeError::Escape => QueryError::Escape {
            param: param.to_string(),
        },
        DecodeError::Utf8 => QueryError::Utf8 {
            param: param.to_string(),
        },
    })
}

/// Decoded decision parameters, borrowing from the query string where possible.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DecisionQuery<'a> {
    pub service: Option<Cow<'a, str>>,
    pub db_user: SmallVec<[Cow<'a, str>; 2]>,
    pub os_user: Option<Cow<'a, str>>,
    pub source_app: Option<Cow<'a, str>>,
    pub client_ip: Option<Cow<'a, str>>,
}

impl<'a> DecisionQuery<'a> {
    /// Parses a query string. Empty values count as absent.
    pub fn parse(query: &'a str) -> Result<DecisionQuery<'a>, QueryError> {
        let mut q = DecisionQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode_param(k, k)?;
            let value = decode_param(v, &key)?;
            if value.is_empty() {
                continue;
            }
            let slot = match &*key {
                "db_user" => {
                    if q.db_user.len() == MAX_DB_USERS {
                        return Err(QueryError::TooManyUsers);
                    }
                    q.db_user.push(value);
                    continue;
                }
                "service" => (&mut q.service, "service"),
                "os_user" => (&mut q.os_user, "os_user"),
                "source_app" => (&mut q.source_app, "source_app"),
                "client_ip" => (&mut q.client_ip, "client_ip"),
                // Read (and checked) by `min_revision`, before the decision.
                "min_revision" => continue,
                _ => return Err(QueryError::Unknown(key.into_owned())),
            };
            if slot.0.is_some() {
                return Err(QueryError::Repeated(slot.1));
            }
            *slot.0 = Some(value);
        }
        if q.service.is_none() {
            return Err(QueryError::MissingService);
        }
        Ok(q)
    }

    /// The `min_revision` a decision asks for (read-your-writes), if any.
    pub fn min_revision(query: &str) -> Result<Option<i64>, QueryError> {
        if !query.contains("min_revision") {
            return Ok(None);
        }
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if decode_param(k, k)? == "min_revision" {
                let value = decode_param(v, "min_revision")?;
                return value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(Some)
                    .ok_or_else(|| QueryError::Revision(value.into_owned()));
            }
        }
        Ok(None)
    }

    /// The engine request, borrowing from this query.
    pub fn request(&self) -> Request<'_> {
        Request {
            service: self.service.as_deref().unwrap_or(""),
            db_user: self.db_user.iter().map(|u| &**u).collect(),
            os_user: self.os_user.as_deref(),
            source_app: self.source_app.as_deref(),
            client_ip: self.client_ip.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decodes_without_allocating_when_plain() {
        assert!(matches!(decode("alice"), Ok(Cow::Borrowed("alice"))));
        assert_eq!(decode("CORP%5Calice").unwrap(), "CORP\\alice");
        assert_eq!(decode("a+b%20c").unwrap(), "a b c");
        assert_eq!(decode("%C3%96laf").unwrap(), "Ölaf");
        assert_eq!(decode("%zz"), Err(DecodeError::Escape));
        assert_eq!(decode("%4"), Err(DecodeError::Escape));
        assert_eq!(decode("%FF"), Err(DecodeError::Utf8));
    }

    #[test]
    fn parses_decision_queries() {
        let q = DecisionQuery::parse(
            "service=orders&db_user=CORP%5Calice&db_user=bob&client_ip=10.0.0.1",
        )
        .unwrap();
        let r = q.request();
        assert_eq!(r.service, "orders");
        assert_eq!(r.db_user.as_slice(), ["CORP\\alice", "bob"]);
        assert_eq!(r.client_ip, Some("10.0.0.1"));
        assert_eq!(
            DecisionQuery::parse("db_user=x"),
            Err(QueryError::MissingService)
        );
        assert_eq!(
            DecisionQuery::parse("service=a&dbuser=x"),
            Err(QueryError::Unknown("dbuser".into()))
        );
        assert_eq!(
            DecisionQuery::parse("service=a&service=b"),
            Err(QueryError::Repeated("service"))
        );
        assert!(matches!(
            DecisionQuery::parse("service=%FF"),
            Err(QueryError::Utf8 { .. })
        ));
        assert!(
            DecisionQuery::parse("service=a&db_user=&os_user=")
                .unwrap()
                .db_user
                .is_empty()
        );
    }
}
