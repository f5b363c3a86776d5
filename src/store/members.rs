//! List members as accounts: one member per (list, account), each with the memberships that
//! contain it, and the accounts themselves.
//!
//! - `accounts`: one row per account ([`crate::base::account`]): key, canonical name, every
//!   name it is known by, how it was resolved (directory, rules, text), its DN and objectSid,
//!   and the keys it had before a merge (`account_former_keys`). `account_names` finds an account by
//!   any of its names (lower-cased).
//! - `members`: one row per (list, account): when it was first added, its expiry — the latest
//!   of its memberships' (none if one has none), unless an analyst set one explicitly
//!   (`expiry_set_by`) — and when the expiry sweep deactivated it.
//! - `memberships`: each incident or request that put the account on the list: the principal
//!   as typed, reason, incident, who, from where, when, its expiry. Removing the member
//!   releases them (by whom, when, why) and deletes the member row; released memberships stay
//!   as the account's history.
//!
//! Another spelling of a listed account adds a membership to the same member, never a row.
//! An account resolved provisionally (by the rules while the directory was unreachable, or
//! carried over from a store that keyed members by text) is merged into its directory
//! account once the directory names it ([`Store::merge_account`]): members, memberships,
//! pushed DNs and surface landings move over, two members of one list become one.

use std::collections::HashMap;

use super::db::{Conn, DbError, OptionalExtension, Row, Value, params};
use super::{Atomic, Store, StoreError};
use crate::base::account::{Account, Resolution, name_key};
use crate::base::time::now;

/// Whether a member counts: an active one is in data sets and pushed to groups; an expired
/// one is kept (listed, re-activatable) until the retention period purges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Active,
    Expired,
}

/// One incident or request that put an account on a list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Membership {
    pub id: i64,
    pub list: String,
    /// The principal as it was typed (`alice@corp.example.test`).
    pub principal: String,
    pub reason: String,
    pub incident: Option<String>,
    pub added_by: String,
    /// Where the request came from (the client's address, `cli`, `expiry`).
    pub source: Option<String>,
    /// Unix seconds.
    pub added_at: i64,
    pub expires_at: Option<i64>,
    /// Set once the member was released: when, by whom, why.
    pub released_at: Option<i64>,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
}

/// A member of a list: an account and the memberships that hold it there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    /// The account's canonical name (for an account kept as text, the text).
    pub principal: String,
    /// The account's key (`guid:…`, `name:…`, `text:…`).
    pub account: String,
    /// Every name the account is known by, canonical first.
    pub names: Vec<String>,
    pub resolution: Resolution,
    /// The directory entry, when a directory resolved it.
    pub dn: Option<String>,
    /// The latest membership's reason and author; every incident of its memberships.
    pub reason: String,
    pub incident: Option<String>,
    pub incidents: Vec<String>,
    pub added_by: String,
    /// Unix seconds: the first membership.
    pub added_at: i64,
    /// Unix seconds; the member is deactivated at this time.
    pub expires_at: Option<i64>,
    /// Who set the expiry explicitly, if someone did (otherwise it is the memberships').
    pub expiry_set_by: Option<String>,
    pub state: MemberState,
    /// Unix seconds: when the expiry sweep deactivated the member.
    pub expired_at: Option<i64>,
    /// The memberships holding it, oldest first.
    pub memberships: Vec<Membership>,
}

impl Member {
    pub fn is_active(&self) -> bool {
        self.state == MemberState::Active
    }
}

/// A member to add: the account the principal resolved to, and the membership.
#[derive(Debug, Clone)]
pub struct NewMember {
    pub account: Account,
    /// As typed.
    pub principal: String,
    pub reason: String,
    pub incident: Option<String>,
    pub added_by: String,
    pub source: Option<String>,
    pub expires_at: Option<i64>,
}

impl NewMember {
    /// A membership of the account the default domain rules make of `principal` (or the text
    /// kept as it is), for tests.
    #[cfg(test)]
    pub(crate) fn test(principal: &str) -> NewMember {
        let account =
            Account::by_rules_or_text(&crate::base::identity::Identity::default(), principal);
        NewMember::new(account, principal, "test")
    }

    /// A membership of `account` typed as `principal`, with nothing else said.
    pub fn new(account: Account, principal: &str, added_by: &str) -> NewMember {
        NewMember {
            account,
            principal: principal.to_owned(),
            reason: String::new(),
            incident: None,
            added_by: added_by.to_owned(),
            source: None,
            expires_at: None,
        }
    }
}

/// What adding a member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The account was not on the list.
    New,
    /// The account (by this or another spelling) was on the list: a membership was added.
    Again,
    /// The account was on the list but expired; it is active again.
    Reactivated,
}

/// A member named by a change of the expiry sweep: its list, canonical name and account key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct MemberRef {
    pub list: String,
    pub principal: String,
    pub account: String,
}

/// A list whose active members include some past their expiry, as a sweep sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryDue {
    pub list: String,
    pub active: i64,
    pub due: i64,
}

/// What releasing a member did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Released {
    pub principal: String,
    pub account: String,
    /// The memberships it released.
    pub memberships: usize,
}

/// The columns of an account, in [`account_from_row`]'s order.
const ACCOUNT_COLUMNS: &str = "key, canonical, names, resolution, directory, dn, sid";

fn split(text: &str) -> Vec<String> {
    text.split('\n')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn account_from_row(r: &Row, at: usize) -> Result<Account, DbError> {
    Ok(Account {
        key: r.get(at)?,
        canonical: r.get(at + 1)?,
        names: split(&r.get::<String>(at + 2)?),
        resolution: Resolution::parse(&r.get::<String>(at + 3)?),
        directory: r.get(at + 4)?,
        dn: r.get(at + 5)?,
        sid: r.get(at + 6)?,
    })
}

fn membership_from_row(r: &Row) -> Result<Membership, DbError> {
    Ok(Membership {
        id: r.get(0)?,
        list: r.get(1)?,
        principal: r.get(2)?,
        reason: r.get(3)?,
        incident: r.get(4)?,
        added_by: r.get(5)?,
        source: r.get(6)?,
        added_at: r.get(7)?,
        expires_at: r.get(8)?,
        released_at: r.get(9)?,
        released_by: r.get(10)?,
        release_reason: r.get(11)?,
    })
}

const MEMBERSHIP_COLUMNS: &str = "m.id, l.name, m.principal, m.reason, m.incident, m.added_by, \
     m.source, m.added_at, m.expires_at, m.released_at, m.released_by, m.release_reason";

/// `?, ?, …` for `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Reads the account stored under `key`, with its former keys.
fn read_account(tx: &Conn, key: &str) -> Result<Option<(Account, Vec<String>)>, DbError> {
    let Some(account) = tx
        .query_row(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE key = ?1"),
            [key],
            |r| account_from_row(r, 0),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let former = tx
        .query(
            "SELECT former_key FROM account_former_keys WHERE account_key = ?1
             ORDER BY former_key",
            [key],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()?;
    Ok(Some((account, former)))
}

/// Writes `account` (its names joined with what is stored under its key), and its names'
/// index. A stored directory resolution is never replaced by a provisional one.
fn upsert_account(tx: &Conn, account: &Account, former: &[String]) -> Result<Account, DbError> {
    let mut merged = account.clone();
    if let Some((stored, _)) = read_account(tx, &account.key)? {
        if account.resolution.is_provisional() && !stored.resolution.is_provisional() {
            merged = Account {
                names: stored.names.clone(),
                ..stored.clone()
            };
            for n in &account.names {
                merged.add_name(n);
            }
        } else {
            for n in &stored.names {
                merged.add_name(n);
            }
            merged.dn = merged.dn.or(stored.dn);
            merged.sid = merged.sid.or(stored.sid);
            merged.directory = merged.directory.or(stored.directory);
        }
    }
    tx.execute(
        "INSERT INTO accounts (key, canonical, names, resolution, directory, dn, sid,
                               resolved_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (key) DO UPDATE SET canonical = excluded.canonical,
           names = excluded.names, resolution = excluded.resolution,
           directory = excluded.directory, dn = excluded.dn, sid = excluded.sid,
           resolved_at = excluded.resolved_at",
        params![
            merged.key,
            merged.canonical,
            merged.names.join("\n"),
            merged.resolution.as_str(),
            merged.directory,
            merged.dn,
            merged.sid,
            now()
        ],
    )?;
    for f in former {
        tx.execute(
            "INSERT INTO account_former_keys (former_key, account_key) VALUES (?1, ?2)
             ON CONFLICT (former_key) DO UPDATE SET account_key = excluded.account_key",
            params![f, merged.key],
        )?;
    }
    for name in merged.name_keys() {
        tx.execute(
            "INSERT INTO account_names (name_key, account_key) VALUES (?1, ?2)
             ON CONFLICT (name_key, account_key) DO NOTHING",
            params![name, merged.key],
        )?;
    }
    Ok(merged)
}

/// Sets the member's expiry to the latest of its unreleased memberships' (none if one has
/// none), unless an analyst set it explicitly.
fn refresh_expiry(tx: &Conn, list_id: i64, key: &str) -> Result<(), DbError> {
    tx.execute(
        "UPDATE members SET expires_at = (
           SELECT CASE WHEN COUNT(*) = COUNT(s.expires_at) THEN MAX(s.expires_at) END
           FROM memberships s
           WHERE s.list_id = ?1 AND s.account_key = ?2 AND s.released_at IS NULL)
         WHERE list_id = ?1 AND account_key = ?2 AND expiry_set_by IS NULL",
        params![list_id, key],
    )?;
    Ok(())
}

impl Store {
    /// Adds a membership of `member.account` to `list`: a new member, another membership of
    /// a listed one (the expiry becomes the latest of the memberships'), or an expired one
    /// active again. A provisional account (rules, text) one of whose names a directory
    /// account already has joins that account. Returns once the change is on disk.
    pub fn add_member(
        &self,
        list: &str,
        member: &NewMember,
    ) -> Result<(Added, Account), StoreError> {
        let conn = self.conn();
        let tx = Atomic::begin(&conn).map_err(self.sql("add member"))?;
        let id = Store::list_id(&tx, list)
            .map_err(self.sql("add member"))?
            .ok_or_else(|| StoreError::NoSuchList(list.to_string()))?;
        let added = Store::insert_member(&tx, id, member).map_err(self.sql("add member"))?;
        tx.commit().map_err(self.sql("add member"))?;
        Ok(added)
    }

    /// [`Store::add_member`] inside the caller's transaction, on list `id`; returns what it
    /// did and the account as stored.
    pub(crate) fn insert_member(
        tx: &Conn,
        id: i64,
        member: &NewMember,
    ) -> Result<(Added, Account), DbError> {
        let account = Store::settled(tx, &member.account)?;
        let account = upsert_account(tx, &account, &[])?;
        let existed: Option<bool> = tx
            .query_row(
                "SELECT expired_at IS NOT NULL FROM members WHERE list_id = ?1 AND account_key = ?2",
                params![id, account.key],
                |r| r.get(0),
            )
            .optional()?;
        let at = now();
        tx.execute(
            "INSERT INTO memberships (list_id, account_key, principal, reason, incident,
                                      added_by, source, added_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id,
                account.key,
                member.principal,
                member.reason,
                member.incident,
                member.added_by,
                member.source,
                at,
                member.expires_at
            ],
        )?;
        match existed {
            None => {
                tx.execute(
                    "INSERT INTO members (list_id, account_key, added_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, account.key, at, member.expires_at],
                )?;
            }
            Some(_) => {
                // A new membership lifts an expiry an analyst set by hand: the latest of the
                // memberships is the member's again.
                tx.execute(
                    "UPDATE members SET expired_at = NULL, expiry_set_by = NULL
                     WHERE list_id = ?1 AND account_key = ?2",
                    params![id, account.key],
                )?;
                refresh_expiry(tx, id, &account.key)?;
            }
        }
        let added = match existed {
            None => Added::New,
            Some(false) => Added::Again,
            Some(true) => Added::Reactivated,
        };
        Ok((added, account))
    }

    /// The account to store `account` as: a provisional one becomes the directory account
    /// that already has one of its names, if any (never the other way round).
    fn settled(tx: &Conn, account: &Account) -> Result<Account, DbError> {
        if !account.resolution.is_provisional() {
            return Ok(account.clone());
        }
        let keys = account.name_keys();
        let found = Store::accounts_named(tx, &keys)?;
        match found
            .into_iter()
            .find(|a| a.resolution == Resolution::Directory)
        {
            Some(mut directory) => {
                for n in &account.names {
                    directory.add_name(n);
                }
                Ok(directory)
            }
            None => Ok(account.clone()),
        }
    }

    /// Accounts one of whose names (lower-cased) is in `name_keys`.
    fn accounts_named(tx: &Conn, name_keys: &[String]) -> Result<Vec<Account>, DbError> {
        if name_keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT a.key, a.canonical, a.names, a.resolution, a.directory, a.dn, a.sid
             FROM account_names n JOIN accounts a ON a.key = n.account_key
             WHERE n.name_key IN ({}) ORDER BY a.key",
            marks(name_keys.len())
        );
        let values: Vec<Value> = name_keys.iter().map(|k| Value::Text(k.clone())).collect();
        tx.query(&sql, values)?
            .iter()
            .map(|r| account_from_row(r, 0))
            .collect()
    }

    /// The accounts known by any of `names` (any case), or stored under one of `keys`.
    pub fn find_accounts(
        &self,
        names: &[String],
        keys: &[String],
    ) -> Result<Vec<Account>, StoreError> {
        let conn = self.conn();
        let read = || -> Result<Vec<Account>, DbError> {
            let name_keys: Vec<String> = names.iter().map(|n| name_key(n)).collect();
            let mut found = Store::accounts_named(&conn, &name_keys)?;
            for key in keys {
                if found.iter().any(|a| &a.key == key) {
                    continue;
                }
                if let Some((a, _)) = read_account(&conn, key)? {
                    found.push(a);
                }
            }
            // An account merged away is found under the key it has now.
            for key in keys {
                let now: Option<String> = conn
                    .query_row(
                        "SELECT account_key FROM account_former_keys WHERE former_key = ?1",
                        [key],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(now) = now.filter(|k| !found.iter().any(|f| &f.key == k))
                    && let Some((a, _)) = read_account(&conn, &now)?
                {
                    found.push(a);
                }
            }
            Ok(found)
        };
        read().map_err(self.sql("find accounts"))
    }

    /// The keys of the accounts known by any of `names` (any case), in chunks of a few
    /// hundred names per statement (a pull or an MX push may name thousands).
    pub fn account_keys_named(&self, names: &[String]) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut keys = Vec::new();
        for chunk in names.chunks(500) {
            let name_keys: Vec<String> = chunk.iter().map(|n| name_key(n)).collect();
            for a in Store::accounts_named(&conn, &name_keys).map_err(self.sql("find accounts"))? {
                if !keys.contains(&a.key) {
                    keys.push(a.key);
                }
            }
        }
        Ok(keys)
    }

    /// The account stored under `key` and the keys it had before a merge.
    pub fn account(&self, key: &str) -> Result<Option<(Account, Vec<String>)>, StoreError> {
        read_account(&self.conn(), key).map_err(self.sql("read account"))
    }

    /// Updates what is known of an account (its names after a rename, its DN after a move);
    /// names are only ever added. Returns whether its names changed.
    pub fn update_account(&self, account: &Account) -> Result<bool, StoreError> {
        let conn = self.conn();
        let tx = Atomic::begin(&conn).map_err(self.sql("update account"))?;
        let before = read_account(&tx, &account.key).map_err(self.sql("update account"))?;
        let after = upsert_account(&tx, account, &[]).map_err(self.sql("update account"))?;
        if before.as_ref().is_some_and(|(b, _)| *b == after) {
            // Nothing new: rolled back, so no change for replicas to reload.
            return Ok(false);
        }
        let changed = before.is_none_or(|(b, _)| b.names != after.names);
        tx.commit().map_err(self.sql("update account"))?;
        Ok(changed)
    }

    /// Merges the account stored under `from` into `into` (usually: a provisional account
    /// the directory has now named): its names, memberships, members (two members of one
    /// list become one: the earliest `added_at`, active if either was, the memberships'
    /// expiry), pushed DNs and surface landings move to `into`, and `from` is remembered as
    /// one of `into`'s former keys. Nothing happens when `from` is `into`'s key.
    pub fn merge_account(&self, from: &str, into: &Account) -> Result<(), StoreError> {
        if from == into.key {
            return self.update_account(into).map(|_| ());
        }
        let conn = self.conn();
        let tx = Atomic::begin(&conn).map_err(self.sql("merge accounts"))?;
        Store::merge_in(&tx, from, into).map_err(self.sql("merge accounts"))?;
        tx.commit().map_err(self.sql("merge accounts"))
    }

    fn merge_in(tx: &Conn, from: &str, into: &Account) -> Result<(), DbError> {
        let mut target = into.clone();
        let mut former = vec![from.to_owned()];
        if let Some((old, old_former)) = read_account(tx, from)? {
            for n in &old.names {
                target.add_name(n);
            }
            target.dn = target.dn.or(old.dn);
            former.extend(old_former);
        }
        upsert_account(tx, &target, &former)?;
        let members = tx.query(
            "SELECT list_id, added_at, expired_at FROM members WHERE account_key = ?1",
            [from],
        )?;
        for r in &members {
            let (list_id, added_at, expired_at): (i64, i64, Option<i64>) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            let there: Option<Option<i64>> = tx
                .query_row(
                    "SELECT expired_at FROM members WHERE list_id = ?1 AND account_key = ?2",
                    params![list_id, into.key],
                    |r| r.get(0),
                )
                .optional()?;
            match there {
                None => {
                    tx.execute(
                        "UPDATE members SET account_key = ?3 WHERE list_id = ?1 AND account_key = ?2",
                        params![list_id, from, into.key],
                    )?;
                }
                Some(theirs) => {
                    // Active if either was; expired at the later time if both were.
                    let expired = match (expired_at, theirs) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                    tx.execute(
                        "UPDATE members SET added_at = CASE WHEN added_at < ?3 THEN added_at ELSE ?3 END,
                           expired_at = ?4, expiry_set_by = NULL
                         WHERE list_id = ?1 AND account_key = ?2",
                        params![list_id, into.key, added_at, expired],
                    )?;
                    tx.execute(
                        "DELETE FROM members WHERE list_id = ?1 AND account_key = ?2",
                        params![list_id, from],
                    )?;
                }
            }
        }
        tx.execute(
            "UPDATE memberships SET account_key = ?2 WHERE account_key = ?1",
            params![from, into.key],
        )?;
        for r in &members {
            refresh_expiry(tx, r.get(0)?, &into.key)?;
        }
        // Pushed DNs and surface landings: the target's row wins where both have one.
        for table in ["pushed_accounts", "account_surfaces"] {
            let keys = match table {
                "pushed_accounts" => "list, group_dn",
                _ => "surface, target",
            };
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE account_key = ?1 AND ({keys}) IN
                       (SELECT {keys} FROM {table} WHERE account_key = ?2)"
                ),
                params![from, into.key],
            )?;
            tx.execute(
                &format!("UPDATE {table} SET account_key = ?2 WHERE account_key = ?1"),
                params![from, into.key],
            )?;
        }
        tx.execute("DELETE FROM account_names WHERE account_key = ?1", [from])?;
        tx.execute("DELETE FROM accounts WHERE key = ?1", [from])?;
        Ok(())
    }

    /// Settles the accounts carried over from a store that keyed members by their text
    /// (`pending`): each is resolved by `resolve` (the domain rules, or the text kept as it
    /// is) from the principals its memberships were typed as, given the names and DN its
    /// last push found, and merged — so that two spellings of one account listed before
    /// become one member. Returns how many accounts were settled.
    pub fn settle_pending(&self, resolve: impl Fn(&str) -> Account) -> Result<usize, StoreError> {
        let conn = self.conn();
        let run = || -> Result<usize, DbError> {
            let pending: Vec<String> = conn
                .query(
                    "SELECT key FROM accounts WHERE resolution = 'pending' ORDER BY key",
                    params![],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect::<Result<_, _>>()?;
            if pending.is_empty() {
                return Ok(0);
            }
            let tx = Atomic::begin(&conn)?;
            for key in &pending {
                let typed: Vec<String> = tx
                    .query(
                        "SELECT principal FROM memberships WHERE account_key = ?1 ORDER BY id",
                        [key],
                    )?
                    .iter()
                    .map(|r| r.get(0))
                    .collect::<Result<_, _>>()?;
                let Some((stored, _)) = read_account(&tx, key)? else {
                    continue;
                };
                let mut account = resolve(typed.first().unwrap_or(&stored.canonical));
                for t in &typed {
                    account.add_spelling(t);
                }
                for r in tx.query(
                    "SELECT dn, names FROM pushed_accounts WHERE account_key = ?1",
                    [key],
                )? {
                    account.dn = account.dn.or(r.get(0)?);
                    for n in split(&r.get::<String>(1)?) {
                        account.add_name(&n);
                    }
                }
                Store::merge_in(&tx, key, &account)?;
            }
            tx.commit()?;
            Ok(pending.len())
        };
        run().map_err(self.sql("settle accounts carried over"))
    }

    /// Finds the members of `list` an account key or name (any case) names; more than one
    /// only where names collide.
    pub fn members_named(
        &self,
        list: &str,
        names: &[String],
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let found = self.find_accounts(names, keys)?;
        let conn = self.conn();
        let id = Store::list_id(&conn, list)
            .map_err(self.sql("find member"))?
            .ok_or_else(|| StoreError::NoSuchList(list.to_string()))?;
        let mut out = Vec::new();
        for a in found {
            let listed = conn
                .query_row(
                    "SELECT 1 FROM members WHERE list_id = ?1 AND account_key = ?2",
                    params![id, a.key],
                    |_| Ok(()),
                )
                .optional()
                .map_err(self.sql("find member"))?;
            if listed.is_some() {
                out.push(a.key);
            }
        }
        Ok(out)
    }

    /// Releases the member of `list` with account `key`: its memberships are marked released
    /// (by whom, when, why) and the member leaves the list. `None` if it was not listed.
    pub fn release_member(
        &self,
        list: &str,
        key: &str,
        by: &str,
        reason: &str,
    ) -> Result<Option<Released>, StoreError> {
        let conn = self.conn();
        let tx = Atomic::begin(&conn).map_err(self.sql("release member"))?;
        let id = Store::list_id(&tx, list)
            .map_err(self.sql("release member"))?
            .ok_or_else(|| StoreError::NoSuchList(list.to_string()))?;
        let released = Store::release_in(&tx, id, key, by, reason, now())
            .map_err(self.sql("release member"))?;
        tx.commit().map_err(self.sql("release member"))?;
        Ok(released)
    }

    fn release_in(
        tx: &Conn,
        list_id: i64,
        key: &str,
        by: &str,
        reason: &str,
        at: i64,
    ) -> Result<Option<Released>, DbError> {
        let n = tx.execute(
            "DELETE FROM members WHERE list_id = ?1 AND account_key = ?2",
            params![list_id, key],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let memberships = tx.execute(
            "UPDATE memberships SET released_at = ?3, released_by = ?4, release_reason = ?5
             WHERE list_id = ?1 AND account_key = ?2 AND released_at IS NULL",
            params![list_id, key, at, by, reason],
        )?;
        let principal = read_account(tx, key)?
            .map(|(a, _)| a.canonical)
            .unwrap_or_else(|| key.to_owned());
        Ok(Some(Released {
            principal,
            account: key.to_owned(),
            memberships,
        }))
    }

    /// Sets a member's expiry explicitly (an analyst shortening it, say); a later membership
    /// lifts it. Returns whether the member is on the list.
    pub fn set_member_expiry(
        &self,
        list: &str,
        key: &str,
        expires_at: Option<i64>,
        by: &str,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let id = Store::list_id(&conn, list)
            .map_err(self.sql("set member expiry"))?
            .ok_or_else(|| StoreError::NoSuchList(list.to_string()))?;
        let n = conn
            .execute(
                "UPDATE members SET expires_at = ?3, expiry_set_by = ?4
                 WHERE list_id = ?1 AND account_key = ?2",
                params![id, key, expires_at, by],
            )
            .map_err(self.sql("set member expiry"))?;
        Ok(n > 0)
    }

    /// The active members of a list ([`Member::is_active`]): what every surface that blocks
    /// reads — the list's data sets, the AD push, the agentless role, a pull's listed rows.
    /// A member past its expiry stays active until the expiry sweep deactivates it, so a
    /// sweep the clocks or the share guard held keeps it blocked everywhere, not by the clock
    /// in one place and by the sweep in another.
    pub fn active_members(&self, list: &str) -> Result<Vec<Member>, StoreError> {
        let mut members = self.members(list)?;
        members.retain(Member::is_active);
        Ok(members)
    }

    /// Members of a list with their accounts and memberships, ordered by canonical name,
    /// expired ones included (see [`MemberState`]).
    pub fn members(&self, list: &str) -> Result<Vec<Member>, StoreError> {
        let conn = self.conn();
        let read = || -> Result<Option<Vec<Member>>, DbError> {
            let Some(id) = Store::list_id(&conn, list)? else {
                return Ok(None);
            };
            read_members(&conn, id, None).map(Some)
        };
        read()
            .map_err(self.sql("read members"))?
            .ok_or_else(|| StoreError::NoSuchList(list.to_string()))
    }

    /// Every membership of the accounts under `keys`, released ones included, on every list,
    /// oldest first: an account's history.
    pub fn memberships_of(&self, keys: &[String]) -> Result<Vec<Membership>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn();
        let values: Vec<Value> = keys.iter().map(|k| Value::Text(k.clone())).collect();
        let rows = conn
            .query(
                &format!(
                    "SELECT {MEMBERSHIP_COLUMNS} FROM memberships m JOIN lists l ON l.id = m.list_id
                     WHERE m.account_key IN ({}) ORDER BY m.id",
                    marks(keys.len())
                ),
                values,
            )
            .map_err(self.sql("read memberships"))?;
        rows.iter()
            .map(membership_from_row)
            .collect::<Result<_, _>>()
            .map_err(self.sql("read memberships"))
    }

    /// The lists `key`'s account is a member of now, with its member row.
    pub fn listings_of(&self, key: &str) -> Result<Vec<(String, Member)>, StoreError> {
        let conn = self.conn();
        let read = || -> Result<Vec<(String, Member)>, DbError> {
            let lists = conn.query(
                "SELECT l.id, l.name FROM members m JOIN lists l ON l.id = m.list_id
                 WHERE m.account_key = ?1 ORDER BY l.name",
                [key],
            )?;
            let mut out = Vec::new();
            for r in &lists {
                let (id, name): (i64, String) = (r.get(0)?, r.get(1)?);
                for m in read_members(&conn, id, Some(key))? {
                    out.push((name.clone(), m));
                }
            }
            Ok(out)
        };
        read().map_err(self.sql("read listings"))
    }
}

/// The members of list `id` (only `account`'s, when given), with their accounts and
/// unreleased memberships, ordered by canonical name.
fn read_members(conn: &Conn, id: i64, account: Option<&str>) -> Result<Vec<Member>, DbError> {
    let (only, args): (&str, Vec<Value>) = match account {
        Some(key) => (
            " AND m.account_key = ?2",
            vec![Value::Int(id), Value::Text(key.to_owned())],
        ),
        None => ("", vec![Value::Int(id)]),
    };
    let mut memberships: HashMap<String, Vec<Membership>> = HashMap::new();
    for r in conn.query(
        &format!(
            "SELECT {MEMBERSHIP_COLUMNS}, m.account_key FROM memberships m
             JOIN lists l ON l.id = m.list_id
             WHERE m.list_id = ?1 AND m.released_at IS NULL{only} ORDER BY m.id"
        ),
        args.clone(),
    )? {
        memberships
            .entry(r.get(12)?)
            .or_default()
            .push(membership_from_row(&r)?);
    }
    let rows = conn.query(
        &format!(
            "SELECT m.added_at, m.expires_at, m.expiry_set_by, m.expired_at, a.{}
             FROM members m JOIN accounts a ON a.key = m.account_key
             WHERE m.list_id = ?1{only}",
            ACCOUNT_COLUMNS.replace(", ", ", a.")
        ),
        args,
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let account = account_from_row(r, 4)?;
        let held = memberships.remove(&account.key).unwrap_or_default();
        out.push(member(account, held, r)?);
    }
    out.sort_by_cached_key(|m| (name_key(&m.principal), m.account.clone()));
    Ok(out)
}

fn member(account: Account, memberships: Vec<Membership>, r: &Row) -> Result<Member, DbError> {
    let latest = memberships.last();
    let mut incidents: Vec<String> = Vec::new();
    for i in memberships.iter().filter_map(|m| m.incident.clone()) {
        if !incidents.contains(&i) {
            incidents.push(i);
        }
    }
    let expired_at: Option<i64> = r.get(3)?;
    Ok(Member {
        principal: account.canonical.clone(),
        reason: latest.map(|m| m.reason.clone()).unwrap_or_default(),
        incident: incidents.last().cloned(),
        incidents,
        added_by: latest.map(|m| m.added_by.clone()).unwrap_or_default(),
        added_at: r.get(0)?,
        expires_at: r.get(1)?,
        expiry_set_by: r.get(2)?,
        state: match expired_at {
            Some(_) => MemberState::Expired,
            None => MemberState::Active,
        },
        expired_at,
        account: account.key,
        names: account.names,
        resolution: account.resolution,
        dn: account.dn,
        memberships,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(names: &[&str]) -> Account {
        Account::of_entry(
            "dc",
            Some("6f8f0e4c-0000-4000-8000-000000000001"),
            None,
            "CN=jdoe,DC=corp",
            names.iter().map(|n| (*n).to_owned()).collect(),
        )
    }

    /// A member listed by the rules while the directory was down, and the same person listed
    /// again once it answered, are one member after the directory names the first: both
    /// memberships, the first `added_at`, its old key still finds it.
    #[test]
    fn a_provisional_account_merges_into_its_entry() {
        let store = Store::in_memory().unwrap();
        store.ensure_list("L", "").unwrap();
        let (_, provisional) = store
            .add_member(
                "L",
                &NewMember {
                    expires_at: Some(4_000_000_000),
                    ..NewMember::test(r"corp\jdoe")
                },
            )
            .unwrap();
        let first_added = store.members("L").unwrap()[0].added_at;
        let directory = entry(&[r"CORP\jdoe", "john.doe@corp.example.test"]);
        // Added again with the directory answering, by the UPN: the directory account.
        let (added, stored) = store
            .add_member(
                "L",
                &NewMember::new(directory.clone(), "john.doe@corp.example.test", "t"),
            )
            .unwrap();
        assert_eq!((added, stored.key.as_str()), (Added::New, &*directory.key));
        assert_eq!(store.members("L").unwrap().len(), 2);
        store.merge_account(&provisional.key, &directory).unwrap();
        let members = store.members("L").unwrap();
        assert_eq!(members.len(), 1, "{members:#?}");
        let m = &members[0];
        assert_eq!(m.account, directory.key);
        assert_eq!(m.memberships.len(), 2);
        assert_eq!(m.added_at, first_added);
        // One membership has no expiry: neither has the member.
        assert_eq!(m.expires_at, None);
        let found = store
            .find_accounts(&[], std::slice::from_ref(&provisional.key))
            .unwrap();
        assert_eq!(found[0].key, directory.key, "found under its former key");
        let (_, former) = store.account(&directory.key).unwrap().unwrap();
        assert_eq!(former, std::slice::from_ref(&provisional.key));
        // A provisional spelling added after the merge joins the directory account.
        let (added, stored) = store
            .add_member("L", &NewMember::test(r"CORP\JDOE"))
            .unwrap();
        assert_eq!((added, stored.key), (Added::Again, directory.key));
    }
}
