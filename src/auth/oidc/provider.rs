//! What the provider publishes, parsed from untrusted JSON: its discovery document
//! (`/.well-known/openid-configuration`), its signing keys (JWKS) and the token endpoint's
//! answer. Each parser checks what warden relies on and nothing more, bounds what it keeps,
//! and says what is wrong without echoing secrets.

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::OidcError;

/// Most signing keys kept from one JWKS; providers publish a handful (current, next, old).
pub const MAX_KEYS: usize = 32;

/// The endpoints of a provider, from its discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

#[derive(Deserialize)]
struct RawDiscovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    response_types_supported: Option<Vec<String>>,
}

impl Discovery {
    /// Parses a discovery document for `issuer` (compared exactly, OpenID Connect Discovery
    /// §4.3); every endpoint must be https unless `allow_insecure`.
    pub fn parse(body: &[u8], issuer: &str, allow_insecure: bool) -> Result<Discovery, OidcError> {
        let bad = |why: String| OidcError::Discovery(why);
        let raw: RawDiscovery = serde_json::from_slice(body)
            .map_err(|e| bad(format!("the discovery document is not valid: {e}")))?;
        if raw.issuer.trim_end_matches('/') != issuer {
            return Err(bad(format!(
                "the provider says its issuer is {:?}, not the configured {issuer:?}",
                truncate(&raw.issuer)
            )));
        }
        if let Some(methods) = &raw.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(bad("the provider does not support PKCE with S256".into()));
        }
        if let Some(types) = &raw.response_types_supported
            && !types.iter().any(|t| t == "code")
        {
            return Err(bad(
                "the provider does not support the authorization code flow".into(),
            ));
        }
        for (name, url) in [
            ("authorization_endpoint", &raw.authorization_endpoint),
            ("token_endpoint", &raw.token_endpoint),
            ("jwks_uri", &raw.jwks_uri),
        ] {
            endpoint(name, url, allow_insecure)?;
        }
        Ok(Discovery {
            issuer: raw.issuer,
            authorization_endpoint: raw.authorization_endpoint,
            token_endpoint: raw.token_endpoint,
            jwks_uri: raw.jwks_uri,
        })
    }
}

/// An endpoint URL is absolute, https (http only when allowed), without a fragment.
fn endpoint(name: &str, url: &str, allow_insecure: bool) -> Result<(), OidcError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://").filter(|_| allow_insecure));
    let ok = rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && !url.contains('#')
            && !url.contains(|c: char| c.is_whitespace() || c.is_control())
    });
    if ok {
        Ok(())
    } else {
        Err(OidcError::Discovery(format!(
            "{name} {:?} is not an absolute https:// URL",
            truncate(url)
        )))
    }
}

/// At most 200 characters of provider text, without control characters, for messages, the
/// audit log and pages.
pub(super) fn truncate(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// One signing key: its id, the one algorithm it verifies, and the key.
pub struct SigningKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The provider's signing keys.
#[derive(Default)]
pub struct Keys {
    pub keys: Vec<SigningKey>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl Keys {
    /// Parses a JWKS. Keys warden cannot use for ID token signatures (encryption keys, other
    /// types or curves, malformed ones) are skipped; a set with no usable key is an error.
    pub fn parse(body: &[u8]) -> Result<Keys, OidcError> {
        let raw: RawJwks = serde_json::from_slice(body)
            .map_err(|e| OidcError::Keys(format!("the JWKS is not valid: {e}")))?;
        let keys: Vec<SigningKey> = raw
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<RawJwk>(v).ok())
            .filter_map(signing_key)
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(OidcError::Keys(
                "the JWKS has no RS256 or ES256 signing key".into(),
            ));
        }
        Ok(Keys { keys })
    }

    /// The key a token's header names: by `kid`, or the only key of that algorithm when the
    /// header names none.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&SigningKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.alg == alg),
            None => {
                let mut of_alg = self.keys.iter().filter(|k| k.alg == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        }
    }
}

fn signing_key(jwk: RawJwk) -> Option<SigningKey> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let (alg, key) = match jwk.kty.as_str() {
        "RSA" => (
            Algorithm::RS256,
            DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?).ok()?,
        ),
        "EC" if jwk.crv.as_deref() == Some("P-256") => (
            Algorithm::ES256,
            DecodingKey::from_ec_components(jwk.x.as_deref()?, jwk.y.as_deref()?).ok()?,
        ),
        _ => return None,
    };
    // A key that names another algorithm (RS512, PS256…) is not used for this one.
    if jwk.alg.as_deref().is_some_and(|a| a != alg_name(alg)) {
        return None;
    }
    Some(SigningKey {
        kid: jwk.kid,
        alg,
        key,
    })
}

pub(super) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        _ => "RS256",
    }
}

/// The token endpoint's answer: the ID token (the access token is not used).
#[derive(Debug)]
pub struct TokenResponse {
    pub id_token: String,
}

#[derive(Deserialize)]
struct RawToken {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
}

#[derive(Deserialize)]
struct RawTokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl TokenResponse {
    /// Parses the token endpoint's answer with HTTP status `status`: an ID token on success,
    /// the provider's `error` (RFC 6749 §5.2) otherwise.
    pub fn parse(status: u16, body: &[u8]) -> Result<TokenResponse, OidcError> {
        if !(200..300).contains(&status) {
            let why = serde_json::from_slice::<RawTokenError>(body).map_or_else(
                |_| format!("HTTP {status}"),
                |e| match e.error_description {
                    Some(d) => format!("{}: {}", truncate(&e.error), truncate(&d)),
                    None => truncate(&e.error),
                },
            );
            return Err(OidcError::TokenExchange(format!(
                "the token endpoint refused the code ({why})"
            )));
        }
        let raw: RawToken = serde_json::from_slice(body).map_err(|e| {
            OidcError::TokenExchange(format!("the token endpoint's answer is not valid: {e}"))
        })?;
        if raw
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(OidcError::TokenExchange(
                "the token endpoint answered a token type other than Bearer".into(),
            ));
        }
        match raw.id_token {
            Some(id_token) if !id_token.is_empty() => Ok(TokenResponse { id_token }),
            _ => Err(OidcError::TokenExchange(
                "the token endpoint's answer has no id_token (is `openid` among the scopes?)"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ISSUER: &str = "https://login.example.test";

    fn doc(issuer: &str, jwks: &str) -> Vec<u8> {
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": jwks,
            "code_challenge_methods_supported": ["S256"],
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn discovery_must_name_the_configured_issuer_and_https_endpoints() {
        let d = Discovery::parse(
            &doc(ISSUER, "https://login.example.test/jwks"),
            ISSUER,
            false,
        )
        .unwrap();
        assert_eq!(d.token_endpoint, "https://login.example.test/token");
        let other = Discovery::parse(
            &doc("https://evil.example", "https://evil.example/jwks"),
            ISSUER,
            false,
        )
        .unwrap_err();
        assert!(other.to_string().contains("not the configured"), "{other}");
        let plain = Discovery::parse(
            &doc(ISSUER, "http://login.example.test/jwks"),
            ISSUER,
            false,
        )
        .unwrap_err();
        assert!(plain.to_string().contains("jwks_uri"), "{plain}");
        assert!(Discovery::parse(b"[]", ISSUER, false).is_err());
    }

    #[test]
    fn a_jwks_keeps_only_usable_signing_keys() {
        let body = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "r1", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            "not an object"
        ]});
        let keys = Keys::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys.len(), 1);
        assert!(keys.find(Some("r1"), Algorithm::RS256).is_some());
        assert!(keys.find(Some("r1"), Algorithm::ES256).is_none());
        assert!(keys.find(Some("r2"), Algorithm::RS256).is_none());
        assert!(keys.find(None, Algorithm::RS256).is_some());
        let Err(none) = Keys::parse(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#) else {
            panic!("a JWKS without a signing key parsed");
        };
        assert!(none.to_string().contains("no RS256 or ES256"), "{none}");
    }

    #[test]
    fn the_token_answer_needs_an_id_token_and_reports_the_providers_error() {
        let ok = TokenResponse::parse(
            200,
            br#"{"access_token":"a","token_type":"Bearer","id_token":"x.y.z"}"#,
        )
        .unwrap();
        assert_eq!(ok.id_token, "x.y.z");
        let refused = TokenResponse::parse(
            400,
            br#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
        )
        .unwrap_err();
        assert!(refused.to_string().contains("invalid_grant"), "{refused}");
        assert!(TokenResponse::parse(200, br#"{"access_token":"a"}"#).is_err());
    }
}
