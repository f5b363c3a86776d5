//! API-key authentication: an unknown key id against a known id with a wrong secret, in one
//! criterion run, so that their cost can be compared (they must not differ measurably: the
//! unknown id is checked against a dummy hash in constant time, as a wrong secret is against
//! the real one). The gateway test checks that both are refused alike and audited; the timing
//! belongs here, not in a test.
//!
//! ```text
//! cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use warden::auth::{KeyRing, Scope, create_key};
use warden::store::Store;

fn authenticate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("keys.db")).unwrap();
    let mut real = String::new();
    for i in 0..1000 {
        let key = create_key(&store, &format!("k{i}"), &[Scope::Decide], None, "bench", 0).unwrap();
        real = key.key;
    }
    let ring = KeyRing::load(&store).unwrap();
    let id = real.split('_').nth(1).unwrap();
    let forged = "A".repeat(43);
    let wrong = format!("Bearer wdn_{id}_{forged}");
    let unknown = format!("Bearer wdn_000000abcdef_{forged}");
    let right = format!("Bearer {real}");
    assert!(ring.authenticate(Some(right.as_bytes()), 1).is_ok());
    let mut g = c.benchmark_group("authenticate");
    g.bench_function("unknown_id", |b| {
        b.iter(|| {
            ring.authenticate(black_box(Some(unknown.as_bytes())), 1)
                .is_err()
        })
    });
    g.bench_function("known_id_wrong_secret", |b| {
        b.iter(|| {
            ring.authenticate(black_box(Some(wrong.as_bytes())), 1)
                .is_err()
        })
    });
    g.bench_function("valid", |b| {
        b.iter(|| {
            ring.authenticate(black_box(Some(right.as_bytes())), 1)
                .is_ok()
        })
    });
    g.finish();
}

criterion_group!(benches, authenticate);
criterion_main!(benches);
