//! List routes for analysts and responders: create and list lists; add, remove and list
//! members. The work is [`crate::operations::lists`]'s; this maps HTTP to it.

use hyper::StatusCode;
use serde::Deserialize;

use super::problem::{Problem, parse_json};
use super::{Call, Response, json_value, no_content};
use crate::operations::OperationError;
use crate::operations::lists::{self, MemberRequest};
use crate::store::Added;

/// `GET /v1/lists`
pub fn lists(call: &Call<'_>) -> Result<Response, Problem> {
    let lists = call
        .warden()
        .store()
        .lists()
        .map_err(OperationError::from)?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "lists": lists }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewList {
    name: String,
    #[serde(default)]
    description: String,
}

/// `POST /v1/lists` → 201, or 409 if the list exists.
pub fn create(call: &Call<'_>) -> Result<Response, Problem> {
    let new: NewList = parse_json(&call.body)?;
    let name = lists::create_list(call.warden(), &call.actor(), &new.name, &new.description)?;
    Ok(json_value(
        StatusCode::CREATED,
        &serde_json::json!({ "name": name, "description": new.description }),
    ))
}

/// `GET /v1/lists/{list}/members`
pub fn members(call: &Call<'_>) -> Result<Response, Problem> {
    let list = call.param(0);
    let members = call
        .warden()
        .store()
        .members(list)
        .map_err(OperationError::from)?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "list": list, "members": members }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    principal: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    incident: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    expires_at: Option<String>,
    /// A duration such as `7d`.
    #[serde(default)]
    expires_in: Option<String>,
}

/// `POST /v1/lists/{list}/members` → 201 (added) or 200 (already there; details updated).
pub fn add_member(call: &Call<'_>) -> Result<Response, Problem> {
    let list = call.param(0);
    let add: AddMember = parse_json(&call.body)?;
    let req = MemberRequest {
        principal: add.principal,
        reason: add.reason,
        incident: add.incident,
        expires_at: add.expires_at,
        expires_in: add.expires_in,
        added_by: None,
    };
    let done = lists::add_member(call.warden(), &call.actor(), list, &req)?;
    let status = match done.added {
        Added::New => StatusCode::CREATED,
        Added::Again | Added::Reactivated => StatusCode::OK,
    };
    Ok(json_value(
        status,
        &serde_json::json!({
            "list": list,
            "principal": done.member.principal,
            "account": done.account,
            "added": done.added == Added::New,
            "again": done.added == Added::Again,
            "reactivated": done.added == Added::Reactivated,
            "snapshot_version": done.snapshot_version,
        }),
    ))
}

/// `POST /v1/lists/{list}/expiry/release` (admin): applies the expiry sweep held for the
/// list — its members past their expiry are deactivated now; 409 if nothing is held.
pub fn release_expiry(call: &Call<'_>) -> Result<Response, Problem> {
    let list = call.param(0);
    let deactivated = lists::release_expiry_hold(call.warden(), &call.actor(), list)?;
    Ok(json_value(
        StatusCode::OK,
        &serde_json::json!({ "list": list, "deactivated": deactivated }),
    ))
}

/// `DELETE /v1/lists/{list}/members/{principal}[?reason=…]` → 204: the account any spelling
/// names is released (its memberships kept as history, with the reason); 404 if no member of
/// the list is that account.
pub fn remove_member(call: &Call<'_>) -> Result<Response, Problem> {
    let (list, principal) = (call.param(0), call.param(1));
    let reason = reason_param(call.query)?;
    if lists::remove_member(call.warden(), &call.actor(), list, principal, &reason)?.is_none() {
        return Err(Problem::not_found(format!(
            "{principal:?} names no member of list {list:?}"
        )));
    }
    Ok(no_content())
}

/// The `reason` query parameter of a release (empty when absent).
fn reason_param(query: &str) -> Result<String, Problem> {
    let mut reason = String::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "reason" => {
                reason = super::query::decode(v)
                    .map_err(|_| Problem::bad_request("parameter \"reason\": bad escape"))?
                    .into_owned();
            }
            _ => {
                return Err(Problem::bad_request(format!(
                    "unknown parameter {k:?}; expected reason"
                )));
            }
        }
    }
    Ok(reason)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetExpiry {
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    expires_in: Option<String>,
}

/// `PATCH /v1/lists/{list}/members/{principal}` with `{"expires_at"|"expires_in"}`: sets the
/// member's expiry explicitly (a later membership lifts it).
pub fn set_expiry(call: &Call<'_>) -> Result<Response, Problem> {
    let (list, principal) = (call.param(0), call.param(1));
    let set: SetExpiry = parse_json(&call.body)?;
    lists::set_member_expiry(
        call.warden(),
        &call.actor(),
        list,
        principal,
        set.expires_at.as_deref(),
        set.expires_in.as_deref(),
    )?;
    Ok(no_content())
}
