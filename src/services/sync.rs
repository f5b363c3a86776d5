//! The sync services: one push loop per mapping, one pull loop per `ldap` data set, and the
//! change-notification watches that wake the pull loops (for a nested data set, one per group
//! of its chain, five per connection, re-registered when the chain changes).
//!
//! Each loop `select!`s over shutdown, its schedule and its triggers. A push runs on every list
//! change (debounced) and on the directory's update interval; after a push that changed the group,
//! the pull loops of data sets on the same directory are woken at once rather than waiting for
//! the notification. A failed run is retried with exponential backoff; the schedule goes on.
//! The supervisor ([`super::Supervisor`]) makes them again after a configuration reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Ready, Service, Shutdown};
use crate::base::retry::Retry;
use crate::config::{DataSetConfig, MappingConfig, Source};
use crate::directory::Directory;
use crate::directory::{self, WatchEvent};
use crate::runtime::Warden;
use crate::sync::SyncMetrics;
use crate::sync::pull::watched_dn;
use crate::sync::{nested, push, refresh};

/// List changes arriving within this window are pushed in one run.
pub const PUSH_DEBOUNCE: Duration = Duration::from_millis(50);

/// What wakes a loop that reconciles a list into a target (an AD group, a database role): its
/// schedule, a list change (debounced), a due retry, and the target's own change signal where
/// it has one.
pub(super) struct Triggers {
    warden: Arc<Warden>,
    lists: tokio::sync::watch::Receiver<u64>,
    tick: tokio::time::Interval,
}

impl Triggers {
    pub(super) fn new(warden: &Arc<Warden>, every: Duration) -> Triggers {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Triggers {
            warden: Arc::clone(warden),
            lists: warden.subscribe_lists(),
            tick,
        }
    }

    /// Waits for the next reason to run; `false` when the loop is to stop — shut down, or
    /// its leader term ended (a replica woken after losing the lease changes no target).
    pub(super) async fn next(
        &mut self,
        shutdown: &mut Shutdown,
        retry: &Retry,
        changed: Option<&Notify>,
    ) -> bool {
        let target_changed = async {
            match changed {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        let run = tokio::select! {
            () = shutdown.requested() => false,
            _ = self.tick.tick() => true,
            changed = self.lists.changed() => {
                if changed.is_err() {
                    return false;
                }
                tokio::time::sleep(PUSH_DEBOUNCE).await;
                self.lists.borrow_and_update();
                true
            }
            () = retry.due() => true,
            () = target_changed => true,
        };
        run && !super::term_ended(&self.warden)
    }
}
/// How often a data set without notifications polls its group's `uSNChanged`.
pub const USN_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The push, pull and watch services of the configuration in force: pull loops first, so
/// that push loops can wake those on their directory after changing a group.
pub fn services(warden: &Arc<Warden>) -> Vec<Service> {
    let config = warden.config().clone();
    let directories = warden.directories();
    let mut services = Vec::new();
    let mut pulls_by_directory: HashMap<String, Vec<Arc<Notify>>> = HashMap::new();
    for ds in &config.data_sets {
        let Source::Ldap(source) = &ds.source else {
            continue;
        };
        let Some(directory) = directories.get(&source.directory) else {
            continue;
        };
        let wake = Arc::new(Notify::new());
        // A union's queries each read their own directory: a push there, or a change to the
        // group a query selects on, wakes the pull too. Nesting is followed for the data
        // set's own query (config refuses `nested` on a union).
        let queries = std::iter::once((directory, &source.filter)).chain(
            source
                .union
                .iter()
                .filter_map(|q| Some((directories.get(&q.directory)?, &q.filter))),
        );
        for (i, (queried, filter)) in queries.enumerate() {
            pulls_by_directory
                .entry(queried.name().to_owned())
                .or_default()
                .push(Arc::clone(&wake));
            if source.notify
                && let Some(dn) = watched_dn(filter)
            {
                let target = WatchTarget {
                    top: dn.clone(),
                    nested: (i == 0 && source.nested.is_some()).then(|| ds.name.clone()),
                    connections: source.watch_connections,
                };
                let (warden, queried, wake) =
                    (Arc::clone(warden), Arc::clone(queried), Arc::clone(&wake));
                services.push(Service::new(
                    format!("watch {dn}"),
                    move |shutdown, ready| {
                        watch_loop(warden, queried, target, wake, shutdown, ready)
                    },
                ));
            }
        }
        let (warden, directory, ds) = (Arc::clone(warden), Arc::clone(directory), ds.clone());
        services.push(Service::new(
            format!("pull {}", ds.name),
            move |shutdown, ready| pull_loop(warden, directory, ds, wake, shutdown, ready),
        ));
    }
    for mapping in &config.mappings {
        let Some(directory) = directories.get(&mapping.directory) else {
            continue;
        };
        let pulls = pulls_by_directory
            .get(&mapping.directory)
            .cloned()
            .unwrap_or_default();
        // Drift repair: the mapped group itself is watched, and a change someone else made
        // wakes the push at once (a listed member removed by hand is put back).
        let drift = Arc::new(Notify::new());
        {
            let target = WatchTarget {
                top: mapping.group_dn.clone(),
                nested: None,
                connections: 1,
            };
            let (warden, directory, wake) = (
                Arc::clone(warden),
                Arc::clone(directory),
                Arc::clone(&drift),
            );
            services.push(Service::new(
                format!("watch group {}", mapping.group_dn),
                move |shutdown, ready| watch_loop(warden, directory, target, wake, shutdown, ready),
            ));
        }
        let (warden, directory, mapping) =
            (Arc::clone(warden), Arc::clone(directory), mapping.clone());
        services.push(Service::new(
            format!("push {} -> {}", mapping.list, mapping.group_dn),
            move |shutdown, ready| {
                push_loop(warden, directory, mapping, pulls, drift, shutdown, ready)
            },
        ));
    }
    services
}

async fn push_loop(
    warden: Arc<Warden>,
    directory: Arc<Directory>,
    mapping: MappingConfig,
    pulls: Vec<Arc<Notify>>,
    group_changed: Arc<Notify>,
    mut shutdown: Shutdown,
    ready: Ready,
) {
    let mut triggers = Triggers::new(&warden, directory.config().update_interval);
    let mut retry = Retry::new();
    while triggers
        .next(&mut shutdown, &retry, Some(&group_changed))
        .await
    {
        let (update, result) =
            push::run(&directory, warden.store(), warden.events(), &mapping).await;
        match result {
            Ok(report) => {
                retry.succeeded();
                ready.set();
                if !report.drift.is_empty() {
                    warden
                        .metrics()
                        .get::<SyncMetrics>()
                        .drift_repaired(&mapping.group_dn, report.drift.len());
                }
                if report.names_changed
                    && let Err(e) = warden.accounts_changed()
                {
                    tracing::error!(error = %e, "cannot index the names of listed accounts");
                }
                if report.added + report.removed > 0 {
                    tracing::info!(group = %mapping.group_dn, added = report.added, removed = report.removed, "group updated");
                    for p in &pulls {
                        p.notify_one();
                    }
                }
            }
            Err(e) => {
                warden
                    .metrics()
                    .get::<SyncMetrics>()
                    .sync_failed(directory.name());
                let retry_in = retry.failed();
                tracing::warn!(group = %mapping.group_dn, error = %e, ?retry_in, "push failed");
            }
        }
        drop(update);
    }
}

async fn pull_loop(
    warden: Arc<Warden>,
    directory: Arc<Directory>,
    ds: DataSetConfig,
    wake: Arc<Notify>,
    mut shutdown: Shutdown,
    ready: Ready,
) {
    let Source::Ldap(source) = &ds.source else {
        return;
    };
    let mut tick = tokio::time::interval(source.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = Retry::new();
    loop {
        tokio::select! {
            () = shutdown.requested() => return,
            _ = tick.tick() => {}
            _ = wake.notified() => {}
            () = retry.due() => {}
        }
        let (_, result) = refresh::changes(&warden, &directory, &ds).await;
        match result {
            Ok(outcome) => {
                retry.succeeded();
                ready.set();
                tracing::debug!(data_set = %ds.name, ?outcome, "refreshed");
            }
            Err(e) => {
                let retry_in = retry.failed();
                tracing::warn!(data_set = %ds.name, error = %e, ?retry_in, "refresh failed; keeping the last good rows");
            }
        }
    }
}

/// What a watch follows: a group and, for a nested data set (named), every group in its
/// chain, on at most `connections` notification connections of five groups each.
struct WatchTarget {
    top: String,
    nested: Option<String>,
    connections: usize,
}

impl WatchTarget {
    /// The groups to watch now: the top group, or its chain (the top group alone while the
    /// chain cannot be read: the next event or poll tries again).
    async fn groups(&self, warden: &Warden, directory: &Directory) -> Vec<String> {
        let Some(name) = &self.nested else {
            return vec![self.top.clone()];
        };
        let chain = match directory.client().await {
            Ok(c) => {
                nested::chain(
                    directory,
                    &c,
                    &warden.metrics().get::<SyncMetrics>(),
                    name,
                    &self.top,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match chain {
            Ok(chain) => chain.groups,
            Err(e) => {
                tracing::warn!(data_set = %name, error = %e, "cannot read the chain of nested groups; watching the top group");
                directory.reset().await;
                vec![self.top.clone()]
            }
        }
    }
}

/// The groups' keys, to tell a changed chain.
fn keys(groups: &[String]) -> Vec<String> {
    let mut k: Vec<String> = groups.iter().map(|g| g.to_ascii_lowercase()).collect();
    k.sort_unstable();
    k
}

/// Wakes a pull loop when a watched group changes: AD change notification where the
/// directory supports it (five groups per connection, up to the target's connections), a
/// `uSNChanged` poll for the groups beyond and where it does not. A nested target reads its
/// chain again on every change and re-registers when a sub-group joined or left it.
async fn watch_loop(
    warden: Arc<Warden>,
    directory: Arc<Directory>,
    target: WatchTarget,
    wake: Arc<Notify>,
    mut shutdown: Shutdown,
    ready: Ready,
) {
    let settings = match directory.settings() {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(directory = directory.name(), error = %e, "cannot watch for changes");
            return;
        }
    };
    let dn = target.top.clone();
    let mut notify_unsupported = false;
    let mut groups = target.groups(&warden, &directory).await;
    loop {
        let room = if notify_unsupported {
            0
        } else {
            target.connections * directory::MAX_NOTIFICATIONS_PER_CONNECTION
        };
        let notified: Vec<String> = groups.iter().take(room).cloned().collect();
        let mut polled: Vec<(String, Option<u64>)> = groups
            .iter()
            .skip(room)
            .map(|g| (g.clone(), None))
            .collect();
        let mut watch = None;
        if !notified.is_empty() {
            match directory::watch_with(Arc::clone(&settings), notified.clone(), Default::default())
            {
                Ok(w) => watch = Some(w),
                Err(e) => {
                    tracing::warn!(%dn, error = %e, "change notification unavailable; polling uSNChanged");
                    notify_unsupported = true;
                    continue;
                }
            }
        }
        if !polled.is_empty() {
            tracing::info!(%dn, groups = polled.len(), "polling uSNChanged of the groups beyond the notification connections");
        }
        let connections = notified
            .len()
            .div_ceil(directory::MAX_NOTIFICATIONS_PER_CONNECTION);
        let mut registered = 0usize;
        let mut tick = tokio::time::interval(USN_POLL_INTERVAL);
        // Runs until the chain changes (Some) or notification ends (None).
        let changed_chain = loop {
            let event = async {
                match watch.as_mut() {
                    Some(w) => w.recv().await,
                    None => std::future::pending().await,
                }
            };
            let mut changed = false;
            tokio::select! {
                () = shutdown.requested() => return,
                event = event => match event {
                    Some(WatchEvent::Changed { .. } | WatchEvent::Reconnected { .. }) => changed = true,
                    Some(WatchEvent::Registered { .. }) => {
                        // A change that landed while the watches were being registered (after
                        // the last pull, before the server took the notification request) is
                        // announced by nothing, and the heartbeat's baseline is taken after
                        // it: catch up with one pull on every registration, as on a reconnect.
                        changed = true;
                        registered += 1;
                        if registered == connections {
                            ready.set();
                            tracing::info!(%dn, groups = notified.len(), connections, "watching for changes");
                        }
                    }
                    Some(WatchEvent::Disconnected { reason, .. }) => tracing::warn!(%dn, %reason, "change notification disconnected; re-registering"),
                    Some(WatchEvent::Unsupported { reason, .. }) => {
                        tracing::warn!(%dn, %reason, "change notification unsupported; polling uSNChanged");
                        break None;
                    }
                    None => break None,
                },
                _ = tick.tick(), if !polled.is_empty() => {
                    changed = poll_usns(&directory, &mut polled).await;
                    if watch.is_none() {
                        ready.set();
                    }
                }
            }
            if !changed {
                continue;
            }
            wake.notify_one();
            if target.nested.is_some() {
                let now = target.groups(&warden, &directory).await;
                if keys(&now) != keys(&groups) {
                    break Some(now);
                }
            }
        };
        match changed_chain {
            Some(now) => {
                tracing::info!(%dn, before = groups.len(), after = now.len(), "the chain of nested groups changed; re-registering the watches");
                groups = now;
            }
            None => notify_unsupported = true,
        }
    }
}

/// Reads each polled group's `uSNChanged`; true if one moved since the last read.
async fn poll_usns(directory: &Directory, polled: &mut [(String, Option<u64>)]) -> bool {
    let client = match directory.client().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "uSNChanged poll: no connection");
            return false;
        }
    };
    let mut moved = false;
    for (dn, last) in polled.iter_mut() {
        match client.poll_usn_changed(dn).await {
            Ok(u) => {
                moved |= last.is_some_and(|l| l != u);
                *last = Some(u);
            }
            Err(e) => {
                tracing::debug!(%dn, error = %e, "uSNChanged poll failed");
                if e.is_transient() {
                    directory.reset().await;
                    return moved;
                }
            }
        }
    }
    moved
}
