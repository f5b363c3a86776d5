//! An in-process Imperva MX that follows the documented Open API (docs/ARCHITECTURE.md "Imperva MX
//! Open API"), over HTTPS with a test CA: Basic-auth login to a session id sent back as the
//! cookie, data sets listed, created and described, records replaced, added, deleted and
//! cleared, with Imperva's IMP error codes. Tests can expire every session or make sessions
//! short-lived, take the MX down (503), change a data set behind warden's back as an MX admin
//! would, and read what it holds, every request it saw and every IMP code it answered.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const API: &str = "/SecureSphere/api/v1";

struct DataSet {
    columns: Vec<(String, bool)>,
    case_sensitive: bool,
    records: BTreeMap<String, Value>,
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

    /// The folded key of a record, or the IMP error that refuses it.
    fn check(&self, record: &Value) -> Result<String, (&'static str, String)> {
        let Some(fields) = record.as_object() else {
            return Err(("IMP-10095", "a record must be an object".into()));
        };
        for name in fields.keys() {
            if !self.columns.iter().any(|(c, _)| c == name) {
                return Err(("IMP-10095", format!("unknown column {name}")));
            }
        }
        match fields.get(self.key_column()).and_then(Value::as_str) {
            Some(k) if !k.is_empty() => Ok(self.fold(k)),
            _ => Err((
                "IMP-10096",
                format!("key column {} missing", self.key_column()),
            )),
        }
    }
}

#[derive(Default)]
pub struct State {
    pub username: String,
    pub password: String,
    /// Live sessions and the calls each has served.
    sessions: HashMap<String, u32>,
    /// Calls a session serves before it expires; unlimited when none.
    session_calls: Option<u32>,
    next_session: u64,
    data_sets: BTreeMap<String, DataSet>,
    /// `METHOD path` of every request, in order.
    pub requests: Vec<String>,
    /// The IMP code of every error answer, in order.
    pub refusals: Vec<String>,
    /// Answer every request 503.
    pub down: bool,
}

/// The IMP code an answer carries, kept on the response for the request log.
#[derive(Clone)]
struct ImpAnswer(&'static str);

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

fn imp(status: StatusCode, code: &'static str, description: &str) -> Answer {
    let mut r = answer(
        status,
        json!({ "errors": [{ "error-code": code, "description": description }] }),
    );
    r.extensions_mut().insert(ImpAnswer(code));
    r
}

fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FakeMx {
    /// Starts the MX on 127.0.0.1 with `dir/server.pem` + `dir/server.key` (see
    /// `support::make_certs`), accepting `username` / `password`.
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

    /// Forgets every session: the next call is answered IMP-10063.
    pub fn expire_sessions(&self) {
        self.state.lock().unwrap().sessions.clear();
    }

    /// From now on a session expires after serving `calls` calls (None: never), so a push
    /// of several calls meets an expiry part way through.
    pub fn expire_sessions_after(&self, calls: Option<u32>) {
        self.state.lock().unwrap().session_calls = calls;
    }

    /// Adds a record directly, as an MX admin would, behind warden's back.
    pub fn insert(&self, name: &str, record: Value) {
        let mut s = self.state.lock().unwrap();
        let d = s.data_sets.get_mut(name).unwrap();
        let key = d.check(&record).unwrap();
        d.records.insert(key, record);
    }

    /// The IMP codes of every error answered so far, in order.
    pub fn refusals(&self) -> Vec<String> {
        self.state.lock().unwrap().refusals.clone()
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// Creates a data set directly, as an MX admin would.
    pub fn create(&self, name: &str, columns: &[(&str, bool)]) {
        self.state.lock().unwrap().data_sets.insert(
            name.into(),
            DataSet {
                columns: columns.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect(),
                case_sensitive: false,
                records: BTreeMap::new(),
            },
        );
    }

    /// The records of a data set, in key order; None if it does not exist.
    pub fn records(&self, name: &str) -> Option<Vec<Value>> {
        let s = self.state.lock().unwrap();
        s.data_sets
            .get(name)
            .map(|d| d.records.values().cloned().collect())
    }

    pub fn columns(&self, name: &str) -> Option<Vec<(String, bool)>> {
        let s = self.state.lock().unwrap();
        s.data_sets.get(name).map(|d| d.columns.clone())
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Answer {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cookie = req
        .headers()
        .get(hyper::header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.requests.push(format!("{method} {path}"));
    let reply = route(&mut s, &method, &path, &query, auth, cookie, &body);
    if let Some(ImpAnswer(code)) = reply.extensions().get::<ImpAnswer>() {
        s.refusals.push((*code).to_owned());
    }
    reply
}

/// A live session for `cookie`, counting the call; an expired one is forgotten.
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

fn route(
    s: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    auth: Option<String>,
    cookie: Option<String>,
    body: &[u8],
) -> Answer {
    if s.down {
        return answer(StatusCode::SERVICE_UNAVAILABLE, json!({}));
    }
    let Some(route) = path.strip_prefix(API) else {
        return imp(StatusCode::NOT_FOUND, "IMP-10001", "no such resource");
    };
    if route == "/auth/session" {
        return session(s, method, auth.as_deref(), cookie.as_deref());
    }
    if !use_session(s, cookie.as_deref()) {
        return imp(StatusCode::UNAUTHORIZED, "IMP-10063", "not logged in");
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return imp(StatusCode::BAD_REQUEST, "IMP-10005", "body is not JSON"),
        }
    };
    let parts: Vec<String> = route
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["conf", "dataSets"]) => answer(
            StatusCode::OK,
            json!({ "data-sets": s.data_sets.keys().collect::<Vec<_>>() }),
        ),
        (&Method::POST, ["conf", "dataSets", "createDataset"]) => create(s, query, &body),
        (&Method::GET, ["conf", "dataSets", name, "columns"]) => match s.data_sets.get(*name) {
            Some(d) => answer(
                StatusCode::OK,
                json!({ "columns": d.columns.iter().map(|(n, k)| json!({ "name": n, "key": k })).collect::<Vec<_>>() }),
            ),
            None => imp(StatusCode::NOT_FOUND, "IMP-10094", "no such data set"),
        },
        (_, ["conf", "dataSets", name, "data"]) => {
            let Some(d) = s.data_sets.get_mut(*name) else {
                return imp(StatusCode::NOT_FOUND, "IMP-10094", "no such data set");
            };
            data(d, method, &body)
        }
        _ => imp(StatusCode::NOT_FOUND, "IMP-10001", "no such resource"),
    }
}

fn session(s: &mut State, method: &Method, auth: Option<&str>, cookie: Option<&str>) -> Answer {
    match *method {
        Method::POST => {
            let expected = format!(
                "Basic {}",
                base64(format!("{}:{}", s.username, s.password).as_bytes())
            );
            if auth != Some(expected.as_str()) {
                return imp(StatusCode::UNAUTHORIZED, "IMP-10002", "bad credentials");
            }
            s.next_session += 1;
            let id = format!("JSESSIONID=fake{}", s.next_session);
            s.sessions.insert(id.clone(), 0);
            answer(StatusCode::OK, json!({ "session-id": id }))
        }
        Method::DELETE => {
            if let Some(c) = cookie {
                s.sessions.remove(c);
            }
            answer(StatusCode::OK, json!({}))
        }
        _ => imp(StatusCode::METHOD_NOT_ALLOWED, "IMP-10001", "method"),
    }
}

fn create(s: &mut State, query: &str, body: &Value) -> Answer {
    let Some(name) = body["dataset-name"].as_str() else {
        return imp(StatusCode::BAD_REQUEST, "IMP-10005", "dataset-name missing");
    };
    if s.data_sets.contains_key(name) {
        return imp(StatusCode::CONFLICT, "IMP-10098", "data set exists");
    }
    let columns: Vec<(String, bool)> = body["columns"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_owned(),
                        c["key"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if columns.iter().filter(|(_, k)| *k).count() != 1
        || body["number-of-columns"].as_u64() != Some(columns.len() as u64)
    {
        return imp(
            StatusCode::BAD_REQUEST,
            "IMP-10005",
            "exactly one key column, counted",
        );
    }
    s.data_sets.insert(
        name.to_owned(),
        DataSet {
            columns,
            case_sensitive: query.contains("caseSensitive=true"),
            records: BTreeMap::new(),
        },
    );
    answer(StatusCode::OK, json!({}))
}

fn data(d: &mut DataSet, method: &Method, body: &Value) -> Answer {
    let records = || body["records"].as_array().cloned().unwrap_or_default();
    // The IMP code and message of the first bad record, if any.
    let checked = |records: &[Value]| -> Result<Vec<(String, Value)>, (&'static str, String)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in records {
            let key = d.check(r)?;
            if !seen.insert(key.clone()) {
                return Err(("IMP-10097", "duplicate key".into()));
            }
            out.push((key, r.clone()));
        }
        Ok(out)
    };
    let refuse = |(code, msg): (&'static str, String)| imp(StatusCode::BAD_REQUEST, code, &msg);
    match *method {
        Method::GET => answer(
            StatusCode::OK,
            json!({ "records": d.records.values().collect::<Vec<_>>() }),
        ),
        Method::DELETE => {
            d.records.clear();
            answer(StatusCode::OK, json!({}))
        }
        Method::POST => match checked(&records()) {
            Ok(rows) => {
                d.records = rows.into_iter().collect();
                answer(StatusCode::OK, json!({}))
            }
            Err(e) => refuse(e),
        },
        Method::PUT => {
            let rows = match checked(&records()) {
                Ok(rows) => rows,
                Err(e) => return refuse(e),
            };
            match body["action"].as_str() {
                Some("add") => {
                    if rows.iter().any(|(k, _)| d.records.contains_key(k)) {
                        return imp(StatusCode::BAD_REQUEST, "IMP-10097", "duplicate key");
                    }
                    d.records.extend(rows);
                }
                Some("delete") => {
                    for (k, _) in rows {
                        d.records.remove(&k);
                    }
                }
                _ => {
                    return imp(
                        StatusCode::BAD_REQUEST,
                        "IMP-10005",
                        "action: add or delete",
                    );
                }
            }
            answer(StatusCode::OK, json!({}))
        }
        _ => imp(StatusCode::METHOD_NOT_ALLOWED, "IMP-10001", "method"),
    }
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
