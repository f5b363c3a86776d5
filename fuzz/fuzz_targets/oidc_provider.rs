//! What an OpenID Connect provider answers the console's single sign-on
//! (`warden::auth::oidc::provider`, `warden::auth::oidc::token`): the discovery document, the
//! JWKS, the token endpoint's answer and an ID token's header — all untrusted JSON.
//!
//! The first byte picks the parser (`d`iscovery, `k`eys, `t`oken answer, `h`eader), the rest
//! is its input. Properties:
//! - no parser panics;
//! - an accepted discovery document names the configured issuer and only https endpoints;
//! - an accepted JWKS holds between one and `MAX_KEYS` keys, each RS256 or ES256;
//! - an accepted token answer has a non-empty ID token; a non-2xx status is never accepted;
//! - an accepted ID token header names RS256 or ES256, never `none` or a symmetric algorithm.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::auth::oidc::provider::{Discovery, Keys, MAX_KEYS, TokenResponse};
use warden::auth::oidc::token;

const MAX_LEN: usize = 16 * 1024;
const ISSUER: &str = "https://login.example.test";

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LEN || data.is_empty() {
        return;
    }
    let (kind, body) = (data[0], &data[1..]);
    match kind {
        b'd' => {
            if let Ok(d) = Discovery::parse(body, ISSUER, false) {
                assert_eq!(d.issuer.trim_end_matches('/'), ISSUER);
                for url in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri] {
                    assert!(url.starts_with("https://"), "{url}");
                }
            }
        }
        b'k' => {
            if let Ok(keys) = Keys::parse(body) {
                assert!(!keys.keys.is_empty() && keys.keys.len() <= MAX_KEYS);
                for k in &keys.keys {
                    assert!(matches!(
                        k.alg,
                        jsonwebtoken::Algorithm::RS256 | jsonwebtoken::Algorithm::ES256
                    ));
                }
            }
        }
        b't' => {
            for status in [200, 400] {
                if let Ok(t) = TokenResponse::parse(status, body) {
                    assert_eq!(status, 200);
                    assert!(!t.id_token.is_empty());
                }
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            if let Ok((_, alg)) = token::header(&text) {
                assert!(matches!(
                    alg,
                    jsonwebtoken::Algorithm::RS256 | jsonwebtoken::Algorithm::ES256
                ));
            }
        }
    }
});
