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
        Added::Updated | Added::Reactivated => StatusCode::OK,
    };
    Ok(json_value(
        status,
        &serde_json::json!({
            "list": list,
            "principal": done.member.principal,
            "added": done.added == Added::New,
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

/// `DELETE /v1/lists/{list}/members/{principal}` → 204, or 404 if it was not on the list.
pub fn remove_member(call: &Call<'_>) -> Result<Response, Problem> {
    let (list, principal) = (call.param(0), call.param(1));
    if !lists::remove_member(call.warden(), &call.actor(), list, principal)? {
        return Err(Problem::not_found(format!(
            "{principal:?} is not on list {list:?}"
        )));
    }
    Ok(no_content())
}
