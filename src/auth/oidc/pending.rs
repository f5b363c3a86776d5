//! Sign-ins started and not yet back from the provider: each one's `state` (the key), `nonce`
//! and PKCE verifier, taken once by the callback. The table is bounded: entries expire after
//! the login timeout, and when [`MAX_PENDING`] are waiting the oldest is dropped, so however
//! many `/console/sso/start` requests an unauthenticated caller sends, memory stays bounded
//! (and a person's sign-in survives unless more than that many start within their login).

use std::sync::Mutex;

use hashlink::LinkedHashMap;

/// Most sign-ins waiting for the provider at once.
pub const MAX_PENDING: usize = 10_000;

/// One sign-in in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub nonce: String,
    pub verifier: String,
    /// Unix milliseconds.
    pub started_ms: i64,
}

/// The sign-ins in progress, oldest first.
pub struct PendingLogins {
    entries: Mutex<LinkedHashMap<String, Pending>>,
    ttl_ms: i64,
    capacity: usize,
}

impl PendingLogins {
    pub fn new(ttl_ms: i64, capacity: usize) -> PendingLogins {
        PendingLogins {
            entries: Mutex::new(LinkedHashMap::new()),
            ttl_ms,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkedHashMap<String, Pending>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a sign-in under `state`, dropping expired ones and, when full, the oldest.
    /// Returns whether one still waiting was dropped to make room.
    pub fn insert(&self, state: String, pending: Pending, now_ms: i64) -> bool {
        let mut entries = self.lock();
        self.expire(&mut entries, now_ms);
        let evicted = entries.len() >= self.capacity && entries.pop_front().is_some();
        entries.insert(state, pending);
        evicted
    }

    /// Takes the sign-in of `state`, once: `None` when unknown, already taken or expired.
    pub fn take(&self, state: &str, now_ms: i64) -> Option<Pending> {
        let mut entries = self.lock();
        self.expire(&mut entries, now_ms);
        entries.remove(state)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries; they are in insertion order, so from the front.
    fn expire(&self, entries: &mut LinkedHashMap<String, Pending>, now_ms: i64) {
        while entries
            .front()
            .is_some_and(|(_, p)| now_ms.saturating_sub(p.started_ms) >= self.ttl_ms)
        {
            entries.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(at: i64) -> Pending {
        Pending {
            nonce: "n".into(),
            verifier: "v".into(),
            started_ms: at,
        }
    }

    #[test]
    fn a_state_is_taken_once() {
        let p = PendingLogins::new(1000, 10);
        p.insert("s".into(), pending(0), 0);
        assert_eq!(p.take("s", 10), Some(pending(0)));
        assert_eq!(p.take("s", 10), None);
        assert_eq!(p.take("never-issued", 10), None);
    }

    #[test]
    fn an_expired_state_is_refused_and_forgotten() {
        let p = PendingLogins::new(1000, 10);
        p.insert("old".into(), pending(0), 0);
        p.insert("new".into(), pending(900), 900);
        assert_eq!(p.take("old", 1000), None);
        assert_eq!(p.len(), 1);
        assert!(p.take("new", 1000).is_some());
    }

    #[test]
    fn the_table_never_grows_past_its_capacity_and_drops_the_oldest() {
        let p = PendingLogins::new(i64::MAX, 100);
        let mut evicted = 0;
        for i in 0..1000 {
            if p.insert(format!("s{i}"), pending(i), i) {
                evicted += 1;
            }
        }
        assert_eq!(p.len(), 100);
        assert_eq!(evicted, 900);
        assert!(p.take("s0", 1000).is_none());
        assert!(p.take("s999", 1000).is_some());
    }
}
