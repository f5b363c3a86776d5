//! Operations and admin routes: readiness and metrics; device status and sync now; the
//! compiled policies; the audit log (JSON or JSON lines); API keys (create shows the key once,
//! list, revoke, rotate with an overlap window); configuration reload.

use std::fmt::Write;

use hyper::StatusCode;
use serde::Deserialize;

use super::problem::{Problem, parse_json};
use super::query::decode;
use super::{Call, Response, json, json_value, no_content, respond};
use crate::auth::{self, KeyError};
use crate::base::time::now;
use crate::base::time::parse_rfc3339;
use crate::metrics::{family, label, line};
use crate::runtime::ReloadError;
use crate::store::AuditFilter;
use crate::sync::{directory_statuses, push};

/// `GET /readyz`: 200 once a snapshot is loaded.
pub fn readyz(call: &Call<'_>) -> Result<Response, Problem> {
    let engine = call.warden().engine();
    if !engine.is_ready() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no snapshot has been loaded yet",
        ));
    }
    let body = format!(
        r#"{{"status":"ready","snapshot_version":{}}}"#,
        engine.load().version()
    );
    Ok(json(StatusCode::OK, body))
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
    let _ = writeln!(out, "# EOF");
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        out,
    )
}

/// `GET /v1/devices`
pub fn devices(call: &Call<'_>) -> Result<Response, Problem> {
    let statuses =
        directory_statuses(call.warden(), 10).map_err(|e| Problem::internal(e.to_string()))?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "devices": statuses }),
    ))
}

/// `POST /v1/devices/{name}/sync`: push every list mapped to the device now.
pub async fn sync_device(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    let device = call.warden().devices().get(name).cloned().ok_or_else(|| {
        Problem::not_found(format!(
            "no device named {name:?}; GET /v1/devices lists them"
        ))
    })?;
    let mappings: Vec<_> = call
        .warden()
        .config()
        .mappings
        .iter()
        .filter(|m| m.directory == name)
        .cloned()
        .collect();
    let mut runs = Vec::new();
    let mut failed = false;
    for mapping in &mappings {
        let (update, result) = push::run(&device, call.warden().store(), mapping).await;
        if result.is_err() {
            failed = true;
            call.warden().metrics().sync_failed(name);
        }
        runs.push(update);
    }
    let detail = serde_json::json!({ "runs": runs.len(), "failed": failed });
    call.audit(
        "devices.sync",
        name,
        if failed { "failed" } else { "ok" },
        detail,
    );
    let status = if failed {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    Ok(json_value(
        status,
        &serde_json::json!({ "device": name, "runs": runs }),
    ))
}

/// `GET /v1/policies`: the policies in the current snapshot.
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
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    parse_rfc3339(value)
        .map(|s| s.saturating_mul(1000))
        .map_err(|e| Problem::bad_request(format!("parameter {name:?}: {e} (RFC 3339 or Unix ms)")))
}

/// `GET /v1/audit?since=&until=&actor=&action=&limit=&format=jsonl`
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
                    "unknown parameter {k:?}={v:?}; expected since, until, actor, action, limit, format=json|jsonl"
                )));
            }
        }
    }
    let records = call
        .warden()
        .store()
        .audit(&filter)
        .map_err(|e| Problem::internal(e.to_string()))?;
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

fn key_problem(e: KeyError) -> Problem {
    match e {
        KeyError::NoSuchKey(_) => Problem::not_found(e.to_string()),
        KeyError::UnknownScope(_) | KeyError::NoScope | KeyError::NoName => {
            Problem::bad_request(e.to_string())
        }
        KeyError::Store(_) | KeyError::Random => Problem::internal(e.to_string()),
    }
}

fn reload_keys(call: &Call<'_>) -> Result<(), Problem> {
    call.warden()
        .keys()
        .reload(call.warden().store())
        .map_err(|e| Problem::internal(e.to_string()))
}

/// `GET /v1/keys`: records only, never a key or hash.
pub fn keys(call: &Call<'_>) -> Result<Response, Problem> {
    let keys = call
        .warden()
        .store()
        .keys()
        .map_err(|e| Problem::internal(e.to_string()))?;
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
    let scopes = auth::parse_scopes(&body.scopes).map_err(key_problem)?;
    let expires_at = crate::base::time::expiry(
        body.expires_at.as_deref(),
        body.expires_in.as_deref(),
        now(),
    )
    .map_err(|e| Problem::bad_request(format!("field `expires_at`/`expires_in`: {e}")))?;
    let new = auth::create_key(
        call.warden().store(),
        &body.name,
        &scopes,
        expires_at,
        &call.actor(),
        now(),
    )
    .map_err(key_problem)?;
    reload_keys(call)?;
    call.audit(
        "keys.create",
        &new.record.id,
        "ok",
        serde_json::json!({ "name": new.record.name, "scopes": new.record.scopes }),
    );
    Ok(json_value(
        StatusCode::CREATED,
        &serde_json::json!({ "key": new.key, "record": new.record }),
    ))
}

/// `DELETE /v1/keys/{id}` → 204.
pub fn revoke_key(call: &Call<'_>) -> Result<Response, Problem> {
    let id = call.param(0);
    let revoked = call
        .warden()
        .store()
        .revoke_key(id, now())
        .map_err(|e| Problem::internal(e.to_string()))?;
    if !revoked {
        return Err(Problem::not_found(format!(
            "no active API key with id {id:?}"
        )));
    }
    reload_keys(call)?;
    call.audit("keys.revoke", id, "ok", serde_json::json!({}));
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
    let id = call.param(0);
    let body: RotateBody = if call.body.is_empty() {
        RotateBody::default()
    } else {
        parse_json(&call.body)?
    };
    let overlap = match body.overlap.as_deref() {
        None => 3600,
        Some(text) => crate::base::time::parse_duration(text)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .map_err(|e| Problem::bad_request(format!("field `overlap`: {e}")))?,
    };
    let new = auth::rotate_key(call.warden().store(), id, overlap, &call.actor(), now())
        .map_err(key_problem)?;
    reload_keys(call)?;
    call.audit(
        "keys.rotate",
        id,
        "ok",
        serde_json::json!({ "new_id": new.record.id, "overlap_secs": overlap }),
    );
    Ok(json_value(
        StatusCode::CREATED,
        &serde_json::json!({ "key": new.key, "record": new.record, "old_key_expires_in_secs": overlap }),
    ))
}

/// `POST /v1/admin/reload`: read the configuration again and apply it atomically.
pub fn reload(call: &Call<'_>) -> Result<Response, Problem> {
    match call
        .warden()
        .reload_as(&call.actor(), &call.peer.to_string())
    {
        Ok(reloaded) => Ok(json_value(StatusCode::OK, &reloaded)),
        Err(ReloadError::Invalid(errors)) => {
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{} has {} problem(s); nothing was applied and the running configuration stays",
                    errors.origin,
                    errors.errors.len()
                ),
            );
            p.errors = errors.errors;
            Err(p)
        }
        Err(e @ ReloadError::Apply(_)) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{e}; nothing was applied and the running configuration stays"),
        )),
        Err(e @ ReloadError::NoSource) => Err(Problem::conflict(e.to_string())),
    }
}
