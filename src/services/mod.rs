//! Background services: the loops that keep warden converged while it serves, all of one
//! shape ([`Service`]: a name, a run that ends when its [`Shutdown`] fires, a [`Ready`] it
//! sets once its first run succeeded) under one [`Supervisor`].
//!
//! Two lifetimes. *Process* services run from start to exit: followed actions
//! ([`followed_actions`]), the expiry sweep ([`expiry`]) and the store watch
//! ([`store_watch`], or on a shared PostgreSQL store the change feed and leader election of
//! [`replica`]), the aggregated audit of refusals and the audit retention ([`audit`]), the
//! SIEM sinks and the decision log ([`events`]).
//! *Configured* services are made from the configuration in force — push
//! and pull loops with their change watches ([`sync`]) and the Imperva MX push ([`imperva`])
//! — and are stopped (each finishes its current run) and made again after every reload.
//! *Front-end* services (the HTTP gateway, handed over by the layer that owns it) run for the
//! whole process too, and are the first to stop. On shutdown ([`Stopping`]) the supervisor
//! stops every service and waits for each, within a grace period: the front ends' own when
//! draining (HTTP finishes its in-flight requests), [`FAST_GRACE`] for all when stopping
//! fast.

pub mod audit;
pub mod database;
pub mod events;
pub mod expiry;
pub mod followed_actions;
pub mod imperva;
pub mod replica;
pub mod store_watch;
pub mod sync;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::runtime::Warden;
use crate::store::changes::Term;

/// How long a stopping service gets to finish its current run.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long any service gets when warden stops fast (SIGINT).
pub const FAST_GRACE: Duration = Duration::from_millis(500);

/// How the supervisor is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopping {
    /// Each service finishes what it is doing, within its grace (SIGTERM).
    Drain,
    /// Now: every service gets [`FAST_GRACE`] (SIGINT).
    Fast,
}

/// Fires once, when the service is to stop.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves when the service is to stop (at once if it already is).
    pub async fn requested(&mut self) {
        // An error means the sender is gone, which also means stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// A shutdown signal and the switch that fires it.
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }
}

/// Set by a service once it has done its work once (its first refresh, push or sweep).
#[derive(Clone, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

type Run = Box<dyn FnOnce(Shutdown, Ready) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One background service.
pub struct Service {
    name: String,
    run: Run,
}

impl Service {
    pub fn new<F, Fut>(name: impl Into<String>, run: F) -> Service
    where
        F: FnOnce(Shutdown, Ready) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Service {
            name: name.into(),
            run: Box::new(move |shutdown, ready| Box::pin(run(shutdown, ready))),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same service as a leader-only job of `term` (none on SQLite: nothing to fence):
    /// each write transaction it commits checks that the term still holds the lease
    /// ([`crate::store::changes::as_leader`]).
    fn fenced(self, term: Option<Term>) -> Service {
        let Some(term) = term else {
            return self;
        };
        let run = self.run;
        Service {
            name: self.name,
            run: Box::new(move |shutdown, ready| {
                Box::pin(crate::store::changes::as_leader(term, run(shutdown, ready)))
            }),
        }
    }
}

/// Whether the leader-only job running here belongs to a term this replica no longer
/// holds: it is to do nothing more outside the store (an AD group, an MX, a database role)
/// and end; the supervisor remakes the jobs for the next term. The store refuses its writes
/// whatever this says.
pub(crate) fn term_ended(warden: &Warden) -> bool {
    crate::store::changes::fencing_token().is_some_and(|token| !warden.store().holds(token))
}

/// A running service, as shown in status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceState {
    pub name: String,
    pub ready: bool,
}

/// Where the supervisor shows which services run and which are ready.
#[derive(Clone, Default)]
pub struct Board(Arc<ArcSwap<Vec<(String, Ready)>>>);

impl Board {
    pub fn states(&self) -> Vec<ServiceState> {
        self.0
            .load()
            .iter()
            .map(|(name, ready)| ServiceState {
                name: name.clone(),
                ready: ready.is_set(),
            })
            .collect()
    }

    fn show<'a>(&self, running: impl Iterator<Item = &'a Running>) {
        self.0.store(Arc::new(
            running.map(|r| (r.name.clone(), r.ready.clone())).collect(),
        ));
    }
}

struct Running {
    name: String,
    ready: Ready,
    task: JoinHandle<()>,
}

/// Starts services and stops them together.
struct Group {
    stop: watch::Sender<bool>,
    running: Vec<Running>,
}

impl Group {
    fn start(services: Vec<Service>) -> Group {
        let (stop, shutdown) = Shutdown::new();
        let running = services
            .into_iter()
            .map(|s| {
                let ready = Ready::default();
                let task = tokio::spawn((s.run)(shutdown.clone(), ready.clone()));
                Running {
                    name: s.name,
                    ready,
                    task,
                }
            })
            .collect();
        Group { stop, running }
    }

    /// Asks every service to stop and waits for each, at most `grace` in all.
    async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        for r in self.running {
            let mut task = r.task;
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(service = %r.name, "did not stop within {grace:?}; aborted");
                task.abort();
            }
        }
    }
}

/// The services that run for the whole process.
fn process_services(warden: &Arc<Warden>) -> Vec<Service> {
    let mut services = vec![
        followed_actions::service(Arc::clone(warden)),
        audit::service(Arc::clone(warden)),
        events::service(Arc::clone(warden)),
    ];
    if warden.store().is_shared() {
        services.extend(replica::services(warden));
    } else {
        services.push(store_watch::service(Arc::clone(warden)));
    }
    services
}

/// The jobs that must run once (push, pull and watch, expiry, MX push, agentless reconcile),
/// as the configuration in force asks for them. They run only on the leader: always on
/// SQLite, the holder of the leader lease on PostgreSQL, fenced by the term they were made in.
fn leader_services(warden: &Arc<Warden>) -> Vec<Service> {
    if !warden.store().is_leader() {
        return Vec::new();
    }
    let term = warden.store().term();
    let mut jobs = sync::services(warden);
    jobs.push(expiry::service(Arc::clone(warden)));
    jobs.extend(imperva::service(warden));
    jobs.extend(database::services(warden));
    jobs.into_iter().map(|s| s.fenced(term)).collect()
}

/// Makes configured services from the configuration in force, once per (re)load.
pub type Factory = Box<dyn Fn(&Arc<Warden>) -> Vec<Service> + Send + Sync>;

/// Runs every service until `shutdown` resolves, remaking the configured ones after each
/// reload; then stops them all and waits for them.
pub struct Supervisor {
    board: Board,
    front_ends: Vec<Factory>,
    /// Process-long services of the layers above (the HTTP gateway), stopped first, with the
    /// grace each drains within.
    first_to_stop: Vec<(Service, Duration)>,
}

impl Supervisor {
    pub fn new(board: Board) -> Supervisor {
        Supervisor {
            board,
            front_ends: Vec::new(),
            first_to_stop: Vec::new(),
        }
    }

    /// Also runs the services `factory` makes, remade after each reload like the others.
    pub fn with_configured(mut self, factory: Factory) -> Supervisor {
        self.front_ends.push(factory);
        self
    }

    /// Also runs `service` for the whole process, and stops it before every other service,
    /// giving it `grace` to drain.
    pub fn with_front_end(mut self, service: Service, grace: Duration) -> Supervisor {
        self.first_to_stop.push((service, grace));
        self
    }

    /// Front ends of the layers above (the gates) are remade on a reload only: a change of
    /// leadership must not close their listeners, or clients are refused while they rebind.
    /// Leader jobs are remade on either.
    pub async fn run(self, warden: Arc<Warden>, shutdown: impl Future<Output = Stopping>) {
        let drain = self
            .first_to_stop
            .iter()
            .map(|(_, grace)| *grace)
            .max()
            .unwrap_or(STOP_GRACE);
        let first = Group::start(self.first_to_stop.into_iter().map(|(s, _)| s).collect());
        let process = Group::start(process_services(&warden));
        let mut reloads = warden.subscribe_config();
        let mut leadership = warden.store().subscribe_leader();
        tokio::pin!(shutdown);
        reloads.borrow_and_update();
        let mut front_ends = Group::start(front_end_services(&self.front_ends, &warden));
        let (stopping, leader) = loop {
            leadership.borrow_and_update();
            let leader = Group::start(leader_services(&warden));
            self.board.show(
                process
                    .running
                    .iter()
                    .chain(&front_ends.running)
                    .chain(&leader.running),
            );
            let why = tokio::select! {
                stopping = &mut shutdown => Err(stopping),
                changed = reloads.changed() => Ok(changed.ok().map(|()| Restart::Reload)),
                changed = leadership.changed() => Ok(changed.ok().map(|()| Restart::Leadership)),
            };
            match why {
                Ok(Some(Restart::Leadership)) => {
                    leader.stop(STOP_GRACE).await;
                    tracing::info!("leadership changed; leader jobs restarted");
                }
                Ok(Some(Restart::Reload)) => {
                    leader.stop(STOP_GRACE).await;
                    front_ends.stop(STOP_GRACE).await;
                    reloads.borrow_and_update();
                    front_ends = Group::start(front_end_services(&self.front_ends, &warden));
                    tracing::info!("configuration reloaded; background services restarted");
                }
                // A sender is gone: warden is going away; stop.
                Ok(None) => break (Stopping::Drain, leader),
                Err(stopping) => break (stopping, leader),
            }
        };
        let (drain, grace) = match stopping {
            Stopping::Drain => (drain, STOP_GRACE),
            Stopping::Fast => (FAST_GRACE, FAST_GRACE),
        };
        first.stop(drain).await;
        front_ends.stop(grace).await;
        leader.stop(grace).await;
        process.stop(grace).await;
        self.board.show(std::iter::empty());
    }
}

/// The services the front ends' factories make from the configuration in force.
fn front_end_services(factories: &[Factory], warden: &Arc<Warden>) -> Vec<Service> {
    factories.iter().flat_map(|f| f(warden)).collect()
}

/// Why the supervisor remakes services.
enum Restart {
    Reload,
    Leadership,
}
