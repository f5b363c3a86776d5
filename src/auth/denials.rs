//! Refused requests — failed authentication (`auth.failed`) and keys lacking a scope
//! (`auth.forbidden`) — audited in aggregate, off the request path.
//!
//! Anyone who can reach the listener can send a bogus `Authorization` header, so a refusal
//! must cost the gateway almost nothing: [`Denials::record`] adds one to an in-memory count
//! ([`crate::base::tally`], the bounded tally the gates' refusals use too) keyed by (source IP,
//! action, actor, reason, route) and returns. A background service
//! ([`crate::services::audit`]) calls [`Denials::flush`] once a minute (and on shutdown), which
//! turns each key into ONE audit record carrying the count, in one transaction. The map holds
//! at most [`DENIALS_MAX`] keys; refusals beyond that fold into one `other` bucket per action
//! and reason (source unknown), so memory is bounded whatever a caller varies, and the
//! overflow is counted.

use std::net::IpAddr;
use std::sync::Mutex;

use crate::base::actor::Actor;
use crate::base::tally::{Count, Tally};
use crate::base::time::now_ms;
use crate::store::{AuditRecord, Store, StoreError};

/// Most distinct (source, action, actor, reason, route) keys held between two flushes.
pub const DENIALS_MAX: usize = 10_000;

/// Why a request was refused: the authentication failure, or `forbidden` (a valid key that
/// lacks the route's scope), or why a single sign-on to the console was refused
/// ([`super::oidc`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    Missing,
    Malformed,
    Invalid,
    Expired,
    Revoked,
    /// A console session's key was rotated (it still authenticates clients for its overlap).
    Rotated,
    Forbidden,
    /// SSO: an unknown, expired, replayed or other browser's `state`.
    SsoState,
    /// SSO: the provider answered an error (the person cancelled, the provider refused).
    SsoProvider,
    /// SSO: the code exchange or the ID token failed its checks.
    SsoToken,
    /// SSO: a verified person in no mapped group.
    SsoGroup,
    /// SSO: a verified person who signed in without the multi-factor authentication required.
    SsoMfa,
}

impl Refusal {
    pub const ALL: [Refusal; 12] = [
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::Invalid,
        Refusal::Expired,
        Refusal::Revoked,
        Refusal::Rotated,
        Refusal::Forbidden,
        Refusal::SsoState,
        Refusal::SsoProvider,
        Refusal::SsoToken,
        Refusal::SsoGroup,
        Refusal::SsoMfa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Invalid => "invalid",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::Rotated => "rotated",
            Refusal::Forbidden => "forbidden",
            Refusal::SsoState => "sso_state",
            Refusal::SsoProvider => "sso_provider",
            Refusal::SsoToken => "sso_token",
            Refusal::SsoGroup => "sso_group",
            Refusal::SsoMfa => "sso_mfa",
        }
    }

    /// The audit action: `auth.forbidden` for a key lacking a scope or a signed-in person in
    /// no mapped group, else `auth.failed`.
    pub fn action(self) -> &'static str {
        match self {
            Refusal::Forbidden | Refusal::SsoGroup => "auth.forbidden",
            _ => "auth.failed",
        }
    }

    pub fn slot(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// `None` for the overflow bucket.
    source: Option<IpAddr>,
    /// `anonymous` for failed authentication; the key's actor for `forbidden`.
    actor: String,
    refusal: Refusal,
    route: &'static str,
    /// The scope the route needs, for `forbidden`.
    needs: Option<&'static str>,
}

impl Key {
    /// The bucket a refusal goes to once the tally is full: one per refusal reason, source
    /// unknown.
    fn overflow(self) -> Key {
        Key {
            source: None,
            actor: "other".to_owned(),
            refusal: self.refusal,
            route: "other",
            needs: None,
        }
    }
}

/// The refusals not yet audited.
pub struct Denials {
    pending: Mutex<Tally<Key>>,
}

impl Default for Denials {
    fn default() -> Denials {
        Denials {
            pending: Mutex::new(Tally::new(DENIALS_MAX)),
        }
    }
}

/// What one flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Audit records written.
    pub records: usize,
    /// Refusals they account for.
    pub refusals: u64,
}

impl Denials {
    /// Counts one refusal. Never blocks on I/O; returns whether it went to the overflow
    /// bucket (the map was full).
    pub fn record(
        &self,
        source: IpAddr,
        actor: &str,
        refusal: Refusal,
        route: &'static str,
        needs: Option<&'static str>,
    ) -> bool {
        let key = Key {
            source: Some(source),
            actor: actor.to_owned(),
            refusal,
            route,
            needs,
        };
        self.lock().record(key, now_ms(), (), Key::overflow)
    }

    /// How many refusals wait to be audited.
    pub fn pending(&self) -> u64 {
        self.lock().pending()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally<Key>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes every pending tally as one audit record (outcome `denied`, detail with `reason`,
    /// `count`, `first_ms`, `last_ms` and `route`), all in one transaction. Blocking I/O. If the
    /// store fails, the tallies are put back (merged with any counted meanwhile) for the next
    /// flush.
    pub fn flush(&self, store: &Store) -> Result<Flushed, StoreError> {
        let taken = self.lock().take();
        if taken.counts.is_empty() {
            return Ok(Flushed::default());
        }
        let mut records: Vec<AuditRecord> = taken.counts.iter().map(record).collect();
        records.sort_by_key(|r| r.at_ms);
        let flushed = Flushed {
            records: records.len(),
            refusals: taken.events(),
        };
        match store.audited(|_| Ok::<_, StoreError>(()), |()| records) {
            Ok(()) => Ok(flushed),
            Err(e) => {
                self.lock().restore(taken);
                Err(e)
            }
        }
    }
}

/// The audit record of one key's refusals.
fn record((k, t): &(Key, Count<()>)) -> AuditRecord {
    let actor = Actor::new(k.actor.clone(), k.source.map(|ip| ip.to_string()));
    let mut detail = serde_json::json!({
        "reason": k.refusal.as_str(),
        "count": t.count,
        "first_ms": t.first_ms,
        "last_ms": t.last_ms,
        "route": k.route,
    });
    if let Some(needs) = k.needs {
        detail["needs"] = needs.into();
    }
    if k.source.is_none() {
        detail["overflow"] = true.into();
    }
    let mut r =
        AuditRecord::new(&actor, k.refusal.action(), k.route, detail).with_outcome("denied");
    r.at_ms = t.first_ms;
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::AuditFilter;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn many_refusals_from_one_source_flush_into_one_record_with_their_count() {
        let store = Store::in_memory().unwrap();
        let d = Denials::default();
        for _ in 0..200 {
            d.record(LOOPBACK, "anonymous", Refusal::Invalid, "/v1/lists", None);
        }
        d.record(LOOPBACK, "anonymous", Refusal::Missing, "/v1/lists", None);
        let flushed = d.flush(&store).unwrap();
        assert_eq!(
            flushed,
            Flushed {
                records: 2,
                refusals: 201
            }
        );
        let records = store.audit(&AuditFilter::default()).unwrap();
        assert_eq!(records.len(), 2);
        let invalid = records
            .iter()
            .find(|r| r.detail["reason"] == "invalid")
            .unwrap();
        assert_eq!(invalid.detail["count"], 200);
        assert_eq!(invalid.action, "auth.failed");
        assert_eq!(invalid.outcome, "denied");
        assert_eq!(invalid.source.as_deref(), Some("127.0.0.1"));
        // Nothing left: a second flush writes nothing.
        assert_eq!(d.flush(&store).unwrap(), Flushed::default());
        assert_eq!(store.audit(&AuditFilter::default()).unwrap().len(), 2);
    }

    #[test]
    fn distinct_sources_beyond_the_cap_fold_into_one_overflow_bucket() {
        let store = Store::in_memory().unwrap();
        let d = Denials::default();
        let extra = 500u32;
        for i in 0..(DENIALS_MAX as u32 + extra) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            d.record(ip, "anonymous", Refusal::Invalid, "/v1/lists", None);
        }
        assert_eq!(d.lock().len(), DENIALS_MAX + 1);
        assert_eq!(d.lock().overflowed(), u64::from(extra));
        let flushed = d.flush(&store).unwrap();
        assert_eq!(flushed.refusals, u64::from(DENIALS_MAX as u32 + extra));
        // DENIALS_MAX + 1 records is one more than a read returns (oldest first), and the
        // overflow bucket is among the newest: read it by its actor.
        let filter = AuditFilter {
            actor: Some("other".into()),
            ..AuditFilter::default()
        };
        let records = store.audit(&filter).unwrap();
        assert_eq!(records.len(), 1);
        let other = &records[0];
        assert!(other.source.is_none());
        assert_eq!(other.detail["count"], extra);
        assert_eq!(other.detail["overflow"], true);
    }

    #[test]
    fn forbidden_is_audited_per_key_with_the_scope_it_lacked() {
        let store = Store::in_memory().unwrap();
        let d = Denials::default();
        for _ in 0..3 {
            d.record(
                LOOPBACK,
                "key:abc (reader)",
                Refusal::Forbidden,
                "/v1/keys",
                Some("admin"),
            );
        }
        d.flush(&store).unwrap();
        let records = store.audit(&AuditFilter::default()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].action, "auth.forbidden");
        assert_eq!(records[0].actor, "key:abc (reader)");
        assert_eq!(records[0].detail["needs"], "admin");
        assert_eq!(records[0].detail["count"], 3);
    }
}
