//! The store watch: notices what other processes (the CLI) commit to the store — list members,
//! persisted rows, API keys — and republishes, every `[server] store_poll_interval`.

use std::sync::Arc;

use super::{Ready, Service, Shutdown};
use crate::runtime::Warden;

pub fn service(warden: Arc<Warden>) -> Service {
    Service::new("store watch", move |shutdown, ready| {
        watch(warden, shutdown, ready)
    })
}

async fn watch(warden: Arc<Warden>, mut shutdown: Shutdown, ready: Ready) {
    let mut last = warden.store().data_version().ok();
    ready.set();
    loop {
        // Read each time, so that a reload changes the interval.
        let poll = warden.config().server.store_poll_interval;
        tokio::select! {
            () = shutdown.requested() => return,
            () = tokio::time::sleep(poll) => {}
        }
        let version = warden.store().data_version().ok();
        if version == last {
            continue;
        }
        last = version;
        let w = Arc::clone(&warden);
        match tokio::task::spawn_blocking(move || w.reload_from_store()).await {
            Ok(Ok(published)) => tracing::info!(?published, "lists changed in the store"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot reload lists; keeping the current snapshot")
            }
            Err(e) => tracing::error!(error = %e, "list reload task failed"),
        }
    }
}
