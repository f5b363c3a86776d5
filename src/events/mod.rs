//! Events for the SOC: every audit record, every refusal and ended session at a gate, every
//! recorded decision (each block; allows by opt-in) and every change warden makes to an
//! enforcement surface (a member put into or taken out of an AD group or a database role),
//! written as CEF ([`cef`]) or OCSF ([`ocsf`]) and delivered per sink — syslog over TLS
//! ([`syslog`], RFC 5424/5425) or a rotating file — through a bounded durable queue
//! ([`queue`]); and the decision log auditors replay ([`decision_log`]).
//!
//! This layer sits under the runtime so that `runtime`, `sync`, `operations`, `gate` and
//! `services` can all emit without knowing any front end. [`Events::emit`] never waits: it
//! offers the event to each sink's bounded in-memory handoff (`[events] handoff` items) and
//! counts a refusal as a drop. Audit records do not pass through it at all: each sink's
//! writer follows the audit log itself ([`sink`]), so an audit record written by any process
//! (the command line included) is sent, and sent once per sink, from where the sink stopped.

pub mod cef;
pub mod decision_log;
mod event;
mod file;
mod handoff;
mod metrics;
pub mod ocsf;
pub mod queue;
mod sink;
pub mod syslog;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use decision_log::{DecisionRecord, Decisions, LogStats};
pub use event::{Activity, Event, Gate, Severity, from_audit, subject};
pub use metrics::EventMetrics;
pub use sink::{CONFIRM_AFTER, Running, SinkStats};

use crate::config::{Config, EventsConfig, SinkConfig};
use crate::store::Store;
use sink::Item;

/// One configured sink's input: the handoff's two ends and its counters.
struct Input {
    config: SinkConfig,
    handoff: SyncSender<Item>,
    receiver: Mutex<Option<Receiver<Item>>>,
    stats: Arc<SinkStats>,
}

/// Where events go: the configured sinks. Owned by the running warden. Events offered
/// before [`Events::start`] wait in the handoffs (so none is lost while `serve` starts); a
/// command-line process never starts the sinks, so what it offers is never sent (its audit
/// records are, by the running server, which follows the audit log).
pub struct Events {
    vendor: String,
    sinks: Vec<Input>,
    /// False once stopped: a stopped sink takes nothing more.
    accepting: AtomicBool,
    /// The newest audit record when this warden was made: where a sink with a new queue
    /// begins following the audit log.
    origin: i64,
}

/// A sink's state for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkStatus {
    pub sink: String,
    pub running: bool,
    pub connected: bool,
    pub queued_bytes: u64,
    pub queue_max_bytes: u64,
    pub dropped: u64,
    pub dropped_queue_full: u64,
    pub dropped_handoff_full: u64,
    pub delivered: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Events {
    /// The sinks of `config`, counted in `metrics`; `origin` is the newest audit record's id
    /// now.
    pub fn new(config: &EventsConfig, origin: i64, metrics: &EventMetrics) -> Events {
        let sinks = config
            .sinks
            .iter()
            .map(|s| {
                let (handoff, receiver) = std::sync::mpsc::sync_channel(config.handoff.max(1));
                Input {
                    config: s.clone(),
                    handoff,
                    receiver: Mutex::new(Some(receiver)),
                    stats: metrics.sink(&s.name),
                }
            })
            .collect();
        Events {
            vendor: config.vendor.clone(),
            sinks,
            accepting: AtomicBool::new(true),
            origin,
        }
    }

    /// Whether any sink takes recorded decisions.
    pub fn takes_decisions(&self) -> bool {
        self.sinks.iter().any(|s| s.config.decisions)
    }

    /// Offers `event` to every sink without waiting; a full handoff drops it for that sink
    /// and counts the drop.
    pub fn emit(&self, event: Event) {
        if !self.accepting.load(Ordering::Relaxed) || self.sinks.is_empty() {
            return;
        }
        let event = Arc::new(event);
        for s in &self.sinks {
            offer(s, Item::Event(Arc::clone(&event)));
        }
    }

    /// Offers the events of one bulk change (a push run adding many members) as one item,
    /// so that a large change does not crowd the handoff out; without waiting.
    pub fn emit_all(&self, events: Vec<Event>) {
        if !self.accepting.load(Ordering::Relaxed) || self.sinks.is_empty() || events.is_empty() {
            return;
        }
        let events = Arc::new(events);
        for s in &self.sinks {
            offer(s, Item::Batch(Arc::clone(&events)));
        }
    }

    /// Offers a recorded decision to the sinks that take decisions, without waiting.
    pub fn decision(&self, record: &Arc<DecisionRecord>) {
        if !self.accepting.load(Ordering::Relaxed) {
            return;
        }
        for s in self.sinks.iter().filter(|s| s.config.decisions) {
            offer(s, Item::Decision(Arc::clone(record)));
        }
    }

    /// Opens each sink's queue and starts its threads (blocking I/O); from here on events
    /// are taken. A sink that cannot start is logged and shown in its status; the others run.
    pub fn start(&self, config: &Config, store: &Arc<Store>) -> Vec<Running> {
        let mut running = Vec::new();
        for s in &self.sinks {
            let Some(receiver) = s
                .receiver
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            else {
                continue;
            };
            let dir = config.event_queue_dir(&s.config);
            let ends = sink::Ends {
                handoff: receiver,
                stats: Arc::clone(&s.stats),
                store: Arc::clone(store),
                origin: self.origin,
            };
            match sink::start(&s.config, dir.clone(), &self.vendor, ends) {
                Ok(r) => {
                    tracing::info!(sink = %s.config.name, queue = %dir.display(), "SIEM sink started");
                    running.push(r);
                }
                Err(e) => {
                    tracing::error!(sink = %s.config.name, queue = %dir.display(), error = %e, "SIEM sink cannot start; its events are dropped and counted");
                    *s.stats
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) =
                        Some(format!("cannot start: {e}"));
                }
            }
        }
        running
    }

    /// Stops taking events and stops the sinks, each within `grace`.
    pub fn stop(&self, running: Vec<Running>, grace: Duration) {
        self.accepting.store(false, Ordering::Relaxed);
        for r in running {
            r.stop(grace);
        }
    }

    /// Each sink's state.
    pub fn statuses(&self) -> Vec<SinkStatus> {
        self.sinks
            .iter()
            .map(|s| {
                let st = &s.stats;
                let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
                SinkStatus {
                    sink: s.config.name.clone(),
                    running: st.running.load(Ordering::Relaxed),
                    connected: st.connected.load(Ordering::Relaxed),
                    queued_bytes: get(&st.pending_bytes),
                    queue_max_bytes: s.config.queue_max_bytes,
                    dropped: st.dropped(),
                    dropped_queue_full: get(&st.dropped_queue),
                    dropped_handoff_full: get(&st.dropped_handoff),
                    delivered: get(&st.delivered),
                    last_error: st.last_error(),
                }
            })
            .collect()
    }
}

fn offer(s: &Input, item: Item) {
    let n = match &item {
        Item::Batch(events) => events.len() as u64,
        _ => 1,
    };
    if s.handoff.try_send(item).is_err() {
        s.stats.dropped_handoff.fetch_add(n, Ordering::Relaxed);
    }
}
