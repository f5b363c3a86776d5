//! Configuration use cases: reload the configuration in force from where it came from. The
//! attempt is audited whether it applied or not (and why not).

use super::{Actor, OperationError};
use crate::runtime::{Reloaded, Warden};
use crate::store::AuditRecord;

/// Reads the configuration again and applies it atomically (see
/// [`Warden::reload`](crate::runtime::Warden::reload)); audited as `config.reload`.
pub fn reload(warden: &Warden, actor: &Actor) -> Result<Reloaded, OperationError> {
    let result = warden.reload();
    let record = match &result {
        Ok(reloaded) => AuditRecord::new(
            actor,
            "config.reload",
            &warden.config_origin(),
            serde_json::to_value(reloaded).unwrap_or_default(),
        ),
        Err(e) => AuditRecord::new(
            actor,
            "config.reload",
            &warden.config_origin(),
            serde_json::json!({ "error": e.to_string() }),
        )
        .with_outcome("rejected"),
    };
    if let Err(e) = warden.store().append_audit(&record) {
        tracing::error!(error = %e, "cannot write the audit record of a config reload");
    }
    Ok(result?)
}
