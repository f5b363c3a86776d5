//! warden's data sets on the MX Open API's own paths (`/SecureSphere/api/v1/conf/dataSets…`),
//! so that a script written for an Imperva MX can be pointed at warden: the listing, the
//! columns and the records read a page at a time, data set creation, and (in
//! [`super::data_sets`]) the data writes. Shapes and codes are the reference pages' and the
//! swagger's (see `sync::imperva`'s `api` module); every error is answered as an MX answers
//! one ([`super::problem::Problem::into_mx_response`]: 406 and
//! `{"errors":[{"error-code","description"}]}`).
//!
//! Differences a script meets: warden authenticates with `Authorization: Bearer <key>` (admin
//! scope), not a session from `POST /auth/session`; data sets are made in warden's
//! configuration, so creation only ever answers that the name exists (IMP-10005) or why it
//! cannot make it; `deleteDataset` is not served.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::problem::Problem;
use super::query::decode;
use super::{Call, Response, json_value};
use crate::operations::data_sets;
use crate::sync::imperva::ImpCode;

/// `GET /conf/dataSets`: the names, as a JSON array (the v14 swagger's `getAllDatasets`).
pub fn list(call: &Call<'_>) -> Response {
    let config = call.warden().config();
    let names: Vec<&str> = config.data_sets.iter().map(|d| d.name.as_str()).collect();
    json_value(StatusCode::OK, &names)
}

/// `GET /conf/dataSets/{name}/columns`: `{"dataset-name","number-of-columns","columns":[{"name","key"}]}`,
/// `key` a boolean as in the swagger's `DatasetSingleColumnDTO`.
pub fn columns(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    let config = data_sets::data_set_config(call.warden(), name)?;
    let columns: Vec<Value> = config
        .schema
        .columns()
        .iter()
        .map(|c| json!({ "name": c.name, "key": c.key }))
        .collect();
    Ok(json_value(
        StatusCode::OK,
        &json!({ "dataset-name": name, "number-of-columns": columns.len(), "columns": columns }),
    ))
}

/// A `from`/`to` query of "Get-SecureSphereLookupDataSetRecords": rows `from` (1-based,
/// default the first) to `to` (inclusive, default — or 0 — the last); IMP-10016 for `from < 1`
/// or `to < 0`.
fn range(query: &str) -> Result<(usize, Option<usize>), Problem> {
    let (mut from, mut to) = (1i64, 0i64);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let number = decode(v)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| {
                Problem::bad_request(format!("parameter {k:?}: an integer, not {v:?}"))
                    .imp(ImpCode::JsonPayload)
            })?;
        match k {
            "from" => from = number,
            "to" => to = number,
            _ => {
                return Err(Problem::bad_request(format!(
                    "unknown parameter {k:?}; expected from, to"
                ))
                .imp(ImpCode::IllegalValue));
            }
        }
    }
    if from < 1 || to < 0 {
        return Err(Problem::bad_request(
            "Values of parameters to or from are invalid. (to < 0, from < 1)",
        )
        .imp(ImpCode::IllegalValue));
    }
    let from = usize::try_from(from).unwrap_or(usize::MAX);
    let to = (to > 0).then(|| usize::try_from(to).unwrap_or(usize::MAX));
    Ok((from, to))
}

/// `GET /conf/dataSets/{name}/data?from=&to=`: `{"dataset-name","number-of-records","records"}`,
/// a lone value as a string and several as an array, as in the reference page's sample.
pub fn records(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    let (from, to) = range(call.query)?;
    let set = data_sets::current(call.warden(), name)?;
    let last = to.unwrap_or(usize::MAX).min(set.len());
    let mut body = Vec::with_capacity(96);
    body.extend_from_slice(b"{\"dataset-name\":");
    crate::base::json::json_string(name, &mut body);
    let rows = set
        .rows()
        .get(from.saturating_sub(1).min(last)..last)
        .unwrap_or_default();
    body.extend_from_slice(
        format!(",\"number-of-records\":{},\"records\":[", rows.len()).as_bytes(),
    );
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        set.write_record(row, &mut body);
    }
    body.extend_from_slice(b"]}");
    Ok(super::json(StatusCode::OK, body))
}

/// `POST /conf/dataSets/createDataset?caseSensitive=` with `{"dataset-name",
/// "number-of-columns","columns":[{"name","key"}]}`. The request is checked as an MX checks it
/// (IMP-10002 JSON or types, IMP-10015 a missing field, IMP-10016 a count or key count that is
/// wrong); a name warden has is IMP-10005, as on every creation page; any other is refused,
/// saying where warden's data sets are made.
pub fn create(call: &Call<'_>) -> Result<Response, Problem> {
    let bad = |code: ImpCode, why: String| Problem::bad_request(why).imp(code);
    for pair in call.query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("caseSensitive", "true" | "false")) => {}
            _ => {
                return Err(bad(
                    ImpCode::JsonPayload,
                    format!("parameter {pair:?}: caseSensitive=true or caseSensitive=false"),
                ));
            }
        }
    }
    let body: Value = serde_json::from_slice(&call.body)
        .map_err(|e| bad(ImpCode::JsonPayload, format!("malformed JSON body: {e}")))?;
    let (Some(name), Some(columns)) = (body["dataset-name"].as_str(), body["columns"].as_array())
    else {
        return Err(bad(
            ImpCode::MissingParameter,
            "Cannot create a data set since the body parameter dataset-name or columns is missing"
                .into(),
        ));
    };
    let mut keys = 0;
    for c in columns {
        let (Some(_), Some(key)) = (c["name"].as_str(), c["key"].as_bool()) else {
            return Err(bad(
                ImpCode::JsonPayload,
                format!("column {c}: {{\"name\": string, \"key\": boolean}}"),
            ));
        };
        keys += usize::from(key);
    }
    if body["number-of-columns"].as_u64() != Some(columns.len() as u64) {
        return Err(bad(
            ImpCode::IllegalValue,
            format!(
                "The \"number-of-columns\" entered is illegal: {} columns are given",
                columns.len()
            ),
        ));
    }
    if keys != 1 {
        return Err(bad(
            ImpCode::IllegalValue,
            format!("The \"columns\" entered is illegal: exactly one is the key, not {keys}"),
        ));
    }
    if call.warden().config().data_set(name).is_some() {
        return Err(Problem::conflict(format!(
            "An item with this name already exists - please select a different name: warden \
             has a data set {name:?}"
        ))
        .imp(ImpCode::NameExists));
    }
    Err(Problem::conflict(format!(
        "warden makes its data sets from its configuration, not through the API: add \
         [[data_sets]] name = {name:?} with source = {{ type = \"api\" }} and reload \
         (POST /v1/admin/reload); its data can then be written here"
    ))
    .imp(ImpCode::NotPerformed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_record_range_is_read_as_the_reference_page_defines_it() {
        assert_eq!(range("").unwrap(), (1, None));
        assert_eq!(range("from=3&to=5").unwrap(), (3, Some(5)));
        assert_eq!(range("to=0").unwrap(), (1, None));
        for bad in ["from=0", "to=-1"] {
            assert_eq!(
                range(bad).unwrap_err().imp_code,
                Some(ImpCode::IllegalValue)
            );
        }
        assert_eq!(
            range("from=x").unwrap_err().imp_code,
            Some(ImpCode::JsonPayload)
        );
        assert!(range("page=2").is_err());
    }
}
