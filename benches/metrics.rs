//! What a decision records, in warden's own registry and in `prometheus-client`, side by side:
//! the outcome counter, the latency histogram and, for a decision that matched, the matched
//! policy's counter — the work `Warden::record_decision` adds to every decision.
//!
//! ```text
//! cargo bench --bench metrics
//! ```
//!
//! `prometheus-client` is given its best case: the label sets are built once, outside the loop
//! (a decision path would have to make or look one up per matched policy), so what is timed is
//! its family lookup (a read lock and a hash of the label set), the counter and the histogram
//! (a mutex).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use warden::decide::Outcome;
use warden::model::policy::Action;
use warden::runtime::DecisionMetrics;

/// The same buckets as `warden_decision_duration_seconds`.
const BUCKETS: [f64; 12] = [
    1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 1e-3, 1e-2,
];

const POLICY: &str = "Block suspicious database users";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
enum OutcomeLabel {
    Allow,
    Block,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: OutcomeLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
enum ActionLabel {
    Block,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MatchLabels {
    policy: String,
    action: ActionLabel,
}

/// The decision metrics in `prometheus-client`, registered as warden's are.
struct Peer {
    decisions: Family<OutcomeLabels, Counter>,
    matches: Family<MatchLabels, Counter>,
    latency: Histogram,
    _registry: Registry,
}

impl Peer {
    fn new() -> Peer {
        let decisions = Family::<OutcomeLabels, Counter>::default();
        let matches = Family::<MatchLabels, Counter>::default();
        let latency = Histogram::new(BUCKETS);
        let mut registry = Registry::default();
        registry.register(
            "warden_decisions",
            "Decisions by outcome.",
            decisions.clone(),
        );
        registry.register(
            "warden_policy_matches",
            "Decisions that matched a policy, by policy and action.",
            matches.clone(),
        );
        registry.register(
            "warden_decision_duration_seconds",
            "Time to decide, excluding I/O.",
            latency.clone(),
        );
        Peer {
            decisions,
            matches,
            latency,
            _registry: registry,
        }
    }

    fn decision(&self, outcome: &OutcomeLabels, took: Duration, matched: Option<&MatchLabels>) {
        self.decisions.get_or_create(outcome).inc();
        self.latency.observe(took.as_secs_f64());
        if let Some(m) = matched {
            self.matches.get_or_create(m).inc();
        }
    }
}

fn record_decision(c: &mut Criterion) {
    let took = Duration::from_nanos(300);
    let own = DecisionMetrics::default();
    let peer = Peer::new();
    let block = OutcomeLabels {
        outcome: OutcomeLabel::Block,
    };
    let allow = OutcomeLabels {
        outcome: OutcomeLabel::Allow,
    };
    let matched = MatchLabels {
        policy: POLICY.to_owned(),
        action: ActionLabel::Block,
    };
    let mut g = c.benchmark_group("record_decision");
    g.bench_function("block_one_match/warden", |b| {
        b.iter(|| {
            own.decision(
                black_box(Outcome::Block),
                black_box(took),
                std::iter::once((black_box(POLICY), Action::Block)),
            )
        })
    });
    g.bench_function("block_one_match/prometheus_client", |b| {
        b.iter(|| {
            peer.decision(
                black_box(&block),
                black_box(took),
                Some(black_box(&matched)),
            )
        })
    });
    g.bench_function("allow/warden", |b| {
        b.iter(|| {
            own.decision(
                black_box(Outcome::Allow),
                black_box(took),
                std::iter::empty(),
            )
        })
    });
    g.bench_function("allow/prometheus_client", |b| {
        b.iter(|| peer.decision(black_box(&allow), black_box(took), None))
    });
    g.finish();
}

criterion_group!(benches, record_decision);
criterion_main!(benches);
