//! The containment routes for playbooks: `POST /v1/contain`, `GET /v1/contain/{id}` and
//! `POST /v1/release`. The work is [`crate::operations::contain`]'s; this maps HTTP to it —
//! the `Idempotency-Key` header, the receipt id in the path, and the gates' open sessions of
//! each account (the gateway's own registry), which a receipt waits to see ended.

use hyper::StatusCode;

use super::problem::{Problem, parse_json};
use super::{Call, Response, json_value};
use crate::base::account::Account;
use crate::operations::contain::{self as op, ContainRequest, ReceiptView, ReleaseRequest};
use crate::store::receipts::parse_receipt_ref;

/// The header a client names its request with (the body's `idempotency_key` is the same).
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The caller's idempotency key: the header's or the body's; both only when equal.
fn idempotency_key(call: &Call<'_>, body: Option<String>) -> Result<Option<String>, Problem> {
    let Some(header) = call.headers.get(IDEMPOTENCY_KEY) else {
        return Ok(body);
    };
    let header = header
        .to_str()
        .map_err(|_| {
            Problem::bad_request("header Idempotency-Key: printable ASCII characters only")
        })?
        .to_owned();
    match body {
        Some(b) if b != header => Err(Problem::bad_request(
            "header Idempotency-Key and field `idempotency_key` differ; send one of them",
        )),
        _ => Ok(Some(header)),
    }
}

/// The gates where `account` has a session open now.
fn sessions<'a>(call: &'a Call<'a>) -> impl Fn(&Account) -> Vec<String> + 'a {
    move |account| {
        let mut gates: Vec<String> = super::accounts::open_sessions(call, account)
            .iter()
            .filter_map(|s| s["gate"].as_str().map(str::to_owned))
            .collect();
        gates.dedup();
        gates
    }
}

/// 201 for a new receipt, 200 for the receipt of an earlier request under the same key.
fn answer(view: &ReceiptView) -> Response {
    let status = if view.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    json_value(status, view)
}

/// `POST /v1/contain` → 201 with the receipt (200 with the earlier one for a retried key).
pub fn contain(call: &Call<'_>) -> Result<Response, Problem> {
    let mut req: ContainRequest = parse_json(&call.body)?;
    req.idempotency_key = idempotency_key(call, req.idempotency_key.take())?;
    let view = op::contain(call.warden(), &call.actor(), &req, &sessions(call))?;
    Ok(answer(&view))
}

/// `POST /v1/release` → 201 with the receipt of the release.
pub fn release(call: &Call<'_>) -> Result<Response, Problem> {
    let mut req: ReleaseRequest = parse_json(&call.body)?;
    req.idempotency_key = idempotency_key(call, req.idempotency_key.take())?;
    let view = op::release(call.warden(), &call.actor(), &req, &sessions(call))?;
    Ok(answer(&view))
}

/// `GET /v1/contain/{id}` → the receipt with each surface as it is now.
pub fn receipt(call: &Call<'_>) -> Result<Response, Problem> {
    let text = call.param(0);
    let id = parse_receipt_ref(text).ok_or_else(|| {
        Problem::not_found(format!(
            "{text:?} is not a receipt id; ids look like RCPT-17 (POST /v1/contain answers one)"
        ))
    })?;
    let view = op::receipt(call.warden(), id, &sessions(call))?;
    Ok(json_value(StatusCode::OK, &view))
}
