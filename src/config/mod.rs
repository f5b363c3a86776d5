//! Configuration: the TOML model, validated in one step into a compiled runtime [`Config`].
//!
//! Parsing goes raw → validated. Each section has a file of its own (`server`, `gates`, …) with
//! its raw serde structs (which reject unknown keys), its validated type, its defaults and its
//! checks; the settings several sections share are checked once (`listener`, `outbound`). Each
//! section and each array element is deserialized on its own so that one bad entry does not hide
//! the next. [`Config::parse`] then checks references, compiles patterns and globs, parses
//! durations and rejects inline secrets, and returns either a `Config` or *every* problem found,
//! each with its key path (`data_sets[1].source.mappings[0].match`) and line.

mod check;
mod listener;
mod outbound;
mod read;
mod validate;

mod action_sets;
mod console;
mod data_sets;
mod databases;
mod decision_log;
mod directories;
mod events;
mod gates;
mod identity;
mod imperva;
mod lists;
mod mappings;
mod policies;
mod response_rules;
mod server;
mod store;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use action_sets::{ActionConfig, ActionSetConfig};
pub use console::{CONSOLE_SCOPES, DEFAULT_MFA_AMR, OidcConfig, SSO_CALLBACK_PATH};
pub use data_sets::{
    DEFAULT_FULL_REFRESH_INTERVAL, DEFAULT_WATCH_CONNECTIONS, DataSetConfig, LdapQuery, LdapSource,
    MAX_WATCH_CONNECTIONS, MemberField, Nesting, Scope, Source,
};
pub use databases::{DatabaseConfig, RoleMappingConfig};
pub use decision_log::DecisionLogConfig;
pub use directories::DirectoryConfig;
pub use events::{EventFormat, EventsConfig, SinkConfig, SinkTransport};
pub use gates::{ControlAccount, GateConfig, GateProtocol};
pub use imperva::{ImpervaConfig, ImpervaPush};
pub use listener::TlsFiles;
pub use lists::ListConfig;
pub use mappings::MappingConfig;
pub use outbound::UpstreamTls;
pub use response_rules::ResponseRuleConfig;
pub use server::{DEFAULT_FOLLOWED_ACTION_QUEUE, ServerConfig};
pub use store::{PostgresStoreConfig, StoreConfig};

use crate::base::identity::Identity;
use crate::model::policy::Policy;

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
    /// `[events]`: SIEM events and their sinks.
    pub events: EventsConfig,
    /// `[decision_log]`: which decisions are kept, where, for how long.
    pub decision_log: DecisionLogConfig,
}

impl Config {
    /// Where the bootstrap admin key goes: `server.bootstrap_key_file`, or next to the store,
    /// named after it (`warden.db` → `warden.db.bootstrap-admin.key`), so that stores sharing
    /// a directory, or a store deleted and made again, never meet another store's key file.
    pub fn bootstrap_key_file(&self) -> PathBuf {
        self.server
            .bootstrap_key_file
            .clone()
            .unwrap_or_else(|| self.beside_store(".bootstrap-admin.key"))
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

    /// Where `sink` queues events: its `queue_dir`, else `<store path>.events/<name>`.
    pub fn event_queue_dir(&self, sink: &SinkConfig) -> PathBuf {
        sink.queue_dir
            .clone()
            .unwrap_or_else(|| self.beside_store(".events").join(&sink.name))
    }

    /// Where the decision log is written: `[decision_log] dir`, else `<store path>.decisions`.
    pub fn decision_log_dir(&self) -> PathBuf {
        self.decision_log
            .dir
            .clone()
            .unwrap_or_else(|| self.beside_store(".decisions"))
    }

    fn beside_store(&self, suffix: &str) -> PathBuf {
        let mut name = self.store.path.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    }

    pub fn data_set(&self, name: &str) -> Option<&DataSetConfig> {
        self.data_sets.iter().find(|d| d.name == name)
    }

    pub fn directory(&self, name: &str) -> Option<&DirectoryConfig> {
        self.directories.iter().find(|d| d.name == name)
    }

    /// What differs between this running configuration and `next` that only a restart can
    /// apply: the listener, its TLS files, the connection caps and the store.
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
        check(
            now.max_connections_per_client != then.max_connections_per_client,
            "server",
            "max_connections_per_client",
        );
        check(self.store.path != next.store.path, "store", "path");
        check(self.store.postgres != next.store.postgres, "store", "url");
        // Sinks own queues and threads for the life of the process.
        check(self.events != next.events, "events", "sinks");
        check(
            self.decision_log != next.decision_log,
            "decision_log",
            "enabled",
        );
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
    use std::time::Duration;

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

    /// A case of `testdata/errors.toml`.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ErrorCase {
        name: String,
        config: String,
        #[serde(default)]
        errors: Vec<String>,
    }

    /// Every case of `testdata/errors.toml` reports exactly its errors, each as shown to a
    /// person (key path, line, message). On a difference it prints what every failing case
    /// reports now, ready to compare.
    #[test]
    fn errors_table() {
        #[derive(serde::Deserialize)]
        struct Table {
            case: Vec<ErrorCase>,
        }
        let table: Table = toml::from_str(include_str!("testdata/errors.toml")).unwrap();
        let mut differ = Vec::new();
        for case in &table.case {
            let shown: Vec<String> =
                match Config::parse(&case.config, "test", Path::new("/etc/warden")) {
                    Ok(_) => Vec::new(),
                    Err(e) => e.errors.iter().map(ToString::to_string).collect(),
                };
            if shown != case.errors {
                differ.push(format!(
                    "case {:?}\nerrors = {}\n",
                    case.name,
                    toml::Value::from(shown)
                ));
            }
        }
        assert!(
            differ.is_empty(),
            "{} of {} cases differ:\n{}",
            differ.len(),
            table.case.len(),
            differ.join("\n")
        );
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

    /// The connection limits: defaults (a tenth of `max_connections` per address), and the
    /// errors, each with its key path.
    #[test]
    fn connection_limits_default_and_are_checked_by_key_path() {
        let c = parse("").unwrap();
        assert_eq!(c.server.max_connections_per_client, 1000);
        assert_eq!(c.server.write_timeout, Duration::from_secs(10));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(10));
        let c = parse("[server]\nmax_connections = 5\n").unwrap();
        assert_eq!(c.server.max_connections_per_client, 1);
        let c = parse(
            "[server]\nmax_connections = 16\nmax_connections_per_client = 16\n\
             write_timeout = \"2s\"\nidle_timeout = \"1m\"\n",
        )
        .unwrap();
        assert_eq!(c.server.max_connections_per_client, 16);
        assert_eq!(c.server.write_timeout, Duration::from_secs(2));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
        for (bad, key) in [
            (
                "max_connections_per_client = 0",
                "server.max_connections_per_client",
            ),
            (
                "max_connections = 16\nmax_connections_per_client = 17",
                "server.max_connections_per_client",
            ),
            ("write_timeout = \"0s\"", "server.write_timeout"),
            ("idle_timeout = \"soon\"", "server.idle_timeout"),
        ] {
            let e = parse(&format!("[server]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{bad}: {e}");
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
                "url = \"postgresql://warden@db1/w\"\npassword_env = \"P\"\nca_file = \"c\"\n\
                 leader_failover = \"500ms\"",
                "store.leader_failover",
                "at least 1s",
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
