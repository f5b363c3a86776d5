//! The store's one connection, whichever backend holds it: SQLite (a file, the embedded
//! default) or PostgreSQL (several replicas on one database, [`super::postgres`]).
//!
//! The store's queries are written once, in SQLite's placeholder style (`?1`, `?`) and in SQL
//! both engines speak (`ON CONFLICT`, `RETURNING`); the PostgreSQL side translates the
//! placeholders. Values cross as [`Value`]s; rows come back as [`Row`]s read with
//! [`Row::get`]. Transactions nest: the outermost is a real transaction, inner ones are
//! savepoints ([`Conn::begin`]).
//!
//! Every transaction that writes a table a snapshot is built from also writes one row of the
//! change log (`changes`: revision, the tables it touched, when) before it commits — on
//! PostgreSQL under the transaction-level advisory lock every write transaction takes at
//! `BEGIN` (one writer at a time, as SQLite's `BEGIN IMMEDIATE`), so revisions commit in order, with a
//! `NOTIFY warden_changes, '<revision>'` in the same transaction. A write outside any
//! transaction runs in one of its own, so no write escapes the log.
//!
//! The same one place fences leader-only jobs: a write transaction committed inside
//! [`super::changes::as_leader`] first checks, in the transaction, that its term's token
//! still holds the leader lease (locking the lease row until `COMMIT`, so no other replica
//! can take the lease between the check and the commit), and rolls back otherwise.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::postgres::Session;
pub(crate) use super::value::params;
pub use super::value::{DbError, FromValue, OptionalExtension, Params, Row, ToValue, Value};
use crate::base::time::now_ms;

/// The tables whose changes no snapshot reads (they are read from the store on request):
/// writing only these records no change.
const QUIET_TABLES: &[&str] = &[
    "audit",
    "recent_updates",
    "imperva_pushes",
    "mapping_state",
    "incidents",
    "responses",
    "alerts",
    "held_refreshes",
    "changes",
    // Read on request (`warden accounts show`), never by a snapshot: pushed DNs and where a
    // block landed. An account's names, which data sets index, are in `accounts`.
    "pushed_accounts",
    "account_surfaces",
];

/// Change-log rows kept; older ones are pruned (a replica catching up needs only the newest).
const CHANGES_KEPT: i64 = 10_000;

/// The backend a [`Conn`] talks to.
pub(crate) enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(Session),
}

/// The store's connection: a backend, the transaction depth and what the open transaction
/// wrote. Used under the store's re-entrant lock, so one thread at a time.
pub(crate) struct Conn {
    backend: Backend,
    depth: Cell<u32>,
    touched: RefCell<Vec<String>>,
    /// The newest revision this process committed or has seen committed.
    revision: Arc<AtomicI64>,
}

/// The table a statement writes, if it writes one (`INSERT INTO t`, `UPDATE t`,
/// `DELETE FROM t`, `INSERT OR REPLACE INTO t`).
fn written_table(sql: &str) -> Option<String> {
    let mut words = sql.split_whitespace();
    let first = words.next()?.to_ascii_uppercase();
    let table = match first.as_str() {
        "INSERT" | "REPLACE" | "DELETE" => words.find(|w| {
            !matches!(
                w.to_ascii_uppercase().as_str(),
                "OR" | "REPLACE" | "IGNORE" | "INTO" | "FROM"
            )
        })?,
        "UPDATE" => words.next()?,
        _ => return None,
    };
    let end = table.find(['(', ' ']).unwrap_or(table.len());
    Some(table[..end].to_ascii_lowercase())
}

impl Conn {
    pub(crate) fn new(backend: Backend, revision: Arc<AtomicI64>) -> Conn {
        Conn {
            backend,
            depth: Cell::new(0),
            touched: RefCell::new(Vec::new()),
            revision,
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    pub(crate) fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.backend {
            Backend::Sqlite(c) => Some(c),
            Backend::Postgres(_) => None,
        }
    }

    /// Runs statements without placeholders or results (DDL, transaction control).
    pub(crate) fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.backend {
            Backend::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Backend::Postgres(s) => s.batch(sql, self.depth.get() == 0),
        }
    }

    fn raw_execute(&self, sql: &str, values: Vec<Value>) -> Result<usize, DbError> {
        match &self.backend {
            Backend::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(values.iter().map(sqlite_value)))?)
            }
            Backend::Postgres(s) => s.execute(sql, values, self.depth.get() == 0),
        }
    }

    fn raw_query(&self, sql: &str, values: Vec<Value>) -> Result<Vec<Row>, DbError> {
        match &self.backend {
            Backend::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows =
                    stmt.query(rusqlite::params_from_iter(values.iter().map(sqlite_value)))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut row = Vec::with_capacity(columns);
                    for i in 0..columns {
                        row.push(from_sqlite(r.get_ref(i)?));
                    }
                    out.push(Row(row));
                }
                Ok(out)
            }
            Backend::Postgres(s) => s.query(sql, values, self.depth.get() == 0),
        }
    }

    /// Runs `f` as a write: inside the open transaction, or in one of its own so that it is
    /// logged like any other; the table counts as touched if `changed` says rows changed.
    fn write<T>(
        &self,
        table: String,
        f: impl FnOnce() -> Result<T, DbError>,
        changed: impl Fn(&T) -> bool,
    ) -> Result<T, DbError> {
        if self.depth.get() > 0 {
            let v = f()?;
            if changed(&v) {
                self.touch(table);
            }
            return Ok(v);
        }
        self.begin()?;
        match f() {
            Ok(v) => {
                if changed(&v) {
                    self.touch(table);
                }
                self.commit()?;
                Ok(v)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn touch(&self, table: String) {
        let mut touched = self.touched.borrow_mut();
        if !touched.contains(&table) {
            touched.push(table);
        }
    }

    /// Runs a statement; returns the rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: impl Params) -> Result<usize, DbError> {
        let values = params.values();
        match written_table(sql) {
            Some(table) => self.write(table, || self.raw_execute(sql, values), |n| *n > 0),
            None => self.raw_execute(sql, values),
        }
    }

    /// Every row a statement returns (a `SELECT`, or a write with `RETURNING`).
    pub(crate) fn query(&self, sql: &str, params: impl Params) -> Result<Vec<Row>, DbError> {
        let values = params.values();
        match written_table(sql) {
            Some(table) => self.write(
                table,
                || self.raw_query(sql, values),
                |rows| !rows.is_empty(),
            ),
            None => self.raw_query(sql, values),
        }
    }

    /// The first row a statement returns, through `f`; [`DbError::NoRows`] if none.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let rows = self.query(sql, params)?;
        f(rows.first().ok_or(DbError::NoRows)?)
    }

    /// A statement to run once or more (the shape of `rusqlite`'s, so store code reads the
    /// same on both backends).
    pub(crate) fn prepare_cached<'c>(&'c self, sql: &str) -> Result<Statement<'c>, DbError> {
        Ok(Statement {
            conn: self,
            sql: sql.to_owned(),
        })
    }

    pub(crate) fn prepare<'c>(&'c self, sql: &str) -> Result<Statement<'c>, DbError> {
        self.prepare_cached(sql)
    }

    /// Opens a transaction, or a savepoint inside the open one. SQLite's begins `IMMEDIATE`:
    /// it takes the write lock first, waiting for another process's writer, since a deferred
    /// one that read first would fail at once when another process committed in between.
    pub(crate) fn begin(&self) -> Result<(), DbError> {
        let depth = self.depth.get();
        let postgres_begin;
        let sql = match (depth, &self.backend) {
            (0, Backend::Sqlite(_)) => "BEGIN IMMEDIATE",
            // The same on PostgreSQL: one writer at a time over every replica, so that a
            // read-then-write inside a transaction (a key check, a data set merge) sees the
            // last committed state. Held until COMMIT; it also orders the revisions.
            (0, Backend::Postgres(_)) => {
                postgres_begin = format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({})",
                    super::postgres::CHANGE_LOG_LOCK
                );
                &postgres_begin
            }
            _ => "SAVEPOINT warden",
        };
        self.execute_batch(sql)?;
        self.depth.set(depth + 1);
        Ok(())
    }

    /// Commits the open transaction (logging its change first) or releases the savepoint.
    pub(crate) fn commit(&self) -> Result<(), DbError> {
        let depth = self.depth.get();
        if depth > 1 {
            self.execute_batch("RELEASE warden")?;
            self.depth.set(depth - 1);
            return Ok(());
        }
        let logged = match self.check_fence().and_then(|()| self.log_change()) {
            Ok(r) => r,
            Err(e) => {
                self.rollback();
                return Err(e);
            }
        };
        let committed = self.execute_batch("COMMIT");
        self.depth.set(0);
        self.touched.borrow_mut().clear();
        if let Err(e) = committed {
            // A failed COMMIT may leave the transaction open (SQLite busy): end it.
            let _ = self.execute_batch("ROLLBACK");
            return Err(e);
        }
        if let Some(revision) = logged {
            self.revision.fetch_max(revision, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Rolls the open transaction (or the innermost savepoint) back. Nothing to report to:
    /// the caller is already returning the error that got here.
    pub(crate) fn rollback(&self) {
        let depth = self.depth.get();
        if depth == 0 {
            return;
        }
        if depth > 1 {
            let _ = self.execute_batch("ROLLBACK TO warden; RELEASE warden");
            self.depth.set(depth - 1);
            return;
        }
        let _ = self.execute_batch("ROLLBACK");
        self.depth.set(0);
        self.touched.borrow_mut().clear();
    }

    /// In a leader-only job ([`super::changes::fencing_token`]) on PostgreSQL, checks that the
    /// open transaction's writes are still the leader's: the job's term holds the lease by
    /// the server's clock. The lease row stays share-locked until the transaction ends, so a
    /// replica taking the lease waits for this commit (and this check sees a taken lease).
    fn check_fence(&self) -> Result<(), DbError> {
        let Some(token) = super::changes::fencing_token() else {
            return Ok(());
        };
        if !self.is_postgres() || self.touched.borrow().is_empty() {
            return Ok(());
        }
        let holds = self.raw_query(super::postgres::FENCE_CHECK, vec![Value::Int(token)])?;
        if holds.is_empty() {
            return Err(DbError::Fenced(token));
        }
        Ok(())
    }

    /// Writes the change-log row of the open transaction if it touched a table snapshots are
    /// built from; returns its revision.
    fn log_change(&self) -> Result<Option<i64>, DbError> {
        let topic: Vec<String> = self
            .touched
            .borrow()
            .iter()
            .filter(|t| !QUIET_TABLES.contains(&t.as_str()))
            .cloned()
            .collect();
        if topic.is_empty() {
            return Ok(None);
        }
        let topic = Value::Text(topic.join(","));
        let at = Value::Int(now_ms());
        let revision = match &self.backend {
            Backend::Sqlite(_) => self.raw_query(
                "INSERT INTO changes (revision, topic, at_ms)
                 SELECT COALESCE(MAX(revision), 0) + 1, ?1, ?2 FROM changes RETURNING revision",
                vec![topic, at],
            )?,
            // The writers' lock, taken at BEGIN and held until COMMIT: the next writer takes
            // its revision after this one committed, so revisions become visible in order (a
            // sequence would not).
            Backend::Postgres(_) => self.raw_query(
                "INSERT INTO changes (revision, topic, at_ms)
                     SELECT COALESCE(MAX(revision), 0) + 1, ?1::text, ?2::bigint FROM changes
                     RETURNING revision",
                vec![topic, at],
            )?,
        };
        let revision: i64 = revision.first().ok_or(DbError::NoRows)?.get(0usize)?;
        if self.is_postgres() {
            self.raw_query(
                "SELECT pg_notify(?1::text, ?2::text)",
                vec![
                    Value::Text(super::postgres::CHANNEL.to_owned()),
                    Value::Text(revision.to_string()),
                ],
            )?;
        }
        if revision % 1000 == 0 {
            self.raw_execute(
                "DELETE FROM changes WHERE revision <= ?1",
                vec![Value::Int(revision - CHANGES_KEPT)],
            )?;
        }
        Ok(Some(revision))
    }
}

/// A statement bound to the connection; see [`Conn::prepare_cached`].
pub(crate) struct Statement<'c> {
    conn: &'c Conn,
    sql: String,
}

impl Statement<'_> {
    /// Every row through `f`, as an iterator of results (as `rusqlite`'s `query_map`).
    pub(crate) fn query_map<T>(
        &mut self,
        params: impl Params,
        f: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<std::vec::IntoIter<Result<T, DbError>>, DbError> {
        let rows = self.conn.query(&self.sql, params)?;
        Ok(rows.iter().map(f).collect::<Vec<_>>().into_iter())
    }
}

fn sqlite_value(v: &Value) -> rusqlite::types::ToSqlOutput<'_> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    ToSqlOutput::Borrowed(match v {
        Value::Null => ValueRef::Null,
        Value::Int(n) => ValueRef::Integer(*n),
        Value::Text(s) => ValueRef::Text(s.as_bytes()),
        Value::Blob(b) => ValueRef::Blob(b),
    })
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        // The store writes no floats; one read as text keeps its digits.
        ValueRef::Real(f) => Value::Text(f.to_string()),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_table_is_found_in_every_write_form() {
        for (sql, table) in [
            ("INSERT INTO lists (name) VALUES (?1)", Some("lists")),
            (
                "INSERT OR REPLACE INTO pushed_accounts\n (a)",
                Some("pushed_accounts"),
            ),
            ("  UPDATE members SET x = 1", Some("members")),
            (
                "DELETE FROM expiry_holds WHERE list = ?1",
                Some("expiry_holds"),
            ),
            ("SELECT * FROM members", None),
            ("PRAGMA data_version", None),
        ] {
            assert_eq!(written_table(sql).as_deref(), table, "{sql}");
        }
    }
}
