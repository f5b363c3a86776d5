//! API keys: making them, checking them, and the scopes they grant.
//!
//! A key reads `wdn_<id>_<secret>`: a 12-hex-digit id that finds the record, and 32 random
//! bytes (base64url) that prove possession. Only the SHA-256 of the secret is stored — the
//! secret is random and long, so a fast hash is enough and a slow one would only cost the hot
//! path. Comparison is constant-time, and an unknown id is compared against a dummy hash so
//! unknown and wrong keys take the same time. [`KeyRing`] holds the records in memory, swapped
//! whole when keys change, so checking a key takes no lock and no store read.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

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
    revoked: bool,
}

/// The key records in memory, checked without a lock.
pub struct KeyRing {
    entries: ArcSwap<HashMap<String, Entry>>,
    dummy: [u8; 32],
}

impl KeyRing {
    /// Loads every key record from the store.
    pub fn load(store: &Store) -> Result<KeyRing, StoreError> {
        let ring = KeyRing {
            entries: ArcSwap::from_pointee(HashMap::new()),
            dummy: hash(b"warden: compared when the key id is unknown"),
        };
        ring.reload(store)?;
        Ok(ring)
    }

    /// Re-reads the records (after a change by this or another process).
    pub fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let map = store
            .keys()?
            .into_iter()
            .filter_map(|k| {
                let hash: [u8; 32] = k.hash.as_slice().try_into().ok()?;
                let scopes = parse_scopes(&k.scopes).ok()?;
                Some((
                    k.id,
                    Entry {
                        name: k.name,
                        hash,
                        scopes,
                        expires_at: k.expires_at,
                        revoked: k.revoked_at.is_some(),
                    },
                ))
            })
            .collect();
        self.entries.store(Arc::new(map));
        Ok(())
    }

    /// True when no key exists at all (revoked ones count as existing).
    pub fn is_empty(&self) -> bool {
        self.entries.load().is_empty()
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
        let presented = hash(secret.as_bytes());
        let entries = self.entries.load();
        let entry = entries.get(id);
        let expected = entry.map_or(&self.dummy, |e| &e.hash);
        let matches: bool = presented.ct_eq(expected).into();
        let entry = match entry {
            Some(e) if matches => e,
            _ => return Err(AuthError::Invalid),
        };
        if entry.revoked {
            return Err(AuthError::Revoked);
        }
        if entry.expires_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Expired);
        }
        Ok(Caller {
            key_id: id.to_owned(),
            name: entry.name.clone(),
            scopes: entry.scopes.clone(),
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
    store.expire_key_by(id, now.saturating_add(overlap_secs.max(0)))?;
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
