//! `[store]`: where durable state lives — a SQLite file (`path`), or a PostgreSQL `url` that
//! several replicas share, its password from a file or an environment variable and its TLS
//! verified against `ca_file` (or `plain` on loopback).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::KeyPath;
use super::check::Ctx;
use super::outbound::{SecretRef, UpstreamTls, UpstreamTlsKeys, UpstreamTlsRef};
use crate::base::secret::SecretSource;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    path: Option<String>,
    allow_readable: Option<bool>,
    url: Option<String>,
    /// Present only to be rejected with a helpful message: secrets never sit in config.
    password: Option<toml::Value>,
    password_file: Option<String>,
    password_env: Option<String>,
    ca_file: Option<String>,
    plain: Option<bool>,
    connect_timeout: Option<String>,
    leader_failover: Option<String>,
}

/// `[store]`: durable state.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Start on a store readable by group or others (it holds investigations and the audit
    /// log, so warden refuses one unless told).
    pub allow_readable: bool,
    /// `url = "postgresql://…"`: the store is on PostgreSQL (several replicas share it);
    /// `path` is then only where a `warden store migrate` reads from.
    pub postgres: Option<PostgresStoreConfig>,
}

/// `[store] url`: a PostgreSQL store, shared by every replica that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresStoreConfig {
    /// The URL as written (it carries no password), for logs and status.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: SecretSource,
    pub tls: UpstreamTls,
    pub connect_timeout: Duration,
    /// How long a leader may be gone before another replica takes over its jobs.
    pub leader_failover: Duration,
}

/// PostgreSQL's port, when a URL (or a `[[databases]]` entry) names none.
pub(super) const DEFAULT_POSTGRES_PORT: u16 = 5432;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a leader may be gone before another replica takes its jobs over.
const DEFAULT_LEADER_FAILOVER: Duration = Duration::from_secs(10);
/// The shortest `leader_failover`: the leader renews its lease every quarter of it, each round
/// trip bounded by a quarter too (`services::replica`).
const MIN_LEADER_FAILOVER: Duration = Duration::from_secs(1);

const TLS_KEYS: UpstreamTlsKeys = UpstreamTlsKeys {
    ca_file: "ca_file",
    plain: "plain",
    peer: "server",
    required: "is required with url",
};

pub(super) fn check(ctx: &mut Ctx<'_>, mut s: Raw) -> StoreConfig {
    let path = KeyPath::root().key("store");
    let postgres = s
        .url
        .take()
        .and_then(|url| postgres(ctx, &path, url, &mut s));
    StoreConfig {
        path: ctx.path_buf(s.path.as_deref().unwrap_or("warden.db")),
        allow_readable: s.allow_readable.unwrap_or(false),
        postgres,
    }
}

/// `url` and the keys that only go with it.
fn postgres(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    url: String,
    s: &mut Raw,
) -> Option<PostgresStoreConfig> {
    let password = SecretRef {
        name: "password",
        inline: s.password.is_some(),
        file: s.password_file.take(),
        env: s.password_env.take(),
    }
    .check(ctx, path);
    let parsed = parse_postgres_url(&url);
    if let Err(e) = &parsed {
        ctx.err(path.key("url"), e.clone());
    }
    let tls = UpstreamTlsRef {
        keys: &TLS_KEYS,
        ca_file: s.ca_file.take(),
        plain: s.plain.unwrap_or(false),
        host: parsed.as_ref().ok().map(|(host, ..)| host.as_str()),
    }
    .check(ctx, path);
    let connect_timeout = ctx.duration(
        path.key("connect_timeout"),
        s.connect_timeout.as_deref(),
        DEFAULT_CONNECT_TIMEOUT,
    );
    let leader_failover = ctx.duration(
        path.key("leader_failover"),
        s.leader_failover.as_deref(),
        DEFAULT_LEADER_FAILOVER,
    );
    if leader_failover < MIN_LEADER_FAILOVER {
        ctx.err(
            path.key("leader_failover"),
            "must be at least 1s; the leader renews its lease every quarter of it",
        );
    }
    let (host, port, user, dbname) = parsed.ok()?;
    Some(PostgresStoreConfig {
        url,
        host,
        port,
        dbname,
        user,
        password: password?,
        tls: tls?,
        connect_timeout,
        leader_failover,
    })
}

/// `postgresql://user@host[:port]/dbname` → (host, port, user, dbname). A password in the URL
/// is refused: it belongs in `password_file` or `password_env`.
fn parse_postgres_url(url: &str) -> Result<(String, u16, String, String), String> {
    let form = "must be postgresql://USER@HOST[:PORT]/DATABASE";
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or_else(|| form.to_owned())?;
    let (user, rest) = rest.split_once('@').ok_or_else(|| form.to_owned())?;
    if user.contains(':') {
        return Err(
            "must not carry a password; put it in password_file or password_env".to_owned(),
        );
    }
    let (authority, dbname) = rest.split_once('/').ok_or_else(|| form.to_owned())?;
    if dbname.is_empty() || dbname.contains(['?', '/', '#']) {
        return Err(format!("{form} (no parameters)"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("has port {p:?}; expected 1..=65535"))?,
        ),
        None => (authority, DEFAULT_POSTGRES_PORT),
    };
    if user.is_empty() || host.is_empty() {
        return Err(form.to_owned());
    }
    Ok((host.to_owned(), port, user.to_owned(), dbname.to_owned()))
}
