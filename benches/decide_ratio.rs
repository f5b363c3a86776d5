//! `decide` against a bare `HashSet<Box<str>>::contains`, and `Engine::decide_batch` against
//! `Engine::decide` one by one, as ratios that hold still on a noisy machine.
//!
//! ```text
//! cargo bench --bench decide_ratio [-- ROUNDS]      (default 201 rounds)
//! ```
//!
//! The criterion groups in `benches/engine.rs` time warden and then the `HashSet` one after the
//! other, seconds apart; on this shared 2-core machine the floor itself moved from 33 ns to
//! 115 ns between two such runs, so a ratio of two criterion medians says more about the
//! neighbours than about warden. Here each round times one pass over the same 4,096 queries
//! for each peer back to back (which one goes first alternates), and the figure is the median
//! over rounds of the per-round ratio: both sides of one ratio ran within a millisecond of
//! each other. Fixtures and peers are those of the engine bench: warden decides a mixed-case
//! `CORP\User123`; the `HashSet` (std's SipHash) is asked the already-lowercase `corp\user123`,
//! so it does strictly less (no folding, no scope, no `Decision`).
//!
//! The batch section asks the `Engine` (one `ArcSwap` load per call) 64 requests at 100k
//! members, half members and half not, as one `decide_batch` and as 64 `decide` calls,
//! interleaved the same way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{QUERIES, interleaved, pass};

fn batch_section(rounds: usize) {
    use warden::decide::{Decision, Engine};
    const BATCH: usize = 64;
    let n = 100_000;
    let engine = Engine::new();
    engine.publish(common::snapshot_of(n));
    let mut rng = common::Rng(0xba7c);
    let queries: Vec<String> = (0..BATCH)
        .map(|k| common::query(rng.below(n) + if k % 2 == 0 { 0 } else { n }))
        .collect();
    let requests = common::requests(&queries);
    let mut out: Vec<Decision> = Vec::with_capacity(BATCH);
    // 64 passes of each per round, so a round is long enough to time.
    let per = |started: Instant| started.elapsed().as_nanos() as f64 / (BATCH * 64) as f64;
    let r = interleaved(
        rounds,
        || {
            let started = Instant::now();
            for _ in 0..64 {
                out.clear();
                engine.decide_batch(black_box(&requests), &mut out);
                black_box(&out);
            }
            per(started)
        },
        || {
            let started = Instant::now();
            for _ in 0..64 {
                for request in black_box(&requests) {
                    black_box(engine.decide(request));
                }
            }
            per(started)
        },
    );
    println!();
    println!("Engine::decide_batch(64) / Engine::decide one by one, 100k members, ns per decision");
    println!(
        "batch {:.1}  one by one {:.1}  ratio {:.2}x  ({:.2}-{:.2}x)",
        r.a, r.b, r.ratio, r.p10, r.p90
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a number among the arguments is the round count.
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(201);
    println!(
        "decide / HashSet::contains, median of {rounds} interleaved rounds of {QUERIES} queries"
    );
    println!(
        "{:<6} {:<5} {:>12} {:>12} {:>7} {:>14}",
        "size", "kind", "warden ns", "hashset ns", "ratio", "ratio p10-p90"
    );
    common::each_lookup(|l| {
        let (snapshot, set) = (l.snapshot, l.set);
        let requests = common::requests(l.mixed);
        let r = interleaved(
            rounds,
            || pass(&requests, |r| snapshot.decide(r)),
            || pass(l.lower, |q| set.contains(q.as_str())),
        );
        println!(
            "{:<6} {:<5} {:>12.1} {:>12.1} {:>6.2}x {:>7.2}-{:.2}x",
            l.label, l.kind, r.a, r.b, r.ratio, r.p10, r.p90
        );
    });
    batch_section(rounds);
}
