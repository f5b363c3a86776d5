//! Background sync for `serve`: one push loop per mapping, one pull loop per `ldap` data set,
//! change-notification watches that wake the pull loops, and the Imperva MX push loop.
//!
//! Each loop `select!`s over shutdown, its schedule and its triggers. A push runs on every list
//! change (debounced) and on the device's update interval; after a push that changed the group,
//! the pull loops of data sets on the same directory are woken at once rather than waiting for
//! the notification. A failed run is retried with exponential backoff; the schedule goes on.
//!
//! [`run`] owns the loops' lifetime: after a configuration reload it stops them (each finishes
//! its current run) and starts them again on the new configuration and devices.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::base::retry::Retry;
use crate::config::{DataSetConfig, MappingConfig, Source};
use crate::directory::Directory;
use crate::directory::{self, WatchEvent};
use crate::runtime::Warden;
use crate::sync::pull::watched_dn;
use crate::sync::{pull, push};

/// List changes arriving within this window are pushed in one run.
pub const PUSH_DEBOUNCE: Duration = Duration::from_millis(50);
/// How often a data set without notifications polls its group's `uSNChanged`.
pub const USN_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How long a stopping generation of loops gets to finish its current run.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the sync loops of the configuration in force until `shutdown` turns true, restarting
/// them on the new configuration after every reload.
pub async fn run(warden: Arc<Warden>, mut shutdown: watch::Receiver<bool>) {
    let mut reloads = warden.subscribe_config();
    loop {
        reloads.borrow_and_update();
        let (stop, stopped) = watch::channel(false);
        let tasks = spawn(&warden, stopped);
        let reloaded = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => false,
            changed = reloads.changed() => changed.is_ok(),
        };
        let _ = stop.send(true);
        for task in tasks {
            let _ = tokio::time::timeout(STOP_GRACE, task).await;
        }
        if !reloaded {
            return;
        }
        tracing::info!("configuration reloaded; sync loops restarted on it");
    }
}

/// Starts every sync loop of the configuration in force. They stop when `shutdown` turns true.
fn spawn(warden: &Arc<Warden>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let config = warden.config().clone();
    let devices = warden.devices();
    let mut tasks = Vec::new();
    // Pull loops first, so push loops can wake those on their directory.
    let mut pulls_by_device: HashMap<String, Vec<Arc<Notify>>> = HashMap::new();
    for ds in &config.data_sets {
        let Source::Ldap(source) = &ds.source else {
            continue;
        };
        let Some(device) = devices.get(&source.directory) else {
            continue;
        };
        let wake = Arc::new(Notify::new());
        pulls_by_device
            .entry(source.directory.clone())
            .or_default()
            .push(Arc::clone(&wake));
        if source.notify
            && let Some(dn) = watched_dn(&source.filter)
        {
            tasks.push(tokio::spawn(watch_loop(
                Arc::clone(device),
                dn,
                Arc::clone(&wake),
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(pull_loop(
            Arc::clone(warden),
            Arc::clone(device),
            ds.clone(),
            wake,
            shutdown.clone(),
        )));
    }
    for mapping in &config.mappings {
        let Some(device) = devices.get(&mapping.directory) else {
            continue;
        };
        let pulls = pulls_by_device
            .get(&mapping.directory)
            .cloned()
            .unwrap_or_default();
        tasks.push(tokio::spawn(push_loop(
            Arc::clone(warden),
            Arc::clone(device),
            mapping.clone(),
            pulls,
            shutdown.clone(),
        )));
    }
    if config.imperva.is_some() {
        tasks.push(tokio::spawn(crate::sync::imperva::push_loop(
            Arc::clone(warden),
            shutdown.clone(),
        )));
    }
    tasks
}

async fn push_loop(
    warden: Arc<Warden>,
    device: Arc<Directory>,
    mapping: MappingConfig,
    pulls: Vec<Arc<Notify>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut lists = warden.subscribe_lists();
    let mut tick = tokio::time::interval(device.config().update_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = Retry::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
            changed = lists.changed() => {
                if changed.is_err() { return; }
                tokio::time::sleep(PUSH_DEBOUNCE).await;
                lists.borrow_and_update();
            }
            () = retry.due() => {}
        }
        let (update, result) = push::run(&device, warden.store(), &mapping).await;
        match result {
            Ok(report) => {
                retry.succeeded();
                if report.added + report.removed > 0 {
                    tracing::info!(group = %mapping.group_dn, added = report.added, removed = report.removed, "group updated");
                    for p in &pulls {
                        p.notify_one();
                    }
                }
            }
            Err(e) => {
                warden.metrics().sync_failed(device.name());
                let retry_in = retry.failed();
                tracing::warn!(group = %mapping.group_dn, error = %e, ?retry_in, "push failed");
            }
        }
        drop(update);
    }
}

async fn pull_loop(
    warden: Arc<Warden>,
    device: Arc<Directory>,
    ds: DataSetConfig,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Source::Ldap(source) = &ds.source else {
        return;
    };
    let mut tick = tokio::time::interval(source.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = Retry::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
            _ = wake.notified() => {}
            () = retry.due() => {}
        }
        let (_, result) = pull::refresh(&warden, &device, &ds).await;
        match result {
            Ok(outcome) => {
                retry.succeeded();
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
    device: Arc<Directory>,
    dn: String,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let settings = match device.settings() {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(device = device.name(), error = %e, "cannot watch for changes");
            return;
        }
    };
    let mut w = match directory::watch(Arc::clone(&settings), &dn) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(%dn, error = %e, "change notification unavailable; polling uSNChanged");
            return poll_usn(device, dn, wake, shutdown).await;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            event = w.recv() => match event {
                Some(WatchEvent::Changed { .. }) | Some(WatchEvent::Reconnected { .. }) => wake.notify_one(),
                Some(WatchEvent::Registered { .. }) => tracing::info!(%dn, "watching for changes"),
                Some(WatchEvent::Disconnected { reason, .. }) => tracing::warn!(%dn, %reason, "change notification disconnected; re-registering"),
                Some(WatchEvent::Unsupported { reason, .. }) => {
                    tracing::warn!(%dn, %reason, "change notification unsupported; polling uSNChanged");
                    return poll_usn(device, dn, wake, shutdown).await;
                }
                None => return,
            }
        }
    }
}

async fn poll_usn(
    device: Arc<Directory>,
    dn: String,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = None;
    let mut tick = tokio::time::interval(USN_POLL_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let usn = match device.client().await {
            Ok(c) => c.poll_usn_changed(&dn).await,
            Err(e) => Err(e),
        };
        match usn {
            Ok(u) if last.is_some_and(|l| l != u) => {
                last = Some(u);
                wake.notify_one();
            }
            Ok(u) => last = Some(u),
            Err(e) => {
                tracing::debug!(%dn, error = %e, "uSNChanged poll failed");
                device.reset().await;
            }
        }
    }
}
