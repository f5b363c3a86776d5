//! Configuration: the TOML model, validated in one step into a compiled runtime [`Config`].
//!
//! Parsing goes raw → validated. [`raw`] holds serde structs that reject unknown keys; each
//! section and each array element is deserialized on its own so that one bad entry does not hide
//! the next. [`Config::parse`] then checks references, compiles patterns and globs, parses
//! durations and rejects inline secrets, and returns either a `Config` or *every* problem found,
//! each with its key path (`data_sets[1].source.mappings[0].match`) and line.

mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::base::identity::Identity;
use crate::base::secret::SecretSource;
use crate::base::severity::IncidentSeverity;
use crate::model::dataset::Schema;
use crate::model::pattern::AttributeMapping;
use crate::model::policy::{Policy, ServiceScope};

/// The embedded default configuration: one list, one data set fed from it, one blocking policy.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/warden.toml");

/// How errors and logs name the embedded default.
const EMBEDDED_ORIGIN: &str = "embedded default config";

/// One segment of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where in the TOML document a value lives, e.g. `policies[0].criteria[1].data_set`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: KeyPath,
    /// 1-based line in the source, where known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): ", self.path)?,
            None => write!(f, "{}: ", self.path)?,
        }
        // Multi-line messages (a regex error's caret diagram) stay indented under their key.
        let mut lines = self.message.lines();
        f.write_str(lines.next().unwrap_or(""))?;
        for l in lines {
            write!(f, "\n      {l}")?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub origin: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
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
    /// Followed-action events waiting for the worker; more are dropped and counted.
    pub followed_action_queue: usize,
    /// Decision routes answer without an API key (for loopback-only setups such as the
    /// embedded default); every other route still needs one.
    pub anonymous_decisions: bool,
    /// Where the bootstrap admin key is written on first start with no keys (mode 0600);
    /// `None`: next to the store, named after it (see [`Config::bootstrap_key_file`]).
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

/// A PEM certificate chain and private key for the gateway's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
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

/// `[[lists]]`: a local user list.
#[derive(Debug, Clone)]
pub struct ListConfig {
    pub name: String,
    pub description: String,
}

/// `[[mappings]]`: a list pushed into an AD group.
#[derive(Debug, Clone)]
pub struct MappingConfig {
    pub list: String,
    pub directory: String,
    pub group_dn: String,
}

/// LDAP search scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Base,
    One,
    Sub,
}

/// A member field a `list`-sourced data set can expose as a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberField {
    Principal,
    Reason,
    Incident,
    AddedBy,
    AddedAt,
    ExpiresAt,
}

impl MemberField {
    pub const NAMES: &'static str = "reason, incident, added_by, added_at, expires_at";

    fn parse(name: &str) -> Option<MemberField> {
        Some(match name {
            "reason" => MemberField::Reason,
            "incident" => MemberField::Incident,
            "added_by" => MemberField::AddedBy,
            "added_at" => MemberField::AddedAt,
            "expires_at" => MemberField::ExpiresAt,
            _ => return None,
        })
    }
}

/// An LDAP query feeding a data set.
#[derive(Debug, Clone)]
pub struct LdapSource {
    pub directory: String,
    pub base: String,
    pub scope: Scope,
    pub filter: String,
    pub mappings: Vec<AttributeMapping>,
    pub refresh_interval: Duration,
    pub notify: bool,
    /// A refresh that would drop more than this share of rows is held (0 < share ≤ 1).
    pub max_shrink: f64,
    /// Rows removed within this window count together against `max_shrink` (by key, against
    /// the rows the window started with), so a set emptied in small steps is held too.
    pub shrink_window: Duration,
    /// Further queries, each on its own directory, whose rows join this one's (a data set
    /// over several domains). A refresh runs them all; if any fails, the last good rows stay.
    pub union: Vec<LdapQuery>,
    /// Follow nested membership of the filter's `(memberOf=<group>)`, and how.
    pub nested: Option<Nesting>,
    /// Pull only what changed (DirSync) on `refresh_interval` and notifications; a full pull
    /// every `full_refresh_interval` and on any doubt.
    pub incremental: bool,
    pub full_refresh_interval: Duration,
    /// At most this many change-notification connections (five groups each).
    pub watch_connections: usize,
}

/// One more query of a union data set.
#[derive(Debug, Clone, PartialEq)]
pub struct LdapQuery {
    pub directory: String,
    pub base: String,
    pub scope: Scope,
    pub filter: String,
}

/// How a data set follows nested groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// The server's `LDAP_MATCHING_RULE_IN_CHAIN` where it advertises it, else [`Nesting::Expand`].
    Auto,
    /// `(memberOf:1.2.840.113556.1.4.1941:=<group>)`, evaluated by the server.
    InChain,
    /// warden walks the sub-groups breadth-first and ORs one `memberOf` per group.
    Expand,
}

/// Default `full_refresh_interval` of an incremental data set.
pub const DEFAULT_FULL_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// Default `watch_connections`.
pub const DEFAULT_WATCH_CONNECTIONS: usize = 4;
/// Most `watch_connections` a data set may ask for.
pub const MAX_WATCH_CONNECTIONS: usize = 32;

/// Where a data set's rows come from.
#[derive(Debug, Clone)]
pub enum Source {
    Ldap(LdapSource),
    /// A local list; one member field per schema column (the key column holds the principal).
    List {
        list: String,
        fields: Vec<MemberField>,
    },
    /// Rows in a JSON file in Imperva's `{"records": [...]}` shape.
    Static {
        path: PathBuf,
    },
    /// Rows written through the Imperva-style data endpoints. Until the first write (and with
    /// no persisted rows) the set is unknown — decisions it could change fail closed — unless
    /// `never_written = "empty"` says an unwritten set is legitimately empty.
    Api {
        unwritten_is_empty: bool,
    },
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Ldap(_) => "ldap",
            Source::List { .. } => "list",
            Source::Static { .. } => "static",
            Source::Api { .. } => "api",
        }
    }
}

/// `[[data_sets]]`.
#[derive(Debug, Clone)]
pub struct DataSetConfig {
    pub name: String,
    pub schema: Schema,
    pub source: Source,
}

/// A followed action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionConfig {
    Log {
        level: tracing::Level,
    },
    Webhook {
        url: String,
        timeout: Duration,
        retries: u32,
        /// `http://` is refused unless this is set (the event would travel in clear).
        allow_insecure: bool,
    },
    Syslog {
        address: String,
        tcp: bool,
    },
}

/// Default for `[server] followed_action_queue`: followed-action events waiting for the worker;
/// beyond this they are dropped and counted.
pub const DEFAULT_FOLLOWED_ACTION_QUEUE: usize = 4096;

/// `[[action_sets]]`: named followed actions.
#[derive(Debug, Clone)]
pub struct ActionSetConfig {
    pub name: String,
    pub actions: Vec<ActionConfig>,
    /// A (policy, principal) pair is reported at most once within this window.
    pub dedup_window: Duration,
}

/// `[[response_rules]]`: turns a matching alert into an incident whose users go on `list`.
#[derive(Debug, Clone)]
pub struct ResponseRuleConfig {
    pub name: String,
    pub list: String,
    /// Alert sources (names or globs); any source when absent.
    pub sources: Option<ServiceScope>,
    /// The least severity that matches; any when absent.
    pub min_severity: Option<IncidentSeverity>,
    /// Free fields the alert must carry, each matching its name or glob.
    pub fields: Vec<(String, ServiceScope)>,
    /// How long the users stay on the list; until removed when absent.
    pub expires_in: Option<Duration>,
    pub reason: Option<String>,
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

/// `[imperva]`: an Imperva MX that data sets are pushed to through its Open API.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpervaConfig {
    /// `https://mx:8083` (the API path is added); `http://` only with `allow_insecure`.
    pub url: String,
    pub username: String,
    pub password: SecretSource,
    pub ca_file: Option<PathBuf>,
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

/// A validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    /// The domain rules names are compared by (`[identity]`, `[[domains]]`).
    pub identity: Arc<Identity>,
    /// `[identity] unresolvable = "keep"`: a principal neither the rules nor a directory can
    /// place is listed as the text it is (shown as such) instead of refused.
    pub keep_unresolvable: bool,
    pub directories: Vec<DirectoryConfig>,
    pub lists: Vec<ListConfig>,
    pub mappings: Vec<MappingConfig>,
    pub data_sets: Vec<DataSetConfig>,
    pub policies: Vec<Policy>,
    pub action_sets: Vec<ActionSetConfig>,
    pub response_rules: Vec<ResponseRuleConfig>,
    pub imperva: Option<ImpervaConfig>,
    pub gates: Vec<GateConfig>,
    pub databases: Vec<DatabaseConfig>,
    /// `[console.oidc]`: the console's single sign-on, when configured.
    pub console_oidc: Option<Arc<OidcConfig>>,
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

/// `[[gates]]`: a PostgreSQL gate (`src/gate`) — a listener that refuses and ends the sessions
/// of users a policy blocks and relays everyone else's to the upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    pub name: String,
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
    /// End a session that waited on its client (after `ReadyForQuery`) this long; a long
    /// query is not idle.
    pub idle_timeout: Option<Duration>,
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

/// How a gate reaches its upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTls {
    /// TLS, the server's certificate verified against this CA file (PEM).
    Verify(PathBuf),
    /// Plain TCP (`upstream_plain = true`, loopback upstreams only).
    Plain,
}

impl Config {
    /// Where the bootstrap admin key goes: `server.bootstrap_key_file`, or next to the store,
    /// named after it (`warden.db` → `warden.db.bootstrap-admin.key`), so that stores sharing
    /// a directory, or a store deleted and made again, never meet another store's key file.
    pub fn bootstrap_key_file(&self) -> PathBuf {
        self.server.bootstrap_key_file.clone().unwrap_or_else(|| {
            let mut name = self.store.path.clone().into_os_string();
            name.push(".bootstrap-admin.key");
            PathBuf::from(name)
        })
    }

    /// Parses and validates TOML. Relative paths resolve against `base_dir`.
    /// `origin` names the source in error messages (a path, or "embedded default").
    pub fn parse(source: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        validate::parse(source, base_dir).map_err(|errors| ConfigErrors {
            origin: origin.to_string(),
            errors,
        })
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            origin: origin.clone(),
            errors: vec![ConfigError {
                path: KeyPath::root(),
                line: None,
                message: format!("cannot read file: {e}"),
            }],
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Config::parse(&source, &origin, base)
    }

    /// The embedded default, with relative paths resolved against the working directory.
    pub fn embedded_default() -> Result<Config, ConfigErrors> {
        Config::parse(DEFAULT_CONFIG, EMBEDDED_ORIGIN, Path::new("."))
    }

    pub fn data_set(&self, name: &str) -> Option<&DataSetConfig> {
        self.data_sets.iter().find(|d| d.name == name)
    }

    pub fn directory(&self, name: &str) -> Option<&DirectoryConfig> {
        self.directories.iter().find(|d| d.name == name)
    }

    /// What differs between this running configuration and `next` that only a restart can
    /// apply: the listener, its TLS files, the connection cap and the store.
    pub fn needs_restart(&self, next: &Config) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut check = |changed: bool, section: &str, key: &str| {
            if changed {
                problems.push(ConfigError {
                    path: KeyPath::root().key(section).key(key),
                    line: None,
                    message: "cannot change while warden runs; restart warden to apply it, or \
                              put the running value back to reload the rest"
                        .into(),
                });
            }
        };
        let (now, then) = (&self.server, &next.server);
        check(now.listen != then.listen, "server", "listen");
        check(now.tls != then.tls, "server", "tls_cert_file");
        check(
            now.max_connections != then.max_connections,
            "server",
            "max_connections",
        );
        check(self.store.path != next.store.path, "store", "path");
        check(self.store.postgres != next.store.postgres, "store", "url");
        problems
    }
}

/// Where the running configuration came from, so that it can be read again on reload: a file,
/// or the embedded default; and the store path and listen address given on the command line,
/// which win over the file's.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub store_override: Option<PathBuf>,
    pub listen_override: Option<SocketAddr>,
}

impl ConfigSource {
    /// Reads and validates the configuration afresh.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        let mut config = match &self.path {
            Some(path) => Config::load(path)?,
            None => Config::embedded_default()?,
        };
        if let Some(store) = &self.store_override {
            config.store.path = store.clone();
        }
        if let Some(listen) = self.listen_override {
            config.server.listen = listen;
        }
        Ok(config)
    }

    /// How error messages name this source.
    pub fn origin(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| EMBEDDED_ORIGIN.to_owned(), |p| p.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An `api` data set (with `never_written` as given) and a policy over it (with
    /// `when_unknown` as given).
    fn cold_start_config(never_written: &str, when_unknown: &str) -> String {
        format!(
            r#"
[store]
path = "warden.db"
[[data_sets]]
name = "Feed"
columns = [{{ name = "user", key = true }}]
source = {{ type = "api"{never_written} }}
[[policies]]
name = "Block feed"
action = "block"
severity = "high"
apply_to = ["*"]
{when_unknown}
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "Feed"
"#
        )
    }

    /// An `ldap` data set with `filter` and `extra` source keys.
    fn ldap_config(filter: &str, extra: &str) -> String {
        format!(
            r#"
[store]
path = "warden.db"
[[directories]]
name = "dc"
url = "ldaps://dc.example.test"
bind_dn = "CN=warden,DC=example,DC=test"
bind_password_env = "PW"
base_dn = "DC=example,DC=test"
[[data_sets]]
name = "Nested"
columns = [{{ name = "user", key = true }}]
[data_sets.source]
type = "ldap"
directory = "dc"
base = "DC=example,DC=test"
filter = "{filter}"
{extra}
[[data_sets.source.mappings]]
column = "user"
attribute = "sAMAccountName"
"#
        )
    }

    #[test]
    fn nested_and_incremental_are_checked_by_key_path() {
        let parse = |f: &str, e: &str| Config::parse(&ldap_config(f, e), "test", Path::new("."));
        let group = "(memberOf=CN=g,DC=example,DC=test)";
        let c = parse(group, "nested = true\nincremental = true").unwrap();
        let Source::Ldap(s) = &c.data_sets[0].source else {
            panic!("not ldap")
        };
        assert_eq!(s.nested, Some(Nesting::Auto));
        assert!(s.incremental);
        assert_eq!(s.full_refresh_interval, DEFAULT_FULL_REFRESH_INTERVAL);
        assert_eq!(s.watch_connections, DEFAULT_WATCH_CONNECTIONS);
        let c = parse(group, "nested = \"expand\"\nwatch_connections = 2").unwrap();
        let Source::Ldap(s) = &c.data_sets[0].source else {
            panic!("not ldap")
        };
        assert_eq!((s.nested, s.watch_connections), (Some(Nesting::Expand), 2));
        let c = parse(group, "nested = false").unwrap();
        assert!(matches!(&c.data_sets[0].source, Source::Ldap(s) if s.nested.is_none()));
        let paths = |f: &str, e: &str| -> Vec<String> {
            let err = parse(f, e).unwrap_err();
            err.errors.iter().map(|e| e.path.to_string()).collect()
        };
        let key = |k: &str| vec![format!("data_sets[0].source.{k}")];
        assert_eq!(paths("(objectClass=user)", "nested = true"), key("nested"));
        assert_eq!(
            paths("(objectClass=user)", "incremental = true"),
            key("incremental")
        );
        assert_eq!(paths(group, "nested = \"deep\""), key("nested"));
        assert_eq!(
            paths(group, "watch_connections = 0"),
            key("watch_connections")
        );
        assert_eq!(
            paths(group, "watch_connections = 33"),
            key("watch_connections")
        );
        assert_eq!(
            paths(group, "full_refresh_interval = \"1h\""),
            key("full_refresh_interval")
        );
    }

    #[test]
    fn when_unknown_defaults_to_error_and_allow_is_only_explicit() {
        use crate::model::policy::WhenUnknown;
        let parse = |c: &str| Config::parse(c, "test", Path::new("."));
        let config = parse(&cold_start_config("", "")).unwrap();
        assert_eq!(config.policies[0].when_unknown, WhenUnknown::Error);
        assert!(matches!(
            config.data_sets[0].source,
            Source::Api {
                unwritten_is_empty: false
            }
        ));
        let config = parse(&cold_start_config(
            r#", never_written = "empty""#,
            r#"when_unknown = "allow""#,
        ))
        .unwrap();
        assert_eq!(config.policies[0].when_unknown, WhenUnknown::Allow);
        assert!(matches!(
            config.data_sets[0].source,
            Source::Api {
                unwritten_is_empty: true
            }
        ));
        let config = parse(&cold_start_config("", r#"when_unknown = "block""#)).unwrap();
        assert_eq!(config.policies[0].when_unknown, WhenUnknown::Block);
        let err = parse(&cold_start_config(
            r#", never_written = "maybe""#,
            r#"when_unknown = "open""#,
        ))
        .unwrap_err();
        let paths: Vec<String> = err.errors.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(
            paths,
            [
                "data_sets[0].source.never_written",
                "policies[0].when_unknown"
            ],
            "{err}"
        );
        assert!(err.to_string().contains("error, block, allow"), "{err}");
    }

    #[test]
    fn expiry_and_file_settings_default_and_are_checked_by_key_path() {
        let dir = Path::new("/etc/warden");
        let c = Config::parse("", "test", dir).unwrap();
        assert_eq!(c.server.max_expiry_share, 0.5);
        assert_eq!(
            c.server.expired_member_retention,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            c.server.bootstrap_key_expires_in,
            Duration::from_secs(86_400)
        );
        assert!(!c.store.allow_readable);
        assert_eq!(
            c.bootstrap_key_file(),
            Path::new("/etc/warden/warden.db.bootstrap-admin.key")
        );
        let c = Config::parse(
            "[server]\nbootstrap_key_file = \"k\"\nmax_expiry_share = 1.0\n\
             [store]\npath = \"s/w.db\"\nallow_readable = true\n",
            "test",
            dir,
        )
        .unwrap();
        assert_eq!(c.bootstrap_key_file(), Path::new("/etc/warden/k"));
        assert!(c.store.allow_readable);
        let errors = Config::parse(
            "[server]\nmax_expiry_share = 1.5\nexpired_member_retention = \"soon\"\n\
             bootstrap_key_expires_in = \"0s\"\n",
            "test",
            dir,
        )
        .unwrap_err()
        .errors;
        let paths: Vec<String> = errors.iter().map(|e| e.path.to_string()).collect();
        for path in [
            "server.max_expiry_share",
            "server.expired_member_retention",
            "server.bootstrap_key_expires_in",
        ] {
            assert!(paths.iter().any(|p| p == path), "{path} not in {paths:?}");
        }
    }

    /// `[[domains]]` are validated with key paths; the rules they give are the ones used.
    #[test]
    fn domains_are_validated_with_key_paths() {
        let bad = r#"
[identity]
upn_suffix_rule = "guess"
[[domains]]
netbios = "CORP.X"
dns = "corp.example.test"
default = true
[[domains]]
netbios = "EMEA"
dns = "corp.example.test"
default = true
"#;
        let errors = Config::parse(bad, "t", Path::new(".")).unwrap_err().errors;
        let paths: Vec<String> = errors.iter().map(|e| e.path.to_string()).collect();
        for want in [
            "identity.upn_suffix_rule",
            "domains[0].netbios",
            "domains[1].dns",
            "domains[1].default",
        ] {
            assert!(paths.iter().any(|p| p == want), "{want} not in {paths:?}");
        }
        let good = r#"
[identity]
upn_suffix_rule = "listed"
[[domains]]
netbios = "CORP"
dns = "corp.example.test"
upn_suffixes = ["example.com"]
default = true
"#;
        let config = Config::parse(good, "t", Path::new(".")).unwrap();
        assert_eq!(
            config.identity.canonical("alice@EXAMPLE.COM"),
            "CORP\\alice"
        );
        assert_eq!(config.identity.canonical("alice"), "CORP\\alice");
        assert_eq!(
            config.identity.canonical("bob@other.test"),
            "bob@other.test"
        );
        // The embedded default says the seed's rule.
        let default = Config::embedded_default().unwrap();
        assert_eq!(
            default.identity.canonical("alice@corp.example.test"),
            "CORP\\alice"
        );
    }

    /// Two domains, each with its directory, and a data set over both.
    fn two_domains(partner_domain: &str, partner_base: &str, union_filter: &str) -> String {
        format!(
            r#"
[[domains]]
netbios = "CORP"
dns = "corp.example.test"
default = true
[[domains]]
netbios = "PARTNER"
dns = "partner.example.test"
[[directories]]
name = "corp"
url = "ldaps://127.0.0.1"
bind_dn = "CN=a"
bind_password_env = "P"
base_dn = "DC=corp,DC=example,DC=test"
domain = "CORP"
[[directories]]
name = "partner"
url = "ldaps://127.0.0.2"
bind_dn = "CN=a"
bind_password_env = "P"
base_dn = "{partner_base}"
{partner_domain}
[[data_sets]]
name = "Both"
columns = [{{ name = "user", key = true }}]
[data_sets.source]
type = "ldap"
directory = "corp"
base = "DC=corp,DC=example,DC=test"
filter = "(memberOf=CN=g,DC=corp,DC=example,DC=test)"
[[data_sets.source.mappings]]
column = "user"
attribute = "sAMAccountName"
[[data_sets.source.union]]
directory = "partner"
base = "{partner_base}"
scope = "one"
filter = "{union_filter}"
"#
        )
    }

    #[test]
    fn directories_say_their_domain_and_unions_need_one() {
        let good = two_domains(
            r#"domain = "partner""#,
            "OU=x,DC=partner,DC=example,DC=test",
            "(memberOf=CN=g,DC=partner,DC=example,DC=test)",
        );
        let config = parse(&good).unwrap();
        // Spelled as the domain is.
        assert_eq!(config.directories[1].domain.as_deref(), Some("PARTNER"));
        let Source::Ldap(source) = &config.data_sets[0].source else {
            panic!("not ldap");
        };
        assert_eq!(
            source.union,
            [LdapQuery {
                directory: "partner".into(),
                base: "OU=x,DC=partner,DC=example,DC=test".into(),
                scope: Scope::One,
                filter: "(memberOf=CN=g,DC=partner,DC=example,DC=test)".into(),
            }]
        );
        let paths = |toml: &str| -> Vec<String> {
            parse(toml)
                .unwrap_err()
                .errors
                .iter()
                .map(|e| e.path.to_string())
                .collect()
        };
        // A domain [[domains]] lacks; a base DN in another domain; a bad union filter.
        let errors = paths(&two_domains(
            r#"domain = "EMEA""#,
            "DC=partner,DC=example,DC=test",
            "memberOf=x",
        ));
        assert_eq!(
            errors,
            [
                "directories[1].domain",
                "data_sets[0].source.union[0].filter"
            ]
        );
        let errors = paths(&two_domains(
            r#"domain = "CORP""#,
            "DC=partner,DC=example,DC=test",
            "(x=y)",
        ));
        assert_eq!(errors, ["directories[1].base_dn"]);
        // A union over a directory that says no domain cannot tag its rows.
        let e = parse(&two_domains("", "DC=partner,DC=example,DC=test", "(x=y)")).unwrap_err();
        let errors: Vec<String> = e.errors.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(errors, ["data_sets[0].source.union[0].directory"], "{e}");
        assert!(e.to_string().contains("says no domain"), "{e}");
        // `union` belongs to ldap sources only.
        let e = parse(
            "[[data_sets]]\nname = \"a\"\ncolumns = [{ name = \"k\", key = true }]\n\
             source = { type = \"api\", union = [] }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("data_sets[0].source.union"), "{e}");
        // A union is pulled in full from each directory: nesting and DirSync are refused.
        for extra in ["nested = true", "incremental = true"] {
            let toml = good.replace(
                "filter = \"(memberOf=CN=g,DC=corp,DC=example,DC=test)\"\n",
                &format!("filter = \"(memberOf=CN=g,DC=corp,DC=example,DC=test)\"\n{extra}\n"),
            );
            assert_eq!(paths(&toml), ["data_sets[0].source.union"], "{extra}");
        }
    }

    #[test]
    fn key_paths_display() {
        let p = KeyPath::root()
            .key("data_sets")
            .index(1)
            .key("source")
            .key("filter");
        assert_eq!(p.to_string(), "data_sets[1].source.filter");
    }

    fn parse(toml: &str) -> Result<Config, ConfigErrors> {
        Config::parse(toml, "test.toml", Path::new("/tmp"))
    }

    #[test]
    fn a_plain_http_webhook_needs_allow_insecure() {
        let set = |extra: &str| {
            format!(
                "[[action_sets]]\nname = \"n\"\nactions = [{{ type = \"webhook\", \
                 url = \"http://127.0.0.1:9/h\"{extra} }}]\n"
            )
        };
        let e = parse(&set("")).unwrap_err().to_string();
        assert!(e.contains("action_sets[0].actions[0].url"), "{e}");
        assert!(e.contains("allow_insecure"), "{e}");
        let c = parse(&set(", allow_insecure = true")).unwrap();
        assert!(matches!(
            c.action_sets[0].actions[0],
            ActionConfig::Webhook {
                allow_insecure: true,
                ..
            }
        ));
        let e = parse(
            "[[action_sets]]\nname = \"n\"\nactions = [{ type = \"log\", allow_insecure = true }]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("action_sets[0].actions[0].allow_insecure"),
            "{e}"
        );
    }

    #[test]
    fn audit_retention_defaults_to_a_year_and_is_checked_with_its_key_path() {
        let c = parse("").unwrap();
        assert_eq!(c.server.audit_retention, Duration::from_secs(365 * 86_400));
        let c = parse("[server]\naudit_retention = \"30d\"\n").unwrap();
        assert_eq!(c.server.audit_retention, Duration::from_secs(30 * 86_400));
        for bad in ["1h", "soon"] {
            let e = parse(&format!("[server]\naudit_retention = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("server.audit_retention"), "{bad}: {e}");
        }
    }

    /// `[store] url`: a PostgreSQL store, its password from a file, TLS verified unless a
    /// loopback server is named plain; a password in the URL, a missing CA and a plain remote
    /// server are refused with their key paths.
    #[test]
    fn a_postgresql_store_is_validated_with_key_paths() {
        let dir = Path::new("/etc/warden");
        let c = Config::parse(
            "[store]\nurl = \"postgresql://warden@db1.corp:6432/warden\"\n\
             password_file = \"pg.secret\"\nca_file = \"ca.pem\"\n",
            "test",
            dir,
        )
        .unwrap();
        let pg = c.store.postgres.unwrap();
        assert_eq!(
            (
                pg.host.as_str(),
                pg.port,
                pg.user.as_str(),
                pg.dbname.as_str()
            ),
            ("db1.corp", 6432, "warden", "warden")
        );
        assert_eq!(pg.tls, UpstreamTls::Verify(dir.join("ca.pem")));
        assert_eq!(pg.leader_failover, Duration::from_secs(10));
        for (bad, path, words) in [
            (
                "url = \"postgresql://warden:hunter2@db1/w\"\npassword_env = \"P\"\nca_file = \"c\"",
                "store.url",
                "password_file",
            ),
            (
                "url = \"postgresql://warden@db1/w\"\npassword_env = \"P\"",
                "store.ca_file",
                "required",
            ),
            (
                "url = \"postgresql://warden@db1/w\"\npassword_env = \"P\"\nplain = true",
                "store.plain",
                "loopback",
            ),
            (
                "url = \"postgresql://warden@127.0.0.1/w\"\npassword = \"x\"\nplain = true",
                "store.password",
                "inline",
            ),
            (
                "url = \"mysql://w@h/d\"\npassword_env = \"P\"\nplain = true",
                "store.url",
                "postgresql://",
            ),
        ] {
            let errors = Config::parse(&format!("[store]\n{bad}\n"), "test", dir)
                .unwrap_err()
                .errors;
            assert!(
                errors
                    .iter()
                    .any(|e| e.path.to_string() == path && e.message.contains(words)),
                "{bad}: {errors:?}"
            );
            assert!(!format!("{errors:?}").contains("hunter2"), "{errors:?}");
        }
    }
}
