//! The gates' metrics, whatever protocol a gate speaks: open sessions, refusals and ended
//! sessions by reason, bytes relayed.
//! A session holds its gate's [`GateCounters`], so relaying looks nothing up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::metrics::{Collect, CounterMap, Desc, Exposition};

static SESSIONS_OPEN: Desc = Desc::gauge("warden_gate_sessions_open", "Open sessions, by gate.");
static REFUSED: Desc = Desc::counter(
    "warden_gate_refused_total",
    "Connections a gate refused, by gate and reason.",
);
static ENDED: Desc = Desc::counter(
    "warden_gate_sessions_ended_total",
    "Open sessions a gate ended, by gate and reason.",
);
static BYTES: Desc = Desc::counter(
    "warden_gate_bytes_total",
    "Bytes a gate relayed, by gate and direction.",
);

/// Every gate's counters, by gate name (made when the gate starts).
#[derive(Default)]
pub struct GateMetrics {
    gates: DashMap<String, Arc<GateCounters>>,
}

impl GateMetrics {
    /// The counters of gate `name` (made on first use).
    pub fn gate(&self, name: &str) -> Arc<GateCounters> {
        if let Some(c) = self.gates.get(name) {
            return Arc::clone(&c);
        }
        let counters = GateCounters::new(name);
        Arc::clone(&self.gates.entry(name.to_owned()).or_insert(counters))
    }

    fn by_name(&self) -> Vec<Arc<GateCounters>> {
        let mut gates: Vec<Arc<GateCounters>> =
            self.gates.iter().map(|e| Arc::clone(e.value())).collect();
        gates.sort_by(|a, b| a.name.cmp(&b.name));
        gates
    }
}

impl Collect for GateMetrics {
    fn collect(&self, out: &mut Exposition<'_>) {
        let gates = self.by_name();
        out.family(&SESSIONS_OPEN);
        for g in &gates {
            out.sample(SESSIONS_OPEN.name, &[("gate", &g.name)], g.open());
        }
        out.family(&REFUSED);
        for g in &gates {
            g.refused.collect_samples(out, &g.name);
        }
        out.family(&ENDED);
        for g in &gates {
            g.ended.collect_samples(out, &g.name);
        }
        out.family(&BYTES);
        for g in &gates {
            for (i, direction) in ["to_server", "to_client"].iter().enumerate() {
                let n = g.bytes[i].load(Ordering::Relaxed);
                out.sample(
                    BYTES.name,
                    &[("gate", &g.name), ("direction", direction)],
                    n,
                );
            }
        }
    }
}

/// The counters of one gate (`src/gate`, `src/mysql`).
pub struct GateCounters {
    name: String,
    opened: AtomicU64,
    closed: AtomicU64,
    /// Connections refused before a session, by reason.
    refused: Reasons,
    /// Open sessions the gate ended, by reason.
    ended: Reasons,
    /// Bytes relayed `[client → server, server → client]`.
    bytes: [AtomicU64; 2],
}

impl GateCounters {
    fn new(name: &str) -> Arc<GateCounters> {
        Arc::new(GateCounters {
            name: name.to_owned(),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            refused: Reasons::new(&REFUSED),
            ended: Reasons::new(&ENDED),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    pub fn session_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.0.inc(reason);
    }

    pub fn ended(&self, reason: &'static str) {
        self.ended.0.inc(reason);
    }

    pub fn relayed_to_server(&self, n: usize) {
        self.bytes[0].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn relayed_to_client(&self, n: usize) {
        self.bytes[1].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Sessions open now.
    pub fn open(&self) -> u64 {
        let closed = self.closed.load(Ordering::Relaxed);
        self.opened.load(Ordering::Relaxed).saturating_sub(closed)
    }
}

/// A gate's count of one thing by reason.
struct Reasons(CounterMap<&'static str>);

impl Reasons {
    fn new(desc: &'static Desc) -> Reasons {
        Reasons(CounterMap::new(desc, &["reason"]))
    }

    /// This gate's samples of the family, labelled with the gate first.
    fn collect_samples(&self, out: &mut Exposition<'_>, gate: &str) {
        out.sorted_samples(
            self.0.name(),
            self.0
                .values()
                .into_iter()
                .map(|(reason, n)| (vec![("gate", gate), ("reason", reason)], n)),
        );
    }
}
