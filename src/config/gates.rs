//! `[[gates]]`: the database gates — each a listener that refuses and ends the sessions of
//! users a policy blocks and relays everyone else's to its upstream server, speaking
//! PostgreSQL (`src/gate`, the default) or MariaDB/MySQL (`protocol = "mysql"`, `src/mysql`):
//! where it listens and with which certificate, the upstream and how it is reached, the
//! `service` its decisions are scoped by, its limits, and for MySQL the control account that
//! stops a blocked session's statement on the server.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::KeyPath;
use super::check::Ctx;
use super::identity::logins_domain;
use super::listener::{self, TlsFiles, TlsPair};
use super::outbound::{SecretRef, UpstreamTls, UpstreamTlsKeys, UpstreamTlsRef, host_port};
use crate::base::identity::Identity;
use crate::base::secret::SecretSource;
use crate::model::policy::{Field, Policy};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    name: String,
    protocol: Option<String>,
    listen: String,
    upstream: String,
    service: String,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    allow_plain: Option<bool>,
    upstream_ca_file: Option<String>,
    upstream_plain: Option<bool>,
    max_startup_bytes: Option<usize>,
    startup_timeout: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    idle_timeout: Option<String>,
    control_user: Option<String>,
    control_password: Option<toml::Value>,
    control_password_file: Option<String>,
    control_password_env: Option<String>,
    /// The NetBIOS name of the `[[domains]]` entry bare logins through this gate belong to.
    domain: Option<String>,
}

/// The wire protocol a gate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateProtocol {
    /// PostgreSQL protocol v3 (`src/gate`).
    Postgres,
    /// The MariaDB/MySQL client/server protocol (`src/mysql`).
    Mysql,
}

impl GateProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            GateProtocol::Postgres => "postgresql",
            GateProtocol::Mysql => "mysql",
        }
    }
}

crate::base::word::words!(GateProtocol, "postgresql, mysql", {
    "postgresql" => GateProtocol::Postgres,
    "mysql" => GateProtocol::Mysql,
});

/// The account a MySQL gate logs in with to stop a blocked session's statement on the server
/// (`KILL CONNECTION`): it needs the `CONNECTION ADMIN` privilege (MariaDB; `SUPER` before 10.5),
/// and authenticates with `mysql_native_password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlAccount {
    pub user: String,
    pub password: SecretSource,
}

/// `[[gates]]`: a PostgreSQL gate (`src/gate`) — a listener that refuses and ends the sessions
/// of users a policy blocks and relays everyone else's to the upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    pub name: String,
    pub protocol: GateProtocol,
    pub listen: SocketAddr,
    /// The upstream server as written (`host:port`).
    pub upstream: String,
    /// Its host part, the name its certificate is verified against.
    pub upstream_host: String,
    pub upstream_port: u16,
    /// The `service` of every decision this gate asks for, so `apply_to` scopes it.
    pub service: String,
    /// The gate's own certificate and key; TLS to clients when set.
    pub tls: Option<TlsFiles>,
    /// Whether clients may connect without TLS.
    pub allow_plain: bool,
    pub upstream_tls: UpstreamTls,
    pub max_startup_bytes: usize,
    pub startup_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// End a session with no statement outstanding on the server and no traffic this long; a
    /// long query or a pipeline the server still works on is not idle.
    pub idle_timeout: Option<Duration>,
    /// MySQL: the control account that stops a blocked session's statement; without one, the
    /// gate closes the upstream connection and the server stops the statement when it notices.
    pub control: Option<ControlAccount>,
    /// The domain bare logins through this gate belong to (its `domain`, else the default
    /// domain): the login `alice` is decided as the account `CORP\alice`.
    pub domain: Option<String>,
}

impl GateConfig {
    /// The name a login through this gate is decided as: a bare login as an account of the
    /// gate's domain, a qualified one (`CORP\alice`, a UPN) as it is.
    pub fn account_name<'a>(&self, login: &'a str) -> std::borrow::Cow<'a, str> {
        crate::base::identity::qualify(login, self.domain.as_deref())
    }
}

const DEFAULT_MAX_STARTUP: usize = 10 * 1024;
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONNECTIONS: usize = 1000;
const DEFAULT_MAX_PER_CLIENT: usize = 100;

const TLS_KEYS: UpstreamTlsKeys = UpstreamTlsKeys {
    ca_file: "upstream_ca_file",
    plain: "upstream_plain",
    peer: "upstream",
    required: "is required",
};

/// What a gate's checks read from other sections: where the HTTP gateway listens, the domain
/// rules its bare logins are placed by, and the policies its service is decided by.
pub(super) struct Context<'a> {
    pub(super) server_listen: SocketAddr,
    pub(super) identity: &'a Identity,
    pub(super) policies: &'a [Policy],
}

/// Every `[[gates]]` entry: unique names, each gate, and no gate on an address another
/// listener (the HTTP gateway's `server_listen`, an earlier gate) holds.
pub(super) fn check(
    ctx: &mut Ctx<'_>,
    context: &Context<'_>,
    raw: Vec<(usize, Raw)>,
) -> Vec<GateConfig> {
    let section = KeyPath::root().key("gates");
    ctx.unique_names("gates", raw.iter().map(|(i, g)| (*i, g.name.as_str())));
    let gates: Vec<GateConfig> = raw
        .into_iter()
        .filter_map(|(i, g)| gate(ctx, context, section.index(i), g))
        .collect();
    let server_listen = context.server_listen;
    let mut listeners = vec![(KeyPath::root().key("server"), server_listen)];
    listeners.extend(
        gates
            .iter()
            .enumerate()
            .map(|(i, g)| (section.index(i), g.listen)),
    );
    listener::distinct(ctx, &listeners);
    gates
}

/// One `[[gates]]` entry.
fn gate(ctx: &mut Ctx<'_>, context: &Context<'_>, path: KeyPath, mut g: Raw) -> Option<GateConfig> {
    let errors = ctx.error_count();
    let domain = domain(ctx, context, &path, &g);
    let protocol = match g.protocol.as_deref() {
        None => Some(GateProtocol::Postgres),
        Some(word) => ctx.word::<GateProtocol>(path.key("protocol"), word),
    };
    let example = match protocol {
        Some(GateProtocol::Mysql) => "127.0.0.1:3307",
        _ => "127.0.0.1:6432",
    };
    let listen = listener::address(ctx, path.key("listen"), &g.listen, example);
    let upstream = host_port(&g.upstream);
    if upstream.is_none() {
        ctx.err(
            path.key("upstream"),
            format!(
                "{:?} is not host:port; e.g. \"db1.corp.example.test:5432\"",
                g.upstream
            ),
        );
    }
    if g.service.trim().is_empty() {
        ctx.err(
            path.key("service"),
            "must not be empty: decisions are scoped by it",
        );
    }
    let tls = TlsPair {
        cert_file: g.tls_cert_file.take(),
        key_file: g.tls_key_file.take(),
    }
    .check(ctx, &path);
    let allow_plain = g.allow_plain.unwrap_or(false);
    // Told only of a gate otherwise sound: a half pair or a bad address says enough.
    if tls.is_none() && !allow_plain && ctx.error_count() == errors {
        ctx.err(
            path.key("tls_cert_file"),
            "a gate needs a certificate (tls_cert_file, tls_key_file), or allow_plain = true \
             to accept clients without TLS",
        );
    }
    let upstream_tls = UpstreamTlsRef {
        keys: &TLS_KEYS,
        ca_file: g.upstream_ca_file.take(),
        plain: g.upstream_plain.unwrap_or(false),
        host: upstream.as_ref().map(|(host, _)| host.as_str()),
    }
    .check(ctx, &path);
    let limits = limits(ctx, &path, &g);
    let control = control(ctx, &path, protocol, &mut g);
    let ((upstream_host, upstream_port), upstream_tls, listen, protocol) =
        (upstream?, upstream_tls?, listen?, protocol?);
    Some(GateConfig {
        domain,
        name: g.name,
        protocol,
        listen,
        upstream: g.upstream,
        upstream_host,
        upstream_port,
        service: g.service,
        tls,
        allow_plain,
        upstream_tls,
        max_startup_bytes: limits.max_startup_bytes,
        startup_timeout: limits.startup_timeout,
        max_connections: limits.max_connections,
        max_connections_per_client: limits.max_connections_per_client,
        idle_timeout: limits.idle_timeout,
        control,
    })
}

/// `control_user` and its password (a MySQL gate's only): both or neither.
fn control(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    protocol: Option<GateProtocol>,
    g: &mut Raw,
) -> Option<ControlAccount> {
    let password = SecretRef {
        name: "control_password",
        inline: g.control_password.is_some(),
        file: g.control_password_file.take(),
        env: g.control_password_env.take(),
    };
    let given = password.inline || password.file.is_some() || password.env.is_some();
    if protocol == Some(GateProtocol::Postgres) && (given || g.control_user.is_some()) {
        let key = if given {
            "control_password_file"
        } else {
            "control_user"
        };
        ctx.err(
            path.key(key),
            "is used by protocol = \"mysql\" only (a PostgreSQL gate cancels with the \
             session's own cancel key)",
        );
        return None;
    }
    match g.control_user.take() {
        Some(user) if !user.is_empty() => {
            let password = password.check(ctx, path)?;
            Some(ControlAccount { user, password })
        }
        Some(_) => {
            ctx.err(path.key("control_user"), "must not be empty");
            None
        }
        None if given => {
            ctx.err(
                path.key("control_user"),
                "is required with control_password_file / control_password_env",
            );
            None
        }
        None => None,
    }
}

/// The domain the gate's bare logins belong to: its `domain`, else the default domain. A gate
/// with neither, in front of a service a policy on `db_user` applies to, is refused: its bare
/// logins (`alice`) would be compared as names of no domain and match no listed account
/// (`CORP\alice`).
fn domain(ctx: &mut Ctx<'_>, context: &Context<'_>, path: &KeyPath, g: &Raw) -> Option<String> {
    let path = path.key("domain");
    let domain = logins_domain(ctx, context.identity, path.clone(), g.domain.as_deref());
    let decides_logins = context.policies.iter().any(|p| {
        p.enabled
            && p.apply_to.applies_to(&g.service)
            && p.criteria.iter().any(|c| c.field == Field::DbUser)
    });
    if domain.is_none() && g.domain.is_none() && decides_logins {
        ctx.err(
            path,
            format!(
                "the gate's logins are bare database user names (alice), which belong to no \
                 domain here, so they would match no listed account (CORP\\alice) and a \
                 listed user would log in; set domain = \"CORP\" on this gate (a [[domains]] \
                 entry), or default = true on the [[domains]] entry bare names belong to \
                 (service {:?} is decided on db_user)",
                g.service
            ),
        );
    }
    domain
}

/// A gate's bounds on what a client may hold: bytes and time before a session, connections.
struct Limits {
    max_startup_bytes: usize,
    startup_timeout: Duration,
    max_connections: usize,
    max_connections_per_client: usize,
    idle_timeout: Option<Duration>,
}

fn limits(ctx: &mut Ctx<'_>, path: &KeyPath, g: &Raw) -> Limits {
    Limits {
        max_startup_bytes: ctx.at_least_one(
            path.key("max_startup_bytes"),
            g.max_startup_bytes,
            DEFAULT_MAX_STARTUP,
        ),
        max_connections: ctx.at_least_one(
            path.key("max_connections"),
            g.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        ),
        max_connections_per_client: ctx.at_least_one(
            path.key("max_connections_per_client"),
            g.max_connections_per_client,
            DEFAULT_MAX_PER_CLIENT,
        ),
        startup_timeout: ctx.duration(
            path.key("startup_timeout"),
            g.startup_timeout.as_deref(),
            DEFAULT_STARTUP_TIMEOUT,
        ),
        idle_timeout: g
            .idle_timeout
            .as_deref()
            .map(|t| ctx.duration(path.key("idle_timeout"), Some(t), Duration::MAX)),
    }
}
