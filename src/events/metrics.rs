//! The SIEM sinks' and the decision log's metrics, registered with the warden's registry:
//! per sink what was queued, delivered and dropped (by reason), the bytes waiting and whether
//! the receiver is connected; the decision log's writes and drops. The counters themselves
//! are the sinks' [`SinkStats`] and the log's [`LogStats`], which their threads update and
//! `/readyz` reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::decision_log::LogStats;
use super::sink::SinkStats;
use crate::metrics::{Collect, Desc, Exposition};

static QUEUED: Desc = Desc::counter(
    "warden_events_queued_total",
    "SIEM events written to the sink's queue, by sink.",
);
static DELIVERED: Desc = Desc::counter(
    "warden_events_delivered_total",
    "SIEM events delivered (committed out of the sink's queue), by sink.",
);
static QUEUED_BYTES: Desc = Desc::gauge(
    "warden_events_queued_bytes",
    "Bytes in the sink's queue not yet delivered, by sink.",
);
static CONNECTED: Desc = Desc::gauge(
    "warden_events_sink_connected",
    "1 while the sink's receiver took the last batch, by sink.",
);
static DROPPED: Desc = Desc::counter(
    "warden_events_dropped_total",
    "SIEM events dropped, by sink and reason: queue_full (the queue at its bound), \
     handoff_full (its in-memory handoff full).",
);
static LOG_WRITTEN: Desc = Desc::counter(
    "warden_decision_log_written_total",
    "Decision records written to the decision log.",
);
static LOG_DROPPED: Desc = Desc::counter(
    "warden_decision_log_dropped_total",
    "Decision records dropped: the log's handoff was full.",
);
static LOG_WRITE_ERRORS: Desc = Desc::counter(
    "warden_decision_log_write_errors_total",
    "Failed writes of the decision log.",
);

/// Every sink's counters, by sink name (made when the sinks are configured).
#[derive(Default)]
pub struct EventMetrics {
    sinks: DashMap<String, Arc<SinkStats>>,
}

impl EventMetrics {
    /// The counters of sink `name` (made on first use).
    pub fn sink(&self, name: &str) -> Arc<SinkStats> {
        Arc::clone(&self.sinks.entry(name.to_owned()).or_default())
    }

    fn by_name(&self) -> Vec<(String, Arc<SinkStats>)> {
        let mut sinks: Vec<(String, Arc<SinkStats>)> = self
            .sinks
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect();
        sinks.sort_by(|a, b| a.0.cmp(&b.0));
        sinks
    }
}

impl Collect for EventMetrics {
    fn collect(&self, out: &mut Exposition<'_>) {
        let sinks = self.by_name();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        type Value = fn(&SinkStats) -> u64;
        let families: [(&Desc, Value); 4] = [
            (&QUEUED, |s| s.queued.load(Ordering::Relaxed)),
            (&DELIVERED, |s| s.delivered.load(Ordering::Relaxed)),
            (&QUEUED_BYTES, |s| s.pending_bytes.load(Ordering::Relaxed)),
            (&CONNECTED, |s| {
                u64::from(s.connected.load(Ordering::Relaxed))
            }),
        ];
        for (desc, value) in families {
            out.family(desc);
            for (name, s) in &sinks {
                out.sample(desc.name, &[("sink", name)], value(s));
            }
        }
        out.family(&DROPPED);
        for (name, s) in &sinks {
            for (reason, n) in [
                ("queue_full", get(&s.dropped_queue)),
                ("handoff_full", get(&s.dropped_handoff)),
            ] {
                out.sample(DROPPED.name, &[("sink", name), ("reason", reason)], n);
            }
        }
    }
}

impl Collect for LogStats {
    fn collect(&self, out: &mut Exposition<'_>) {
        for (desc, counter) in [
            (&LOG_WRITTEN, &self.written),
            (&LOG_DROPPED, &self.dropped),
            (&LOG_WRITE_ERRORS, &self.write_errors),
        ] {
            out.family(desc);
            out.sample(desc.name, &[], counter.load(Ordering::Relaxed));
        }
    }
}
