//! Raw → validated, the orchestration: read each section on its own (`read`), check each in
//! the order their references need (a section's own checks live in its file), and collect every
//! problem with its key path and line, sorted by line.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use toml::de::DeTable;

use super::check::{Ctx, Names};
use super::read::{de_array, de_value};
use super::{
    Config, ConfigError, KeyPath, action_sets, console, data_sets, databases, decision_log,
    directories, events, gates, identity, imperva, lists, mappings, policies, response_rules,
    server, store,
};

const SECTIONS: &str = "server, store, identity, domains, directories, lists, mappings, \
                        data_sets, policies, action_sets, response_rules, imperva, gates, databases, \
                        console, events, decision_log";

/// Every section as written: tables, and the entries of arrays with their index.
#[derive(Default)]
struct RawConfig {
    server: server::Raw,
    store: store::Raw,
    identity: identity::Raw,
    domains: Vec<(usize, identity::RawDomain)>,
    directories: Vec<(usize, directories::Raw)>,
    lists: Vec<(usize, lists::Raw)>,
    mappings: Vec<(usize, mappings::Raw)>,
    data_sets: Vec<(usize, data_sets::Raw)>,
    policies: Vec<(usize, policies::Raw)>,
    action_sets: Vec<(usize, action_sets::Raw)>,
    response_rules: Vec<(usize, response_rules::Raw)>,
    imperva: Option<imperva::Raw>,
    gates: Vec<(usize, gates::Raw)>,
    databases: Vec<(usize, databases::Raw)>,
    console: console::Raw,
    events: events::Raw,
    decision_log: decision_log::Raw,
}

pub(super) fn parse(source: &str, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut ctx = Ctx::new(source, base_dir);
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
            "events" => raw.events = de_value(ctx, &path, value).unwrap_or_default(),
            "decision_log" => raw.decision_log = de_value(ctx, &path, value).unwrap_or_default(),
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

/// The names every section defines, checked unique, for the others' references.
struct Defined {
    directories: HashSet<String>,
    directories_with_domain: HashSet<String>,
    lists: HashSet<String>,
    data_sets: HashSet<String>,
    action_sets: HashSet<String>,
}

impl Defined {
    fn names(&self) -> Names<'_> {
        Names {
            directories: &self.directories,
            directories_with_domain: &self.directories_with_domain,
            lists: &self.lists,
            data_sets: &self.data_sets,
            action_sets: &self.action_sets,
        }
    }
}

fn defined(ctx: &mut Ctx<'_>, raw: &RawConfig) -> Defined {
    let directories = ctx.unique_names("directories", named(&raw.directories, |d| &d.name));
    let lists = ctx.unique_names("lists", named(&raw.lists, |l| &l.name));
    let data_sets = ctx.unique_names("data_sets", named(&raw.data_sets, |d| &d.name));
    ctx.unique_names("policies", named(&raw.policies, |p| &p.name));
    ctx.unique_names("response_rules", named(&raw.response_rules, |r| &r.name));
    let action_sets = ctx.unique_names("action_sets", named(&raw.action_sets, |a| &a.name));
    let directories_with_domain = raw
        .directories
        .iter()
        .filter(|(_, d)| d.domain.is_some())
        .map(|(_, d)| d.name.clone())
        .collect();
    Defined {
        directories,
        directories_with_domain,
        lists,
        data_sets,
        action_sets,
    }
}

/// The name of each entry of an array section, with its index.
fn named<'a, T>(
    entries: &'a [(usize, T)],
    name: impl Fn(&'a T) -> &'a String + 'a,
) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    entries.iter().map(move |(i, e)| (*i, name(e).as_str()))
}

/// Each entry of an array section, checked with its key path (`section[i]`); the entries that
/// pass.
fn each<R, T>(
    ctx: &mut Ctx<'_>,
    section: &str,
    raw: Vec<(usize, R)>,
    mut check: impl FnMut(&mut Ctx<'_>, KeyPath, R) -> Option<T>,
) -> Vec<T> {
    let path = KeyPath::root().key(section);
    raw.into_iter()
        .filter_map(|(i, r)| check(ctx, path.index(i), r))
        .collect()
}

fn validate(ctx: &mut Ctx<'_>, raw: RawConfig) -> Config {
    // Names first: each section checks its references against the others'. (Errors are
    // sorted by line at the end, so the order of sections here shows nowhere.)
    let defined = defined(ctx, &raw);
    let server = server::check(ctx, raw.server);
    let store = store::check(ctx, raw.store);
    let keep_unresolvable = identity::keep_unresolvable(ctx, &raw.identity);
    let identity = identity::check(ctx, raw.identity, raw.domains);
    let names = defined.names();
    let directories = each(ctx, "directories", raw.directories, |ctx, path, d| {
        directories::check(ctx, &identity, path, d)
    });
    let lists = raw
        .lists
        .into_iter()
        .map(|(_, l)| lists::check(l))
        .collect();
    let mappings = each(ctx, "mappings", raw.mappings, |ctx, path, m| {
        Some(mappings::check(ctx, &names, path, m))
    });
    let data_sets = each(ctx, "data_sets", raw.data_sets, |ctx, path, d| {
        data_sets::check(ctx, &names, path, d)
    });
    let policies = each(ctx, "policies", raw.policies, |ctx, path, p| {
        policies::check(ctx, &names, &data_sets, path, p)
    });
    let action_sets = each(ctx, "action_sets", raw.action_sets, |ctx, path, a| {
        Some(action_sets::check(ctx, path, a))
    });
    let response_rules = each(ctx, "response_rules", raw.response_rules, |ctx, path, r| {
        response_rules::check(ctx, &names, path, r)
    });
    let imperva = raw
        .imperva
        .and_then(|i| imperva::check(ctx, &names, &data_sets, KeyPath::root().key("imperva"), i));
    let gates = gates::check(
        ctx,
        &gates::Context {
            server_listen: server.listen,
            identity: &identity,
            policies: &policies,
        },
        raw.gates,
    );
    ctx.unique_names("databases", named(&raw.databases, |d| &d.name));
    let databases = each(ctx, "databases", raw.databases, |ctx, path, d| {
        databases::check(ctx, &names, &identity, path, d)
    });
    let console_oidc = raw
        .console
        .oidc
        .and_then(|o| console::check(ctx, KeyPath::root().key("console").key("oidc"), o))
        .map(Arc::new);
    Config {
        console_oidc,
        events: events::check(ctx, raw.events),
        decision_log: decision_log::check(ctx, raw.decision_log),
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
