//! Containment for playbooks: contain (or release) many principals in one request with an
//! incident, a reason and an expiry, and a receipt that says, per principal, which account it
//! is (or why it could not be resolved) and where the block has landed so far, so that a
//! SOAR playbook can wait for "contained everywhere" or time out naming what is missing.
//!
//! A contain is a response on an incident (`incidents::run_response`: the accounts on the
//! list with their memberships, audited, in the snapshot before this returns); a release is
//! `lists::remove_member` per principal. Nothing else is written but the receipt itself
//! (`store::receipts`): what each principal turned out to be, and the caller's idempotency
//! key, so that a retried request gets the same receipt and acts once. The surfaces a receipt
//! shows are not kept with it: they are read, each time it is asked, from the provenance of
//! each account (`accounts::provenance_of_key`, over `account_surfaces`).

use serde::{Deserialize, Serialize};

use super::incidents::{MAX_SUBJECTS, read_incident, run_response};
use super::{Actor, OperationError, accounts, check_text, expiry, lists};
use crate::base::account::Account;
use crate::base::time::now_ms;
use crate::runtime::Warden;
use crate::store::incidents::{incident_ref, parse_incident_ref};
use crate::store::receipts::{Claim, NewReceipt, Receipt, ReceiptAction, receipt_ref};
use crate::store::{Added, NewResponse, SurfaceKind};

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A receipt claimed this long ago and never recorded belongs to a request that stopped half
/// way: a retry under its key carries it out (longer than any request may take).
const ABANDONED_AFTER_MS: i64 = 120_000;

/// The surfaces a caller may ask to confirm, as the receipt names them.
pub const SURFACES: &[&str] = &["group", "data_set", "gate", "role", "mx"];

/// `POST /v1/contain`: put the accounts of `principals` on `list` for an incident.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainRequest {
    pub principals: Vec<String>,
    pub list: String,
    /// A warden incident (`INC-7`), or the caller's own reference (a SOAR incident id), for
    /// which warden opens an incident titled so.
    pub incident: String,
    pub reason: String,
    /// The severity of an incident warden opens (default `high`).
    #[serde(default)]
    pub severity: Option<String>,
    /// RFC 3339 time, or…
    #[serde(default)]
    pub expires_at: Option<String>,
    /// …a duration such as `7d`.
    #[serde(default)]
    pub expires_in: Option<String>,
    /// Surfaces that must confirm before the receipt is complete (besides every surface the
    /// list is configured to reach): `group`, `data_set`, `gate`, `role`, `mx`.
    #[serde(default)]
    pub confirm: Vec<String>,
    /// The caller's key for this request (or the `Idempotency-Key` header).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// `POST /v1/release`: release the accounts of `principals` from `list`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub principals: Vec<String>,
    pub list: String,
    pub reason: String,
    /// Surfaces that must confirm the release (`group`, `data_set`, `role`, `mx`).
    #[serde(default)]
    pub confirm: Vec<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// What became of one principal of a request (stored with the receipt).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PrincipalOutcome {
    /// As the caller wrote it.
    pub principal: String,
    /// `contained` (new on the list), `again` (listed already: another membership),
    /// `released`, `not_listed` (no member of the list is its account), `unresolved`.
    pub outcome: String,
    /// The account's key and canonical name, when it was resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Why it could not be resolved or released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PrincipalOutcome {
    fn of(principal: &str, outcome: &str, account: Option<(&str, &str)>) -> PrincipalOutcome {
        PrincipalOutcome {
            principal: principal.to_owned(),
            outcome: outcome.to_owned(),
            account_key: account.map(|(k, _)| k.to_owned()),
            account: account.map(|(_, c)| c.to_owned()),
            error: None,
        }
    }

    fn failed(principal: &str, outcome: &str, error: &OperationError) -> PrincipalOutcome {
        let error = match error {
            OperationError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        };
        PrincipalOutcome {
            error: Some(error),
            ..PrincipalOutcome::of(principal, outcome, None)
        }
    }
}

/// A receipt as a caller reads it: the request, each principal with its account and the
/// surfaces its block (or release) has reached, and whether that is everywhere.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptView {
    pub id: String,
    pub action: ReceiptAction,
    pub list: String,
    pub incident: Option<String>,
    pub created_at_ms: i64,
    pub confirm: Vec<String>,
    /// True when this answer is the receipt of an earlier request under the same key.
    pub replayed: bool,
    /// Every principal's account is contained (released) on every surface it must be, and
    /// every principal was resolved.
    pub complete: bool,
    /// What keeps it from complete, one line each, for a person.
    pub missing: Vec<String>,
    pub principals: Vec<PrincipalView>,
}

/// One principal of a receipt.
#[derive(Debug, Clone, Serialize)]
pub struct PrincipalView {
    #[serde(flatten)]
    pub outcome: PrincipalOutcome,
    pub complete: bool,
    pub surfaces: Vec<SurfaceView>,
}

/// One surface of one account.
#[derive(Debug, Clone, Serialize)]
pub struct SurfaceView {
    pub surface: SurfaceKind,
    pub target: String,
    pub state: String,
    pub detail: String,
    /// Unix milliseconds: when the state began (the block landed, the session ended).
    pub since_ms: Option<i64>,
    /// For an AD group: whether the directory holds the account in it now.
    pub holds_now: Option<bool>,
    /// Whether this surface shows the request done.
    pub done: bool,
}

fn check_common(
    principals: &[String],
    list: &str,
    reason: &str,
    confirm: &[String],
    key: Option<&str>,
) -> Result<(), OperationError> {
    if principals.is_empty() || principals.len() > MAX_SUBJECTS {
        return Err(OperationError::invalid(
            "principals",
            format!("1 to {MAX_SUBJECTS} principals"),
        ));
    }
    check_text("list", list, true)?;
    check_text("reason", reason, true)?;
    for (i, c) in confirm.iter().enumerate() {
        if !SURFACES.contains(&c.as_str()) {
            return Err(OperationError::invalid(
                &format!("confirm[{i}]"),
                format!(
                    "{c:?} is not a surface; expected one of {}",
                    SURFACES.join(", ")
                ),
            ));
        }
    }
    if let Some(key) = key {
        check_key(key)?;
    }
    Ok(())
}

/// Checks a caller's idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY`] printable ASCII bytes.
pub fn check_key(key: &str) -> Result<(), OperationError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(OperationError::invalid(
            "idempotency_key",
            format!("1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
        ));
    }
    Ok(())
}

impl ContainRequest {
    /// Checks every field of an untrusted request; returns the expiry.
    pub fn validate(&self) -> Result<Option<i64>, OperationError> {
        check_common(
            &self.principals,
            &self.list,
            &self.reason,
            &self.confirm,
            self.idempotency_key.as_deref(),
        )?;
        check_text("incident", &self.incident, true)?;
        if let Some(s) = &self.severity {
            s.parse::<crate::base::severity::IncidentSeverity>()
                .map_err(|e| OperationError::invalid("severity", e.to_string()))?;
        }
        expiry(
            self.expires_at.as_deref(),
            self.expires_in.as_deref(),
            "expires_at`/`expires_in",
        )
    }
}

impl ReleaseRequest {
    /// Checks every field of an untrusted request.
    pub fn validate(&self) -> Result<(), OperationError> {
        check_common(
            &self.principals,
            &self.list,
            &self.reason,
            &self.confirm,
            self.idempotency_key.as_deref(),
        )?;
        if self.confirm.iter().any(|c| c == "gate") {
            return Err(OperationError::invalid(
                "confirm",
                "a release has no gate surface to confirm (a gate only refuses and ends)",
            ));
        }
        Ok(())
    }
}

/// A digest of a request without its key: a retry has the same one.
fn fingerprint(request: &impl Serialize) -> String {
    let text = serde_json::to_string(request).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the receipt of a request, or finds the one its key already has: `Ok(Err(view))`
/// is the earlier request's receipt (nothing is done again).
fn claim(
    warden: &Warden,
    new: &NewReceipt,
    sessions: &dyn Fn(&Account) -> Vec<String>,
) -> Result<Result<i64, ReceiptView>, OperationError> {
    match warden.store().claim_receipt(new)? {
        Claim::New(id) => Ok(Ok(id)),
        Claim::Existing(earlier) => {
            let key = earlier.request.idempotency_key.clone().unwrap_or_default();
            if earlier.request.fingerprint != new.fingerprint {
                return Err(OperationError::Conflict(format!(
                    "idempotency key {key:?} was used for another request ({}); a retry must \
                     send the same request, a new request a new key",
                    receipt_ref(earlier.id)
                )));
            }
            if earlier.outcome.is_none() {
                // A request that stopped half way (warden stopped between the claim and the
                // record) is carried out again under its receipt: both a contain and a release
                // are idempotent on the lists.
                if now_ms().saturating_sub(earlier.created_at_ms) > ABANDONED_AFTER_MS {
                    return Ok(Ok(earlier.id));
                }
                return Err(OperationError::Conflict(format!(
                    "the request with idempotency key {key:?} ({}) is still being carried \
                     out; retry in a moment",
                    receipt_ref(earlier.id)
                )));
            }
            let mut view = view(warden, &earlier, sessions)?;
            view.replayed = true;
            Ok(Err(view))
        }
    }
}

/// Contains the accounts `req.principals` name: each is resolved once; those resolved go on
/// the list as one response on the incident (opened when the caller names its own), those
/// not are reported with the reason. `sessions` names the gates where an account has a
/// session open now.
pub fn contain(
    warden: &Warden,
    actor: &Actor,
    req: &ContainRequest,
    sessions: &dyn Fn(&Account) -> Vec<String>,
) -> Result<ReceiptView, OperationError> {
    let expires_at = req.validate()?;
    if !warden.store().list_exists(&req.list)? {
        return Err(OperationError::NoSuchList(req.list.clone()));
    }
    let existing = parse_incident_ref(req.incident.trim());
    if let Some(id) = existing {
        read_incident(warden, id)?;
    }
    let new = NewReceipt {
        action: ReceiptAction::Contain,
        caller: actor.name.clone(),
        idempotency_key: req.idempotency_key.clone(),
        fingerprint: fingerprint(&ContainRequest {
            idempotency_key: None,
            ..req.clone()
        }),
        list: req.list.clone(),
        incident: existing.map(incident_ref),
        confirm: req.confirm.clone(),
    };
    let id = match claim(warden, &new, sessions)? {
        Ok(id) => id,
        Err(earlier) => return Ok(earlier),
    };
    match contain_claimed(warden, actor, req, expires_at, existing) {
        Ok((outcomes, incident)) => finish(warden, id, &outcomes, incident, sessions),
        Err(e) => {
            // Nothing was contained: the key may be retried.
            if let Err(drop) = warden.store().drop_receipt(id) {
                tracing::error!(error = %drop, receipt = id, "cannot drop a failed receipt");
            }
            Err(e)
        }
    }
}

fn contain_claimed(
    warden: &Warden,
    actor: &Actor,
    req: &ContainRequest,
    expires_at: Option<i64>,
    existing: Option<i64>,
) -> Result<(Vec<PrincipalOutcome>, Option<i64>), OperationError> {
    let mut outcomes = Vec::with_capacity(req.principals.len());
    let mut resolved = Vec::new();
    for (i, text) in req.principals.iter().enumerate() {
        let field = format!("principals[{i}]");
        match accounts::resolve_text(warden, &field, text) {
            Ok(account) => {
                outcomes.push(PrincipalOutcome::of(text, "contained", None));
                resolved.push((outcomes.len() - 1, account));
            }
            Err(e @ (OperationError::Invalid { .. } | OperationError::Upstream(_))) => {
                outcomes.push(PrincipalOutcome::failed(text, "unresolved", &e));
            }
            Err(other) => return Err(other),
        }
    }
    if resolved.is_empty() {
        return Ok((outcomes, existing));
    }
    let incident = match existing {
        Some(id) => id,
        None => open_incident(warden, actor, req, &resolved)?,
    };
    let response = NewResponse {
        list: req.list.clone(),
        principals: resolved
            .iter()
            .map(|(i, _)| req.principals[*i].clone())
            .collect(),
        accounts: resolved.iter().map(|(_, a)| a.clone()).collect(),
        source: actor.source.clone(),
        reason: req.reason.trim().to_owned(),
        expires_at,
        created_by: actor.name.clone(),
        rule: None,
    };
    let (_, added) = run_response(warden, actor, incident, &response)?;
    for ((i, _), (how, account)) in resolved.iter().zip(&added) {
        let outcome = if *how == Added::Again {
            "again"
        } else {
            "contained"
        };
        outcomes[*i] = PrincipalOutcome::of(
            &req.principals[*i],
            outcome,
            Some((&account.key, &account.canonical)),
        );
    }
    Ok((outcomes, Some(incident)))
}

/// Opens the incident a caller's own reference names, with the principals resolved.
fn open_incident(
    warden: &Warden,
    actor: &Actor,
    req: &ContainRequest,
    resolved: &[(usize, Account)],
) -> Result<i64, OperationError> {
    let request = super::incidents::IncidentRequest {
        title: req.incident.trim().to_owned(),
        severity: req.severity.clone().unwrap_or_else(|| "high".to_owned()),
        users: resolved
            .iter()
            .map(|(i, _)| req.principals[*i].clone())
            .collect(),
        ips: Vec::new(),
        source: "contain".to_owned(),
    };
    Ok(super::incidents::create_incident(warden, actor, &request)?.id)
}

/// Releases the accounts `req.principals` name from the list, each through
/// `lists::remove_member`; a principal that names no member is reported, never guessed.
pub fn release(
    warden: &Warden,
    actor: &Actor,
    req: &ReleaseRequest,
    sessions: &dyn Fn(&Account) -> Vec<String>,
) -> Result<ReceiptView, OperationError> {
    req.validate()?;
    if !warden.store().list_exists(&req.list)? {
        return Err(OperationError::NoSuchList(req.list.clone()));
    }
    let new = NewReceipt {
        action: ReceiptAction::Release,
        caller: actor.name.clone(),
        idempotency_key: req.idempotency_key.clone(),
        fingerprint: fingerprint(&ReleaseRequest {
            idempotency_key: None,
            ..req.clone()
        }),
        list: req.list.clone(),
        incident: None,
        confirm: req.confirm.clone(),
    };
    let id = match claim(warden, &new, sessions)? {
        Ok(id) => id,
        Err(earlier) => return Ok(earlier),
    };
    let reason = req.reason.trim();
    let outcomes = req
        .principals
        .iter()
        .map(
            |text| match lists::remove_member(warden, actor, &req.list, text, reason) {
                Ok(Some(released)) => PrincipalOutcome::of(
                    text,
                    "released",
                    Some((&released.account, &released.principal)),
                ),
                Ok(None) => PrincipalOutcome {
                    error: Some(format!(
                        "no member of {:?} is the account {text:?} names",
                        req.list
                    )),
                    ..PrincipalOutcome::of(text, "not_listed", None)
                },
                Err(e) => PrincipalOutcome::failed(text, "unresolved", &e),
            },
        )
        .collect::<Vec<_>>();
    finish(warden, id, &outcomes, None, sessions)
}

/// Records what a request did on its receipt and reads it back.
fn finish(
    warden: &Warden,
    id: i64,
    outcomes: &[PrincipalOutcome],
    incident: Option<i64>,
    sessions: &dyn Fn(&Account) -> Vec<String>,
) -> Result<ReceiptView, OperationError> {
    let stored = serde_json::json!({
        "incident": incident.map(incident_ref),
        "principals": outcomes,
    });
    warden.store().finish_receipt(id, &stored.to_string())?;
    let receipt = warden
        .store()
        .receipt(id)?
        .ok_or(OperationError::NoSuchReceipt(id))?;
    view(warden, &receipt, sessions)
}

/// Receipt `id` with each account's surfaces as they are now.
pub fn receipt(
    warden: &Warden,
    id: i64,
    sessions: &dyn Fn(&Account) -> Vec<String>,
) -> Result<ReceiptView, OperationError> {
    let receipt = warden
        .store()
        .receipt(id)?
        .ok_or(OperationError::NoSuchReceipt(id))?;
    view(warden, &receipt, sessions)
}

#[derive(Deserialize, Default)]
struct Stored {
    incident: Option<String>,
    principals: Vec<PrincipalOutcome>,
}

fn view(
    warden: &Warden,
    receipt: &Receipt,
    sessions: &dyn Fn(&Account) -> Vec<String>,
) -> Result<ReceiptView, OperationError> {
    let stored: Stored = match &receipt.outcome {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            OperationError::Internal(format!("receipt {} unreadable: {e}", receipt.id))
        })?,
        None => Stored::default(),
    };
    let mut missing = Vec::new();
    if receipt.outcome.is_none() {
        missing.push("the request is still being carried out".to_owned());
    }
    let mut principals = Vec::with_capacity(stored.principals.len());
    for outcome in stored.principals {
        let p = principal_view(warden, receipt, outcome, sessions, &mut missing)?;
        principals.push(p);
    }
    Ok(ReceiptView {
        id: receipt_ref(receipt.id),
        action: receipt.request.action,
        list: receipt.request.list.clone(),
        incident: stored.incident.or_else(|| receipt.request.incident.clone()),
        created_at_ms: receipt.created_at_ms,
        confirm: receipt.request.confirm.clone(),
        replayed: false,
        complete: missing.is_empty(),
        missing,
        principals,
    })
}

fn principal_view(
    warden: &Warden,
    receipt: &Receipt,
    outcome: PrincipalOutcome,
    sessions: &dyn Fn(&Account) -> Vec<String>,
    missing: &mut Vec<String>,
) -> Result<PrincipalView, OperationError> {
    let who = outcome.principal.clone();
    let provenance = match &outcome.account_key {
        Some(key) => accounts::provenance_of_key(warden, key)?,
        None => None,
    };
    let Some(provenance) = provenance else {
        let why = outcome
            .error
            .clone()
            .unwrap_or_else(|| "no account".to_owned());
        missing.push(format!("{who}: {} ({why})", outcome.outcome));
        return Ok(PrincipalView {
            outcome,
            complete: false,
            surfaces: Vec::new(),
        });
    };
    let contain = receipt.request.action == ReceiptAction::Contain;
    let config = warden.config();
    let mapped: Vec<String> = config
        .mappings
        .iter()
        .filter(|m| m.list == receipt.request.list)
        .map(|m| format!("{} (on {})", m.group_dn, m.directory))
        .collect();
    let mut surfaces: Vec<SurfaceView> = provenance
        .surfaces
        .into_iter()
        // A release is confirmed on the surfaces it lifts; a gate only refuses and ends.
        .filter(|s| contain || s.surface != SurfaceKind::Gate)
        // A group of another list stays as it is on a release from this one.
        .filter(|s| contain || s.surface != SurfaceKind::Group || mapped.contains(&s.target))
        .map(|s| {
            let done = if contain {
                matches!(s.state.as_str(), "landed" | "refused" | "ended")
                    && s.holds_now != Some(false)
            } else {
                s.state == "lifted" || s.holds_now == Some(false)
            };
            SurfaceView {
                surface: s.surface,
                target: s.target,
                state: s.state,
                detail: s.detail,
                since_ms: s.since_ms,
                holds_now: s.holds_now,
                done,
            }
        })
        .collect();
    if contain {
        expect_pulled(warden, &receipt.request.list, &mut surfaces);
        for gate in sessions(&provenance.account) {
            surfaces.push(SurfaceView {
                surface: SurfaceKind::Gate,
                target: gate,
                state: "open".to_owned(),
                detail: "a session is still open through this gate".to_owned(),
                since_ms: None,
                holds_now: None,
                done: false,
            });
        }
    }
    let before = missing.len();
    for s in surfaces.iter().filter(|s| !s.done) {
        missing.push(format!(
            "{who}: {} {} is {}",
            s.surface.as_str(),
            s.target,
            s.state
        ));
    }
    for kind in &receipt.request.confirm {
        if !surfaces
            .iter()
            .any(|s| s.surface.as_str() == kind && s.done)
        {
            missing.push(format!("{who}: no {kind} has confirmed yet"));
        }
    }
    Ok(PrincipalView {
        outcome,
        complete: missing.len() == before,
        surfaces,
    })
}

/// A data set pulled back from a group the list is pushed to holds the account once the pull
/// sees the push: until it has landed there, it is pending.
fn expect_pulled(warden: &Warden, list: &str, surfaces: &mut Vec<SurfaceView>) {
    let config = warden.config();
    for m in config.mappings.iter().filter(|m| m.list == list) {
        let group = m.group_dn.to_ascii_lowercase();
        for ds in &config.data_sets {
            let crate::config::Source::Ldap(s) = &ds.source else {
                continue;
            };
            let reads_group =
                s.directory == m.directory && s.filter.to_ascii_lowercase().contains(&group);
            let seen = surfaces
                .iter()
                .any(|v| v.surface == SurfaceKind::DataSet && v.target == ds.name);
            if reads_group && !seen {
                surfaces.push(SurfaceView {
                    surface: SurfaceKind::DataSet,
                    target: ds.name.clone(),
                    state: "pending".to_owned(),
                    detail: format!(
                        "pulled from {} (its filter reads the group); not pulled back yet",
                        m.group_dn
                    ),
                    since_ms: None,
                    holds_now: None,
                    done: false,
                });
            }
        }
    }
}
