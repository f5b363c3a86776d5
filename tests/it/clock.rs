//! Expiry and clock jumps: a wall clock that runs ahead deactivates members at most until the
//! clock comes back — it never deletes them — and a sweep that would deactivate most of a list
//! at once is held for an admin. `warden serve` runs under libfaketime (`faketime`, Debian
//! package `faketime`, installed by scripts/test).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Server, list_config, run, start_warden, start_warden_env, warden_cmd};

/// Where Debian's `faketime` package puts libfaketime.
const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

fn libfaketime() -> PathBuf {
    LIBFAKETIME
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("libfaketime is required (apt-get install -y faketime; scripts/test installs it)")
}

/// `warden serve` in `dir` with its clocks moved by `offset` (libfaketime's `FAKETIME`).
fn start_shifted(dir: &Path, offset: &str) -> Server {
    let lib = libfaketime();
    start_warden_env(
        dir,
        &[("LD_PRELOAD", lib.to_str().unwrap()), ("FAKETIME", offset)],
        &["--config", "warden.toml"],
    )
}

/// `warden serve` in `dir` with its clocks sixty days ahead.
fn start_ahead(dir: &Path) -> Server {
    start_shifted(dir, "+60d")
}

fn setup(dir: &Path, extra_server: &str) {
    std::fs::write(dir.join("warden.toml"), list_config(extra_server, r#""*""#)).unwrap();
}

/// Puts `principals` on "Suspicious Users" through the CLI, expiring in 30 days.
fn add_for_30_days(dir: &Path, principals: &[String]) {
    for p in principals {
        let mut c = warden_cmd(dir);
        c.args([
            "--config",
            "warden.toml",
            "lists",
            "add",
            "Suspicious Users",
            p,
            "--expires-in",
            "30d",
        ]);
        let r = run(c);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
}

/// (principal, state) of every member of "Suspicious Users".
fn states(server: &Server) -> Vec<(String, String)> {
    let r = server.get("/v1/lists/Suspicious%20Users/members");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["principal"].as_str().unwrap().to_owned(),
                m["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn audited(server: &Server, action: &str) -> usize {
    let r = server.get(&format!("/v1/audit?action={action}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["records"].as_array().unwrap().len()
}

/// A member with 30 days left meets a warden whose clock is 60 days ahead: that warden
/// deactivates it (by its clock, it expired) but keeps it; warden started again on the right
/// clock lists it as active and blocks it again — before issue 15 it was deleted for good.
#[test]
fn a_member_outlives_a_start_with_the_clock_sixty_days_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), "");
    add_for_30_days(tmp.path(), &[r"CORP\alice".to_owned()]);

    let mut ahead = start_ahead(tmp.path());
    assert!(
        crate::support::eventually(Duration::from_secs(30), || {
            states(&ahead) == [(r"CORP\alice".to_owned(), "expired".to_owned())]
        })
        .is_some(),
        "the member was not listed as expired under the clock ahead: {:?}\n{}",
        states(&ahead),
        ahead.logs()
    );
    // The store shows the member expired a moment before the sweep's snapshot is swapped in.
    assert!(
        crate::support::eventually(Duration::from_secs(30), || {
            ahead.decision("orders", r"corp\alice") == "allow"
        })
        .is_some()
    );
    assert_eq!(audited(&ahead, "lists.expire"), 1);
    assert_eq!(ahead.stop(), Some(0));
    // The shell shows it too, with its state.
    let mut c = warden_cmd(tmp.path());
    c.args([
        "--config",
        "warden.toml",
        "lists",
        "show",
        "Suspicious Users",
    ]);
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains(r"CORP\alice"))
        .unwrap();
    assert!(line.contains("expired"), "{}", r.stdout);

    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    assert!(
        crate::support::eventually(Duration::from_secs(30), || {
            states(&server) == [(r"CORP\alice".to_owned(), "active".to_owned())]
        })
        .is_some(),
        "the member did not come back on the right clock: {:?}\n{}",
        states(&server),
        server.logs()
    );
    assert!(
        crate::support::eventually(Duration::from_secs(30), || {
            server.decision("orders", r"corp\alice") == "block"
        })
        .is_some(),
        "the member is listed but not blocked"
    );
    assert_eq!(audited(&server, "lists.reactivate"), 1);
}

/// Twelve members, all with 30 days left, meet a clock 60 days ahead: a sweep that would
/// deactivate all of them at once is held — they stay active and blocked, the hold shows in
/// `/v1/lists` and `/metrics` — until an admin releases it, which is audited.
#[test]
fn a_sweep_deactivating_most_of_a_list_is_held_until_released() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), "max_expiry_share = 0.5");
    let members: Vec<String> = (0..12).map(|i| format!(r"CORP\user{i:02}")).collect();
    add_for_30_days(tmp.path(), &members);

    let ahead = start_ahead(tmp.path());
    let hold = || {
        let lists = ahead.get("/v1/lists").json();
        lists["lists"][0]["expiry_hold"].clone()
    };
    assert!(
        crate::support::eventually(Duration::from_secs(30), || !hold().is_null()).is_some(),
        "no hold: {}\n{}",
        ahead.get("/v1/lists").body,
        ahead.logs()
    );
    assert_eq!(hold()["due"], 12);
    assert_eq!(hold()["active"], 12);
    assert!(states(&ahead).iter().all(|(_, s)| s == "active"));
    assert_eq!(ahead.decision("orders", r"corp\user03"), "block");
    let metrics = ahead.get("/metrics").body;
    assert!(
        metrics.contains("warden_expiry_holds_total 1")
            && metrics.contains("warden_held_expiry_sweeps 1"),
        "{metrics}"
    );
    // The log line may reach the reader thread just after the hold shows.
    assert!(
        crate::support::eventually(Duration::from_secs(30), || ahead
            .logs()
            .contains("expiry sweep HELD"))
        .is_some()
    );
    assert_eq!(audited(&ahead, "lists.expire"), 0);

    // Releasing takes admin; a respond key is refused.
    let respond = ahead.post_json(
        "/v1/keys",
        &serde_json::json!({ "name": "analyst", "scopes": ["respond"] }),
    );
    let respond = respond.json()["key"].as_str().unwrap().to_owned();
    let path = "/v1/lists/Suspicious%20Users/expiry/release";
    assert_eq!(ahead.call("POST", path, Some(&respond), b"").status, 403);
    let r = ahead.post_json(path, &serde_json::json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["deactivated"].as_array().unwrap().len(), 12);
    assert!(states(&ahead).iter().all(|(_, s)| s == "expired"));
    assert_eq!(ahead.decision("orders", r"corp\user03"), "allow");
    assert_eq!(audited(&ahead, "lists.expiry_release"), 1);
    assert_eq!(audited(&ahead, "lists.expire"), 12);
    // Nothing is held any more.
    assert_eq!(ahead.post_json(path, &serde_json::json!({})).status, 409);
}

/// A key warden saw expire stays expired when warden next runs with its clock a day behind —
/// by that clock its expiry is still ahead, and before issue 15 it worked again.
#[test]
fn a_key_seen_expired_stays_expired_when_the_clock_moves_back() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), "");
    let mut server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let r = server.post_json(
        "/v1/keys",
        &serde_json::json!({ "name": "short", "scopes": ["decide"], "expires_in": "1s" }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let short = r.json()["key"].as_str().unwrap().to_owned();
    let decide = "/v1/decision?service=orders&db_user=x";
    assert!(
        crate::support::eventually(Duration::from_secs(30), || {
            audited(&server, "keys.expire") == 1
        })
        .is_some(),
        "the sweep never marked the key expired:\n{}",
        server.logs()
    );
    assert_eq!(server.call("GET", decide, Some(&short), b"").status, 401);
    assert_eq!(server.stop(), Some(0));

    let behind = start_shifted(tmp.path(), "-1d");
    let r = behind.call("GET", decide, Some(&short), b"");
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("expired"), "{}", r.body);
    // The bootstrap admin key, never seen expired, still works by this clock.
    assert_eq!(behind.get("/v1/keys").status, 200);
}

/// The wall clock jumps 60 days while warden runs (the monotonic clock does not): the next
/// sweep sees the two disagree, deactivates nothing, logs and counts it, and re-bases.
#[test]
fn a_wall_clock_jump_while_running_skips_a_sweep_and_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), "");
    add_for_30_days(tmp.path(), &[r"CORP\alice".to_owned()]);
    let offset = tmp.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let lib = libfaketime();
    let server = start_warden_env(
        tmp.path(),
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
        &["--config", "warden.toml"],
    );
    let skips = || {
        let metrics = server.get("/metrics").body;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("warden_expiry_clock_skips_total "))
            .map(|n| n.trim().parse::<u64>().unwrap())
    };
    assert_eq!(skips(), Some(0));
    assert_eq!(server.decision("orders", r"corp\alice"), "block");
    // Renamed into place, so that libfaketime never reads a half-written offset.
    let next = tmp.path().join("faketime.next");
    std::fs::write(&next, "+60d\n").unwrap();
    std::fs::rename(&next, &offset).unwrap();
    assert!(
        crate::support::eventually(Duration::from_secs(30), || skips() >= Some(1)).is_some(),
        "the jump was not noticed:\n{}",
        server.logs()
    );
    assert!(
        crate::support::eventually(Duration::from_secs(30), || server
            .logs()
            .contains("than the monotonic clock since the last expiry sweep"))
        .is_some(),
        "{}",
        server.logs()
    );
    // One jump is skipped once; the sweeps after it run on the new time.
    assert_eq!(skips(), Some(1));
}
