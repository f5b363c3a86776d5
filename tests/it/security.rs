//! Security as tests: after a workout of every kind of operation against the real DC and the
//! in-process MX, no log line, response body, audit record or byte of the store holds the bind
//! password, the MX password or an API key; plain LDAP needs its opt-in; TLS to the directory
//! is verified by default.

use std::time::Duration;

use serde_json::json;

use crate::dc::{self, AdConfig, Ns};
use crate::fake_mx::FakeMx;
use crate::support::{eventually, run, start_warden, warden_cmd};

const MX_PASSWORD: &str = "Mx-Pa55-sweep-7f3a";

#[test]
fn no_secret_in_any_log_answer_audit_record_or_the_store() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    ns.add_user(dc, "alice");
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    let config = AdConfig::seed(&ns, &group).write(dc, tmp.path());
    let mx = FakeMx::for_config(tmp.path(), &config, MX_PASSWORD, "PTR Suspicious Users");
    let bind_password = std::fs::read_to_string(&dc.password_file)
        .unwrap()
        .trim()
        .to_owned();
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    // A fresh store: the data set is unknown until the first pull applies.
    server.wait_ready();
    let admin = server.admin_key.clone().unwrap();

    // The workout: keys, respond, decide, every read, refresh, test query, sync, MX push,
    // failed authentications, a rejected reload.
    let mut answers = Vec::new();
    let created = server.post_json(
        "/v1/keys",
        &json!({ "name": "proxy", "scopes": ["decide"] }),
    );
    assert_eq!(created.status, 201);
    let proxy_key = created.json()["key"].as_str().unwrap().to_owned();
    let id = created.json()["record"]["id"].as_str().unwrap().to_owned();
    let rotated = server.post_json(
        &format!("/v1/keys/{id}/rotate"),
        &json!({ "overlap": "1m" }),
    );
    let rotated_key = rotated.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(server.add_member(&ns.mapped("alice")), 201);
    let blocked = eventually(Duration::from_secs(30), || {
        server.decision("orders", &ns.mapped("alice")) == "block"
    });
    assert!(blocked.is_some(), "{}", server.logs());
    for (method, path) in [
        ("GET", "/v1/decision?service=orders&db_user=x"),
        ("GET", "/v1/lists"),
        ("GET", "/v1/lists/Suspicious%20Users/members"),
        ("GET", "/v1/data-sets"),
        ("GET", "/v1/data-sets/PTR%20Suspicious%20Users/rows"),
        ("POST", "/v1/data-sets/PTR%20Suspicious%20Users/refresh"),
        ("POST", "/v1/data-sets/PTR%20Suspicious%20Users/test-query"),
        ("GET", "/v1/devices"),
        ("POST", "/v1/devices/dc/sync"),
        ("GET", "/v1/policies"),
        ("GET", "/v1/keys"),
        ("POST", "/v1/imperva/push"),
        ("GET", "/v1/imperva"),
        ("GET", "/metrics"),
        ("GET", "/v1/audit?format=jsonl"),
        ("POST", "/v1/admin/reload"),
    ] {
        answers.push(server.call(method, path, Some(&admin), b"").body);
    }
    for key in [&proxy_key, &rotated_key] {
        answers.push(server.call("GET", "/v1/lists", Some(key), b"").body);
        let wrong = format!("{}X", &key[..key.len() - 1]);
        answers.push(server.call("GET", "/v1/lists", Some(&wrong), b"").body);
    }
    let pushed = eventually(Duration::from_secs(30), || {
        mx.records("PTR Suspicious Users")
            .is_some_and(|r| !r.is_empty())
    });
    assert!(pushed.is_some(), "{:?}", mx.requests());
    // A CLI run too: its output and the log of a failing bind.
    let mut c = warden_cmd(tmp.path());
    c.args([
        "--config",
        config.to_str().unwrap(),
        "devices",
        "status",
        "--json",
    ]);
    let cli = run(c);
    answers.push(cli.stdout + &cli.stderr);

    let audit = server.get("/v1/audit?format=jsonl&limit=10000").body;
    // The two wrong keys are in the log the secrets are searched in: aggregated, counted.
    let failed: u64 = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"] == "auth.failed")
        .map(|r| r["detail"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(failed, 2, "{audit}");
    let mut store = Vec::new();
    for file in ["warden.db", "warden.db-wal"] {
        if let Ok(bytes) = std::fs::read(tmp.path().join(file)) {
            store.extend(bytes);
        }
    }
    let store = String::from_utf8_lossy(&store).into_owned();
    let places = [
        ("a log line", server.logs()),
        ("a response", answers.join("\n")),
        ("the audit log", audit),
        ("the store", store),
    ];
    let secrets = [
        ("the bind password", bind_password.as_str()),
        ("the MX password", MX_PASSWORD),
        ("the bootstrap admin key", admin.as_str()),
        ("an API key", proxy_key.as_str()),
        ("a rotated API key", rotated_key.as_str()),
    ];
    for (where_, text) in &places {
        for (what, secret) in secrets {
            assert!(!text.contains(secret), "{what} appears in {where_}");
            // Keys: not even the secret part on its own.
            if let Some(part) = secret.strip_prefix("wdn_").and_then(|k| k.split_once('_')) {
                assert!(
                    !text.contains(part.1),
                    "the secret part of {what} appears in {where_}"
                );
            }
        }
    }
}

#[test]
fn plain_ldap_needs_the_opt_in_and_directory_tls_is_verified_by_default() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    let config = AdConfig {
        mapping: false,
        ..AdConfig::seed(&ns, &group)
    }
    .write(dc, tmp.path());
    let original = std::fs::read_to_string(&config).unwrap();
    let check = |text: &str, args: &[&str]| {
        std::fs::write(&config, text).unwrap();
        let mut c = warden_cmd(tmp.path());
        c.args(["--config", config.to_str().unwrap()]).args(args);
        run(c)
    };

    // ldap:// without StartTLS or the opt-in is refused by name.
    let plain = original.replace(&dc.ldaps_url, "ldap://127.0.0.1:389");
    let r = check(&plain, &["check-config"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("directories[0].url"), "{}", r.stderr);
    assert!(r.stderr.contains("allow_insecure"), "{}", r.stderr);

    // Without the test CA, the DC's certificate is not trusted: verification is on.
    let ca_line = format!("ca_file = \"{}\"\n", dc.ca.display());
    let no_ca = original.replace(&ca_line, "");
    assert_ne!(no_ca, original, "the test config names no ca_file");
    let r = check(&no_ca, &["datasets", "test-query", "PTR Suspicious Users"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let err = r.stderr.to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("unknown issuer") || err.contains("tls"),
        "{}",
        r.stderr
    );
    // With it, the same query works.
    let r = check(
        &original,
        &["datasets", "test-query", "PTR Suspicious Users"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}
