//! The `warden` command line: parses arguments, sets up logging, and dispatches to a command of
//! [`cli`]; everything a command does is a call into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod cli;

/// Contain a suspicious user at the press of a button: user lists, AD group push, LDAP data
/// sets and a hot-swapped decision engine for database firewalls.
#[derive(Parser)]
#[command(name = "warden", version, about, long_about = None)]
struct Args {
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
    /// Run the engine, its background services and its HTTP listener until SIGTERM or Ctrl-C
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
    Decide(cli::decide::DecideArgs),
    /// Recorded decisions (every block, sampled allows): who was blocked, when, by what
    #[command(name = "decision-log")]
    DecisionLog(cli::decision_log::DecisionLogArgs),
    /// Manage user lists
    #[command(subcommand)]
    Lists(cli::lists::ListsCommand),
    /// Accounts: why one is blocked, by any of its names
    #[command(subcommand)]
    Accounts(cli::accounts::AccountsCommand),
    /// Directories (AD domain controllers): status and push sync ("devices" is deprecated)
    #[command(subcommand, visible_alias = "devices")]
    Directories(cli::directories::DirectoriesCommand),
    /// Databases of the agentless mode (list → PostgreSQL role): status and sync now
    #[command(subcommand)]
    Databases(cli::databases::DatabasesCommand),
    /// List → AD group mappings
    #[command(subcommand)]
    Mappings(cli::directories::MappingsCommand),
    /// Lookup data sets filled from LDAP ("datasets" is deprecated)
    #[command(subcommand, name = "data-sets", visible_alias = "datasets")]
    DataSets(cli::data_sets::DataSetsCommand),
    /// API keys for the HTTP gateway
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Incidents and the responses run on them
    #[command(subcommand)]
    Incidents(cli::incidents::IncidentsCommand),
    /// Alerts for automated-response rules
    #[command(subcommand)]
    Alerts(cli::incidents::AlertsCommand),
    /// Sync out to an Imperva MX through its Open API
    #[command(subcommand)]
    Imperva(cli::imperva::ImpervaCommand),
    /// The store itself: migrate a SQLite store into PostgreSQL
    #[command(subcommand)]
    Store(cli::store::StoreCommand),
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_json);
    match dispatch(args) {
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

fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    let source = cli::Source::new(args.config, args.store);
    match args.command {
        Command::Serve { listen } => cli::serve::run(source, listen),
        Command::CheckConfig { path } => cli::check_config::run(source, path),
        Command::Decide(a) => cli::decide::run(&source, &a),
        Command::DecisionLog(a) => cli::decision_log::run(&source, &a),
        Command::Lists(c) => cli::lists::run(&source, c),
        Command::Accounts(c) => cli::accounts::run(&source, c),
        Command::Directories(c) => cli::directories::run(&source, c),
        Command::Databases(c) => cli::databases::run(&source, c),
        Command::Mappings(c) => cli::directories::mappings(&source, c),
        Command::DataSets(c) => cli::data_sets::run(&source, c),
        Command::Keys(c) => cli::keys::run(&source, c),
        Command::Incidents(c) => cli::incidents::incidents(&source, c),
        Command::Alerts(c) => cli::incidents::alerts(&source, c),
        Command::Imperva(c) => cli::imperva::run(&source, c),
        Command::Store(c) => cli::store::run(&source, c),
    }
}
