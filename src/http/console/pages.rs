//! The console's pages and actions, one function each. Pages read through the operations' and
//! the store's read functions, as the HTTP routes do; actions change state only through
//! [`crate::operations`], with the analyst as the actor, then send the browser back to a page
//! with a one-time message (post, redirect, get).

use std::collections::HashSet;

use hyper::StatusCode;
use hyper::header::{self, HeaderValue};

use super::super::{Response, blocking};
use super::session::Flash;
use super::views::{self, Chrome, NavItem};
use super::{Ctx, Page, html, problem_page, redirect};
use crate::auth::Scope;
use crate::base::account::Resolution;
use crate::base::severity::IncidentSeverity;
use crate::base::time::{format_rfc3339, instant_or_ago, now_ms};
use crate::config::Source;
use crate::decide::Request;
use crate::operations::incidents::{IncidentRequest, ResponseRequest};
use crate::operations::lists::MemberRequest;
use crate::operations::{self, OperationError, data_sets, directories, incidents, lists};
use crate::store::audit::AUDIT_READ_MAX;
use crate::store::incidents::{incident_ref, parse_incident_ref};
use crate::store::{Added, AuditFilter, Member};
use crate::sync::Health;
use crate::sync::SyncMetrics;
use crate::sync::pull::RefreshOutcome;

/// Rows of a data set per page.
const PAGE_ROWS: usize = 50;
/// Audit records one page shows.
const AUDIT_SHOWN: usize = 200;
/// Incidents the incidents page lists.
const INCIDENTS_SHOWN: u32 = 200;
/// Recent updates shown per directory.
const RECENT_SHOWN: usize = 10;
/// The longest principal or service the decision tester takes.
const TESTER_MAX: usize = 1024;

/// Every page of the navigation, with the scope it needs.
const NAV: [(&str, &str, Scope); 7] = [
    ("/console/lists", "Lists", Scope::Respond),
    ("/console/incidents", "Incidents", Scope::Respond),
    ("/console/directories", "Directories", Scope::Admin),
    ("/console/data-sets", "Data sets", Scope::Admin),
    ("/console/policies", "Policies", Scope::Admin),
    ("/console/audit", "Audit log", Scope::Admin),
    ("/console/gates", "Gates", Scope::Admin),
];

/// What a page read gives: its value, or the operation's error (shown as a problem page).
type Read<T> = Result<T, OperationError>;
/// A rendered page.
type Shown = Read<String>;

/// Answers a signed-in request for `page`.
pub(super) async fn show(ctx: &Ctx<'_>, page: Page) -> Response {
    let shown = match page {
        Page::Home | Page::SignInForm => return redirect("/console/lists"),
        // Answered before the session lookup (`route`); never reach here.
        Page::SignIn | Page::SsoStart | Page::SsoCallback | Page::Asset(..) => {
            return redirect("/console");
        }
        Page::SignOut => return blocking(|| sign_out(ctx)),
        Page::Lists => blocking(|| lists_page(ctx)),
        Page::List(list) => blocking(|| list_page(ctx, &list)),
        Page::Account(name) => blocking(|| account_page(ctx, &name)),
        Page::AddMember(list) => return blocking(|| add_member(ctx, &list)),
        Page::RemoveMember(list) => return blocking(|| remove_member(ctx, &list)),
        Page::ReleaseExpiry(list) => return blocking(|| release_expiry(ctx, &list)),
        Page::Incidents => blocking(|| incidents_page(ctx)),
        Page::CreateIncident => return blocking(|| create_incident(ctx)),
        Page::Incident(id) => blocking(|| incident_page(ctx, &id)),
        Page::Respond(id) => return blocking(|| respond(ctx, &id)),
        Page::Directories => directories_page(ctx).await,
        Page::SyncDirectory(name) => return sync_directory(ctx, &name).await,
        Page::DataSets => blocking(|| data_sets_page(ctx)),
        Page::DataSet(name) => blocking(|| data_set_page(ctx, &name, None)),
        Page::TestQuery(name) => test_query(ctx, &name).await,
        Page::RefreshDataSet(name) => return refresh(ctx, &name).await,
        Page::AcceptRefresh(name) => return blocking(|| accept(ctx, &name)),
        Page::Policies => Ok(policies_page(ctx)),
        Page::Audit => blocking(|| audit_page(ctx)),
        Page::Gates => Ok(gates_page(ctx)),
    };
    match shown {
        Ok(body) => html(StatusCode::OK, body),
        Err(e) => failure(&e),
    }
}

/// The page for an operation's error: 404 for a thing that does not exist, 502 for a
/// directory that failed, 500 for warden's own failure.
fn failure(e: &OperationError) -> Response {
    let (status, title) = match e {
        OperationError::NoSuchList(_)
        | OperationError::NoSuchDataSet(_)
        | OperationError::NoSuchDirectory(_)
        | OperationError::NoSuchDatabase(_)
        | OperationError::NoSuchIncident(_)
        | OperationError::NoSuchReceipt(_)
        | OperationError::NoSuchKey(_) => (StatusCode::NOT_FOUND, "Not found"),
        OperationError::Invalid { .. }
        | OperationError::Records(_)
        | OperationError::Conflict(_)
        | OperationError::Rejected { .. } => (StatusCode::BAD_REQUEST, "Cannot do that"),
        OperationError::Upstream(_) => (StatusCode::BAD_GATEWAY, "A directory failed"),
        OperationError::Store(_) | OperationError::Warden(_) | OperationError::Internal(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "warden failed")
        }
    };
    problem_page(status, title, &e.to_string())
}

fn chrome(ctx: &Ctx<'_>, title: impl Into<String>, current: &str) -> Chrome {
    let identity = &ctx.session.identity;
    Chrome {
        title: title.into(),
        actor: identity.actor.clone(),
        csrf: ctx.session.csrf.clone(),
        flash: ctx.session.flash.clone(),
        nav: NAV
            .iter()
            .filter(|(_, _, scope)| identity.has(*scope))
            .map(|(href, label, _)| NavItem {
                href,
                label,
                current: *href == current,
            })
            .collect(),
    }
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A time (Unix seconds) as a person reads it: `2026-12-02 00:10:05 UTC`.
fn when(secs: i64) -> String {
    format_rfc3339(secs).replace('T', " ").replace('Z', " UTC")
}

fn when_ms(ms: i64) -> String {
    when(ms.div_euclid(1000))
}

fn list_href(list: &str) -> String {
    format!("/console/lists/{}", enc(list))
}

fn incident_href(text: &str) -> String {
    match parse_incident_ref(text) {
        Some(id) => format!("/console/incidents/{}", incident_ref(id)),
        None => String::new(),
    }
}

fn sign_out(ctx: &Ctx<'_>) -> Response {
    if let Err(e) = operations::console::signed_out(ctx.warden(), &ctx.actor()) {
        tracing::error!(error = %e, "cannot audit a console sign-out; signing out anyway");
    }
    ctx.gw.sessions.sign_out(&ctx.session);
    let mut resp = redirect("/console/sign-in");
    if let Ok(v) = HeaderValue::from_str(&super::session::clear_cookie(ctx.gw.is_tls())) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

// Lists ------------------------------------------------------------------------------------

fn lists_page(ctx: &Ctx<'_>) -> Shown {
    let lists = ctx.warden().store().lists()?;
    let config = ctx.warden().config();
    let rows = lists
        .into_iter()
        .map(|l| views::ListRow {
            groups: config
                .mappings
                .iter()
                .filter(|m| m.list == l.name)
                .map(|m| format!("{} (on {})", m.group_dn, m.directory))
                .collect(),
            href: list_href(&l.name),
            release_action: if l.expiry_hold.is_some() && ctx.session.identity.has(Scope::Admin) {
                format!("{}/release-expiry", list_href(&l.name))
            } else {
                String::new()
            },
            hold: l.expiry_hold.map_or_else(String::new, |h| {
                format!("held: {} of {} members due at once", h.due, h.active)
            }),
            name: l.name,
            description: l.description,
            members: l.members,
            expired: l.expired,
        })
        .collect();
    Ok(views::render(&views::Lists {
        chrome: chrome(ctx, "Lists", "/console/lists"),
        lists: rows,
    }))
}

/// The directory accounts each member was last pushed as, per mapping of the list.
fn resolved(ctx: &Ctx<'_>, list: &str, members: &[Member]) -> Read<Vec<Vec<String>>> {
    let config = ctx.warden().config();
    let mut out = vec![Vec::new(); members.len()];
    for mapping in config.mappings.iter().filter(|m| m.list == list) {
        let accounts = ctx
            .warden()
            .store()
            .pushed_accounts(list, &mapping.group_dn)?;
        for (m, shown) in members.iter().zip(out.iter_mut()) {
            match accounts.get(&m.account) {
                Some(a) => shown.push(format!(
                    "in {} (on {}) as {}",
                    mapping.group_dn, mapping.directory, a.dn
                )),
                None => shown.push(format!(
                    "not pushed to {} (on {}) yet",
                    mapping.group_dn, mapping.directory
                )),
            }
        }
    }
    Ok(out)
}

/// The console's page of the account `name` names.
pub(super) fn account_href(name: &str) -> String {
    format!("/console/accounts/{}", enc(name))
}

/// How an account was resolved, in words.
fn resolution(m: &Member) -> String {
    match m.resolution {
        Resolution::Directory => format!(
            "directory entry {}",
            m.dn.as_deref().unwrap_or("(DN unknown)")
        ),
        Resolution::Rules => "the domain rules".to_owned(),
        Resolution::Pending => "carried over; resolved at the next start".to_owned(),
        Resolution::Text => "kept as text: no rule or directory places it".to_owned(),
    }
}

fn member_row(m: Member, resolved: Vec<String>) -> views::MemberRow {
    let memberships = m
        .memberships
        .iter()
        .map(|s| views::MembershipRow {
            principal: s.principal.clone(),
            reason: s.reason.clone(),
            incident_href: s.incident.as_deref().map(incident_href).unwrap_or_default(),
            incident: s.incident.clone().unwrap_or_default(),
            added_by: s.added_by.clone(),
            added_at: when(s.added_at),
            expires: s.expires_at.map_or_else(|| "never".to_owned(), when),
        })
        .collect();
    views::MemberRow {
        account_href: account_href(&m.principal),
        names: m
            .names
            .iter()
            .filter(|n| **n != m.principal)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        resolution: resolution(&m),
        added_at: when(m.added_at),
        expires: match (&m.expiry_set_by, m.expires_at) {
            (_, None) => "never".to_owned(),
            (Some(by), Some(at)) => format!("{} (set by {by})", when(at)),
            (None, Some(at)) => when(at),
        },
        expired_at: m.expired_at.map(when).unwrap_or_default(),
        memberships,
        principal: m.principal,
        resolved,
    }
}

fn members_view(ctx: &Ctx<'_>, list: &str) -> Read<views::Members> {
    let store = ctx.warden().store();
    if !store.lists()?.iter().any(|l| l.name == list) {
        return Err(OperationError::NoSuchList(list.to_owned()));
    }
    let members = store.members(list)?;
    let resolved = resolved(ctx, list, &members)?;
    let (mut active, mut expired) = (Vec::new(), Vec::new());
    for (m, r) in members.into_iter().zip(resolved) {
        if m.is_active() {
            active.push(member_row(m, r));
        } else {
            expired.push(member_row(m, r));
        }
    }
    Ok(views::Members {
        list: list.to_owned(),
        live_href: format!("{}?fragment=members", list_href(list)),
        remove_action: format!("{}/remove", list_href(list)),
        csrf: ctx.session.csrf.clone(),
        active,
        expired,
    })
}

fn list_page(ctx: &Ctx<'_>, list: &str) -> Shown {
    let members = members_view(ctx, list)?;
    if ctx.query.get("fragment") == "members" {
        return Ok(views::render(&views::MembersFragment { members }));
    }
    Ok(views::render(&views::List {
        chrome: chrome(ctx, list, "/console/lists"),
        add_action: format!("{}/members", list_href(list)),
        members,
    }))
}

fn add_member(ctx: &Ctx<'_>, list: &str) -> Response {
    let f = &ctx.form;
    let req = MemberRequest {
        principal: f.get("principal").to_owned(),
        reason: f.get("reason").to_owned(),
        incident: f.optional("incident"),
        expires_at: None,
        expires_in: f.optional("expires_in"),
        added_by: None,
    };
    let done = lists::add_member(ctx.warden(), &ctx.actor(), list, &req).map(|d| {
        let how = match d.added {
            Added::New => "Added",
            Added::Again => "Already listed: added a membership to",
            Added::Reactivated => "Reactivated",
        };
        let typed = if d.member.principal == d.account.canonical {
            String::new()
        } else {
            format!(" (as {})", d.member.principal)
        };
        format!(
            "{how} {}{typed} on {list} (snapshot {}); the push to its directory groups follows.",
            d.account.canonical, d.snapshot_version
        )
    });
    ctx.done(&list_href(list), done)
}

fn remove_member(ctx: &Ctx<'_>, list: &str) -> Response {
    let principal = ctx.form.get("principal");
    let reason = ctx.form.get("reason");
    let done = lists::remove_member(ctx.warden(), &ctx.actor(), list, principal, reason);
    let flash = match done {
        Ok(Some(r)) => Flash {
            ok: true,
            text: format!(
                "Released {} from {list} ({} membership(s)); every name of the account is \
                 allowed again once the push to its groups follows.",
                r.principal, r.memberships
            ),
        },
        Ok(None) => Flash {
            ok: false,
            text: format!("{principal} names no member of {list}."),
        },
        Err(e) => Flash {
            ok: false,
            text: e.to_string(),
        },
    };
    ctx.after(&list_href(list), flash)
}

/// Applies a held expiry sweep (admin): the list's members past their expiry leave it now.
fn release_expiry(ctx: &Ctx<'_>, list: &str) -> Response {
    let done = lists::release_expiry_hold(ctx.warden(), &ctx.actor(), list).map(|gone| {
        format!(
            "Released the expiry sweep of {list}: {} member(s) past their expiry left it.",
            gone.len()
        )
    });
    ctx.done("/console/lists", done)
}

// Accounts ---------------------------------------------------------------------------------

/// One account's panel: every name, every membership and past release, the data-set rows
/// and policies that hold it, the decision for a service (`?service=`), and each
/// enforcement surface with the time the block landed there.
fn account_page(ctx: &Ctx<'_>, name: &str) -> Shown {
    let service = ctx.query.get("service");
    let service = (!service.is_empty() && service.len() <= TESTER_MAX).then_some(service);
    let p = operations::accounts::provenance(ctx.warden(), name, service)?;
    let membership = |m: &crate::store::Membership| views::MembershipRow {
        principal: m.principal.clone(),
        reason: m.reason.clone(),
        incident_href: m.incident.as_deref().map(incident_href).unwrap_or_default(),
        incident: m.incident.clone().unwrap_or_default(),
        added_by: format!("{} from {}", m.added_by, m.source.as_deref().unwrap_or("?")),
        added_at: when(m.added_at),
        expires: m.expires_at.map_or_else(|| "never".to_owned(), when),
    };
    let a = &p.account;
    let view = views::AccountPanel {
        chrome: chrome(ctx, a.canonical.clone(), "/console/lists"),
        canonical: a.canonical.clone(),
        key: a.key.clone(),
        resolution: match a.resolution {
            Resolution::Directory => format!(
                "the directory {}: {}",
                a.directory.as_deref().unwrap_or("?"),
                a.dn.as_deref().unwrap_or("(DN unknown)")
            ),
            Resolution::Rules => "the domain rules".to_owned(),
            Resolution::Pending => "carried over from an older store".to_owned(),
            Resolution::Text => "kept as text: no rule or directory places it".to_owned(),
        },
        names: a.names.join(", "),
        known: p.known,
        self_href: account_href(name),
        service: service.unwrap_or_default().to_owned(),
        decision: p.decision.as_ref().map_or_else(String::new, |d| {
            let why = if d.matched.is_empty() {
                String::new()
            } else {
                format!(" by {}", d.matched.join(", "))
            };
            format!("{} on {}: {}{why}", d.db_user, d.service, d.decision)
        }),
        listings: p
            .lists
            .iter()
            .map(|l| views::ListingRow {
                href: list_href(&l.list),
                list: l.list.clone(),
                state: format!("{:?}", l.state).to_lowercase(),
                since: when(l.added_at),
                expires: match (&l.expiry_set_by, l.expires_at) {
                    (_, None) => "never".to_owned(),
                    (Some(by), Some(at)) => format!("{} (set by {by})", when(at)),
                    (None, Some(at)) => when(at),
                },
                memberships: l.memberships.iter().map(membership).collect(),
            })
            .collect(),
        released: p
            .released
            .iter()
            .map(|m| views::ReleaseRow {
                list: m.list.clone(),
                membership: membership(m),
                released: format!(
                    "{} by {}: {}",
                    m.released_at.map(when).unwrap_or_default(),
                    m.released_by.as_deref().unwrap_or("?"),
                    m.release_reason.as_deref().unwrap_or("")
                ),
            })
            .collect(),
        rows: p
            .rows
            .iter()
            .map(|r| views::RowHoldRow {
                data_set: r.data_set.clone(),
                key: r.key.clone(),
                how: r.how.clone(),
            })
            .collect(),
        policies: p
            .policies
            .iter()
            .map(|h| views::PolicyHoldRow {
                policy: h.policy.clone(),
                action: format!("{} ({})", h.action, h.severity),
                services: h.services.join(", "),
                blocks: if h.blocks {
                    "blocks it".to_owned()
                } else if h.enabled {
                    "does not block".to_owned()
                } else {
                    "disabled".to_owned()
                },
            })
            .collect(),
        surfaces: p
            .surfaces
            .iter()
            .map(|s| views::SurfaceRow {
                surface: s.surface.as_str().to_owned(),
                target: s.target.clone(),
                state: s.state.clone(),
                since: s.since_ms.map(when_ms).unwrap_or_default(),
                detail: s.detail.clone(),
                now: match (s.holds_now, &s.note) {
                    (Some(true), _) => "the directory holds it now".to_owned(),
                    (Some(false), _) => "the directory does NOT hold it now".to_owned(),
                    (None, Some(n)) => n.clone(),
                    (None, None) => String::new(),
                },
            })
            .collect(),
    };
    Ok(views::render(&view))
}

// Incidents --------------------------------------------------------------------------------

fn lines(text: &str) -> Vec<String> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn incidents_page(ctx: &Ctx<'_>) -> Shown {
    let incidents = ctx.warden().store().incidents(INCIDENTS_SHOWN)?;
    let rows = incidents
        .into_iter()
        .map(|i| views::IncidentRow {
            id: incident_ref(i.id),
            href: format!("/console/incidents/{}", incident_ref(i.id)),
            title: i.title,
            severity: i.severity,
            users: i.users.join(", "),
            source: i.source,
            alert: i.alert_id.unwrap_or_default(),
            created: when(i.created_at),
            created_by: i.created_by,
        })
        .collect();
    let severities = [
        IncidentSeverity::Critical,
        IncidentSeverity::High,
        IncidentSeverity::Medium,
        IncidentSeverity::Low,
        IncidentSeverity::Informative,
    ]
    .map(|s| (s.as_str(), s == IncidentSeverity::High))
    .to_vec();
    Ok(views::render(&views::Incidents {
        chrome: chrome(ctx, "Incidents", "/console/incidents"),
        severities,
        incidents: rows,
    }))
}

fn create_incident(ctx: &Ctx<'_>) -> Response {
    let f = &ctx.form;
    let req = IncidentRequest {
        title: f.get("title").to_owned(),
        severity: f.get("severity").to_owned(),
        users: lines(f.get("users")),
        ips: lines(f.get("ips")),
        source: "console".to_owned(),
    };
    match incidents::create_incident(ctx.warden(), &ctx.actor(), &req) {
        Ok(i) => ctx.after(
            &format!("/console/incidents/{}", incident_ref(i.id)),
            Flash {
                ok: true,
                text: format!(
                    "Opened {}. Respond to put its users on a list.",
                    incident_ref(i.id)
                ),
            },
        ),
        Err(e) => ctx.done("/console/incidents", Err(e)),
    }
}

fn incident_id(text: &str) -> Read<i64> {
    parse_incident_ref(text).ok_or_else(|| {
        OperationError::invalid(
            "incident",
            format!("{text:?} is not an incident id (INC-17)"),
        )
    })
}

fn incident_page(ctx: &Ctx<'_>, text: &str) -> Shown {
    let id = incident_id(text)?;
    let i = incidents::read_incident(ctx.warden(), id)?;
    let lists = ctx
        .warden()
        .store()
        .lists()?
        .into_iter()
        .map(|l| l.name)
        .collect();
    let responses = i
        .responses
        .iter()
        .rev()
        .map(|r| views::ResponseRow {
            created: when(r.created_at),
            list: r.list.clone(),
            list_href: list_href(&r.list),
            principals: r.principals.join(", "),
            reason: r.reason.clone(),
            expires: r.expires_at.map_or_else(|| "never".to_owned(), when),
            created_by: r.created_by.clone(),
            rule: r.rule.clone().unwrap_or_else(|| "—".to_owned()),
        })
        .collect();
    Ok(views::render(&views::Incident {
        chrome: chrome(
            ctx,
            format!("{}: {}", incident_ref(i.id), i.title),
            "/console/incidents",
        ),
        id: incident_ref(i.id),
        severity: i.severity,
        source: i.source,
        alert: i.alert_id.unwrap_or_default(),
        created: when(i.created_at),
        created_by: i.created_by,
        users: i.users,
        ips: i.ips,
        lists,
        respond_action: format!("/console/incidents/{}/responses", incident_ref(i.id)),
        responses,
    }))
}

fn respond(ctx: &Ctx<'_>, text: &str) -> Response {
    let back = format!("/console/incidents/{}", enc(text));
    let id = match incident_id(text) {
        Ok(id) => id,
        Err(e) => return ctx.done(&back, Err(e)),
    };
    let f = &ctx.form;
    let list = f.get("list").to_owned();
    let req = ResponseRequest {
        list: list.clone(),
        users: Some(f.all("user")),
        reason: f.get("reason").to_owned(),
        expires_at: None,
        expires_in: f.optional("expires_in"),
    };
    let done = incidents::respond(ctx.warden(), &ctx.actor(), id, &req).map(|r| {
        format!(
            "Put {} on {list}; the push to its directory groups follows.",
            r.principals.join(", ")
        )
    });
    ctx.done(&back, done)
}

// Directories ------------------------------------------------------------------------------

fn status_reason(health: Health, updates: &[crate::store::RecentUpdate]) -> String {
    match health {
        Health::Unknown => "No push or pull has run yet.".to_owned(),
        Health::Ok => "The last runs succeeded and resolved every principal.".to_owned(),
        Health::Failing => format!(
            "The last run failed: {}",
            updates
                .first()
                .and_then(|u| u.error.as_deref())
                .unwrap_or("unknown error")
        ),
        Health::Degraded => match updates.iter().find_map(|u| u.error.as_deref()) {
            Some(e) => format!("The last run succeeded, but a recent one failed: {e}"),
            None => {
                let unresolved: HashSet<&str> = updates
                    .iter()
                    .flat_map(|u| u.unresolved.iter().map(String::as_str))
                    .collect();
                format!(
                    "Recent runs left {} principal(s) unresolved: {}",
                    unresolved.len(),
                    unresolved.into_iter().collect::<Vec<_>>().join(", ")
                )
            }
        },
    }
}

fn status_view(index: usize, s: crate::sync::DirectoryStatus) -> views::DirectoryStatus {
    let status = match s.status {
        Health::Unknown => "unknown",
        Health::Ok => "ok",
        Health::Degraded => "degraded",
        Health::Failing => "failing",
    };
    views::DirectoryStatus {
        id: format!("directory-status-{index}"),
        live_href: format!("/console/directories?fragment={}", enc(&s.directory)),
        status,
        reason: status_reason(s.status, &s.recent_updates),
        updates: s
            .recent_updates
            .into_iter()
            .map(|u| views::UpdateRow {
                when: when_ms(u.started_at_ms),
                kind: u.kind,
                target: u.target,
                added: u.added,
                removed: u.removed,
                unresolved: u.unresolved.join(", "),
                duration: format!("{} ms", u.duration_ms),
                error: u.error.unwrap_or_default(),
            })
            .collect(),
    }
}

async fn directories_page(ctx: &Ctx<'_>) -> Shown {
    let statuses = blocking(|| directories::statuses(ctx.warden(), RECENT_SHOWN))?;
    let query = &ctx.query;
    let fragment = query.get("fragment");
    if !fragment.is_empty() {
        let (index, status) = statuses
            .into_iter()
            .enumerate()
            .find(|(_, s)| s.directory == fragment)
            .ok_or_else(|| OperationError::NoSuchDirectory(fragment.to_owned()))?;
        return Ok(views::render(&views::DirectoryStatusFragment {
            state: status_view(index, status),
        }));
    }
    let checks = directories::check_mappings(ctx.warden()).await?;
    let directories = statuses
        .into_iter()
        .enumerate()
        .map(|(index, s)| {
            let mappings = checks
                .iter()
                .filter(|c| c.mapping.directory == s.directory)
                .map(|c| {
                    let (group_state, would_add, would_remove) = match &c.plan {
                        Ok(p) => (
                            "yes".to_owned(),
                            p.add.len().to_string(),
                            if p.first_sync {
                                format!("{} (first sync)", p.remove.len())
                            } else {
                                p.remove.len().to_string()
                            },
                        ),
                        Err(e) => (format!("cannot tell: {e}"), "—".into(), "—".into()),
                    };
                    views::MappingRow {
                        list: c.mapping.list.clone(),
                        group: c.mapping.group_dn.clone(),
                        group_state,
                        would_add,
                        would_remove,
                    }
                })
                .collect();
            views::DirectoryView {
                sync_action: format!("/console/directories/{}/sync", enc(&s.directory)),
                name: s.directory.clone(),
                url: s.url.clone(),
                mappings,
                state: status_view(index, s),
            }
        })
        .collect();
    Ok(views::render(&views::Directories {
        chrome: chrome(ctx, "Directories", "/console/directories"),
        directories,
    }))
}

async fn sync_directory(ctx: &Ctx<'_>, name: &str) -> Response {
    let done = directories::sync_now(ctx.warden(), &ctx.actor(), name)
        .await
        .and_then(|runs| {
            let failed: Vec<String> = runs
                .iter()
                .filter_map(|r| {
                    r.result
                        .as_ref()
                        .err()
                        .map(|e| format!("{}: {e}", r.mapping.list))
                })
                .collect();
            if !failed.is_empty() {
                return Err(OperationError::Upstream(format!(
                    "sync of {name} failed for {}",
                    failed.join("; ")
                )));
            }
            let (added, removed) = runs.iter().fold((0, 0), |(a, r), run| {
                (a + run.update.added, r + run.update.removed)
            });
            Ok(format!(
                "Synced {name}: {} mapping(s), {added} added, {removed} removed.",
                runs.len()
            ))
        });
    ctx.done("/console/directories", done)
}

// Data sets --------------------------------------------------------------------------------

fn data_set_href(name: &str) -> String {
    format!("/console/data-sets/{}", enc(name))
}

fn last_refresh_ms(ctx: &Ctx<'_>, name: &str) -> Option<u64> {
    ctx.warden()
        .metrics()
        .get::<SyncMetrics>()
        .last_refreshes()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, at)| at)
}

fn data_sets_page(ctx: &Ctx<'_>) -> Shown {
    let store = ctx.warden().store();
    let mut sets = Vec::new();
    for ds in &ctx.warden().config().data_sets {
        let current = ctx.warden().data_set(&ds.name);
        sets.push(views::DataSetRow {
            href: data_set_href(&ds.name),
            source: data_sets::source_kind(&ds.source),
            rows: current.as_ref().map_or(0, |d| d.len()),
            loaded: current.as_ref().is_some_and(|d| d.is_loaded()),
            held: store.held_refresh(&ds.name)?.is_some(),
            last_refresh: last_refresh_ms(ctx, &ds.name)
                .map_or_else(|| "not since start".to_owned(), |ms| when_ms(ms as i64)),
            name: ds.name.clone(),
        });
    }
    Ok(views::render(&views::DataSets {
        chrome: chrome(ctx, "Data sets", "/console/data-sets"),
        sets,
    }))
}

/// The keys of held Imperva `records` (`[{"column": value-or-values, …}]`) in `key` column.
fn held_keys(records: &str, key: &str, case_sensitive: bool) -> HashSet<String> {
    let fold = |s: &str| {
        if case_sensitive {
            s.to_owned()
        } else {
            s.to_lowercase()
        }
    };
    let parsed: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(records).unwrap_or_default();
    parsed
        .iter()
        .filter_map(|r| r.get(key))
        .flat_map(|v| match v {
            serde_json::Value::Array(vs) => {
                vs.iter().filter_map(|v| v.as_str()).map(fold).collect()
            }
            serde_json::Value::String(s) => vec![fold(s)],
            _ => Vec::new(),
        })
        .collect()
}

fn refresh_state(ctx: &Ctx<'_>, name: &str) -> Read<views::RefreshState> {
    let config = data_sets::data_set_config(ctx.warden(), name)?;
    let current = data_sets::current(ctx.warden(), name)?;
    let store = ctx.warden().store();
    let last_pull = match &config.source {
        Source::Ldap(l) => store
            .recent_updates(&l.directory, 50)?
            .into_iter()
            .find(|u| u.kind == "pull" && u.target == name),
        _ => None,
    };
    let (last_refresh, last_counts) = match (&last_pull, last_refresh_ms(ctx, name)) {
        (Some(u), _) => (
            when_ms(u.started_at_ms),
            match &u.error {
                Some(e) => format!("not applied ({} ms): {e}", u.duration_ms),
                None => format!(
                    "{} added, {} removed, {} rows now, in {} ms",
                    u.added,
                    u.removed,
                    current.len(),
                    u.duration_ms
                ),
            },
        ),
        (None, Some(ms)) => (when_ms(ms as i64), format!("{} rows now", current.len())),
        (None, None) => (
            "not since start".to_owned(),
            format!("{} rows now", current.len()),
        ),
    };
    let held = store.held_refresh(name)?.map(|h| {
        let schema = current.schema();
        let key = schema.key_column().name.clone();
        let kept = held_keys(&h.records, &key, schema.case_sensitive());
        let index = schema.key_index();
        let unblocked = current
            .rows()
            .iter()
            .filter_map(|row| row.get(index))
            .flat_map(|cell| cell.values().iter())
            .filter(|v| {
                let v = if schema.case_sensitive() {
                    v.to_string()
                } else {
                    v.to_lowercase()
                };
                !kept.contains(&v)
            })
            .map(|v| v.to_string())
            .collect();
        views::HeldView {
            id: h.id,
            current_rows: h.current_rows,
            new_rows: h.new_rows,
            reason: h.reason,
            held_at: when(h.held_at),
            unblocked,
        }
    });
    Ok(views::RefreshState {
        live_href: format!("{}?fragment=refresh", data_set_href(name)),
        last_refresh,
        last_counts,
        accept_action: format!("{}/accept", data_set_href(name)),
        csrf: ctx.session.csrf.clone(),
        held,
    })
}

fn data_set_page(ctx: &Ctx<'_>, name: &str, test: Option<views::TestView>) -> Shown {
    let refresh = refresh_state(ctx, name)?;
    let query = &ctx.query;
    if query.get("fragment") == "refresh" {
        return Ok(views::render(&views::RefreshFragment { refresh }));
    }
    let config = data_sets::data_set_config(ctx.warden(), name)?;
    let set = data_sets::current(ctx.warden(), name)?;
    let columns: Vec<String> = set
        .schema()
        .columns()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let search = query.get("q").to_owned();
    let needle = search.to_lowercase();
    // A row also matches when its key is the account the search names (as decisions compare
    // them): `alice@corp.example.test` finds the row `corp\alice`.
    let identity = &ctx.warden().config().identity;
    let account = identity.canonical(&search).to_lowercase();
    let matching: Vec<Vec<String>> = set
        .rows()
        .iter()
        .filter(|row| {
            needle.is_empty()
                || identity.canonical(set.key_of(row)).to_lowercase() == account
                || row
                    .iter()
                    .any(|c| c.values().join(", ").to_lowercase().contains(&needle))
        })
        .map(|row| {
            row.iter()
                .map(|c| c.values().join(", "))
                .collect::<Vec<_>>()
        })
        .collect();
    let pages = matching.len().div_ceil(PAGE_ROWS).max(1);
    let page = query
        .get("page")
        .parse::<usize>()
        .unwrap_or(1)
        .clamp(1, pages);
    let href = |p: usize| format!("{}?q={}&page={p}", data_set_href(name), enc(&search));
    let count = matching.len();
    let rows = matching
        .into_iter()
        .skip((page - 1) * PAGE_ROWS)
        .take(PAGE_ROWS)
        .collect();
    Ok(views::render(&views::DataSet {
        chrome: chrome(ctx, format!("Data set: {name}"), "/console/data-sets"),
        source: data_sets::source_kind(&config.source),
        ldap: matches!(config.source, Source::Ldap(_)),
        columns,
        rows,
        matching: count,
        total: set.len(),
        prev_href: if page > 1 {
            href(page - 1)
        } else {
            String::new()
        },
        next_href: if page < pages {
            href(page + 1)
        } else {
            String::new()
        },
        search,
        page,
        pages,
        refresh_action: format!("{}/refresh", data_set_href(name)),
        test_action: format!("{}/test-query", data_set_href(name)),
        test,
        refresh,
    }))
}

/// Runs the data set's query without applying it and shows the page with the sample.
async fn test_query(ctx: &Ctx<'_>, name: &str) -> Shown {
    let q = data_sets::test_query(ctx.warden(), name).await?;
    let sample = q
        .data_set
        .rows()
        .iter()
        .take(10)
        .map(|row| row.iter().map(|c| c.values().join(", ")).collect())
        .collect();
    let test = views::TestView {
        entries: q.entries,
        rows: q.data_set.len(),
        values_dropped: q.values_dropped,
        entries_skipped: q.entries_skipped,
        skipped: q.skipped.into_iter().map(|s| (s.dn, s.reason)).collect(),
        sample,
    };
    blocking(|| data_set_page(ctx, name, Some(test)))
}

async fn refresh(ctx: &Ctx<'_>, name: &str) -> Response {
    let done = data_sets::refresh(ctx.warden(), &ctx.actor(), name)
        .await
        .map(|outcome| match outcome {
            RefreshOutcome::Applied {
                rows,
                added,
                removed,
                ..
            } => format!("Refreshed {name}: {rows} rows ({added} added, {removed} removed)."),
            RefreshOutcome::Held {
                id,
                current_rows,
                new_rows,
                reason,
            } => format!(
                "The refresh of {name} is held ({reason}: {current_rows} → {new_rows} rows); \
                 review who it would unblock and accept hold {id} if it is right."
            ),
        });
    ctx.done(&data_set_href(name), done)
}

fn accept(ctx: &Ctx<'_>, name: &str) -> Response {
    let id = ctx.form.get("id");
    let done = data_sets::accept(ctx.warden(), &ctx.actor(), name, Some(id))
        .map(|rows| format!("Accepted hold {id}: {name} has {rows} rows."));
    ctx.done(&data_set_href(name), done)
}

// Policies, audit, gates -------------------------------------------------------------------

fn policies_page(ctx: &Ctx<'_>) -> String {
    let snapshot = ctx.warden().engine().load();
    let metrics = ctx.warden().decision_metrics();
    let policies = snapshot
        .policies()
        .iter()
        .map(|c| {
            let p = c.policy();
            views::PolicyRow {
                name: p.name.clone(),
                enabled: p.enabled,
                action: p.action.as_str(),
                severity: p.severity.as_str(),
                apply_to: p.apply_to.patterns().join(", "),
                criteria: p
                    .criteria
                    .iter()
                    .map(|k| {
                        format!(
                            "{} {} in {}",
                            k.field.as_str(),
                            k.operation.as_str(),
                            k.data_set
                        )
                    })
                    .collect(),
                matches: metrics.policy_matches(&p.name),
            }
        })
        .collect();
    let mut services: Vec<String> = snapshot
        .policies()
        .iter()
        .flat_map(|c| c.policy().apply_to.patterns().iter())
        .filter(|p| !p.contains(['*', '?']))
        .cloned()
        .chain(
            ctx.warden()
                .config()
                .gates
                .iter()
                .map(|g| g.service.clone()),
        )
        .collect();
    services.sort();
    services.dedup();
    let query = &ctx.query;
    let (principal, service) = (query.get("principal"), query.get("service"));
    let (mut error, mut tested) = (String::new(), None);
    if principal.len() > TESTER_MAX || service.len() > TESTER_MAX {
        error = format!("principal and service are at most {TESTER_MAX} bytes each");
    } else if !principal.is_empty() && !service.is_empty() {
        // The snapshot's own pure decision: a tester's question is not a database session, so
        // it neither counts as a decision nor triggers followed actions.
        let decision = snapshot.decide(&Request::new(service).db_user(principal));
        let account = ctx
            .warden()
            .config()
            .identity
            .canonical(principal)
            .into_owned();
        tested = Some(views::Tested {
            outcome: decision.outcome.as_str(),
            account_href: account_href(&account),
            account,
            matched: decision
                .matched
                .iter()
                .filter_map(|m| snapshot.policies().get(m.policy as usize))
                .map(|c| c.policy().name.clone())
                .collect(),
            snapshot_version: decision.snapshot_version,
        });
    }
    views::render(&views::Policies {
        chrome: chrome(ctx, "Policies", "/console/policies"),
        snapshot_version: snapshot.version(),
        policies,
        principal: principal.to_owned(),
        service: service.to_owned(),
        services,
        error,
        tested,
    })
}

fn time_field(name: &str, value: &str) -> Result<Option<i64>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    instant_or_ago(value, now_ms())
        .map(Some)
        .map_err(|e| format!("{name}: {e}"))
}

fn audit_page(ctx: &Ctx<'_>) -> Shown {
    let q = &ctx.query;
    let (actor, action, target) = (q.get("actor"), q.get("action"), q.get("target"));
    let (since, until, account) = (q.get("since"), q.get("until"), q.get("account"));
    let mut error = String::new();
    let mut filter = AuditFilter {
        actor: Some(actor.to_owned()).filter(|a| !a.is_empty()),
        action: Some(action.to_owned()).filter(|a| !a.is_empty()),
        ..AuditFilter::default()
    };
    if !account.is_empty() {
        // Any name of the account: the records about it, whichever name they were made under.
        filter.accounts = Some(operations::accounts::audit_keys(ctx.warden(), account)?);
    }
    match (time_field("since", since), time_field("until", until)) {
        (Ok(s), Ok(u)) => {
            // Without a start, the last day: the store reads oldest first, up to its cap.
            filter.since_ms = s.or(Some(now_ms() - 24 * 3600 * 1000));
            filter.until_ms = u;
        }
        (Err(e), _) | (_, Err(e)) => error = e,
    }
    let mut records = Vec::new();
    if error.is_empty() {
        // Refusals still in the aggregate are audited first, as `GET /v1/audit` does.
        if let Err(e) = ctx.warden().flush_denials() {
            tracing::error!(error = %e, "cannot audit refused requests; kept for the next flush");
        }
        records = ctx.warden().store().audit(&filter)?;
        // The store reads oldest first up to its cap: past it, the newest would be missing.
        if records.len() >= AUDIT_READ_MAX as usize {
            error = format!(
                "More than {AUDIT_READ_MAX} records match: these are the newest of the first \
                 {AUDIT_READ_MAX}. Narrow the time range (Since, Until) to see later ones."
            );
        }
    }
    let needle = target.to_lowercase();
    let records: Vec<views::AuditRow> = records
        .into_iter()
        .rev()
        .filter(|r| needle.is_empty() || r.target.to_lowercase().contains(&needle))
        .take(AUDIT_SHOWN)
        .map(|r| views::AuditRow {
            when: when_ms(r.at_ms),
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            source: r.source.unwrap_or_default(),
            detail: r.detail.to_string(),
        })
        .collect();
    Ok(views::render(&views::Audit {
        chrome: chrome(ctx, "Audit log", "/console/audit"),
        account: account.to_owned(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        since: since.to_owned(),
        until: until.to_owned(),
        error,
        shown: records.len(),
        records,
    }))
}

fn gates_page(ctx: &Ctx<'_>) -> String {
    let config = ctx.warden().config();
    let gates = config
        .gates
        .iter()
        .map(|g| views::GateView {
            name: g.name.clone(),
            listen: g.listen.to_string(),
            upstream: g.upstream.clone(),
            service: g.service.clone(),
            sessions: ctx
                .gw
                .sessions_open
                .open_sessions(&g.name)
                .into_iter()
                .map(|s| views::GateSession {
                    user: s.user,
                    database: s.database,
                    application: s.application.unwrap_or_default(),
                    client: s.client,
                    since: s.since.replace('T', " ").replace('Z', " UTC"),
                })
                .collect(),
        })
        .collect();
    if ctx.query.get("fragment") == "gates" {
        return views::render(&views::GatesFragment { gates });
    }
    views::render(&views::Gates {
        chrome: chrome(ctx, "Gates", "/console/gates"),
        gates,
    })
}
