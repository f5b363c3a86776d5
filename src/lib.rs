//! warden contains a suspicious user at the press of a button.
//!
//! The data flows one way:
//!
//! 1. **Respond** — an analyst puts a principal on a durable *user list* ([`store`]), directly
//!    or as a response to an incident; alerts can do it through automated-response rules, and
//!    members leave on their expiry ([`respond`]).
//! 2. **Push** — a list mapped to an Active Directory group is reconciled into it.
//! 3. **Pull** — a *lookup data set* ([`dataset`]) is filled from its source: a local list, a
//!    static file, the data API, or an LDAP query whose attribute mappings ([`pattern`]) turn
//!    `alice@corp.example.test` into `corp\alice`.
//! 4. **Decide** — policies ([`policy`]) are compiled with the data sets into one immutable
//!    snapshot, hot-swapped in the [`engine`]; `decide` answers allow/block with hash lookups.
//! 5. **Serve** — decisions in-process or over the HTTP gateway ([`http`]); followed actions
//!    (log, webhook, syslog) run off the decision path ([`actions`]).
//! 6. **Sync out** — data sets pushed to an Imperva MX ([`sync::imperva`]).
//!
//! # Layout
//!
//! - [`config`]: the TOML model, validated into a compiled [`config::Config`] with every error
//!   named by its key path.
//! - [`pattern`]: match/substitution patterns and attribute mappings.
//! - [`dataset`]: columns, key, case folding, rows, membership indexes.
//! - [`policy`]: criteria, operations, actions, severities, service scopes.
//! - [`engine`]: [`engine::Snapshot`] and [`engine::Engine`] (`ArcSwap`, `decide`,
//!   `decide_batch`).
//! - [`store`]: SQLite state — lists and members, incidents, keys, the audit log.
//! - [`respond`]: incidents, responses, alert rules, the expiry sweeper.
//! - [`runtime`]: [`runtime::Warden`], which builds data sets from sources and publishes
//!   snapshots.
//! - [`http`]: the hyper server.
//! - [`principal`], [`secret`], [`time`]: small vocabulary types.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::await_holding_lock)]

pub mod auth;
pub mod base;
pub mod config;
pub mod decide;
pub mod denials;
pub mod directory;
pub mod http;
pub mod metrics;
pub mod model;
pub mod operations;
pub mod outbound;
pub mod runtime;
pub mod services;
pub mod store;
pub mod sync;
