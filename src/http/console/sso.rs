//! The console's single sign-on pages: `GET /console/sso/start` sends the browser to the
//! OpenID Connect provider, `GET /console/sso/callback` takes it back, checks the answer
//! ([`crate::auth::oidc`]) and signs the person in through the console's one entry point
//! ([`super::sign_in`]: audited `console.sign_in` with the person and their address, then the
//! session cookie). Refused sign-ins (bad state, bad token, no mapped group, no MFA, a person
//! whose groups grant neither `respond` nor `admin`) are counted in the same aggregated audit
//! as failed keys and answer a page saying why.
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

use super::form::Form;
use super::session::{ConsoleIdentity, Credential, cookie};
use super::{Gateway, Response, problem_page, redirect, refused};
use crate::auth::Scope;
use crate::auth::denials::Refusal;
use crate::auth::oidc::{Callback, OidcError, RelyingParty, SignIn, Transport};
use crate::base::time::now_ms;
use crate::config::{OidcConfig, SSO_CALLBACK_PATH};
use crate::outbound::Endpoint;

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

/// Answers `/console/sso/start` (`callback` false) and `/console/sso/callback`.
pub(super) async fn answer(
    gw: &Gateway,
    callback_page: bool,
    query: &Form,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Response {
    let Some(config) = gw.warden.config().console_oidc.clone() else {
        return problem_page(
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured",
            "This warden has no [console.oidc] section; sign in with an API key.",
        );
    };
    let rp = gw.sso.relying_party(&config);
    let http = ProviderHttp { config: &config };
    if callback_page {
        callback(gw, &rp, &http, query, headers, peer).await
    } else {
        start(&rp, &http).await
    }
}

async fn start(rp: &RelyingParty, http: &ProviderHttp<'_>) -> Response {
    match rp.start(http, now_ms()).await {
        Ok(started) => {
            let mut resp = redirect(&started.authorization_url);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
    query: &Form,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Response {
    let param = |name: &str| {
        query
            .pairs()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let answer = Callback {
        state: param("state"),
        code: param("code"),
        error: param("error"),
        error_description: param("error_description"),
        iss: param("iss"),
        browser_state: cookie(headers, STATE_COOKIE),
    };
    let result = rp
        .finish(http, &answer, now_ms())
        .await
        .and_then(console_scope);
    let mut resp = match result {
        Ok(signed_in) => continue_page(crate::http::blocking(|| {
            super::sign_in(gw, identity(&signed_in), peer)
        })),
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

/// The console's sign-in answers a redirect with the session cookie. After single sign-on the
/// browser comes from the provider's site, and a `SameSite=Strict` cookie is not sent along a
/// redirect chain another site started: the console's own page, moving on by itself (a meta
/// refresh, no script) or by its link, makes the next request same-site.
fn continue_page(resp: Response) -> Response {
    if resp.status() != StatusCode::SEE_OTHER {
        return resp;
    }
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(super::PREFIX)
        .to_owned();
    let mut page = super::html(StatusCode::OK, super::views::signed_in(&location));
    for cookie in resp.headers().get_all(header::SET_COOKIE) {
        page.headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    page
}

/// The console needs `respond` (or `admin`): a person whose groups grant only `decide` is
/// refused as one in no group the console maps.
fn console_scope(signed_in: SignIn) -> Result<SignIn, OidcError> {
    if signed_in.has(Scope::Respond) {
        Ok(signed_in)
    } else {
        Err(OidcError::NoMappedGroup {
            actor: signed_in.actor(),
        })
    }
}

/// The console identity of a verified person.
fn identity(signed_in: &SignIn) -> ConsoleIdentity {
    ConsoleIdentity {
        actor: signed_in.actor(),
        scopes: signed_in.scopes.clone(),
        credential: Credential::Sso {
            groups: signed_in.groups.clone(),
            mfa: signed_in.mfa,
        },
    }
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
    problem_page(status, "Sign-in refused", &e.to_string())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Config;

    fn oidc(client_id: &str) -> Arc<OidcConfig> {
        let text = format!(
            r#"[console.oidc]
issuer = "https://login.example.test"
client_id = "{client_id}"
client_secret_env = "WARDEN_TEST_OIDC_SECRET"
redirect_url = "https://warden.example.test/console/sso/callback"
groups = {{ "SOC Analysts" = "respond" }}
"#
        );
        Config::parse(&text, "test", std::path::Path::new("."))
            .unwrap()
            .console_oidc
            .unwrap()
    }

    #[test]
    fn the_relying_party_is_kept_while_its_configuration_is_and_remade_after() {
        let sso = Sso::default();
        let first = sso.relying_party(&oidc("warden"));
        // A reload with the same section (a new Arc, equal content) keeps it, and the
        // sign-ins in progress with it.
        assert!(Arc::ptr_eq(&first, &sso.relying_party(&oidc("warden"))));
        let changed = sso.relying_party(&oidc("warden-2"));
        assert!(!Arc::ptr_eq(&first, &changed));
        assert_eq!(changed.config().client_id, "warden-2");
    }
}
