//! A configured directory (server): its configuration, one shared connection re-established
//! after failures, the principal → DN cache, the removals warden's own pushes made, and the
//! domain it serves — with the domains other directories serve, so that a name of another
//! domain is routed there and never looked up here (`PARTNER\jsmith` is not CORP's jsmith).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::nested::GroupChain;
use super::pull_state::PullState;
use super::{Account, DirectoryClient, DirectoryError, DirectorySettings};
use crate::base::identity::{Identity, dns_of_base_dn};
use crate::config::DirectoryConfig;
use dashmap::DashMap;

/// How long a resolved principal → DN stays cached. Renames and deletions show up within this.
pub const DN_CACHE_TTL: Duration = Duration::from_secs(600);

/// How long removals by warden's own push explain a shrink of the group's data set.
pub const REMOVALS_EXPLAIN_FOR: Duration = Duration::from_secs(600);

/// The shrink guard's memory of one data set: when its window started, the most rows the set
/// had since, and the keys removed since (and not back).
#[derive(Debug, Clone)]
pub struct ShrinkWindow {
    pub started: Instant,
    pub peak_rows: usize,
    pub removed: HashSet<String>,
}

impl ShrinkWindow {
    pub fn new(rows: usize) -> ShrinkWindow {
        ShrinkWindow {
            started: Instant::now(),
            peak_rows: rows,
            removed: HashSet::new(),
        }
    }
}

/// A configured directory and its connection.
pub struct Directory {
    config: DirectoryConfig,
    // A tokio Mutex: connecting awaits under the lock so that concurrent callers share one
    // connection attempt instead of racing several binds.
    client: tokio::sync::Mutex<Option<Arc<DirectoryClient>>>,
    dn_cache: DashMap<String, (Account, Instant)>,
    /// The rules names are placed by, and the NetBIOS domain they place this directory in
    /// (from its base DN's `DC=` labels), if any.
    identity: Arc<Identity>,
    netbios: Option<String>,
    /// The NetBIOS domains other configured directories serve (not this one's).
    other_domains: Vec<String>,
    /// The accounts warden's own pushes removed from each group (by lower-cased group DN; their
    /// canonical names, folded) and when: a data set on that group may lose those keys without
    /// the shrink guard counting them.
    removals: DashMap<String, (HashSet<String>, Instant)>,
    /// The shrink guard's window per data set on this directory.
    shrink: DashMap<String, ShrinkWindow>,
    /// The incremental state per data set on this directory (its own cookies).
    pulls: DashMap<String, PullState>,
    /// The chain of nested groups last seen per data set.
    chains: DashMap<String, GroupChain>,
    /// When a principal lookup last could not reach the directory: lookups of principals
    /// entering warden skip it for [`LOOKUP_BACKOFF`] after, so that containment during an
    /// outage is not one timeout per principal (the rules list them meanwhile; the push asks
    /// again).
    unreachable_at: parking_lot::Mutex<Option<Instant>>,
}

/// How long lookups skip a directory that could not be reached.
pub const LOOKUP_BACKOFF: Duration = Duration::from_secs(30);

impl Directory {
    pub fn new(config: DirectoryConfig, identity: Arc<Identity>) -> Directory {
        let netbios = Directory::domain_served(&config, &identity);
        Directory {
            config,
            identity,
            netbios,
            other_domains: Vec::new(),
            client: tokio::sync::Mutex::new(None),
            dn_cache: DashMap::new(),
            removals: DashMap::new(),
            shrink: DashMap::new(),
            pulls: DashMap::new(),
            chains: DashMap::new(),
            unreachable_at: parking_lot::Mutex::new(None),
        }
    }

    /// Records that a lookup could not reach the directory (now), or, with `false`, that one
    /// did.
    pub fn note_reachable(&self, reachable: bool) {
        *self.unreachable_at.lock() = (!reachable).then(Instant::now);
    }

    /// Whether a lookup could not reach the directory within the last [`LOOKUP_BACKOFF`].
    pub fn recently_unreachable(&self) -> bool {
        self.unreachable_at
            .lock()
            .is_some_and(|at| at.elapsed() < LOOKUP_BACKOFF)
    }

    /// The NetBIOS domain a directory serves: its configured `domain`, else the one the rules
    /// place its base DN's `DC=` labels in.
    pub fn domain_served(config: &DirectoryConfig, identity: &Identity) -> Option<String> {
        config.domain.clone().or_else(|| {
            dns_of_base_dn(&config.base_dn).and_then(|dns| identity.netbios_for_dns(&dns))
        })
    }

    /// This directory, knowing the domains the other configured directories serve.
    pub fn with_other_domains(mut self, mut domains: Vec<String>) -> Directory {
        domains.retain(|d| {
            !self
                .netbios
                .as_deref()
                .is_some_and(|own| own.eq_ignore_ascii_case(d))
        });
        domains.sort_unstable();
        domains.dedup();
        self.other_domains = domains;
        self
    }

    pub fn other_domains(&self) -> &[String] {
        &self.other_domains
    }

    /// The domain `principal` belongs to when that is another directory's and not this one's:
    /// such a name is that directory's to resolve, never looked up here. `None` for names of
    /// this domain and for names whose domain no other directory serves (looked up here as
    /// before; a `DOMAIN\user` of a domain that is not this one's still resolves to nothing).
    pub fn routed_elsewhere(&self, principal: &str) -> Option<String> {
        let domain = self.identity.domain_of(principal)?;
        let here = self
            .netbios
            .as_deref()
            .is_some_and(|own| own.eq_ignore_ascii_case(&domain));
        let there = self
            .other_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&domain));
        (!here && there).then_some(domain)
    }

    /// Takes the incremental state of data set `name`: a pull that fails leaves none behind,
    /// so the next one is full.
    pub fn take_pull_state(&self, name: &str) -> Option<PullState> {
        self.pulls.remove(name).map(|(_, s)| s)
    }

    pub fn put_pull_state(&self, name: &str, state: PullState) {
        self.pulls.insert(name.to_owned(), state);
    }

    /// Records the chain of nested groups of data set `name`; returns the one it replaces.
    pub fn note_chain(&self, name: &str, chain: GroupChain) -> Option<GroupChain> {
        self.chains.insert(name.to_owned(), chain)
    }

    /// The chain of nested groups last seen for data set `name`.
    pub fn chain(&self, name: &str) -> Option<GroupChain> {
        self.chains.get(name).map(|c| c.clone())
    }

    /// Credits the shrink guard of data sets on `group_dn` with the accounts warden's own
    /// push removed from it (their canonical names, folded): those keys leaving the set are
    /// explained, any other key is not.
    pub fn credit_removals(&self, group_dn: &str, names: HashSet<String>) {
        if names.is_empty() {
            return;
        }
        let mut entry = self
            .removals
            .entry(group_dn.to_ascii_lowercase())
            .or_insert_with(|| (HashSet::new(), Instant::now()));
        entry.0.extend(names);
        entry.1 = Instant::now();
    }

    /// Takes the removals credited for `group_dn` within [`REMOVALS_EXPLAIN_FOR`].
    pub fn take_removals(&self, group_dn: &str) -> HashSet<String> {
        self.removals
            .remove(&group_dn.to_ascii_lowercase())
            .filter(|(_, (_, at))| at.elapsed() < REMOVALS_EXPLAIN_FOR)
            .map(|(_, (names, _))| names)
            .unwrap_or_default()
    }

    /// The shrink guard's window of data set `name`, if one is open.
    pub fn shrink_window(&self, name: &str) -> Option<ShrinkWindow> {
        self.shrink.get(name).map(|w| w.clone())
    }

    pub fn set_shrink_window(&self, name: &str, window: ShrinkWindow) {
        self.shrink.insert(name.to_owned(), window);
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// Connection settings, reading the bind password now (so a rotated secret file is used on
    /// the next connection).
    pub fn settings(&self) -> Result<DirectorySettings, DirectoryError> {
        let c = &self.config;
        let password = c
            .bind_password
            .read()
            .map_err(|source| DirectoryError::BindPassword { source })?;
        let mut s = DirectorySettings::new(&c.url, &c.bind_dn, password);
        s.starttls = c.starttls;
        s.ca_file = c.ca_file.clone();
        s.allow_insecure = c.allow_insecure;
        s.connect_timeout = c.connect_timeout;
        s.op_timeout = c.timeout;
        s.page_size = c.page_size;
        s.search_deadline = c.timeout.saturating_mul(10);
        Ok(s)
    }

    /// The shared connection, connecting (and binding) if there is none or it closed.
    pub async fn client(&self) -> Result<Arc<DirectoryClient>, DirectoryError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let settings = self.settings()?;
        let client = DirectoryClient::connect(settings).await?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Drops the connection so the next call reconnects (after a connection failure).
    pub async fn reset(&self) {
        self.client.lock().await.take();
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The NetBIOS domain of this directory, where the identity rules place it.
    pub fn netbios(&self) -> Option<&str> {
        self.netbios.as_deref()
    }

    /// Every name the account answers to, canonical first (empty without a sAMAccountName
    /// or a known domain).
    pub fn account_names(&self, account: &Account) -> Vec<String> {
        match (&self.netbios, &account.sam_account_name) {
            (Some(netbios), Some(sam)) => {
                self.identity
                    .account_names(netbios, sam, account.user_principal_name.as_deref())
            }
            _ => account.user_principal_name.iter().cloned().collect(),
        }
    }

    /// The account an entry of this directory is: its objectGUID the key (where the entry has
    /// one), the names [`Directory::account_names`] gives, the DN and objectSid.
    pub fn account_of(&self, entry: &Account) -> crate::base::account::Account {
        crate::base::account::Account::of_entry(
            self.name(),
            entry.guid.as_deref(),
            entry.sid.clone(),
            &entry.dn,
            self.account_names(entry),
        )
    }

    /// A cached account for a principal key, if fresh.
    pub fn cached_account(&self, key: &str) -> Option<Account> {
        self.dn_cache
            .get(key)
            .filter(|e| e.1.elapsed() < DN_CACHE_TTL)
            .map(|e| e.0.clone())
    }

    pub fn cache_account(&self, key: String, account: Account) {
        self.dn_cache.insert(key, (account, Instant::now()));
    }

    /// Forgets a cached resolution (its DN is gone: renamed, moved or deleted).
    pub fn evict(&self, key: &str) {
        self.dn_cache.remove(key);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Config;

    fn directories(partner_domain: &str) -> (Directory, Directory) {
        let config = Config::parse(
            &format!(
                r#"
[[domains]]
netbios = "CORP"
dns = "corp.example.test"
default = true
[[domains]]
netbios = "PARTNER"
dns = "partner.example.test"
[[directories]]
name = "corp"
url = "ldaps://127.0.0.1"
bind_dn = "CN=a"
bind_password_env = "P"
base_dn = "DC=corp,DC=example,DC=test"
[[directories]]
name = "partner"
url = "ldaps://127.0.0.2"
bind_dn = "CN=a"
bind_password_env = "P"
base_dn = "OU=x,DC=partner,DC=example,DC=test"
{partner_domain}
"#
            ),
            "t",
            std::path::Path::new("."),
        )
        .unwrap();
        let make = |i: usize, other: usize| {
            let other = Directory::domain_served(&config.directories[other], &config.identity);
            Directory::new(config.directories[i].clone(), Arc::clone(&config.identity))
                .with_other_domains(other.into_iter().collect())
        };
        (make(0, 1), make(1, 0))
    }

    /// Each name goes to the directory of its domain: CORP's never looks up PARTNER's names
    /// (and the other way round); names whose domain no other directory serves stay here.
    #[test]
    fn names_are_routed_to_their_domain_s_directory() {
        let (corp, partner) = directories(r#"domain = "PARTNER""#);
        assert_eq!(corp.netbios(), Some("CORP"));
        assert_eq!(partner.netbios(), Some("PARTNER"));
        for name in [
            r"PARTNER\jsmith",
            "jsmith@partner.example.test",
            r"partner\bob",
        ] {
            assert_eq!(
                corp.routed_elsewhere(name).as_deref(),
                Some("PARTNER"),
                "{name}"
            );
            assert_eq!(partner.routed_elsewhere(name), None, "{name}");
        }
        // A bare name is the default domain's.
        for name in [r"CORP\jsmith", "jsmith@corp.example.test", "jsmith"] {
            assert_eq!(corp.routed_elsewhere(name), None, "{name}");
            assert_eq!(
                partner.routed_elsewhere(name).as_deref(),
                Some("CORP"),
                "{name}"
            );
        }
        // No directory serves OTHER, and a DN names its place itself.
        for name in [r"OTHER\x", "CN=x,DC=partner,DC=example,DC=test"] {
            assert_eq!(corp.routed_elsewhere(name), None, "{name}");
            assert_eq!(partner.routed_elsewhere(name), None, "{name}");
        }
        // Without `domain`, the base DN's labels place a directory as before.
        let (_, derived) = directories("");
        assert_eq!(derived.netbios(), Some("PARTNER"));
        assert!(derived.config().domain.is_none());
    }
}
