//! The HTTP gateway against the real binary: every route, every error class, scope
//! enforcement, keys, the audit trail, and no key in any response, log line or audit record.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{BOOTSTRAP_KEY_FILE, Server, enc, list_config, run, start_warden, warden_cmd};

/// The embedded default with decisions behind keys, plus an `api` data set.
fn config() -> String {
    list_config("max_body_bytes = 4096\nmax_batch = 3", r#""*""#)
        + r#"
[[data_sets]]
name = "Blocked Apps"
case_sensitive = false
columns = [{ name = "app", key = true }, { name = "owners" }]
source = { type = "api" }
"#
}

fn start(dir: &Path) -> Server {
    let config = dir.join("warden.toml");
    std::fs::write(&config, self::config()).unwrap();
    start_warden(dir, &["--config", config.to_str().unwrap()])
}

fn make_key(server: &Server, name: &str, scopes: &[&str]) -> String {
    let body = serde_json::json!({ "name": name, "scopes": scopes }).to_string();
    let r = server.call(
        "POST",
        "/v1/keys",
        server.admin_key.as_deref(),
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["key"].as_str().unwrap().to_string()
}

fn assert_problem(r: &crate::support::HttpResponse, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let p = r.json();
    assert_eq!(p["status"], status);
    assert!(!p["detail"].as_str().unwrap().is_empty());
    p
}

/// (method, path, scope) for every keyed route, with paths that exist in `config()`.
/// `any` is a valid key of any scope.
const KEYED: &[(&str, &str, &str)] = &[
    ("GET", "/v1/status", "any"),
    ("GET", "/v1/decision?service=orders&db_user=x", "decide"),
    ("GET", "/v1/authz?service=orders&db_user=x", "decide"),
    ("GET", "/v1/authz/app/x?service=orders&db_user=x", "decide"),
    ("POST", "/v1/decisions", "decide"),
    ("GET", "/v1/lists", "respond"),
    ("POST", "/v1/lists", "respond"),
    ("GET", "/v1/accounts/x", "respond"),
    ("GET", "/v1/lists/Suspicious%20Users/members", "respond"),
    (
        "POST",
        "/v1/lists/Suspicious%20Users/expiry/release",
        "admin",
    ),
    ("POST", "/v1/lists/Suspicious%20Users/members", "respond"),
    (
        "DELETE",
        "/v1/lists/Suspicious%20Users/members/x",
        "respond",
    ),
    ("PATCH", "/v1/lists/Suspicious%20Users/members/x", "respond"),
    ("GET", "/v1/incidents", "respond"),
    ("POST", "/v1/incidents", "respond"),
    ("GET", "/v1/incidents/INC-1", "respond"),
    ("POST", "/v1/incidents/INC-1/responses", "respond"),
    ("POST", "/v1/alerts", "respond"),
    ("POST", "/v1/contain", "respond"),
    ("GET", "/v1/contain/RCPT-1", "respond"),
    ("POST", "/v1/release", "respond"),
    ("GET", "/v1/data-sets", "admin"),
    ("GET", "/v1/data-sets/Blocked%20Apps/rows", "admin"),
    ("POST", "/v1/data-sets/Blocked%20Apps/refresh", "admin"),
    ("POST", "/v1/data-sets/Blocked%20Apps/test-query", "admin"),
    ("POST", "/v1/data-sets/Blocked%20Apps/accept", "admin"),
    ("POST", "/v1/data-sets/Blocked%20Apps/data", "admin"),
    ("PUT", "/v1/data-sets/Blocked%20Apps/data", "admin"),
    ("DELETE", "/v1/data-sets/Blocked%20Apps/data", "admin"),
    ("GET", "/v1/directories", "admin"),
    ("POST", "/v1/directories/none/sync", "admin"),
    ("GET", "/v1/databases", "admin"),
    ("POST", "/v1/databases/none/sync", "admin"),
    ("GET", "/v1/devices", "admin"),
    ("POST", "/v1/devices/none/sync", "admin"),
    ("GET", "/v1/policies", "admin"),
    ("GET", "/v1/gates", "admin"),
    ("GET", "/v1/imperva", "admin"),
    ("POST", "/v1/imperva/push?dry_run=true", "admin"),
    ("GET", "/v1/audit", "admin"),
    ("GET", "/v1/decision-log", "admin"),
    ("POST", "/v1/admin/reload", "admin"),
    ("GET", "/v1/keys", "admin"),
    ("POST", "/v1/keys", "admin"),
    ("DELETE", "/v1/keys/000000000000", "admin"),
    ("POST", "/v1/keys/000000000000/rotate", "admin"),
];

#[test]
fn every_keyed_route_enforces_its_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let decide = make_key(&server, "proxy", &["decide"]);
    let respond = make_key(&server, "analyst", &["respond"]);
    let keys = [("decide", &decide), ("respond", &respond)];
    // Every keyed route is in the table above (the OpenAPI test ties the table to the router),
    // but the MX Open API's paths, which answer in the MX's shape (tests/it/imperva.rs).
    let doc = server.get("/v1/openapi.json").json();
    let keyed_ops: usize = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| !path.starts_with("/SecureSphere/"))
        .flat_map(|(_, ops)| ops.as_object().unwrap().values())
        .filter(|op| op.get("x-scope").is_some())
        .count();
    assert_eq!(keyed_ops, KEYED.len());
    for (method, path, scope) in KEYED {
        let r = server.call(method, path, None, b"");
        assert_problem(&r, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"warden\"")
        );
        let r = server.call(method, path, Some("wdn_000000000000_nope"), b"");
        assert_problem(&r, 401);
        for (has, key) in keys {
            let r = server.call(method, path, Some(key), b"{}");
            if has == *scope || *scope == "any" {
                assert!(
                    r.status != 401 && r.status != 403,
                    "{method} {path} with {has}: {}",
                    r.body
                );
            } else {
                assert_problem(&r, 403);
            }
        }
        // admin includes every scope
        let r = server.call(method, path, server.admin_key.as_deref(), b"{}");
        assert!(
            r.status != 401 && r.status != 403,
            "{method} {path} admin: {}",
            r.body
        );
    }
}

#[test]
fn respond_then_decide_leaves_an_audit_trail_and_no_key_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let key_file = tmp.path().join(BOOTSTRAP_KEY_FILE);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        server.logs().contains(BOOTSTRAP_KEY_FILE),
        "the key file path is logged"
    );
    let admin = server.admin_key.clone().unwrap();
    let decide = make_key(&server, "proxy", &["decide"]);
    let respond = make_key(&server, "analyst", &["respond"]);

    let ask = |user: &str| {
        let r = server.call(
            "GET",
            &format!("/v1/authz?service=orders&db_user={}", enc(user)),
            Some(&decide),
            b"",
        );
        (r.status, r.json()["decision"].as_str().unwrap().to_string())
    };
    assert_eq!(ask("CORP\\Alice"), (200, "allow".into()));
    let add = serde_json::json!({
        "principal": "corp\\alice", "reason": "phishing", "incident": "INC-7", "expires_in": "1d"
    });
    let r = server.call(
        "POST",
        "/v1/lists/Suspicious%20Users/members",
        Some(&respond),
        add.to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(ask("CORP\\Alice"), (403, "block".into()));
    let r = server.call(
        "POST",
        "/v1/lists/Suspicious%20Users/members",
        Some(&respond),
        add.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "adding again updates: {}", r.body);
    let members = server
        .call(
            "GET",
            "/v1/lists/Suspicious%20Users/members",
            Some(&respond),
            b"",
        )
        .json();
    assert_eq!(members["members"][0]["incident"], "INC-7");
    assert!(
        members["members"][0]["added_by"]
            .as_str()
            .unwrap()
            .contains("analyst")
    );
    let r = server.call(
        "DELETE",
        "/v1/lists/Suspicious%20Users/members/corp%5Calice",
        Some(&respond),
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(ask("CORP\\Alice"), (200, "allow".into()));
    let r = server.call(
        "DELETE",
        "/v1/lists/Suspicious%20Users/members/corp%5Calice",
        Some(&respond),
        b"",
    );
    assert_problem(&r, 404);
    server.call("GET", "/v1/lists", Some("wdn_0123456789ab_wrong"), b"");

    let audit = server.call("GET", "/v1/audit?format=jsonl", Some(&admin), b"");
    assert_eq!(audit.status, 200);
    let records: Vec<serde_json::Value> = audit
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    for want in [
        ("keys.bootstrap", "ok"),
        ("keys.create", "ok"),
        ("lists.add", "ok"),
        ("lists.remove", "ok"),
        ("auth.failed", "denied"),
    ] {
        assert!(actions.contains(&want), "{want:?} not in {actions:?}");
    }
    let add_record = records.iter().find(|r| r["action"] == "lists.add").unwrap();
    assert!(add_record["actor"].as_str().unwrap().contains("analyst"));
    assert!(
        add_record["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(add_record["detail"]["principal"], "corp\\alice");
    let failed = records
        .iter()
        .find(|r| r["action"] == "auth.failed")
        .unwrap();
    // Refusals are audited in aggregate: per source address (no port), with a count.
    assert_eq!(failed["source"], "127.0.0.1");
    assert_eq!(failed["detail"]["count"], 1);
    let filtered = server
        .call("GET", "/v1/audit?action=lists.add", Some(&admin), b"")
        .json();
    assert_eq!(filtered["records"].as_array().unwrap().len(), 2);

    // No key, in clear, in any audit record, log line, listing or the store file.
    let keys_listing = server.call("GET", "/v1/keys", Some(&admin), b"").body;
    let store =
        String::from_utf8_lossy(&std::fs::read(tmp.path().join("warden.db")).unwrap()).into_owned();
    let wal = std::fs::read(tmp.path().join("warden.db-wal"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    for key in [&admin, &decide, &respond] {
        let secret = &key[17..];
        for (what, text) in [
            ("audit", &audit.body),
            ("logs", &server.logs()),
            ("keys", &keys_listing),
            ("store", &store),
            ("wal", &wal),
        ] {
            assert!(!text.contains(secret), "a key's secret is in the {what}");
        }
    }
}

#[test]
fn errors_are_problem_json_with_actionable_details() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let admin = server.admin_key.clone().unwrap();
    let key = Some(admin.as_str());
    let p = assert_problem(&server.call("GET", "/v1/nothing", key, b""), 404);
    assert!(p["detail"].as_str().unwrap().contains("/v1/openapi.json"));
    let r = server.call("PATCH", "/v1/lists", key, b"");
    assert_problem(&r, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, HEAD"));
    let big = vec![b'x'; 5000];
    assert_problem(&server.call("POST", "/v1/decisions", key, &big), 413);
    let p = assert_problem(
        &server.call(
            "POST",
            "/v1/decisions",
            key,
            b"{\"requests\": [{\"service\": 7}]}",
        ),
        400,
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("requests[0].service"),
        "{p}"
    );
    assert_problem(
        &server.call("POST", "/v1/decisions", key, b"{not json"),
        400,
    );
    let four = br#"{"requests":[{"service":"a"},{"service":"a"},{"service":"a"},{"service":"a"}]}"#;
    assert_problem(&server.call("POST", "/v1/decisions", key, four), 413);
    let p = assert_problem(&server.call("GET", "/v1/decision?db_user=x", key, b""), 400);
    assert!(p["detail"].as_str().unwrap().contains("service"));
    let p = assert_problem(
        &server.call(
            "POST",
            "/v1/lists/Suspicious%20Users/members",
            key,
            br#"{"principal":"al\nice"}"#,
        ),
        400,
    );
    assert!(p["detail"].as_str().unwrap().contains("principal"), "{p}");
    assert_problem(
        &server.call(
            "POST",
            "/v1/lists/Nope/members",
            key,
            br#"{"principal":"x"}"#,
        ),
        404,
    );
    assert_problem(
        &server.call("POST", "/v1/lists", key, br#"{"name":"Suspicious Users"}"#),
        409,
    );
    assert_eq!(
        server
            .call("POST", "/v1/lists", key, br#"{"name":"Watch"}"#)
            .status,
        201
    );
    assert_problem(
        &server.call(
            "POST",
            "/v1/keys",
            key,
            br#"{"name":"x","scopes":["root"]}"#,
        ),
        400,
    );
}

#[test]
fn batch_decisions_are_answered_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let admin = server.admin_key.clone().unwrap();
    let add = br#"{"principal":"corp\\bob"}"#;
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/lists/Suspicious%20Users/members",
                Some(&admin),
                add
            )
            .status,
        201
    );
    let batch = br#"{"requests":[
        {"service":"orders","db_user":"alice"},
        {"service":"orders","db_user":["x","CORP\\BOB"]},
        {"service":"orders"}]}"#;
    let r = server.call("POST", "/v1/decisions", Some(&admin), batch);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let outcomes: Vec<&str> = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["allow", "block", "allow"]);
    assert_eq!(v["snapshot_version"], v["decisions"][1]["snapshot_version"]);
}

#[test]
fn data_sets_serve_rows_with_etags_and_accept_imperva_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let admin = server.admin_key.clone().unwrap();
    let key = Some(admin.as_str());
    let data = "/v1/data-sets/Blocked%20Apps/data";
    let r = server.call(
        "POST",
        data,
        key,
        br#"{"records":[{"app":"excel","owners":["a","b"]},{"app":"toad"}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = server.call("GET", "/v1/data-sets/Blocked%20Apps/rows", key, b"");
    assert_eq!(rows.json()["records"].as_array().unwrap().len(), 2);
    let etag = rows.header("etag").unwrap().to_string();
    let again = crate::support::http(
        server.addr,
        "GET",
        "/v1/data-sets/Blocked%20Apps/rows",
        &[
            ("Authorization", &format!("Bearer {admin}")),
            ("If-None-Match", &etag),
        ],
        b"",
    );
    assert_eq!(again.status, 304);
    let csv = server.call(
        "GET",
        "/v1/data-sets/Blocked%20Apps/rows?format=csv",
        key,
        b"",
    );
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(csv.body, "app,owners\r\nexcel,\"a;b\"\r\ntoad,\r\n");

    let r = server.call(
        "PUT",
        data,
        key,
        br#"{"action":"add","records":[{"app":"TOAD","owners":"c"},{"app":"sqlplus"}]}"#,
    );
    assert_eq!(r.json()["rows"], 3, "{}", r.body);
    let r = server.call(
        "PUT",
        data,
        key,
        br#"{"action":"delete","records":[{"app":"Excel"}]}"#,
    );
    assert_eq!(r.json()["rows"], 2, "{}", r.body);
    let changed = server.call("GET", "/v1/data-sets/Blocked%20Apps/rows", key, b"");
    assert_ne!(changed.header("etag").unwrap(), etag);

    let imp = |body: &[u8], code: &str| {
        let p = assert_problem(&server.call("POST", data, key, body), 400);
        assert_eq!(p["imp_code"], code, "{p}");
    };
    imp(br#"{"records":[{"app":"x","colour":"red"}]}"#, "IMP-10095");
    imp(br#"{"records":[{"owners":"x"}]}"#, "IMP-10096");
    imp(br#"{"records":[{"app":"x"},{"app":"X"}]}"#, "IMP-10097");
    let p = assert_problem(
        &server.call("POST", "/v1/data-sets/Nope/data", key, br#"{"records":[]}"#),
        404,
    );
    assert_eq!(p["imp_code"], "IMP-10094");
    assert_problem(
        &server.call(
            "POST",
            "/v1/data-sets/Suspicious%20Users/data",
            key,
            br#"{"records":[]}"#,
        ),
        409,
    );
    assert_eq!(server.call("DELETE", data, key, b"").json()["rows"], 0);

    let sets = server.call("GET", "/v1/data-sets", key, b"").json();
    assert_eq!(sets["data_sets"].as_array().unwrap().len(), 2);
    let policies = server.call("GET", "/v1/policies", key, b"").json();
    assert_eq!(
        policies["policies"][0]["criteria"][0]["data_set"],
        "Suspicious Users"
    );
    assert_eq!(
        server.call("GET", "/v1/devices", key, b"").json()["devices"],
        serde_json::json!([])
    );
    assert_problem(&server.call("POST", "/v1/devices/none/sync", key, b""), 404);
    assert_problem(
        &server.call("POST", "/v1/data-sets/Blocked%20Apps/refresh", key, b""),
        409,
    );
}

/// Concurrent incremental adds to an `api` data set each land: the read-merge-write runs under
/// one lock (it ran in the handler, outside it, and two adds could both answer 200 with one of
/// them lost).
#[test]
fn parallel_data_set_adds_are_all_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let key = server.admin_key.as_deref();
    std::thread::scope(|s| {
        for i in 0..50 {
            let server = &server;
            s.spawn(move || {
                let body = format!(r#"{{"action":"add","records":[{{"app":"app-{i}"}}]}}"#);
                let r = server.call(
                    "PUT",
                    "/v1/data-sets/Blocked%20Apps/data",
                    key,
                    body.as_bytes(),
                );
                assert_eq!(r.status, 200, "{}", r.body);
            });
        }
    });
    let rows = server.call("GET", "/v1/data-sets/Blocked%20Apps/rows", key, b"");
    let mut apps: Vec<String> = rows.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["app"].as_str().unwrap().to_owned())
        .collect();
    apps.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("app-{i}")).collect();
    want.sort();
    assert_eq!(apps, want);
    // One audit record per write, each in the transaction of its rows.
    let audit = server.get("/v1/audit?action=data_sets.add").json();
    assert_eq!(audit["records"].as_array().unwrap().len(), 50, "{audit}");
}

#[test]
fn keys_rotate_and_revoke_over_http_and_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let admin = server.admin_key.clone().unwrap();
    let key = Some(admin.as_str());
    let body = br#"{"name":"proxy","scopes":["decide"]}"#;
    let created = server.call("POST", "/v1/keys", key, body).json();
    let (old, id) = (
        created["key"].as_str().unwrap().to_string(),
        created["record"]["id"].as_str().unwrap().to_string(),
    );
    let rotated = server.call(
        "POST",
        &format!("/v1/keys/{id}/rotate"),
        key,
        br#"{"overlap":"1h"}"#,
    );
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    let new = rotated.json()["key"].as_str().unwrap().to_string();
    let decide = |k: &str| {
        server
            .call("GET", "/v1/decision?service=s&db_user=u", Some(k), b"")
            .status
    };
    assert_eq!(
        (decide(&old), decide(&new)),
        (200, 200),
        "both work during the overlap"
    );
    assert_eq!(
        server
            .call("DELETE", &format!("/v1/keys/{id}"), key, b"")
            .status,
        204
    );
    assert_eq!(decide(&old), 401);
    assert_eq!(decide(&new), 200);

    // A key made on the CLI works on the running server (it reloads keys from the store).
    let config = tmp.path().join("warden.toml");
    let mut cmd = warden_cmd(tmp.path());
    cmd.arg("--config").arg(&config).args([
        "keys",
        "create",
        "--name",
        "cli-proxy",
        "--scope",
        "decide",
    ]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cli_key = out.stdout.trim().to_string();
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(5), || decide(&cli_key)
            == 200)
        .is_some()
    );
    let mut cmd = warden_cmd(tmp.path());
    cmd.arg("--config").arg(&config).args(["keys", "list"]);
    let listing = run(cmd);
    assert!(listing.stdout.contains("cli-proxy") && !listing.stdout.contains(&cli_key[17..]));
}

/// Only health, readiness, metrics and the API description answer without a key, as the
/// README says; `/v1/status` (a replica's role, revision and lag) was public too (issue 24
/// §8) and now needs one.
#[test]
fn operations_routes_need_no_key() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let doc = server.call("GET", "/v1/openapi.json", None, b"").json();
    let mut public: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, ops)| ops["get"].is_object() && ops["get"].get("x-scope").is_none())
        .map(|(path, _)| path.as_str())
        .collect();
    public.sort_unstable();
    assert_eq!(
        public,
        ["/healthz", "/metrics", "/readyz", "/v1/openapi.json"]
    );
    let status = server.call("GET", "/v1/status", None, b"");
    assert_problem(&status, 401);
    assert!(!status.body.contains("revision"), "{}", status.body);
    let status = server.get("/v1/status").json();
    assert_eq!(status["role"], "leader", "{status}");
    assert_eq!(server.call("GET", "/healthz", None, b"").status, 200);
    assert_eq!(
        server.call("GET", "/readyz", None, b"").json()["status"],
        "ready"
    );
    let doc = server.call("GET", "/v1/openapi.json", None, b"").json();
    assert_eq!(doc["openapi"], "3.0.3");
    server.call(
        "GET",
        "/v1/decision?service=s&db_user=u",
        server.admin_key.as_deref(),
        b"",
    );
    let m = server.call("GET", "/metrics", None, b"");
    assert_eq!(m.status, 200);
    for family in [
        "warden_decisions_total{outcome=\"allow\"} 1",
        "warden_decision_duration_seconds_count 1",
        "warden_http_requests_total{route=\"/v1/decision\",status=\"200\"} 1",
        "warden_data_set_rows{data_set=\"Suspicious Users\"} 0",
        "warden_held_refreshes 0",
    ] {
        assert!(m.body.contains(family), "{family} missing:\n{}", m.body);
    }
}
