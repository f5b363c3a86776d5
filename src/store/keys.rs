//! API keys as stored: an id, a name, the SHA-256 of the secret part, scopes, expiry and
//! revocation. The key itself is never stored; [`crate::auth`] makes and checks keys.

use super::db::{DbError, OptionalExtension, Row, params};

use super::{Store, StoreError};

/// One API key's record. `hash` is the SHA-256 of the secret part of the key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub hash: Vec<u8>,
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// When the expiry sweep saw the key past its expiry: from then on it stays expired, even
    /// if the wall clock moves back.
    pub expired_at: Option<i64>,
    /// When the key was replaced by a new one: it still authenticates until its (overlap)
    /// expiry, but no console session opened with it outlives the rotation.
    pub rotated_at: Option<i64>,
}

fn key_from_row(r: &Row) -> Result<StoredKey, DbError> {
    let scopes: String = r.get(3)?;
    Ok(StoredKey {
        id: r.get(0)?,
        name: r.get(1)?,
        hash: r.get(2)?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: r.get(4)?,
        created_by: r.get(5)?,
        expires_at: r.get(6)?,
        revoked_at: r.get(7)?,
        expired_at: r.get(8)?,
        rotated_at: r.get(9)?,
    })
}

const KEY_COLUMNS: &str = "id, name, hash, scopes, created_at, created_by, expires_at, revoked_at, \
                           expired_at, rotated_at";

impl Store {
    /// Stores a new key record.
    pub fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO api_keys (id, name, hash, scopes, created_at, created_by, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    key.id,
                    key.name,
                    key.hash,
                    key.scopes.join(","),
                    key.created_at,
                    key.created_by,
                    key.expires_at
                ],
            )
            .map_err(self.sql("insert api key"))?;
        Ok(())
    }

    /// Every key record, revoked and expired ones included, oldest first.
    pub fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
            ))
            .map_err(self.sql("list api keys"))?;
        let rows = stmt
            .query_map(params![], key_from_row)
            .map_err(self.sql("list api keys"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("list api keys"))
    }

    /// One key record by id.
    pub fn key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                [id],
                key_from_row,
            )
            .optional()
            .map_err(self.sql("read api key"))
    }

    /// Revokes a key now. False if there is no such key or it was already revoked.
    pub fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, at],
            )
            .map_err(self.sql("revoke api key"))?;
        Ok(n == 1)
    }

    /// Marks a key rotated at `now` and makes it expire at `expire_by` unless it already
    /// expires sooner (the rotation's overlap).
    pub fn rotate_key_out(&self, id: &str, now: i64, expire_by: i64) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "UPDATE api_keys SET expires_at = CASE WHEN expires_at < ?3 THEN expires_at ELSE ?3 END,
                        rotated_at = COALESCE(rotated_at, ?2)
                 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now, expire_by],
            )
            .map_err(self.sql("rotate api key"))?;
        Ok(n == 1)
    }

    /// Marks every unrevoked key past its expiry at `now` as expired for good; returns their
    /// ids.
    pub fn mark_expired_keys(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "UPDATE api_keys SET expired_at = ?1
                 WHERE expired_at IS NULL AND revoked_at IS NULL
                   AND expires_at IS NOT NULL AND expires_at <= ?1
                 RETURNING id",
            )
            .map_err(self.sql("mark expired api keys"))?;
        let rows = stmt
            .query_map([now], |r| r.get(0))
            .map_err(self.sql("mark expired api keys"))?;
        let mut ids: Vec<String> = rows
            .collect::<Result<_, _>>()
            .map_err(self.sql("mark expired api keys"))?;
        ids.sort();
        Ok(ids)
    }
}
