//! Durable state on SQLite (the embedded default) or PostgreSQL (shared by replicas,
//! [`postgres`]): lists and their members, recent directory updates, last-known-good and held
//! data sets, API keys (hashes only, in [`keys`]), incidents with their responses and the
//! alerts seen ([`incidents`]) and the audit log ([`audit`]). The queries are written once over
//! [`db`]'s connection; the change log, leadership and store health are [`changes`]'.
//!
//! On SQLite the database runs in WAL mode with `synchronous = FULL`, so a write returns only
//! once it is on disk: a change is durable before it is acknowledged. The schema is versioned
//! (`PRAGMA user_version` on SQLite, the same numbers in PostgreSQL's schema table) and
//! migrated forward on open; a database from a newer warden is refused rather than misread.
//! Other processes (the CLI) write to the same store; `serve` notices their commits through
//! [`Store::data_version`] (SQLite) or the change feed (PostgreSQL).

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::{ReentrantMutex, ReentrantMutexGuard};
use rusqlite::Connection;

use db::{Backend, Conn, OptionalExtension, params};

use crate::base::principal::PrincipalError;
use crate::base::time::now;
use crate::config::{PostgresStoreConfig, StoreConfig};

pub mod accounts;
pub mod audit;
pub mod changes;
pub mod db;
pub mod incidents;
pub mod keys;
pub mod members;
pub mod migrate;
pub mod postgres;
pub mod pushes;
pub mod receipts;
mod value;

pub use accounts::{PushedAccount, Surface, SurfaceEvent, SurfaceKind};
pub use audit::{AuditFilter, AuditRecord, AuditRecords};
pub use incidents::{AlertSeen, Incident, NewIncident, NewResponse, ResponseRecord};
pub use keys::StoredKey;
pub use members::{
    Added, ExpiryDue, Member, MemberRef, MemberState, Membership, NewMember, Released,
};
pub use pushes::PushStatus;

/// Schema migrations, in order. Entry `i` moves the schema from version `i` to `i + 1`.
/// Never edit a shipped entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: lists and members.
    "CREATE TABLE lists (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL
    );
    CREATE TABLE members (
        list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
        principal TEXT NOT NULL,
        principal_key TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        incident TEXT,
        added_by TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (list_id, principal_key)
    ) WITHOUT ROWID;
    CREATE INDEX members_expiry ON members(expires_at) WHERE expires_at IS NOT NULL;",
    // 2: directory sync — recent updates, last good and held data sets, mapping state.
    "CREATE TABLE recent_updates (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        added INTEGER NOT NULL,
        removed INTEGER NOT NULL,
        unresolved TEXT NOT NULL,
        error TEXT
    );
    CREATE INDEX recent_updates_device ON recent_updates(device, id);
    CREATE TABLE data_set_rows (
        name TEXT PRIMARY KEY,
        generation INTEGER NOT NULL,
        rows INTEGER NOT NULL,
        records TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE held_refreshes (
        name TEXT PRIMARY KEY,
        records TEXT NOT NULL,
        current_rows INTEGER NOT NULL,
        new_rows INTEGER NOT NULL,
        reason TEXT NOT NULL,
        held_at INTEGER NOT NULL
    );
    CREATE TABLE mapping_state (
        list TEXT NOT NULL,
        group_dn TEXT NOT NULL,
        first_synced_at INTEGER NOT NULL,
        PRIMARY KEY (list, group_dn)
    );",
    // 3: API keys (hashes only) and the audit log.
    "CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash BLOB NOT NULL,
        scopes TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL,
        source TEXT,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit(at_ms);",
    // 4: incidents, the responses run on them, and the alerts seen (for idempotency).
    "CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        severity TEXT NOT NULL,
        source TEXT NOT NULL,
        users TEXT NOT NULL,
        ips TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        alert_id TEXT UNIQUE
    );
    CREATE TABLE responses (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        list TEXT NOT NULL,
        principals TEXT NOT NULL,
        reason TEXT NOT NULL,
        expires_at INTEGER,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        rule TEXT
    );
    CREATE INDEX responses_incident ON responses(incident_id);
    CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        severity TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        rule TEXT,
        incident_id INTEGER
    ) WITHOUT ROWID;",
    // 5: what was last pushed to the Imperva MX per data set, and how pushes went.
    "CREATE TABLE imperva_pushes (
        data_set TEXT PRIMARY KEY,
        mx_name TEXT NOT NULL,
        records TEXT,
        last_push_at INTEGER,
        last_mode TEXT,
        records_sent INTEGER NOT NULL DEFAULT 0,
        last_attempt_at INTEGER,
        last_error TEXT,
        failures INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;",
    // 6: expiry that survives a clock jump — an expired member stays (inactive) until purged,
    // a key seen expired stays expired, and a sweep too large for a list is held.
    // The sweep asks every second; each of its questions has a partial index, so expired
    // members kept for the retention period cost it nothing.
    "ALTER TABLE members ADD COLUMN expired_at INTEGER;
    CREATE INDEX members_expired ON members(expired_at) WHERE expired_at IS NOT NULL;
    CREATE INDEX members_due ON members(expires_at)
        WHERE expired_at IS NULL AND expires_at IS NOT NULL;
    CREATE INDEX members_expired_expiry ON members(expires_at) WHERE expired_at IS NOT NULL;
    ALTER TABLE api_keys ADD COLUMN expired_at INTEGER;
    CREATE TABLE expiry_holds (
        list TEXT PRIMARY KEY,
        due INTEGER NOT NULL,
        active INTEGER NOT NULL,
        held_at INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 7: per mapping, the DN last pushed for each listed principal and the names its account
    // has (the list data set's alias keys); a push never removes a listed principal's DN.
    "CREATE TABLE pushed_accounts (
        list TEXT NOT NULL,
        group_dn TEXT NOT NULL,
        principal_key TEXT NOT NULL,
        dn TEXT NOT NULL,
        names TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (list, group_dn, principal_key)
    ) WITHOUT ROWID;",
    // 8: the change log — one row per committed change a snapshot reads; its newest revision
    // is the store's (see `db`).
    "CREATE TABLE changes (
        revision INTEGER PRIMARY KEY,
        topic TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );",
    // 9: when a key was rotated: its overlap is for clients switching keys, and the console
    // sessions opened with it end at once, on every replica.
    "ALTER TABLE api_keys ADD COLUMN rotated_at INTEGER;",
    // 10: a list member is an account (`members`): accounts and their names, one member per
    // (list, account), the memberships that hold it (released ones kept as history), pushed
    // DNs keyed by account, when a block landed on each enforcement surface, and the account
    // an audit record is about. Members of an older store become `pending` accounts keyed by
    // their text, settled by the domain rules when a configuration opens the store
    // (`Store::settle_pending`), which merges two spellings of one account into one member.
    "CREATE TABLE accounts (
        key TEXT PRIMARY KEY,
        canonical TEXT NOT NULL,
        names TEXT NOT NULL,
        resolution TEXT NOT NULL,
        directory TEXT,
        dn TEXT,
        sid TEXT,
        resolved_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE account_names (
        name_key TEXT NOT NULL,
        account_key TEXT NOT NULL,
        PRIMARY KEY (name_key, account_key)
    ) WITHOUT ROWID;
    CREATE INDEX account_names_account ON account_names(account_key);
    CREATE TABLE account_former_keys (
        former_key TEXT PRIMARY KEY,
        account_key TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX account_former_keys_account ON account_former_keys(account_key);
    CREATE TABLE members_v10 (
        list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
        account_key TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        expires_at INTEGER,
        expiry_set_by TEXT,
        expired_at INTEGER,
        PRIMARY KEY (list_id, account_key)
    ) WITHOUT ROWID;
    CREATE TABLE memberships (
        id INTEGER PRIMARY KEY,
        list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
        account_key TEXT NOT NULL,
        principal TEXT NOT NULL,
        reason TEXT NOT NULL,
        incident TEXT,
        added_by TEXT NOT NULL,
        source TEXT,
        added_at INTEGER NOT NULL,
        expires_at INTEGER,
        released_at INTEGER,
        released_by TEXT,
        release_reason TEXT
    );
    CREATE INDEX memberships_member ON memberships(list_id, account_key);
    CREATE INDEX memberships_account ON memberships(account_key);
    INSERT INTO accounts (key, canonical, names, resolution, resolved_at)
        SELECT 'pending:' || principal_key, MIN(principal), MIN(principal), 'pending',
               MIN(added_at)
        FROM members GROUP BY principal_key;
    INSERT INTO members_v10 (list_id, account_key, added_at, expires_at, expired_at)
        SELECT list_id, 'pending:' || principal_key, added_at, expires_at, expired_at
        FROM members;
    INSERT INTO memberships (list_id, account_key, principal, reason, incident, added_by,
                             added_at, expires_at)
        SELECT list_id, 'pending:' || principal_key, principal, reason, incident, added_by,
               added_at, expires_at
        FROM members ORDER BY added_at, list_id, principal_key;
    DROP TABLE members;
    ALTER TABLE members_v10 RENAME TO members;
    CREATE INDEX members_expiry ON members(expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX members_expired ON members(expired_at) WHERE expired_at IS NOT NULL;
    CREATE INDEX members_due ON members(expires_at)
        WHERE expired_at IS NULL AND expires_at IS NOT NULL;
    CREATE INDEX members_expired_expiry ON members(expires_at) WHERE expired_at IS NOT NULL;
    CREATE TABLE pushed_v10 (
        list TEXT NOT NULL,
        group_dn TEXT NOT NULL,
        account_key TEXT NOT NULL,
        dn TEXT NOT NULL,
        names TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (list, group_dn, account_key)
    ) WITHOUT ROWID;
    INSERT INTO pushed_v10 (list, group_dn, account_key, dn, names, at_ms)
        SELECT list, group_dn, 'pending:' || principal_key, dn, names, at_ms
        FROM pushed_accounts;
    DROP TABLE pushed_accounts;
    ALTER TABLE pushed_v10 RENAME TO pushed_accounts;
    CREATE TABLE account_surfaces (
        account_key TEXT NOT NULL,
        surface TEXT NOT NULL,
        target TEXT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL,
        landed_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (account_key, surface, target)
    ) WITHOUT ROWID;
    ALTER TABLE audit ADD COLUMN account TEXT;
    CREATE INDEX audit_account ON audit(account, id) WHERE account IS NOT NULL;",
    // 11: containment receipts (`receipts`), a caller's idempotency key unique per action.
    "CREATE TABLE receipts (
        id INTEGER PRIMARY KEY,
        action TEXT NOT NULL,
        caller TEXT NOT NULL,
        idempotency_key TEXT,
        fingerprint TEXT NOT NULL,
        list TEXT NOT NULL,
        incident TEXT,
        confirm TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        outcome TEXT,
        UNIQUE (action, caller, idempotency_key)
    );",
];

/// Whether an expiry sweep has work: asked every second, so every part is an index search
/// (a test holds it to that).
const EXPIRY_WORK: &str = "SELECT EXISTS (SELECT 1 FROM members WHERE expired_at IS NULL
                  AND expires_at IS NOT NULL AND expires_at <= ?1)
     OR EXISTS (SELECT 1 FROM members WHERE expired_at IS NOT NULL
                  AND expires_at > ?1)
     OR EXISTS (SELECT 1 FROM members WHERE expired_at IS NOT NULL
                  AND expired_at <= ?2)
     OR EXISTS (SELECT 1 FROM api_keys WHERE expired_at IS NULL
                  AND revoked_at IS NULL AND expires_at IS NOT NULL
                  AND expires_at <= ?1)
     OR EXISTS (SELECT 1 FROM expiry_holds)";

/// Recent updates kept per directory; older ones are pruned as new ones arrive.
pub const RECENT_UPDATES_KEPT: i64 = 200;

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors from the store. Messages name the database file and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: db::DbError,
    },
    #[error("cannot create directory for store {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "store {path} has schema version {found}, newer than this warden understands ({known}); \
         upgrade warden or point it at another store"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("store {path} is not a warden database or is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: db::DbError,
    },
    #[error("store {path}: {action}: {source}")]
    Sql {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: db::DbError,
    },
    #[error(
        "store {} is readable by group or others (mode {mode:04o}); it holds investigations and \
         the audit log. Make it private — chmod 600 {} (and its -wal and -shm files) — or, to \
         accept it as is, set `allow_readable = true` in [store]",
        path.display(),
        path.display()
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error(
        "store {}: the database is not warden's alone: {}. Any role that may connect to it can \
         take warden's advisory locks (stalling every write, and every replica's start) and send \
         on its NOTIFY channel. As a superuser, run: {}",
        path.display(),
        exposure.problems.join("; "),
        exposure.fix.join(" ")
    )]
    Exposed {
        path: PathBuf,
        exposure: postgres::Exposure,
    },
    #[error("store {path}: cannot set its mode to 0600: {source}")]
    Mode {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no list named {0:?}")]
    NoSuchList(String),
    #[error("no incident INC-{0}")]
    NoSuchIncident(i64),
    #[error("invalid principal: {0}")]
    Principal(#[from] PrincipalError),
}

impl StoreError {
    /// Whether the store could not be reached (PostgreSQL down): nothing was written, and
    /// the same request may succeed later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Open { source, .. } | StoreError::Sql { source, .. } => {
                source.is_unavailable()
            }
            _ => false,
        }
    }
}

/// A list as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListInfo {
    pub name: String,
    pub description: String,
    /// Active members (the ones decisions and pushes see).
    pub members: u64,
    /// Expired members kept until the retention period ends.
    pub expired: u64,
    pub created_at: i64,
    /// An expiry sweep held because it would have deactivated too many members at once.
    pub expiry_hold: Option<ExpiryHold>,
}

/// An expiry sweep held for a list: `due` of its `active` members were past their expiry,
/// more than the configured share. Nothing was deactivated; an admin releases it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpiryHold {
    pub list: String,
    pub due: i64,
    pub active: i64,
    /// Unix seconds.
    pub held_at: i64,
}

/// One push or pull run against a directory, as shown in directory status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecentUpdate {
    pub directory: String,
    /// `push` (list → group) or `pull` (query → data set).
    pub kind: String,
    /// The group DN or data set name.
    pub target: String,
    pub started_at_ms: i64,
    pub duration_ms: i64,
    pub added: i64,
    pub removed: i64,
    pub unresolved: Vec<String>,
    pub error: Option<String>,
}

/// A data set's persisted rows (Imperva `records` JSON) and their generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRows {
    pub generation: i64,
    pub rows: i64,
    pub records: String,
    pub updated_at: i64,
}

/// A refresh held by the shrink guard, waiting for an admin to accept it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldRefresh {
    pub name: String,
    /// The hold's identity (the ETag `accept` must name): a digest of the held rows, so a
    /// refresh held again with the same rows is the same hold, and one with other rows is not.
    pub id: String,
    #[serde(skip)]
    pub records: String,
    pub current_rows: i64,
    pub new_rows: i64,
    pub reason: String,
    pub held_at: i64,
}

/// The id of a hold of `records`: the first 16 hex digits of their SHA-256.
pub fn hold_id(records: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, records.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The durable store.
pub struct Store {
    path: PathBuf,
    /// The newest revision committed through this store or read from its change log (shared
    /// with the connection, which raises it on each commit that logs a change).
    revision: Arc<AtomicI64>,
    postgres: Option<PostgresStoreConfig>,
    health: changes::Health,
    /// The term this replica leads in on PostgreSQL (see [`changes::Term`]).
    leader: tokio::sync::watch::Sender<Option<changes::Term>>,
    // Every operation is a short synchronous SQLite call; callers on async tasks use
    // spawn_blocking or accept the sub-millisecond hold. Re-entrant so that [`Store::audited`]
    // can hold the connection for a whole change made of several store calls: other threads
    // wait, the calls inside nest as savepoints of one transaction.
    conn: ReentrantMutex<Conn>,
}

/// A write transaction on the store's connection, or a savepoint inside the one already open
/// (so store calls compose into one transaction); commits on [`Atomic::commit`], rolls back
/// when dropped uncommitted. See [`Conn::begin`].
pub(crate) struct Atomic<'c> {
    conn: &'c Conn,
    done: bool,
}

impl<'c> Atomic<'c> {
    pub(crate) fn begin(conn: &'c Conn) -> Result<Atomic<'c>, db::DbError> {
        conn.begin()?;
        Ok(Atomic { conn, done: false })
    }

    pub(crate) fn commit(mut self) -> Result<(), db::DbError> {
        self.done = true;
        self.conn.commit()
    }
}

impl std::ops::Deref for Atomic<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Atomic<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.rollback();
        }
    }
}

/// Rows of `(list, canonical, account key, …)` as member references, sorted.
fn member_refs(rows: &[db::Row]) -> Result<Vec<MemberRef>, db::DbError> {
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(MemberRef {
                list: r.get(0)?,
                principal: r.get::<Option<String>>(1)?.unwrap_or_default(),
                account: r.get(2)?,
            })
        })
        .collect::<Result<Vec<_>, db::DbError>>()?;
    out.sort();
    Ok(out)
}

impl Store {
    /// Opens (creating if needed) the store at `path` and migrates it to the current schema;
    /// refuses a store group or others can read ([`Store::open_with`]).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, false)
    }

    /// Opens the store at `path`. A new store, and its `-wal` and `-shm` files, are made mode
    /// 0600: they hold investigations and the audit log. An existing one group or others can
    /// read is refused ([`StoreError::Readable`]) unless `allow_readable`.
    pub fn open_with(path: &Path, allow_readable: bool) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Store::create_private(path)?;
        if !allow_readable {
            Store::refuse_readable(path)?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source: source.into(),
        })?;
        let store = Store::init(path.to_path_buf(), conn)?;
        if !allow_readable {
            // SQLite gives -wal and -shm the database file's mode; a pair left by an older
            // warden (0644) is narrowed here.
            for suffix in ["-wal", "-shm"] {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                Store::narrow(Path::new(&name))?;
            }
        }
        Ok(store)
    }

    /// Creates an empty database file with mode 0600 when there is none (SQLite would make it
    /// 0644 under the usual umask); an empty file is a valid new database.
    fn create_private(path: &Path) -> Result<(), StoreError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // Exists already, or cannot be made: Connection::open reports the latter.
        let _ = options.open(path);
        Ok(())
    }

    fn refuse_readable(path: &Path) -> Result<(), StoreError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o7777;
                if mode & crate::base::secret::READABLE_BY_OTHERS != 0 {
                    return Err(StoreError::Readable {
                        path: path.to_path_buf(),
                        mode,
                    });
                }
            }
        }
        #[cfg(not(unix))]
        let _ = path;
        Ok(())
    }

    /// Sets an existing file's mode to 0600 if group or others can read it.
    fn narrow(path: &Path) -> Result<(), StoreError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                    |source| StoreError::Mode {
                        path: path.to_path_buf(),
                        source,
                    },
                )?;
            }
        }
        #[cfg(not(unix))]
        let _ = path;
        Ok(())
    }

    /// An in-memory store (tests, `decide` without persistence).
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source: source.into(),
        })?;
        Store::init(path, conn)
    }

    fn init(path: PathBuf, conn: Connection) -> Result<Store, StoreError> {
        let corrupt = |source: rusqlite::Error| StoreError::Corrupt {
            path: path.clone(),
            source: source.into(),
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(corrupt)?;
        // journal_mode returns a row; WAL lets the CLI write while `serve` reads.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(corrupt)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(corrupt)?;
        let store = Store::over(path, Backend::Sqlite(conn), None);
        store.migrate_sqlite()?;
        store.note_revision()?;
        Ok(store)
    }

    fn over(path: PathBuf, backend: Backend, postgres: Option<PostgresStoreConfig>) -> Store {
        let revision = Arc::new(AtomicI64::new(0));
        Store {
            path,
            conn: ReentrantMutex::new(Conn::new(backend, Arc::clone(&revision))),
            revision,
            leader: tokio::sync::watch::Sender::new(None),
            postgres,
            health: changes::Health::default(),
        }
    }

    /// Opens the store `[store]` names: the PostgreSQL database of `url` if set, else the
    /// SQLite file at `path`.
    pub fn open_config(config: &StoreConfig) -> Result<Store, StoreError> {
        match &config.postgres {
            Some(pg) => Store::open_postgres(pg),
            None => Store::open_with(&config.path, config.allow_readable),
        }
    }

    /// Connects to the PostgreSQL store and migrates its schema (the same versions as
    /// SQLite's); refuses one from a newer warden, and one that is not warden's alone (open
    /// to PUBLIC, or owned by another role: [`StoreError::Exposed`], before anything is
    /// written — fail closed, as a readable SQLite file is).
    pub fn open_postgres(config: &PostgresStoreConfig) -> Result<Store, StoreError> {
        let path = PathBuf::from(postgres::describe(config));
        let session = postgres::Session::open(config).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let exposure = postgres::exposure(&session).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        if let Some(exposure) = exposure {
            return Err(StoreError::Exposed { path, exposure });
        }
        let found = postgres::migrate(&session).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        if let Err(found) = found {
            return Err(StoreError::TooNew {
                path,
                found,
                known: postgres::VERSIONS as i64,
            });
        }
        let store = Store::over(path, Backend::Postgres(session), Some(config.clone()));
        store.note_revision()?;
        Ok(store)
    }

    fn migrate_sqlite(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        let corrupt = |source| StoreError::Corrupt {
            path: self.path.clone(),
            source,
        };
        let version: i64 = conn
            .query_row("PRAGMA user_version", params![], |r| r.get(0))
            .map_err(corrupt)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = Atomic::begin(&conn).map_err(corrupt)?;
            tx.execute_batch(sql).map_err(corrupt)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(corrupt)?;
            tx.commit().map_err(corrupt)?;
        }
        Ok(())
    }

    fn conn(&self) -> ReentrantMutexGuard<'_, Conn> {
        // parking_lot locks do not poison; a panic inside a savepoint rolls it back on unwind.
        self.conn.lock()
    }

    fn sql(&self, action: &'static str) -> impl Fn(db::DbError) -> StoreError + '_ {
        move |source| {
            self.health.observe(&source);
            StoreError::Sql {
                path: self.path.clone(),
                action,
                source,
            }
        }
    }

    /// The file path of a SQLite store; a PostgreSQL store's URL.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The PostgreSQL store's connection settings; none for SQLite.
    pub fn postgres(&self) -> Option<&PostgresStoreConfig> {
        self.postgres.as_ref()
    }

    /// Changes whenever another connection (another process) commits. Cheap to poll. On
    /// PostgreSQL, the newest revision of the change log.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        let conn = self.conn();
        match conn.sqlite() {
            Some(c) => c
                .query_row("PRAGMA data_version", [], |r| r.get(0))
                .map_err(|e| self.sql("read data_version")(e.into())),
            None => {
                drop(conn);
                self.newest_revision()
            }
        }
    }

    /// The newest revision this process has committed or read from the change log.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::SeqCst)
    }

    /// Creates the list if it does not exist; returns whether it was created.
    pub fn ensure_list(&self, name: &str, description: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO lists (name, description, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO NOTHING",
                params![name, description, now()],
            )
            .map_err(self.sql("create list"))?;
        Ok(n == 1)
    }

    pub fn lists(&self) -> Result<Vec<ListInfo>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT l.name, l.description, l.created_at,
                        (SELECT COUNT(*) FROM members m
                         WHERE m.list_id = l.id AND m.expired_at IS NULL),
                        (SELECT COUNT(*) FROM members m
                         WHERE m.list_id = l.id AND m.expired_at IS NOT NULL),
                        h.due, h.active, h.held_at
                 FROM lists l LEFT JOIN expiry_holds h ON h.list = l.name ORDER BY l.name",
            )
            .map_err(self.sql("list lists"))?;
        let rows = stmt
            .query_map(params![], |r| {
                let name: String = r.get(0)?;
                let hold = match (r.get(5)?, r.get(6)?, r.get(7)?) {
                    (Some(due), Some(active), Some(held_at)) => Some(ExpiryHold {
                        list: name.clone(),
                        due,
                        active,
                        held_at,
                    }),
                    _ => None,
                };
                Ok(ListInfo {
                    name,
                    description: r.get(1)?,
                    created_at: r.get(2)?,
                    members: r.get(3)?,
                    expired: r.get(4)?,
                    expiry_hold: hold,
                })
            })
            .map_err(self.sql("list lists"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("list lists"))
    }

    /// Whether a list named `name` exists (cheap: no members counted).
    pub fn list_exists(&self, name: &str) -> Result<bool, StoreError> {
        Store::list_id(&self.conn(), name)
            .map(|id| id.is_some())
            .map_err(self.sql("read lists"))
    }

    fn list_id(conn: &Conn, name: &str) -> Result<Option<i64>, db::DbError> {
        conn.query_row("SELECT id FROM lists WHERE name = ?1", [name], |r| r.get(0))
            .optional()
    }

    /// Whether an expiry sweep at `now` has anything to do: an active member past its expiry,
    /// an expired one whose expiry is in the future again, one past `purge_before`, or a key
    /// past its expiry not yet marked (a read, no lock taken).
    pub fn expiry_work(&self, now: i64, purge_before: i64) -> Result<bool, StoreError> {
        self.conn()
            .query_row(EXPIRY_WORK, [now, purge_before], |r| r.get(0))
            .map_err(self.sql("look for expiry work"))
    }

    /// Lists with active members past their expiry at `now`: how many are active and due.
    pub fn expiry_due(&self, now: i64) -> Result<Vec<ExpiryDue>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT l.name,
                        (SELECT COUNT(*) FROM members a
                         WHERE a.list_id = d.list_id AND a.expired_at IS NULL),
                        d.due
                 FROM (SELECT list_id, COUNT(*) AS due FROM members
                       WHERE expired_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ?1
                       GROUP BY list_id) d
                 JOIN lists l ON l.id = d.list_id
                 ORDER BY l.name",
            )
            .map_err(self.sql("look for expired members"))?;
        let rows = stmt
            .query_map([now], |r| {
                Ok(ExpiryDue {
                    list: r.get(0)?,
                    active: r.get(1)?,
                    due: r.get(2)?,
                })
            })
            .map_err(self.sql("look for expired members"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("look for expired members"))
    }

    /// Deactivates the active members of `list` past their expiry at `now` (they stay, marked
    /// expired at `now`); returns them.
    pub fn deactivate_due(&self, list: &str, now: i64) -> Result<Vec<MemberRef>, StoreError> {
        let conn = self.conn();
        let id = Store::list_id(&conn, list)
            .map_err(self.sql("deactivate expired members"))?
            .ok_or_else(|| StoreError::NoSuchList(list.to_string()))?;
        let rows = conn
            .query(
                "UPDATE members SET expired_at = ?2
                 WHERE list_id = ?1 AND expired_at IS NULL
                   AND expires_at IS NOT NULL AND expires_at <= ?2
                 RETURNING (SELECT name FROM lists WHERE id = list_id),
                           (SELECT canonical FROM accounts WHERE key = account_key), account_key",
                params![id, now],
            )
            .map_err(self.sql("deactivate expired members"))?;
        member_refs(&rows).map_err(self.sql("deactivate expired members"))
    }

    /// Re-activates expired members whose expiry is after `now` — deactivated by a clock that
    /// ran ahead, which has come back; returns them.
    pub fn reactivate_unexpired(&self, now: i64) -> Result<Vec<MemberRef>, StoreError> {
        let rows = self
            .conn()
            .query(
                "UPDATE members SET expired_at = NULL
                 WHERE expired_at IS NOT NULL AND expires_at > ?1
                 RETURNING (SELECT name FROM lists WHERE id = list_id),
                           (SELECT canonical FROM accounts WHERE key = account_key), account_key",
                [now],
            )
            .map_err(self.sql("re-activate members"))?;
        member_refs(&rows).map_err(self.sql("re-activate members"))
    }

    /// Deletes members deactivated at or before `before`, releasing their memberships (by
    /// `system`, "expired"): they stay in the account's history. Returns them.
    pub fn purge_expired(&self, before: i64) -> Result<Vec<MemberRef>, StoreError> {
        let conn = self.conn();
        let tx = Atomic::begin(&conn).map_err(self.sql("purge expired members"))?;
        let rows = tx
            .query(
                "DELETE FROM members WHERE expired_at IS NOT NULL AND expired_at <= ?1
                 RETURNING (SELECT name FROM lists WHERE id = list_id),
                           (SELECT canonical FROM accounts WHERE key = account_key), account_key,
                           list_id, expired_at",
                [before],
            )
            .map_err(self.sql("purge expired members"))?;
        for r in &rows {
            let release = || -> Result<(), db::DbError> {
                let (list_id, key, expired_at): (i64, String, i64) =
                    (r.get(3)?, r.get(2)?, r.get(4)?);
                tx.execute(
                    "UPDATE memberships SET released_at = ?3, released_by = 'system',
                       release_reason = ?4
                     WHERE list_id = ?1 AND account_key = ?2 AND released_at IS NULL",
                    params![
                        list_id,
                        key,
                        now(),
                        format!(
                            "expired at {}; purged after the retention period",
                            crate::base::time::format_rfc3339(expired_at)
                        )
                    ],
                )?;
                Ok(())
            };
            release().map_err(self.sql("purge expired members"))?;
        }
        let out = member_refs(&rows).map_err(self.sql("purge expired members"))?;
        tx.commit().map_err(self.sql("purge expired members"))?;
        Ok(out)
    }

    /// Holds the expiry sweep of `list`; returns whether the hold is new or its counts changed
    /// (so that a hold is logged and counted once, not every sweep).
    pub fn hold_expiry(&self, hold: &ExpiryHold) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO expiry_holds (list, due, active, held_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(list) DO UPDATE SET due = excluded.due, active = excluded.active
                 WHERE expiry_holds.due != excluded.due OR expiry_holds.active != excluded.active",
                params![hold.list, hold.due, hold.active, hold.held_at],
            )
            .map_err(self.sql("hold expiry"))?;
        Ok(n > 0)
    }

    /// Drops the holds of lists not in `keep` (nothing is due there any more); returns them.
    pub fn drop_expiry_holds_except(&self, keep: &[String]) -> Result<Vec<String>, StoreError> {
        let holds = self.expiry_holds()?;
        let mut dropped = Vec::new();
        for hold in holds.into_iter().filter(|h| !keep.contains(&h.list)) {
            self.release_expiry_hold(&hold.list)?;
            dropped.push(hold.list);
        }
        Ok(dropped)
    }

    /// Drops the expiry hold of `list`; returns whether there was one.
    pub fn release_expiry_hold(&self, list: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM expiry_holds WHERE list = ?1", [list])
            .map_err(self.sql("release expiry hold"))?;
        Ok(n > 0)
    }

    /// Every held expiry sweep, by list name.
    pub fn expiry_holds(&self) -> Result<Vec<ExpiryHold>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT list, due, active, held_at FROM expiry_holds ORDER BY list")
            .map_err(self.sql("read expiry holds"))?;
        let rows = stmt
            .query_map(params![], |r| {
                Ok(ExpiryHold {
                    list: r.get(0)?,
                    due: r.get(1)?,
                    active: r.get(2)?,
                    held_at: r.get(3)?,
                })
            })
            .map_err(self.sql("read expiry holds"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("read expiry holds"))
    }
}

impl Store {
    /// Records a push or pull run and prunes the directory's oldest records (the table's
    /// `device` column is the directory, named before the rename).
    pub fn record_update(&self, u: &RecentUpdate) -> Result<(), StoreError> {
        let unresolved = serde_json::to_string(&u.unresolved).unwrap_or_else(|_| "[]".to_string());
        let conn = self.conn();
        let tx = Atomic::begin(&conn).map_err(self.sql("record update"))?;
        tx.execute(
            "INSERT INTO recent_updates
               (device, kind, target, started_at_ms, duration_ms, added, removed, unresolved, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                u.directory,
                u.kind,
                u.target,
                u.started_at_ms,
                u.duration_ms,
                u.added,
                u.removed,
                unresolved,
                u.error
            ],
        )
        .map_err(self.sql("record update"))?;
        tx.execute(
            "DELETE FROM recent_updates WHERE device = ?1 AND id NOT IN
               (SELECT id FROM recent_updates WHERE device = ?1 ORDER BY id DESC LIMIT ?2)",
            params![u.directory, RECENT_UPDATES_KEPT],
        )
        .map_err(self.sql("record update"))?;
        tx.commit().map_err(self.sql("record update"))
    }

    /// The directory's most recent runs, newest first.
    pub fn recent_updates(
        &self,
        directory: &str,
        limit: i64,
    ) -> Result<Vec<RecentUpdate>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT device, kind, target, started_at_ms, duration_ms, added, removed, unresolved, error
                 FROM recent_updates WHERE device = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(self.sql("read recent updates"))?;
        let rows = stmt
            .query_map(params![directory, limit], |r| {
                let unresolved: String = r.get(7)?;
                Ok(RecentUpdate {
                    directory: r.get(0)?,
                    kind: r.get(1)?,
                    target: r.get(2)?,
                    started_at_ms: r.get(3)?,
                    duration_ms: r.get(4)?,
                    added: r.get(5)?,
                    removed: r.get(6)?,
                    unresolved: serde_json::from_str(&unresolved).unwrap_or_default(),
                    error: r.get(8)?,
                })
            })
            .map_err(self.sql("read recent updates"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("read recent updates"))
    }

    /// Persists a data set's rows as its new last-good generation; returns the generation.
    pub fn save_rows(&self, name: &str, rows: usize, records: &str) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "INSERT INTO data_set_rows (name, generation, rows, records, updated_at)
             VALUES (?1, 1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET generation = data_set_rows.generation + 1, rows = excluded.rows,
               records = excluded.records, updated_at = excluded.updated_at
             RETURNING generation",
            params![name, rows as i64, records, now()],
            |r| r.get(0),
        )
        .map_err(self.sql("save data set rows"))
    }

    /// The generation of a data set's persisted rows, if any (cheap: no rows read).
    pub fn rows_generation(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT generation FROM data_set_rows WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("read data set generation"))
    }

    /// A data set's persisted rows, if any.
    pub fn load_rows(&self, name: &str) -> Result<Option<StoredRows>, StoreError> {
        self.conn()
            .query_row(
                "SELECT generation, rows, records, updated_at FROM data_set_rows WHERE name = ?1",
                [name],
                |r| {
                    Ok(StoredRows {
                        generation: r.get(0)?,
                        rows: r.get(1)?,
                        records: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(self.sql("load data set rows"))
    }

    /// Holds a refresh for an admin to accept (replacing an earlier held one).
    pub fn hold_refresh(&self, held: &HeldRefresh) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO held_refreshes (name, records, current_rows, new_rows, reason, held_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(name) DO UPDATE SET records = excluded.records,
                   current_rows = excluded.current_rows, new_rows = excluded.new_rows,
                   reason = excluded.reason, held_at = excluded.held_at",
                params![
                    held.name,
                    held.records,
                    held.current_rows,
                    held.new_rows,
                    held.reason,
                    held.held_at
                ],
            )
            .map_err(self.sql("hold refresh"))?;
        Ok(())
    }

    /// The held refresh of a data set, if any.
    pub fn held_refresh(&self, name: &str) -> Result<Option<HeldRefresh>, StoreError> {
        self.conn()
            .query_row(
                "SELECT name, records, current_rows, new_rows, reason, held_at
                 FROM held_refreshes WHERE name = ?1",
                [name],
                |r| {
                    let records: String = r.get(1)?;
                    Ok(HeldRefresh {
                        name: r.get(0)?,
                        id: hold_id(&records),
                        records,
                        current_rows: r.get(2)?,
                        new_rows: r.get(3)?,
                        reason: r.get(4)?,
                        held_at: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(self.sql("read held refresh"))
    }

    /// Drops a held refresh (a later refresh that passes the guard supersedes it).
    pub fn drop_held(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM held_refreshes WHERE name = ?1", [name])
            .map_err(self.sql("drop held refresh"))?;
        Ok(n > 0)
    }

    /// Accepts a held refresh: its rows become the last good generation, atomically.
    /// Accepts the held refresh of `name` if its id is `id` (see [`HeldRefresh::id`]), in one
    /// transaction: `Ok(Err(current))` names the hold that is there instead (none: `None`).
    pub fn accept_held_id(
        &self,
        name: &str,
        id: &str,
    ) -> Result<Result<i64, Option<String>>, StoreError> {
        let conn = self.conn();
        let tx = Atomic::begin(&conn).map_err(self.sql("accept held refresh"))?;
        let current = self.held_refresh(name)?.map(|h| h.id);
        if current.as_deref() != Some(id) {
            return Ok(Err(current));
        }
        let generation = self.accept_held(name)?;
        tx.commit().map_err(self.sql("accept held refresh"))?;
        Ok(generation.ok_or(None))
    }

    pub fn accept_held(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        let tx = Atomic::begin(&conn).map_err(self.sql("accept held refresh"))?;
        let held: Option<(String, i64)> = tx
            .query_row(
                "SELECT records, new_rows FROM held_refreshes WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql("accept held refresh"))?;
        let Some((records, rows)) = held else {
            return Ok(None);
        };
        let generation: i64 = tx
            .query_row(
                "INSERT INTO data_set_rows (name, generation, rows, records, updated_at)
                 VALUES (?1, 1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET generation = data_set_rows.generation + 1, rows = excluded.rows,
                   records = excluded.records, updated_at = excluded.updated_at
                 RETURNING generation",
                params![name, rows, records, now()],
                |r| r.get(0),
            )
            .map_err(self.sql("accept held refresh"))?;
        tx.execute("DELETE FROM held_refreshes WHERE name = ?1", [name])
            .map_err(self.sql("accept held refresh"))?;
        tx.commit().map_err(self.sql("accept held refresh"))?;
        Ok(Some(generation))
    }

    /// When a mapping first synced, if it has.
    pub fn mapping_first_synced(
        &self,
        list: &str,
        group_dn: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT first_synced_at FROM mapping_state WHERE list = ?1 AND group_dn = ?2",
                params![list, group_dn],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("read mapping state"))
    }

    /// Marks a mapping as synced at least once.
    pub fn mark_mapping_synced(&self, list: &str, group_dn: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO mapping_state (list, group_dn, first_synced_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![list, group_dn, now()],
            )
            .map_err(self.sql("write mapping state"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn member(p: &str) -> NewMember {
        NewMember {
            reason: "incident 7".into(),
            ..NewMember::test(p)
        }
    }

    /// One member per account, whatever the spelling; every spelling adds a membership and
    /// releases it; the history survives a reopen.
    #[test]
    fn one_member_per_account_with_its_memberships_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/warden.db");
        {
            let s = Store::open(&path).unwrap();
            assert!(s.ensure_list("Suspicious Users", "").unwrap());
            assert!(!s.ensure_list("Suspicious Users", "").unwrap());
            let (added, first) = s
                .add_member("Suspicious Users", &member("corp\\alice"))
                .unwrap();
            assert_eq!(added, Added::New);
            let (added, again) = s
                .add_member(
                    "Suspicious Users",
                    &NewMember {
                        incident: Some("INC-2".into()),
                        expires_at: Some(4_000_000_000),
                        ..member("alice@CORP.example.test")
                    },
                )
                .unwrap();
            assert_eq!(added, Added::Again);
            assert_eq!(first.key, again.key);
            assert_eq!(again.names, ["CORP\\alice", "alice@CORP.example.test"]);
        }
        let s = Store::open(&path).unwrap();
        let m = s.members("Suspicious Users").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].principal, "CORP\\alice");
        assert_eq!(m[0].memberships.len(), 2);
        // One membership never expires: neither does the member.
        assert_eq!(m[0].expires_at, None);
        assert_eq!(m[0].incidents, ["INC-2"]);
        assert_eq!(s.lists().unwrap()[0].members, 1);
        let named = s
            .members_named("Suspicious Users", &["ALICE@corp.example.test".into()], &[])
            .unwrap();
        assert_eq!(named, [m[0].account.clone()]);
        let released = s
            .release_member("Suspicious Users", &m[0].account, "analyst", "cleared")
            .unwrap()
            .unwrap();
        assert_eq!(released.memberships, 2);
        assert!(s.members("Suspicious Users").unwrap().is_empty());
        assert!(
            s.release_member("Suspicious Users", &m[0].account, "analyst", "again")
                .unwrap()
                .is_none()
        );
        let history = s.memberships_of(&[m[0].account.clone()]).unwrap();
        assert_eq!(history.len(), 2);
        assert!(
            history
                .iter()
                .all(|h| h.released_by.as_deref() == Some("analyst")
                    && h.release_reason.as_deref() == Some("cleared"))
        );
    }

    #[test]
    fn errors_are_clear() {
        let s = Store::in_memory().unwrap();
        assert!(matches!(
            s.add_member("nope", &member("x")),
            Err(StoreError::NoSuchList(_))
        ));
    }

    #[test]
    fn newer_schema_is_refused_and_garbage_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("PRAGMA user_version = 999").unwrap();
        }
        // Made 0644 by the umask: allowed, since the mode is not what this test is about.
        assert!(matches!(
            Store::open_with(&path, true),
            Err(StoreError::TooNew { found: 999, .. })
        ));
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
        let err = Store::open_with(&junk, true).err().unwrap();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_new_store_is_private_and_a_readable_one_is_refused_unless_allowed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.db");
        {
            let s = Store::open(&path).unwrap();
            s.ensure_list("l", "").unwrap();
            for name in ["warden.db", "warden.db-wal", "warden.db-shm"] {
                assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Store::open(&path).err().unwrap();
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::Readable { mode: 0o644, .. }),
            "{text}"
        );
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(
            text.contains("chmod 600") && text.contains("allow_readable"),
            "{text}"
        );
        let s = Store::open_with(&path, true).unwrap();
        assert_eq!(s.lists().unwrap().len(), 1);
        assert_eq!(mode(&path), 0o644, "allowed means left as it is");
    }

    /// The question the sweep asks every second searches indexes only: expired members kept
    /// for the retention period (100 000 of them, say) must not be scanned each time.
    #[test]
    fn the_sweep_question_scans_no_table_of_members() {
        let s = Store::in_memory().unwrap();
        let conn = s.conn();
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {EXPIRY_WORK}"))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map([0i64, 0i64], |r| r.get::<String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let members: Vec<&String> = plan.iter().filter(|l| l.contains("members")).collect();
        assert_eq!(members.len(), 3, "{plan:#?}");
        // Active members past their expiry; expired ones whose expiry is ahead again; expired
        // ones past the retention — each through the partial index that holds only them
        // (members_expiry or members_expired alone would walk every kept expired member).
        for index in [
            "INDEX members_due ",
            "INDEX members_expired_expiry ",
            "INDEX members_expired ",
        ] {
            assert!(
                members
                    .iter()
                    .any(|l| l.starts_with("SEARCH") && l.contains(index)),
                "{index} unused: {plan:#?}"
            );
        }
    }

    #[test]
    fn data_version_sees_other_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let a = Store::open(&path).unwrap();
        let b = Store::open(&path).unwrap();
        a.ensure_list("l", "").unwrap();
        let before = a.data_version().unwrap();
        b.add_member("l", &member("corp\\x")).unwrap();
        assert_ne!(a.data_version().unwrap(), before);
    }
}
