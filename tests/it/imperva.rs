//! The Imperva MX push against the real binary and the in-process MX of `fake_mx`: created
//! when missing, a full replace first and differences after, a new login when the session
//! expires (between pushes and part way through one), doubling backoff through an outage,
//! dry runs that contact nothing, an MX data set changed behind warden's back replaced whole,
//! a column mismatch reported and never rebuilt, TLS verified, the config checked with key
//! paths, and the MX password nowhere.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::fake_mx::FakeMx;
use crate::support::{
    HttpResponse, Server, eventually, list_config, make_certs, run, start_warden, warden_cmd,
};

const PASSWORD: &str = "mx-Secr3t-do-not-leak";
const MX_NAME: &str = "PTR Suspicious Users";

/// The list config, pushed to `url` as `MX_NAME`, with the MX password in a file.
fn write_config(dir: &Path, url: &str, extra: &str) {
    crate::support::write_secret(&dir.join("mx.secret"), format!("{PASSWORD}\n"));
    let config = list_config("anonymous_decisions = true", r#""*""#)
        + &format!(
            r#"
[imperva]
url = "{url}"
username = "warden"
password_file = "mx.secret"
ca_file = "ca.pem"
timeout = "3s"
{extra}
[[imperva.data_sets]]
data_set = "Suspicious Users"
name = "{MX_NAME}"

# The members are bare names no domain rule places: listed as the text they are.
[identity]
unresolvable = "keep"
"#
        );
    std::fs::write(dir.join("warden.toml"), config).unwrap();
}

/// A test CA, an MX that uses it, and a config pushing to it, in a fresh directory.
fn mx_and_config() -> (tempfile::TempDir, FakeMx) {
    let tmp = tempfile::tempdir().unwrap();
    make_certs(tmp.path());
    let mx = FakeMx::start(tmp.path(), "warden", PASSWORD);
    write_config(tmp.path(), &mx.url(), "");
    (tmp, mx)
}

fn member(server: &Server, method: &str, principal: &str) {
    let (path, body) = if method == "POST" {
        (
            "/v1/lists/Suspicious%20Users/members".to_owned(),
            json!({ "principal": principal, "reason": "mx" }).to_string(),
        )
    } else {
        (
            format!("/v1/lists/Suspicious%20Users/members/{principal}"),
            String::new(),
        )
    };
    let r = server.call(method, &path, server.admin_key.as_deref(), body.as_bytes());
    assert!(r.status < 300, "{}", r.body);
}

/// `POST /v1/imperva/push?{query}` with the admin key.
fn push(server: &Server, query: &str) -> HttpResponse {
    let path = format!("/v1/imperva/push?{query}");
    server.call("POST", &path, server.admin_key.as_deref(), b"")
}

fn users(mx: &FakeMx) -> Vec<String> {
    mx.records(MX_NAME)
        .unwrap_or_default()
        .iter()
        .map(|r| r["user"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn wait_for(mx: &FakeMx, server: &Server, want: &[&str]) {
    let got = eventually(Duration::from_secs(30), || users(mx) == want);
    assert!(
        got.is_some(),
        "MX holds {:?}, wanted {want:?}; requests {:?}; logs:\n{}",
        users(mx),
        mx.requests(),
        server.logs()
    );
}

#[test]
fn the_mx_follows_the_list_full_first_then_differences() {
    let (tmp, mx) = mx_and_config();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);

    // Created with warden's columns, then replaced whole (empty).
    let created = eventually(Duration::from_secs(30), || mx.columns(MX_NAME).is_some());
    assert!(created.is_some(), "{:?}\n{}", mx.requests(), server.logs());
    assert_eq!(
        mx.columns(MX_NAME).unwrap(),
        vec![("user".to_owned(), true), ("reason".to_owned(), false)]
    );
    let full = eventually(Duration::from_secs(30), || {
        mx.requests()
            .iter()
            .any(|r| r == "POST /SecureSphere/api/v1/conf/dataSets/PTR%20Suspicious%20Users/data")
    });
    assert!(full.is_some(), "{:?}", mx.requests());

    // Each change goes as a difference.
    member(&server, "POST", "alice");
    wait_for(&mx, &server, &["alice"]);
    member(&server, "POST", "bob");
    wait_for(&mx, &server, &["alice", "bob"]);
    member(&server, "DELETE", "alice");
    wait_for(&mx, &server, &["bob"]);
    let puts = mx
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT "))
        .count();
    assert!(puts >= 3, "{:?}", mx.requests());
    let status = server.get("/v1/imperva").json();
    assert_eq!(status["pushes"][0]["last_mode"], "incremental", "{status}");
    assert_eq!(status["pushes"][0]["failures"], 0);

    // The MX forgets the session: warden logs in again and goes on.
    let logins = |mx: &FakeMx| {
        mx.requests()
            .iter()
            .filter(|r| *r == "POST /SecureSphere/api/v1/auth/session")
            .count()
    };
    let before = logins(&mx);
    mx.expire_sessions();
    member(&server, "POST", "carol");
    wait_for(&mx, &server, &["bob", "carol"]);
    assert!(
        logins(&mx) > before,
        "no new login after the session expired"
    );

    // Sessions that expire every other call: a push (list, columns, add) meets the expiry
    // part way through, logs in again and finishes.
    mx.expire_sessions_after(Some(2));
    let before = (logins(&mx), mx.refusals().len());
    member(&server, "DELETE", "carol");
    wait_for(&mx, &server, &["bob"]);
    member(&server, "POST", "carol");
    wait_for(&mx, &server, &["bob", "carol"]);
    let expired = mx.refusals()[before.1..]
        .iter()
        .filter(|c| *c == "IMP-10063")
        .count();
    assert!(expired >= 1, "{:?}", mx.refusals());
    assert!(logins(&mx) >= before.0 + expired, "{:?}", mx.requests());
    mx.expire_sessions_after(None);

    // An outage: the failures show in the status, retries back off doubling, then the
    // retry converges.
    mx.set_down(true);
    member(&server, "POST", "dave");
    let failing = eventually(Duration::from_secs(30), || {
        server.get("/v1/imperva").json()["pushes"][0]["failures"].as_i64() >= Some(3)
    });
    assert!(failing.is_some(), "{}", server.get("/v1/imperva").body);
    let status = server.get("/v1/imperva").json();
    assert!(
        status["pushes"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{status}"
    );
    let delays: Vec<String> = server
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "Imperva MX push to be retried")
        .map(|l| l["fields"]["retry_in"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        delays.get(..3),
        Some(&["500ms", "1s", "2s"].map(String::from)[..]),
        "{}",
        server.logs()
    );
    mx.set_down(false);
    wait_for(&mx, &server, &["bob", "carol", "dave"]);

    // A dry run says what would go and contacts nothing; a full push replaces.
    let seen = mx.requests().len();
    let r = push(&server, "dry_run=true&full=true");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["pushes"][0]["mode"], "full");
    assert_eq!(r.json()["pushes"][0]["add"], 3);
    let would_add = &r.json()["pushes"][0]["would_send"]["add"];
    assert_eq!(
        would_add[2],
        json!({ "user": "dave", "reason": "mx" }),
        "{}",
        r.body
    );
    assert_eq!(mx.requests().len(), seen, "the dry run contacted the MX");
    let r = push(&server, "full=true");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(users(&mx), ["bob", "carol", "dave"]);

    // The password is in no answer, log line, audit record or the store.
    let audit = server.get("/v1/audit?format=jsonl").body;
    let store = std::fs::read(tmp.path().join("warden.db")).unwrap();
    for (what, text) in [
        ("status", server.get("/v1/imperva").body),
        ("logs", server.logs()),
        ("audit", audit),
        ("store", String::from_utf8_lossy(&store).into_owned()),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "the MX password appears in the {what}"
        );
    }
}

#[test]
fn an_mx_data_set_changed_behind_warden_is_replaced_whole() {
    let (tmp, mx) = mx_and_config();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    member(&server, "POST", "alice");
    wait_for(&mx, &server, &["alice"]);

    // An MX admin adds erin by hand; warden's difference (add erin) is refused as a
    // duplicate, so the next attempt replaces the records whole.
    mx.insert(MX_NAME, json!({ "user": "erin", "reason": "by hand" }));
    member(&server, "POST", "erin");
    let replaced = eventually(Duration::from_secs(30), || {
        mx.records(MX_NAME).unwrap()[1]["reason"] == "mx"
            && server.get("/v1/imperva").json()["pushes"][0]["failures"] == 0
    });
    assert!(
        replaced.is_some(),
        "{:?}\n{}\n{}",
        mx.refusals(),
        server.get("/v1/imperva").body,
        server.logs()
    );
    assert_eq!(users(&mx), ["alice", "erin"]);
    assert!(mx.refusals().iter().any(|c| c == "IMP-10097"));
    assert_eq!(
        server.get("/v1/imperva").json()["pushes"][0]["last_mode"],
        "full"
    );
    assert!(
        server.logs().contains("replacing it whole next"),
        "{}",
        server.logs()
    );
}

#[test]
fn a_data_set_never_loaded_does_not_empty_the_mx_data_set() {
    let (tmp, mx) = mx_and_config();
    // Push an `api` data set instead, which has no rows until something writes them.
    let config = std::fs::read_to_string(tmp.path().join("warden.toml"))
        .unwrap()
        .replace(
            &format!("data_set = \"Suspicious Users\"\nname = \"{MX_NAME}\""),
            "data_set = \"Apps\"\nname = \"Apps\"",
        )
        + r#"
[[data_sets]]
name = "Apps"
case_sensitive = false
columns = [{ name = "app", key = true }]
source = { type = "api" }
"#;
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    mx.create("Apps", &[("app", true)]);
    mx.insert("Apps", json!({ "app": "filled-before-warden" }));
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);

    let waited = eventually(Duration::from_secs(30), || {
        server.logs().contains("waiting for its first load")
    });
    assert!(waited.is_some(), "{}", server.logs());
    let r = push(&server, "full=true");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("not been loaded"), "{}", r.body);
    assert_eq!(
        mx.records("Apps").unwrap(),
        [json!({ "app": "filled-before-warden" })]
    );
    assert!(
        !mx.requests().iter().any(|r| r.ends_with("/data")),
        "{:?}",
        mx.requests()
    );

    // Its first load is pushed whole.
    let r = server.call(
        "POST",
        "/v1/data-sets/Apps/data",
        server.admin_key.as_deref(),
        br#"{"records":[{"app":"toad"}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let pushed = eventually(Duration::from_secs(30), || {
        mx.records("Apps").unwrap() == [json!({ "app": "toad" })]
    });
    assert!(pushed.is_some(), "{:?}\n{}", mx.requests(), server.logs());
}

#[test]
fn a_column_mismatch_is_reported_and_the_mx_data_set_left_alone() {
    let (tmp, mx) = mx_and_config();
    mx.create(MX_NAME, &[("user", true), ("department", false)]);
    // Configured but never pushed: listed, with nothing to say yet.
    let mut c = warden_cmd(tmp.path());
    c.args(["--config", "warden.toml", "imperva", "status"]);
    let status: serde_json::Value = serde_json::from_str(&run(c).stdout).unwrap();
    assert_eq!(status[0]["mx_name"], MX_NAME, "{status}");
    assert_eq!(status[0]["last_push_at"], json!(null), "{status}");
    let mut c = warden_cmd(tmp.path());
    c.args(["--config", "warden.toml", "imperva", "push"]);
    let r = run(c);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("department"), "{}", r.stderr);
    assert!(r.stderr.contains("never rebuilds"), "{}", r.stderr);
    assert_eq!(
        mx.columns(MX_NAME).unwrap(),
        vec![("user".to_owned(), true), ("department".to_owned(), false)]
    );
    assert!(
        !mx.requests()
            .iter()
            .any(|r| r.ends_with("/data") || r.contains("createDataset")),
        "{:?}",
        mx.requests()
    );
    let mut c = warden_cmd(tmp.path());
    c.args(["--config", "warden.toml", "imperva", "status"]);
    let status = run(c).stdout;
    assert!(status.contains("never rebuilds"), "{status}");
}

#[test]
fn plain_http_and_an_unknown_certificate_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    make_certs(tmp.path());
    // Plain HTTP without the opt-in is a config error naming the key.
    write_config(tmp.path(), "http://127.0.0.1:9", "");
    let mut c = warden_cmd(tmp.path());
    c.args(["check-config", "warden.toml"]);
    let r = run(c);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("imperva.url"), "{}", r.stderr);

    // An MX whose certificate the configured CA did not sign is refused.
    let mx = FakeMx::start(tmp.path(), "warden", PASSWORD);
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    make_certs(&other);
    write_config(tmp.path(), &mx.url(), "");
    let config = std::fs::read_to_string(tmp.path().join("warden.toml"))
        .unwrap()
        .replace("ca_file = \"ca.pem\"", "ca_file = \"other/ca.pem\"");
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let mut c = warden_cmd(tmp.path());
    c.args(["--config", "warden.toml", "imperva", "push"]);
    let r = run(c);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("TLS"), "{}", r.stderr);
    assert!(mx.requests().is_empty(), "{:?}", mx.requests());
}

#[test]
fn the_imperva_section_is_checked_with_key_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let config = list_config("", r#""*""#)
        + r#"
[[data_sets]]
name = "Apps"
case_sensitive = true
columns = [{ name = "app", key = true }]
source = { type = "api" }

[imperva]
url = "http://mx.example:8083"
username = "warden"
password = "inline-Secr3t"

[[imperva.data_sets]]
data_set = "Suspicious Users"
name = "PTR"

[[imperva.data_sets]]
data_set = "Apps"
name = "PTR"

[[imperva.data_sets]]
data_set = "Apps"
name = "Apps"
case_sensitive = false

[[imperva.data_sets]]
data_set = "Missing"
"#;
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let mut c = warden_cmd(tmp.path());
    c.args(["check-config", "warden.toml"]);
    let r = run(c);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for expected in [
        "imperva.url",
        "imperva.password",
        "imperva.data_sets[1].name",
        "imperva.data_sets[2].case_sensitive",
        "imperva.data_sets[3].data_set",
    ] {
        assert!(
            r.stderr.contains(&format!("{expected} (line")),
            "missing {expected} in:\n{}",
            r.stderr
        );
    }
    assert!(!r.stderr.contains("inline-Secr3t"), "{}", r.stderr);
}

/// An MX password file that group or others can read is never used: the push fails, and the
/// status says which file and how to fix it; made private, the same push goes through.
#[test]
fn an_mx_password_file_others_can_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, mx) = mx_and_config();
    let secret = tmp.path().join("mx.secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    member(&server, "POST", "bob");
    let refused = eventually(Duration::from_secs(30), || {
        server.get("/v1/imperva").json()["pushes"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("readable by group or others"))
    });
    let status = server.get("/v1/imperva").body;
    assert!(refused.is_some(), "{status}");
    assert!(status.contains("chmod 600"), "{status}");
    assert!(
        users(&mx).is_empty(),
        "warden logged in with a readable password file"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    wait_for(&mx, &server, &["bob"]);
}
