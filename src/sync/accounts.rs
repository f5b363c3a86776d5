//! A principal resolved to its directory entry: which directory to ask (the one serving the
//! principal's domain, or every one when the rules cannot tell the domain), and what it
//! answered. The entry's objectGUID becomes the account's key (`base::account`), every name
//! it has becomes the account's names.
//!
//! The use cases that put principals on lists (`operations::accounts`) ask here once, when
//! the principal enters; the push asks again by objectGUID on every run, which is how a
//! rename or a move reaches the account. [`record_rows`] is where a pull or an MX push says
//! which listed accounts its rows landed (the `account_surfaces` a provenance reads).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::base::account::Account;
use crate::base::identity::Identity;
use crate::base::principal::Principal;
use crate::base::time::now_ms;
use crate::directory::{Directory, DirectoryClient, DirectoryError};
use crate::store::{Store, StoreError, SurfaceEvent, SurfaceKind};

/// The longest a principal entering warden waits for its directory: past it, the domain
/// rules list it for now (containment never waits on a directory outage) and the push asks
/// again.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// What the directories said about a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// An entry answered to it.
    Found(Account),
    /// The directories asked (by name) have no entry answering to it.
    NotFound(Vec<String>),
    /// Several entries answer to it in this directory.
    Ambiguous(String),
    /// A directory that could have known could not be asked (why).
    Unreachable(String),
    /// No configured directory serves its domain: only the domain rules can place it.
    NoDirectory,
}

/// How the lookup reaches a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// The directory's shared connection (inside the running server's runtime).
    Shared,
    /// A connection of its own, closed afterwards (a runtime made for this lookup alone,
    /// which the shared connection must not be bound to).
    Own,
}

/// The directories that may know `principal`: the ones serving its domain when the rules
/// tell it, else all (a bare name without a default domain, a DN, an unplaced UPN).
fn candidates<'a>(
    directories: &'a [Arc<Directory>],
    identity: &Identity,
    principal: &str,
) -> Vec<&'a Arc<Directory>> {
    match identity.domain_of(principal) {
        Some(domain) => directories
            .iter()
            .filter(|d| d.netbios().is_some_and(|n| n.eq_ignore_ascii_case(&domain)))
            .collect(),
        None => directories.iter().collect(),
    }
}

/// Asks directories for the entries principals name, over one connection per directory.
pub struct Resolver<'a> {
    directories: &'a [Arc<Directory>],
    identity: &'a Identity,
    connection: Connection,
    /// The connections of their own made so far ([`Connection::Own`]), by directory.
    own: HashMap<String, Arc<DirectoryClient>>,
}

impl<'a> Resolver<'a> {
    pub fn new(
        directories: &'a [Arc<Directory>],
        identity: &'a Identity,
        connection: Connection,
    ) -> Resolver<'a> {
        Resolver {
            directories,
            identity,
            connection,
            own: HashMap::new(),
        }
    }

    /// Asks the directories that may know `principal` for its entry (the first that
    /// answers).
    pub async fn lookup(&mut self, principal: &Principal) -> Lookup {
        let asked = candidates(self.directories, self.identity, principal.as_str());
        if asked.is_empty() {
            return Lookup::NoDirectory;
        }
        let mut unreachable = None;
        let mut not_found = Vec::new();
        for directory in asked {
            if directory.recently_unreachable() {
                unreachable = Some(format!(
                    "directory {} could not be reached moments ago",
                    directory.name()
                ));
                continue;
            }
            let answer = tokio::time::timeout(LOOKUP_TIMEOUT, self.ask(directory, principal))
                .await
                .unwrap_or_else(|_| {
                    Err(DirectoryError::Timeout {
                        op: "resolve",
                        target: directory.config().base_dn.clone(),
                        timeout: LOOKUP_TIMEOUT,
                    })
                });
            let reached = !answer.as_ref().is_err_and(DirectoryError::is_transient);
            directory.note_reachable(reached);
            if !reached {
                // The connection may be stuck mid-operation: the next lookup makes a new one.
                match self.connection {
                    Connection::Shared => directory.reset().await,
                    Connection::Own => {
                        self.own.remove(directory.name());
                    }
                }
            }
            match answer {
                Ok(Some(entry)) => return Lookup::Found(directory.account_of(&entry)),
                Ok(None) => not_found.push(directory.name().to_owned()),
                Err(DirectoryError::AmbiguousPrincipal { .. }) => {
                    return Lookup::Ambiguous(directory.name().to_owned());
                }
                Err(e) => {
                    tracing::warn!(directory = directory.name(), principal = %principal, error = %e, "cannot resolve a principal in its directory");
                    unreachable = Some(format!("directory {}: {e}", directory.name()));
                }
            }
        }
        match unreachable {
            Some(why) => Lookup::Unreachable(why),
            None => Lookup::NotFound(not_found),
        }
    }

    async fn client(
        &mut self,
        directory: &Directory,
    ) -> Result<Arc<DirectoryClient>, DirectoryError> {
        match self.connection {
            Connection::Shared => directory.client().await,
            Connection::Own => {
                if let Some(c) = self.own.get(directory.name()).filter(|c| !c.is_closed()) {
                    return Ok(Arc::clone(c));
                }
                let c = Arc::new(DirectoryClient::connect(directory.settings()?).await?);
                self.own.insert(directory.name().to_owned(), Arc::clone(&c));
                Ok(c)
            }
        }
    }

    async fn ask(
        &mut self,
        directory: &Directory,
        principal: &Principal,
    ) -> Result<Option<crate::directory::Account>, DirectoryError> {
        let client = self.client(directory).await?;
        client
            .resolve_account(
                &directory.config().base_dn,
                principal.as_str(),
                directory.netbios(),
                self.identity,
            )
            .await
    }
}

/// Records that the rows keyed `landed` (the names they hold) reached a surface — an LDAP
/// data set a pull applied, an MX data set a push sent — and that those keyed `lifted` left
/// it: for the listed accounts known by those names. Costs what changed, not the set's size.
pub fn record_rows(
    store: &Store,
    surface: SurfaceKind,
    target: &str,
    landed: &[String],
    lifted: &[String],
) -> Result<(), StoreError> {
    let at = now_ms();
    let mut events = Vec::new();
    for (names, state) in [(landed, "landed"), (lifted, "lifted")] {
        if names.is_empty() {
            continue;
        }
        for key in store.account_keys_named(names)? {
            events.push(SurfaceEvent {
                account_key: key,
                surface,
                target: target.to_owned(),
                state,
                detail: match state {
                    "landed" => "a row holds one of its names".to_owned(),
                    _ => "no row holds any of its names any more".to_owned(),
                },
                at_ms: at,
            });
        }
    }
    store.record_surfaces(&events)
}
