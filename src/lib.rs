//! warden contains a suspicious user at the press of a button.
//!
//! The data flows one way (docs/ARCHITECTURE.md draws it):
//!
//! 1. **Respond** — an analyst or an alert rule puts a principal on a durable *user list*
//!    through [`operations`] (validated once, audited in the same store transaction).
//! 2. **Push** — a list mapped to an Active Directory group is reconciled into it
//!    ([`sync::push`], run by [`services`]).
//! 3. **Pull** — a *lookup data set* ([`model::dataset`]) is filled from its source: a local
//!    list, a static file, the data API, or an LDAP query whose attribute mappings
//!    ([`model::pattern`]) turn `alice@corp.example.test` into `corp\alice` ([`sync::pull`]).
//! 4. **Decide** — policies ([`model::policy`]) are compiled with the data sets into one
//!    immutable snapshot, hot-swapped in the [`decide`] engine by the [`runtime`];
//!    [`runtime::Warden::decide`] answers allow/block with hash lookups and records the side
//!    effects (counters, followed actions).
//! 5. **Serve** — decisions in-process or over the HTTP gateway ([`http`]).
//! 6. **Sync out** — data sets pushed to an Imperva MX ([`sync::imperva`], the *MX push*).
//!
//! # Layout
//!
//! Layers, bottom first; each imports only from the ones above it in this list (checked by
//! `tests/it/layers.rs`):
//!
//! - [`base`]: vocabulary — actor, clock and durations, severities, JSON escaping, retry, DNs
//!   and LDAP escaping, principals, secrets.
//! - [`model`]: patterns, data sets and membership indexes, policies; pure.
//! - [`config`]: TOML validated into a compiled [`config::Config`], every error with its key
//!   path.
//! - [`store`]: SQLite state — lists and members, incidents, keys, the audit log, last good
//!   rows; [`store::Store::audited`].
//! - [`directory`]: the LDAP client and [`directory::Directory`], one configured directory.
//! - [`outbound`] (HTTPS client for the MX and webhooks) and [`auth`] (API keys).
//! - [`decide`]: [`decide::Snapshot`], [`decide::Engine`], the followed-action queue.
//! - [`metrics`]: counters and their Prometheus text.
//! - [`events`]: SIEM events (CEF, OCSF) through durable queues to syslog over TLS or files,
//!   and the decision log.
//! - [`runtime`]: [`runtime::Warden`], which builds data sets from sources and publishes
//!   snapshots.
//! - [`sync`]: one push, pull or MX push run; directory status.
//! - [`operations`]: every use case that changes warden, once.
//! - [`services`]: background loops under one [`services::Supervisor`].
//! - [`front`]: the front-end kit — one answer, the session registry and its re-check, the
//!   listener, the ending, the aggregated refusals.
//! - [`gate`]: the PostgreSQL gate (a front end; below [`http`], which shows its sessions).
//! - [`http`]: the hyper gateway.
//!
//! The `warden` binary (`src/main.rs`, `src/cli/`) is a thin adapter over this library.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::await_holding_lock)]

// In layer order, bottom first (a blank line between layers keeps rustfmt from sorting them).
pub mod base;

pub mod model;

pub mod config;

pub mod store;

pub mod directory;

pub mod auth;
pub mod outbound;

pub mod decide;

pub mod metrics;

pub mod events;

pub mod runtime;

pub mod sync;

pub mod operations;

pub mod services;

pub mod front;

pub mod gate;
pub mod http;
pub mod mysql;

pub mod server;
