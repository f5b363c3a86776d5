//! Console sessions: who signed in, held in memory, found by an opaque cookie.
//!
//! A session exists only after a successful sign-in; nothing an unauthenticated caller sends
//! adds an entry. The table holds at most `max` sessions: a sign-in into a full table first
//! drops the expired ones, then the oldest. A session ends after `idle` without a request, after
//! `absolute` whatever happens, on sign-out, or when what it was opened with no longer holds:
//! every request re-checks its [`Credential`] (the console's `recheck`), and ends it with
//! [`Sessions::sign_out`] when the key was revoked, expired or rotated, or the single sign-on
//! groups no longer give the console's scope.
//!
//! The cookie ([`COOKIE`]) carries 32 random bytes (hex); the table keys on their SHA-256, so
//! the table holds no bearer secret. The cookie is `HttpOnly`, `SameSite=Strict`,
//! `Path=/console`, `Max-Age` of the absolute lifetime, and `Secure` when the gateway serves
//! TLS. Each session has its own anti-CSRF token ([`Session::csrf`]) that every state-changing
//! form carries.
//!
//! # Entry point for a sign-in method
//!
//! A sign-in method (the API key form here; OpenID Connect single sign-on) authenticates the
//! analyst, builds a [`ConsoleIdentity`] (actor name as the audit log shows it, scopes, and
//! [`SignInMethod`]) and calls [`super::sign_in`] with the gateway, the identity and the peer
//! address: it audits the sign-in (`console.sign_in`), makes the session with
//! [`Sessions::sign_in`] and answers the redirect into the console with the `Set-Cookie`.
//! A method's own pages (say `/console/sso/start` and its callback) are `Page` variants that
//! need no scope and are answered before the session lookup, as `Page::SignIn` is (see
//! `route` in the parent module); its failures are counted with
//! [`crate::auth::denials`] under their route, as a wrong key is.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hyper::header::{self, HeaderMap};
use parking_lot::Mutex;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

use crate::auth::{Caller, Scope};

/// The session cookie's name.
pub const COOKIE: &str = "warden_console";
/// Most sessions held at once.
pub const MAX_SESSIONS: usize = 1024;
/// A session ends after this long without a request…
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// …and after this long in any case.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);

/// How the analyst proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    /// An API key typed into the sign-in form.
    Key,
    /// OpenID Connect single sign-on.
    Sso,
}

impl SignInMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInMethod::Key => "key",
            SignInMethod::Sso => "sso",
        }
    }
}

/// What a session was opened with, re-checked on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key, by id: the key ring says on every request whether it still holds, and
    /// with which scopes.
    Key { id: String },
    /// Single sign-on: the provider groups that gave the session its scopes at sign-in, and
    /// whether the sign-in showed multi-factor authentication. The provider is not asked
    /// again; the `[console.oidc]` in force is (its group mapping, `require_mfa`).
    Sso { groups: Vec<String>, mfa: bool },
}

/// Who a session is for: what the audit log names them, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleIdentity {
    /// The actor of every audit record of the session: `key:<id> (<name>)` for a key, the SSO
    /// subject (e.g. `sso:alice@corp.example.test`) for single sign-on.
    pub actor: String,
    /// The scopes at sign-in; a request works with those that still hold (the console's
    /// `recheck`).
    pub scopes: Vec<Scope>,
    pub credential: Credential,
}

impl ConsoleIdentity {
    /// The identity of an API key.
    pub fn of_key(caller: &Caller) -> ConsoleIdentity {
        ConsoleIdentity {
            actor: caller.actor(),
            scopes: Scope::ALL.into_iter().filter(|s| caller.has(*s)).collect(),
            credential: Credential::Key {
                id: caller.key_id.clone(),
            },
        }
    }

    pub fn method(&self) -> SignInMethod {
        match self.credential {
            Credential::Key { .. } => SignInMethod::Key,
            Credential::Sso { .. } => SignInMethod::Sso,
        }
    }

    /// Whether the identity may do what `scope` allows (`admin` allows everything).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// A signed-in analyst's session, as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub identity: ConsoleIdentity,
    /// The anti-CSRF token every state-changing form of this session carries.
    pub csrf: String,
    /// A one-time message for the next page (what the last action did, or why it failed).
    pub flash: Option<Flash>,
    key: [u8; 32],
}

/// A message shown once, on the page after an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

/// A new session and the `Set-Cookie` value that carries it.
#[derive(Debug)]
pub struct SignedIn {
    pub set_cookie: String,
    pub session: Session,
}

/// Making a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the system random number generator failed")]
    Random,
}

struct Entry {
    session: Session,
    created: Instant,
    seen: Instant,
}

/// The table of sessions, bounded.
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Entry>>,
    max: usize,
    idle: Duration,
    absolute: Duration,
    rng: SystemRandom,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::with_limits(MAX_SESSIONS, IDLE, ABSOLUTE)
    }
}

fn random_hex(rng: &SystemRandom) -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes).map_err(|_| SessionError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn key_of(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

fn cookie_attributes(secure: bool) -> &'static str {
    if secure {
        "; Path=/console; HttpOnly; SameSite=Strict; Secure"
    } else {
        "; Path=/console; HttpOnly; SameSite=Strict"
    }
}

/// The `Set-Cookie` value that ends the session cookie in the browser.
pub fn clear_cookie(secure: bool) -> String {
    format!("{COOKIE}={}; Max-Age=0", cookie_attributes(secure))
}

impl Sessions {
    pub fn with_limits(max: usize, idle: Duration, absolute: Duration) -> Sessions {
        Sessions {
            table: Mutex::new(HashMap::new()),
            max: max.max(1),
            idle,
            absolute,
            rng: SystemRandom::new(),
        }
    }

    fn live(&self, e: &Entry, now: Instant) -> bool {
        now.duration_since(e.seen) < self.idle && now.duration_since(e.created) < self.absolute
    }

    /// Starts a session for an identity already authenticated; `secure` when the request came
    /// over TLS. Only call this after a successful sign-in.
    pub fn sign_in(
        &self,
        identity: ConsoleIdentity,
        secure: bool,
    ) -> Result<SignedIn, SessionError> {
        self.sign_in_at(identity, secure, Instant::now())
    }

    fn sign_in_at(
        &self,
        identity: ConsoleIdentity,
        secure: bool,
        now: Instant,
    ) -> Result<SignedIn, SessionError> {
        let token = random_hex(&self.rng)?;
        let session = Session {
            identity,
            csrf: random_hex(&self.rng)?,
            flash: None,
            key: key_of(&token),
        };
        let mut table = self.table.lock();
        if table.len() >= self.max {
            table.retain(|_, e| self.live(e, now));
        }
        while table.len() >= self.max {
            let oldest = table.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| *k);
            match oldest {
                Some(k) => table.remove(&k),
                None => break,
            };
        }
        table.insert(
            session.key,
            Entry {
                session: session.clone(),
                created: now,
                seen: now,
            },
        );
        let set_cookie = format!(
            "{COOKIE}={token}; Max-Age={}{}",
            self.absolute.as_secs(),
            cookie_attributes(secure)
        );
        Ok(SignedIn {
            set_cookie,
            session,
        })
    }

    /// The live session a request's cookie names (its idle time restarts unless it is a live
    /// re-fetch; its flash message is taken), or `None`.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        self.find_at(headers, Instant::now())
    }

    fn find_at(&self, headers: &HeaderMap, now: Instant) -> Option<Session> {
        let token = cookie(headers, COOKIE).filter(|t| t.len() == 64)?;
        let key = key_of(token);
        let mut table = self.table.lock();
        let entry = table.get_mut(&key)?;
        if !self.live(entry, now) {
            table.remove(&key);
            return None;
        }
        // The script's live re-fetches only read: they neither keep an idle session alive nor
        // take the message meant for the next page.
        let live = headers.contains_key(super::LIVE_HEADER);
        let mut session = entry.session.clone();
        if live {
            session.flash = None;
        } else {
            entry.seen = now;
            session.flash = entry.session.flash.take();
        }
        Some(session)
    }

    /// Leaves a message for the session's next page.
    pub fn flash(&self, session: &Session, flash: Flash) {
        if let Some(e) = self.table.lock().get_mut(&session.key) {
            e.session.flash = Some(flash);
        }
    }

    /// Ends a session.
    pub fn sign_out(&self, session: &Session) {
        self.table.lock().remove(&session.key);
    }

    /// Sessions held now (live or not yet swept).
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use hyper::header::HeaderValue;

    use super::*;

    fn identity(name: &str) -> ConsoleIdentity {
        ConsoleIdentity {
            actor: name.into(),
            scopes: vec![Scope::Respond],
            credential: Credential::Key {
                id: "000000000001".into(),
            },
        }
    }

    fn request_with(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
        );
        h
    }

    #[test]
    fn a_cookie_finds_its_session_with_the_attributes_a_browser_needs() {
        let s = Sessions::default();
        let signed = s.sign_in(identity("key:1 (a)"), false).unwrap();
        assert!(signed.set_cookie.contains("HttpOnly"));
        assert!(signed.set_cookie.contains("SameSite=Strict"));
        assert!(signed.set_cookie.contains("Path=/console"));
        assert!(!signed.set_cookie.contains("Secure"));
        let tls = s.sign_in(identity("key:2 (b)"), true).unwrap();
        assert!(tls.set_cookie.ends_with("; Secure"));
        let found = s.find(&request_with(&signed.set_cookie)).unwrap();
        assert_eq!(found.identity.actor, "key:1 (a)");
        assert_eq!(found.csrf, signed.session.csrf);
        assert_ne!(found.csrf, tls.session.csrf);
        s.sign_out(&found);
        assert!(s.find(&request_with(&signed.set_cookie)).is_none());
        assert!(s.find(&HeaderMap::new()).is_none());
    }

    #[test]
    fn sessions_expire_when_idle_and_absolutely() {
        let s = Sessions::with_limits(8, Duration::from_secs(10), Duration::from_secs(25));
        let t0 = Instant::now();
        let signed = s.sign_in_at(identity("a"), false, t0).unwrap();
        let h = request_with(&signed.set_cookie);
        assert!(s.find_at(&h, t0 + Duration::from_secs(9)).is_some());
        assert!(s.find_at(&h, t0 + Duration::from_secs(18)).is_some());
        // Still within idle of the last use, but past the absolute lifetime.
        assert!(s.find_at(&h, t0 + Duration::from_secs(26)).is_none());
        let again = s.sign_in_at(identity("b"), false, t0).unwrap();
        let h = request_with(&again.set_cookie);
        assert!(s.find_at(&h, t0 + Duration::from_secs(11)).is_none());
    }

    #[test]
    fn a_full_table_evicts_the_oldest_and_stays_bounded() {
        let s = Sessions::with_limits(3, IDLE, ABSOLUTE);
        let t0 = Instant::now();
        let cookies: Vec<String> = (0..5)
            .map(|i| {
                s.sign_in_at(identity(&i.to_string()), false, t0 + Duration::from_secs(i))
                    .unwrap()
                    .set_cookie
            })
            .collect();
        assert_eq!(s.len(), 3);
        let now = t0 + Duration::from_secs(6);
        assert!(s.find_at(&request_with(&cookies[0]), now).is_none());
        assert!(s.find_at(&request_with(&cookies[1]), now).is_none());
        assert!(s.find_at(&request_with(&cookies[4]), now).is_some());
    }

    #[test]
    fn a_flash_is_shown_once() {
        let s = Sessions::default();
        let signed = s.sign_in(identity("a"), false).unwrap();
        s.flash(
            &signed.session,
            Flash {
                ok: true,
                text: "done".into(),
            },
        );
        let h = request_with(&signed.set_cookie);
        assert_eq!(s.find(&h).unwrap().flash.unwrap().text, "done");
        assert!(s.find(&h).unwrap().flash.is_none());
    }

    #[test]
    fn only_admin_includes_every_scope() {
        let mut id = identity("a");
        assert!(id.has(Scope::Respond));
        assert!(!id.has(Scope::Admin));
        id.scopes = vec![Scope::Admin];
        assert!(id.has(Scope::Respond) && id.has(Scope::Decide));
    }
}
