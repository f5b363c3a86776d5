//! Security policies (Imperva "DB Service Custom"): match criteria over request fields and data
//! sets, an action, a severity, a followed action and the services a policy applies to.
//!
//! This module owns the vocabulary and its exact semantics; [`crate::decide`] compiles policies
//! against data sets into a snapshot and evaluates them.

use std::collections::HashSet;

use regex_automata::meta::Regex;
use serde::Serialize;

pub use crate::base::severity::Severity;
pub use crate::base::word::UnknownWord;
use crate::base::word::words;

/// A request field a criterion can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    DbUser,
    OsUser,
    SourceApp,
    ClientIp,
    Service,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::DbUser,
        Field::OsUser,
        Field::SourceApp,
        Field::ClientIp,
        Field::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::DbUser => "db_user",
            Field::OsUser => "os_user",
            Field::SourceApp => "source_app",
            Field::ClientIp => "client_ip",
            Field::Service => "service",
        }
    }
}

/// How a criterion combines the request's values with the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// At least one of the request's values is in the data set.
    AtLeastOne,
    /// Every one of the request's values is in the data set.
    All,
    /// None of the request's values is in the data set.
    None,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::AtLeastOne => "at-least-one",
            Operation::All => "all",
            Operation::None => "none",
        }
    }
}

/// What a criterion does when the request lacks the field (Imperva's "Handle Unknown Values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownValues {
    /// A missing field does not match (the default: an unknown user is not blocked by a list).
    #[default]
    NoMatch,
    /// A missing field matches (fail closed for this criterion).
    Match,
}

impl UnknownValues {
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownValues::NoMatch => "no-match",
            UnknownValues::Match => "match",
        }
    }
}

/// The action of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Block,
    None,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::None => "none",
        }
    }
}

/// What a policy answers for a request its match depends on, while a data set it reads has
/// never loaded (is *unknown*, not empty): fail closed with an error by default, or block; or,
/// only where the configuration says so explicitly, treat the policy as not matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenUnknown {
    /// The decision is an error (HTTP 503, CLI exit 2): neither allow nor block.
    #[default]
    Error,
    /// The policy counts as matched: a blocking policy blocks.
    Block,
    /// The policy counts as not matched (explicit opt-in only).
    Allow,
}

impl WhenUnknown {
    pub fn as_str(self) -> &'static str {
        match self {
            WhenUnknown::Error => "error",
            WhenUnknown::Block => "block",
            WhenUnknown::Allow => "allow",
        }
    }
}

words!(WhenUnknown, "error, block, allow", {
    "error" => WhenUnknown::Error, "block" => WhenUnknown::Block, "allow" => WhenUnknown::Allow,
});
words!(Field, "db_user, os_user, source_app, client_ip, service", {
    "db_user" => Field::DbUser, "os_user" => Field::OsUser, "source_app" => Field::SourceApp,
    "client_ip" => Field::ClientIp, "service" => Field::Service,
});
words!(Operation, "at-least-one, all, none", {
    "at-least-one" => Operation::AtLeastOne, "all" => Operation::All, "none" => Operation::None,
});
words!(UnknownValues, "no-match, match", {
    "no-match" => UnknownValues::NoMatch, "match" => UnknownValues::Match,
});
words!(Action, "block, none", { "block" => Action::Block, "none" => Action::None });

/// One match criterion as configured: all criteria of a policy must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criterion {
    pub field: Field,
    pub operation: Operation,
    pub data_set: String,
    /// Columns searched; empty means the key column.
    pub search_in: Vec<String>,
    pub handle_unknown_values: UnknownValues,
}

/// A policy as configured (validated, not yet compiled against data sets).
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub enabled: bool,
    pub action: Action,
    pub severity: Severity,
    pub followed_action: Option<String>,
    pub apply_to: ServiceScope,
    pub criteria: Vec<Criterion>,
    /// What a request this policy's match depends on answers while a data set it reads has
    /// never loaded.
    pub when_unknown: WhenUnknown,
}

/// The services a policy applies to: exact names and globs (`*` any run, `?` one character).
#[derive(Debug, Clone)]
pub struct ServiceScope {
    patterns: Vec<String>,
    all: bool,
    exact: HashSet<Box<str>, foldhash::fast::RandomState>,
    globs: Option<Regex>,
}

/// A glob in `apply_to` that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("invalid service glob {glob:?}: {source}")]
pub struct GlobError {
    pub glob: String,
    #[source]
    pub source: Box<regex_automata::meta::BuildError>,
}

impl ServiceScope {
    /// Compiles service names and globs. An empty list applies to no service.
    pub fn new(patterns: &[String]) -> Result<ServiceScope, GlobError> {
        let mut exact = HashSet::default();
        let mut globs = Vec::new();
        let mut all = false;
        for p in patterns {
            if p.chars().all(|c| c == '*') && !p.is_empty() {
                all = true;
            } else if p.contains(['*', '?']) {
                globs.push(p.as_str());
            } else {
                exact.insert(p.clone().into_boxed_str());
            }
        }
        let globs = if globs.is_empty() || all {
            None
        } else {
            let alternation = globs
                .iter()
                .map(|g| glob_to_regex(g))
                .collect::<Vec<_>>()
                .join("|");
            let regex = Regex::new(&format!("^(?:{alternation})$")).map_err(|e| GlobError {
                glob: globs.join(", "),
                source: Box::new(e),
            })?;
            Some(regex)
        };
        Ok(ServiceScope {
            patterns: patterns.to_vec(),
            all,
            exact,
            globs,
        })
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether the scope is `*`: every service, whatever its name.
    pub fn applies_to_all(&self) -> bool {
        self.all
    }

    #[inline]
    pub fn applies_to(&self, service: &str) -> bool {
        self.all
            || self.exact.contains(service)
            || self.globs.as_ref().is_some_and(|g| g.is_match(service))
    }
}

fn glob_to_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() * 2);
    for c in glob.chars() {
        match c {
            '*' => out.push_str("(?s:.*)"),
            '?' => out.push_str("(?s:.)"),
            c => out.push_str(&regex_syntax::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scopes_match_exact_and_globs() {
        let s = ServiceScope::new(&["orders".into(), "pay-*".into(), "db?".into()]).unwrap();
        assert!(s.applies_to("orders"));
        assert!(!s.applies_to("Orders"));
        assert!(s.applies_to("pay-eu"));
        assert!(s.applies_to("pay-"));
        assert!(s.applies_to("db1"));
        assert!(!s.applies_to("db12"));
        assert!(!s.applies_to("xorders"));
        let all = ServiceScope::new(&["*".into()]).unwrap();
        assert!(all.applies_to("anything") && all.applies_to(""));
        let none = ServiceScope::new(&[]).unwrap();
        assert!(!none.applies_to("orders"));
        let dots = ServiceScope::new(&["a.b*".into()]).unwrap();
        assert!(dots.applies_to("a.bc") && !dots.applies_to("axbc"));
    }

    #[test]
    fn words_round_trip() {
        for f in Field::ALL {
            assert_eq!(f.as_str().parse::<Field>().unwrap(), f);
        }
        assert_eq!("noAlert".parse::<Severity>().unwrap(), Severity::NoAlert);
        let err = "sometimes".parse::<Operation>().unwrap_err();
        assert!(err.to_string().contains("at-least-one"));
    }
}
