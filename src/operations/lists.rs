//! List use cases: create a list, add and remove members, the expiry sweep that deactivates
//! expired members (and holds a sweep too large for a list), and releasing a held sweep. A
//! member change is audited in its own transaction and in the snapshot (and so on its way to
//! the mapped groups) before the call returns.

use super::{Actor, OperationError, accounts, check_text, expiry};
use crate::base::account::Account;
use crate::base::principal::Principal;
use crate::base::time::now;
use crate::runtime::Warden;
use crate::store::{Added, AuditRecord, ExpiryHold, MemberRef, NewMember, Released};

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
    /// The account the principal named, as stored (its names include the ones known before).
    pub account: Account,
    /// The snapshot in force once the member is in it.
    pub snapshot_version: u64,
}

/// Puts the account a principal names on a list: a new member, or another membership of the
/// member it is already (by this or another spelling) — never a second member.
pub fn add_member(
    warden: &Warden,
    actor: &Actor,
    list: &str,
    req: &MemberRequest,
) -> Result<MemberAdded, OperationError> {
    let principal = Principal::parse(&req.principal)
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
    let expires_at = expiry(
        req.expires_at.as_deref(),
        req.expires_in.as_deref(),
        "expires_at`/`expires_in",
    )?;
    // A list that does not exist is the first thing to say (before asking a directory).
    if !warden.store().list_exists(list)? {
        return Err(OperationError::NoSuchList(list.to_owned()));
    }
    let account = accounts::resolve(warden, "principal", &principal)?;
    let member = NewMember {
        account,
        principal: req.principal.clone(),
        reason: req.reason.clone(),
        incident: req.incident.clone(),
        added_by: req.added_by.clone().unwrap_or_else(|| actor.name.clone()),
        source: actor.source.clone(),
        expires_at,
    };
    let (added, account) = warden.commit(
        |store| store.add_member(list, &member),
        |(added, account)| {
            AuditRecord::new(
                actor,
                "lists.add",
                list,
                serde_json::json!({
                    "principal": member.principal,
                    "account": account.canonical,
                    "again": *added == Added::Again,
                    "reason": member.reason,
                    "incident": member.incident,
                    "expires_at": member.expires_at,
                }),
            )
            .about(&account.key)
        },
    )?;
    Ok(MemberAdded {
        member,
        added,
        account,
        snapshot_version: warden.engine().load().version(),
    })
}

/// Releases the account any spelling of it names from a list: every membership is marked
/// released (by the actor, now, `reason`) and stays in the account's history. `None` when
/// no member of the list is that account; nothing is written or audited then.
pub fn remove_member(
    warden: &Warden,
    actor: &Actor,
    list: &str,
    principal: &str,
    reason: &str,
) -> Result<Option<Released>, OperationError> {
    check_text("reason", reason, false)?;
    Principal::parse(principal).map_err(|e| OperationError::invalid("principal", e.to_string()))?;
    let keys = accounts::members_named(warden, list, principal)?;
    let key = match keys.as_slice() {
        [] => return Ok(None),
        [key] => key.clone(),
        several => {
            return Err(OperationError::Conflict(format!(
                "{principal:?} names {} members of {list:?} ({}); release each by its \
                 canonical name",
                several.len(),
                several.join(", ")
            )));
        }
    };
    let released = warden.commit(
        |store| store.release_member(list, &key, &actor.name, reason),
        |released| {
            released.as_ref().map(|r| {
                AuditRecord::new(
                    actor,
                    "lists.remove",
                    list,
                    serde_json::json!({
                        "principal": principal,
                        "account": r.principal,
                        "reason": reason,
                        "memberships": r.memberships,
                    }),
                )
                .about(&r.account)
            })
        },
    )?;
    Ok(released)
}

/// Sets the expiry of the member `principal` names explicitly (an analyst shortening a
/// containment); a later membership lifts it again. Returns the member's canonical name.
pub fn set_member_expiry(
    warden: &Warden,
    actor: &Actor,
    list: &str,
    principal: &str,
    expires_at: Option<&str>,
    expires_in: Option<&str>,
) -> Result<String, OperationError> {
    let at = expiry(expires_at, expires_in, "expires_at`/`expires_in")?;
    let keys = accounts::members_named(warden, list, principal)?;
    let [key] = keys.as_slice() else {
        return Err(OperationError::Conflict(format!(
            "{principal:?} names {} members of {list:?}",
            keys.len()
        )));
    };
    let set = warden.commit(
        |store| store.set_member_expiry(list, key, at, &actor.name),
        |set| {
            set.then(|| {
                AuditRecord::new(
                    actor,
                    "lists.set_expiry",
                    list,
                    serde_json::json!({ "principal": principal, "expires_at": at }),
                )
                .about(key)
            })
        },
    )?;
    if !set {
        return Err(OperationError::Conflict(format!(
            "{principal:?} is not on {list:?}"
        )));
    }
    Ok(principal.to_owned())
}

/// Lists with fewer active members than this never hold an expiry sweep: with a handful of
/// members, one expiring is already half the list.
pub const EXPIRY_HOLD_MIN_MEMBERS: i64 = 10;

/// Whether a sweep deactivating `due` of a list's `active` members at once is held: more than
/// `max_share` of them, on a list of at least [`EXPIRY_HOLD_MIN_MEMBERS`]. A clock jumped
/// forward makes every expiry come due together; ordinary expiries trickle in.
pub fn holds_expiry(active: i64, due: i64, max_share: f64) -> bool {
    active >= EXPIRY_HOLD_MIN_MEMBERS && (due as f64) > max_share * (active as f64)
}

/// What one expiry sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Deactivated: past their expiry.
    pub expired: Vec<MemberRef>,
    /// Active again: deactivated while their expiry is still ahead (the clock had run ahead
    /// and came back).
    pub reactivated: Vec<MemberRef>,
    /// Purged: expired longer than the retention period (their memberships stay, released).
    pub purged: Vec<MemberRef>,
    /// Lists whose sweep is held, and which of them were held by this sweep (or changed).
    pub held: Vec<String>,
    pub newly_held: Vec<ExpiryHold>,
    /// Lists whose hold lifted by itself: nothing on them is due any more.
    pub lifted: Vec<String>,
    /// Key ids seen past their expiry, now expired for good.
    pub keys_expired: Vec<String>,
}

/// One expiry sweep at `now` (Unix seconds), every change audited as `system` in one
/// transaction, then republished.
///
/// With `deactivate` false (the clocks disagree: the wall clock may have jumped) only what
/// adds containment runs: members whose expiry is ahead again come back, keys past their
/// expiry are marked. With it true, due members are deactivated list by list — unless that
/// is more than `[server] max_expiry_share` of a list, which holds the list's sweep for an
/// admin ([`release_expiry_hold`]) — and members expired longer than
/// `[server] expired_member_retention` are purged.
pub fn expire_members(
    warden: &Warden,
    now: i64,
    deactivate: bool,
) -> Result<Sweep, OperationError> {
    let server = warden.config().server.clone();
    let retention = i64::try_from(server.expired_member_retention.as_secs()).unwrap_or(i64::MAX);
    let purge_before = now.saturating_sub(retention);
    if !warden.store().expiry_work(now, purge_before)? {
        return Ok(Sweep::default());
    }
    let system = Actor::system("expiry");
    let sweep = warden.store().audited(
        |store| {
            let mut sweep = Sweep {
                reactivated: store.reactivate_unexpired(now)?,
                keys_expired: store.mark_expired_keys(now)?,
                ..Sweep::default()
            };
            if !deactivate {
                return Ok::<_, OperationError>(sweep);
            }
            for due in store.expiry_due(now)? {
                if holds_expiry(due.active, due.due, server.max_expiry_share) {
                    let hold = ExpiryHold {
                        list: due.list.clone(),
                        due: due.due,
                        active: due.active,
                        held_at: now,
                    };
                    if store.hold_expiry(&hold)? {
                        sweep.newly_held.push(hold);
                    }
                    sweep.held.push(due.list);
                } else {
                    sweep.expired.extend(store.deactivate_due(&due.list, now)?);
                }
            }
            sweep.lifted = store.drop_expiry_holds_except(&sweep.held)?;
            sweep.purged = store.purge_expired(purge_before)?;
            Ok(sweep)
        },
        |sweep| sweep_records(&system, sweep),
    )?;
    if !sweep.keys_expired.is_empty() {
        warden.keys().reload(warden.store())?;
    }
    if !(sweep.expired.is_empty() && sweep.reactivated.is_empty()) {
        warden.reload_from_store()?;
    }
    for hold in &sweep.newly_held {
        warden.metrics().get::<super::ExpiryMetrics>().held();
        tracing::warn!(
            list = %hold.list,
            due = hold.due,
            active = hold.active,
            "expiry sweep HELD: it would deactivate more than the allowed share of the list at \
             once (a clock jump?); nothing was deactivated. Check the clock, then release it \
             with `warden lists release-expiry` or POST /v1/lists/{{list}}/expiry/release"
        );
    }
    for list in &sweep.lifted {
        tracing::info!(%list, "held expiry sweep lifted: none of the list's members is due any more");
    }
    if !sweep.expired.is_empty() {
        tracing::info!(members = sweep.expired.len(), "expired members deactivated");
    }
    if !sweep.reactivated.is_empty() {
        tracing::warn!(
            members = sweep.reactivated.len(),
            "members deactivated before their expiry are active again (the clock had run ahead)"
        );
    }
    if !sweep.purged.is_empty() {
        tracing::info!(
            members = sweep.purged.len(),
            "expired members purged after retention"
        );
    }
    Ok(sweep)
}

fn sweep_records(system: &Actor, sweep: &Sweep) -> Vec<AuditRecord> {
    let member = |action, m: &MemberRef| {
        AuditRecord::new(
            system,
            action,
            &m.list,
            serde_json::json!({ "principal": m.principal }),
        )
        .about(&m.account)
    };
    let mut records: Vec<AuditRecord> = Vec::new();
    records.extend(sweep.expired.iter().map(|m| member("lists.expire", m)));
    records.extend(
        sweep
            .reactivated
            .iter()
            .map(|m| member("lists.reactivate", m)),
    );
    records.extend(sweep.purged.iter().map(|m| member("lists.purge", m)));
    records.extend(sweep.newly_held.iter().map(|h| {
        AuditRecord::new(
            system,
            "lists.expiry_hold",
            &h.list,
            serde_json::json!({ "due": h.due, "active": h.active }),
        )
    }));
    records.extend(sweep.lifted.iter().map(|list| {
        AuditRecord::new(
            system,
            "lists.expiry_hold_lifted",
            list,
            serde_json::json!({}),
        )
    }));
    records.extend(
        sweep
            .keys_expired
            .iter()
            .map(|id| AuditRecord::new(system, "keys.expire", id, serde_json::json!({}))),
    );
    records
}

/// Releases a held expiry sweep of `list`: its members past their expiry are deactivated now,
/// audited as the admin who released it. Returns the members deactivated;
/// [`OperationError::Conflict`] if nothing is held.
pub fn release_expiry_hold(
    warden: &Warden,
    actor: &Actor,
    list: &str,
) -> Result<Vec<MemberRef>, OperationError> {
    let now = now();
    let released = warden.store().audited(
        |store| {
            if !store.release_expiry_hold(list)? {
                return Err(OperationError::Conflict(format!(
                    "no expiry sweep is held for list {list:?}"
                )));
            }
            Ok(store.deactivate_due(list, now)?)
        },
        |principals| {
            let mut records = vec![AuditRecord::new(
                actor,
                "lists.expiry_release",
                list,
                serde_json::json!({ "deactivated": principals.len() }),
            )];
            records.extend(principals.iter().map(|m| {
                AuditRecord::new(
                    actor,
                    "lists.expire",
                    list,
                    serde_json::json!({ "principal": m.principal }),
                )
                .about(&m.account)
            }));
            records
        },
    )?;
    warden.reload_from_store()?;
    Ok(released)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    use crate::config::Config;
    use crate::store::{MemberState, Store};

    /// The embedded default (one list, a data set and a policy over it) on an in-memory store,
    /// with `n` members that expire at 1000.
    fn warden_with(n: usize) -> Warden {
        let config = Config::embedded_default().unwrap();
        let store = Arc::new(Store::in_memory().unwrap());
        let warden = Warden::with_store(config, store).unwrap();
        for i in 0..n {
            let member = NewMember {
                expires_at: Some(1000),
                ..NewMember::test(&format!("corp\\user{i}"))
            };
            warden
                .store()
                .add_member("Suspicious Users", &member)
                .unwrap();
        }
        warden
    }

    fn states(warden: &Warden) -> Vec<MemberState> {
        let members = warden.store().members("Suspicious Users").unwrap();
        members.into_iter().map(|m| m.state).collect()
    }

    #[test]
    fn a_sweep_the_clocks_disagree_on_deactivates_nothing() {
        let warden = warden_with(3);
        let sweep = expire_members(&warden, 2000, false).unwrap();
        assert!(sweep.expired.is_empty());
        assert!(states(&warden).iter().all(|s| *s == MemberState::Active));
        let sweep = expire_members(&warden, 2000, true).unwrap();
        assert_eq!(sweep.expired.len(), 3);
        assert!(states(&warden).iter().all(|s| *s == MemberState::Expired));
        // The clock goes back: they return even on a sweep that may not deactivate.
        let sweep = expire_members(&warden, 500, false).unwrap();
        assert_eq!(sweep.reactivated.len(), 3);
        assert!(states(&warden).iter().all(|s| *s == MemberState::Active));
    }

    #[test]
    fn a_sweep_past_the_share_is_held_until_released_and_lifts_when_nothing_is_due() {
        let warden = warden_with(12);
        let sweep = expire_members(&warden, 2000, true).unwrap();
        assert!(sweep.expired.is_empty());
        assert_eq!(sweep.held, ["Suspicious Users"]);
        assert_eq!(sweep.newly_held.len(), 1);
        // Held again on the next sweep, but not counted again.
        let sweep = expire_members(&warden, 2001, true).unwrap();
        assert_eq!((sweep.held.len(), sweep.newly_held.len()), (1, 0));
        assert!(states(&warden).iter().all(|s| *s == MemberState::Active));
        let hold = warden.store().lists().unwrap()[0]
            .expiry_hold
            .clone()
            .unwrap();
        assert_eq!((hold.due, hold.active), (12, 12));
        // Nothing due any more (the clock came back): the hold lifts by itself.
        let sweep = expire_members(&warden, 900, true).unwrap();
        assert_eq!(sweep.lifted, ["Suspicious Users"]);
        assert!(warden.store().expiry_holds().unwrap().is_empty());
        // Held again, then released by an admin: deactivated and audited as the admin.
        expire_members(&warden, 2000, true).unwrap();
        let admin = Actor::system("test-admin");
        let released = release_expiry_hold(&warden, &admin, "Suspicious Users").unwrap();
        assert_eq!(released.len(), 12);
        assert!(states(&warden).iter().all(|s| *s == MemberState::Expired));
        assert!(matches!(
            release_expiry_hold(&warden, &admin, "Suspicious Users"),
            Err(OperationError::Conflict(_))
        ));
    }

    #[test]
    fn a_sweep_is_held_only_past_the_share_on_lists_past_a_handful() {
        // A handful: never held, even all at once.
        assert!(!holds_expiry(
            EXPIRY_HOLD_MIN_MEMBERS - 1,
            EXPIRY_HOLD_MIN_MEMBERS - 1,
            0.5
        ));
        // At the size: half is allowed, one more is held.
        assert!(!holds_expiry(10, 5, 0.5));
        assert!(holds_expiry(10, 6, 0.5));
        assert!(holds_expiry(1000, 1000, 0.5));
        assert!(!holds_expiry(1000, 1, 0.5));
        // 1.0 never holds.
        assert!(!holds_expiry(1000, 1000, 1.0));
        assert!(holds_expiry(20, 3, 0.1));
    }
}

#[cfg(test)]
mod use_case_tests {
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
        let metrics = warden.render_metrics();
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
        assert!(
            remove_member(&warden, &actor, "Suspicious Users", r"corp\alice", "")
                .unwrap()
                .is_some()
        );
        assert!(
            remove_member(&warden, &actor, "Suspicious Users", r"corp\alice", "")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            warden.store().audit(&AuditFilter::default()).unwrap().len(),
            2
        );
    }

    fn add(warden: &Warden, principal: &str, incident: &str, expires_in: Option<&str>) -> Added {
        let req = MemberRequest {
            principal: principal.into(),
            reason: format!("contain ({incident})"),
            incident: Some(incident.into()),
            expires_in: expires_in.map(str::to_owned),
            ..MemberRequest::default()
        };
        add_member(warden, &Actor::system("test"), "Suspicious Users", &req)
            .unwrap()
            .added
    }

    fn decides(warden: &Warden, name: &str) -> Outcome {
        let request = Request {
            service: "orders",
            db_user: [name].into_iter().collect(),
            ..Request::default()
        };
        warden.engine().load().decide(&request).outcome
    }

    const SPELLINGS: [&str; 4] = [
        r"CORP\alice",
        r"corp\ALICE",
        "alice@corp.example.test",
        "alice@CORP.EXAMPLE.TEST",
    ];

    /// The issue's console scenario on the embedded default: another spelling of a listed
    /// account is one member, and releasing either spelling allows every spelling.
    #[test]
    fn another_spelling_is_one_member_and_a_release_allows_every_spelling() {
        let warden = warden();
        assert_eq!(add(&warden, r"CORP\alice", "INC-1", None), Added::New);
        assert_eq!(
            add(&warden, "alice@corp.example.test", "INC-2", None),
            Added::Again
        );
        let members = warden.store().members("Suspicious Users").unwrap();
        assert_eq!(members.len(), 1, "{members:#?}");
        assert_eq!(members[0].incidents, ["INC-1", "INC-2"]);
        for name in SPELLINGS {
            assert_eq!(decides(&warden, name), Outcome::Block, "{name}");
        }
        let actor = Actor::system("test");
        let released = remove_member(
            &warden,
            &actor,
            "Suspicious Users",
            r"CORP\alice",
            "cleared",
        )
        .unwrap()
        .unwrap();
        assert_eq!(released.memberships, 2);
        assert!(
            warden
                .store()
                .members("Suspicious Users")
                .unwrap()
                .is_empty()
        );
        for name in SPELLINGS {
            assert_eq!(decides(&warden, name), Outcome::Allow, "{name}");
        }
        // Every spelling releases: the UPN releases a member listed as DOMAIN\user.
        add(&warden, r"CORP\alice", "INC-3", None);
        assert!(
            remove_member(
                &warden,
                &actor,
                "Suspicious Users",
                "ALICE@corp.example.test",
                ""
            )
            .unwrap()
            .is_some()
        );
        // The release and its reason are the account's history, audited by account.
        let key = released.account;
        let history = warden
            .store()
            .memberships_of(std::slice::from_ref(&key))
            .unwrap();
        assert!(history.iter().all(|m| m.released_at.is_some()));
        assert_eq!(history[0].release_reason.as_deref(), Some("cleared"));
        let about = warden
            .store()
            .audit(&AuditFilter {
                accounts: Some(vec![key]),
                ..AuditFilter::default()
            })
            .unwrap();
        let actions: Vec<&str> = about.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "lists.add",
                "lists.add",
                "lists.remove",
                "lists.add",
                "lists.remove"
            ]
        );
    }

    /// Re-adding by another incident keeps both incidents, the first `added_at` and the
    /// longer expiry; an analyst may still shorten it explicitly.
    #[test]
    fn re_adding_keeps_both_incidents_and_the_longer_expiry() {
        let warden = warden();
        add(&warden, r"CORP\dave", "INC-6", Some("3d"));
        let first = warden.store().members("Suspicious Users").unwrap()[0].clone();
        assert_eq!(
            add(&warden, r"corp\dave", "INC-7", Some("1d")),
            Added::Again
        );
        let again = warden.store().members("Suspicious Users").unwrap()[0].clone();
        assert_eq!(again.incidents, ["INC-6", "INC-7"]);
        assert_eq!(again.added_at, first.added_at);
        assert_eq!(
            again.expires_at, first.expires_at,
            "the longer of 3d and 1d"
        );
        add(&warden, "dave@corp.example.test", "INC-8", None);
        let never = warden.store().members("Suspicious Users").unwrap()[0].clone();
        assert_eq!(never.expires_at, None, "one membership without expiry");
        let actor = Actor::system("analyst");
        set_member_expiry(
            &warden,
            &actor,
            "Suspicious Users",
            r"CORP\dave",
            None,
            Some("1h"),
        )
        .unwrap();
        let set = warden.store().members("Suspicious Users").unwrap()[0].clone();
        assert!(set.expires_at.is_some());
        assert_eq!(set.expiry_set_by.as_deref(), Some("system"));
        assert_eq!(set.memberships.len(), 3);
    }

    /// Without a default domain a bare name names no account: refused with the reason, or
    /// kept as text where the operator allows it.
    #[test]
    fn an_unresolvable_principal_is_refused_or_kept_as_text() {
        let warden = warden();
        let actor = Actor::system("test");
        let req = MemberRequest {
            principal: "alice".into(),
            ..MemberRequest::default()
        };
        let e = add_member(&warden, &actor, "Suspicious Users", &req).unwrap_err();
        assert!(
            e.to_string().contains("names no domain") && e.to_string().contains("unresolvable"),
            "{e}"
        );
        let mut config = Config::embedded_default().unwrap();
        config.keep_unresolvable = true;
        let keeping =
            Warden::with_store(config, std::sync::Arc::new(Store::in_memory().unwrap())).unwrap();
        let done = add_member(&keeping, &actor, "Suspicious Users", &req).unwrap();
        assert_eq!(done.account.key, "text:alice");
        assert_eq!(decides(&keeping, "alice"), Outcome::Block);
        assert_eq!(decides(&keeping, r"CORP\alice"), Outcome::Allow);
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
            bad(r"CORP\alice", Some("soon")),
            OperationError::Invalid { .. }
        ));
        let req = MemberRequest {
            principal: r"CORP\alice".into(),
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

#[cfg(test)]
mod hygiene_tests {
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
