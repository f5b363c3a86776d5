//! `[console]`: the analyst console served by `warden serve`, and `[console.oidc]`, its single
//! sign-on through an OpenID Connect provider — the provider's issuer and the redirect URL are
//! absolute https URLs (plain http only with `allow_insecure`), the client secret comes from a
//! file or the environment, every group maps to a known scope, and MFA has something to be
//! checked by.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::KeyPath;
use super::check::Ctx;
use super::outbound::{HttpsEndpoint, SecretRef, UrlRefused};
use crate::base::secret::SecretSource;

/// `[console]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) oidc: Option<RawOidc>,
}

/// `[console.oidc]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    issuer: String,
    client_id: String,
    /// Present only to be rejected with a helpful message: secrets never sit in config.
    client_secret: Option<toml::Value>,
    client_secret_file: Option<String>,
    client_secret_env: Option<String>,
    redirect_url: String,
    scopes: Option<Vec<String>>,
    group_claim: Option<String>,
    /// Provider group → warden scope (`decide`, `respond`, `admin`).
    #[serde(default)]
    groups: std::collections::BTreeMap<String, String>,
    require_mfa: Option<bool>,
    mfa_amr: Option<Vec<String>>,
    mfa_acr: Option<Vec<String>>,
    ca_file: Option<String>,
    allow_insecure: Option<bool>,
    timeout: Option<String>,
    login_timeout: Option<String>,
}

/// `[console.oidc]`: single sign-on to the console through an OpenID Connect provider
/// (authorization code flow with PKCE; `src/auth/oidc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The provider's issuer identifier, without a trailing slash; discovery is read from
    /// `<issuer>/.well-known/openid-configuration` and its `issuer` must equal this.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretSource,
    /// Where the provider sends the browser back: `https://<warden>/console/sso/callback`,
    /// registered with the provider as is.
    pub redirect_url: String,
    /// Scopes requested, `openid` first.
    pub scopes: Vec<String>,
    /// The ID token claim holding the user's groups (a list of strings, or one string).
    pub group_claim: String,
    /// Provider group → warden scope name (`decide`, `respond`, `admin`). A user none of
    /// whose groups is here is refused.
    pub groups: std::collections::BTreeMap<String, String>,
    /// Refuse a sign-in whose ID token shows no multi-factor authentication.
    pub require_mfa: bool,
    /// `amr` values (RFC 8176) that count as multi-factor.
    pub mfa_amr: Vec<String>,
    /// `acr` values that count as multi-factor.
    pub mfa_acr: Vec<String>,
    /// A CA file trusted for the provider besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Plain `http://` to the provider (a loopback test provider only).
    pub allow_insecure: bool,
    /// Every exchange with the provider is answered within this.
    pub timeout: Duration,
    /// A sign-in started must come back from the provider within this.
    pub login_timeout: Duration,
}

/// The route the provider sends the browser back to; `redirect_url` must end in it.
pub const SSO_CALLBACK_PATH: &str = "/console/sso/callback";

/// The scope names a provider group can map to.
pub const CONSOLE_SCOPES: [&str; 3] = ["decide", "respond", "admin"];

/// The `amr` values counted as multi-factor when `mfa_amr` is not set: `mfa` itself and the
/// RFC 8176 methods that are a second factor on their own (one-time code, hardware or
/// software key, smart card).
pub const DEFAULT_MFA_AMR: [&str; 5] = ["mfa", "otp", "hwk", "swk", "sc"];

const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];
const DEFAULT_GROUP_CLAIM: &str = "groups";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(600);

/// `[console.oidc]`, when present.
pub(super) fn check(ctx: &mut Ctx<'_>, path: KeyPath, o: RawOidc) -> Option<OidcConfig> {
    let allow_insecure = o.allow_insecure.unwrap_or(false);
    let issuer = o.issuer.trim().trim_end_matches('/').to_owned();
    absolute_url(
        ctx,
        path.key("issuer"),
        &issuer,
        allow_insecure,
        "the issuer",
    );
    let redirect_url = o.redirect_url.trim().to_owned();
    if absolute_url(
        ctx,
        path.key("redirect_url"),
        &redirect_url,
        allow_insecure,
        "the redirect URL",
    ) && !redirect_url.ends_with(SSO_CALLBACK_PATH)
    {
        ctx.err(
            path.key("redirect_url"),
            format!(
                "must end in {SSO_CALLBACK_PATH}, the route warden serves the provider's answer \
                 on (for example https://warden.example:8470{SSO_CALLBACK_PATH})"
            ),
        );
    }
    if o.client_id.trim().is_empty() {
        ctx.err(path.key("client_id"), "must not be empty");
    }
    let client_secret = SecretRef {
        name: "client_secret",
        inline: o.client_secret.is_some(),
        file: o.client_secret_file,
        env: o.client_secret_env,
    }
    .check(ctx, &path);
    let scopes = scopes(ctx, path.key("scopes"), o.scopes);
    let group_claim = o
        .group_claim
        .unwrap_or_else(|| DEFAULT_GROUP_CLAIM.to_owned());
    groups(ctx, &path, &group_claim, &o.groups);
    let mfa = mfa(ctx, &path, o.require_mfa, o.mfa_amr, o.mfa_acr);
    let timeout = ctx.duration(path.key("timeout"), o.timeout.as_deref(), DEFAULT_TIMEOUT);
    let login_timeout = ctx.duration(
        path.key("login_timeout"),
        o.login_timeout.as_deref(),
        DEFAULT_LOGIN_TIMEOUT,
    );
    Some(OidcConfig {
        issuer,
        client_id: o.client_id.trim().to_owned(),
        client_secret: client_secret?,
        redirect_url,
        scopes,
        group_claim,
        groups: o.groups,
        require_mfa: mfa.require,
        mfa_amr: mfa.amr,
        mfa_acr: mfa.acr,
        ca_file: o.ca_file.map(|f| ctx.path_buf(&f)),
        allow_insecure,
        timeout,
        login_timeout,
    })
}

/// Checks an absolute https URL with a host (http with `allow_insecure`); returns whether it is
/// one.
fn absolute_url(
    ctx: &mut Ctx<'_>,
    path: KeyPath,
    url: &str,
    allow_insecure: bool,
    what: &str,
) -> bool {
    let endpoint = HttpsEndpoint {
        url,
        allow_insecure,
    };
    let Some((_, rest)) = endpoint.check(ctx, path.clone(), |refused| match refused {
        UrlRefused::PlainHttp => format!(
            "{what} is plain http: codes and tokens would travel in clear; use https:// \
             (allow_insecure = true only for a test provider on loopback)"
        ),
        UrlRefused::NotHttp => {
            format!("{what} must be an https:// URL such as https://login.example.com")
        }
    }) else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.contains(['?', '#', ' ']) {
        ctx.err(
            path,
            format!("{what} must be an absolute URL with a host and no query or fragment"),
        );
        return false;
    }
    true
}

/// The scopes requested: `openid` first (added when missing), no duplicates or blanks.
fn scopes(ctx: &mut Ctx<'_>, path: KeyPath, scopes: Option<Vec<String>>) -> Vec<String> {
    let given = scopes.unwrap_or_else(|| DEFAULT_SCOPES.map(str::to_owned).to_vec());
    let mut out = vec!["openid".to_owned()];
    for (i, s) in given.into_iter().enumerate() {
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c.is_control()) {
            ctx.err(path.index(i), "a scope is one word without spaces");
        } else if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The claim groups are read from, and at least one group, each mapped to a known scope.
fn groups(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    claim: &str,
    groups: &std::collections::BTreeMap<String, String>,
) {
    if claim.trim().is_empty() {
        ctx.err(path.key("group_claim"), "must name an ID token claim");
    }
    if groups.is_empty() {
        ctx.err(
            path.key("groups"),
            "map at least one provider group to a scope, e.g. \"SOC Analysts\" = \"respond\"; \
             a user with no mapped group is refused",
        );
    }
    for (group, scope) in groups {
        if !CONSOLE_SCOPES.contains(&scope.as_str()) {
            ctx.err(
                path.key("groups").key(group),
                format!(
                    "unknown scope {scope:?}; scopes are {}",
                    CONSOLE_SCOPES.join(", ")
                ),
            );
        }
    }
}

/// Whether sign-ins must show multi-factor authentication, and what counts as such.
struct Mfa {
    require: bool,
    amr: Vec<String>,
    acr: Vec<String>,
}

fn mfa(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    require: Option<bool>,
    amr: Option<Vec<String>>,
    acr: Option<Vec<String>>,
) -> Mfa {
    let require = require.unwrap_or(false);
    let amr = amr.unwrap_or_else(|| DEFAULT_MFA_AMR.map(str::to_owned).to_vec());
    let acr = acr.unwrap_or_default();
    if require && amr.is_empty() && acr.is_empty() {
        ctx.err(
            path.key("require_mfa"),
            "nothing would count as multi-factor: leave mfa_amr unset or name amr values or \
             mfa_acr values",
        );
    }
    Mfa { require, amr, acr }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use crate::config::{Config, ConfigErrors};

    fn parse(oidc: &str) -> Result<Config, ConfigErrors> {
        Config::parse(
            &format!("[console.oidc]\n{oidc}"),
            "test",
            Path::new("/etc/warden"),
        )
    }

    const GOOD: &str = r#"
issuer = "https://login.example.test/realms/corp/"
client_id = "warden"
client_secret_file = "oidc.secret"
redirect_url = "https://warden.example.test/console/sso/callback"
groups = { "SOC Analysts" = "respond", "Warden Admins" = "admin" }
require_mfa = true
"#;

    #[test]
    fn a_console_oidc_section_compiles_with_its_defaults() {
        let c = parse(GOOD).unwrap();
        let o = c.console_oidc.unwrap();
        assert_eq!(o.issuer, "https://login.example.test/realms/corp");
        assert_eq!(o.scopes, ["openid", "email", "profile"]);
        assert_eq!(o.group_claim, "groups");
        assert_eq!(o.groups["SOC Analysts"], "respond");
        assert!(o.require_mfa);
        assert!(o.mfa_amr.contains(&"mfa".to_owned()));
        assert_eq!(
            o.client_secret,
            crate::base::secret::SecretSource::File("/etc/warden/oidc.secret".into())
        );
        assert!(parse("").is_err(), "an empty [console.oidc] lacks its keys");
        assert!(
            Config::parse("", "t", Path::new("."))
                .unwrap()
                .console_oidc
                .is_none()
        );
    }

    #[test]
    fn problems_name_their_key_path() {
        let bad = r#"
issuer = "http://login.example.test"
client_id = ""
client_secret = "hunter2"
redirect_url = "https://warden.example.test/elsewhere"
scopes = ["openid", "two words"]
groups = { "SOC Analysts" = "superuser" }
timeout = "soon"
"#;
        let err = parse(bad).unwrap_err();
        let text = err.to_string();
        let paths: Vec<String> = err.errors.iter().map(|e| e.path.to_string()).collect();
        for path in [
            "console.oidc.issuer",
            "console.oidc.client_id",
            "console.oidc.client_secret",
            "console.oidc.redirect_url",
            "console.oidc.scopes[1]",
            "console.oidc.groups.SOC Analysts",
            "console.oidc.timeout",
        ] {
            assert!(paths.iter().any(|p| p == path), "{path} missing in {text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("client_secret_file"), "{text}");
        assert!(text.contains("/console/sso/callback"), "{text}");
        let no_groups = parse(&GOOD.replace(
            r#"groups = { "SOC Analysts" = "respond", "Warden Admins" = "admin" }"#,
            "",
        ))
        .unwrap_err();
        assert!(
            no_groups.to_string().contains("console.oidc.groups"),
            "{no_groups}"
        );
        let typo = parse(&format!("{GOOD}\nrequire_mfaa = true")).unwrap_err();
        assert!(typo.to_string().contains("require_mfaa"), "{typo}");
    }

    #[test]
    fn plain_http_to_the_provider_needs_allow_insecure() {
        let http = GOOD.replace("https://login", "http://login");
        assert!(parse(&http).is_err());
        assert!(parse(&format!("{http}\nallow_insecure = true")).is_ok());
    }
}
