//! The console's single sign-on routes: `GET /console/sso/start` sends the browser to the
//! OpenID Connect provider, `GET /console/sso/callback` takes it back, checks the answer
//! ([`crate::auth::oidc`]) and signs the person in. Refused sign-ins (bad state, bad token, no
//! mapped group, no MFA) are counted in the same aggregated audit as failed keys and answer a
//! page saying why; a sign-in is audited with the person and their address.
//!
//! The provider is reached over [`crate::outbound`] (verified TLS, a timeout, a bounded
//! body). The relying party lives as long as the `[console.oidc]` configuration it was made
//! for: a reload that changes it makes a new one (sign-ins in progress then start again).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};

use super::{Gateway, Response, refused};
use crate::auth::denials::Refusal;
use crate::auth::oidc::{Callback, OidcError, RelyingParty, SignIn, Transport};
use crate::base::actor::Actor;
use crate::base::time::now_ms;
use crate::config::{OidcConfig, SSO_CALLBACK_PATH};
use crate::outbound::Endpoint;

/// The route that starts a sign-in.
pub const START_PATH: &str = "/console/sso/start";

/// The cookie binding a sign-in's state to the browser that started it.
const STATE_COOKIE: &str = "warden_sso";

/// The relying party of the configuration in force, made when first needed.
#[derive(Default)]
pub struct Sso {
    current: ArcSwapOption<RelyingParty>,
}

impl Sso {
    /// The relying party for `config`, kept while the configuration is the same.
    fn relying_party(&self, config: &Arc<OidcConfig>) -> Arc<RelyingParty> {
        if let Some(rp) = self.current.load_full()
            && **rp.config() == **config
        {
            return rp;
        }
        let rp = Arc::new(RelyingParty::new(Arc::clone(config)));
        self.current.store(Some(Arc::clone(&rp)));
        rp
    }
}

/// The route label of `path` for metrics.
pub fn route_label(path: &str) -> &'static str {
    if path == START_PATH {
        START_PATH
    } else {
        SSO_CALLBACK_PATH
    }
}

/// Whether `path` is one of these routes.
pub fn owns(path: &str) -> bool {
    path == START_PATH || path == SSO_CALLBACK_PATH
}

/// Answers `/console/sso/start` and `/console/sso/callback`.
pub async fn answer(
    gw: &Gateway,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut resp = page(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            &format!("{path} accepts GET"),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let Some(config) = gw.warden.config().console_oidc.clone() else {
        return page(
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured",
            "This warden has no [console.oidc] section; sign in with an API key.",
        );
    };
    let rp = gw.sso.relying_party(&config);
    let http = ProviderHttp { config: &config };
    if path == START_PATH {
        start(&rp, &http).await
    } else {
        callback(gw, &rp, &http, query, headers, peer).await
    }
}

async fn start(rp: &RelyingParty, http: &ProviderHttp<'_>) -> Response {
    match rp.start(http, now_ms()).await {
        Ok(started) => {
            let mut resp = redirect(&started.authorization_url);
            let config = rp.config();
            let cookie = format!(
                "{STATE_COOKIE}={}; Path=/console/sso; Max-Age={}; HttpOnly; SameSite=Lax{}",
                started.state,
                config.login_timeout.as_secs(),
                if config.redirect_url.starts_with("https://") {
                    "; Secure"
                } else {
                    ""
                }
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => failed(&e),
    }
}

async fn callback(
    gw: &Gateway,
    rp: &RelyingParty,
    http: &ProviderHttp<'_>,
    query: &str,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Response {
    let params = Params::parse(query);
    let browser_state = cookie(headers, STATE_COOKIE);
    let answer = Callback {
        state: params.get("state"),
        code: params.get("code"),
        error: params.get("error"),
        error_description: params.get("error_description"),
        browser_state,
    };
    let result = rp.finish(http, &answer, now_ms()).await;
    let mut resp = match result {
        Ok(signed_in) => sign_in(gw, &signed_in, peer),
        Err(e) => {
            if let Some((refusal, actor)) = e.refusal() {
                let needs = (refusal == Refusal::SsoMfa).then_some("mfa");
                refused(gw, peer, &actor, refusal, SSO_CALLBACK_PATH, needs);
                tracing::warn!(%peer, reason = refusal.as_str(), error = %e, "SSO sign-in refused");
            }
            failed(&e)
        }
    };
    // The sign-in is spent either way.
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "warden_sso=; Path=/console/sso; Max-Age=0; HttpOnly; SameSite=Lax",
        ),
    );
    resp
}

/// Signs a verified person in: audited with the person and their address.
fn sign_in(gw: &Gateway, signed_in: &SignIn, peer: SocketAddr) -> Response {
    let actor = Actor::new(signed_in.actor(), Some(peer.to_string()));
    let scopes: Vec<&str> = signed_in.scopes.iter().map(|s| s.as_str()).collect();
    let record = crate::store::AuditRecord::new(
        &actor,
        "console.sign_in",
        &actor.name,
        serde_json::json!({ "method": "sso", "scopes": scopes, "groups": signed_in.groups, "mfa": signed_in.mfa }),
    );
    if let Err(e) = super::blocking(|| gw.warden.store().append_audit(&record)) {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in failed",
            &format!("the sign-in could not be recorded: {e}"),
        );
    }
    tracing::info!(%peer, actor = %actor.name, "SSO sign-in");
    page(
        StatusCode::OK,
        "Signed in",
        &format!("Signed in as {} with {}.", actor.name, scopes.join(", ")),
    )
}

/// The page of a sign-in that did not happen, with the status that fits why.
fn failed(e: &OidcError) -> Response {
    let status = match e {
        OidcError::State => StatusCode::BAD_REQUEST,
        OidcError::Provider(_) | OidcError::TokenExchange(_) | OidcError::IdToken(_) => {
            StatusCode::UNAUTHORIZED
        }
        OidcError::NoMappedGroup { .. } | OidcError::MfaMissing { .. } => StatusCode::FORBIDDEN,
        OidcError::Discovery(_) | OidcError::Keys(_) | OidcError::Unreachable(_) => {
            StatusCode::BAD_GATEWAY
        }
        OidcError::Secret(_) | OidcError::Random => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "SSO sign-in failed");
    }
    page(status, "Sign-in refused", &e.to_string())
}

fn redirect(location: &str) -> Response {
    let mut resp = hyper::Response::new(http_body_util::Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A small HTML page: a title and one escaped message.
fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} — warden</title></head>\
         <body><main><h1>{t}</h1><p>{m}</p><p><a href=\"/console\">Back to the sign-in page</a></p></main></body></html>",
        t = escape(title),
        m = escape(message)
    );
    let mut resp = super::respond(status, "text/html; charset=utf-8", body);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    resp
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The value of cookie `name`.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The callback's query parameters, decoded; the first of each name counts, at most 16 kept.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Params {
        Params(
            query
                .split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((
                        super::query::decode(k).ok()?.into_owned(),
                        super::query::decode(v).ok()?.into_owned(),
                    ))
                })
                .take(16)
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The provider over [`Endpoint`]: verified TLS (system roots plus `ca_file`), plain http
/// only with `allow_insecure`, the configured timeout, bodies of at most
/// [`crate::outbound::MAX_RESPONSE_BYTES`].
struct ProviderHttp<'a> {
    config: &'a OidcConfig,
}

impl ProviderHttp<'_> {
    async fn endpoint(&self, url: &str) -> Result<Endpoint, String> {
        let url = url.to_owned();
        let ca_file = self.config.ca_file.clone();
        let allow_insecure = self.config.allow_insecure;
        let timeout = self.config.timeout;
        // Reads the CA file and the system roots.
        tokio::task::spawn_blocking(move || {
            Endpoint::new(&url, ca_file.as_deref(), allow_insecure, timeout)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

impl Transport for ProviderHttp<'_> {
    async fn get(&self, url: &str) -> Result<(u16, Bytes), String> {
        let endpoint = self.endpoint(url).await?;
        let (status, body) = endpoint
            .send(&Method::GET, "", &[], None)
            .await
            .map_err(|e| e.to_string())?;
        Ok((status.as_u16(), body))
    }

    async fn post_form(
        &self,
        url: &str,
        authorization: &str,
        body: String,
    ) -> Result<(u16, Bytes), String> {
        let endpoint = self.endpoint(url).await?;
        let (status, body) = endpoint
            .send_body(
                &Method::POST,
                "",
                &[("authorization", authorization)],
                Some(("application/x-www-form-urlencoded", Bytes::from(body))),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok((status.as_u16(), body))
    }
}
