//! What warden tells a SOC, before any format: one [`Event`] per fact — a user contained or
//! released, a session refused or ended at a gate, a decision, a member added to or removed
//! from an enforcement surface (an AD group, a database role), an administrative change — with
//! the OCSF class and activity it is ([`Activity`]), who did it, whom it concerns and why.
//! The CEF and OCSF writers ([`super::cef`], [`super::ocsf`]) only render these fields.
//!
//! Audit records become events in [`from_audit`] (one per user an action names); the other
//! constructors are the events with no audit record behind them (decisions, gate refusals,
//! surface changes), built where they happen.

use serde_json::{Map, Value};

use super::decision_log::DecisionRecord;
use crate::store::AuditRecord;

/// The OCSF class and activity of an event (OCSF 1.8.0, `events/iam/*.json` and
/// `events/application/*.json` of the schema). `class_uid` is the category's uid × 1000 plus
/// the class's; `type_uid` is `class_uid` × 100 plus the activity id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Account Change (3001), activity Lock (9): a user contained.
    Lock,
    /// Account Change (3001), activity Unlock (12): a user released.
    Unlock,
    /// Authentication (3002), activity Logon (1): a logon, refused or not.
    Logon,
    /// Authentication (3002), activity Logoff (2): a session ended.
    Logoff,
    /// Group Management (3006), activity Add User (3): a member put into a group or role.
    AddUser,
    /// Group Management (3006), activity Remove User (4).
    RemoveUser,
    /// API Activity (6003), activity Create (1).
    Create,
    /// API Activity (6003), activity Update (3).
    Update,
    /// API Activity (6003), activity Delete (4).
    Delete,
    /// API Activity (6003), activity Other (99): an administrative action of no other kind.
    Other,
    /// Datastore Activity (6005), activity Connect (3): a decision on a database user's access.
    Connect,
}

impl Activity {
    /// `(category_uid, category_name, class_uid, class_name)`.
    pub fn class(self) -> (u32, &'static str, u32, &'static str) {
        const IAM: (u32, &str) = (3, "Identity & Access Management");
        const APPLICATION: (u32, &str) = (6, "Application Activity");
        let ((category, category_name), class, name) = match self {
            Activity::Lock | Activity::Unlock => (IAM, 3001, "Account Change"),
            Activity::Logon | Activity::Logoff => (IAM, 3002, "Authentication"),
            Activity::AddUser | Activity::RemoveUser => (IAM, 3006, "Group Management"),
            Activity::Create | Activity::Update | Activity::Delete | Activity::Other => {
                (APPLICATION, 6003, "API Activity")
            }
            Activity::Connect => (APPLICATION, 6005, "Datastore Activity"),
        };
        (category, category_name, class, name)
    }

    /// `(activity_id, activity_name)` within the class.
    pub fn activity(self) -> (u32, &'static str) {
        match self {
            Activity::Lock => (9, "Lock"),
            Activity::Unlock => (12, "Unlock"),
            Activity::Logon => (1, "Logon"),
            Activity::Logoff => (2, "Logoff"),
            Activity::AddUser => (3, "Add User"),
            Activity::RemoveUser => (4, "Remove User"),
            Activity::Create => (1, "Create"),
            Activity::Update => (3, "Update"),
            Activity::Delete => (4, "Delete"),
            Activity::Other => (99, "Other"),
            Activity::Connect => (3, "Connect"),
        }
    }

    /// OCSF `type_uid`: `class_uid * 100 + activity_id`.
    pub fn type_uid(self) -> u64 {
        u64::from(self.class().2) * 100 + u64::from(self.activity().0)
    }
}

/// How serious an event is: OCSF `severity_id` 1–4; CEF severity 1, 3, 5, 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn ocsf_id(self) -> u32 {
        match self {
            Severity::Informational => 1,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
        }
    }

    pub fn ocsf_name(self) -> &'static str {
        match self {
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
        }
    }

    /// CEF's 0–10 scale (0–3 low, 4–6 medium, 7–8 high).
    pub fn cef(self) -> u8 {
        match self {
            Severity::Informational => 1,
            Severity::Low => 3,
            Severity::Medium => 5,
            Severity::High => 8,
        }
    }

    fn of_policy(severity: &str) -> Severity {
        match severity {
            "high" => Severity::High,
            "medium" => Severity::Medium,
            "low" => Severity::Low,
            _ => Severity::Informational,
        }
    }
}

/// Where a gate event happened: the gate, its service, the name it blocked and the client.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    pub name: &'a str,
    pub service: &'a str,
    pub user: &'a str,
    pub client: &'a str,
}

/// One fact for the SOC.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique per event: `audit-<id>` (`audit-<id>-<n>` for the n-th user of one record),
    /// the decision id, or `<signature>-<time>-<n>` for the other direct events.
    pub uid: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub activity: Activity,
    /// What happened, stable and machine-readable: the audit action (`lists.add`) or a fixed
    /// id (`decision.block`, `gate.refusal`, …). CEF Device Event Class ID, OCSF
    /// `metadata.event_code`, syslog MSGID.
    pub signature: String,
    /// What happened, for a person (CEF Name).
    pub name: &'static str,
    pub severity: Severity,
    /// OCSF `status_id` Success (true) or Failure; CEF `outcome`.
    pub success: bool,
    /// Who did it (CEF `suser`, OCSF `actor.user.name`).
    pub actor: Option<String>,
    /// From where: an address (`src`, `src_endpoint.ip`) or how (`cli`, `expiry`).
    pub source: Option<String>,
    /// Whom it concerns (CEF `duser`, OCSF `user.name`): always from [`subject`].
    pub user: Option<String>,
    /// What it was done to: a list, a group DN, a role, a gate, a key id, a data set.
    pub target: Option<String>,
    pub reason: Option<String>,
    pub incident: Option<String>,
    pub policy: Option<String>,
    pub service: Option<String>,
    /// How many occurrences one event stands for (aggregated audit records).
    pub count: Option<u64>,
    pub message: String,
    /// Everything else known, as JSON (OCSF `unmapped`).
    pub detail: Map<String, Value>,
    /// The audit record it came from.
    pub audit_id: Option<i64>,
}

/// The name SIEM fields give the user an event concerns (CEF `duser`, OCSF `user.name`),
/// from the principal as the source named it and the account where the source knows it.
/// Every event takes its user from here, so that naming users by their account (issue 26:
/// audit records carrying the account) is a change to this function alone.
pub fn subject(principal: &str, account: Option<&str>) -> String {
    account.unwrap_or(principal).to_owned()
}

impl Event {
    fn new(
        uid: String,
        at_ms: i64,
        activity: Activity,
        signature: &str,
        name: &'static str,
    ) -> Event {
        Event {
            uid,
            at_ms,
            activity,
            signature: signature.to_owned(),
            name,
            severity: Severity::Informational,
            success: true,
            actor: None,
            source: None,
            user: None,
            target: None,
            reason: None,
            incident: None,
            policy: None,
            service: None,
            count: None,
            message: String::new(),
            detail: Map::new(),
            audit_id: None,
        }
    }

    /// A recorded decision: Datastore Activity, Connect, Success for allow. The user is the
    /// database user(s) asked about, the policy the first that blocked.
    pub fn decision(d: &DecisionRecord) -> Event {
        let signature = format!("decision.{}", d.decision);
        let mut e = Event::new(
            d.id.clone(),
            d.at_ms,
            Activity::Connect,
            &signature,
            match d.decision.as_ref() {
                "allow" => "Access allowed",
                "block" => "Access blocked by policy",
                _ => "Access undecided (data not loaded)",
            },
        );
        let blocking = d.matched.iter().find(|m| m.action == "block");
        e.success = d.decision == "allow";
        e.severity = match (d.decision.as_ref(), blocking) {
            ("allow", _) => Severity::Informational,
            (_, Some(m)) => Severity::of_policy(&m.severity).max(Severity::Low),
            _ => Severity::Medium,
        };
        e.user = Some(subject(&d.db_user.join(","), None));
        e.service = Some(d.service.clone());
        e.source.clone_from(&d.client_ip);
        e.policy = blocking.map(|m| m.policy.clone());
        e.reason = blocking.map(|m| format!("blocked by policy \"{}\"", m.policy));
        e.message = format!(
            "{} for {} on service {}{}",
            d.decision,
            d.db_user.join(","),
            d.service,
            blocking.map_or(String::new(), |m| format!(" by policy \"{}\"", m.policy))
        );
        e.detail = d.detail();
        e
    }

    /// A session a gate refused after authentication (Authentication, Logon, Failure):
    /// `user` the name that was blocked, `policy` the policy that blocked it (none when the
    /// snapshot could not decide), `reason` what the client was told.
    pub fn gate_refusal(gate: &Gate<'_>, policy: Option<&str>, reason: &str) -> Event {
        let mut e = Event::gate(gate, policy, reason, Activity::Logon, "gate.refusal");
        e.success = false;
        e.name = "Logon refused at a database gate";
        e.message = format!(
            "gate {} refused {} from {}: {reason}",
            gate.name, gate.user, gate.client
        );
        e
    }

    /// An open session a gate ended by policy (Authentication, Logoff).
    pub fn gate_session_ended(gate: &Gate<'_>, policy: Option<&str>, reason: &str) -> Event {
        let mut e = Event::gate(gate, policy, reason, Activity::Logoff, "gate.session_ended");
        e.name = "Session ended at a database gate";
        e.message = format!(
            "gate {} ended the session of {} from {}: {reason}",
            gate.name, gate.user, gate.client
        );
        e
    }

    fn gate(
        gate: &Gate<'_>,
        policy: Option<&str>,
        reason: &str,
        activity: Activity,
        signature: &str,
    ) -> Event {
        let mut e = Event::new(direct_uid(signature), now(), activity, signature, "");
        e.severity = Severity::High;
        e.actor = Some(format!("gate:{}", gate.name));
        e.source = Some(gate.client.to_owned());
        e.user = Some(subject(gate.user, None));
        e.target = Some(gate.name.to_owned());
        e.service = Some(gate.service.to_owned());
        e.policy = policy.map(str::to_owned);
        e.reason = Some(reason.to_owned());
        e
    }

    /// The events of one run's changes to a surface: `added` then `removed` members (see
    /// [`Event::surface_member`]).
    pub fn surface_changes(
        surface: &str,
        target: &str,
        added: &[String],
        removed: &[String],
    ) -> Vec<Event> {
        let added = added.iter().map(|m| (m, true));
        let removed = removed.iter().map(|m| (m, false));
        added
            .chain(removed)
            .map(|(m, add)| Event::surface_member(surface, target, m, add))
            .collect()
    }

    /// A member a run put into (or took out of) an enforcement surface: an AD group
    /// (`surface` `ad_group`, target the group DN) or a database role (`db_role`, target
    /// `database/role`). Group Management, Add User / Remove User.
    pub fn surface_member(surface: &str, target: &str, member: &str, added: bool) -> Event {
        let (activity, signature, name) = match (surface, added) {
            ("db_role", true) => (Activity::AddUser, "role.granted", "Database role granted"),
            ("db_role", false) => (
                Activity::RemoveUser,
                "role.revoked",
                "Database role revoked",
            ),
            (_, true) => (Activity::AddUser, "push.member_added", "Group member added"),
            (_, false) => (
                Activity::RemoveUser,
                "push.member_removed",
                "Group member removed",
            ),
        };
        let mut e = Event::new(direct_uid(signature), now(), activity, signature, name);
        e.severity = Severity::Low;
        e.actor = Some("system".to_owned());
        e.source = Some("push".to_owned());
        e.user = Some(subject(member, None));
        e.target = Some(target.to_owned());
        e.message = format!(
            "{member} {} {target}",
            if added { "added to" } else { "removed from" }
        );
        e.detail.insert("surface".into(), Value::from(surface));
        e
    }
}

fn now() -> i64 {
    crate::base::time::now_ms()
}

/// A unique id for an event with no audit record or decision behind it.
fn direct_uid(signature: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{signature}-{}-{}-{}",
        std::process::id(),
        now(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// How one audit action becomes events: its activity, name and severity, and whether it
/// names its users in a `principal` (one event), a list under `users`/`members` (one event
/// each), the actor (a sign-in) or none.
struct Mapping {
    activity: Activity,
    name: &'static str,
    severity: Severity,
    users: Users,
}

enum Users {
    None,
    Principal,
    Each(&'static str),
    Target,
    Actor,
}

fn mapping(action: &str) -> Mapping {
    let m = |activity, name, severity, users| Mapping {
        activity,
        name,
        severity,
        users,
    };
    match action {
        "lists.add" => m(
            Activity::Lock,
            "User contained",
            Severity::High,
            Users::Principal,
        ),
        "incidents.respond" => m(
            Activity::Lock,
            "User contained by a response",
            Severity::High,
            Users::Each("users"),
        ),
        "lists.remove" => m(
            Activity::Unlock,
            "User released",
            Severity::Medium,
            Users::Principal,
        ),
        "lists.expire" => m(
            Activity::Unlock,
            "Containment expired",
            Severity::Medium,
            Users::Principal,
        ),
        "group.drift_repaired" => m(
            Activity::AddUser,
            "Group membership repaired after drift",
            Severity::High,
            Users::Each("members"),
        ),
        "gate.refused" => m(
            Activity::Logon,
            "Logons refused at a database gate (summary)",
            Severity::Medium,
            Users::Target,
        ),
        "gate.ended" => m(
            Activity::Logoff,
            "Sessions ended at a database gate (summary)",
            Severity::Medium,
            Users::Target,
        ),
        "auth.failed" | "auth.forbidden" => m(
            Activity::Logon,
            "API requests refused (summary)",
            Severity::Medium,
            Users::None,
        ),
        "console.sign_in" => m(
            Activity::Logon,
            "Console sign-in",
            Severity::Low,
            Users::Actor,
        ),
        "console.sign_out" => m(
            Activity::Logoff,
            "Console sign-out",
            Severity::Informational,
            Users::Actor,
        ),
        "events.dropped" => m(
            Activity::Other,
            "SIEM events dropped",
            Severity::High,
            Users::None,
        ),
        "keys.create" | "keys.bootstrap" => m(
            Activity::Create,
            "API key created",
            Severity::Medium,
            Users::None,
        ),
        "keys.revoke" | "keys.expire" => m(
            Activity::Delete,
            "API key removed",
            Severity::Medium,
            Users::None,
        ),
        "keys.rotate" => m(
            Activity::Update,
            "API key rotated",
            Severity::Medium,
            Users::None,
        ),
        "lists.create" | "incidents.create" | "alerts.ingest" => {
            m(Activity::Create, "Created", Severity::Low, Users::None)
        }
        "lists.purge" => m(
            Activity::Delete,
            "Expired members purged",
            Severity::Low,
            Users::None,
        ),
        "config.reload"
        | "data_sets.accept"
        | "data_sets.refresh"
        | "lists.expiry_hold"
        | "lists.expiry_hold_lifted"
        | "lists.expiry_release"
        | "imperva.push"
        | "directories.sync"
        | "databases.sync" => m(
            Activity::Update,
            "Administrative change",
            Severity::Low,
            Users::None,
        ),
        a if a.starts_with("data_sets.") => m(
            Activity::Update,
            "Data set written",
            Severity::Low,
            Users::None,
        ),
        _ => m(
            Activity::Other,
            "Audited action",
            Severity::Low,
            Users::None,
        ),
    }
}

/// Detail keys an event carries in its own fields rather than in `detail`.
const MAPPED_KEYS: &[&str] = &[
    "principal",
    "account",
    "reason",
    "incident",
    "policy",
    "count",
];

/// The events of one audit record: one per user it names (a containment of three users is
/// three events), or one. Every audit record gives at least one event.
pub fn from_audit(r: &AuditRecord) -> Vec<Event> {
    let m = mapping(&r.action);
    let detail = r.detail.as_object().cloned().unwrap_or_default();
    let text = |key: &str| {
        detail
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut base = Event::new(
        format!("audit-{}", r.id),
        r.at_ms,
        m.activity,
        &r.action,
        m.name,
    );
    base.severity = m.severity;
    base.success = r.outcome == "ok";
    base.actor = Some(r.actor.clone());
    base.source.clone_from(&r.source);
    base.target = Some(r.target.clone()).filter(|t| !t.is_empty());
    base.reason = text("reason");
    base.incident = text("incident");
    base.policy = text("policy");
    base.count = detail.get("count").and_then(Value::as_u64);
    base.audit_id = Some(r.id);
    base.detail = detail
        .iter()
        .filter(|(k, _)| !MAPPED_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    base.detail
        .insert("outcome".into(), Value::from(r.outcome.as_str()));
    match r.action.as_str() {
        // The list of a response, the group of a repair: the target of each event.
        "incidents.respond" => {
            base.incident.clone_from(&base.target);
            base.target = text("list");
        }
        "group.drift_repaired" => base.reason = Some("drift repaired".to_owned()),
        _ => {}
    }
    let users: Vec<String> = match m.users {
        Users::None => Vec::new(),
        Users::Principal => text("principal")
            .map(|p| subject(&p, detail.get("account").and_then(Value::as_str)))
            .into_iter()
            .collect(),
        Users::Each(key) => {
            base.detail.remove(key);
            detail
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|p| subject(p, None))
                        .collect()
                })
                .unwrap_or_default()
        }
        Users::Target => vec![subject(&r.target, None)],
        Users::Actor => vec![subject(&r.actor, None)],
    };
    if users.is_empty() {
        base.message = audit_message(r, &base, None);
        return vec![base];
    }
    let many = users.len() > 1;
    users
        .into_iter()
        .enumerate()
        .map(|(n, user)| {
            let mut e = base.clone();
            if many {
                e.uid = format!("audit-{}-{n}", r.id);
            }
            e.message = audit_message(r, &e, Some(&user));
            e.user = Some(user);
            e
        })
        .collect()
}

fn audit_message(r: &AuditRecord, e: &Event, user: Option<&str>) -> String {
    let mut m = format!("{} by {}", r.action, r.actor);
    if let Some(u) = user {
        m.push_str(&format!(": {u}"));
    }
    if let Some(t) = &e.target {
        m.push_str(&format!(" on {t}"));
    }
    if r.outcome != "ok" {
        m.push_str(&format!(" ({})", r.outcome));
    }
    m
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(action: &str, target: &str, detail: Value) -> AuditRecord {
        AuditRecord {
            id: 7,
            at_ms: 1_700_000_000_000,
            actor: "key:k1 (soc)".into(),
            action: action.into(),
            target: target.into(),
            outcome: "ok".into(),
            source: Some("10.0.0.5".into()),
            account: None,
            detail,
        }
    }

    #[test]
    fn a_containment_is_an_account_lock_of_its_principal() {
        let r = record(
            "lists.add",
            "Suspicious Users",
            serde_json::json!({"principal": "corp\\alice", "reason": "INC-1", "incident": "INC-1", "expires_at": null}),
        );
        let events = from_audit(&r);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.activity, Activity::Lock);
        assert_eq!(e.activity.type_uid(), 300_109);
        assert_eq!(e.user.as_deref(), Some("corp\\alice"));
        assert_eq!(e.target.as_deref(), Some("Suspicious Users"));
        assert_eq!(e.reason.as_deref(), Some("INC-1"));
        assert_eq!(e.uid, "audit-7");
        assert!(!e.detail.contains_key("principal"));
    }

    #[test]
    fn the_account_wins_over_the_principal_where_the_record_has_one() {
        let r = record(
            "lists.remove",
            "L",
            serde_json::json!({"principal": "alice@corp.example.test", "account": "CORP\\alice"}),
        );
        let e = &from_audit(&r)[0];
        assert_eq!(e.activity, Activity::Unlock);
        assert_eq!(e.activity.type_uid(), 300_112);
        assert_eq!(e.user.as_deref(), Some("CORP\\alice"));
    }

    #[test]
    fn a_response_is_one_lock_per_user() {
        let r = record(
            "incidents.respond",
            "INC-3",
            serde_json::json!({"list": "L", "users": ["a", "b", "c"], "expires_at": null}),
        );
        let events = from_audit(&r);
        let users: Vec<_> = events.iter().map(|e| e.user.clone().unwrap()).collect();
        assert_eq!(users, ["a", "b", "c"]);
        assert_eq!(events[2].uid, "audit-7-2");
        assert!(events.iter().all(|e| e.target.as_deref() == Some("L")
            && e.incident.as_deref() == Some("INC-3")
            && !e.detail.contains_key("users")));
    }

    #[test]
    fn unknown_actions_still_become_events() {
        let e = &from_audit(&record("accounts.merge", "x", Value::Null))[0];
        assert_eq!(e.activity, Activity::Other);
        assert_eq!(e.activity.type_uid(), 600_399);
        assert_eq!(e.signature, "accounts.merge");
    }

    #[test]
    fn type_uids_follow_the_schema() {
        assert_eq!(Activity::Logon.type_uid(), 300_201);
        assert_eq!(Activity::Logoff.type_uid(), 300_202);
        assert_eq!(Activity::AddUser.type_uid(), 300_603);
        assert_eq!(Activity::Create.type_uid(), 600_301);
        assert_eq!(Activity::Connect.type_uid(), 600_503);
    }
}
