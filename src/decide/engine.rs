//! The decision engine: policies compiled with data sets into one immutable [`Snapshot`],
//! published through a single `ArcSwap` in [`Engine`].
//!
//! Readers load the current snapshot without locking and answer [`Snapshot::decide`] with hash
//! lookups only; the common path (no match, or up to two matched policies) does not allocate.
//! Writers build a new snapshot off to the side (reusing the membership indexes of data sets
//! that did not change) and publish it only when its content differs from the current one.
//!
//! A data set that has never loaded ([`DataSet::is_loaded`]) is *unknown*, not empty. The build
//! marks the criteria that read one; a snapshot where no enabled policy does (the common case)
//! decides exactly as if there were no such thing, behind one predictable branch. Otherwise a
//! separate, cold evaluation treats such a criterion as undetermined: a policy whose match
//! depends on it answers what its `when_unknown` says (an [`Outcome::Error`] by default), unless
//! a determined blocking policy already blocks.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::{ArcSwap, Guard};
use smallvec::SmallVec;

use crate::base::identity::Identity;
use crate::base::json::json_string;
use crate::model::dataset::{DataSet, MemberIndex};
use crate::model::policy::{
    Action, Field, Operation, Policy, Severity, UnknownValues, WhenUnknown,
};

/// One decision request. `db_user` may carry several values (a proxy may know more than one
/// name for the session user); the other fields are single-valued and optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub service: &'a str,
    pub db_user: SmallVec<[&'a str; 2]>,
    pub os_user: Option<&'a str>,
    pub source_app: Option<&'a str>,
    pub client_ip: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn new(service: &'a str) -> Request<'a> {
        Request {
            service,
            ..Request::default()
        }
    }

    pub fn db_user(mut self, user: &'a str) -> Request<'a> {
        self.db_user.push(user);
        self
    }

    /// The values the request carries for a field; empty means unknown.
    #[inline]
    pub fn values(&self, field: Field) -> &[&'a str] {
        match field {
            Field::DbUser => &self.db_user,
            Field::OsUser => self.os_user.as_slice(),
            Field::SourceApp => self.source_app.as_slice(),
            Field::ClientIp => self.client_ip.as_slice(),
            Field::Service if self.service.is_empty() => &[],
            Field::Service => std::slice::from_ref(&self.service),
        }
    }
}

/// Allow, block, or error: the decision depends on a data set that has never loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Block,
    /// Neither allow nor block: a blocking policy whose match depends on an unknown data set
    /// says `when_unknown = "error"` (the default), and nothing else blocks.
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Allow, Outcome::Block, Outcome::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Block => "block",
            Outcome::Error => "error",
        }
    }
}

/// A policy that matched a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyMatch {
    /// Position of the policy in [`Snapshot::policies`].
    pub policy: u32,
    pub action: Action,
    pub severity: Severity,
}

/// The answer to a request: the outcome, every matched policy, and the snapshot version used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub matched: SmallVec<[PolicyMatch; 2]>,
    pub snapshot_version: u64,
    /// Positions (in [`Snapshot::policies`]) of the enabled policies whose match this request
    /// could not determine because a data set they read has never loaded. Empty whenever every
    /// data set is loaded.
    pub unknown: SmallVec<[u32; 1]>,
}

/// Errors compiling policies against data sets.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CompileError {
    #[error("policy {policy:?} names data set {data_set:?}, which does not exist")]
    UnknownDataSet { policy: String, data_set: String },
    #[error("policy {policy:?} searches column {column:?}, which data set {data_set:?} lacks")]
    UnknownColumn {
        policy: String,
        data_set: String,
        column: String,
    },
}

#[derive(Debug)]
struct CompiledCriterion {
    field: Field,
    operation: Operation,
    unknown: UnknownValues,
    index: Arc<MemberIndex>,
    /// Whether the data set has loaded; only the cold path reads it.
    loaded: bool,
    /// For a criterion on a principal (`db_user`, `os_user`): the rules both the index keys
    /// and the request's values are brought to canonical account names by.
    accounts: Option<Arc<Identity>>,
}

impl CompiledCriterion {
    /// Whether the index holds `value` — for a principal, its account: the common
    /// `DOMAIN\user` is looked up as written, classified in the pass that hashes it
    /// ([`MemberIndex::contains_as_account`]); any other form is canonicalised first.
    #[inline(always)]
    fn contains(&self, value: &str) -> bool {
        match &self.accounts {
            None => self.index.contains(value),
            Some(identity) => match self.index.contains_as_account(value) {
                Some(found) => found,
                None => self.contains_canonical(identity, value),
            },
        }
    }

    /// The lookup of a principal that needs its canonical name first. Out of line, so that
    /// the common lookup above stays small enough to inline into `decide`.
    #[inline(never)]
    fn contains_canonical(&self, identity: &Identity, value: &str) -> bool {
        self.index.contains(&identity.canonical(value))
    }

    #[inline]
    fn matches(&self, request: &Request<'_>) -> bool {
        let values = request.values(self.field);
        if values.is_empty() {
            return self.unknown == UnknownValues::Match;
        }
        match self.operation {
            Operation::AtLeastOne => values.iter().any(|v| self.contains(v)),
            Operation::All => values.iter().all(|v| self.contains(v)),
            Operation::None => !values.iter().any(|v| self.contains(v)),
        }
    }

    /// Whether the criterion matches, or `None` when that depends on a data set that has
    /// never loaded. A missing field is decided by `handle_unknown_values` alone, loaded or not.
    fn evaluate(&self, request: &Request<'_>) -> Option<bool> {
        if request.values(self.field).is_empty() || self.loaded {
            Some(self.matches(request))
        } else {
            None
        }
    }
}

/// Whether a field carries a principal, compared as an account.
fn is_principal(field: Field) -> bool {
    matches!(field, Field::DbUser | Field::OsUser)
}

/// A policy compiled against the snapshot's data sets.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// What `decide` reads for every request, together, ahead of the (large) policy: the
    /// match it records and whether every service is in scope.
    hot: PolicyMatch,
    every_service: bool,
    criteria: Vec<CompiledCriterion>,
    policy: Policy,
    /// This policy's entry in a decision's `matched` array, rendered once at build time so an
    /// answer copies bytes instead of escaping the name per decision.
    rendered: Box<[u8]>,
    /// The data sets this policy reads that have never loaded, in criterion order, once each.
    unknown_data_sets: Vec<String>,
}

impl CompiledPolicy {
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The data sets this policy reads that have never loaded.
    pub fn unknown_data_sets(&self) -> &[String] {
        &self.unknown_data_sets
    }

    /// Whether the policy matches, or `None` when that depends on an unknown data set.
    fn evaluate(&self, request: &Request<'_>) -> Option<bool> {
        if !(self.every_service || self.policy.apply_to.applies_to(request.service)) {
            return Some(false);
        }
        let mut determined = true;
        for c in &self.criteria {
            match c.evaluate(request) {
                // All criteria must match: one that certainly does not decides the policy.
                Some(false) => return Some(false),
                Some(true) => {}
                None => determined = false,
            }
        }
        determined.then_some(true)
    }

    #[inline]
    fn matches(&self, request: &Request<'_>) -> bool {
        (self.every_service || self.policy.apply_to.applies_to(request.service))
            && self.criteria.iter().all(|c| c.matches(request))
    }
}

/// Membership indexes kept across snapshot builds: a data set whose fingerprint did not change
/// keeps its index, so a list change rebuilds only that list's index.
#[derive(Default)]
pub struct IndexCache {
    entries: HashMap<IndexKey, (u64, Arc<MemberIndex>)>,
}

/// Data set, columns, and the identity rules' fingerprint (`None`: raw values).
type IndexKey = (String, Vec<usize>, Option<u64>);

impl IndexCache {
    fn get(
        &mut self,
        data_set: &DataSet,
        columns: Vec<usize>,
        accounts: Option<&Identity>,
    ) -> Arc<MemberIndex> {
        let fingerprint = data_set.fingerprint();
        let key = (
            data_set.name().to_string(),
            columns,
            accounts.map(Identity::fingerprint),
        );
        if let Some((fp, index)) = self.entries.get(&key)
            && *fp == fingerprint
        {
            return Arc::clone(index);
        }
        let index = Arc::new(match accounts {
            None => data_set.index(&key.1),
            Some(identity) => data_set.index_mapped(&key.1, |v| identity.canonical(v)),
        });
        self.entries.insert(key, (fingerprint, Arc::clone(&index)));
        index
    }

    /// Drops indexes of data sets no longer present.
    fn retain(&mut self, data_sets: &[Arc<DataSet>]) {
        self.entries.retain(|(name, _, _), (fp, _)| {
            data_sets
                .iter()
                .any(|d| d.name() == name && d.fingerprint() == *fp)
        });
    }
}

/// What one data set of a snapshot holds, so that a recorded decision can say which rows it
/// read (the decision log).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataSetState {
    pub name: String,
    /// The generation of the rows persisted for it (`ldap` and `api` data sets, set by the
    /// runtime); a list or static set has none: the snapshot's revision and the fingerprint
    /// say which content it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    pub rows: usize,
    /// The hash of its schema and rows, in hex.
    pub fingerprint: String,
    pub loaded: bool,
}

/// Everything a decision reads, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    /// The store revision this snapshot's content is that of (the same on every replica for
    /// the same state); raised in place when a newer revision builds the same content.
    revision: std::sync::atomic::AtomicI64,
    built_at: SystemTime,
    fingerprint: u64,
    data_sets: Vec<Arc<DataSet>>,
    policies: Vec<CompiledPolicy>,
    /// Positions of enabled policies, in order: the only ones `decide` visits.
    active: Vec<u32>,
    /// The data sets an enabled policy reads that have never loaded, in config order. While
    /// any is, `decide` takes the cold path and `/readyz` waits for them.
    waiting: Vec<String>,
    /// What each data set holds, shared by every decision record that names them.
    states: Arc<[DataSetState]>,
}

impl Snapshot {
    /// Compiles policies against data sets under the default identity rules (the seed's:
    /// see [`Identity`]). Indexes come from (and go into) `cache`.
    pub fn build(
        policies: &[Policy],
        data_sets: Vec<Arc<DataSet>>,
        cache: &mut IndexCache,
    ) -> Result<Snapshot, CompileError> {
        Snapshot::build_with(policies, data_sets, cache, &Arc::new(Identity::default()))
    }

    /// Compiles policies against data sets; criteria on principals compare accounts under
    /// `identity`. Indexes come from (and go into) `cache`.
    pub fn build_with(
        policies: &[Policy],
        data_sets: Vec<Arc<DataSet>>,
        cache: &mut IndexCache,
        identity: &Arc<Identity>,
    ) -> Result<Snapshot, CompileError> {
        let mut compiled = Vec::with_capacity(policies.len());
        for (position, policy) in policies.iter().enumerate() {
            // Positions past u32 are never active (see `active` below).
            let index = u32::try_from(position).unwrap_or(u32::MAX);
            let mut criteria = Vec::with_capacity(policy.criteria.len());
            let mut unknown_data_sets: Vec<String> = Vec::new();
            for criterion in &policy.criteria {
                let data_set = data_sets
                    .iter()
                    .find(|d| d.name() == criterion.data_set)
                    .ok_or_else(|| CompileError::UnknownDataSet {
                        policy: policy.name.clone(),
                        data_set: criterion.data_set.clone(),
                    })?;
                let columns = search_columns(policy, &criterion.search_in, data_set)?;
                let loaded = data_set.is_loaded();
                if !loaded && !unknown_data_sets.iter().any(|n| n == data_set.name()) {
                    unknown_data_sets.push(data_set.name().to_string());
                }
                let accounts = (is_principal(criterion.field) && !identity.is_identity())
                    .then(|| Arc::clone(identity));
                criteria.push(CompiledCriterion {
                    field: criterion.field,
                    operation: criterion.operation,
                    unknown: criterion.handle_unknown_values,
                    index: cache.get(data_set, columns, accounts.as_deref()),
                    loaded,
                    accounts,
                });
            }
            let mut rendered = Vec::new();
            render_match(Some(policy), policy.action, policy.severity, &mut rendered);
            compiled.push(CompiledPolicy {
                hot: PolicyMatch {
                    policy: index,
                    action: policy.action,
                    severity: policy.severity,
                },
                every_service: policy.apply_to.applies_to_all(),
                policy: policy.clone(),
                criteria,
                rendered: rendered.into_boxed_slice(),
                unknown_data_sets,
            });
        }
        cache.retain(&data_sets);
        let active: Vec<u32> = compiled
            .iter()
            .enumerate()
            .filter(|(_, p)| p.policy.enabled)
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect();
        let waiting = data_sets
            .iter()
            .filter(|d| !d.is_loaded())
            .filter(|d| {
                active.iter().any(|&i| {
                    compiled
                        .get(i as usize)
                        .is_some_and(|p| p.unknown_data_sets.iter().any(|n| n == d.name()))
                })
            })
            .map(|d| d.name().to_string())
            .collect();
        let fingerprint = snapshot_fingerprint(policies, &data_sets) ^ identity.fingerprint();
        let states = data_sets
            .iter()
            .map(|d| DataSetState {
                name: d.name().to_owned(),
                generation: None,
                rows: d.len(),
                fingerprint: format!("{:016x}", d.fingerprint()),
                loaded: d.is_loaded(),
            })
            .collect();
        Ok(Snapshot {
            version: 0,
            revision: std::sync::atomic::AtomicI64::new(0),
            built_at: SystemTime::now(),
            fingerprint,
            data_sets,
            policies: compiled,
            active,
            waiting,
            states,
        })
    }

    /// An empty snapshot (no policies, no data sets): everything is allowed.
    pub fn empty() -> Snapshot {
        Snapshot {
            version: 0,
            revision: std::sync::atomic::AtomicI64::new(0),
            built_at: SystemTime::now(),
            fingerprint: 0,
            data_sets: Vec::new(),
            policies: Vec::new(),
            active: Vec::new(),
            waiting: Vec::new(),
            states: Arc::from(Vec::new()),
        }
    }

    /// The same snapshot with the generations of its persisted data sets' rows.
    pub fn with_generations(mut self, generations: &HashMap<String, i64>) -> Snapshot {
        self.states = self
            .states
            .iter()
            .map(|s| DataSetState {
                generation: generations.get(&s.name).copied(),
                ..s.clone()
            })
            .collect();
        self
    }

    /// What each data set of the snapshot holds.
    pub fn data_set_states(&self) -> &Arc<[DataSetState]> {
        &self.states
    }

    /// The data sets an enabled policy reads that have never loaded, in config order: empty
    /// once every one has loaded (from its source or persisted last good rows).
    pub fn waiting_for(&self) -> &[String] {
        &self.waiting
    }

    /// The unknown data sets behind a decision's undetermined policies, once each.
    pub fn unknown_data_sets(&self, decision: &Decision) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for p in decision
            .unknown
            .iter()
            .filter_map(|&i| self.policies.get(i as usize))
        {
            for n in &p.unknown_data_sets {
                if !names.contains(&n.as_str()) {
                    names.push(n);
                }
            }
        }
        names
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The store revision of this snapshot's content.
    pub fn revision(&self) -> i64 {
        self.revision.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn built_at(&self) -> SystemTime {
        self.built_at
    }

    pub fn data_sets(&self) -> &[Arc<DataSet>] {
        &self.data_sets
    }

    pub fn data_set(&self, name: &str) -> Option<&Arc<DataSet>> {
        self.data_sets.iter().find(|d| d.name() == name)
    }

    pub fn policies(&self) -> &[CompiledPolicy] {
        &self.policies
    }

    /// The policy a [`PolicyMatch`] refers to.
    pub fn policy(&self, m: &PolicyMatch) -> Option<&Policy> {
        self.policies.get(m.policy as usize).map(|p| &p.policy)
    }

    /// What made `m`'s policy match `request`, as a key: per criterion, the request's values
    /// found in its data set (`at_least_one`, `all`: the matched principal, host, app), or for
    /// `none` the values it checked (none is in the set, so they are what matched), `?` for an
    /// unknown field that matched; lower-cased, `,` between values and `|` between criteria.
    /// Values the policy's data sets do not hold (an extra `db_user` beside the listed one)
    /// are not part of it, so varying them does not make a new key. A principal is held and
    /// keyed as its account, as `decide` matched it: every spelling of one account is one key,
    /// two accounts are two. Allocates: only for followed actions, off the common path.
    pub fn match_key(&self, m: &PolicyMatch, request: &Request<'_>) -> String {
        let mut key = String::new();
        let Some(p) = self.policies.get(m.policy as usize) else {
            return key;
        };
        for (i, c) in p.criteria.iter().enumerate() {
            if i > 0 {
                key.push('|');
            }
            let values = request.values(c.field);
            if values.is_empty() {
                key.push('?');
                continue;
            }
            let mut first = true;
            for v in values {
                let keep = match c.operation {
                    Operation::AtLeastOne | Operation::All => c.contains(v),
                    Operation::None => true,
                };
                if keep {
                    if !first {
                        key.push(',');
                    }
                    first = false;
                    let account = c.accounts.as_ref().map(|identity| identity.canonical(v));
                    let v = account.as_deref().unwrap_or(v);
                    key.extend(v.chars().flat_map(char::to_lowercase));
                }
            }
        }
        key
    }

    /// Decides one request: block if any enabled blocking policy matches.
    #[inline]
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        if !self.waiting.is_empty() {
            return self.decide_with_unknown(request);
        }
        let mut decision = Decision {
            outcome: Outcome::Allow,
            matched: SmallVec::new(),
            snapshot_version: self.version,
            unknown: SmallVec::new(),
        };
        for &i in &self.active {
            let Some(p) = self.policies.get(i as usize) else {
                continue;
            };
            if p.matches(request) {
                decision.matched.push(p.hot);
                if p.hot.action == Action::Block {
                    decision.outcome = Outcome::Block;
                }
            }
        }
        decision
    }

    /// [`Snapshot::decide`] while an enabled policy reads a data set that has never loaded.
    /// A policy whose match is determined counts as usual; one whose match depends on the
    /// unknown set is listed in [`Decision::unknown`] and, if it blocks, contributes what its
    /// `when_unknown` says. Block wins over error, error over allow: a request some determined
    /// policy blocks is blocked whatever the unknown set would say.
    #[cold]
    #[inline(never)]
    fn decide_with_unknown(&self, request: &Request<'_>) -> Decision {
        let mut decision = Decision {
            outcome: Outcome::Allow,
            matched: SmallVec::new(),
            snapshot_version: self.version,
            unknown: SmallVec::new(),
        };
        let mut unknown_outcome = Outcome::Allow;
        for &i in &self.active {
            let Some(p) = self.policies.get(i as usize) else {
                continue;
            };
            match p.evaluate(request) {
                Some(true) => {
                    decision.matched.push(p.hot);
                    if p.hot.action == Action::Block {
                        decision.outcome = Outcome::Block;
                    }
                }
                Some(false) => {}
                None => {
                    decision.unknown.push(i);
                    if p.hot.action == Action::Block {
                        match p.policy.when_unknown {
                            WhenUnknown::Block => unknown_outcome = Outcome::Block,
                            WhenUnknown::Error if unknown_outcome == Outcome::Allow => {
                                unknown_outcome = Outcome::Error;
                            }
                            WhenUnknown::Error | WhenUnknown::Allow => {}
                        }
                    }
                }
            }
        }
        if decision.outcome == Outcome::Allow {
            decision.outcome = unknown_outcome;
        }
        decision
    }

    /// Decides many requests against this one snapshot, appending to `out` in order.
    pub fn decide_batch(&self, requests: &[Request<'_>], out: &mut Vec<Decision>) {
        out.reserve(requests.len());
        out.extend(requests.iter().map(|r| self.decide(r)));
    }

    /// Writes a decision as JSON: `{"decision":…,"snapshot_version":…,"matched":[…]}`, plus,
    /// only when a policy's match could not be determined, `"unknown":[{"policy":…,
    /// "when_unknown":…,"data_sets":[…]},…]`.
    pub fn render_decision(&self, decision: &Decision, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"decision\":\"");
        out.extend_from_slice(decision.outcome.as_str().as_bytes());
        out.extend_from_slice(b"\",\"snapshot_version\":");
        out.extend_from_slice(itoa_u64(decision.snapshot_version, &mut [0; 20]));
        out.extend_from_slice(b",\"revision\":");
        out.extend_from_slice(itoa_u64(self.revision().unsigned_abs(), &mut [0; 20]));
        out.extend_from_slice(b",\"matched\":[");
        for (n, m) in decision.matched.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            match self.policies.get(m.policy as usize) {
                // A match carries its own policy's action and severity, as rendered at build.
                Some(p) if p.hot.action == m.action && p.hot.severity == m.severity => {
                    out.extend_from_slice(&p.rendered);
                }
                p => render_match(p.map(|p| &p.policy), m.action, m.severity, out),
            }
        }
        out.push(b']');
        if !decision.unknown.is_empty() {
            self.render_unknown(decision, out);
        }
        out.push(b'}');
    }

    #[cold]
    fn render_unknown(&self, decision: &Decision, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"unknown\":[");
        for (n, &i) in decision.unknown.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let p = self.policies.get(i as usize);
            out.extend_from_slice(b"{\"policy\":");
            json_string(p.map_or("", |p| &p.policy.name), out);
            out.extend_from_slice(b",\"action\":\"");
            out.extend_from_slice(p.map_or("", |p| p.hot.action.as_str()).as_bytes());
            out.extend_from_slice(b"\",\"when_unknown\":\"");
            out.extend_from_slice(p.map_or("", |p| p.policy.when_unknown.as_str()).as_bytes());
            out.extend_from_slice(b"\",\"data_sets\":[");
            for (k, name) in p
                .map_or(&[][..], |p| &p.unknown_data_sets)
                .iter()
                .enumerate()
            {
                if k > 0 {
                    out.push(b',');
                }
                json_string(name, out);
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b']');
    }
}

/// One entry of a decision's `matched` array:
/// `{"policy":…,"action":…,"severity":…,"followed_action":…}`.
/// A match whose policy is not in the snapshot renders with an empty name.
fn render_match(policy: Option<&Policy>, action: Action, severity: Severity, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"policy\":");
    json_string(policy.map_or("", |p| &p.name), out);
    out.extend_from_slice(b",\"action\":\"");
    out.extend_from_slice(action.as_str().as_bytes());
    out.extend_from_slice(b"\",\"severity\":\"");
    out.extend_from_slice(severity.as_str().as_bytes());
    out.extend_from_slice(b"\",\"followed_action\":");
    match policy.and_then(|p| p.followed_action.as_deref()) {
        Some(a) => json_string(a, out),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

fn search_columns(
    policy: &Policy,
    search_in: &[String],
    data_set: &DataSet,
) -> Result<Vec<usize>, CompileError> {
    let schema = data_set.schema();
    if search_in.is_empty() {
        return Ok(vec![schema.key_index()]);
    }
    let mut columns = search_in
        .iter()
        .map(|name| {
            schema
                .column_index(name)
                .ok_or_else(|| CompileError::UnknownColumn {
                    policy: policy.name.clone(),
                    data_set: data_set.name().to_string(),
                    column: name.clone(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    columns.sort_unstable();
    columns.dedup();
    Ok(columns)
}

fn snapshot_fingerprint(policies: &[Policy], data_sets: &[Arc<DataSet>]) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x5a5).build_hasher();
    for p in policies {
        h.write(p.name.as_bytes());
        h.write_u8(u8::from(p.enabled));
        h.write(p.action.as_str().as_bytes());
        h.write(p.severity.as_str().as_bytes());
        h.write(p.followed_action.as_deref().unwrap_or("\0").as_bytes());
        h.write(p.when_unknown.as_str().as_bytes());
        for s in p.apply_to.patterns() {
            h.write(s.as_bytes());
            h.write_u8(0xfe);
        }
        for c in &p.criteria {
            h.write(c.field.as_str().as_bytes());
            h.write(c.operation.as_str().as_bytes());
            h.write(c.data_set.as_bytes());
            h.write(c.handle_unknown_values.as_str().as_bytes());
            for s in &c.search_in {
                h.write(s.as_bytes());
                h.write_u8(0xfd);
            }
        }
        h.write_u8(0xff);
    }
    for d in data_sets {
        h.write(d.name().as_bytes());
        h.write_u64(d.fingerprint());
    }
    h.finish()
}

fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Result of [`Engine::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The snapshot differed and is now current, with this version.
    Swapped(u64),
    /// The snapshot equalled the current one; nothing changed.
    Unchanged(u64),
}

/// Holds the current snapshot. Readers never lock; publishers serialize among themselves.
///
/// Readers never free a snapshot either: a reader still holding the previous snapshot when a
/// new one is published would otherwise drop the last reference and pay for freeing it (a
/// million rows and their index) inside a decision. The publisher keeps each replaced
/// snapshot until no reader holds it and frees it itself, at that or a later publish.
pub struct Engine {
    current: ArcSwap<Snapshot>,
    /// Replaced snapshots some reader still held when they were replaced.
    publish: Mutex<Vec<Arc<Snapshot>>>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// An engine holding the empty snapshot (version 0, everything allowed, not ready).
    pub fn new() -> Engine {
        Engine {
            current: ArcSwap::from_pointee(Snapshot::empty()),
            publish: Mutex::new(Vec::new()),
        }
    }

    /// The current snapshot. Cheap and lock-free; hold it for the duration of one request.
    #[inline]
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc` (for long-lived readers).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Whether a snapshot has been published (version ≥ 1).
    pub fn is_ready(&self) -> bool {
        self.current.load().version > 0
    }

    /// Publishes `snapshot` as the next version unless its content equals the current one.
    pub fn publish(&self, snapshot: Snapshot) -> Published {
        self.publish_at(snapshot, 0)
    }

    /// Publishes `snapshot` as the content of store revision `revision`: as the next version,
    /// or, if its content equals the current one's, by raising the current one's revision.
    pub fn publish_at(&self, mut snapshot: Snapshot, revision: i64) -> Published {
        // A poisoned lock only means another publisher panicked mid-publish; the retired list
        // it guards is still a list of snapshots to free.
        let mut retired = self
            .publish
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.load();
        if current.version > 0 && current.fingerprint == snapshot.fingerprint {
            current
                .revision
                .fetch_max(revision, std::sync::atomic::Ordering::SeqCst);
            return Published::Unchanged(current.version);
        }
        snapshot.version = current.version + 1;
        *snapshot.revision.get_mut() = revision;
        let version = snapshot.version;
        drop(current);
        let replaced = self.current.swap(Arc::new(snapshot));
        retired.push(replaced);
        // Free (here, on the publisher) every replaced snapshot no reader holds any more.
        retired.retain(|s| Arc::strong_count(s) > 1);
        Published::Swapped(version)
    }

    /// Decides one request against the current snapshot.
    #[inline]
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        self.current.load().decide(request)
    }

    /// Decides many requests against one snapshot load.
    pub fn decide_batch(&self, requests: &[Request<'_>], out: &mut Vec<Decision>) {
        self.current.load().decide_batch(requests, out);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::dataset::{Cell, Column, DataSetBuilder, Schema};
    use crate::model::policy::{Criterion, ServiceScope};

    fn users(names: &[&str]) -> Arc<DataSet> {
        let schema = Schema::new(
            vec![Column {
                name: "user".into(),
                key: true,
            }],
            false,
        )
        .unwrap();
        let mut b = DataSetBuilder::new("Suspicious Users", schema);
        for n in names {
            b.push(vec![Cell::One((*n).into())]).unwrap();
        }
        Arc::new(b.build())
    }

    fn policy(name: &str, action: Action, op: Operation, apply: &[&str]) -> Policy {
        Policy {
            name: name.into(),
            enabled: true,
            action,
            severity: Severity::High,
            followed_action: None,
            apply_to: ServiceScope::new(&apply.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap(),
            criteria: vec![Criterion {
                field: Field::DbUser,
                operation: op,
                data_set: "Suspicious Users".into(),
                search_in: vec![],
                handle_unknown_values: UnknownValues::NoMatch,
            }],
            when_unknown: WhenUnknown::default(),
        }
    }

    /// One policy blocking the data set's members on every service.
    fn block_everywhere() -> Vec<Policy> {
        vec![policy(
            "block",
            Action::Block,
            Operation::AtLeastOne,
            &["*"],
        )]
    }

    #[test]
    fn a_reader_never_frees_the_snapshot_it_held() {
        let engine = Engine::new();
        let mut cache = IndexCache::default();
        let policies = block_everywhere();
        let publish = |names: &[&str], cache: &mut IndexCache| {
            let set = users(names);
            let weak = Arc::downgrade(&set);
            engine.publish(Snapshot::build(&policies, vec![set], cache).unwrap());
            weak
        };
        let first = publish(&["corp\\alice"], &mut cache);
        let held = engine.load();
        let second = publish(&["corp\\bob"], &mut cache);
        // The reader's snapshot was replaced while held: dropping the guard must not free it.
        drop(held);
        assert!(first.upgrade().is_some(), "the reader freed the snapshot");
        // The next publish frees it on the publisher, as it does a snapshot no one held.
        publish(&["corp\\carol"], &mut cache);
        assert!(first.upgrade().is_none());
        assert!(second.upgrade().is_none());
        assert_eq!(
            engine
                .decide(&Request::new("orders").db_user("corp\\carol"))
                .outcome,
            Outcome::Block
        );
    }

    #[test]
    fn match_keys_hold_the_matched_values_not_the_extra_ones() {
        let mut cache = IndexCache::default();
        let policies = vec![
            policy("in", Action::Block, Operation::AtLeastOne, &["*"]),
            policy("out", Action::None, Operation::None, &["*"]),
        ];
        let snap = Snapshot::build(&policies, vec![users(&["corp\\alice"])], &mut cache).unwrap();
        let key = |users: &[&str]| {
            let mut r = Request::new("orders");
            for u in users {
                r = r.db_user(u);
            }
            let d = snap.decide(&r);
            d.matched
                .iter()
                .map(|m| snap.match_key(m, &r))
                .collect::<Vec<_>>()
        };
        // The listed user, whatever extra names ride along: one key.
        assert_eq!(key(&["CORP\\Alice"]), ["corp\\alice"]);
        assert_eq!(key(&["corp\\alice", "x1"]), ["corp\\alice"]);
        assert_eq!(key(&["x2", "corp\\alice"]), ["corp\\alice"]);
        // Another spelling of the listed account is the same account: the same key (it was
        // left out, and so keyed like any other listed user's).
        assert_eq!(key(&["alice@corp.example.test"]), ["corp\\alice"]);
        // `none`: the values checked are what matched.
        assert_eq!(key(&["Bob"]), ["bob"]);
    }

    #[test]
    fn block_names_policy_and_version() {
        let engine = Engine::new();
        let mut cache = IndexCache::default();
        let policies = block_everywhere();
        let snap = Snapshot::build(&policies, vec![users(&["corp\\alice"])], &mut cache).unwrap();
        assert_eq!(engine.publish(snap), Published::Swapped(1));
        let d = engine.decide(&Request::new("orders").db_user("CORP\\Alice"));
        assert_eq!(d.outcome, Outcome::Block);
        assert_eq!(d.snapshot_version, 1);
        assert_eq!(d.matched.len(), 1);
        let mut json = Vec::new();
        engine.load().render_decision(&d, &mut json);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"decision":"block","snapshot_version":1,"revision":0,"matched":[{"policy":"block","action":"block","severity":"high","followed_action":null}]}"#
        );
        let d = engine.decide(&Request::new("orders").db_user("corp\\bob"));
        assert_eq!(d.outcome, Outcome::Allow);
        assert!(d.matched.is_empty());
    }

    #[test]
    fn rendered_matches_escape_names_and_carry_followed_actions() {
        let mut cache = IndexCache::default();
        let mut quoted = policy(
            "Block \"bad\"\\users",
            Action::Block,
            Operation::AtLeastOne,
            &["*"],
        );
        quoted.followed_action = Some("page \"soc\"".into());
        let audit = policy("audit", Action::None, Operation::AtLeastOne, &["*"]);
        let snap =
            Snapshot::build(&[quoted, audit], vec![users(&["corp\\alice"])], &mut cache).unwrap();
        let d = snap.decide(&Request::new("orders").db_user("corp\\alice"));
        let mut out = Vec::new();
        snap.render_decision(&d, &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "decision": "block",
                "snapshot_version": 0,
                "revision": 0,
                "matched": [
                    {"policy": "Block \"bad\"\\users", "action": "block", "severity": "high",
                     "followed_action": "page \"soc\""},
                    {"policy": "audit", "action": "none", "severity": "high",
                     "followed_action": null},
                ],
            })
        );
        // A match from another snapshot (no such policy here) still renders, nameless.
        let mut foreign = d.clone();
        foreign.matched[0].policy = 7;
        let mut out = Vec::new();
        snap.render_decision(&foreign, &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["matched"][0]["policy"], "");
        assert_eq!(json["matched"][0]["action"], "block");
    }

    #[test]
    fn operations_and_unknown_values() {
        let mut cache = IndexCache::default();
        let ds = users(&["a", "b"]);
        let all = policy("all", Action::Block, Operation::All, &["*"]);
        let none = policy("none", Action::None, Operation::None, &["*"]);
        let mut unknown = policy("unknown", Action::None, Operation::AtLeastOne, &["*"]);
        unknown.criteria[0].handle_unknown_values = UnknownValues::Match;
        let snap = Snapshot::build(&[all, none, unknown], vec![ds], &mut cache).unwrap();
        let names = |r: &Request| {
            snap.decide(r)
                .matched
                .iter()
                .map(|m| snap.policy(m).unwrap().name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&Request::new("s").db_user("A").db_user("b")),
            ["all", "unknown"]
        );
        assert_eq!(
            names(&Request::new("s").db_user("a").db_user("c")),
            ["unknown"]
        );
        assert_eq!(names(&Request::new("s").db_user("c")), ["none"]);
        // No db_user at all: only the criterion that treats unknown as a match.
        assert_eq!(names(&Request::new("s")), ["unknown"]);
        assert_eq!(snap.decide(&Request::new("s")).outcome, Outcome::Allow);
    }

    #[test]
    fn apply_to_and_disabled() {
        let mut cache = IndexCache::default();
        let scoped = policy("scoped", Action::Block, Operation::AtLeastOne, &["pay-*"]);
        let mut off = policy("off", Action::Block, Operation::AtLeastOne, &["*"]);
        off.enabled = false;
        let snap = Snapshot::build(&[scoped, off], vec![users(&["x"])], &mut cache).unwrap();
        assert_eq!(
            snap.decide(&Request::new("pay-eu").db_user("x")).outcome,
            Outcome::Block
        );
        assert_eq!(
            snap.decide(&Request::new("orders").db_user("x")).outcome,
            Outcome::Allow
        );
    }

    #[test]
    fn unchanged_content_is_not_republished_and_indexes_are_reused() {
        let engine = Engine::new();
        let mut cache = IndexCache::default();
        let policies = vec![policy("p", Action::Block, Operation::AtLeastOne, &["*"])];
        let s1 = Snapshot::build(&policies, vec![users(&["x"])], &mut cache).unwrap();
        let idx1 = Arc::clone(&s1.policies[0].criteria[0].index);
        assert_eq!(engine.publish(s1), Published::Swapped(1));
        let s2 = Snapshot::build(&policies, vec![users(&["x"])], &mut cache).unwrap();
        assert!(Arc::ptr_eq(&idx1, &s2.policies[0].criteria[0].index));
        assert_eq!(engine.publish(s2), Published::Unchanged(1));
        let s3 = Snapshot::build(&policies, vec![users(&["x", "y"])], &mut cache).unwrap();
        assert_eq!(engine.publish(s3), Published::Swapped(2));
    }

    #[test]
    fn unknown_references_are_errors() {
        let mut cache = IndexCache::default();
        let mut p = policy("p", Action::Block, Operation::AtLeastOne, &["*"]);
        p.criteria[0].search_in = vec!["nope".into()];
        assert!(matches!(
            Snapshot::build(&[p], vec![users(&[])], &mut cache),
            Err(CompileError::UnknownColumn { .. })
        ));
    }

    fn unknown_users() -> Arc<DataSet> {
        let schema = users(&[]).schema().clone();
        Arc::new(DataSet::unknown("Suspicious Users", schema))
    }

    #[test]
    fn an_unknown_data_set_makes_a_decision_it_could_change_an_error() {
        let mut cache = IndexCache::default();
        let snap = Snapshot::build(&block_everywhere(), vec![unknown_users()], &mut cache).unwrap();
        assert_eq!(snap.waiting_for(), ["Suspicious Users"]);
        let d = snap.decide(&Request::new("orders").db_user("corp\\alice"));
        assert_eq!(d.outcome, Outcome::Error);
        assert!(d.matched.is_empty());
        assert_eq!(d.unknown.as_slice(), [0]);
        assert_eq!(snap.unknown_data_sets(&d), ["Suspicious Users"]);
        let mut json = Vec::new();
        snap.render_decision(&d, &mut json);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"decision":"error","snapshot_version":0,"revision":0,"matched":[],"unknown":[{"policy":"block","action":"block","when_unknown":"error","data_sets":["Suspicious Users"]}]}"#
        );
        // No db_user: `handle_unknown_values` decides without the data set, so no error.
        let d = snap.decide(&Request::new("orders"));
        assert_eq!(d.outcome, Outcome::Allow);
        assert!(d.unknown.is_empty());
        // An empty set that has loaded is a real answer: allow, nothing waits.
        let loaded = Snapshot::build(&block_everywhere(), vec![users(&[])], &mut cache).unwrap();
        assert!(loaded.waiting_for().is_empty());
        let d = loaded.decide(&Request::new("orders").db_user("corp\\alice"));
        assert_eq!(d.outcome, Outcome::Allow);
        assert!(d.unknown.is_empty());
        // Loading (even empty) changes the content: the snapshot republishes.
        assert_ne!(snap.fingerprint, loaded.fingerprint);
    }

    #[test]
    fn when_unknown_says_block_or_allow_instead() {
        let mut cache = IndexCache::default();
        let request = Request::new("orders").db_user("corp\\alice");
        for (when, outcome) in [
            (WhenUnknown::Error, Outcome::Error),
            (WhenUnknown::Block, Outcome::Block),
            (WhenUnknown::Allow, Outcome::Allow),
        ] {
            let mut policies = block_everywhere();
            policies[0].when_unknown = when;
            let snap = Snapshot::build(&policies, vec![unknown_users()], &mut cache).unwrap();
            let d = snap.decide(&request);
            assert_eq!(d.outcome, outcome, "{when:?}");
            // Undetermined is never "matched": no followed action runs for it.
            assert!(d.matched.is_empty(), "{when:?}");
            assert_eq!(d.unknown.as_slice(), [0], "{when:?}");
        }
    }

    #[test]
    fn only_decisions_an_unknown_set_could_change_are_errors() {
        let mut cache = IndexCache::default();
        let schema = users(&[]).schema().clone();
        let mut known = DataSetBuilder::new("Known", schema.clone());
        known.push(vec![Cell::One("corp\\mallory".into())]).unwrap();
        let known = Arc::new(known.build());
        let mut listed = policy("listed", Action::Block, Operation::AtLeastOne, &["*"]);
        listed.criteria[0].data_set = "Known".into();
        let scoped = policy("scoped", Action::Block, Operation::AtLeastOne, &["pay-*"]);
        let audit = policy("audit", Action::None, Operation::AtLeastOne, &["*"]);
        let mut off = policy("off", Action::Block, Operation::AtLeastOne, &["*"]);
        off.enabled = false;
        let mut both = policy("both", Action::Block, Operation::AtLeastOne, &["*"]);
        both.criteria.push(Criterion {
            data_set: "Known".into(),
            ..both.criteria[0].clone()
        });
        both.criteria[1].field = Field::OsUser;
        let snap = Snapshot::build(
            &[listed, scoped, audit, off, both],
            vec![unknown_users(), known],
            &mut cache,
        )
        .unwrap();
        assert_eq!(snap.waiting_for(), ["Suspicious Users"]);
        let names = |d: &Decision| {
            d.unknown
                .iter()
                .map(|&i| snap.policies()[i as usize].policy().name.clone())
                .collect::<Vec<_>>()
        };
        // A service outside the scoped policy, os_user not in Known: nothing that blocks
        // depends on the unknown set (audit never blocks), so the answer stands.
        let d = snap.decide(&Request::new("orders").db_user("corp\\alice"));
        assert_eq!(d.outcome, Outcome::Allow);
        assert_eq!(names(&d), ["audit"]);
        // A determined block stays a block whatever the unknown set would say.
        let d = snap.decide(&Request::new("pay-eu").db_user("corp\\mallory"));
        assert_eq!(d.outcome, Outcome::Block);
        assert_eq!(d.matched.len(), 1);
        assert_eq!(names(&d), ["scoped", "audit"]);
        // In the scoped policy's services it is undetermined: error.
        let d = snap.decide(&Request::new("pay-eu").db_user("corp\\alice"));
        assert_eq!(d.outcome, Outcome::Error);
        // `both` needs os_user in Known too; when it is, its match hangs on the unknown set.
        let mut r = Request::new("orders").db_user("corp\\alice");
        r.os_user = Some("corp\\mallory");
        let d = snap.decide(&r);
        assert_eq!(d.outcome, Outcome::Error);
        assert_eq!(names(&d), ["audit", "both"]);
        assert_eq!(snap.unknown_data_sets(&d), ["Suspicious Users"]);
    }

    #[test]
    fn a_disabled_policy_waits_for_nothing() {
        let mut cache = IndexCache::default();
        let mut policies = block_everywhere();
        policies[0].enabled = false;
        let snap = Snapshot::build(&policies, vec![unknown_users()], &mut cache).unwrap();
        assert!(snap.waiting_for().is_empty());
        let d = snap.decide(&Request::new("orders").db_user("corp\\alice"));
        assert_eq!(d.outcome, Outcome::Allow);
        assert!(d.unknown.is_empty());
    }

    #[test]
    fn json_strings_escape() {
        let mut out = Vec::new();
        json_string("a\"b\\c\u{1}é", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"b\\\\c\\u0001é\"");
    }
}
