//! The sync runs' metrics: failed refreshes and pushes, pulls by kind, incremental-state
//! mismatches, nesting cycles, drift repaired, and when each data set last applied a
//! refresh.

use crate::metrics::{Collect, CounterMap, Desc, Exposition};

static REFRESH_FAILURES: Desc = Desc::counter(
    "warden_refresh_failures_total",
    "Failed data-set refreshes.",
);
static SYNC_FAILURES: Desc = Desc::counter(
    "warden_sync_failures_total",
    "Failed push syncs, by directory.",
);
static PULLS: Desc = Desc::counter(
    "warden_pulls_total",
    "Pulls of LDAP data sets, by data set and kind (full, incremental).",
);
static INCREMENTAL_MISMATCHES: Desc = Desc::counter(
    "warden_incremental_mismatches_total",
    "Rows a full pull found the incremental state had wrong (repaired by the full result).",
);
static NESTING_CYCLES: Desc = Desc::gauge(
    "warden_nesting_cycles",
    "Nesting cycles in the chain of a nested data set's group, at its last pull.",
);
static DRIFT_REPAIRED: Desc = Desc::counter(
    "warden_drift_repaired_total",
    "Listed members put back into their group after someone else removed them.",
);
static LAST_REFRESH: Desc = Desc::gauge(
    "warden_data_set_last_refresh_timestamp_seconds",
    "When each data set last applied a refresh.",
);
static REFRESH_AGE: Desc = Desc::gauge(
    "warden_data_set_refresh_age_seconds",
    "Seconds since each data set last applied a refresh.",
);

/// The sync runs' counters, one registry entry per warden.
pub struct SyncMetrics {
    refresh_failures: CounterMap<String>,
    /// By directory: an AD push, an agentless database, the MX push (`imperva`).
    sync_failures: CounterMap<String>,
    pulls: CounterMap<(String, &'static str)>,
    incremental_mismatches: CounterMap<String>,
    nesting_cycles: CounterMap<String>,
    drift_repaired: CounterMap<String>,
    /// Unix milliseconds of the last applied refresh, by data set; shown as a timestamp and
    /// as an age computed when scraped.
    last_refresh_ms: CounterMap<String>,
}

impl Default for SyncMetrics {
    fn default() -> SyncMetrics {
        SyncMetrics {
            refresh_failures: CounterMap::new(&REFRESH_FAILURES, &["data_set"]),
            sync_failures: CounterMap::new(&SYNC_FAILURES, &["directory"]),
            pulls: CounterMap::new(&PULLS, &["data_set", "kind"]),
            incremental_mismatches: CounterMap::new(&INCREMENTAL_MISMATCHES, &["data_set"]),
            nesting_cycles: CounterMap::new(&NESTING_CYCLES, &["data_set"]),
            drift_repaired: CounterMap::new(&DRIFT_REPAIRED, &["group"]),
            last_refresh_ms: CounterMap::new(&LAST_REFRESH, &["data_set"]),
        }
    }
}

impl Collect for SyncMetrics {
    fn collect(&self, out: &mut Exposition<'_>) {
        self.refresh_failures.collect(out);
        self.sync_failures.collect(out);
        self.pulls.collect(out);
        self.incremental_mismatches.collect(out);
        self.nesting_cycles.collect(out);
        self.drift_repaired.collect(out);
        let refreshes = self.last_refreshes();
        out.family(&LAST_REFRESH);
        for (name, at_ms) in &refreshes {
            let at = *at_ms as f64 / 1000.0;
            out.sample(LAST_REFRESH.name, &[("data_set", name)], at);
        }
        out.family(&REFRESH_AGE);
        let now_ms = crate::base::time::now_ms().max(0) as u64;
        for (name, at_ms) in &refreshes {
            let age = now_ms.saturating_sub(*at_ms) as f64 / 1000.0;
            out.sample(REFRESH_AGE.name, &[("data_set", name)], age);
        }
    }
}

impl SyncMetrics {
    pub fn refresh_failed(&self, data_set: &str) {
        self.refresh_failures.inc(data_set.to_owned());
    }

    pub fn sync_failed(&self, directory: &str) {
        self.sync_failures.inc(directory.to_owned());
    }

    /// A push put `n` listed members back into `group_dn` (drift repaired).
    pub fn drift_repaired(&self, group_dn: &str, n: usize) {
        self.drift_repaired.add(group_dn.to_owned(), n as u64);
    }

    /// A refresh of `data_set` was applied at `at_ms` (Unix milliseconds).
    pub fn refreshed(&self, data_set: &str, at_ms: u64) {
        self.last_refresh_ms.set(data_set.to_owned(), at_ms);
    }

    /// A pull of `data_set` ran; `kind` is `full` or `incremental`.
    pub fn pulled(&self, data_set: &str, kind: &'static str) {
        self.pulls.inc((data_set.to_owned(), kind));
    }

    /// A full pull of `data_set` found `n` rows the incremental state had wrong.
    pub fn incremental_mismatch(&self, data_set: &str, n: usize) {
        self.incremental_mismatches
            .add(data_set.to_owned(), n as u64);
    }

    /// The chain of `data_set`'s nested groups holds `n` cycles.
    pub fn nesting_cycles(&self, data_set: &str, n: usize) {
        self.nesting_cycles.set(data_set.to_owned(), n as u64);
    }

    /// Last applied refresh per data set, Unix milliseconds.
    pub fn last_refreshes(&self) -> Vec<(String, u64)> {
        self.last_refresh_ms.values()
    }
}
