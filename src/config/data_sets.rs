//! `[[data_sets]]`: named columns with one key, and the source the rows come from — a local
//! list, a static file, the Imperva-style data API, or an LDAP query (`ldap`, its own file).

use std::path::PathBuf;

use serde::Deserialize;

use super::KeyPath;
use super::check::{Ctx, Names};
use crate::model::dataset::{Column, Schema};

mod ldap;

pub use ldap::{
    DEFAULT_FULL_REFRESH_INTERVAL, DEFAULT_WATCH_CONNECTIONS, LdapQuery, LdapSource,
    MAX_WATCH_CONNECTIONS, Nesting, Scope,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) name: String,
    #[serde(default)]
    case_sensitive: bool,
    columns: Vec<RawColumn>,
    source: RawSource,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: String,
    #[serde(default)]
    key: bool,
}

/// One flat shape for every source type, so a key that belongs to another type gets a precise
/// error ("`filter` is only valid for type = \"ldap\"") rather than serde's generic one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: String,
    list: Option<String>,
    directory: Option<String>,
    base: Option<String>,
    scope: Option<String>,
    filter: Option<String>,
    mappings: Option<Vec<ldap::RawMapping>>,
    refresh_interval: Option<String>,
    notify: Option<bool>,
    max_shrink: Option<f64>,
    shrink_window: Option<String>,
    /// `ldap` only: follow nested membership of the `(memberOf=<group>)` in the filter
    /// (`true` or `"auto"`: the server's matching rule where it has one; `"in_chain"`,
    /// `"expand"`: that way only).
    nested: Option<ldap::RawNesting>,
    /// `ldap` only: pull only the changes (DirSync) between full pulls.
    incremental: Option<bool>,
    full_refresh_interval: Option<String>,
    /// `ldap` only: at most this many change-notification connections for the groups of the
    /// chain (five groups each); the rest are polled.
    watch_connections: Option<u32>,
    path: Option<String>,
    /// `api` only: what a set no one has written yet is (`unknown`, the default, or `empty`).
    never_written: Option<String>,
    /// `ldap` only: further queries, on other directories, whose rows join the set's.
    union: Option<Vec<ldap::RawUnionQuery>>,
}

impl RawSource {
    /// Reports the keys set that `type = kind` does not use.
    fn only_keys(&self, ctx: &mut Ctx<'_>, path: &KeyPath, allowed: &[&str]) {
        let present = [
            ("list", self.list.is_some()),
            ("directory", self.directory.is_some()),
            ("base", self.base.is_some()),
            ("scope", self.scope.is_some()),
            ("filter", self.filter.is_some()),
            ("mappings", self.mappings.is_some()),
            ("refresh_interval", self.refresh_interval.is_some()),
            ("notify", self.notify.is_some()),
            ("max_shrink", self.max_shrink.is_some()),
            ("shrink_window", self.shrink_window.is_some()),
            ("nested", self.nested.is_some()),
            ("incremental", self.incremental.is_some()),
            (
                "full_refresh_interval",
                self.full_refresh_interval.is_some(),
            ),
            ("watch_connections", self.watch_connections.is_some()),
            ("path", self.path.is_some()),
            ("never_written", self.never_written.is_some()),
            ("union", self.union.is_some()),
        ];
        ctx.unused_keys(path, &self.kind, &present, allowed);
    }
}

/// `[[data_sets]]`.
#[derive(Debug, Clone)]
pub struct DataSetConfig {
    pub name: String,
    pub schema: Schema,
    pub source: Source,
}

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

pub(super) fn check(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    path: KeyPath,
    d: Raw,
) -> Option<DataSetConfig> {
    let schema = schema(ctx, &path, &d);
    let spath = path.key("source");
    let s = &d.source;
    let source = match s.kind.as_str() {
        "list" => list_source(ctx, names, &path, &d),
        "ldap" => Source::Ldap(ldap::check(ctx, names, &spath, s, schema.as_ref())?),
        "static" => {
            s.only_keys(ctx, &spath, &["path"]);
            let file = ctx.required(&spath, "path", &s.path).to_string();
            Source::Static {
                path: ctx.path_buf(&file),
            }
        }
        "api" => api_source(ctx, &spath, s),
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

fn schema(ctx: &mut Ctx<'_>, path: &KeyPath, d: &Raw) -> Option<Schema> {
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

/// `type = "list"`: a list's members, one member field per column.
fn list_source(ctx: &mut Ctx<'_>, names: &Names<'_>, path: &KeyPath, d: &Raw) -> Source {
    let spath = path.key("source");
    let s = &d.source;
    s.only_keys(ctx, &spath, &["list"]);
    let list = ctx.required(&spath, "list", &s.list).to_string();
    if !list.is_empty() {
        ctx.reference(spath.key("list"), names.lists, "list", "lists", &list);
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

/// `type = "api"`: written through the data endpoints; unknown until then unless told.
fn api_source(ctx: &mut Ctx<'_>, path: &KeyPath, s: &RawSource) -> Source {
    s.only_keys(ctx, path, &["never_written"]);
    let unwritten_is_empty = match s.never_written.as_deref() {
        None | Some("unknown") => false,
        Some("empty") => true,
        Some(other) => {
            ctx.err(
                path.key("never_written"),
                format!(
                    "{other:?} is not one of unknown, empty (what an api data set no one has written yet is: unknown fails closed until the first write)"
                ),
            );
            false
        }
    };
    Source::Api { unwritten_is_empty }
}
