//! Configuration reload against the real binary, over HTTP and on SIGHUP: a good config is
//! applied (policies, lists, data sets), a bad one is rejected with every error and key path
//! while the running one keeps deciding, and what needs a restart is refused by name.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{Server, enc, eventually, list_config, start_warden};

/// The test config with a blocking policy for the services in `apply_to`, plus `extra` TOML.
fn config(apply_to: &str, extra: &str) -> String {
    list_config("anonymous_decisions = true", apply_to) + extra
}

/// A second list with its data set and a policy on `os_user`.
const WATCH_LIST: &str = r#"
# OS users are no domain's accounts: listed as the text they are.
[identity]
unresolvable = "keep"

[[lists]]
name = "Watched OS Users"

[[data_sets]]
name = "Watched OS Users"
case_sensitive = false
columns = [{ name = "user", key = true }]
source = { type = "list", list = "Watched OS Users" }

[[policies]]
name = "Block watched OS users"
action = "block"
severity = "medium"
apply_to = ["*"]
[[policies.criteria]]
field = "os_user"
operation = "at-least-one"
data_set = "Watched OS Users"
search_in = ["user"]
"#;

fn reload(server: &Server) -> crate::support::HttpResponse {
    server.call("POST", "/v1/admin/reload", server.admin_key.as_deref(), b"")
}

fn add_member(server: &Server, list: &str, principal: &str) {
    let body = serde_json::json!({ "principal": principal, "reason": "test" }).to_string();
    let r = server.call(
        "POST",
        &format!("/v1/lists/{}/members", enc(list)),
        server.admin_key.as_deref(),
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

fn start(dir: &Path, toml: &str) -> (Server, std::path::PathBuf) {
    let path = dir.join("warden.toml");
    std::fs::write(&path, toml).unwrap();
    let server = start_warden(dir, &["--config", path.to_str().unwrap()]);
    (server, path)
}

#[test]
fn reload_over_http_applies_a_good_config_and_rejects_a_bad_one_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) = start(tmp.path(), &config(r#""*""#, ""));
    add_member(&server, "Suspicious Users", r"corp\alice");
    assert_eq!(server.decision("orders", r"CORP\alice"), "block");

    // A good config: the policy narrows to payroll, and a new list with its policy appears.
    std::fs::write(&path, config(r#""payroll""#, WATCH_LIST)).unwrap();
    let r = reload(&server);
    assert_eq!(r.status, 200, "{}", r.body);
    let applied = r.json();
    assert_eq!(applied["policies"], 2);
    assert_eq!(applied["data_sets"], 2);
    assert_eq!(server.decision("orders", r"CORP\alice"), "allow");
    assert_eq!(server.decision("payroll", r"CORP\alice"), "block");
    // The new list exists and feeds its data set and policy at once.
    add_member(&server, "Watched OS Users", "mallory");
    let r = server.call(
        "GET",
        "/v1/decision?service=orders&db_user=bob&os_user=MALLORY",
        None,
        b"",
    );
    assert_eq!(r.json()["decision"], "block", "{}", r.body);

    // A bad config: every problem comes back with its key path; nothing changes.
    let bad = config(r#""*""#, WATCH_LIST)
        .replace(r#"severity = "medium""#, r#"severity = "urgent""#)
        .replace(
            r#"operation = "at-least-one"
data_set = "Suspicious Users""#,
            r#"operation = "at-least-one"
data_set = "No Such Set""#,
        );
    std::fs::write(&path, bad).unwrap();
    let r = reload(&server);
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let problem = r.json();
    let paths: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"policies[1].severity"), "{paths:?}");
    assert!(
        paths.contains(&"policies[0].criteria[0].data_set"),
        "{paths:?}"
    );
    assert!(problem["detail"].as_str().unwrap().contains("running"));
    // Still the previous config: orders allowed, payroll blocked.
    assert_eq!(server.decision("orders", r"CORP\alice"), "allow");
    assert_eq!(server.decision("payroll", r"CORP\alice"), "block");

    // What only a restart can change is refused by name.
    std::fs::write(
        &path,
        config(r#""payroll""#, WATCH_LIST).replace("warden.db", "other.db"),
    )
    .unwrap();
    let r = reload(&server);
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["errors"][0]["path"], "store.path");
    assert_eq!(server.decision("payroll", r"CORP\alice"), "block");

    // Every attempt is audited, applied or not.
    let audit = server.get("/v1/audit?action=config.reload").json();
    let outcomes: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "ok").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == "rejected").count(), 2);
}

#[test]
fn sighup_reloads_and_a_bad_config_keeps_the_running_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, path) = start(tmp.path(), &config(r#""payroll""#, ""));
    add_member(&server, "Suspicious Users", r"corp\alice");
    assert_eq!(server.decision("orders", r"CORP\alice"), "allow");
    let hangup = || {
        let status = Command::new("kill")
            .args(["-HUP", &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };

    std::fs::write(&path, config(r#""*""#, "")).unwrap();
    hangup();
    assert!(
        eventually(Duration::from_secs(10), || server
            .decision("orders", r"CORP\alice")
            == "block")
        .is_some(),
        "SIGHUP did not apply the new config; logs:\n{}",
        server.logs()
    );

    std::fs::write(&path, "[server]\nlisten = 42\n").unwrap();
    hangup();
    assert!(
        eventually(Duration::from_secs(10), || server
            .logs()
            .contains("configuration NOT reloaded"))
        .is_some(),
        "{}",
        server.logs()
    );
    assert!(server.logs().contains("server.listen"), "{}", server.logs());
    // Still serving, on the last good config.
    assert_eq!(server.decision("orders", r"CORP\alice"), "block");
    let audit = server.get("/v1/audit?action=config.reload").json();
    let records = audit["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{audit}");
    assert!(records.iter().all(|r| r["actor"] == "system"));
    assert!(records.iter().all(|r| r["source"] == "SIGHUP"));
}
