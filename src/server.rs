//! The server: warden with every front end and background loop it runs, under one
//! [`Supervisor`] with one shutdown — the HTTP gateway, each configured gate (PostgreSQL or
//! MySQL, by its `protocol`), and the background services.
//!
//! The shape is pingora's `Server::add_service` and mini-redis's `server::run(listener,
//! shutdown)`: [`Server::open`] does everything that can refuse a start (the store, the
//! gateway's TLS, the bootstrap admin key, the HTTP port) and returns; [`Server::run`] serves
//! until it is told to stop. What the process is told comes in as values ([`Intent`]: drain,
//! stop now, reload), through a [`Handle`] any task can hold — the binary maps SIGTERM, SIGINT
//! and SIGHUP to them ([`signals`]), a test sends them itself. A [`Handle`] also says when the
//! server is ready to take connections and where each front end listens ([`Handle::ready`]),
//! so a caller in the same process never reads a log to find it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::base::actor::Actor;
use crate::config::{Config, ConfigSource};
use crate::front::{self, Shared};
use crate::operations;
use crate::runtime::{Warden, WardenError};
use crate::services::{Board, Factory, Service, Stopping, Supervisor};

/// The name the HTTP gateway's listener goes by in [`front::Listening`].
pub const HTTP: &str = "http";

/// What the process is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Stop taking connections, let in-flight requests and services finish, exit (SIGTERM).
    Drain,
    /// Exit now (SIGINT): front ends and services get [`crate::services::FAST_GRACE`].
    Stop,
    /// Read the configuration again and apply it, or keep the running one (SIGHUP).
    Reload,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start warden: {0}")]
    Open(#[from] WardenError),
    #[error("server TLS: {0}")]
    Tls(String),
    #[error("bootstrap admin key: {0}")]
    Bootstrap(#[from] operations::OperationError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("a start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// An opened server, not yet serving.
pub struct Server {
    warden: Arc<Warden>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Shared,
    board: Board,
    configured: Vec<Factory>,
    intents: mpsc::Receiver<Intent>,
    handle: Handle,
}

/// Tells a server what to do and says where it listens; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    intents: mpsc::Sender<Intent>,
    warden: Arc<Warden>,
    listening: front::Listening,
}

impl Handle {
    /// Asks the server for `intent`; `false` when it has stopped.
    pub async fn send(&self, intent: Intent) -> bool {
        self.intents.send(intent).await.is_ok()
    }

    /// The warden the server runs.
    pub fn warden(&self) -> &Arc<Warden> {
        &self.warden
    }

    /// Where front end `name` listens ([`HTTP`], or a gate's [`front::gate_front`]).
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.listening.get(name)
    }

    /// Waits until the server takes connections on every front end the configuration in
    /// force asks for — the HTTP gateway and each gate — and has a snapshot; returns the
    /// gateway's address.
    pub async fn ready(&self) -> SocketAddr {
        let mut names = vec![HTTP.to_owned()];
        names.extend(
            self.warden
                .config()
                .gates
                .iter()
                .map(|g| front::gate_front(&g.name)),
        );
        self.listening.wait_for(&names).await;
        let mut snapshots = self.warden.subscribe_snapshots();
        while !self.warden.engine().is_ready() {
            if snapshots.changed().await.is_err() {
                break;
            }
        }
        self.listening
            .get(HTTP)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

impl Server {
    /// Opens warden on `config` (remembering `source`, so that a reload reads it again), then
    /// checks the gateway's certificate, writes the bootstrap admin key on a fresh store and
    /// binds the gateway's port — in that order: a start refused for its key file has made no
    /// key, and nothing listens before all of it succeeded.
    pub async fn open(config: Config, source: Option<ConfigSource>) -> Result<Server, ServerError> {
        let warden = Arc::new(
            tokio::task::spawn_blocking(move || {
                let warden = Warden::open(config)?;
                Ok::<_, WardenError>(match source {
                    Some(source) => warden.reloadable_from(source),
                    None => warden,
                })
            })
            .await??,
        );
        let server = warden.config().server.clone();
        let tls = match &server.tls {
            Some(t) => {
                Some(front::tls::acceptor(t, &[]).map_err(|e| ServerError::Tls(e.to_string()))?)
            }
            None => None,
        };
        {
            let w = Arc::clone(&warden);
            let path = w.config().bootstrap_key_file();
            let expires_in = server.bootstrap_key_expires_in;
            tokio::task::spawn_blocking(move || {
                operations::keys::bootstrap_admin_key(&w, &path, expires_in)
            })
            .await??;
        }
        let listener =
            TcpListener::bind(server.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    address: server.listen,
                    source,
                })?;
        let shared = Shared::default();
        shared
            .listening
            .set(HTTP, listener.local_addr().unwrap_or(server.listen));
        let (tx, intents) = mpsc::channel(16);
        let handle = Handle {
            intents: tx,
            warden: Arc::clone(&warden),
            listening: shared.listening.clone(),
        };
        Ok(Server {
            warden,
            listener,
            tls,
            shared: shared.clone(),
            board: Board::default(),
            configured: vec![gates(shared.clone())],
            intents,
            handle,
        })
    }

    /// A handle to tell the server what to do and learn where it listens.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub fn warden(&self) -> &Arc<Warden> {
        &self.warden
    }

    /// Also runs the services `factory` makes from the configuration in force, remade after
    /// every reload like the gates.
    pub fn add_service(&mut self, factory: Factory) {
        self.configured.push(factory);
    }

    /// Serves until a [`Intent::Drain`] or [`Intent::Stop`] (or until every [`Handle`] is
    /// dropped, which drains), reloading on [`Intent::Reload`]; returns once every front end
    /// and service has stopped.
    pub async fn run(self) {
        let Server {
            warden,
            listener,
            tls,
            shared,
            board,
            configured,
            mut intents,
            handle,
        } = self;
        drop(handle);
        tracing::info!(
            address = %shared.listening.get(HTTP).unwrap_or_else(|| warden.config().server.listen),
            tls = tls.is_some(),
            store = %store_of(&warden.config()),
            snapshot = warden.engine().load().version(),
            "warden serving"
        );
        let gateway = Arc::new(
            crate::http::Gateway::new(Arc::clone(&warden), board.clone())
                .with_sessions(shared.sessions.clone()),
        );
        let http = Service::new(HTTP, move |mut shutdown, ready| async move {
            ready.set();
            let stopped = async move { shutdown.requested().await };
            if let Err(e) = crate::http::serve(listener, gateway, tls, stopped).await {
                tracing::error!(error = %e, "the HTTP gateway stopped");
            }
        });
        let mut supervisor = Supervisor::new(board).with_front_end(
            http,
            crate::http::DRAIN_TIMEOUT + std::time::Duration::from_secs(1),
        );
        for factory in configured {
            supervisor = supervisor.with_configured(factory);
        }
        let reloader = Arc::clone(&warden);
        let stopping = async move {
            loop {
                match intents.recv().await {
                    Some(Intent::Reload) => reload(&reloader).await,
                    Some(Intent::Drain) | None => return Stopping::Drain,
                    Some(Intent::Stop) => return Stopping::Fast,
                }
            }
        };
        supervisor.run(warden, stopping).await;
        tracing::info!("stopped");
    }
}

/// The factory of every configured gate, by its protocol.
fn gates(shared: Shared) -> Factory {
    Box::new(move |warden| {
        // Each protocol's adapter makes the services of its own gates.
        let mut services = crate::gate::services(warden, &shared);
        services.extend(crate::mysql::services(warden, &shared));
        services
    })
}

fn store_of(config: &Config) -> String {
    match &config.store.postgres {
        Some(pg) => pg.url.clone(),
        None => config.store.path.display().to_string(),
    }
}

/// Reads the configuration again; a bad one is logged with its errors and the running one
/// stays.
async fn reload(warden: &Arc<Warden>) {
    tracing::info!("reloading the configuration");
    let w = Arc::clone(warden);
    let reload = move || operations::config::reload(&w, &Actor::system("SIGHUP"));
    match tokio::task::spawn_blocking(reload).await {
        Ok(Ok(reloaded)) => tracing::info!(?reloaded, "configuration reloaded"),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "configuration NOT reloaded; the running one stays")
        }
        Err(e) => tracing::error!(error = %e, "reload task failed"),
    }
}

/// The process signals mapped to [`Intent`]s once: SIGTERM drains, SIGINT (Ctrl-C) stops
/// now, SIGHUP reloads. Register them before the server opens its port, so that a signal sent
/// once warden is reachable finds a handler rather than the default action (which ends the
/// process: no drain, and SIGHUP kills).
pub mod signals {
    use super::{Handle, Intent};

    /// The registered signals, not yet forwarded.
    pub struct Signals {
        #[cfg(unix)]
        streams: [(tokio::signal::unix::Signal, Intent, &'static str); 3],
    }

    /// Registers SIGTERM, SIGINT and SIGHUP (Ctrl-C alone elsewhere than Unix).
    pub fn register() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                streams: [
                    (signal(SignalKind::terminate())?, Intent::Drain, "SIGTERM"),
                    (signal(SignalKind::interrupt())?, Intent::Stop, "SIGINT"),
                    (signal(SignalKind::hangup())?, Intent::Reload, "SIGHUP"),
                ],
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    impl Signals {
        /// Sends every signal's intent to `handle` until the server stops.
        pub async fn forward(self, handle: Handle) {
            #[cfg(unix)]
            {
                let [mut term, mut int, mut hup] = self.streams;
                loop {
                    let (intent, name) = tokio::select! {
                        _ = term.0.recv() => (term.1, term.2),
                        _ = int.0.recv() => (int.1, int.2),
                        _ = hup.0.recv() => (hup.1, hup.2),
                    };
                    tracing::info!("{name} received");
                    if !handle.send(intent).await {
                        return;
                    }
                }
            }
            #[cfg(not(unix))]
            {
                if tokio::signal::ctrl_c().await.is_ok() {
                    tracing::info!("Ctrl-C received");
                    handle.send(Intent::Stop).await;
                }
            }
        }
    }
}
