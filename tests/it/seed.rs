//! The seed's "Testing the Integration", automated end to end on the Samba DC: create an
//! incident, respond by adding its user to the mapped list, and watch each hop — the AD group,
//! the data set, the decision for that database user, the MX push — printing how long each
//! took from the response.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::dc::{self, AdConfig, Ns};
use crate::fake_mx::FakeMx;
use crate::support::{eventually, start_warden};

const MX_PASSWORD: &str = "seed-mx-password";

#[test]
fn incident_to_group_to_data_set_to_block_to_mx() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    ns.add_user(dc, "alice");
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    let config = AdConfig::seed(&ns, &group).write(dc, tmp.path());
    let mx = FakeMx::for_config(tmp.path(), &config, MX_PASSWORD, "PTR Suspicious Users");
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    // A fresh store: the data set is unknown until the first pull applies.
    server.wait_ready();
    let db_user = ns.mapped("alice").replacen("corp", "CORP", 1);
    assert_eq!(server.decision("orders", &db_user), "allow");

    let post = |path: &str, body: serde_json::Value| {
        let r = server.call(
            "POST",
            path,
            server.admin_key.as_deref(),
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 201, "{path}: {}", r.body);
        r.json()
    };
    let incident = post(
        "/v1/incidents",
        json!({ "title": "Seed: suspicious database access", "severity": "high",
                "users": [ns.upn("alice")], "source": "seed" }),
    );
    let id = incident["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    post(
        &format!("/v1/incidents/{id}/responses"),
        json!({ "list": "Suspicious Users", "reason": "seed test" }),
    );
    let responded = started.elapsed();

    let hop = |what: &str, check: &dyn Fn() -> bool| {
        let took = eventually(Duration::from_secs(30), check);
        assert!(
            took.is_some(),
            "{what} never happened; logs:\n{}",
            server.logs()
        );
        let at = started.elapsed();
        println!("seed: {what:<34} {at:?}");
        at
    };
    println!("seed: {:<34} {responded:?}", "response recorded (list)");
    hop("AD group PTR_Suspicious_Users", &|| {
        dc.values(&group, "member")
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&ns.user_dn("alice")))
    });
    hop("data set row corp\\alice", &|| {
        server
            .get("/v1/data-sets/PTR%20Suspicious%20Users/rows")
            .json()["records"]
            .as_array()
            .is_some_and(|rows| {
                rows.iter().any(|r| {
                    r["user"] == ns.mapped("alice") && r["group"] == "PTR_Suspicious_Users"
                })
            })
    });
    let blocked = hop("decision for the db user: block", &|| {
        server.decision("orders", &db_user) == "block"
    });
    hop("MX push carries the record", &|| {
        mx.records("PTR Suspicious Users")
            .unwrap_or_default()
            .iter()
            .any(|r| r["user"] == ns.mapped("alice"))
    });
    let matched = server.get(&format!(
        "/v1/decision?service=orders&db_user={}",
        crate::support::enc(&db_user)
    ));
    assert_eq!(
        matched.json()["matched"][0]["policy"],
        "PTR Block Suspicious Users"
    );
    let incident = server.get(&format!("/v1/incidents/{id}")).json();
    assert_eq!(incident["responses"][0]["principals"][0], ns.upn("alice"));
    println!("seed: incident → block in {blocked:?} (the seed's two schedules: ~2 minutes)");
}

/// Propagation, measured (figures for BENCHMARKS.md, no threshold): 20 list changes each
/// timed until the decision turns — in-process through the library (list source), over HTTP
/// (list source), and through the Samba DC (push → group → notification → pull → block). Each
/// change is also taken back and timed until the decision is allow again.
#[test]
fn propagation_list_change_to_block_p50_p95() {
    const CHANGES: usize = 20;
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let names: Vec<String> = (0..CHANGES).map(|i| format!("p{i}")).collect();
    for n in &names {
        ns.add_user(dc, n);
    }
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    let config = AdConfig {
        refresh_interval: "10m",
        ..AdConfig::seed(&ns, &group)
    }
    .write(dc, tmp.path());
    let report = |what: &str, mut times: Vec<Duration>| {
        times.sort();
        let at =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "propagation {what}: p50 {:?} p95 {:?} max {:?} over {} changes",
            at(0.50),
            at(0.95),
            times[times.len() - 1],
            times.len()
        );
    };

    // In-process, through the library: the change is in the snapshot when the operation returns.
    let lib_dir = tempfile::tempdir().unwrap();
    let mut lib_config = warden::config::Config::parse(
        &crate::support::list_config("", "\"*\""),
        "t",
        lib_dir.path(),
    )
    .unwrap();
    lib_config.store.path = lib_dir.path().join("w.db");
    let lib = warden::runtime::Warden::open(lib_config).unwrap();
    let mut times = Vec::new();
    for n in &names {
        let started = Instant::now();
        warden::operations::lists::add_member(
            &lib,
            &warden::base::actor::Actor::system("test"),
            "Suspicious Users",
            &warden::operations::lists::MemberRequest {
                principal: ns.mapped(n),
                ..Default::default()
            },
        )
        .unwrap();
        let user = ns.mapped(n);
        let request = warden::decide::Request {
            service: "orders",
            db_user: [user.as_str()].into_iter().collect(),
            ..Default::default()
        };
        assert_eq!(
            lib.engine().decide(&request).outcome,
            warden::decide::Outcome::Block
        );
        times.push(started.elapsed());
    }
    report("in-process (list source, durable write + swap)", times);

    // Through the DC.
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    // A fresh store: the data set is unknown until the first pull applies.
    server.wait_ready();
    // How long after `change` the decision for `user` reads `want`.
    let until = |user: &str, want: &str, change: &dyn Fn()| {
        let started = Instant::now();
        change();
        let took = eventually(Duration::from_secs(30), || {
            server.decision("orders", user) == want
        });
        assert!(
            took.is_some(),
            "{user} never turned {want}; logs:\n{}",
            server.logs()
        );
        started.elapsed()
    };
    let mut to_block = Vec::new();
    let mut to_allow = Vec::new();
    for n in &names {
        let user = ns.mapped(n);
        to_block.push(until(&user, "block", &|| {
            assert_eq!(server.add_member(&user), 201);
        }));
        to_allow.push(until(&user, "allow", &|| {
            let path = format!(
                "/v1/lists/Suspicious%20Users/members/{}",
                crate::support::enc(&user)
            );
            let r = server.call("DELETE", &path, server.admin_key.as_deref(), b"");
            assert_eq!(r.status, 204);
        }));
    }
    report("through AD, list add → block", to_block);
    report("through AD, list remove → allow", to_allow);
}
