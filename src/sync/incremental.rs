//! Incremental pulls of an `ldap` data set (`incremental = true`): the refresh costs what
//! changed, not the size of the group.
//!
//! A **full pull** takes a DirSync cookie for "now" (no objects read), then runs the query,
//! and keeps every matched entry's row by DN in the directory's [`PullState`]. An
//! **incremental pull** asks DirSync which `member` values of the chain's groups were added or
//! removed since the cookie, reads just those entries again with the data set's filter (a
//! match is a row, anything else is not), and applies the state. Both go through
//! [`pull::apply`], so the shrink guard and the listed-member rows hold the same way.
//!
//! A full pull runs every `full_refresh_interval`, on "refresh now", and on any doubt: no
//! cookie (first pull since start — the state is in memory, so a restart loses it), another
//! DC or a restored one (`dsServiceName`, `invocationId`, `highestCommittedUSN` went back),
//! a changed chain of nested groups, or an incremental pull that failed. Its rows are compared
//! with the incremental state first: rows it had wrong are logged, counted
//! (`warden_incremental_mismatches_total`) and repaired by the full result. An attribute
//! change of a member account (a renamed UPN) is not a `member` change, so it reaches the set
//! at the next full pull, as such a mismatch.
//!
//! Where DirSync is not available (not advertised, or refused for the bind account) the
//! groups' `uSNChanged` stands in: unchanged since the last pull means nothing to do, moved
//! means a full pull.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::SyncError;
use super::SyncMetrics;
use super::pull::{self, RefreshOutcome, attributes, build_rows, ldap_source, map_entry, search};
use crate::base::dn::parse_dn;
use crate::config::{DataSetConfig, LdapSource, Scope};
use crate::directory::{
    DcIdentity, Directory, DirectoryClient, DirectoryError, GroupChain, PullState, RootDse,
};
use crate::model::dataset::Row;
use crate::model::pattern::MappingStats;
use crate::runtime::Warden;

/// More changed members than this in one incremental pull: a full pull reads them as cheaply.
pub const MAX_CHANGES: usize = 5_000;

/// What a refresh is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The changes since the last pull, if they can be trusted.
    Changes,
    /// A full pull ("refresh now").
    Full,
}

/// Runs one pull of an incremental data set; returns its outcome and kind (`full`,
/// `incremental`).
pub async fn pull(
    warden: &Warden,
    directory: &Directory,
    ds: &DataSetConfig,
    want: Want,
) -> Result<(RefreshOutcome, &'static str), SyncError> {
    let source = ldap_source(ds)?;
    let dir_err = |e| SyncError::directory(directory, e);
    let client = directory.client().await.map_err(dir_err)?;
    let root = client.root_dse().await.map_err(dir_err)?;
    let dc = client.dc_identity(&root).await.map_err(dir_err)?;
    // A failed pull leaves no state behind: the next one is full.
    let mut state = directory.take_pull_state(&ds.name);
    let mut doubt = match &state {
        None => Some("no cookie (the first pull since warden started)".to_owned()),
        Some(s) => s.dc.doubt(&dc),
    };
    if doubt.is_none()
        && let Some(s) = state.as_mut()
    {
        match changes(warden, directory, &client, ds, source, &root, s).await {
            Ok(None) => {}
            Ok(Some(why)) => doubt = Some(why),
            Err(e) => {
                tracing::warn!(data_set = %ds.name, error = %e, "incremental pull failed; pulling in full");
                doubt = Some(format!("the incremental pull failed: {e}"));
            }
        }
    }
    let due = state
        .as_ref()
        .is_some_and(|s| s.last_full.elapsed() >= source.full_refresh_interval);
    let why = match doubt {
        Some(why) => {
            // Not up to date: nothing to compare the full result with.
            state = None;
            why
        }
        None if due => "full_refresh_interval".to_owned(),
        None if want == Want::Full => "a full refresh was asked for".to_owned(),
        None => {
            let Some(s) = state else {
                return Err(SyncError::NotIncremental(ds.name.clone()));
            };
            let result = build_state(ds, &s);
            let pulls = s.incremental_pulls;
            directory.put_pull_state(&ds.name, s);
            let outcome = pull::apply(warden, directory, ds, result)?;
            tracing::debug!(data_set = %ds.name, pulls_since_full = pulls, "incremental pull applied");
            return Ok((outcome, "incremental"));
        }
    };
    let outcome = full(
        warden, directory, &client, ds, source, &root, dc, state, &why,
    )
    .await?;
    Ok((outcome, "full"))
}

/// The data set the state's rows make.
fn build_state(ds: &DataSetConfig, state: &PullState) -> pull::QueryResult {
    build_rows(
        &ds.name,
        &ds.schema,
        state
            .rows
            .iter()
            .map(|(dn, row)| (dn.as_str(), row.to_vec())),
        0,
    )
}

/// The chain of groups the data set follows, read now.
async fn current_chain(
    warden: &Warden,
    directory: &Directory,
    client: &DirectoryClient,
    ds: &DataSetConfig,
    source: &LdapSource,
) -> Result<(String, GroupChain), SyncError> {
    let resolved = super::nested::resolve(
        directory,
        client,
        &warden.metrics().get::<SyncMetrics>(),
        &ds.name,
        source,
    )
    .await?;
    let chain = resolved
        .chain
        .ok_or_else(|| SyncError::NotIncremental(ds.name.clone()))?;
    Ok((resolved.filter, chain))
}

/// Applies the changes since the state's cookie to its rows. `Ok(Some(why))` when they
/// cannot be followed incrementally and a full pull is needed.
async fn changes(
    warden: &Warden,
    directory: &Directory,
    client: &DirectoryClient,
    ds: &DataSetConfig,
    source: &LdapSource,
    root: &RootDse,
    state: &mut PullState,
) -> Result<Option<String>, SyncError> {
    let dir_err = |e| SyncError::directory(directory, e);
    let domain = directory.config().domain.as_deref();
    let (filter, chain) = current_chain(warden, directory, client, ds, source).await?;
    if !chain.same_groups(&state.chain) {
        return Ok(Some("the chain of nested groups changed".into()));
    }
    let Some(cookie) = state.cookie.clone() else {
        let usns = group_usns(client, &chain).await.map_err(dir_err)?;
        if usns != state.group_usns {
            return Ok(Some("a group's uSNChanged moved (no DirSync here)".into()));
        }
        state.incremental_pulls += 1;
        return Ok(None);
    };
    let nc = naming_context(directory, root);
    let delta = client
        .member_changes(&nc, &chain.groups, cookie)
        .await
        .map_err(dir_err)?;
    let mut changed: Vec<String> = delta.changed;
    let mut seen = HashSet::new();
    changed.retain(|dn| seen.insert(dn.to_ascii_lowercase()));
    if changed.len() > MAX_CHANGES {
        return Ok(Some(format!(
            "{} members changed (more than {MAX_CHANGES})",
            changed.len()
        )));
    }
    let attrs = attributes(source);
    let mut stats = MappingStats::default();
    for dn in &changed {
        let key = dn.to_ascii_lowercase();
        let entry = if in_scope(source, dn) {
            client
                .read_entry(dn, &filter, &attrs, None)
                .await
                .map_err(dir_err)?
        } else {
            None
        };
        match entry {
            Some(e) => {
                let row: Row =
                    map_entry(&ds.schema, source, &e, domain, &mut stats).into_boxed_slice();
                state.rows.insert(key, row);
            }
            None => {
                state.rows.remove(&key);
            }
        }
    }
    tracing::info!(data_set = %ds.name, changed = changed.len(), "incremental pull: members changed since the cookie");
    state.cookie = Some(delta.cookie);
    state.incremental_pulls += 1;
    Ok(None)
}

/// Whether `dn` lies where the data set's query searches.
fn in_scope(source: &LdapSource, dn: &str) -> bool {
    let (Ok(dn), Ok(base)) = (parse_dn(dn), parse_dn(&source.base)) else {
        return false;
    };
    match source.scope {
        Scope::Base => dn == base,
        Scope::One => dn.parent().is_some_and(|p| p == base),
        Scope::Sub => dn.is_within(&base),
    }
}

/// The naming context a DirSync search starts at: the rootDSE's, else the directory's base.
fn naming_context(directory: &Directory, root: &RootDse) -> String {
    root.default_naming_context
        .clone()
        .unwrap_or_else(|| directory.config().base_dn.clone())
}

async fn group_usns(
    client: &DirectoryClient,
    chain: &GroupChain,
) -> Result<Vec<u64>, DirectoryError> {
    let mut usns = Vec::with_capacity(chain.groups.len());
    for g in &chain.groups {
        usns.push(client.poll_usn_changed(g).await?);
    }
    Ok(usns)
}

/// A full pull: a cookie (or the groups' `uSNChanged`) first, then the query; the state is
/// compared with its rows and replaced by them.
// The pull's context, passed once; a struct would only rename the arguments.
#[allow(clippy::too_many_arguments)]
async fn full(
    warden: &Warden,
    directory: &Directory,
    client: &DirectoryClient,
    ds: &DataSetConfig,
    source: &LdapSource,
    root: &RootDse,
    dc: DcIdentity,
    before: Option<PullState>,
    why: &str,
) -> Result<RefreshOutcome, SyncError> {
    let dir_err = |e| SyncError::directory(directory, e);
    let domain = directory.config().domain.as_deref();
    let started = Instant::now();
    let (_, chain) = current_chain(warden, directory, client, ds, source).await?;
    let cookie = if root.has_dirsync() {
        match client
            .dirsync_cookie(&naming_context(directory, root))
            .await
        {
            Ok(c) => Some(c),
            Err(e) if e.is_transient() => return Err(dir_err(e)),
            Err(e) => {
                tracing::warn!(data_set = %ds.name, error = %e, "DirSync refused; following the groups' uSNChanged instead");
                None
            }
        }
    } else {
        None
    };
    let group_usns = if cookie.is_none() {
        group_usns(client, &chain).await.map_err(dir_err)?
    } else {
        Vec::new()
    };
    let (entries, _) = search(warden, directory, client, ds).await?;
    let mut stats = MappingStats::default();
    let rows: HashMap<String, Row> = entries
        .iter()
        .map(|e| {
            let row = map_entry(&ds.schema, source, e, domain, &mut stats).into_boxed_slice();
            (e.dn.to_ascii_lowercase(), row)
        })
        .collect();
    if let Some(before) = &before {
        let wrong = mismatches(&before.rows, &rows);
        if wrong > 0 {
            tracing::warn!(
                data_set = %ds.name,
                rows = wrong,
                incremental_pulls = before.incremental_pulls,
                "the full pull found rows the incremental state had wrong; the full result repairs them"
            );
            warden
                .metrics()
                .get::<SyncMetrics>()
                .incremental_mismatch(&ds.name, wrong);
        }
    }
    let state = PullState {
        cookie,
        group_usns,
        dc,
        chain,
        rows,
        last_full: Instant::now(),
        incremental_pulls: 0,
    };
    let mut result = build_state(ds, &state);
    result.values_dropped = stats.values_dropped;
    tracing::info!(data_set = %ds.name, reason = why, entries = state.rows.len(), took = ?started.elapsed(), dirsync = state.cookie.is_some(), "full pull");
    directory.put_pull_state(&ds.name, state);
    pull::apply(warden, directory, ds, result)
}

/// DNs whose row differs between the incremental state and the full result.
fn mismatches(incremental: &HashMap<String, Row>, full: &HashMap<String, Row>) -> usize {
    let missing = full
        .keys()
        .filter(|k| !incremental.contains_key(*k))
        .count();
    let wrong = incremental
        .iter()
        .filter(|(k, row)| full.get(*k) != Some(row))
        .count();
    missing + wrong
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dataset::Cell;

    fn rows(pairs: &[(&str, &str)]) -> HashMap<String, Row> {
        pairs
            .iter()
            .map(|(dn, v)| {
                let row: Row = vec![Cell::from_values(vec![(*v).to_owned()])].into_boxed_slice();
                ((*dn).to_owned(), row)
            })
            .collect()
    }

    #[test]
    fn mismatches_count_rows_missing_extra_and_changed() {
        let full = rows(&[("a", "1"), ("b", "2"), ("c", "3")]);
        assert_eq!(mismatches(&full.clone(), &full), 0);
        assert_eq!(mismatches(&rows(&[("a", "1"), ("b", "2")]), &full), 1);
        assert_eq!(
            mismatches(
                &rows(&[("a", "1"), ("b", "x"), ("c", "3"), ("d", "4")]),
                &full
            ),
            2
        );
    }
}
