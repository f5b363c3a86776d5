//! The running warden: ties one validated [`Config`], the [`Store`] and the [`Engine`]
//! together. It owns the current data set of every source and rebuilds the snapshot when one
//! changes — a list change reaches decisions by rebuilding that list's data sets and swapping.
//!
//! Sources map to data sets as follows: `list` reads members from the store (expired members
//! excluded), `static` reads a records file once at start, `api` starts empty until written
//! through the data endpoints, and `ldap` starts empty until its first refresh.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{Config, DataSetConfig, MemberField, Source};
use crate::dataset::{Cell, DataSet, DataSetBuilder, DataSetError, RecordsError, parse_records};
use crate::engine::{CompileError, Engine, IndexCache, Published, Snapshot};
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
}

struct State {
    data_sets: HashMap<String, Arc<DataSet>>,
    cache: IndexCache,
}

/// Config + store + engine, and the current data set of every source.
pub struct Warden {
    config: Config,
    store: Arc<Store>,
    engine: Arc<Engine>,
    state: Mutex<State>,
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
        for ds in &config.data_sets {
            let initial = match &ds.source {
                Source::List { .. } => list_data_set(&store, ds)?,
                Source::Static { path } => static_data_set(ds, path)?,
                Source::Ldap(_) | Source::Api => DataSet::empty(&ds.name, ds.schema.clone()),
            };
            data_sets.insert(ds.name.clone(), Arc::new(initial));
        }
        let warden = Warden {
            config,
            store,
            engine: Arc::new(Engine::new()),
            state: Mutex::new(State {
                data_sets,
                cache: IndexCache::default(),
            }),
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

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Compiles the current data sets with the policies and publishes if anything changed.
    fn republish(&self) -> Result<Published, WardenError> {
        let mut state = self.state();
        let State { data_sets, cache } = &mut *state;
        let ordered = self
            .config
            .data_sets
            .iter()
            .filter_map(|d| data_sets.get(&d.name).cloned())
            .collect();
        let snapshot = Snapshot::build(&self.config.policies, ordered, cache)?;
        Ok(self.engine.publish(snapshot))
    }

    /// Replaces one data set (a refresh of an `ldap` or `api` source) and republishes.
    pub fn replace_data_set(&self, data_set: DataSet) -> Result<Published, WardenError> {
        let name = data_set.name().to_string();
        if self.config.data_set(&name).is_none() {
            return Err(WardenError::NoSuchDataSet(name));
        }
        self.state().data_sets.insert(name, Arc::new(data_set));
        self.republish()
    }

    /// Re-reads every `list`-sourced data set from the store and republishes if any changed.
    pub fn reload_lists(&self) -> Result<Published, WardenError> {
        for ds in &self.config.data_sets {
            if let Source::List { .. } = ds.source {
                let fresh = list_data_set(&self.store, ds)?;
                self.state()
                    .data_sets
                    .insert(ds.name.clone(), Arc::new(fresh));
            }
        }
        self.republish()
    }

    /// Adds a member to a list; the change is durable, then in the snapshot, before this returns.
    pub fn add_member(&self, list: &str, member: &NewMember) -> Result<Added, WardenError> {
        let added = self.store.add_member(list, member)?;
        self.reload_lists()?;
        Ok(added)
    }

    /// Removes a member from a list; returns whether it was there.
    pub fn remove_member(&self, list: &str, principal: &str) -> Result<bool, WardenError> {
        let removed = self.store.remove_member(list, principal)?;
        if removed {
            self.reload_lists()?;
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
    let mut builder = DataSetBuilder::new(&ds.name, ds.schema.clone()).with_capacity(records.len());
    for record in records {
        builder
            .push_record(record)
            .map_err(|source| WardenError::DataSet {
                name: ds.name.clone(),
                source,
            })?;
    }
    Ok(builder.build())
}
