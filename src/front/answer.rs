//! One answer for every front end: the decision on a request with its side effects, and what
//! a front end says with it — the blocking policy, the data sets that have never loaded, the
//! snapshot version. HTTP answers one request ([`answer`]); a gate answers a session, every
//! name it will be known by with every application name it sets ([`answer_session`]), at
//! admission and again on every snapshot swap ([`Moment`]).
//!
//! The side effects are `runtime`'s ([`Warden::decide`], [`Warden::record_decision`]): counters
//! and followed actions, the same whichever front end asked. A session's admission records
//! every decision; a re-check on a swap records only one that ends the session (a re-check
//! that allows again is not a new decision a person made anyone wait for). The console's
//! decision tester asks the pure [`Snapshot::decide`] and none of this.

use std::time::Duration;

use crate::decide::{Decision, Outcome, Request, Snapshot};
use crate::model::policy::Action;
use crate::runtime::Warden;

/// A decision with the snapshot it was taken from, for what a front end says about it.
pub struct Answer<'s> {
    pub decision: Decision,
    snapshot: &'s Snapshot,
}

impl<'s> Answer<'s> {
    pub fn outcome(&self) -> Outcome {
        self.decision.outcome
    }

    /// The version of the snapshot that decided.
    pub fn version(&self) -> u64 {
        self.snapshot.version()
    }

    /// The name of the first policy that blocked, for a message.
    pub fn blocking_policy(&self) -> Option<&'s str> {
        blocking_policy(self.snapshot, &self.decision)
    }

    /// The data sets that have never loaded that the decision depends on (why it is an error).
    pub fn unknown_data_sets(&self) -> Vec<&'s str> {
        self.snapshot.unknown_data_sets(&self.decision)
    }

    /// The decision as JSON, as every decision route answers it.
    pub fn render(&self, out: &mut Vec<u8>) {
        self.snapshot.render_decision(&self.decision, out);
    }
}

fn blocking_policy<'s>(snapshot: &'s Snapshot, decision: &Decision) -> Option<&'s str> {
    decision
        .matched
        .iter()
        .filter(|m| m.action == Action::Block)
        .find_map(|m| snapshot.policy(m))
        .map(|p| p.name.as_str())
}

/// Decides `request` against `snapshot` with the side effects of a decision.
pub fn answer<'s>(warden: &Warden, snapshot: &'s Snapshot, request: &Request<'_>) -> Answer<'s> {
    Answer {
        decision: warden.decide(snapshot, request),
        snapshot,
    }
}

/// Who a session is, as its decisions read it: the `service` of the front end, every name the
/// server will know it by (as accounts: a bare login qualified by the front end's domain), the
/// application names it sets, and the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asking {
    pub service: String,
    pub names: Vec<String>,
    pub applications: Vec<String>,
    pub client_ip: String,
    /// The domain bare names belong to (the gate's `domain`, else the default domain): the
    /// login `alice` is decided as the account `CORP\alice`.
    pub domain: Option<String>,
}

/// When a session is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Before the session is let in: every decision is recorded.
    Admission,
    /// Again on a snapshot swap: only a decision that ends it is recorded.
    Recheck,
}

/// The decision on a whole session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// `user` (one of the session's names) is blocked by `policy` (its name, empty if the
    /// snapshot no longer has it).
    Block {
        user: String,
        policy: String,
    },
    /// The snapshot cannot answer for `user` (a data set a policy reads has never loaded): not
    /// allow.
    Undecided {
        user: String,
    },
}

impl Verdict {
    /// The name the verdict is about, if it is not an allow.
    pub fn user(&self) -> Option<&str> {
        match self {
            Verdict::Allow => None,
            Verdict::Block { user, .. } | Verdict::Undecided { user } => Some(user),
        }
    }

    /// The refusal reason a front end counts it under (`blocked`, `undecided`).
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Allow => "allowed",
            Verdict::Block { .. } => "blocked",
            Verdict::Undecided { .. } => "undecided",
        }
    }

    /// The policy the audit record names: the blocking policy, or `(undecided)`.
    pub fn policy(&self) -> &str {
        match self {
            Verdict::Allow => "",
            Verdict::Block { policy, .. } => policy,
            Verdict::Undecided { .. } => "(undecided)",
        }
    }
}

/// Decides `asking` from `snapshot`: blocked when any name is (with any of its applications),
/// undecided when any cannot be decided and none is blocked, else allowed.
pub fn answer_session(
    warden: &Warden,
    snapshot: &Snapshot,
    asking: &Asking,
    moment: Moment,
) -> Verdict {
    let applications: Vec<Option<&str>> = if asking.applications.is_empty() {
        vec![None]
    } else {
        asking
            .applications
            .iter()
            .map(|a| Some(a.as_str()))
            .collect()
    };
    let mut undecided = None;
    for name in &asking.names {
        for application in &applications {
            let account = crate::base::identity::qualify(name, asking.domain.as_deref());
            let mut request = Request::new(&asking.service).db_user(&account);
            request.source_app = *application;
            request.client_ip = Some(&asking.client_ip);
            let decision = match moment {
                Moment::Admission => warden.decide(snapshot, &request),
                Moment::Recheck => snapshot.decide(&request),
            };
            if moment == Moment::Recheck && decision.outcome != Outcome::Allow {
                warden.record_decision(snapshot, &request, &decision, Duration::ZERO);
            }
            match decision.outcome {
                Outcome::Allow => {}
                Outcome::Block => {
                    let policy = blocking_policy(snapshot, &decision).unwrap_or_default();
                    return Verdict::Block {
                        user: name.clone(),
                        policy: policy.to_owned(),
                    };
                }
                Outcome::Error => {
                    undecided.get_or_insert_with(|| name.clone());
                }
            }
        }
    }
    undecided.map_or(Verdict::Allow, |user| Verdict::Undecided { user })
}
