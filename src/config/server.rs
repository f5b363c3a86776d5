//! `[server]`: the HTTP gateway's listener and limits, and the process-wide settings that go
//! with serving (the followed-action queue, the bootstrap key, retention of expired members and
//! audit records).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::KeyPath;
use super::check::Ctx;
use super::listener::{self, TlsFiles, TlsPair};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    listen: Option<String>,
    max_batch: Option<usize>,
    store_poll_interval: Option<String>,
    max_body_bytes: Option<usize>,
    header_read_timeout: Option<String>,
    request_timeout: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    write_timeout: Option<String>,
    idle_timeout: Option<String>,
    followed_action_queue: Option<usize>,
    anonymous_decisions: Option<bool>,
    bootstrap_key_file: Option<String>,
    bootstrap_key_expires_in: Option<String>,
    expired_member_retention: Option<String>,
    max_expiry_share: Option<f64>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    audit_retention: Option<String>,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Most requests in one `POST /v1/decisions`.
    pub max_batch: usize,
    /// How often `serve` checks the store for changes made by other processes (the CLI).
    pub store_poll_interval: Duration,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// A client must send its request headers within this time (slowloris guard).
    pub header_read_timeout: Duration,
    /// A request must be answered within this time (503 beyond).
    pub request_timeout: Duration,
    /// Open connections beyond this wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Connections one client address (an IPv6 /64) may hold at once; more are refused (503)
    /// and counted. Default: a tenth of `max_connections`.
    pub max_connections_per_client: usize,
    /// A client that leaves its answer unread this long (the socket takes nothing) loses the
    /// connection.
    pub write_timeout: Duration,
    /// A connection on which nothing moves this long while nothing is being answered closes.
    pub idle_timeout: Duration,
    /// Followed-action events waiting for the worker; more are dropped and counted.
    pub followed_action_queue: usize,
    /// Decision routes answer without an API key (for loopback-only setups such as the
    /// embedded default); every other route still needs one.
    pub anonymous_decisions: bool,
    /// Where the bootstrap admin key is written on first start with no keys (mode 0600);
    /// `None`: next to the store, named after it (see [`super::Config::bootstrap_key_file`]).
    pub bootstrap_key_file: Option<PathBuf>,
    /// The bootstrap admin key expires this long after it is made.
    pub bootstrap_key_expires_in: Duration,
    /// Expired members stay in the store (listed, re-activatable) this long, then are purged.
    pub expired_member_retention: Duration,
    /// An expiry sweep that would deactivate more than this share of a list's active members
    /// at once is held for an admin (only on lists of at least 10 active members, the
    /// operations layer's `EXPIRY_HOLD_MIN_MEMBERS`). 1.0 never holds.
    pub max_expiry_share: f64,
    /// Serve HTTPS with this certificate chain and key (PEM) when both are set.
    pub tls: Option<TlsFiles>,
    /// Audit records older than this are pruned (hourly, by the audit service).
    pub audit_retention: Duration,
}

const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8470,
));
const DEFAULT_MAX_BATCH: usize = 10_000;
const DEFAULT_STORE_POLL: Duration = Duration::from_millis(50);
const DEFAULT_MAX_BODY: usize = 1 << 20;
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The same as the header timeout, which also bounds an HTTP/1.1 connection's wait for its
/// next request (hyper starts that clock when the previous answer is written).
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 86_400);
/// A retention shorter than a day would prune records before anyone reads them.
const MIN_AUDIT_RETENTION: Duration = Duration::from_secs(86_400);
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_BOOTSTRAP_KEY_EXPIRY: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_EXPIRED_MEMBER_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
const DEFAULT_MAX_EXPIRY_SHARE: f64 = 0.5;

/// Default for `[server] followed_action_queue`: followed-action events waiting for the worker;
/// beyond this they are dropped and counted.
pub const DEFAULT_FOLLOWED_ACTION_QUEUE: usize = 4096;

pub(super) fn check(ctx: &mut Ctx<'_>, raw: Raw) -> ServerConfig {
    let path = KeyPath::root().key("server");
    let listen = match &raw.listen {
        Some(text) => listener::address(ctx, path.key("listen"), text, "127.0.0.1:8470")
            .unwrap_or(DEFAULT_LISTEN),
        None => DEFAULT_LISTEN,
    };
    let max_batch = ctx.at_least_one(path.key("max_batch"), raw.max_batch, DEFAULT_MAX_BATCH);
    let max_body_bytes = ctx.at_least_one(
        path.key("max_body_bytes"),
        raw.max_body_bytes,
        DEFAULT_MAX_BODY,
    );
    let followed_action_queue = ctx.at_least_one(
        path.key("followed_action_queue"),
        raw.followed_action_queue,
        DEFAULT_FOLLOWED_ACTION_QUEUE,
    );
    let max_connections = ctx.at_least_one(
        path.key("max_connections"),
        raw.max_connections,
        DEFAULT_MAX_CONNECTIONS,
    );
    let max_connections_per_client =
        per_client_cap(ctx, &path, raw.max_connections_per_client, max_connections);
    let tls = TlsPair {
        cert_file: raw.tls_cert_file,
        key_file: raw.tls_key_file,
    }
    .check(ctx, &path);
    let audit_retention = audit_retention(ctx, &path, raw.audit_retention.as_deref());
    let bootstrap_key_file = raw.bootstrap_key_file.map(|p| ctx.path_buf(&p));
    let max_expiry_share = max_expiry_share(ctx, &path, raw.max_expiry_share);
    ServerConfig {
        listen,
        max_batch,
        store_poll_interval: ctx.duration(
            path.key("store_poll_interval"),
            raw.store_poll_interval.as_deref(),
            DEFAULT_STORE_POLL,
        ),
        max_body_bytes,
        header_read_timeout: ctx.duration(
            path.key("header_read_timeout"),
            raw.header_read_timeout.as_deref(),
            DEFAULT_HEADER_READ_TIMEOUT,
        ),
        request_timeout: ctx.duration(
            path.key("request_timeout"),
            raw.request_timeout.as_deref(),
            DEFAULT_REQUEST_TIMEOUT,
        ),
        max_connections,
        max_connections_per_client,
        write_timeout: ctx.duration(
            path.key("write_timeout"),
            raw.write_timeout.as_deref(),
            DEFAULT_WRITE_TIMEOUT,
        ),
        idle_timeout: ctx.duration(
            path.key("idle_timeout"),
            raw.idle_timeout.as_deref(),
            DEFAULT_IDLE_TIMEOUT,
        ),
        followed_action_queue,
        anonymous_decisions: raw.anonymous_decisions.unwrap_or(false),
        bootstrap_key_file,
        bootstrap_key_expires_in: ctx.duration(
            path.key("bootstrap_key_expires_in"),
            raw.bootstrap_key_expires_in.as_deref(),
            DEFAULT_BOOTSTRAP_KEY_EXPIRY,
        ),
        expired_member_retention: ctx.duration(
            path.key("expired_member_retention"),
            raw.expired_member_retention.as_deref(),
            DEFAULT_EXPIRED_MEMBER_RETENTION,
        ),
        max_expiry_share,
        tls,
        audit_retention,
    }
}

/// `max_connections_per_client`: at least 1 and at most `max_connections`; by default a tenth
/// of it, so that one address never holds every connection.
fn per_client_cap(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    cap: Option<usize>,
    max_connections: usize,
) -> usize {
    let default = (max_connections / 10).max(1);
    let Some(n) = cap else {
        return default;
    };
    let key = path.key("max_connections_per_client");
    if n == 0 {
        ctx.err(key, "must be at least 1");
        return default;
    }
    if n > max_connections {
        ctx.err(
            key,
            format!(
                "{n} is more than max_connections ({max_connections}); one address can hold at \
                 most every connection"
            ),
        );
        return default;
    }
    n
}

/// At least a day: records are pruned once older than this.
fn audit_retention(ctx: &mut Ctx<'_>, path: &KeyPath, text: Option<&str>) -> Duration {
    let retention = ctx.duration(path.key("audit_retention"), text, DEFAULT_AUDIT_RETENTION);
    if retention < MIN_AUDIT_RETENTION {
        ctx.err(
            path.key("audit_retention"),
            "must be at least 1d; audit records are pruned once older than this",
        );
    }
    retention
}

/// A share above 0 and at most 1; the default when it is not one.
fn max_expiry_share(ctx: &mut Ctx<'_>, path: &KeyPath, share: Option<f64>) -> f64 {
    let share = share.unwrap_or(DEFAULT_MAX_EXPIRY_SHARE);
    if share > 0.0 && share <= 1.0 {
        return share;
    }
    ctx.err(
        path.key("max_expiry_share"),
        format!("{share} is not a share: give a number above 0 and at most 1"),
    );
    DEFAULT_MAX_EXPIRY_SHARE
}
