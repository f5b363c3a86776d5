//! The audit log: who did what to which target, when, from where, and how it ended. Records
//! are append-only; details never carry secrets (callers pass only names, ids and counts).

use super::db::{Value, params};

use super::{Atomic, Store, StoreError};
use crate::base::actor::Actor;
use crate::base::time::now_ms;

/// One audit record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Assigned by the store; 0 before it is appended.
    #[serde(default)]
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// `key:<id> (<name>)`, `cli:<user>`, `anonymous` or `system`.
    pub actor: String,
    /// `lists.add`, `keys.create`, `auth.failed`, …
    pub action: String,
    pub target: String,
    /// `ok`, `denied`, `failed` or `rejected`.
    pub outcome: String,
    /// The client's address, for HTTP requests.
    pub source: Option<String>,
    /// The key of the account the record is about (`base::account`), if it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub detail: serde_json::Value,
}

impl AuditRecord {
    /// The record of `actor` doing `action` to `target`, now, with outcome `ok`. Every audit
    /// record is built here, on the one clock ([`crate::base::time`]).
    pub fn new(
        actor: &Actor,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> AuditRecord {
        AuditRecord {
            id: 0,
            at_ms: now_ms(),
            actor: actor.name.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: "ok".to_owned(),
            source: actor.source.clone(),
            account: None,
            detail,
        }
    }

    /// The same record, about the account with key `account`.
    pub fn about(mut self, account: &str) -> AuditRecord {
        self.account = Some(account.to_owned());
        self
    }

    /// The same record with another outcome (`denied`, `failed`, `rejected`).
    pub fn with_outcome(mut self, outcome: &str) -> AuditRecord {
        outcome.clone_into(&mut self.outcome);
        self
    }
}

/// What a change is audited by: one record, none (`None`: the change turned out to change
/// nothing), or one per item it changed.
pub trait AuditRecords {
    fn records(self) -> Vec<AuditRecord>;
}

impl AuditRecords for AuditRecord {
    fn records(self) -> Vec<AuditRecord> {
        vec![self]
    }
}

impl AuditRecords for Option<AuditRecord> {
    fn records(self) -> Vec<AuditRecord> {
        self.into_iter().collect()
    }
}

impl AuditRecords for Vec<AuditRecord> {
    fn records(self) -> Vec<AuditRecord> {
        self
    }
}

/// Which audit records to read. Every bound is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Part of the actor's name, any case (`bootstrap admin` finds
    /// `key:2ef2bcb1b1c3 (bootstrap admin)`).
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Records about any of these account keys (an account's key and its former ones).
    pub accounts: Option<Vec<String>>,
    pub limit: Option<u32>,
}

/// `text` as a LIKE pattern matching itself anywhere (`\` escapes `%`, `_` and itself).
fn contains_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Most records one read returns.
pub const AUDIT_READ_MAX: u32 = 10_000;

impl Store {
    /// Appends a record and returns its id. Durable before it returns.
    pub fn append_audit(&self, r: &AuditRecord) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "INSERT INTO audit (at_ms, actor, action, target, outcome, source, detail, account)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
            params![
                r.at_ms,
                r.actor,
                r.action,
                r.target,
                r.outcome,
                r.source,
                r.detail.to_string(),
                r.account
            ],
            |row| row.get(0),
        )
        .map_err(self.sql("append audit record"))
    }

    /// Makes a change and its audit record durable together: `change` (any number of store
    /// calls) runs in one transaction, and `audit` turns its result into the record appended in
    /// that same transaction. If either fails, nothing of the change is written, and no record.
    pub fn audited<T, E: From<StoreError>, A: AuditRecords>(
        &self,
        change: impl FnOnce(&Store) -> Result<T, E>,
        audit: impl FnOnce(&T) -> A,
    ) -> Result<T, E> {
        let conn = self.conn();
        let tx = Atomic::begin(&conn).map_err(self.sql("begin an audited change"))?;
        let value = change(self)?;
        for record in audit(&value).records() {
            self.append_audit(&record)?;
        }
        tx.commit().map_err(self.sql("commit an audited change"))?;
        Ok(value)
    }

    /// Deletes the records older than `before_ms` (Unix milliseconds); returns how many. The
    /// retention prune of the audit service.
    pub fn prune_audit(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.conn()
            .execute("DELETE FROM audit WHERE at_ms < ?1", [before_ms])
            .map_err(self.sql("prune audit log"))
    }

    /// How many audit records there are.
    pub fn audit_count(&self) -> Result<u64, StoreError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM audit", params![], |r| r.get::<i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(self.sql("count audit records"))
    }

    /// At most `limit` records with ids above `after`, in id order: how a SIEM sink follows
    /// the log (`src/events`).
    pub fn audit_after(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT id, at_ms, actor, action, target, outcome, source, detail, account \
                 FROM audit WHERE id > ?1 ORDER BY id LIMIT {}",
                limit.min(AUDIT_READ_MAX)
            ))
            .map_err(self.sql("follow audit log"))?;
        let rows = stmt
            .query_map([after], audit_row)
            .map_err(self.sql("follow audit log"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("follow audit log"))
    }

    /// The id of the newest audit record (0 when there is none).
    pub fn newest_audit_id(&self) -> Result<i64, StoreError> {
        self.conn()
            .query_row("SELECT COALESCE(MAX(id), 0) FROM audit", params![], |r| {
                r.get::<i64>(0)
            })
            .map_err(self.sql("read newest audit id"))
    }

    /// Records matching `filter`, oldest first.
    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = String::from(
            "SELECT id, at_ms, actor, action, target, outcome, source, detail, account
             FROM audit WHERE 1=1",
        );
        let mut args: Vec<Value> = Vec::new();
        let mut bound = |clause: &str, v: Value| {
            sql.push_str(clause);
            args.push(v);
        };
        if let Some(t) = filter.since_ms {
            bound(" AND at_ms >= ?", Value::Int(t));
        }
        if let Some(t) = filter.until_ms {
            bound(" AND at_ms < ?", Value::Int(t));
        }
        if let Some(a) = &filter.actor {
            bound(
                " AND LOWER(actor) LIKE ? ESCAPE '\\'",
                Value::Text(contains_pattern(a)),
            );
        }
        if let Some(a) = &filter.action {
            bound(" AND action = ?", Value::Text(a.clone()));
        }
        if let Some(keys) = &filter.accounts {
            // No key at all (an unknown account) matches nothing, never everything.
            sql.push_str(" AND account IN (NULL");
            for k in keys {
                sql.push_str(", ?");
                args.push(Value::Text(k.clone()));
            }
            sql.push(')');
        }
        let limit = filter.limit.unwrap_or(AUDIT_READ_MAX).min(AUDIT_READ_MAX);
        sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(self.sql("read audit log"))?;
        let rows = stmt
            .query_map(args, audit_row)
            .map_err(self.sql("read audit log"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("read audit log"))
    }
}

/// An audit record from a row of `id, at_ms, actor, action, target, outcome, source, detail,
/// account`.
fn audit_row(r: &super::db::Row) -> Result<AuditRecord, super::db::DbError> {
    let detail: String = r.get(7)?;
    Ok(AuditRecord {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        outcome: r.get(5)?,
        source: r.get(6)?,
        account: r.get(8)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(at_ms: i64, actor: &str, action: &str) -> AuditRecord {
        AuditRecord {
            id: 0,
            at_ms,
            actor: actor.into(),
            action: action.into(),
            target: "Suspicious Users".into(),
            outcome: "ok".into(),
            source: Some("127.0.0.1:5000".into()),
            account: None,
            detail: serde_json::json!({"principal": "corp\\alice"}),
        }
    }

    #[test]
    fn prune_removes_only_records_older_than_the_cutoff() {
        let store = Store::in_memory().unwrap();
        for at in [1_000, 2_000, 3_000] {
            store
                .append_audit(&record(at, "system", "lists.add"))
                .unwrap();
        }
        assert_eq!(store.prune_audit(2_000).unwrap(), 1);
        let left: Vec<i64> = store
            .audit(&AuditFilter::default())
            .unwrap()
            .iter()
            .map(|r| r.at_ms)
            .collect();
        assert_eq!(left, [2_000, 3_000]);
        assert_eq!(store.audit_count().unwrap(), 2);
    }

    #[test]
    fn filters_by_time_actor_and_action() {
        let store = Store::in_memory().unwrap();
        store
            .append_audit(&record(1000, "key:a", "lists.add"))
            .unwrap();
        store
            .append_audit(&record(2000, "key:b", "lists.add"))
            .unwrap();
        store
            .append_audit(&record(3000, "key:a", "lists.remove"))
            .unwrap();
        let read = |f: AuditFilter| {
            store
                .audit(&f)
                .unwrap()
                .into_iter()
                .map(|r| r.at_ms)
                .collect::<Vec<_>>()
        };
        assert_eq!(read(AuditFilter::default()), [1000, 2000, 3000]);
        let by_actor = AuditFilter {
            actor: Some("key:a".into()),
            ..AuditFilter::default()
        };
        assert_eq!(read(by_actor), [1000, 3000]);
        // Part of the name, any case; `%` and `_` are themselves.
        let by_name = AuditFilter {
            actor: Some("KEY:".into()),
            ..AuditFilter::default()
        };
        assert_eq!(read(by_name), [1000, 2000, 3000]);
        let wildcard = AuditFilter {
            actor: Some("%".into()),
            ..AuditFilter::default()
        };
        assert!(read(wildcard).is_empty());
        let window = AuditFilter {
            since_ms: Some(1500),
            until_ms: Some(3000),
            action: Some("lists.add".into()),
            ..AuditFilter::default()
        };
        assert_eq!(read(window), [2000]);
        let r = &store.audit(&AuditFilter::default()).unwrap()[0];
        assert_eq!(r.detail["principal"], "corp\\alice");
        // By account: the records about it, none for an unknown one (never all).
        store
            .append_audit(&record(4000, "key:a", "lists.add").about("name:corp\\alice"))
            .unwrap();
        let about = |keys: Vec<String>| AuditFilter {
            accounts: Some(keys),
            ..AuditFilter::default()
        };
        assert_eq!(read(about(vec!["name:corp\\alice".into()])), [4000]);
        assert!(read(about(Vec::new())).is_empty());
    }

    #[test]
    fn an_audited_change_and_its_record_commit_together_or_not_at_all() {
        let store = Store::in_memory().unwrap();
        store.ensure_list("L", "").unwrap();
        let actor = Actor::system("test");
        let member = |p: &str| crate::store::NewMember::test(p);
        // Two store calls and the record: all of it.
        store
            .audited(
                |s| {
                    s.add_member("L", &member("corp\\alice"))?;
                    s.add_member("L", &member("corp\\bob"))
                },
                |_| AuditRecord::new(&actor, "lists.add", "L", serde_json::json!({})),
            )
            .unwrap();
        assert_eq!(store.members("L").unwrap().len(), 2);
        assert_eq!(store.audit(&AuditFilter::default()).unwrap().len(), 1);
        // The second call fails: the first one's member and the record are gone with it.
        let failed = store.audited(
            |s| {
                s.add_member("L", &member("corp\\carol"))?;
                s.add_member("no such list", &member("corp\\dave"))
            },
            |_| AuditRecord::new(&actor, "lists.add", "L", serde_json::json!({})),
        );
        assert!(matches!(failed, Err(StoreError::NoSuchList(_))));
        assert_eq!(store.members("L").unwrap().len(), 2);
        assert_eq!(store.audit(&AuditFilter::default()).unwrap().len(), 1);
        // No record when the change turned out to change nothing.
        let removed = store
            .audited(
                |s| s.release_member("L", "name:corp\\nobody", "t", ""),
                |removed| {
                    removed.as_ref().map(|_| {
                        AuditRecord::new(&actor, "lists.remove", "L", serde_json::json!({}))
                    })
                },
            )
            .unwrap();
        assert!(removed.is_none());
        assert_eq!(store.audit(&AuditFilter::default()).unwrap().len(), 1);
    }
}
