//! ID token verification (OpenID Connect Core §3.1.3.7): the JWS signature against one of the
//! provider's published keys, with the algorithm that key is for (never the one the header
//! asks for on its own, never `none`), then `iss`, `aud` (and `azp` when there are several
//! audiences), `exp` and `iat` within a small leeway, and the `nonce` of this sign-in.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::provider::{SigningKey, alg_name, truncate};

/// Clock skew tolerated between warden and the provider, in seconds.
pub const LEEWAY_SECS: i64 = 60;

/// An ID token issued longer ago than this (seconds) is refused: the code flow has it minted
/// at the exchange, moments before it is checked.
pub const MAX_AGE_SECS: i64 = 600;

/// Most groups read from the group claim.
pub const MAX_GROUPS: usize = 1000;

/// Why an ID token was refused. Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the ID token is malformed: {0}")]
    Malformed(String),
    #[error("the ID token is signed with {0}; warden accepts RS256 and ES256")]
    Algorithm(String),
    #[error("the ID token names a signing key the provider does not publish (kid {0})")]
    UnknownKey(String),
    #[error("the ID token's signature does not verify against the provider's key")]
    Signature,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token was issued by another issuer")]
    Issuer,
    #[error("the ID token is not meant for this client (aud)")]
    Audience,
    #[error("the ID token has several audiences and its azp is not this client")]
    AuthorizedParty,
    #[error("the ID token's nonce is not this sign-in's")]
    Nonce,
    #[error("the ID token's iat is {0}")]
    IssuedAt(&'static str),
    #[error("the ID token lacks the {0} claim")]
    Missing(String),
}

/// What the ID token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// Unix seconds.
    pub now: i64,
    pub group_claim: &'a str,
}

/// The verified claims warden uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdClaims {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
}

/// The key id and algorithm a token's header names.
pub fn header(token: &str) -> Result<(Option<String>, Algorithm), TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        ErrorKind::InvalidAlgorithmName => {
            TokenError::Algorithm("an algorithm warden does not know".into())
        }
        _ => TokenError::Malformed(e.to_string()),
    })?;
    match header.alg {
        Algorithm::RS256 | Algorithm::ES256 => Ok((header.kid, header.alg)),
        other => Err(TokenError::Algorithm(format!("{other:?}"))),
    }
}

/// Verifies `token` with `key` and checks its claims against `expected`.
pub fn verify(
    token: &str,
    key: &SigningKey,
    expected: &Expected<'_>,
) -> Result<IdClaims, TokenError> {
    let mut validation = Validation::new(key.alg);
    // `exp`, `nbf` and `iat` are checked below against the caller's clock (warden's one
    // clock), not the library's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| {
            match e.into_kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::InvalidIssuer => TokenError::Issuer,
                ErrorKind::InvalidAudience => TokenError::Audience,
                ErrorKind::MissingRequiredClaim(c) => TokenError::Missing(c),
                ErrorKind::InvalidAlgorithm => TokenError::Algorithm(alg_name(key.alg).into()),
                other => TokenError::Malformed(format!("{other:?}")),
            }
        })?;
    claims(&data.claims, expected)
}

fn claims(c: &Map<String, Value>, expected: &Expected<'_>) -> Result<IdClaims, TokenError> {
    let string = |name: &str| c.get(name).and_then(Value::as_str).map(str::to_owned);
    let strings = |name: &str| -> Vec<String> {
        match c.get(name) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .take(MAX_GROUPS)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    let audiences = strings("aud");
    let azp = string("azp");
    if (audiences.len() > 1 || azp.is_some()) && azp.as_deref() != Some(expected.client_id) {
        return Err(TokenError::AuthorizedParty);
    }
    let nonce = string("nonce").ok_or_else(|| TokenError::Missing("nonce".into()))?;
    if !bool::from(nonce.as_bytes().ct_eq(expected.nonce.as_bytes())) {
        return Err(TokenError::Nonce);
    }
    let time = |name: &str| c.get(name).and_then(Value::as_f64).map(|t| t as i64);
    let exp = time("exp").ok_or_else(|| TokenError::Missing("exp".into()))?;
    if exp <= expected.now.saturating_sub(LEEWAY_SECS) {
        return Err(TokenError::Expired);
    }
    if time("nbf").is_some_and(|nbf| nbf > expected.now.saturating_add(LEEWAY_SECS)) {
        return Err(TokenError::IssuedAt("before its nbf"));
    }
    let iat = time("iat").ok_or_else(|| TokenError::Missing("iat".into()))?;
    if iat > expected.now.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::IssuedAt("in the future"));
    }
    if iat < expected.now.saturating_sub(MAX_AGE_SECS + LEEWAY_SECS) {
        return Err(TokenError::IssuedAt("too long ago"));
    }
    let subject = string("sub")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TokenError::Missing("sub".into()))?;
    Ok(IdClaims {
        subject: truncate(&subject),
        email: string("email").map(|e| truncate(&e)),
        name: string("name").map(|n| truncate(&n)),
        groups: strings(expected.group_claim),
        amr: strings("amr"),
        acr: string("acr"),
    })
}
