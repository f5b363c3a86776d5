//! The decision path against its floor, in one run: `Snapshot::decide` beside a bare
//! `HashSet::contains` on the same members, batches, snapshot build at 1M members, the JSON
//! rendering of a decision, and case folding of principals that are not ASCII.
//!
//! ```text
//! cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Every fixture is built outside the timed closures. Lookups cycle through 4096 random queries
//! (so at 1M members they miss the caches as real traffic would); the cycling costs the same one
//! index increment in every peer. See BENCHMARKS.md for the figures and what they mean.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use serde::Serialize;
use warden::decide::{Decision, Engine, IndexCache, Request, Snapshot};

use common::{SERVICE, cycled, member, query};

/// `decide` vs `HashSet::contains`, per member count, for hits and misses.
///
/// Peers, all answering "is this principal in the set?":
/// - `warden_decide`: the full decision (service scope, criterion, case folding, the `Decision`
///   value) for a mixed-case `CORP\User123` against members stored as `corp\user123`;
/// - `warden_decide_lowercase`: the same with an already-lowercase query (folding finds nothing
///   to do and borrows the input);
/// - `hashset_contains`: `std::collections::HashSet<Box<str>>` (std's default SipHash) holding
///   the lowercase members, asked with the already-lowercase query: the bare floor, which does
///   *not* do the case folding warden does;
/// - `hashset_to_lowercase_contains`: the same set asked with the mixed-case query after
///   `str::to_lowercase` — what a `HashSet` caller needs to give warden's answer.
fn lookup(c: &mut Criterion) {
    common::each_lookup(|l| {
        let (snapshot, set) = (l.snapshot, l.set);
        let mixed_requests = common::requests(l.mixed);
        let lower_requests = common::requests(l.lower);
        let mut g = c.benchmark_group(format!("decide_{}_{}", l.label, l.kind));
        g.throughput(Throughput::Elements(1));
        cycled(&mut g, "warden_decide", &mixed_requests, |r| {
            snapshot.decide(r)
        });
        cycled(&mut g, "warden_decide_lowercase", &lower_requests, |r| {
            snapshot.decide(r)
        });
        cycled(&mut g, "hashset_contains", l.lower, |q| {
            set.contains(q.as_str())
        });
        cycled(&mut g, "hashset_to_lowercase_contains", l.mixed, |q| {
            set.contains(q.to_lowercase().as_str())
        });
        g.finish();
    });
}

/// 64 requests (half members, half not, mixed case) at 100k members: per-decision cost of
/// `decide_batch`, and of the `Engine` (one `ArcSwap` load per batch or per request).
fn batch(c: &mut Criterion) {
    const BATCH: usize = 64;
    let n = 100_000;
    let engine = Engine::new();
    engine.publish(common::snapshot_of(n));
    let snapshot = engine.snapshot();
    let mut rng = common::Rng(0xba7c);
    let queries: Vec<String> = (0..BATCH)
        .map(|k| query(rng.below(n) + if k % 2 == 0 { 0 } else { n }))
        .collect();
    let requests: Vec<Request<'_>> = queries
        .iter()
        .map(|q| Request::new(SERVICE).db_user(q))
        .collect();

    let mut g = c.benchmark_group("batch64_100k");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("snapshot_decide_batch", |b| {
        let mut out: Vec<Decision> = Vec::with_capacity(BATCH);
        b.iter(|| {
            out.clear();
            snapshot.decide_batch(black_box(&requests), &mut out);
            black_box(&out);
        });
    });
    g.bench_function("engine_decide_batch", |b| {
        let mut out: Vec<Decision> = Vec::with_capacity(BATCH);
        b.iter(|| {
            out.clear();
            engine.decide_batch(black_box(&requests), &mut out);
            black_box(&out);
        });
    });
    g.bench_function("engine_decide_one_by_one", |b| {
        b.iter(|| {
            for r in black_box(&requests) {
                black_box(engine.decide(r));
            }
        });
    });
    g.finish();
}

/// Building a 1M-member snapshot from rows in hand (as after an LDAP pull or a list load), and
/// the same members collected into a `HashSet<Box<str>>` as the floor.
fn build(c: &mut Criterion) {
    let n = 1_000_000;
    let rows = common::rows(n);
    let data_set = Arc::new(common::data_set(rows.clone()));
    let members: Vec<Box<str>> = (0..n).map(|i| member(i).into_boxed_str()).collect();

    let mut g = c.benchmark_group("build_1M");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(n as u64));
    // Data set (key uniqueness, fingerprint) plus snapshot (membership index): the whole path.
    g.bench_function("warden_rows_to_snapshot", |b| {
        b.iter_batched(
            || rows.clone(),
            |rows| common::snapshot(Arc::new(common::data_set(rows))),
            BatchSize::PerIteration,
        );
    });
    g.bench_function("warden_data_set_only", |b| {
        b.iter_batched(|| rows.clone(), common::data_set, BatchSize::PerIteration);
    });
    // The index alone: what a policy change costs when the data set did not change but the
    // cache was cold (a fresh `IndexCache` each time).
    g.bench_function("warden_snapshot_index_only", |b| {
        b.iter(|| {
            Snapshot::build(
                &[common::policy()],
                vec![Arc::clone(&data_set)],
                &mut IndexCache::default(),
            )
        });
    });
    g.bench_function("hashset_collect", |b| {
        b.iter_batched(
            || members.clone(),
            |m| m.into_iter().collect::<HashSet<Box<str>>>(),
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

/// The JSON body of a decision, written by hand, beside `serde_json` writing the same shape
/// from a derived `Serialize` struct.
fn render(c: &mut Criterion) {
    #[derive(Serialize)]
    struct JsonMatch<'a> {
        policy: &'a str,
        action: &'a str,
        severity: &'a str,
        followed_action: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct JsonDecision<'a> {
        decision: &'a str,
        snapshot_version: u64,
        revision: i64,
        matched: Vec<JsonMatch<'a>>,
    }

    let engine = Engine::new();
    engine.publish(common::snapshot_of(1_000));
    let snapshot = engine.snapshot();
    let block = snapshot.decide(&Request::new(SERVICE).db_user("CORP\\User7"));
    let allow = snapshot.decide(&Request::new(SERVICE).db_user("CORP\\Nobody"));
    let as_json = |d: &Decision| JsonDecision {
        decision: d.outcome.as_str(),
        snapshot_version: d.snapshot_version,
        revision: snapshot.revision(),
        matched: d
            .matched
            .iter()
            .map(|m| {
                let p = snapshot.policy(m).unwrap();
                JsonMatch {
                    policy: &p.name,
                    action: m.action.as_str(),
                    severity: m.severity.as_str(),
                    followed_action: p.followed_action.as_deref(),
                }
            })
            .collect(),
    };
    // Same bytes from both, so the comparison is like for like. The serde value is built once,
    // outside the timed loop (this favours serde: warden's timing includes the policy lookups).
    let block_json = as_json(&block);
    let allow_json = as_json(&allow);
    for (d, j) in [(&block, &block_json), (&allow, &allow_json)] {
        let mut ours = Vec::new();
        snapshot.render_decision(d, &mut ours);
        assert_eq!(ours, serde_json::to_vec(j).unwrap());
    }

    let mut g = c.benchmark_group("render");
    for (d, j, kind) in [
        (&block, &block_json, "block"),
        (&allow, &allow_json, "allow"),
    ] {
        g.bench_with_input(
            BenchmarkId::new("warden_render_decision", kind),
            d,
            |b, d| {
                let mut out = Vec::with_capacity(256);
                b.iter(|| {
                    out.clear();
                    snapshot.render_decision(black_box(d), &mut out);
                    black_box(&out);
                });
            },
        );
        g.bench_with_input(BenchmarkId::new("serde_json_to_writer", kind), j, |b, j| {
            let mut out = Vec::with_capacity(256);
            b.iter(|| {
                out.clear();
                serde_json::to_writer(&mut out, black_box(j)).unwrap();
                black_box(&out);
            });
        });
    }
    g.finish();
}

/// Folding a principal that is not ASCII (the ASCII path never reaches per-character folding).
///
/// Peers on the same values: `warden_fold` (simple case folding into the stack buffer),
/// `lowercase_per_char` (the per-character lower case warden folded with before, into a reused
/// buffer) and `str_to_lowercase` (an allocating `String` per call).
fn fold(c: &mut Criterion) {
    let values = ["CORP\\Ölaf.Müller", "corp\\ΟΔΥΣΣΕΥΣ", "CORP\\Сергей.Иванов"];
    let mut g = c.benchmark_group("fold_non_ascii");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("warden_fold", |b| {
        let mut buf = warden::model::dataset::FoldBuf::new();
        b.iter(|| {
            for v in values {
                black_box(buf.fold(black_box(v), false).len());
            }
        });
    });
    g.bench_function("lowercase_per_char", |b| {
        let mut buf = Vec::with_capacity(120);
        b.iter(|| {
            for v in values {
                buf.clear();
                let mut utf8 = [0u8; 4];
                for ch in black_box(v).chars().flat_map(char::to_lowercase) {
                    buf.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                }
                black_box(buf.len());
            }
        });
    });
    g.bench_function("str_to_lowercase", |b| {
        b.iter(|| {
            for v in values {
                black_box(black_box(v).to_lowercase().len());
            }
        });
    });
    g.finish();
}

fn config() -> Criterion {
    // Short by default: the machine is shared; compare ratios within one run.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookup, batch, build, render, fold
}
criterion_main!(benches);
