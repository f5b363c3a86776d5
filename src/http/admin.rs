//! Operations and admin routes: readiness and metrics; directory status and sync now; the
//! compiled policies; the audit log (JSON or JSON lines); API keys (create shows the key once,
//! list, revoke, rotate with an overlap window); configuration reload.

use std::fmt::Write;

use hyper::StatusCode;
use serde::Deserialize;

use super::problem::{Problem, parse_json};
use super::query::decode;
use super::{Call, Response, json_value, no_content, respond};
use crate::base::time::{instant_or_ago, now_ms};
use crate::metrics::{family, label, line};
use crate::operations::keys::{self, DEFAULT_ROTATE_OVERLAP, KeyRequest};
use crate::operations::{self, OperationError, databases, directories};
use crate::store::AuditFilter;

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
        }),
    ))
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

/// `GET /metrics`: counters, plus gauges read from the snapshot and the store now.
pub fn metrics(call: &Call<'_>) -> Response {
    let warden = call.warden();
    let mut out = String::with_capacity(4096);
    warden.metrics().render(&mut out);
    let snapshot = warden.engine().load();
    family(
        &mut out,
        "warden_snapshot_version",
        "gauge",
        "Version of the snapshot in use.",
    );
    line(&mut out, "warden_snapshot_version", "", snapshot.version());
    let store = warden.store();
    let newest = store.revision().max(snapshot.revision());
    for (name, help, value) in [
        (
            "warden_revision",
            "Store revision of the snapshot in use (equal on replicas for the same state).",
            snapshot.revision(),
        ),
        (
            "warden_revision_lag",
            "Revisions between the newest change known and the snapshot in use.",
            newest - snapshot.revision(),
        ),
        (
            "warden_leader",
            "1 if this replica runs the jobs that must run once, else 0.",
            i64::from(store.is_leader()),
        ),
        (
            "warden_store_up",
            "1 if the store answered its last statements, 0 if it is unreachable.",
            i64::from(store.health().is_up()),
        ),
    ] {
        family(&mut out, name, "gauge", help);
        line(&mut out, name, "", value);
    }
    family(
        &mut out,
        "warden_data_set_rows",
        "gauge",
        "Rows per data set.",
    );
    for ds in snapshot.data_sets() {
        let labels = format!("data_set=\"{}\"", label(ds.name()));
        line(&mut out, "warden_data_set_rows", &labels, ds.len());
    }
    family(
        &mut out,
        "warden_data_set_loaded",
        "gauge",
        "1 once a data set has loaded (from its source or persisted rows), 0 while unknown.",
    );
    for ds in snapshot.data_sets() {
        let labels = format!("data_set=\"{}\"", label(ds.name()));
        line(
            &mut out,
            "warden_data_set_loaded",
            &labels,
            u8::from(ds.is_loaded()),
        );
    }
    let refreshes = warden.metrics().last_refreshes();
    family(
        &mut out,
        "warden_data_set_last_refresh_timestamp_seconds",
        "gauge",
        "When each data set last applied a refresh.",
    );
    for (name, at_ms) in &refreshes {
        let labels = format!("data_set=\"{}\"", label(name));
        line(
            &mut out,
            "warden_data_set_last_refresh_timestamp_seconds",
            &labels,
            *at_ms as f64 / 1000.0,
        );
    }
    family(
        &mut out,
        "warden_data_set_refresh_age_seconds",
        "gauge",
        "Seconds since each data set last applied a refresh.",
    );
    let now_ms = crate::base::time::now_ms().max(0) as u64;
    for (name, at_ms) in &refreshes {
        let labels = format!("data_set=\"{}\"", label(name));
        let age = now_ms.saturating_sub(*at_ms) as f64 / 1000.0;
        line(
            &mut out,
            "warden_data_set_refresh_age_seconds",
            &labels,
            age,
        );
    }
    family(
        &mut out,
        "warden_held_refreshes",
        "gauge",
        "Refreshes held by the shrink guard, waiting to be accepted.",
    );
    let held = warden
        .config()
        .data_sets
        .iter()
        .filter(|ds| matches!(warden.store().held_refresh(&ds.name), Ok(Some(_))))
        .count();
    line(&mut out, "warden_held_refreshes", "", held);
    family(
        &mut out,
        "warden_held_expiry_sweeps",
        "gauge",
        "Lists whose expiry sweep is held (too many members due at once), waiting for release.",
    );
    let held = warden.store().expiry_holds().map_or(0, |h| h.len());
    line(&mut out, "warden_held_expiry_sweeps", "", held);
    let _ = writeln!(out, "# EOF");
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        out,
    )
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
/// `GET /v1/gates`: every configured PostgreSQL gate and its open sessions.
pub fn gates(call: &Call<'_>) -> Response {
    let config = call.warden().config();
    let gates: Vec<serde_json::Value> = config
        .gates
        .iter()
        .map(|g| {
            serde_json::json!({
                "name": g.name,
                "listen": g.listen.to_string(),
                "upstream": g.upstream,
                "service": g.service,
                "sessions": call.gates().open_sessions(&g.name),
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
