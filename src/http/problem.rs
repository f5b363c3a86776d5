//! RFC 9457 problem details: every error the gateway answers is `application/problem+json`
//! with a title, the status and a detail a person can act on; the Imperva-style data routes
//! add the matching `IMP-…` code. On warden's copy of the MX Open API's paths
//! (`/SecureSphere/api/v1/…`, [`MX_API`]) the same problem is answered as the MX answers one
//! ([`Problem::into_mx_response`]), so a script written for an MX reads warden's errors.

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};

use super::Response;
use crate::config::ConfigError;
use crate::model::dataset::DataSetError;
use crate::operations::OperationError;
use crate::sync::imperva::{ImpCode, imp_error_body};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The prefix of the MX Open API paths warden serves: a request there is answered in the MX's
/// shape, errors included.
pub const MX_API: &str = "/SecureSphere/api/v1/";

/// A problem as the route of `path` answers it: in the MX's shape on the MX's paths,
/// problem+json everywhere else.
pub fn render(path: &str, problem: Problem) -> Response {
    if path.starts_with(MX_API) {
        problem.into_mx_response()
    } else {
        problem.into_response()
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    /// Imperva's error code, for the Imperva-style data routes.
    pub imp_code: Option<ImpCode>,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
    /// Every problem of a rejected configuration, each with its key path.
    pub errors: Vec<ConfigError>,
    /// Extension members (RFC 9457 §3.2) added to the body, in order.
    pub extensions: Vec<(&'static str, serde_json::Value)>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            detail: detail.into(),
            imp_code: None,
            allow: None,
            errors: Vec::new(),
            extensions: Vec::new(),
        }
    }

    /// Adds an extension member to the body.
    pub fn with(mut self, name: &'static str, value: serde_json::Value) -> Problem {
        self.extensions.push((name, value));
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    pub fn imp(mut self, code: ImpCode) -> Problem {
        self.imp_code = Some(code);
        self
    }

    /// The answer an MX gives: `{"errors":[{"error-code","description"}]}`, HTTP 406 for what
    /// the caller must change (mx-toolbox reads a 406 as the MX refusing), 401 with IMP-10063
    /// for no valid credentials (as the reference pages document), a failure of warden's own
    /// with its status. Without a more precise code the error is IMP-10007, "unable to perform
    /// the operation"; the description is warden's detail.
    pub fn into_mx_response(self) -> Response {
        let (status, fallback) = match self.status {
            StatusCode::UNAUTHORIZED => (StatusCode::UNAUTHORIZED, ImpCode::NotLoggedIn),
            s if s.is_client_error() => (StatusCode::NOT_ACCEPTABLE, ImpCode::NotPerformed),
            s => (s, ImpCode::NotPerformed),
        };
        let code = self.imp_code.unwrap_or(fallback);
        let body = imp_error_body(code, &self.detail);
        let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }

    pub fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(code) = self.imp_code {
            body["imp_code"] = serde_json::Value::from(code.as_str());
        }
        if !self.errors.is_empty() {
            body["errors"] = self
                .errors
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "path": e.path.to_string(),
                        "line": e.line,
                        "message": e.message,
                    })
                })
                .collect();
        }
        for (name, value) in self.extensions {
            body[name] = value;
        }
        let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
        resp
    }
}

/// The one mapping from what an operation says to what HTTP answers: the caller's mistakes are
/// 4xx with the operation's own words, plus where to look; a failing directory or MX is 502;
/// warden's own failures are 500.
impl From<OperationError> for Problem {
    fn from(e: OperationError) -> Problem {
        let detail = e.to_string();
        match e {
            OperationError::Invalid { .. } => Problem::bad_request(detail),
            OperationError::Records(r) => {
                let (p, code) = match r {
                    DataSetError::UnknownColumn(_) => {
                        (Problem::bad_request(detail), Some(ImpCode::UnknownColumn))
                    }
                    DataSetError::MissingKey(_) => {
                        (Problem::bad_request(detail), Some(ImpCode::KeyMissing))
                    }
                    DataSetError::DuplicateKey(_) => {
                        (Problem::bad_request(detail), Some(ImpCode::DuplicateKey))
                    }
                    DataSetError::MultiValuedKey { .. } => {
                        (Problem::bad_request(detail), Some(ImpCode::MultiValuedKey))
                    }
                    // The request names a row that is not there now: the state, not the
                    // request's shape, is what refuses it.
                    DataSetError::KeyToDeleteMissing(_) => {
                        (Problem::conflict(detail), Some(ImpCode::KeyToDeleteMissing))
                    }
                    _ => (Problem::bad_request(detail), None),
                };
                match code {
                    Some(code) => p.imp(code),
                    None => p,
                }
            }
            OperationError::NoSuchList(_) => {
                Problem::not_found(format!("{detail}; GET /v1/lists shows the lists"))
            }
            OperationError::NoSuchDataSet(_) => {
                Problem::not_found(format!("{detail}; GET /v1/data-sets lists them"))
                    .imp(ImpCode::NoSuchDataSet)
            }
            OperationError::NoSuchDirectory(_) => {
                Problem::not_found(format!("{detail}; GET /v1/directories lists them"))
            }
            OperationError::NoSuchDatabase(_) => {
                Problem::not_found(format!("{detail}; GET /v1/databases lists them"))
            }
            OperationError::NoSuchIncident(_) | OperationError::NoSuchKey(_) => {
                Problem::not_found(detail)
            }
            OperationError::NoSuchReceipt(_) => Problem::not_found(format!(
                "{detail}; a receipt id is what POST /v1/contain or /v1/release answered \
                 (receipts beyond the newest {} are pruned)",
                crate::store::receipts::RECEIPTS_KEPT
            )),
            OperationError::Conflict(_) => Problem::conflict(detail),
            OperationError::Rejected { detail, errors } => {
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{detail}; nothing was applied and the running configuration stays"),
                );
                p.errors = errors;
                p
            }
            OperationError::Upstream(_) => Problem::new(StatusCode::BAD_GATEWAY, detail),
            OperationError::Store(e) if e.is_unavailable() => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{detail}; nothing was written. The store is unavailable: decisions continue \
                     from the last snapshot; retry once GET /v1/status shows the store up"
                ),
            ),
            OperationError::Store(_) | OperationError::Warden(_) | OperationError::Internal(_) => {
                Problem::internal(detail)
            }
        }
    }
}

/// A struct read only from a JSON object. serde's derive also reads a struct from an array
/// of its fields in order; [`parse_json`] reads every body through this, and a struct nested
/// inside one can be too (`{"requests": [["orders", "corp\\alice"]]}` is an error naming the
/// item, not a request).
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Visit(std::marker::PhantomData))
            .map(Object)
    }
}

/// Parses a JSON body into `T`; the error names the field that failed (`requests[3].service`).
pub fn parse_json<'de, T: serde::Deserialize<'de>>(body: &'de [u8]) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::bad_request(
            "the request needs a JSON body (Content-Type: application/json)",
        ));
    }
    // Every body of this API is an object: read through `Object`, so an array of the fields in
    // order (`[[]]` as `{"requests":[]}`), which no client means, is refused as at any depth.
    let mut de = serde_json::Deserializer::from_slice(body);
    let Object(value) = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            Problem::bad_request(format!("malformed JSON body: {inner}"))
        } else {
            Problem::bad_request(format!("field `{path}`: {inner}"))
        }
    })?;
    // One JSON value and nothing after it (whitespace aside): trailing bytes are a client bug
    // or an attempt to smuggle a second document, not something to ignore.
    de.end().map_err(|e| {
        Problem::bad_request(format!(
            "malformed JSON body: data after the JSON value: {e}"
        ))
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        requests: Vec<u8>,
    }

    #[test]
    fn trailing_data_after_the_json_value_is_refused() {
        // Found by the decision_batch fuzz target: `{"requests":[]}r` was accepted.
        let err = parse_json::<Body>(br#"{"requests":[]}r"#).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(
            err.detail.contains("after the JSON value"),
            "{}",
            err.detail
        );
        assert!(parse_json::<Body>(br#"{"requests":[]}{"requests":[1]}"#).is_err());
        assert!(parse_json::<Body>(b"{\"requests\":[]}\n ").is_ok());
        // Found next: a struct read from an array of its fields.
        let err = parse_json::<Body>(b"[[]]").unwrap_err();
        assert!(err.detail.contains("JSON object"), "{}", err.detail);
        assert!(parse_json::<Body>(b" \n{\"requests\":[]}").is_ok());
        assert!(parse_json::<Body>(b"null").is_err());
        let err = parse_json::<Body>(b" \n").unwrap_err();
        assert!(err.detail.contains("needs a JSON body"), "{}", err.detail);
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        service: String,
        #[serde(default)]
        db_user: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Items {
        requests: Vec<Object<Item>>,
    }

    #[test]
    fn nested_structs_are_read_from_objects_only() {
        let ok =
            parse_json::<Items>(br#"{"requests":[{"service":"orders","db_user":"a"}]}"#).unwrap();
        assert_eq!(ok.requests[0].0.service, "orders");
        assert_eq!(ok.requests[0].0.db_user.as_deref(), Some("a"));
        // Positional fields, which serde's derive would read as the struct.
        let err = parse_json::<Items>(br#"{"requests":[["orders","a"]]}"#).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.detail.contains("requests[0]"), "{}", err.detail);
        assert!(err.detail.contains("JSON object"), "{}", err.detail);
        // Inside the object, unknown fields and wrong types still name themselves.
        let err = parse_json::<Items>(br#"{"requests":[{"service":"o","x":1}]}"#).unwrap_err();
        assert!(err.detail.contains("`x`"), "{}", err.detail);
        let err = parse_json::<Items>(br#"{"requests":[{"service":7}]}"#).unwrap_err();
        assert!(err.detail.contains("requests[0]"), "{}", err.detail);
    }
}
