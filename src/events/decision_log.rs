//! The decision log: what an auditor replays after the fact — "was alice blocked at 14:02 on
//! finance, and by what?". Each *recorded* decision is one JSON line ([`DecisionRecord`]):
//! its id, time, the request, the outcome, every policy matched, the snapshot's version and
//! store revision, and what each data set held (the generation of its persisted rows, its
//! row count and content hash).
//!
//! **Which decisions.** Every block and every error (a decision an unknown data set could
//! change); allows only as sampled by `[decision_log] allow_sample` (off by default). The
//! same records go to the SIEM sinks that take decisions ([`super::Events::decision`]).
//!
//! **Never on the decision's time.** [`Decisions::record`] builds the record (a few small
//! copies; the data set states are shared with the snapshot) and offers it to a bounded
//! handoff ([`LOG_HANDOFF`] records) without waiting; a full handoff drops the record and
//! counts it (`warden_decision_log_dropped_total`). A thread of its own writes the lines,
//! flushes each batch and syncs the file every second: a crash loses at most the last second.
//!
//! **Bounded by size and age.** One file per process and period
//! (`decisions-<first record's ms>-<pid>.jsonl`, mode 0600, a new one past an hour or a sixteenth of
//! `max_bytes`); the writer deletes the files older than `max_age` and the oldest while the
//! directory holds more than `max_bytes`. [`query`] reads them back by time range, service,
//! outcome and principal (`GET /v1/decision-log`, `warden decision-log`).

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use super::handoff;
use crate::decide::{DataSetState, Decision, Outcome, Request, Snapshot};

/// Records waiting for the writer; more are dropped and counted.
pub const LOG_HANDOFF: usize = 65_536;
/// Most records written in one batch.
const WRITE_BATCH: usize = 4096;
/// How often the writer syncs its file to disk.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often the writer applies the retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How far out of time order records may reach a file (threads race into the handoff), and
/// more than a file's modification time may lag its last write.
const ORDER_SLACK_MS: i64 = 60_000;
/// A file is closed and a new one begun after this long.
const FILE_PERIOD: Duration = Duration::from_secs(3600);

/// One policy a decision matched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Matched {
    pub policy: String,
    pub action: Cow<'static, str>,
    pub severity: Cow<'static, str>,
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecisionRecord {
    /// Unique: the process's random prefix and a counter.
    pub id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub service: String,
    pub db_user: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// `allow`, `block` or `error`.
    pub decision: Cow<'static, str>,
    pub matched: Vec<Matched>,
    /// For an error: the data sets that had never loaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_data_sets: Vec<String>,
    pub snapshot_version: u64,
    /// The store revision of the snapshot's content (equal on every replica).
    pub snapshot_revision: i64,
    pub data_sets: Arc<[DataSetState]>,
}

impl DecisionRecord {
    fn of(id: String, snapshot: &Snapshot, request: &Request<'_>, decision: &Decision) -> Self {
        let matched = decision
            .matched
            .iter()
            .filter_map(|m| {
                snapshot.policy(m).map(|p| Matched {
                    policy: p.name.clone(),
                    action: Cow::Borrowed(m.action.as_str()),
                    severity: Cow::Borrowed(m.severity.as_str()),
                })
            })
            .collect();
        let unknown_data_sets = if decision.unknown.is_empty() {
            Vec::new()
        } else {
            snapshot
                .unknown_data_sets(decision)
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        DecisionRecord {
            id,
            at_ms: crate::base::time::now_ms(),
            service: request.service.to_owned(),
            db_user: request.db_user.iter().map(|u| (*u).to_owned()).collect(),
            os_user: request.os_user.map(str::to_owned),
            source_app: request.source_app.map(str::to_owned),
            client_ip: request.client_ip.map(str::to_owned),
            decision: Cow::Borrowed(decision.outcome.as_str()),
            matched,
            unknown_data_sets,
            snapshot_version: decision.snapshot_version,
            snapshot_revision: snapshot.revision(),
            data_sets: Arc::clone(snapshot.data_set_states()),
        }
    }

    /// What an event of this decision carries beyond its own fields (OCSF `unmapped`).
    pub fn detail(&self) -> Map<String, Value> {
        let mut d = Map::new();
        let mut put = |k: &str, v: Value| {
            d.insert(k.to_owned(), v);
        };
        put("decision_id", Value::from(self.id.as_str()));
        put("decision", Value::from(self.decision.as_ref()));
        put("snapshot_version", Value::from(self.snapshot_version));
        put("snapshot_revision", Value::from(self.snapshot_revision));
        put(
            "matched",
            serde_json::to_value(&self.matched).unwrap_or_default(),
        );
        if let Some(v) = &self.os_user {
            put("os_user", Value::from(v.as_str()));
        }
        if let Some(v) = &self.source_app {
            put("source_app", Value::from(v.as_str()));
        }
        if !self.unknown_data_sets.is_empty() {
            put(
                "unknown_data_sets",
                serde_json::to_value(&self.unknown_data_sets).unwrap_or_default(),
            );
        }
        put(
            "data_sets",
            serde_json::to_value(&*self.data_sets).unwrap_or_default(),
        );
        d
    }
}

/// Counters of the decision log, for `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct LogStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
}

/// Which decisions are recorded and where they go; owned by the running warden.
pub struct Decisions {
    /// Whether anything takes records (the log, or a sink).
    active: bool,
    /// An allow is recorded when a uniform 64-bit draw is below this.
    allow_threshold: u64,
    prefix: u32,
    next: AtomicU64,
    log: OnceLock<SyncSender<Arc<DecisionRecord>>>,
    stats: Arc<LogStats>,
}

impl Decisions {
    /// Records decisions when `active` (the log is enabled or a sink takes decisions),
    /// allows with probability `allow_sample`, counted in `stats`.
    pub fn new(active: bool, allow_sample: f64, stats: Arc<LogStats>) -> Decisions {
        let allow_threshold = if allow_sample >= 1.0 {
            u64::MAX
        } else if allow_sample <= 0.0 {
            0
        } else {
            // Truncation is the point: a share of the 64-bit range.
            (allow_sample * 18_446_744_073_709_551_616.0) as u64
        };
        Decisions {
            active,
            allow_threshold,
            prefix: process_prefix(),
            next: AtomicU64::new(0),
            log: OnceLock::new(),
            stats,
        }
    }

    pub fn stats(&self) -> &Arc<LogStats> {
        &self.stats
    }

    /// The record of `decision` when it is one to record — every block and error, allows as
    /// sampled — offered to the log's writer without waiting. Cheap when it is not: one
    /// branch for a block-free allow with sampling off.
    pub fn record(
        &self,
        snapshot: &Snapshot,
        request: &Request<'_>,
        decision: &Decision,
    ) -> Option<Arc<DecisionRecord>> {
        if !self.active
            || (decision.outcome == Outcome::Allow
                && (self.allow_threshold == 0 || !sampled(self.allow_threshold)))
        {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:08x}-{n:012x}", self.prefix);
        let record = Arc::new(DecisionRecord::of(id, snapshot, request, decision));
        if let Some(log) = self.log.get()
            && log.try_send(Arc::clone(&record)).is_err()
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Some(record)
    }

    /// Starts the writer thread on `dir`; records are written from here on.
    pub fn start(
        &self,
        dir: PathBuf,
        max_bytes: u64,
        max_age: Duration,
    ) -> std::io::Result<LogWriter> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(LOG_HANDOFF);
        if self.log.set(tx).is_err() {
            return Err(std::io::Error::other("the decision log is already started"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            dir,
            max_bytes,
            max_age,
            file: None,
            stats: Arc::clone(&self.stats),
        };
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || writer.run(&rx, &flag))?;
        Ok(LogWriter { stop, thread })
    }
}

/// The running writer; [`LogWriter::stop`] writes what is waiting and ends it.
pub struct LogWriter {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl LogWriter {
    /// Writes what is waiting, then ends the thread (blocking).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// A random prefix for this process's decision ids, so ids stay unique across restarts and
/// replicas.
fn process_prefix() -> u32 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // No randomness: the time and pid still tell processes apart.
        return (crate::base::time::now_ms() as u32) ^ std::process::id().rotate_left(16);
    }
    u32::from_le_bytes(b)
}

/// One draw of a per-thread xorshift64* generator against `threshold`.
fn sampled(threshold: u64) -> bool {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let seed = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let here = &seed as *const u64 as u64;
            (seed ^ here.rotate_left(32)) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) < threshold
    })
}

struct Open {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
    since: Instant,
    synced: Instant,
}

struct Writer {
    dir: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    file: Option<Open>,
    stats: Arc<LogStats>,
}

impl Writer {
    fn run(mut self, rx: &Receiver<Arc<DecisionRecord>>, stop: &AtomicBool) {
        let mut pruned: Option<Instant> = None;
        loop {
            let taken = handoff::take(rx, WRITE_BATCH);
            self.write(&taken.items);
            self.flush(false);
            if pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                self.prune();
                pruned = Some(Instant::now());
            }
            if taken.closed {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                let rest = handoff::take(rx, usize::MAX);
                self.write(&rest.items);
                break;
            }
            if taken.caught_up(WRITE_BATCH) {
                std::thread::sleep(handoff::TICK);
            }
        }
        self.flush(true);
    }

    fn write(&mut self, batch: &[Arc<DecisionRecord>]) {
        for record in batch {
            let mut line = match serde_json::to_vec(&**record) {
                Ok(l) => l,
                Err(_) => continue,
            };
            line.push(b'\n');
            if let Err(e) = self.append(&line, record.at_ms) {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, dir = %self.dir.display(), "cannot write the decision log");
                self.file = None;
                return;
            }
            self.stats.written.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn append(&mut self, line: &[u8], at_ms: i64) -> std::io::Result<()> {
        let period_over = self
            .file
            .as_ref()
            .is_some_and(|f| f.since.elapsed() >= FILE_PERIOD || f.bytes >= self.file_bytes());
        if period_over {
            self.flush(true);
            self.file = None;
        }
        if self.file.is_none() {
            let path = self.dir.join(format!(
                "decisions-{at_ms:013}-{}.jsonl",
                std::process::id()
            ));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)?;
            self.file = Some(Open {
                path,
                out: BufWriter::new(f),
                bytes: 0,
                since: Instant::now(),
                synced: Instant::now(),
            });
        }
        if let Some(f) = &mut self.file {
            f.out.write_all(line)?;
            f.bytes += line.len() as u64;
        }
        Ok(())
    }

    fn file_bytes(&self) -> u64 {
        (self.max_bytes / 16).clamp(64 << 10, 64 << 20)
    }

    /// Hands buffered lines to the file; syncs once a second, or now when `sync`.
    fn flush(&mut self, sync: bool) {
        let Some(f) = &mut self.file else { return };
        let mut result = f.out.flush();
        if result.is_ok() && (sync || f.synced.elapsed() >= SYNC_EVERY) {
            result = f.out.get_ref().sync_data();
            f.synced = Instant::now();
        }
        if let Err(e) = result {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, file = %f.path.display(), "cannot write the decision log");
            self.file = None;
        }
    }

    /// Deletes files past `max_age`, then the oldest while over `max_bytes`; never the one
    /// being written.
    fn prune(&mut self) {
        let current = self.file.as_ref().map(|f| f.path.clone());
        let Ok(files) = log_files(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut total: u64 = files.iter().map(|f| f.bytes).sum();
        for f in &files {
            if Some(&f.path) == current.as_ref() {
                continue;
            }
            let old = now
                .duration_since(f.modified)
                .is_ok_and(|age| age > self.max_age);
            if (old || total > self.max_bytes) && std::fs::remove_file(&f.path).is_ok() {
                total = total.saturating_sub(f.bytes);
            }
        }
    }
}

struct LogFile {
    path: PathBuf,
    start_ms: i64,
    bytes: u64,
    modified: SystemTime,
}

/// The log's files, oldest first.
fn log_files(dir: &Path) -> std::io::Result<Vec<LogFile>> {
    let mut files: Vec<LogFile> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let start_ms = name
                .strip_prefix("decisions-")?
                .strip_suffix(".jsonl")?
                .split('-')
                .next()?
                .parse()
                .ok()?;
            let meta = e.metadata().ok()?;
            Some(LogFile {
                path: e.path(),
                start_ms,
                bytes: meta.len(),
                modified: meta.modified().ok()?,
            })
        })
        .collect();
    files.sort_by_key(|f| f.start_ms);
    Ok(files)
}

/// What to read back from the log.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub service: Option<String>,
    /// `allow`, `block` or `error`.
    pub decision: Option<String>,
    pub limit: usize,
}

/// The recorded decisions matching `q` and `principal` (a test on a record's users), oldest
/// first, at most `q.limit`; whether more matched.
pub fn query(
    dir: &Path,
    q: &Query,
    principal: impl Fn(&DecisionRecord) -> bool,
) -> std::io::Result<(Vec<DecisionRecord>, bool)> {
    let files = match log_files(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(e),
    };
    let since = q.since_ms.unwrap_or(i64::MIN);
    let until = q.until_ms.unwrap_or(i64::MAX);
    let mut out = Vec::new();
    let mut more = false;
    for f in files {
        let last_write_ms = f
            .modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(i64::MAX, |d| {
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
            });
        // A file is named after its first record's time; records reach it in about the order
        // they were made, give or take the handoff's delay; and a file's modification time
        // is coarse (the kernel's tick).
        if f.start_ms >= until.saturating_add(ORDER_SLACK_MS)
            || last_write_ms.saturating_add(ORDER_SLACK_MS) < since
        {
            continue;
        }
        let file = match File::open(&f.path) {
            Ok(file) => file,
            // Pruned while we read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            // A line being written (or torn by a crash) is not a record yet.
            let Ok(record) = serde_json::from_str::<DecisionRecord>(&line?) else {
                continue;
            };
            let wanted = record.at_ms >= since
                && record.at_ms < until
                && q.service.as_deref().is_none_or(|s| s == record.service)
                && q.decision.as_deref().is_none_or(|d| d == record.decision)
                && principal(&record);
            if !wanted {
                continue;
            }
            if out.len() == q.limit {
                more = true;
                break;
            }
            out.push(record);
        }
        if more {
            break;
        }
    }
    out.sort_by_key(|r| r.at_ms);
    Ok((out, more))
}

/// [`query`] over the configured log, for `principal` as an account: any spelling of it
/// (`CORP\alice`, `alice@corp.example.test`) finds the records of every other spelling, by
/// the domain rules of `config` (case folded).
pub fn query_config(
    config: &crate::config::Config,
    principal: Option<&str>,
    q: &Query,
) -> std::io::Result<(Vec<DecisionRecord>, bool)> {
    let identity = &config.identity;
    let account = |name: &str| crate::model::dataset::fold(&identity.canonical(name), false);
    let wanted = principal.map(account);
    query(&config.decision_log_dir(), q, |r| {
        wanted
            .as_ref()
            .is_none_or(|w| r.db_user.iter().any(|u| account(u) == *w))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sampling_takes_about_the_share_asked() {
        let threshold = (0.01 * 18_446_744_073_709_551_616.0) as u64;
        let n = (0..200_000).filter(|_| sampled(threshold)).count();
        assert!((1_400..2_600).contains(&n), "{n} of 200000 at 1%");
        assert_eq!((0..1000).filter(|_| sampled(0)).count(), 0);
    }

    #[test]
    fn records_round_trip_through_a_line() {
        let r = DecisionRecord {
            id: "x-1".into(),
            at_ms: 5,
            service: "finance".into(),
            db_user: vec!["CORP\\alice".into()],
            os_user: None,
            source_app: Some("psql".into()),
            client_ip: Some("10.0.0.1".into()),
            decision: Cow::Borrowed("block"),
            matched: vec![Matched {
                policy: "P".into(),
                action: Cow::Borrowed("block"),
                severity: Cow::Borrowed("high"),
            }],
            unknown_data_sets: Vec::new(),
            snapshot_version: 3,
            snapshot_revision: 9,
            data_sets: Arc::from(vec![DataSetState {
                name: "S".into(),
                generation: Some(4),
                rows: 1,
                fingerprint: "00ff".into(),
                loaded: true,
            }]),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<DecisionRecord>(&line).unwrap(), r);
    }

    #[test]
    fn the_writer_keeps_records_and_query_finds_them_by_time_and_user() {
        let dir = tempfile::tempdir().unwrap();
        let decisions = Decisions::new(true, 0.0, Arc::default());
        let writer = decisions
            .start(dir.path().to_owned(), 1 << 20, Duration::from_secs(3600))
            .unwrap();
        let tx = decisions.log.get().unwrap().clone();
        for (i, user) in ["alice", "bob", "alice"].iter().enumerate() {
            let mut r = sample(user);
            r.at_ms = 1000 * (i as i64 + 1);
            tx.send(Arc::new(r)).unwrap();
        }
        writer.stop();
        let q = Query {
            limit: 10,
            ..Query::default()
        };
        let (all, more) = query(dir.path(), &q, |_| true).unwrap();
        assert_eq!(all.len(), 3);
        assert!(!more);
        let alice = |r: &DecisionRecord| r.db_user.iter().any(|u| u == "alice");
        let q = Query {
            since_ms: Some(1500),
            limit: 10,
            ..Query::default()
        };
        let (found, _) = query(dir.path(), &q, alice).unwrap();
        assert_eq!(found.iter().map(|r| r.at_ms).collect::<Vec<_>>(), [3000]);
        let q = Query {
            limit: 1,
            ..Query::default()
        };
        assert_eq!(
            query(dir.path(), &q, |_| true).unwrap(),
            (vec![all[0].clone()], true)
        );
    }

    fn sample(user: &str) -> DecisionRecord {
        DecisionRecord {
            id: format!("id-{user}"),
            at_ms: 0,
            service: "finance".into(),
            db_user: vec![user.into()],
            os_user: None,
            source_app: None,
            client_ip: None,
            decision: Cow::Borrowed("block"),
            matched: Vec::new(),
            unknown_data_sets: Vec::new(),
            snapshot_version: 1,
            snapshot_revision: 1,
            data_sets: Arc::from(Vec::new()),
        }
    }
}
