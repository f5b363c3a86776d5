//! The same decision in peer policy engines, beside warden and the `HashSet` floor in the same
//! criterion groups: "is this database user in the suspicious set? then deny".
//!
//! ```text
//! cargo bench --features bench-peers --bench peers -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Behind the `bench-peers` feature because the peers (a Rego interpreter, Cedar, casbin with
//! its Rhai scripting engine) add minutes to a build that `cargo test --all-targets` would
//! otherwise pay for every change; see BENCHMARKS.md.
//!
//! Each engine is set up the way its documentation suggests for a membership check, with the
//! members lowercase; each peer lowercases the mixed-case query (`CORP\User123`) itself, as a
//! caller would have to, with `str::to_lowercase` (a few tens of ns: noise next to their
//! times). Fixtures are built outside the timed closures; every engine is checked to give the
//! expected answer before timing.
//!
//! - regorus (Rego): `deny if data.suspicious[lower(input.db_user)]` over an object of members
//!   (Rego's idiomatic set lookup), one `Engine` with `set_input` + `eval_rule` per decision.
//! - cedar-policy: `permit(principal, action, resource);` plus
//!   `forbid(principal in Group::"suspicious", action, resource);`, the members `User` entities
//!   whose parent is the group; `Authorizer::is_authorized` per decision.
//! - casbin: an RBAC model `m = g(r.sub, p.sub)` with one policy `p, suspicious` and a grouping
//!   rule `g, <member>, suspicious` per member (the role manager's hash lookup, not a linear
//!   scan of N policies); `enforce((user,))` per decision.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::str::FromStr;
use std::time::{Duration, Instant};

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden::decide::Request;

use common::{SERVICE, cycled, member, query, query_indexes};

struct Rego {
    engine: regorus::Engine,
}

impl Rego {
    const POLICY: &str = r#"
package warden

default deny := false

deny if data.suspicious[lower(input.db_user)]
"#;

    fn new(n: usize) -> Rego {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("warden.rego".into(), Self::POLICY.into())
            .unwrap();
        let members: serde_json::Map<String, serde_json::Value> = (0..n)
            .map(|i| (member(i), serde_json::Value::Bool(true)))
            .collect();
        let data = serde_json::json!({ "suspicious": members }).to_string();
        engine
            .add_data(regorus::Value::from_json_str(&data).unwrap())
            .unwrap();
        Rego { engine }
    }

    fn deny(&mut self, user: &str) -> bool {
        let mut input = regorus::Value::new_object();
        input
            .as_object_mut()
            .unwrap()
            .insert("db_user".into(), user.into());
        self.engine.set_input(input);
        self.engine.eval_rule("data.warden.deny".into()).unwrap() == regorus::Value::from(true)
    }
}

struct Cedar {
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
    user: EntityTypeName,
    action: EntityUid,
    resource: EntityUid,
}

impl Cedar {
    const POLICIES: &str = r#"
permit(principal, action, resource);
forbid(principal in Group::"suspicious", action, resource);
"#;

    fn new(n: usize) -> Cedar {
        let user = EntityTypeName::from_str("User").unwrap();
        let group = EntityUid::from_type_name_and_id(
            EntityTypeName::from_str("Group").unwrap(),
            EntityId::new("suspicious"),
        );
        let parents = HashSet::from([group.clone()]);
        let entities = (0..n)
            .map(|i| {
                Entity::new_no_attrs(
                    EntityUid::from_type_name_and_id(user.clone(), EntityId::new(member(i))),
                    parents.clone(),
                )
            })
            .chain([Entity::new_no_attrs(group, HashSet::new())]);
        Cedar {
            policies: Self::POLICIES.parse().unwrap(),
            entities: Entities::from_entities(entities, None).unwrap(),
            authorizer: Authorizer::new(),
            user,
            action: EntityUid::from_str(r#"Action::"connect""#).unwrap(),
            resource: EntityUid::from_str(r#"Service::"orders""#).unwrap(),
        }
    }

    fn deny(&self, user: &str) -> bool {
        let principal =
            EntityUid::from_type_name_and_id(self.user.clone(), EntityId::new(user.to_lowercase()));
        let request = cedar_policy::Request::new(
            principal,
            self.action.clone(),
            self.resource.clone(),
            Context::empty(),
            None,
        )
        .unwrap();
        self.authorizer
            .is_authorized(&request, &self.policies, &self.entities)
            .decision()
            == Decision::Deny
    }
}

struct Casbin {
    enforcer: Enforcer,
}

impl Casbin {
    const MODEL: &str = r#"
[request_definition]
r = sub

[policy_definition]
p = sub

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub)
"#;

    fn new(n: usize) -> Casbin {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let enforcer = runtime.block_on(async {
            let model = DefaultModel::from_str(Self::MODEL).await.unwrap();
            let mut e = Enforcer::new(model, MemoryAdapter::default())
                .await
                .unwrap();
            e.add_policy(vec!["suspicious".into()]).await.unwrap();
            e.add_grouping_policies(
                (0..n)
                    .map(|i| vec![member(i), "suspicious".into()])
                    .collect(),
            )
            .await
            .unwrap();
            e
        });
        Casbin { enforcer }
    }

    /// `true` when the matcher matched, which here means "member: deny".
    fn deny(&self, user: &str) -> bool {
        self.enforcer.enforce((user.to_lowercase(),)).unwrap()
    }
}

fn timed<T>(what: &str, label: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let t = f();
    eprintln!("setup {what} at {label}: {:.2?}", start.elapsed());
    t
}

fn peers(c: &mut Criterion) {
    for (n, label) in common::SIZES {
        let snapshot = timed("warden", label, || common::snapshot_of(n));
        let set = common::member_set(n);
        let mut rego = timed("regorus", label, || Rego::new(n));
        let cedar = timed("cedar", label, || Cedar::new(n));
        let casbin = timed("casbin", label, || Casbin::new(n));

        for hits in [true, false] {
            let kind = if hits { "hit" } else { "miss" };
            let idx = query_indexes(n, hits, 0x9ee5 ^ n as u64);
            let mixed: Vec<String> = idx.iter().map(|&i| query(i)).collect();
            let requests: Vec<Request<'_>> = mixed
                .iter()
                .map(|q| Request::new(SERVICE).db_user(q))
                .collect();
            for q in mixed.iter().take(16) {
                let expected = hits;
                assert_eq!(
                    snapshot
                        .decide(&Request::new(SERVICE).db_user(q))
                        .outcome
                        .as_str()
                        == "block",
                    expected
                );
                assert_eq!(set.contains(q.to_lowercase().as_str()), expected, "{q}");
                assert_eq!(rego.deny(q), expected, "regorus {q}");
                assert_eq!(cedar.deny(q), expected, "cedar {q}");
                assert_eq!(casbin.deny(q), expected, "casbin {q}");
            }

            let mut g = c.benchmark_group(format!("peers_{label}_{kind}"));
            g.throughput(Throughput::Elements(1));
            cycled(&mut g, "warden_decide", &requests, |r| snapshot.decide(r));
            cycled(&mut g, "hashset_to_lowercase_contains", &mixed, |q| {
                set.contains(q.to_lowercase().as_str())
            });
            cycled(&mut g, "regorus", &mixed, |q| rego.deny(q));
            cycled(&mut g, "cedar", &mixed, |q| cedar.deny(q));
            cycled(&mut g, "casbin", &mixed, |q| casbin.deny(q));
            g.finish();
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = peers
}
criterion_main!(benches);
