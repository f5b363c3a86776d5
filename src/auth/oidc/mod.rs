//! Single sign-on to the console: an OpenID Connect relying party (authorization code flow
//! with PKCE S256), from the provider's discovery document to a verified sign-in with warden
//! scopes.
//!
//! [`RelyingParty::start`] makes a sign-in: a `state`, a `nonce` and a PKCE verifier, each 32
//! bytes from the system CSPRNG, kept in the bounded [`pending`] table, and the provider's
//! authorization URL to send the browser to. [`RelyingParty::finish`] takes the provider's
//! answer: the `state` is taken once (unknown, replayed or expired: refused) and must be the
//! one this browser started with, the code is exchanged at the token endpoint with the
//! verifier and the client secret (read from its file or variable at each exchange), and the
//! ID token is verified ([`token`]) against the provider's published keys ([`provider`]),
//! fetched once and again when a token names a key not seen yet or its key's signature fails (at most every
//! [`KEY_REFETCH_MS`]). The verified claims become a [`SignIn`]: the provider groups mapped to
//! scopes by `[console.oidc.groups]` (no mapped group: refused) and, with `require_mfa`, an
//! `amr` or `acr` that counts as multi-factor (none: refused).
//!
//! The HTTP exchanges go through a [`Transport`] the front end provides (over
//! [`crate::outbound`]-style verified TLS), so this module holds the protocol and no sockets.

pub mod pending;
pub mod provider;
pub mod token;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use super::Scope;
use super::denials::Refusal;
use crate::base::secret::SecretError;
use crate::config::OidcConfig;
use pending::{MAX_PENDING, Pending, PendingLogins};
use provider::{Discovery, Keys, TokenResponse, truncate};
use token::{Expected, IdClaims, TokenError};

/// The JWKS is fetched again for an unknown key at most this often (milliseconds), so tokens
/// naming made-up key ids cannot make warden hammer the provider.
pub const KEY_REFETCH_MS: i64 = 30_000;

/// A failed discovery is retried no sooner than this (milliseconds): `/console/sso/start` is
/// public, and each request must not become a request to the provider.
pub const DISCOVERY_RETRY_MS: i64 = 5_000;

/// Plain HTTP to the provider, given by the front end: verified TLS, a timeout and a bounded
/// body are its business.
pub trait Transport: Send + Sync {
    /// `GET url`, answering the status and body.
    fn get(&self, url: &str) -> impl Future<Output = Result<(u16, Bytes), String>> + Send;
    /// `POST url` with an `application/x-www-form-urlencoded` body and an `Authorization`
    /// header.
    fn post_form(
        &self,
        url: &str,
        authorization: &str,
        body: String,
    ) -> impl Future<Output = Result<(u16, Bytes), String>> + Send;
}

/// Why a sign-in failed. Never carries a code, token or secret.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the provider's discovery document cannot be used: {0}")]
    Discovery(String),
    #[error("the provider's signing keys cannot be used: {0}")]
    Keys(String),
    #[error(
        "this sign-in is unknown, expired, already used or was started in another browser; start again"
    )]
    State,
    #[error("the provider refused the sign-in: {0}")]
    Provider(String),
    #[error("{0}")]
    TokenExchange(String),
    #[error("the provider's token endpoint cannot be reached: {0}")]
    Unreachable(String),
    #[error(transparent)]
    IdToken(#[from] TokenError),
    #[error("{actor} is in no group that [console.oidc.groups] maps to a warden scope")]
    NoMappedGroup { actor: String },
    #[error("{actor} signed in without multi-factor authentication, which this console requires")]
    MfaMissing { actor: String },
    #[error("the client secret cannot be read: {0}")]
    Secret(#[from] SecretError),
    #[error("the system random number generator failed")]
    Random,
}

impl OidcError {
    /// How a refused sign-in is audited ([`super::denials`]): the reason and the actor, when
    /// the sign-in was refused rather than failed on warden's or the provider's side.
    pub fn refusal(&self) -> Option<(Refusal, String)> {
        let anonymous = || "anonymous".to_owned();
        Some(match self {
            OidcError::State => (Refusal::SsoState, anonymous()),
            OidcError::Provider(_) => (Refusal::SsoProvider, anonymous()),
            OidcError::TokenExchange(_) | OidcError::IdToken(_) => (Refusal::SsoToken, anonymous()),
            OidcError::NoMappedGroup { actor } => (Refusal::SsoGroup, actor.clone()),
            OidcError::MfaMissing { actor } => (Refusal::SsoMfa, actor.clone()),
            OidcError::Discovery(_)
            | OidcError::Keys(_)
            | OidcError::Unreachable(_)
            | OidcError::Secret(_)
            | OidcError::Random => return None,
        })
    }
}

/// A sign-in started: where to send the browser, and the state to bind to it (a cookie).
#[derive(Debug)]
pub struct Started {
    pub authorization_url: String,
    pub state: String,
}

/// The provider's answer on the callback, and the state this browser started with.
#[derive(Debug, Default)]
pub struct Callback<'a> {
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    pub error_description: Option<&'a str>,
    /// The issuer the provider says answered (RFC 9207), when it says.
    pub iss: Option<&'a str>,
    /// The state of the sign-in cookie set by `start`.
    pub browser_state: Option<&'a str>,
}

/// A verified sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// The scopes the mapped groups grant, sorted.
    pub scopes: Vec<Scope>,
    /// The provider groups that were mapped.
    pub groups: Vec<String>,
    /// Whether the ID token showed multi-factor authentication.
    pub mfa: bool,
}

impl SignIn {
    /// How the person appears in the audit log: `sso:<subject> (<email or name>)`.
    pub fn actor(&self) -> String {
        actor_of(
            &self.subject,
            self.email.as_deref().or(self.name.as_deref()),
        )
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

fn actor_of(subject: &str, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("sso:{subject} ({l})"),
        None => format!("sso:{subject}"),
    }
}

#[derive(Default)]
struct ProviderState {
    discovery: Option<Arc<Discovery>>,
    /// When discovery last failed (Unix ms).
    discovery_failed_ms: Option<i64>,
    keys: Arc<Keys>,
    /// When the keys were last fetched (Unix ms).
    keys_fetched_ms: Option<i64>,
}

/// The relying party of one `[console.oidc]` configuration.
pub struct RelyingParty {
    config: Arc<OidcConfig>,
    pending: PendingLogins,
    provider: tokio::sync::Mutex<ProviderState>,
    rng: SystemRandom,
}

impl RelyingParty {
    pub fn new(config: Arc<OidcConfig>) -> RelyingParty {
        let ttl_ms = i64::try_from(config.login_timeout.as_millis()).unwrap_or(i64::MAX);
        RelyingParty {
            config,
            pending: PendingLogins::new(ttl_ms, MAX_PENDING),
            provider: tokio::sync::Mutex::new(ProviderState::default()),
            rng: SystemRandom::new(),
        }
    }

    pub fn config(&self) -> &Arc<OidcConfig> {
        &self.config
    }

    /// Sign-ins waiting for the provider.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Starts a sign-in at `now_ms`.
    pub async fn start(&self, http: &impl Transport, now_ms: i64) -> Result<Started, OidcError> {
        let discovery = self.discovery(http, now_ms).await?;
        let state = self.random()?;
        let nonce = self.random()?;
        let verifier = self.random()?;
        let challenge = super::base64url(digest(&SHA256, verifier.as_bytes()).as_ref());
        let c = &self.config;
        let query = form(&[
            ("response_type", "code"),
            ("client_id", &c.client_id),
            ("redirect_uri", &c.redirect_url),
            ("scope", &c.scopes.join(" ")),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let endpoint = &discovery.authorization_endpoint;
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        let evicted = self.pending.insert(
            state.clone(),
            Pending {
                nonce,
                verifier,
                started_ms: now_ms,
            },
            now_ms,
        );
        if evicted {
            tracing::warn!("too many SSO sign-ins in progress: the oldest was dropped");
        }
        Ok(Started {
            authorization_url: format!("{endpoint}{sep}{query}"),
            state,
        })
    }

    /// Finishes a sign-in from the provider's answer, at `now_ms`.
    pub async fn finish(
        &self,
        http: &impl Transport,
        callback: &Callback<'_>,
        now_ms: i64,
    ) -> Result<SignIn, OidcError> {
        let state = callback.state.ok_or(OidcError::State)?;
        // Taken first, so a state is spent whatever happens next.
        let pending = self.pending.take(state, now_ms).ok_or(OidcError::State)?;
        let same_browser = callback
            .browser_state
            .is_some_and(|b| bool::from(b.as_bytes().ct_eq(state.as_bytes())));
        if !same_browser {
            return Err(OidcError::State);
        }
        if let Some(error) = callback.error {
            let why = match callback.error_description {
                Some(d) => format!("{}: {}", truncate(error), truncate(d)),
                None => truncate(error),
            };
            return Err(OidcError::Provider(why));
        }
        let code = callback
            .code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| OidcError::TokenExchange("the provider's answer has no code".into()))?;
        let discovery = self.discovery(http, now_ms).await?;
        // A mix-up (RFC 9207): an answer from another provider is not exchanged here.
        if let Some(iss) = callback.iss
            && iss.trim_end_matches('/') != discovery.issuer.trim_end_matches('/')
        {
            return Err(OidcError::Provider(format!(
                "the answer names issuer {:?}, not this console's provider",
                truncate(iss)
            )));
        }
        let token = self
            .exchange(http, &discovery, code, &pending.verifier)
            .await?;
        let claims = self
            .verify(http, &discovery, &token.id_token, &pending.nonce, now_ms)
            .await?;
        authorize(&self.config, claims)
    }

    async fn exchange(
        &self,
        http: &impl Transport,
        discovery: &Discovery,
        code: &str,
        verifier: &str,
    ) -> Result<TokenResponse, OidcError> {
        let c = &self.config;
        let secret = c.client_secret.read()?;
        // RFC 6749 §2.3.1: both halves form-encoded before they are joined.
        let credentials = format!("{}:{}", encode(&c.client_id), encode(secret.expose()));
        let authorization = format!("Basic {}", super::base64_standard(credentials.as_bytes()));
        let body = form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &c.redirect_url),
            ("code_verifier", verifier),
            ("client_id", &c.client_id),
        ]);
        let (status, answer) = http
            .post_form(&discovery.token_endpoint, &authorization, body)
            .await
            .map_err(OidcError::Unreachable)?;
        TokenResponse::parse(status, &answer)
    }

    /// Verifies an ID token, fetching the keys when the token names one not seen yet, or
    /// when its key's signature fails (a key replaced under the same id).
    async fn verify(
        &self,
        http: &impl Transport,
        discovery: &Discovery,
        id_token: &str,
        nonce: &str,
        now_ms: i64,
    ) -> Result<IdClaims, OidcError> {
        let (kid, alg) = token::header(id_token)?;
        let expected = Expected {
            issuer: &discovery.issuer,
            client_id: &self.config.client_id,
            nonce,
            now: now_ms / 1000,
            group_claim: &self.config.group_claim,
        };
        let kid = kid.as_deref();
        let check = |keys: &Keys| match keys.find(kid, alg) {
            Some(key) => token::verify(id_token, key, &expected),
            None => Err(TokenError::UnknownKey(kid.map_or_else(
                || "none".to_owned(),
                |k| format!("{:?}", truncate(k)),
            ))),
        };
        let keys = self.keys(http, discovery, now_ms, false).await?;
        match check(&keys) {
            Err(TokenError::UnknownKey(_) | TokenError::Signature) => {
                let fresh = self.keys(http, discovery, now_ms, true).await?;
                Ok(check(&fresh)?)
            }
            verified => Ok(verified?),
        }
    }

    /// The keys: fetched the first time, and again when `refetch` and the last fetch is at
    /// least [`KEY_REFETCH_MS`] old.
    async fn keys(
        &self,
        http: &impl Transport,
        discovery: &Discovery,
        now_ms: i64,
        refetch: bool,
    ) -> Result<Arc<Keys>, OidcError> {
        let mut state = self.provider.lock().await;
        let fetch = match state.keys_fetched_ms {
            None => true,
            Some(at) => refetch && now_ms.saturating_sub(at) >= KEY_REFETCH_MS,
        };
        if fetch {
            state.keys_fetched_ms = Some(now_ms);
            let (status, body) = http
                .get(&discovery.jwks_uri)
                .await
                .map_err(|e| OidcError::Keys(format!("fetching {}: {e}", discovery.jwks_uri)))?;
            if status != 200 {
                return Err(OidcError::Keys(format!(
                    "{} answered HTTP {status}",
                    discovery.jwks_uri
                )));
            }
            state.keys = Arc::new(Keys::parse(&body)?);
        }
        Ok(Arc::clone(&state.keys))
    }

    /// The discovery document, fetched once (and retried after a failure, at most every
    /// [`DISCOVERY_RETRY_MS`]).
    async fn discovery(
        &self,
        http: &impl Transport,
        now_ms: i64,
    ) -> Result<Arc<Discovery>, OidcError> {
        let mut state = self.provider.lock().await;
        if let Some(d) = &state.discovery {
            return Ok(Arc::clone(d));
        }
        if state
            .discovery_failed_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < DISCOVERY_RETRY_MS)
        {
            return Err(OidcError::Discovery(
                "the provider could not be reached a moment ago; try again in a few seconds".into(),
            ));
        }
        let c = &self.config;
        let url = format!("{}/.well-known/openid-configuration", c.issuer);
        let fetched = http
            .get(&url)
            .await
            .map_err(|e| OidcError::Discovery(format!("fetching {url}: {e}")))
            .and_then(|(status, body)| match status {
                200 => Discovery::parse(&body, &c.issuer, c.allow_insecure),
                _ => Err(OidcError::Discovery(format!(
                    "{url} answered HTTP {status}"
                ))),
            });
        match fetched {
            Ok(d) => {
                let d = Arc::new(d);
                state.discovery = Some(Arc::clone(&d));
                Ok(d)
            }
            Err(e) => {
                state.discovery_failed_ms = Some(now_ms);
                Err(e)
            }
        }
    }

    /// 32 random bytes, base64url: a state, a nonce or a PKCE verifier (43 characters).
    fn random(&self) -> Result<String, OidcError> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).map_err(|_| OidcError::Random)?;
        Ok(super::base64url(&bytes))
    }
}

/// Verified claims → a sign-in: the mapped groups' scopes (none: refused) and, when required,
/// multi-factor authentication (missing: refused).
pub fn authorize(config: &OidcConfig, claims: IdClaims) -> Result<SignIn, OidcError> {
    let actor = actor_of(
        &claims.subject,
        claims.email.as_deref().or(claims.name.as_deref()),
    );
    let groups: Vec<String> = claims
        .groups
        .iter()
        .filter(|g| config.groups.contains_key(*g))
        .cloned()
        .collect();
    let scopes = scopes_of(config, &groups);
    if scopes.is_empty() {
        return Err(OidcError::NoMappedGroup { actor });
    }
    let mfa = claims.amr.iter().any(|m| config.mfa_amr.contains(m))
        || claims
            .acr
            .as_ref()
            .is_some_and(|a| config.mfa_acr.contains(a));
    if config.require_mfa && !mfa {
        return Err(OidcError::MfaMissing { actor });
    }
    Ok(SignIn {
        subject: claims.subject,
        email: claims.email,
        name: claims.name,
        scopes,
        groups,
        mfa,
    })
}

/// The scopes `[console.oidc.groups]` gives these provider groups, sorted: at sign-in, and
/// again on every request of the session it opened (the mapping in force may have changed).
pub fn scopes_of(config: &OidcConfig, groups: &[String]) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = groups
        .iter()
        .filter_map(|g| config.groups.get(g).and_then(|s| Scope::parse(s)))
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `k=v&k=v`, encoded.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests;
