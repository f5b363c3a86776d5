//! Pull: fill an `ldap` data set from its query and attribute mappings.
//!
//! [`query`] runs the paged search and maps every entry into a row off to the side, counting
//! values the patterns drop and entries skipped (no key, a multi-valued key, a duplicate key).
//! [`refresh`] then applies it — unless the search failed (the last good set stays: fail-static)
//! or the **shrink guard** holds it: a refresh that would empty a non-empty set, or drop more
//! than `max_shrink` of its rows, waits in the store until an admin [`accept`]s it.
//!
//! Several domains: a query on a directory that says which domain it serves reads that
//! domain's accounts, so a bare key value (`jsmith`, from `sAMAccountName`) becomes
//! `DOMAIN\jsmith` ([`qualify_key`]); a *union* data set runs its own query and every
//! `union` query (each on its directory) into one set, `CORP\jsmith` and `PARTNER\jsmith`
//! being two keys. A union refreshes as one: if any of its directories fails, nothing is
//! applied and the last good rows stay.

use std::collections::HashSet;

use serde::Serialize;

use super::SyncError;
use super::SyncMetrics;
use super::accounts::record_rows;
use super::nested::{self, Resolved};
use crate::base::identity::Identity;
use crate::base::time::now;
use crate::config::{DataSetConfig, LdapSource, Scope, Source};
use crate::decide::Published;
use crate::directory::{self, Entry};
use crate::directory::{Directory, DirectoryClient, ShrinkWindow};
use crate::model::dataset::{Cell, DataSet, DataSetBuilder, DataSetError, Row, Schema, fold};
use crate::model::pattern::MappingStats;
use crate::runtime::Warden;
use crate::store::{HeldRefresh, SurfaceKind, hold_id};
use crate::sync::push::dn_key;

/// Skipped entries kept (with their reason) for test-query output.
pub const SKIPPED_SAMPLE: usize = 20;

/// An entry that did not become a row, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub dn: String,
    pub reason: String,
}

/// The outcome of running a query and its mappings, not yet applied.
#[derive(Debug)]
pub struct QueryResult {
    pub data_set: DataSet,
    pub entries: usize,
    pub values_dropped: u64,
    pub entries_skipped: u64,
    /// The first [`SKIPPED_SAMPLE`] skipped entries.
    pub skipped: Vec<Skipped>,
}

impl QueryResult {
    /// The test-query report: counts, the skipped sample and the first `sample` rows.
    pub fn report(&self, sample: usize) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .data_set
            .rows()
            .iter()
            .take(sample)
            .filter_map(|row| {
                let mut out = Vec::new();
                self.data_set.write_record(row, &mut out);
                serde_json::from_slice(&out).ok()
            })
            .collect();
        serde_json::json!({
            "data_set": self.data_set.name(),
            "entries": self.entries,
            "rows": self.data_set.len(),
            "values_dropped": self.values_dropped,
            "entries_skipped": self.entries_skipped,
            "skipped": self.skipped,
            "sample": rows,
        })
    }
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum RefreshOutcome {
    /// The new rows are the data set now.
    Applied {
        rows: usize,
        added: usize,
        removed: usize,
        snapshot_version: u64,
    },
    /// The shrink guard held the refresh; the last good rows stay until it is accepted.
    Held {
        /// The hold's id: what `accept` must name.
        id: String,
        current_rows: usize,
        new_rows: usize,
        reason: String,
    },
}

pub(super) fn ldap_source(ds: &DataSetConfig) -> Result<&LdapSource, SyncError> {
    match &ds.source {
        Source::Ldap(l) => Ok(l),
        _ => Err(SyncError::NotLdap(ds.name.clone())),
    }
}

pub(super) fn scope(s: Scope) -> directory::Scope {
    match s {
        Scope::Base => directory::Scope::Base,
        Scope::One => directory::Scope::OneLevel,
        Scope::Sub => directory::Scope::Subtree,
    }
}

/// The values an entry holds for a mapping's attribute; `dn` means the entry's own DN.
fn attribute_values<'e>(entry: &'e Entry, attribute: &str) -> &'e [String] {
    if attribute.eq_ignore_ascii_case("dn") {
        return std::slice::from_ref(&entry.dn);
    }
    entry.get(attribute).unwrap_or_default()
}

/// The entries one query read, and the domain of the directory they came from when it says
/// which domain it serves (its bare key values are that domain's accounts).
pub struct Batch {
    pub domain: Option<String>,
    pub entries: Vec<Entry>,
}

/// A key value read from the directory of `domain`: a bare account name (no `\`, `@` or `=`)
/// is that domain's, `DOMAIN\name`; anything already qualified (or a DN) stays as it is.
pub fn qualify_key(domain: Option<&str>, value: String) -> String {
    match domain {
        Some(d) if !value.is_empty() && !value.contains(['\\', '@', '=']) => {
            format!("{d}\\{value}")
        }
        _ => value,
    }
}

/// Qualifies a mapped row's key cell as an account of `domain` ([`qualify_key`]): the one
/// step every path from an entry to a row takes on a directory that says its domain.
pub fn qualify_row(row: &mut [Cell], key: usize, domain: Option<&str>) {
    if let (Some(_), Some(Cell::One(value))) = (domain, row.get_mut(key)) {
        let qualified = qualify_key(domain, std::mem::take(value).into_string());
        *value = qualified.into_boxed_str();
    }
}

/// One entry's cells, column by column, through the source's mappings; the key qualified as
/// an account of `domain` when the entry's directory says which domain it serves
/// ([`qualify_row`]) — every path from an entry to a row (full, union, incremental) goes
/// through here, so none can leave a PARTNER key bare.
pub fn map_entry(
    schema: &Schema,
    source: &LdapSource,
    entry: &Entry,
    domain: Option<&str>,
    stats: &mut MappingStats,
) -> Vec<Cell> {
    let mut cells: Vec<Vec<String>> = vec![Vec::new(); schema.columns().len()];
    for mapping in &source.mappings {
        if let Some(c) = schema.column_index(&mapping.column) {
            let values = attribute_values(entry, &mapping.attribute);
            mapping.map_values(values.iter().map(String::as_str), &mut cells[c], stats);
        }
    }
    let mut row: Vec<Cell> = cells.into_iter().map(Cell::from_values).collect();
    qualify_row(&mut row, schema.key_index(), domain);
    row
}

/// Builds a data set from mapped rows (with the DN each came from), counting and sampling
/// the rows that cannot be in it.
pub fn build_rows<'r>(
    name: &str,
    schema: &Schema,
    rows: impl ExactSizeIterator<Item = (&'r str, Vec<Cell>)>,
    values_dropped: u64,
) -> QueryResult {
    let entries = rows.len();
    let mut builder = DataSetBuilder::new(name, schema.clone()).with_capacity(entries);
    let mut skipped = Vec::new();
    let mut entries_skipped = 0u64;
    for (dn, row) in rows {
        let reason = match builder.push(row) {
            Ok(()) => continue,
            Err(DataSetError::MissingKey(col)) => {
                format!("key column {col:?} is empty after mapping")
            }
            Err(DataSetError::MultiValuedKey { column, count }) => {
                format!("key column {column:?} has {count} values")
            }
            Err(DataSetError::DuplicateKey(k)) => format!("duplicate key {k:?}"),
            Err(e) => e.to_string(),
        };
        entries_skipped += 1;
        if skipped.len() < SKIPPED_SAMPLE {
            skipped.push(Skipped {
                dn: dn.to_owned(),
                reason,
            });
        }
    }
    QueryResult {
        data_set: builder.build(),
        entries,
        values_dropped,
        entries_skipped,
        skipped,
    }
}

/// Maps the entries of every query into one data set, off to the side.
pub fn map_entries(
    name: &str,
    schema: &Schema,
    source: &LdapSource,
    batches: &[Batch],
) -> QueryResult {
    let mut stats = MappingStats::default();
    let rows: Vec<(&str, Vec<Cell>)> = batches
        .iter()
        .flat_map(|b| b.entries.iter().map(move |e| (b.domain.as_deref(), e)))
        .map(|(domain, e)| {
            let row = map_entry(schema, source, e, domain, &mut stats);
            (e.dn.as_str(), row)
        })
        .collect();
    build_rows(name, schema, rows.into_iter(), stats.values_dropped)
}

/// The attributes a source's mappings read (`dn` is the entry's own, not an attribute).
pub fn attributes(source: &LdapSource) -> Vec<&str> {
    let mut attrs: Vec<&str> = source
        .mappings
        .iter()
        .map(|m| m.attribute.as_str())
        .filter(|a| !a.eq_ignore_ascii_case("dn"))
        .collect();
    attrs.sort_unstable();
    attrs.dedup();
    attrs
}

/// Runs the data set's own query (its nesting resolved) and returns the entries.
pub async fn search(
    warden: &Warden,
    directory: &Directory,
    client: &DirectoryClient,
    ds: &DataSetConfig,
) -> Result<(Vec<Entry>, Resolved), SyncError> {
    let source = ldap_source(ds)?;
    let resolved = nested::resolve(
        directory,
        client,
        &warden.metrics().get::<SyncMetrics>(),
        &ds.name,
        source,
    )
    .await?;
    let entries = client
        .search_paged(
            &source.base,
            scope(source.scope),
            &resolved.filter,
            &attributes(source),
        )
        .await
        .map_err(|e| SyncError::directory(directory, e))?;
    Ok((entries, resolved))
}

/// Runs the data set's query (and a union's other queries, on their directories) and its
/// mappings without applying anything. Any query failing fails the whole run.
pub async fn query(
    warden: &Warden,
    directory: &Directory,
    ds: &DataSetConfig,
) -> Result<QueryResult, SyncError> {
    let source = ldap_source(ds)?;
    let client = directory
        .client()
        .await
        .map_err(|e| SyncError::directory(directory, e))?;
    let (entries, _) = search(warden, directory, &client, ds).await?;
    let mut batches = Vec::with_capacity(1 + source.union.len());
    batches.push(Batch {
        domain: directory.config().domain.clone(),
        entries,
    });
    let attrs = attributes(source);
    let directories = warden.directories();
    for q in &source.union {
        let other = directories
            .get(&q.directory)
            .ok_or_else(|| SyncError::NoSuchDirectory(q.directory.clone()))?;
        let batch = union_search(other, &q.base, q.scope, &q.filter, &attrs).await;
        if batch.as_ref().is_err_and(SyncError::is_connection_problem) {
            other.reset().await;
        }
        batches.push(batch?);
    }
    Ok(map_entries(&ds.name, &ds.schema, source, &batches))
}

/// One paged search of a union on `directory`, tagged with the domain it says it serves.
async fn union_search(
    directory: &Directory,
    base: &str,
    in_scope: Scope,
    filter: &str,
    attrs: &[&str],
) -> Result<Batch, SyncError> {
    let client = directory
        .client()
        .await
        .map_err(|e| SyncError::directory(directory, e))?;
    let entries = client
        .search_paged(base, scope(in_scope), filter, attrs)
        .await
        .map_err(|e| SyncError::directory(directory, e))?;
    Ok(Batch {
        domain: directory.config().domain.clone(),
        entries,
    })
}

/// The shrink guard: counts identities, not rows. A refresh from `current` to `new` keys
/// removes the keys of `current` it lacks — so swapping one member for another is a removal —
/// less the `explained` ones (warden's own push removed those accounts from the group: an
/// expiry or a removal from the list). Removals add up over the window (`earlier`: removed
/// since it started and not back), judged against the most rows the set had in the window, so
/// a set emptied in steps of 40% is held too. `Ok` carries the removals to remember once the
/// refresh is applied; `Err` why it is held.
pub fn shrink_guard(
    peak_rows: usize,
    earlier: &HashSet<String>,
    current: &HashSet<String>,
    new: &HashSet<String>,
    explained: &HashSet<String>,
    max_shrink: f64,
) -> Result<HashSet<String>, String> {
    let removed: HashSet<String> = earlier
        .iter()
        .chain(current.difference(new).filter(|k| !explained.contains(*k)))
        .filter(|k| !new.contains(*k))
        .cloned()
        .collect();
    let base = peak_rows.max(current.len());
    if base == 0 || removed.is_empty() {
        return Ok(removed);
    }
    if new.is_empty() {
        return Err(format!(
            "refresh would empty the data set ({} rows → 0)",
            current.len()
        ));
    }
    let dropped = removed.len() as f64 / base as f64;
    if dropped > max_shrink {
        return Err(format!(
            "refresh would have removed {} of {base} keys within the shrink window ({:.0}%), more than max_shrink ({:.0}%)",
            removed.len(),
            dropped * 100.0,
            max_shrink * 100.0
        ));
    }
    Ok(removed)
}

/// A data set's keys as the shrink guard compares them: the canonical account name, folded.
fn guard_keys(set: &DataSet, identity: &Identity) -> HashSet<String> {
    set.rows()
        .iter()
        .map(|r| fold(&identity.canonical(set.key_of(r)), false))
        .collect()
}

/// Keys in `a` that are not in `b` (folded as the data set folds), as `a` holds them.
fn keys_missing(a: &DataSet, b: &DataSet) -> Vec<String> {
    let cs = a.schema().case_sensitive();
    let in_b: HashSet<String> = b.rows().iter().map(|r| fold(b.key_of(r), cs)).collect();
    a.rows()
        .iter()
        .map(|r| a.key_of(r))
        .filter(|k| !in_b.contains(&fold(k, cs)))
        .map(str::to_owned)
        .collect()
}

/// The canonical account names (folded) of the listed members of every list mapped to
/// `group_dn` on `directory`: what that group must keep whatever someone else does to it.
fn listed_accounts(
    warden: &Warden,
    directory: &Directory,
    group_dn: &str,
) -> Result<HashSet<String>, SyncError> {
    let identity = directory.identity();
    let mut names = HashSet::new();
    for mapping in warden
        .config()
        .mappings
        .iter()
        .filter(|m| m.directory == directory.name() && dn_key(&m.group_dn) == dn_key(group_dn))
    {
        for m in warden.store().active_members(&mapping.list)? {
            names.insert(fold(&identity.canonical(&m.principal), false));
            for n in &m.names {
                names.insert(fold(&identity.canonical(n), false));
            }
        }
    }
    Ok(names)
}

/// A data set on a mapped group keeps the rows of listed members the refresh lost: someone
/// removed them from the group by hand (drift, which the push repairs within about a second),
/// and a listed user stays blocked meanwhile.
fn keep_listed(
    warden: &Warden,
    groups: &[(&Directory, String)],
    current: &DataSet,
    new: DataSet,
) -> Result<DataSet, SyncError> {
    let mut listed = HashSet::new();
    for (directory, group) in groups {
        listed.extend(listed_accounts(warden, directory, group)?);
    }
    if listed.is_empty() {
        return Ok(new);
    }
    let cs = new.schema().case_sensitive();
    let in_new: HashSet<String> = new.rows().iter().map(|r| fold(new.key_of(r), cs)).collect();
    let identity = &warden.config().identity;
    let lost: Vec<&Row> = current
        .rows()
        .iter()
        .filter(|r| !in_new.contains(&fold(current.key_of(r), cs)))
        .filter(|r| listed.contains(&fold(&identity.canonical(current.key_of(r)), false)))
        .collect();
    if lost.is_empty() {
        return Ok(new);
    }
    tracing::warn!(
        data_set = new.name(),
        rows = lost.len(),
        "listed members are missing from the mapped group; keeping their rows until the push puts them back"
    );
    let mut builder =
        DataSetBuilder::new(new.name(), new.schema().clone()).with_capacity(new.len() + lost.len());
    for row in new.rows().iter().chain(lost) {
        // Rows of a built data set have unique keys, and the kept ones are not among the new.
        let _ = builder.push(row.to_vec());
    }
    Ok(builder.build())
}

/// Applies a query result: held by the shrink guard, or committed and swapped in.
pub fn apply(
    warden: &Warden,
    directory: &Directory,
    ds: &DataSetConfig,
    result: QueryResult,
) -> Result<RefreshOutcome, SyncError> {
    let source = ldap_source(ds)?;
    let current = warden
        .data_set(&ds.name)
        .ok_or_else(|| SyncError::NoSuchDataSet(ds.name.clone()))?;
    let directories = warden.directories();
    let groups = watched_groups(&directories, directory, source);
    let new = keep_listed(warden, &groups, &current, result.data_set)?;
    let taken: Vec<HashSet<String>> = groups.iter().map(|(d, g)| d.take_removals(g)).collect();
    let explained: HashSet<String> = taken.iter().flatten().cloned().collect();
    let identity = directory.identity();
    let window = directory
        .shrink_window(&ds.name)
        .filter(|w| w.started.elapsed() < source.shrink_window)
        .unwrap_or_else(|| ShrinkWindow::new(current.len()));
    // Most refreshes find what decisions already use. With nothing removed earlier in the
    // window such a result passes the guard removing nothing, which is what comparing the
    // canonical keys of both sets (O(rows)) would conclude.
    let unchanged = new == *current;
    let judged = if unchanged && window.removed.is_empty() {
        Ok(HashSet::new())
    } else {
        shrink_guard(
            window.peak_rows,
            &window.removed,
            &guard_keys(&current, identity),
            &guard_keys(&new, identity),
            &explained,
            source.max_shrink,
        )
    };
    let window_removed = match judged {
        Ok(removed) => removed,
        Err(reason) => {
            // Not used this time: keep the removals for the next refresh.
            for ((d, g), names) in groups.iter().zip(taken) {
                d.credit_removals(g, names);
            }
            let mut json = Vec::new();
            new.write_records_json(&mut json);
            let records = String::from_utf8_lossy(&json).into_owned();
            let id = hold_id(&records);
            warden.store().hold_refresh(&HeldRefresh {
                name: ds.name.clone(),
                id: id.clone(),
                records,
                current_rows: current.len() as i64,
                new_rows: new.len() as i64,
                reason: reason.clone(),
                held_at: now(),
            })?;
            tracing::warn!(data_set = %ds.name, %reason, "refresh held; accept it to apply");
            return Ok(RefreshOutcome::Held {
                id,
                current_rows: current.len(),
                new_rows: new.len(),
                reason,
            });
        }
    };
    // A refresh that passes the guard supersedes any held one.
    warden.store().drop_held(&ds.name)?;
    directory.set_shrink_window(
        &ds.name,
        ShrinkWindow {
            peak_rows: window.peak_rows.max(new.len()),
            removed: window_removed,
            ..window
        },
    );
    let (added, removed) = if unchanged {
        (Vec::new(), Vec::new())
    } else {
        (keys_missing(&new, &current), keys_missing(&current, &new))
    };
    let rows = new.len();
    let published = warden.commit_data_set(new)?;
    let snapshot_version = match published {
        Published::Swapped(v) | Published::Unchanged(v) => v,
    };
    // Where the pulled rows landed listed accounts (what `warden accounts show` reads).
    if let Err(e) = record_rows(
        warden.store(),
        SurfaceKind::DataSet,
        &ds.name,
        &added,
        &removed,
    ) {
        tracing::warn!(data_set = %ds.name, error = %e, "cannot record which accounts the pull landed");
    }
    Ok(RefreshOutcome::Applied {
        rows,
        added: added.len(),
        removed: removed.len(),
        snapshot_version,
    })
}

/// The groups a data set's queries select on, each with its directory: the source's own and
/// every union query's (on a directory the configuration has).
fn watched_groups<'d>(
    directories: &'d std::collections::HashMap<String, std::sync::Arc<Directory>>,
    directory: &'d Directory,
    source: &LdapSource,
) -> Vec<(&'d Directory, String)> {
    let own = watched_dn(&source.filter).map(|g| (directory, g));
    let union = source.union.iter().filter_map(|q| {
        let d = directories.get(&q.directory)?;
        watched_dn(&q.filter).map(|g| (d.as_ref(), g))
    });
    own.into_iter().chain(union).collect()
}

/// The group a data set's filter selects on (`(memberOf=<group DN>)`, or the in-chain rule
/// on it), which is what to watch.
pub fn watched_dn(filter: &str) -> Option<String> {
    super::nested::selected_group(filter).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys(ks: &[&str]) -> HashSet<String> {
        ks.iter().map(|k| (*k).to_string()).collect()
    }

    /// One refresh from `current` to `new` with nothing earlier in the window.
    fn once(current: &[&str], new: &[&str], explained: &[&str]) -> Result<usize, String> {
        shrink_guard(
            current.len(),
            &HashSet::new(),
            &keys(current),
            &keys(new),
            &keys(explained),
            0.5,
        )
        .map(|r| r.len())
    }

    #[test]
    fn guard_holds_emptying_and_large_drops() {
        assert_eq!(once(&[], &[], &[]), Ok(0));
        assert_eq!(once(&["a"], &["a", "b"], &[]), Ok(0));
        assert_eq!(once(&["a", "b"], &["a"], &[]), Ok(1));
        assert!(once(&["a"], &[], &[]).is_err_and(|r| r.contains("empty")));
        let ten = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
        assert!(once(&ten, &ten[..4], &[]).is_err_and(|r| r.contains("removed 6 of 10")));
        assert_eq!(once(&ten, &ten[..5], &[]), Ok(5));
    }

    /// Removals are counted by key: the same row count with other members is a removal.
    #[test]
    fn swapping_members_counts_as_removing_them() {
        assert!(once(&["a", "b"], &["c", "d"], &[]).is_err());
        assert!(once(&["a", "b", "c"], &["x", "y", "z", "w"], &[]).is_err());
        assert_eq!(
            once(&["a", "b", "c", "d"], &["a", "b", "c", "x"], &[]),
            Ok(1)
        );
    }

    /// A set emptied in steps of 40% is held at the step that passes the share, counted
    /// against the rows the window started with; a key that came back does not count.
    #[test]
    fn removals_add_up_over_the_window() {
        let ten = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
        let all = keys(&ten);
        let step1 = keys(&ten[4..]);
        let removed = shrink_guard(10, &HashSet::new(), &all, &step1, &HashSet::new(), 0.5);
        let removed = removed.unwrap();
        assert_eq!(removed.len(), 4);
        let step2 = keys(&ten[8..]);
        let held = shrink_guard(10, &removed, &step1, &step2, &HashSet::new(), 0.5);
        assert!(held.is_err_and(|r| r.contains("removed 8 of 10")));
        // Two of the first four are back: 4 of 10 removed in all.
        let back: HashSet<String> = keys(&["0", "1", "4", "5", "6", "7", "8", "9"]);
        let step2b = keys(&["0", "1", "6", "7", "8", "9"]);
        assert_eq!(
            shrink_guard(10, &removed, &back, &step2b, &HashSet::new(), 0.5).map(|r| r.len()),
            Ok(4)
        );
    }

    #[test]
    fn warden_s_own_removals_do_not_count_against_the_guard() {
        // The last member expired: warden removed it from the group itself.
        assert_eq!(once(&["a"], &[], &["a"]), Ok(0));
        let ten = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
        assert_eq!(once(&ten, &ten[..4], &ten[4..]), Ok(0));
        // Credit is by key: warden removing six others explains nothing here.
        assert!(once(&ten, &ten[..4], &["x1", "x2", "x3", "x4", "x5", "x6"]).is_err());
        // Only part of the drop is explained: the rest counts.
        assert!(once(&ten, &[], &ten[4..]).is_err_and(|r| r.contains("empty")));
        assert!(once(&ten, &ten[..2], &ten[6..]).is_ok());
        assert!(once(&ten, &ten[..2], &ten[8..]).is_err());
    }

    #[test]
    fn bare_keys_are_the_accounts_of_the_directory_s_domain() {
        assert_eq!(
            qualify_key(Some("PARTNER"), "jsmith".into()),
            "PARTNER\\jsmith"
        );
        for kept in [
            "corp\\jsmith",
            "jsmith@partner.example.test",
            "CN=jsmith,DC=x",
            "",
        ] {
            assert_eq!(qualify_key(Some("PARTNER"), kept.into()), kept);
        }
        assert_eq!(qualify_key(None, "jsmith".into()), "jsmith");
        let mut row = vec![Cell::One("jsmith".into()), Cell::One("other".into())];
        qualify_row(&mut row, 0, Some("PARTNER"));
        assert_eq!(
            row,
            [
                Cell::One("PARTNER\\jsmith".into()),
                Cell::One("other".into())
            ]
        );
        qualify_row(&mut row, 1, None);
        assert_eq!(row[1], Cell::One("other".into()));
    }

    /// A union's rows are tagged by the domain each query's directory serves: one sAMAccountName
    /// in two domains is two keys, and only the key column is qualified.
    #[test]
    fn a_union_keeps_one_name_in_two_domains_apart() {
        use crate::config::Config;
        let config = Config::parse(
            r#"
[[directories]]
name = "corp"
url = "ldaps://127.0.0.1"
bind_dn = "CN=a"
bind_password_env = "P"
base_dn = "DC=corp"
[[data_sets]]
name = "Both"
columns = [{ name = "user", key = true }, { name = "mail" }]
[data_sets.source]
type = "ldap"
directory = "corp"
base = "DC=corp"
filter = "(objectClass=user)"
[[data_sets.source.mappings]]
column = "user"
attribute = "sAMAccountName"
[[data_sets.source.mappings]]
column = "mail"
attribute = "mail"
"#,
            "t",
            std::path::Path::new("."),
        )
        .unwrap();
        let ds = &config.data_sets[0];
        let source = ldap_source(ds).unwrap();
        let entry = |dn: &str| Entry {
            dn: dn.into(),
            attrs: [
                ("sAMAccountName".to_string(), vec!["jsmith".to_string()]),
                ("mail".to_string(), vec!["js".to_string()]),
            ]
            .into_iter()
            .collect(),
            bin_attrs: Default::default(),
        };
        let batches = [
            Batch {
                domain: Some("CORP".into()),
                entries: vec![entry("CN=jsmith,DC=corp")],
            },
            Batch {
                domain: Some("PARTNER".into()),
                entries: vec![entry("CN=jsmith,DC=partner")],
            },
        ];
        let result = map_entries(&ds.name, &ds.schema, source, &batches);
        assert_eq!(result.entries, 2);
        assert_eq!(result.entries_skipped, 0);
        let set = &result.data_set;
        let mut keys: Vec<&str> = set.rows().iter().map(|r| set.key_of(r)).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["CORP\\jsmith", "PARTNER\\jsmith"]);
        let mut json = Vec::new();
        set.write_records_json(&mut json);
        assert!(String::from_utf8_lossy(&json).contains(r#""mail":"js""#));
        // Without domains (one directory that says none), the same two entries collide.
        let untagged = [Batch {
            domain: None,
            entries: vec![entry("CN=jsmith,DC=corp"), entry("CN=jsmith,DC=partner")],
        }];
        let result = map_entries(&ds.name, &ds.schema, source, &untagged);
        assert_eq!(result.data_set.len(), 1);
        assert_eq!(result.entries_skipped, 1);
    }

    #[test]
    fn watched_group_comes_from_the_filter() {
        assert_eq!(
            watched_dn("(memberOf=CN=PTR_Suspicious_Users,CN=Users,DC=corp,DC=example,DC=test)")
                .as_deref(),
            Some("CN=PTR_Suspicious_Users,CN=Users,DC=corp,DC=example,DC=test")
        );
        assert_eq!(
            watched_dn("(&(objectClass=user)(memberof=CN=g,DC=x))").as_deref(),
            Some("CN=g,DC=x")
        );
        assert_eq!(watched_dn("(objectClass=user)"), None);
    }
}
