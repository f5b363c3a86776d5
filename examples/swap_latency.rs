//! `decide` latency while snapshots are swapped, against idle: a measurement for
//! BENCHMARKS.md, not a test.
//!
//! ```text
//! cargo run --release --example swap_latency -- [MEMBERS] [DECISIONS]
//! ```
//!
//! One thread decides through `Engine::decide` (one `ArcSwap` load per decision) and times
//! each call; first idle, then while a second thread publishes a new snapshot every 100 µs
//! (alternating two data sets of the same name, so every publish really swaps and rebuilds the
//! membership index, as a list change does). Prints p50 / p99 / p99.9 of both and their ratio.
//! Per-call timing includes `Instant::now` (tens of ns) in both phases alike.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use warden::dataset::{Cell, Column, DataSet, DataSetBuilder, Schema};
use warden::engine::{Engine, IndexCache, Request, Snapshot};
use warden::policy::{
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

fn policy() -> Result<Policy, Box<dyn std::error::Error>> {
    Ok(Policy {
        name: "Block suspicious users".into(),
        enabled: true,
        action: Action::Block,
        severity: Severity::High,
        followed_action: None,
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

fn percentiles(mut ns: Vec<u64>) -> [u64; 3] {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)];
    [at(0.50), at(0.99), at(0.999)]
}

fn timed(engine: &Engine, users: &[String], decisions: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(decisions);
    for i in 0..decisions {
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
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let decisions: usize = args.next().map_or(Ok(2_000_000), |a| a.parse())?;
    let policies = [policy()?];
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

    let idle = percentiles(timed(&engine, &users, decisions));

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (engine, stop, swaps) = (Arc::clone(&engine), Arc::clone(&stop), Arc::clone(&swaps));
        std::thread::spawn(move || -> Result<(), String> {
            let mut k = 1;
            while !stop.load(Ordering::Relaxed) {
                let s = Snapshot::build(&policies, vec![Arc::clone(&sets[k % 2])], &mut cache)
                    .map_err(|e| e.to_string())?;
                engine.publish(s);
                swaps.fetch_add(1, Ordering::Relaxed);
                k += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
            Ok(())
        })
    };
    let swapping = percentiles(timed(&engine, &users, decisions));
    stop.store(true, Ordering::Relaxed);
    swapper.join().map_err(|_| "swapper panicked")??;

    println!(
        "members {n}, {decisions} decisions per phase, {} swaps",
        swaps.load(Ordering::Relaxed)
    );
    println!(
        "{:<10} {:>8} {:>8} {:>8}  (ns)",
        "phase", "p50", "p99", "p99.9"
    );
    println!(
        "{:<10} {:>8} {:>8} {:>8}",
        "idle", idle[0], idle[1], idle[2]
    );
    println!(
        "{:<10} {:>8} {:>8} {:>8}",
        "swapping", swapping[0], swapping[1], swapping[2]
    );
    println!(
        "ratio      {:>8.2} {:>8.2} {:>8.2}",
        swapping[0] as f64 / idle[0] as f64,
        swapping[1] as f64 / idle[1] as f64,
        swapping[2] as f64 / idle[2] as f64
    );
    Ok(())
}
