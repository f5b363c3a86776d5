//! LDAP client for Active Directory (and Samba AD): it owns everything that
//! talks to the directory. Connecting with TLS verified by default (LDAPS or
//! StartTLS; plain LDAP only on explicit opt-in) and a simple bind whose
//! password never reaches an error or a log; paged searches with attribute
//! range retrieval; reading large multi-valued attributes such as a group's
//! `member`; adding and removing `member` values in bounded, idempotent
//! batches; resolving list principals (`DOMAIN\user`, UPN, sAMAccountName,
//! DN) with escaped filters; and watching objects for changes with AD's
//! change-notification control, with a `uSNChanged` poll as the fallback; the chain of nested
//! groups below a group; and DirSync, the changes to groups' `member` since a cookie.
//! [`Directory`] is one configured directory: its connection, shared and
//! re-established after failures, and its principal → DN cache. RFC 4515 /
//! 4514 escaping and DN parsing live below, in [`crate::base`].
//!
//! Every network call is bounded: connecting by `connect_timeout`, each
//! request/response by `op_timeout`, a whole paged search by
//! `search_deadline`, and an unbind by [`CLOSE_TIMEOUT`]. Only the
//! change-notification searches run without a timeout, by design; a
//! heartbeat bounded by `op_timeout` checks their connection instead.

mod client;
mod dirsync;
mod entry;
mod error;
mod nested;
mod principal;
mod pull_state;
mod range;
mod server;
mod settings;
mod watch;

pub use client::{
    Account, CLOSE_TIMEOUT, DEFAULT_MEMBER_BATCH, DirectoryClient, MAX_MEMBER_BATCH, MemberChange,
    MemberFailure,
};
pub use dirsync::{
    DIRSYNC_OID, DcIdentity, DirSyncParseError, DirSyncResponse, MAX_COOKIE, MemberChanges,
    RootDse, encode_request as encode_dirsync_request, parse_response as parse_dirsync_response,
};
pub use entry::{Entry, Scope};
pub use error::{DirectoryError, result_code_name};
pub use nested::{GroupChain, MAX_CHAIN_GROUPS, MAX_NESTING_DEPTH};
pub use principal::UserLookup;
pub use pull_state::PullState;
pub use server::{DN_CACHE_TTL, Directory, LOOKUP_BACKOFF, REMOVALS_EXPLAIN_FOR, ShrinkWindow};
pub(crate) use settings::tls_config;
pub use settings::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_OP_TIMEOUT, DEFAULT_PAGE_SIZE, DEFAULT_SEARCH_DEADLINE,
    DirectorySettings, MAX_PAGE_SIZE,
};
pub use watch::{
    DEFAULT_WATCH_BACKOFF_INITIAL, DEFAULT_WATCH_BACKOFF_MAX, DEFAULT_WATCH_HEARTBEAT,
    MAX_NOTIFICATIONS_PER_CONNECTION, NOTIFICATION_OID, Watch, WatchEvent, WatchOptions, watch,
    watch_with,
};
