//! Containment receipts: one row per `POST /v1/contain` or `POST /v1/release` a caller made,
//! what each principal turned out to be (written once the change is done), and the caller's
//! idempotency key, so that a retried request finds its receipt instead of acting again.
//!
//! A receipt holds no surface state: what landed where is `account_surfaces`' (read through
//! the provenance of each account). The table is bounded: only authenticated `respond`
//! callers write it, and the newest [`RECEIPTS_KEPT`] rows are kept (a key older than that
//! acts again when retried, which a contain or release survives: both are idempotent on the
//! lists).

use super::db::{Conn, OptionalExtension, Row, params};
use super::value::DbError;
use super::{Store, StoreError};
use crate::base::time::now_ms;

/// Receipts kept; older ones are pruned as new ones are written.
pub const RECEIPTS_KEPT: i64 = 10_000;

/// What a receipt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptAction {
    Contain,
    Release,
}

impl ReceiptAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptAction::Contain => "contain",
            ReceiptAction::Release => "release",
        }
    }

    fn parse(text: &str) -> ReceiptAction {
        if text == "release" {
            ReceiptAction::Release
        } else {
            ReceiptAction::Contain
        }
    }
}

/// A receipt about to be written, before the change it records is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReceipt {
    pub action: ReceiptAction,
    /// Who asked (the actor's name): idempotency keys are the caller's own.
    pub caller: String,
    pub idempotency_key: Option<String>,
    /// A digest of the request, to tell a retry from another request under the same key.
    pub fingerprint: String,
    pub list: String,
    pub incident: Option<String>,
    /// The surfaces the caller asked to confirm.
    pub confirm: Vec<String>,
}

/// A receipt as stored: the request it was written for, and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub id: i64,
    pub request: NewReceipt,
    pub created_at_ms: i64,
    /// What each principal turned out to be (JSON, the operation's shape); `None` while the
    /// change is being made.
    pub outcome: Option<String>,
}

/// What [`Store::claim_receipt`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A new receipt: make the change, then [`Store::finish_receipt`] (or
    /// [`Store::drop_receipt`] when it fails).
    New(i64),
    /// The caller's key has a receipt already: the request was made before.
    Existing(Receipt),
}

const COLUMNS: &str = "id, action, caller, idempotency_key, fingerprint, list, incident, confirm, \
                       created_at_ms, outcome";

fn receipt_from_row(r: &Row) -> Result<Receipt, DbError> {
    let confirm: String = r.get(7)?;
    Ok(Receipt {
        id: r.get(0)?,
        request: NewReceipt {
            action: ReceiptAction::parse(&r.get::<String>(1)?),
            caller: r.get(2)?,
            idempotency_key: r.get(3)?,
            fingerprint: r.get(4)?,
            list: r.get(5)?,
            incident: r.get(6)?,
            confirm: confirm
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        },
        created_at_ms: r.get(8)?,
        outcome: r.get(9)?,
    })
}

fn read(conn: &Conn, id: i64) -> Result<Option<Receipt>, DbError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM receipts WHERE id = ?1"),
        [id],
        receipt_from_row,
    )
    .optional()
}

impl Store {
    /// Writes a new receipt, or — when the caller's idempotency key has one — returns it
    /// instead (nothing is written then). Prunes the oldest beyond [`RECEIPTS_KEPT`].
    pub fn claim_receipt(&self, new: &NewReceipt) -> Result<Claim, StoreError> {
        self.claim_keeping(new, RECEIPTS_KEPT)
    }

    fn claim_keeping(&self, new: &NewReceipt, kept: i64) -> Result<Claim, StoreError> {
        let conn = self.conn();
        let claim = || -> Result<Claim, DbError> {
            let inserted: Option<i64> = conn
                .query_row(
                    "INSERT INTO receipts (action, caller, idempotency_key, fingerprint, list,
                       incident, confirm, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (action, caller, idempotency_key) DO NOTHING RETURNING id",
                    params![
                        new.action.as_str(),
                        new.caller,
                        new.idempotency_key,
                        new.fingerprint,
                        new.list,
                        new.incident,
                        new.confirm.join(","),
                        now_ms()
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = inserted {
                conn.execute(
                    "DELETE FROM receipts WHERE id <= ?1",
                    [id.saturating_sub(kept)],
                )?;
                return Ok(Claim::New(id));
            }
            let existing = conn.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM receipts
                     WHERE action = ?1 AND caller = ?2 AND idempotency_key = ?3"
                ),
                params![new.action.as_str(), new.caller, new.idempotency_key],
                receipt_from_row,
            )?;
            Ok(Claim::Existing(existing))
        };
        claim().map_err(self.sql("write receipt"))
    }

    /// Records what the change of receipt `id` did.
    pub fn finish_receipt(&self, id: i64, outcome: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE receipts SET outcome = ?2 WHERE id = ?1",
                params![id, outcome],
            )
            .map(|_| ())
            .map_err(self.sql("write receipt"))
    }

    /// Forgets a receipt whose change failed, so that a retry under its key acts.
    pub fn drop_receipt(&self, id: i64) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM receipts WHERE id = ?1", [id])
            .map(|_| ())
            .map_err(self.sql("drop receipt"))
    }

    /// One receipt.
    pub fn receipt(&self, id: i64) -> Result<Option<Receipt>, StoreError> {
        read(&self.conn(), id).map_err(self.sql("read receipt"))
    }
}

/// A receipt's id as callers see it (`RCPT-17`).
pub fn receipt_ref(id: i64) -> String {
    format!("RCPT-{id}")
}

/// The id in a receipt reference (`RCPT-17`, any case).
pub fn parse_receipt_ref(text: &str) -> Option<i64> {
    let digits = text
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("RCPT-"))
        .and_then(|_| text.get(5..))?;
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())
        .flatten()
        .filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn new(key: Option<&str>) -> NewReceipt {
        NewReceipt {
            action: ReceiptAction::Contain,
            caller: "key:1 (soar)".into(),
            idempotency_key: key.map(str::to_owned),
            fingerprint: "f".into(),
            list: "L".into(),
            incident: Some("INC-1".into()),
            confirm: vec!["group".into(), "gate".into()],
        }
    }

    #[test]
    fn a_key_claims_once_and_finds_its_receipt_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let Claim::New(id) = store.claim_receipt(&new(Some("k1"))).unwrap() else {
            panic!("first claim is new");
        };
        store.finish_receipt(id, "[1]").unwrap();
        let Claim::Existing(again) = store.claim_receipt(&new(Some("k1"))).unwrap() else {
            panic!("the same key finds its receipt");
        };
        assert_eq!(again.id, id);
        assert_eq!(again.outcome.as_deref(), Some("[1]"));
        assert_eq!(again.request, new(Some("k1")));
        // Another caller's key of the same text is its own; no key is always new.
        let mut other = new(Some("k1"));
        other.caller = "key:2 (other)".into();
        assert!(matches!(
            store.claim_receipt(&other).unwrap(),
            Claim::New(_)
        ));
        assert!(matches!(
            store.claim_receipt(&new(None)).unwrap(),
            Claim::New(_)
        ));
        assert!(matches!(
            store.claim_receipt(&new(None)).unwrap(),
            Claim::New(_)
        ));
        store.drop_receipt(id).unwrap();
        assert!(store.receipt(id).unwrap().is_none());
        assert!(matches!(
            store.claim_receipt(&new(Some("k1"))).unwrap(),
            Claim::New(_)
        ));
    }

    #[test]
    fn receipts_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut last = 0;
        for i in 0..8 {
            let Claim::New(id) = store
                .claim_keeping(&new(Some(&format!("k{i}"))), 3)
                .unwrap()
            else {
                panic!("new key");
            };
            last = id;
        }
        let count: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM receipts", params![], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 3);
        assert!(store.receipt(last).unwrap().is_some());
        assert!(store.receipt(1).unwrap().is_none());
    }

    #[test]
    fn receipt_refs_round_trip() {
        assert_eq!(parse_receipt_ref(&receipt_ref(17)), Some(17));
        assert_eq!(parse_receipt_ref("rcpt-3"), Some(3));
        for bad in [
            "RCPT-",
            "RCPT-0",
            "RCPT-+1",
            "RCPT-1x",
            "INC-1",
            "",
            "RCPT-99999999999999999999",
        ] {
            assert_eq!(parse_receipt_ref(bad), None, "{bad}");
        }
    }
}
