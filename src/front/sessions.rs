//! The open sessions of every session front end (each gate), and the watch that ends one
//! when a snapshot swap blocks it.
//!
//! **The registry** ([`Sessions`]) is what `GET /v1/gates` and the console show, and what a
//! PostgreSQL cancel request is checked against: a session registers once it is admitted
//! and leaves when its [`Session`] guard drops, however it ends.
//!
//! **The watch** ([`Recheck`]) has the shape of linkerd2-proxy's per-connection policy
//! re-check: a connection holds a receiver of policy updates and re-evaluates on every one.
//! Here a session subscribes to snapshot swaps *before* it is first decided — so a block
//! published while the upstream is still answering is seen, however long that takes — and
//! [`Recheck::blocked`] resolves once a swap makes its verdict anything but allow. A session
//! waits on it beside its own traffic and ends when it resolves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::answer::{Asking, Moment, Verdict, answer_session};
use crate::runtime::Warden;

/// One open session, as `GET /v1/gates` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub user: String,
    pub database: String,
    pub application: Option<String>,
    pub client: String,
    pub since: String,
    /// The server's own id of the session: PostgreSQL's backend pid, MySQL's connection id.
    pub backend_pid: Option<u32>,
}

struct Entry {
    info: SessionInfo,
    /// A secret the server gave the session (PostgreSQL's cancel key).
    key: Option<Vec<u8>>,
}

type Open = HashMap<String, HashMap<u64, Entry>>;

/// The open sessions of every front end, by front-end name; shared by the front ends and the
/// HTTP gateway that shows them.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Registry>);

#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<Open>,
}

impl Sessions {
    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.0.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open sessions of front end `name`, oldest first.
    pub fn open_sessions(&self, name: &str) -> Vec<SessionInfo> {
        let open = self.open();
        let mut out: Vec<(u64, SessionInfo)> = open
            .get(name)
            .map(|m| m.iter().map(|(id, e)| (*id, e.info.clone())).collect())
            .unwrap_or_default();
        out.sort_by_key(|(id, _)| *id);
        out.into_iter().map(|(_, s)| s).collect()
    }

    /// Registers an admitted session of front end `front`, with the secret its server gave it.
    pub fn register(&self, front: &str, info: SessionInfo, key: Option<Vec<u8>>) -> Session {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        self.open()
            .entry(front.to_owned())
            .or_default()
            .insert(id, Entry { info, key });
        Session {
            sessions: self.clone(),
            front: front.to_owned(),
            id,
        }
    }

    /// Whether front end `front` has a session with the server's id `server_id` and this
    /// secret (compared in constant time).
    pub fn knows_key(&self, front: &str, server_id: u32, key: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let open = self.open();
        open.get(front).is_some_and(|m| {
            m.values().any(|e| {
                e.info.backend_pid == Some(server_id)
                    && e.key
                        .as_deref()
                        .is_some_and(|s| s.len() == key.len() && bool::from(s.ct_eq(key)))
            })
        })
    }
}

/// An open session's place in the registry, left when dropped.
pub struct Session {
    sessions: Sessions,
    front: String,
    id: u64,
}

impl Session {
    /// The server's id of the session and the secret it gave it, when it gave both.
    pub fn key(&self) -> Option<(u32, Vec<u8>)> {
        let open = self.sessions.open();
        let e = open.get(&self.front)?.get(&self.id)?;
        Some((e.info.backend_pid?, e.key.clone()?))
    }

    /// The server's id of the session.
    pub fn server_id(&self) -> Option<u32> {
        let open = self.sessions.open();
        open.get(&self.front)?.get(&self.id)?.info.backend_pid
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(m) = self.sessions.open().get_mut(&self.front) {
            m.remove(&self.id);
        }
    }
}

/// A session's view of snapshot swaps since it subscribed.
pub struct Recheck {
    snapshots: watch::Receiver<u64>,
}

impl Recheck {
    /// Subscribes now: take it before the session is first decided.
    pub fn subscribe(warden: &Warden) -> Recheck {
        Recheck {
            snapshots: warden.subscribe_snapshots(),
        }
    }

    /// Resolves with the verdict of the first swap (since the subscription or the last call)
    /// that does not allow `asking`; `None` when no more swaps can come (warden is gone).
    /// Cancel-safe: its only await is the swap itself.
    pub async fn blocked(&mut self, warden: &Warden, asking: &Asking) -> Option<Verdict> {
        loop {
            self.snapshots.changed().await.ok()?;
            let snapshot = warden.engine().snapshot();
            match answer_session(warden, &snapshot, asking, Moment::Recheck) {
                Verdict::Allow => {}
                ended => return Some(ended),
            }
        }
    }
}
