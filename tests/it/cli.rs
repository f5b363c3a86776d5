//! The foundation's acceptance test as a new user would run it: serve the embedded default,
//! ask for CORP\alice (allow), add corp\alice with the CLI, ask again (block, any case).

use std::time::Duration;

use crate::support::{enc, eventually, run, start_warden, warden_cmd};

fn decision(server: &crate::support::Server, user: &str) -> serde_json::Value {
    let r = server.get(&format!(
        "/v1/decision?service=orders&db_user={}",
        enc(user)
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

#[test]
fn cli_list_change_turns_decision_to_block() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_warden(dir.path(), &[]);
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/readyz").status, 200);
    assert_eq!(decision(&server, "CORP\\alice")["decision"], "allow");

    let add = run({
        let mut c = warden_cmd(dir.path());
        c.args([
            "lists",
            "add",
            "Suspicious Users",
            "corp\\alice",
            "--reason",
            "INC-1 phishing",
        ]);
        c
    });
    assert_eq!(add.code, 0, "{}", add.stderr);

    let took = eventually(Duration::from_secs(10), || {
        decision(&server, "CORP\\alice")["decision"] == "block"
    });
    assert!(
        took.is_some(),
        "decision never turned to block; logs:\n{}",
        server.logs()
    );
    let d = decision(&server, "CORP\\ALICE");
    assert_eq!(d["decision"], "block");
    assert_eq!(d["matched"][0]["policy"], "Block suspicious database users");
    assert_eq!(d["matched"][0]["severity"], "high");
    assert!(d["snapshot_version"].as_u64().unwrap() >= 2);
    assert_eq!(decision(&server, "corp\\bob")["decision"], "allow");

    let authz = server.get("/v1/authz?service=orders&db_user=corp%5Calice");
    assert_eq!(authz.status, 403);

    let remove = run({
        let mut c = warden_cmd(dir.path());
        c.args(["lists", "remove", "Suspicious Users", "CORP\\Alice"]);
        c
    });
    assert_eq!(remove.code, 0, "{}", remove.stderr);
    assert!(
        eventually(Duration::from_secs(10), || {
            decision(&server, "CORP\\alice")["decision"] == "allow"
        })
        .is_some()
    );
}

#[test]
fn decide_command_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let decide = |user: &str| {
        run({
            let mut c = warden_cmd(dir.path());
            c.args(["decide", "--service", "orders", "--db-user", user]);
            c
        })
    };
    let allow = decide("corp\\alice");
    assert_eq!(allow.code, 0, "{}", allow.stderr);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&allow.stdout).unwrap()["decision"],
        "allow"
    );
    let add = run({
        let mut c = warden_cmd(dir.path());
        c.args([
            "lists",
            "add",
            "Suspicious Users",
            "corp\\alice",
            "--expires-in",
            "1h",
        ]);
        c
    });
    assert_eq!(add.code, 0, "{}", add.stderr);
    let block = decide("CORP\\Alice");
    assert_eq!(block.code, 1, "{}", block.stderr);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&block.stdout).unwrap()["decision"],
        "block"
    );
    let error = run({
        let mut c = warden_cmd(dir.path());
        c.args([
            "--config",
            "/nonexistent/warden.toml",
            "decide",
            "--service",
            "s",
        ]);
        c
    });
    assert_eq!(error.code, 2);
    assert!(
        error.stderr.contains("cannot read file"),
        "{}",
        error.stderr
    );
}

/// Issue 15: with the embedded default (no directory), a member matches the account, not the
/// string — whichever of its names the analyst typed; another domain's user does not.
#[test]
fn a_member_blocks_every_name_of_its_account() {
    let accounts = [
        "CORP\\alice",
        "corp\\ALICE",
        "alice@corp.example.test",
        "alice@CORP.EXAMPLE.TEST",
    ];
    for typed in accounts {
        let dir = tempfile::tempdir().unwrap();
        let cli = |args: &[&str]| {
            run({
                let mut c = warden_cmd(dir.path());
                c.args(args);
                c
            })
        };
        let add = cli(&["lists", "add", "Suspicious Users", typed]);
        assert_eq!(add.code, 0, "{}", add.stderr);
        for asked in accounts {
            let d = cli(&["decide", "--service", "x", "--db-user", asked]);
            assert_eq!(d.code, 1, "listed {typed}, asked {asked}: {}", d.stdout);
        }
        for other in [
            "PARTNER\\alice",
            "alice@partner.example.test",
            "bob@corp.example.test",
        ] {
            let d = cli(&["decide", "--service", "x", "--db-user", other]);
            assert_eq!(d.code, 0, "listed {typed}, asked {other}: {}", d.stdout);
        }
    }
}

#[test]
fn bad_principals_and_lists_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run({
        let mut c = warden_cmd(dir.path());
        c.args(["lists", "add", "No Such List", "alice"]);
        c
    });
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no list named \"No Such List\""),
        "{}",
        out.stderr
    );
    let out = run({
        let mut c = warden_cmd(dir.path());
        c.args(["lists", "add", "Suspicious Users", "CORP\\"]);
        c
    });
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("empty domain or user part"),
        "{}",
        out.stderr
    );
}

#[test]
fn http_errors_are_problem_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_warden(dir.path(), &[]);
    for (path, status) in [
        ("/v1/decision?db_user=x", 400),
        ("/v1/decision?service=s&dbuser=x", 400),
        ("/v1/decision?service=%ZZ", 400),
        ("/nowhere", 404),
    ] {
        let r = server.get(path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let p = r.json();
        assert_eq!(p["status"], status);
        assert!(!p["detail"].as_str().unwrap().is_empty());
    }
    let r = crate::support::http(server.addr, "POST", "/v1/decision?service=s", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_warden(dir.path(), &[]);
    assert_eq!(server.stop(), Some(0), "{}", server.logs());
}

/// The CLI refuses a principal HTTP refuses, with the same words, and writes nothing.
#[test]
fn the_cli_refuses_an_invalid_principal_as_http_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_warden(dir.path(), &[]);
    for bad in ["CN=", "corp\\al\u{7}ice", ""] {
        let http = server.call(
            "POST",
            "/v1/lists/Suspicious%20Users/members",
            server.admin_key.as_deref(),
            serde_json::json!({ "principal": bad })
                .to_string()
                .as_bytes(),
        );
        assert_eq!(http.status, 400, "{bad:?}: {}", http.body);
        let detail = http.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.starts_with("field `principal`"), "{detail}");
        let cli = run({
            let mut c = warden_cmd(dir.path());
            c.args(["lists", "add", "Suspicious Users", bad]);
            c
        });
        assert_eq!(cli.code, 2, "{bad:?}: {}{}", cli.stdout, cli.stderr);
        assert!(cli.stderr.contains(&detail), "{bad:?}: {}", cli.stderr);
    }
    let members = server.get("/v1/lists/Suspicious%20Users/members").json();
    assert_eq!(members["members"], serde_json::json!([]));
}
