//! Raw → validated: deserialize each section and array element on its own, then check
//! everything that spans entries, collecting every problem with its key path and line.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::raw;
use super::{
    ActionConfig, ActionSetConfig, Config, ConfigError, DataSetConfig, DatabaseConfig,
    DirectoryConfig, GateConfig, ImpervaConfig, ImpervaPush, KeyPath, LdapQuery, LdapSource,
    ListConfig, MappingConfig, MemberField, PostgresStoreConfig, ResponseRuleConfig,
    RoleMappingConfig, Scope, Segment, ServerConfig, Source, StoreConfig, TlsFiles, UpstreamTls,
};
use super::{
    DEFAULT_FULL_REFRESH_INTERVAL, DEFAULT_WATCH_CONNECTIONS, MAX_WATCH_CONNECTIONS, Nesting,
};
use crate::base::identity::{Domain, Identity, SuffixRule, dns_of_base_dn};
use crate::base::secret::SecretSource;
use crate::base::time::parse_duration;
use crate::model::dataset::{Column, Schema};
use crate::model::pattern::{AttributeMapping, PatternError};
use crate::model::policy::{Criterion, Policy, ServiceScope, WhenUnknown};

mod oidc;

const DEFAULT_LISTEN: &str = "127.0.0.1:8470";
const DEFAULT_MAX_BATCH: usize = 10_000;
const DEFAULT_STORE_POLL: Duration = Duration::from_millis(50);
const DEFAULT_MAX_BODY: usize = 1 << 20;
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 86_400);
/// A retention shorter than a day would prune records before anyone reads them.
const MIN_AUDIT_RETENTION: Duration = Duration::from_secs(86_400);
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_BOOTSTRAP_KEY_EXPIRY: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_EXPIRED_MEMBER_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
const DEFAULT_MAX_EXPIRY_SHARE: f64 = 0.5;
const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_PAGE_SIZE: u32 = 500;
const MAX_PAGE_SIZE: u32 = 1000;
const DEFAULT_MAX_SHRINK: f64 = 0.5;
/// Removals add up over this window before the shrink guard forgets them.
const DEFAULT_SHRINK_WINDOW: Duration = Duration::from_secs(3600);

const SECTIONS: &str = "server, store, identity, domains, directories, lists, mappings, \
                        data_sets, policies, action_sets, response_rules, imperva, gates, databases, \
                        console";

/// Collects errors; maps key paths to lines through the spanned document.
struct Ctx<'s> {
    source: &'s str,
    doc: Option<Spanned<DeTable<'s>>>,
    base_dir: &'s Path,
    errors: Vec<ConfigError>,
}

impl<'s> Ctx<'s> {
    fn err(&mut self, path: KeyPath, message: impl Into<String>) {
        let line = self.line_of(&path);
        self.errors.push(ConfigError {
            path,
            line,
            message: message.into(),
        });
    }

    fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.source.len());
        self.source.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The line of the deepest value along `path` that exists in the document.
    fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut span = doc.span();
        let mut value: Option<&DeValue<'_>> = None;
        let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
        for seg in path.segments() {
            let next = match (seg, table, value) {
                (Segment::Key(k), Some(t), _) => t
                    .iter()
                    .find(|(key, _)| key.get_ref() == k)
                    .map(|(key, v)| (key.span(), v)),
                (Segment::Index(i), _, Some(DeValue::Array(a))) => {
                    a.into_iter().nth(*i).map(|v| (v.span(), v))
                }
                _ => None,
            };
            let Some((s, v)) = next else { break };
            span = s;
            value = Some(v.get_ref());
            table = match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        Some(self.line_at(span.start))
    }

    fn path_buf(&self, text: &str) -> PathBuf {
        let p = Path::new(text);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn duration(&mut self, path: KeyPath, text: Option<&str>, default: Duration) -> Duration {
        match text.map(parse_duration) {
            None => default,
            Some(Ok(d)) if d.is_zero() => {
                self.err(path, "must be longer than zero");
                default
            }
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(path, e);
                default
            }
        }
    }

    /// Checks that `names` are unique and non-empty; `what` names the section.
    fn unique_names<'a>(
        &mut self,
        section: &str,
        names: impl Iterator<Item = (usize, &'a str)>,
    ) -> HashSet<String> {
        let mut seen = HashSet::new();
        for (i, name) in names {
            let path = KeyPath::root().key(section).index(i).key("name");
            if name.trim().is_empty() {
                self.err(path, "must not be empty");
            } else if !seen.insert(name.to_string()) {
                self.err(path, format!("{name:?} is defined twice"));
            }
        }
        seen
    }
}

/// How many unknown keys one table may report before we stop retrying it.
const MAX_UNKNOWN_KEYS: usize = 32;

/// Deserializes one value, recording its errors (with the inner key path) on failure.
///
/// serde stops at the first problem in a struct. An unknown key is the common one and says
/// nothing about the rest of the table, so it is recorded, removed, and the value deserialized
/// again: a typo does not hide a bad value beside it.
fn de_value<T: DeserializeOwned>(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    mut value: Spanned<DeValue<'_>>,
) -> Option<T> {
    for _ in 0..MAX_UNKNOWN_KEYS {
        let attempt = value.clone();
        let e = match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(attempt)) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let mut inner_path: Vec<Segment> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => {
                    Some(Segment::Key(variant.clone()))
                }
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let message = e.inner().message().trim().to_string();
        let unknown = unknown_key(&message).map(str::to_string);
        // serde_path_to_error's path already ends with the unknown key; the table holding it
        // is one level up.
        if let (Some(key), Some(Segment::Key(last))) = (&unknown, inner_path.last())
            && key == last
        {
            inner_path.pop();
        }
        let mut full = path.clone();
        for seg in &inner_path {
            full = match seg {
                Segment::Key(k) => full.key(k),
                Segment::Index(i) => full.index(*i),
            };
        }
        let inner = e.into_inner();
        if let Some(key) = &unknown {
            full = full.key(key);
        }
        let line = inner.span().map(|s| ctx.line_at(s.start));
        ctx.errors.push(ConfigError {
            path: full.clone(),
            line: line.or_else(|| ctx.line_of(&full)),
            message,
        });
        match unknown {
            Some(key) if remove_key(value.get_mut(), &inner_path, &key) => continue,
            _ => return None,
        }
    }
    None
}

/// The key named by serde's "unknown field `x`, expected …" message.
fn unknown_key(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(key, _)| key)
}

/// Removes `key` from the table at `path` inside `value`; false if there is no such key.
fn remove_key(value: &mut DeValue<'_>, path: &[Segment], key: &str) -> bool {
    let mut current = value;
    for seg in path {
        let next = match (seg, current) {
            (Segment::Key(k), DeValue::Table(t)) => t.get_mut(k.as_str()),
            (Segment::Index(i), DeValue::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => current = v.get_mut(),
            None => return false,
        }
    }
    match current {
        DeValue::Table(t) => t.remove(key).is_some(),
        _ => false,
    }
}

/// Deserializes each element of an array section on its own.
fn de_array<T: DeserializeOwned>(
    ctx: &mut Ctx<'_>,
    section: &str,
    value: Spanned<DeValue<'_>>,
) -> Vec<(usize, T)> {
    let path = KeyPath::root().key(section);
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| de_value(ctx, &path.index(i), item).map(|v| (i, v)))
            .collect(),
        other => {
            ctx.err(
                path,
                format!(
                    "expected an array of tables ([[{section}]]), found a {}",
                    other.type_str()
                ),
            );
            Vec::new()
        }
    }
}

#[derive(Default)]
struct RawConfig {
    server: raw::Server,
    store: raw::Store,
    identity: raw::Identity,
    domains: Vec<(usize, raw::Domain)>,
    directories: Vec<(usize, raw::Directory)>,
    lists: Vec<(usize, raw::List)>,
    mappings: Vec<(usize, raw::Mapping)>,
    data_sets: Vec<(usize, raw::DataSet)>,
    policies: Vec<(usize, raw::Policy)>,
    action_sets: Vec<(usize, raw::ActionSet)>,
    response_rules: Vec<(usize, raw::ResponseRule)>,
    imperva: Option<raw::Imperva>,
    gates: Vec<(usize, raw::Gate)>,
    databases: Vec<(usize, raw::Database)>,
    console: raw::Console,
}

pub(super) fn parse(source: &str, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut ctx = Ctx {
        source,
        doc: None,
        base_dir,
        errors: Vec::new(),
    };
    let (doc, syntax) = DeTable::parse_recoverable(source);
    if !syntax.is_empty() {
        for e in syntax {
            let line = e.span().map(|s| ctx.line_at(s.start));
            ctx.errors.push(ConfigError {
                path: KeyPath::root(),
                line,
                message: format!("TOML syntax: {}", e.message().trim()),
            });
        }
        return Err(ctx.errors);
    }
    ctx.doc = DeTable::parse(source).ok();
    let raw = read_sections(&mut ctx, doc.into_inner());
    let config = validate(&mut ctx, raw);
    if ctx.errors.is_empty() {
        Ok(config)
    } else {
        let mut errors = ctx.errors;
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(errors)
    }
}

fn read_sections(ctx: &mut Ctx<'_>, doc: DeTable<'_>) -> RawConfig {
    let mut raw = RawConfig::default();
    for (key, value) in doc {
        let name = key.get_ref().as_ref();
        let path = KeyPath::root().key(name);
        match name {
            "server" => raw.server = de_value(ctx, &path, value).unwrap_or_default(),
            "store" => raw.store = de_value(ctx, &path, value).unwrap_or_default(),
            "identity" => raw.identity = de_value(ctx, &path, value).unwrap_or_default(),
            "domains" => raw.domains = de_array(ctx, name, value),
            "directories" => raw.directories = de_array(ctx, name, value),
            "lists" => raw.lists = de_array(ctx, name, value),
            "mappings" => raw.mappings = de_array(ctx, name, value),
            "data_sets" => raw.data_sets = de_array(ctx, name, value),
            "policies" => raw.policies = de_array(ctx, name, value),
            "action_sets" => raw.action_sets = de_array(ctx, name, value),
            "response_rules" => raw.response_rules = de_array(ctx, name, value),
            "imperva" => raw.imperva = de_value(ctx, &path, value),
            "gates" => raw.gates = de_array(ctx, name, value),
            "databases" => raw.databases = de_array(ctx, name, value),
            "console" => raw.console = de_value(ctx, &path, value).unwrap_or_default(),
            other => {
                let line = ctx.line_at(key.span().start);
                ctx.errors.push(ConfigError {
                    path,
                    line: Some(line),
                    message: format!("unknown section {other:?}; expected one of {SECTIONS}"),
                });
            }
        }
    }
    raw
}

fn validate(ctx: &mut Ctx<'_>, raw: RawConfig) -> Config {
    let server = server(ctx, raw.server);
    let store = store(ctx, raw.store);
    let keep_unresolvable = unresolvable(ctx, raw.identity.unresolvable.as_deref());
    let identity = identity(ctx, raw.identity, raw.domains);
    let directory_names = ctx.unique_names(
        "directories",
        raw.directories.iter().map(|(i, d)| (*i, d.name.as_str())),
    );
    let list_names = ctx.unique_names(
        "lists",
        raw.lists.iter().map(|(i, l)| (*i, l.name.as_str())),
    );
    let data_set_names = ctx.unique_names(
        "data_sets",
        raw.data_sets.iter().map(|(i, d)| (*i, d.name.as_str())),
    );
    ctx.unique_names(
        "policies",
        raw.policies.iter().map(|(i, p)| (*i, p.name.as_str())),
    );
    ctx.unique_names(
        "response_rules",
        raw.response_rules
            .iter()
            .map(|(i, r)| (*i, r.name.as_str())),
    );
    let action_set_names = ctx.unique_names(
        "action_sets",
        raw.action_sets.iter().map(|(i, a)| (*i, a.name.as_str())),
    );
    let directories_with_domain: HashSet<String> = raw
        .directories
        .iter()
        .filter(|(_, d)| d.domain.is_some())
        .map(|(_, d)| d.name.clone())
        .collect();
    let names = Names {
        directories: &directory_names,
        directories_with_domain: &directories_with_domain,
        lists: &list_names,
        data_sets: &data_set_names,
        action_sets: &action_set_names,
    };

    let directories = raw
        .directories
        .into_iter()
        .filter_map(|(i, d)| {
            directory(
                ctx,
                &identity,
                KeyPath::root().key("directories").index(i),
                d,
            )
        })
        .collect();
    let lists = raw
        .lists
        .into_iter()
        .map(|(_, l)| ListConfig {
            name: l.name,
            description: l.description.unwrap_or_default(),
        })
        .collect();
    let mappings = raw
        .mappings
        .into_iter()
        .map(|(i, m)| mapping(ctx, &names, KeyPath::root().key("mappings").index(i), m))
        .collect();
    let data_sets: Vec<DataSetConfig> = raw
        .data_sets
        .into_iter()
        .filter_map(|(i, d)| data_set(ctx, &names, KeyPath::root().key("data_sets").index(i), d))
        .collect();
    let policies: Vec<Policy> = raw
        .policies
        .into_iter()
        .filter_map(|(i, p)| {
            policy(
                ctx,
                &names,
                &data_sets,
                KeyPath::root().key("policies").index(i),
                p,
            )
        })
        .collect();
    let action_sets = raw
        .action_sets
        .into_iter()
        .map(|(i, a)| action_set(ctx, KeyPath::root().key("action_sets").index(i), a))
        .collect();
    let response_rules = raw
        .response_rules
        .into_iter()
        .filter_map(|(i, r)| {
            response_rule(
                ctx,
                &names,
                KeyPath::root().key("response_rules").index(i),
                r,
            )
        })
        .collect();
    let imperva = raw
        .imperva
        .and_then(|i| imperva(ctx, &names, &data_sets, KeyPath::root().key("imperva"), i));
    ctx.unique_names(
        "gates",
        raw.gates.iter().map(|(i, g)| (*i, g.name.as_str())),
    );
    let gates: Vec<GateConfig> = raw
        .gates
        .into_iter()
        .filter_map(|(i, g)| gate(ctx, KeyPath::root().key("gates").index(i), g))
        .collect();
    for (i, g) in gates.iter().enumerate() {
        if server.listen == g.listen || gates[..i].iter().any(|o| o.listen == g.listen) {
            ctx.err(
                KeyPath::root().key("gates").index(i).key("listen"),
                format!("{} is already used by another listener", g.listen),
            );
        }
    }
    ctx.unique_names(
        "databases",
        raw.databases.iter().map(|(i, d)| (*i, d.name.as_str())),
    );
    let mut databases: Vec<DatabaseConfig> = raw
        .databases
        .into_iter()
        .filter_map(|(i, d)| database(ctx, &names, KeyPath::root().key("databases").index(i), d))
        .collect();
    let mut gates = gates;
    logins_domains(ctx, &identity, &policies, &mut gates, &mut databases);
    let console_oidc = raw
        .console
        .oidc
        .and_then(|o| oidc::console_oidc(ctx, KeyPath::root().key("console").key("oidc"), o))
        .map(Arc::new);
    Config {
        console_oidc,
        gates,
        databases,
        server,
        store,
        identity: Arc::new(identity),
        keep_unresolvable,
        directories,
        lists,
        mappings,
        data_sets,
        policies,
        action_sets,
        response_rules,
        imperva,
    }
}

fn imperva(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    data_sets: &[DataSetConfig],
    path: KeyPath,
    i: raw::Imperva,
) -> Option<ImpervaConfig> {
    let allow_insecure = i.allow_insecure.unwrap_or(false);
    let url = i.url.trim_end_matches('/').to_owned();
    if url.starts_with("http://") {
        if !allow_insecure {
            ctx.err(
                path.key("url"),
                "plain http would send the MX password in clear; use https:// (set \
                 allow_insecure = true only for a test MX on loopback)",
            );
        }
    } else if !url.starts_with("https://") || url.len() <= "https://".len() {
        ctx.err(
            path.key("url"),
            "must be an https:// URL such as https://mx.example:8083",
        );
    }
    if i.username.is_empty() || i.username.contains(':') {
        ctx.err(path.key("username"), "must be non-empty and contain no ':'");
    }
    let password = secret(
        ctx,
        &path,
        "password",
        i.password.is_some(),
        i.password_file,
        i.password_env,
    );
    let timeout = ctx.duration(
        path.key("timeout"),
        i.timeout.as_deref(),
        Duration::from_secs(10),
    );
    let mut pushes: Vec<ImpervaPush> = Vec::new();
    for (n, d) in i.data_sets.into_iter().enumerate() {
        let entry = path.key("data_sets").index(n);
        if let Some(push) = imperva_push(ctx, names, data_sets, &pushes, entry, d) {
            pushes.push(push);
        }
    }
    Some(ImpervaConfig {
        url,
        username: i.username,
        password: password?,
        ca_file: i.ca_file.map(|f| ctx.path_buf(&f)),
        allow_insecure,
        timeout,
        pushes,
    })
}

/// One `[[imperva.data_sets]]` entry: an existing warden data set, pushed to an MX data set
/// no other entry pushes to, compared no less strictly than warden compares it.
fn imperva_push(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    data_sets: &[DataSetConfig],
    earlier: &[ImpervaPush],
    path: KeyPath,
    d: raw::ImpervaDataSet,
) -> Option<ImpervaPush> {
    reference(
        ctx,
        path.key("data_set"),
        names.data_sets,
        "data set",
        "data_sets",
        &d.data_set,
    );
    // A data set that is named but failed validation has its own error already.
    let set = data_sets.iter().find(|s| s.name == d.data_set)?;
    let mx_name = d.name.unwrap_or_else(|| d.data_set.clone());
    if mx_name.is_empty() {
        ctx.err(path.key("name"), "must not be empty");
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

fn response_rule(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    path: KeyPath,
    r: raw::ResponseRule,
) -> Option<ResponseRuleConfig> {
    reference(ctx, path.key("list"), names.lists, "list", "lists", &r.list);
    let globs = |ctx: &mut Ctx<'_>, path: KeyPath, patterns: &[String]| {
        ServiceScope::new(patterns)
            .map_err(|e| ctx.err(path, e.to_string()))
            .ok()
    };
    let sources = if r.sources.is_empty() {
        None
    } else {
        Some(globs(ctx, path.key("sources"), &r.sources)?)
    };
    let mut fields = Vec::new();
    for (name, want) in &r.fields {
        if let Some(scope) = globs(
            ctx,
            path.key("fields").key(name),
            std::slice::from_ref(want),
        ) {
            fields.push((name.clone(), scope));
        }
    }
    let min_severity = match &r.min_severity {
        Some(text) => Some(parse_word(ctx, path.key("min_severity"), text)?),
        None => None,
    };
    let expires_in = r
        .expires_in
        .as_deref()
        .map(|text| ctx.duration(path.key("expires_in"), Some(text), Duration::ZERO));
    Some(ResponseRuleConfig {
        name: r.name,
        list: r.list,
        sources,
        min_severity,
        fields,
        expires_in,
        reason: r.reason,
    })
}

struct Names<'a> {
    directories: &'a HashSet<String>,
    /// Directories that say which domain they serve (`domain = …`).
    directories_with_domain: &'a HashSet<String>,
    lists: &'a HashSet<String>,
    data_sets: &'a HashSet<String>,
    action_sets: &'a HashSet<String>,
}

fn reference(
    ctx: &mut Ctx<'_>,
    path: KeyPath,
    known: &HashSet<String>,
    kind: &str,
    section: &str,
    name: &str,
) {
    if !known.contains(name) {
        let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
        names.sort_unstable();
        let hint = if names.is_empty() {
            format!("no {kind} is defined in [[{section}]]")
        } else {
            format!("defined: {}", names.join(", "))
        };
        ctx.err(
            path,
            format!("names {kind} {name:?}, which does not exist ({hint})"),
        );
    }
}

fn server(ctx: &mut Ctx<'_>, raw: raw::Server) -> ServerConfig {
    let path = KeyPath::root().key("server");
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|e| {
        ctx.err(
            path.key("listen"),
            format!("{listen_text:?} is not an address:port ({e}); e.g. \"127.0.0.1:8470\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 8470))
    });
    let max_batch = raw.max_batch.unwrap_or(DEFAULT_MAX_BATCH);
    if max_batch == 0 {
        ctx.err(path.key("max_batch"), "must be at least 1");
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body_bytes == 0 {
        ctx.err(path.key("max_body_bytes"), "must be at least 1");
    }
    let followed_action_queue = raw
        .followed_action_queue
        .unwrap_or(super::DEFAULT_FOLLOWED_ACTION_QUEUE);
    if followed_action_queue == 0 {
        ctx.err(path.key("followed_action_queue"), "must be at least 1");
    }
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        ctx.err(path.key("max_connections"), "must be at least 1");
    }
    let tls = match (raw.tls_cert_file, raw.tls_key_file) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert_file: ctx.path_buf(&cert),
            key_file: ctx.path_buf(&key),
        }),
        (None, None) => None,
        (Some(_), None) => {
            ctx.err(path.key("tls_key_file"), "is required with tls_cert_file");
            None
        }
        (None, Some(_)) => {
            ctx.err(path.key("tls_cert_file"), "is required with tls_key_file");
            None
        }
    };
    let audit_retention = ctx.duration(
        path.key("audit_retention"),
        raw.audit_retention.as_deref(),
        DEFAULT_AUDIT_RETENTION,
    );
    if audit_retention < MIN_AUDIT_RETENTION {
        ctx.err(
            path.key("audit_retention"),
            "must be at least 1d; audit records are pruned once older than this",
        );
    }
    let bootstrap_key_file = raw.bootstrap_key_file.map(|p| ctx.path_buf(&p));
    let max_expiry_share = raw.max_expiry_share.unwrap_or(DEFAULT_MAX_EXPIRY_SHARE);
    if !(max_expiry_share > 0.0 && max_expiry_share <= 1.0) {
        ctx.err(
            path.key("max_expiry_share"),
            format!("{max_expiry_share} is not a share: give a number above 0 and at most 1"),
        );
    }
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
        max_expiry_share: if max_expiry_share > 0.0 && max_expiry_share <= 1.0 {
            max_expiry_share
        } else {
            DEFAULT_MAX_EXPIRY_SHARE
        },
        tls,
        audit_retention,
    }
}

const DEFAULT_GATE_MAX_STARTUP: usize = 10 * 1024;
const DEFAULT_GATE_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_GATE_MAX_CONNECTIONS: usize = 1000;
const DEFAULT_GATE_MAX_PER_CLIENT: usize = 100;

/// Whether `host` names this machine: plain TCP to the upstream is only allowed there.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Splits `host:port` (`[v6]:port` too) into its parts.
fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    Some((host.to_string(), port))
}

/// One `[[gates]]` entry.
fn gate(ctx: &mut Ctx<'_>, path: KeyPath, g: raw::Gate) -> Option<GateConfig> {
    let errors = ctx.errors.len();
    let listen = g.listen.parse::<SocketAddr>().map_err(|e| {
        ctx.err(
            path.key("listen"),
            format!(
                "{:?} is not an address:port ({e}); e.g. \"127.0.0.1:6432\"",
                g.listen
            ),
        )
    });
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
    let tls = match (g.tls_cert_file, g.tls_key_file) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert_file: ctx.path_buf(&cert),
            key_file: ctx.path_buf(&key),
        }),
        (None, None) => None,
        (Some(_), None) => {
            ctx.err(path.key("tls_key_file"), "is required with tls_cert_file");
            None
        }
        (None, Some(_)) => {
            ctx.err(path.key("tls_cert_file"), "is required with tls_key_file");
            None
        }
    };
    let allow_plain = g.allow_plain.unwrap_or(false);
    if tls.is_none() && !allow_plain && ctx.errors.len() == errors {
        ctx.err(
            path.key("tls_cert_file"),
            "a gate needs a certificate (tls_cert_file, tls_key_file), or allow_plain = true \
             to accept clients without TLS",
        );
    }
    let upstream_tls = match (g.upstream_ca_file, g.upstream_plain.unwrap_or(false)) {
        (Some(ca), false) => Some(UpstreamTls::Verify(ctx.path_buf(&ca))),
        (None, true) => {
            if let Some((host, _)) = &upstream
                && !is_loopback_host(host)
            {
                ctx.err(
                    path.key("upstream_plain"),
                    format!(
                        "is only allowed for a loopback upstream, not {host:?}: set \
                         upstream_ca_file to verify the server's TLS"
                    ),
                );
            }
            Some(UpstreamTls::Plain)
        }
        (Some(_), true) => {
            ctx.err(
                path.key("upstream_plain"),
                "cannot be true with upstream_ca_file",
            );
            None
        }
        (None, false) => {
            ctx.err(
                path.key("upstream_ca_file"),
                "is required (the CA that signed the server's certificate), or \
                 upstream_plain = true for a loopback server without TLS",
            );
            None
        }
    };
    let positive = |ctx: &mut Ctx<'_>, key: &str, v: Option<usize>, default: usize| {
        let v = v.unwrap_or(default);
        if v == 0 {
            ctx.err(path.key(key), "must be at least 1");
        }
        v
    };
    let max_startup_bytes = positive(
        ctx,
        "max_startup_bytes",
        g.max_startup_bytes,
        DEFAULT_GATE_MAX_STARTUP,
    );
    let max_connections = positive(
        ctx,
        "max_connections",
        g.max_connections,
        DEFAULT_GATE_MAX_CONNECTIONS,
    );
    let max_connections_per_client = positive(
        ctx,
        "max_connections_per_client",
        g.max_connections_per_client,
        DEFAULT_GATE_MAX_PER_CLIENT,
    );
    let startup_timeout = ctx.duration(
        path.key("startup_timeout"),
        g.startup_timeout.as_deref(),
        DEFAULT_GATE_STARTUP_TIMEOUT,
    );
    let idle_timeout = g
        .idle_timeout
        .as_deref()
        .map(|t| ctx.duration(path.key("idle_timeout"), Some(t), Duration::MAX));
    let ((upstream_host, upstream_port), upstream_tls, listen) =
        (upstream?, upstream_tls?, listen.ok()?);
    Some(GateConfig {
        domain: g.domain,
        name: g.name,
        listen,
        upstream: g.upstream,
        upstream_host,
        upstream_port,
        service: g.service,
        tls,
        allow_plain,
        upstream_tls,
        max_startup_bytes,
        startup_timeout,
        max_connections,
        max_connections_per_client,
        idle_timeout,
    })
}

const DEFAULT_DATABASE_PORT: u16 = 5432;

/// How long a leader may be gone before another replica takes its jobs over.
const DEFAULT_LEADER_FAILOVER: Duration = Duration::from_secs(10);

/// `[store]`: a file path (SQLite), or a PostgreSQL `url` with its password from a file or an
/// environment variable and TLS verified against `ca_file` (or `plain` on loopback).
fn store(ctx: &mut Ctx<'_>, s: raw::Store) -> StoreConfig {
    let path = KeyPath::root().key("store");
    let postgres = s.url.map(|url| {
        let password = secret(
            ctx,
            &path,
            "password",
            s.password.is_some(),
            s.password_file,
            s.password_env,
        );
        let parsed = parse_postgres_url(&url);
        if let Err(e) = &parsed {
            ctx.err(path.key("url"), e.clone());
        }
        let tls = match (s.ca_file, s.plain.unwrap_or(false)) {
            (Some(ca), false) => Some(UpstreamTls::Verify(ctx.path_buf(&ca))),
            (None, true) => {
                if let Ok((host, ..)) = &parsed
                    && !is_loopback_host(host)
                {
                    ctx.err(
                        path.key("plain"),
                        format!(
                            "is only allowed for a loopback server, not {host:?}: set ca_file to \
                             verify the server's TLS"
                        ),
                    );
                }
                Some(UpstreamTls::Plain)
            }
            (Some(_), true) => {
                ctx.err(path.key("plain"), "cannot be true with ca_file");
                None
            }
            (None, false) => {
                ctx.err(
                    path.key("ca_file"),
                    "is required with url (the CA that signed the server's certificate), or \
                     plain = true for a loopback server without TLS",
                );
                None
            }
        };
        let connect_timeout = ctx.duration(
            path.key("connect_timeout"),
            s.connect_timeout.as_deref(),
            Duration::from_secs(5),
        );
        let leader_failover = ctx.duration(
            path.key("leader_failover"),
            s.leader_failover.as_deref(),
            DEFAULT_LEADER_FAILOVER,
        );
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
    });
    StoreConfig {
        path: ctx.path_buf(s.path.as_deref().unwrap_or("warden.db")),
        allow_readable: s.allow_readable.unwrap_or(false),
        postgres: postgres.flatten(),
    }
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
        None => (authority, DEFAULT_DATABASE_PORT),
    };
    if user.is_empty() || host.is_empty() {
        return Err(form.to_owned());
    }
    Ok((host.to_owned(), port, user.to_owned(), dbname.to_owned()))
}

/// One `[[databases]]` entry and its `[[databases.roles]]`.
fn database(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    path: KeyPath,
    d: raw::Database,
) -> Option<DatabaseConfig> {
    let errors = ctx.errors.len();
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
    let password = secret(
        ctx,
        &path,
        "password",
        d.password.is_some(),
        d.password_file,
        d.password_env,
    );
    let tls = match (d.ca_file, d.plain.unwrap_or(false)) {
        (Some(ca), false) => Some(UpstreamTls::Verify(ctx.path_buf(&ca))),
        (None, true) => {
            if !is_loopback_host(&d.host) {
                ctx.err(
                    path.key("plain"),
                    format!(
                        "is only allowed for a loopback server, not {:?}: set ca_file to verify \
                         the server's TLS",
                        d.host
                    ),
                );
            }
            Some(UpstreamTls::Plain)
        }
        (Some(_), true) => {
            ctx.err(path.key("plain"), "cannot be true with ca_file");
            None
        }
        (None, false) => {
            ctx.err(
                path.key("ca_file"),
                "is required (the CA that signed the server's certificate), or plain = true \
                 for a loopback server without TLS",
            );
            None
        }
    };
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
    if d.roles.is_empty() {
        ctx.err(
            path.key("roles"),
            "missing `[[databases.roles]]`: at least one list → role mapping",
        );
    }
    let mut roles = Vec::new();
    for (i, r) in d.roles.into_iter().enumerate() {
        let rpath = path.key("roles").index(i);
        reference(
            ctx,
            rpath.key("list"),
            names.lists,
            "list",
            "lists",
            &r.list,
        );
        if r.role.is_empty() || r.role.len() > 63 || r.role.contains('\0') {
            ctx.err(
                rpath.key("role"),
                "must be a PostgreSQL role name (1 to 63 bytes)",
            );
        }
        if roles.iter().any(|o: &RoleMappingConfig| o.role == r.role) {
            ctx.err(
                rpath.key("role"),
                format!("{:?} is already mapped on this database", r.role),
            );
        }
        if r.substitute.is_some() && r.match_pattern.is_none() {
            ctx.err(
                rpath.key("substitute"),
                "a substitute needs a `match` pattern to take groups from",
            );
            continue;
        }
        match AttributeMapping::new(
            "role",
            "principal",
            r.match_pattern.as_deref(),
            r.substitute.as_deref(),
        ) {
            Ok(member) => roles.push(RoleMappingConfig {
                list: r.list,
                role: r.role,
                member,
            }),
            Err(e) => {
                let key = match e {
                    PatternError::Template { .. } | PatternError::UnknownGroup { .. } => {
                        "substitute"
                    }
                    _ => "match",
                };
                ctx.err(rpath.key(key), e.to_string());
            }
        }
    }
    if ctx.errors.len() != errors {
        return None;
    }
    Some(DatabaseConfig {
        domain: d.domain,
        name: d.name,
        host: d.host,
        port: d.port.unwrap_or(DEFAULT_DATABASE_PORT),
        dbname: d.dbname.unwrap_or_else(|| "postgres".to_owned()),
        user: d.user,
        password: password?,
        tls: tls?,
        connect_timeout,
        update_interval,
        roles,
    })
}

/// Resolves `<name>` / `<name>_file` / `<name>_env` into a source, rejecting inline secrets.
fn secret(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    name: &str,
    inline: bool,
    file: Option<String>,
    env: Option<String>,
) -> Option<SecretSource> {
    if inline {
        ctx.err(
            path.key(name),
            format!(
                "inline secrets are not allowed; put the secret in a file ({name}_file = \"/path\", \
                 readable only by warden) or an environment variable ({name}_env = \"VAR\")"
            ),
        );
        return None;
    }
    match (file, env) {
        (Some(f), None) => Some(SecretSource::File(ctx.path_buf(&f))),
        (None, Some(e)) if !e.is_empty() => Some(SecretSource::Env(e)),
        (None, Some(_)) => {
            ctx.err(
                path.key(&format!("{name}_env")),
                "must name an environment variable",
            );
            None
        }
        (Some(_), Some(_)) => {
            ctx.err(
                path.key(&format!("{name}_file")),
                format!("set only one of {name}_file and {name}_env"),
            );
            None
        }
        (None, None) => {
            ctx.err(
                path.clone(),
                format!("missing {name}_file or {name}_env (where to read the {name} from)"),
            );
            None
        }
    }
}

fn directory(
    ctx: &mut Ctx<'_>,
    identity: &Identity,
    path: KeyPath,
    d: raw::Directory,
) -> Option<DirectoryConfig> {
    let starttls = d.starttls.unwrap_or(false);
    let allow_insecure = d.allow_insecure.unwrap_or(false);
    let url = d.url.trim().to_string();
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
    let bind_password = secret(
        ctx,
        &path,
        "bind_password",
        d.bind_password.is_some(),
        d.bind_password_file,
        d.bind_password_env,
    )?;
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

/// A directory's `domain`: a `[[domains]]` entry (spelled as configured there) whose DNS name
/// is the one the base DN's `DC=` labels spell, when they spell one.
fn served_domain(
    ctx: &mut Ctx<'_>,
    identity: &Identity,
    path: &KeyPath,
    name: &str,
    base_dn: &str,
) -> Option<String> {
    let Some(domain) = identity
        .domains()
        .iter()
        .find(|d| d.netbios.eq_ignore_ascii_case(name))
    else {
        let defined: Vec<&str> = identity
            .domains()
            .iter()
            .map(|d| d.netbios.as_str())
            .collect();
        let hint = if defined.is_empty() {
            format!(
                "no domain is defined: add [[domains]] with netbios = {name:?} and its dns name"
            )
        } else {
            format!("defined: {}", defined.join(", "))
        };
        ctx.err(
            path.key("domain"),
            format!("names domain {name:?}, which is not in [[domains]] ({hint})"),
        );
        return None;
    };
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

/// The domain the bare logins of each gate and agentless database belong to: its `domain`
/// (a `[[domains]]` entry), else the default domain. A gate with neither, in front of a
/// service a policy on `db_user` applies to, is refused: its bare logins (`alice`) would be
/// compared as names of no domain and match no listed account (`CORP\alice`).
fn logins_domains(
    ctx: &mut Ctx<'_>,
    identity: &Identity,
    policies: &[Policy],
    gates: &mut [GateConfig],
    databases: &mut [DatabaseConfig],
) {
    let default = identity.default_domain().map(|d| d.netbios.clone());
    let declared = |ctx: &mut Ctx<'_>, path: KeyPath, name: &Option<String>| {
        let Some(name) = name else {
            return default.clone();
        };
        match identity
            .domains()
            .iter()
            .find(|d| d.netbios.eq_ignore_ascii_case(name))
        {
            Some(d) => Some(d.netbios.clone()),
            None => {
                ctx.err(
                    path,
                    format!(
                        "names domain {name:?}, which is not in [[domains]]; declare it there \
                         (netbios = {name:?} and its dns name)"
                    ),
                );
                None
            }
        }
    };
    for (i, g) in gates.iter_mut().enumerate() {
        let path = KeyPath::root().key("gates").index(i);
        let given = g.domain.is_some();
        g.domain = declared(ctx, path.key("domain"), &g.domain);
        let decides_logins = policies.iter().any(|p| {
            p.enabled
                && p.apply_to.applies_to(&g.service)
                && p.criteria
                    .iter()
                    .any(|c| c.field == crate::model::policy::Field::DbUser)
        });
        if g.domain.is_none() && !given && decides_logins {
            ctx.err(
                path.key("domain"),
                format!(
                    "the gate's logins are bare PostgreSQL user names (alice), which belong to no \
                     domain here, so they would match no listed account (CORP\\alice) and a \
                     listed user would log in; set domain = \"CORP\" on this gate (a [[domains]] \
                     entry), or default = true on the [[domains]] entry bare names belong to \
                     (service {:?} is decided on db_user)",
                    g.service
                ),
            );
        }
    }
    for (i, d) in databases.iter_mut().enumerate() {
        let path = KeyPath::root().key("databases").index(i).key("domain");
        d.domain = declared(ctx, path, &d.domain);
    }
}

/// `[identity] unresolvable`: whether a principal no rule or directory places is kept as the
/// text it is (`"keep"`) or refused (`"refuse"`, the default).
fn unresolvable(ctx: &mut Ctx<'_>, text: Option<&str>) -> bool {
    match text {
        None | Some("refuse") => false,
        Some("keep") => true,
        Some(other) => {
            ctx.err(
                KeyPath::root().key("identity").key("unresolvable"),
                format!("{other:?} is not one of \"refuse\", \"keep\""),
            );
            false
        }
    }
}

/// `[identity]` and `[[domains]]`: NetBIOS names, DNS names and UPN suffixes each belong to one
/// domain, at most one domain is the default for bare names.
fn identity(ctx: &mut Ctx<'_>, raw: raw::Identity, domains: Vec<(usize, raw::Domain)>) -> Identity {
    let rule = match raw.upn_suffix_rule {
        Some(text) => {
            let path = KeyPath::root().key("identity").key("upn_suffix_rule");
            text.parse::<SuffixRule>()
                .map_err(|e| ctx.err(path, e.to_string()))
                .unwrap_or_default()
        }
        None => SuffixRule::default(),
    };
    let mut seen_netbios: HashSet<String> = HashSet::new();
    let mut seen_suffixes: HashSet<String> = HashSet::new();
    let mut default = None;
    let mut out = Vec::new();
    for (i, d) in domains {
        let path = KeyPath::root().key("domains").index(i);
        let netbios_ok = !d.netbios.is_empty()
            && d.netbios.len() <= 15
            && d.netbios
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\\/:*?\"<>|@.=,".contains(&b));
        if !netbios_ok {
            ctx.err(
                path.key("netbios"),
                format!(
                    "{:?} is not a NetBIOS domain name (1 to 15 characters, no \\ / : * ? \" < > | @ . = ,); e.g. \"CORP\"",
                    d.netbios
                ),
            );
        } else if !seen_netbios.insert(d.netbios.to_ascii_uppercase()) {
            ctx.err(
                path.key("netbios"),
                format!("{:?} is named by another domain", d.netbios),
            );
        }
        let suffixes = d.upn_suffixes.unwrap_or_default();
        let mut check = |ctx: &mut Ctx<'_>, path: KeyPath, s: &str| {
            let ok = !s.is_empty()
                && s.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                ctx.err(
                    path,
                    format!("{s:?} is not a DNS name; e.g. \"corp.example.test\""),
                );
            } else if !seen_suffixes.insert(s.to_ascii_lowercase()) {
                ctx.err(path, format!("{s:?} already belongs to a domain"));
            }
        };
        check(ctx, path.key("dns"), &d.dns);
        for (j, s) in suffixes.iter().enumerate() {
            check(ctx, path.key("upn_suffixes").index(j), s);
        }
        if d.default == Some(true) {
            if default.is_some() {
                ctx.err(
                    path.key("default"),
                    "only one domain can be the default for bare names",
                );
            }
            default = Some(out.len());
        }
        out.push(Domain {
            netbios: d.netbios,
            dns: d.dns.to_ascii_lowercase(),
            upn_suffixes: suffixes.iter().map(|s| s.to_ascii_lowercase()).collect(),
        });
    }
    Identity::new(out, rule, default)
}

fn mapping(ctx: &mut Ctx<'_>, names: &Names<'_>, path: KeyPath, m: raw::Mapping) -> MappingConfig {
    reference(ctx, path.key("list"), names.lists, "list", "lists", &m.list);
    reference(
        ctx,
        path.key("directory"),
        names.directories,
        "directory",
        "directories",
        &m.directory,
    );
    if !m.group_dn.contains('=') {
        ctx.err(
            path.key("group_dn"),
            format!("{:?} is not a DN; e.g. \"CN=PTR_Suspicious_Users,CN=Users,DC=corp,DC=example,DC=test\"", m.group_dn),
        );
    }
    MappingConfig {
        list: m.list,
        directory: m.directory,
        group_dn: m.group_dn,
    }
}

fn schema(ctx: &mut Ctx<'_>, path: &KeyPath, d: &raw::DataSet) -> Option<Schema> {
    let columns = d
        .columns
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            key: c.key,
        })
        .collect();
    Schema::new(columns, d.case_sensitive)
        .map_err(|e| ctx.err(path.key("columns"), e.to_string()))
        .ok()
}

/// Reports keys set on a source that its type does not use.
fn only_keys(ctx: &mut Ctx<'_>, path: &KeyPath, s: &raw::Source, allowed: &[&str]) {
    let present = [
        ("list", s.list.is_some()),
        ("directory", s.directory.is_some()),
        ("base", s.base.is_some()),
        ("scope", s.scope.is_some()),
        ("filter", s.filter.is_some()),
        ("mappings", s.mappings.is_some()),
        ("refresh_interval", s.refresh_interval.is_some()),
        ("notify", s.notify.is_some()),
        ("max_shrink", s.max_shrink.is_some()),
        ("shrink_window", s.shrink_window.is_some()),
        ("nested", s.nested.is_some()),
        ("incremental", s.incremental.is_some()),
        ("full_refresh_interval", s.full_refresh_interval.is_some()),
        ("watch_connections", s.watch_connections.is_some()),
        ("path", s.path.is_some()),
        ("never_written", s.never_written.is_some()),
        ("union", s.union.is_some()),
    ];
    for (key, set) in present {
        if set && !allowed.contains(&key) {
            ctx.err(
                path.key(key),
                format!("`{key}` is not used by type = {:?}", s.kind),
            );
        }
    }
}

fn required<'a>(ctx: &mut Ctx<'_>, path: &KeyPath, key: &str, v: &'a Option<String>) -> &'a str {
    match v.as_deref() {
        Some(s) if !s.trim().is_empty() => s,
        Some(_) => {
            ctx.err(path.key(key), "must not be empty");
            ""
        }
        None => {
            ctx.err(path.clone(), format!("missing `{key}`"));
            ""
        }
    }
}

fn data_set(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    path: KeyPath,
    d: raw::DataSet,
) -> Option<DataSetConfig> {
    let schema = schema(ctx, &path, &d);
    let spath = path.key("source");
    let s = &d.source;
    let source = match s.kind.as_str() {
        "list" => {
            only_keys(ctx, &spath, s, &["list"]);
            let list = required(ctx, &spath, "list", &s.list).to_string();
            if !list.is_empty() {
                reference(ctx, spath.key("list"), names.lists, "list", "lists", &list);
            }
            let fields = d
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if c.key {
                        MemberField::Principal
                    } else {
                        MemberField::parse(&c.name).unwrap_or_else(|| {
                            ctx.err(
                                path.key("columns").index(i).key("name"),
                                format!(
                                    "a list-sourced data set's key column holds the principal; other columns must be one of {}",
                                    MemberField::NAMES
                                ),
                            );
                            MemberField::Reason
                        })
                    }
                })
                .collect();
            Source::List { list, fields }
        }
        "ldap" => Source::Ldap(ldap_source(ctx, names, &spath, s, schema.as_ref())?),
        "static" => {
            only_keys(ctx, &spath, s, &["path"]);
            let file = required(ctx, &spath, "path", &s.path).to_string();
            Source::Static {
                path: ctx.path_buf(&file),
            }
        }
        "api" => {
            only_keys(ctx, &spath, s, &["never_written"]);
            let unwritten_is_empty = match s.never_written.as_deref() {
                None | Some("unknown") => false,
                Some("empty") => true,
                Some(other) => {
                    ctx.err(
                        spath.key("never_written"),
                        format!(
                            "{other:?} is not one of unknown, empty (what an api data set no one has written yet is: unknown fails closed until the first write)"
                        ),
                    );
                    false
                }
            };
            Source::Api { unwritten_is_empty }
        }
        other => {
            ctx.err(
                spath.key("type"),
                format!("unknown source type {other:?}; expected one of ldap, list, static, api"),
            );
            return None;
        }
    };
    Some(DataSetConfig {
        name: d.name,
        schema: schema?,
        source,
    })
}

fn ldap_source(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    path: &KeyPath,
    s: &raw::Source,
    schema: Option<&Schema>,
) -> Option<LdapSource> {
    only_keys(
        ctx,
        path,
        s,
        &[
            "directory",
            "base",
            "scope",
            "filter",
            "mappings",
            "refresh_interval",
            "notify",
            "max_shrink",
            "shrink_window",
            "union",
            "nested",
            "incremental",
            "full_refresh_interval",
            "watch_connections",
        ],
    );
    let directory = required(ctx, path, "directory", &s.directory).to_string();
    if !directory.is_empty() {
        reference(
            ctx,
            path.key("directory"),
            names.directories,
            "directory",
            "directories",
            &directory,
        );
    }
    let base = required(ctx, path, "base", &s.base).to_string();
    let filter = required(ctx, path, "filter", &s.filter).to_string();
    if !filter.is_empty() && !is_parenthesized(&filter) {
        ctx.err(
            path.key("filter"),
            format!("{filter:?} is not an LDAP filter; it must be parenthesized, e.g. \"(memberOf=CN=...)\""),
        );
    }
    let scope = scope(ctx, path, s.scope.as_deref());
    let union = union_queries(
        ctx,
        names,
        path,
        &directory,
        s.union.as_deref().unwrap_or_default(),
    );
    let max_shrink = s.max_shrink.unwrap_or(DEFAULT_MAX_SHRINK);
    if !(max_shrink > 0.0 && max_shrink <= 1.0) {
        ctx.err(
            path.key("max_shrink"),
            format!("{max_shrink} is not a share of rows; use a number in (0, 1], e.g. 0.5"),
        );
    }
    let refresh_interval = ctx.duration(
        path.key("refresh_interval"),
        s.refresh_interval.as_deref(),
        DEFAULT_UPDATE_INTERVAL,
    );
    let shrink_window = ctx.duration(
        path.key("shrink_window"),
        s.shrink_window.as_deref(),
        DEFAULT_SHRINK_WINDOW,
    );
    let mut mappings = Vec::new();
    let raw_mappings = s.mappings.as_deref().unwrap_or_default();
    if raw_mappings.is_empty() {
        ctx.err(
            path.clone(),
            "missing `mappings`: at least one attribute mapping must fill the key column",
        );
    }
    for (i, m) in raw_mappings.iter().enumerate() {
        let mpath = path.key("mappings").index(i);
        if let Some(schema) = schema
            && schema.column_index(&m.column).is_none()
        {
            let cols: Vec<&str> = schema.columns().iter().map(|c| c.name.as_str()).collect();
            ctx.err(
                mpath.key("column"),
                format!(
                    "{:?} is not a column of this data set (columns: {})",
                    m.column,
                    cols.join(", ")
                ),
            );
        }
        if m.attribute.trim().is_empty() {
            ctx.err(mpath.key("attribute"), "must not be empty");
        }
        if m.substitute.is_some() && m.match_pattern.is_none() {
            ctx.err(
                mpath.key("substitute"),
                "a substitute needs a `match` pattern to take groups from",
            );
            continue;
        }
        match AttributeMapping::new(
            &m.column,
            &m.attribute,
            m.match_pattern.as_deref(),
            m.substitute.as_deref(),
        ) {
            Ok(mapping) => mappings.push(mapping),
            Err(e) => {
                let key = match e {
                    PatternError::Template { .. } | PatternError::UnknownGroup { .. } => {
                        "substitute"
                    }
                    _ => "match",
                };
                ctx.err(mpath.key(key), e.to_string());
            }
        }
    }
    if let Some(schema) = schema {
        let key = &schema.key_column().name;
        if !raw_mappings.is_empty()
            && !raw_mappings
                .iter()
                .any(|m| m.column.eq_ignore_ascii_case(key))
        {
            ctx.err(
                path.key("mappings"),
                format!("no mapping fills the key column {key:?}"),
            );
        }
    }
    // A filter that selects on its group through the in-chain rule, written by hand, is
    // followed as `nested = "in_chain"`: the server already follows the chain, and warden
    // watches every group of it (a member added in a sub-group arrives within a second, not
    // at the next schedule).
    let nested = nesting(ctx, path, s, &filter)
        .or_else(|| (union.is_empty() && in_chain_atom(&filter)).then_some(Nesting::InChain));
    let incremental = s.incremental.unwrap_or(false);
    if !union.is_empty() && (nested.is_some() || incremental) {
        ctx.err(
            path.key("union"),
            "a union data set is pulled in full from each of its directories: `nested` and `incremental` follow one directory's groups; drop them or the union",
        );
    }
    if incremental && !filter.is_empty() && !filter.to_ascii_lowercase().contains("memberof=") {
        ctx.err(
            path.key("incremental"),
            "an incremental pull follows the changes of one group: the filter must select on (memberOf=<group DN>)",
        );
    }
    let full_refresh_interval = ctx.duration(
        path.key("full_refresh_interval"),
        s.full_refresh_interval.as_deref(),
        DEFAULT_FULL_REFRESH_INTERVAL,
    );
    if s.full_refresh_interval.is_some() && !incremental {
        ctx.err(
            path.key("full_refresh_interval"),
            "only an incremental data set has full pulls apart from its refreshes; set `incremental = true` or drop it",
        );
    }
    let watch_connections = match s.watch_connections {
        None => DEFAULT_WATCH_CONNECTIONS,
        Some(n) if (1..=MAX_WATCH_CONNECTIONS as u32).contains(&n) => n as usize,
        Some(n) => {
            ctx.err(
                path.key("watch_connections"),
                format!("{n} is out of range; use 1 to {MAX_WATCH_CONNECTIONS} connections (five groups each)"),
            );
            DEFAULT_WATCH_CONNECTIONS
        }
    };
    Some(LdapSource {
        directory,
        base,
        scope,
        filter,
        mappings,
        refresh_interval,
        notify: s.notify.unwrap_or(true),
        max_shrink,
        shrink_window,
        union,
        nested,
        incremental,
        full_refresh_interval,
        watch_connections,
    })
}

fn scope(ctx: &mut Ctx<'_>, path: &KeyPath, text: Option<&str>) -> Scope {
    match text.unwrap_or("sub") {
        "base" => Scope::Base,
        "one" | "onelevel" => Scope::One,
        "sub" | "subtree" => Scope::Sub,
        other => {
            ctx.err(
                path.key("scope"),
                format!("unknown scope {other:?}; expected base, one or sub"),
            );
            Scope::Sub
        }
    }
}

/// `[[data_sets.source.union]]`: more queries whose rows join the set's. Rows are tagged by
/// the domain of the directory they come from, so every directory of a union (the source's
/// own too) must say which domain it serves.
fn union_queries(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    path: &KeyPath,
    primary: &str,
    raw: &[raw::UnionQuery],
) -> Vec<LdapQuery> {
    if raw.is_empty() {
        return Vec::new();
    }
    let needs_domain = |ctx: &mut Ctx<'_>, path: KeyPath, name: &str| {
        if names.directories.contains(name) && !names.directories_with_domain.contains(name) {
            ctx.err(
                path,
                format!(
                    "directory {name:?} says no domain: a union data set tags each row with its directory's domain; set domain = \"…\" on that [[directories]] entry"
                ),
            );
        }
    };
    needs_domain(ctx, path.key("directory"), primary);
    let mut out = Vec::new();
    for (i, q) in raw.iter().enumerate() {
        let qpath = path.key("union").index(i);
        reference(
            ctx,
            qpath.key("directory"),
            names.directories,
            "directory",
            "directories",
            &q.directory,
        );
        needs_domain(ctx, qpath.key("directory"), &q.directory);
        if q.base.trim().is_empty() {
            ctx.err(qpath.key("base"), "must not be empty");
        }
        if !is_parenthesized(&q.filter) {
            ctx.err(
                qpath.key("filter"),
                format!("{:?} is not an LDAP filter; it must be parenthesized, e.g. \"(memberOf=CN=...)\"", q.filter),
            );
        }
        out.push(LdapQuery {
            directory: q.directory.clone(),
            base: q.base.clone(),
            scope: scope(ctx, &qpath, q.scope.as_deref()),
            filter: q.filter.clone(),
        });
    }
    out
}

/// `nested`: how the data set follows nested groups, if it does; it needs a
/// `(memberOf=<group>)` in the filter to start from.
fn nesting(ctx: &mut Ctx<'_>, path: &KeyPath, s: &raw::Source, filter: &str) -> Option<Nesting> {
    let nesting = match s.nested.as_ref()? {
        raw::Nesting::Flag(false) => return None,
        raw::Nesting::Flag(true) => Nesting::Auto,
        raw::Nesting::Mode(m) => {
            match m.as_str() {
                "auto" => Nesting::Auto,
                "in_chain" => Nesting::InChain,
                "expand" => Nesting::Expand,
                other => {
                    ctx.err(
                    path.key("nested"),
                    format!("{other:?} is not one of true, false, \"auto\", \"in_chain\", \"expand\""),
                );
                    return None;
                }
            }
        }
    };
    if !filter.is_empty()
        && !filter.to_ascii_lowercase().contains("memberof=")
        && !in_chain_atom(filter)
    {
        ctx.err(
            path.key("nested"),
            "nested membership starts from a group: the filter must select on (memberOf=<group DN>)",
        );
    }
    Some(nesting)
}

/// Whether a filter selects on a group through the in-chain rule
/// (`(memberOf:1.2.840.113556.1.4.1941:=<group DN>)`).
fn in_chain_atom(filter: &str) -> bool {
    filter
        .to_ascii_lowercase()
        .contains("(memberof:1.2.840.113556.1.4.1941:=")
}

fn parse_word<T: std::str::FromStr<Err = crate::model::policy::UnknownWord>>(
    ctx: &mut Ctx<'_>,
    path: KeyPath,
    text: &str,
) -> Option<T> {
    text.parse()
        .map_err(|e: crate::model::policy::UnknownWord| ctx.err(path, e.to_string()))
        .ok()
}

fn policy(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    data_sets: &[DataSetConfig],
    path: KeyPath,
    p: raw::Policy,
) -> Option<Policy> {
    let action = parse_word(ctx, path.key("action"), &p.action);
    let severity = parse_word(ctx, path.key("severity"), &p.severity);
    // `error` unless the policy says otherwise; `allow` is accepted only written out here.
    let when_unknown = match &p.when_unknown {
        Some(w) => parse_word(ctx, path.key("when_unknown"), w),
        None => Some(WhenUnknown::default()),
    };
    if let Some(a) = &p.followed_action {
        reference(
            ctx,
            path.key("followed_action"),
            names.action_sets,
            "action set",
            "action_sets",
            a,
        );
    }
    if p.apply_to.is_empty() {
        ctx.err(
            path.key("apply_to"),
            "must name at least one service or glob (\"*\" applies to every service)",
        );
    }
    let apply_to = ServiceScope::new(&p.apply_to)
        .map_err(|e| ctx.err(path.key("apply_to"), e.to_string()))
        .ok();
    if p.criteria.is_empty() {
        ctx.err(
            path.key("criteria"),
            "a policy needs at least one criterion; without one it would match every request",
        );
    }
    let mut criteria = Vec::new();
    for (i, c) in p.criteria.into_iter().enumerate() {
        let cpath = path.key("criteria").index(i);
        let field = parse_word(ctx, cpath.key("field"), &c.field);
        let operation = parse_word(ctx, cpath.key("operation"), &c.operation);
        let unknown = match &c.handle_unknown_values {
            Some(h) => parse_word(ctx, cpath.key("handle_unknown_values"), h),
            None => Some(Default::default()),
        };
        reference(
            ctx,
            cpath.key("data_set"),
            names.data_sets,
            "data set",
            "data_sets",
            &c.data_set,
        );
        if let Some(ds) = data_sets.iter().find(|d| d.name == c.data_set) {
            for (j, col) in c.search_in.iter().enumerate() {
                if ds.schema.column_index(col).is_none() {
                    let cols: Vec<&str> = ds
                        .schema
                        .columns()
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    ctx.err(
                        cpath.key("search_in").index(j),
                        format!(
                            "data set {:?} has no column {col:?} (columns: {})",
                            ds.name,
                            cols.join(", ")
                        ),
                    );
                }
            }
        }
        if let (Some(field), Some(operation), Some(handle_unknown_values)) =
            (field, operation, unknown)
        {
            criteria.push(Criterion {
                field,
                operation,
                data_set: c.data_set,
                search_in: c.search_in,
                handle_unknown_values,
            });
        }
    }
    Some(Policy {
        name: p.name,
        enabled: p.enabled,
        action: action?,
        severity: severity?,
        followed_action: p.followed_action,
        apply_to: apply_to?,
        criteria,
        when_unknown: when_unknown?,
    })
}

fn action_set(ctx: &mut Ctx<'_>, path: KeyPath, a: raw::ActionSet) -> ActionSetConfig {
    let mut actions = Vec::new();
    for (i, act) in a.actions.into_iter().enumerate() {
        let apath = path.key("actions").index(i);
        let check_unused = |ctx: &mut Ctx<'_>, allowed: &[&str]| {
            let present = [
                ("url", act.url.is_some()),
                ("timeout", act.timeout.is_some()),
                ("retries", act.retries.is_some()),
                ("address", act.address.is_some()),
                ("protocol", act.protocol.is_some()),
                ("level", act.level.is_some()),
                ("allow_insecure", act.allow_insecure.is_some()),
            ];
            for (key, set) in present {
                if set && !allowed.contains(&key) {
                    ctx.err(
                        apath.key(key),
                        format!("`{key}` is not used by type = {:?}", act.kind),
                    );
                }
            }
        };
        match act.kind.as_str() {
            "log" => {
                check_unused(ctx, &["level"]);
                let level = match act.level.as_deref().unwrap_or("warn") {
                    "error" => tracing::Level::ERROR,
                    "warn" => tracing::Level::WARN,
                    "info" => tracing::Level::INFO,
                    other => {
                        ctx.err(
                            apath.key("level"),
                            format!("unknown level {other:?}; expected error, warn or info"),
                        );
                        tracing::Level::WARN
                    }
                };
                actions.push(ActionConfig::Log { level });
            }
            "webhook" => {
                check_unused(ctx, &["url", "timeout", "retries", "allow_insecure"]);
                let url = required(ctx, &apath, "url", &act.url).to_string();
                let allow_insecure = act.allow_insecure.unwrap_or(false);
                if !url.is_empty() && !is_http_url(&url) {
                    ctx.err(
                        apath.key("url"),
                        format!("{url:?} must be an http:// or https:// URL"),
                    );
                } else if url.starts_with("http://") && !allow_insecure {
                    ctx.err(
                        apath.key("url"),
                        format!(
                            "{url:?} is plain http: the decision event would travel in clear; \
                             use https://, or opt in with allow_insecure = true (only for a \
                             receiver on loopback)"
                        ),
                    );
                }
                let timeout = ctx.duration(
                    apath.key("timeout"),
                    act.timeout.as_deref(),
                    Duration::from_secs(5),
                );
                actions.push(ActionConfig::Webhook {
                    url,
                    timeout,
                    retries: act.retries.unwrap_or(3),
                    allow_insecure,
                });
            }
            "syslog" => {
                check_unused(ctx, &["address", "protocol"]);
                let address = required(ctx, &apath, "address", &act.address).to_string();
                let tcp = match act.protocol.as_deref().unwrap_or("udp") {
                    "udp" => false,
                    "tcp" => true,
                    other => {
                        ctx.err(
                            apath.key("protocol"),
                            format!("unknown protocol {other:?}; expected udp or tcp"),
                        );
                        false
                    }
                };
                actions.push(ActionConfig::Syslog { address, tcp });
            }
            other => ctx.err(
                apath.key("type"),
                format!("unknown action type {other:?}; expected log, webhook or syslog"),
            ),
        }
    }
    let dedup_window = match a.dedup_window.as_deref() {
        Some("0s") => Duration::ZERO,
        text => ctx.duration(path.key("dedup_window"), text, Duration::from_secs(60)),
    };
    ActionSetConfig {
        name: a.name,
        actions,
        dedup_window,
    }
}

fn is_parenthesized(filter: &str) -> bool {
    filter.starts_with('(') && filter.ends_with(')')
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}
