//! The connected client: connect + bind, paged search with range completion,
//! multi-valued reads, `member` modification in batches, existence checks,
//! principal resolution and the `uSNChanged` poll.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Mod, SearchOptions};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};

use super::entry::{Entry, Scope, parse_entry};
use super::error::{DirectoryError, result_code_name, scrub};
use super::principal::UserLookup;
use super::range::{RangedAttr, parse_range_attr, range_request, same_attr};
use super::settings::{DirectorySettings, Endpoint, tls_config};
use crate::base::account::{guid_bytes, guid_string, sid_string};
use crate::base::dn::parse_dn;
use crate::base::identity::Identity;
use crate::base::principal::Principal;

/// Default `batch` for [`DirectoryClient::modify_members`].
pub const DEFAULT_MEMBER_BATCH: usize = 500;
/// Largest accepted `batch` for [`DirectoryClient::modify_members`].
pub const MAX_MEMBER_BATCH: usize = 5000;
/// Bound on the unbind sent by [`DirectoryClient::close`].
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Slack added to our own hard timers over ldap3's, so ldap3's (which also
/// scrubs its request bookkeeping) normally fires first.
const TIMER_SLACK: Duration = Duration::from_secs(1);
/// Upper bound on `attr;range=` follow-up requests for one attribute
/// (1500 values each on AD: 15 million values).
const MAX_RANGE_ROUNDS: usize = 10_000;
/// The only attribute `modify_members` ever changes.
const MEMBER: &str = "member";

const RC_SUCCESS: u32 = 0;
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
const RC_COMPARE_FALSE: u32 = 5;
const RC_COMPARE_TRUE: u32 = 6;
const RC_NO_SUCH_ATTRIBUTE: u32 = 16;
const RC_CONSTRAINT_VIOLATION: u32 = 19;
const RC_ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;
const RC_INVALID_ATTRIBUTE_SYNTAX: u32 = 21;
const RC_NO_SUCH_OBJECT: u32 = 32;
const RC_INVALID_DN_SYNTAX: u32 = 34;
const RC_INVALID_CREDENTIALS: u32 = 49;
const RC_UNWILLING_TO_PERFORM: u32 = 53;
const RC_ENTRY_ALREADY_EXISTS: u32 = 68;

/// A bound connection to the directory.
///
/// Methods take `&self`: ldap3 multiplexes operations on one connection, so
/// an `Arc<DirectoryClient>` can be shared by tasks. Dropping the client
/// closes the connection.
pub struct DirectoryClient {
    settings: Arc<DirectorySettings>,
    url: String,
    ldap: Ldap,
    driver: JoinHandle<()>,
}

impl std::fmt::Debug for DirectoryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryClient")
            .field("url", &self.url)
            .field("bind_dn", &self.settings.bind_dn)
            .finish_non_exhaustive()
    }
}

impl Drop for DirectoryClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What [`DirectoryClient::modify_members`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberChange {
    /// Values added.
    pub added: usize,
    /// Values that were already members (idempotent adds).
    pub already_present: usize,
    /// Values removed.
    pub removed: usize,
    /// Values that were not members (idempotent removes).
    pub already_absent: usize,
    /// Values the server refused one by one, after their batch failed.
    pub failed: Vec<MemberFailure>,
}

/// One `member` value the server refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberFailure {
    /// The member DN.
    pub member: String,
    /// True for an add, false for a remove.
    pub add: bool,
    /// LDAP result code.
    pub code: u32,
    /// The server's diagnostic message.
    pub message: String,
}

/// What a resolution reads of a user entry.
const ACCOUNT_ATTRS: &[&str] = &[
    "sAMAccountName",
    "userPrincipalName",
    "objectGUID",
    "objectSid",
];

/// A user entry a principal resolved to: its DN, the names it answers to, and the objectGUID
/// that stays the same through renames and moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The DN as the server spells it.
    pub dn: String,
    pub sam_account_name: Option<String>,
    pub user_principal_name: Option<String>,
    /// objectGUID in its string form (`base::account::guid_string`).
    pub guid: Option<String>,
    /// objectSid in its string form (`S-1-5-21-…`).
    pub sid: Option<String>,
}

impl Account {
    fn of(entry: Entry) -> Account {
        Account {
            sam_account_name: entry.first("sAMAccountName").map(str::to_owned),
            user_principal_name: entry.first("userPrincipalName").map(str::to_owned),
            guid: entry.raw("objectGUID").and_then(|b| guid_string(&b)),
            sid: entry.raw("objectSid").and_then(|b| sid_string(&b)),
            dn: entry.dn,
        }
    }
}

impl DirectoryClient {
    /// Connects and binds.
    ///
    /// `ldaps://` and StartTLS verify the server certificate against the
    /// system roots plus `ca_file`; plain `ldap://` is refused unless
    /// `allow_insecure` (then a warning is logged). TCP connect, StartTLS and
    /// the handshake are bounded by `connect_timeout`, the bind by `op_timeout`.
    pub async fn connect(
        settings: impl Into<Arc<DirectorySettings>>,
    ) -> Result<DirectoryClient, DirectoryError> {
        let settings: Arc<DirectorySettings> = settings.into();
        let Endpoint { ldaps, url } = settings.endpoint()?;
        let mut conn_settings = LdapConnSettings::new().set_conn_timeout(settings.connect_timeout);
        if ldaps || settings.starttls {
            let ca = settings.ca_file.clone();
            let config = tokio::task::spawn_blocking(move || tls_config(ca.as_deref()))
                .await
                .map_err(|e| DirectoryError::Settings {
                    field: "ca_file",
                    reason: format!("loading certificates failed: {e}"),
                })??;
            conn_settings = conn_settings
                .set_config(config)
                .set_starttls(settings.starttls && !ldaps);
        } else if settings.allow_insecure {
            tracing::warn!(
                url = %url,
                bind_dn = %settings.bind_dn,
                "INSECURE: plain LDAP without TLS (allow_insecure = true); the bind password \
                 and all directory data cross the network unencrypted"
            );
        } else {
            return Err(DirectoryError::InsecureRefused { url });
        }

        let connecting = LdapConnAsync::with_settings(conn_settings, &url);
        let (conn, mut ldap) =
            match timeout(settings.connect_timeout + TIMER_SLACK, connecting).await {
                Err(_) | Ok(Err(LdapError::Timeout { .. })) => {
                    return Err(DirectoryError::ConnectTimeout {
                        url,
                        timeout: settings.connect_timeout,
                    });
                }
                Ok(Err(source)) => {
                    return Err(DirectoryError::Connect {
                        url,
                        source: Box::new(source),
                    });
                }
                Ok(Ok(pair)) => pair,
            };
        let driver_url = url.clone();
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(url = %driver_url, error = %e, "LDAP connection ended");
            }
        });
        let client = DirectoryClient {
            settings: settings.clone(),
            url: url.clone(),
            ldap: ldap.clone(),
            driver,
        };

        let bind_dn = settings.bind_dn.as_str();
        let password = settings.bind_password.expose();
        ldap.with_timeout(settings.op_timeout);
        let res = bounded(
            "bind",
            bind_dn,
            settings.op_timeout,
            ldap.simple_bind(bind_dn, password),
        )
        .await?;
        match res.rc {
            RC_SUCCESS => Ok(client),
            RC_INVALID_CREDENTIALS => Err(DirectoryError::Bind {
                url,
                bind_dn: bind_dn.to_owned(),
                message: format!("invalid credentials for {bind_dn}"),
                code: res.rc,
            }),
            rc => Err(DirectoryError::Bind {
                url,
                bind_dn: bind_dn.to_owned(),
                message: format!(
                    "server refused the bind: {rc} ({}){}",
                    result_code_name(rc),
                    if res.text.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", scrub(&res.text, password))
                    }
                ),
                code: rc,
            }),
        }
    }

    /// The settings this client was made from.
    pub fn settings(&self) -> &Arc<DirectorySettings> {
        &self.settings
    }

    /// The normalised server URL (`ldaps://host:636`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// True once the connection has closed; reconnect then.
    pub fn is_closed(&self) -> bool {
        self.ldap.clone().is_closed()
    }

    /// Unbinds (bounded by [`CLOSE_TIMEOUT`]) and closes the connection.
    pub async fn close(self) {
        let mut ldap = self.ldap.clone();
        let _ = timeout(CLOSE_TIMEOUT, ldap.unbind()).await;
    }

    /// A handle for a new operation, with `op_timeout` armed.
    pub(super) fn handle(&self) -> Ldap {
        let mut ldap = self.ldap.clone();
        ldap.with_timeout(self.settings.op_timeout);
        ldap
    }

    /// Searches with the Simple Paged Results control (`page_size` from the
    /// settings) and returns every entry.
    ///
    /// Each wait for a server message is bounded by `op_timeout`, the whole
    /// search (every page and range follow-up) by `search_deadline`; on
    /// expiry the search is abandoned. Referrals are dropped. Attributes that
    /// come back ranged (`memberOf;range=0-1499`) are completed with further
    /// reads and stored under their plain name. Any result other than success
    /// is an error: a partial result is never returned as complete.
    pub async fn search_paged(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<Entry>, DirectoryError> {
        let deadline = Instant::now() + self.settings.search_deadline;
        let mut entries = self
            .search_pages(base, scope, filter, attrs, deadline)
            .await?;
        for entry in &mut entries {
            self.complete_ranges(entry, deadline).await?;
        }
        Ok(entries)
    }

    async fn search_pages(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        deadline: Instant,
    ) -> Result<Vec<Entry>, DirectoryError> {
        const OP: &str = "search";
        let op_timeout = self.settings.op_timeout;
        let page_size = i32::try_from(self.settings.page_size).unwrap_or(1000);
        let attrs: Vec<String> = attrs.iter().map(|a| (*a).to_owned()).collect();
        let adapters: Vec<Box<dyn Adapter<'static, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(page_size)),
        ];
        let mut ldap = self.handle();
        let ldap_err = |source| ldap_error(OP, base, op_timeout, source);
        let mut stream = match timeout_at(
            deadline,
            ldap.streaming_search_with(adapters, base, scope.into(), filter, attrs),
        )
        .await
        {
            Err(_) => return Err(self.deadline_error(OP, base)),
            Ok(res) => res.map_err(ldap_err)?,
        };
        let mut entries = Vec::new();
        loop {
            let next = timeout_at(deadline, stream.next()).await;
            let item = match next {
                Ok(Ok(item)) => item,
                Ok(Err(e)) => {
                    let id = stream.ldap_handle().last_id();
                    let _ = stream.finish().await;
                    self.abandon(id).await;
                    return Err(ldap_err(e));
                }
                Err(_) => {
                    let id = stream.ldap_handle().last_id();
                    let _ = stream.finish().await;
                    self.abandon(id).await;
                    return Err(self.deadline_error(OP, base));
                }
            };
            let Some(re) = item else { break };
            let entry = parse_entry(re).map_err(|reason| DirectoryError::Protocol {
                op: OP,
                target: base.to_owned(),
                reason,
            })?;
            entries.push(entry);
        }
        let res = stream.finish().await;
        check(OP, base, &res)?;
        tracing::debug!(base, filter, entries = entries.len(), "paged search done");
        Ok(entries)
    }

    /// Replaces every ranged attribute of `entry` by its complete value list.
    async fn complete_ranges(
        &self,
        entry: &mut Entry,
        deadline: Instant,
    ) -> Result<(), DirectoryError> {
        let ranged: Vec<(String, RangedAttr)> = entry
            .attrs
            .keys()
            .filter_map(|k| parse_range_attr(k).map(|r| (k.clone(), r)))
            .collect();
        for (key, range) in ranged {
            let mut values = entry.attrs.remove(&key).unwrap_or_default();
            if let Some(high) = range.high {
                let next = high
                    .checked_add(1)
                    .ok_or_else(|| DirectoryError::Protocol {
                        op: "read range",
                        target: entry.dn.clone(),
                        reason: format!("range end {high} overflows"),
                    })?;
                self.read_rest(&entry.dn, &range.base, next, &mut values, deadline)
                    .await?;
            }
            entry.attrs.insert(range.base, values);
        }
        Ok(())
    }

    /// Reads `attr` in windows of `page_size` values from `low` until the server answers
    /// with a range ending in `*`, appending to `values`. A plain (unranged) `attr` in an
    /// answer means the server ignores range options and sent every value: taken, and done.
    /// Returns the number of requests made and whether any value was seen.
    async fn read_rest(
        &self,
        dn: &str,
        attr: &str,
        mut low: u32,
        values: &mut Vec<String>,
        deadline: Instant,
    ) -> Result<(usize, bool), DirectoryError> {
        const OP: &str = "read range";
        let protocol = |reason: String| DirectoryError::Protocol {
            op: OP,
            target: dn.to_owned(),
            reason,
        };
        for round in 1..=MAX_RANGE_ROUNDS {
            let req = range_request(attr, low, self.settings.page_size);
            let entry = self
                .read_entry(dn, "(objectClass=*)", &[req.as_str()], Some(deadline))
                .await?
                .ok_or_else(|| DirectoryError::NoSuchEntry { dn: dn.to_owned() })?;
            let Some((key, chunk)) = entry.attrs.into_iter().find(|(k, _)| same_attr(k, attr))
            else {
                // Nothing at or past `low`: the attribute is empty, or shrank while we read.
                return Ok((round, low > 0));
            };
            values.extend(chunk);
            let Some(range) = parse_range_attr(&key) else {
                return Ok((round, true));
            };
            if range.low != low {
                return Err(protocol(format!(
                    "asked for {attr} from {low}, got a range starting at {}",
                    range.low
                )));
            }
            match range.high {
                None => return Ok((round, true)),
                Some(high) => {
                    low = high
                        .checked_add(1)
                        .ok_or_else(|| protocol(format!("range end {high} overflows")))?;
                }
            }
        }
        Err(protocol(format!(
            "{attr} still incomplete after {MAX_RANGE_ROUNDS} range requests"
        )))
    }

    /// All values of a multi-valued attribute (a group's `member`), read with range
    /// retrieval in windows of `page_size` values, so a group of any size is read in bounded
    /// answers from servers that honour ranges (AD, Samba), and in one answer from servers
    /// that ignore the option and return the plain attribute. When the ranged read finds
    /// nothing, one plain read tells an empty attribute from a server that drops ranged
    /// descriptions it does not know. An absent attribute gives an empty list; a missing
    /// entry is [`DirectoryError::NoSuchEntry`]. Bounded by `search_deadline` overall.
    pub async fn read_multi_valued(
        &self,
        dn: &str,
        attr: &str,
    ) -> Result<Vec<String>, DirectoryError> {
        if attr.is_empty()
            || !attr
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(DirectoryError::InvalidAttribute {
                name: attr.to_owned(),
            });
        }
        let deadline = Instant::now() + self.settings.search_deadline;
        let mut values = Vec::new();
        let (requests, seen) = self.read_rest(dn, attr, 0, &mut values, deadline).await?;
        tracing::debug!(
            dn,
            attr,
            requests,
            values = values.len(),
            "ranged read done"
        );
        if seen {
            return Ok(values);
        }
        let mut entry = self
            .read_entry(dn, "(objectClass=*)", &[attr], Some(deadline))
            .await?
            .ok_or_else(|| DirectoryError::NoSuchEntry { dn: dn.to_owned() })?;
        self.complete_ranges(&mut entry, deadline).await?;
        Ok(entry
            .attrs
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
            .flat_map(|(_, v)| v)
            .collect())
    }

    /// Adds and removes values of the group's `member` attribute, in
    /// modify operations of at most `batch` values (clamped to
    /// 1..=[`MAX_MEMBER_BATCH`]). Adds go first, so containment takes effect
    /// before clean-up.
    ///
    /// Idempotent: when a batch is refused because a value is already there
    /// (68 entryAlreadyExists, 20 attributeOrValueExists) or, on remove, not
    /// there (16 noSuchAttribute; 53 unwillingToPerform confirmed by a
    /// compare), the batch is retried value by value and those values count
    /// as already present/absent. Values refused for other reasons during
    /// that retry are listed in [`MemberChange::failed`]; a batch refused for
    /// any other reason is an error. Only `member` of `group_dn` is touched.
    pub async fn modify_members(
        &self,
        group_dn: &str,
        add: &[String],
        remove: &[String],
        batch: usize,
    ) -> Result<MemberChange, DirectoryError> {
        parse_dn(group_dn).map_err(|source| DirectoryError::InvalidDn {
            dn: group_dn.to_owned(),
            source,
        })?;
        for v in add.iter().chain(remove) {
            match parse_dn(v) {
                Ok(dn) if !dn.is_root() => {}
                Ok(_) => {
                    return Err(DirectoryError::InvalidDn {
                        dn: v.clone(),
                        source: crate::base::dn::DnError::EmptyRdn { index: 0 },
                    });
                }
                Err(source) => {
                    return Err(DirectoryError::InvalidDn {
                        dn: v.clone(),
                        source,
                    });
                }
            }
        }
        let batch = batch.clamp(1, MAX_MEMBER_BATCH);
        let mut report = MemberChange::default();
        for chunk in add.chunks(batch) {
            self.apply_batch(group_dn, chunk, true, &mut report).await?;
        }
        for chunk in remove.chunks(batch) {
            self.apply_batch(group_dn, chunk, false, &mut report)
                .await?;
        }
        Ok(report)
    }

    async fn apply_batch(
        &self,
        group_dn: &str,
        values: &[String],
        add: bool,
        report: &mut MemberChange,
    ) -> Result<(), DirectoryError> {
        let res = self.modify_member(group_dn, values, add).await?;
        let distinct = values.iter().collect::<HashSet<_>>().len();
        if res.rc == RC_SUCCESS {
            if add {
                report.added += distinct;
            } else {
                report.removed += distinct;
            }
            return Ok(());
        }
        if !value_specific_failure(res.rc) {
            return Err(server_error("modify", group_dn, &res));
        }
        if res.rc == RC_NO_SUCH_OBJECT && !self.entry_exists(group_dn).await? {
            // The group itself is gone, not one of the member DNs.
            return Err(server_error("modify", group_dn, &res));
        }
        tracing::debug!(
            group = group_dn,
            rc = res.rc,
            values = values.len(),
            "batch refused, retrying value by value"
        );
        let mut seen = HashSet::new();
        for value in values {
            if !seen.insert(value) {
                continue;
            }
            let one = std::slice::from_ref(value);
            let res = self.modify_member(group_dn, one, add).await?;
            match (res.rc, add) {
                (RC_SUCCESS, true) => report.added += 1,
                (RC_SUCCESS, false) => report.removed += 1,
                (RC_ENTRY_ALREADY_EXISTS | RC_ATTRIBUTE_OR_VALUE_EXISTS, true) => {
                    report.already_present += 1
                }
                (RC_NO_SUCH_ATTRIBUTE, false) => report.already_absent += 1,
                // AD refuses to remove a non-member with 53
                // (ERROR_MEMBER_NOT_IN_GROUP); confirm with a compare.
                (RC_UNWILLING_TO_PERFORM, false)
                    if matches!(self.is_member(group_dn, value).await, Ok(false)) =>
                {
                    report.already_absent += 1
                }
                (rc, _) => report.failed.push(MemberFailure {
                    member: value.clone(),
                    add,
                    code: rc,
                    message: res.text.clone(),
                }),
            }
        }
        Ok(())
    }

    async fn modify_member(
        &self,
        group_dn: &str,
        values: &[String],
        add: bool,
    ) -> Result<LdapResult, DirectoryError> {
        let set: HashSet<&str> = values.iter().map(String::as_str).collect();
        let m = if add {
            Mod::Add(MEMBER, set)
        } else {
            Mod::Delete(MEMBER, set)
        };
        let mut ldap = self.handle();
        bounded(
            "modify",
            group_dn,
            self.settings.op_timeout,
            ldap.modify(group_dn, vec![m]),
        )
        .await
    }

    async fn is_member(&self, group_dn: &str, member: &str) -> Result<bool, DirectoryError> {
        let mut ldap = self.handle();
        let res = bounded(
            "compare",
            group_dn,
            self.settings.op_timeout,
            ldap.compare(group_dn, MEMBER, member),
        )
        .await?;
        match res.0.rc {
            RC_COMPARE_TRUE => Ok(true),
            RC_COMPARE_FALSE => Ok(false),
            _ => Err(server_error("compare", group_dn, &res.0)),
        }
    }

    /// True if the entry exists (base-scope search; noSuchObject gives false).
    pub async fn entry_exists(&self, dn: &str) -> Result<bool, DirectoryError> {
        Ok(self
            .read_entry(dn, "(objectClass=*)", &["1.1"], None)
            .await?
            .is_some())
    }

    /// Reads one entry (base scope, `filter`), bounded by `op_timeout` and
    /// `deadline`. `None` if it does not exist or does not match `filter`.
    pub async fn read_entry(
        &self,
        dn: &str,
        filter: &str,
        attrs: &[&str],
        deadline: Option<Instant>,
    ) -> Result<Option<Entry>, DirectoryError> {
        let (entries, res) = self
            .search_small("read", dn, Scope::Base, filter, attrs, 1, deadline)
            .await?;
        if res.rc == RC_NO_SUCH_OBJECT {
            return Ok(None);
        }
        check("read", dn, &res)?;
        Ok(entries.into_iter().next())
    }

    // Private plumbing; a parameter struct would only rename the arguments.
    #[allow(clippy::too_many_arguments)]
    /// An unpaged search for a few entries, bounded by `op_timeout` (and
    /// `deadline` if given). Returns the entries and the raw result.
    async fn search_small(
        &self,
        op: &'static str,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        size_limit: i32,
        deadline: Option<Instant>,
    ) -> Result<(Vec<Entry>, LdapResult), DirectoryError> {
        let op_timeout = self.settings.op_timeout;
        let mut hard = Instant::now() + op_timeout + TIMER_SLACK;
        if let Some(d) = deadline {
            hard = hard.min(d);
        }
        let mut ldap = self.handle();
        ldap.with_search_options(SearchOptions::new().sizelimit(size_limit));
        let attrs: Vec<String> = attrs.iter().map(|a| (*a).to_owned()).collect();
        let res = match timeout_at(hard, ldap.search(base, scope.into(), filter, attrs)).await {
            Err(_) => {
                return Err(DirectoryError::Timeout {
                    op,
                    target: base.to_owned(),
                    timeout: op_timeout,
                });
            }
            Ok(r) => r.map_err(|e| ldap_error(op, base, op_timeout, e))?,
        };
        let entries = res
            .0
            .into_iter()
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| DirectoryError::Protocol {
                op,
                target: base.to_owned(),
                reason,
            })?;
        Ok((entries, res.1))
    }

    /// Finds the DN of the user a list principal names, under `base_dn`.
    ///
    /// * `DOMAIN\user` → `(&(objectClass=user)(sAMAccountName=<user>))`; the
    ///   NetBIOS domain is **not** checked (any prefix is accepted), the base
    ///   DN decides which domain is searched;
    /// * `user@realm` → `(&(objectClass=user)(userPrincipalName=<upn>))`;
    /// * a DN → base-scope read with `(objectClass=user)`, only if it lies
    ///   within `base_dn`;
    /// * anything else → sAMAccountName.
    ///
    /// User-supplied parts are escaped (RFC 4515), so `*)(objectClass=*` is a
    /// literal name that matches nothing. `Ok(None)` when nothing matches or
    /// the string is not a principal at all; more than one match is
    /// [`DirectoryError::AmbiguousPrincipal`]. Returns the DN as the server
    /// spells it.
    pub async fn resolve_principal(
        &self,
        base_dn: &str,
        principal: &str,
    ) -> Result<Option<String>, DirectoryError> {
        Ok(self
            .resolve_account(base_dn, principal, None, &Identity::none())
            .await?
            .map(|a| a.dn))
    }

    /// Finds the user a list principal names, under `base_dn`, and the names it has (as
    /// [`DirectoryClient::resolve_principal`]); a `DOMAIN\user` whose domain is not `domain`
    /// (the directory's NetBIOS domain, when known) names no user here.
    pub async fn resolve_account(
        &self,
        base_dn: &str,
        principal: &str,
        domain: Option<&str>,
        identity: &Identity,
    ) -> Result<Option<Account>, DirectoryError> {
        let base = parse_dn(base_dn).map_err(|source| DirectoryError::InvalidDn {
            dn: base_dn.to_owned(),
            source,
        })?;
        let lookup = Principal::parse(principal)
            .ok()
            .and_then(|p| UserLookup::for_principal_in(&p, domain, identity));
        let filter = match lookup {
            None => {
                tracing::debug!(principal, "not a principal");
                return Ok(None);
            }
            Some(UserLookup::Dn(dn)) => {
                if !dn.is_within(&base) {
                    tracing::debug!(principal, base = base_dn, "DN outside the base");
                    return Ok(None);
                }
                let entry = self
                    .read_entry(&dn.to_string(), "(objectClass=user)", ACCOUNT_ATTRS, None)
                    .await?;
                return Ok(entry.map(Account::of));
            }
            Some(UserLookup::Filter(f)) => f,
        };
        match self.find_accounts(base_dn, &filter).await?.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            _ => Err(DirectoryError::AmbiguousPrincipal {
                principal: principal.to_owned(),
                base: base_dn.to_owned(),
            }),
        }
    }

    /// The user entries `filter` finds under `base_dn`: none, one, or — past one, which is
    /// all a resolution needs to know — two.
    async fn find_accounts(
        &self,
        base_dn: &str,
        filter: &str,
    ) -> Result<Vec<Account>, DirectoryError> {
        let (entries, res) = self
            .search_small(
                "resolve",
                base_dn,
                Scope::Subtree,
                filter,
                ACCOUNT_ATTRS,
                2,
                None,
            )
            .await?;
        if res.rc != RC_SIZE_LIMIT_EXCEEDED {
            check("resolve", base_dn, &res)?;
        }
        let mut found: Vec<Account> = entries.into_iter().map(Account::of).collect();
        if res.rc == RC_SIZE_LIMIT_EXCEEDED
            && let [one] = found.as_slice()
        {
            // The server stopped at its limit after one: more than one answers.
            found.push(one.clone());
        }
        Ok(found)
    }

    /// Finds the user entry whose objectGUID is `guid` (as `base::account::guid_string`
    /// prints it) under `base_dn`: the account a listed member was resolved to, wherever it
    /// moved and whatever it is called now. `Ok(None)` when there is none (deleted, or not a
    /// GUID).
    pub async fn resolve_guid(
        &self,
        base_dn: &str,
        guid: &str,
    ) -> Result<Option<Account>, DirectoryError> {
        let Some(bytes) = guid_bytes(guid) else {
            return Ok(None);
        };
        // Every byte escaped (RFC 4515 `\XX`): the value is binary.
        let value: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
        let filter = format!("(&(objectClass=user)(objectGUID={value}))");
        // An objectGUID is unique: the first entry is the one.
        Ok(self
            .find_accounts(base_dn, &filter)
            .await?
            .into_iter()
            .next())
    }

    /// The entry's `uSNChanged`, for polling where change notification is not
    /// available: poll at an interval and refresh when it changes.
    pub async fn poll_usn_changed(&self, dn: &str) -> Result<u64, DirectoryError> {
        let entry = self
            .read_entry(dn, "(objectClass=*)", &["uSNChanged"], None)
            .await?
            .ok_or_else(|| DirectoryError::NoSuchEntry { dn: dn.to_owned() })?;
        let raw = entry
            .first("uSNChanged")
            .ok_or_else(|| DirectoryError::Protocol {
                op: "read uSNChanged",
                target: dn.to_owned(),
                reason: "entry has no uSNChanged (not Active Directory?)".into(),
            })?;
        raw.trim().parse().map_err(|_| DirectoryError::Protocol {
            op: "read uSNChanged",
            target: dn.to_owned(),
            reason: format!("uSNChanged {raw:?} is not a number"),
        })
    }

    /// Tells the server to stop an operation; best effort, bounded.
    async fn abandon(&self, id: ldap3::RequestId) {
        if id == 0 {
            return;
        }
        let mut ldap = self.ldap.clone();
        let _ = timeout(self.settings.op_timeout, ldap.abandon(id)).await;
    }

    fn deadline_error(&self, op: &'static str, target: &str) -> DirectoryError {
        DirectoryError::Timeout {
            op,
            target: target.to_owned(),
            timeout: self.settings.search_deadline,
        }
    }

    /// A raw ldap3 handle on this connection (for [`super::watch`]).
    pub(crate) fn raw_handle(&self) -> Ldap {
        self.ldap.clone()
    }
}

/// Runs one ldap3 request whose handle already has `op_timeout` armed, with
/// our own slightly longer hard bound as a backstop, and maps errors.
async fn bounded<T>(
    op: &'static str,
    target: &str,
    op_timeout: Duration,
    fut: impl Future<Output = Result<T, LdapError>>,
) -> Result<T, DirectoryError> {
    match timeout(op_timeout + TIMER_SLACK, fut).await {
        Err(_) => Err(DirectoryError::Timeout {
            op,
            target: target.to_owned(),
            timeout: op_timeout,
        }),
        Ok(r) => r.map_err(|e| ldap_error(op, target, op_timeout, e)),
    }
}

pub(super) fn ldap_error(
    op: &'static str,
    target: &str,
    op_timeout: Duration,
    e: LdapError,
) -> DirectoryError {
    match e {
        LdapError::Timeout { .. } => DirectoryError::Timeout {
            op,
            target: target.to_owned(),
            timeout: op_timeout,
        },
        LdapError::LdapResult { result } => server_error(op, target, &result),
        source => DirectoryError::Ldap {
            op,
            target: target.to_owned(),
            source: Box::new(source),
        },
    }
}

fn server_error(op: &'static str, target: &str, res: &LdapResult) -> DirectoryError {
    DirectoryError::Server {
        op,
        target: target.to_owned(),
        code: res.rc,
        message: res.text.clone(),
    }
}

pub(super) fn check(
    op: &'static str,
    target: &str,
    res: &LdapResult,
) -> Result<(), DirectoryError> {
    if res.rc == RC_SUCCESS {
        Ok(())
    } else {
        Err(server_error(op, target, res))
    }
}

/// Result codes with which a whole (atomic, so unapplied) batch fails because
/// of some value in it: already a member (68, 20), not a member (16, 53 on
/// AD), or a value the server will not take (19 constraintViolation, 21
/// invalidAttributeSyntax, 32 noSuchObject for a member DN that does not
/// exist, 34 invalidDNSyntax). Such a batch is retried value by value so one
/// value cannot block the others.
fn value_specific_failure(rc: u32) -> bool {
    matches!(
        rc,
        RC_NO_SUCH_ATTRIBUTE
            | RC_CONSTRAINT_VIOLATION
            | RC_ATTRIBUTE_OR_VALUE_EXISTS
            | RC_INVALID_ATTRIBUTE_SYNTAX
            | RC_NO_SUCH_OBJECT
            | RC_INVALID_DN_SYNTAX
            | RC_UNWILLING_TO_PERFORM
            | RC_ENTRY_ALREADY_EXISTS
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn value_specific_codes() {
        for rc in [16, 19, 20, 21, 32, 34, 53, 68] {
            assert!(value_specific_failure(rc), "{rc}");
        }
        // Access, availability and protocol failures fail the whole call.
        for rc in [1, 2, 3, 11, 50, 51, 52, 80] {
            assert!(!value_specific_failure(rc), "{rc}");
        }
    }
}
