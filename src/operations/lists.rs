//! List use cases: create a list, add and remove members, and take expired members off their
//! lists. A member change is audited in its own transaction and in the snapshot (and so on
//! its way to the mapped groups) before the call returns.

use super::{Actor, OperationError, check_text, expiry};
use crate::base::principal::Principal;
use crate::base::time::now;
use crate::runtime::Warden;
use crate::store::{Added, AuditRecord, NewMember};

/// Longest list name.
pub const MAX_LIST_NAME: usize = 256;

/// Creates a list; [`OperationError::Conflict`] if it exists.
pub fn create_list(
    warden: &Warden,
    actor: &Actor,
    name: &str,
    description: &str,
) -> Result<String, OperationError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_LIST_NAME || name.chars().any(char::is_control) {
        return Err(OperationError::invalid(
            "name",
            format!("1 to {MAX_LIST_NAME} characters, no control characters"),
        ));
    }
    let created = warden.store().audited(
        |store| store.ensure_list(name, description),
        |created| {
            created.then(|| AuditRecord::new(actor, "lists.create", name, serde_json::json!({})))
        },
    )?;
    if !created {
        return Err(OperationError::Conflict(format!(
            "list {name:?} already exists"
        )));
    }
    Ok(name.to_owned())
}

/// A member to put on a list, as a person or a client gives it.
#[derive(Debug, Clone, Default)]
pub struct MemberRequest {
    /// `DOMAIN\user`, `user@realm`, a sAMAccountName or a DN.
    pub principal: String,
    pub reason: String,
    pub incident: Option<String>,
    /// RFC 3339 …
    pub expires_at: Option<String>,
    /// … or a duration such as `7d`.
    pub expires_in: Option<String>,
    /// Who the member is recorded as added by; the actor when absent.
    pub added_by: Option<String>,
}

/// What [`add_member`] did.
#[derive(Debug, Clone)]
pub struct MemberAdded {
    pub member: NewMember,
    pub added: Added,
    /// The snapshot in force once the member is in it.
    pub snapshot_version: u64,
}

/// Puts a principal on a list (or updates its details if it is there).
pub fn add_member(
    warden: &Warden,
    actor: &Actor,
    list: &str,
    req: &MemberRequest,
) -> Result<MemberAdded, OperationError> {
    Principal::parse(&req.principal)
        .map_err(|e| OperationError::invalid("principal", e.to_string()))?;
    // The same length and control-character checks as incidents and responses: these land
    // in the audit log, listings, CSV and logs.
    check_text("reason", &req.reason, false)?;
    if let Some(incident) = &req.incident {
        check_text("incident", incident, false)?;
    }
    if let Some(added_by) = &req.added_by {
        check_text("added_by", added_by, false)?;
    }
    let member = NewMember {
        principal: req.principal.clone(),
        reason: req.reason.clone(),
        incident: req.incident.clone(),
        added_by: req.added_by.clone().unwrap_or_else(|| actor.name.clone()),
        expires_at: expiry(
            req.expires_at.as_deref(),
            req.expires_in.as_deref(),
            "expires_at`/`expires_in",
        )?,
    };
    let added = warden.commit(
        |store| store.add_member(list, &member),
        |_| {
            AuditRecord::new(
                actor,
                "lists.add",
                list,
                serde_json::json!({
                    "principal": member.principal,
                    "reason": member.reason,
                    "incident": member.incident,
                    "expires_at": member.expires_at,
                }),
            )
        },
    )?;
    Ok(MemberAdded {
        member,
        added,
        snapshot_version: warden.engine().load().version(),
    })
}

/// Takes a principal off a list (matched case-insensitively); returns whether it was there.
/// Nothing is written or audited when it was not.
pub fn remove_member(
    warden: &Warden,
    actor: &Actor,
    list: &str,
    principal: &str,
) -> Result<bool, OperationError> {
    let removed = warden.commit(
        |store| store.remove_member(list, principal),
        |removed| {
            removed.then(|| {
                AuditRecord::new(
                    actor,
                    "lists.remove",
                    list,
                    serde_json::json!({ "principal": principal }),
                )
            })
        },
    )?;
    Ok(removed)
}

/// Takes every member whose expiry has passed off its list, each removal audited as `system`
/// in the same transaction, and republishes. Returns how many left.
pub fn expire_members(warden: &Warden) -> Result<usize, OperationError> {
    let now = now();
    if !warden.store().has_expired(now)? {
        return Ok(0);
    }
    let system = Actor::system("expiry");
    let expired = warden.store().audited(
        |store| store.remove_expired(now),
        |expired| {
            expired
                .iter()
                .map(|(list, principal)| {
                    AuditRecord::new(
                        &system,
                        "lists.expire",
                        list,
                        serde_json::json!({ "principal": principal }),
                    )
                })
                .collect::<Vec<_>>()
        },
    );
    let expired = expired?;
    if expired.is_empty() {
        return Ok(0);
    }
    warden.reload_from_store()?;
    tracing::info!(members = expired.len(), "expired members left their lists");
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::store::Store;

    fn warden() -> Warden {
        let config = Config::parse(
            "[[lists]]\nname = \"Suspicious Users\"\n",
            "test.toml",
            std::path::Path::new("/tmp"),
        )
        .unwrap();
        Warden::with_store(config, Arc::new(Store::in_memory().unwrap())).unwrap()
    }

    #[test]
    fn member_reason_incident_and_added_by_refuse_control_characters_and_excess_length() {
        let w = warden();
        let actor = Actor::new("test".to_owned(), None);
        let base = MemberRequest {
            principal: r"corp\alice".into(),
            reason: "phishing".into(),
            ..MemberRequest::default()
        };
        let long = "x".repeat(super::super::MAX_TEXT + 1);
        let bad = [
            (
                "reason",
                MemberRequest {
                    reason: "a\nforged line".into(),
                    ..base.clone()
                },
            ),
            (
                "reason",
                MemberRequest {
                    reason: long.clone(),
                    ..base.clone()
                },
            ),
            (
                "incident",
                MemberRequest {
                    incident: Some("INC-1\r\nx".into()),
                    ..base.clone()
                },
            ),
            (
                "added_by",
                MemberRequest {
                    added_by: Some("eve\u{1b}[2J".into()),
                    ..base.clone()
                },
            ),
        ];
        for (field, req) in bad {
            let e = add_member(&w, &actor, "Suspicious Users", &req).unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
        assert!(w.store().members("Suspicious Users").unwrap().is_empty());
        add_member(&w, &actor, "Suspicious Users", &base).unwrap();
        assert_eq!(w.store().members("Suspicious Users").unwrap().len(), 1);
    }
}
