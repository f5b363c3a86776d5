//! Directory status: health (ok / degraded / failing) judged from the recent push and pull
//! runs recorded in the store.

use serde::Serialize;

use crate::store::RecentUpdate;

/// Runs looked at for [`health`].
pub const HEALTH_WINDOW: usize = 5;

/// A directory's health, from its most recent runs.
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

/// A directory's status as shown by `directories status` and `GET /v1/directories`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DirectoryStatus {
    pub directory: String,
    pub url: String,
    /// The NetBIOS domain the directory serves (its `domain`, else the one its base DN is
    /// placed in), if any.
    pub domain: Option<String>,
    pub status: Health,
    pub recent_updates: Vec<RecentUpdate>,
}

/// Every configured directory's status, with its `recent` latest runs (health is judged on at
/// least the last [`HEALTH_WINDOW`]).
pub fn directory_statuses(
    warden: &crate::runtime::Warden,
    recent: usize,
) -> Result<Vec<DirectoryStatus>, crate::store::StoreError> {
    let directories = warden.directories();
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
            Ok(DirectoryStatus {
                directory: d.name.clone(),
                url: d.url.clone(),
                domain: directories
                    .get(&d.name)
                    .and_then(|dir| dir.netbios().map(str::to_owned)),
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
            directory: "d".into(),
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
