//! The `warden` command line: parses arguments, sets up logging and signals, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use warden::base::time::now;
use warden::base::time::{expiry, format_rfc3339};
use warden::config::{Config, ConfigSource};
use warden::decide::{Outcome, Request};
use warden::runtime::Warden;
use warden::store::{Added, NewMember, Store};

mod directory_cmd;
mod imperva_cmd;
mod keys_cmd;
mod respond_cmd;

/// Contain a suspicious user at the press of a button: user lists, AD group push, LDAP data
/// sets and a hot-swapped decision engine for database firewalls.
#[derive(Parser)]
#[command(name = "warden", version, about, long_about = None)]
struct Cli {
    /// Configuration file [default: the embedded default config]
    #[arg(long, short, global = true, env = "WARDEN_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Store file, overriding [store] path from the configuration
    #[arg(long, global = true, env = "WARDEN_STORE", value_name = "PATH")]
    store: Option<PathBuf>,
    /// Log as JSON lines instead of text
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine and its HTTP listener until SIGTERM or Ctrl-C
    Serve {
        /// Listen address, overriding [server] listen
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Validate a configuration file and print every problem with its key path
    CheckConfig {
        /// File to check [default: --config, or the embedded default]
        path: Option<PathBuf>,
    },
    /// Decide one request in-process and print the decision as JSON
    /// (exit code 0 allow, 1 block, 2 error)
    Decide(DecideArgs),
    /// Manage user lists
    #[command(subcommand)]
    Lists(ListsCommand),
    /// Directory servers: status and push sync
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// List → AD group mappings
    #[command(subcommand)]
    Mappings(MappingsCommand),
    /// Lookup data sets filled from LDAP
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// API keys for the HTTP gateway
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Incidents and the responses run on them
    #[command(subcommand)]
    Incidents(respond_cmd::IncidentsCommand),
    /// Alerts for automated-response rules
    #[command(subcommand)]
    Alerts(respond_cmd::AlertsCommand),
    /// Sync out to an Imperva MX through its Open API
    #[command(subcommand)]
    Imperva(imperva_cmd::ImpervaCommand),
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Health and recent updates of every directory server
    Status {
        /// Recent updates shown per device
        #[arg(long, default_value_t = 5)]
        recent: i64,
        #[arg(long)]
        json: bool,
    },
    /// Push every list mapped to this directory into its group now
    Sync { name: String },
}

#[derive(Subcommand)]
enum MappingsCommand {
    /// Check that each mapped group exists and show what the next sync would change
    /// (on a first sync: how many current members it will remove)
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DatasetsCommand {
    /// Run a data set's LDAP query and mappings without applying; show sample rows and counts
    TestQuery {
        name: String,
        /// Sample rows shown
        #[arg(long, default_value_t = 10)]
        sample: usize,
    },
    /// Refresh a data set from LDAP now (subject to the shrink guard)
    Refresh { name: String },
    /// Apply a refresh the shrink guard is holding
    Accept { name: String },
}

#[derive(Args)]
struct DecideArgs {
    /// Database service the session is for
    #[arg(long)]
    service: String,
    /// Database user name (repeatable)
    #[arg(long = "db-user", value_name = "USER")]
    db_user: Vec<String>,
    #[arg(long, value_name = "USER")]
    os_user: Option<String>,
    #[arg(long, value_name = "APP")]
    source_app: Option<String>,
    #[arg(long, value_name = "IP")]
    client_ip: Option<String>,
}

#[derive(Subcommand)]
enum ListsCommand {
    /// Put a principal on a list (DOMAIN\user, user@realm, sAMAccountName or DN)
    Add {
        list: String,
        principal: String,
        /// Why the principal is on the list
        #[arg(long, default_value = "")]
        reason: String,
        /// Incident the principal comes from
        #[arg(long)]
        incident: Option<String>,
        /// When the principal leaves the list (RFC 3339, e.g. 2026-12-01T00:00:00Z)
        #[arg(long, conflicts_with = "expires_in", value_name = "TIME")]
        expires: Option<String>,
        /// How long the principal stays on the list (e.g. 24h, 7d)
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// Who adds the principal [default: $SUDO_USER or $USER]
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Take a principal off a list
    Remove { list: String, principal: String },
    /// Show lists, or the members of one list
    Show {
        list: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Loads the configuration named on the command line, or the embedded default.
fn load_config(cli_config: Option<&PathBuf>, store: Option<&PathBuf>) -> Result<Config> {
    config_source(cli_config, store)
        .load()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn config_source(cli_config: Option<&PathBuf>, store: Option<&PathBuf>) -> ConfigSource {
    ConfigSource {
        path: cli_config.cloned(),
        store_override: store.cloned(),
        listen_override: None,
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { path } => {
            let source = config_source(path.or(cli.config).as_ref(), None);
            let origin = source.origin();
            match source.load() {
                Ok(c) => {
                    println!(
                        "{origin}: ok ({} lists, {} data sets, {} policies, {} directories)",
                        c.lists.len(),
                        c.data_sets.len(),
                        c.policies.len(),
                        c.directories.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprint!("{e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Serve { listen } => {
            let source = ConfigSource {
                listen_override: listen,
                ..config_source(cli.config.as_ref(), cli.store.as_ref())
            };
            serve(source)
        }
        Command::Decide(args) => {
            decide(load_config(cli.config.as_ref(), cli.store.as_ref())?, &args)
        }
        Command::Lists(cmd) => lists(load_config(cli.config.as_ref(), cli.store.as_ref())?, cmd),
        Command::Devices(cmd) => {
            directory_cmd::devices(load_config(cli.config.as_ref(), cli.store.as_ref())?, cmd)
        }
        Command::Mappings(cmd) => {
            directory_cmd::mappings(load_config(cli.config.as_ref(), cli.store.as_ref())?, cmd)
        }
        Command::Datasets(cmd) => {
            directory_cmd::datasets(load_config(cli.config.as_ref(), cli.store.as_ref())?, cmd)
        }
        Command::Incidents(cmd) => {
            respond_cmd::incidents(load_config(cli.config.as_ref(), cli.store.as_ref())?, cmd)
        }
        Command::Imperva(cmd) => {
            imperva_cmd::imperva(load_config(cli.config.as_ref(), cli.store.as_ref())?, cmd)
        }
        Command::Alerts(cmd) => {
            respond_cmd::alerts(load_config(cli.config.as_ref(), cli.store.as_ref())?, cmd)
        }
        Command::Keys(cmd) => {
            let config = load_config(cli.config.as_ref(), cli.store.as_ref())?;
            let store = Store::open(&config.store.path).context("cannot open the store")?;
            keys_cmd::keys(&store, cmd)
        }
    }
}

fn serve(source: ConfigSource) -> Result<ExitCode> {
    let config = source.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listen = config.server.listen;
        let store_path = config.store.path.clone();
        let warden = Arc::new(
            tokio::task::spawn_blocking(move || {
                Warden::open(config).map(|w| w.reloadable_from(source))
            })
            .await
            .context("startup task failed")?
            .context("cannot start warden")?,
        );
        let server = warden.config().server.clone();
        {
            let w = Arc::clone(&warden);
            let path = server.bootstrap_key_file.clone();
            tokio::task::spawn_blocking(move || keys_cmd::bootstrap(w.store(), &path))
                .await
                .context("bootstrap task failed")??;
            warden.keys().reload(warden.store())?;
        }
        let tls = match &server.tls {
            Some(t) => Some(
                warden::http::tls_acceptor(&t.cert_file, &t.key_file)
                    .map_err(|e| anyhow::anyhow!("server TLS: {e}"))?,
            ),
            None => None,
        };
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
            store = %store_path.display(),
            snapshot = warden.engine().load().version(),
            "warden serving"
        );
        let watcher = tokio::spawn(watch_store(Arc::clone(&warden)));
        let Signals { hangup, shutdown } = signals;
        let hangups = tokio::spawn(reload_on_hangup(Arc::clone(&warden), hangup));
        let (stop_sync, sync_stopped) = tokio::sync::watch::channel(false);
        let followed = tokio::spawn(warden::services::followed_actions::run(
            Arc::clone(&warden),
            sync_stopped.clone(),
        ));
        let sweeper = tokio::spawn(warden::respond::sweep_loop(
            Arc::clone(&warden),
            sync_stopped.clone(),
        ));
        let sync = tokio::spawn(warden::services::sync::run(
            Arc::clone(&warden),
            sync_stopped,
        ));
        let gateway = Arc::new(warden::http::Gateway::new(Arc::clone(&warden)));
        warden::http::serve(listener, gateway, tls, shutdown).await?;
        let _ = stop_sync.send(true);
        let _ = sync.await;
        let _ = sweeper.await;
        let _ = followed.await;
        watcher.abort();
        hangups.abort();
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

/// Reloads the configuration on every SIGHUP; a bad one is logged with its errors and the
/// running one stays.
async fn reload_on_hangup(warden: Arc<Warden>, hangups: Hangups) {
    #[cfg(unix)]
    {
        let mut hangups = hangups;
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration");
            let w = Arc::clone(&warden);
            match tokio::task::spawn_blocking(move || w.reload_as("system", "SIGHUP")).await {
                Ok(Ok(reloaded)) => tracing::info!(?reloaded, "configuration reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "configuration NOT reloaded; the running one stays")
                }
                Err(e) => tracing::error!(error = %e, "reload task failed"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (warden, hangups);
}

/// Notices list changes made by other processes (the CLI) and republishes.
async fn watch_store(warden: Arc<Warden>) {
    let mut last = warden.store().data_version().ok();
    loop {
        // Read each time, so that a reload changes the interval.
        let poll = warden.config().server.store_poll_interval;
        tokio::time::sleep(poll).await;
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

fn decide(config: Config, args: &DecideArgs) -> Result<ExitCode> {
    let warden = Warden::open(config).context("cannot load warden state")?;
    let request = Request {
        service: &args.service,
        db_user: args.db_user.iter().map(String::as_str).collect(),
        os_user: args.os_user.as_deref(),
        source_app: args.source_app.as_deref(),
        client_ip: args.client_ip.as_deref(),
    };
    let snapshot = warden.engine().load();
    let decision = snapshot.decide(&request);
    let mut out = Vec::new();
    snapshot.render_decision(&decision, &mut out);
    println!("{}", String::from_utf8_lossy(&out));
    Ok(match decision.outcome {
        Outcome::Allow => ExitCode::SUCCESS,
        Outcome::Block => ExitCode::from(1),
    })
}

fn lists(config: Config, cmd: ListsCommand) -> Result<ExitCode> {
    let store = Arc::new(Store::open(&config.store.path).context("cannot open the store")?);
    for list in &config.lists {
        store.ensure_list(&list.name, &list.description)?;
    }
    match cmd {
        ListsCommand::Add {
            list,
            principal,
            reason,
            incident,
            expires,
            expires_in,
            by,
        } => {
            let expires_at = expiry(expires.as_deref(), expires_in.as_deref(), now())
                .map_err(anyhow::Error::msg)?;
            let added_by = by
                .or_else(|| std::env::var("SUDO_USER").ok())
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "cli".to_string());
            let member = NewMember {
                principal: principal.clone(),
                reason,
                incident,
                added_by,
                expires_at,
            };
            let added = store
                .add_member(&list, &member)
                .with_context(|| format!("cannot add {principal:?} to {list:?}"))?;
            let verb = match added {
                Added::New => "added to",
                Added::Updated => "updated on",
            };
            keys_cmd::audit_cli(
                &store,
                "lists.add",
                &list,
                serde_json::json!({
                    "principal": member.principal,
                    "reason": member.reason,
                    "incident": member.incident,
                    "expires_at": member.expires_at,
                }),
            )?;
            println!("{principal} {verb} {list:?}");
        }
        ListsCommand::Remove { list, principal } => {
            if store
                .remove_member(&list, &principal)
                .with_context(|| format!("cannot remove {principal:?} from {list:?}"))?
            {
                keys_cmd::audit_cli(
                    &store,
                    "lists.remove",
                    &list,
                    serde_json::json!({ "principal": principal }),
                )?;
                println!("{principal} removed from {list:?}");
            } else {
                println!("{principal} was not on {list:?}");
            }
        }
        ListsCommand::Show { list: None, json } => {
            let lists = store.lists()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&lists)?);
            } else {
                for l in lists {
                    println!("{:<32} {:>8} members  {}", l.name, l.members, l.description);
                }
            }
        }
        ListsCommand::Show {
            list: Some(list),
            json,
        } => {
            let members = store.members(&list)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&members)?);
            } else {
                println!(
                    "{:<40} {:<20} {:<12} {:<21} REASON",
                    "PRINCIPAL", "ADDED AT", "INCIDENT", "EXPIRES"
                );
                for m in members {
                    println!(
                        "{:<40} {:<20} {:<12} {:<21} {}",
                        m.principal,
                        format_rfc3339(m.added_at),
                        m.incident.as_deref().unwrap_or("-"),
                        m.expires_at.map_or("-".to_string(), format_rfc3339),
                        m.reason
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
