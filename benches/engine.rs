//! In-process decisions against a bare `HashSet<Box<str>>` on the same keys, side by side in
//! one run: one blocking policy over a case-insensitive data set of N users, asked with
//! mixed-case names (hits) and absent names (misses). The HashSet peer is given the
//! already-lower-cased query, so it does strictly less work than `decide` (which folds case).

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use warden::dataset::{Cell, Column, DataSetBuilder, Schema};
use warden::engine::{IndexCache, Request, Snapshot};
use warden::policy::{
    Action, Criterion as Crit, Field, Operation, Policy, ServiceScope, Severity, UnknownValues,
};

const QUERIES: usize = 1024;

fn snapshot(n: usize) -> Snapshot {
    let schema = Schema::new(
        vec![Column {
            name: "user".into(),
            key: true,
        }],
        false,
    )
    .unwrap();
    let mut b = DataSetBuilder::new("Suspicious Users", schema).with_capacity(n);
    for i in 0..n {
        b.push(vec![Cell::One(format!("corp\\user{i}").into())])
            .unwrap();
    }
    let policy = Policy {
        name: "block".into(),
        enabled: true,
        action: Action::Block,
        severity: Severity::High,
        followed_action: None,
        apply_to: ServiceScope::new(&["*".to_string()]).unwrap(),
        criteria: vec![Crit {
            field: Field::DbUser,
            operation: Operation::AtLeastOne,
            data_set: "Suspicious Users".into(),
            search_in: vec![],
            handle_unknown_values: UnknownValues::NoMatch,
        }],
    };
    Snapshot::build(
        &[policy],
        vec![Arc::new(b.build())],
        &mut IndexCache::default(),
    )
    .unwrap()
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(QUERIES as u64));
    for n in [1_000usize, 100_000, 1_000_000] {
        let snap = snapshot(n);
        let set: HashSet<Box<str>> = (0..n).map(|i| format!("corp\\user{i}").into()).collect();
        let step = (n / QUERIES).max(1);
        let hits: Vec<String> = (0..QUERIES)
            .map(|i| format!("CORP\\User{}", (i * step) % n))
            .collect();
        let hits_lower: Vec<String> = hits.iter().map(|h| h.to_lowercase()).collect();
        let misses: Vec<String> = (0..QUERIES).map(|i| format!("CORP\\Nobody{i}")).collect();
        let misses_lower: Vec<String> = misses.iter().map(|h| h.to_lowercase()).collect();
        for (kind, queries, lower) in [
            ("hit", &hits, &hits_lower),
            ("miss", &misses, &misses_lower),
        ] {
            group.bench_function(BenchmarkId::new(format!("warden/{kind}"), n), |b| {
                b.iter(|| {
                    for q in queries {
                        black_box(snap.decide(&Request::new("orders").db_user(q)));
                    }
                })
            });
            group.bench_function(BenchmarkId::new(format!("hashset/{kind}"), n), |b| {
                b.iter(|| {
                    for q in lower {
                        black_box(set.contains(q.as_str()));
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
