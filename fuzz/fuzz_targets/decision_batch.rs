//! The batch decision body of `POST /v1/decisions` (`warden::http::answer_batch`).
//!
//! Properties:
//! - any bytes: an answer or a problem (400/413 with a detail), never a panic;
//! - an answer is valid JSON with one decision per request, in order, every request a JSON
//!   object, each decision equal to what a reference reading of the same JSON (through
//!   `serde_json::Value`) decides one by one.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warden::model::dataset::{Cell, Column, DataSetBuilder, Schema};
use warden::decide::{IndexCache, Request, Snapshot};
use warden::http::answer_batch;
use warden::model::policy::{
    Action, Criterion, Field, Operation, Policy, ServiceScope, Severity, UnknownValues,
};

const MAX_LEN: usize = 8192;
const MAX_BATCH: usize = 64;

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let schema = Schema::new(
            vec![Column {
                name: "user".into(),
                key: true,
            }],
            false,
        )
        .expect("schema");
        let mut b = DataSetBuilder::new("S", schema);
        for user in ["corp\\alice", "bob", "Ölaf", "a\"b"] {
            b.push(vec![Cell::One(user.into())]).expect("row");
        }
        let policy = Policy {
            name: "block".into(),
            enabled: true,
            action: Action::Block,
            severity: Severity::High,
            followed_action: None,
            when_unknown: Default::default(),
            apply_to: ServiceScope::new(&["orders".into(), "pay-*".into()]).expect("scope"),
            criteria: vec![Criterion {
                field: Field::DbUser,
                operation: Operation::AtLeastOne,
                data_set: "S".into(),
                search_in: vec!["user".into()],
                handle_unknown_values: UnknownValues::NoMatch,
            }],
        };
        Snapshot::build(
            &[policy],
            vec![Arc::new(b.build())],
            &mut IndexCache::default(),
        )
        .expect("snapshot")
    })
}

/// The reference reading of one request item (a JSON object): what the decision must be.
fn reference(item: &Value) -> Option<&'static str> {
    let field = |k: &str| &item[k];
    let service = field("service").as_str()?;
    let users: Vec<&str> = match field("db_user") {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let present = |k: &str| field(k).as_str().filter(|s| !s.is_empty());
    let request = Request {
        service,
        db_user: users.into_iter().filter(|u| !u.is_empty()).collect(),
        os_user: present("os_user"),
        source_app: present("source_app"),
        client_ip: present("client_ip"),
    };
    Some(snapshot().decide(&request).outcome.as_str())
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LEN {
        return;
    }
    let snap = snapshot();
    let mut out = Vec::new();
    let mut seen = 0usize;
    match answer_batch(snap, data, MAX_BATCH, &mut out, |_, _, _| seen += 1) {
        Err(p) => {
            assert!(
                p.status.as_u16() == 400 || p.status.as_u16() == 413,
                "status {}",
                p.status
            );
            assert!(!p.detail.is_empty());
        }
        Ok(n) => {
            assert_eq!(n, seen);
            let answer: Value = serde_json::from_slice(&out).expect("the answer is JSON");
            let decisions = answer["decisions"].as_array().expect("decisions array");
            assert_eq!(decisions.len(), n);
            let body: Value = serde_json::from_slice(data).expect("an accepted body is JSON");
            let items = body["requests"]
                .as_array()
                .expect("an accepted body has requests");
            assert_eq!(items.len(), n);
            for (item, d) in items.iter().zip(decisions) {
                assert!(item.is_object(), "an accepted item is an object: {item}");
                assert_eq!(
                    Some(d["decision"].as_str().unwrap_or("")),
                    reference(item),
                    "{item}"
                );
            }
        }
    }
});
