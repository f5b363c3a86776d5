//! The running warden: ties one validated [`Config`], the [`Store`] and the [`Engine`]
//! together. It owns the current data set of every source and rebuilds the snapshot when one
//! changes — a list change reaches decisions by rebuilding that list's data sets and swapping.
//!
//! Sources map to data sets as follows: `list` reads members from the store (expired members
//! excluded), `static` reads a records file once at start, and `ldap` and `api` start from the
//! rows last committed to the store — so a restart during a directory outage still blocks —
//! or, if none were, as *unknown* ([`DataSet::unknown`]): never loaded, which is not empty.
//! A pull that applies rows or a write through the data endpoints loads it (a held refresh
//! does not); an `api` set configured with `never_written = "empty"` starts empty instead.
//!
//! Other processes (the CLI) write to the same store; [`Warden::reload_from_store`] picks up
//! their commits. List changes are broadcast on a watch channel for the push service.
//!
//! The configuration itself can be replaced while running ([`Warden::reload`]): the new one is
//! validated and compiled with fresh data sets into a snapshot first, and only if all of that
//! succeeds are the config, the data sets, the directory connections and the
//! snapshot swapped — a bad config changes nothing. Sync loops watch [`Warden::subscribe_config`]
//! and restart on the new configuration.

mod metrics;

pub use metrics::{DecisionMetrics, RefusalMetrics};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use crate::auth::KeyRing;
use crate::auth::denials::Denials;
use crate::base::account::Account;
use crate::base::time::format_rfc3339;
use crate::config::{Config, ConfigErrors, ConfigSource, DataSetConfig, MemberField, Source};
use crate::decide::Dispatcher;
use crate::decide::{CompileError, Decision, Engine, IndexCache, Published, Request, Snapshot};
use crate::directory::Directory;
use crate::events::{Decisions, EventMetrics, Events, LogStats};
use crate::metrics::Registry;
use crate::model::dataset::{
    Cell, DataSet, DataSetBuilder, DataSetError, RecordsError, parse_records,
};
use crate::store::{AuditRecord, AuditRecords, Member, Store, StoreError};

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

/// Why a configuration reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Started without a way to read the configuration again (a library caller's `Config`).
    #[error("this warden was started from a configuration value, not a file; nothing to reload")]
    NoSource,
    /// The new configuration is invalid, or changes what only a restart can.
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
    /// Valid, but its data sets or policies cannot be built (a static file, persisted rows).
    #[error("the new configuration cannot be applied: {0}")]
    Apply(#[from] WardenError),
}

/// What a successful reload applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reloaded {
    /// Where the configuration was read from.
    pub origin: String,
    /// Counts the configuration now holds.
    pub data_sets: usize,
    pub policies: usize,
    pub directories: usize,
    /// The snapshot published with it.
    pub snapshot_version: u64,
}

struct State {
    data_sets: HashMap<String, Arc<DataSet>>,
    /// Generation of the persisted rows each `ldap`/`api` data set was built from.
    generations: HashMap<String, i64>,
    cache: IndexCache,
}

/// Config + store + engine, and the current data set of every source; the directory
/// connections, the API keys and the process's counters.
pub struct Warden {
    /// Read lock-free by everyone; replaced (under `update`) by [`Warden::reload`].
    config: ArcSwap<Config>,
    source: Option<ConfigSource>,
    directories: ArcSwap<HashMap<String, Arc<Directory>>>,
    /// Serialises the writers of config + data sets (store reloads, commits, config reloads) so
    /// that a snapshot is always built from one config and the data sets made for it.
    update: Mutex<()>,
    config_changes: tokio::sync::watch::Sender<u64>,
    /// The version of the last snapshot published, for those that act on every change.
    snapshots: tokio::sync::watch::Sender<u64>,
    store: Arc<Store>,
    engine: Arc<Engine>,
    keys: KeyRing,
    metrics: Registry,
    /// This warden's entries of `metrics`, held for the paths that record on every call.
    decisions: Arc<DecisionMetrics>,
    refusals: Arc<RefusalMetrics>,
    actions: Dispatcher,
    denials: Denials,
    /// SIEM sinks (inert until the events service starts them).
    events: Events,
    /// Which decisions are recorded (the decision log, sinks that take decisions).
    decision_log: Decisions,
    state: Mutex<State>,
    list_changes: tokio::sync::watch::Sender<u64>,
    /// The store revision the state in `state` was last loaded at (see
    /// [`Warden::reload_from_store`]); every snapshot is published as of it.
    loaded: std::sync::atomic::AtomicI64,
}

impl Warden {
    /// Opens the configured store and builds the first snapshot.
    pub fn open(config: Config) -> Result<Warden, WardenError> {
        let store = Arc::new(Store::open_config(&config.store)?);
        Warden::with_store(config, store)
    }

    /// Builds the first snapshot over an already opened store.
    pub fn with_store(config: Config, store: Arc<Store>) -> Result<Warden, WardenError> {
        for list in &config.lists {
            store.ensure_list(&list.name, &list.description)?;
        }
        // Members of a store written before members were accounts: settled by these rules
        // (two spellings of one account become one member), or kept as text, never dropped.
        let identity = Arc::clone(&config.identity);
        let settled = store.settle_pending(|text| Account::by_rules_or_text(&identity, text))?;
        if settled > 0 {
            tracing::info!(
                accounts = settled,
                "members carried over from an older store are now accounts"
            );
        }
        let revision = store.revision();
        let (data_sets, generations) =
            build_data_sets(&store, &config, (&HashMap::new(), &HashMap::new()))?;
        let keys = KeyRing::load(&store)?;
        let directories = directories_for(&config, &HashMap::new());
        let actions = Dispatcher::with_capacity(config.server.followed_action_queue);
        let metrics = Registry::default();
        let decisions = metrics.get::<DecisionMetrics>();
        let refusals = metrics.get::<RefusalMetrics>();
        // A sink with a new queue reports the audit log from here on.
        let audit_origin = if config.events.sinks.is_empty() {
            0
        } else {
            store.newest_audit_id()?
        };
        let events = Events::new(&config.events, audit_origin, &metrics.get::<EventMetrics>());
        let decision_log = Decisions::new(
            config.decision_log.enabled || events.takes_decisions(),
            config.decision_log.allow_sample,
            metrics.get::<LogStats>(),
        );
        let warden = Warden {
            config: ArcSwap::from_pointee(config),
            source: None,
            directories: ArcSwap::from_pointee(directories),
            update: Mutex::new(()),
            config_changes: tokio::sync::watch::Sender::new(0),
            snapshots: tokio::sync::watch::Sender::new(0),
            store,
            engine: Arc::new(Engine::new()),
            keys,
            metrics,
            decisions,
            refusals,
            actions,
            denials: Denials::default(),
            events,
            decision_log,
            state: Mutex::new(State {
                data_sets,
                generations,
                cache: IndexCache::default(),
            }),
            list_changes: tokio::sync::watch::Sender::new(0),
            loaded: std::sync::atomic::AtomicI64::new(revision),
        };
        warden.republish()?;
        Ok(warden)
    }

    /// Remembers where the configuration came from, so that [`Warden::reload`] can read it again.
    pub fn reloadable_from(mut self, source: ConfigSource) -> Warden {
        self.source = Some(source);
        self
    }

    /// Where the configuration came from (`-` for a library caller's value).
    pub fn config_origin(&self) -> String {
        self.source
            .as_ref()
            .map(ConfigSource::origin)
            .unwrap_or_default()
    }

    /// The configuration in force now. Hold it briefly: a reload publishes a new one.
    pub fn config(&self) -> Guard<Arc<Config>> {
        self.config.load()
    }

    /// The directory servers of the configuration in force, by name.
    pub fn directories(&self) -> Arc<HashMap<String, Arc<Directory>>> {
        self.directories.load_full()
    }

    /// A receiver that changes whenever a new snapshot is published.
    pub fn subscribe_snapshots(&self) -> tokio::sync::watch::Receiver<u64> {
        self.snapshots.subscribe()
    }

    fn published(&self, published: Published) -> Published {
        if let Published::Swapped(version) = published {
            self.snapshots.send_replace(version);
        }
        published
    }

    /// A receiver that changes whenever a reload applied a new configuration.
    pub fn subscribe_config(&self) -> tokio::sync::watch::Receiver<u64> {
        self.config_changes.subscribe()
    }

    /// Reads the configuration again from where it came from and applies it atomically: either
    /// the new config, data sets, directories and snapshot are all in force, or nothing changed.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoSource)?;
        let next = source.load()?;
        let _update = self.lock_update();
        let running = self.config.load_full();
        let restart = running.needs_restart(&next);
        if !restart.is_empty() {
            return Err(ConfigErrors {
                origin: source.origin(),
                errors: restart,
            }
            .into());
        }
        let current = {
            let state = self.state();
            (state.data_sets.clone(), state.generations.clone())
        };
        let (data_sets, generations) =
            build_data_sets(&self.store, &next, (&current.0, &current.1))?;
        let snapshot = {
            let mut state = self.state();
            Snapshot::build_with(
                &next.policies,
                ordered(&next, &data_sets),
                &mut state.cache,
                &next.identity,
            )
            .map_err(WardenError::from)?
            .with_generations(&generations)
        };
        // Everything is built: from here on nothing can fail but the list rows, which are
        // idempotent and harmless to a config that is then not applied.
        for list in &next.lists {
            self.store
                .ensure_list(&list.name, &list.description)
                .map_err(WardenError::from)?;
        }
        let directories = directories_for(&next, &self.directories.load());
        let reloaded = Reloaded {
            origin: source.origin(),
            data_sets: next.data_sets.len(),
            policies: next.policies.len(),
            directories: next.directories.len(),
            snapshot_version: 0,
        };
        {
            let mut state = self.state();
            state.data_sets = data_sets;
            state.generations = generations;
        }
        self.config.store(Arc::new(next));
        self.directories.store(Arc::new(directories));
        let published = self.published(self.engine.publish(snapshot));
        self.config_changes.send_modify(|n| *n = n.wrapping_add(1));
        self.lists_changed();
        let (Published::Swapped(version) | Published::Unchanged(version)) = published;
        Ok(Reloaded {
            snapshot_version: version,
            ..reloaded
        })
    }

    fn lock_update(&self) -> std::sync::MutexGuard<'_, ()> {
        self.update.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Every subsystem's metrics, each registered by type.
    pub fn metrics(&self) -> &Registry {
        &self.metrics
    }

    /// What decisions record: outcomes, matched policies, latency, followed-action events.
    pub fn decision_metrics(&self) -> &DecisionMetrics {
        &self.decisions
    }

    /// Requests refused by authentication or scope.
    pub fn refusal_metrics(&self) -> &RefusalMetrics {
        &self.refusals
    }

    /// The `/metrics` exposition: every registered family, then the gauges of the snapshot
    /// and the store as they are now.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(|out| metrics::state_gauges(self, out))
    }

    /// Refused requests waiting to be audited in aggregate.
    pub fn denials(&self) -> &Denials {
        &self.denials
    }

    /// Audits the pending refusals now (blocking I/O): one record per key, with its count.
    pub fn flush_denials(&self) -> Result<crate::auth::denials::Flushed, StoreError> {
        let flushed = self.denials.flush(&self.store)?;
        self.refusals.audit_records(flushed.records);
        Ok(flushed)
    }

    /// The followed-action queue.
    pub fn actions(&self) -> &Dispatcher {
        &self.actions
    }

    /// Where SIEM events go: every layer above emits through this.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Which decisions are recorded, and the decision log's writer.
    pub fn decisions(&self) -> &Decisions {
        &self.decision_log
    }

    /// Decides `request` against `snapshot` and records the decision (see
    /// [`Warden::record_decision`]). Every front end that answers a decision decides here, so
    /// counters and followed actions never depend on which one asked.
    pub fn decide(&self, snapshot: &Snapshot, request: &Request<'_>) -> Decision {
        let started = std::time::Instant::now();
        let decision = snapshot.decide(request);
        self.record_decision(snapshot, request, &decision, started.elapsed());
        decision
    }

    /// The side effects of a decision taken from `snapshot` in `took`: the outcome and the
    /// matched policies counted, followed actions offered, and the decision recorded (every
    /// block and error, allows as sampled) for the decision log and the SIEM sinks — none of
    /// it waiting (a full queue drops and counts). For batches decided with
    /// [`Snapshot::decide_batch`], once per decision.
    pub fn record_decision(
        &self,
        snapshot: &Snapshot,
        request: &Request<'_>,
        decision: &Decision,
        took: std::time::Duration,
    ) {
        if !decision.matched.is_empty() {
            let config = self.config.load();
            let offered = self
                .actions
                .offer(&config.action_sets, snapshot, request, decision);
            for _ in 0..offered.dropped {
                self.decisions.followed_action_dropped();
            }
            for _ in 0..offered.evicted {
                self.decisions.followed_dedup_evicted();
            }
        }
        if let Some(record) = self.decision_log.record(snapshot, request, decision) {
            self.events.decision(&record);
        }
        self.decisions.decision(
            decision.outcome,
            took,
            decision
                .matched
                .iter()
                .filter_map(|m| snapshot.policy(m).map(|p| (p.name.as_str(), m.action))),
        );
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
    /// Callers hold the update lock, so config and data sets belong together.
    fn republish(&self) -> Result<Published, WardenError> {
        let config = self.config.load();
        let mut state = self.state();
        let State {
            data_sets,
            cache,
            generations,
        } = &mut *state;
        let snapshot = Snapshot::build_with(
            &config.policies,
            ordered(&config, data_sets),
            cache,
            &config.identity,
        )?
        .with_generations(generations);
        let revision = self.loaded.load(std::sync::atomic::Ordering::SeqCst);
        Ok(self.published(self.engine.publish_at(snapshot, revision)))
    }

    /// Commits new rows for an `ldap` or `api` data set: persisted as the last good generation
    /// first, then swapped into the snapshot. Rows equal to the generation this process last
    /// committed, while the store still holds it, are not written again.
    pub fn commit_data_set(&self, data_set: DataSet) -> Result<Published, WardenError> {
        let name = data_set.name().to_string();
        let _update = self.lock_update();
        if self.config.load().data_set(&name).is_none() {
            return Err(WardenError::NoSuchDataSet(name));
        }
        if self.is_committed(&data_set)? {
            // A refresh that found nothing new: rewriting the same rows would only make every
            // replica read them again.
            return self.republish();
        }
        let generation = save_rows(&self.store, &data_set)?;
        {
            let mut state = self.state();
            state.generations.insert(name.clone(), generation);
            state.data_sets.insert(name, Arc::new(data_set));
        }
        self.republish()
    }

    /// Whether `data_set` holds exactly the rows this process last committed under its name
    /// and the store still holds that generation (no other replica wrote since).
    fn is_committed(&self, data_set: &DataSet) -> Result<bool, WardenError> {
        let name = data_set.name();
        let (current, ours) = {
            let state = self.state();
            (
                state.data_sets.get(name).cloned(),
                state.generations.get(name).copied(),
            )
        };
        let same = current.is_some_and(|c| c.as_ref() == data_set);
        if !same || ours.is_none() {
            return Ok(false);
        }
        Ok(self.store.rows_generation(name)? == ours)
    }

    /// Rebuilds the list data sets after a push learned other names for listed accounts
    /// (their alias keys), without announcing a list change (nothing for a push to do).
    pub fn accounts_changed(&self) -> Result<Published, WardenError> {
        let _update = self.lock_update();
        let config = self.config.load_full();
        for ds in &config.data_sets {
            if let Source::List { .. } = ds.source {
                let fresh = list_data_set(&self.store, ds)?;
                self.state()
                    .data_sets
                    .insert(ds.name.clone(), Arc::new(fresh));
            }
        }
        self.republish()
    }

    /// Re-reads what other processes may have changed in the store — list members, persisted
    /// data set rows and API keys — and republishes if anything differs.
    pub fn reload_from_store(&self) -> Result<Published, WardenError> {
        let _update = self.lock_update();
        // Read before the state: the snapshot has at least this revision's content.
        let revision = self.store.revision();
        self.keys.reload(&self.store)?;
        let config = self.config.load_full();
        for ds in &config.data_sets {
            match ds.source {
                Source::List { .. } => {
                    let fresh = list_data_set(&self.store, ds)?;
                    self.state()
                        .data_sets
                        .insert(ds.name.clone(), Arc::new(fresh));
                }
                Source::Ldap(_) | Source::Api { .. } => self.reload_persisted(ds)?,
                Source::Static { .. } => {}
            }
        }
        self.lists_changed();
        self.loaded
            .fetch_max(revision, std::sync::atomic::Ordering::SeqCst);
        self.republish()
    }

    /// Waits until the published snapshot is at least at store revision `min` (a
    /// read-your-writes check), at most `timeout`; returns the revision reached, `Err` with
    /// the current one if `min` was not reached.
    pub async fn wait_for_revision(&self, min: i64, timeout: Duration) -> Result<i64, i64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.engine.load().revision();
            if current >= min {
                return Ok(current);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(current);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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

    /// Commits a change to what snapshots are built from (list members, responses, accepted
    /// rows) with its audit records in one store transaction ([`Store::audited`]); the change
    /// is durable, then in the snapshot, before this returns.
    pub fn commit<T, A: AuditRecords>(
        &self,
        change: impl FnOnce(&Store) -> Result<T, StoreError>,
        audit: impl FnOnce(&T) -> A,
    ) -> Result<T, WardenError> {
        let value = self.store.audited(change, audit)?;
        self.reload_from_store()?;
        Ok(value)
    }

    /// Replaces an `api` data set with what `next` makes of the current one, under the update
    /// lock and inside the store transaction (one writer at a time, over every replica of a
    /// shared store), so that concurrent writers each see the other's result (none is lost):
    /// if the store holds newer rows than this process has (another replica wrote them), they
    /// are what `next` is given. The rows and the audit record commit together, then swap into
    /// the snapshot.
    pub fn update_data_set<E>(
        &self,
        name: &str,
        next: impl FnOnce(&DataSet) -> Result<DataSet, E>,
        audit: impl FnOnce(&DataSet) -> AuditRecord,
    ) -> Result<Arc<DataSet>, E>
    where
        E: From<StoreError> + From<WardenError>,
    {
        let _update = self.lock_update();
        let (data_set, generation) = self.store.audited(
            |store| {
                let current = self.current_rows(store, name)?;
                let data_set = next(&current)?;
                let generation = save_rows(store, &data_set)?;
                Ok::<_, E>((data_set, generation))
            },
            |(data_set, _)| audit(data_set),
        )?;
        let data_set = Arc::new(data_set);
        {
            let mut state = self.state();
            state.generations.insert(name.to_owned(), generation);
            state
                .data_sets
                .insert(name.to_owned(), Arc::clone(&data_set));
        }
        self.republish()?;
        Ok(data_set)
    }

    /// The data set `name` as last committed: this process's, unless the store holds a newer
    /// generation of its rows.
    fn current_rows(&self, store: &Store, name: &str) -> Result<Arc<DataSet>, WardenError> {
        let current = self
            .data_set(name)
            .ok_or_else(|| WardenError::NoSuchDataSet(name.to_owned()))?;
        let stored = store.rows_generation(name)?;
        let ours = self.state().generations.get(name).copied();
        if stored.is_none() || stored == ours {
            return Ok(current);
        }
        let config = self.config.load_full();
        let ds = config
            .data_set(name)
            .ok_or_else(|| WardenError::NoSuchDataSet(name.to_owned()))?;
        Ok(Arc::new(persisted_data_set(store, ds)?.0))
    }
}

/// Persists a data set's rows as its last good generation.
fn save_rows(store: &Store, data_set: &DataSet) -> Result<i64, StoreError> {
    let mut json = Vec::new();
    data_set.write_records_json(&mut json);
    store.save_rows(
        data_set.name(),
        data_set.len(),
        &String::from_utf8_lossy(&json),
    )
}

/// The data sets in the order the config declares them.
fn ordered(config: &Config, data_sets: &HashMap<String, Arc<DataSet>>) -> Vec<Arc<DataSet>> {
    config
        .data_sets
        .iter()
        .filter_map(|d| data_sets.get(&d.name).cloned())
        .collect()
}

type Generations = HashMap<String, i64>;

/// Builds every data set `config` declares: lists from the store, static files read afresh,
/// `ldap`/`api` sets kept from `current` when their schema is unchanged, else from the rows
/// last committed to the store.
fn build_data_sets(
    store: &Store,
    config: &Config,
    current: (&HashMap<String, Arc<DataSet>>, &Generations),
) -> Result<(HashMap<String, Arc<DataSet>>, Generations), WardenError> {
    let mut data_sets = HashMap::new();
    let mut generations = HashMap::new();
    for ds in &config.data_sets {
        let set = match &ds.source {
            Source::List { .. } => Arc::new(list_data_set(store, ds)?),
            Source::Static { path } => Arc::new(static_data_set(ds, path)?),
            Source::Ldap(_) | Source::Api { .. } => {
                let kept = current.0.get(&ds.name).filter(|d| *d.schema() == ds.schema);
                let (set, generation) = match kept {
                    Some(set) => (Arc::clone(set), current.1.get(&ds.name).copied()),
                    None => {
                        let (set, generation) = persisted_data_set(store, ds)?;
                        (Arc::new(set), generation)
                    }
                };
                if let Some(g) = generation {
                    generations.insert(ds.name.clone(), g);
                }
                set
            }
        };
        data_sets.insert(ds.name.clone(), set);
    }
    Ok((data_sets, generations))
}

/// One [`Directory`] per configured directory; an unchanged one keeps its connection and
/// principal cache.
fn directories_for(
    config: &Config,
    running: &HashMap<String, Arc<Directory>>,
) -> HashMap<String, Arc<Directory>> {
    let served: Vec<(&str, Option<String>)> = config
        .directories
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                Directory::domain_served(d, &config.identity),
            )
        })
        .collect();
    config
        .directories
        .iter()
        .map(|d| {
            let others: Vec<String> = served
                .iter()
                .filter(|(name, _)| *name != d.name)
                .filter_map(|(_, domain)| domain.clone())
                .collect();
            let fresh =
                Directory::new(d.clone(), Arc::clone(&config.identity)).with_other_domains(others);
            let directory = running
                .get(&d.name)
                .filter(|dir| {
                    dir.config() == d
                        && **dir.identity() == *config.identity
                        && dir.other_domains() == fresh.other_domains()
                })
                .map_or_else(|| Arc::new(fresh), Arc::clone);
            (d.name.clone(), directory)
        })
        .collect()
}

fn member_cell(member: &Member, field: MemberField) -> Cell {
    let text = match field {
        MemberField::Principal => Some(member.principal.clone()),
        MemberField::Reason => Some(member.reason.clone()).filter(|r| !r.is_empty()),
        // Every incident whose membership holds the member: re-adding by another incident
        // keeps both.
        MemberField::Incident => return Cell::from_values(member.incidents.clone()),
        MemberField::AddedBy => Some(member.added_by.clone()),
        MemberField::AddedAt => Some(format_rfc3339(member.added_at)),
        MemberField::ExpiresAt => member.expires_at.map(format_rfc3339),
    };
    text.map_or(Cell::Empty, |t| Cell::One(t.into_boxed_str()))
}

/// The rows one member puts in a `list` data set: one under its canonical name and, when
/// the key column is the principal, one under each other name its account is known by (a
/// UPN, a name the directory gave it), so that every name finds it — in the data set's
/// rows, the decision index and the MX alike. A member's rows depend on the member alone.
pub fn member_rows(member: &Member, fields: &[MemberField], key: usize) -> Vec<Vec<Cell>> {
    let row: Vec<Cell> = fields.iter().map(|f| member_cell(member, *f)).collect();
    let mut rows = vec![row.clone()];
    if fields.get(key) == Some(&MemberField::Principal) {
        for name in member.names.iter().filter(|n| **n != member.principal) {
            let mut alias = row.clone();
            alias[key] = Cell::One(name.as_str().into());
            rows.push(alias);
        }
    }
    rows
}

/// Builds a `list`-sourced data set from the store's active members: expired ones (deactivated
/// by the expiry sweep) are left out; one past its expiry stays until the sweep deactivates
/// it, so a sweep held for a clock jump or too large a share keeps it in.
fn list_data_set(store: &Store, ds: &DataSetConfig) -> Result<DataSet, WardenError> {
    let Source::List { list, fields } = &ds.source else {
        return Ok(DataSet::empty(&ds.name, ds.schema.clone()));
    };
    // A list the config just introduced has no row in the store yet, so no members.
    let members = match store.active_members(list) {
        Err(StoreError::NoSuchList(_)) => Vec::new(),
        other => other?,
    };
    let key = ds.schema.key_index();
    let mut builder = DataSetBuilder::new(&ds.name, ds.schema.clone()).with_capacity(members.len());
    for m in &members {
        for row in member_rows(m, fields, key) {
            match builder.push(row) {
                // Two names of one account, or of two accounts, that fold alike: one row is
                // enough (both block the same key).
                Ok(()) | Err(DataSetError::DuplicateKey(_)) => {}
                Err(source) => {
                    return Err(WardenError::DataSet {
                        name: ds.name.clone(),
                        source,
                    });
                }
            }
        }
    }
    Ok(builder.build())
}

/// Builds an `ldap`/`api` data set from its persisted rows; with none, the set has never
/// loaded and is unknown (or empty, for an `api` set that says an unwritten set is).
fn persisted_data_set(
    store: &Store,
    ds: &DataSetConfig,
) -> Result<(DataSet, Option<i64>), WardenError> {
    let Some(stored) = store.load_rows(&ds.name)? else {
        let set = match ds.source {
            Source::Api {
                unwritten_is_empty: true,
            } => DataSet::empty(&ds.name, ds.schema.clone()),
            _ => DataSet::unknown(&ds.name, ds.schema.clone()),
        };
        return Ok((set, None));
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
