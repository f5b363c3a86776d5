//! `warden serve`: reads the configuration, maps the process's signals to intents (SIGTERM
//! drains, SIGINT stops now, SIGHUP reloads) and runs the library's [`warden::server::Server`].

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::Source;
use warden::server::{Server, signals};

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
        // Before the port opens: a signal sent once warden is reachable must find a handler.
        let signals = signals::register().context("cannot listen for signals")?;
        let server = Server::open(config, Some(source)).await?;
        tokio::spawn(signals.forward(server.handle()));
        server.run().await;
        Ok(ExitCode::SUCCESS)
    })
}
