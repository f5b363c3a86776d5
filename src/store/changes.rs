//! The change log as the replicas read it: the newest revision (what a replica is behind
//! of), and the health of the store as the last statements found it. Rows are written by the
//! connection itself ([`super::db`]), one per committed change a snapshot reads.

use std::sync::atomic::{AtomicBool, Ordering};

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

    /// Raises [`Store::revision`] to one announced by a notification (it is committed).
    pub fn saw_revision(&self, revision: i64) {
        self.revision.fetch_max(revision, Ordering::SeqCst);
    }

    /// How the store's last statements went.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Whether this replica runs the jobs that must run once (push, pull and watch, expiry,
    /// MX push, agentless reconcile): always on SQLite; on PostgreSQL while it holds the
    /// leader lock.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Changes whenever leadership is won or lost.
    pub fn subscribe_leader(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Records that this replica won (`true`) or lost the leader lock.
    pub fn set_leader(&self, leader: bool) {
        self.leader
            .send_if_modified(|l| std::mem::replace(l, leader) != leader);
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
