//! The decision query string of `GET /v1/decision` and `/v1/authz` (`warden::http::query`), and
//! the JSON answer rendered from it. (The batch body of `POST /v1/decisions` has its own target,
//! `decision_batch`; the `records` target covers the JSON body the data-set endpoints and stored
//! data sets use.)
//!
//! Properties:
//! - `decode` agrees with a reference form decoder, errors included;
//! - `min_revision` reads a revision ≥ 0 that reads back the same, or an error;
//! - a parsed query has a non-empty service, no empty values and at most `MAX_DB_USERS` users;
//! - re-encoding a parsed query and parsing it again gives the same query;
//! - the decision for it, against a fixed snapshot, renders to valid JSON naming the outcome,
//!   the snapshot version and the matched policies, and blocks iff a blocking policy matched;
//! - every decoded value survives `json_string` → JSON parser unchanged.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use warden::model::dataset::{Cell, Column, DataSetBuilder, Schema};
use warden::decide::{IndexCache, Outcome, Snapshot};
use warden::base::json::json_string;
use warden::http::query::{DecisionQuery, DecodeError, MAX_DB_USERS, decode};
use warden::model::policy::{
    Action, Criterion, Field, Operation, Policy, ServiceScope, Severity, UnknownValues,
};
use warden_fuzz::{FormError, form_decode, form_encode};

const MAX_LEN: usize = 4096;

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let schema = Schema::new(
            vec![
                Column {
                    name: "user".into(),
                    key: true,
                },
                Column {
                    name: "app".into(),
                    key: false,
                },
            ],
            false,
        )
        .expect("schema");
        let mut b = DataSetBuilder::new("Suspicious Users", schema);
        for (user, app) in [
            ("corp\\alice", "psql"),
            ("Ölaf", "sqlplus"),
            ("\"quoted\"\n", "a\\b"),
        ] {
            b.push(vec![Cell::One(user.into()), Cell::One(app.into())])
                .expect("row");
        }
        let criterion = |field, operation, search_in: &str, unknown| Criterion {
            field,
            operation,
            data_set: "Suspicious Users".into(),
            search_in: vec![search_in.into()],
            handle_unknown_values: unknown,
        };
        let policy = |name: &str, action, apply: &[&str], criteria| Policy {
            name: name.into(),
            enabled: true,
            action,
            severity: Severity::High,
            followed_action: Some("notify \"soc\"".into()),
            when_unknown: Default::default(),
            apply_to: ServiceScope::new(&apply.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("scope"),
            criteria,
        };
        let policies = [
            policy(
                "block \"listed\" users",
                Action::Block,
                &["*"],
                vec![criterion(
                    Field::DbUser,
                    Operation::AtLeastOne,
                    "user",
                    UnknownValues::NoMatch,
                )],
            ),
            policy(
                "audit apps\\unlisted",
                Action::None,
                &["pay-*", "orders"],
                vec![criterion(
                    Field::SourceApp,
                    Operation::None,
                    "app",
                    UnknownValues::Match,
                )],
            ),
            policy(
                "all users listed",
                Action::Block,
                &["db?"],
                vec![criterion(
                    Field::DbUser,
                    Operation::All,
                    "user",
                    UnknownValues::NoMatch,
                )],
            ),
        ];
        Snapshot::build(
            &policies,
            vec![Arc::new(b.build())],
            &mut IndexCache::default(),
        )
        .expect("snapshot")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(query) = warden_fuzz::text(data, MAX_LEN) else {
        return;
    };
    let query: &str = &query;

    let got = decode(query).map(|c| c.into_owned());
    let want = form_decode(query).map_err(|e| match e {
        FormError::Escape => DecodeError::Escape,
        FormError::Utf8 => DecodeError::Utf8,
    });
    assert_eq!(got, want, "decode({query:?})");

    // `min_revision` (read-your-writes) is read on its own, before the decision: never a
    // panic, never negative, and what it read reads back the same.
    if let Ok(Some(n)) = DecisionQuery::min_revision(query) {
        assert!(n >= 0, "{query:?}: min_revision {n}");
        let again = format!("service=x&min_revision={n}");
        assert_eq!(DecisionQuery::min_revision(&again).ok(), Some(Some(n)));
        assert!(DecisionQuery::parse(&again).is_ok(), "{again:?}");
    }

    let Ok(q) = DecisionQuery::parse(query) else {
        return;
    };
    assert!(
        q.service.as_deref().is_some_and(|s| !s.is_empty()),
        "{query:?}: no service"
    );
    assert!(q.db_user.len() <= MAX_DB_USERS, "{query:?}: too many users");
    let values: Vec<&str> = q
        .service
        .iter()
        .chain(q.db_user.iter())
        .chain(q.os_user.iter())
        .chain(q.source_app.iter())
        .chain(q.client_ip.iter())
        .map(|v| &**v)
        .collect();
    assert!(
        values.iter().all(|v| !v.is_empty()),
        "{query:?}: empty value"
    );

    // Re-encode and parse again.
    let mut pairs = Vec::new();
    let mut push = |k: &str, v: &Option<std::borrow::Cow<'_, str>>| {
        if let Some(v) = v {
            pairs.push(format!("{k}={}", form_encode(v)));
        }
    };
    push("service", &q.service);
    push("os_user", &q.os_user);
    push("source_app", &q.source_app);
    push("client_ip", &q.client_ip);
    for u in &q.db_user {
        pairs.push(format!("db_user={}", form_encode(u)));
    }
    let again = pairs.join("&");
    let q2 = DecisionQuery::parse(&again)
        .unwrap_or_else(|e| panic!("{query:?} re-encoded as {again:?} fails: {e}"));
    // (`DecisionQuery` is invariant in its lifetime: compare the values through `Debug`, which
    // prints a borrowed and an owned value alike.)
    assert_eq!(
        format!("{q:?}"),
        format!("{q2:?}"),
        "{query:?} re-encoded as {again:?}"
    );

    // The answer.
    let snap = snapshot();
    let d = snap.decide(&q.request());
    let blocked = d
        .matched
        .iter()
        .any(|m| m.action == warden::model::policy::Action::Block);
    assert_eq!(d.outcome == Outcome::Block, blocked, "{query:?}");
    let mut body = Vec::new();
    snap.render_decision(&d, &mut body);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{query:?}: invalid JSON {:?}: {e}",
            String::from_utf8_lossy(&body)
        )
    });
    assert_eq!(json["decision"], d.outcome.as_str(), "{query:?}");
    assert_eq!(json["snapshot_version"], d.snapshot_version, "{query:?}");
    assert_eq!(json["revision"], snap.revision(), "{query:?}");
    let matched = json["matched"].as_array().expect("matched array");
    assert_eq!(matched.len(), d.matched.len());
    for (m, j) in d.matched.iter().zip(matched) {
        let p = snap.policy(m).expect("matched policy exists");
        assert_eq!(j["policy"], p.name.as_str());
        assert_eq!(j["action"], m.action.as_str());
        assert_eq!(
            j["followed_action"],
            p.followed_action.as_deref().unwrap_or("")
        );
    }

    for v in values {
        let mut out = Vec::new();
        json_string(v, &mut out);
        let back: String = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("json_string({v:?}) is not a JSON string: {e}"));
        assert_eq!(back, v);
    }
});
