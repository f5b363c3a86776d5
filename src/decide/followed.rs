//! The decision side of followed actions: after a decision matched a policy that names an
//! action set, the event is de-duplicated per (policy, matched value) within the set's window
//! and offered to a bounded queue without waiting — a full queue drops the event, and the
//! caller counts it. The matched value is [`Snapshot::match_key`]: the request values found in
//! the policy's data sets, so a caller adding or varying an extra `db_user` makes no new key.
//! The window is remembered in an LRU of at most [`DEDUP_MAX`] keys: at the cap the least
//! recently seen key is evicted (and counted), so memory and the cost of a decision stay
//! bounded whatever callers send; an evicted key may report again within its window. The decision path only checks whether any matched policy has a followed action
//! (no allocation when none does). The worker that drains the queue and runs the actions (log,
//! webhook, syslog) is a background service (`services::followed_actions`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashlink::LruCache;
use serde::Serialize;
use tokio::sync::mpsc;

use super::engine::{Decision, Request, Snapshot};
use crate::base::time::{format_rfc3339, now};
use crate::config::ActionSetConfig;

/// Most (policy, matched value) keys remembered for de-duplication; beyond, the least recently
/// seen is evicted.
pub const DEDUP_MAX: usize = 100_000;

/// What [`Dispatcher::offer`] did beyond queueing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offered {
    /// Events a full queue dropped.
    pub dropped: usize,
    /// De-duplication keys evicted at the cap.
    pub evicted: usize,
}

/// What a followed action reports: one decision that matched one policy.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionEvent {
    /// RFC 3339.
    pub time: String,
    pub policy: String,
    pub action: &'static str,
    pub severity: &'static str,
    pub action_set: String,
    pub decision: &'static str,
    pub service: String,
    /// The database user(s) of the request.
    pub principal: String,
    pub os_user: Option<String>,
    pub source_app: Option<String>,
    pub client_ip: Option<String>,
    pub snapshot_version: u64,
}

/// The queue and the de-duplication window, owned by the running warden.
pub struct Dispatcher {
    queue: mpsc::Sender<DecisionEvent>,
    receiver: Mutex<Option<mpsc::Receiver<DecisionEvent>>>,
    recent: Mutex<LruCache<(String, String), Instant>>,
    dedup_max: usize,
}

impl Dispatcher {
    pub fn with_capacity(capacity: usize) -> Dispatcher {
        Dispatcher::with_limits(capacity, DEDUP_MAX)
    }

    /// A queue of `capacity` events and at most `dedup_max` de-duplication keys.
    pub fn with_limits(capacity: usize, dedup_max: usize) -> Dispatcher {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        Dispatcher {
            queue,
            receiver: Mutex::new(Some(receiver)),
            recent: Mutex::new(LruCache::new_unbounded()),
            dedup_max: dedup_max.max(1),
        }
    }

    /// How many de-duplication keys are held.
    pub fn dedup_len(&self) -> usize {
        self.lock_recent().len()
    }

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, LruCache<(String, String), Instant>> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Offers the followed actions of `decision`. Never waits; allocates only when a matched
    /// policy has a followed action.
    /// `action_sets` are those of the configuration in force (for their de-duplication
    /// windows). Returns how many events a full queue dropped and keys the cap evicted.
    pub fn offer(
        &self,
        action_sets: &[ActionSetConfig],
        snapshot: &Snapshot,
        request: &Request<'_>,
        decision: &Decision,
    ) -> Offered {
        let mut offered = Offered::default();
        for m in &decision.matched {
            let Some(policy) = snapshot.policy(m) else {
                continue;
            };
            let Some(set) = &policy.followed_action else {
                continue;
            };
            let key = snapshot.match_key(m, request);
            if !self.first_in_window(action_sets, set, &policy.name, key, &mut offered) {
                continue;
            }
            let principal = request.db_user.join(",");
            let event = DecisionEvent {
                time: format_rfc3339(now()),
                policy: policy.name.clone(),
                action: m.action.as_str(),
                severity: m.severity.as_str(),
                action_set: set.clone(),
                decision: decision.outcome.as_str(),
                service: request.service.to_owned(),
                principal,
                os_user: request.os_user.map(str::to_owned),
                source_app: request.source_app.map(str::to_owned),
                client_ip: request.client_ip.map(str::to_owned),
                snapshot_version: decision.snapshot_version,
            };
            if self.queue.try_send(event).is_err() {
                offered.dropped += 1;
            }
        }
        offered
    }

    /// Whether (policy, key) has not been reported within the set's window; records it,
    /// evicting the least recently seen key at the cap.
    fn first_in_window(
        &self,
        action_sets: &[ActionSetConfig],
        set: &str,
        policy: &str,
        key: String,
        offered: &mut Offered,
    ) -> bool {
        let window = action_sets
            .iter()
            .find(|a| a.name == set)
            .map_or(Duration::ZERO, |a| a.dedup_window);
        if window.is_zero() {
            return true;
        }
        let now = Instant::now();
        let key = (policy.to_owned(), key);
        let mut recent = self.lock_recent();
        if let Some(last) = recent.get(&key)
            && now.duration_since(*last) < window
        {
            return false;
        }
        if !recent.contains_key(&key) && recent.len() >= self.dedup_max {
            recent.remove_lru();
            offered.evicted += 1;
        }
        recent.insert(key, now);
        true
    }

    /// The queue's receiving end, for the one worker that drains it (taken once).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<DecisionEvent>> {
        self.receiver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;
    use crate::decide::IndexCache;
    use crate::model::dataset::{Cell, Column, DataSet, DataSetBuilder, Schema};
    use crate::model::policy::{
        Action, Criterion, Field, Operation, Policy, ServiceScope, Severity, UnknownValues,
    };

    fn snapshot(members: &[&str]) -> Snapshot {
        let schema = Schema::new(
            vec![Column {
                name: "user".into(),
                key: true,
            }],
            false,
        )
        .unwrap();
        let mut b = DataSetBuilder::new("Suspicious Users", schema);
        for n in members {
            b.push(vec![Cell::One((*n).into())]).unwrap();
        }
        let set: Arc<DataSet> = Arc::new(b.build());
        let policy = Policy {
            name: "block".into(),
            enabled: true,
            action: Action::Block,
            severity: Severity::High,
            followed_action: Some("notify".into()),
            apply_to: ServiceScope::new(&["*".to_owned()]).unwrap(),
            criteria: vec![Criterion {
                field: Field::DbUser,
                operation: Operation::AtLeastOne,
                data_set: "Suspicious Users".into(),
                search_in: vec![],
                handle_unknown_values: UnknownValues::NoMatch,
            }],
            when_unknown: Default::default(),
        };
        Snapshot::build(&[policy], vec![set], &mut IndexCache::default()).unwrap()
    }

    fn sets() -> Vec<ActionSetConfig> {
        vec![ActionSetConfig {
            name: "notify".into(),
            actions: vec![],
            dedup_window: Duration::from_secs(3600),
        }]
    }

    fn offer(d: &Dispatcher, snap: &Snapshot, users: &[&str]) -> Offered {
        let mut r = Request::new("orders");
        for u in users {
            r = r.db_user(u);
        }
        let decision = snap.decide(&r);
        assert!(!decision.matched.is_empty());
        d.offer(&sets(), snap, &r, &decision)
    }

    fn queued(d: &Dispatcher) -> usize {
        let mut rx = d.take_receiver().unwrap();
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn an_extra_varying_db_user_neither_grows_the_window_nor_reports_again() {
        let snap = snapshot(&[r"corp\alice"]);
        let d = Dispatcher::with_capacity(100);
        for i in 0..50 {
            let extra = format!("noise{i}");
            assert_eq!(
                offer(&d, &snap, &[r"corp\alice", &extra]),
                Offered::default()
            );
        }
        assert_eq!(d.dedup_len(), 1);
        assert_eq!(queued(&d), 1);
    }

    #[test]
    fn the_window_is_an_lru_bounded_by_its_cap_and_evictions_are_reported() {
        let snap = snapshot(&["a", "b", "c"]);
        let d = Dispatcher::with_limits(100, 2);
        assert_eq!(offer(&d, &snap, &["a"]).evicted, 0);
        assert_eq!(offer(&d, &snap, &["b"]).evicted, 0);
        // `a` seen again (deduplicated) becomes the most recent; `c` evicts `b`.
        assert_eq!(offer(&d, &snap, &["a"]), Offered::default());
        assert_eq!(offer(&d, &snap, &["c"]).evicted, 1);
        assert_eq!(d.dedup_len(), 2);
        // `a` is still within its window; `b` was evicted and reports again.
        assert_eq!(offer(&d, &snap, &["a"]), Offered::default());
        assert_eq!(offer(&d, &snap, &["b"]).evicted, 1);
        assert_eq!(queued(&d), 4);
    }
}
