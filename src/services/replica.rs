//! The replica's side of a shared PostgreSQL store: the change feed (`LISTEN warden_changes`
//! on a connection of its own; on every (re)connect, on every notification and every
//! [`CHECK`], the newest revision of the change log is read and, if the snapshot is behind
//! it, the state reloaded — NOTIFY alone is not durable, the log is) and the leader election
//! (the lease whose holder runs the jobs that must run once, each term with its fencing
//! token; the supervisor starts and stops them as leadership comes and goes).
//!
//! A notification is only a wake-up. Any role that may connect to the store database can
//! send one with any payload, so the revision a replica publishes comes from the change log
//! it read, never from a payload; a payload that is not a revision as warden writes it, or
//! names one the log does not have, is ignored and counted
//! (`warden_change_notifications_ignored_total`).

use std::sync::Arc;
use std::time::Duration;

use super::{Ready, Service, Shutdown};
use crate::metrics::{Collect, Desc, Exposition, Slot, Slots};
use crate::runtime::Warden;
use crate::store::postgres::{self, Announcements, Heard};

/// Wait between attempts to reach the server again.
const RETRY: Duration = Duration::from_secs(1);
/// The change feed also reads the log this often, whatever it heard.
const CHECK: Duration = Duration::from_secs(5);

static NOTIFICATIONS_IGNORED: Desc = Desc::counter(
    "warden_change_notifications_ignored_total",
    "Notifications on warden's change channel that warden did not write, ignored (a \
     notification only wakes the change feed), by reason.",
);

/// Why the change feed ignored a notification on warden's channel (any role that may connect
/// to the store database can send one; a notification is only ever a wake-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoredNotification {
    /// The payload is not a revision as warden writes it.
    Malformed,
    /// The payload names a revision the change log does not have.
    UnknownRevision,
}

impl IgnoredNotification {
    pub const ALL: [IgnoredNotification; 2] = [
        IgnoredNotification::Malformed,
        IgnoredNotification::UnknownRevision,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IgnoredNotification::Malformed => "malformed",
            IgnoredNotification::UnknownRevision => "unknown_revision",
        }
    }
}

impl Slot for IgnoredNotification {
    const ALL: &'static [IgnoredNotification] = &IgnoredNotification::ALL;
    const LABEL: &'static str = "reason";
    fn slot(self) -> usize {
        self as usize
    }
    fn label(self) -> &'static str {
        self.as_str()
    }
}

/// The change feed's metrics: the notifications it ignored, by reason (every reason listed,
/// at zero too).
pub struct ChangeFeedMetrics {
    ignored: Slots<IgnoredNotification>,
}

impl Default for ChangeFeedMetrics {
    fn default() -> ChangeFeedMetrics {
        ChangeFeedMetrics {
            ignored: Slots::new(&NOTIFICATIONS_IGNORED, true),
        }
    }
}

impl Collect for ChangeFeedMetrics {
    fn collect(&self, out: &mut Exposition<'_>) {
        self.ignored.collect(out);
    }
}

impl ChangeFeedMetrics {
    /// `n` notifications on the change feed's channel were ignored for `reason`.
    pub fn notifications_ignored(&self, reason: IgnoredNotification, n: u64) {
        self.ignored.add(reason, n);
    }
}

/// The services of a replica on a shared store (none on SQLite).
pub fn services(warden: &Arc<Warden>) -> Vec<Service> {
    if !warden.store().is_shared() {
        return Vec::new();
    }
    let feed = Arc::clone(warden);
    let election = Arc::clone(warden);
    vec![
        Service::new("change feed", move |shutdown, ready| {
            follow(feed, shutdown, ready)
        }),
        Service::new("leader election", move |shutdown, ready| {
            elect(election, shutdown, ready)
        }),
    ]
}

/// Reloads from the store if the change log is past what the snapshot shows; returns the
/// newest revision the log had (none if it could not be read).
async fn catch_up(warden: &Arc<Warden>) -> Option<i64> {
    let w = Arc::clone(warden);
    let done = tokio::task::spawn_blocking(move || {
        let newest = w.store().newest_revision()?;
        if newest > w.engine().load().revision() {
            w.reload_from_store()?;
        }
        Ok::<_, crate::runtime::WardenError>(newest)
    })
    .await;
    match done {
        Ok(Ok(newest)) => Some(newest),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot catch up from the change log; deciding from the last snapshot");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "catch-up task failed");
            None
        }
    }
}

/// Acts on what the feed heard: catches up if a revision was announced, and counts the
/// payloads warden did not write — malformed ones, and a revision past the newest the log
/// has once read (warden notifies in the committing transaction, so its own revisions are
/// in the log by the time they are heard).
async fn woken(warden: &Arc<Warden>, heard: Heard) {
    let metrics = warden.metrics().get::<ChangeFeedMetrics>();
    if heard.malformed > 0 {
        metrics.notifications_ignored(IgnoredNotification::Malformed, heard.malformed);
        tracing::debug!(
            count = heard.malformed,
            "ignored notifications warden did not write"
        );
    }
    if heard.announced == 0 {
        return;
    }
    if let Some(newest) = catch_up(warden).await
        && heard.announced > newest
    {
        metrics.notifications_ignored(IgnoredNotification::UnknownRevision, 1);
        tracing::warn!(
            announced = heard.announced,
            newest,
            "a notification named a revision the change log does not have; ignored \
             (is the store database open to other roles?)"
        );
    }
}

async fn follow(warden: Arc<Warden>, mut shutdown: Shutdown, ready: Ready) {
    let Some(config) = warden.store().postgres().cloned() else {
        return;
    };
    loop {
        let announcements = Arc::new(Announcements::default());
        let listening = async {
            let client =
                postgres::connect(&config, "change feed", Some(Arc::clone(&announcements))).await?;
            client
                .batch_execute(&format!("LISTEN {}", postgres::CHANNEL))
                .await
                .map_err(|e| crate::store::db::DbError::Unavailable(e.to_string()))?;
            Ok::<_, crate::store::db::DbError>(client)
        };
        let client = tokio::select! {
            () = shutdown.requested() => return,
            c = listening => c,
        };
        match client {
            Err(e) => {
                warden.store().health().down();
                tracing::warn!(error = %e, "change feed cannot reach the store; retrying");
            }
            Ok(_client) => {
                // Listening first, then reading the log: nothing committed in between is missed.
                if catch_up(&warden).await.is_some() {
                    ready.set();
                }
                // An interval, not a sleep per wake-up: notifications arriving without pause
                // (anyone's) do not put the periodic read off.
                let mut check =
                    tokio::time::interval_at(tokio::time::Instant::now() + CHECK, CHECK);
                check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = shutdown.requested() => return,
                        heard = announcements.heard() => {
                            woken(&warden, heard).await;
                            if heard.closed {
                                break;
                            }
                        }
                        _ = check.tick() => { catch_up(&warden).await; }
                    }
                }
                warden.store().health().down();
                tracing::warn!("change feed lost its connection; reconnecting and catching up");
            }
        }
        tokio::select! {
            () = shutdown.requested() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// This process among the replicas, as the lease records its holder: host, pid and a random
/// part (a pid is reused across restarts; a holder must not be).
fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned());
    let mut nonce = [0u8; 6];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host} pid {} {nonce}", std::process::id())
}

/// The leader election: holds the lease while it can renew it, takes it when it expired.
///
/// A follower asks every tenth of `leader_failover` (at least 100 ms, at most 1 s); the
/// leader renews every quarter of it, each round trip bounded by a quarter too, so it holds
/// the lease through a lost renewal and knows it lost it (its term lapses) no later than the
/// server lets another replica take it. A stopped leader renews nothing: its lease expires
/// on the server's clock and a follower takes it within `leader_failover` and one poll; when
/// it is continued, its term has lapsed, its next ask finds the lease taken, and its
/// leader-only writes (fenced by token) are refused meanwhile.
async fn elect(warden: Arc<Warden>, mut shutdown: Shutdown, ready: Ready) {
    let Some(config) = warden.store().postgres().cloned() else {
        return;
    };
    let lease = config.leader_failover;
    let poll = (lease / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let renew = lease / 4;
    let holder = holder_id();
    let store = warden.store();
    loop {
        let connected = tokio::select! {
            () = shutdown.requested() => return,
            c = postgres::Lease::connect(&config, &holder) => c,
        };
        match connected {
            Err(e) => tracing::warn!(error = %e, "leader election cannot reach the store"),
            Ok(conn) => {
                ready.set();
                loop {
                    // A term that lapsed (no renewal confirmed in time: a stopped or starved
                    // process) is not renewed but won again, as a new term, if still free.
                    let held = store.term();
                    let asked = match held {
                        Some(term) => conn.renew(term, lease).await,
                        None => conn.acquire(lease).await,
                    };
                    match asked {
                        Ok(term) => lead(store, term),
                        Err(e) => {
                            tracing::warn!(error = %e, "leader election cannot ask for the lease; reconnecting");
                            break;
                        }
                    }
                    let wait = if store.is_leader() { renew } else { poll };
                    tokio::select! {
                        () = shutdown.requested() => {
                            // Handed over, so that another replica leads at once.
                            if let Some(term) = store.term()
                                && conn.release(term).await.is_ok()
                            {
                                tracing::info!(term = term.token(), "leader lease released");
                            }
                            store.set_term(None);
                            return;
                        }
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        lead(store, None);
        tokio::select! {
            () = shutdown.requested() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Records the outcome of a lease round: `term` won or renewed, or none.
fn lead(store: &crate::store::Store, term: Option<crate::store::changes::Term>) {
    match (store.set_term(term), term) {
        (None, Some(t)) => tracing::info!(term = t.token(), "this replica is the leader"),
        (Some(b), Some(t)) if b.token() != t.token() => {
            tracing::warn!(
                lost = b.token(),
                term = t.token(),
                "this replica lost the leader lease and won it again"
            );
        }
        (Some(b), None) => tracing::warn!(
            term = b.token(),
            "this replica lost the leader lease; stepping down"
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Registry;

    #[test]
    fn ignored_notifications_render_every_reason() {
        let registry = Registry::default();
        let m = registry.get::<ChangeFeedMetrics>();
        m.notifications_ignored(IgnoredNotification::Malformed, 3);
        let out = registry.render(|_| {});
        let name = "warden_change_notifications_ignored_total";
        assert!(
            out.contains(&format!("{name}{{reason=\"malformed\"}} 3")),
            "{out}"
        );
        assert!(out.contains(&format!("{name}{{reason=\"unknown_revision\"}} 0")));
    }
}
