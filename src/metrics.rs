//! Counters and a latency histogram for `/metrics`, in Prometheus text format.
//!
//! Recording is a relaxed atomic add, cheap enough for the decision path: outcomes are two
//! fixed counters, and a matched policy's series is found by its name in a sharded map hashed
//! with foldhash (no allocation once the policy has a series, no SipHash per decision).
//! Gauges that describe state — data-set rows, refresh age, held refreshes — are not stored
//! here: the gateway reads them from the snapshot and the store when `/metrics` is scraped, so
//! they cannot drift from the truth.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::auth::denials::Refusal;
use crate::decide::Outcome;
use crate::model::policy::Action;

/// Upper bounds of the decision-latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 1e-3, 1e-2,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// Process-wide counters.
#[derive(Default)]
pub struct Metrics {
    /// Decisions by outcome: `[allow, block]`.
    decisions: [AtomicU64; 3],
    /// Per policy name, matches by action `[block, none]`: looked up by `&str`, so a decision
    /// that matches allocates nothing once the policy has a series.
    policy_matches: DashMap<Box<str>, [AtomicU64; 2], foldhash::fast::RandomState>,
    followed: DashMap<(&'static str, &'static str), AtomicU64>,
    followed_dropped: AtomicU64,
    /// Followed-action de-duplication entries evicted (least recently used) at the cap.
    dedup_evicted: AtomicU64,
    /// Refused requests by [`Refusal`] slot.
    refused: [AtomicU64; Refusal::ALL.len()],
    /// Refusals folded into the overflow bucket of the denial aggregate.
    refused_overflow: AtomicU64,
    /// Audit records written for refusals (each one aggregates many).
    refused_audit_records: AtomicU64,
    latency: Histogram,
    /// Bumped on every response, so hashed with foldhash too.
    http: DashMap<(&'static str, u16), AtomicU64, foldhash::fast::RandomState>,
    refresh_failures: DashMap<String, AtomicU64>,
    sync_failures: DashMap<String, AtomicU64>,
    /// Listed members put back into their group after someone else removed them, by group.
    drift_repaired: DashMap<String, AtomicU64>,
    last_refresh_ms: DashMap<String, AtomicU64>,
    /// Pulls of `ldap` data sets, by data set and kind (`full`, `incremental`).
    pulls: DashMap<(String, &'static str), AtomicU64>,
    /// Rows where a full pull found the incremental state wrong (then repaired), by data set.
    incremental_mismatches: DashMap<String, AtomicU64>,
    /// Nesting cycles in the chain of a nested data set's group, at its last pull.
    nesting_cycles: DashMap<String, AtomicU64>,
    /// Per PostgreSQL gate; a session holds its gate's counters, so relaying looks nothing up.
    gates: DashMap<String, std::sync::Arc<GateCounters>>,
    /// Expiry sweeps whose deactivations were skipped: wall and monotonic clocks disagreed.
    expiry_clock_skips: AtomicU64,
    /// Expiry sweeps held for a list (counted when a hold begins or changes).
    expiry_holds: AtomicU64,
    /// Notifications on the change feed's channel that warden did not write, by
    /// [`IgnoredNotification`] slot.
    notifications_ignored: [AtomicU64; IgnoredNotification::ALL.len()],
    /// The HTTP listener's connections.
    connections: ConnectionCounters,
}

/// Why the change feed ignored a notification on warden's channel (any role that may connect
/// to the store database can send one; a notification is only ever a wake-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoredNotification {
    /// The payload is not a revision as warden writes it.
    Malformed,
    /// The payload names a revision the change log does not have.
    UnknownRevision,
}

impl IgnoredNotification {
    pub const ALL: [IgnoredNotification; 2] = [
        IgnoredNotification::Malformed,
        IgnoredNotification::UnknownRevision,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IgnoredNotification::Malformed => "malformed",
            IgnoredNotification::UnknownRevision => "unknown_revision",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Why the HTTP listener dropped a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionDrop {
    /// Its client address already held `max_connections_per_client`.
    PerClientCap,
    /// A request head (or the TLS handshake) did not arrive within `header_read_timeout`.
    HeaderTimeout,
    /// Nothing moved while nothing was being answered for `idle_timeout`.
    IdleTimeout,
    /// The client left its answer unread for `write_timeout`.
    WriteTimeout,
}

impl ConnectionDrop {
    pub const ALL: [ConnectionDrop; 4] = [
        ConnectionDrop::PerClientCap,
        ConnectionDrop::HeaderTimeout,
        ConnectionDrop::IdleTimeout,
        ConnectionDrop::WriteTimeout,
    ];

    /// The `reason` label, the name of the setting that drops it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionDrop::PerClientCap => "max_connections_per_client",
            ConnectionDrop::HeaderTimeout => "header_read_timeout",
            ConnectionDrop::IdleTimeout => "idle_timeout",
            ConnectionDrop::WriteTimeout => "write_timeout",
        }
    }
}

/// The HTTP listener's connections: opened, closed, and dropped by reason.
#[derive(Default)]
struct ConnectionCounters {
    opened: AtomicU64,
    closed: AtomicU64,
    dropped: [AtomicU64; ConnectionDrop::ALL.len()],
}

/// The counters of one PostgreSQL gate (`src/gate`).
#[derive(Default)]
pub struct GateCounters {
    opened: AtomicU64,
    closed: AtomicU64,
    /// Connections refused before a session, by reason.
    refused: DashMap<&'static str, AtomicU64>,
    /// Open sessions the gate ended, by reason.
    ended: DashMap<&'static str, AtomicU64>,
    /// Bytes relayed `[client → server, server → client]`.
    bytes: [AtomicU64; 2],
}

impl GateCounters {
    pub fn session_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, reason: &'static str) {
        bump(&self.refused, reason, 1);
    }

    pub fn ended(&self, reason: &'static str) {
        bump(&self.ended, reason, 1);
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

fn bump<K, S>(map: &DashMap<K, AtomicU64, S>, key: K, by: u64)
where
    K: std::hash::Hash + Eq,
    S: std::hash::BuildHasher + Clone,
{
    if let Some(c) = map.get(&key) {
        c.fetch_add(by, Ordering::Relaxed);
        return;
    }
    map.entry(key).or_default().fetch_add(by, Ordering::Relaxed);
}

impl Metrics {
    /// One decision: its outcome, how long it took, and every policy it matched.
    pub fn decision<'p>(
        &self,
        outcome: Outcome,
        took: Duration,
        matched: impl Iterator<Item = (&'p str, Action)>,
    ) {
        self.decisions[outcome_slot(outcome)].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency.count.fetch_add(1, Ordering::Relaxed);
        self.latency.sum_ns.fetch_add(ns, Ordering::Relaxed);
        for (policy, action) in matched {
            let slot = action_slot(action);
            if let Some(c) = self.policy_matches.get(policy) {
                c[slot].fetch_add(1, Ordering::Relaxed);
            } else {
                self.policy_matches.entry(policy.into()).or_default()[slot]
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A followed action ran (`outcome` `sent` or `failed`).
    pub fn followed_action(&self, kind: &'static str, outcome: &'static str) {
        bump(&self.followed, (kind, outcome), 1);
    }

    /// An expiry sweep skipped its deactivations: the clocks disagreed.
    pub fn expiry_clock_skipped(&self) {
        self.expiry_clock_skips.fetch_add(1, Ordering::Relaxed);
    }

    /// An expiry sweep was held for a list.
    pub fn expiry_held(&self) {
        self.expiry_holds.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` notifications on the change feed's channel were ignored for `reason`.
    pub fn notifications_ignored(&self, reason: IgnoredNotification, n: u64) {
        self.notifications_ignored[reason.slot()].fetch_add(n, Ordering::Relaxed);
    }

    /// The HTTP listener took a connection (counted closed when [`Metrics::connection_closed`]).
    pub fn connection_opened(&self) {
        self.connections.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// The HTTP listener dropped a connection on its own.
    pub fn connection_dropped(&self, why: ConnectionDrop) {
        self.connections.dropped[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A followed-action event was dropped because the queue was full.
    pub fn followed_action_dropped(&self) {
        self.followed_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A followed-action de-duplication entry was evicted to stay within the cap.
    pub fn followed_dedup_evicted(&self) {
        self.dedup_evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was refused (failed authentication or a missing scope); `overflow` when the
    /// denial aggregate was full and it went to the `other` bucket.
    pub fn refused(&self, refusal: Refusal, overflow: bool) {
        self.refused[refusal.slot()].fetch_add(1, Ordering::Relaxed);
        if overflow {
            self.refused_overflow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A flush of the denial aggregate wrote `n` audit records.
    pub fn refusal_audit_records(&self, n: usize) {
        self.refused_audit_records
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One HTTP response on `route` (the route's pattern, not the raw path).
    pub fn http(&self, route: &'static str, status: u16) {
        bump(&self.http, (route, status), 1);
    }

    pub fn refresh_failed(&self, data_set: &str) {
        bump(&self.refresh_failures, data_set.to_owned(), 1);
    }

    pub fn sync_failed(&self, directory: &str) {
        bump(&self.sync_failures, directory.to_owned(), 1);
    }

    /// A push put `n` listed members back into `group_dn` (drift repaired).
    pub fn drift_repaired(&self, group_dn: &str, n: usize) {
        bump(&self.drift_repaired, group_dn.to_owned(), n as u64);
    }

    /// A refresh of `data_set` was applied at `at_ms` (Unix milliseconds).
    pub fn refreshed(&self, data_set: &str, at_ms: u64) {
        self.last_refresh_ms
            .entry(data_set.to_owned())
            .or_default()
            .store(at_ms, Ordering::Relaxed);
    }

    /// A pull of `data_set` ran; `kind` is `full` or `incremental`.
    pub fn pulled(&self, data_set: &str, kind: &'static str) {
        bump(&self.pulls, (data_set.to_owned(), kind), 1);
    }

    /// A full pull of `data_set` found `n` rows the incremental state had wrong.
    pub fn incremental_mismatch(&self, data_set: &str, n: usize) {
        bump(&self.incremental_mismatches, data_set.to_owned(), n as u64);
    }

    /// The chain of `data_set`'s nested groups holds `n` cycles.
    pub fn nesting_cycles(&self, data_set: &str, n: usize) {
        self.nesting_cycles
            .entry(data_set.to_owned())
            .or_default()
            .store(n as u64, Ordering::Relaxed);
    }

    /// The counters of gate `name` (made on first use).
    pub fn gate(&self, name: &str) -> std::sync::Arc<GateCounters> {
        if let Some(c) = self.gates.get(name) {
            return std::sync::Arc::clone(&c);
        }
        std::sync::Arc::clone(&self.gates.entry(name.to_owned()).or_default())
    }

    fn render_gates(&self, out: &mut String) {
        let mut gates: Vec<(String, std::sync::Arc<GateCounters>)> = self
            .gates
            .iter()
            .map(|e| (label(e.key()), std::sync::Arc::clone(e.value())))
            .collect();
        gates.sort_by(|a, b| a.0.cmp(&b.0));
        family(
            out,
            "warden_gate_sessions_open",
            "gauge",
            "Open sessions, by gate.",
        );
        for (g, c) in &gates {
            line(
                out,
                "warden_gate_sessions_open",
                &format!("gate=\"{g}\""),
                c.open(),
            );
        }
        family(
            out,
            "warden_gate_refused_total",
            "counter",
            "Connections a gate refused, by gate and reason.",
        );
        for (g, c) in &gates {
            for e in sorted(&c.refused, |r| format!("gate=\"{g}\",reason=\"{r}\"")) {
                line(out, "warden_gate_refused_total", &e.0, e.1);
            }
        }
        family(
            out,
            "warden_gate_sessions_ended_total",
            "counter",
            "Open sessions a gate ended, by gate and reason.",
        );
        for (g, c) in &gates {
            for e in sorted(&c.ended, |r| format!("gate=\"{g}\",reason=\"{r}\"")) {
                line(out, "warden_gate_sessions_ended_total", &e.0, e.1);
            }
        }
        family(
            out,
            "warden_gate_bytes_total",
            "counter",
            "Bytes a gate relayed, by gate and direction.",
        );
        for (g, c) in &gates {
            for (i, dir) in ["to_server", "to_client"].iter().enumerate() {
                let n = c.bytes[i].load(Ordering::Relaxed);
                line(
                    out,
                    "warden_gate_bytes_total",
                    &format!("gate=\"{g}\",direction=\"{dir}\""),
                    n,
                );
            }
        }
    }

    /// Last applied refresh per data set, Unix milliseconds.
    pub fn last_refreshes(&self) -> Vec<(String, u64)> {
        self.last_refresh_ms
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
            .collect()
    }

    /// How many decisions matched `policy` since the process started (every action).
    pub fn policy_matches(&self, policy: &str) -> u64 {
        self.policy_matches
            .get(policy)
            .map_or(0, |c| c.iter().map(|n| n.load(Ordering::Relaxed)).sum())
    }

    /// The counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        family(
            out,
            "warden_decisions_total",
            "counter",
            "Decisions by outcome.",
        );
        for outcome in Outcome::ALL {
            let n = self.decisions[outcome_slot(outcome)].load(Ordering::Relaxed);
            if n > 0 {
                let labels = format!("outcome=\"{}\"", outcome.as_str());
                line(out, "warden_decisions_total", &labels, n);
            }
        }
        family(
            out,
            "warden_policy_matches_total",
            "counter",
            "Decisions that matched a policy, by policy and action.",
        );
        let mut matches: Vec<(String, u64)> = self
            .policy_matches
            .iter()
            .flat_map(|e| {
                let p = label(e.key());
                [Action::Block, Action::None].map(|a| {
                    (
                        format!("policy=\"{p}\",action=\"{}\"", a.as_str()),
                        e.value()[action_slot(a)].load(Ordering::Relaxed),
                    )
                })
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        matches.sort();
        for (labels, n) in matches {
            line(out, "warden_policy_matches_total", &labels, n);
        }
        self.render_latency(out);
        family(
            out,
            "warden_http_requests_total",
            "counter",
            "HTTP responses by route and status.",
        );
        for e in sorted(&self.http, |(r, s)| format!("route=\"{r}\",status=\"{s}\"")) {
            line(out, "warden_http_requests_total", &e.0, e.1);
        }
        self.render_connections(out);
        family(
            out,
            "warden_refresh_failures_total",
            "counter",
            "Failed data-set refreshes.",
        );
        for e in sorted(&self.refresh_failures, |d| {
            format!("data_set=\"{}\"", label(d))
        }) {
            line(out, "warden_refresh_failures_total", &e.0, e.1);
        }
        family(
            out,
            "warden_sync_failures_total",
            "counter",
            "Failed push syncs, by directory.",
        );
        for e in sorted(&self.sync_failures, |d| {
            format!("directory=\"{}\"", label(d))
        }) {
            line(out, "warden_sync_failures_total", &e.0, e.1);
        }
        family(
            out,
            "warden_pulls_total",
            "counter",
            "Pulls of LDAP data sets, by data set and kind (full, incremental).",
        );
        for e in sorted(&self.pulls, |(d, k)| {
            format!("data_set=\"{}\",kind=\"{k}\"", label(d))
        }) {
            line(out, "warden_pulls_total", &e.0, e.1);
        }
        family(
            out,
            "warden_incremental_mismatches_total",
            "counter",
            "Rows a full pull found the incremental state had wrong (repaired by the full result).",
        );
        for e in sorted(&self.incremental_mismatches, |d| {
            format!("data_set=\"{}\"", label(d))
        }) {
            line(out, "warden_incremental_mismatches_total", &e.0, e.1);
        }
        family(
            out,
            "warden_nesting_cycles",
            "gauge",
            "Nesting cycles in the chain of a nested data set's group, at its last pull.",
        );
        for e in sorted(&self.nesting_cycles, |d| {
            format!("data_set=\"{}\"", label(d))
        }) {
            line(out, "warden_nesting_cycles", &e.0, e.1);
        }
        family(
            out,
            "warden_drift_repaired_total",
            "counter",
            "Listed members put back into their group after someone else removed them.",
        );
        for e in sorted(&self.drift_repaired, |g| format!("group=\"{}\"", label(g))) {
            line(out, "warden_drift_repaired_total", &e.0, e.1);
        }
        family(
            out,
            "warden_followed_actions_total",
            "counter",
            "Followed actions run, by type and outcome.",
        );
        for e in sorted(&self.followed, |(t, o)| {
            format!("type=\"{t}\",outcome=\"{o}\"")
        }) {
            line(out, "warden_followed_actions_total", &e.0, e.1);
        }
        family(
            out,
            "warden_followed_actions_dropped_total",
            "counter",
            "Followed-action events dropped because the queue was full.",
        );
        line(
            out,
            "warden_followed_actions_dropped_total",
            "",
            self.followed_dropped.load(Ordering::Relaxed),
        );
        self.render_gates(out);
        for (name, help, value) in [
            (
                "warden_expiry_clock_skips_total",
                "Expiry sweeps that deactivated nothing because the wall clock and the monotonic \
                 clock disagreed (a clock jump).",
                &self.expiry_clock_skips,
            ),
            (
                "warden_expiry_holds_total",
                "Expiry sweeps held because they would deactivate too large a share of a list.",
                &self.expiry_holds,
            ),
        ] {
            family(out, name, "counter", help);
            line(out, name, "", value.load(Ordering::Relaxed));
        }
        family(
            out,
            "warden_change_notifications_ignored_total",
            "counter",
            "Notifications on warden's change channel that warden did not write, ignored (a \
             notification only wakes the change feed), by reason.",
        );
        for reason in IgnoredNotification::ALL {
            line(
                out,
                "warden_change_notifications_ignored_total",
                &format!("reason=\"{}\"", reason.as_str()),
                self.notifications_ignored[reason.slot()].load(Ordering::Relaxed),
            );
        }
        family(
            out,
            "warden_followed_dedup_evictions_total",
            "counter",
            "Followed-action de-duplication entries evicted (least recently used) at the cap.",
        );
        line(
            out,
            "warden_followed_dedup_evictions_total",
            "",
            self.dedup_evicted.load(Ordering::Relaxed),
        );
        family(
            out,
            "warden_auth_refused_total",
            "counter",
            "Requests refused by authentication or scope, by reason.",
        );
        for r in Refusal::ALL {
            let n = self.refused[r.slot()].load(Ordering::Relaxed);
            line(
                out,
                "warden_auth_refused_total",
                &format!("reason=\"{}\"", r.as_str()),
                n,
            );
        }
        family(
            out,
            "warden_auth_refused_overflow_total",
            "counter",
            "Refusals counted in the overflow bucket because the aggregate was full.",
        );
        line(
            out,
            "warden_auth_refused_overflow_total",
            "",
            self.refused_overflow.load(Ordering::Relaxed),
        );
        family(
            out,
            "warden_auth_refused_audit_records_total",
            "counter",
            "Audit records written for refusals (one per source, reason and minute).",
        );
        line(
            out,
            "warden_auth_refused_audit_records_total",
            "",
            self.refused_audit_records.load(Ordering::Relaxed),
        );
    }

    fn render_connections(&self, out: &mut String) {
        let c = &self.connections;
        family(
            out,
            "warden_http_connections_open",
            "gauge",
            "Connections the HTTP listener holds open.",
        );
        let closed = c.closed.load(Ordering::Relaxed);
        let open = c.opened.load(Ordering::Relaxed).saturating_sub(closed);
        line(out, "warden_http_connections_open", "", open);
        family(
            out,
            "warden_http_connections_dropped_total",
            "counter",
            "Connections the HTTP listener dropped on its own, by reason (the setting).",
        );
        for why in ConnectionDrop::ALL {
            let n = c.dropped[why as usize].load(Ordering::Relaxed);
            let labels = format!("reason=\"{}\"", why.as_str());
            line(out, "warden_http_connections_dropped_total", &labels, n);
        }
    }

    fn render_latency(&self, out: &mut String) {
        let name = "warden_decision_duration_seconds";
        family(out, name, "histogram", "Time to decide, excluding I/O.");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound:e}\"}} {cumulative}");
        }
        let count = self.latency.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

fn outcome_slot(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Allow => 0,
        Outcome::Block => 1,
        Outcome::Error => 2,
    }
}

fn action_slot(action: Action) -> usize {
    match action {
        Action::Block => 0,
        Action::None => 1,
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes one sample.
pub fn line(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Escapes a label value (backslash, quote, newline).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn sorted<K, S>(map: &DashMap<K, AtomicU64, S>, labels: impl Fn(&K) -> String) -> Vec<(String, u64)>
where
    K: std::hash::Hash + Eq,
    S: std::hash::BuildHasher + Clone,
{
    let mut v: Vec<(String, u64)> = map
        .iter()
        .map(|e| (labels(e.key()), e.value().load(Ordering::Relaxed)))
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.decision(
            Outcome::Block,
            Duration::from_nanos(300),
            [("Block \"bad\" users", Action::Block)].into_iter(),
        );
        m.decision(Outcome::Allow, Duration::from_micros(3), std::iter::empty());
        m.decision(Outcome::Error, Duration::from_micros(3), std::iter::empty());
        m.http("/v1/decision", 200);
        m.refresh_failed("PTR");
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("warden_decisions_total{outcome=\"block\"} 1"),
            "{out}"
        );
        assert!(out.contains("warden_decisions_total{outcome=\"allow\"} 1"));
        // A decision that depended on a data set that never loaded counts as an error.
        assert!(out.contains("warden_decisions_total{outcome=\"error\"} 1"));
        assert!(out.contains(
            "warden_policy_matches_total{policy=\"Block \\\"bad\\\" users\",action=\"block\"} 1"
        ));
        assert!(
            out.contains("warden_decision_duration_seconds_bucket{le=\"5e-7\"} 1"),
            "{out}"
        );
        assert!(out.contains("warden_decision_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(out.contains("warden_decision_duration_seconds_count 3"));
        assert!(
            out.contains("warden_http_requests_total{route=\"/v1/decision\",status=\"200\"} 1")
        );
        assert!(out.contains("warden_refresh_failures_total{data_set=\"PTR\"} 1"));
    }

    #[test]
    fn refusals_render_per_reason_with_overflow_and_evictions() {
        let m = Metrics::default();
        for _ in 0..3 {
            m.refused(Refusal::Invalid, false);
        }
        m.refused(Refusal::Forbidden, true);
        m.refusal_audit_records(2);
        m.followed_dedup_evicted();
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("warden_auth_refused_total{reason=\"invalid\"} 3"),
            "{out}"
        );
        assert!(out.contains("warden_auth_refused_total{reason=\"forbidden\"} 1"));
        assert!(out.contains("warden_auth_refused_total{reason=\"missing\"} 0"));
        assert!(out.contains("warden_auth_refused_overflow_total 1"));
        assert!(out.contains("warden_auth_refused_audit_records_total 2"));
        assert!(out.contains("warden_followed_dedup_evictions_total 1"));
    }

    #[test]
    fn connections_render_open_and_every_drop_reason() {
        let m = Metrics::default();
        for _ in 0..3 {
            m.connection_opened();
        }
        m.connection_closed();
        m.connection_dropped(ConnectionDrop::WriteTimeout);
        m.connection_dropped(ConnectionDrop::WriteTimeout);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("warden_http_connections_open 2"), "{out}");
        let dropped = "warden_http_connections_dropped_total";
        assert!(out.contains(&format!("{dropped}{{reason=\"write_timeout\"}} 2")));
        for zero in [
            "max_connections_per_client",
            "idle_timeout",
            "header_read_timeout",
        ] {
            assert!(
                out.contains(&format!("{dropped}{{reason=\"{zero}\"}} 0")),
                "{zero}"
            );
        }
    }
}
