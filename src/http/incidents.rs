//! Incident and alert routes for responders and detection systems: open an incident, read
//! them, run a response (users onto a list), and ingest alerts that automated-response rules
//! may act on. The work and its audit records are [`crate::operations::incidents`]'s; this maps
//! HTTP to it.

use hyper::StatusCode;

use super::problem::{Problem, parse_json};
use super::query::decode;
use super::{Call, Response, json_value};
use crate::operations::OperationError;
use crate::operations::incidents;
use crate::store::incidents::parse_incident_ref;

/// Most incidents one listing returns.
const LIST_MAX: u32 = 1000;

fn incident_id(call: &Call<'_>) -> Result<i64, Problem> {
    let text = call.param(0);
    parse_incident_ref(text).ok_or_else(|| {
        Problem::not_found(format!(
            "{text:?} is not an incident id; ids look like INC-17"
        ))
    })
}

/// `POST /v1/incidents` → 201 with the incident.
pub fn create(call: &Call<'_>) -> Result<Response, Problem> {
    let req = parse_json(&call.body)?;
    let incident = incidents::create_incident(call.warden(), &call.actor(), &req)?;
    Ok(json_value(StatusCode::CREATED, &incident))
}

/// `GET /v1/incidents?limit=` → the most recent first.
pub fn list(call: &Call<'_>) -> Result<Response, Problem> {
    let mut limit = 100;
    for pair in call.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v =
            decode(v).map_err(|_| Problem::bad_request(format!("parameter {k:?}: bad escape")))?;
        match k {
            "limit" => {
                limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=LIST_MAX).contains(n))
                    .ok_or_else(|| {
                        Problem::bad_request(format!("parameter \"limit\": 1 to {LIST_MAX}"))
                    })?;
            }
            _ => {
                return Err(Problem::bad_request(format!(
                    "unknown parameter {k:?}; expected limit"
                )));
            }
        }
    }
    let incidents = call
        .warden()
        .store()
        .incidents(limit)
        .map_err(OperationError::from)?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "incidents": incidents }),
    ))
}

/// `GET /v1/incidents/{id}` → the incident with its responses.
pub fn get(call: &Call<'_>) -> Result<Response, Problem> {
    let incident = incidents::read_incident(call.warden(), incident_id(call)?)?;
    Ok(json_value(StatusCode::OK, &incident))
}

/// `POST /v1/incidents/{id}/responses` → 201 with the response; its users are on the list
/// and in the snapshot.
pub fn respond(call: &Call<'_>) -> Result<Response, Problem> {
    let id = incident_id(call)?;
    let req = parse_json(&call.body)?;
    let record = incidents::respond(call.warden(), &call.actor(), id, &req)?;
    Ok(json_value(StatusCode::CREATED, &record))
}

/// `POST /v1/alerts` → 201 when a rule opened an incident, 200 otherwise (no rule matched, or
/// the alert id was seen before).
pub fn alert(call: &Call<'_>) -> Result<Response, Problem> {
    let alert = parse_json(&call.body)?;
    let outcome = incidents::ingest_alert(call.warden(), &call.actor(), &alert)?;
    let status = if outcome.rule.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_value(status, &outcome))
}
