//! The decision side of followed actions: after a decision matched a policy that names an
//! action set, the event is de-duplicated per (policy, principal) within the set's window and
//! offered to a bounded queue without waiting — a full queue drops the event, and the caller
//! counts it. The decision path only checks whether any matched policy has a followed action
//! (no allocation when none does). The worker that drains the queue and runs the actions (log,
//! webhook, syslog) is a background service (`services::followed_actions`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::mpsc;

use super::engine::{Decision, Request, Snapshot};
use crate::base::time::{format_rfc3339, now};
use crate::config::ActionSetConfig;

/// Most (policy, principal) pairs remembered for de-duplication; older ones are pruned.
pub const DEDUP_MAX: usize = 100_000;

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
    recent: DashMap<(String, String), Instant>,
}

impl Dispatcher {
    pub fn with_capacity(capacity: usize) -> Dispatcher {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        Dispatcher {
            queue,
            receiver: Mutex::new(Some(receiver)),
            recent: DashMap::new(),
        }
    }

    /// Offers the followed actions of `decision`. Never waits; allocates only when a matched
    /// policy has a followed action.
    /// `action_sets` are those of the configuration in force (for their de-duplication
    /// windows). Returns how many events a full queue dropped.
    pub fn offer(
        &self,
        action_sets: &[ActionSetConfig],
        snapshot: &Snapshot,
        request: &Request<'_>,
        decision: &Decision,
    ) -> usize {
        let mut dropped = 0;
        for m in &decision.matched {
            let Some(policy) = snapshot.policy(m) else {
                continue;
            };
            let Some(set) = &policy.followed_action else {
                continue;
            };
            let principal = request.db_user.join(",");
            if !self.first_in_window(action_sets, set, &policy.name, &principal) {
                continue;
            }
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
                dropped += 1;
            }
        }
        dropped
    }

    /// Whether (policy, principal) has not been reported within the set's window; records it.
    fn first_in_window(
        &self,
        action_sets: &[ActionSetConfig],
        set: &str,
        policy: &str,
        principal: &str,
    ) -> bool {
        let window = action_sets
            .iter()
            .find(|a| a.name == set)
            .map_or(Duration::ZERO, |a| a.dedup_window);
        let now = Instant::now();
        let key = (policy.to_owned(), principal.to_lowercase());
        if let Some(last) = self.recent.get(&key)
            && now.duration_since(*last) < window
        {
            return false;
        }
        if self.recent.len() >= DEDUP_MAX {
            self.recent.retain(|_, at| now.duration_since(*at) < window);
        }
        self.recent.insert(key, now);
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
