//! `[imperva]`: an Imperva MX that data sets are pushed to through its Open API — its URL
//! (https, plain http only by opt-in) and how its certificate is trusted (a private CA, or a
//! pin of the certificate itself), the account and where its password is read from, and which
//! warden data set goes to which MX data set (by a name the Open API can address).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::KeyPath;
use super::check::{Ctx, Names};
use super::data_sets::DataSetConfig;
use super::outbound::{HttpsEndpoint, SecretRef, UrlRefused};
use crate::base::fingerprint::CertFingerprint;
use crate::base::secret::SecretSource;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    url: String,
    username: String,
    /// Present only to be rejected with a helpful message: secrets never sit in config.
    password: Option<toml::Value>,
    password_file: Option<String>,
    password_env: Option<String>,
    ca_file: Option<String>,
    /// `sha256/…`: the MX's own certificate, pinned by its SHA-256 fingerprint.
    tls_pin: Option<String>,
    allow_insecure: Option<bool>,
    timeout: Option<String>,
    #[serde(default)]
    data_sets: Vec<RawPush>,
}

/// `[[imperva.data_sets]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPush {
    /// The warden data set pushed.
    data_set: String,
    /// Its name on the MX; the warden name when absent.
    name: Option<String>,
    /// Whether the MX data set (when warden creates it) compares keys case-sensitively; the
    /// warden data set's own setting when absent.
    case_sensitive: Option<bool>,
}

/// `[imperva]`: an Imperva MX that data sets are pushed to through its Open API.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpervaConfig {
    /// `https://mx:8083` (the API path is added); `http://` only with `allow_insecure`.
    pub url: String,
    pub username: String,
    pub password: SecretSource,
    /// A private CA the MX certificate is verified against, besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Instead of a CA: the MX's own certificate, by its SHA-256 fingerprint (for the
    /// self-signed certificate without a usable name an MX usually has).
    pub tls_pin: Option<CertFingerprint>,
    pub allow_insecure: bool,
    pub timeout: Duration,
    pub pushes: Vec<ImpervaPush>,
}

/// One warden data set pushed to an MX data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpervaPush {
    pub data_set: String,
    pub mx_name: String,
    /// `caseSensitive` of the MX data set warden creates.
    pub case_sensitive: bool,
}

/// The default bound on one MX request. A request carries at most one batch (1 MiB, 5,000
/// records: `sync::imperva::MAX_BATCH_BYTES`), which takes about 8 s to upload over a 1 Mbit/s
/// link; 30 s leaves the MX as long again and more to store it. The bound no longer grows with
/// the data set: 100,000 rows were one request of 7 MB (BENCHMARKS.md).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn check(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    data_sets: &[DataSetConfig],
    path: KeyPath,
    i: Raw,
) -> Option<ImpervaConfig> {
    let allow_insecure = i.allow_insecure.unwrap_or(false);
    let url = i.url.trim_end_matches('/').to_owned();
    let endpoint = HttpsEndpoint {
        url: &url,
        allow_insecure,
    };
    let checked = endpoint.check(ctx, path.key("url"), |refused| match refused {
        UrlRefused::PlainHttp => "plain http would send the MX password in clear; use https:// \
                                  (set allow_insecure = true only for a test MX on loopback)"
            .to_owned(),
        UrlRefused::NotHttp => NOT_HTTPS.to_owned(),
    });
    // A scheme with no host after it.
    if checked == Some((true, "")) {
        ctx.err(path.key("url"), NOT_HTTPS);
    }
    if i.username.is_empty() || i.username.contains(':') {
        ctx.err(path.key("username"), "must be non-empty and contain no ':'");
    }
    let tls_pin = i
        .tls_pin
        .as_deref()
        .and_then(|pin| tls_pin(ctx, path.key("tls_pin"), pin, i.ca_file.is_some(), &url));
    let password = SecretRef {
        name: "password",
        inline: i.password.is_some(),
        file: i.password_file,
        env: i.password_env,
    }
    .check(ctx, &path);
    let timeout = ctx.duration(path.key("timeout"), i.timeout.as_deref(), DEFAULT_TIMEOUT);
    let mut pushes: Vec<ImpervaPush> = Vec::new();
    for (n, d) in i.data_sets.into_iter().enumerate() {
        let entry = path.key("data_sets").index(n);
        if let Some(push) = push(ctx, names, data_sets, &pushes, entry, d) {
            pushes.push(push);
        }
    }
    Some(ImpervaConfig {
        url,
        username: i.username,
        password: password?,
        ca_file: i.ca_file.map(|f| ctx.path_buf(&f)),
        tls_pin,
        allow_insecure,
        timeout,
        pushes,
    })
}

const NOT_HTTPS: &str = "must be an https:// URL such as https://mx.example:8083";

/// `tls_pin`: a certificate fingerprint, instead of `ca_file` (not beside it), on an https URL.
fn tls_pin(
    ctx: &mut Ctx<'_>,
    key: KeyPath,
    pin: &str,
    has_ca_file: bool,
    url: &str,
) -> Option<CertFingerprint> {
    if has_ca_file {
        ctx.err(
            key,
            "give ca_file or tls_pin, not both: a CA file trusts the certificates it signed, a \
             pin trusts exactly one certificate",
        );
        return None;
    }
    if url.starts_with("http://") {
        ctx.err(key, "a pin needs an https:// url");
        return None;
    }
    CertFingerprint::parse(pin)
        .map_err(|e| ctx.err(key, e))
        .ok()
}

/// One `[[imperva.data_sets]]` entry: an existing warden data set, pushed to an MX data set
/// no other entry pushes to, compared no less strictly than warden compares it.
fn push(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    data_sets: &[DataSetConfig],
    earlier: &[ImpervaPush],
    path: KeyPath,
    d: RawPush,
) -> Option<ImpervaPush> {
    ctx.reference(
        path.key("data_set"),
        names.data_sets,
        "data set",
        "data_sets",
        &d.data_set,
    );
    // A data set that is named but failed validation has its own error already.
    let set = data_sets.iter().find(|s| s.name == d.data_set)?;
    let named = d.name.is_some();
    let mx_name = d.name.unwrap_or_else(|| d.data_set.clone());
    if mx_name.is_empty() {
        ctx.err(path.key("name"), "must not be empty");
        return None;
    }
    if mx_name.contains('/') {
        // The Open API addresses a data set as one path segment (…/conf/dataSets/{name}/data):
        // a `/` splits it, and an encoded one is refused by the MX's web server. The SDK skips
        // such names ("we have data types with '/' character that don't work with the API").
        let (key, why) = if named {
            ("name", "")
        } else {
            (
                "data_set",
                " (the MX name defaults to the data set's name; set name = \"…\" without '/')",
            )
        };
        ctx.err(
            path.key(key),
            format!(
                "MX data set name {mx_name:?} contains '/', which the MX Open API cannot address \
                 (a data set is one path segment of …/conf/dataSets/{{name}}/data){why}"
            ),
        );
        return None;
    }
    if earlier.iter().any(|p| p.data_set == d.data_set) {
        ctx.err(
            path.key("data_set"),
            format!(
                "data set {:?} is already pushed by an earlier entry",
                d.data_set
            ),
        );
        return None;
    }
    if earlier.iter().any(|p| p.mx_name == mx_name) {
        ctx.err(
            path.key("name"),
            format!(
                "MX data set {mx_name:?} is already the target of an earlier entry; two pushes \
                 would overwrite each other"
            ),
        );
        return None;
    }
    let warden_sensitive = set.schema.case_sensitive();
    let case_sensitive = d.case_sensitive.unwrap_or(warden_sensitive);
    if warden_sensitive && !case_sensitive {
        ctx.err(
            path.key("case_sensitive"),
            format!(
                "data set {:?} is case-sensitive, so it can hold keys that differ only in case; \
                 a case-insensitive MX data set would refuse them as duplicates",
                d.data_set
            ),
        );
        return None;
    }
    Some(ImpervaPush {
        data_set: d.data_set,
        mx_name,
        case_sensitive,
    })
}
