//! Imperva MX pushes as stored: per data set, the records last pushed successfully (the base
//! the next incremental diff is computed from, by whichever process pushes) and how the last
//! attempts went.

use super::db::{DbError, OptionalExtension, params};

use super::{Store, StoreError};
use crate::base::time::now;

/// How pushing one data set to the MX is going.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PushStatus {
    pub data_set: String,
    pub mx_name: String,
    /// Unix seconds of the last successful push.
    pub last_push_at: Option<i64>,
    /// `full` or `incremental`.
    pub last_mode: Option<String>,
    /// Records sent by the last successful push.
    pub records_sent: i64,
    pub last_attempt_at: Option<i64>,
    /// Why the last attempt failed; none after a success.
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub failures: i64,
}

impl PushStatus {
    /// The status of a push that has not been attempted yet.
    pub fn never(data_set: &str, mx_name: &str) -> PushStatus {
        PushStatus {
            data_set: data_set.to_owned(),
            mx_name: mx_name.to_owned(),
            last_push_at: None,
            last_mode: None,
            records_sent: 0,
            last_attempt_at: None,
            last_error: None,
            failures: 0,
        }
    }
}

impl Store {
    /// The records (a JSON object, key → record) last pushed for `data_set` into the MX data
    /// set `mx_name`, if any; what went to another MX data set is no base for this one.
    pub fn pushed_records(
        &self,
        data_set: &str,
        mx_name: &str,
    ) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT records FROM imperva_pushes WHERE data_set = ?1 AND mx_name = ?2",
                [data_set, mx_name],
                |r| r.get::<Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.sql("read pushed records"))
    }

    /// Records a successful push: what the MX now holds and how it got there.
    pub fn push_succeeded(
        &self,
        data_set: &str,
        mx_name: &str,
        records: &str,
        mode: &str,
        sent: usize,
    ) -> Result<(), StoreError> {
        let at = now();
        self.conn()
            .execute(
                "INSERT INTO imperva_pushes (data_set, mx_name, records, last_push_at, last_mode,
                                             records_sent, last_attempt_at, last_error, failures)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?4, NULL, 0)
                 ON CONFLICT(data_set) DO UPDATE SET mx_name = excluded.mx_name,
                   records = excluded.records, last_push_at = excluded.last_push_at,
                   last_mode = excluded.last_mode, records_sent = excluded.records_sent,
                   last_attempt_at = excluded.last_attempt_at, last_error = NULL, failures = 0",
                params![data_set, mx_name, records, at, mode, sent as i64],
            )
            .map_err(self.sql("record push"))?;
        Ok(())
    }

    /// Records a failed push; what was last pushed stays the base, unless it went to another
    /// MX data set (the target was renamed), whose records are no base for this one.
    pub fn push_failed(
        &self,
        data_set: &str,
        mx_name: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO imperva_pushes (data_set, mx_name, last_attempt_at, last_error, failures)
                 VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT(data_set) DO UPDATE SET mx_name = excluded.mx_name,
                   last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error,
                   failures = CASE WHEN imperva_pushes.mx_name = excluded.mx_name
                     THEN imperva_pushes.failures + 1 ELSE 1 END,
                   records = CASE WHEN imperva_pushes.mx_name = excluded.mx_name
                     THEN imperva_pushes.records END",
                params![data_set, mx_name, now(), error],
            )
            .map_err(self.sql("record push failure"))?;
        Ok(())
    }

    /// The push status of every data set pushed so far.
    pub fn push_statuses(&self) -> Result<Vec<PushStatus>, StoreError> {
        let conn = self.conn();
        let read = || -> Result<Vec<PushStatus>, DbError> {
            let mut stmt = conn.prepare_cached(
                "SELECT data_set, mx_name, last_push_at, last_mode, records_sent,
                        last_attempt_at, last_error, failures
                 FROM imperva_pushes ORDER BY data_set",
            )?;
            stmt.query_map(params![], |r| {
                Ok(PushStatus {
                    data_set: r.get(0)?,
                    mx_name: r.get(1)?,
                    last_push_at: r.get(2)?,
                    last_mode: r.get(3)?,
                    records_sent: r.get(4)?,
                    last_attempt_at: r.get(5)?,
                    last_error: r.get(6)?,
                    failures: r.get(7)?,
                })
            })?
            .collect()
        };
        read().map_err(self.sql("read push status"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_base_belongs_to_one_mx_data_set_and_failures_count_until_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.db")).unwrap();
        assert_eq!(store.pushed_records("PTR", "MX A").unwrap(), None);

        store.push_failed("PTR", "MX A", "503").unwrap();
        store.push_failed("PTR", "MX A", "503").unwrap();
        assert_eq!(store.push_statuses().unwrap()[0].failures, 2);

        store
            .push_succeeded("PTR", "MX A", r#"{"a":{}}"#, "full", 1)
            .unwrap();
        let s = &store.push_statuses().unwrap()[0];
        assert_eq!((s.failures, s.last_error.as_deref()), (0, None));
        assert_eq!(s.last_mode.as_deref(), Some("full"));
        assert_eq!(
            store.pushed_records("PTR", "MX A").unwrap().as_deref(),
            Some(r#"{"a":{}}"#)
        );
        // Another target: no base, and the failures are its own.
        assert_eq!(store.pushed_records("PTR", "MX B").unwrap(), None);
        store.push_failed("PTR", "MX B", "IMP-10094").unwrap();
        assert_eq!(store.push_statuses().unwrap()[0].failures, 1);
        store.push_failed("PTR", "MX A", "503").unwrap();
        assert_eq!(store.pushed_records("PTR", "MX A").unwrap(), None);
    }
}
