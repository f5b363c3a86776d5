//! The replica's side of a shared PostgreSQL store: the change feed (`LISTEN warden_changes`
//! on a connection of its own; on every (re)connect, on every notification and every
//! [`CHECK`], the newest revision of the change log is read and, if the snapshot is behind
//! it, the state reloaded — NOTIFY alone is not durable, the log is) and the leader election
//! (the session advisory lock whose holder runs the jobs that must run once; the supervisor
//! starts and stops them as leadership comes and goes).
//!
//! A notification is only a wake-up. Any role that may connect to the store database can
//! send one with any payload, so the revision a replica publishes comes from the change log
//! it read, never from a payload; a payload that is not a revision as warden writes it, or
//! names one the log does not have, is ignored and counted
//! (`warden_change_notifications_ignored_total`).

use std::sync::Arc;
use std::time::Duration;

use super::{Ready, Service, Shutdown};
use crate::metrics::IgnoredNotification;
use crate::runtime::Warden;
use crate::store::postgres::{self, Announcements, Heard};

/// Wait between attempts to reach the server again.
const RETRY: Duration = Duration::from_secs(1);
/// The change feed also reads the log this often, whatever it heard.
const CHECK: Duration = Duration::from_secs(5);

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
    let metrics = warden.metrics();
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

async fn elect(warden: Arc<Warden>, mut shutdown: Shutdown, ready: Ready) {
    let Some(config) = warden.store().postgres().cloned() else {
        return;
    };
    let failover = config.leader_failover;
    // Followers ask this often; the leader proves its session this often, giving up within
    // half the failover time, and the server drops a vanished leader's session (and lock)
    // within the failover time through TCP keepalives and the user timeout set below.
    let poll = (failover / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let seconds = failover.as_secs().max(2);
    loop {
        let session = async {
            let client = postgres::connect(&config, "leader election", None).await?;
            client
                .batch_execute(&format!(
                    "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = 1;
                     SET tcp_keepalives_count = {}; SET tcp_user_timeout = {};",
                    seconds / 2,
                    (seconds / 2).max(1),
                    failover.as_millis()
                ))
                .await
                .map_err(|e| crate::store::db::DbError::Unavailable(e.to_string()))?;
            Ok::<_, crate::store::db::DbError>(client)
        };
        let client = tokio::select! {
            () = shutdown.requested() => return,
            c = session => c,
        };
        match client {
            Err(e) => tracing::warn!(error = %e, "leader election cannot reach the store"),
            Ok(client) => {
                ready.set();
                loop {
                    let asked = if warden.store().is_leader() {
                        client.simple_query("SELECT 1").await.map(|_| true)
                    } else {
                        client
                            .query_one("SELECT pg_try_advisory_lock($1)", &[&postgres::LEADER_LOCK])
                            .await
                            .map(|row| row.get::<_, bool>(0))
                    };
                    match tokio::time::timeout(failover / 2, async { asked }).await {
                        Ok(Ok(won)) => {
                            if won && !warden.store().is_leader() {
                                tracing::info!("this replica is the leader");
                            }
                            warden.store().set_leader(won);
                        }
                        _ => break,
                    }
                    tokio::select! {
                        () = shutdown.requested() => {
                            warden.store().set_leader(false);
                            return;
                        }
                        () = tokio::time::sleep(poll) => {}
                    }
                }
            }
        }
        if warden.store().is_leader() {
            tracing::warn!("leader lost its session; stepping down");
        }
        warden.store().set_leader(false);
        tokio::select! {
            () = shutdown.requested() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}
