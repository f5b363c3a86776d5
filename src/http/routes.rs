//! The route table: every method and path the gateway answers, the scope each needs, and the
//! matcher that turns a request line into a route with its path parameters — or into a 404, or
//! a 405 naming the methods the path does accept. The OpenAPI document is checked against this
//! table by a test, so the two cannot drift.

use std::borrow::Cow;

use hyper::Method;
use smallvec::SmallVec;

use crate::auth::Scope;

/// What a route needs from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key (health, readiness, metrics, the API description).
    Public,
    /// A valid key, whatever its scopes (operational detail a caller with any key may see).
    AnyKey,
    /// A key with this scope (`admin` includes every scope).
    Key(Scope),
}

/// The handler a route dispatches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Healthz,
    Readyz,
    Metrics,
    Status,
    OpenApi,
    Decision,
    Authz,
    Decisions,
    Account,
    Lists,
    CreateList,
    Members,
    AddMember,
    RemoveMember,
    SetMemberExpiry,
    ReleaseExpiry,
    DataSets,
    DataSetRows,
    RefreshDataSet,
    TestQuery,
    AcceptRefresh,
    ReplaceData,
    UpdateData,
    ClearData,
    /// The MX Open API's data set routes (`/SecureSphere/api/v1/conf/dataSets…`); the data
    /// writes there are [`Handler::ReplaceData`], [`Handler::UpdateData`] and
    /// [`Handler::ClearData`].
    MxDataSets,
    MxCreateDataSet,
    MxColumns,
    MxRecords,
    Directories,
    /// `/v1/devices`: the deprecated alias of [`Handler::Directories`].
    Devices,
    SyncDirectory,
    Databases,
    SyncDatabase,
    Policies,
    Gates,
    Audit,
    DecisionLog,
    Reload,
    ImpervaStatus,
    ImpervaPush,
    Incidents,
    CreateIncident,
    Incident,
    Respond,
    Alert,
    Contain,
    Receipt,
    Release,
    Keys,
    CreateKey,
    RevokeKey,
    RotateKey,
}

/// One route: method, path pattern (`{name}` is one segment, a last `{*name}` the rest of the
/// path, one or more segments), access and handler.
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
}

const fn route(method: Method, path: &'static str, access: Access, handler: Handler) -> Route {
    Route {
        method,
        path,
        access,
        handler,
    }
}

const DECIDE: Access = Access::Key(Scope::Decide);
const RESPOND: Access = Access::Key(Scope::Respond);
const ADMIN: Access = Access::Key(Scope::Admin);

/// Every route the gateway answers.
pub static ROUTES: &[Route] = &[
    route(Method::GET, "/healthz", Access::Public, Handler::Healthz),
    route(Method::GET, "/readyz", Access::Public, Handler::Readyz),
    route(Method::GET, "/metrics", Access::Public, Handler::Metrics),
    // Role, revision and lag are operational detail: any key, not anyone.
    route(Method::GET, "/v1/status", Access::AnyKey, Handler::Status),
    route(
        Method::GET,
        "/v1/openapi.json",
        Access::Public,
        Handler::OpenApi,
    ),
    route(Method::GET, "/v1/decision", DECIDE, Handler::Decision),
    route(Method::GET, "/v1/authz", DECIDE, Handler::Authz),
    // The same, under any path: Envoy's HTTP ext_authz asks `path_prefix` followed by the
    // client's own path, which warden ignores (the decision reads the query only).
    route(Method::GET, "/v1/authz/{*path}", DECIDE, Handler::Authz),
    route(Method::POST, "/v1/decisions", DECIDE, Handler::Decisions),
    route(
        Method::GET,
        "/v1/accounts/{name}",
        RESPOND,
        Handler::Account,
    ),
    route(Method::GET, "/v1/lists", RESPOND, Handler::Lists),
    route(Method::POST, "/v1/lists", RESPOND, Handler::CreateList),
    route(
        Method::GET,
        "/v1/lists/{list}/members",
        RESPOND,
        Handler::Members,
    ),
    route(
        Method::POST,
        "/v1/lists/{list}/members",
        RESPOND,
        Handler::AddMember,
    ),
    route(
        Method::DELETE,
        "/v1/lists/{list}/members/{principal}",
        RESPOND,
        Handler::RemoveMember,
    ),
    route(
        Method::PATCH,
        "/v1/lists/{list}/members/{principal}",
        RESPOND,
        Handler::SetMemberExpiry,
    ),
    route(
        Method::POST,
        "/v1/lists/{list}/expiry/release",
        ADMIN,
        Handler::ReleaseExpiry,
    ),
    route(Method::GET, "/v1/incidents", RESPOND, Handler::Incidents),
    route(
        Method::POST,
        "/v1/incidents",
        RESPOND,
        Handler::CreateIncident,
    ),
    route(
        Method::GET,
        "/v1/incidents/{id}",
        RESPOND,
        Handler::Incident,
    ),
    route(
        Method::POST,
        "/v1/incidents/{id}/responses",
        RESPOND,
        Handler::Respond,
    ),
    route(Method::POST, "/v1/alerts", RESPOND, Handler::Alert),
    route(Method::POST, "/v1/contain", RESPOND, Handler::Contain),
    route(Method::GET, "/v1/contain/{id}", RESPOND, Handler::Receipt),
    route(Method::POST, "/v1/release", RESPOND, Handler::Release),
    route(Method::GET, "/v1/data-sets", ADMIN, Handler::DataSets),
    route(
        Method::GET,
        "/v1/data-sets/{name}/rows",
        ADMIN,
        Handler::DataSetRows,
    ),
    route(
        Method::POST,
        "/v1/data-sets/{name}/refresh",
        ADMIN,
        Handler::RefreshDataSet,
    ),
    route(
        Method::POST,
        "/v1/data-sets/{name}/test-query",
        ADMIN,
        Handler::TestQuery,
    ),
    route(
        Method::POST,
        "/v1/data-sets/{name}/accept",
        ADMIN,
        Handler::AcceptRefresh,
    ),
    route(
        Method::POST,
        "/v1/data-sets/{name}/data",
        ADMIN,
        Handler::ReplaceData,
    ),
    route(
        Method::PUT,
        "/v1/data-sets/{name}/data",
        ADMIN,
        Handler::UpdateData,
    ),
    route(
        Method::DELETE,
        "/v1/data-sets/{name}/data",
        ADMIN,
        Handler::ClearData,
    ),
    // The same data sets on the MX Open API's own paths, answered in the MX's shape
    // (`http::problem::MX_API`), so a script written for an MX can be pointed at warden.
    route(
        Method::GET,
        "/SecureSphere/api/v1/conf/dataSets",
        ADMIN,
        Handler::MxDataSets,
    ),
    route(
        Method::POST,
        "/SecureSphere/api/v1/conf/dataSets/createDataset",
        ADMIN,
        Handler::MxCreateDataSet,
    ),
    route(
        Method::GET,
        "/SecureSphere/api/v1/conf/dataSets/{name}/columns",
        ADMIN,
        Handler::MxColumns,
    ),
    route(
        Method::GET,
        "/SecureSphere/api/v1/conf/dataSets/{name}/data",
        ADMIN,
        Handler::MxRecords,
    ),
    route(
        Method::POST,
        "/SecureSphere/api/v1/conf/dataSets/{name}/data",
        ADMIN,
        Handler::ReplaceData,
    ),
    route(
        Method::PUT,
        "/SecureSphere/api/v1/conf/dataSets/{name}/data",
        ADMIN,
        Handler::UpdateData,
    ),
    route(
        Method::DELETE,
        "/SecureSphere/api/v1/conf/dataSets/{name}/data",
        ADMIN,
        Handler::ClearData,
    ),
    route(Method::GET, "/v1/directories", ADMIN, Handler::Directories),
    route(
        Method::POST,
        "/v1/directories/{name}/sync",
        ADMIN,
        Handler::SyncDirectory,
    ),
    // Deprecated spellings of the two above, kept for one release.
    route(Method::GET, "/v1/devices", ADMIN, Handler::Devices),
    route(
        Method::POST,
        "/v1/devices/{name}/sync",
        ADMIN,
        Handler::SyncDirectory,
    ),
    route(Method::GET, "/v1/databases", ADMIN, Handler::Databases),
    route(
        Method::POST,
        "/v1/databases/{name}/sync",
        ADMIN,
        Handler::SyncDatabase,
    ),
    route(Method::GET, "/v1/policies", ADMIN, Handler::Policies),
    route(Method::GET, "/v1/gates", ADMIN, Handler::Gates),
    route(Method::GET, "/v1/imperva", ADMIN, Handler::ImpervaStatus),
    route(
        Method::POST,
        "/v1/imperva/push",
        ADMIN,
        Handler::ImpervaPush,
    ),
    route(Method::GET, "/v1/audit", ADMIN, Handler::Audit),
    route(Method::GET, "/v1/decision-log", ADMIN, Handler::DecisionLog),
    route(Method::POST, "/v1/admin/reload", ADMIN, Handler::Reload),
    route(Method::GET, "/v1/keys", ADMIN, Handler::Keys),
    route(Method::POST, "/v1/keys", ADMIN, Handler::CreateKey),
    route(Method::DELETE, "/v1/keys/{id}", ADMIN, Handler::RevokeKey),
    route(
        Method::POST,
        "/v1/keys/{id}/rotate",
        ADMIN,
        Handler::RotateKey,
    ),
];

/// Path parameters, percent-decoded, in pattern order.
pub type Params = SmallVec<[Cow<'static, str>; 2]>;

/// What a request line matched.
#[derive(Debug)]
pub enum Matched {
    Route(&'static Route, Params),
    /// The path exists but not for this method; the value is the `Allow` header.
    WrongMethod(String),
    NotFound,
}

/// A path segment that is not valid percent-encoded UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSegment(pub String);

/// Decodes one path segment (`%XX` escapes; `+` is literal in paths).
pub(crate) fn decode_segment(raw: &str) -> Result<Cow<'static, str>, BadSegment> {
    if !raw.contains('%') {
        return Ok(Cow::Owned(raw.to_owned()));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|b| (*b as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err(BadSegment(raw.to_owned()));
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| BadSegment(raw.to_owned()))
}

fn match_path(pattern: &str, path: &str) -> Option<Result<Params, BadSegment>> {
    // A pattern without parameters matches its own text only: one comparison, no splitting
    // (the decision routes are such, and are asked most).
    if !pattern.as_bytes().contains(&b'{') {
        return (pattern == path).then(|| Ok(Params::new()));
    }
    let mut params = Params::new();
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(Ok(params)),
            // The rest of the path, kept raw (it is not a parameter any handler reads).
            (Some(w), Some(g)) if w.starts_with("{*") => {
                let rest: Vec<&str> = std::iter::once(g).chain(got.by_ref()).collect();
                if rest.iter().all(|s| s.is_empty()) {
                    return None;
                }
                params.push(Cow::Owned(rest.join("/")));
                return Some(Ok(params));
            }
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return None;
                }
                match decode_segment(g) {
                    Ok(v) => params.push(v),
                    Err(e) => return Some(Err(e)),
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// Finds the route for `method` and `path`. HEAD is answered as GET.
pub fn find(method: &Method, path: &str) -> Result<Matched, BadSegment> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let mut allow: Vec<&str> = Vec::new();
    for r in ROUTES {
        let Some(params) = match_path(r.path, path) else {
            continue;
        };
        let params = params?;
        if r.method == method {
            return Ok(Matched::Route(r, params));
        }
        allow.push(r.method.as_str());
    }
    if allow.is_empty() {
        return Ok(Matched::NotFound);
    }
    if allow.contains(&"GET") {
        allow.push("HEAD");
    }
    Ok(Matched::WrongMethod(allow.join(", ")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn handler(method: Method, path: &str) -> Option<(Handler, Vec<String>)> {
        match find(&method, path).unwrap() {
            Matched::Route(r, p) => {
                Some((r.handler, p.into_iter().map(|c| c.into_owned()).collect()))
            }
            _ => None,
        }
    }

    #[test]
    fn matches_routes_and_decodes_parameters() {
        assert_eq!(
            handler(Method::GET, "/v1/decision"),
            Some((Handler::Decision, vec![]))
        );
        assert_eq!(
            handler(Method::HEAD, "/healthz"),
            Some((Handler::Healthz, vec![]))
        );
        assert_eq!(
            handler(
                Method::DELETE,
                "/v1/lists/Suspicious%20Users/members/corp%5Calice"
            ),
            Some((
                Handler::RemoveMember,
                vec!["Suspicious Users".into(), "corp\\alice".into()]
            ))
        );
        assert_eq!(
            handler(Method::GET, "/v1/lists/a+b/members"),
            Some((Handler::Members, vec!["a+b".into()]))
        );
        // Envoy's ext_authz appends the client's path to /v1/authz.
        assert_eq!(
            handler(Method::GET, "/v1/authz/app/orders"),
            Some((Handler::Authz, vec!["app/orders".into()]))
        );
        assert_eq!(
            handler(Method::GET, "/v1/authz"),
            Some((Handler::Authz, vec![]))
        );
        assert_eq!(handler(Method::GET, "/v1/authz/"), None);
    }

    #[test]
    fn wrong_method_names_the_allowed_ones_and_unknown_is_not_found() {
        match find(&Method::DELETE, "/v1/lists").unwrap() {
            Matched::WrongMethod(allow) => assert_eq!(allow, "GET, POST, HEAD"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            find(&Method::GET, "/v1/nope").unwrap(),
            Matched::NotFound
        ));
        assert!(matches!(
            find(&Method::GET, "/v1/lists//members").unwrap(),
            Matched::NotFound
        ));
        assert!(find(&Method::GET, "/v1/lists/%ff/members").is_err());
    }
}

#[cfg(test)]
mod openapi {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use super::*;

    /// The served OpenAPI document names exactly the routes in the table, with their scopes.
    #[test]
    fn openapi_is_in_step_with_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(crate::http::OPENAPI).unwrap();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                let scope = op["x-scope"].as_str().unwrap_or("public").to_owned();
                documented.insert((method.to_uppercase(), path.clone(), scope));
            }
        }
        let routed: BTreeSet<_> = ROUTES
            .iter()
            .map(|r| {
                let scope = match r.access {
                    Access::Public => "public".to_owned(),
                    Access::AnyKey => "any".to_owned(),
                    Access::Key(s) => s.as_str().to_owned(),
                };
                (r.method.to_string(), r.path.to_owned(), scope)
            })
            .collect();
        assert_eq!(documented, routed);
    }
}
