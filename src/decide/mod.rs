//! Decide: policies compiled with data sets into one immutable snapshot, hot-swapped through
//! one `ArcSwap` ([`Engine`]), and the decision side of followed actions ([`Dispatcher`]).
//!
//! [`Snapshot::decide`] is pure: hash lookups, no side effects. Every caller that serves a
//! decision to someone (HTTP, the CLI, the PostgreSQL gate, a library user) goes through
//! `runtime::Warden::decide`, which adds the side effects — counters and followed actions — in
//! one place.

mod engine;
mod followed;

pub use engine::{
    CompileError, CompiledPolicy, DataSetState, Decision, Engine, IndexCache, Outcome, PolicyMatch,
    Published, Request, Snapshot,
};
pub use followed::{DEDUP_MAX, DecisionEvent, Dispatcher, Offered};
