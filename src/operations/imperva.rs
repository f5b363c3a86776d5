//! Imperva MX use cases: the push status of each configured data set, and pushing them now
//! (differences, or a full replace; a dry run says what would be sent and contacts nothing).

use super::{Actor, OperationError};
use crate::runtime::Warden;
use crate::store::{AuditRecord, PushStatus};
use crate::sync::imperva::{self, PushPlan};

/// Push status per configured data set.
pub fn status(warden: &Warden) -> Result<Vec<PushStatus>, OperationError> {
    Ok(imperva::status(warden)?)
}

/// Pushes every configured data set to the MX now. A real push is audited with its plans, or
/// as `failed` with the error.
pub async fn push_now(
    warden: &Warden,
    actor: &Actor,
    full: bool,
    dry_run: bool,
) -> Result<Vec<PushPlan>, OperationError> {
    let result = imperva::push_now(warden, full, dry_run).await;
    if !dry_run {
        let record = match &result {
            Ok(plans) => Some(AuditRecord::new(
                actor,
                "imperva.push",
                "mx",
                serde_json::to_value(plans).unwrap_or_default(),
            )),
            Err(imperva::MxError::NotConfigured | imperva::MxError::NotLoaded(_)) => None,
            Err(e) => Some(
                AuditRecord::new(
                    actor,
                    "imperva.push",
                    "mx",
                    serde_json::json!({ "error": e.to_string() }),
                )
                .with_outcome("failed"),
            ),
        };
        if let Some(record) = record {
            warden.store().append_audit(&record)?;
        }
    }
    Ok(result?)
}
