//! The HTTP gateway on hyper 1.x: decisions for database proxies, lists for analysts, data sets
//! for Imperva, incidents and alerts for responders, and the admin surface (devices, policies,
//! audit, keys, metrics, config reload); and the analyst console under `/console` ([`console`]).
//!
//! [`serve`] owns connections and limits: at most `max_connections` open at once (the rest wait
//! in the accept queue) and `max_connections_per_client` from one address (more are refused),
//! request headers within `header_read_timeout` (slowloris), an answer within
//! `request_timeout`, written to a client that reads it within `write_timeout`, idle
//! connections closed after `idle_timeout` (the front-end kit's [`crate::front::listener`]
//! holds the caps and the connection timeouts), bodies up to `max_body_bytes`. [`routes`] says which handler and
//! scope each method and path has; dispatch authenticates, checks the scope, reads the body
//! and calls the handler. Every error is `application/problem+json` (RFC 9457), but on the MX
//! Open API paths warden serves ([`mx_api`]), which answer as an MX does. On shutdown the
//! listener closes and in-flight requests finish (bounded by [`DRAIN_TIMEOUT`]).

mod accounts;
mod admin;
pub mod console;
mod contain;
mod data_sets;
mod decisions;
pub use decisions::answer_batch;
mod imperva;
mod incidents;
mod lists;
mod mx_api;
pub mod problem;
pub mod query;
pub mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::auth::denials::Refusal;
use crate::auth::{AuthError, Caller, Scope};
use crate::base::actor::Actor;
use crate::front::listener::{self, ConnectionDrop};
use crate::runtime::Warden;
use crate::services::Board;
use problem::Problem;
use routes::{Access, Handler, Matched, Params};

/// How long in-flight requests get to finish after shutdown is requested.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The OpenAPI 3 description of this API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

pub type Response = hyper::Response<Full<Bytes>>;

const JSON: &str = "application/json";

/// The header every answer of `GET /v1/authz` and `GET /v1/decision` carries:
/// `allow`, `block` or `error` (anything that is not a decision: 400, 401, 403 for a key,
/// 503, a timeout…). [`answer`] guarantees it, so no route or error path can leave it out.
pub const WARDEN_DECISION: &str = "warden-decision";

/// On every successful write: the store revision that includes it (see
/// `decisions::at_least`).
pub const WARDEN_REVISION: &str = "warden-revision";

/// The single-decision routes, whose every answer carries [`WARDEN_DECISION`]; `/v1/authz/…`
/// (any suffix, for Envoy) is `/v1/authz`.
const AUTHZ_PATH: &str = "/v1/authz";
const DECISION_PATH: &str = "/v1/decision";

fn is_authz_path(path: &str) -> bool {
    path.strip_prefix(AUTHZ_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Makes an answer of a single-decision route keep the contract a proxy relies on: it carries
/// `Warden-Decision` (`error` unless the handler said otherwise), and on `/v1/authz` only an
/// `allow` answers 200 — a 200 that is not one becomes a 500 `error`.
fn decision_contract(authz: bool, resp: &mut Response) {
    let said = resp
        .headers()
        .get(WARDEN_DECISION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allowed = said.as_deref() == Some("allow");
    if authz && resp.status().is_success() != allowed {
        // Never seen; a guard so that a future change cannot make a non-allow look like one.
        *resp = Problem::internal(format!(
            "inconsistent answer (status {}, decision {said:?}); not an allow",
            resp.status()
        ))
        .into_response();
    } else if said.is_some() {
        return;
    }
    resp.headers_mut()
        .insert(WARDEN_DECISION, HeaderValue::from_static("error"));
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut resp = hyper::Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    respond(status, JSON, body)
}

fn json_value(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json(status, body),
        Err(e) => Problem::internal(format!("cannot render the response: {e}")).into_response(),
    }
}

fn no_content() -> Response {
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// Runs store work (SQLite, fsync) without stalling the other tasks on this worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// What the gateway serves from.
pub struct Gateway {
    warden: Arc<Warden>,
    /// The background services and whether each is ready, shown in `/readyz`.
    services: Board,
    /// `max_connections` and `max_connections_per_client`, fixed for the life of the listener:
    /// a reload cannot resize them.
    caps: listener::Caps,
    /// The sessions of the gates, shown in `GET /v1/gates`.
    sessions_open: crate::front::Sessions,
    /// The analyst console's signed-in sessions.
    sessions: console::session::Sessions,
    /// The console's single sign-on.
    sso: console::sso::Sso,
    /// Requests and connections counted (held here: every request records one).
    http_metrics: Arc<admin::HttpMetrics>,
}

/// The `[server]` limits a request is held to, read from the configuration in force so that a
/// reload applies them to the next request.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_batch: usize,
    max_body_bytes: usize,
    header_read_timeout: Duration,
    request_timeout: Duration,
    connection: listener::Timeouts,
    anonymous_decisions: bool,
}

impl Gateway {
    pub fn new(warden: Arc<Warden>, services: Board) -> Gateway {
        admin::register_metrics(warden.metrics());
        let config = warden.config();
        let caps = listener::Caps::new(
            config.server.max_connections,
            config.server.max_connections_per_client,
        );
        let http_metrics = warden.metrics().get::<admin::HttpMetrics>();
        Gateway {
            http_metrics,
            warden,
            services,
            caps,
            sessions_open: crate::front::Sessions::default(),
            sessions: console::session::Sessions::default(),
            sso: console::sso::Sso::default(),
        }
    }

    /// Shows these gates' sessions in `GET /v1/gates`.
    pub fn with_sessions(mut self, sessions: crate::front::Sessions) -> Gateway {
        self.sessions_open = sessions;
        self
    }

    pub fn warden(&self) -> &Arc<Warden> {
        &self.warden
    }

    /// The console's sessions (for a sign-in method: see [`console::sign_in`]).
    pub fn sessions(&self) -> &console::session::Sessions {
        &self.sessions
    }

    /// Whether the gateway serves TLS (fixed for the life of the listener: a reload cannot
    /// change it).
    pub fn is_tls(&self) -> bool {
        self.warden.config().server.tls.is_some()
    }

    fn limits(&self) -> Limits {
        let config = self.warden.config();
        let s = &config.server;
        Limits {
            max_batch: s.max_batch,
            max_body_bytes: s.max_body_bytes,
            header_read_timeout: s.header_read_timeout,
            request_timeout: s.request_timeout,
            connection: listener::Timeouts {
                write: s.write_timeout,
                idle: s.idle_timeout,
                head: s.header_read_timeout,
            },
            anonymous_decisions: s.anonymous_decisions,
        }
    }
}

/// One request on its way to a handler.
pub struct Call<'a> {
    gw: &'a Gateway,
    params: Params,
    query: &'a str,
    headers: &'a HeaderMap,
    method: &'a Method,
    body: Bytes,
    caller: Option<Caller>,
    peer: SocketAddr,
}

impl Call<'_> {
    fn warden(&self) -> &Warden {
        &self.gw.warden
    }

    fn gate_sessions(&self) -> &crate::front::Sessions {
        &self.gw.sessions_open
    }

    fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", |p| p.as_ref())
    }

    /// Who is calling, from where: the key's actor (or `anonymous`) and the peer address.
    fn actor(&self) -> Actor {
        actor(self.caller.as_ref(), self.peer)
    }
}

fn actor(caller: Option<&Caller>, peer: SocketAddr) -> Actor {
    Actor::new(
        caller.map_or_else(|| "anonymous".to_owned(), Caller::actor),
        Some(peer.to_string()),
    )
}

/// Counts a refusal: a metric now, an aggregated audit record at the next flush
/// ([`crate::auth::denials`]). Nothing here waits on the store.
fn refused(
    gw: &Gateway,
    peer: SocketAddr,
    actor: &str,
    refusal: Refusal,
    route: &'static str,
    needs: Option<&'static str>,
) {
    let overflow = gw
        .warden
        .denials()
        .record(peer.ip(), actor, refusal, route, needs);
    gw.warden.refusal_metrics().refused(refusal, overflow);
}

/// How a failed authentication is counted.
fn refusal_of(e: AuthError) -> Refusal {
    match e {
        AuthError::Missing => Refusal::Missing,
        AuthError::Malformed => Refusal::Malformed,
        AuthError::Invalid => Refusal::Invalid,
        AuthError::Expired => Refusal::Expired,
        AuthError::Revoked => Refusal::Revoked,
        AuthError::Rotated => Refusal::Rotated,
    }
}

/// Authenticates the caller for `access`: `Ok(None)` for public routes and anonymous decisions.
fn authorize(
    gw: &Gateway,
    access: Access,
    headers: &HeaderMap,
    peer: SocketAddr,
    path: &'static str,
) -> Result<Option<Caller>, Problem> {
    let scope = match access {
        Access::Public => return Ok(None),
        Access::AnyKey => None,
        Access::Key(scope) => Some(scope),
    };
    if scope == Some(Scope::Decide) && gw.limits().anonymous_decisions {
        return Ok(None);
    }
    let header = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let caller = gw
        .warden
        .keys()
        .authenticate(header, crate::base::time::now())
        .map_err(|e| {
            refused(gw, peer, "anonymous", refusal_of(e), path, None);
            Problem::new(StatusCode::UNAUTHORIZED, e.to_string())
        })?;
    if let Some(scope) = scope
        && !caller.has(scope)
    {
        refused(
            gw,
            peer,
            &caller.actor(),
            Refusal::Forbidden,
            path,
            Some(scope.as_str()),
        );
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "this key ({}) lacks the {scope} scope this route needs",
                caller.name
            ),
        ));
    }
    Ok(Some(caller))
}

/// Reads the body up to `max` bytes; 413 beyond.
async fn read_body(body: Incoming, headers: &HeaderMap, max: usize) -> Result<Bytes, Problem> {
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds the limit of {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Problem::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// Routes, authenticates and answers one request. Returns the route label for metrics.
async fn dispatch(
    gw: &Gateway,
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> (&'static str, Response) {
    let (parts, body) = req.into_parts();
    if console::owns(parts.uri.path()) {
        return ("/console", console::answer(gw, parts, body, peer).await);
    }
    let path = parts.uri.path();
    let matched = match routes::find(&parts.method, path) {
        Ok(m) => m,
        Err(bad) => {
            let p = Problem::bad_request(format!(
                "path segment {:?} is not valid percent-encoded UTF-8",
                bad.0
            ));
            return ("invalid", p.into_response());
        }
    };
    let (route, params) = match matched {
        Matched::Route(route, params) => (route, params),
        Matched::WrongMethod(allow) => {
            let mut p = Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} accepts {allow}, not {}", parts.method),
            );
            p.allow = Some(allow);
            return ("unmatched", p.into_response());
        }
        Matched::NotFound => {
            let p = Problem::not_found(format!(
                "no route {path}; GET /v1/openapi.json lists every route"
            ));
            return ("unmatched", p.into_response());
        }
    };
    let caller = match authorize(gw, route.access, &parts.headers, peer, route.path) {
        Ok(c) => c,
        Err(p) => return (route.path, refusal(route.path, p)),
    };
    let body = if matches!(parts.method, Method::POST | Method::PUT | Method::DELETE) {
        match read_body(body, &parts.headers, gw.limits().max_body_bytes).await {
            Ok(b) => b,
            Err(p) => return (route.path, problem::render(route.path, p)),
        }
    } else {
        Bytes::new()
    };
    let call = Call {
        gw,
        params,
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        method: &parts.method,
        body,
        caller,
        peer,
    };
    let mut resp = handle(route.handler, &call)
        .await
        .unwrap_or_else(|p| problem::render(route.path, p));
    let writes = *call.method != Method::GET && !matches!(route.handler, Handler::Decisions);
    if writes && resp.status().is_success() {
        // Read-your-writes: the revision the write committed at (or a newer one), which a
        // decision on any replica may name as `min_revision`.
        let revision = gw.warden().store().revision();
        if let Ok(v) = HeaderValue::from_str(&revision.to_string()) {
            resp.headers_mut().insert(WARDEN_REVISION, v);
        }
    }
    (route.path, resp)
}

/// The answer to a caller [`authorize`] turned away (a 401 says how to authenticate).
fn refusal(route: &'static str, p: Problem) -> Response {
    let mut resp = problem::render(route, p);
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"warden\""),
        );
    }
    resp
}

/// A decision answered without waiting for anything: `GET` (or `HEAD`) `/v1/decision` or
/// `/v1/authz` without `min_revision`, routed and authorised as [`dispatch`] does. It runs
/// in the connection's own poll, with no request timeout to arm (there is nothing to wait
/// for) and without the dispatch future, which holds room for every handler's state and
/// would be kilobytes to set up per request. `None`: [`dispatch`] answers it.
fn decide_now(
    gw: &Gateway,
    req: &hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Option<(&'static str, Response)> {
    let query = req.uri().query().unwrap_or("");
    if query.contains("min_revision") {
        return None;
    }
    let Ok(Matched::Route(route, params)) = routes::find(req.method(), req.uri().path()) else {
        return None;
    };
    let authz = match route.handler {
        Handler::Decision => false,
        Handler::Authz => true,
        _ => return None,
    };
    let caller = match authorize(gw, route.access, req.headers(), peer, route.path) {
        Ok(c) => c,
        Err(p) => return Some((route.path, refusal(route.path, p))),
    };
    let call = Call {
        gw,
        params,
        query,
        headers: req.headers(),
        method: req.method(),
        body: Bytes::new(),
        caller,
        peer,
    };
    let resp = decisions::single(&call, authz).unwrap_or_else(|p| problem::render(route.path, p));
    Some((route.path, resp))
}

async fn handle(handler: Handler, call: &Call<'_>) -> Result<Response, Problem> {
    match handler {
        Handler::Healthz => Ok(json(StatusCode::OK, &br#"{"status":"ok"}"#[..])),
        Handler::Readyz => admin::readyz(call),
        Handler::Metrics => Ok(admin::metrics(call)),
        Handler::Status => Ok(json_value(StatusCode::OK, &admin::replica(call.warden()))),
        Handler::OpenApi => Ok(json(StatusCode::OK, OPENAPI)),
        Handler::Decision => {
            decisions::at_least(call).await?;
            decisions::single(call, false)
        }
        Handler::Authz => {
            decisions::at_least(call).await?;
            decisions::single(call, true)
        }
        Handler::Decisions => {
            decisions::at_least(call).await?;
            decisions::batch(call)
        }
        Handler::Lists => blocking(|| lists::lists(call)),
        Handler::CreateList => blocking(|| lists::create(call)),
        Handler::Members => blocking(|| lists::members(call)),
        Handler::Account => blocking(|| accounts::account(call)),
        Handler::AddMember => blocking(|| lists::add_member(call)),
        Handler::ReleaseExpiry => blocking(|| lists::release_expiry(call)),
        Handler::RemoveMember => blocking(|| lists::remove_member(call)),
        Handler::SetMemberExpiry => blocking(|| lists::set_expiry(call)),
        Handler::Incidents => blocking(|| incidents::list(call)),
        Handler::CreateIncident => blocking(|| incidents::create(call)),
        Handler::Incident => blocking(|| incidents::get(call)),
        Handler::Respond => blocking(|| incidents::respond(call)),
        Handler::Alert => blocking(|| incidents::alert(call)),
        Handler::Contain => blocking(|| contain::contain(call)),
        Handler::Receipt => blocking(|| contain::receipt(call)),
        Handler::Release => blocking(|| contain::release(call)),
        Handler::DataSets => blocking(|| data_sets::list(call)),
        Handler::DataSetRows => data_sets::rows(call),
        Handler::RefreshDataSet => data_sets::refresh(call).await,
        Handler::TestQuery => data_sets::test_query(call).await,
        Handler::AcceptRefresh => blocking(|| data_sets::accept(call)),
        Handler::ReplaceData | Handler::UpdateData | Handler::ClearData => {
            blocking(|| data_sets::write_data(call))
        }
        Handler::MxDataSets => Ok(mx_api::list(call)),
        Handler::MxCreateDataSet => mx_api::create(call),
        Handler::MxColumns => mx_api::columns(call),
        Handler::MxRecords => mx_api::records(call),
        Handler::Directories => blocking(|| admin::directories(call, "directories")),
        Handler::Devices => blocking(|| admin::directories(call, "devices")),
        Handler::SyncDirectory => admin::sync_directory(call).await,
        Handler::Databases => blocking(|| admin::databases(call)),
        Handler::SyncDatabase => admin::sync_database(call).await,
        Handler::Policies => Ok(admin::policies(call)),
        Handler::Gates => Ok(admin::gates(call)),
        Handler::ImpervaStatus => blocking(|| imperva::status(call)),
        Handler::ImpervaPush => imperva::push(call).await,
        Handler::Audit => blocking(|| admin::audit_log(call)),
        Handler::DecisionLog => blocking(|| admin::decision_log(call)),
        Handler::Reload => blocking(|| admin::reload(call)),
        Handler::Keys => blocking(|| admin::keys(call)),
        Handler::CreateKey => blocking(|| admin::create_key(call)),
        Handler::RevokeKey => blocking(|| admin::revoke_key(call)),
        Handler::RotateKey => blocking(|| admin::rotate_key(call)),
    }
}

/// What every answer goes through on its way out, whichever path made it.
#[derive(Clone, Copy)]
struct Shape {
    is_head: bool,
    authz: bool,
    decision_route: bool,
}

impl Shape {
    fn of(req: &hyper::Request<Incoming>) -> Shape {
        // The same comparison the route table makes: this is every request that reaches (or,
        // with another method, would reach) the decision handlers.
        let authz = is_authz_path(req.uri().path());
        Shape {
            is_head: req.method() == Method::HEAD,
            authz,
            decision_route: authz || req.uri().path() == DECISION_PATH,
        }
    }

    /// The decision contract kept, the answer counted, a `HEAD`'s body dropped.
    fn finish(
        self,
        gw: &Gateway,
        route: &'static str,
        mut resp: Response,
        peer: SocketAddr,
    ) -> Response {
        if self.decision_route {
            decision_contract(self.authz, &mut resp);
        }
        gw.http_metrics.response(route, resp.status().as_u16());
        tracing::trace!(%peer, route, status = resp.status().as_u16());
        if self.is_head {
            *resp.body_mut() = Full::new(Bytes::new());
        }
        resp
    }
}

/// A request's answer as hyper awaits it: made at once (a decision that waits for nothing,
/// [`decide_now`]), or on its way ([`answer`], boxed: its future holds room for every
/// handler's state).
enum Answering {
    Now(std::future::Ready<Response>),
    Later(std::pin::Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Future for Answering {
    type Output = Result<Response, Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Answering::Now(ready) => std::pin::Pin::new(ready).poll(cx).map(Ok),
            Answering::Later(later) => later.as_mut().poll(cx).map(Ok),
        }
    }
}

/// Answers at once what waits for nothing: no task state, no request timeout, no clone of
/// the gateway or of the connection's watch (nothing can read the connection while the answer
/// is made in its own poll). Everything else is [`answer`]ed, the connection marked busy
/// meanwhile so that a slow answer is not taken for an idle client.
fn answering(
    gw: &Arc<Gateway>,
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
    watch: &listener::Watch,
) -> Answering {
    let shape = Shape::of(&req);
    if shape.decision_route
        && let Some((route, resp)) = decide_now(gw, &req, peer)
    {
        return Answering::Now(std::future::ready(shape.finish(gw, route, resp, peer)));
    }
    let gw = Arc::clone(gw);
    let busy = watch.busy();
    Answering::Later(Box::pin(async move {
        let resp = answer(gw, req, peer, shape).await;
        drop(busy);
        resp
    }))
}

async fn answer(
    gw: Arc<Gateway>,
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
    shape: Shape,
) -> Response {
    let timeout = gw.limits().request_timeout;
    // Boxed: the dispatch future is large, and only moved once so.
    let (route, resp) =
        match tokio::time::timeout(timeout, Box::pin(dispatch(&gw, req, peer))).await {
            Ok(answered) => answered,
            Err(_) => (
                "timeout",
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the request was not answered within {timeout:?}; try again"),
                )
                .into_response(),
            ),
        };
    shape.finish(&gw, route, resp, peer)
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let metrics = Arc::clone(&gateway.http_metrics);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = gateway.caps.listener_slot() => match slot {
                Some(s) => s,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Running out of file descriptors is transient; back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gw = Arc::clone(&gateway);
        let graceful_watch = graceful.watcher();
        let tls = tls.clone();
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let Ok(_held) = gw.caps.hold_with(slot, peer.ip()) else {
                metrics.connection_dropped(ConnectionDrop::PerClientCap);
                refuse_over_cap(stream, tls.is_some());
                return;
            };
            metrics.connection_opened();
            let ended = connection(Arc::clone(&gw), stream, peer, tls, graceful_watch).await;
            if let Some(why) = ended {
                tracing::debug!(%peer, reason = why.as_str(), "connection dropped");
                metrics.connection_dropped(why);
            }
            metrics.connection_closed();
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out after {DRAIN_TIMEOUT:?}; closing remaining connections");
    }
    Ok(())
}

/// Tells a client over its address's cap why it is turned away, if the socket takes the few
/// bytes at once (a fresh socket does), and closes. It never waits on the client, and reads
/// nothing: the connection gives its slot back at once. Over TLS it closes without a word (an
/// answer would need a handshake first).
fn refuse_over_cap(stream: tokio::net::TcpStream, tls: bool) {
    if tls {
        return;
    }
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "too many connections from this address (max_connections_per_client); \
                   close some and retry",
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.try_write(format!("{head}{body}").as_bytes());
}

/// Serves one connection held to its timeouts (TLS, if configured, over them); returns why
/// the listener dropped it, if it did.
async fn connection(
    gw: Arc<Gateway>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    graceful: hyper_util::server::graceful::Watcher,
) -> Option<ConnectionDrop> {
    let limits = gw.limits();
    let watch = listener::Watch::default();
    let stream = listener::Deadlines::new(stream, limits.connection, watch.clone());
    let served = match tls {
        None => serve_connection(gw, stream, peer, watch.clone(), graceful).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(tls_stream)) => {
                    serve_connection(gw, tls_stream, peer, watch.clone(), graceful).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    Ok(())
                }
                Err(_) => return Some(ConnectionDrop::HeaderTimeout),
            }
        }
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    watch.expired()
}

async fn serve_connection<S>(
    gw: Arc<Gateway>,
    stream: S,
    peer: SocketAddr,
    watch: listener::Watch,
    graceful: hyper_util::server::graceful::Watcher,
) -> Result<(), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| answering(&gw, req, peer, &watch));
    // The header read timeout is the head clock of `listener::Deadlines`, not hyper's, whose
    // timer is armed and cancelled per request.
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    graceful.watch(conn).await
}

/// A TLS acceptor for the configured certificate and key (the kit's, without ALPN).
pub fn tls_acceptor(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let files = crate::config::TlsFiles {
        cert_file: cert_file.to_path_buf(),
        key_file: key_file.to_path_buf(),
    };
    crate::front::tls::acceptor(&files, &[]).map_err(|e| e.to_string())
}
