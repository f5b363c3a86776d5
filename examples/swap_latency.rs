//! `decide` latency while snapshots are swapped, against idle: a measurement for
//! BENCHMARKS.md, not a test.
//!
//! ```text
//! cargo run --release --example swap_latency -- [MEMBERS] [DECISIONS_PER_PHASE]
//! ```
//!
//! One thread decides through `Engine::decide` (one `ArcSwap` load per decision) and times
//! each call. A second thread publishes a new snapshot every 100 µs (alternating two data sets
//! of the same name, so every publish really swaps) in one of three modes:
//!
//! - `idle`: no publishing;
//! - `swapping`: each publish swaps a snapshot whose membership index is already built (one
//!   index cache per data set), so the phase sees the swap itself;
//! - `rebuilding`: each publish first rebuilds the whole membership index, as a list change
//!   does today, so the phase also sees that build running on the other core.
//!
//! The modes take turns in blocks of 100,000 decisions (the publisher confirms each switch
//! before the block starts), so that whatever else the machine does falls on all three alike:
//! on a shared 2-core machine, phases run one after the other differ by more than the effect.
//! Prints p50 / p99 / p99.9 per phase and the ratios to idle. Per-call timing includes
//! `Instant::now` (tens of ns) in every phase alike.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use warden::decide::{Engine, IndexCache, Request, Snapshot};
use warden::model::dataset::{Cell, Column, DataSet, DataSetBuilder, Schema};
use warden::model::policy::{
    Action, Criterion, Field, Operation, Policy, ServiceScope, Severity, UnknownValues,
};

fn data_set(n: usize, extra: bool) -> Result<Arc<DataSet>, Box<dyn std::error::Error>> {
    let schema = Schema::new(
        vec![Column {
            name: "user".into(),
            key: true,
        }],
        false,
    )?;
    let mut b = DataSetBuilder::new("Suspicious Users", schema).with_capacity(n + 1);
    for i in 0..n {
        b.push(vec![Cell::One(format!("corp\\user{i}").into_boxed_str())])?;
    }
    if extra {
        b.push(vec![Cell::One("corp\\swapped".into())])?;
    }
    Ok(Arc::new(b.build()))
}

fn policy() -> Result<Policy, warden::model::policy::GlobError> {
    Ok(Policy {
        name: "Block suspicious users".into(),
        enabled: true,
        action: Action::Block,
        severity: Severity::High,
        followed_action: None,
        when_unknown: Default::default(),
        apply_to: ServiceScope::new(&["*".to_string()])?,
        criteria: vec![Criterion {
            field: Field::DbUser,
            operation: Operation::AtLeastOne,
            data_set: "Suspicious Users".into(),
            search_in: vec![],
            handle_unknown_values: UnknownValues::NoMatch,
        }],
    })
}

/// What the publisher does between blocks.
const IDLE: usize = 0;
const SWAPPING: usize = 1;
const REBUILDING: usize = 2;
const BLOCK: usize = 100_000;

/// The publisher: every 100 µs, in the mode `mode` says, publishes the next alternation.
/// `seen` is the mode of the loop turn it last started, which the decider waits for.
struct Publisher {
    mode: AtomicUsize,
    seen: AtomicUsize,
    stop: AtomicBool,
    published: [AtomicU64; 3],
}

fn publish_loop(
    p: &Publisher,
    engine: &Engine,
    policies: &[Policy],
    sets: &[Arc<DataSet>; 2],
) -> Result<(), warden::decide::CompileError> {
    // Warm: one index cache per data set, so after the first build of each an index is
    // reused. Cold: one cache for both, so each alternation rebuilds the index.
    let mut warm = [IndexCache::default(), IndexCache::default()];
    let mut cold = IndexCache::default();
    let mut k = 1;
    while !p.stop.load(Ordering::Acquire) {
        let mode = p.mode.load(Ordering::Acquire);
        p.seen.store(mode, Ordering::Release);
        let set = vec![Arc::clone(&sets[k % 2])];
        let snapshot = match mode {
            SWAPPING => Some(Snapshot::build(policies, set, &mut warm[k % 2])?),
            REBUILDING => Some(Snapshot::build(policies, set, &mut cold)?),
            _ => None,
        };
        if let Some(s) = snapshot {
            engine.publish(s);
            p.published[mode].fetch_add(1, Ordering::Relaxed);
            k += 1;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

fn percentiles(mut ns: Vec<u64>) -> [u64; 3] {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)];
    [at(0.50), at(0.99), at(0.999)]
}

/// Times `decisions` decisions, appending nanoseconds to `out`; `from` picks the first user.
fn timed(engine: &Engine, users: &[String], from: usize, decisions: usize, out: &mut Vec<u64>) {
    for i in from..from + decisions {
        let user = users[i % users.len()].as_str();
        let request = Request {
            service: "orders",
            db_user: [user].into_iter().collect(),
            ..Request::default()
        };
        let started = Instant::now();
        black_box(engine.decide(black_box(&request)));
        out.push(started.elapsed().as_nanos() as u64);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let decisions: usize = args.next().map_or(Ok(2_000_000), |a| a.parse())?;
    let policies = vec![policy()?];
    let sets = [data_set(n, false)?, data_set(n, true)?];
    let mut cache = IndexCache::default();
    let engine = Arc::new(Engine::new());
    engine.publish(Snapshot::build(
        &policies,
        vec![Arc::clone(&sets[0])],
        &mut cache,
    )?);
    // Mixed case, hits and misses, cycled.
    let users: Vec<String> = (0..4096)
        .map(|i| {
            if i % 2 == 0 {
                format!("CORP\\User{}", (i * 7919) % n)
            } else {
                format!("CORP\\Nobody{i}")
            }
        })
        .collect();

    let publisher = Arc::new(Publisher {
        mode: AtomicUsize::new(IDLE),
        seen: AtomicUsize::new(usize::MAX),
        stop: AtomicBool::new(false),
        published: Default::default(),
    });
    let thread = {
        let (p, engine) = (Arc::clone(&publisher), Arc::clone(&engine));
        std::thread::spawn(move || publish_loop(&p, &engine, &policies, &sets))
    };
    let mut samples: [Vec<u64>; 3] = Default::default();
    for s in &mut samples {
        s.reserve(decisions);
    }
    let blocks = decisions.div_ceil(BLOCK);
    for b in 0..blocks * 3 {
        let mode = b % 3;
        publisher.mode.store(mode, Ordering::Release);
        while publisher.seen.load(Ordering::Acquire) != mode {
            std::hint::spin_loop();
        }
        timed(&engine, &users, b * BLOCK, BLOCK, &mut samples[mode]);
    }
    publisher.stop.store(true, Ordering::Release);
    thread.join().map_err(|_| "publisher panicked")??;
    let [idle, swapping, rebuilding] = samples.map(percentiles);
    let swaps = publisher.published[SWAPPING].load(Ordering::Relaxed);
    let rebuilds = publisher.published[REBUILDING].load(Ordering::Relaxed);
    let decisions = blocks * BLOCK;

    println!("members {n}, {decisions} decisions per phase, {swaps} swaps, {rebuilds} rebuilds");
    println!(
        "{:<11} {:>8} {:>8} {:>8}  (ns)",
        "phase", "p50", "p99", "p99.9"
    );
    for (name, p) in [
        ("idle", idle),
        ("swapping", swapping),
        ("rebuilding", rebuilding),
    ] {
        println!("{name:<11} {:>8} {:>8} {:>8}", p[0], p[1], p[2]);
    }
    for (name, p) in [("swapping", swapping), ("rebuilding", rebuilding)] {
        println!(
            "{name:<11} {:>8.2} {:>8.2} {:>8.2}  (ratio to idle)",
            p[0] as f64 / idle[0] as f64,
            p[1] as f64 / idle[1] as f64,
            p[2] as f64 / idle[2] as f64
        );
    }
    Ok(())
}
