//! What a directory remembers between pulls of one data set: the DirSync cookie (or the groups' `uSNChanged`) with the DC
//! it came from, the rows by member DN that the changes apply to, and the chain of nested
//! groups last seen. Kept in memory only: after a restart (or a reload) the cookie is lost
//! and the next pull is a full one.

use std::collections::HashMap;
use std::time::Instant;

use super::dirsync::DcIdentity;
use super::nested::GroupChain;
use crate::model::dataset::Row;

/// The incremental state of one data set.
#[derive(Debug, Clone)]
pub struct PullState {
    /// The DirSync cookie the next changes are asked from; `None` where DirSync is not
    /// available, and then `group_usns` says whether anything changed.
    pub cookie: Option<Vec<u8>>,
    /// Each chain group's `uSNChanged` at the last pull, in chain order.
    pub group_usns: Vec<u64>,
    /// The DC the cookie was taken from.
    pub dc: DcIdentity,
    /// The groups whose `member` changes are followed.
    pub chain: GroupChain,
    /// The mapped row of every entry the data set's query matches, by lower-cased DN.
    pub rows: HashMap<String, Row>,
    /// When the last full pull ran.
    pub last_full: Instant,
    /// Incremental pulls applied since then.
    pub incremental_pulls: u64,
}
