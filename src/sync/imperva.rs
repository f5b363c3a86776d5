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
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::{ImpervaConfig, ImpervaPush};
use crate::dataset::{DataSet, fold};
use crate::outbound::{Endpoint, OutboundError};
use crate::runtime::Warden;
use crate::secret::{SecretError, SecretSource};
use crate::store::StoreError;

/// Where the Open API lives on the MX.
pub const API: &str = "/SecureSphere/api/v1";
/// Imperva's code for "not logged in" (an expired or unknown session).
pub const IMP_NOT_LOGGED_IN: &str = "IMP-10063";
/// First retry delay after a failed push; doubles up to [`RETRY_MAX`].
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(60);

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
    #[error("the MX answered {status} to {method} {path}{}: {message}", imp_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        status: u16,
        method: Method,
        path: String,
        imp_code: Option<String>,
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
    #[error(transparent)]
    Store(#[from] StoreError),
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
            let (imp_code, message) = imp_error(&body);
            return Err(MxError::Api {
                status: status.as_u16(),
                method: Method::POST,
                path: "/auth/session".into(),
                imp_code,
                message,
            });
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
            let (imp_code, message) = imp_error(&answer);
            let expired = status == StatusCode::UNAUTHORIZED
                || imp_code.as_deref() == Some(IMP_NOT_LOGGED_IN);
            if expired && !renew {
                tracing::info!(mx = %self.endpoint.url(), "MX session expired; logging in again");
                renew = true;
                continue;
            }
            return Err(MxError::Api {
                status: status.as_u16(),
                method,
                path: path.to_owned(),
                imp_code,
                message,
            });
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

/// Plans a push of `push` from what the store says was last pushed.
pub fn plan(warden: &Warden, push: &ImpervaPush, full: bool) -> Result<PushPlan, MxError> {
    let set = warden
        .data_set(&push.data_set)
        .ok_or_else(|| MxError::NoSuchDataSet(push.data_set.clone()))?;
    let schema = set.schema();
    let key_column = schema.columns()[schema.key_index()].name.clone();
    let now = records_by_key(&set);
    let base: Option<BTreeMap<String, Value>> = warden
        .store()
        .pushed_records(&push.data_set)?
        .and_then(|text| serde_json::from_str(&text).ok());
    let (mode, add_records, delete_records) = match base {
        Some(base) if !full => {
            let mut add = Vec::new();
            let mut delete = Vec::new();
            for (key, record) in &base {
                match now.get(key) {
                    Some(current) if current == record => {}
                    // Changed or gone: delete the old record (by key) first.
                    _ => delete.push(json!({ key_column.clone(): record[&key_column] })),
                }
            }
            for (key, record) in &now {
                if base.get(key) != Some(record) {
                    add.push(record.clone());
                }
            }
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
        Ok(sent) => store.push_succeeded(
            &plan.data_set,
            &plan.mx_name,
            &plan.state,
            plan.mode.as_str(),
            *sent,
        )?,
        Err(e) => {
            warden.metrics().sync_failed("imperva");
            store.push_failed(&plan.data_set, &plan.mx_name, &e.to_string())?;
        }
    }
    result
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
    let mut plans = Vec::new();
    for push in &config.pushes {
        let mut p = plan(warden, push, full)?;
        p.dry_run = dry_run;
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

/// Pushes the configured data sets after every snapshot change until `shutdown`: a full
/// replace first, then differences; failures back off and retry.
pub async fn push_loop(warden: Arc<Warden>, mut shutdown: watch::Receiver<bool>) {
    let Some(config) = warden.config().imperva.clone() else {
        return;
    };
    let client = match tokio::task::block_in_place(|| MxClient::new(&config)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Imperva MX push disabled");
            return;
        }
    };
    let mut snapshots = warden.subscribe_snapshots();
    let mut pushed: Vec<Option<Arc<DataSet>>> = vec![None; config.pushes.len()];
    let mut delay = RETRY_INITIAL;
    let mut retry_at: Option<tokio::time::Instant> = Some(tokio::time::Instant::now());
    loop {
        let due = async {
            match retry_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            changed = snapshots.changed() => if changed.is_err() { break },
            () = due => {}
        }
        retry_at = None;
        let mut failed = false;
        for (i, push) in config.pushes.iter().enumerate() {
            let current = warden.data_set(&push.data_set);
            let unchanged = match (&pushed[i], &current) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if unchanged {
                continue;
            }
            let full = pushed[i].is_none();
            let outcome = match tokio::task::block_in_place(|| plan(&warden, push, full)) {
                Ok(p) => execute(&warden, &client, &p).await.map(|sent| (p, sent)),
                Err(e) => Err(e),
            };
            match outcome {
                Ok((p, sent)) => {
                    tracing::info!(data_set = %push.data_set, mode = p.mode.as_str(), sent, "pushed to the Imperva MX");
                    pushed[i] = current;
                }
                Err(e) => {
                    tracing::warn!(data_set = %push.data_set, error = %e, retry_in = ?delay, "Imperva MX push failed");
                    failed = true;
                }
            }
        }
        if failed {
            retry_at = Some(tokio::time::Instant::now() + delay);
            delay = (delay * 2).min(RETRY_MAX);
        } else {
            delay = RETRY_INITIAL;
        }
    }
    client.logout().await;
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
    fn names_are_percent_encoded_as_path_segments() {
        assert_eq!(segment("PTR Suspicious Users"), "PTR%20Suspicious%20Users");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }
}
