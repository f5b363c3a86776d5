//! The account route: one answer to "why is this account blocked?" for any spelling of it
//! ([`crate::operations::accounts::provenance`]), with the gate sessions the account has open
//! now (the gateway's own registry).

use hyper::StatusCode;

use super::problem::Problem;
use super::query::decode;
use super::{Call, Response, json_value};
use crate::operations::accounts;

/// `GET /v1/accounts/{name}[?service=…]`: the account `name` names, why it is blocked where
/// it is, and — with `service` — the decision for it there.
pub fn account(call: &Call<'_>) -> Result<Response, Problem> {
    let name = call.param(0);
    let mut service = None;
    for pair in call.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "service" => {
                service = Some(
                    decode(v)
                        .map_err(|_| Problem::bad_request("parameter \"service\": bad escape"))?
                        .into_owned(),
                );
            }
            _ => {
                return Err(Problem::bad_request(format!(
                    "unknown parameter {k:?}; expected service"
                )));
            }
        }
    }
    let answer = accounts::provenance(call.warden(), name, service.as_deref())?;
    let sessions = open_sessions(call, &answer.account);
    let mut body = serde_json::to_value(&answer).unwrap_or_default();
    body["open_gate_sessions"] = serde_json::json!(sessions);
    Ok(json_value(StatusCode::OK, &body))
}

/// The gate sessions open now whose login is one of the account's names.
pub(super) fn open_sessions(
    call: &Call<'_>,
    account: &crate::base::account::Account,
) -> Vec<serde_json::Value> {
    let config = call.warden().config();
    let identity = &config.identity;
    let names: Vec<String> = account
        .names
        .iter()
        .chain(std::iter::once(&account.canonical))
        .map(|n| identity.canonical(n).to_lowercase())
        .collect();
    let mut out = Vec::new();
    for gate in &config.gates {
        for s in call.gate_sessions().open_sessions(&gate.name) {
            let as_account = identity
                .canonical(&gate.account_name(&s.user))
                .to_lowercase();
            if names.contains(&as_account) {
                out.push(serde_json::json!({ "gate": gate.name, "session": s }));
            }
        }
    }
    out
}
