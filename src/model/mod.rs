//! The pure model, with no I/O: match/substitution patterns and attribute mappings
//! ([`pattern`]), data sets with their membership indexes ([`dataset`]), and policies
//! ([`policy`]). The configuration compiles into these; the decision engine evaluates them.

pub mod dataset;
pub mod pattern;
pub mod policy;
