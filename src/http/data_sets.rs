//! Data-set routes: list the sets; rows as Imperva `records` JSON or CSV with an ETag; refresh,
//! test query and accept for `ldap` sets; and Imperva-compatible data writes for `api` sets
//! (POST replaces, PUT adds or deletes, DELETE clears) with Imperva's IMP error codes.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use serde::Deserialize;

use super::problem::{Problem, parse_json};
use super::{Call, Response, json_value, respond};
use crate::config::{DataSetConfig, Source};
use crate::directory::Directory;
use crate::model::dataset::{DataSet, DataSetBuilder, DataSetError, Record, fold, parse_records};
use crate::sync::pull;

const IMP_NO_SUCH_DATA_SET: &str = "IMP-10094";
const IMP_UNKNOWN_COLUMN: &str = "IMP-10095";
const IMP_KEY_MISSING: &str = "IMP-10096";
const IMP_DUPLICATE_KEY: &str = "IMP-10097";

fn source_kind(source: &Source) -> &'static str {
    match source {
        Source::List { .. } => "list",
        Source::Static { .. } => "static",
        Source::Ldap(_) => "ldap",
        Source::Api => "api",
    }
}

fn config(call: &Call<'_>, name: &str) -> Result<DataSetConfig, Problem> {
    call.warden()
        .config()
        .data_set(name)
        .cloned()
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no data set named {name:?}; GET /v1/data-sets lists them"
            ))
            .imp(IMP_NO_SUCH_DATA_SET)
        })
}

fn current(call: &Call<'_>, name: &str) -> Result<Arc<DataSet>, Problem> {
    config(call, name)?;
    call.warden()
        .data_set(name)
        .ok_or_else(|| Problem::internal(format!("data set {name:?} is configured but not loaded")))
}

/// `GET /v1/data-sets`
pub fn list(call: &Call<'_>) -> Result<Response, Problem> {
    let store = call.warden().store();
    let mut sets = Vec::new();
    for ds in &call.warden().config().data_sets {
        let rows = call.warden().data_set(&ds.name).map_or(0, |d| d.len());
        let held = store
            .held_refresh(&ds.name)
            .map_err(|e| Problem::internal(e.to_string()))?;
        sets.push(serde_json::json!({
            "name": ds.name,
            "source": source_kind(&ds.source),
            "case_sensitive": ds.schema.case_sensitive(),
            "columns": ds.schema.columns().iter().map(|c| serde_json::json!({"name": c.name, "key": c.key})).collect::<Vec<_>>(),
            "rows": rows,
            "held_refresh": held,
        }));
    }
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "data_sets": sets }),
    ))
}

fn wants_csv(call: &Call<'_>) -> bool {
    if call.query.split('&').any(|p| p == "format=csv") {
        return true;
    }
    call.headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv") && !a.contains("application/json"))
}

fn csv_field(value: &str, out: &mut String) {
    if value.contains([',', '"', '\n', '\r', ';']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// CSV with a header row; a multi-valued cell joins its values with `;` (quoted when needed).
fn write_csv(set: &DataSet) -> String {
    let mut out = String::new();
    let columns = set.schema().columns();
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&c.name, &mut out);
    }
    out.push_str("\r\n");
    for row in set.rows() {
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&cell.values().join(";"), &mut out);
        }
        out.push_str("\r\n");
    }
    out
}

/// `GET /v1/data-sets/{name}/rows`: JSON records or CSV, with an ETag from the rows'
/// fingerprint; `If-None-Match` with the current ETag answers 304.
pub fn rows(call: &Call<'_>) -> Result<Response, Problem> {
    let set = current(call, call.param(0))?;
    let csv = wants_csv(call);
    let etag = format!(
        "\"{:016x}{}\"",
        set.fingerprint(),
        if csv { "-csv" } else { "" }
    );
    let not_modified = call
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if not_modified {
        let mut r = respond(StatusCode::NOT_MODIFIED, "application/json", Vec::new());
        r.headers_mut().remove(header::CONTENT_TYPE);
        r
    } else if csv {
        respond(StatusCode::OK, "text/csv; charset=utf-8", write_csv(&set))
    } else {
        let mut body = Vec::with_capacity(64 + set.len() * 48);
        set.write_records_json(&mut body);
        respond(StatusCode::OK, "application/json", body)
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

fn ldap_device(call: &Call<'_>, name: &str) -> Result<(DataSetConfig, Arc<Directory>), Problem> {
    let ds = config(call, name)?;
    let Source::Ldap(source) = &ds.source else {
        return Err(Problem::conflict(format!(
            "data set {name:?} is filled from its {} source, not LDAP; only LDAP data sets refresh",
            source_kind(&ds.source)
        )));
    };
    let device = call
        .warden()
        .devices()
        .get(&source.directory)
        .cloned()
        .ok_or_else(|| {
            Problem::internal(format!(
                "directory {:?} is not configured",
                source.directory
            ))
        })?;
    Ok((ds, device))
}

/// `POST /v1/data-sets/{name}/refresh`: query now and apply (or hold).
pub async fn refresh(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    let (ds, device) = ldap_device(call, name)?;
    let (_, result) = pull::refresh(call.warden(), &device, &ds).await;
    match result {
        Ok(outcome) => {
            let detail = serde_json::to_value(&outcome).unwrap_or_default();
            call.audit("data_sets.refresh", name, "ok", detail);
            Ok(json_value(StatusCode::OK, &outcome))
        }
        Err(e) => {
            call.audit(
                "data_sets.refresh",
                name,
                "failed",
                serde_json::json!({ "error": e.to_string() }),
            );
            Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                format!("refresh failed; the last good rows stay: {e}"),
            ))
        }
    }
}

/// `POST /v1/data-sets/{name}/test-query`: run the query without applying it.
pub async fn test_query(call: &Call<'_>) -> Result<Response, Problem> {
    let (ds, device) = ldap_device(call, call.param(0))?;
    let q = pull::query(&device, &ds)
        .await
        .map_err(|e| Problem::new(StatusCode::BAD_GATEWAY, format!("test query failed: {e}")))?;
    Ok(json_value(StatusCode::OK, &q.report(10)))
}

/// `POST /v1/data-sets/{name}/accept`: apply a refresh the shrink guard held.
pub fn accept(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    ldap_device(call, name)?;
    match pull::accept(call.warden(), name) {
        Ok(Some(rows)) => {
            call.audit(
                "data_sets.accept",
                name,
                "ok",
                serde_json::json!({ "rows": rows }),
            );
            Ok(json_value(
                StatusCode::OK,
                &serde_json::json!({ "data_set": name, "rows": rows }),
            ))
        }
        Ok(None) => Err(Problem::conflict(format!("no refresh of {name:?} is held"))),
        Err(e) => Err(Problem::internal(e.to_string())),
    }
}

fn data_set_problem(e: DataSetError) -> Problem {
    let detail = e.to_string();
    match e {
        DataSetError::UnknownColumn(_) => Problem::bad_request(detail).imp(IMP_UNKNOWN_COLUMN),
        DataSetError::MissingKey(_) => Problem::bad_request(detail).imp(IMP_KEY_MISSING),
        DataSetError::DuplicateKey(_) => Problem::bad_request(detail).imp(IMP_DUPLICATE_KEY),
        _ => Problem::bad_request(detail),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum DataAction {
    Add,
    Delete,
}

#[derive(Deserialize)]
struct Incremental {
    action: DataAction,
}

fn records_of(body: &[u8]) -> Result<Vec<Record>, Problem> {
    parse_records(body).map_err(|e| Problem::bad_request(e.to_string()))
}

/// Validates records against the set's schema by building them alone (unknown column, missing
/// key, duplicate key within the request).
fn validated(set: &DataSet, records: Vec<Record>) -> Result<DataSet, Problem> {
    DataSet::from_records(set.name(), set.schema().clone(), records).map_err(data_set_problem)
}

/// `POST` (replace), `PUT` (`{"action":"add"|"delete","records":[…]}`) and `DELETE` (clear)
/// on `/v1/data-sets/{name}/data`, for `api` data sets.
pub fn write_data(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    let ds = config(call, name)?;
    if !matches!(ds.source, Source::Api) {
        return Err(Problem::conflict(format!(
            "data set {name:?} is filled from its {} source; only `api` data sets accept data",
            source_kind(&ds.source)
        )));
    }
    let set = current(call, name)?;
    let (action, next) = match *call.method {
        hyper::Method::POST => ("replace", validated(&set, records_of(&call.body)?)?),
        hyper::Method::DELETE => ("clear", DataSet::empty(name, set.schema().clone())),
        _ => {
            let Incremental { action } = parse_json(&call.body)?;
            let change = validated(&set, records_of(&call.body)?)?;
            match action {
                DataAction::Add => ("add", merge(&set, &change, true)?),
                DataAction::Delete => ("delete", merge(&set, &change, false)?),
            }
        }
    };
    let rows = next.len();
    call.warden()
        .commit_data_set(next)
        .map_err(|e| Problem::internal(e.to_string()))?;
    call.audit(
        &format!("data_sets.{action}"),
        name,
        "ok",
        serde_json::json!({ "rows": rows }),
    );
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "data_set": name, "action": action, "rows": rows }),
    ))
}

/// `set` with `change`'s rows added (replacing rows of the same key) or deleted by key.
fn merge(set: &DataSet, change: &DataSet, add: bool) -> Result<DataSet, Problem> {
    let cs = set.schema().case_sensitive();
    let changed: HashMap<String, usize> = change
        .rows()
        .iter()
        .enumerate()
        .map(|(i, row)| (fold(change.key_of(row), cs), i))
        .collect();
    let mut builder = DataSetBuilder::new(set.name(), set.schema().clone());
    for row in set.rows() {
        if !changed.contains_key(&fold(set.key_of(row), cs)) {
            builder.push(row.to_vec()).map_err(data_set_problem)?;
        }
    }
    if add {
        for row in change.rows() {
            builder.push(row.to_vec()).map_err(data_set_problem)?;
        }
    }
    Ok(builder.build())
}
