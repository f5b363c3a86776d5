//! The Imperva MX push service: after every snapshot change, pushes the configured data sets
//! to the MX (a full replace first, then differences), retrying with backoff.

use std::sync::Arc;

use super::{Ready, Service, Shutdown};
use crate::base::retry::Retry;
use crate::model::dataset::DataSet;
use crate::runtime::Warden;
use crate::sync::imperva::{MxClient, MxError, NOT_LOADED_RECHECK, push_one};

/// The MX push of the configuration in force, if it has an `[imperva]` section.
pub fn service(warden: &Arc<Warden>) -> Option<Service> {
    warden.config().imperva.as_ref()?;
    let warden = Arc::clone(warden);
    Some(Service::new("imperva push", move |shutdown, ready| {
        push_loop(warden, shutdown, ready)
    }))
}

/// Pushes the configured data sets after every snapshot change until `shutdown`: a full
/// replace first, then differences; failures back off and retry. Every push probes for the MX
/// data set first, so one deleted on the MX is created and filled whole by the next attempt.
async fn push_loop(warden: Arc<Warden>, mut shutdown: Shutdown, ready: Ready) {
    let Some(config) = warden.config().imperva.clone() else {
        return;
    };
    let client = match tokio::task::block_in_place(|| MxClient::from_config(&config)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Imperva MX push disabled");
            return;
        }
    };
    let mut snapshots = warden.subscribe_snapshots();
    // The data set each push last delivered; none means the next push is a full replace.
    let mut pushed: Vec<Option<Arc<DataSet>>> = vec![None; config.pushes.len()];
    let mut retry = Retry::new();
    retry.due_now();
    loop {
        tokio::select! {
            () = shutdown.requested() => break,
            changed = snapshots.changed() => if changed.is_err() { break },
            () = retry.due() => {}
        }
        if super::term_ended(&warden) {
            break;
        }
        let (mut failed, mut waiting) = (false, false);
        for (push, last) in config.pushes.iter().zip(pushed.iter_mut()) {
            let current = warden.data_set(&push.data_set);
            if let (Some(a), Some(b)) = (&*last, &current)
                && Arc::ptr_eq(a, b)
            {
                continue;
            }
            match push_one(&warden, &client, push, last.is_none()).await {
                Ok(()) => *last = current,
                Err(MxError::NotLoaded(_)) => waiting = true,
                Err(_) => failed = true,
            }
        }
        if failed {
            let retry_in = retry.failed();
            tracing::info!(retry_in = ?retry_in, "Imperva MX push to be retried");
        } else {
            retry.succeeded();
            ready.set();
            // A first load that finds no rows publishes no new snapshot: look again later.
            if waiting {
                retry.due_in(NOT_LOADED_RECHECK);
            }
        }
    }
    client.logout().await;
}
