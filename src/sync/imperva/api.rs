//! The MX Open API as warden speaks it, with the reference pages each rule comes from
//! (Imperva's v13.6 API reference, copied page by page in `akshinmustafayev/SecureSpherePS`
//! `Documentation/MD/`, cited here by page title; the MX Open API swagger documents of v12,
//! v13.5 and v14 in `imperva/imperva-web-api-composer` `src/assets/ses/`; and the clients
//! that call a real MX, `imperva/imperva-sdk-python` and `imperva/mx-toolbox`):
//!
//! - the IMP codes a lookup data set request can be refused with ([`ImpCode`]) and the error
//!   body that carries them ([`imp_error`]);
//! - the session: `POST /auth/session` with Basic auth answers `{"session-id": …}`
//!   (swagger `SessionIdDTO`), sent back verbatim as the `Cookie` header (the SDK's
//!   `MxConnection`, mx-toolbox's `ss.py`); a call without a live session is 401 IMP-10063
//!   ("Set-SecureSphereAdminFirstTimePassword": "User is not logged in due to missing login
//!   request or wrong login credentials");
//! - a data set's columns ([`parse_columns`]: `key` a JSON boolean in the swagger's
//!   `DatasetSingleColumnDTO`, the strings `"true"`/`"false"` in the sample of
//!   "Get-SecureSphereLookupDataSetColumns");
//! - its records read a page at a time (`from`/`to`, 1-based, "Get-SecureSphereLookupDataSetRecords")
//!   and written in bounded requests ([`Batches`]).

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;

use super::MxError;
use crate::base::secret::SecretSource;
use crate::outbound::{Endpoint, OutboundError};

/// Where the Open API lives on the MX.
pub const API: &str = "/SecureSphere/api/v1";

/// Most records in one request that writes records (`POST` or `PUT …/data`). The reference
/// pages give no limit for lookup data sets; the table group pages do (IMP-10021, "The number
/// of records has passed the allowed limit – 50K", "Edit-SecureSphereDBTableGroupRecords").
/// BENCHMARKS.md ("The MX push at 100,000 rows") has the sizes this bound gives.
pub const MAX_BATCH_RECORDS: usize = 5_000;

/// Most bytes of one request body that writes records: a data set whose rows are long (many
/// multi-valued cells) is split by size before it reaches [`MAX_BATCH_RECORDS`].
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// Records asked for per page when warden reads an MX data set back: as many as it sends in
/// one request.
pub const READ_PAGE: usize = MAX_BATCH_RECORDS;

/// Largest MX answer warden reads: a page of [`READ_PAGE`] records at up to 6 KiB each.
pub const MAX_MX_RESPONSE_BYTES: usize = 32 << 20;

/// The IMP codes of the reference pages that warden reads from an MX or answers itself, by
/// meaning. Each is documented on the pages named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImpCode {
    /// IMP-10002: "Error while parsing JSON payload or an incompatible argument type for the
    /// requested resource" ("Edit-SecureSphereWebErrorPage", "New-SecureSphereDBAgentMonitoringRule").
    JsonPayload,
    /// IMP-10005: "An item with this name already exists - please select a different name"
    /// (every creation page, e.g. "New-SecureSphereAppGroup"; mx-toolbox's `ErrorCheck` reads
    /// it as "exists").
    NameExists,
    /// IMP-10007: "SecureSphere was unable to perform the operation"
    /// ("Set-SecureSphereHTTPProxyConfiguration").
    NotPerformed,
    /// IMP-10015: "The required body parameter is missing"
    /// ("New-SecureSphereWebServiceHostToApplicationMapping").
    MissingParameter,
    /// IMP-10016: an illegal value, e.g. "Values of parameters to or from are invalid"
    /// ("Get-SecureSphereLookupDataSetRecords").
    IllegalValue,
    /// IMP-10063: no session, or wrong credentials (401, "Set-SecureSphereAdminFirstTimePassword").
    NotLoggedIn,
    /// IMP-10094: "No lookup data set with this name exists in the DB."
    NoSuchDataSet,
    /// IMP-10095: a record names a column the data set lacks.
    UnknownColumn,
    /// IMP-10096: a record lacks the key column.
    KeyMissing,
    /// IMP-10097: "two or more identical key column values" in the request.
    DuplicateKey,
    /// IMP-10098: "more than one value under a single key column".
    MultiValuedKey,
    /// IMP-10099: "The key to delete does not exist."
    KeyToDeleteMissing,
}

impl ImpCode {
    pub const ALL: [ImpCode; 12] = [
        ImpCode::JsonPayload,
        ImpCode::NameExists,
        ImpCode::NotPerformed,
        ImpCode::MissingParameter,
        ImpCode::IllegalValue,
        ImpCode::NotLoggedIn,
        ImpCode::NoSuchDataSet,
        ImpCode::UnknownColumn,
        ImpCode::KeyMissing,
        ImpCode::DuplicateKey,
        ImpCode::MultiValuedKey,
        ImpCode::KeyToDeleteMissing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ImpCode::JsonPayload => "IMP-10002",
            ImpCode::NameExists => "IMP-10005",
            ImpCode::NotPerformed => "IMP-10007",
            ImpCode::MissingParameter => "IMP-10015",
            ImpCode::IllegalValue => "IMP-10016",
            ImpCode::NotLoggedIn => "IMP-10063",
            ImpCode::NoSuchDataSet => "IMP-10094",
            ImpCode::UnknownColumn => "IMP-10095",
            ImpCode::KeyMissing => "IMP-10096",
            ImpCode::DuplicateKey => "IMP-10097",
            ImpCode::MultiValuedKey => "IMP-10098",
            ImpCode::KeyToDeleteMissing => "IMP-10099",
        }
    }

    /// The code's text on the reference pages.
    pub fn description(self) -> &'static str {
        match self {
            ImpCode::JsonPayload => {
                "Error while parsing JSON payload or an incompatible argument type for the \
                 requested resource"
            }
            ImpCode::NameExists => {
                "An item with this name already exists - please select a different name"
            }
            ImpCode::NotPerformed => "SecureSphere was unable to perform the operation",
            ImpCode::MissingParameter => "The required body parameter is missing",
            ImpCode::IllegalValue => "The value entered is illegal",
            ImpCode::NotLoggedIn => {
                "User is not logged in due to missing login request or wrong login credentials"
            }
            ImpCode::NoSuchDataSet => "No lookup data set with this name exists in the DB.",
            ImpCode::UnknownColumn => {
                "The lookup data set data provided by the user contains a non-existing column \
                 name."
            }
            ImpCode::KeyMissing => {
                "The lookup data set data provided by the user is missing the key column."
            }
            ImpCode::DuplicateKey => {
                "The lookup data set data provided by the user contains two or more identical \
                 key column values."
            }
            ImpCode::MultiValuedKey => {
                "The lookup data set data provided by the user contains more than one value \
                 under a single key column."
            }
            ImpCode::KeyToDeleteMissing => "The key to delete does not exist.",
        }
    }

    pub fn parse(code: &str) -> Option<ImpCode> {
        ImpCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ImpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The IMP code and message of an error answer (`{"errors":[{"error-code","description"}]}`).
pub fn imp_error(body: &[u8]) -> (Option<String>, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let first = parsed
        .as_ref()
        .and_then(|v| v["errors"].as_array())
        .and_then(|e| e.first().cloned());
    match first {
        Some(e) => (
            e["error-code"].as_str().map(str::to_owned),
            e["description"].as_str().unwrap_or("").to_owned(),
        ),
        None => {
            let text = String::from_utf8_lossy(body);
            (None, text.chars().take(200).collect())
        }
    }
}

/// The body of an error answer in the MX's shape.
pub fn imp_error_body(code: ImpCode, description: &str) -> Value {
    serde_json::json!({ "errors": [{ "error-code": code.as_str(), "description": description }] })
}

/// Percent-encodes one path segment (a data set name). A name with `/` cannot be addressed at
/// all (`check-config` refuses it); `%2F` is what it would become.
pub fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A data set's columns from `GET …/columns` (`{"columns":[{"name","key"}]}`), `key` read as a
/// JSON boolean (the swagger) or the string `"true"`/`"false"` (the documented sample).
pub fn parse_columns(answer: &Value) -> Result<Vec<(String, bool)>, String> {
    let columns = answer["columns"]
        .as_array()
        .ok_or("the columns answer has no \"columns\" array")?;
    columns
        .iter()
        .map(|c| {
            let name = c["name"]
                .as_str()
                .ok_or_else(|| format!("column {c} has no name"))?;
            let key = match &c["key"] {
                Value::Bool(b) => *b,
                Value::String(s) if s.eq_ignore_ascii_case("true") => true,
                Value::String(s) if s.eq_ignore_ascii_case("false") => false,
                other => {
                    return Err(format!(
                        "column {name:?} has key {other}, not true or false"
                    ));
                }
            };
            Ok((name.to_owned(), key))
        })
        .collect()
}

/// Request bodies that carry records, each at most [`MAX_BATCH_RECORDS`] records and (unless
/// one record alone is longer) [`MAX_BATCH_BYTES`] bytes: `{<head>"records":[…]}`.
pub struct Batches {
    head: String,
    max_records: usize,
    max_bytes: usize,
}

impl Batches {
    /// Bodies for `POST …/data` (`{"records":[…]}`).
    pub fn replace() -> Batches {
        Batches::with_head(String::new())
    }

    /// Bodies for `PUT …/data` (`{"action":"add"|"delete","records":[…]}`).
    pub fn action(action: &str) -> Batches {
        Batches::with_head(format!("\"action\":\"{action}\","))
    }

    fn with_head(head: String) -> Batches {
        Batches {
            head,
            max_records: MAX_BATCH_RECORDS,
            max_bytes: MAX_BATCH_BYTES,
        }
    }

    #[cfg(test)]
    fn bounded(mut self, max_records: usize, max_bytes: usize) -> Batches {
        self.max_records = max_records;
        self.max_bytes = max_bytes;
        self
    }

    /// The bodies that carry `records`, in order; none for no records.
    pub fn split(&self, records: &[Value]) -> Vec<Bytes> {
        let open = format!("{{{}\"records\":[", self.head);
        let mut bodies = Vec::new();
        let mut body: Vec<u8> = Vec::new();
        let mut count = 0;
        for record in records {
            let text = record.to_string();
            let full = count == self.max_records
                || (count > 0 && body.len() + 1 + text.len() + 2 > self.max_bytes);
            if full {
                body.extend_from_slice(b"]}");
                bodies.push(Bytes::from(std::mem::take(&mut body)));
                count = 0;
            }
            if count == 0 {
                body.extend_from_slice(open.as_bytes());
            } else {
                body.push(b',');
            }
            body.extend_from_slice(text.as_bytes());
            count += 1;
        }
        if count > 0 {
            body.extend_from_slice(b"]}");
            bodies.push(Bytes::from(body));
        }
        bodies
    }
}

/// An Open API client for one MX, holding its session.
pub struct MxClient {
    endpoint: Endpoint,
    username: String,
    password: SecretSource,
    session: tokio::sync::Mutex<Option<String>>,
}

impl MxClient {
    pub fn new(endpoint: Endpoint, username: &str, password: &SecretSource) -> MxClient {
        MxClient {
            endpoint,
            username: username.to_owned(),
            password: password.clone(),
            session: tokio::sync::Mutex::new(None),
        }
    }

    async fn send(
        &self,
        method: &Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), MxError> {
        self.endpoint
            .send(method, &format!("{API}{path}"), headers, body)
            .await
            .map_err(|e| match e {
                OutboundError::Tls(reason) => MxError::Untrusted(reason),
                other => MxError::Outbound(other),
            })
    }

    /// Logs in; returns the session id, which is the cookie to send back.
    async fn login(&self) -> Result<String, MxError> {
        let password = self.password.read()?;
        let basic = crate::auth::base64_standard(
            format!("{}:{}", self.username, password.expose()).as_bytes(),
        );
        let auth = format!("Basic {basic}");
        let (status, body) = self
            .send(
                &Method::POST,
                "/auth/session",
                &[("Authorization", &auth)],
                None,
            )
            .await?;
        if !status.is_success() {
            return Err(MxError::api(status, Method::POST, "/auth/session", &body));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| MxError::Protocol(format!("login answer is not JSON: {e}")))?;
        v["session-id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| MxError::Protocol("login answer has no session-id".into()))
    }

    async fn cookie(&self, renew: bool) -> Result<String, MxError> {
        let mut session = self.session.lock().await;
        if renew || session.is_none() {
            *session = Some(self.login().await?);
        }
        session
            .clone()
            .ok_or_else(|| MxError::Protocol("no session".into()))
    }

    /// An API call with the session and a JSON body, logging in again once if the MX forgot
    /// the session (401, or IMP-10063 under another status).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Value, MxError> {
        let mut renew = false;
        loop {
            let cookie = self.cookie(renew).await?;
            let (status, answer) = self
                .send(&method, path, &[("Cookie", &cookie)], body.clone())
                .await?;
            if status.is_success() {
                if answer.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Value::Null);
                }
                return serde_json::from_slice(&answer)
                    .map_err(|e| MxError::Protocol(format!("{method} {path}: {e}")));
            }
            let error = MxError::api(status, method.clone(), path, &answer);
            let expired = status == StatusCode::UNAUTHORIZED
                || error.imp_code() == Some(ImpCode::NotLoggedIn);
            if expired && !renew {
                tracing::info!(mx = %self.endpoint.url(), "MX session expired; logging in again");
                renew = true;
                continue;
            }
            return Err(error);
        }
    }

    /// A data set's columns, or None when the MX says it does not exist (IMP-10094). This is
    /// how mx-toolbox's `upsertDataset` probes for a data set, and it works on every MX: the
    /// listing `GET /conf/dataSets` is only in the v14 swagger (not v12 or v13.5), and its
    /// shape is not on the reference page ("Get-SecureSphereAllLookupDataSets" shows a
    /// columns document), so warden does not read it.
    pub async fn columns(&self, name: &str) -> Result<Option<Vec<(String, bool)>>, MxError> {
        let path = format!("/conf/dataSets/{}/columns", segment(name));
        match self.call(Method::GET, &path, None).await {
            Ok(answer) => parse_columns(&answer)
                .map(Some)
                .map_err(|e| MxError::Protocol(format!("GET {path}: {e}"))),
            Err(e) if e.imp_code() == Some(ImpCode::NoSuchDataSet) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every record of a data set, read [`READ_PAGE`] at a time (`from`/`to` are 1-based and
    /// inclusive, "Get-SecureSphereLookupDataSetRecords").
    pub async fn records(&self, name: &str) -> Result<Vec<Value>, MxError> {
        let mut all: Vec<Value> = Vec::new();
        loop {
            let from = all.len() + 1;
            let to = all.len() + READ_PAGE;
            let path = format!("/conf/dataSets/{}/data?from={from}&to={to}", segment(name));
            let answer = self.call(Method::GET, &path, None).await?;
            let Some(page) = answer["records"].as_array() else {
                return Err(MxError::Protocol(format!(
                    "GET {path}: the answer has no \"records\" array"
                )));
            };
            // An MX that ignored from/to sent everything at once.
            if page.len() > READ_PAGE {
                return Ok(page.clone());
            }
            let last = page.len() < READ_PAGE;
            all.extend(page.iter().cloned());
            if last {
                return Ok(all);
            }
        }
    }

    /// Ends the session, if there is one (best effort).
    pub async fn logout(&self) {
        let cookie = self.session.lock().await.take();
        if let Some(c) = cookie {
            let _ = self
                .send(&Method::DELETE, "/auth/session", &[("Cookie", &c)], None)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn imp_errors_are_read_from_the_documented_shape() {
        let (code, msg) = imp_error(
            br#"{"errors":[{"error-code":"IMP-10094","description":"no such data set"}]}"#,
        );
        assert_eq!(code.as_deref(), Some("IMP-10094"));
        assert_eq!(msg, "no such data set");
        let (code, msg) = imp_error(b"Service Unavailable");
        assert_eq!(code, None);
        assert_eq!(msg, "Service Unavailable");
        let body = imp_error_body(ImpCode::KeyToDeleteMissing, "x").to_string();
        assert_eq!(
            imp_error(body.as_bytes()),
            (Some("IMP-10099".into()), "x".into())
        );
    }

    #[test]
    fn every_documented_code_reads_back_as_itself() {
        for code in ImpCode::ALL {
            assert_eq!(ImpCode::parse(code.as_str()), Some(code));
            assert!(!code.description().is_empty());
        }
        assert_eq!(ImpCode::parse("IMP-12345"), None);
    }

    #[test]
    fn column_keys_are_read_as_booleans_or_the_documented_strings() {
        // The swagger's DatasetSingleColumnDTO, and the sample of the reference page.
        let swagger = json!({"columns":[{"name":"Key","key":true},{"name":"User","key":false}]});
        let sample = json!({"dataset-name":"employees","number-of-columns":2,
            "columns":[{"name":"Key","key":"true"},{"name":"User","key":"false"}]});
        let want = vec![("Key".to_owned(), true), ("User".to_owned(), false)];
        assert_eq!(parse_columns(&swagger).unwrap(), want);
        assert_eq!(parse_columns(&sample).unwrap(), want);
        // Anything else is not guessed at.
        let err = parse_columns(&json!({"columns":[{"name":"Key","key":"yes"}]})).unwrap_err();
        assert!(err.contains("\"yes\""), "{err}");
        assert!(parse_columns(&json!({"columns":[{"name":"Key"}]})).is_err());
        assert!(parse_columns(&json!(["Key"])).is_err());
    }

    #[test]
    fn batches_are_bounded_by_records_and_by_bytes() {
        let records: Vec<Value> = (0..7).map(|i| json!({ "user": format!("u{i}") })).collect();
        let bodies = Batches::action("add").bounded(3, 1 << 20).split(&records);
        let parsed: Vec<Value> = bodies
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0]["action"], "add");
        let sizes: Vec<usize> = parsed
            .iter()
            .map(|p| p["records"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [3, 3, 1]);
        let all: Vec<Value> = parsed
            .iter()
            .flat_map(|p| p["records"].as_array().unwrap().clone())
            .collect();
        assert_eq!(all, records);

        // By bytes: a record is 13 bytes and the envelope 14, so 41 bytes hold two.
        let bodies = Batches::replace().bounded(100, 41).split(&records);
        assert!(bodies.iter().all(|b| b.len() <= 41), "{bodies:?}");
        assert_eq!(bodies.len(), 4);
        let first: Value = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(first, json!({"records":[{"user":"u0"},{"user":"u1"}]}));
        // A record longer than the bound goes alone, whole.
        let long = vec![json!({ "user": "x".repeat(100) })];
        assert_eq!(Batches::replace().bounded(100, 41).split(&long).len(), 1);
        assert!(Batches::replace().split(&[]).is_empty());
    }

    #[test]
    fn names_are_percent_encoded_as_path_segments() {
        assert_eq!(segment("PTR Suspicious Users"), "PTR%20Suspicious%20Users");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }
}
