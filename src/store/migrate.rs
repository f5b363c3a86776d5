//! `warden store migrate`: copies every record of one store into another — a SQLite file into
//! a new PostgreSQL store — in one transaction of the target: members, incidents, responses,
//! alerts, keys, audit, last good and held rows, recent updates, mapping and MX push state,
//! expiry holds and pushed accounts, with their ids (an incident stays `INC-7`).
//!
//! Both schemas come from the same numbered migrations, so a table's columns are in the same
//! order on both backends and rows copy position by position. The target must be empty: a
//! copy never merges into state a running replica already wrote.

use serde::Serialize;

use super::db::{OptionalExtension, Value, params};
use super::{Atomic, Store, StoreError};

/// The tables copied, parents before children (foreign keys hold throughout).
pub const TABLES: &[&str] = &[
    "lists",
    "accounts",
    "account_names",
    "account_former_keys",
    "members",
    "memberships",
    "recent_updates",
    "data_set_rows",
    "held_refreshes",
    "mapping_state",
    "api_keys",
    "audit",
    "incidents",
    "responses",
    "alerts",
    "imperva_pushes",
    "expiry_holds",
    "pushed_accounts",
    "account_surfaces",
];

/// Tables whose `id` the target numbers on from where the copy ends.
const NUMBERED: &[&str] = &[
    "lists",
    "memberships",
    "recent_updates",
    "audit",
    "incidents",
    "responses",
];

/// How many rows of each table were copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copied {
    pub tables: Vec<(String, u64)>,
}

/// Why a copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "target store {target} is not empty (table {table} has rows): migrate into a new \
         database, before the first `warden serve` on it"
    )]
    NotEmpty { target: String, table: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Copies every record of this store into `target`, which must be empty.
    pub fn copy_into(&self, target: &Store) -> Result<Copied, MigrateError> {
        for table in TABLES {
            let any = target
                .conn()
                .query_row(&format!("SELECT 1 FROM {table} LIMIT 1"), params![], |_| {
                    Ok(())
                })
                .optional()
                .map_err(target.sql("check the target is empty"))?;
            if any.is_some() {
                return Err(MigrateError::NotEmpty {
                    target: target.path().display().to_string(),
                    table: (*table).to_owned(),
                });
            }
        }
        let conn = target.conn();
        let tx = Atomic::begin(&conn).map_err(target.sql("begin the copy"))?;
        let mut tables = Vec::new();
        for table in TABLES {
            let rows = self
                .conn()
                .query(&format!("SELECT * FROM {table}"), params![])
                .map_err(self.sql("read the source"))?;
            for row in &rows {
                let marks: Vec<String> = (1..=row.0.len()).map(|i| format!("?{i}")).collect();
                tx.execute(
                    &format!("INSERT INTO {table} VALUES ({})", marks.join(", ")),
                    row.0.clone(),
                )
                .map_err(target.sql("copy a row"))?;
            }
            tables.push(((*table).to_owned(), rows.len() as u64));
        }
        if conn.is_postgres() {
            for table in NUMBERED {
                tx.query(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                                       COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                    ),
                    Vec::<Value>::new(),
                )
                .map_err(target.sql("number on after the copy"))?;
            }
        }
        tx.commit().map_err(target.sql("commit the copy"))?;
        drop(conn);
        target.note_revision()?;
        Ok(Copied { tables })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::NewMember;

    #[test]
    fn a_copy_keeps_every_row_and_refuses_a_non_empty_target() {
        let source = Store::in_memory().unwrap();
        source.ensure_list("L", "d").unwrap();
        source
            .add_member("L", &NewMember::test("corp\\alice"))
            .unwrap();
        let target = Store::in_memory().unwrap();
        let copied = source.copy_into(&target).unwrap();
        assert!(copied.tables.contains(&("members".to_owned(), 1)));
        assert_eq!(target.members("L").unwrap(), source.members("L").unwrap());
        assert!(target.revision() > 0);
        assert!(matches!(
            source.copy_into(&target),
            Err(MigrateError::NotEmpty { .. })
        ));
    }
}
