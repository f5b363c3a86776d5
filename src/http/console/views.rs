//! What the console's templates show: one struct per page (askama, `templates/console/`,
//! escaped by default), built from the operations' and the store's read types into display
//! strings, so that the templates hold no logic beyond loops and conditions.

use askama::Template;

use super::session::Flash;

/// The frame every signed-in page has: title, navigation (only the pages the session may
/// open), who is signed in, the session's anti-CSRF token and the one-time message.
pub struct Chrome {
    pub title: String,
    pub actor: String,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub nav: Vec<NavItem>,
}

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// Renders a template; a failure (never expected: the templates are checked at compile time)
/// is a plain page saying so.
pub fn render(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render a console page");
        "<!doctype html><title>warden console</title><p>This page could not be rendered.".to_owned()
    })
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignIn<'a> {
    error: Option<&'a str>,
    /// Offer single sign-on.
    sso: bool,
}

pub fn sign_in_page(error: Option<&str>, sso: bool) -> String {
    render(&SignIn { error, sso })
}

#[derive(Template)]
#[template(path = "console/problem.html")]
struct Problem<'a> {
    title: &'a str,
    message: &'a str,
}

pub fn problem(title: &str, message: &str) -> String {
    render(&Problem { title, message })
}

#[derive(Template)]
#[template(path = "console/signed_in.html")]
struct SignedIn<'a> {
    location: &'a str,
}

/// After single sign-on: a page of the console's own that moves on to `location`.
pub fn signed_in(location: &str) -> String {
    render(&SignedIn { location })
}

pub struct ListRow {
    pub name: String,
    pub href: String,
    pub description: String,
    pub members: u64,
    pub expired: u64,
    pub hold: String,
    /// Where an admin releases the held expiry sweep; empty when nothing is held or the
    /// session is not an admin's.
    pub release_action: String,
    /// The groups the list is pushed to: `group DN (on directory)`.
    pub groups: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/lists.html")]
pub struct Lists {
    pub chrome: Chrome,
    pub lists: Vec<ListRow>,
}

/// One member: an account, and the memberships that hold it on the list.
pub struct MemberRow {
    /// The account's canonical name (or, kept as text, the text).
    pub principal: String,
    /// The account's panel (`/console/accounts/…`).
    pub account_href: String,
    /// The other names the account is known by.
    pub names: String,
    /// How the account was resolved: `directory corp-dc: CN=…`, `domain rules`, or
    /// `kept as text: no rule or directory places it`.
    pub resolution: String,
    pub added_at: String,
    pub expires: String,
    pub expired_at: String,
    /// Every membership: who put it here, when, why, for which incident, until when.
    pub memberships: Vec<MembershipRow>,
    /// The directory accounts it was last pushed as (`DN on directory`).
    pub resolved: Vec<String>,
}

pub struct MembershipRow {
    /// As typed.
    pub principal: String,
    pub reason: String,
    pub incident: String,
    pub incident_href: String,
    pub added_by: String,
    pub added_at: String,
    pub expires: String,
}

/// One account's panel (`/console/accounts/…`).
#[derive(Template)]
#[template(path = "console/account.html")]
pub struct AccountPanel {
    pub chrome: Chrome,
    pub canonical: String,
    pub key: String,
    pub resolution: String,
    pub names: String,
    /// Whether warden has the account (listed now or before).
    pub known: bool,
    pub self_href: String,
    pub service: String,
    /// The decision for `service`, in words; empty when no service was asked.
    pub decision: String,
    pub listings: Vec<ListingRow>,
    pub released: Vec<ReleaseRow>,
    pub rows: Vec<RowHoldRow>,
    pub policies: Vec<PolicyHoldRow>,
    pub surfaces: Vec<SurfaceRow>,
}

pub struct ListingRow {
    pub list: String,
    pub href: String,
    pub state: String,
    pub since: String,
    pub expires: String,
    pub memberships: Vec<MembershipRow>,
}

pub struct ReleaseRow {
    pub list: String,
    pub membership: MembershipRow,
    /// When, by whom, why.
    pub released: String,
}

pub struct RowHoldRow {
    pub data_set: String,
    pub key: String,
    pub how: String,
}

pub struct PolicyHoldRow {
    pub policy: String,
    pub action: String,
    pub services: String,
    pub blocks: String,
}

pub struct SurfaceRow {
    pub surface: String,
    pub target: String,
    pub state: String,
    pub since: String,
    pub detail: String,
    /// Asked live: whether the directory holds it now.
    pub now: String,
}

/// A list's members: on the list page, and alone as its live fragment.
pub struct Members {
    pub list: String,
    pub live_href: String,
    pub remove_action: String,
    pub csrf: String,
    pub active: Vec<MemberRow>,
    pub expired: Vec<MemberRow>,
}

#[derive(Template)]
#[template(path = "console/list.html")]
pub struct List {
    pub chrome: Chrome,
    pub add_action: String,
    pub members: Members,
}

#[derive(Template)]
#[template(path = "console/members.html")]
pub struct MembersFragment {
    pub members: Members,
}

pub struct IncidentRow {
    pub id: String,
    pub href: String,
    pub title: String,
    pub severity: String,
    pub users: String,
    pub source: String,
    pub alert: String,
    pub created: String,
    pub created_by: String,
}

#[derive(Template)]
#[template(path = "console/incidents.html")]
pub struct Incidents {
    pub chrome: Chrome,
    /// Each severity, and whether it is the form's default.
    pub severities: Vec<(&'static str, bool)>,
    pub incidents: Vec<IncidentRow>,
}

pub struct ResponseRow {
    pub created: String,
    pub list: String,
    pub list_href: String,
    pub principals: String,
    pub reason: String,
    pub expires: String,
    pub created_by: String,
    pub rule: String,
}

#[derive(Template)]
#[template(path = "console/incident.html")]
pub struct Incident {
    pub chrome: Chrome,
    pub id: String,
    pub severity: String,
    pub source: String,
    pub alert: String,
    pub created: String,
    pub created_by: String,
    pub users: Vec<String>,
    pub ips: Vec<String>,
    pub lists: Vec<String>,
    pub respond_action: String,
    pub responses: Vec<ResponseRow>,
}

pub struct MappingRow {
    pub list: String,
    pub group: String,
    pub group_state: String,
    pub would_add: String,
    pub would_remove: String,
}

pub struct UpdateRow {
    pub when: String,
    pub kind: String,
    pub target: String,
    pub added: i64,
    pub removed: i64,
    pub unresolved: String,
    pub duration: String,
    pub error: String,
}

/// A directory's status and recent updates: on the page, and alone as its live fragment.
pub struct DirectoryStatus {
    pub id: String,
    pub live_href: String,
    pub status: &'static str,
    pub reason: String,
    pub updates: Vec<UpdateRow>,
}

pub struct DirectoryView {
    pub name: String,
    pub url: String,
    pub sync_action: String,
    pub mappings: Vec<MappingRow>,
    pub state: DirectoryStatus,
}

#[derive(Template)]
#[template(path = "console/directories.html")]
pub struct Directories {
    pub chrome: Chrome,
    pub directories: Vec<DirectoryView>,
}

#[derive(Template)]
#[template(path = "console/directory_status.html")]
pub struct DirectoryStatusFragment {
    pub state: DirectoryStatus,
}

pub struct DataSetRow {
    pub name: String,
    pub href: String,
    pub source: &'static str,
    pub rows: usize,
    pub loaded: bool,
    pub held: bool,
    pub last_refresh: String,
}

#[derive(Template)]
#[template(path = "console/data_sets.html")]
pub struct DataSets {
    pub chrome: Chrome,
    pub sets: Vec<DataSetRow>,
}

pub struct HeldView {
    pub id: String,
    pub current_rows: i64,
    pub new_rows: i64,
    pub reason: String,
    pub held_at: String,
    /// Who the held refresh would unblock: keys now in the set and not in the held rows.
    pub unblocked: Vec<String>,
}

pub struct TestView {
    pub entries: usize,
    pub rows: usize,
    pub values_dropped: u64,
    pub entries_skipped: u64,
    pub skipped: Vec<(String, String)>,
    pub sample: Vec<Vec<String>>,
}

/// A data set's refresh state: the last refresh and a held one (live fragment).
pub struct RefreshState {
    pub live_href: String,
    pub last_refresh: String,
    pub last_counts: String,
    pub accept_action: String,
    pub csrf: String,
    pub held: Option<HeldView>,
}

#[derive(Template)]
#[template(path = "console/data_set.html")]
pub struct DataSet {
    pub chrome: Chrome,
    pub source: &'static str,
    pub ldap: bool,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub matching: usize,
    pub total: usize,
    pub search: String,
    pub page: usize,
    pub pages: usize,
    pub prev_href: String,
    pub next_href: String,
    pub refresh_action: String,
    pub test_action: String,
    pub test: Option<TestView>,
    pub refresh: RefreshState,
}

#[derive(Template)]
#[template(path = "console/refresh_state.html")]
pub struct RefreshFragment {
    pub refresh: RefreshState,
}

pub struct PolicyRow {
    pub name: String,
    pub enabled: bool,
    pub action: &'static str,
    pub severity: &'static str,
    pub apply_to: String,
    pub criteria: Vec<String>,
    pub matches: u64,
}

pub struct Tested {
    pub outcome: &'static str,
    /// The account name the principal was compared as, and its panel.
    pub account: String,
    pub account_href: String,
    pub matched: Vec<String>,
    pub snapshot_version: u64,
}

#[derive(Template)]
#[template(path = "console/policies.html")]
pub struct Policies {
    pub chrome: Chrome,
    pub snapshot_version: u64,
    pub policies: Vec<PolicyRow>,
    pub principal: String,
    pub service: String,
    pub services: Vec<String>,
    pub error: String,
    pub tested: Option<Tested>,
}

pub struct AuditRow {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub source: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct Audit {
    pub chrome: Chrome,
    /// Any name of an account: the records about it.
    pub account: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub since: String,
    pub until: String,
    pub error: String,
    pub shown: usize,
    pub records: Vec<AuditRow>,
}

pub struct GateSession {
    pub user: String,
    pub database: String,
    pub application: String,
    pub client: String,
    pub since: String,
}

pub struct GateView {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub service: String,
    pub sessions: Vec<GateSession>,
}

#[derive(Template)]
#[template(path = "console/gates.html")]
pub struct Gates {
    pub chrome: Chrome,
    pub gates: Vec<GateView>,
}

#[derive(Template)]
#[template(path = "console/gate_sessions.html")]
pub struct GatesFragment {
    pub gates: Vec<GateView>,
}
