//! The events service: starts the SIEM sinks ([`crate::events::Events::start`]: each sink's
//! queue, writer and sender threads) and the decision log's writer when warden starts, and
//! stops them when it stops — the handoffs written to the queues and the log first, so a
//! graceful stop loses nothing that was offered. It runs for the whole process: sinks and
//! the log change only with a restart (`Config::needs_restart`).

use std::sync::Arc;
use std::time::Duration;

use super::{Ready, STOP_GRACE, Service, Shutdown};
use crate::runtime::Warden;

pub fn service(warden: Arc<Warden>) -> Service {
    Service::new("events", move |shutdown, ready| {
        run(warden, shutdown, ready)
    })
}

async fn run(warden: Arc<Warden>, mut shutdown: Shutdown, ready: Ready) {
    let w = Arc::clone(&warden);
    let started = tokio::task::spawn_blocking(move || {
        let config = w.config().clone();
        let sinks = w.events().start(&config, w.store());
        let log = config.decision_log.enabled.then(|| {
            let dir = config.decision_log_dir();
            let started = w.decisions().start(
                dir.clone(),
                config.decision_log.max_bytes,
                config.decision_log.max_age,
            );
            match started {
                Ok(writer) => Some(writer),
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "the decision log cannot start; decisions are not logged");
                    None
                }
            }
        });
        (sinks, log.flatten())
    })
    .await;
    let Ok((sinks, log)) = started else {
        tracing::error!("the events service could not start");
        return;
    };
    ready.set();
    shutdown.requested().await;
    // Within the supervisor's grace: the writers drain, a sender inside a connect is left.
    let grace = STOP_GRACE.saturating_sub(Duration::from_secs(2));
    let _ = tokio::task::spawn_blocking(move || {
        warden.events().stop(sinks, grace);
        if let Some(log) = log {
            log.stop();
        }
    })
    .await;
}
