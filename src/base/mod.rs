//! The vocabulary every layer above speaks, and nothing else: who acts ([`actor`]), what a
//! principal resolves to ([`account`]), the clock and durations
//! ([`time`]), severities ([`severity`]) and closed word lists ([`word`]), JSON string escaping
//! ([`json`]), retry with backoff ([`retry`]), distinguished names ([`dn`]) and LDAP escaping
//! ([`escape`]), principals ([`principal`]), which names are one account ([`identity`]), secrets
//! ([`secret`]) and certificate pins ([`fingerprint`]), and the bounded tally every aggregated
//! audit counts in ([`tally`]).
//!
//! Nothing here imports another warden module outside `base`: it is the bottom layer
//! (docs/ARCHITECTURE.md).

pub mod account;
pub mod actor;
pub mod dn;
pub mod escape;
pub mod fingerprint;
pub mod identity;
pub mod json;
pub mod principal;
pub mod retry;
pub mod secret;
pub mod severity;
pub mod tally;
pub mod time;
pub mod word;
