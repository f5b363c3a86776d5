//! The change log as the replicas read it: the newest revision (what a replica is behind
//! of), the health of the store as the last statements found it, and leadership. Rows are
//! written by the connection itself ([`super::db`]), one per committed change a snapshot
//! reads.
//!
//! Leadership on PostgreSQL is a lease ([`super::postgres::Lease`]) won in *terms*: each win
//! takes the next fencing token. A leader-only job runs [`as_leader`] of the term it was
//! started in, and every write transaction it commits checks, in that transaction, that the
//! term still holds the lease ([`super::db`]): a leader that wakes after losing it (stopped,
//! partitioned, a long pause) has its writes refused and rolled back, whatever it believes.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::db::{DbError, params};
use super::{Store, StoreError};

/// Whether the store answered: `down` from a statement that found the server unreachable
/// until something (a reconnect, a statement) finds it up again.
#[derive(Debug, Default)]
pub struct Health {
    down: AtomicBool,
}

impl Health {
    pub(crate) fn observe(&self, error: &DbError) {
        if error.is_unavailable() {
            self.down.store(true, Ordering::SeqCst);
        }
    }

    pub fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::SeqCst)
    }
}

/// A term of leadership: the fencing token the lease was won with, and when this replica
/// stops believing it holds the lease — the lease's length after the last renewal was *sent*,
/// which comes no later than the server's own expiry (set when the renewal arrived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    token: i64,
    deadline: Instant,
}

impl Term {
    pub(crate) fn new(token: i64, deadline: Instant) -> Term {
        Term { token, deadline }
    }

    /// The fencing token: larger for every later term.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// Whether the lease may have expired by now (no renewal confirmed it in time).
    pub fn lapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

tokio::task_local! {
    /// The fencing token of the term the current leader-only job runs in.
    static FENCE: i64;
}

/// Runs `job` as a leader-only job of `term`: each write transaction it commits is refused
/// (rolled back, [`DbError::Fenced`]) unless `term` still holds the lease when it commits.
pub async fn as_leader<F: Future>(term: Term, job: F) -> F::Output {
    FENCE.scope(term.token, job).await
}

/// Like [`as_leader`], for blocking work a leader-only job hands to another thread
/// (`spawn_blocking` does not carry the task's fence): `token` from [`fencing_token`].
pub fn as_leader_blocking<T>(token: Option<i64>, work: impl FnOnce() -> T) -> T {
    match token {
        Some(token) => FENCE.sync_scope(token, work),
        None => work(),
    }
}

/// The fencing token of the leader-only job running here, if this is one.
pub fn fencing_token() -> Option<i64> {
    FENCE.try_with(|t| *t).ok()
}

impl Store {
    /// The newest revision in the change log (0 for none), read from the database; raises
    /// [`Store::revision`] to it.
    pub fn newest_revision(&self) -> Result<i64, StoreError> {
        let newest: i64 = self
            .conn()
            .query_row(
                "SELECT COALESCE(MAX(revision), 0) FROM changes",
                params![],
                |r| r.get(0),
            )
            .map_err(self.sql("read the newest revision"))?;
        self.health.up();
        self.revision
            .fetch_max(newest, std::sync::atomic::Ordering::SeqCst);
        Ok(newest)
    }

    /// Reads the newest revision at open.
    pub(crate) fn note_revision(&self) -> Result<(), StoreError> {
        self.newest_revision().map(|_| ())
    }

    /// How the store's last statements went.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Whether this replica runs the jobs that must run once (push, pull and watch, expiry,
    /// MX push, agentless reconcile): always on SQLite; on PostgreSQL while it holds the
    /// leader lease (a term that has not lapsed).
    pub fn is_leader(&self) -> bool {
        self.postgres.is_none() || self.term().is_some()
    }

    /// The term this replica leads in, unless it lapsed (none on SQLite: nothing to fence).
    pub fn term(&self) -> Option<Term> {
        self.leader.borrow().filter(|t| !t.lapsed())
    }

    /// Whether the leader-only job of fencing token `token` may still act: its term is the
    /// one this replica holds and has not lapsed. A local check, to skip work that would
    /// act outside the store; the store's own writes are fenced by the server.
    pub fn holds(&self, token: i64) -> bool {
        self.term().is_some_and(|t| t.token == token)
    }

    /// Changes whenever a term is won or lost (not when one is renewed).
    pub fn subscribe_leader(&self) -> tokio::sync::watch::Receiver<Option<Term>> {
        self.leader.subscribe()
    }

    /// Records the term this replica won or renewed (`None`: it leads no more); returns the
    /// one recorded before, lapsed or not.
    pub fn set_term(&self, term: Option<Term>) -> Option<Term> {
        let mut before = None;
        self.leader.send_if_modified(|held| {
            before = std::mem::replace(held, term);
            before.map(|t| t.token) != term.map(|t| t.token)
        });
        before
    }

    /// Whether the store is PostgreSQL (shared by replicas) rather than a SQLite file.
    pub fn is_shared(&self) -> bool {
        self.postgres.is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{AuditRecord, NewMember};

    fn member(p: &str) -> NewMember {
        NewMember::test(p)
    }

    /// A term is announced when won or lost, not when renewed; one whose deadline passed is
    /// no longer held, and a job's token is held only in its own term.
    #[test]
    fn terms_are_announced_when_won_or_lost_and_lapse_by_their_deadline() {
        let s = Store::in_memory().unwrap();
        let mut changes = s.subscribe_leader();
        let later = Instant::now() + std::time::Duration::from_secs(60);
        s.set_term(Some(Term::new(7, later)));
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert!(s.holds(7) && !s.holds(6));
        let renewed = later + std::time::Duration::from_secs(5);
        s.set_term(Some(Term::new(7, renewed)));
        assert!(!changes.has_changed().unwrap(), "a renewal is no new term");
        assert_eq!(s.term(), Some(Term::new(7, renewed)));
        s.set_term(Some(Term::new(8, later)));
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert!(!s.holds(7));
        s.set_term(Some(Term::new(9, Instant::now())));
        assert_eq!(s.term(), None, "lapsed");
        assert!(!s.holds(9));
        s.set_term(None);
        assert!(changes.has_changed().unwrap());
    }

    /// One revision per committed change a snapshot reads: none for a write that changed no
    /// row, for the audit log alone, or for a change rolled back.
    #[test]
    fn revisions_count_committed_changes_that_snapshots_read() {
        let s = Store::in_memory().unwrap();
        assert_eq!(s.revision(), 0);
        assert!(s.ensure_list("L", "").unwrap());
        assert_eq!((s.revision(), s.newest_revision().unwrap()), (1, 1));
        assert!(!s.ensure_list("L", "").unwrap());
        let audit = AuditRecord::new(
            &crate::base::actor::Actor::cli(),
            "t",
            "x",
            serde_json::json!({}),
        );
        s.append_audit(&audit).unwrap();
        assert_eq!(s.newest_revision().unwrap(), 1);
        s.audited(
            |st| {
                st.add_member("L", &member("corp\\a"))?;
                st.add_member("L", &member("corp\\b"))
            },
            |_| audit.clone(),
        )
        .unwrap();
        assert_eq!(s.newest_revision().unwrap(), 2, "one change, one revision");
        let failed: Result<(), StoreError> = s.audited(
            |st| {
                st.add_member("L", &member("corp\\c"))?;
                Err(StoreError::NoSuchList("nope".into()))
            },
            |_| audit.clone(),
        );
        assert!(failed.is_err());
        assert_eq!((s.revision(), s.newest_revision().unwrap()), (2, 2));
        assert_eq!(s.members("L").unwrap().len(), 2);
    }
}
