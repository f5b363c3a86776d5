//! `[[directories]]`: the LDAP directory servers warden pushes lists to and pulls data sets
//! from — TLS by default (`ldaps://`, or StartTLS; plain LDAP only by opt-in), the bind
//! password from a file or the environment, and the domain each one serves.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::KeyPath;
use super::check::Ctx;
use super::outbound::SecretRef;
use crate::base::identity::{Identity, dns_of_base_dn};
use crate::base::secret::SecretSource;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) name: String,
    url: String,
    starttls: Option<bool>,
    ca_file: Option<String>,
    allow_insecure: Option<bool>,
    bind_dn: String,
    /// Present only to be rejected with a helpful message: secrets never sit in config.
    bind_password: Option<toml::Value>,
    bind_password_file: Option<String>,
    bind_password_env: Option<String>,
    base_dn: String,
    update_interval: Option<String>,
    connect_timeout: Option<String>,
    timeout: Option<String>,
    page_size: Option<u32>,
    /// The NetBIOS name of the `[[domains]]` entry this directory serves.
    pub(super) domain: Option<String>,
}

/// `[[directories]]`: an LDAP directory server (a "directory").
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryConfig {
    pub name: String,
    pub url: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub allow_insecure: bool,
    pub bind_dn: String,
    pub bind_password: SecretSource,
    pub base_dn: String,
    pub update_interval: Duration,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub page_size: u32,
    /// The NetBIOS name of the `[[domains]]` entry this directory serves, as configured
    /// (`domain = "PARTNER"`): its names are routed here, and bare keys its queries read are
    /// that domain's accounts. `None`: the domain its base DN's `DC=` labels place, if any.
    pub domain: Option<String>,
}

/// How often lists are pushed to the directory when nothing asks sooner.
const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_PAGE_SIZE: u32 = 500;
const MAX_PAGE_SIZE: u32 = 1000;

pub(super) fn check(
    ctx: &mut Ctx<'_>,
    identity: &Identity,
    path: KeyPath,
    d: Raw,
) -> Option<DirectoryConfig> {
    let starttls = d.starttls.unwrap_or(false);
    let allow_insecure = d.allow_insecure.unwrap_or(false);
    let url = d.url.trim().to_string();
    check_url(ctx, &path, &url, starttls, allow_insecure);
    if d.bind_dn.trim().is_empty() {
        ctx.err(path.key("bind_dn"), "must not be empty");
    }
    if d.base_dn.trim().is_empty() {
        ctx.err(path.key("base_dn"), "must not be empty");
    }
    let page_size = d.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        ctx.err(
            path.key("page_size"),
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        );
    }
    let update_interval = ctx.duration(
        path.key("update_interval"),
        d.update_interval.as_deref(),
        DEFAULT_UPDATE_INTERVAL,
    );
    let connect_timeout = ctx.duration(
        path.key("connect_timeout"),
        d.connect_timeout.as_deref(),
        DEFAULT_CONNECT_TIMEOUT,
    );
    let timeout = ctx.duration(
        path.key("timeout"),
        d.timeout.as_deref(),
        DEFAULT_OP_TIMEOUT,
    );
    let ca_file = d.ca_file.as_deref().map(|f| ctx.path_buf(f));
    let domain = d
        .domain
        .as_deref()
        .and_then(|name| served_domain(ctx, identity, &path, name, &d.base_dn));
    let bind_password = SecretRef {
        name: "bind_password",
        inline: d.bind_password.is_some(),
        file: d.bind_password_file,
        env: d.bind_password_env,
    }
    .check(ctx, &path)?;
    Some(DirectoryConfig {
        name: d.name,
        url,
        starttls,
        ca_file,
        allow_insecure,
        bind_dn: d.bind_dn,
        bind_password,
        base_dn: d.base_dn,
        update_interval,
        connect_timeout,
        timeout,
        page_size,
        domain,
    })
}

/// `ldaps://`, or `ldap://` with StartTLS or `allow_insecure`.
fn check_url(ctx: &mut Ctx<'_>, path: &KeyPath, url: &str, starttls: bool, allow_insecure: bool) {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("ldaps://") {
        if starttls {
            ctx.err(
                path.key("starttls"),
                "StartTLS is for ldap:// URLs; ldaps:// is TLS already",
            );
        }
    } else if lower.starts_with("ldap://") {
        if !starttls && !allow_insecure {
            ctx.err(
                path.key("url"),
                format!(
                    "{url:?} is plain LDAP: the bind password would cross the network in clear; \
                     use ldaps://, or set starttls = true, or opt in with allow_insecure = true"
                ),
            );
        }
    } else {
        ctx.err(
            path.key("url"),
            format!("{url:?} must start with ldaps:// or ldap://"),
        );
    }
}

/// A directory's `domain`: a `[[domains]]` entry (spelled as configured there) whose DNS name
/// is the one the base DN's `DC=` labels spell, when they spell one.
fn served_domain(
    ctx: &mut Ctx<'_>,
    identity: &Identity,
    path: &KeyPath,
    name: &str,
    base_dn: &str,
) -> Option<String> {
    let domain = super::identity::declared(ctx, identity, path.key("domain"), name)?;
    if let Some(dns) = dns_of_base_dn(base_dn)
        && dns != domain.dns
    {
        ctx.err(
            path.key("base_dn"),
            format!(
                "{base_dn:?} is in {dns}, not in domain {}'s {}: a directory reads the domain it serves",
                domain.netbios, domain.dns
            ),
        );
    }
    Some(domain.netbios.clone())
}
