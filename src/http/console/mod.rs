//! The analyst console: server-rendered pages under `/console/…`, served by the gateway itself,
//! over the same operations and read APIs as the HTTP routes and the CLI (a front end: every
//! change goes through [`crate::operations`], with the analyst as the [`Actor`]).
//!
//! - Pages and assets are compiled in: askama templates under `templates/console/` (checked
//!   and escaped by default at compile time), one stylesheet and one script file
//!   (`assets/`), no inline script or style.
//! - Sign-in ends in a server-side session ([`session`]); [`sign_in`] is the one way any
//!   sign-in method (the API key form here, single sign-on) starts one. Every request
//!   re-checks what the session was opened with ([`recheck`]): a revoked, expired or rotated
//!   key, or single sign-on groups that no longer give the console's scope, end it there.
//! - Every `POST` carries the session's anti-CSRF token and an `Origin` equal to the
//!   gateway's own; anything else is a 403 page. Every answer carries a strict
//!   Content-Security-Policy, `X-Content-Type-Options`, `Referrer-Policy` and no caching.
//! - Each page needs a scope ([`Page::needs`]), as its HTTP route does: a `respond` analyst
//!   sees lists and incidents; directories, data sets, policies, the audit log and gates are
//!   `admin`'s. The navigation shows only what the session may open, and the route refuses
//!   the rest (counted and audited like a key lacking a scope).
//! - Parts of a page that change on their own (a directory's status and recent updates, a
//!   list's members, a data set's refresh, gate sessions) are `data-live` regions the script
//!   re-fetches as fragments; those polls do not keep an idle session alive.

pub mod form;
mod pages;
pub mod session;
pub mod sso;
mod views;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use subtle::ConstantTimeEq;

use super::{Gateway, Response, read_body, refusal_of, refused};
use crate::auth::denials::Refusal;
use crate::auth::{AuthError, Scope};
use crate::base::actor::Actor;
use crate::base::time::now;
use crate::operations::OperationError;
use crate::runtime::Warden;
use form::Form;
use session::{ConsoleIdentity, Credential, Flash, Session};

/// Where the console lives.
pub const PREFIX: &str = "/console";

/// The Content-Security-Policy of every console answer: nothing but this origin's own files,
/// no inline script or style, no framing, forms only to this origin.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                       frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The header the script's live re-fetches carry: they read, and do not count as activity.
pub const LIVE_HEADER: &str = "x-console-live";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Whether `path` is the console's.
pub fn owns(path: &str) -> bool {
    path.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Every console page and action, with its path parameters decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Page {
    Home,
    SignInForm,
    SignIn,
    SignOut,
    /// Single sign-on: to the provider, and back from it.
    SsoStart,
    SsoCallback,
    Asset(&'static str, &'static str),
    Lists,
    List(String),
    /// One account's panel: why it is blocked.
    Account(String),
    AddMember(String),
    RemoveMember(String),
    ReleaseExpiry(String),
    Incidents,
    CreateIncident,
    Incident(String),
    Respond(String),
    Directories,
    SyncDirectory(String),
    DataSets,
    DataSet(String),
    RefreshDataSet(String),
    TestQuery(String),
    AcceptRefresh(String),
    Policies,
    Audit,
    Gates,
}

impl Page {
    /// The page for a method and a path under [`PREFIX`]; `None` is a 404.
    fn find(method: &Method, path: &str) -> Option<Page> {
        let rest = path.strip_prefix(PREFIX)?.trim_end_matches('/');
        let segs: Vec<String> = rest
            .split('/')
            .skip(1)
            .map(|s| super::routes::decode_segment(s).map(|c| c.into_owned()))
            .collect::<Result<_, _>>()
            .ok()?;
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        let name = |s: &str| s.to_owned();
        Some(match (get, post, segs.as_slice()) {
            (true, _, []) => Page::Home,
            (true, _, ["sign-in"]) => Page::SignInForm,
            (_, true, ["sign-in"]) => Page::SignIn,
            (_, true, ["sign-out"]) => Page::SignOut,
            (true, _, ["sso", "start"]) => Page::SsoStart,
            (true, _, ["sso", "callback"]) => Page::SsoCallback,
            (true, _, ["assets", "console.css"]) => Page::Asset("text/css; charset=utf-8", CSS),
            (true, _, ["assets", "console.js"]) => {
                Page::Asset("text/javascript; charset=utf-8", JS)
            }
            (true, _, ["lists"]) => Page::Lists,
            (true, _, ["lists", l]) => Page::List(name(l)),
            (true, _, ["accounts", a]) => Page::Account(name(a)),
            (_, true, ["lists", l, "members"]) => Page::AddMember(name(l)),
            (_, true, ["lists", l, "remove"]) => Page::RemoveMember(name(l)),
            (_, true, ["lists", l, "release-expiry"]) => Page::ReleaseExpiry(name(l)),
            (true, _, ["incidents"]) => Page::Incidents,
            (_, true, ["incidents"]) => Page::CreateIncident,
            (true, _, ["incidents", i]) => Page::Incident(name(i)),
            (_, true, ["incidents", i, "responses"]) => Page::Respond(name(i)),
            (true, _, ["directories"]) => Page::Directories,
            (_, true, ["directories", d, "sync"]) => Page::SyncDirectory(name(d)),
            (true, _, ["data-sets"]) => Page::DataSets,
            (true, _, ["data-sets", d]) => Page::DataSet(name(d)),
            (_, true, ["data-sets", d, "refresh"]) => Page::RefreshDataSet(name(d)),
            (_, true, ["data-sets", d, "test-query"]) => Page::TestQuery(name(d)),
            (_, true, ["data-sets", d, "accept"]) => Page::AcceptRefresh(name(d)),
            (true, _, ["policies"]) => Page::Policies,
            (true, _, ["audit"]) => Page::Audit,
            (true, _, ["gates"]) => Page::Gates,
            _ => return None,
        })
    }

    /// The scope the page needs, as its HTTP route does; `None` for the pages every signed-in
    /// analyst (or anyone, before sign-in) may open.
    fn needs(&self) -> Option<Scope> {
        match self {
            Page::Home
            | Page::SignInForm
            | Page::SignIn
            | Page::SignOut
            | Page::SsoStart
            | Page::SsoCallback
            | Page::Asset(..) => None,
            Page::Lists
            | Page::List(_)
            | Page::Account(_)
            | Page::AddMember(_)
            | Page::RemoveMember(_)
            | Page::Incidents
            | Page::CreateIncident
            | Page::Incident(_)
            | Page::Respond(_) => Some(Scope::Respond),
            Page::ReleaseExpiry(_)
            | Page::Directories
            | Page::SyncDirectory(_)
            | Page::DataSets
            | Page::DataSet(_)
            | Page::RefreshDataSet(_)
            | Page::TestQuery(_)
            | Page::AcceptRefresh(_)
            | Page::Policies
            | Page::Audit
            | Page::Gates => Some(Scope::Admin),
        }
    }

    /// The label refusals are counted under (bounded: no parameter in it).
    fn label(&self) -> &'static str {
        match self {
            Page::Home => "/console",
            Page::SignInForm | Page::SignIn => "/console/sign-in",
            Page::SignOut => "/console/sign-out",
            Page::SsoStart => "/console/sso/start",
            Page::SsoCallback => crate::config::SSO_CALLBACK_PATH,
            Page::Asset(..) => "/console/assets",
            Page::Lists
            | Page::List(_)
            | Page::AddMember(_)
            | Page::RemoveMember(_)
            | Page::ReleaseExpiry(_) => "/console/lists",
            Page::Account(_) => "/console/accounts",
            Page::Incidents | Page::CreateIncident | Page::Incident(_) | Page::Respond(_) => {
                "/console/incidents"
            }
            Page::Directories | Page::SyncDirectory(_) => "/console/directories",
            Page::DataSets
            | Page::DataSet(_)
            | Page::RefreshDataSet(_)
            | Page::TestQuery(_)
            | Page::AcceptRefresh(_) => "/console/data-sets",
            Page::Policies => "/console/policies",
            Page::Audit => "/console/audit",
            Page::Gates => "/console/gates",
        }
    }
}

/// One signed-in request on its way to a page.
pub(crate) struct Ctx<'a> {
    gw: &'a Gateway,
    session: Session,
    peer: SocketAddr,
    /// The query string's parameters (searches, filters, fragments).
    query: Form,
    form: Form,
}

impl Ctx<'_> {
    fn warden(&self) -> &Warden {
        &self.gw.warden
    }

    /// The analyst, from where: every change of the console is audited so.
    fn actor(&self) -> Actor {
        Actor::new(
            self.session.identity.actor.clone(),
            Some(self.peer.to_string()),
        )
    }

    /// Leaves `flash` for the next page and sends the browser there.
    fn after(&self, location: &str, flash: Flash) -> Response {
        self.gw.sessions.flash(&self.session, flash);
        redirect(location)
    }

    /// After an action: its message on success, the operation's error otherwise.
    fn done(&self, location: &str, outcome: Result<String, OperationError>) -> Response {
        let flash = match outcome {
            Ok(text) => Flash { ok: true, text },
            Err(e) => Flash {
                ok: false,
                text: e.to_string(),
            },
        };
        self.after(location, flash)
    }
}

fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: the latter would make a browser send `Origin: null`
    // on the console's own form posts, which the Origin check then refuses.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

fn html(status: StatusCode, body: String) -> Response {
    super::respond(status, "text/html; charset=utf-8", body)
}

fn redirect(location: &str) -> Response {
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A page that says why a request was refused or failed, with a way back.
fn problem_page(status: StatusCode, title: &str, message: &str) -> Response {
    html(status, views::problem(title, message))
}

fn forbidden(message: &str) -> Response {
    problem_page(StatusCode::FORBIDDEN, "Refused", message)
}

/// Whether the request's `Origin` is the gateway's own (scheme, host and port of the `Host`
/// the browser asked). A post without an `Origin` is refused: every browser sends one on a
/// form post.
fn same_origin(headers: &HeaderMap, secure: bool) -> bool {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let (Some(origin), Some(host)) = (get(header::ORIGIN), get(header::HOST)) else {
        return false;
    };
    let scheme = if secure { "https" } else { "http" };
    origin
        .strip_prefix(scheme)
        .and_then(|o| o.strip_prefix("://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

fn csrf_ok(form: &Form, session: &Session) -> bool {
    bool::from(form.get("csrf").as_bytes().ct_eq(session.csrf.as_bytes()))
}

/// Starts a console session for an analyst a sign-in method has authenticated: audits the
/// sign-in (`console.sign_in`, the analyst as actor, from `peer`) and answers the redirect into
/// the console with the session cookie. The one entry point for every sign-in method.
pub fn sign_in(gw: &Gateway, identity: ConsoleIdentity, peer: SocketAddr) -> Response {
    let actor = Actor::new(identity.actor.clone(), Some(peer.to_string()));
    let scopes: Vec<&str> = identity.scopes.iter().map(|s| s.as_str()).collect();
    if let Err(e) = crate::operations::console::signed_in(
        &gw.warden,
        &actor,
        identity.method().as_str(),
        &scopes,
    ) {
        // Fail closed: a sign-in that cannot be audited does not happen.
        return problem_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in failed",
            &format!("the sign-in could not be recorded: {e}"),
        );
    }
    let landing = if identity.has(Scope::Respond) {
        "/console/lists"
    } else {
        "/console"
    };
    match gw.sessions.sign_in(identity, gw.is_tls()) {
        Ok(signed) => {
            let mut resp = redirect(landing);
            if let Ok(v) = HeaderValue::from_str(&signed.set_cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => problem_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in failed",
            &e.to_string(),
        ),
    }
}

/// The API key form's post: the key is checked as a bearer key is; a failure is refused and
/// counted in the same aggregated audit as a failed key.
fn sign_in_with_key(gw: &Gateway, form: &Form, peer: SocketAddr) -> Response {
    let header = format!("Bearer {}", form.get("key"));
    let keys = gw.warden.keys();
    // A rotated key still serves its clients for the overlap, but opens no session: the
    // session would end at its first request.
    let caller = match keys
        .authenticate(Some(header.as_bytes()), now())
        .and_then(|c| keys.recheck(&c.key_id, now()))
    {
        Ok(c) => c,
        Err(e) => {
            refused(
                gw,
                peer,
                "anonymous",
                refusal_of(e),
                "/console/sign-in",
                None,
            );
            // The key's own words, but in the form's terms (there is no header to speak of).
            let why = match e {
                AuthError::Missing => "enter an API key".to_owned(),
                AuthError::Malformed => {
                    "that is not an API key (keys look like wdn_<id>_<secret>)".to_owned()
                }
                other => other.to_string(),
            };
            return html(
                StatusCode::UNAUTHORIZED,
                views::sign_in_page(
                    Some(&format!("Sign-in refused: {why}.")),
                    sso_configured(gw),
                ),
            );
        }
    };
    let identity = ConsoleIdentity::of_key(&caller);
    if !identity.has(Scope::Respond) {
        refused(
            gw,
            peer,
            &identity.actor,
            Refusal::Forbidden,
            "/console/sign-in",
            Some(Scope::Respond.as_str()),
        );
        return html(
            StatusCode::FORBIDDEN,
            views::sign_in_page(
                Some(
                    "Sign-in refused: this key has neither the respond nor the admin scope the \
                     console needs.",
                ),
                sso_configured(gw),
            ),
        );
    }
    sign_in(gw, identity, peer)
}

/// Why a session ended at a request: what it is counted as, and what the analyst is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Revoked,
    Expired,
    Rotated,
    /// The key, or the single sign-on groups under the mapping in force, no longer give the
    /// `respond` scope the console needs.
    Scope,
    /// `[console.oidc] require_mfa` now, and the sign-in showed none.
    Mfa,
}

impl Ended {
    const ALL: [Ended; 5] = [
        Ended::Revoked,
        Ended::Expired,
        Ended::Rotated,
        Ended::Scope,
        Ended::Mfa,
    ];

    fn of_key(e: AuthError) -> Ended {
        match e {
            AuthError::Expired => Ended::Expired,
            AuthError::Rotated => Ended::Rotated,
            // Revoked, or a record that is gone: the key no longer exists for the console.
            _ => Ended::Revoked,
        }
    }

    /// The code the sign-in page is sent with (`?ended=`).
    fn code(self) -> &'static str {
        match self {
            Ended::Revoked => "revoked",
            Ended::Expired => "expired",
            Ended::Rotated => "rotated",
            Ended::Scope => "scope",
            Ended::Mfa => "mfa",
        }
    }

    fn refusal(self) -> Refusal {
        match self {
            Ended::Revoked => Refusal::Revoked,
            Ended::Expired => Refusal::Expired,
            Ended::Rotated => Refusal::Rotated,
            Ended::Scope => Refusal::Forbidden,
            Ended::Mfa => Refusal::SsoMfa,
        }
    }

    fn why(self) -> &'static str {
        match self {
            Ended::Revoked => "the API key it was opened with has been revoked",
            Ended::Expired => "the API key it was opened with has expired",
            Ended::Rotated => {
                "the API key it was opened with has been rotated; sign in with its replacement"
            }
            Ended::Scope => {
                "what it was opened with no longer gives the respond or admin scope the console \
                 needs"
            }
            Ended::Mfa => "single sign-on now requires multi-factor authentication",
        }
    }

    /// The sentence for the sign-in page a `?ended=` code asks for (a fixed text: the code is
    /// only looked up).
    fn said(code: &str) -> Option<String> {
        let ended = Ended::ALL.into_iter().find(|e| e.code() == code)?;
        Some(format!("Your console session has ended: {}.", ended.why()))
    }
}

/// The session's identity as it holds now, or why the session ends. Asked on every request,
/// so nothing a session was opened with outlives its withdrawal:
///
/// - a key session asks the key ring ([`crate::auth::KeyRing::recheck`]): revoked, expired or
///   rotated ends it; its scopes are the key's now. The ring is this replica's copy of the
///   store's keys, reloaded when this process changes a key and, on other replicas, when the
///   change feed reads the key change from the store's change log.
/// - a single sign-on session asks the `[console.oidc]` in force: its scopes are those of
///   sign-in that its groups still give under the mapping now (none, or no `[console.oidc]` at
///   all, ends it), and `require_mfa` turned on ends a session signed in without MFA. Its
///   idle and absolute expiry are the table's ([`session::Sessions`]).
///
/// Either way a session left without the `respond` scope ends: the console needs it.
fn recheck(gw: &Gateway, identity: &ConsoleIdentity) -> Result<ConsoleIdentity, Ended> {
    let scopes: Vec<Scope> = match &identity.credential {
        Credential::Key { id } => {
            let caller = gw.warden.keys().recheck(id, now()).map_err(Ended::of_key)?;
            Scope::ALL.into_iter().filter(|s| caller.has(*s)).collect()
        }
        Credential::Sso { groups, mfa } => {
            let config = gw.warden.config();
            let Some(oidc) = config.console_oidc.as_deref() else {
                return Err(Ended::Scope);
            };
            if oidc.require_mfa && !mfa {
                return Err(Ended::Mfa);
            }
            // Never more than at sign-in: a mapping that now gives more takes a new sign-in.
            let given = crate::auth::oidc::scopes_of(oidc, groups);
            identity
                .scopes
                .iter()
                .copied()
                .filter(|s| given.contains(s) || given.contains(&Scope::Admin))
                .collect()
        }
    };
    let now = ConsoleIdentity {
        scopes,
        ..identity.clone()
    };
    if !now.has(Scope::Respond) {
        return Err(Ended::Scope);
    }
    Ok(now)
}

/// Ends a session whose credential no longer holds: removed from the table, counted as the
/// refusal it is (aggregated, like a failed key), the cookie cleared; a page is sent to the
/// sign-in page saying why, a form post refused (nothing it asked for is done).
fn end(
    gw: &Gateway,
    session: &Session,
    ended: Ended,
    post: bool,
    peer: SocketAddr,
    label: &'static str,
) -> Response {
    gw.sessions.sign_out(session);
    let actor = &session.identity.actor;
    let needs = match ended {
        Ended::Scope => Some(Scope::Respond.as_str()),
        Ended::Mfa => Some("mfa"),
        _ => None,
    };
    refused(gw, peer, actor, ended.refusal(), label, needs);
    tracing::info!(%actor, %peer, reason = ended.code(), "console session ended");
    let mut resp = if post {
        forbidden(&format!(
            "Your console session has ended: {}. Nothing was changed; sign in again.",
            ended.why()
        ))
    } else {
        redirect(&format!("/console/sign-in?ended={}", ended.code()))
    };
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(gw.is_tls())) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Whether the sign-in page offers single sign-on (`[console.oidc]` is configured).
fn sso_configured(gw: &Gateway) -> bool {
    gw.warden.config().console_oidc.is_some()
}

/// Answers one request under [`PREFIX`].
pub(super) async fn answer(
    gw: &Gateway,
    parts: Parts,
    body: Incoming,
    peer: SocketAddr,
) -> Response {
    with_headers(route(gw, parts, body, peer).await)
}

async fn route(gw: &Gateway, parts: Parts, body: Incoming, peer: SocketAddr) -> Response {
    let Some(page) = Page::find(&parts.method, parts.uri.path()) else {
        return problem_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such console page.",
        );
    };
    if let Page::Asset(kind, text) = page {
        let mut resp = super::respond(StatusCode::OK, kind, text);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return resp;
    }
    if let Page::SsoStart | Page::SsoCallback = page {
        let query = match Form::parse(parts.uri.query().unwrap_or("").as_bytes()) {
            Ok(q) => q,
            Err(e) => return problem_page(StatusCode::BAD_REQUEST, "Bad address", &e.to_string()),
        };
        let callback = page == Page::SsoCallback;
        return sso::answer(gw, callback, &query, &parts.headers, peer).await;
    }
    let post = parts.method == Method::POST;
    let form = if post {
        if !same_origin(&parts.headers, gw.is_tls()) {
            return forbidden(
                "This form was not posted from the console's own origin (the Origin header is \
                 missing or names another site). Open the console and try again.",
            );
        }
        let bytes = match read_body(body, &parts.headers, gw.limits().max_body_bytes).await {
            Ok(b) => b,
            Err(p) => return problem_page(p.status, "Refused", &p.detail),
        };
        match Form::parse(&bytes) {
            Ok(f) => f,
            Err(e) => return problem_page(StatusCode::BAD_REQUEST, "Bad form", &e.to_string()),
        }
    } else {
        Form::default()
    };
    if page == Page::SignIn {
        return super::blocking(|| sign_in_with_key(gw, &form, peer));
    }
    let session = gw.sessions.find(&parts.headers);
    let Some(mut session) = session else {
        if page == Page::SignInForm {
            let ended = Form::parse(parts.uri.query().unwrap_or("").as_bytes())
                .ok()
                .and_then(|q| Ended::said(q.get("ended")));
            return html(
                StatusCode::OK,
                views::sign_in_page(ended.as_deref(), sso_configured(gw)),
            );
        }
        if !post {
            return redirect("/console/sign-in");
        }
        return forbidden("Your console session has ended. Sign in again.");
    };
    match recheck(gw, &session.identity) {
        Ok(identity) => session.identity = identity,
        Err(ended) => return end(gw, &session, ended, post, peer, page.label()),
    }
    if post && !csrf_ok(&form, &session) {
        return forbidden(
            "This form's anti-CSRF token is missing or is not this session's. Reload the page \
             and try again.",
        );
    }
    if let Some(scope) = page.needs()
        && !session.identity.has(scope)
    {
        refused(
            gw,
            peer,
            &session.identity.actor,
            Refusal::Forbidden,
            page.label(),
            Some(scope.as_str()),
        );
        return forbidden(&format!(
            "This page needs the {scope} scope, which your sign-in does not have."
        ));
    }
    let query = match Form::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        Ok(q) => q,
        Err(e) => return problem_page(StatusCode::BAD_REQUEST, "Bad address", &e.to_string()),
    };
    let ctx = Ctx {
        gw,
        session,
        peer,
        query,
        form,
    };
    pages::show(&ctx, page).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::store::Store;

    fn gateway() -> Gateway {
        let config = Config::embedded_default().unwrap();
        let warden = Warden::with_store(config, Arc::new(Store::in_memory().unwrap())).unwrap();
        Gateway::new(Arc::new(warden), crate::services::Board::default())
    }

    fn key(gw: &Gateway, name: &str, scopes: &[Scope]) -> String {
        let store = gw.warden.store();
        let new =
            crate::auth::create_key(store, name, scopes, None, "test", crate::base::time::now())
                .unwrap();
        gw.warden.keys().reload(store).unwrap();
        new.key
    }

    fn form(key: &str) -> Form {
        Form::parse(format!("key={key}").as_bytes()).unwrap()
    }

    /// Nothing an unauthenticated caller sends makes a session: wrong keys are counted as
    /// refusals (aggregated, bounded) and only a valid key with a console scope signs in.
    #[test]
    fn only_a_valid_console_key_makes_a_session() {
        let gw = gateway();
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let decide = key(&gw, "proxy", &[Scope::Decide]);
        let respond = key(&gw, "analyst", &[Scope::Respond]);
        for i in 0..50 {
            let wrong = format!("wdn_{i:012x}_not-the-secret");
            let resp = sign_in_with_key(&gw, &form(&wrong), peer);
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(sign_in_with_key(&gw, &form(""), peer).status(), 401);
        assert_eq!(
            sign_in_with_key(&gw, &form(&decide), peer).status(),
            StatusCode::FORBIDDEN
        );
        assert!(gw.sessions.is_empty(), "a refused sign-in made a session");
        assert_eq!(gw.warden.denials().pending(), 52);
        let resp = sign_in_with_key(&gw, &form(&respond), peer);
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert!(resp.headers().contains_key(header::SET_COOKIE));
        assert_eq!(gw.sessions.len(), 1);
        let audit = gw
            .warden
            .store()
            .audit(&crate::store::AuditFilter {
                action: Some("console.sign_in".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(audit.len(), 1);
        assert!(audit[0].actor.ends_with("(analyst)"));
        assert_eq!(audit[0].source.as_deref(), Some("192.0.2.7:5000"));
    }

    /// A key session follows its key; a single sign-on session keeps the scopes of sign-in
    /// that its groups still give under the mapping in force, never more.
    #[test]
    fn a_session_holds_only_while_what_it_was_opened_with_does() {
        let gw = gateway();
        let key = key(&gw, "analyst", &[Scope::Respond]);
        let caller = gw
            .warden
            .keys()
            .authenticate(Some(format!("Bearer {key}").as_bytes()), now())
            .unwrap();
        let identity = ConsoleIdentity::of_key(&caller);
        assert_eq!(recheck(&gw, &identity), Ok(identity.clone()));
        crate::operations::keys::revoke_key(
            &gw.warden,
            &crate::base::actor::Actor::cli(),
            &caller.key_id,
        )
        .unwrap();
        assert_eq!(recheck(&gw, &identity), Err(Ended::Revoked));

        let sso = |scopes: Vec<Scope>| ConsoleIdentity {
            actor: "sso:ana".into(),
            scopes,
            credential: Credential::Sso {
                groups: vec!["SOC".into()],
                mfa: false,
            },
        };
        // The embedded default has no [console.oidc]: nothing gives the session a scope.
        assert_eq!(recheck(&gw, &sso(vec![Scope::Respond])), Err(Ended::Scope));
        let with = |mapping: &str, mfa: bool| {
            let text = format!(
                "[console.oidc]\nissuer = \"https://idp.example.test\"\nclient_id = \"w\"\n\
                 client_secret_env = \"WARDEN_TEST_OIDC_SECRET\"\n\
                 redirect_url = \"https://w.example.test/console/sso/callback\"\n\
                 require_mfa = {mfa}\ngroups = {{ {mapping} }}\n"
            );
            let config =
                crate::config::Config::parse(&text, "test", std::path::Path::new(".")).unwrap();
            let store = Arc::new(Store::in_memory().unwrap());
            let warden = Warden::with_store(config, store).unwrap();
            Gateway::new(Arc::new(warden), crate::services::Board::default())
        };
        let gw = with("\"SOC\" = \"admin\"", false);
        let respond = sso(vec![Scope::Respond]);
        assert_eq!(recheck(&gw, &respond).unwrap().scopes, [Scope::Respond]);
        let gw = with("\"SOC\" = \"respond\"", false);
        let admin = sso(vec![Scope::Respond, Scope::Admin]);
        assert_eq!(recheck(&gw, &admin).unwrap().scopes, [Scope::Respond]);
        let gw = with("\"Others\" = \"respond\"", false);
        assert_eq!(recheck(&gw, &respond), Err(Ended::Scope));
        let gw = with("\"SOC\" = \"respond\"", true);
        assert_eq!(recheck(&gw, &respond), Err(Ended::Mfa));
    }

    #[test]
    fn the_origin_must_be_the_gateways_own() {
        let headers = |origin: Option<&str>, host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
            }
            h
        };
        let h = headers(Some("http://127.0.0.1:8470"), "127.0.0.1:8470");
        assert!(same_origin(&h, false));
        assert!(!same_origin(&h, true), "https expected over TLS");
        for (origin, host) in [
            (Some("http://evil.example"), "127.0.0.1:8470"),
            (Some("http://127.0.0.1:8471"), "127.0.0.1:8470"),
            (Some("null"), "127.0.0.1:8470"),
            (None, "127.0.0.1:8470"),
        ] {
            assert!(!same_origin(&headers(origin, host), false), "{origin:?}");
        }
    }

    #[test]
    fn pages_need_the_scope_of_their_http_route() {
        let admin_only = [
            "/console/directories",
            "/console/data-sets",
            "/console/data-sets/x",
            "/console/policies",
            "/console/audit",
            "/console/gates",
        ];
        for path in admin_only {
            let page = Page::find(&Method::GET, path).unwrap();
            assert_eq!(page.needs(), Some(Scope::Admin), "{path}");
        }
        for path in [
            "/console/lists",
            "/console/lists/a%20b",
            "/console/incidents/INC-1",
        ] {
            let page = Page::find(&Method::GET, path).unwrap();
            assert_eq!(page.needs(), Some(Scope::Respond), "{path}");
        }
        assert_eq!(
            Page::find(&Method::GET, "/console/lists/a%20b"),
            Some(Page::List("a b".into()))
        );
        assert_eq!(Page::find(&Method::POST, "/console/lists"), None);
        assert_eq!(Page::find(&Method::GET, "/console/lists/%ff"), None);
        assert!(owns("/console") && owns("/console/lists") && !owns("/consoles"));
    }
}
