//! Decision routes, the hot path: `GET /v1/decision`, `GET /v1/authz` (200 allow / 403 block,
//! same body) and `POST /v1/decisions` (a batch, answered in order). One snapshot load, no
//! lock; the query is decoded borrowing from the request line, answered by the front-end
//! kit's [`front::answer`] (the decision with its side effects, as every front end), and
//! rendered straight into the response body.
//!
//! A decision that depends on a data set that has never loaded is an error, not an allow:
//! `/v1/decision` and `/v1/authz` answer 503 problem+json naming the data sets (with the
//! decision's own fields), a batch item says `"decision":"error"` with its `unknown` policies.
//! Both single routes carry `Warden-Decision: allow|block|error`; the gateway's dispatch
//! guarantees it on every answer of theirs, errors included (see [`super::answer`]).

use std::borrow::Cow;
use std::time::Instant;

use hyper::StatusCode;
use serde::Deserialize;
use smallvec::SmallVec;

use super::problem::{Object, Problem, parse_json};
use super::query::{DecisionQuery, MAX_DB_USERS};
use super::{Call, Response, WARDEN_DECISION, json};
use crate::decide::{Decision, Outcome, Request, Snapshot};
use crate::front;

/// `GET /v1/decision` (200 allow or block) and `GET /v1/authz` (200 allow, 403 block); both
/// 503 when the decision depends on a data set that has never loaded.
pub fn single(call: &Call<'_>, authz: bool) -> Result<Response, Problem> {
    let q = DecisionQuery::parse(call.query).map_err(|e| Problem::bad_request(e.to_string()))?;
    let request = q.request();
    let snapshot = call.warden().engine().load();
    let answer = front::answer(call.warden(), &snapshot, &request);
    let mut body = Vec::with_capacity(160);
    answer.render(&mut body);
    let mut resp = match answer.outcome() {
        Outcome::Allow => json(StatusCode::OK, body),
        Outcome::Block if authz => json(StatusCode::FORBIDDEN, body),
        Outcome::Block => json(StatusCode::OK, body),
        Outcome::Error => unknown(&answer, &body).into_response(),
    };
    resp.headers_mut().insert(
        WARDEN_DECISION,
        hyper::header::HeaderValue::from_static(answer.outcome().as_str()),
    );
    Ok(resp)
}

/// How long a decision naming `min_revision` waits for a snapshot that new.
pub const REVISION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `min_revision=N` in the query of any decision route, the batch included (read-your-writes:
/// the revision a write answered with): waits, at most
/// [`REVISION_WAIT`], until the snapshot is at least that new; then 503 problem+json.
pub async fn at_least(call: &Call<'_>) -> Result<(), Problem> {
    let Some(min) =
        DecisionQuery::min_revision(call.query).map_err(|e| Problem::bad_request(e.to_string()))?
    else {
        return Ok(());
    };
    call.warden()
        .wait_for_revision(min, REVISION_WAIT)
        .await
        .map(|_| ())
        .map_err(|current| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no snapshot at revision {min} within {REVISION_WAIT:?} (this replica is at \
                     {current}); GET /v1/status shows its lag and store; retry"
                ),
            )
            .with("revision", serde_json::json!(current))
            .with("min_revision", serde_json::json!(min))
        })
}

/// The 503 of a decision that depends on data sets that have never loaded: names them, and
/// carries the decision's own fields (`decision`, `snapshot_version`, `matched`, `unknown`).
#[cold]
fn unknown(answer: &front::Answer<'_>, rendered: &[u8]) -> Problem {
    let names = answer.unknown_data_sets();
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let mut p = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "no decision: it depends on data set {} which has never loaded (not from its source, \
             not from persisted last good rows); GET /readyz names what warden waits for, and a \
             policy's `when_unknown` can say block instead",
            quoted.join(", ")
        ),
    )
    .with("data_sets", serde_json::json!(names));
    if let Ok(serde_json::Value::Object(fields)) =
        serde_json::from_slice::<serde_json::Value>(rendered)
    {
        for key in ["decision", "snapshot_version", "matched", "unknown"] {
            if let Some(v) = fields.get(key) {
                p = p.with(key, v.clone());
            }
        }
    }
    p
}

/// `db_user` as one string or an array of strings. Strings borrow from the body unless they
/// contain escapes (`"corp\\alice"`), which must be decoded into their own buffer.
#[derive(Deserialize)]
#[serde(untagged)]
enum Users<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItem<'a> {
    #[serde(borrow)]
    service: Cow<'a, str>,
    #[serde(borrow, default)]
    db_user: Option<Users<'a>>,
    #[serde(borrow, default)]
    os_user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source_app: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    client_ip: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(borrow)]
    requests: Vec<Object<BatchItem<'a>>>,
}

/// A present, non-empty optional field.
fn present<'b>(v: &'b Option<Cow<'_, str>>) -> Option<&'b str> {
    v.as_deref().filter(|s| !s.is_empty())
}

impl BatchItem<'_> {
    fn request(&self, index: usize) -> Result<Request<'_>, Problem> {
        if self.service.is_empty() {
            return Err(Problem::bad_request(format!(
                "field `requests[{index}].service`: must not be empty"
            )));
        }
        let db_user: SmallVec<[&str; 2]> = match &self.db_user {
            None => SmallVec::new(),
            Some(Users::One(u)) => SmallVec::from_slice(&[u.as_ref()]),
            Some(Users::Many(us)) => us.iter().map(AsRef::as_ref).collect(),
        };
        if db_user.len() > MAX_DB_USERS {
            return Err(Problem::bad_request(format!(
                "field `requests[{index}].db_user`: at most {MAX_DB_USERS} values"
            )));
        }
        Ok(Request {
            service: &self.service,
            db_user: db_user.into_iter().filter(|u| !u.is_empty()).collect(),
            os_user: present(&self.os_user),
            source_app: present(&self.source_app),
            client_ip: present(&self.client_ip),
        })
    }
}

/// `POST /v1/decisions`: `{"requests": [{"service": …, "db_user": …}, …]}` →
/// `{"snapshot_version": N, "decisions": [...]}` in request order, all from one snapshot.
pub fn batch(call: &Call<'_>) -> Result<Response, Problem> {
    let snapshot = call.warden().engine().load();
    let mut body = Vec::new();
    answer_batch(
        &snapshot,
        &call.body,
        call.gw.limits().max_batch,
        &mut body,
        |request, d, took| call.warden().record_decision(&snapshot, request, d, took),
    )?;
    Ok(json(StatusCode::OK, body))
}

/// Parses a batch body, decides every request against `snapshot` (one load for all) and
/// renders the answer into `out`; `each` sees every request with its decision and the
/// per-decision time. Returns the number of decisions.
pub fn answer_batch(
    snapshot: &Snapshot,
    body: &[u8],
    max_batch: usize,
    out: &mut Vec<u8>,
    mut each: impl FnMut(&Request<'_>, &Decision, std::time::Duration),
) -> Result<usize, Problem> {
    let batch: Batch<'_> = parse_json(body)?;
    if batch.requests.len() > max_batch {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the batch has {} requests; at most {max_batch} are allowed per call",
                batch.requests.len()
            ),
        ));
    }
    let requests = batch
        .requests
        .iter()
        .enumerate()
        .map(|(i, item)| item.0.request(i))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let mut decisions = Vec::with_capacity(requests.len());
    snapshot.decide_batch(&requests, &mut decisions);
    let per = started.elapsed() / u32::try_from(decisions.len().max(1)).unwrap_or(u32::MAX);
    out.reserve(48 + decisions.len() * 120);
    out.extend_from_slice(b"{\"snapshot_version\":");
    out.extend_from_slice(snapshot.version().to_string().as_bytes());
    out.extend_from_slice(b",\"decisions\":[");
    for (i, (d, request)) in decisions.iter().zip(&requests).enumerate() {
        each(request, d, per);
        if i > 0 {
            out.push(b',');
        }
        snapshot.render_decision(d, out);
    }
    out.extend_from_slice(b"]}");
    Ok(decisions.len())
}
