//! The running warden: ties one validated [`Config`], the [`Store`] and the [`Engine`]
//! together. It owns the current data set of every source and rebuilds the snapshot when one
//! changes — a list change reaches decisions by rebuilding that list's data sets and swapping.
//!
//! Sources map to data sets as follows: `list` reads members from the store (expired members
//! excluded), `static` reads a records file once at start, and `ldap` and `api` start from the
//! rows last committed to the store — so a restart during a directory outage still blocks —
//! or empty if none were.
//!
//! Other processes (the CLI) write to the same store; [`Warden::reload_from_store`] picks up
//! their commits. List changes are broadcast on a watch channel for the push service.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::auth::KeyRing;
use crate::config::{Config, DataSetConfig, MemberField, Source};
use crate::dataset::{Cell, DataSet, DataSetBuilder, DataSetError, RecordsError, parse_records};
use crate::engine::{CompileError, Engine, IndexCache, Published, Snapshot};
use crate::metrics::Metrics;
use crate::store::{Added, Member, NewMember, Store, StoreError, now};
use crate::time::format_rfc3339;

/// Errors running warden.
#[derive(Debug, thiserror::Error)]
pub enum WardenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("data set {name:?}: {source}")]
    DataSet {
        name: String,
        #[source]
        source: DataSetError,
    },
    #[error("data set {name:?}: cannot read {path}: {source}")]
    StaticRead {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data set {name:?}: {path}: {source}")]
    StaticRecords {
        name: String,
        path: PathBuf,
        #[source]
        source: RecordsError,
    },
    #[error("no data set named {0:?}")]
    NoSuchDataSet(String),
    #[error("data set {name:?}: persisted rows in the store are unreadable: {source}")]
    Persisted {
        name: String,
        #[source]
        source: RecordsError,
    },
}

struct State {
    data_sets: HashMap<String, Arc<DataSet>>,
    /// Generation of the persisted rows each `ldap`/`api` data set was built from.
    generations: HashMap<String, i64>,
    cache: IndexCache,
}

/// Config + store + engine, and the current data set of every source; the API keys and the
/// process's counters.
pub struct Warden {
    config: Config,
    store: Arc<Store>,
    engine: Arc<Engine>,
    keys: KeyRing,
    metrics: Metrics,
    state: Mutex<State>,
    list_changes: tokio::sync::watch::Sender<u64>,
}

impl Warden {
    /// Opens the configured store and builds the first snapshot.
    pub fn open(config: Config) -> Result<Warden, WardenError> {
        let store = Arc::new(Store::open(&config.store.path)?);
        Warden::with_store(config, store)
    }

    /// Builds the first snapshot over an already opened store.
    pub fn with_store(config: Config, store: Arc<Store>) -> Result<Warden, WardenError> {
        for list in &config.lists {
            store.ensure_list(&list.name, &list.description)?;
        }
        let mut data_sets = HashMap::new();
        let mut generations = HashMap::new();
        for ds in &config.data_sets {
            let initial = match &ds.source {
                Source::List { .. } => list_data_set(&store, ds)?,
                Source::Static { path } => static_data_set(ds, path)?,
                Source::Ldap(_) | Source::Api => {
                    let (set, generation) = persisted_data_set(&store, ds)?;
                    if let Some(g) = generation {
                        generations.insert(ds.name.clone(), g);
                    }
                    set
                }
            };
            data_sets.insert(ds.name.clone(), Arc::new(initial));
        }
        let keys = KeyRing::load(&store)?;
        let warden = Warden {
            config,
            store,
            engine: Arc::new(Engine::new()),
            keys,
            metrics: Metrics::default(),
            state: Mutex::new(State {
                data_sets,
                generations,
                cache: IndexCache::default(),
            }),
            list_changes: tokio::sync::watch::Sender::new(0),
        };
        warden.republish()?;
        Ok(warden)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A receiver that changes whenever a list may have changed.
    pub fn subscribe_lists(&self) -> tokio::sync::watch::Receiver<u64> {
        self.list_changes.subscribe()
    }

    fn lists_changed(&self) {
        self.list_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The data set currently in use for `name`.
    pub fn data_set(&self, name: &str) -> Option<Arc<DataSet>> {
        self.state().data_sets.get(name).cloned()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Compiles the current data sets with the policies and publishes if anything changed.
    fn republish(&self) -> Result<Published, WardenError> {
        let mut state = self.state();
        let State {
            data_sets, cache, ..
        } = &mut *state;
        let ordered = self
            .config
            .data_sets
            .iter()
            .filter_map(|d| data_sets.get(&d.name).cloned())
            .collect();
        let snapshot = Snapshot::build(&self.config.policies, ordered, cache)?;
        Ok(self.engine.publish(snapshot))
    }

    /// Commits new rows for an `ldap` or `api` data set: persisted as the last good generation
    /// first, then swapped into the snapshot.
    pub fn commit_data_set(&self, data_set: DataSet) -> Result<Published, WardenError> {
        let name = data_set.name().to_string();
        if self.config.data_set(&name).is_none() {
            return Err(WardenError::NoSuchDataSet(name));
        }
        let mut json = Vec::new();
        data_set.write_records_json(&mut json);
        let records = String::from_utf8_lossy(&json);
        let generation = self.store.save_rows(&name, data_set.len(), &records)?;
        {
            let mut state = self.state();
            state.generations.insert(name.clone(), generation);
            state.data_sets.insert(name, Arc::new(data_set));
        }
        self.republish()
    }

    /// Re-reads what other processes may have changed in the store — list members, persisted
    /// data set rows and API keys — and republishes if anything differs.
    pub fn reload_from_store(&self) -> Result<Published, WardenError> {
        self.keys.reload(&self.store)?;
        for ds in &self.config.data_sets {
            match ds.source {
                Source::List { .. } => {
                    let fresh = list_data_set(&self.store, ds)?;
                    self.state()
                        .data_sets
                        .insert(ds.name.clone(), Arc::new(fresh));
                }
                Source::Ldap(_) | Source::Api => self.reload_persisted(ds)?,
                Source::Static { .. } => {}
            }
        }
        self.lists_changed();
        self.republish()
    }

    /// Reloads a data set's persisted rows if their generation moved.
    fn reload_persisted(&self, ds: &DataSetConfig) -> Result<(), WardenError> {
        let stored = self.store.rows_generation(&ds.name)?;
        let current = self.state().generations.get(&ds.name).copied();
        if stored.is_none() || stored == current {
            return Ok(());
        }
        let (fresh, generation) = persisted_data_set(&self.store, ds)?;
        let mut state = self.state();
        if let Some(g) = generation {
            state.generations.insert(ds.name.clone(), g);
        }
        state.data_sets.insert(ds.name.clone(), Arc::new(fresh));
        Ok(())
    }

    /// Adds a member to a list; the change is durable, then in the snapshot, before this returns.
    pub fn add_member(&self, list: &str, member: &NewMember) -> Result<Added, WardenError> {
        let added = self.store.add_member(list, member)?;
        self.reload_from_store()?;
        Ok(added)
    }

    /// Removes a member from a list; returns whether it was there.
    pub fn remove_member(&self, list: &str, principal: &str) -> Result<bool, WardenError> {
        let removed = self.store.remove_member(list, principal)?;
        if removed {
            self.reload_from_store()?;
        }
        Ok(removed)
    }
}

fn member_cell(member: &Member, field: MemberField) -> Cell {
    let text = match field {
        MemberField::Principal => Some(member.principal.clone()),
        MemberField::Reason => Some(member.reason.clone()).filter(|r| !r.is_empty()),
        MemberField::Incident => member.incident.clone(),
        MemberField::AddedBy => Some(member.added_by.clone()),
        MemberField::AddedAt => Some(format_rfc3339(member.added_at)),
        MemberField::ExpiresAt => member.expires_at.map(format_rfc3339),
    };
    text.map_or(Cell::Empty, |t| Cell::One(t.into_boxed_str()))
}

/// Builds a `list`-sourced data set from the store; members past their expiry are left out.
fn list_data_set(store: &Store, ds: &DataSetConfig) -> Result<DataSet, WardenError> {
    let Source::List { list, fields } = &ds.source else {
        return Ok(DataSet::empty(&ds.name, ds.schema.clone()));
    };
    let members = store.members(list)?;
    let now = now();
    let mut builder = DataSetBuilder::new(&ds.name, ds.schema.clone()).with_capacity(members.len());
    for m in members
        .iter()
        .filter(|m| m.expires_at.is_none_or(|t| t > now))
    {
        let row = fields.iter().map(|f| member_cell(m, *f)).collect();
        match builder.push(row) {
            // A case-sensitive data set over a list keyed case-insensitively cannot collide;
            // a case-insensitive one cannot either. Any other error is a real problem.
            Ok(()) | Err(DataSetError::DuplicateKey(_)) => {}
            Err(source) => {
                return Err(WardenError::DataSet {
                    name: ds.name.clone(),
                    source,
                });
            }
        }
    }
    Ok(builder.build())
}

/// Builds an `ldap`/`api` data set from its persisted rows, if any.
fn persisted_data_set(
    store: &Store,
    ds: &DataSetConfig,
) -> Result<(DataSet, Option<i64>), WardenError> {
    let Some(stored) = store.load_rows(&ds.name)? else {
        return Ok((DataSet::empty(&ds.name, ds.schema.clone()), None));
    };
    let records =
        parse_records(stored.records.as_bytes()).map_err(|source| WardenError::Persisted {
            name: ds.name.clone(),
            source,
        })?;
    let set = DataSet::from_records(&ds.name, ds.schema.clone(), records).map_err(|source| {
        WardenError::DataSet {
            name: ds.name.clone(),
            source,
        }
    })?;
    Ok((set, Some(stored.generation)))
}

fn static_data_set(ds: &DataSetConfig, path: &PathBuf) -> Result<DataSet, WardenError> {
    let bytes = std::fs::read(path).map_err(|source| WardenError::StaticRead {
        name: ds.name.clone(),
        path: path.clone(),
        source,
    })?;
    let records = parse_records(&bytes).map_err(|source| WardenError::StaticRecords {
        name: ds.name.clone(),
        path: path.clone(),
        source,
    })?;
    DataSet::from_records(&ds.name, ds.schema.clone(), records).map_err(|source| {
        WardenError::DataSet {
            name: ds.name.clone(),
            source,
        }
    })
}
