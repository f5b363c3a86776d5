//! Decisions equal a naive reference evaluator's, over random policies, data sets and requests.
//!
//! The reference (`reference` below) is written from docs/ARCHITECTURE.md ("Policies and decisions", and
//! "Data sets" for case folding), not from src/decide/engine.rs, and deliberately shares none of its
//! machinery: it scans every row of a data set instead of asking a membership index, matches
//! `apply_to` globs with a backtracking matcher instead of a regex, and folds case with a copy
//! of CaseFolding.txt's lines for the characters the values use instead of deriving folding
//! from the standard library's case tables. Only the vocabulary enums (`Field`, `Operation`,
//! `Action`, `Severity`) are shared.
//!
//! proptest rather than a hand-rolled generator: its strategies compose (data sets, then policies
//! that refer into them, then requests), a failure is shrunk to a minimal policy / data set /
//! request before it is reported, and a failing seed is kept in `proptest-regressions/` so the
//! case is replayed first on the next run. The case count is fixed (`CASES`), so the test runs
//! in seconds.
//!
//! Values come mostly from a small pool, so requests hit data sets often, with case variants
//! that fold together (`CORP\Alice` / `corp\alice`, `ÖLAF` / `ölaf`, the Kelvin sign and `k`,
//! `ẞ` and `ß`, `ΟΔΥΣΣΕΥΣ` / `οδυσσευς` / `οδυσσευσ`, the micro sign and `μ`, `ſſ` and `SS`)
//! and ones that must not (`ß` / `SS`, `ı` / `i`, `İ` / `i̇`), and principals that name one
//! account (`CORP\alice`, `alice@corp.example.test`, `alice@CORP.EXAMPLE.TEST`) or another
//! (`PARTNER\alice`), which `db_user` and `os_user` criteria compare as accounts.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::select;
use warden::decide::{Decision, Engine, IndexCache, Outcome, Published, Request, Snapshot};
use warden::model::dataset::{Cell, Column, DataSet, DataSetBuilder, Schema};
use warden::model::policy::{
    Action, Criterion, Field, Operation, Policy, ServiceScope, Severity, UnknownValues,
};

const CASES: u32 = 256;

// ------------------------------------------------------------------ the model

/// A data set as plain rows: `rows[r][c]` is the list of values of column `c` in row `r`
/// (empty = an empty cell, one value = a single-valued cell).
#[derive(Debug, Clone)]
struct ModelDataSet {
    name: String,
    columns: Vec<String>,
    key: usize,
    case_sensitive: bool,
    rows: Vec<Vec<Vec<String>>>,
}

#[derive(Debug, Clone)]
struct ModelCriterion {
    field: Field,
    operation: Operation,
    data_set: usize,
    /// Column positions in the data set; empty = the key column.
    search_in: Vec<usize>,
    unknown_matches: bool,
}

#[derive(Debug, Clone)]
struct ModelPolicy {
    name: String,
    enabled: bool,
    action: Action,
    severity: Severity,
    apply_to: Vec<String>,
    criteria: Vec<ModelCriterion>,
}

#[derive(Debug, Clone)]
struct ModelRequest {
    service: String,
    db_user: Vec<String>,
    os_user: Option<String>,
    source_app: Option<String>,
    client_ip: Option<String>,
}

#[derive(Debug, Clone)]
struct World {
    data_sets: Vec<ModelDataSet>,
    policies: Vec<ModelPolicy>,
    requests: Vec<ModelRequest>,
}

// ------------------------------------------------------------------ the reference

mod reference {
    use super::*;

    /// What a decision must say: block or allow, and every matched policy (name, action,
    /// severity) in policy order.
    pub type Answer = (bool, Vec<(String, Action, Severity)>);

    /// Unicode simple case folding (statuses C and S) of the non-ASCII characters in
    /// `VALUES`, copied from Unicode 15.0's CaseFolding.txt; every other non-ASCII character
    /// the values use (`ö`, `ß`, `ı`, `İ`, `é`, small Greek) has no such line and folds to itself.
    const CASE_FOLDING: &[(char, char)] = &[
        ('\u{00B5}', '\u{03BC}'), // MICRO SIGN
        ('\u{00D6}', '\u{00F6}'), // LATIN CAPITAL LETTER O WITH DIAERESIS
        ('\u{017F}', '\u{0073}'), // LATIN SMALL LETTER LONG S
        ('\u{0394}', '\u{03B4}'), // GREEK CAPITAL LETTER DELTA
        ('\u{0395}', '\u{03B5}'), // GREEK CAPITAL LETTER EPSILON
        ('\u{039C}', '\u{03BC}'), // GREEK CAPITAL LETTER MU
        ('\u{039F}', '\u{03BF}'), // GREEK CAPITAL LETTER OMICRON
        ('\u{03A3}', '\u{03C3}'), // GREEK CAPITAL LETTER SIGMA
        ('\u{03A5}', '\u{03C5}'), // GREEK CAPITAL LETTER UPSILON
        ('\u{03C2}', '\u{03C3}'), // GREEK SMALL LETTER FINAL SIGMA
        ('\u{1E9E}', '\u{00DF}'), // LATIN CAPITAL LETTER SHARP S (status S)
        ('\u{212A}', '\u{006B}'), // KELVIN SIGN
    ];

    pub fn fold(value: &str, case_sensitive: bool) -> String {
        if case_sensitive {
            return value.to_string();
        }
        value
            .chars()
            .map(|c| match CASE_FOLDING.iter().find(|(from, _)| *from == c) {
                Some(&(_, to)) => to,
                None => c.to_ascii_lowercase(),
            })
            .collect()
    }

    /// The account a principal names under the default identity rules (docs/ARCHITECTURE.md,
    /// "Several domains"; the seed's rule, no configured domain, no default domain):
    /// `DOMAIN\user` is the upper-cased NetBIOS domain's user, or, where the domain is a DNS
    /// name, its first label's; `user@suffix` is the first label of the suffix's user; a bare
    /// name, a DN-looking string (with `=`) or a part left empty is itself.
    pub fn account(value: &str) -> String {
        let upper = |s: &str| s.to_ascii_uppercase();
        let first_label = |s: &str| s.split('.').next().unwrap_or("").to_string();
        if let Some((domain, user)) = value.split_once('\\') {
            if domain.is_empty() || user.is_empty() || domain.contains('=') {
                return value.to_string();
            }
            let netbios = if domain.contains('.') {
                first_label(domain)
            } else {
                domain.to_string()
            };
            if netbios.is_empty() {
                return value.to_string();
            }
            return format!("{}\\{user}", upper(&netbios));
        }
        if let Some((user, suffix)) = value.rsplit_once('@') {
            let netbios = first_label(suffix);
            if user.is_empty() || netbios.is_empty() || value.contains('=') {
                return value.to_string();
            }
            return format!("{}\\{user}", upper(&netbios));
        }
        value.to_string()
    }

    /// "value is in the data set": some row holds it (after folding, for a case-insensitive
    /// set) in one of the searched columns, single- or multi-valued. A principal (`db_user`,
    /// `os_user`) is compared as the account it names, on both sides.
    fn in_data_set(ds: &ModelDataSet, search_in: &[usize], value: &str, principal: bool) -> bool {
        let columns = if search_in.is_empty() {
            vec![ds.key]
        } else {
            search_in.to_vec()
        };
        let name = |v: &str| if principal { account(v) } else { v.to_string() };
        let needle = fold(&name(value), ds.case_sensitive);
        ds.rows.iter().any(|row| {
            columns.iter().any(|&c| {
                row[c]
                    .iter()
                    .any(|v| fold(&name(v), ds.case_sensitive) == needle)
            })
        })
    }

    /// `*` any run of characters, `?` exactly one, anything else itself; the whole name.
    fn glob(pattern: &[char], text: &[char]) -> bool {
        match (pattern.split_first(), text.split_first()) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(('*', rest)), _) => {
                glob(rest, text) || (!text.is_empty() && glob(pattern, &text[1..]))
            }
            (Some(('?', rest)), Some((_, text_rest))) => glob(rest, text_rest),
            (Some((p, rest)), Some((t, text_rest))) if p == t => glob(rest, text_rest),
            _ => false,
        }
    }

    fn applies_to(apply_to: &[String], service: &str) -> bool {
        let service: Vec<char> = service.chars().collect();
        apply_to.iter().any(|p| {
            let p: Vec<char> = p.chars().collect();
            glob(&p, &service)
        })
    }

    fn values(r: &ModelRequest, field: Field) -> Vec<&str> {
        match field {
            Field::DbUser => r.db_user.iter().map(String::as_str).collect(),
            Field::OsUser => r.os_user.iter().map(String::as_str).collect(),
            Field::SourceApp => r.source_app.iter().map(String::as_str).collect(),
            Field::ClientIp => r.client_ip.iter().map(String::as_str).collect(),
            Field::Service => vec![r.service.as_str()],
        }
    }

    fn criterion_matches(w: &World, c: &ModelCriterion, r: &ModelRequest) -> bool {
        let values = values(r, c.field);
        // handle_unknown_values: a field the request does not carry decides the criterion alone.
        if values.is_empty() {
            return c.unknown_matches;
        }
        let ds = &w.data_sets[c.data_set];
        let hits = values
            .iter()
            .filter(|v| {
                let principal = matches!(c.field, Field::DbUser | Field::OsUser);
                in_data_set(ds, &c.search_in, v, principal)
            })
            .count();
        match c.operation {
            Operation::AtLeastOne => hits >= 1,
            Operation::All => hits == values.len(),
            Operation::None => hits == 0,
        }
    }

    pub fn decide(w: &World, r: &ModelRequest) -> Answer {
        let matched: Vec<(String, Action, Severity)> = w
            .policies
            .iter()
            .filter(|p| p.enabled)
            .filter(|p| applies_to(&p.apply_to, &r.service))
            .filter(|p| p.criteria.iter().all(|c| criterion_matches(w, c, r)))
            .map(|p| (p.name.clone(), p.action, p.severity))
            .collect();
        let block = matched.iter().any(|(_, a, _)| *a == Action::Block);
        (block, matched)
    }
}

// ------------------------------------------------------------------ strategies

const VALUES: &[&str] = &[
    "alice",
    "ALICE",
    "Alice",
    "bob",
    "corp\\alice",
    "CORP\\Alice",
    "ölaf",
    "ÖLAF",
    "ß",
    "ẞ",
    "SS",
    "İ",
    "i\u{307}",
    "i",
    "\u{131}",
    "ΟΔΥΣΣΕΥΣ",
    "οδυσσευς",
    "οδυσσευσ",
    "\u{b5}",
    "\u{3bc}",
    "\u{17f}\u{17f}",
    "k",
    "K",
    "\u{212A}",
    "a*b",
    "10.0.0.1",
    "psql",
    // One account under several names (the seed's rule), and names of other accounts.
    "alice@corp.example.test",
    "alice@CORP.EXAMPLE.TEST",
    "Alice@corp",
    "corp.example.test\\alice",
    "PARTNER\\alice",
    "alice@partner.test",
    "a@.x",
    "CN=a\\,b",
    "x=y@corp",
];

const SERVICES: &[&str] = &[
    "orders", "Orders", "pay-eu", "pay-", "db1", "db12", "é", "a.b", "axb", "x[1]",
];

const SCOPES: &[&str] = &[
    "*", "**", "orders", "pay-*", "db?", "?", "*-eu", "a.b", "x[1]", "é*", "*1", "Orders",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(VALUES).prop_map(String::from),
        1 => "[abAB\\\\é*.@=]{1,4}",
    ]
}

fn service() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(SERVICES).prop_map(String::from),
        1 => "[ab.é*?-]{1,3}",
    ]
}

fn scope() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(SCOPES).prop_map(String::from),
        1 => "[ab.é*?-]{0,3}",
    ]
}

fn field() -> impl Strategy<Value = Field> {
    select(Field::ALL.to_vec())
}

fn operation() -> impl Strategy<Value = Operation> {
    select(vec![Operation::AtLeastOne, Operation::All, Operation::None])
}

fn severity() -> impl Strategy<Value = Severity> {
    select(vec![
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informative,
        Severity::NoAlert,
    ])
}

fn data_set(i: usize) -> impl Strategy<Value = ModelDataSet> {
    (1usize..=3, any::<prop::sample::Index>(), any::<bool>()).prop_flat_map(
        move |(ncols, key, case_sensitive)| {
            let key = key.index(ncols);
            let row = (
                value(),
                prop::collection::vec(prop::collection::vec(value(), 0..=3), ncols - 1),
            );
            prop::collection::vec(row, 0..=6).prop_map(move |raw_rows| {
                let fold = |v: &str| reference::fold(v, case_sensitive);
                // Keys are unique (after folding): keep the first row of each key.
                let mut seen = Vec::new();
                let mut rows = Vec::new();
                for (k, mut others) in raw_rows {
                    if seen.contains(&fold(&k)) {
                        continue;
                    }
                    seen.push(fold(&k));
                    others.insert(key, vec![k]);
                    rows.push(others);
                }
                ModelDataSet {
                    name: format!("set {i}"),
                    columns: (0..ncols).map(|c| format!("col{c}")).collect(),
                    key,
                    case_sensitive,
                    rows,
                }
            })
        },
    )
}

/// A criterion with raw indexes, resolved against the data sets once they exist.
fn raw_criterion() -> impl Strategy<Value = (Field, Operation, usize, Vec<usize>, bool)> {
    (
        field(),
        operation(),
        any::<usize>(),
        prop::collection::vec(any::<usize>(), 0..=2),
        any::<bool>(),
    )
}

fn request() -> impl Strategy<Value = ModelRequest> {
    (
        service(),
        prop::collection::vec(value(), 0..=3),
        prop::option::of(value()),
        prop::option::of(value()),
        prop::option::of(value()),
    )
        .prop_map(
            |(service, db_user, os_user, source_app, client_ip)| ModelRequest {
                service,
                db_user,
                os_user,
                source_app,
                client_ip,
            },
        )
}

fn world() -> impl Strategy<Value = World> {
    let data_sets = (1usize..=3).prop_flat_map(|n| (0..n).map(data_set).collect::<Vec<_>>());
    let policy = (
        any::<bool>(),
        prop_oneof![3 => Just(Action::Block), 1 => Just(Action::None)],
        severity(),
        prop::collection::vec(scope(), 1..=3),
        prop::collection::vec(raw_criterion(), 1..=3),
    );
    (
        data_sets,
        prop::collection::vec(policy, 1..=4),
        prop::collection::vec(request(), 1..=8),
    )
        .prop_map(|(data_sets, raw_policies, requests)| {
            let policies = raw_policies
                .into_iter()
                .enumerate()
                .map(|(i, (enabled, action, severity, apply_to, criteria))| {
                    // Mostly enabled, so that disabled ones are the exception they are in practice.
                    let enabled = enabled || i % 2 == 0;
                    let criteria = criteria
                        .into_iter()
                        .map(|(field, operation, ds, search_in, unknown_matches)| {
                            let ds = ds % data_sets.len();
                            let ncols = data_sets[ds].columns.len();
                            ModelCriterion {
                                field,
                                operation,
                                data_set: ds,
                                search_in: search_in.into_iter().map(|c| c % ncols).collect(),
                                unknown_matches,
                            }
                        })
                        .collect();
                    ModelPolicy {
                        name: format!("policy {i}"),
                        enabled,
                        action,
                        severity,
                        apply_to,
                        criteria,
                    }
                })
                .collect();
            World {
                data_sets,
                policies,
                requests,
            }
        })
}

// ------------------------------------------------------------------ warden under test

fn build_data_set(m: &ModelDataSet) -> Arc<DataSet> {
    let columns = m
        .columns
        .iter()
        .enumerate()
        .map(|(c, name)| Column {
            name: name.clone(),
            key: c == m.key,
        })
        .collect();
    let schema = Schema::new(columns, m.case_sensitive).expect("valid schema");
    let mut b = DataSetBuilder::new(m.name.clone(), schema);
    for row in &m.rows {
        let cells = row.iter().map(|vs| Cell::from_values(vs.clone())).collect();
        b.push(cells)
            .unwrap_or_else(|e| panic!("row {row:?} of {}: {e}", m.name));
    }
    Arc::new(b.build())
}

fn build_policy(w: &World, p: &ModelPolicy) -> Policy {
    Policy {
        name: p.name.clone(),
        enabled: p.enabled,
        action: p.action,
        severity: p.severity,
        followed_action: None,
        when_unknown: Default::default(),
        apply_to: ServiceScope::new(&p.apply_to).expect("globs compile"),
        criteria: p
            .criteria
            .iter()
            .map(|c| {
                let ds = &w.data_sets[c.data_set];
                Criterion {
                    field: c.field,
                    operation: c.operation,
                    data_set: ds.name.clone(),
                    search_in: c.search_in.iter().map(|&i| ds.columns[i].clone()).collect(),
                    handle_unknown_values: if c.unknown_matches {
                        UnknownValues::Match
                    } else {
                        UnknownValues::NoMatch
                    },
                }
            })
            .collect(),
    }
}

fn request_of(r: &ModelRequest) -> Request<'_> {
    let mut req = Request::new(&r.service);
    for u in &r.db_user {
        req = req.db_user(u);
    }
    req.os_user = r.os_user.as_deref();
    req.source_app = r.source_app.as_deref();
    req.client_ip = r.client_ip.as_deref();
    req
}

fn answer(snapshot: &Snapshot, d: &Decision) -> reference::Answer {
    let matched = d
        .matched
        .iter()
        .map(|m| {
            let p = snapshot.policy(m).expect("a matched policy exists");
            assert_eq!((p.action, p.severity), (m.action, m.severity));
            (p.name.clone(), m.action, m.severity)
        })
        .collect();
    (d.outcome == Outcome::Block, matched)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn decisions_equal_the_reference(w in world()) {
        let data_sets: Vec<Arc<DataSet>> = w.data_sets.iter().map(build_data_set).collect();
        let policies: Vec<Policy> = w.policies.iter().map(|p| build_policy(&w, p)).collect();
        let snapshot = Snapshot::build(&policies, data_sets, &mut IndexCache::default())
            .expect("policies compile against their data sets");
        let engine = Engine::new();
        prop_assert_eq!(engine.publish(snapshot), Published::Swapped(1));
        let snapshot = engine.snapshot();

        let requests: Vec<Request<'_>> = w.requests.iter().map(request_of).collect();
        let mut batch = Vec::new();
        engine.decide_batch(&requests, &mut batch);
        prop_assert_eq!(batch.len(), requests.len());
        for ((model, req), batched) in w.requests.iter().zip(&requests).zip(&batch) {
            let d = engine.decide(req);
            prop_assert_eq!(d.snapshot_version, 1);
            prop_assert_eq!(&d, batched, "decide and decide_batch differ on {:?}", model);
            let want = reference::decide(&w, model);
            prop_assert_eq!(answer(&snapshot, &d), want, "request {:?}", model);
        }
    }
}
