//! A directory server ("device"): its configuration, one shared connection re-established after
//! failures, the principal → DN cache, and its health from recent runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::Serialize;

use super::SyncError;
use crate::config::DirectoryConfig;
use crate::directory::{self, DirectoryClient, DirectorySettings};
use crate::store::RecentUpdate;

/// How long a resolved principal → DN stays cached. Renames and deletions show up within this.
pub const DN_CACHE_TTL: Duration = Duration::from_secs(600);

/// How long removals by warden's own push explain a shrink of the group's data set.
pub const REMOVALS_EXPLAIN_FOR: Duration = Duration::from_secs(600);

/// Runs looked at for [`health`].
pub const HEALTH_WINDOW: usize = 5;

/// A directory server and its connection.
pub struct Device {
    config: DirectoryConfig,
    // A tokio Mutex: connecting awaits under the lock so that concurrent callers share one
    // connection attempt instead of racing several binds.
    client: tokio::sync::Mutex<Option<Arc<DirectoryClient>>>,
    dn_cache: DashMap<String, (String, Instant)>,
    /// Members warden's own pushes removed from each group (by lower-cased DN) and when: a
    /// data set selecting on that group may shrink by that many without being held.
    removals: DashMap<String, (usize, Instant)>,
}

impl Device {
    pub fn new(config: DirectoryConfig) -> Device {
        Device {
            config,
            client: tokio::sync::Mutex::new(None),
            dn_cache: DashMap::new(),
            removals: DashMap::new(),
        }
    }

    /// Records that a push removed `n` members from `group_dn`.
    pub fn note_removals(&self, group_dn: &str, n: usize) {
        if n == 0 {
            return;
        }
        let mut entry = self
            .removals
            .entry(group_dn.to_ascii_lowercase())
            .or_insert((0, Instant::now()));
        *entry = (entry.0.saturating_add(n), Instant::now());
    }

    /// Takes the removals recorded for `group_dn` within [`REMOVALS_EXPLAIN_FOR`].
    pub fn take_removals(&self, group_dn: &str) -> usize {
        self.removals
            .remove(&group_dn.to_ascii_lowercase())
            .filter(|(_, (_, at))| at.elapsed() < REMOVALS_EXPLAIN_FOR)
            .map_or(0, |(_, (n, _))| n)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// Connection settings, reading the bind password now (so a rotated secret file is used on
    /// the next connection).
    pub fn settings(&self) -> Result<DirectorySettings, SyncError> {
        let c = &self.config;
        let password = c.bind_password.read().map_err(|source| SyncError::Secret {
            device: c.name.clone(),
            source,
        })?;
        let mut s = DirectorySettings::new(&c.url, &c.bind_dn, password);
        s.starttls = c.starttls;
        s.ca_file = c.ca_file.clone();
        s.allow_insecure = c.allow_insecure;
        s.connect_timeout = c.connect_timeout;
        s.op_timeout = c.timeout;
        s.page_size = c.page_size;
        s.search_deadline = c.timeout.saturating_mul(10);
        Ok(s)
    }

    /// The shared connection, connecting (and binding) if there is none or it closed.
    pub async fn client(&self) -> Result<Arc<DirectoryClient>, SyncError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let settings = self.settings()?;
        let client = DirectoryClient::connect(settings)
            .await
            .map_err(|source| self.error(source))?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Drops the connection so the next call reconnects (after a connection failure).
    pub async fn reset(&self) {
        self.client.lock().await.take();
    }

    /// Wraps a directory error with this device's name.
    pub fn error(&self, source: directory::DirectoryError) -> SyncError {
        SyncError::Directory {
            device: self.config.name.clone(),
            source,
        }
    }

    /// A cached DN for a principal key, if fresh.
    pub fn cached_dn(&self, key: &str) -> Option<String> {
        self.dn_cache
            .get(key)
            .filter(|e| e.1.elapsed() < DN_CACHE_TTL)
            .map(|e| e.0.clone())
    }

    pub fn cache_dn(&self, key: String, dn: String) {
        self.dn_cache.insert(key, (dn, Instant::now()));
    }
}

/// A device's health, from its most recent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No run yet.
    Unknown,
    /// The last runs succeeded and resolved every principal.
    Ok,
    /// The last run succeeded, but a recent one failed or left principals unresolved.
    Degraded,
    /// The last run failed.
    Failing,
}

/// Health from recent updates, newest first.
pub fn health(updates: &[RecentUpdate]) -> Health {
    let Some(last) = updates.first() else {
        return Health::Unknown;
    };
    if last.error.is_some() {
        return Health::Failing;
    }
    let recent = &updates[..updates.len().min(HEALTH_WINDOW)];
    if recent
        .iter()
        .any(|u| u.error.is_some() || !u.unresolved.is_empty())
    {
        Health::Degraded
    } else {
        Health::Ok
    }
}

/// A device's status as shown by `devices status` and `GET /v1/devices`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceStatus {
    pub device: String,
    pub url: String,
    pub status: Health,
    pub recent_updates: Vec<RecentUpdate>,
}

/// Every configured device's status, with its `recent` latest runs (health is judged on at
/// least the last [`HEALTH_WINDOW`]).
pub fn device_statuses(
    warden: &crate::runtime::Warden,
    recent: usize,
) -> Result<Vec<DeviceStatus>, crate::store::StoreError> {
    warden
        .config()
        .directories
        .iter()
        .map(|d| {
            let mut updates = warden
                .store()
                .recent_updates(&d.name, recent.max(HEALTH_WINDOW) as i64)?;
            let status = health(&updates);
            updates.truncate(recent);
            Ok(DeviceStatus {
                device: d.name.clone(),
                url: d.url.clone(),
                status,
                recent_updates: updates,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(error: bool, unresolved: bool) -> RecentUpdate {
        RecentUpdate {
            device: "d".into(),
            kind: "push".into(),
            target: "g".into(),
            started_at_ms: 0,
            duration_ms: 1,
            added: 0,
            removed: 0,
            unresolved: if unresolved { vec!["x".into()] } else { vec![] },
            error: error.then(|| "boom".into()),
        }
    }

    #[test]
    fn health_from_recent_runs() {
        assert_eq!(health(&[]), Health::Unknown);
        assert_eq!(health(&[run(false, false)]), Health::Ok);
        assert_eq!(
            health(&[run(true, false), run(false, false)]),
            Health::Failing
        );
        assert_eq!(
            health(&[run(false, false), run(true, false)]),
            Health::Degraded
        );
        assert_eq!(health(&[run(false, true)]), Health::Degraded);
        let mut old_failure = vec![run(false, false); HEALTH_WINDOW];
        old_failure.push(run(true, false));
        assert_eq!(health(&old_failure), Health::Ok);
    }
}
