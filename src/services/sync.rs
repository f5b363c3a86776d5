//! The sync services: one push loop per mapping, one pull loop per `ldap` data set, and the
//! change-notification watches that wake the pull loops.
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
use crate::sync::pull::watched_dn;
use crate::sync::{pull, push};

/// List changes arriving within this window are pushed in one run.
pub const PUSH_DEBOUNCE: Duration = Duration::from_millis(50);

/// What wakes a loop that reconciles a list into a target (an AD group, a database role): its
/// schedule, a list change (debounced), a due retry, and the target's own change signal where
/// it has one.
pub(super) struct Triggers {
    lists: tokio::sync::watch::Receiver<u64>,
    tick: tokio::time::Interval,
}

impl Triggers {
    pub(super) fn new(warden: &Warden, every: Duration) -> Triggers {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Triggers {
            lists: warden.subscribe_lists(),
            tick,
        }
    }

    /// Waits for the next reason to run; `false` when the loop is to stop.
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
        tokio::select! {
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
        }
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
        // group a query selects on, wakes the pull too.
        let queries = std::iter::once((directory, &source.filter)).chain(
            source
                .union
                .iter()
                .filter_map(|q| Some((directories.get(&q.directory)?, &q.filter))),
        );
        for (queried, filter) in queries {
            pulls_by_directory
                .entry(queried.name().to_owned())
                .or_default()
                .push(Arc::clone(&wake));
            if source.notify
                && let Some(dn) = watched_dn(filter)
            {
                let (queried, wake) = (Arc::clone(queried), Arc::clone(&wake));
                services.push(Service::new(
                    format!("watch {dn}"),
                    move |shutdown, ready| watch_loop(queried, dn, wake, shutdown, ready),
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
            let (directory, dn, wake) = (
                Arc::clone(directory),
                mapping.group_dn.clone(),
                Arc::clone(&drift),
            );
            services.push(Service::new(
                format!("watch group {dn}"),
                move |shutdown, ready| watch_loop(directory, dn, wake, shutdown, ready),
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
        let (update, result) = push::run(&directory, warden.store(), &mapping).await;
        match result {
            Ok(report) => {
                retry.succeeded();
                ready.set();
                if !report.drift.is_empty() {
                    warden
                        .metrics()
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
                warden.metrics().sync_failed(directory.name());
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
        let (_, result) = pull::refresh(&warden, &directory, &ds).await;
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

/// Wakes a pull loop when the watched group changes: AD change notification where the
/// directory supports it, a `uSNChanged` poll where it does not.
async fn watch_loop(
    directory: Arc<Directory>,
    dn: String,
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
    let mut w = match directory::watch(Arc::clone(&settings), &dn) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(%dn, error = %e, "change notification unavailable; polling uSNChanged");
            return poll_usn(directory, dn, wake, shutdown, ready).await;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.requested() => return,
            event = w.recv() => match event {
                Some(WatchEvent::Changed { .. }) | Some(WatchEvent::Reconnected { .. }) => wake.notify_one(),
                Some(WatchEvent::Registered { .. }) => {
                    ready.set();
                    tracing::info!(%dn, "watching for changes");
                }
                Some(WatchEvent::Disconnected { reason, .. }) => tracing::warn!(%dn, %reason, "change notification disconnected; re-registering"),
                Some(WatchEvent::Unsupported { reason, .. }) => {
                    tracing::warn!(%dn, %reason, "change notification unsupported; polling uSNChanged");
                    return poll_usn(directory, dn, wake, shutdown, ready).await;
                }
                None => return,
            }
        }
    }
}

async fn poll_usn(
    directory: Arc<Directory>,
    dn: String,
    wake: Arc<Notify>,
    mut shutdown: Shutdown,
    ready: Ready,
) {
    let mut last = None;
    let mut tick = tokio::time::interval(USN_POLL_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.requested() => return,
            _ = tick.tick() => {}
        }
        let usn = match directory.client().await {
            Ok(c) => c.poll_usn_changed(&dn).await,
            Err(e) => Err(e),
        };
        match usn {
            Ok(u) if last.is_some_and(|l| l != u) => {
                last = Some(u);
                wake.notify_one();
            }
            Ok(u) => {
                ready.set();
                last = Some(u);
            }
            Err(e) => {
                tracing::debug!(%dn, error = %e, "uSNChanged poll failed");
                directory.reset().await;
            }
        }
    }
}
