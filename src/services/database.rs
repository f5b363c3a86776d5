//! The agentless database loops: one per `[[databases.roles]]` mapping, reconciling a list into
//! a PostgreSQL role ([`crate::sync::database`]).
//!
//! Like a push loop, each runs on every list change (debounced, so a block is applied within
//! moments), on the database's `update_interval` (which repairs drift: a member revoked or
//! granted by hand is put back at the next run), and after a failure with exponential backoff.

use std::sync::Arc;

use super::sync::Triggers;
use super::{Ready, Service, Shutdown};
use crate::base::retry::Retry;
use crate::config::{DatabaseConfig, RoleMappingConfig};
use crate::runtime::Warden;
use crate::sync::SyncMetrics;
use crate::sync::database;

/// The loops of the configuration in force.
pub fn services(warden: &Arc<Warden>) -> Vec<Service> {
    let mut services = Vec::new();
    for db in &warden.config().databases {
        for mapping in &db.roles {
            let (warden, db, mapping) = (Arc::clone(warden), db.clone(), mapping.clone());
            services.push(Service::new(
                format!("database {} {} -> {}", db.name, mapping.list, mapping.role),
                move |shutdown, ready| role_loop(warden, db, mapping, shutdown, ready),
            ));
        }
    }
    services
}

async fn role_loop(
    warden: Arc<Warden>,
    db: DatabaseConfig,
    mapping: RoleMappingConfig,
    mut shutdown: Shutdown,
    ready: Ready,
) {
    let mut triggers = Triggers::new(&warden, db.update_interval);
    let mut retry = Retry::new();
    // The rules of the configuration this loop was made for (a reload remakes it).
    let identity = std::sync::Arc::clone(&warden.config().identity);
    while triggers.next(&mut shutdown, &retry, None).await {
        let (_, result) =
            database::run(&db, warden.store(), warden.events(), &mapping, &identity).await;
        match result {
            Ok(report) => {
                retry.succeeded();
                ready.set();
                if report.granted + report.revoked > 0 {
                    tracing::info!(
                        database = %db.name, role = %mapping.role,
                        granted = report.granted, revoked = report.revoked,
                        terminated = report.terminated, "role members updated"
                    );
                }
            }
            Err(e) => {
                warden.metrics().get::<SyncMetrics>().sync_failed(&db.name);
                let retry_in = retry.failed();
                tracing::warn!(database = %db.name, role = %mapping.role, error = %e, ?retry_in, "database sync failed");
            }
        }
    }
}
