//! The audit of what the session front ends refused and ended, in aggregate.
//!
//! Anyone who can reach a gate can make it refuse, so a refusal never costs one store write:
//! refusals of blocked users and sessions ended by policy are tallied in memory (by front end,
//! user, policy; at most [`MAX_TALLY`] keys, the rest in one "more users" bucket per action —
//! the bounded tally of [`crate::base::tally`], as failed authentication's) and written to the
//! audit log as one `gate.refused` / `gate.ended` record per key with its count, every
//! [`AUDIT_FLUSH`], at once after a session was ended by policy (so a containment receipt
//! shows the ended session within moments), and when the front end stops ([`super::serve`]
//! does all three).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::Verdict;
use crate::base::actor::Actor;
use crate::base::tally::{Count, Tally};
use crate::config::GateConfig;
use crate::events::Event;
use crate::runtime::Warden;
use crate::store::AuditRecord;

/// Most distinct (action, front end, user, policy) keys tallied between two audit flushes.
pub const MAX_TALLY: usize = 1024;
/// How often a front end writes the tally to the audit log.
pub const AUDIT_FLUSH: Duration = Duration::from_secs(10);

/// What a front end did to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Refused it at admission.
    Refused,
    /// Ended it, open, on a snapshot swap.
    Ended,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Refused => "gate.refused",
            Action::Ended => "gate.ended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    action: Action,
    front: String,
    /// `None` for the overflow bucket.
    user: Option<String>,
    /// The account name `user` was decided as (its audit record and surface are about it).
    account: String,
    policy: String,
}

impl Key {
    fn overflow(self) -> Key {
        Key {
            user: None,
            account: String::new(),
            policy: String::new(),
            ..self
        }
    }
}

/// The refusals and ended sessions not yet audited, of every front end.
#[derive(Clone)]
pub struct Refusals(Arc<Inner>);

struct Inner {
    tally: Mutex<Tally<Key, String>>,
    /// Woken when a session is ended by policy. Ending needs an authenticated session that
    /// was open, so wake-ups are bounded by the sessions there were, not by what anyone sends.
    ended: tokio::sync::Notify,
}

impl Default for Refusals {
    fn default() -> Refusals {
        Refusals(Arc::new(Inner {
            tally: Mutex::new(Tally::new(MAX_TALLY)),
            ended: tokio::sync::Notify::new(),
        }))
    }
}

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tally<Key, String>> {
        self.0.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves once a session was ended by policy since the last call.
    pub async fn ended(&self) {
        self.0.ended.notified().await;
    }

    /// Tallies one refusal or ended session from `client` (never a store write): `who` is the
    /// name that was blocked and the account it was decided as.
    pub fn tally(
        &self,
        action: Action,
        front: &str,
        who: (&str, &str),
        client: &str,
        policy: &str,
    ) {
        let (user, account) = who;
        let key = Key {
            action,
            front: front.to_owned(),
            user: Some(user.to_owned()),
            account: account.to_owned(),
            policy: policy.to_owned(),
        };
        let now = crate::base::time::now_ms();
        self.lock()
            .record(key, now, client.to_owned(), Key::overflow);
        if action == Action::Ended {
            self.0.ended.notify_one();
        }
    }

    /// How many refusals and ended sessions wait to be audited.
    pub fn pending(&self) -> u64 {
        self.lock().pending()
    }

    /// Writes the tally to the audit log in one transaction and clears it (blocking I/O); on
    /// a store error it is kept for the next flush.
    pub fn flush(&self, warden: &Warden) {
        let taken = self.lock().take();
        if taken.counts.is_empty() {
            return;
        }
        let actor = Actor::system("gate");
        let mut surfaces = Vec::new();
        let records: Vec<AuditRecord> = taken
            .counts
            .iter()
            .map(|e| {
                let record = record(&actor, e);
                // About the listed account the login is, and where its block landed.
                let (k, c) = e;
                let event = k.user.as_ref().and_then(|_| {
                    crate::operations::accounts::gate_event(
                        warden,
                        &k.front,
                        &k.account,
                        k.action.as_str(),
                        c.count,
                        c.first_ms,
                    )
                });
                match event {
                    Some((key, surface)) => {
                        surfaces.push(surface);
                        record.about(&key)
                    }
                    None => record,
                }
            })
            .collect();
        let n = records.len();
        let written = warden
            .store()
            .audited(|store| store.record_surfaces(&surfaces), |_| records);
        if let Err(e) = written {
            tracing::error!(error = %e, records = n, "gate audit records not written; kept for the next flush");
            self.lock().restore(taken);
        }
    }
}

/// A session a gate refused or ended by policy, wherever that is reported, for every protocol
/// alike: tallied for the audit log under the name that was blocked and the account it was
/// decided as, and offered to the SIEM sinks as an event (never waited on).
pub fn report(
    warden: &Warden,
    refusals: &Refusals,
    gate: &GateConfig,
    (user, client): (&str, &str),
    verdict: &Verdict,
    action: Action,
) {
    refusals.tally(
        action,
        &gate.name,
        (user, &gate.account_name(user)),
        client,
        verdict.policy(),
    );
    let at = crate::events::Gate {
        name: &gate.name,
        service: &gate.service,
        user,
        client,
    };
    let (policy, why) = match verdict {
        Verdict::Block { policy, .. } if !policy.is_empty() => (
            Some(policy.as_str()),
            format!("blocked by policy \"{policy}\""),
        ),
        Verdict::Block { .. } => (None, "blocked by policy".to_owned()),
        _ => (
            None,
            "undecided: a data set a policy reads has not loaded".to_owned(),
        ),
    };
    warden.events().emit(match action {
        Action::Refused => Event::gate_refusal(&at, policy, &why),
        Action::Ended => Event::gate_session_ended(&at, policy, &why),
    });
}

fn record(actor: &Actor, (k, c): &(Key, Count<String>)) -> AuditRecord {
    let detail = match &k.user {
        Some(_) => serde_json::json!({
            "gate": k.front,
            "account": k.account,
            "policy": k.policy,
            "count": c.count,
            "first_ms": c.first_ms,
            "last_ms": c.last_ms,
            "last_client": c.last,
        }),
        None => serde_json::json!({
            "gate": k.front,
            "count": c.count,
            "first_ms": c.first_ms,
            "last_ms": c.last_ms,
            "note": "tally full",
        }),
    };
    let target = k.user.as_deref().unwrap_or("(more users)");
    AuditRecord::new(actor, k.action.as_str(), target, detail).with_outcome("denied")
}
