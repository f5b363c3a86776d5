//! Data-set use cases: the Imperva-style data writes of an `api` data set (replace, add,
//! delete, clear, with the MX's meanings: an add replaces a row of the same key unless told
//! not to overwrite, a delete of a key that is not there is refused whole), refreshing an LDAP
//! data set now, its test query, and accepting a refresh the shrink guard holds.
//!
//! A data write reads the current rows and commits the next ones under the runtime's update
//! lock ([`Warden::update_data_set`]): two concurrent adds both land.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Actor, OperationError};
use crate::config::{DataSetConfig, Source};
use crate::directory::Directory;
use crate::model::dataset::{DataSet, DataSetBuilder, DataSetError, Record, fold};
use crate::runtime::Warden;
use crate::store::AuditRecord;
use crate::sync::pull::{self, QueryResult, RefreshOutcome};
use crate::sync::refresh;

/// What a data write does with its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataWrite {
    /// The records become the data set.
    Replace,
    /// The records are added; a row of the same key is replaced when `overwrite`, and kept
    /// (the record ignored) otherwise — the MX's `overwrite` query parameter, true by default.
    Add { overwrite: bool },
    /// Rows with the records' keys are deleted; a key no row has refuses the whole write (the
    /// MX's IMP-10099).
    Delete,
    /// Every row is deleted (no records).
    Clear,
}

impl DataWrite {
    pub fn as_str(self) -> &'static str {
        match self {
            DataWrite::Replace => "replace",
            DataWrite::Add { .. } => "add",
            DataWrite::Delete => "delete",
            DataWrite::Clear => "clear",
        }
    }
}

/// The kind of source a data set is filled from, as configured and shown.
pub fn source_kind(source: &Source) -> &'static str {
    match source {
        Source::List { .. } => "list",
        Source::Static { .. } => "static",
        Source::Ldap(_) => "ldap",
        Source::Api { .. } => "api",
    }
}

/// A configured data set.
pub fn data_set_config(warden: &Warden, name: &str) -> Result<DataSetConfig, OperationError> {
    warden
        .config()
        .data_set(name)
        .cloned()
        .ok_or_else(|| OperationError::NoSuchDataSet(name.to_owned()))
}

/// The rows a configured data set has now.
pub fn current(warden: &Warden, name: &str) -> Result<Arc<DataSet>, OperationError> {
    data_set_config(warden, name)?;
    warden.data_set(name).ok_or_else(|| {
        OperationError::Internal(format!("data set {name:?} is configured but not loaded"))
    })
}

/// Writes `records` to the `api` data set `name`; returns the rows it has after.
pub fn write(
    warden: &Warden,
    actor: &Actor,
    name: &str,
    write: DataWrite,
    records: Vec<Record>,
) -> Result<usize, OperationError> {
    let ds = data_set_config(warden, name)?;
    if !matches!(ds.source, Source::Api { .. }) {
        return Err(OperationError::Conflict(format!(
            "data set {name:?} is filled from its {} source; only `api` data sets accept data",
            source_kind(&ds.source)
        )));
    }
    // The records alone must fit the schema (unknown column, missing key, a key twice).
    let change =
        DataSet::from_records(name, ds.schema.clone(), records).map_err(OperationError::Records)?;
    let next = |set: &DataSet| match write {
        DataWrite::Replace => Ok(change),
        DataWrite::Clear => Ok(DataSet::empty(name, set.schema().clone())),
        DataWrite::Add { overwrite } => add(set, &change, overwrite),
        DataWrite::Delete => delete(set, &change),
    };
    let audit = |set: &DataSet| {
        AuditRecord::new(
            actor,
            &format!("data_sets.{}", write.as_str()),
            name,
            serde_json::json!({ "rows": set.len() }),
        )
    };
    Ok(warden.update_data_set(name, next, audit)?.len())
}

/// The folded keys of `set`'s rows, each with its row's index.
fn keys_of(set: &DataSet) -> HashMap<String, usize> {
    let cs = set.schema().case_sensitive();
    set.rows()
        .iter()
        .enumerate()
        .map(|(i, row)| (fold(set.key_of(row), cs), i))
        .collect()
}

/// `set` with `change`'s rows added: replacing rows of the same key when `overwrite`, else
/// leaving those rows as they are.
fn add(set: &DataSet, change: &DataSet, overwrite: bool) -> Result<DataSet, OperationError> {
    let cs = set.schema().case_sensitive();
    // Only what the write needs: the change's keys to replace, or the set's keys to keep.
    let (changed, existing) = if overwrite {
        (keys_of(change), HashMap::new())
    } else {
        (HashMap::new(), keys_of(set))
    };
    let mut builder = DataSetBuilder::new(set.name(), set.schema().clone());
    for row in set.rows() {
        if !(overwrite && changed.contains_key(&fold(set.key_of(row), cs))) {
            builder
                .push(row.to_vec())
                .map_err(OperationError::Records)?;
        }
    }
    for row in change.rows() {
        if overwrite || !existing.contains_key(&fold(change.key_of(row), cs)) {
            builder
                .push(row.to_vec())
                .map_err(OperationError::Records)?;
        }
    }
    Ok(builder.build())
}

/// `set` without the rows of `change`'s keys, every one of which it must have.
fn delete(set: &DataSet, change: &DataSet) -> Result<DataSet, OperationError> {
    let cs = set.schema().case_sensitive();
    let existing = keys_of(set);
    if let Some(row) = change
        .rows()
        .iter()
        .find(|row| !existing.contains_key(&fold(change.key_of(row), cs)))
    {
        return Err(OperationError::Records(DataSetError::KeyToDeleteMissing(
            change.key_of(row).to_owned(),
        )));
    }
    let gone = keys_of(change);
    let mut builder = DataSetBuilder::new(set.name(), set.schema().clone());
    for row in set.rows() {
        if !gone.contains_key(&fold(set.key_of(row), cs)) {
            builder
                .push(row.to_vec())
                .map_err(OperationError::Records)?;
        }
    }
    Ok(builder.build())
}

/// An LDAP data set's configuration and the directory it is read from.
pub fn ldap_source(
    warden: &Warden,
    name: &str,
) -> Result<(DataSetConfig, Arc<Directory>), OperationError> {
    let ds = data_set_config(warden, name)?;
    let Source::Ldap(source) = &ds.source else {
        return Err(OperationError::Conflict(format!(
            "data set {name:?} is filled from its {} source, not LDAP; only LDAP data sets refresh",
            source_kind(&ds.source)
        )));
    };
    let directory = super::directories::directory(warden, &source.directory)?;
    Ok((ds, directory))
}

/// Refreshes an LDAP data set now (subject to the shrink guard); the request and how it went
/// are audited.
pub async fn refresh(
    warden: &Warden,
    actor: &Actor,
    name: &str,
) -> Result<RefreshOutcome, OperationError> {
    let (ds, directory) = ldap_source(warden, name)?;
    let (_, result) = refresh::full(warden, &directory, &ds).await;
    let record = match &result {
        Ok(outcome) => AuditRecord::new(
            actor,
            "data_sets.refresh",
            name,
            serde_json::to_value(outcome).unwrap_or_default(),
        ),
        Err(e) => AuditRecord::new(
            actor,
            "data_sets.refresh",
            name,
            serde_json::json!({ "error": e.to_string() }),
        )
        .with_outcome("failed"),
    };
    warden.store().append_audit(&record)?;
    result.map_err(|e| {
        OperationError::Upstream(format!("refresh failed; the last good rows stay: {e}"))
    })
}

/// Runs an LDAP data set's query and mappings without applying them.
pub async fn test_query(warden: &Warden, name: &str) -> Result<QueryResult, OperationError> {
    let (ds, directory) = ldap_source(warden, name)?;
    pull::query(warden, &directory, &ds)
        .await
        .map_err(|e| OperationError::Upstream(format!("test query failed: {e}")))
}

/// Applies the refresh the shrink guard holds, if it is the one named: `id` is the hold's id
/// (its ETag; `data-sets` lists it, a held refresh reports it), so an admin cannot accept a
/// newer hold than the one reviewed. Anything else is a conflict naming the current hold.
/// Returns the rows the data set has after.
pub fn accept(
    warden: &Warden,
    actor: &Actor,
    name: &str,
    id: Option<&str>,
) -> Result<usize, OperationError> {
    ldap_source(warden, name)?;
    let current = warden.store().held_refresh(name)?;
    let Some(current) = current else {
        return Err(OperationError::Conflict(format!(
            "no refresh of {name:?} is held"
        )));
    };
    let Some(id) = id.map(|i| i.trim().trim_matches('"')) else {
        return Err(OperationError::Conflict(format!(
            "accept names the hold it accepts: the refresh of {name:?} held now is {:?} ({}); pass its id",
            current.id, current.reason
        )));
    };
    let accepted = warden.commit(
        |store| store.accept_held_id(name, id),
        |accepted| {
            accepted.as_ref().ok().map(|_| {
                AuditRecord::new(
                    actor,
                    "data_sets.accept",
                    name,
                    serde_json::json!({ "id": id, "rows": current.new_rows }),
                )
            })
        },
    )?;
    match accepted {
        Ok(_) => Ok(warden.data_set(name).map_or(0, |d| d.len())),
        Err(None) => Err(OperationError::Conflict(format!(
            "no refresh of {name:?} is held"
        ))),
        Err(Some(now_held)) => Err(OperationError::Conflict(format!(
            "hold {id:?} of {name:?} is not the one held now: {now_held:?} is; review it and accept that id"
        ))),
    }
}
