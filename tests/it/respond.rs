//! Respond against the real binary: incidents and their responses over HTTP and the CLI,
//! alerts turned into incidents by automated-response rules once per alert id, and members
//! leaving their list on expiry — each reaching decisions and the audit log.

use std::path::Path;
use std::time::Duration;

use crate::support::{
    HttpResponse, Server, eventually, list_config, run, start_warden, warden_cmd,
};

/// One rule: high-or-worse exfiltration alerts from DLP sources contain their users for 1h.
const RULES: &str = r#"
[[response_rules]]
name = "contain exfiltration"
list = "Suspicious Users"
sources = ["dlp*"]
min_severity = "high"
fields = { category = "exfil*" }
expires_in = "1h"
"#;

/// Alerts and incidents name bare users (`erin`): CORP is the domain bare names belong to, so
/// each is the account `CORP\erin`.
const DOMAIN: &str =
    "\n[[domains]]\nnetbios = \"CORP\"\ndns = \"corp.example.test\"\ndefault = true\n";

fn start(dir: &Path) -> Server {
    let config = list_config("anonymous_decisions = true", r#""*""#) + RULES + DOMAIN;
    std::fs::write(dir.join("warden.toml"), config).unwrap();
    start_warden(dir, &["--config", "warden.toml"])
}

fn post(server: &Server, path: &str, body: serde_json::Value) -> HttpResponse {
    server.post_json(path, &body)
}

fn members(server: &Server) -> Vec<serde_json::Value> {
    server.get("/v1/lists/Suspicious%20Users/members").json()["members"]
        .as_array()
        .unwrap()
        .clone()
}

fn audit_actions(server: &Server) -> Vec<String> {
    server.get("/v1/audit").json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_response_puts_an_incidents_users_on_the_list_and_blocks_them() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let r = post(
        &server,
        "/v1/incidents",
        serde_json::json!({
            "title": "Bulk export from payroll",
            "severity": "high",
            "users": [r"corp\alice", r"corp\bob"],
            "ips": ["10.1.2.3", "2001:db8::7"],
            "source": "siem",
        }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(id, "INC-1");

    let r = post(
        &server,
        &format!("/v1/incidents/{id}/responses"),
        serde_json::json!({
            "list": "Suspicious Users",
            "users": [r"CORP\alice"],
            "reason": "contain while investigating",
            "expires_in": "7d",
        }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["principals"], serde_json::json!([r"CORP\alice"]));
    // In the snapshot before the answer.
    assert_eq!(server.decision("orders", r"corp\ALICE"), "block");
    assert_eq!(server.decision("orders", r"corp\bob"), "allow");
    let on_list = members(&server);
    assert_eq!(on_list.len(), 1);
    assert_eq!(on_list[0]["incident"], "INC-1");
    assert_eq!(on_list[0]["reason"], "contain while investigating");
    assert!(on_list[0]["expires_at"].is_i64());

    let incident = server.get(&format!("/v1/incidents/{id}")).json();
    assert_eq!(incident["responses"].as_array().unwrap().len(), 1);
    assert_eq!(incident["responses"][0]["list"], "Suspicious Users");
    assert_eq!(incident["ips"][1], "2001:db8::7");
    let listed = server.get("/v1/incidents").json();
    assert_eq!(listed["incidents"][0]["id"], "INC-1");

    // A response with no user given takes all of them.
    let r = post(
        &server,
        &format!("/v1/incidents/{id}/responses"),
        serde_json::json!({ "list": "Suspicious Users", "reason": "escalated" }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(server.decision("orders", r"corp\bob"), "block");

    let actions = audit_actions(&server);
    assert!(
        actions.contains(&"incidents.create".to_owned()),
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "incidents.respond").count(),
        2
    );
}

#[test]
fn bad_incidents_and_responses_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let bad = |path: &str, body: serde_json::Value, status: u16, needle: &str| {
        let r = post(&server, path, body);
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(needle), "{needle:?} not in {detail:?}");
    };
    let ok = serde_json::json!({ "title": "t", "severity": "low", "users": ["alice"] });
    bad(
        "/v1/incidents",
        serde_json::json!({ "title": "t", "severity": "urgent" }),
        400,
        "severity",
    );
    bad(
        "/v1/incidents",
        serde_json::json!({ "title": "t", "severity": "low", "ips": ["10.0.0.999"] }),
        400,
        "ips[0]",
    );
    bad(
        "/v1/incidents",
        serde_json::json!({ "title": "t", "severity": "low", "users": ["ok", "CN=x,,"] }),
        400,
        "users[1]",
    );
    bad(
        "/v1/incidents",
        serde_json::json!({ "title": " ", "severity": "low" }),
        400,
        "title",
    );
    assert_eq!(post(&server, "/v1/incidents", ok).status, 201);
    let respond = |users: serde_json::Value, list: &str| serde_json::json!({ "list": list, "users": users, "reason": "r" });
    bad(
        "/v1/incidents/INC-1/responses",
        respond(serde_json::json!(["mallory"]), "Suspicious Users"),
        400,
        "not one of INC-1's users",
    );
    bad(
        "/v1/incidents/INC-1/responses",
        respond(serde_json::json!(["alice"]), "No Such List"),
        404,
        "No Such List",
    );
    bad(
        "/v1/incidents/INC-9/responses",
        respond(serde_json::json!(["alice"]), "Suspicious Users"),
        404,
        "INC-9",
    );
    bad(
        "/v1/incidents/INC-1/responses",
        serde_json::json!({ "list": "Suspicious Users", "reason": "r", "expires_in": "soon" }),
        400,
        "expires_in",
    );
    // Nothing of the refused responses reached the list.
    assert!(members(&server).is_empty());
}

#[test]
fn an_alert_matching_a_rule_opens_one_incident_however_often_it_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let alert = serde_json::json!({
        "id": "dlp-7781",
        "source": "dlp-east",
        "severity": "critical",
        "users": [r"corp\carol"],
        "ips": ["10.9.8.7"],
        "fields": { "category": "exfiltration", "bytes": 73400320 },
    });
    let r = post(&server, "/v1/alerts", alert.clone());
    assert_eq!(r.status, 201, "{}", r.body);
    let outcome = r.json();
    assert_eq!(outcome["rule"], "contain exfiltration");
    assert_eq!(outcome["incident"], "INC-1");
    assert_eq!(server.decision("orders", r"CORP\carol"), "block");
    let first = members(&server);
    assert_eq!(first.len(), 1);
    assert!(first[0]["expires_at"].is_i64(), "the rule's 1h expiry");

    // The same alert again: acknowledged, nothing added twice.
    std::thread::sleep(Duration::from_millis(1100));
    let r = post(&server, "/v1/alerts", alert);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["duplicate"], true);
    assert_eq!(r.json()["incident"], "INC-1");
    assert_eq!(members(&server), first, "the member was written again");
    assert_eq!(
        server.get("/v1/incidents").json()["incidents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Alerts the rule does not cover change nothing.
    for (id, source, severity, category) in [
        ("a2", "dlp-east", "medium", "exfiltration"),
        ("a3", "ueba", "critical", "exfiltration"),
        ("a4", "dlp", "high", "phishing"),
    ] {
        let r = post(
            &server,
            "/v1/alerts",
            serde_json::json!({
                "id": id, "source": source, "severity": severity,
                "users": ["dave"], "fields": { "category": category },
            }),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["rule"], serde_json::Value::Null);
    }
    assert_eq!(server.decision("orders", "dave"), "allow");
    let r = post(
        &server,
        "/v1/alerts",
        serde_json::json!({ "id": "a5", "source": "dlp", "severity": "high", "users": ["a\u{0}b"] }),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let actions = audit_actions(&server);
    assert_eq!(
        actions.iter().filter(|a| *a == "alerts.ingest").count(),
        5,
        "{actions:?}"
    );
}

#[test]
fn members_leave_their_list_on_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let r = post(
        &server,
        "/v1/incidents",
        serde_json::json!({ "title": "t", "severity": "low", "users": ["erin"] }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(
        &server,
        "/v1/incidents/INC-1/responses",
        serde_json::json!({ "list": "Suspicious Users", "reason": "short hold", "expires_in": "2s" }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(server.decision("orders", "erin"), "block");
    let left = eventually(Duration::from_secs(15), || {
        server.decision("orders", "erin") == "allow"
    });
    assert!(left.is_some(), "erin never left; logs:\n{}", server.logs());
    // Deactivated by the sweeper, kept in the store as expired until the retention period
    // ends, audited as the system.
    let listed = server.get("/v1/lists/Suspicious%20Users/members").json();
    let listed = listed["members"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["principal"], r"CORP\erin");
    assert_eq!(listed[0]["state"], "expired");
    assert_eq!(listed[0]["memberships"][0]["principal"], "erin", "as typed");
    let audit = server.get("/v1/audit?action=lists.expire").json();
    let record = &audit["records"][0];
    assert_eq!(record["actor"], "system");
    assert_eq!(record["detail"]["principal"], r"CORP\erin");
    assert_eq!(record["account"], r"name:corp\erin");
}

#[test]
fn the_cli_opens_incidents_and_responds() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let cli = |args: &[&str]| {
        let mut c = warden_cmd(tmp.path());
        c.args(["--config", "warden.toml"]).args(args);
        let r = run(c);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };
    let incident = cli(&[
        "incidents",
        "create",
        "--title",
        "Shared credentials",
        "--severity",
        "medium",
        "--user",
        r"corp\frank",
        "--ip",
        "192.0.2.1",
    ]);
    let id = incident["id"].as_str().unwrap().to_owned();
    cli(&[
        "incidents",
        "respond",
        &id,
        "--list",
        "Suspicious Users",
        "--reason",
        "rotate first",
    ]);
    // The serving process notices the CLI's write.
    let blocked = eventually(Duration::from_secs(10), || {
        server.decision("orders", r"CORP\frank") == "block"
    });
    assert!(blocked.is_some(), "{}", server.logs());
    let shown = cli(&["incidents", "show", &id]);
    let by = shown["responses"][0]["created_by"].as_str().unwrap();
    assert!(by.starts_with("cli:"), "{by}");
    let alert = tmp.path().join("alert.json");
    std::fs::write(
        &alert,
        r#"{"id":"x1","source":"dlp","severity":"high","users":["gina"],"fields":{"category":"exfil"}}"#,
    )
    .unwrap();
    let outcome = cli(&["alerts", "ingest", alert.to_str().unwrap()]);
    assert_eq!(outcome["incident"], "INC-2");
}
