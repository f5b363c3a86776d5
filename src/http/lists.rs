//! List routes for analysts and responders: create and list lists; add, remove and list
//! members. Every change is durable and in the snapshot before the answer, and audited.

use hyper::StatusCode;
use serde::Deserialize;

use super::problem::{Problem, parse_json};
use super::{Call, Response, json_value, no_content};
use crate::base::principal::Principal;
use crate::base::time::expiry;
use crate::base::time::now;
use crate::runtime::WardenError;
use crate::store::{Added, NewMember, StoreError};

fn store_problem(e: &StoreError) -> Problem {
    match e {
        StoreError::NoSuchList(name) => Problem::not_found(format!(
            "no list named {name:?}; GET /v1/lists shows the lists"
        )),
        StoreError::Principal(p) => Problem::bad_request(format!("field `principal`: {p}")),
        other => Problem::internal(other.to_string()),
    }
}

fn warden_problem(e: &WardenError) -> Problem {
    match e {
        WardenError::Store(s) => store_problem(s),
        other => Problem::internal(other.to_string()),
    }
}

/// `GET /v1/lists`
pub fn lists(call: &Call<'_>) -> Result<Response, Problem> {
    let lists = call
        .warden()
        .store()
        .lists()
        .map_err(|e| store_problem(&e))?;
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
    let name = new.name.trim();
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "field `name`: 1 to 256 characters, no control characters",
        ));
    }
    let created = call
        .warden()
        .store()
        .ensure_list(name, &new.description)
        .map_err(|e| store_problem(&e))?;
    if !created {
        return Err(Problem::conflict(format!("list {name:?} already exists")));
    }
    call.audit("lists.create", name, "ok", serde_json::json!({}));
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
        .map_err(|e| store_problem(&e))?;
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
    Principal::parse(&add.principal)
        .map_err(|e| Problem::bad_request(format!("field `principal`: {e}")))?;
    let expires_at = expiry(add.expires_at.as_deref(), add.expires_in.as_deref(), now())
        .map_err(|e| Problem::bad_request(format!("field `expires_at`/`expires_in`: {e}")))?;
    let member = NewMember {
        principal: add.principal.clone(),
        reason: add.reason,
        incident: add.incident,
        added_by: call.actor(),
        expires_at,
    };
    let added = call
        .warden()
        .add_member(list, &member)
        .map_err(|e| warden_problem(&e))?;
    let detail = serde_json::json!({
        "principal": member.principal,
        "reason": member.reason,
        "incident": member.incident,
        "expires_at": member.expires_at,
    });
    call.audit("lists.add", list, "ok", detail);
    let status = match added {
        Added::New => StatusCode::CREATED,
        Added::Updated => StatusCode::OK,
    };
    Ok(json_value(
        status,
        &serde_json::json!({
            "list": list,
            "principal": member.principal,
            "added": added == Added::New,
            "snapshot_version": call.warden().engine().load().version(),
        }),
    ))
}

/// `DELETE /v1/lists/{list}/members/{principal}` → 204, or 404 if it was not on the list.
pub fn remove_member(call: &Call<'_>) -> Result<Response, Problem> {
    let (list, principal) = (call.param(0), call.param(1));
    let removed = call
        .warden()
        .remove_member(list, principal)
        .map_err(|e| warden_problem(&e))?;
    if !removed {
        return Err(Problem::not_found(format!(
            "{principal:?} is not on list {list:?}"
        )));
    }
    call.audit(
        "lists.remove",
        list,
        "ok",
        serde_json::json!({ "principal": principal }),
    );
    Ok(no_content())
}
