//! Data-set routes: list the sets; rows as Imperva `records` JSON or CSV with an ETag; refresh,
//! test query and accept for `ldap` sets; and Imperva-style data writes for `api` sets (POST
//! replaces, PUT adds — `overwrite` as on the MX — or deletes, DELETE clears) with the IMP
//! code the MX gives each mistake, served under `/v1/data-sets/{name}/data` and under the MX's
//! own path (`/SecureSphere/api/v1/conf/dataSets/{name}/data`, errors in the MX's shape). The
//! work is [`crate::operations::data_sets`]'s.

use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::problem::{Problem, parse_json};
use super::query::decode;
use super::{Call, Response, json_value, respond};
use crate::model::dataset::{DataSet, Record, RecordsError, parse_records};
use crate::operations::OperationError;
use crate::operations::data_sets::{self, DataWrite, source_kind};
use crate::sync::imperva::ImpCode;

/// `GET /v1/data-sets`
pub fn list(call: &Call<'_>) -> Result<Response, Problem> {
    let store = call.warden().store();
    let mut sets = Vec::new();
    for ds in &call.warden().config().data_sets {
        let current = call.warden().data_set(&ds.name);
        let rows = current.as_ref().map_or(0, |d| d.len());
        // false while the set has never loaded: decisions it could change are errors.
        let loaded = current.as_ref().is_some_and(|d| d.is_loaded());
        let held = store.held_refresh(&ds.name).map_err(OperationError::from)?;
        sets.push(serde_json::json!({
            "name": ds.name,
            "source": source_kind(&ds.source),
            "case_sensitive": ds.schema.case_sensitive(),
            "columns": ds.schema.columns().iter().map(|c| serde_json::json!({"name": c.name, "key": c.key})).collect::<Vec<_>>(),
            "rows": rows,
            "loaded": loaded,
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

/// Writes one CSV cell. A cell a spreadsheet would read as a formula (starting with `=`, `+`,
/// `-`, `@`, a tab or CR) gets a leading `'` (OWASP CSV injection), so an exported principal
/// such as `=HYPERLINK(…)` stays text.
fn csv_field(value: &str, out: &mut String) {
    let neutralised;
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        neutralised = format!("'{value}");
        neutralised.as_str()
    } else {
        value
    };
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
    let set = data_sets::current(call.warden(), call.param(0))?;
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

/// `POST /v1/data-sets/{name}/refresh`: query now and apply (or hold).
pub async fn refresh(call: &Call<'_>) -> Result<Response, Problem> {
    let outcome = data_sets::refresh(call.warden(), &call.actor(), call.param(0)).await?;
    Ok(json_value(StatusCode::OK, &outcome))
}

/// `POST /v1/data-sets/{name}/test-query`: run the query without applying it.
pub async fn test_query(call: &Call<'_>) -> Result<Response, Problem> {
    let q = data_sets::test_query(call.warden(), call.param(0)).await?;
    Ok(json_value(StatusCode::OK, &q.report(10)))
}

/// The hold an accept names: `{"id": …}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AcceptBody {
    id: Option<String>,
}

/// `POST /v1/data-sets/{name}/accept`: apply the refresh the shrink guard held, named by its id
/// in the body (`{"id": …}`) or an `If-Match` header; another (or no) id is 409 naming the
/// current hold.
pub fn accept(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    let body: AcceptBody = if call.body.is_empty() {
        AcceptBody::default()
    } else {
        parse_json(&call.body)?
    };
    let if_match = call
        .headers
        .get(hyper::header::IF_MATCH)
        .and_then(|v| v.to_str().ok());
    let id = body.id.as_deref().or(if_match);
    let rows = data_sets::accept(call.warden(), &call.actor(), name, id)?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "data_set": name, "rows": rows }),
    ))
}

/// The records of a data write, each mistake with the IMP code an MX gives it
/// ("Error while parsing JSON payload or an incompatible argument type": IMP-10002; no
/// `records`: IMP-10015).
fn records(body: &[u8]) -> Result<Vec<Record>, Problem> {
    parse_records(body).map_err(|e| {
        let code = match e {
            RecordsError::Shape => ImpCode::MissingParameter,
            RecordsError::Json(_) | RecordsError::NotObject { .. } | RecordsError::Value { .. } => {
                ImpCode::JsonPayload
            }
        };
        Problem::bad_request(e.to_string()).imp(code)
    })
}

/// The `overwrite` parameter of an incremental write: true unless it says false, as on the
/// MX ("Invoke-SecureSphereIncrementalOperationsOnLookupDataSet": "Default value=true").
fn overwrite(query: &str) -> Result<bool, Problem> {
    let mut overwrite = true;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |why: String| Problem::bad_request(why).imp(ImpCode::JsonPayload);
        if k != "overwrite" {
            return Err(bad(format!("unknown parameter {k:?}; expected overwrite")));
        }
        overwrite = match decode(v).as_deref() {
            Ok("true") => true,
            Ok("false") => false,
            _ => {
                return Err(bad(format!(
                    "parameter overwrite: true or false, not {v:?}"
                )));
            }
        };
    }
    Ok(overwrite)
}

/// What a data write asks: `POST` replaces, `DELETE` clears, `PUT`
/// `{"action":"add"|"delete","records":[…]}` adds (`?overwrite=`) or deletes.
fn data_write(call: &Call<'_>) -> Result<(DataWrite, Vec<Record>), Problem> {
    match *call.method {
        hyper::Method::POST => Ok((DataWrite::Replace, records(&call.body)?)),
        hyper::Method::DELETE => Ok((DataWrite::Clear, Vec::new())),
        _ => {
            let overwrite = overwrite(call.query)?;
            let body: Value = serde_json::from_slice(&call.body).map_err(|e| {
                Problem::bad_request(format!("malformed JSON body: {e}")).imp(ImpCode::JsonPayload)
            })?;
            let write = match body.get("action") {
                None => {
                    return Err(Problem::bad_request(
                        "field `action` is missing: \"add\" or \"delete\"",
                    )
                    .imp(ImpCode::MissingParameter));
                }
                Some(Value::String(a)) if a == "add" => DataWrite::Add { overwrite },
                Some(Value::String(a)) if a == "delete" => DataWrite::Delete,
                Some(other) => {
                    return Err(Problem::bad_request(format!(
                        "field `action`: {other} is not \"add\" or \"delete\""
                    ))
                    .imp(ImpCode::JsonPayload));
                }
            };
            Ok((write, records(&call.body)?))
        }
    }
}

/// `POST` (replace), `PUT` (`{"action":"add"|"delete","records":[…]}`, `?overwrite=`) and
/// `DELETE` (clear) on a data set's `data`, for `api` data sets.
pub fn write_data(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    let (write, records) = data_write(call)?;
    let rows = data_sets::write(call.warden(), &call.actor(), name, write, records)?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "data_set": name, "action": write.as_str(), "rows": rows }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: &str) -> String {
        let mut out = String::new();
        csv_field(v, &mut out);
        out
    }

    #[test]
    fn csv_cells_that_look_like_formulas_are_neutralised() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-2+3"), "'-2+3");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tx"), "'\tx");
        assert_eq!(cell("\rx"), "\"'\rx\"");
        assert_eq!(cell(r"corp\alice"), r"corp\alice");
        assert_eq!(cell("a-b"), "a-b");
    }
}
