//! `[[data_sets]] source = { type = "ldap" }`: a query on a directory (base, scope, filter),
//! the attribute mappings that turn each entry into a row, how often it refreshes and what
//! the shrink guard holds, nested membership, incremental pulls (DirSync), and the further
//! queries of a union over several directories.

use std::time::Duration;

use serde::Deserialize;

use super::super::KeyPath;
use super::super::check::{Ctx, Names, is_parenthesized};
use super::RawSource;
use crate::model::dataset::Schema;
use crate::model::pattern::AttributeMapping;

/// `[[data_sets.source.mappings]]`: an attribute into a column.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    column: String,
    attribute: String,
    #[serde(rename = "match")]
    match_pattern: Option<String>,
    substitute: Option<String>,
}

/// `[[data_sets.source.union]]`: one more LDAP query of a union data set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUnionQuery {
    directory: String,
    base: String,
    scope: Option<String>,
    filter: String,
}

/// `nested = true | false | "auto" | "in_chain" | "expand"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawNesting {
    Flag(bool),
    Mode(String),
}

/// LDAP search scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Base,
    One,
    Sub,
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

/// How often the query runs when no change notification wakes it sooner.
const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_MAX_SHRINK: f64 = 0.5;
/// Removals add up over this window before the shrink guard forgets them.
const DEFAULT_SHRINK_WINDOW: Duration = Duration::from_secs(3600);

/// Every key `type = "ldap"` uses.
const KEYS: [&str; 14] = [
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
];

pub(super) fn check(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    path: &KeyPath,
    s: &RawSource,
    schema: Option<&Schema>,
) -> Option<LdapSource> {
    s.only_keys(ctx, path, &KEYS);
    let directory = ctx.required(path, "directory", &s.directory).to_string();
    if !directory.is_empty() {
        ctx.reference(
            path.key("directory"),
            names.directories,
            "directory",
            "directories",
            &directory,
        );
    }
    let base = ctx.required(path, "base", &s.base).to_string();
    let filter = ctx.required(path, "filter", &s.filter).to_string();
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
        DEFAULT_REFRESH_INTERVAL,
    );
    let shrink_window = ctx.duration(
        path.key("shrink_window"),
        s.shrink_window.as_deref(),
        DEFAULT_SHRINK_WINDOW,
    );
    let mappings = mappings(ctx, path, s.mappings.as_deref().unwrap_or_default(), schema);
    let pulls = pulls(ctx, path, s, &filter, !union.is_empty());
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
        nested: pulls.nested,
        incremental: pulls.incremental,
        full_refresh_interval: pulls.full_refresh_interval,
        watch_connections: pulls.watch_connections,
    })
}

/// `[[data_sets.source.mappings]]`: at least one, into columns of the set, one filling the key.
fn mappings(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    raw: &[RawMapping],
    schema: Option<&Schema>,
) -> Vec<AttributeMapping> {
    if raw.is_empty() {
        ctx.err(
            path.clone(),
            "missing `mappings`: at least one attribute mapping must fill the key column",
        );
    }
    let mut mappings = Vec::new();
    for (i, m) in raw.iter().enumerate() {
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
        mappings.extend(ctx.mapping(
            &mpath,
            &m.column,
            &m.attribute,
            m.match_pattern.as_deref(),
            m.substitute.as_deref(),
        ));
    }
    if let Some(schema) = schema {
        let key = &schema.key_column().name;
        if !raw.is_empty() && !raw.iter().any(|m| m.column.eq_ignore_ascii_case(key)) {
            ctx.err(
                path.key("mappings"),
                format!("no mapping fills the key column {key:?}"),
            );
        }
    }
    mappings
}

/// How the set is pulled beyond one query: nested membership, incremental pulls with full
/// ones between, the change-notification connections.
struct Pulls {
    nested: Option<Nesting>,
    incremental: bool,
    full_refresh_interval: Duration,
    watch_connections: usize,
}

/// Nesting and DirSync follow one group of one directory: they need a `(memberOf=<group>)`
/// filter and no union.
fn pulls(ctx: &mut Ctx<'_>, path: &KeyPath, s: &RawSource, filter: &str, union: bool) -> Pulls {
    // A filter that selects on its group through the in-chain rule, written by hand, is
    // followed as `nested = "in_chain"`: the server already follows the chain, and warden
    // watches every group of it (a member added in a sub-group arrives within a second, not
    // at the next schedule).
    let nested = nesting(ctx, path, s, filter)
        .or_else(|| (!union && in_chain_atom(filter)).then_some(Nesting::InChain));
    let incremental = s.incremental.unwrap_or(false);
    if union && (nested.is_some() || incremental) {
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
    Pulls {
        nested,
        incremental,
        full_refresh_interval,
        watch_connections,
    }
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
    raw: &[RawUnionQuery],
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
        ctx.reference(
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
fn nesting(ctx: &mut Ctx<'_>, path: &KeyPath, s: &RawSource, filter: &str) -> Option<Nesting> {
    let nesting = match s.nested.as_ref()? {
        RawNesting::Flag(false) => return None,
        RawNesting::Flag(true) => Nesting::Auto,
        RawNesting::Mode(m) => {
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
