//! List use cases: create a list, add and remove members, and take expired members off their
//! lists. A member change is audited in its own transaction and in the snapshot (and so on
//! its way to the mapped groups) before the call returns.

use super::{Actor, OperationError, expiry};
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
    use super::*;
    use crate::config::Config;
    use crate::decide::{Outcome, Request};
    use crate::store::{AuditFilter, Store};

    fn warden() -> Warden {
        let config = Config::embedded_default().unwrap();
        Warden::with_store(config, std::sync::Arc::new(Store::in_memory().unwrap())).unwrap()
    }

    /// A library caller gets what the CLI and HTTP get: the change audited with its actor and
    /// in the snapshot when the call returns, and a decision counted by `Warden::decide`.
    #[test]
    fn a_member_added_in_process_is_audited_blocks_and_is_counted() {
        let warden = warden();
        let actor = Actor::new("lib:test", Some("in-process".into()));
        let req = MemberRequest {
            principal: r"CORP\alice".into(),
            reason: "INC-1".into(),
            ..MemberRequest::default()
        };
        let done = add_member(&warden, &actor, "Suspicious Users", &req).unwrap();
        assert_eq!(done.added, Added::New);
        let request = Request {
            service: "orders",
            db_user: [r"corp\ALICE"].into_iter().collect(),
            ..Request::default()
        };
        let snapshot = warden.engine().load();
        assert_eq!(snapshot.version(), done.snapshot_version);
        assert_eq!(warden.decide(&snapshot, &request).outcome, Outcome::Block);
        let mut metrics = String::new();
        warden.metrics().render(&mut metrics);
        assert!(
            metrics.contains("warden_decisions_total{outcome=\"block\"} 1"),
            "{metrics}"
        );
        let audit = warden.store().audit(&AuditFilter::default()).unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(
            (audit[0].actor.as_str(), audit[0].action.as_str()),
            ("lib:test", "lists.add")
        );
        assert_eq!(audit[0].source.as_deref(), Some("in-process"));
        assert!(remove_member(&warden, &actor, "Suspicious Users", r"corp\alice").unwrap());
        assert!(!remove_member(&warden, &actor, "Suspicious Users", r"corp\alice").unwrap());
        assert_eq!(
            warden.store().audit(&AuditFilter::default()).unwrap().len(),
            2
        );
    }

    #[test]
    fn bad_input_is_refused_by_field_and_writes_nothing() {
        let warden = warden();
        let actor = Actor::system("test");
        let bad = |principal: &str, expires_in: Option<&str>| {
            let req = MemberRequest {
                principal: principal.into(),
                expires_in: expires_in.map(str::to_owned),
                ..MemberRequest::default()
            };
            add_member(&warden, &actor, "Suspicious Users", &req).unwrap_err()
        };
        assert!(
            matches!(bad("CN=", None), OperationError::Invalid { field, .. } if field == "principal")
        );
        assert!(matches!(
            bad("alice", Some("soon")),
            OperationError::Invalid { .. }
        ));
        let req = MemberRequest {
            principal: "alice".into(),
            ..MemberRequest::default()
        };
        assert!(matches!(
            add_member(&warden, &actor, "No Such List", &req),
            Err(OperationError::NoSuchList(_))
        ));
        assert!(
            warden
                .store()
                .audit(&AuditFilter::default())
                .unwrap()
                .is_empty()
        );
        assert!(create_list(&warden, &actor, "", "").is_err());
        assert!(matches!(
            create_list(&warden, &actor, "Suspicious Users", ""),
            Err(OperationError::Conflict(_))
        ));
    }
}
