//! The expiry sweep: takes members off their lists once their expiry has passed
//! ([`crate::operations::lists::expire_members`]), every [`SWEEP_INTERVAL`].

use std::sync::Arc;
use std::time::Duration;

use super::{Ready, Service, Shutdown};
use crate::operations::lists::expire_members;
use crate::runtime::Warden;

/// How often the sweep looks for expired members: members leave within this of their time.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

pub fn service(warden: Arc<Warden>) -> Service {
    Service::new("expiry", move |shutdown, ready| {
        sweep(warden, shutdown, ready)
    })
}

async fn sweep(warden: Arc<Warden>, mut shutdown: Shutdown, ready: Ready) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.requested() => return,
            _ = tick.tick() => {}
        }
        let w = Arc::clone(&warden);
        match tokio::task::spawn_blocking(move || expire_members(&w)).await {
            Ok(Ok(_)) => ready.set(),
            Ok(Err(e)) => tracing::error!(error = %e, "expiry sweep failed; retrying"),
            Err(e) => tracing::error!(error = %e, "expiry sweep task failed"),
        }
    }
}
