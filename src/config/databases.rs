//! `[[databases]]`: the agentless mode (`src/sync/database.rs`) — a PostgreSQL server where
//! warden owns roles' memberships: how it is reached (its password from a file or the
//! environment, TLS verified or plain on loopback), and each `[[databases.roles]]` that
//! reconciles a list into a role.

use std::time::Duration;

use serde::Deserialize;

use super::KeyPath;
use super::check::{Ctx, Names};
use super::identity::logins_domain;
use super::outbound::{SecretRef, UpstreamTls, UpstreamTlsKeys, UpstreamTlsRef};
use super::store::DEFAULT_POSTGRES_PORT;
use crate::base::identity::Identity;
use crate::base::secret::SecretSource;
use crate::model::pattern::AttributeMapping;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) name: String,
    host: String,
    port: Option<u16>,
    dbname: Option<String>,
    user: String,
    /// Present only to be rejected with a helpful message: secrets never sit in config.
    password: Option<toml::Value>,
    password_file: Option<String>,
    password_env: Option<String>,
    ca_file: Option<String>,
    plain: Option<bool>,
    connect_timeout: Option<String>,
    update_interval: Option<String>,
    /// The NetBIOS name of the `[[domains]]` entry this server's logins belong to.
    domain: Option<String>,
    #[serde(default)]
    roles: Vec<RawRole>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    list: String,
    role: String,
    #[serde(rename = "match")]
    match_pattern: Option<String>,
    substitute: Option<String>,
}

/// `[[databases]]`: a PostgreSQL server where warden owns roles' memberships (the agentless
/// mode, `src/sync/database.rs`): each `[[databases.roles]]` reconciles a list into a role.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: SecretSource,
    pub tls: UpstreamTls,
    pub connect_timeout: Duration,
    pub update_interval: Duration,
    /// The domain this server's logins belong to (its `domain`, else the default domain):
    /// only that domain's accounts are made members of its roles. `None`: every account's.
    pub domain: Option<String>,
    pub roles: Vec<RoleMappingConfig>,
}

/// `[[databases.roles]]`: a list whose principals, mapped to role names through a pattern,
/// are made the members of `role`.
#[derive(Debug, Clone)]
pub struct RoleMappingConfig {
    pub list: String,
    pub role: String,
    /// Principal → role name (`CORP\alice` → `alice`); a copy when no `match` is given.
    pub member: AttributeMapping,
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the roles are reconciled when no list change asks sooner.
const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(60);

const TLS_KEYS: UpstreamTlsKeys = UpstreamTlsKeys {
    ca_file: "ca_file",
    plain: "plain",
    peer: "server",
    required: "is required",
};

/// One `[[databases]]` entry and its `[[databases.roles]]`.
pub(super) fn check(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    identity: &Identity,
    path: KeyPath,
    d: Raw,
) -> Option<DatabaseConfig> {
    let errors = ctx.error_count();
    let domain = logins_domain(ctx, identity, path.key("domain"), d.domain.as_deref());
    if names.directories.contains(d.name.as_str()) {
        ctx.err(
            path.key("name"),
            format!(
                "{:?} is also a directory's name; recent updates are recorded by name, so a \
                 database needs its own",
                d.name
            ),
        );
    }
    if d.host.trim().is_empty() || d.host.contains(char::is_whitespace) {
        ctx.err(path.key("host"), "must be a host name or address");
    }
    if d.port == Some(0) {
        ctx.err(path.key("port"), "must be 1..=65535");
    }
    if d.user.trim().is_empty() {
        ctx.err(path.key("user"), "must name the role warden logs in as");
    }
    let password = SecretRef {
        name: "password",
        inline: d.password.is_some(),
        file: d.password_file,
        env: d.password_env,
    }
    .check(ctx, &path);
    let tls = UpstreamTlsRef {
        keys: &TLS_KEYS,
        ca_file: d.ca_file,
        plain: d.plain.unwrap_or(false),
        host: Some(&d.host),
    }
    .check(ctx, &path);
    let connect_timeout = ctx.duration(
        path.key("connect_timeout"),
        d.connect_timeout.as_deref(),
        DEFAULT_CONNECT_TIMEOUT,
    );
    let update_interval = ctx.duration(
        path.key("update_interval"),
        d.update_interval.as_deref(),
        DEFAULT_UPDATE_INTERVAL,
    );
    let roles = roles(ctx, names, &path, d.roles);
    if ctx.error_count() != errors {
        return None;
    }
    Some(DatabaseConfig {
        domain,
        name: d.name,
        host: d.host,
        port: d.port.unwrap_or(DEFAULT_POSTGRES_PORT),
        dbname: d.dbname.unwrap_or_else(|| "postgres".to_owned()),
        user: d.user,
        password: password?,
        tls: tls?,
        connect_timeout,
        update_interval,
        roles,
    })
}

/// `[[databases.roles]]`: at least one, each a known list into a role mapped once.
fn roles(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    path: &KeyPath,
    raw: Vec<RawRole>,
) -> Vec<RoleMappingConfig> {
    if raw.is_empty() {
        ctx.err(
            path.key("roles"),
            "missing `[[databases.roles]]`: at least one list → role mapping",
        );
    }
    let mut roles: Vec<RoleMappingConfig> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let rpath = path.key("roles").index(i);
        ctx.reference(rpath.key("list"), names.lists, "list", "lists", &r.list);
        if r.role.is_empty() || r.role.len() > 63 || r.role.contains('\0') {
            ctx.err(
                rpath.key("role"),
                "must be a PostgreSQL role name (1 to 63 bytes)",
            );
        }
        if roles.iter().any(|o| o.role == r.role) {
            ctx.err(
                rpath.key("role"),
                format!("{:?} is already mapped on this database", r.role),
            );
        }
        let member = ctx.mapping(
            &rpath,
            "role",
            "principal",
            r.match_pattern.as_deref(),
            r.substitute.as_deref(),
        );
        if let Some(member) = member {
            roles.push(RoleMappingConfig {
                list: r.list,
                role: r.role,
                member,
            });
        }
    }
    roles
}
