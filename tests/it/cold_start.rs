//! A cold start fails closed: a data set that has never loaded (not from its source, not from
//! persisted last good rows) is unknown, not empty. `/readyz` waits for it by name, decisions
//! it could change are errors (`/v1/decision` and `/v1/authz` 503 with `Warden-Decision:
//! error`, `warden decide` exit 2) unless the policy says `when_unknown = "block"`; rows
//! persisted by an earlier run make a restart ready and deciding with the directory down.
//!
//! The directory here is a closed loopback port (`ldap://127.0.0.1:1`): never the shared DC.

use std::path::{Path, PathBuf};

use crate::support::{enc, run, start_warden, warden_cmd};

/// The unknown data set's name, percent-encoded for paths.
const SET: &str = "PTR Suspicious Users";
const SET_PATH: &str = "PTR%20Suspicious%20Users";

/// A config with `SET` sourced as `source` (a TOML table body) and a policy blocking its
/// members on every service, with `when_unknown` (a TOML line, or empty for the default).
/// Anonymous decisions, so the decision routes need no key.
fn config(dir: &Path, source: &str, when_unknown: &str) -> PathBuf {
    let password = dir.join("bind.pw");
    std::fs::write(&password, "not-a-secret\n").unwrap();
    let text = format!(
        r#"
[server]
anonymous_decisions = true

[store]
path = "warden.db"

[[directories]]
name = "down"
url = "ldap://127.0.0.1:1"
allow_insecure = true
bind_dn = "CN=warden,DC=corp,DC=example,DC=test"
bind_password_file = "{pw}"
base_dn = "DC=corp,DC=example,DC=test"
connect_timeout = "1s"
timeout = "2s"

[[data_sets]]
name = "{SET}"
case_sensitive = false
columns = [{{ name = "user", key = true }}]
[data_sets.source]
{source}

[[policies]]
name = "PTR Block Suspicious Users"
action = "block"
severity = "high"
apply_to = ["*"]
{when_unknown}
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "{SET}"
search_in = ["user"]
"#,
        pw = password.display(),
    );
    let path = dir.join("warden.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// An LDAP source on the unreachable directory.
const LDAP: &str = r#"type = "ldap"
directory = "down"
base = "DC=corp,DC=example,DC=test"
filter = "(objectClass=user)"
refresh_interval = "1m"
[[data_sets.source.mappings]]
column = "user"
attribute = "sAMAccountName""#;

const API: &str = r#"type = "api""#;

fn serve(dir: &Path) -> crate::support::Server {
    start_warden(dir, &["--config", "warden.toml"])
}

/// `warden decide` for `user` on `orders`: (exit code, stdout JSON, stderr).
fn decide(dir: &Path, user: &str) -> (i32, serde_json::Value, String) {
    let mut c = warden_cmd(dir);
    c.args([
        "--config",
        "warden.toml",
        "decide",
        "--service",
        "orders",
        "--db-user",
        user,
    ]);
    let r = run(c);
    let json = serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}\n{}", r.stdout, r.stderr);
    });
    (r.code, json, r.stderr)
}

fn decision_path(route: &str, user: &str) -> String {
    format!("/v1/{route}?service=orders&db_user={}", enc(user))
}

#[test]
fn a_fresh_store_with_the_directory_down_is_not_ready_and_decides_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    config(tmp.path(), LDAP, "");
    let server = serve(tmp.path());

    let ready = server.get("/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(
        ready.header("content-type"),
        Some("application/problem+json")
    );
    let body = ready.json();
    assert_eq!(body["waiting_for"], serde_json::json!([SET]), "{body}");
    assert!(body["detail"].as_str().unwrap().contains(SET), "{body}");

    let d = server.get(&decision_path("decision", "corp\\alice"));
    assert_eq!(d.status, 503, "{}", d.body);
    assert_eq!(d.header("content-type"), Some("application/problem+json"));
    assert_eq!(d.header("warden-decision"), Some("error"));
    let body = d.json();
    assert_eq!(body["decision"], "error", "{body}");
    assert_eq!(body["data_sets"], serde_json::json!([SET]), "{body}");
    assert_eq!(body["unknown"][0]["policy"], "PTR Block Suspicious Users");
    assert!(body["detail"].as_str().unwrap().contains(SET), "{body}");

    let authz = server.get(&decision_path("authz", "corp\\alice"));
    assert_eq!(authz.status, 503, "{}", authz.body);
    assert_eq!(authz.header("warden-decision"), Some("error"));

    // A batch answers 200 with each item's own answer: this one says error, naming the set.
    let batch = server.post_json(
        "/v1/decisions",
        &serde_json::json!({"requests": [
            {"service": "orders", "db_user": "corp\\alice"},
            {"service": "orders"},
        ]}),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    let items = batch.json()["decisions"].clone();
    assert_eq!(items[0]["decision"], "error", "{items}");
    assert_eq!(
        items[0]["unknown"][0]["data_sets"],
        serde_json::json!([SET])
    );
    // No db_user: the criterion's `handle_unknown_values` decides, not the data set.
    assert_eq!(items[1]["decision"], "allow", "{items}");
    assert!(items[1].get("unknown").is_none(), "{items}");

    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("warden_decisions_total{outcome=\"error\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("warden_data_set_loaded{{data_set=\"{SET}\"}} 0")),
        "{metrics}"
    );

    let sets = server.get("/v1/data-sets").json();
    assert_eq!(sets["data_sets"][0]["name"], SET);
    assert_eq!(sets["data_sets"][0]["loaded"], false, "{sets}");

    let (code, json, stderr) = decide(tmp.path(), "corp\\alice");
    assert_eq!(code, 2, "{json} {stderr}");
    assert_eq!(json["decision"], "error");
    assert!(stderr.contains(SET), "{stderr}");
}

#[test]
fn when_unknown_block_blocks_instead() {
    let tmp = tempfile::tempdir().unwrap();
    config(tmp.path(), LDAP, r#"when_unknown = "block""#);
    let server = serve(tmp.path());
    // Still not ready: the set has not loaded, whatever the policy answers meanwhile.
    assert_eq!(server.get("/readyz").status, 503);
    let d = server.get(&decision_path("decision", "corp\\alice"));
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["decision"], "block");
    assert_eq!(d.header("warden-decision"), Some("block"));
    let authz = server.get(&decision_path("authz", "corp\\alice"));
    assert_eq!(authz.status, 403, "{}", authz.body);
    assert_eq!(authz.header("warden-decision"), Some("block"));
    let (code, json, _) = decide(tmp.path(), "corp\\alice");
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["decision"], "block");
}

#[test]
fn persisted_rows_make_a_restart_ready_with_the_directory_down() {
    let tmp = tempfile::tempdir().unwrap();
    // First run: the set is written through the data endpoints (as an `api` set), which
    // persists its rows as the last good generation — as a successful pull would.
    config(tmp.path(), API, "");
    {
        let mut server = serve(tmp.path());
        // An `api` set no one has written is unknown too.
        let ready = server.get("/readyz");
        assert_eq!(ready.status, 503, "{}", ready.body);
        assert_eq!(ready.json()["waiting_for"], serde_json::json!([SET]));
        assert_eq!(
            server
                .get(&decision_path("authz", "corp\\alice"))
                .header("warden-decision"),
            Some("error")
        );
        let w = server.post_json(
            &format!("/v1/data-sets/{SET_PATH}/data"),
            &serde_json::json!({"records": [{"user": "corp\\alice"}]}),
        );
        assert_eq!(w.status, 200, "{}", w.body);
        assert_eq!(server.get("/readyz").status, 200);
        assert_eq!(server.decision("orders", "corp\\bob"), "allow");
        server.stop();
    }
    // Restart with the same set sourced from the unreachable directory: its persisted rows
    // load it, so warden is ready and blocks what the last good rows say.
    config(tmp.path(), LDAP, "");
    let server = serve(tmp.path());
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["status"], "ready");
    let sets = server.get("/v1/data-sets").json();
    assert_eq!(sets["data_sets"][0]["loaded"], true, "{sets}");
    assert_eq!(server.decision("orders", "CORP\\Alice"), "block");
    assert_eq!(server.decision("orders", "corp\\bob"), "allow");
    let authz = server.get(&decision_path("authz", "corp\\bob"));
    assert_eq!(authz.status, 200, "{}", authz.body);
    assert_eq!(authz.header("warden-decision"), Some("allow"));
    let (code, json, _) = decide(tmp.path(), "corp\\alice");
    assert_eq!(code, 1, "{json}");
    let (code, json, _) = decide(tmp.path(), "corp\\bob");
    assert_eq!(code, 0, "{json}");
}

#[test]
fn every_authz_answer_carries_warden_decision() {
    let tmp = tempfile::tempdir().unwrap();
    // Keys required here (no anonymous decisions): the list-sourced embedded shape.
    std::fs::write(
        tmp.path().join("warden.toml"),
        crate::support::list_config("", r#""*""#),
    )
    .unwrap();
    let server = serve(tmp.path());
    let admin = server.admin_key.clone().unwrap();
    assert_eq!(server.add_member("corp\\mallory"), 201);
    let bob = "service=orders&db_user=corp%5Cbob";
    let mallory = "service=orders&db_user=corp%5Cmallory";
    let (key, wrong) = (Some(admin.as_str()), Some("wk_nope"));
    let cases = [
        (format!("/v1/authz?{bob}"), key, 200, "allow"),
        (format!("/v1/authz?{mallory}"), key, 403, "block"),
        (format!("/v1/authz?{bob}"), None, 401, "error"),
        (format!("/v1/authz?{bob}"), wrong, 401, "error"),
        (
            "/v1/authz?db_user=corp%5Cbob&bogus=1".to_owned(),
            key,
            400,
            "error",
        ),
        // Envoy's ext_authz appends the client's path: the same route, the same contract.
        (format!("/v1/authz/app/x?{mallory}"), key, 403, "block"),
        (format!("/v1/authz/app/x?{bob}"), None, 401, "error"),
    ];
    for (path, key, status, decision) in cases {
        let r = server.call("GET", &path, key, b"");
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert_eq!(r.header("warden-decision"), Some(decision), "{path}: {r:?}");
    }
    // Wrong method on the path: still an answer of /v1/authz, still says error.
    let r = server.call("POST", "/v1/authz", Some(&admin), b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("warden-decision"), Some("error"));
}
