//! Raw configuration as written in TOML: plain serde structs that reject unknown keys.
//! Nothing here is checked beyond its TOML type; [`super::validate`] does the rest.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Option<String>,
    pub max_batch: Option<usize>,
    pub store_poll_interval: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub header_read_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub followed_action_queue: Option<usize>,
    pub anonymous_decisions: Option<bool>,
    pub bootstrap_key_file: Option<String>,
    pub bootstrap_key_expires_in: Option<String>,
    pub expired_member_retention: Option<String>,
    pub max_expiry_share: Option<f64>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub audit_retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub path: Option<String>,
    pub allow_readable: Option<bool>,
    pub url: Option<String>,
    pub password: Option<toml::Value>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub ca_file: Option<String>,
    pub plain: Option<bool>,
    pub connect_timeout: Option<String>,
    pub leader_failover: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub name: String,
    pub url: String,
    pub starttls: Option<bool>,
    pub ca_file: Option<String>,
    pub allow_insecure: Option<bool>,
    pub bind_dn: String,
    /// Present only to be rejected with a helpful message: secrets never sit in config.
    pub bind_password: Option<toml::Value>,
    pub bind_password_file: Option<String>,
    pub bind_password_env: Option<String>,
    pub base_dn: String,
    pub update_interval: Option<String>,
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub page_size: Option<u32>,
    /// The NetBIOS name of the `[[domains]]` entry this directory serves.
    pub domain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct List {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub list: String,
    pub directory: String,
    pub group_dn: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(default)]
    pub key: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSet {
    pub name: String,
    #[serde(default)]
    pub case_sensitive: bool,
    pub columns: Vec<Column>,
    pub source: Source,
}

/// One flat shape for every source type, so a key that belongs to another type gets a precise
/// error ("`filter` is only valid for type = \"ldap\"") rather than serde's generic one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: String,
    pub list: Option<String>,
    pub directory: Option<String>,
    pub base: Option<String>,
    pub scope: Option<String>,
    pub filter: Option<String>,
    pub mappings: Option<Vec<AttributeMapping>>,
    pub refresh_interval: Option<String>,
    pub notify: Option<bool>,
    pub max_shrink: Option<f64>,
    pub shrink_window: Option<String>,
    /// `ldap` only: follow nested membership of the `(memberOf=<group>)` in the filter
    /// (`true` or `"auto"`: the server's matching rule where it has one; `"in_chain"`,
    /// `"expand"`: that way only).
    pub nested: Option<Nesting>,
    /// `ldap` only: pull only the changes (DirSync) between full pulls.
    pub incremental: Option<bool>,
    pub full_refresh_interval: Option<String>,
    /// `ldap` only: at most this many change-notification connections for the groups of the
    /// chain (five groups each); the rest are polled.
    pub watch_connections: Option<u32>,
    pub path: Option<String>,
    /// `api` only: what a set no one has written yet is (`unknown`, the default, or `empty`).
    pub never_written: Option<String>,
    /// `ldap` only: further queries, on other directories, whose rows join the set's.
    pub union: Option<Vec<UnionQuery>>,
}

/// `[[data_sets.source.union]]`: one more LDAP query of a union data set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnionQuery {
    pub directory: String,
    pub base: String,
    pub scope: Option<String>,
    pub filter: String,
}

/// `nested = true | false | "auto" | "in_chain" | "expand"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Nesting {
    Flag(bool),
    Mode(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMapping {
    pub column: String,
    pub attribute: String,
    #[serde(rename = "match")]
    pub match_pattern: Option<String>,
    pub substitute: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub action: String,
    pub severity: String,
    pub followed_action: Option<String>,
    pub apply_to: Vec<String>,
    pub criteria: Vec<Criterion>,
    pub when_unknown: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    pub field: String,
    pub operation: String,
    pub data_set: String,
    #[serde(default)]
    pub search_in: Vec<String>,
    pub handle_unknown_values: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSet {
    pub name: String,
    pub actions: Vec<Action>,
    pub dedup_window: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub address: Option<String>,
    pub protocol: Option<String>,
    pub level: Option<String>,
    pub allow_insecure: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseRule {
    pub name: String,
    pub list: String,
    #[serde(default)]
    pub sources: Vec<String>,
    pub min_severity: Option<String>,
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
    pub expires_in: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Imperva {
    pub url: String,
    pub username: String,
    /// Present only to be rejected with a helpful message: secrets never sit in config.
    pub password: Option<toml::Value>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub ca_file: Option<String>,
    pub allow_insecure: Option<bool>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub data_sets: Vec<ImpervaDataSet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpervaDataSet {
    /// The warden data set pushed.
    pub data_set: String,
    /// Its name on the MX; the warden name when absent.
    pub name: Option<String>,
    /// Whether the MX data set (when warden creates it) compares keys case-sensitively; the
    /// warden data set's own setting when absent.
    pub case_sensitive: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub service: String,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub allow_plain: Option<bool>,
    pub upstream_ca_file: Option<String>,
    pub upstream_plain: Option<bool>,
    pub max_startup_bytes: Option<usize>,
    pub startup_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub idle_timeout: Option<String>,
    /// The NetBIOS name of the `[[domains]]` entry bare logins through this gate belong to.
    pub domain: Option<String>,
}

/// `[identity]`: how names are brought to one account.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub upn_suffix_rule: Option<String>,
    /// `refuse` (default) or `keep`: what a principal no rule or directory can place becomes.
    pub unresolvable: Option<String>,
}

/// `[[domains]]`: one domain the identity rules know.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    pub netbios: String,
    pub dns: String,
    pub upn_suffixes: Option<Vec<String>>,
    pub default: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
    pub dbname: Option<String>,
    pub user: String,
    /// Present only to be rejected with a helpful message: secrets never sit in config.
    pub password: Option<toml::Value>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub ca_file: Option<String>,
    pub plain: Option<bool>,
    pub connect_timeout: Option<String>,
    pub update_interval: Option<String>,
    /// The NetBIOS name of the `[[domains]]` entry this server's logins belong to.
    pub domain: Option<String>,
    #[serde(default)]
    pub roles: Vec<DatabaseRole>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseRole {
    pub list: String,
    pub role: String,
    #[serde(rename = "match")]
    pub match_pattern: Option<String>,
    pub substitute: Option<String>,
}

/// `[console]`: the analyst console served by `warden serve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    pub oidc: Option<ConsoleOidc>,
}

/// `[console.oidc]`: single sign-on through an OpenID Connect provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleOidc {
    pub issuer: String,
    pub client_id: String,
    /// Present only to be rejected with a helpful message: secrets never sit in config.
    pub client_secret: Option<toml::Value>,
    pub client_secret_file: Option<String>,
    pub client_secret_env: Option<String>,
    pub redirect_url: String,
    pub scopes: Option<Vec<String>>,
    pub group_claim: Option<String>,
    /// Provider group → warden scope (`decide`, `respond`, `admin`).
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, String>,
    pub require_mfa: Option<bool>,
    pub mfa_amr: Option<Vec<String>>,
    pub mfa_acr: Option<Vec<String>>,
    pub ca_file: Option<String>,
    pub allow_insecure: Option<bool>,
    pub timeout: Option<String>,
    pub login_timeout: Option<String>,
}
