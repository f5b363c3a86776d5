//! Fixtures shared by the bench files: the same members, queries and snapshot for warden and
//! its peers, built outside every timed loop.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use warden::decide::{IndexCache, Snapshot};
use warden::model::dataset::{Cell, Column, DataSet, DataSetBuilder, Schema};
use warden::model::policy::UnknownValues;
use warden::model::policy::{Action, Criterion, Field, Operation, Policy, ServiceScope, Severity};

/// The name of the one data set and of the one policy.
pub const DATA_SET: &str = "Suspicious Users";
pub const POLICY: &str = "Block suspicious users";
/// The service every request names (the policy applies to `*`).
pub const SERVICE: &str = "orders";

/// Member counts every lookup bench runs at.
pub const SIZES: [(usize, &str); 3] = [(1_000, "1k"), (100_000, "100k"), (1_000_000, "1M")];

/// The bare floor: std's `HashSet<Box<str>>` (SipHash) of the `n` members, lowercase.
pub fn member_set(n: usize) -> std::collections::HashSet<Box<str>> {
    (0..n).map(|i| member(i).into_boxed_str()).collect()
}

/// Member `i` as stored: a `list`-source principal, `corp\user<i>`.
pub fn member(i: usize) -> String {
    format!("corp\\user{i}")
}

/// Member `i` as a proxy sends it: mixed case, so every lookup folds.
pub fn query(i: usize) -> String {
    format!("CORP\\User{i}")
}

/// Tiny deterministic PRNG (xorshift64*): the query order is fixed from run to run.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize) % n
    }
}

/// Number of distinct queries cycled through per benchmark: enough that at 1M members the
/// lookups miss the CPU caches like real traffic would, few enough to stay out of the timing.
pub const QUERIES: usize = 4096;

/// Benches `f` on one of `items` per iteration, cycling through all [`QUERIES`] of them (the
/// cycling costs every peer the same index increment and mask).
pub fn cycled<T, R>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    items: &[T],
    mut f: impl FnMut(&T) -> R,
) {
    assert_eq!(items.len(), QUERIES);
    g.bench_function(name, |b| {
        let mut i = 0;
        b.iter(|| {
            let item = &items[i % QUERIES];
            i += 1;
            std::hint::black_box(f(std::hint::black_box(item)))
        });
    });
}

/// Random member indexes for hits (`0..n`) or misses (`n..2n`, never members).
pub fn query_indexes(n: usize, hits: bool, seed: u64) -> Vec<usize> {
    let mut rng = Rng(seed);
    (0..QUERIES)
        .map(|_| {
            let i = rng.below(n);
            if hits { i } else { n + i }
        })
        .collect()
}

/// The same [`QUERIES`] members (or non-members) as a proxy sends them (mixed case) and as
/// stored (lowercase), and the mixed-case ones as decision requests are built from them.
pub fn queries(n: usize, hits: bool, seed: u64) -> (Vec<String>, Vec<String>) {
    let idx = query_indexes(n, hits, seed);
    (
        idx.iter().map(|&i| query(i)).collect(),
        idx.iter().map(|&i| member(i)).collect(),
    )
}

/// One request per query, for the one service every policy applies to.
pub fn requests(queries: &[String]) -> Vec<warden::decide::Request<'_>> {
    queries
        .iter()
        .map(|q| warden::decide::Request::new(SERVICE).db_user(q))
        .collect()
}

pub fn schema() -> Schema {
    Schema::new(
        vec![Column {
            name: "user".into(),
            key: true,
        }],
        false,
    )
    .unwrap()
}

/// The rows of a one-column, case-insensitive data set of `n` members.
pub fn rows(n: usize) -> Vec<Vec<Cell>> {
    (0..n)
        .map(|i| vec![Cell::One(member(i).into_boxed_str())])
        .collect()
}

pub fn data_set(rows: Vec<Vec<Cell>>) -> DataSet {
    let mut b = DataSetBuilder::new(DATA_SET, schema()).with_capacity(rows.len());
    for row in rows {
        b.push(row).unwrap();
    }
    b.build()
}

/// One enabled blocking policy: `db_user` at-least-one in the data set, for every service.
pub fn policy() -> Policy {
    Policy {
        name: POLICY.into(),
        enabled: true,
        action: Action::Block,
        severity: Severity::High,
        followed_action: Some("notify-soc".into()),
        when_unknown: Default::default(),
        apply_to: ServiceScope::new(&["*".to_string()]).unwrap(),
        criteria: vec![Criterion {
            field: Field::DbUser,
            operation: Operation::AtLeastOne,
            data_set: DATA_SET.into(),
            search_in: vec![],
            handle_unknown_values: UnknownValues::NoMatch,
        }],
    }
}

pub fn snapshot(data_set: Arc<DataSet>) -> Snapshot {
    Snapshot::build(&[policy()], vec![data_set], &mut IndexCache::default()).unwrap()
}

/// A snapshot of `n` members, the way warden builds one from a list.
pub fn snapshot_of(n: usize) -> Snapshot {
    snapshot(Arc::new(data_set(rows(n))))
}

/// One lookup case: warden and the bare `HashSet` floor holding the same members, and the
/// same queries for both.
pub struct Lookup<'a> {
    /// The member count, as printed (`1k`, `100k`, `1M`).
    pub label: &'static str,
    /// `hit` (every query is a member) or `miss` (none is).
    pub kind: &'static str,
    pub snapshot: &'a Snapshot,
    pub set: &'a std::collections::HashSet<Box<str>>,
    /// The queries as a proxy sends them (mixed case) and as stored (lowercase).
    pub mixed: &'a [String],
    pub lower: &'a [String],
}

/// Calls `f` for every member count in [`SIZES`], hits then misses, once the fixtures are
/// built and checked to answer as they should (nothing is timed before `f`).
pub fn each_lookup(mut f: impl FnMut(&Lookup<'_>)) {
    for (n, label) in SIZES {
        let snapshot = snapshot_of(n);
        let set = member_set(n);
        for hits in [true, false] {
            let (mixed, lower) = queries(n, hits, 0x5eed ^ n as u64);
            let expected = if hits { "block" } else { "allow" };
            let first = warden::decide::Request::new(SERVICE).db_user(&mixed[0]);
            assert_eq!(snapshot.decide(&first).outcome.as_str(), expected);
            assert_eq!(set.contains(lower[0].as_str()), hits);
            f(&Lookup {
                label,
                kind: if hits { "hit" } else { "miss" },
                snapshot: &snapshot,
                set: &set,
                mixed: &mixed,
                lower: &lower,
            });
        }
    }
}

// ------------------------------------------------------------------ interleaved ratios

/// Nanoseconds per item of one pass of `f` over `items`.
pub fn pass<T, R>(items: &[T], mut f: impl FnMut(&T) -> R) -> f64 {
    let started = Instant::now();
    for item in items {
        black_box(f(black_box(item)));
    }
    started.elapsed().as_nanos() as f64 / items.len() as f64
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One round of `rounds` interleaved passes of `a` and `b` (which goes first alternates):
/// the medians of each and of the per-round ratio `a / b`, and that ratio's p10 and p90.
pub fn interleaved(rounds: usize, mut a: impl FnMut() -> f64, mut b: impl FnMut() -> f64) -> Ratio {
    // Warm both before the rounds that count.
    a();
    b();
    let (mut xs, mut ys, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = a();
            (x, b())
        } else {
            let y = b();
            (a(), y)
        };
        xs.push(x);
        ys.push(y);
        ratios.push(x / y);
    }
    ratios.sort_by(f64::total_cmp);
    Ratio {
        a: median(xs),
        b: median(ys),
        p10: ratios[rounds / 10],
        p90: ratios[rounds * 9 / 10],
        ratio: median(ratios),
    }
}

pub struct Ratio {
    pub a: f64,
    pub b: f64,
    pub ratio: f64,
    pub p10: f64,
    pub p90: f64,
}
