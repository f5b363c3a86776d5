//! Sync out to an Imperva MX through its Open API: a client that logs in (Basic auth → a
//! session id sent back as the `Cookie`), logs in again when the session is gone (401 or
//! IMP-10063), and speaks HTTPS verified against the system roots plus an optional CA file;
//! and the push of a warden data set into an MX data set.
//!
//! A push first makes sure the MX data set exists: it is created with the warden data set's
//! columns, key and case sensitivity when missing, and a data set whose columns differ is
//! reported, never rebuilt. Then either a full replace (`POST …/data`; on the first push of a
//! running warden, when nothing was pushed before, or on request) or the difference against
//! what was last pushed (`PUT …/data` with `delete`, then `add`). What was pushed is kept in
//! the store, so any process — the server, the CLI — diffs from the same base.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::base::secret::{SecretError, SecretSource};
use crate::config::{ImpervaConfig, ImpervaPush, Source};
use crate::model::dataset::{DataSet, fold};
use crate::outbound::{Endpoint, OutboundError};
use crate::runtime::Warden;
use crate::store::{PushStatus, StoreError};

/// Where the Open API lives on the MX.
pub const API: &str = "/SecureSphere/api/v1";

/// How often the serve loop looks again at a data set that has not been loaded yet.
pub const NOT_LOADED_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// One push at a time in this process: the serve loop and a push requested over HTTP diff
/// from the same stored base, so two at once would both send the same difference.
static PUSHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An IMP error code from the MX; the documented ones by meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImpCode {
    /// IMP-10063: no session, or it expired.
    NotLoggedIn,
    /// IMP-10094: no such data set.
    NoSuchDataSet,
    /// IMP-10095: a record names a column the data set lacks.
    UnknownColumn,
    /// IMP-10096: a record lacks the key column.
    KeyMissing,
    /// IMP-10097: a key is already present (or repeated in the request).
    DuplicateKey,
    /// Any other code, as sent.
    Other(String),
}

impl ImpCode {
    pub fn parse(code: &str) -> ImpCode {
        match code {
            "IMP-10063" => ImpCode::NotLoggedIn,
            "IMP-10094" => ImpCode::NoSuchDataSet,
            "IMP-10095" => ImpCode::UnknownColumn,
            "IMP-10096" => ImpCode::KeyMissing,
            "IMP-10097" => ImpCode::DuplicateKey,
            other => ImpCode::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ImpCode::NotLoggedIn => "IMP-10063",
            ImpCode::NoSuchDataSet => "IMP-10094",
            ImpCode::UnknownColumn => "IMP-10095",
            ImpCode::KeyMissing => "IMP-10096",
            ImpCode::DuplicateKey => "IMP-10097",
            ImpCode::Other(code) => code,
        }
    }
}

impl std::fmt::Display for ImpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    #[error("the MX answered {status} to {method} {path}{}: {message}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        status: u16,
        method: Method,
        path: String,
        code: Option<ImpCode>,
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
    /// The IMP code the MX answered with, if it answered with one.
    pub fn imp_code(&self) -> Option<&ImpCode> {
        match self {
            MxError::Api { code, .. } => code.as_ref(),
            _ => None,
        }
    }

    /// Whether the MX refused records in a way that says its data set no longer holds what
    /// warden last pushed (changed on the MX, or gone): a difference cannot be applied to it,
    /// a full replace can.
    pub fn means_drift(&self) -> bool {
        matches!(
            self.imp_code(),
            Some(ImpCode::NoSuchDataSet | ImpCode::KeyMissing | ImpCode::DuplicateKey)
        )
    }

    fn api(status: StatusCode, method: Method, path: &str, body: &[u8]) -> MxError {
        let (code, message) = imp_error(body);
        MxError::Api {
            status: status.as_u16(),
            method,
            path: path.to_owned(),
            code: code.as_deref().map(ImpCode::parse),
            message,
        }
    }
}

/// An Open API client for one MX, holding its session.
pub struct MxClient {
    endpoint: Endpoint,
    username: String,
    password: SecretSource,
    session: tokio::sync::Mutex<Option<String>>,
}

/// Percent-encodes one path segment (a data set name).
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The IMP code and message of an error answer (`{"errors":[{"error-code","description"}]}`).
pub fn imp_error(body: &[u8]) -> (Option<String>, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let first = parsed
        .as_ref()
        .and_then(|v| v["errors"].as_array())
        .and_then(|e| e.first().cloned());
    match first {
        Some(e) => (
            e["error-code"].as_str().map(str::to_owned),
            e["description"].as_str().unwrap_or("").to_owned(),
        ),
        None => {
            let text = String::from_utf8_lossy(body);
            (None, text.chars().take(200).collect())
        }
    }
}

impl MxClient {
    /// A client for the configured MX. Reads the CA file (blocking I/O).
    pub fn new(config: &ImpervaConfig) -> Result<MxClient, MxError> {
        let endpoint = Endpoint::new(
            &config.url,
            config.ca_file.as_deref(),
            config.allow_insecure,
            config.timeout,
        )
        .map_err(|e| match e {
            OutboundError::Url(reason) => MxError::Url {
                url: config.url.clone(),
                reason,
            },
            other => MxError::Outbound(other),
        })?;
        Ok(MxClient {
            endpoint,
            username: config.username.clone(),
            password: config.password.clone(),
            session: tokio::sync::Mutex::new(None),
        })
    }

    async fn send(
        &self,
        method: &Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), MxError> {
        let body = body.map(|v| Bytes::from(v.to_string()));
        Ok(self
            .endpoint
            .send(method, &format!("{API}{path}"), headers, body)
            .await?)
    }

    /// Logs in; returns the cookie to send back.
    async fn login(&self) -> Result<String, MxError> {
        let password = self.password.read()?;
        let basic = crate::auth::base64_standard(
            format!("{}:{}", self.username, password.expose()).as_bytes(),
        );
        let auth = format!("Basic {basic}");
        let (status, body) = self
            .send(
                &Method::POST,
                "/auth/session",
                &[("Authorization", &auth)],
                None,
            )
            .await?;
        if !status.is_success() {
            return Err(MxError::api(status, Method::POST, "/auth/session", &body));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| MxError::Protocol(format!("login answer is not JSON: {e}")))?;
        v["session-id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| MxError::Protocol("login answer has no session-id".into()))
    }

    async fn cookie(&self, renew: bool) -> Result<String, MxError> {
        let mut session = self.session.lock().await;
        if renew || session.is_none() {
            *session = Some(self.login().await?);
        }
        session
            .clone()
            .ok_or_else(|| MxError::Protocol("no session".into()))
    }

    /// An API call with the session, logging in again once if the MX forgot it.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, MxError> {
        let mut renew = false;
        loop {
            let cookie = self.cookie(renew).await?;
            let (status, answer) = self
                .send(&method, path, &[("Cookie", &cookie)], body)
                .await?;
            if status.is_success() {
                if answer.is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_slice(&answer)
                    .map_err(|e| MxError::Protocol(format!("{method} {path}: {e}")));
            }
            let error = MxError::api(status, method.clone(), path, &answer);
            let expired = status == StatusCode::UNAUTHORIZED
                || error.imp_code() == Some(&ImpCode::NotLoggedIn);
            if expired && !renew {
                tracing::info!(mx = %self.endpoint.url(), "MX session expired; logging in again");
                renew = true;
                continue;
            }
            return Err(error);
        }
    }

    /// Ends the session, if there is one (best effort).
    pub async fn logout(&self) {
        let cookie = self.session.lock().await.take();
        if let Some(c) = cookie {
            let _ = self
                .send(&Method::DELETE, "/auth/session", &[("Cookie", &c)], None)
                .await;
        }
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
    #[serde(skip)]
    add_records: Vec<Value>,
    #[serde(skip)]
    delete_records: Vec<Value>,
    #[serde(skip)]
    state: String,
    #[serde(skip)]
    columns: Vec<(String, bool)>,
    #[serde(skip)]
    case_sensitive: bool,
}

/// The data set's records by folded key, each as Imperva's record object.
fn records_by_key(set: &DataSet) -> BTreeMap<String, Value> {
    let cs = set.schema().case_sensitive();
    set.rows()
        .iter()
        .map(|row| {
            let mut out = Vec::new();
            set.write_record(row, &mut out);
            let record = serde_json::from_slice(&out).unwrap_or(Value::Null);
            (fold(set.key_of(row), cs), record)
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
    let now = records_by_key(&set);
    let base: Option<BTreeMap<String, Value>> = warden
        .store()
        .pushed_records(&push.data_set, &push.mx_name)?
        .and_then(|text| serde_json::from_str(&text).ok());
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
        add_records,
        delete_records,
        state: serde_json::to_string(&now).unwrap_or_else(|_| "{}".into()),
        columns: schema
            .columns()
            .iter()
            .map(|c| (c.name.clone(), c.key))
            .collect(),
        case_sensitive: push.case_sensitive,
    })
}

/// What turns the MX's `base` records into `now`: records to add, and keys (as records of the
/// key column alone) to delete first. A changed record is deleted and added again, because the
/// Open API has no update.
fn difference(
    base: &BTreeMap<String, Value>,
    now: &BTreeMap<String, Value>,
    key_column: &str,
) -> (Vec<Value>, Vec<Value>) {
    let delete = base
        .iter()
        .filter(|(key, record)| now.get(*key) != Some(record))
        .map(|(_, record)| json!({ key_column: record[key_column] }))
        .collect();
    let add = now
        .iter()
        .filter(|(key, record)| base.get(*key) != Some(record))
        .map(|(_, record)| record.clone())
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

/// Creates the MX data set if it is missing; reports one whose columns differ.
async fn ensure_data_set(client: &MxClient, plan: &PushPlan) -> Result<bool, MxError> {
    let listing = client.call(Method::GET, "/conf/dataSets", None).await?;
    let exists = listing["data-sets"]
        .as_array()
        .ok_or_else(|| MxError::Protocol("GET /conf/dataSets has no data-sets array".into()))?
        .iter()
        .any(|n| n.as_str() == Some(&plan.mx_name));
    let name = segment(&plan.mx_name);
    if !exists {
        let body = json!({
            "dataset-name": plan.mx_name,
            "number-of-columns": plan.columns.len(),
            "columns": plan.columns.iter().map(|(n, k)| json!({ "name": n, "key": k })).collect::<Vec<_>>(),
        });
        client
            .call(
                Method::POST,
                &format!(
                    "/conf/dataSets/createDataset?caseSensitive={}",
                    plan.case_sensitive
                ),
                Some(&body),
            )
            .await?;
        return Ok(true);
    }
    let found = client
        .call(Method::GET, &format!("/conf/dataSets/{name}/columns"), None)
        .await?;
    let mut found: Vec<(String, bool)> = found["columns"]
        .as_array()
        .ok_or_else(|| MxError::Protocol("data set columns answer has no columns array".into()))?
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_owned(),
                c["key"].as_bool().unwrap_or(false),
            )
        })
        .collect();
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
    Ok(false)
}

/// Sends a plan and records the outcome in the store. Returns the records sent.
pub async fn execute(
    warden: &Warden,
    client: &MxClient,
    plan: &PushPlan,
) -> Result<usize, MxError> {
    let result = send_plan(client, plan).await;
    let store = warden.store();
    match &result {
        Ok(sent) => {
            store.push_succeeded(
                &plan.data_set,
                &plan.mx_name,
                &plan.state,
                plan.mode.as_str(),
                *sent,
            )?;
            record_landings(store, plan);
        }
        Err(e) => {
            warden.metrics().sync_failed("imperva");
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

async fn send_plan(client: &MxClient, plan: &PushPlan) -> Result<usize, MxError> {
    let created = ensure_data_set(client, plan).await?;
    let path = format!("/conf/dataSets/{}/data", segment(&plan.mx_name));
    match plan.mode {
        Mode::Full => {
            let body = json!({ "records": plan.add_records });
            client.call(Method::POST, &path, Some(&body)).await?;
            Ok(plan.add_records.len())
        }
        // A data set created just now is empty: the difference is everything.
        Mode::Incremental if created => {
            let body = json!({ "records": plan.add_records });
            client.call(Method::POST, &path, Some(&body)).await?;
            Ok(plan.add_records.len())
        }
        Mode::Incremental => {
            if !plan.delete_records.is_empty() {
                let body = json!({ "action": "delete", "records": plan.delete_records });
                client.call(Method::PUT, &path, Some(&body)).await?;
            }
            if !plan.add_records.is_empty() {
                let body = json!({ "action": "add", "records": plan.add_records });
                client.call(Method::PUT, &path, Some(&body)).await?;
            }
            Ok(plan.add_records.len() + plan.delete_records.len())
        }
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
    let client = MxClient::new(&config)?;
    let mut result = Ok(());
    for p in &plans {
        if let Err(e) = execute(warden, &client, p).await {
            result = Err(e);
            break;
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
        Ok(p) => execute(warden, client, &p).await.map(|sent| (p, sent)),
        Err(e) => Err(e),
    };
    match &outcome {
        Ok((p, sent)) => {
            tracing::info!(data_set = %push.data_set, mode = p.mode.as_str(), sent, "pushed to the Imperva MX");
        }
        Err(e @ MxError::NotLoaded(_)) => {
            tracing::info!(data_set = %push.data_set, "{e}; waiting for its first load");
        }
        Err(e) if e.means_drift() => {
            tracing::warn!(data_set = %push.data_set, error = %e, "the MX data set differs from what warden last pushed; replacing it whole next");
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
    fn imp_errors_are_read_from_the_documented_shape() {
        let (code, msg) = imp_error(
            br#"{"errors":[{"error-code":"IMP-10094","description":"no such data set"}]}"#,
        );
        assert_eq!(code.as_deref(), Some("IMP-10094"));
        assert_eq!(msg, "no such data set");
        let (code, msg) = imp_error(b"Service Unavailable");
        assert_eq!(code, None);
        assert_eq!(msg, "Service Unavailable");
    }

    #[test]
    fn documented_imp_codes_are_typed_and_others_kept_as_sent() {
        for (text, code) in [
            ("IMP-10063", ImpCode::NotLoggedIn),
            ("IMP-10094", ImpCode::NoSuchDataSet),
            ("IMP-10095", ImpCode::UnknownColumn),
            ("IMP-10096", ImpCode::KeyMissing),
            ("IMP-10097", ImpCode::DuplicateKey),
            ("IMP-12345", ImpCode::Other("IMP-12345".into())),
        ] {
            assert_eq!(ImpCode::parse(text), code);
            assert_eq!(code.as_str(), text);
        }
        let refused = |body: &[u8]| MxError::api(StatusCode::BAD_REQUEST, Method::PUT, "/d", body);
        let duplicate =
            refused(br#"{"errors":[{"error-code":"IMP-10097","description":"duplicate key"}]}"#);
        assert_eq!(duplicate.imp_code(), Some(&ImpCode::DuplicateKey));
        assert!(duplicate.means_drift());
        assert!(duplicate.to_string().contains("(IMP-10097): duplicate key"));
        // An unknown column is a schema difference, which a full replace cannot mend.
        let unknown = refused(br#"{"errors":[{"error-code":"IMP-10095","description":"x"}]}"#);
        assert!(!unknown.means_drift());
        assert!(!refused(b"Service Unavailable").means_drift());
    }

    #[test]
    fn a_difference_deletes_gone_and_changed_records_and_adds_new_and_changed_ones() {
        let records = |rows: &[(&str, &str)]| -> BTreeMap<String, Value> {
            rows.iter()
                .map(|(user, reason)| {
                    (
                        user.to_lowercase(),
                        json!({ "user": user, "reason": reason }),
                    )
                })
                .collect()
        };
        let base = records(&[("alice", "a"), ("bob", "b"), ("Carol", "c")]);
        let now = records(&[("alice", "a"), ("carol", "c"), ("dave", "d")]);
        let (add, delete) = difference(&base, &now, "user");
        assert_eq!(delete, [json!({"user": "bob"}), json!({"user": "Carol"})]);
        assert_eq!(
            add,
            [
                json!({"user": "carol", "reason": "c"}),
                json!({"user": "dave", "reason": "d"})
            ]
        );
        assert_eq!(difference(&now, &now, "user"), (vec![], vec![]));
    }

    #[test]
    fn names_are_percent_encoded_as_path_segments() {
        assert_eq!(segment("PTR Suspicious Users"), "PTR%20Suspicious%20Users");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }
}
