//! `warden serve`: open warden, write the bootstrap admin key on a fresh store, start the
//! background services under their supervisor and the HTTP gateway, and map signals to intent
//! once — SIGTERM or Ctrl-C drain and stop, SIGHUP reloads the configuration.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::Source;
use warden::base::actor::Actor;
use warden::operations;
use warden::runtime::Warden;
use warden::services::{Board, Shutdown, Supervisor};

pub fn run(source: Source, listen: Option<SocketAddr>) -> Result<ExitCode> {
    let source = warden::config::ConfigSource {
        listen_override: listen,
        ..source.config_source()
    };
    let config = source.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listen = config.server.listen;
        let store_path = match &config.store.postgres {
            Some(pg) => pg.url.clone(),
            None => config.store.path.display().to_string(),
        };
        let warden = Arc::new(
            tokio::task::spawn_blocking(move || {
                Warden::open(config).map(|w| w.reloadable_from(source))
            })
            .await
            .context("startup task failed")?
            .context("cannot start warden")?,
        );
        let server = warden.config().server.clone();
        // TLS first: a start refused for its key file must not have made a bootstrap key.
        let tls = match &server.tls {
            Some(t) => Some(
                warden::http::tls_acceptor(&t.cert_file, &t.key_file)
                    .map_err(|e| anyhow::anyhow!("server TLS: {e}"))?,
            ),
            None => None,
        };
        {
            let w = Arc::clone(&warden);
            let path = w.config().bootstrap_key_file();
            let expires_in = server.bootstrap_key_expires_in;
            tokio::task::spawn_blocking(move || {
                operations::keys::bootstrap_admin_key(&w, &path, expires_in)
            })
            .await
            .context("bootstrap task failed")??;
        }
        // Before the port opens: a signal sent once warden is reachable must find a handler,
        // not the default action (which ends the process: no drain, and SIGHUP kills).
        let signals = Signals::register()?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener.local_addr().unwrap_or(listen);
        tracing::info!(
            address = %local,
            tls = tls.is_some(),
            store = %store_path,
            snapshot = warden.engine().load().version(),
            "warden serving"
        );
        let Signals { hangup, shutdown } = signals;
        let (stop, stopped) = Shutdown::new();
        let board = Board::default();
        let gates = warden::gate::Gates::default();
        let supervisor = Supervisor::new(board.clone()).with_configured(Box::new({
            let gates = gates.clone();
            move |w| gates.services(w)
        }));
        let supervisor = tokio::spawn(supervisor.run(Arc::clone(&warden), {
            let mut stopped = stopped.clone();
            async move { stopped.requested().await }
        }));
        let hangups = tokio::spawn(reload_on_hangup(Arc::clone(&warden), hangup, stopped));
        let gateway =
            Arc::new(warden::http::Gateway::new(Arc::clone(&warden), board).with_gates(gates));
        warden::http::serve(listener, gateway, tls, shutdown).await?;
        let _ = stop.send(true);
        let _ = supervisor.await;
        let _ = hangups.await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The signals warden handles, registered together at startup.
struct Signals {
    /// SIGHUP: reload the configuration.
    hangup: Hangups,
    /// Resolves on SIGTERM or Ctrl-C (SIGINT): drain and stop.
    shutdown: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

impl Signals {
    #[cfg(unix)]
    fn register() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot listen for {name}"))
        };
        let hangup = listen(SignalKind::hangup(), "SIGHUP")?;
        let mut terminate = listen(SignalKind::terminate(), "SIGTERM")?;
        let mut interrupt = listen(SignalKind::interrupt(), "SIGINT")?;
        let shutdown = Box::pin(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("Ctrl-C received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        });
        Ok(Signals { hangup, shutdown })
    }

    #[cfg(not(unix))]
    fn register() -> Result<Signals> {
        let shutdown = Box::pin(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => tracing::info!("Ctrl-C received"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for Ctrl-C");
                    std::future::pending::<()>().await;
                }
            }
        });
        Ok(Signals {
            hangup: (),
            shutdown,
        })
    }
}

/// Reloads the configuration on every SIGHUP until `stopped` fires; a bad one is logged with
/// its errors and the running one stays.
async fn reload_on_hangup(warden: Arc<Warden>, hangups: Hangups, mut stopped: Shutdown) {
    #[cfg(unix)]
    {
        let mut hangups = hangups;
        loop {
            tokio::select! {
                () = stopped.requested() => return,
                signal = hangups.recv() => if signal.is_none() { return },
            }
            tracing::info!("SIGHUP received: reloading the configuration");
            let w = Arc::clone(&warden);
            let reload = move || operations::config::reload(&w, &Actor::system("SIGHUP"));
            match tokio::task::spawn_blocking(reload).await {
                Ok(Ok(reloaded)) => tracing::info!(?reloaded, "configuration reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "configuration NOT reloaded; the running one stays")
                }
                Err(e) => tracing::error!(error = %e, "reload task failed"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (warden, hangups);
        stopped.requested().await;
    }
}
