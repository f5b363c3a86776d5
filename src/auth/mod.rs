//! API keys: making them, checking them, and the scopes they grant.
//!
//! A key reads `wdn_<id>_<secret>`: a 12-hex-digit id that finds the record, and 32 random
//! bytes (base64url) that prove possession. Only the SHA-256 of the secret is stored — the
//! secret is random and long, so a fast hash is enough and a slow one would only cost the hot
//! path. Finding the id and comparing the secret are constant-time, and an unknown id is
//! compared against a dummy hash, so unknown and wrong keys take the same time. [`KeyRing`]
//! holds the records in memory, swapped whole when keys change, so checking a key takes no lock
//! and no store read. Refused requests are counted and audited in aggregate ([`denials`]).

pub mod denials;
pub mod oidc;

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::store::{Store, StoreError, StoredKey};

/// What a key may do. `admin` includes the other two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Ask for decisions.
    Decide,
    /// Manage lists, members, incidents and alerts.
    Respond,
    /// Everything: keys, audit, reload, devices and data sets.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Decide, Scope::Respond, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Decide => "decide",
            Scope::Respond => "respond",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was not authenticated. The message never contains the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no API key: send Authorization: Bearer <key>")]
    Missing,
    #[error("the Authorization header is not `Bearer wdn_<id>_<secret>`")]
    Malformed,
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key has expired")]
    Expired,
    #[error("the API key has been revoked")]
    Revoked,
    /// Only for a console session ([`KeyRing::recheck`]): the key still authenticates a
    /// client until its overlap ends.
    #[error("the API key has been rotated; sign in with its replacement")]
    Rotated,
}

/// Errors managing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no API key with id {0:?}")]
    NoSuchKey(String),
    #[error("unknown scope {0:?}; scopes are decide, respond, admin")]
    UnknownScope(String),
    #[error("a key needs at least one scope")]
    NoScope,
    #[error("a key needs a name")]
    NoName,
    #[error("the system random number generator failed")]
    Random,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: String,
    pub name: String,
    scopes: Vec<Scope>,
}

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// How the caller appears in the audit log.
    pub fn actor(&self) -> String {
        format!("key:{} ({})", self.key_id, self.name)
    }
}

/// A key just made: the only time the full key exists.
pub struct NewKey {
    pub record: StoredKey,
    pub key: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("record", &self.record)
            .field("key", &"***")
            .finish()
    }
}

const PREFIX: &str = "wdn_";
const ID_LEN: usize = 12;

fn hash(secret: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, secret).as_ref());
    out
}

fn base64url(bytes: &[u8]) -> String {
    encode64(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        false,
    )
}

/// Standard base64 with padding (RFC 4648 §4), as HTTP Basic authentication wants it.
pub fn base64_standard(bytes: &[u8]) -> String {
    encode64(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    )
}

fn encode64(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[(n >> (18 - 6 * i)) as usize & 63]));
        }
        if pad {
            out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
        }
    }
    out
}

/// Splits `wdn_<id>_<secret>` into id and secret; `None` if it is not shaped like a key.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_at_checked(ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let ok = id.bytes().all(|b| b.is_ascii_hexdigit())
        && !secret.is_empty()
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some((id, secret))
}

/// Parses scope names, rejecting unknown ones.
pub fn parse_scopes<S: AsRef<str>>(names: &[S]) -> Result<Vec<Scope>, KeyError> {
    let mut scopes = names
        .iter()
        .map(|s| Scope::parse(s.as_ref()).ok_or_else(|| KeyError::UnknownScope(s.as_ref().into())))
        .collect::<Result<Vec<_>, _>>()?;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(KeyError::NoScope);
    }
    Ok(scopes)
}

struct Entry {
    name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
    expires_at: Option<i64>,
    /// Seen expired by the sweep ([`Store::mark_expired_keys`]): stays expired whatever the
    /// wall clock says later.
    expired: bool,
    revoked: bool,
    /// Replaced by a new key ([`rotate_key`]).
    rotated: bool,
}

/// A key id as the table compares it.
type Id = [u8; ID_LEN];

/// An id no key has and no presented key can spell: ids are hex digits.
const NO_ID: Id = [0xff; ID_LEN];

/// The key records, found by id with the same work whether the id exists or not.
///
/// A `HashMap` answers a miss sooner than a hit (an empty slot ends the probe; a hit also
/// compares the id), which is what told an unknown id from a wrong secret in
/// `benches/auth.rs`. Here an id hashes (SipHash, keys random per table) to a bucket of
/// `width` slots; a lookup compares the presented id with every slot of its bucket in constant
/// time and selects the matching entry without a branch, the dummy (entry 0) when none
/// matches. `width` is the fullest bucket's occupancy, the same for every lookup in a table.
struct KeyTable {
    /// `buckets × width` slots: an id and its entry's index in `entries`; ([`NO_ID`], 0, the
    /// dummy) where empty.
    slots: Vec<(Id, u32)>,
    /// `entries[0]` is the dummy: a hash no secret has, compared when the id is unknown.
    entries: Vec<Entry>,
    width: usize,
    mask: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl KeyTable {
    fn new(keys: Vec<(Id, Entry)>) -> KeyTable {
        let dummy = Entry {
            name: String::new(),
            hash: hash(b"warden: compared when the key id is unknown"),
            scopes: Vec::new(),
            expires_at: None,
            expired: false,
            revoked: true,
            rotated: false,
        };
        let buckets = keys.len().saturating_mul(2).max(1).next_power_of_two();
        let hasher = std::collections::hash_map::RandomState::new();
        let mask = buckets - 1;
        let mut bucketed: Vec<Vec<(Id, u32)>> = vec![Vec::new(); buckets];
        let mut entries = vec![dummy];
        for (id, entry) in keys {
            let Ok(index) = u32::try_from(entries.len()) else {
                break;
            };
            bucketed[bucket_of(&hasher, &id, mask)].push((id, index));
            entries.push(entry);
        }
        let width = bucketed.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut slots = vec![(NO_ID, 0); buckets * width];
        for (b, bucket) in bucketed.iter().enumerate() {
            slots[b * width..][..bucket.len()].copy_from_slice(bucket);
        }
        KeyTable {
            slots,
            entries,
            width,
            mask,
            hasher,
        }
    }

    /// The entry of `id` and whether there is one (else the dummy), in constant time.
    fn find(&self, id: &Id) -> (&Entry, subtle::Choice) {
        let first = bucket_of(&self.hasher, id, self.mask) * self.width;
        let mut found = 0u32;
        for (slot_id, index) in self.slots.iter().skip(first).take(self.width) {
            found.conditional_assign(index, slot_id.ct_eq(id));
        }
        let entry = self.entries.get(found as usize).unwrap_or(&self.entries[0]);
        (entry, !found.ct_eq(&0))
    }

    fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }
}

fn bucket_of(hasher: &impl std::hash::BuildHasher, id: &Id, mask: usize) -> usize {
    // Truncating the hash to usize keeps its low bits, the ones the mask reads.
    hasher.hash_one(id) as usize & mask
}

/// The key records in memory, checked without a lock.
pub struct KeyRing {
    table: ArcSwap<KeyTable>,
}

impl KeyRing {
    /// Loads every key record from the store.
    pub fn load(store: &Store) -> Result<KeyRing, StoreError> {
        let ring = KeyRing {
            table: ArcSwap::from_pointee(KeyTable::new(Vec::new())),
        };
        ring.reload(store)?;
        Ok(ring)
    }

    /// Re-reads the records (after a change by this or another process).
    pub fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let keys = store
            .keys()?
            .into_iter()
            .filter_map(|k| {
                let id: Id = k.id.as_bytes().try_into().ok()?;
                let hash: [u8; 32] = k.hash.as_slice().try_into().ok()?;
                let scopes = parse_scopes(&k.scopes).ok()?;
                Some((
                    id,
                    Entry {
                        name: k.name,
                        hash,
                        scopes,
                        expires_at: k.expires_at,
                        expired: k.expired_at.is_some(),
                        revoked: k.revoked_at.is_some(),
                        rotated: k.rotated_at.is_some(),
                    },
                ))
            })
            .collect();
        self.table.store(Arc::new(KeyTable::new(keys)));
        Ok(())
    }

    /// True when no key exists at all (revoked ones count as existing).
    pub fn is_empty(&self) -> bool {
        self.table.load().is_empty()
    }

    /// Checks an `Authorization` header value at time `now` (Unix seconds).
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        now: i64,
    ) -> Result<Caller, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed)?
            .trim();
        let (id, secret) = split_key(token).ok_or(AuthError::Malformed)?;
        let id_bytes: Id = id.as_bytes().try_into().map_err(|_| AuthError::Malformed)?;
        let presented = hash(secret.as_bytes());
        let table = self.table.load();
        let (entry, known) = table.find(&id_bytes);
        if !bool::from(presented.ct_eq(&entry.hash) & known) {
            return Err(AuthError::Invalid);
        }
        entry.caller(id, now)
    }

    /// The key a console session was opened with, as the ring holds it now: refused once it
    /// is revoked, expired or rotated (a rotation's overlap is for clients switching keys,
    /// not for a session), else the caller with its name and scopes as they are now. Asked on
    /// every console request, so a change that reaches this ring — made here, or on another
    /// replica and read from the change log — ends the session at its next request.
    pub fn recheck(&self, key_id: &str, now: i64) -> Result<Caller, AuthError> {
        let id: Id = key_id
            .as_bytes()
            .try_into()
            .map_err(|_| AuthError::Malformed)?;
        let table = self.table.load();
        let (entry, known) = table.find(&id);
        if !bool::from(known) {
            return Err(AuthError::Invalid);
        }
        let caller = entry.caller(key_id, now)?;
        if entry.rotated {
            return Err(AuthError::Rotated);
        }
        Ok(caller)
    }
}

impl Entry {
    /// The caller this entry authenticates at `now`, unless it is revoked or expired.
    fn caller(&self, id: &str, now: i64) -> Result<Caller, AuthError> {
        if self.revoked {
            return Err(AuthError::Revoked);
        }
        if self.expired || self.expires_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Expired);
        }
        Ok(Caller {
            key_id: id.to_owned(),
            name: self.name.clone(),
            scopes: self.scopes.clone(),
        })
    }
}

/// Makes a key, stores its record (hash only) and returns the key once.
pub fn create_key(
    store: &Store,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<i64>,
    created_by: &str,
    now: i64,
) -> Result<NewKey, KeyError> {
    if name.trim().is_empty() {
        return Err(KeyError::NoName);
    }
    if scopes.is_empty() {
        return Err(KeyError::NoScope);
    }
    let rng = SystemRandom::new();
    let mut id_bytes = [0u8; ID_LEN / 2];
    let mut secret = [0u8; 32];
    rng.fill(&mut id_bytes).map_err(|_| KeyError::Random)?;
    rng.fill(&mut secret).map_err(|_| KeyError::Random)?;
    let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret = base64url(&secret);
    let record = StoredKey {
        id: id.clone(),
        name: name.trim().to_owned(),
        hash: hash(secret.as_bytes()).to_vec(),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at: now,
        created_by: created_by.to_owned(),
        expires_at,
        revoked_at: None,
        expired_at: None,
        rotated_at: None,
    };
    store.insert_key(&record)?;
    Ok(NewKey {
        record,
        key: format!("{PREFIX}{id}_{secret}"),
    })
}

/// Replaces key `id` with a new one of the same name and scopes; the old key keeps working
/// for `overlap_secs` more (so clients can switch), then expires.
pub fn rotate_key(
    store: &Store,
    id: &str,
    overlap_secs: i64,
    created_by: &str,
    now: i64,
) -> Result<NewKey, KeyError> {
    let old = store
        .key(id)?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| KeyError::NoSuchKey(id.to_owned()))?;
    let scopes = parse_scopes(&old.scopes)?;
    let new = create_key(store, &old.name, &scopes, old.expires_at, created_by, now)?;
    store.rotate_key_out(id, now, now.saturating_add(overlap_secs.max(0)))?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bearer(key: &str) -> Vec<u8> {
        format!("Bearer {key}").into_bytes()
    }

    #[test]
    fn keys_are_checked_by_hash_and_scoped() {
        let store = Store::in_memory().unwrap();
        let k = create_key(&store, "proxy", &[Scope::Decide], None, "test", 100).unwrap();
        assert!(k.key.starts_with("wdn_"));
        assert!(!format!("{k:?}").contains(&k.key));
        let stored = store.keys().unwrap();
        assert_eq!(stored.len(), 1);
        assert_ne!(stored[0].hash, k.key.as_bytes());
        let ring = KeyRing::load(&store).unwrap();
        let caller = ring.authenticate(Some(&bearer(&k.key)), 200).unwrap();
        assert!(caller.has(Scope::Decide));
        assert!(!caller.has(Scope::Respond) && !caller.has(Scope::Admin));
        assert_eq!(ring.authenticate(None, 200), Err(AuthError::Missing));
        assert_eq!(
            ring.authenticate(Some(b"Basic abc"), 200),
            Err(AuthError::Malformed)
        );
        let mut wrong = k.key.clone();
        wrong.pop();
        wrong.push('x');
        assert_eq!(
            ring.authenticate(Some(&bearer(&wrong)), 200),
            Err(AuthError::Invalid)
        );
        let unknown = format!("wdn_000000000000_{}", &k.key[17..]);
        assert_eq!(
            ring.authenticate(Some(&bearer(&unknown)), 200),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn admin_includes_everything_and_revocation_and_expiry_hold() {
        let store = Store::in_memory().unwrap();
        let admin = create_key(&store, "ops", &[Scope::Admin], Some(500), "test", 100).unwrap();
        let ring = KeyRing::load(&store).unwrap();
        let caller = ring.authenticate(Some(&bearer(&admin.key)), 200).unwrap();
        assert!(Scope::ALL.iter().all(|s| caller.has(*s)));
        assert_eq!(
            ring.authenticate(Some(&bearer(&admin.key)), 500),
            Err(AuthError::Expired)
        );
        assert!(store.revoke_key(&admin.record.id, 300).unwrap());
        ring.reload(&store).unwrap();
        assert_eq!(
            ring.authenticate(Some(&bearer(&admin.key)), 200),
            Err(AuthError::Revoked)
        );
    }

    /// A key the sweep saw expired stays expired when the wall clock then moves back before
    /// its expiry; one never seen expired follows the clock (the sweep runs every second).
    #[test]
    fn a_key_seen_expired_does_not_revive_when_the_clock_moves_back() {
        let store = Store::in_memory().unwrap();
        let k = create_key(&store, "ops", &[Scope::Admin], Some(500), "test", 100).unwrap();
        let other = create_key(&store, "ci", &[Scope::Admin], Some(900), "test", 100).unwrap();
        let ring = KeyRing::load(&store).unwrap();
        assert_eq!(
            ring.authenticate(Some(&bearer(&k.key)), 600),
            Err(AuthError::Expired)
        );
        assert_eq!(
            store.mark_expired_keys(600).unwrap(),
            vec![k.record.id.clone()]
        );
        assert!(store.mark_expired_keys(600).unwrap().is_empty());
        ring.reload(&store).unwrap();
        // The clock jumps back to before the expiry.
        assert_eq!(
            ring.authenticate(Some(&bearer(&k.key)), 200),
            Err(AuthError::Expired)
        );
        assert!(ring.authenticate(Some(&bearer(&other.key)), 200).is_ok());
        assert_eq!(
            store.key(&k.record.id).unwrap().unwrap().expired_at,
            Some(600)
        );
    }

    #[test]
    fn rotation_keeps_the_old_key_for_the_overlap() {
        let store = Store::in_memory().unwrap();
        let old = create_key(&store, "proxy", &[Scope::Decide], None, "test", 100).unwrap();
        let new = rotate_key(&store, &old.record.id, 60, "test", 1000).unwrap();
        let ring = KeyRing::load(&store).unwrap();
        assert!(ring.authenticate(Some(&bearer(&old.key)), 1059).is_ok());
        assert_eq!(
            ring.authenticate(Some(&bearer(&old.key)), 1060),
            Err(AuthError::Expired)
        );
        assert!(ring.authenticate(Some(&bearer(&new.key)), 5000).is_ok());
        assert_eq!(new.record.name, "proxy");
    }

    /// What a console session asks on every request: a revoked, expired or rotated key ends
    /// it (the rotated one still authenticates a client for its overlap); a live key answers
    /// with its scopes as they are now.
    #[test]
    fn a_recheck_refuses_revoked_expired_and_rotated_keys() {
        let store = Store::in_memory().unwrap();
        let live = create_key(&store, "ana", &[Scope::Respond], None, "test", 100).unwrap();
        let dies = create_key(&store, "bo", &[Scope::Admin], Some(500), "test", 100).unwrap();
        let gone = create_key(&store, "cy", &[Scope::Respond], None, "test", 100).unwrap();
        let old = create_key(&store, "di", &[Scope::Respond], None, "test", 100).unwrap();
        let ring = KeyRing::load(&store).unwrap();
        let caller = ring.recheck(&live.record.id, 200).unwrap();
        assert_eq!(caller.actor(), format!("key:{} (ana)", live.record.id));
        assert!(caller.has(Scope::Respond) && !caller.has(Scope::Admin));
        assert!(ring.recheck(&dies.record.id, 200).is_ok());
        assert_eq!(ring.recheck(&dies.record.id, 500), Err(AuthError::Expired));
        store.revoke_key(&gone.record.id, 300).unwrap();
        let new = rotate_key(&store, &old.record.id, 3600, "test", 300).unwrap();
        ring.reload(&store).unwrap();
        assert_eq!(ring.recheck(&gone.record.id, 301), Err(AuthError::Revoked));
        assert_eq!(ring.recheck(&old.record.id, 301), Err(AuthError::Rotated));
        assert!(ring.authenticate(Some(&bearer(&old.key)), 301).is_ok());
        assert!(ring.recheck(&new.record.id, 301).is_ok());
        assert_eq!(
            store.key(&old.record.id).unwrap().unwrap().rotated_at,
            Some(300)
        );
        assert_eq!(ring.recheck("000000000000", 301), Err(AuthError::Invalid));
        assert_eq!(ring.recheck("short", 301), Err(AuthError::Malformed));
    }

    /// Every id of a full table is found, in whichever bucket slot it landed; ids it does not
    /// hold (case variants and neighbours included) find the dummy; an empty table finds
    /// nothing.
    #[test]
    fn the_key_table_finds_every_id_and_only_those() {
        let entry = |n: usize| Entry {
            name: format!("k{n}"),
            hash: hash(format!("secret{n}").as_bytes()),
            scopes: vec![Scope::Decide],
            expires_at: None,
            expired: false,
            revoked: false,
            rotated: false,
        };
        let id = |n: usize| -> Id { format!("{n:012x}").into_bytes().try_into().unwrap() };
        let table = KeyTable::new((0..3000).map(|n| (id(n * 7), entry(n))).collect());
        assert!(table.width >= 1 && !table.is_empty());
        for n in 0..3000 {
            let (e, known) = table.find(&id(n * 7));
            assert!(bool::from(known));
            assert_eq!(e.name, format!("k{n}"));
            assert_eq!(e.hash, hash(format!("secret{n}").as_bytes()));
        }
        for unknown in [id(1), id(20_999), *b"00000000000A", NO_ID] {
            let (e, known) = table.find(&unknown);
            assert!(!bool::from(known));
            assert!(e.name.is_empty() && e.revoked);
        }
        let empty = KeyTable::new(Vec::new());
        assert!(empty.is_empty());
        assert!(!bool::from(empty.find(&id(0)).1));
    }

    #[test]
    fn scopes_parse_strictly() {
        assert_eq!(
            parse_scopes(&["respond", "decide", "decide"]).unwrap(),
            [Scope::Decide, Scope::Respond]
        );
        assert!(matches!(
            parse_scopes(&["root"]),
            Err(KeyError::UnknownScope(_))
        ));
        assert!(matches!(parse_scopes::<&str>(&[]), Err(KeyError::NoScope)));
    }

    #[test]
    fn base64_standard_pads() {
        assert_eq!(base64_standard(b"warden:pw"), "d2FyZGVuOnB3");
        assert_eq!(base64_standard(b"ab"), "YWI=");
        assert_eq!(base64_standard(b"a"), "YQ==");
    }

    #[test]
    fn base64url_encodes() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
