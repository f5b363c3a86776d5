//! Operations: every use case that changes warden, written once. The CLI, the HTTP gateway
//! (and every later front end) are adapters over these functions: they parse, call, render.
//!
//! Each operation takes the [`Actor`] who asked, validates its untrusted input once, and
//! writes its audit record in the same store transaction as the change ([`Store::audited`],
//! through [`Warden::commit`] and [`Warden::update_data_set`]); a change that reaches
//! decisions is in the snapshot before the operation returns. Triggers of a sync run ("sync
//! now", "refresh now", the Imperva MX push) record the request and its outcome; what the run
//! changed is recorded as a recent update by the run itself.
//!
//! [`Store::audited`]: crate::store::Store::audited
//! [`Warden::commit`]: crate::runtime::Warden::commit
//! [`Warden::update_data_set`]: crate::runtime::Warden::update_data_set

pub mod accounts;
pub mod config;
pub mod console;
pub mod data_sets;
pub mod databases;
pub mod directories;
pub mod imperva;
pub mod incidents;
pub mod keys;
pub mod lists;
mod metrics;

pub use crate::base::actor::Actor;
pub use metrics::ExpiryMetrics;

use crate::auth::KeyError;
use crate::config::ConfigError;
use crate::model::dataset::DataSetError;
use crate::runtime::{ReloadError, WardenError};
use crate::store::StoreError;
use crate::store::incidents::incident_ref;
use crate::sync::SyncError;
use crate::sync::imperva::MxError;

/// Why an operation was refused or failed. The first variants are the caller's to fix (each
/// says which field, or what does not exist); [`OperationError::Upstream`] is a directory or
/// MX that failed; the rest are warden's own.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// A field of the request is invalid.
    #[error("field `{field}`: {message}")]
    Invalid { field: String, message: String },
    /// Records written to a data set do not fit its schema.
    #[error(transparent)]
    Records(DataSetError),
    #[error("no list named {0:?}")]
    NoSuchList(String),
    #[error("no data set named {0:?}")]
    NoSuchDataSet(String),
    #[error("no directory named {0:?}")]
    NoSuchDirectory(String),
    #[error("no database named {0:?}")]
    NoSuchDatabase(String),
    #[error("no incident {}", incident_ref(*.0))]
    NoSuchIncident(i64),
    #[error("no active API key with id {0:?}")]
    NoSuchKey(String),
    /// The request contradicts the current state (the list exists, nothing is held, the data
    /// set is not of the kind the request needs).
    #[error("{0}")]
    Conflict(String),
    /// A configuration that was read but not applied (the running one stays): every problem
    /// with its key path, or why it could not be applied.
    #[error("{detail}{}", problems(errors))]
    Rejected {
        detail: String,
        errors: Vec<ConfigError>,
    },
    /// A directory or the MX failed; nothing was lost, the last good state stays.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Warden(WardenError),
    #[error("{0}")]
    Internal(String),
}

/// Every problem of a rejected configuration, one per line.
fn problems(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

impl OperationError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> OperationError {
        OperationError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for OperationError {
    fn from(e: StoreError) -> OperationError {
        match e {
            StoreError::NoSuchList(name) => OperationError::NoSuchList(name),
            StoreError::NoSuchIncident(id) => OperationError::NoSuchIncident(id),
            StoreError::Principal(p) => OperationError::invalid("principal", p.to_string()),
            other => OperationError::Store(other),
        }
    }
}

impl From<WardenError> for OperationError {
    fn from(e: WardenError) -> OperationError {
        match e {
            WardenError::Store(s) => s.into(),
            WardenError::NoSuchDataSet(name) => OperationError::NoSuchDataSet(name),
            other => OperationError::Warden(other),
        }
    }
}

impl From<KeyError> for OperationError {
    fn from(e: KeyError) -> OperationError {
        match e {
            KeyError::NoSuchKey(id) => OperationError::NoSuchKey(id),
            KeyError::UnknownScope(_) | KeyError::NoScope => {
                OperationError::invalid("scopes", e.to_string())
            }
            KeyError::NoName => OperationError::invalid("name", e.to_string()),
            KeyError::Store(s) => s.into(),
            KeyError::Random => OperationError::Internal(e.to_string()),
        }
    }
}

impl From<SyncError> for OperationError {
    fn from(e: SyncError) -> OperationError {
        match e {
            SyncError::Store(s) => s.into(),
            SyncError::Warden(w) => w.into(),
            SyncError::NoSuchDirectory(name) => OperationError::NoSuchDirectory(name),
            SyncError::NoSuchDataSet(name) => OperationError::NoSuchDataSet(name),
            SyncError::NotLdap(name) => OperationError::Conflict(format!(
                "data set {name:?} is not filled from LDAP; only LDAP data sets refresh"
            )),
            other => OperationError::Upstream(other.to_string()),
        }
    }
}

impl From<MxError> for OperationError {
    fn from(e: MxError) -> OperationError {
        match e {
            MxError::NotConfigured => OperationError::Conflict(
                "no [imperva] section in the configuration; nothing to push to".to_owned(),
            ),
            MxError::NotLoaded(_) => OperationError::Conflict(e.to_string()),
            MxError::Store(s) => s.into(),
            other => OperationError::Upstream(format!("push to the MX failed: {other}")),
        }
    }
}

impl From<ReloadError> for OperationError {
    fn from(e: ReloadError) -> OperationError {
        match e {
            ReloadError::Invalid(e) => OperationError::Rejected {
                detail: format!("{} has {} problem(s)", e.origin, e.errors.len()),
                errors: e.errors,
            },
            e @ ReloadError::Apply(_) => OperationError::Rejected {
                detail: e.to_string(),
                errors: Vec::new(),
            },
            ReloadError::NoSource => OperationError::Conflict(e.to_string()),
        }
    }
}

/// Audits a "sync now" request on `target`: how many runs it started, and outcome `failed` if
/// any of them failed (what each run changed is its own recent update).
pub(crate) fn audit_sync_now(
    warden: &crate::runtime::Warden,
    actor: &Actor,
    action: &str,
    target: &str,
    runs: usize,
    failed: bool,
) -> Result<(), OperationError> {
    let record = crate::store::AuditRecord::new(
        actor,
        action,
        target,
        serde_json::json!({ "runs": runs, "failed": failed }),
    );
    let record = if failed {
        record.with_outcome("failed")
    } else {
        record
    };
    warden.store().append_audit(&record)?;
    Ok(())
}

/// Most bytes of a free-text field (title, source, reason, alert id).
pub const MAX_TEXT: usize = 1024;

/// Checks a free-text field: not empty when `required`, at most [`MAX_TEXT`] bytes, no control
/// characters.
pub(crate) fn check_text(field: &str, text: &str, required: bool) -> Result<(), OperationError> {
    if required && text.trim().is_empty() {
        return Err(OperationError::invalid(field, "must not be empty"));
    }
    if text.len() > MAX_TEXT {
        return Err(OperationError::invalid(
            field,
            format!("at most {MAX_TEXT} bytes"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(OperationError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// An expiry from an RFC 3339 time or a duration, in the future (see [`crate::base::time::expiry`]).
pub(crate) fn expiry(
    at: Option<&str>,
    after: Option<&str>,
    field: &str,
) -> Result<Option<i64>, OperationError> {
    crate::base::time::expiry(at, after, crate::base::time::now())
        .map_err(|e| OperationError::invalid(field, e))
}
