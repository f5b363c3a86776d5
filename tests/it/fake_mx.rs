//! An in-process Imperva MX that follows the Open API as documented, and no more leniently
//! than the documentation allows: where the documentation is silent, it takes the stricter
//! reading, so that warden passing against it says something about a real MX.
//!
//! Sources, cited by title below: Imperva's v13.6 API reference pages for lookup data sets as
//! copied in `akshinmustafayev/SecureSpherePS` `Documentation/MD/` ("Get-SecureSphereLookupDataSetColumns",
//! "Get-SecureSphereLookupDataSetRecords", "Edit-SecureSphereLookupDataSetRecords",
//! "Invoke-SecureSphereIncrementalOperationsOnLookupDataSet",
//! "Remove-SecureSphereAllLookupDataSetRecords", "Get-SecureSphereAllLookupDataSets",
//! "Set-SecureSphereAdminFirstTimePassword" for IMP-10063, "Edit-SecureSphereWebErrorPage" for
//! IMP-10002, "New-SecureSphereAppGroup" for IMP-10005); the MX Open API swagger documents in
//! `imperva/imperva-web-api-composer` `src/assets/ses/` ("swagger v12", "v13.5", "v14"); and the
//! clients that call a real MX: `imperva/imperva-sdk-python` (`MxConnection.py`,
//! `LookupDataSet.py`, `DataType.py`) and `imperva/mx-toolbox` (`ss.py`). No real MX was
//! available to check any of it against.
//!
//! Over HTTPS with a test CA (`support::make_certs`) or a self-signed certificate without a
//! usable name, as MXs usually have ([`self_signed`]). Tests can expire sessions, take the MX
//! down (503), make the nth data write fail before it applies or answer only after warden gave
//! up on it, edit a data set behind warden's back as an MX admin would, choose the shapes the
//! documentation leaves open, and read what it holds, every request it saw and every IMP code
//! it answered.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const API: &str = "/SecureSphere/api/v1";

/// What `GET /conf/dataSets` answers. Only the v14 swagger has the route (`getAllDatasets`,
/// an array of strings); v12 and v13.5 do not; "Get-SecureSphereAllLookupDataSets" shows a
/// columns document as its response, and some clients expect `{"data-sets": […]}`. warden must
/// not depend on any of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Listing {
    /// No such route (404), as on v12 and v13.5.
    #[default]
    Absent,
    /// `["name", …]`, the v14 swagger.
    Array,
    /// `{"data-sets": ["name", …]}`.
    Object,
}

/// How `GET …/columns` spells `key`: the strings of the documented sample
/// ("Get-SecureSphereLookupDataSetColumns": `"key":"true"`) or the swagger's booleans
/// (`DatasetSingleColumnDTO.key: boolean`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyShape {
    #[default]
    Strings,
    Booleans,
}

/// A failure of one data write (`POST`, `PUT` or `DELETE` on `…/data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 503 before anything is applied.
    Unavailable,
    /// Applied, then answered only after this long: a client with a shorter timeout sees a
    /// failure the MX does not know about.
    AnswerLate(Duration),
}

struct DataSet {
    columns: Vec<(String, bool)>,
    case_sensitive: bool,
    /// Records by folded key, in key order.
    records: BTreeMap<String, Value>,
}

/// Why the MX refuses a request: its IMP code and description.
type Refusal = (&'static str, String);

fn refusal(code: &'static str, description: impl Into<String>) -> Refusal {
    (code, description.into())
}

impl DataSet {
    fn key_column(&self) -> &str {
        self.columns
            .iter()
            .find(|(_, k)| *k)
            .map_or("", |(n, _)| n.as_str())
    }

    fn fold(&self, key: &str) -> String {
        if self.case_sensitive {
            key.to_owned()
        } else {
            key.to_lowercase()
        }
    }

    /// The folded key of a record, or the refusal the reference pages of "Edit-…" and
    /// "Invoke-SecureSphereIncrementalOperationsOnLookupDataSet" list for it: IMP-10095 for a
    /// column the data set lacks, IMP-10096 for no key, IMP-10098 for more than one value under
    /// the key column; a value that is neither a string nor an array of strings is an
    /// "incompatible argument type" (IMP-10002).
    fn check(&self, record: &Value) -> Result<String, Refusal> {
        let Some(fields) = record.as_object() else {
            return Err(refusal("IMP-10002", "a record must be an object"));
        };
        for (name, value) in fields {
            let strings = match value {
                Value::String(_) => true,
                Value::Array(a) => a.iter().all(Value::is_string),
                _ => false,
            };
            if !strings {
                return Err(refusal(
                    "IMP-10002",
                    format!("{name}: a value is a string or an array of strings"),
                ));
            }
            if !self.columns.iter().any(|(c, _)| c == name) {
                return Err(refusal(
                    "IMP-10095",
                    format!("Column named \"{name}\" does not exist in the dataset"),
                ));
            }
        }
        let key = match fields.get(self.key_column()) {
            Some(Value::String(k)) => Some(k.as_str()),
            Some(Value::Array(a)) if a.len() > 1 => {
                return Err(refusal(
                    "IMP-10098",
                    "The lookup data set data provided by the user contains more than one \
                     value under a single key column.",
                ));
            }
            Some(Value::Array(a)) => a.first().and_then(Value::as_str),
            _ => None,
        };
        match key {
            Some(k) if !k.is_empty() => Ok(self.fold(k)),
            _ => Err(refusal(
                "IMP-10096",
                "The lookup data set data provided by the user is missing the key column.",
            )),
        }
    }

    /// The records of a request, each with its folded key; IMP-10097 for a key twice.
    fn checked(&self, records: &[Value]) -> Result<Vec<(String, Value)>, Refusal> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in records {
            let key = self.check(r)?;
            if !seen.insert(key.clone()) {
                return Err(refusal(
                    "IMP-10097",
                    "The lookup data set data provided by the user contains two or more \
                     identical key column values.",
                ));
            }
            out.push((key, r.clone()));
        }
        Ok(out)
    }
}

/// One request the MX saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The path as sent (percent-encoded).
    pub path: String,
    pub query: String,
    pub body_bytes: usize,
    /// The records the body carried, if it carried a `records` array.
    pub records: Option<usize>,
    pub status: u16,
    /// The size of the answer's body.
    pub answer_bytes: usize,
}

#[derive(Default)]
pub struct State {
    pub username: String,
    pub password: String,
    /// Live sessions (the session id, which is the whole cookie) and the calls each served.
    sessions: HashMap<String, u32>,
    /// Calls a session serves before it expires; unlimited when none.
    session_calls: Option<u32>,
    data_sets: BTreeMap<String, DataSet>,
    seen: Vec<Seen>,
    /// The IMP code of every error answer, in order.
    refusals: Vec<String>,
    /// Answer every request 503.
    down: bool,
    listing: Listing,
    key_shape: KeyShape,
    /// Whether a delete that meets a missing key deletes the others before it refuses. The
    /// reference page does not say; by default the whole request is refused.
    partial_deletes: bool,
    /// Data writes seen so far, and faults planned for the nth.
    writes: usize,
    faults: HashMap<usize, Fault>,
}

/// The IMP code an answer carries, kept on the response for the request log.
#[derive(Clone)]
struct ImpAnswer(&'static str);

/// An answer and, for a write that answers late, how late.
struct Reply {
    answer: Answer,
    delay: Option<Duration>,
}

pub struct FakeMx {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, body: Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn plain(status: StatusCode, text: &'static str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r
}

/// An error in the MX's shape. Every refusal of a lookup data set request is HTTP 406:
/// mx-toolbox's `upsertDataset` reads a 406 from `GET …/columns` as "no such data set" and its
/// `ErrorCheck` reads `errors[0]["error-code"]`.
fn imp(code: &'static str, description: &str) -> Answer {
    imp_status(StatusCode::NOT_ACCEPTABLE, code, description)
}

fn imp_status(status: StatusCode, code: &'static str, description: &str) -> Answer {
    let mut r = answer(
        status,
        json!({ "errors": [{ "error-code": code, "description": description }] }),
    );
    r.extensions_mut().insert(ImpAnswer(code));
    r
}

fn refuse((code, description): Refusal) -> Answer {
    imp(code, &description)
}

fn no_data_set() -> Answer {
    imp(
        "IMP-10094",
        "No lookup data set with this name exists in the DB.",
    )
}

/// `%XX`-decodes a path segment or query value; None for an encoded `/`, which a servlet
/// container refuses in a path (the SDK skips names with `/`: "we have data types with '/'
/// character that don't work with the API", `DataType.py`).
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = segment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            if b == b'/' {
                return None;
            }
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| decode(v))
}

/// A session id as a servlet container makes one: the cookie itself, `JSESSIONID=` and 32 hex
/// digits. The swagger's `SessionIdDTO` says only "string"; clients send it back verbatim as
/// the `Cookie` header (`MxConnection.__init__`, mx-toolbox `makeCall`).
fn new_session_id() -> String {
    let mut hex = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x05e5_510d);
        hex.push_str(&format!("{:016X}", h.finish()));
    }
    format!("JSESSIONID={hex}")
}

/// Writes a self-signed certificate without a usable name (`CN=SecureSphere`, no
/// subjectAltName) to `dir/server.pem` and `dir/server.key`, as an MX usually has.
pub fn self_signed(dir: &Path) {
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=SecureSphere", "-keyout"])
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(dir.join("server.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs (is openssl installed?)");
    assert!(status.success(), "openssl req failed");
}

impl FakeMx {
    /// Starts the MX on 127.0.0.1 with `dir/server.pem` + `dir/server.key` (see
    /// `support::make_certs` and [`self_signed`]), accepting `username` / `password`.
    pub fn start(dir: &Path, username: &str, password: &str) -> FakeMx {
        let state = Arc::new(Mutex::new(State {
            username: username.into(),
            password: password.into(),
            ..State::default()
        }));
        let acceptor =
            warden::http::tls_acceptor(&dir.join("server.pem"), &dir.join("server.key")).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, state) = (acceptor.clone(), Arc::clone(&shared));
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |req| {
                            let state = Arc::clone(&state);
                            async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        FakeMx { addr, state }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Starts an MX with a test CA in `dir` and appends an `[imperva]` section pushing
    /// `data_set` to it to the config at `config` (password in `dir/mx.secret`).
    pub fn for_config(dir: &Path, config: &Path, password: &str, data_set: &str) -> FakeMx {
        crate::support::make_certs(dir);
        let mx = FakeMx::start(dir, "warden", password);
        crate::support::write_secret(&dir.join("mx.secret"), password);
        let mut text = std::fs::read_to_string(config).unwrap();
        text.push_str(&format!(
            "\n[imperva]\nurl = \"{}\"\nusername = \"warden\"\npassword_file = \"mx.secret\"\n\
             ca_file = \"ca.pem\"\n\n[[imperva.data_sets]]\ndata_set = \"{data_set}\"\n",
            mx.url()
        ));
        std::fs::write(config, text).unwrap();
        mx
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Forgets every session: the next call is answered 401 IMP-10063.
    pub fn expire_sessions(&self) {
        self.with(|s| s.sessions.clear());
    }

    /// From now on a session expires after serving `calls` calls (None: never), so a push
    /// of several calls meets an expiry part way through.
    pub fn expire_sessions_after(&self, calls: Option<u32>) {
        self.with(|s| s.session_calls = calls);
    }

    pub fn set_down(&self, down: bool) {
        self.with(|s| s.down = down);
    }

    pub fn set_listing(&self, listing: Listing) {
        self.with(|s| s.listing = listing);
    }

    pub fn set_key_shape(&self, shape: KeyShape) {
        self.with(|s| s.key_shape = shape);
    }

    pub fn set_partial_deletes(&self, partial: bool) {
        self.with(|s| s.partial_deletes = partial);
    }

    /// The `nth` data write from now (1: the next) meets `fault`.
    pub fn fault_on_write(&self, nth: usize, fault: Fault) {
        self.with(|s| {
            let at = s.writes + nth;
            s.faults.insert(at, fault);
        });
    }

    /// Creates a data set directly, as an MX admin would (case-insensitive).
    pub fn create(&self, name: &str, columns: &[(&str, bool)]) {
        self.with(|s| {
            s.data_sets.insert(
                name.into(),
                DataSet {
                    columns: columns.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect(),
                    case_sensitive: false,
                    records: BTreeMap::new(),
                },
            )
        });
    }

    /// Adds or replaces a record directly, as an MX admin would, behind warden's back.
    pub fn insert(&self, name: &str, record: Value) {
        self.with(|s| {
            let d = s.data_sets.get_mut(name).unwrap();
            let key = d.check(&record).unwrap();
            d.records.insert(key, record);
        });
    }

    /// Deletes a whole data set, as an MX admin would (`POST …/deleteDataset`).
    pub fn drop_data_set(&self, name: &str) {
        self.with(|s| assert!(s.data_sets.remove(name).is_some(), "no data set {name:?}"));
    }

    /// Deletes a record by key directly, as an MX admin would, behind warden's back.
    pub fn remove(&self, name: &str, key: &str) {
        self.with(|s| {
            let d = s.data_sets.get_mut(name).unwrap();
            let folded = d.fold(key);
            assert!(d.records.remove(&folded).is_some(), "no key {key:?}");
        });
    }

    /// The records of a data set, in key order; None if it does not exist.
    pub fn records(&self, name: &str) -> Option<Vec<Value>> {
        self.with(|s| {
            s.data_sets
                .get(name)
                .map(|d| d.records.values().cloned().collect())
        })
    }

    pub fn columns(&self, name: &str) -> Option<Vec<(String, bool)>> {
        self.with(|s| s.data_sets.get(name).map(|d| d.columns.clone()))
    }

    pub fn case_sensitive(&self, name: &str) -> Option<bool> {
        self.with(|s| s.data_sets.get(name).map(|d| d.case_sensitive))
    }

    /// `METHOD path` of every request, in order.
    pub fn requests(&self) -> Vec<String> {
        self.with(|s| {
            s.seen
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect()
        })
    }

    /// Every request with its query, body size, records and status, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.with(|s| s.seen.clone())
    }

    /// The IMP codes of every error answered so far, in order.
    pub fn refusals(&self) -> Vec<String> {
        self.with(|s| s.refusals.clone())
    }
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Answer {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let auth = header(hyper::header::AUTHORIZATION);
    let cookie = header(hyper::header::COOKIE);
    let content_type = header(hyper::header::CONTENT_TYPE);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = {
        let mut s = state.lock().unwrap();
        let call = Call {
            method: &method,
            path: &path,
            query: &query,
            auth: auth.as_deref(),
            cookie: cookie.as_deref(),
            content_type: content_type.as_deref(),
            body: &body,
        };
        let reply = route(&mut s, &call);
        if let Some(ImpAnswer(code)) = reply.answer.extensions().get::<ImpAnswer>() {
            s.refusals.push((*code).to_owned());
        }
        let records = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["records"].as_array().map(Vec::len));
        s.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            body_bytes: body.len(),
            records,
            status: reply.answer.status().as_u16(),
            answer_bytes: hyper::body::Body::size_hint(reply.answer.body())
                .exact()
                .map_or(0, |n| n as usize),
        });
        reply
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    reply.answer
}

/// A request as the routes read it.
struct Call<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    auth: Option<&'a str>,
    cookie: Option<&'a str>,
    content_type: Option<&'a str>,
    body: &'a [u8],
}

/// A live session for `cookie` (exactly a session id), counting the call; an expired one is
/// forgotten.
fn use_session(s: &mut State, cookie: Option<&str>) -> bool {
    let limit = s.session_calls;
    let Some(served) = cookie.and_then(|c| s.sessions.get_mut(c)) else {
        return false;
    };
    *served += 1;
    if limit.is_some_and(|l| *served > l) {
        if let Some(c) = cookie {
            s.sessions.remove(c);
        }
        return false;
    }
    true
}

fn route(s: &mut State, call: &Call<'_>) -> Reply {
    let now = |answer| Reply {
        answer,
        delay: None,
    };
    if s.down {
        return now(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
        ));
    }
    let Some(rest) = call.path.strip_prefix(API) else {
        return now(plain(StatusCode::NOT_FOUND, "Not Found"));
    };
    let Some(parts) = rest
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect::<Option<Vec<String>>>()
    else {
        return now(plain(StatusCode::BAD_REQUEST, "Bad Request"));
    };
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    if parts == ["auth", "session"] {
        return now(session(s, call));
    }
    // "Set-SecureSphereAdminFirstTimePassword": 401 IMP-10063 "User is not logged in due to
    // missing login request or wrong login credentials".
    if !use_session(s, call.cookie) {
        return now(imp_status(
            StatusCode::UNAUTHORIZED,
            "IMP-10063",
            "User is not logged in due to missing login request or wrong login credentials",
        ));
    }
    // Every body the data set routes take is JSON (swagger: `consumes: application/json`).
    let json_type = call
        .content_type
        .is_some_and(|t| t.split(';').next() == Some("application/json"));
    if !call.body.is_empty() && !json_type {
        return now(plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
        ));
    }
    let body: Value = if call.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(call.body) {
            Ok(v) => v,
            // "Edit-SecureSphereWebErrorPage": IMP-10002.
            Err(_) => {
                return now(imp(
                    "IMP-10002",
                    "Error while parsing JSON payload or an incompatible argument type for \
                     the requested resource",
                ));
            }
        }
    };
    match (call.method, parts.as_slice()) {
        (&Method::GET, ["conf", "dataSets"]) => now(listing(s)),
        (&Method::POST, ["conf", "dataSets", "createDataset"]) => now(create(s, call.query, &body)),
        (&Method::GET, ["conf", "dataSets", name, "columns"]) => now(columns(s, name)),
        (_, ["conf", "dataSets", name, "data"]) => data_route(s, call, name, &body),
        _ => now(plain(StatusCode::NOT_FOUND, "Not Found")),
    }
}

/// `POST /auth/session` with Basic auth answers `{"session-id": …}` (swagger
/// `SessionIdDTO`); wrong credentials are 401 IMP-10063. `DELETE` ends the session.
fn session(s: &mut State, call: &Call<'_>) -> Answer {
    match *call.method {
        Method::POST => {
            let expected = format!(
                "Basic {}",
                base64(format!("{}:{}", s.username, s.password).as_bytes())
            );
            if call.auth != Some(expected.as_str()) {
                return imp_status(
                    StatusCode::UNAUTHORIZED,
                    "IMP-10063",
                    "User is not logged in due to missing login request or wrong login \
                     credentials",
                );
            }
            let id = new_session_id();
            s.sessions.insert(id.clone(), 0);
            answer(StatusCode::OK, json!({ "session-id": id }))
        }
        Method::DELETE => {
            if let Some(c) = call.cookie {
                s.sessions.remove(c);
            }
            answer(StatusCode::OK, json!({}))
        }
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
    }
}

fn listing(s: &State) -> Answer {
    let names: Vec<&String> = s.data_sets.keys().collect();
    match s.listing {
        Listing::Absent => plain(StatusCode::NOT_FOUND, "Not Found"),
        Listing::Array => answer(StatusCode::OK, json!(names)),
        Listing::Object => answer(StatusCode::OK, json!({ "data-sets": names })),
    }
}

/// `POST /conf/dataSets/createDataset?caseSensitive=` with the swagger's `DatasetColumnsDTO`
/// (`dataset-name`, `number-of-columns`, `columns: [{name, key: boolean}]`). The creation page
/// is not among the copies; the double refuses what no reading of the DTO allows: a missing
/// name or columns (IMP-10015), a `key` that is not a boolean or a `caseSensitive` that is not
/// `true`/`false` (IMP-10002), a count that does not match or a key count other than one
/// (IMP-10016), and a name that exists (IMP-10005, as on every creation page). A name with `/`
/// is created, and then no path can address it.
fn create(s: &mut State, query: &str, body: &Value) -> Answer {
    let case_sensitive = match query_param(query, "caseSensitive").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return imp("IMP-10002", "caseSensitive: true or false"),
    };
    let (Some(name), Some(columns)) = (body["dataset-name"].as_str(), body["columns"].as_array())
    else {
        return imp(
            "IMP-10015",
            "Cannot create data set since the body parameter dataset-name or columns is missing",
        );
    };
    let mut parsed = Vec::new();
    for c in columns {
        let (Some(n), Some(k)) = (c["name"].as_str(), c["key"].as_bool()) else {
            return imp(
                "IMP-10002",
                "a column is {\"name\": string, \"key\": boolean}",
            );
        };
        parsed.push((n.to_owned(), k));
    }
    if body["number-of-columns"].as_u64() != Some(parsed.len() as u64) {
        return imp("IMP-10016", "The \"number-of-columns\" entered is illegal");
    }
    if parsed.iter().filter(|(_, k)| *k).count() != 1 {
        return imp("IMP-10016", "The \"columns\" entered is illegal: one key");
    }
    if s.data_sets.contains_key(name) {
        return imp(
            "IMP-10005",
            "An item with this name already exists - please select a different name",
        );
    }
    s.data_sets.insert(
        name.to_owned(),
        DataSet {
            columns: parsed,
            case_sensitive,
            records: BTreeMap::new(),
        },
    );
    answer(StatusCode::OK, json!({}))
}

/// `GET …/columns` ("Get-SecureSphereLookupDataSetColumns"), `key` spelled as chosen.
fn columns(s: &State, name: &str) -> Answer {
    let Some(d) = s.data_sets.get(name) else {
        return no_data_set();
    };
    let columns: Vec<Value> = d
        .columns
        .iter()
        .map(|(n, k)| match s.key_shape {
            KeyShape::Strings => json!({ "name": n, "key": k.to_string() }),
            KeyShape::Booleans => json!({ "name": n, "key": k }),
        })
        .collect();
    answer(
        StatusCode::OK,
        json!({ "dataset-name": name, "number-of-columns": columns.len(), "columns": columns }),
    )
}

/// A request on `…/data`: a read, or a write that may meet a planned fault.
fn data_route(s: &mut State, call: &Call<'_>, name: &str, body: &Value) -> Reply {
    let mut delay = None;
    if *call.method != Method::GET {
        s.writes += 1;
        match s.faults.remove(&s.writes) {
            Some(Fault::Unavailable) => {
                return Reply {
                    answer: plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
                    delay: None,
                };
            }
            Some(Fault::AnswerLate(d)) => delay = Some(d),
            None => {}
        }
    }
    let partial = s.partial_deletes;
    let answer = match s.data_sets.get_mut(name) {
        None => no_data_set(),
        Some(d) => data(d, partial, call, name, body),
    };
    Reply { answer, delay }
}

fn data(d: &mut DataSet, partial: bool, call: &Call<'_>, name: &str, body: &Value) -> Answer {
    match *call.method {
        Method::GET => read(d, name, call.query),
        // "Remove-SecureSphereAllLookupDataSetRecords".
        Method::DELETE => {
            d.records.clear();
            answer(StatusCode::OK, json!({}))
        }
        Method::POST => replace(d, body),
        Method::PUT => incremental(d, partial, call.query, body),
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
    }
}

/// "Get-SecureSphereLookupDataSetRecords": rows `from` (default the first, 1-based) to `to`
/// (default the last; 0 in the swagger), IMP-10016 when `to < 0` or `from < 1`; a lone value
/// as a string, several as an array, as in the page's sample.
fn read(d: &DataSet, name: &str, query: &str) -> Answer {
    let number = |p: &str, default: i64| match query_param(query, p) {
        None => Ok(default),
        Some(v) => v.parse::<i64>().map_err(|_| ()),
    };
    let (Ok(from), Ok(to)) = (number("from", 1), number("to", 0)) else {
        return imp("IMP-10002", "from and to are integers");
    };
    if from < 1 || to < 0 {
        return imp(
            "IMP-10016",
            "Values of parameters to or from are invalid. (to < 0, from < 1)",
        );
    }
    let first = usize::try_from(from - 1).unwrap_or(usize::MAX);
    let last = if to == 0 {
        d.records.len()
    } else {
        usize::try_from(to)
            .unwrap_or(usize::MAX)
            .min(d.records.len())
    };
    let records: Vec<Value> = d
        .records
        .values()
        .skip(first)
        .take(last.saturating_sub(first))
        .map(|r| {
            let mut r = r.clone();
            if let Some(fields) = r.as_object_mut() {
                for v in fields.values_mut() {
                    if let Value::Array(a) = v
                        && a.len() == 1
                    {
                        *v = a[0].clone();
                    }
                }
            }
            r
        })
        .collect();
    answer(
        StatusCode::OK,
        json!({ "dataset-name": name, "number-of-records": records.len(), "records": records }),
    )
}

/// "Edit-SecureSphereLookupDataSetRecords": the records replace the data set's. An empty
/// `records` list is refused (IMP-10015): the page does not say it works, and the SDK stopped
/// sending one (`LookupDataSet.py`, commit 5198831) — `DELETE …/data` empties a data set.
fn replace(d: &mut DataSet, body: &Value) -> Answer {
    let Some(records) = body["records"].as_array() else {
        return imp(
            "IMP-10015",
            "The required body parameter records is missing",
        );
    };
    if records.is_empty() {
        return imp(
            "IMP-10015",
            "The required body parameter records is empty; DELETE …/data clears a data set",
        );
    }
    match d.checked(records) {
        Ok(rows) => {
            d.records = rows.into_iter().collect();
            answer(StatusCode::OK, json!({}))
        }
        Err(e) => refuse(e),
    }
}

/// "Invoke-SecureSphereIncrementalOperationsOnLookupDataSet": `action` add or delete
/// (swagger enum); `overwrite` (default true) replaces a record of the same key on add, and
/// `overwrite=false` ignores the new one; a delete needs only the key column, and a key that
/// does not exist is IMP-10099 — the whole request refused unless the test asked for the
/// other reading (the page does not say which).
fn incremental(d: &mut DataSet, partial: bool, query: &str, body: &Value) -> Answer {
    let overwrite = match query_param(query, "overwrite").as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return imp("IMP-10002", "overwrite: true or false"),
    };
    let Some(records) = body["records"].as_array() else {
        return imp(
            "IMP-10015",
            "The required body parameter records is missing",
        );
    };
    let rows = match d.checked(records) {
        Ok(rows) => rows,
        Err(e) => return refuse(e),
    };
    match body["action"].as_str() {
        Some("add") => {
            for (key, record) in rows {
                if overwrite || !d.records.contains_key(&key) {
                    d.records.insert(key, record);
                }
            }
        }
        Some("delete") => {
            let missing = rows.iter().any(|(k, _)| !d.records.contains_key(k));
            if !missing || partial {
                for (key, _) in &rows {
                    d.records.remove(key);
                }
            }
            if missing {
                return imp("IMP-10099", "The key to delete does not exist.");
            }
        }
        None => return imp("IMP-10015", "The required body parameter action is missing"),
        Some(_) => return imp("IMP-10002", "action: add or delete"),
    }
    answer(StatusCode::OK, json!({}))
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
