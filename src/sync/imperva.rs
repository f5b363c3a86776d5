//! Sync out to an Imperva MX through its Open API ([`api`]: the session, the IMP codes, the
//! shapes, bounded requests), and the push of a warden data set into an MX data set.
//!
//! A push first makes sure the MX data set exists — probed by reading its columns, created
//! with the warden data set's columns, key and case sensitivity when the MX says it does not
//! exist (IMP-10094) — and reports, never rebuilds, one whose columns differ. Then:
//!
//! - **differences** against what was last pushed: new and changed records added with
//!   `PUT …/data?overwrite=true` (the MX replaces a record of the same key, so a change is one
//!   request and never leaves the record missing), then the keys that are gone deleted. Adds go
//!   first, so a push cut short leaves a block too many, never one too few. A delete the MX
//!   refuses because the key is already gone (IMP-10099: a hand edit, a push cut short, a
//!   request that timed out after the MX applied it) means the MX no longer holds what warden
//!   last pushed: warden reads the MX data set back and sends what turns it into the data set
//!   ("reconciled"), and the stored base moves to what the MX now holds;
//! - **full** (the first push of a running warden, when nothing was pushed before, or on
//!   request): one `POST …/data` when the records fit one request, `DELETE …/data` when there
//!   are none (the SDK stopped POSTing empty record lists), and otherwise a reconcile, because a
//!   replace split over several requests would leave the data set without most rows between
//!   the first and the last.
//!
//! Every request carries at most [`MAX_BATCH_RECORDS`] records and [`MAX_BATCH_BYTES`] bytes,
//! so the per-request `timeout` bounds a batch, not the whole data set. What was pushed is kept
//! in the store, so any process — the server, the CLI — diffs from the same base.

mod api;

use std::collections::BTreeMap;

use hyper::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

pub use api::{
    API, ImpCode, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MxClient, imp_error, imp_error_body,
    parse_columns, segment,
};
use api::{Batches, MAX_MX_RESPONSE_BYTES};

use super::SyncMetrics;
use crate::base::secret::SecretError;
use crate::config::{ImpervaConfig, ImpervaPush, Source};
use crate::model::dataset::{DataSet, fold};
use crate::outbound::{Endpoint, OutboundError, Trust};
use crate::runtime::Warden;
use crate::store::{PushStatus, StoreError};

/// How often the serve loop looks again at a data set that has not been loaded yet.
pub const NOT_LOADED_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// How many times one push reads the MX data set back when its deletes keep meeting keys that
/// are gone (someone else deleting at the same time) before it gives up until the next try.
const RECONCILE_ROUNDS: usize = 3;

/// One push at a time in this process: the serve loop and a push requested over HTTP diff
/// from the same stored base, so two at once would both send the same difference.
static PUSHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Why talking to the MX failed.
#[derive(Debug, thiserror::Error)]
pub enum MxError {
    #[error("no [imperva] section in the configuration")]
    NotConfigured,
    #[error("MX password: {0}")]
    Secret(#[from] SecretError),
    #[error("MX url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("MX: {0}")]
    Outbound(#[from] OutboundError),
    #[error(
        "MX: TLS failed: {0}; an MX certificate that no CA in the system roots or ca_file \
         vouches for (an MX's usual self-signed one) is trusted by pinning it: \
         tls_pin = \"sha256/…\" (docs/imperva.md, \"Trusting the MX's certificate\")"
    )]
    Untrusted(String),
    #[error("the MX answered {status} to {method} {path}{}: {message}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        status: u16,
        method: Method,
        path: String,
        /// The IMP code as sent.
        code: Option<String>,
        message: String,
    },
    #[error(
        "MX data set {name:?} has columns [{found}] but warden's data set has [{expected}]; \
         change one to match — warden never rebuilds an MX data set"
    )]
    ColumnMismatch {
        name: String,
        expected: String,
        found: String,
    },
    #[error("the MX answered outside the documented API: {0}")]
    Protocol(String),
    #[error("no data set named {0:?}")]
    NoSuchDataSet(String),
    #[error(
        "data set {0:?} has not been loaded yet (no last good rows); pushing it would empty \
         the MX data set"
    )]
    NotLoaded(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MxError {
    /// The documented IMP code the MX answered with, if it answered with one.
    pub fn imp_code(&self) -> Option<ImpCode> {
        match self {
            MxError::Api { code, .. } => code.as_deref().and_then(ImpCode::parse),
            _ => None,
        }
    }

    fn api(status: StatusCode, method: Method, path: &str, body: &[u8]) -> MxError {
        let (code, message) = imp_error(body);
        MxError::Api {
            status: status.as_u16(),
            method,
            path: path.to_owned(),
            code,
            message,
        }
    }
}

impl MxClient {
    /// A client for the configured MX, verified by its pinned certificate or against the
    /// system roots and the CA file. Reads the CA file (blocking I/O).
    pub fn from_config(config: &ImpervaConfig) -> Result<MxClient, MxError> {
        let trust = match config.tls_pin {
            Some(pin) => Trust::Pin(pin),
            None => Trust::Roots(config.ca_file.as_deref()),
        };
        let endpoint =
            Endpoint::with_trust(&config.url, trust, config.allow_insecure, config.timeout)
                .map_err(|e| match e {
                    OutboundError::Url(reason) => MxError::Url {
                        url: config.url.clone(),
                        reason,
                    },
                    other => MxError::Outbound(other),
                })?
                .with_response_limit(MAX_MX_RESPONSE_BYTES);
        Ok(MxClient::new(endpoint, &config.username, &config.password))
    }
}

/// Full replace or difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Full,
    Incremental,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Incremental => "incremental",
        }
    }
}

/// How a push went: the mode it ended in (`full`, also when it created the MX data set and
/// filled it; `incremental`; or `reconciled` when a difference met a key already gone and the
/// MX data set was read back), and the records it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub mode: &'static str,
    pub sent: usize,
}

/// What a push sends (or, in a dry run, would send).
#[derive(Debug, Clone, Serialize)]
pub struct PushPlan {
    pub data_set: String,
    pub mx_name: String,
    pub mode: Mode,
    /// Records in the data set now.
    pub rows: usize,
    /// Records a full replace sends, or an incremental push adds.
    pub add: usize,
    /// Records an incremental push deletes.
    pub delete: usize,
    pub dry_run: bool,
    /// In a dry run, the records that would be sent: `{"add": [...], "delete": [...]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_send: Option<Value>,
    /// After a push, how it went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(skip)]
    add_records: Vec<Value>,
    #[serde(skip)]
    delete_records: Vec<Value>,
    /// The records the MX data set should hold, by key as the MX data set compares keys.
    #[serde(skip)]
    now: BTreeMap<String, Value>,
    #[serde(skip)]
    key_column: String,
    #[serde(skip)]
    columns: Vec<(String, bool)>,
    #[serde(skip)]
    case_sensitive: bool,
}

/// The data set's rows, each as Imperva's record object.
fn records_of(set: &DataSet) -> Vec<Value> {
    set.rows()
        .iter()
        .map(|row| {
            let mut out = Vec::new();
            set.write_record(row, &mut out);
            serde_json::from_slice(&out).unwrap_or(Value::Null)
        })
        .collect()
}

/// The value of a record's key column: a string, or an array of one.
fn key_of<'a>(record: &'a Value, key_column: &str) -> Option<&'a str> {
    match &record[key_column] {
        Value::String(s) => Some(s),
        Value::Array(a) if a.len() == 1 => a[0].as_str(),
        _ => None,
    }
}

/// Records by their key as the MX data set compares keys (folded unless it is
/// case-sensitive). A record without a key is left out: nothing can address it.
fn keyed(
    records: impl IntoIterator<Item = Value>,
    key_column: &str,
    case_sensitive: bool,
) -> BTreeMap<String, Value> {
    records
        .into_iter()
        .filter_map(|r| Some((fold(key_of(&r, key_column)?, case_sensitive), r)))
        .collect()
}

/// A record's cells as sets of values, empty cells left out, a lone value the same as an
/// array of one: how a record warden sent and the same record read back from the MX compare.
fn cells(record: &Value) -> BTreeMap<&str, Vec<&str>> {
    let Some(fields) = record.as_object() else {
        return BTreeMap::new();
    };
    fields
        .iter()
        .filter_map(|(column, value)| {
            let mut values: Vec<&str> = match value {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            values.retain(|v| !v.is_empty());
            values.sort_unstable();
            (!values.is_empty()).then_some((column.as_str(), values))
        })
        .collect()
}

/// Whether a data set has rows to push. A directory or API data set that has never been
/// loaded is an empty placeholder: a full replace with it would empty the MX data set (fail
/// open, say while the directory is down on a fresh install), so it waits for its first load.
fn loaded(warden: &Warden, name: &str) -> Result<bool, MxError> {
    let config = warden.config();
    let source = config
        .data_sets
        .iter()
        .find(|d| d.name == name)
        .map(|d| &d.source);
    match source {
        None => Err(MxError::NoSuchDataSet(name.to_owned())),
        Some(Source::Ldap(_) | Source::Api { .. }) => {
            Ok(warden.store().rows_generation(name)?.is_some())
        }
        Some(Source::List { .. } | Source::Static { .. }) => Ok(true),
    }
}

/// Plans a push of `push` from what the store says was last pushed.
pub fn plan(warden: &Warden, push: &ImpervaPush, full: bool) -> Result<PushPlan, MxError> {
    if !loaded(warden, &push.data_set)? {
        return Err(MxError::NotLoaded(push.data_set.clone()));
    }
    let set = warden
        .data_set(&push.data_set)
        .ok_or_else(|| MxError::NoSuchDataSet(push.data_set.clone()))?;
    let schema = set.schema();
    let key_column = schema.columns()[schema.key_index()].name.clone();
    let cs = push.case_sensitive;
    let now = keyed(records_of(&set), &key_column, cs);
    // Keyed again as the MX compares keys: a base stored by an older warden may be keyed
    // otherwise.
    let base: Option<BTreeMap<String, Value>> = warden
        .store()
        .pushed_records(&push.data_set, &push.mx_name)?
        .and_then(|text| serde_json::from_str::<BTreeMap<String, Value>>(&text).ok())
        .map(|stored| keyed(stored.into_values(), &key_column, cs));
    let (mode, add_records, delete_records) = match base {
        Some(base) if !full => {
            let (add, delete) = difference(&base, &now, &key_column);
            (Mode::Incremental, add, delete)
        }
        _ => (Mode::Full, now.values().cloned().collect(), Vec::new()),
    };
    Ok(PushPlan {
        data_set: push.data_set.clone(),
        mx_name: push.mx_name.clone(),
        mode,
        rows: now.len(),
        add: add_records.len(),
        delete: delete_records.len(),
        dry_run: false,
        would_send: None,
        outcome: None,
        add_records,
        delete_records,
        now,
        key_column,
        columns: schema
            .columns()
            .iter()
            .map(|c| (c.name.clone(), c.key))
            .collect(),
        case_sensitive: cs,
    })
}

/// What turns the MX's `base` records into `now`: records to add (new, or changed: the MX
/// replaces a record of the same key), and keys to delete (as records of the key column
/// alone, "The delete operation requires only the key column of the lookup data set").
fn difference(
    base: &BTreeMap<String, Value>,
    now: &BTreeMap<String, Value>,
    key_column: &str,
) -> (Vec<Value>, Vec<Value>) {
    let add = now
        .iter()
        .filter(|(key, record)| base.get(*key).is_none_or(|b| cells(b) != cells(record)))
        .map(|(_, record)| record.clone())
        .collect();
    let delete = base
        .iter()
        .filter(|(key, _)| !now.contains_key(*key))
        .filter_map(|(_, record)| Some(json!({ key_column: key_of(record, key_column)? })))
        .collect();
    (add, delete)
}

fn describe(columns: &[(String, bool)]) -> String {
    columns
        .iter()
        .map(|(n, k)| if *k { format!("{n} (key)") } else { n.clone() })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates the MX data set if the MX says it does not exist; reports one whose columns differ.
/// Returns whether it was created.
async fn ensure_data_set(client: &MxClient, plan: &PushPlan) -> Result<bool, MxError> {
    if let Some(mut found) = client.columns(&plan.mx_name).await? {
        let mut expected = plan.columns.clone();
        found.sort();
        expected.sort();
        if found != expected {
            return Err(MxError::ColumnMismatch {
                name: plan.mx_name.clone(),
                expected: describe(&expected),
                found: describe(&found),
            });
        }
        return Ok(false);
    }
    let body = json!({
        "dataset-name": plan.mx_name,
        "number-of-columns": plan.columns.len(),
        "columns": plan.columns.iter().map(|(n, k)| json!({ "name": n, "key": k })).collect::<Vec<_>>(),
    });
    let path = format!(
        "/conf/dataSets/createDataset?caseSensitive={}",
        plan.case_sensitive
    );
    client
        .call(Method::POST, &path, Some(body.to_string().into()))
        .await?;
    Ok(true)
}

/// Adds (or replaces, by key) `records`, a bounded request at a time.
async fn add(client: &MxClient, data: &str, records: &[Value]) -> Result<usize, MxError> {
    let path = format!("{data}?overwrite=true");
    for body in Batches::action("add").split(records) {
        client.call(Method::PUT, &path, Some(body)).await?;
    }
    Ok(records.len())
}

/// Deletes the keys of `keys` (records of the key column alone), a bounded request at a time.
async fn delete(client: &MxClient, data: &str, keys: &[Value]) -> Result<usize, MxError> {
    for body in Batches::action("delete").split(keys) {
        client.call(Method::PUT, data, Some(body)).await?;
    }
    Ok(keys.len())
}

/// Reads the MX data set back and sends what turns it into the plan's records: changed and
/// missing records added, extra keys deleted. Returns the records sent.
async fn reconcile(client: &MxClient, plan: &PushPlan, data: &str) -> Result<usize, MxError> {
    let mut sent = 0;
    let mut round = 1;
    loop {
        let held = keyed(
            client.records(&plan.mx_name).await?,
            &plan.key_column,
            plan.case_sensitive,
        );
        let (to_add, to_delete) = difference(&held, &plan.now, &plan.key_column);
        sent += add(client, data, &to_add).await?;
        match delete(client, data, &to_delete).await {
            Ok(n) => return Ok(sent + n),
            Err(e)
                if e.imp_code() == Some(ImpCode::KeyToDeleteMissing)
                    && round < RECONCILE_ROUNDS =>
            {
                round += 1;
                tracing::info!(data_set = %plan.data_set, "the MX data set changed while warden reconciled it; reading it again");
            }
            Err(e) => return Err(e),
        }
    }
}

/// A full replace: one `POST` when the records fit one request, `DELETE …/data` when there
/// are none, a reconcile otherwise.
async fn replace(client: &MxClient, plan: &PushPlan, data: &str) -> Result<usize, MxError> {
    if plan.now.is_empty() {
        client.call(Method::DELETE, data, None).await?;
        return Ok(0);
    }
    let records: Vec<Value> = plan.now.values().cloned().collect();
    let mut bodies = Batches::replace().split(&records);
    if bodies.len() == 1
        && let Some(body) = bodies.pop()
    {
        client.call(Method::POST, data, Some(body)).await?;
        return Ok(records.len());
    }
    reconcile(client, plan, data).await
}

/// Sends a plan and records the outcome in the store.
pub async fn execute(
    warden: &Warden,
    client: &MxClient,
    plan: &PushPlan,
) -> Result<Outcome, MxError> {
    let result = send_plan(client, plan).await;
    let store = warden.store();
    match &result {
        Ok(outcome) => {
            store.push_succeeded(
                &plan.data_set,
                &plan.mx_name,
                &serde_json::to_string(&plan.now).unwrap_or_else(|_| "{}".into()),
                outcome.mode,
                outcome.sent,
            )?;
            record_landings(store, plan);
        }
        Err(e) => {
            warden.metrics().get::<SyncMetrics>().sync_failed("imperva");
            store.push_failed(&plan.data_set, &plan.mx_name, &e.to_string())?;
        }
    }
    result
}

/// Records which listed accounts the records sent landed on the MX data set (and which left
/// it): `warden accounts show` reads it. A failure to record is logged, never the push's.
fn record_landings(store: &crate::store::Store, plan: &PushPlan) {
    let Some((key, _)) = plan.columns.iter().find(|(_, key)| *key) else {
        return;
    };
    let keys = |records: &[Value]| -> Vec<String> {
        records
            .iter()
            .filter_map(|r| r.get(key).and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    let target = format!("{} ({})", plan.mx_name, plan.data_set);
    let (sent, deleted) = (keys(&plan.add_records), keys(&plan.delete_records));
    let recorded = super::accounts::record_rows(
        store,
        crate::store::SurfaceKind::Mx,
        &target,
        &sent,
        &deleted,
    );
    if let Err(e) = recorded {
        tracing::warn!(data_set = %plan.data_set, error = %e, "cannot record which accounts the MX push landed");
    }
}

async fn send_plan(client: &MxClient, plan: &PushPlan) -> Result<Outcome, MxError> {
    let created = ensure_data_set(client, plan).await?;
    let data = format!("/conf/dataSets/{}/data", segment(&plan.mx_name));
    let mode = plan.mode.as_str();
    if created {
        // A data set created just now is empty: adding every record fills it whole. This is
        // also how a data set deleted on the MX comes back: every push probes for it first.
        let records: Vec<Value> = plan.now.values().cloned().collect();
        let sent = add(client, &data, &records).await?;
        return Ok(Outcome { mode: "full", sent });
    }
    if plan.mode == Mode::Full {
        let sent = replace(client, plan, &data).await?;
        return Ok(Outcome { mode, sent });
    }
    let added = add(client, &data, &plan.add_records).await?;
    match delete(client, &data, &plan.delete_records).await {
        Ok(deleted) => Ok(Outcome {
            mode,
            sent: added + deleted,
        }),
        Err(e) if e.imp_code() == Some(ImpCode::KeyToDeleteMissing) => {
            tracing::info!(data_set = %plan.data_set, error = %e, "a key warden deletes is already gone from the MX; reading the MX data set back to reconcile it");
            let sent = reconcile(client, plan, &data).await?;
            Ok(Outcome {
                mode: "reconciled",
                sent: added + sent,
            })
        }
        Err(e) => Err(e),
    }
}

/// Pushes every configured data set now (or plans it, for a dry run): used by the HTTP
/// "push now" route and `warden imperva push`.
pub async fn push_now(
    warden: &Warden,
    full: bool,
    dry_run: bool,
) -> Result<Vec<PushPlan>, MxError> {
    let config = warden
        .config()
        .imperva
        .clone()
        .ok_or(MxError::NotConfigured)?;
    let _one_at_a_time = if dry_run {
        None
    } else {
        Some(PUSHING.lock().await)
    };
    let mut plans = Vec::new();
    for push in &config.pushes {
        let mut p = plan(warden, push, full)?;
        if dry_run {
            p.dry_run = true;
            p.would_send = Some(json!({ "add": p.add_records, "delete": p.delete_records }));
        }
        plans.push(p);
    }
    if dry_run {
        return Ok(plans);
    }
    let client = MxClient::from_config(&config)?;
    let mut result = Ok(());
    for p in &mut plans {
        match execute(warden, &client, p).await {
            Ok(outcome) => p.outcome = Some(outcome),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    client.logout().await;
    result.map(|()| plans)
}

/// How pushing each configured data set is going, those never pushed included.
pub fn status(warden: &Warden) -> Result<Vec<PushStatus>, MxError> {
    let config = warden.config();
    let Some(imperva) = &config.imperva else {
        return Ok(Vec::new());
    };
    let stored = warden.store().push_statuses()?;
    Ok(imperva
        .pushes
        .iter()
        .map(|push| {
            stored
                .iter()
                .find(|s| s.data_set == push.data_set && s.mx_name == push.mx_name)
                .cloned()
                .unwrap_or_else(|| PushStatus::never(&push.data_set, &push.mx_name))
        })
        .collect())
}

/// One push of the serve loop, logged.
pub async fn push_one(
    warden: &Warden,
    client: &MxClient,
    push: &ImpervaPush,
    full: bool,
) -> Result<(), MxError> {
    let _one_at_a_time = PUSHING.lock().await;
    let outcome = match tokio::task::block_in_place(|| plan(warden, push, full)) {
        Ok(p) => execute(warden, client, &p).await,
        Err(e) => Err(e),
    };
    match &outcome {
        Ok(o) => {
            tracing::info!(data_set = %push.data_set, mode = o.mode, sent = o.sent, "pushed to the Imperva MX");
        }
        Err(e @ MxError::NotLoaded(_)) => {
            tracing::info!(data_set = %push.data_set, "{e}; waiting for its first load");
        }
        Err(e) => {
            tracing::warn!(data_set = %push.data_set, error = %e, "Imperva MX push failed");
        }
    }
    outcome.map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_mx_error_reads_its_documented_code_and_keeps_others_as_sent() {
        let refused =
            |body: &[u8]| MxError::api(StatusCode::NOT_ACCEPTABLE, Method::PUT, "/d", body);
        let gone = refused(br#"{"errors":[{"error-code":"IMP-10099","description":"The key to delete does not exist."}]}"#);
        assert_eq!(gone.imp_code(), Some(ImpCode::KeyToDeleteMissing));
        assert!(
            gone.to_string()
                .contains("406 to PUT /d (IMP-10099): The key to delete"),
            "{gone}"
        );
        // An undocumented code is kept as sent, and typed as nothing.
        let other = refused(br#"{"errors":[{"error-code":"IMP-12345","description":"x"}]}"#);
        assert_eq!(other.imp_code(), None);
        assert!(other.to_string().contains("(IMP-12345)"), "{other}");
        assert_eq!(refused(b"Service Unavailable").imp_code(), None);
    }

    fn records(rows: &[(&str, &str)], cs: bool) -> BTreeMap<String, Value> {
        keyed(
            rows.iter()
                .map(|(user, reason)| json!({ "user": user, "reason": reason })),
            "user",
            cs,
        )
    }

    #[test]
    fn a_difference_adds_new_and_changed_records_and_deletes_only_gone_keys() {
        let base = records(&[("alice", "a"), ("bob", "b"), ("carol", "c")], false);
        let now = records(&[("alice", "a"), ("Carol", "c2"), ("dave", "d")], false);
        let (add, delete) = difference(&base, &now, "user");
        // carol changed (case and reason): one add, which the MX applies as a replace.
        assert_eq!(
            add,
            [
                json!({"user": "Carol", "reason": "c2"}),
                json!({"user": "dave", "reason": "d"})
            ]
        );
        assert_eq!(delete, [json!({"user": "bob"})]);
        assert_eq!(difference(&now, &now, "user"), (vec![], vec![]));
    }

    #[test]
    fn on_a_case_sensitive_mx_a_key_whose_case_changed_is_another_key() {
        let base = records(&[("Carol", "c")], true);
        let now = records(&[("carol", "c")], true);
        let (add, delete) = difference(&base, &now, "user");
        assert_eq!(add, [json!({"user": "carol", "reason": "c"})]);
        assert_eq!(delete, [json!({"user": "Carol"})]);
    }

    #[test]
    fn records_read_back_compare_by_their_values_not_their_spelling() {
        // The MX may send a lone value as an array of one, or an empty cell as "".
        let sent = json!({"user": "alice", "groups": ["b", "a"]});
        let read = json!({"user": ["alice"], "groups": ["a", "b"], "reason": ""});
        assert_eq!(cells(&sent), cells(&read));
        assert_ne!(
            cells(&sent),
            cells(&json!({"user": "alice", "groups": "a"}))
        );
        let held = keyed([read], "user", false);
        let now = keyed([sent], "user", false);
        assert_eq!(difference(&held, &now, "user"), (vec![], vec![]));
    }
}
