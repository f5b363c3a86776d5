//! What the enforcement surfaces hold of each account: per mapping (list → group), the DN a
//! listed account was last pushed as and the names it had then — the DN is what a push never
//! removes while the account is listed, even when resolving it fails, and the names are what
//! a data set on the group may lose without its shrink guard counting it — and, per surface
//! (an AD group, a database role, a gate, an MX data set, a pulled data set), when the block
//! landed there and its state now (`account_surfaces`), so that `warden accounts show` reads
//! the answer instead of guessing it.

use std::collections::HashMap;

use super::db::params;

use super::{Atomic, Store, StoreError};
use crate::base::time::now_ms;

/// One listed account as last pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedAccount {
    /// The account's key (`base::account`).
    pub account_key: String,
    pub dn: String,
    /// Every name the account answers to (canonical first).
    pub names: Vec<String>,
}

impl Store {
    /// The accounts last pushed for `list` into `group_dn`, by account key.
    pub fn pushed_accounts(
        &self,
        list: &str,
        group_dn: &str,
    ) -> Result<HashMap<String, PushedAccount>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT account_key, dn, names FROM pushed_accounts
                 WHERE list = ?1 AND group_dn = ?2",
            )
            .map_err(self.sql("read pushed accounts"))?;
        let rows = stmt
            .query_map(params![list, group_dn.to_ascii_lowercase()], |r| {
                Ok(PushedAccount {
                    account_key: r.get(0)?,
                    dn: r.get(1)?,
                    names: split_names(&r.get::<String>(2)?),
                })
            })
            .map_err(self.sql("read pushed accounts"))?;
        let mut out = HashMap::new();
        for row in rows {
            let a = row.map_err(self.sql("read pushed accounts"))?;
            out.insert(a.account_key.clone(), a);
        }
        Ok(out)
    }

    /// Replaces what was last pushed for `list` into `group_dn`; returns whether any name
    /// changed (the list's data set then has other alias keys).
    pub fn set_pushed_accounts(
        &self,
        list: &str,
        group_dn: &str,
        accounts: &[PushedAccount],
    ) -> Result<bool, StoreError> {
        let before = self.pushed_accounts(list, group_dn)?;
        let names_changed = before.len() != accounts.len()
            || accounts.iter().any(|a| {
                before
                    .get(&a.account_key)
                    .is_none_or(|b| b.names != a.names)
            });
        let unchanged = !names_changed
            && accounts
                .iter()
                .all(|a| before.get(&a.account_key).is_some_and(|b| b.dn == a.dn));
        if unchanged {
            return Ok(false);
        }
        let conn = self.conn();
        let group = group_dn.to_ascii_lowercase();
        let tx = Atomic::begin(&conn).map_err(self.sql("save pushed accounts"))?;
        tx.execute(
            "DELETE FROM pushed_accounts WHERE list = ?1 AND group_dn = ?2",
            params![list, group],
        )
        .map_err(self.sql("save pushed accounts"))?;
        let at = now_ms();
        for a in accounts {
            tx.execute(
                "INSERT INTO pushed_accounts (list, group_dn, account_key, dn, names, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (list, group_dn, account_key) DO UPDATE SET dn = excluded.dn,
                   names = excluded.names, at_ms = excluded.at_ms",
                params![list, group, a.account_key, a.dn, a.names.join("\n"), at],
            )
            .map_err(self.sql("save pushed accounts"))?;
        }
        tx.commit().map_err(self.sql("save pushed accounts"))?;
        Ok(names_changed)
    }
}

/// Where a block can land: an AD group (push), a database role (agentless), a gate, an MX
/// data set (MX push), a data set pulled from a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SurfaceKind {
    Group,
    Role,
    Gate,
    Mx,
    DataSet,
}

impl SurfaceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SurfaceKind::Group => "group",
            SurfaceKind::Role => "role",
            SurfaceKind::Gate => "gate",
            SurfaceKind::Mx => "mx",
            SurfaceKind::DataSet => "data_set",
        }
    }

    fn parse(text: &str) -> Option<SurfaceKind> {
        [
            SurfaceKind::Group,
            SurfaceKind::Role,
            SurfaceKind::Gate,
            SurfaceKind::Mx,
            SurfaceKind::DataSet,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// What happened to an account on one surface, as the code that did it records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurfaceEvent {
    pub account_key: String,
    pub surface: SurfaceKind,
    /// The group DN, `database/role`, gate name, MX data set or data set name.
    pub target: String,
    /// `landed` (pushed, granted, pulled, sent), `lifted` (removed again), `refused` and
    /// `ended` (a gate refused a login, ended sessions).
    pub state: &'static str,
    /// What landed there (the DN, the role, the count of sessions).
    pub detail: String,
    pub at_ms: i64,
}

/// An account's state on one surface: since when (the time the block landed there, for
/// `landed`), and when it was last seen so.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Surface {
    pub surface: SurfaceKind,
    pub target: String,
    pub state: String,
    pub detail: String,
    pub since_ms: i64,
    pub updated_ms: i64,
}

impl Store {
    /// Records surface events: a new state starts at the event's time, the same state again
    /// only moves `updated_ms` (and the detail).
    pub fn record_surfaces(&self, events: &[SurfaceEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let conn = self.conn();
        let tx = Atomic::begin(&conn).map_err(self.sql("record surfaces"))?;
        for e in events {
            tx.execute(
                "INSERT INTO account_surfaces
                   (account_key, surface, target, state, detail, landed_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (account_key, surface, target) DO UPDATE SET
                   landed_at_ms = CASE WHEN account_surfaces.state = excluded.state
                     THEN account_surfaces.landed_at_ms ELSE excluded.landed_at_ms END,
                   state = excluded.state, detail = excluded.detail,
                   updated_at_ms = excluded.updated_at_ms",
                params![
                    e.account_key,
                    e.surface.as_str(),
                    e.target,
                    e.state,
                    e.detail,
                    e.at_ms
                ],
            )
            .map_err(self.sql("record surfaces"))?;
        }
        tx.commit().map_err(self.sql("record surfaces"))
    }

    /// The state of every account on one surface target, by account key.
    pub fn surface_states(
        &self,
        surface: SurfaceKind,
        target: &str,
    ) -> Result<HashMap<String, String>, StoreError> {
        let rows = self
            .conn()
            .query(
                "SELECT account_key, state FROM account_surfaces WHERE surface = ?1 AND target = ?2",
                params![surface.as_str(), target],
            )
            .map_err(self.sql("read surfaces"))?;
        rows.iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect::<Result<_, super::db::DbError>>()
            .map_err(self.sql("read surfaces"))
    }

    /// Every surface state of the accounts under `keys`, by surface and target.
    pub fn surfaces(&self, keys: &[String]) -> Result<Vec<Surface>, StoreError> {
        let mut out = Vec::new();
        let conn = self.conn();
        for key in keys {
            let rows = conn
                .query(
                    "SELECT surface, target, state, detail, landed_at_ms, updated_at_ms
                     FROM account_surfaces WHERE account_key = ?1",
                    [key],
                )
                .map_err(self.sql("read surfaces"))?;
            for r in &rows {
                let read = || -> Result<Option<Surface>, super::db::DbError> {
                    let Some(surface) = SurfaceKind::parse(&r.get::<String>(0)?) else {
                        return Ok(None);
                    };
                    Ok(Some(Surface {
                        surface,
                        target: r.get(1)?,
                        state: r.get(2)?,
                        detail: r.get(3)?,
                        since_ms: r.get(4)?,
                        updated_ms: r.get(5)?,
                    }))
                };
                if let Some(s) = read().map_err(self.sql("read surfaces"))? {
                    out.push(s);
                }
            }
        }
        out.sort_by(|a, b| (a.surface.as_str(), &a.target).cmp(&(b.surface.as_str(), &b.target)));
        Ok(out)
    }
}

fn split_names(text: &str) -> Vec<String> {
    text.split('\n')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
