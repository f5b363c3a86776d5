//! The seed's "Testing the Integration", automated end to end on the Samba DC: create an
//! incident, respond by adding its user to the mapped list, and watch each hop — the AD group,
//! the data set, the decision for that database user, the MX push — printing how long each
//! took from the response.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::dc::{self, AdConfig, Ns};
use crate::fake_mx::FakeMx;
use crate::support::{eventually, make_certs, start_warden};

const MX_PASSWORD: &str = "seed-mx-password";

#[test]
fn incident_to_group_to_data_set_to_block_to_mx() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    ns.add_user(dc, "alice");
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    let config = AdConfig {
        ns: &ns,
        group_dn: &group,
        mapping: true,
        update_interval: "1m",
        refresh_interval: "1m",
        password_file: None,
    }
    .write(dc, tmp.path());
    make_certs(tmp.path());
    let mx = FakeMx::start(tmp.path(), "warden", MX_PASSWORD);
    std::fs::write(tmp.path().join("mx.secret"), MX_PASSWORD).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        r#"
[imperva]
url = "{}"
username = "warden"
password_file = "mx.secret"
ca_file = "ca.pem"

[[imperva.data_sets]]
data_set = "PTR Suspicious Users"
"#,
        mx.url()
    ));
    std::fs::write(&config, text).unwrap();
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
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
