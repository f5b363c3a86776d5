//! One sync run at a time — and resolving a principal in its directory ([`accounts`]): a **push** ([`push`]: a list reconciled into the AD group it is
//! mapped to), a **pull** ([`pull`]: an LDAP query, through attribute mappings, into a data
//! set; [`nested`] resolves a nested data set's query, [`incremental`] pulls only the changes; [`refresh`] runs one either way and records it), an **MX push** ([`imperva`]: data sets out to an Imperva MX), and directory status
//! from the recent runs ([`directory_statuses`]). The loops that schedule them are
//! `services`'; the "now" use cases are `operations`'.
//!
//! Both directions are idempotent and at-least-once: a run computes the difference between
//! what should be and what is, applies it, and records a [`RecentUpdate`]; a failed run is
//! retried with backoff by its service and changes nothing it did not finish. A failed or
//! partial pull never replaces the last good data set.

pub mod accounts;
pub mod database;
pub mod imperva;
pub mod incremental;
mod metrics;
pub mod nested;
pub mod pull;
pub mod push;
pub mod refresh;

mod status;

pub use metrics::SyncMetrics;
pub use status::{DirectoryStatus, HEALTH_WINDOW, Health, directory_statuses, health};

use crate::base::time::now_ms;
use crate::directory::{Directory, DirectoryError};
use crate::runtime::WardenError;
use crate::store::{RecentUpdate, StoreError};

/// Errors from push and pull runs. None carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("directory {directory}: {source}")]
    Directory {
        directory: String,
        #[source]
        source: DirectoryError,
    },
    #[error(
        "directory {directory}: group {group_dn} does not exist; create it in Active Directory \
         (warden only manages its members) or fix mappings.group_dn"
    )]
    GroupNotFound { directory: String, group_dn: String },
    #[error(transparent)]
    Warden(#[from] WardenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no directory named {0:?} in the configuration")]
    NoSuchDirectory(String),
    #[error("no data set named {0:?} in the configuration")]
    NoSuchDataSet(String),
    #[error("data set {0:?} is not filled from LDAP (source type is not \"ldap\")")]
    NotLdap(String),
    #[error(
        "data set {data_set:?}: {reason}; warden expands nesting itself on this directory and \
         will not apply a pull that misses members (flatten the groups, or use a server with \
         LDAP_MATCHING_RULE_IN_CHAIN)"
    )]
    NestingTooLarge { data_set: String, reason: String },
    #[error(
        "data set {0:?} is incremental but its filter selects on no group; incremental pulls \
         follow the changes of the group in (memberOf=<group DN>)"
    )]
    NotIncremental(String),
}

impl SyncError {
    /// A directory error, named by the directory it came from.
    pub fn directory(directory: &Directory, source: DirectoryError) -> SyncError {
        SyncError::Directory {
            directory: directory.name().to_owned(),
            source,
        }
    }

    /// Whether the directory connection should be dropped and re-established.
    pub fn is_connection_problem(&self) -> bool {
        matches!(self, SyncError::Directory { source, .. } if source.is_transient())
    }
}

/// Builds the record of a run that failed before it changed anything.
pub(crate) fn failed_update(
    directory: &str,
    kind: &str,
    target: &str,
    started_at_ms: i64,
    error: &SyncError,
) -> RecentUpdate {
    RecentUpdate {
        directory: directory.to_string(),
        kind: kind.to_string(),
        target: target.to_string(),
        started_at_ms,
        duration_ms: now_ms() - started_at_ms,
        added: 0,
        removed: 0,
        unresolved: Vec::new(),
        error: Some(error.to_string()),
    }
}
