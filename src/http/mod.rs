//! The HTTP gateway on hyper 1.x: decisions for database proxies, health and readiness.
//!
//! [`serve`] accepts connections until `shutdown` resolves, then stops accepting and lets
//! in-flight requests finish (bounded by [`DRAIN_TIMEOUT`]). Every error is
//! `application/problem+json` (RFC 9457) with a detail a person can act on. The decision route
//! loads the snapshot once, decides without locking and renders straight into the body.

pub mod query;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::engine::Outcome;
use crate::runtime::Warden;
use query::DecisionQuery;

/// How long in-flight requests get to finish after shutdown is requested.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send its request headers within this time (slowloris guard).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub type Response = hyper::Response<Full<Bytes>>;

const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";

/// Builds an RFC 9457 problem response.
pub fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    resp
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        &format!("this route accepts {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// Routes one request.
pub fn route(warden: &Warden, req: &hyper::Request<Incoming>) -> Response {
    let path = req.uri().path();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match path {
        "/v1/decision" | "/v1/authz" if !get => method_not_allowed("GET"),
        "/v1/decision" => decision(warden, req.uri().query().unwrap_or(""), false),
        "/v1/authz" => decision(warden, req.uri().query().unwrap_or(""), true),
        "/healthz" if get => json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()),
        "/readyz" if get => {
            let snapshot = warden.engine().load();
            if warden.engine().is_ready() {
                let body = format!(
                    r#"{{"status":"ready","snapshot_version":{}}}"#,
                    snapshot.version()
                );
                json(StatusCode::OK, body.into_bytes())
            } else {
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Not Ready",
                    "no snapshot has been loaded yet",
                )
            }
        }
        "/healthz" | "/readyz" => method_not_allowed("GET"),
        _ => problem(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("no route {path}; see GET /v1/decision?service=…&db_user=…"),
        ),
    }
}

/// `GET /v1/decision` (always 200) and `GET /v1/authz` (200 allow, 403 block).
fn decision(warden: &Warden, query: &str, authz: bool) -> Response {
    let q = match DecisionQuery::parse(query) {
        Ok(q) => q,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Bad Decision Query",
                &e.to_string(),
            );
        }
    };
    let snapshot = warden.engine().load();
    let d = snapshot.decide(&q.request());
    let mut body = Vec::with_capacity(160);
    snapshot.render_decision(&d, &mut body);
    let status = if authz && d.outcome == Outcome::Block {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    json(status, body)
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    warden: Arc<Warden>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
        let warden = Arc::clone(&warden);
        let service = service_fn(move |req| {
            let resp = handle(&warden, &req, peer);
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out after {DRAIN_TIMEOUT:?}; closing remaining connections");
    }
    Ok(())
}

fn handle(warden: &Warden, req: &hyper::Request<Incoming>, peer: SocketAddr) -> Response {
    let resp = route(warden, req);
    tracing::trace!(%peer, method = %req.method(), path = req.uri().path(), status = resp.status().as_u16());
    resp
}
