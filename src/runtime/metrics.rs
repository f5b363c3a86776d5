//! The runtime's metrics: what every decision records (outcome, matched policies, latency,
//! followed-action events dropped or evicted), refused requests, and the gauges read from the
//! snapshot and the store when `/metrics` is scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use super::Warden;
use crate::auth::denials::Refusal;
use crate::decide::Outcome;
use crate::metrics::{Collect, Counter, Desc, Exposition, Histogram, Slot, Slots};
use crate::model::policy::Action;

/// Upper bounds of the decision-latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 1e-3, 1e-2,
];

static DECISIONS: Desc = Desc::counter("warden_decisions_total", "Decisions by outcome.");
static POLICY_MATCHES: Desc = Desc::counter(
    "warden_policy_matches_total",
    "Decisions that matched a policy, by policy and action.",
);
static LATENCY: Desc = Desc::histogram(
    "warden_decision_duration_seconds",
    "Time to decide, excluding I/O.",
);
static FOLLOWED_DROPPED: Desc = Desc::counter(
    "warden_followed_actions_dropped_total",
    "Followed-action events dropped because the queue was full.",
);
static DEDUP_EVICTED: Desc = Desc::counter(
    "warden_followed_dedup_evictions_total",
    "Followed-action de-duplication entries evicted (least recently used) at the cap.",
);

/// What decisions record, on every front end's path ([`Warden::record_decision`]).
pub struct DecisionMetrics {
    decisions: Slots<Outcome>,
    matches: PolicyMatches,
    latency: Histogram,
    followed_dropped: Counter,
    dedup_evicted: Counter,
}

impl Default for DecisionMetrics {
    fn default() -> DecisionMetrics {
        DecisionMetrics {
            decisions: Slots::new(&DECISIONS, false),
            matches: PolicyMatches::default(),
            latency: Histogram::new(&LATENCY, &LATENCY_BUCKETS),
            followed_dropped: Counter::new(&FOLLOWED_DROPPED),
            dedup_evicted: Counter::new(&DEDUP_EVICTED),
        }
    }
}

impl Collect for DecisionMetrics {
    fn collect(&self, out: &mut Exposition<'_>) {
        self.decisions.collect(out);
        self.matches.collect(out);
        self.latency.collect(out);
        self.followed_dropped.collect(out);
        self.dedup_evicted.collect(out);
    }
}

impl DecisionMetrics {
    /// One decision: its outcome, how long it took, and every policy it matched.
    pub fn decision<'p>(
        &self,
        outcome: Outcome,
        took: Duration,
        matched: impl Iterator<Item = (&'p str, Action)>,
    ) {
        self.decisions.inc(outcome);
        self.latency.observe(took);
        for (policy, action) in matched {
            self.matches.inc(policy, action);
        }
    }

    /// A followed-action event was dropped because the queue was full.
    pub fn followed_action_dropped(&self) {
        self.followed_dropped.inc();
    }

    /// A followed-action de-duplication entry was evicted to stay within the cap.
    pub fn followed_dedup_evicted(&self) {
        self.dedup_evicted.inc();
    }

    /// How many decisions matched `policy` since the process started (every action).
    pub fn policy_matches(&self, policy: &str) -> u64 {
        self.matches.total(policy)
    }
}

/// Per policy name, matches by action: looked up by `&str`, so a decision that matches
/// allocates nothing once the policy has a series.
#[derive(Default)]
struct PolicyMatches {
    by_policy: DashMap<Box<str>, [AtomicU64; 2], foldhash::fast::RandomState>,
}

impl PolicyMatches {
    fn inc(&self, policy: &str, action: Action) {
        let slot = action.slot();
        if let Some(c) = self.by_policy.get(policy) {
            c[slot].fetch_add(1, Ordering::Relaxed);
        } else {
            self.by_policy.entry(policy.into()).or_default()[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn total(&self, policy: &str) -> u64 {
        self.by_policy
            .get(policy)
            .map_or(0, |c| c.iter().map(|n| n.load(Ordering::Relaxed)).sum())
    }
}

impl Collect for PolicyMatches {
    fn collect(&self, out: &mut Exposition<'_>) {
        out.family(&POLICY_MATCHES);
        let counts: Vec<(Box<str>, Action, u64)> = self
            .by_policy
            .iter()
            .flat_map(|e| {
                <Action as Slot>::ALL.iter().map(move |&a| {
                    let n = e.value()[a.slot()].load(Ordering::Relaxed);
                    (e.key().clone(), a, n)
                })
            })
            .filter(|(_, _, n)| *n > 0)
            .collect();
        out.sorted_samples(
            POLICY_MATCHES.name,
            counts.iter().map(|(policy, action, n)| {
                (vec![("policy", &**policy), ("action", action.as_str())], *n)
            }),
        );
    }
}

impl Slot for Outcome {
    const ALL: &'static [Outcome] = &Outcome::ALL;
    const LABEL: &'static str = "outcome";
    fn slot(self) -> usize {
        match self {
            Outcome::Allow => 0,
            Outcome::Block => 1,
            Outcome::Error => 2,
        }
    }
    fn label(self) -> &'static str {
        self.as_str()
    }
}

impl Slot for Action {
    const ALL: &'static [Action] = &[Action::Block, Action::None];
    const LABEL: &'static str = "action";
    fn slot(self) -> usize {
        match self {
            Action::Block => 0,
            Action::None => 1,
        }
    }
    fn label(self) -> &'static str {
        self.as_str()
    }
}

impl Slot for Refusal {
    const ALL: &'static [Refusal] = &Refusal::ALL;
    const LABEL: &'static str = "reason";
    fn slot(self) -> usize {
        Refusal::slot(self)
    }
    fn label(self) -> &'static str {
        self.as_str()
    }
}

static REFUSED: Desc = Desc::counter(
    "warden_auth_refused_total",
    "Requests refused by authentication or scope, by reason.",
);
static REFUSED_OVERFLOW: Desc = Desc::counter(
    "warden_auth_refused_overflow_total",
    "Refusals counted in the overflow bucket because the aggregate was full.",
);
static REFUSED_AUDIT_RECORDS: Desc = Desc::counter(
    "warden_auth_refused_audit_records_total",
    "Audit records written for refusals (one per source, reason and minute).",
);

/// Requests refused by authentication or scope, and how they were audited in aggregate.
pub struct RefusalMetrics {
    refused: Slots<Refusal>,
    overflow: Counter,
    audit_records: Counter,
}

impl Default for RefusalMetrics {
    fn default() -> RefusalMetrics {
        RefusalMetrics {
            refused: Slots::new(&REFUSED, true),
            overflow: Counter::new(&REFUSED_OVERFLOW),
            audit_records: Counter::new(&REFUSED_AUDIT_RECORDS),
        }
    }
}

impl Collect for RefusalMetrics {
    fn collect(&self, out: &mut Exposition<'_>) {
        self.refused.collect(out);
        self.overflow.collect(out);
        self.audit_records.collect(out);
    }
}

impl RefusalMetrics {
    /// A request was refused (failed authentication or a missing scope); `overflow` when the
    /// denial aggregate was full and it went to the `other` bucket.
    pub fn refused(&self, refusal: Refusal, overflow: bool) {
        self.refused.inc(refusal);
        if overflow {
            self.overflow.inc();
        }
    }

    /// A flush of the denial aggregate wrote `n` audit records.
    pub fn audit_records(&self, n: usize) {
        self.audit_records.add(n as u64);
    }
}

static SNAPSHOT_VERSION: Desc =
    Desc::gauge("warden_snapshot_version", "Version of the snapshot in use.");
static REVISION: Desc = Desc::gauge(
    "warden_revision",
    "Store revision of the snapshot in use (equal on replicas for the same state).",
);
static REVISION_LAG: Desc = Desc::gauge(
    "warden_revision_lag",
    "Revisions between the newest change known and the snapshot in use.",
);
static LEADER: Desc = Desc::gauge(
    "warden_leader",
    "1 if this replica runs the jobs that must run once, else 0.",
);
static STORE_UP: Desc = Desc::gauge(
    "warden_store_up",
    "1 if the store answered its last statements, 0 if it is unreachable.",
);
static DATA_SET_ROWS: Desc = Desc::gauge("warden_data_set_rows", "Rows per data set.");
static DATA_SET_LOADED: Desc = Desc::gauge(
    "warden_data_set_loaded",
    "1 once a data set has loaded (from its source or persisted rows), 0 while unknown.",
);
static HELD_REFRESHES: Desc = Desc::gauge(
    "warden_held_refreshes",
    "Refreshes held by the shrink guard, waiting to be accepted.",
);
static HELD_EXPIRY_SWEEPS: Desc = Desc::gauge(
    "warden_held_expiry_sweeps",
    "Lists whose expiry sweep is held (too many members due at once), waiting for release.",
);

/// The gauges that describe state — the snapshot, the store, data sets, what is held — read
/// when scraped, so they cannot drift from the truth.
pub(super) fn state_gauges(warden: &Warden, out: &mut Exposition<'_>) {
    let snapshot = warden.engine().load();
    let store = warden.store();
    let newest = store.revision().max(snapshot.revision());
    for (desc, value) in [
        (&SNAPSHOT_VERSION, snapshot.version() as i64),
        (&REVISION, snapshot.revision()),
        (&REVISION_LAG, newest - snapshot.revision()),
        (&LEADER, i64::from(store.is_leader())),
        (&STORE_UP, i64::from(store.health().is_up())),
    ] {
        out.family(desc);
        out.sample(desc.name, &[], value);
    }
    out.family(&DATA_SET_ROWS);
    for ds in snapshot.data_sets() {
        out.sample(DATA_SET_ROWS.name, &[("data_set", ds.name())], ds.len());
    }
    out.family(&DATA_SET_LOADED);
    for ds in snapshot.data_sets() {
        let loaded = u8::from(ds.is_loaded());
        out.sample(DATA_SET_LOADED.name, &[("data_set", ds.name())], loaded);
    }
    let held = warden
        .config()
        .data_sets
        .iter()
        .filter(|ds| matches!(store.held_refresh(&ds.name), Ok(Some(_))))
        .count();
    out.family(&HELD_REFRESHES);
    out.sample(HELD_REFRESHES.name, &[], held);
    let held = store.expiry_holds().map_or(0, |h| h.len());
    out.family(&HELD_EXPIRY_SWEEPS);
    out.sample(HELD_EXPIRY_SWEEPS.name, &[], held);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Registry;

    fn rendered(registry: &Registry) -> String {
        registry.render(|_| {})
    }

    #[test]
    fn decisions_render_outcomes_matches_and_latency() {
        let registry = Registry::default();
        let m = registry.get::<DecisionMetrics>();
        m.decision(
            Outcome::Block,
            Duration::from_nanos(300),
            [("Block \"bad\" users", Action::Block)].into_iter(),
        );
        m.decision(Outcome::Allow, Duration::from_micros(3), std::iter::empty());
        m.decision(Outcome::Error, Duration::from_micros(3), std::iter::empty());
        let out = rendered(&registry);
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
        assert_eq!(m.policy_matches("Block \"bad\" users"), 1);
    }

    #[test]
    fn an_outcome_never_seen_is_not_listed() {
        let registry = Registry::default();
        let m = registry.get::<DecisionMetrics>();
        m.decision(Outcome::Allow, Duration::from_micros(3), std::iter::empty());
        let out = rendered(&registry);
        assert!(out.contains("warden_decisions_total{outcome=\"allow\"} 1"));
        assert!(!out.contains("outcome=\"block\""), "{out}");
    }

    #[test]
    fn refusals_render_per_reason_with_overflow_and_evictions() {
        let registry = Registry::default();
        let refusals = registry.get::<RefusalMetrics>();
        let decisions = registry.get::<DecisionMetrics>();
        for _ in 0..3 {
            refusals.refused(Refusal::Invalid, false);
        }
        refusals.refused(Refusal::Forbidden, true);
        refusals.audit_records(2);
        decisions.followed_dedup_evicted();
        let out = rendered(&registry);
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
}
