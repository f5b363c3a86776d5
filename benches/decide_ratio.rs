//! `decide` against a bare `HashSet<Box<str>>::contains`, as a ratio that holds still on a
//! noisy machine.
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

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::QUERIES;

/// Nanoseconds per item of one pass of `f` over `items`.
fn pass<T, R>(items: &[T], mut f: impl FnMut(&T) -> R) -> f64 {
    let started = Instant::now();
    for item in items {
        black_box(f(black_box(item)));
    }
    started.elapsed().as_nanos() as f64 / items.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    for (n, label) in common::SIZES {
        let snapshot = common::snapshot_of(n);
        let set = common::member_set(n);
        for hits in [true, false] {
            let kind = if hits { "hit" } else { "miss" };
            let (mixed, lower) = common::queries(n, hits, 0x5eed ^ n as u64);
            let requests = common::requests(&mixed);
            let expected = if hits { "block" } else { "allow" };
            assert_eq!(snapshot.decide(&requests[0]).outcome.as_str(), expected);
            assert_eq!(set.contains(lower[0].as_str()), hits);

            let mut warden = Vec::with_capacity(rounds);
            let mut floor = Vec::with_capacity(rounds);
            let mut ratios = Vec::with_capacity(rounds);
            // Warm both before the rounds that count.
            pass(&requests, |r| snapshot.decide(r));
            pass(&lower, |q| set.contains(q.as_str()));
            for round in 0..rounds {
                let (w, h) = if round % 2 == 0 {
                    let w = pass(&requests, |r| snapshot.decide(r));
                    (w, pass(&lower, |q| set.contains(q.as_str())))
                } else {
                    let h = pass(&lower, |q| set.contains(q.as_str()));
                    (pass(&requests, |r| snapshot.decide(r)), h)
                };
                warden.push(w);
                floor.push(h);
                ratios.push(w / h);
            }
            ratios.sort_by(f64::total_cmp);
            let (p10, p90) = (ratios[rounds / 10], ratios[rounds * 9 / 10]);
            println!(
                "{label:<6} {kind:<5} {:>12.1} {:>12.1} {:>6.2}x {:>7.2}-{:.2}x",
                median(warden),
                median(floor),
                median(ratios),
                p10,
                p90
            );
        }
    }
}
