//! One sink at work: two threads around its durable queue ([`super::queue`]).
//!
//! - The **writer** takes items from the sink's bounded in-memory handoff (what
//!   [`super::Events`] offered without waiting), follows the audit log from the last record
//!   it queued (the queue's mark; a new queue starts at the log's end; on a shared store,
//!   only while this replica leads), turns both into CEF or OCSF text — in an RFC 5424
//!   message for a syslog sink, a line for a file — and appends them to the queue, durable
//!   per batch. Records past the queue's bound are dropped and counted; so are items a full
//!   handoff refused. Drops are reported as an audit record `events.dropped` (with the
//!   count) once the queue has room again, or every [`DROP_REPORT_EVERY`] while it has not.
//! - The **sender** delivers the queue in order. A syslog sink keeps one verified TLS
//!   connection; a batch is committed as delivered once the connection has stayed up
//!   [`CONFIRM_AFTER`] after it was written (TLS syslog has no acknowledgement, and a
//!   receiver that goes away takes what sat in its socket with it); when the connection
//!   breaks, everything not committed is sent again on the next one. A file sink commits
//!   once the lines are synced. So delivery is at-least-once: after a lost connection or a
//!   crash, the receiver may get the last few seconds of events twice, in order.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::decision_log::DecisionRecord;
use super::event::{Event, from_audit};
use super::file::RotatingFile;
use super::queue::{Position, Queue};
use super::{cef, handoff, ocsf, syslog};
use crate::base::actor::Actor;
use crate::config::{EventFormat, SinkConfig, SinkTransport};
use crate::store::{AuditRecord, Store};

/// What a sink is handed: an event, or a recorded decision (made into an event by the
/// writer, off the decision path).
pub enum Item {
    Event(Arc<Event>),
    /// The events of one bulk change (a push run), one handoff slot for all of them.
    Batch(Arc<Vec<Event>>),
    Decision(Arc<DecisionRecord>),
}

/// How long a written batch must see its connection stay up before it counts as delivered.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(2);
/// How often the writer looks for new audit records.
pub const AUDIT_POLL: Duration = Duration::from_millis(200);
/// While a sink keeps dropping, how often the drops are audited.
pub const DROP_REPORT_EVERY: Duration = Duration::from_secs(60);
/// The longest wait between two attempts to reach a receiver.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// The largest event text; beyond, the event is sent without its detail (marked
/// `truncated`). RFC 5425 receivers must take 2,048 octets and should take 8,192.
pub const MAX_MESSAGE_BYTES: usize = 8000;
const AUDIT_BATCH: u32 = 500;
/// Most handoff items encoded and queued in one batch (one sync of the queue).
const WRITE_BATCH: usize = 1024;
const SEND_BATCH_BYTES: usize = 64 << 10;

/// A sink's counters and state, for `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped_queue: AtomicU64,
    pub dropped_handoff: AtomicU64,
    /// Drops already audited.
    reported: AtomicU64,
    pub pending_bytes: AtomicU64,
    pub connected: AtomicBool,
    pub running: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

impl SinkStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue.load(Ordering::Relaxed) + self.dropped_handoff.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_error(&self, e: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = e;
    }
}

/// A started sink; [`Running::stop`] ends both threads.
pub struct Running {
    stop: Arc<AtomicBool>,
    queue: Arc<Queue>,
    writer: std::thread::JoinHandle<()>,
    sender_done: std::sync::mpsc::Receiver<()>,
}

impl Running {
    /// Queues what the handoff holds, then stops delivering (what is queued stays for the
    /// next start). Waits at most `grace` for the sender, which may be inside a connect.
    pub fn stop(self, grace: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.writer.join();
        self.queue.close();
        let _ = self.sender_done.recv_timeout(grace);
    }
}

/// What a sink's threads are given beside its configuration.
pub struct Ends {
    /// The handoff's receiving end.
    pub handoff: Receiver<Item>,
    pub stats: Arc<SinkStats>,
    pub store: Arc<Store>,
    /// Where a new queue begins following the audit log (the newest record when warden
    /// was made, so nothing audited while it starts is missed).
    pub origin: i64,
}

/// Opens the sink's queue in `dir` and starts its threads.
pub fn start(
    config: &SinkConfig,
    dir: PathBuf,
    vendor: &str,
    ends: Ends,
) -> std::io::Result<Running> {
    let Ends {
        handoff,
        stats,
        store,
        origin,
    } = ends;
    let queue = Arc::new(Queue::open(&dir, config.queue_max_bytes)?);
    let delivery: Box<dyn Delivery> = match &config.transport {
        SinkTransport::Syslog {
            address,
            server_name,
            ca_file,
        } => Box::new(Syslog {
            address: address.clone(),
            server_name: server_name.clone(),
            tls: crate::directory::tls_config(ca_file.as_deref())
                .map_err(|e| std::io::Error::other(e.to_string()))?,
            conn: None,
        }),
        SinkTransport::File {
            path,
            max_file_bytes,
            keep_files,
        } => Box::new(RotatingFile::new(
            path.clone(),
            *max_file_bytes,
            *keep_files,
        )),
    };
    let stop = Arc::new(AtomicBool::new(false));
    stats
        .pending_bytes
        .store(queue.pending_bytes(), Ordering::Relaxed);
    stats.running.store(true, Ordering::Relaxed);
    let writer = Writer {
        name: config.name.clone(),
        format: config.format,
        syslog: matches!(config.transport, SinkTransport::Syslog { .. }),
        vendor: vendor.to_owned(),
        queue: Arc::clone(&queue),
        stats: Arc::clone(&stats),
        store,
        audit: config.audit,
        mark: queue.mark().unwrap_or(origin),
        polled: None,
        // The first report of a stretch of drops waits for room, or this long.
        reported_at: Some(Instant::now()),
    };
    let (done, sender_done) = std::sync::mpsc::channel();
    let sender = Sender {
        queue: Arc::clone(&queue),
        stats,
        delivery,
    };
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name(format!("sink-send-{}", config.name))
        .spawn(move || {
            sender.run(&flag);
            let _ = done.send(());
        })?;
    let flag = Arc::clone(&stop);
    let writer = std::thread::Builder::new()
        .name(format!("sink-write-{}", config.name))
        .spawn(move || writer.run(&handoff, &flag))?;
    Ok(Running {
        stop,
        queue,
        writer,
        sender_done,
    })
}

struct Writer {
    name: String,
    format: EventFormat,
    syslog: bool,
    vendor: String,
    queue: Arc<Queue>,
    stats: Arc<SinkStats>,
    store: Arc<Store>,
    audit: bool,
    /// The last audit record queued.
    mark: i64,
    polled: Option<Instant>,
    /// When drops were last audited (or the writer started).
    reported_at: Option<Instant>,
}

impl Writer {
    fn run(mut self, handoff: &Receiver<Item>, stop: &AtomicBool) {
        let mut warned: Option<Instant> = None;
        loop {
            let taken = handoff::take(handoff, WRITE_BATCH);
            let mut records: Vec<Vec<u8>> = taken
                .items
                .iter()
                .flat_map(|i| self.encode_item(i))
                .collect();
            let mark = match self.follow_audit(&mut records) {
                Ok(mark) => mark,
                Err(e) => {
                    if warned.is_none_or(|t| t.elapsed() >= DROP_REPORT_EVERY) {
                        tracing::warn!(sink = %self.name, error = %e, "cannot read the audit log for the SIEM sink; retrying");
                        warned = Some(Instant::now());
                    }
                    None
                }
            };
            self.append(&records);
            if let Some(m) = mark {
                match self.queue.set_mark(m) {
                    Ok(()) => self.mark = m,
                    Err(e) => {
                        tracing::error!(sink = %self.name, error = %e, "cannot save the sink's audit position")
                    }
                }
            }
            self.report_drops();
            if taken.closed {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                let rest: Vec<Vec<u8>> = handoff
                    .try_iter()
                    .flat_map(|i| self.encode_item(&i))
                    .collect();
                self.append(&rest);
                break;
            }
            if taken.caught_up(WRITE_BATCH) {
                std::thread::sleep(handoff::TICK);
            }
        }
        self.stats.running.store(false, Ordering::Relaxed);
    }

    fn append(&self, records: &[Vec<u8>]) {
        if records.is_empty() {
            return;
        }
        match self.queue.append(records) {
            Ok(done) => {
                self.stats
                    .queued
                    .fetch_add(done.accepted as u64, Ordering::Relaxed);
                self.stats
                    .dropped_queue
                    .fetch_add(done.dropped as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "cannot write the event queue; events dropped");
                self.stats.set_error(Some(format!("queue: {e}")));
                self.stats
                    .dropped_queue
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
            }
        }
        self.stats
            .pending_bytes
            .store(self.queue.pending_bytes(), Ordering::Relaxed);
    }

    /// Adds the audit records after the mark (every [`AUDIT_POLL`], on the leader) to
    /// `records`; returns the new mark.
    fn follow_audit(
        &mut self,
        records: &mut Vec<Vec<u8>>,
    ) -> Result<Option<i64>, crate::store::StoreError> {
        if !self.audit || self.polled.is_some_and(|t| t.elapsed() < AUDIT_POLL) {
            return Ok(None);
        }
        self.polled = Some(Instant::now());
        if !self.store.is_leader() {
            return Ok(None);
        }
        let found = self.store.audit_after(self.mark, AUDIT_BATCH)?;
        let Some(last) = found.last().map(|r| r.id) else {
            return Ok(None);
        };
        for r in &found {
            records.extend(from_audit(r).iter().map(|e| self.encode(e)));
        }
        Ok(Some(last))
    }

    /// Audits the drops not yet audited, once the queue has room again or every
    /// [`DROP_REPORT_EVERY`] while it has not.
    fn report_drops(&mut self) {
        let dropped = self.stats.dropped();
        let reported = self.stats.reported.load(Ordering::Relaxed);
        if dropped == reported {
            return;
        }
        let room = self.queue.has_room(self.queue.max_bytes() / 4);
        let due = self
            .reported_at
            .is_some_and(|t| t.elapsed() >= DROP_REPORT_EVERY);
        if !room && !due {
            return;
        }
        let record = AuditRecord::new(
            &Actor::system("events"),
            "events.dropped",
            &self.name,
            serde_json::json!({
                "count": dropped - reported,
                "total": dropped,
                "queue_full": self.stats.dropped_queue.load(Ordering::Relaxed),
                "handoff_full": self.stats.dropped_handoff.load(Ordering::Relaxed),
                "queue_max_bytes": self.queue.max_bytes(),
            }),
        )
        .with_outcome("failed");
        match self.store.append_audit(&record) {
            Ok(_) => {
                tracing::warn!(sink = %self.name, dropped = dropped - reported, "SIEM events were dropped; audited");
                self.stats.reported.store(dropped, Ordering::Relaxed);
                self.reported_at = Some(Instant::now());
            }
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "cannot audit dropped SIEM events")
            }
        }
    }

    fn encode_item(&self, item: &Item) -> Vec<Vec<u8>> {
        match item {
            Item::Event(e) => vec![self.encode(e)],
            Item::Batch(events) => events.iter().map(|e| self.encode(e)).collect(),
            Item::Decision(d) => vec![self.encode(&Event::decision(d))],
        }
    }

    /// The queued form of `event`: its CEF or OCSF text, in an RFC 5424 message for syslog.
    fn encode(&self, event: &Event) -> Vec<u8> {
        let mut text = self.render(event);
        if text.len() > MAX_MESSAGE_BYTES {
            let mut cut = event.clone();
            cut.detail = serde_json::Map::from_iter([("truncated".to_owned(), true.into())]);
            cut.message = prefix(&event.message, 512).to_owned();
            text = self.render(&cut);
        }
        if self.syslog {
            syslog::message(event.at_ms, event.severity, &event.signature, &text).into_bytes()
        } else {
            text.into_bytes()
        }
    }

    fn render(&self, event: &Event) -> String {
        match self.format {
            EventFormat::Cef => cef::encode(event, &self.vendor),
            EventFormat::Ocsf => ocsf::encode_line(event, &self.vendor),
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Where a sender delivers.
pub(super) trait Delivery: Send {
    /// Delivers `records` in order (connecting first if needed).
    fn deliver(&mut self, records: &[&[u8]]) -> std::io::Result<()>;
    /// False once what was delivered since the last commit may be lost (the receiver went
    /// away); true when nothing is open.
    fn healthy(&mut self) -> bool;
    /// Drops the connection (politely when `graceful`).
    fn disconnect(&mut self, graceful: bool);
    /// How long a delivered batch must stay [`Delivery::healthy`] to count as delivered.
    fn confirm_after(&self) -> Duration;
}

struct Syslog {
    address: String,
    server_name: String,
    tls: Arc<rustls::ClientConfig>,
    conn: Option<syslog::Connection>,
}

impl Delivery for Syslog {
    fn deliver(&mut self, records: &[&[u8]]) -> std::io::Result<()> {
        if self.conn.is_none() {
            let conn =
                syslog::Connection::open(&self.address, &self.server_name, Arc::clone(&self.tls))
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.address)))?;
            self.conn = Some(conn);
        }
        let mut frames = Vec::with_capacity(records.iter().map(|r| r.len() + 8).sum());
        for r in records {
            syslog::frame(&mut frames, r);
        }
        match &mut self.conn {
            Some(c) => c.send(&frames),
            None => Err(std::io::Error::other("no connection")),
        }
    }

    fn healthy(&mut self) -> bool {
        self.conn.as_mut().is_none_or(syslog::Connection::alive)
    }

    fn disconnect(&mut self, graceful: bool) {
        if let Some(c) = self.conn.take()
            && graceful
        {
            c.close();
        }
    }

    fn confirm_after(&self) -> Duration {
        CONFIRM_AFTER
    }
}

struct Sender {
    queue: Arc<Queue>,
    stats: Arc<SinkStats>,
    delivery: Box<dyn Delivery>,
}

impl Sender {
    fn run(mut self, stop: &AtomicBool) {
        let mut at = self.queue.committed();
        // Delivered batches not yet committed: (position after, when written, how many).
        let mut unconfirmed: VecDeque<(Position, Instant, u64)> = VecDeque::new();
        let mut delay = crate::base::retry::RETRY_INITIAL;
        loop {
            if !self.delivery.healthy() {
                self.delivery.disconnect(false);
                if !unconfirmed.is_empty() {
                    tracing::warn!(
                        "SIEM receiver closed the connection; sending again what it may not have taken"
                    );
                }
                unconfirmed.clear();
                at = self.queue.committed();
                self.stats.connected.store(false, Ordering::Relaxed);
                self.stats
                    .set_error(Some("the receiver closed the connection".into()));
            }
            let confirm_after = self.delivery.confirm_after();
            let stopping = stop.load(Ordering::Relaxed);
            let mut confirmed = None;
            while let Some(&(pos, written, n)) = unconfirmed.front() {
                if !stopping && written.elapsed() < confirm_after {
                    break;
                }
                confirmed = Some(pos);
                self.stats.delivered.fetch_add(n, Ordering::Relaxed);
                unconfirmed.pop_front();
            }
            if let Some(pos) = confirmed {
                self.commit(pos);
            }
            if stopping {
                self.delivery.disconnect(true);
                break;
            }
            let batch = match self.queue.read(at, SEND_BATCH_BYTES) {
                Ok(b) => b,
                Err(e) => {
                    self.stats.set_error(Some(format!("queue: {e}")));
                    sleep_unless(stop, delay);
                    continue;
                }
            };
            let Some(&(_, end)) = batch.last() else {
                self.queue.wait(at, Duration::from_millis(100));
                continue;
            };
            let records: Vec<&[u8]> = batch.iter().map(|(r, _)| r.as_slice()).collect();
            match self.delivery.deliver(&records) {
                Ok(()) => {
                    at = end;
                    unconfirmed.push_back((end, Instant::now(), records.len() as u64));
                    self.stats.connected.store(true, Ordering::Relaxed);
                    self.stats.set_error(None);
                    delay = crate::base::retry::RETRY_INITIAL;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot deliver SIEM events; they stay queued");
                    self.stats.connected.store(false, Ordering::Relaxed);
                    self.stats.set_error(Some(e.to_string()));
                    self.delivery.disconnect(false);
                    unconfirmed.clear();
                    at = self.queue.committed();
                    sleep_unless(stop, delay);
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    fn commit(&self, pos: Position) {
        if let Err(e) = self.queue.commit(pos) {
            tracing::error!(error = %e, "cannot record SIEM events as delivered; they may be sent again");
        }
        self.stats
            .pending_bytes
            .store(self.queue.pending_bytes(), Ordering::Relaxed);
    }
}

/// Sleeps `d` in short steps, returning early once `stop` is set.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}
