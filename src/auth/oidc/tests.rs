#![allow(clippy::unwrap_used)]
//! The relying party against provider answers made here: ID tokens signed with P-256 keys
//! generated for each test, so a key the provider does not publish can sign one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

use super::*;
use crate::base::secret::SecretSource;

const ISSUER: &str = "https://login.example.test";
const CLIENT: &str = "warden";
const NOW_MS: i64 = 1_800_000_000_000;

/// A P-256 key: its PKCS#8 (to sign) and its JWK (to publish).
struct Key {
    pkcs8: Vec<u8>,
    jwk: serde_json::Value,
}

fn key(kid: &str) -> Key {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": super::super::base64url(&point[1..33]),
        "y": super::super::base64url(&point[33..65]),
    });
    Key {
        pkcs8: pkcs8.as_ref().to_vec(),
        jwk,
    }
}

fn sign(key: &Key, kid: &str, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
}

fn claims(nonce: &str) -> serde_json::Value {
    claims_at(nonce, NOW_MS)
}

fn claims_at(nonce: &str, at_ms: i64) -> serde_json::Value {
    let now = at_ms / 1000;
    serde_json::json!({
        "iss": ISSUER, "aud": CLIENT, "sub": "u-1", "email": "ana@corp.example.test",
        "iat": now, "exp": now + 300, "nonce": nonce,
        "groups": ["SOC Analysts", "Everyone"], "amr": ["pwd", "mfa"],
    })
}

fn config(dir: &std::path::Path, require_mfa: bool) -> Arc<OidcConfig> {
    let secret = dir.join("client.secret");
    std::fs::write(&secret, "s3cret:&\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    Arc::new(OidcConfig {
        issuer: ISSUER.into(),
        client_id: CLIENT.into(),
        client_secret: SecretSource::File(secret),
        redirect_url: "https://warden.example.test/console/sso/callback".into(),
        scopes: vec!["openid".into(), "email".into()],
        group_claim: "groups".into(),
        groups: BTreeMap::from([
            ("SOC Analysts".to_owned(), "respond".to_owned()),
            ("Warden Admins".to_owned(), "admin".to_owned()),
        ]),
        require_mfa,
        mfa_amr: crate::config::DEFAULT_MFA_AMR.map(str::to_owned).to_vec(),
        mfa_acr: vec!["urn:example:loa:mfa".into()],
        ca_file: None,
        allow_insecure: false,
        timeout: Duration::from_secs(5),
        login_timeout: Duration::from_secs(600),
    })
}

/// Provider answers: discovery, a JWKS that can change, and the ID token the token endpoint
/// hands out. Counts JWKS fetches and remembers the last token request.
struct Answers {
    jwks: Mutex<serde_json::Value>,
    id_token: Mutex<String>,
    jwks_fetches: AtomicUsize,
    token_request: Mutex<Option<(String, String)>>,
}

impl Answers {
    fn new(keys: &[&Key]) -> Answers {
        Answers {
            jwks: Mutex::new(serde_json::json!({
                "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()
            })),
            id_token: Mutex::new(String::new()),
            jwks_fetches: AtomicUsize::new(0),
            token_request: Mutex::new(None),
        }
    }
}

impl Transport for Answers {
    async fn get(&self, url: &str) -> Result<(u16, Bytes), String> {
        if url == format!("{ISSUER}/.well-known/openid-configuration") {
            let doc = serde_json::json!({
                "issuer": ISSUER,
                "authorization_endpoint": format!("{ISSUER}/auth"),
                "token_endpoint": format!("{ISSUER}/token"),
                "jwks_uri": format!("{ISSUER}/jwks"),
                "code_challenge_methods_supported": ["S256"],
            });
            return Ok((200, Bytes::from(doc.to_string())));
        }
        if url == format!("{ISSUER}/jwks") {
            self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            return Ok((200, Bytes::from(self.jwks.lock().unwrap().to_string())));
        }
        Ok((404, Bytes::new()))
    }

    async fn post_form(
        &self,
        url: &str,
        authorization: &str,
        body: String,
    ) -> Result<(u16, Bytes), String> {
        assert_eq!(url, format!("{ISSUER}/token"));
        *self.token_request.lock().unwrap() = Some((authorization.to_owned(), body));
        let answer = serde_json::json!({
            "access_token": "at", "token_type": "Bearer",
            "id_token": *self.id_token.lock().unwrap(),
        });
        Ok((200, Bytes::from(answer.to_string())))
    }
}

fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap()
        .to_owned()
}

/// Starts a sign-in and answers its callback with the token `make` signs for its nonce.
async fn sign_in(
    rp: &RelyingParty,
    answers: &Answers,
    make: impl FnOnce(&str) -> String,
) -> Result<SignIn, OidcError> {
    sign_in_at(rp, answers, NOW_MS, make).await
}

/// [`sign_in`], answered at `at_ms` (a second after the start).
async fn sign_in_at(
    rp: &RelyingParty,
    answers: &Answers,
    at_ms: i64,
    make: impl FnOnce(&str) -> String,
) -> Result<SignIn, OidcError> {
    let started = rp.start(answers, at_ms - 1000).await.unwrap();
    let nonce = query_param(&started.authorization_url, "nonce");
    *answers.id_token.lock().unwrap() = make(&nonce);
    let callback = Callback {
        state: Some(&started.state),
        code: Some("the-code"),
        browser_state: Some(&started.state),
        ..Callback::default()
    };
    rp.finish(answers, &callback, at_ms).await
}

#[tokio::test]
async fn a_token_signed_by_the_published_key_signs_in_with_the_mapped_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RelyingParty::new(config(dir.path(), true));
    let k = key("k1");
    let answers = Answers::new(&[&k]);
    let started = rp.start(&answers, NOW_MS).await.unwrap();
    let url = &started.authorization_url;
    assert!(url.starts_with(&format!(
        "{ISSUER}/auth?response_type=code&client_id=warden&"
    )));
    assert_eq!(query_param(url, "code_challenge_method"), "S256");
    assert_eq!(query_param(url, "state"), started.state);
    assert_eq!(started.state.len(), 43);
    assert_ne!(query_param(url, "nonce"), started.state);
    let nonce = query_param(url, "nonce");
    *answers.id_token.lock().unwrap() = sign(&k, "k1", &claims(&nonce));
    let callback = Callback {
        state: Some(&started.state),
        code: Some("the-code"),
        browser_state: Some(&started.state),
        ..Callback::default()
    };
    let signed_in = rp.finish(&answers, &callback, NOW_MS + 1000).await.unwrap();
    assert_eq!(signed_in.scopes, [Scope::Respond]);
    assert_eq!(signed_in.groups, ["SOC Analysts"]);
    assert!(signed_in.mfa);
    assert_eq!(signed_in.actor(), "sso:u-1 (ana@corp.example.test)");
    // The exchange sent the PKCE verifier whose S256 is the challenge, and the secret
    // form-encoded in Basic authentication.
    let (authorization, body) = answers.token_request.lock().unwrap().clone().unwrap();
    let verifier = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("code_verifier="))
        .unwrap();
    assert_eq!(
        query_param(url, "code_challenge"),
        super::super::base64url(digest(&SHA256, verifier.as_bytes()).as_ref())
    );
    assert_eq!(
        authorization,
        format!(
            "Basic {}",
            super::super::base64_standard(b"warden:s3cret%3A%26")
        )
    );
    // The state is spent: the same answer again is refused before any exchange.
    *answers.token_request.lock().unwrap() = None;
    let replay = rp
        .finish(&answers, &callback, NOW_MS + 2000)
        .await
        .unwrap_err();
    assert!(matches!(replay, OidcError::State), "{replay}");
    assert!(answers.token_request.lock().unwrap().is_none());
}

#[tokio::test]
async fn a_token_signed_by_a_key_not_in_the_jwks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RelyingParty::new(config(dir.path(), false));
    let published = key("k1");
    let forger = key("k1");
    let answers = Answers::new(&[&published]);
    // The forger's key under the published key's id: the signature does not verify.
    let err = sign_in(&rp, &answers, |n| sign(&forger, "k1", &claims(n)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OidcError::IdToken(TokenError::Signature)),
        "{err}"
    );
    assert_eq!(answers.jwks_fetches.load(Ordering::SeqCst), 1);
    // Under an id the provider does not publish, once the last fetch is old enough: fetched
    // again once, still unknown.
    let later = NOW_MS + KEY_REFETCH_MS;
    let err = sign_in_at(&rp, &answers, later, |n| {
        sign(&forger, "k2", &claims_at(n, later))
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, OidcError::IdToken(TokenError::UnknownKey(ref k)) if k == "\"k2\""),
        "{err}"
    );
    assert_eq!(answers.jwks_fetches.load(Ordering::SeqCst), 2);
    // Again at once: no fetch (bounded), still refused.
    let err = sign_in_at(&rp, &answers, later, |n| {
        sign(&forger, "k3", &claims_at(n, later))
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, OidcError::IdToken(TokenError::UnknownKey(_))),
        "{err}"
    );
    assert_eq!(answers.jwks_fetches.load(Ordering::SeqCst), 2);
    assert_eq!(err.refusal().unwrap().0, Refusal::SsoToken);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RelyingParty::new(config(dir.path(), false));
    let old = key("old");
    let new = key("new");
    let answers = Answers::new(&[&old]);
    sign_in(&rp, &answers, |n| sign(&old, "old", &claims(n)))
        .await
        .unwrap();
    *answers.jwks.lock().unwrap() = serde_json::json!({"keys": [old.jwk, new.jwk]});
    let later = NOW_MS + KEY_REFETCH_MS;
    sign_in_at(&rp, &answers, later, |n| {
        sign(&new, "new", &claims_at(n, later))
    })
    .await
    .unwrap();
    assert_eq!(answers.jwks_fetches.load(Ordering::SeqCst), 2);
    // The old key still verifies, without a fetch.
    sign_in_at(&rp, &answers, later, |n| {
        sign(&old, "old", &claims_at(n, later))
    })
    .await
    .unwrap();
    assert_eq!(answers.jwks_fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn claims_that_do_not_fit_this_sign_in_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RelyingParty::new(config(dir.path(), false));
    let k = key("k1");
    let answers = Answers::new(&[&k]);
    type Change = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Change, TokenError)> = vec![
        (
            "nonce",
            Box::new(|c| c["nonce"] = "other".into()),
            TokenError::Nonce,
        ),
        (
            "aud",
            Box::new(|c| c["aud"] = "someone-else".into()),
            TokenError::Audience,
        ),
        (
            "iss",
            Box::new(|c| c["iss"] = "https://evil.example".into()),
            TokenError::Issuer,
        ),
        (
            "exp",
            Box::new(|c| c["exp"] = (NOW_MS / 1000 - 3600).into()),
            TokenError::Expired,
        ),
        (
            "iat",
            Box::new(|c| c["iat"] = (NOW_MS / 1000 + 3600).into()),
            TokenError::IssuedAt("in the future"),
        ),
        (
            "azp",
            Box::new(|c| c["aud"] = serde_json::json!([CLIENT, "other"])),
            TokenError::AuthorizedParty,
        ),
    ];
    for (what, change, expected) in cases {
        let err = sign_in(&rp, &answers, |n| {
            let mut c = claims(n);
            change(&mut c);
            sign(&k, "k1", &c)
        })
        .await;
        let Err(err) = err else {
            panic!("{what}: signed in");
        };
        assert!(
            matches!(&err, OidcError::IdToken(e) if *e == expected),
            "{what}: {err}"
        );
    }
    // Several audiences with this client as the authorized party are fine.
    sign_in(&rp, &answers, |n| {
        let mut c = claims(n);
        c["aud"] = serde_json::json!([CLIENT, "other"]);
        c["azp"] = CLIENT.into();
        sign(&k, "k1", &c)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unsigned_and_symmetric_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RelyingParty::new(config(dir.path(), false));
    let k = key("k1");
    let answers = Answers::new(&[&k]);
    let none = sign_in(&rp, &answers, |n| {
        let b64 = |v: &serde_json::Value| super::super::base64url(v.to_string().as_bytes());
        format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "kid": "k1"})),
            b64(&claims(n))
        )
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            none,
            OidcError::IdToken(TokenError::Algorithm(_) | TokenError::Malformed(_))
        ),
        "{none}"
    );
    let hs = sign_in(&rp, &answers, |n| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        // The "secret" an attacker would try: the public key's JSON.
        let secret = k.jwk.to_string();
        jsonwebtoken::encode(
            &header,
            &claims(n),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(hs, OidcError::IdToken(TokenError::Algorithm(_))),
        "{hs}"
    );
}

#[tokio::test]
async fn an_answer_naming_another_issuer_is_not_exchanged() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RelyingParty::new(config(dir.path(), false));
    let answers = Answers::new(&[&key("k1")]);
    let started = rp.start(&answers, NOW_MS).await.unwrap();
    let mixed_up = Callback {
        state: Some(&started.state),
        code: Some("c"),
        iss: Some("https://evil.example"),
        browser_state: Some(&started.state),
        ..Callback::default()
    };
    let err = rp.finish(&answers, &mixed_up, NOW_MS).await.unwrap_err();
    assert!(matches!(err, OidcError::Provider(_)), "{err}");
    assert!(answers.token_request.lock().unwrap().is_none());
}

#[tokio::test]
async fn a_state_from_another_browser_or_never_issued_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rp = RelyingParty::new(config(dir.path(), false));
    let answers = Answers::new(&[&key("k1")]);
    let started = rp.start(&answers, NOW_MS).await.unwrap();
    let other_browser = Callback {
        state: Some(&started.state),
        code: Some("c"),
        browser_state: Some("someone-elses-state"),
        ..Callback::default()
    };
    let err = rp
        .finish(&answers, &other_browser, NOW_MS)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::State));
    // And it is spent now, even for the right browser.
    let right = Callback {
        browser_state: Some(&started.state),
        ..other_browser
    };
    assert!(matches!(
        rp.finish(&answers, &right, NOW_MS).await,
        Err(OidcError::State)
    ));
    let forged = Callback {
        state: Some("AAAA"),
        code: Some("c"),
        browser_state: Some("AAAA"),
        ..Callback::default()
    };
    let err = rp.finish(&answers, &forged, NOW_MS).await.unwrap_err();
    assert_eq!(err.refusal().unwrap().0, Refusal::SsoState);
    assert!(answers.token_request.lock().unwrap().is_none());
}

fn verified(groups: &[&str], amr: &[&str], acr: Option<&str>) -> IdClaims {
    IdClaims {
        subject: "u-2".into(),
        email: Some("bo@corp.example.test".into()),
        name: None,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        amr: amr.iter().map(|a| (*a).to_owned()).collect(),
        acr: acr.map(str::to_owned),
    }
}

#[test]
fn groups_map_to_scopes_and_mfa_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let lax = config(dir.path(), false);
    let strict = config(dir.path(), true);
    let none = authorize(&lax, verified(&["Everyone"], &["mfa"], None)).unwrap_err();
    assert!(
        matches!(&none, OidcError::NoMappedGroup { actor } if actor == "sso:u-2 (bo@corp.example.test)")
    );
    assert_eq!(none.refusal().unwrap().0, Refusal::SsoGroup);
    let both = authorize(
        &lax,
        verified(&["SOC Analysts", "Warden Admins"], &["pwd"], None),
    )
    .unwrap();
    assert_eq!(both.scopes, [Scope::Respond, Scope::Admin]);
    assert!(!both.mfa);
    let no_mfa = authorize(&strict, verified(&["SOC Analysts"], &["pwd"], None)).unwrap_err();
    assert!(matches!(no_mfa, OidcError::MfaMissing { .. }), "{no_mfa}");
    assert_eq!(no_mfa.refusal().unwrap().0, Refusal::SsoMfa);
    assert!(authorize(&strict, verified(&["SOC Analysts"], &["pwd", "otp"], None)).is_ok());
    assert!(
        authorize(
            &strict,
            verified(&["SOC Analysts"], &[], Some("urn:example:loa:mfa"))
        )
        .is_ok()
    );
}
