//! Operations and admin routes: readiness and metrics; directory status and sync now; the
//! compiled policies; the audit log (JSON or JSON lines); API keys (create shows the key once,
//! list, revoke, rotate with an overlap window); configuration reload.

use std::sync::atomic::{AtomicU64, Ordering};

use hyper::StatusCode;
use serde::Deserialize;

use super::problem::{Problem, parse_json};
use super::query::decode;
use super::{Call, Response, json_value, no_content, respond};
use crate::base::time::{instant_or_ago, now_ms};
use crate::front::GateMetrics;
use crate::front::listener::ConnectionDrop;
use crate::metrics::{Collect, CounterMap, Desc, Exposition, Registry, Slot, Slots};
use crate::operations::keys::{self, DEFAULT_ROTATE_OVERLAP, KeyRequest};
use crate::operations::{self, ExpiryMetrics, OperationError, databases, directories};
use crate::services::followed_actions::FollowedActionMetrics;
use crate::services::replica::ChangeFeedMetrics;
use crate::store::AuditFilter;
use crate::sync::SyncMetrics;

/// `GET /readyz`: 200 once a snapshot is loaded and every data set an enabled policy reads
/// has loaded once (from its source or persisted last good rows); 503 naming the data sets
/// it waits for until then. Lists the background services and whether each has done its
/// work once.
pub fn readyz(call: &Call<'_>) -> Result<Response, Problem> {
    let engine = call.warden().engine();
    if !engine.is_ready() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no snapshot has been loaded yet",
        ));
    }
    let snapshot = engine.load();
    let waiting = snapshot.waiting_for();
    if !waiting.is_empty() {
        let quoted: Vec<String> = waiting.iter().map(|n| format!("{n:?}")).collect();
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "waiting for data set {} to load once (from its source or persisted last good \
                 rows); until then decisions it could change answer errors",
                quoted.join(", ")
            ),
        )
        .with("waiting_for", serde_json::json!(waiting))
        .with("snapshot_version", serde_json::json!(snapshot.version()))
        .with("services", serde_json::json!(call.gw.services.states())));
    }
    // A replica whose store is down keeps deciding from its last snapshot: degraded, not
    // unready (a load balancer keeps it in).
    let status = if call.warden().store().health().is_up() {
        "ready"
    } else {
        "degraded"
    };
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({
            "status": status,
            "snapshot_version": engine.load().version(),
            "store": replica(call.warden()),
            "services": call.gw.services.states(),
            "events": events_status(call.warden()),
        }),
    ))
}

/// The SIEM sinks (queued, dropped, connected) and the decision log's drops, for `/readyz`.
fn events_status(warden: &crate::runtime::Warden) -> serde_json::Value {
    let log = warden.decisions().stats();
    serde_json::json!({
        "sinks": warden.events().statuses(),
        "decision_log": {
            "written": log.written.load(std::sync::atomic::Ordering::Relaxed),
            "dropped": log.dropped.load(std::sync::atomic::Ordering::Relaxed),
            "write_errors": log.write_errors.load(std::sync::atomic::Ordering::Relaxed),
        },
    })
}

/// `GET /v1/status`: this replica's store (backend, up or down), the revision its snapshot
/// is at, the newest revision it knows of, the lag between them, and leader or follower.
pub fn replica(warden: &crate::runtime::Warden) -> serde_json::Value {
    let store = warden.store();
    let revision = warden.engine().load().revision();
    let newest = store.revision().max(revision);
    serde_json::json!({
        "backend": if store.is_shared() { "postgresql" } else { "sqlite" },
        "store": if store.health().is_up() { "up" } else { "down" },
        "role": if store.is_leader() { "leader" } else { "follower" },
        "revision": revision,
        "newest_revision": newest,
        "lag": newest - revision,
    })
}

/// `GET /metrics`: every subsystem's registered families, then the gauges of the snapshot and
/// the store as they are now.
pub fn metrics(call: &Call<'_>) -> Response {
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        call.warden().render_metrics(),
    )
}

/// Registers the metrics of every subsystem `/metrics` shows, so that each family is listed
/// before its first sample (the runtime's are registered with the warden).
pub fn register_metrics(registry: &Registry) {
    registry.register::<HttpMetrics>();
    registry.register::<SyncMetrics>();
    registry.register::<FollowedActionMetrics>();
    registry.register::<GateMetrics>();
    registry.register::<ExpiryMetrics>();
    registry.register::<ChangeFeedMetrics>();
}

static REQUESTS: Desc = Desc::counter(
    "warden_http_requests_total",
    "HTTP responses by route and status.",
);
static CONNECTIONS_OPEN: Desc = Desc::gauge(
    "warden_http_connections_open",
    "Connections the HTTP listener holds open.",
);
static CONNECTIONS_DROPPED: Desc = Desc::counter(
    "warden_http_connections_dropped_total",
    "Connections the HTTP listener dropped on its own, by reason (the setting).",
);

/// The gateway's responses, by route and status, and its listener's connections: open now,
/// and dropped by reason (every reason listed, at zero too).
pub struct HttpMetrics {
    requests: CounterMap<(&'static str, u16)>,
    connections_opened: AtomicU64,
    connections_closed: AtomicU64,
    connections_dropped: Slots<ConnectionDrop>,
}

impl Default for HttpMetrics {
    fn default() -> HttpMetrics {
        HttpMetrics {
            requests: CounterMap::new(&REQUESTS, &["route", "status"]),
            connections_opened: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            connections_dropped: Slots::new(&CONNECTIONS_DROPPED, true),
        }
    }
}

impl Collect for HttpMetrics {
    fn collect(&self, out: &mut Exposition<'_>) {
        self.requests.collect(out);
        out.family(&CONNECTIONS_OPEN);
        out.sample(CONNECTIONS_OPEN.name, &[], self.connections_open());
        self.connections_dropped.collect(out);
    }
}

impl HttpMetrics {
    /// One HTTP response on `route` (the route's pattern, not the raw path).
    pub fn response(&self, route: &'static str, status: u16) {
        self.requests.inc((route, status));
    }

    /// The listener took a connection (counted closed when [`HttpMetrics::connection_closed`]).
    pub fn connection_opened(&self) {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_closed.fetch_add(1, Ordering::Relaxed);
    }

    /// The listener dropped a connection on its own.
    pub fn connection_dropped(&self, why: ConnectionDrop) {
        self.connections_dropped.inc(why);
    }

    /// Connections open now.
    fn connections_open(&self) -> u64 {
        let closed = self.connections_closed.load(Ordering::Relaxed);
        self.connections_opened
            .load(Ordering::Relaxed)
            .saturating_sub(closed)
    }
}

impl Slot for ConnectionDrop {
    const ALL: &'static [ConnectionDrop] = &ConnectionDrop::ALL;
    const LABEL: &'static str = "reason";
    fn slot(self) -> usize {
        self as usize
    }
    fn label(self) -> &'static str {
        self.as_str()
    }
}

/// `GET /v1/directories` (and its deprecated alias `GET /v1/devices`, which names the list
/// `devices`).
pub fn directories(call: &Call<'_>, key: &str) -> Result<Response, Problem> {
    let statuses = directories::statuses(call.warden(), 10)?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ key: statuses }),
    ))
}

/// `POST /v1/directories/{name}/sync`: push every list mapped to the directory now.
pub async fn sync_directory(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    let runs = directories::sync_now(call.warden(), &call.actor(), name).await?;
    let status = if runs.iter().any(|r| r.result.is_err()) {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    let updates: Vec<_> = runs.into_iter().map(|r| r.update).collect();
    Ok(json_value(
        status,
        &serde_json::json!({ "directory": name, "runs": updates }),
    ))
}

/// `GET /v1/databases`: every database of the agentless mode, its health and recent runs.
pub fn databases(call: &Call<'_>) -> Result<Response, Problem> {
    let statuses = databases::statuses(call.warden(), 10)?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "databases": statuses }),
    ))
}

/// `POST /v1/databases/{name}/sync`: reconcile every role mapped on the database now.
pub async fn sync_database(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    let runs = databases::sync_now(call.warden(), &call.actor(), name).await?;
    let status = if runs.iter().any(|r| r.result.is_err()) {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    let runs: Vec<_> = runs
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "list": r.mapping.list,
                "role": r.mapping.role,
                "update": r.update,
                "terminated": r.result.as_ref().map_or(0, |r| r.terminated),
            })
        })
        .collect();
    Ok(json_value(
        status,
        &serde_json::json!({ "database": name, "runs": runs }),
    ))
}

/// `GET /v1/policies`: the policies in the current snapshot.
/// `GET /v1/gates`: every configured gate (PostgreSQL or MySQL) and its open sessions.
pub fn gates(call: &Call<'_>) -> Response {
    let config = call.warden().config();
    let gates: Vec<serde_json::Value> = config
        .gates
        .iter()
        .map(|g| {
            serde_json::json!({
                "name": g.name,
                "listen": g.listen.to_string(),
                "protocol": g.protocol.as_str(),
                "upstream": g.upstream,
                "service": g.service,
                "sessions": call.gate_sessions().open_sessions(&g.name),
            })
        })
        .collect();
    json_value(StatusCode::OK, &serde_json::json!({ "gates": gates }))
}

pub fn policies(call: &Call<'_>) -> Response {
    let snapshot = call.warden().engine().load();
    let policies: Vec<serde_json::Value> = snapshot
        .policies()
        .iter()
        .map(|c| {
            let p = c.policy();
            serde_json::json!({
                "name": p.name,
                "enabled": p.enabled,
                "action": p.action.as_str(),
                "severity": p.severity.as_str(),
                "followed_action": p.followed_action,
                "apply_to": p.apply_to.patterns(),
                "criteria": p.criteria.iter().map(|k| serde_json::json!({
                    "field": k.field.as_str(),
                    "operation": k.operation.as_str(),
                    "data_set": k.data_set,
                    "search_in": k.search_in,
                    "handle_unknown_values": k.handle_unknown_values.as_str(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json_value(
        StatusCode::OK,
        &serde_json::json!({ "snapshot_version": snapshot.version(), "policies": policies }),
    )
}

fn time_param(name: &str, value: &str) -> Result<i64, Problem> {
    instant_or_ago(value, now_ms())
        .map_err(|e| Problem::bad_request(format!("parameter {name:?}: {e}")))
}

/// `GET /v1/audit?since=&until=&actor=&action=&account=&limit=&format=jsonl`: `since` and
/// `until` take a time or a duration ago (`1h`), `actor` part of a name, `account` any name
/// of an account (the records about it, whichever name they were written under).
pub fn audit_log(call: &Call<'_>) -> Result<Response, Problem> {
    let mut filter = AuditFilter::default();
    let mut jsonl = false;
    for pair in call.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v =
            decode(v).map_err(|_| Problem::bad_request(format!("parameter {k:?}: bad escape")))?;
        match k {
            "since" => filter.since_ms = Some(time_param(k, &v)?),
            "until" => filter.until_ms = Some(time_param(k, &v)?),
            "actor" => filter.actor = Some(v.into_owned()),
            "action" => filter.action = Some(v.into_owned()),
            "account" => {
                filter.accounts = Some(crate::operations::accounts::audit_keys(call.warden(), &v)?)
            }
            "limit" => {
                filter.limit = Some(
                    v.parse()
                        .map_err(|_| Problem::bad_request("parameter \"limit\": a whole number"))?,
                )
            }
            "format" if v == "jsonl" => jsonl = true,
            "format" if v == "json" => {}
            _ => {
                return Err(Problem::bad_request(format!(
                    "unknown parameter {k:?}={v:?}; expected since, until, actor, action, account, limit, format=json|jsonl"
                )));
            }
        }
    }
    // Refusals still in the aggregate are audited first, so a reader sees every one so far.
    if let Err(e) = call.warden().flush_denials() {
        tracing::error!(error = %e, "cannot audit refused requests; kept for the next flush");
    }
    let records = call
        .warden()
        .store()
        .audit(&filter)
        .map_err(OperationError::from)?;
    if jsonl {
        let mut out = String::new();
        for r in &records {
            out.push_str(&serde_json::to_string(r).unwrap_or_default());
            out.push('\n');
        }
        return Ok(respond(StatusCode::OK, "application/jsonl", out));
    }
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "records": records }),
    ))
}

/// Most decision records one read returns.
const DECISION_LOG_READ_MAX: usize = 10_000;

/// `GET /v1/decision-log?principal=&since=&until=&service=&decision=&limit=`: the recorded
/// decisions, oldest first; `principal` matches any spelling of the account.
pub fn decision_log(call: &Call<'_>) -> Result<Response, Problem> {
    let mut q = crate::events::decision_log::Query {
        limit: 1000,
        ..Default::default()
    };
    let mut principal = None;
    for pair in call.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v =
            decode(v).map_err(|_| Problem::bad_request(format!("parameter {k:?}: bad escape")))?;
        match k {
            "principal" => principal = Some(v.into_owned()),
            "since" => q.since_ms = Some(time_param(k, &v)?),
            "until" => q.until_ms = Some(time_param(k, &v)?),
            "service" => q.service = Some(v.into_owned()),
            "decision" if matches!(&*v, "allow" | "block" | "error") => {
                q.decision = Some(v.into_owned());
            }
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .map_err(|_| Problem::bad_request("parameter \"limit\": a whole number"))?
                    .min(DECISION_LOG_READ_MAX);
            }
            _ => {
                return Err(Problem::bad_request(format!(
                    "unknown parameter {k:?}={v:?}; expected principal, since, until, service, \
                     decision=allow|block|error, limit"
                )));
            }
        }
    }
    let config = call.warden().config().clone();
    if !config.decision_log.enabled {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "the decision log is off ([decision_log] enabled = false)",
        ));
    }
    let (decisions, more) =
        crate::events::decision_log::query_config(&config, principal.as_deref(), &q).map_err(
            |e| {
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot read the decision log: {e}"),
                )
            },
        )?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "decisions": decisions, "truncated": more }),
    ))
}

/// `GET /v1/keys`: records only, never a key or hash.
pub fn keys(call: &Call<'_>) -> Result<Response, Problem> {
    let keys = call.warden().store().keys().map_err(OperationError::from)?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "keys": keys }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    expires_in: Option<String>,
}

/// `POST /v1/keys` → 201 with the key, shown this once.
pub fn create_key(call: &Call<'_>) -> Result<Response, Problem> {
    let body: NewKeyBody = parse_json(&call.body)?;
    let req = KeyRequest {
        name: body.name,
        scopes: body.scopes,
        expires_at: body.expires_at,
        expires_in: body.expires_in,
    };
    let new = keys::create_key(call.warden(), &call.actor(), &req)?;
    Ok(json_value(
        StatusCode::CREATED,
        &serde_json::json!({ "key": new.key, "record": new.record }),
    ))
}

/// `DELETE /v1/keys/{id}` → 204.
pub fn revoke_key(call: &Call<'_>) -> Result<Response, Problem> {
    keys::revoke_key(call.warden(), &call.actor(), call.param(0))?;
    Ok(no_content())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the old key keeps working, e.g. `1h` (default 1 hour).
    #[serde(default)]
    overlap: Option<String>,
}

/// `POST /v1/keys/{id}/rotate` → 201 with the new key; the old one expires after the overlap.
pub fn rotate_key(call: &Call<'_>) -> Result<Response, Problem> {
    let body: RotateBody = if call.body.is_empty() {
        RotateBody::default()
    } else {
        parse_json(&call.body)?
    };
    let overlap = body.overlap.as_deref().unwrap_or(DEFAULT_ROTATE_OVERLAP);
    let (new, overlap) = keys::rotate_key(call.warden(), &call.actor(), call.param(0), overlap)?;
    Ok(json_value(
        StatusCode::CREATED,
        &serde_json::json!({ "key": new.key, "record": new.record, "old_key_expires_in_secs": overlap }),
    ))
}

/// `POST /v1/admin/reload`: read the configuration again and apply it atomically.
pub fn reload(call: &Call<'_>) -> Result<Response, Problem> {
    let reloaded = operations::config::reload(call.warden(), &call.actor())?;
    Ok(json_value(StatusCode::OK, &reloaded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_render_open_and_every_drop_reason() {
        let registry = Registry::default();
        let m = registry.get::<HttpMetrics>();
        for _ in 0..3 {
            m.connection_opened();
        }
        m.connection_closed();
        m.connection_dropped(ConnectionDrop::WriteTimeout);
        m.connection_dropped(ConnectionDrop::WriteTimeout);
        let out = registry.render(|_| {});
        assert!(out.contains("warden_http_connections_open 2"), "{out}");
        let dropped = "warden_http_connections_dropped_total";
        assert!(out.contains(&format!("{dropped}{{reason=\"write_timeout\"}} 2")));
        for zero in [
            "max_connections_per_client",
            "idle_timeout",
            "header_read_timeout",
        ] {
            assert!(
                out.contains(&format!("{dropped}{{reason=\"{zero}\"}} 0")),
                "{zero}"
            );
        }
    }
}
