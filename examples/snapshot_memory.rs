//! Memory of a built snapshot per member: a measurement for BENCHMARKS.md, not a test.
//!
//! ```text
//! cargo run --release --example snapshot_memory -- [MEMBERS] [warden|hashset]
//! ```
//!
//! Builds a one-column, case-insensitive data set of `MEMBERS` (default 1,000,000) principals
//! `corp\user<i>` the way warden loads a list, compiles it into a snapshot with one policy, and
//! reports what stayed resident: the process RSS (`VmRSS` from /proc/self/status) and the live
//! heap counted by a wrapping global allocator, before and after, per member, and per member
//! beyond the principal's own bytes. `hashset` measures a `HashSet<Box<str>>` of the same
//! members instead, as the floor. Run each in its own process so RSS starts clean.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use warden::decide::{IndexCache, Request, Snapshot};
use warden::model::dataset::{Cell, Column, DataSetBuilder, Schema};
use warden::model::policy::{
    Action, Criterion, Field, Operation, Policy, ServiceScope, Severity, UnknownValues,
};

/// The system allocator, counting live and peak requested bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Resident set size in bytes, from /proc/self/status.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

struct Mark {
    rss: usize,
    heap: usize,
}

fn mark() -> Mark {
    Mark {
        rss: rss(),
        heap: LIVE.load(Ordering::Relaxed),
    }
}

fn report(what: &str, n: usize, principal_bytes: usize, before: &Mark, after: &Mark) {
    let per = |bytes: usize| bytes as f64 / n as f64;
    let rss = after.rss.saturating_sub(before.rss);
    let heap = after.heap.saturating_sub(before.heap);
    let own = per(principal_bytes);
    println!(
        "{what:<34} RSS {:>7.1} MiB = {:>6.1} B/member ({:>6.1} beyond the principal's {own:.1}); \
         heap {:>7.1} MiB = {:>6.1} B/member ({:>6.1} beyond)",
        rss as f64 / (1 << 20) as f64,
        per(rss),
        per(rss) - own,
        heap as f64 / (1 << 20) as f64,
        per(heap),
        per(heap) - own,
    );
}

fn member(i: usize) -> String {
    format!("corp\\user{i}")
}

fn warden(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let principal_bytes: usize = (0..n).map(|i| member(i).len()).sum();
    let schema = Schema::new(
        vec![Column {
            name: "user".into(),
            key: true,
        }],
        false,
    )?;
    let policy = Policy {
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
    };

    let start = mark();
    let mut builder = DataSetBuilder::new("Suspicious Users", schema).with_capacity(n);
    for i in 0..n {
        builder.push(vec![Cell::One(member(i).into_boxed_str())])?;
    }
    let data_set = Arc::new(builder.build());
    let after_data_set = mark();
    let snapshot = Snapshot::build(&[policy], vec![data_set], &mut IndexCache::default())?;
    let after_snapshot = mark();

    println!(
        "{n} members, principal bytes {principal_bytes} (avg {:.1})",
        principal_bytes as f64 / n as f64
    );
    report(
        "data set (rows)",
        n,
        principal_bytes,
        &start,
        &after_data_set,
    );
    report(
        "membership index (on top)",
        n,
        0,
        &after_data_set,
        &after_snapshot,
    );
    report(
        "snapshot total",
        n,
        principal_bytes,
        &start,
        &after_snapshot,
    );
    println!(
        "peak heap during the build: {:.1} MiB",
        PEAK.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
    );
    // Keep the snapshot alive (and used) until after the last measurement.
    let d = snapshot.decide(&Request::new("orders").db_user("CORP\\User7"));
    black_box(d);
    Ok(())
}

fn hashset(n: usize) {
    let principal_bytes: usize = (0..n).map(|i| member(i).len()).sum();
    let start = mark();
    let set: HashSet<Box<str>> = (0..n).map(|i| member(i).into_boxed_str()).collect();
    let after = mark();
    println!(
        "{n} members, principal bytes {principal_bytes} (avg {:.1})",
        principal_bytes as f64 / n as f64
    );
    report("HashSet<Box<str>>", n, principal_bytes, &start, &after);
    black_box(set.contains("corp\\user7"));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n = match args.next() {
        Some(a) => a.replace('_', "").parse()?,
        None => 1_000_000,
    };
    match args.next().as_deref() {
        None | Some("warden") => warden(n)?,
        Some("hashset") => hashset(n),
        Some(other) => return Err(format!("unknown mode {other:?}: warden or hashset").into()),
    }
    Ok(())
}
