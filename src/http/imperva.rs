//! Imperva MX routes: push status, and push now (full on request, or a dry run that says
//! what would be sent without contacting the MX).

use hyper::StatusCode;

use super::problem::Problem;
use super::query::decode;
use super::{Call, Response, json_value};
use crate::operations::imperva;

/// `GET /v1/imperva`
pub fn status(call: &Call<'_>) -> Result<Response, Problem> {
    let config = call.warden().config();
    let statuses = imperva::status(call.warden())?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({
            "configured": config.imperva.is_some(),
            "url": config.imperva.as_ref().map(|i| i.url.clone()),
            "pushes": statuses,
        }),
    ))
}

fn flag(k: &str, v: &str) -> Result<bool, Problem> {
    match v {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Problem::bad_request(format!(
            "parameter {k:?}: true or false"
        ))),
    }
}

/// `POST /v1/imperva/push?full=&dry_run=`
pub async fn push(call: &Call<'_>) -> Result<Response, Problem> {
    let (mut full, mut dry_run) = (false, false);
    for pair in call.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v =
            decode(v).map_err(|_| Problem::bad_request(format!("parameter {k:?}: bad escape")))?;
        match k {
            "full" => full = flag(k, &v)?,
            "dry_run" => dry_run = flag(k, &v)?,
            _ => {
                return Err(Problem::bad_request(format!(
                    "unknown parameter {k:?}; expected full, dry_run"
                )));
            }
        }
    }
    let plans = imperva::push_now(call.warden(), &call.actor(), full, dry_run).await?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "pushes": plans }),
    ))
}
