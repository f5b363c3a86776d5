//! Console sign-in use cases: a sign-in (by API key or single sign-on) and a sign-out are
//! audited with the analyst as the actor and their address, like every other change. The
//! sessions themselves live in memory in the front end (`http::console::session`); failed
//! sign-ins are not recorded here but counted through the aggregated refusals
//! ([`crate::auth::denials`]), as failed keys are.

use super::{Actor, OperationError};
use crate::runtime::Warden;
use crate::store::AuditRecord;

/// Records that `actor` signed in to the console by `method` (`key` or `sso`) with `scopes`.
pub fn signed_in(
    warden: &Warden,
    actor: &Actor,
    method: &str,
    scopes: &[&str],
) -> Result<(), OperationError> {
    let record = AuditRecord::new(
        actor,
        "console.sign_in",
        &actor.name,
        serde_json::json!({ "method": method, "scopes": scopes }),
    );
    warden.store().append_audit(&record)?;
    Ok(())
}

/// Records that `actor` signed out of the console.
pub fn signed_out(warden: &Warden, actor: &Actor) -> Result<(), OperationError> {
    let record = AuditRecord::new(
        actor,
        "console.sign_out",
        &actor.name,
        serde_json::json!({}),
    );
    warden.store().append_audit(&record)?;
    Ok(())
}
