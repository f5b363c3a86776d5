//! The directory failing under warden, through a fault proxy in front of the real Samba DC:
//! dying in the middle of a refresh (the last good rows stay whole), dying in the middle of a
//! push (the retry converges to exactly the list), and answering slowly (timeouts fire,
//! decisions are unaffected); and the DC process itself killed with a refresh and a push in
//! flight.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dc::{self, AdConfig, Dc, Ns};
use crate::proxy::FaultProxy;
use crate::support::{Server, eventually, start_warden};

const ROWS: &str = "/v1/data-sets/PTR%20Suspicious%20Users/rows";
const REFRESH: &str = "/v1/data-sets/PTR%20Suspicious%20Users/refresh";

/// Bulk-loads users `<p>1..<p>count` into the test's OU, optionally all into `group`.
fn load_users(dc: &Dc, ns: &Ns, count: usize, group: Option<&str>) {
    let mut cmd = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ldif-users"),
    );
    cmd.args(["-x", &ns.p]);
    if let Some(g) = group {
        cmd.args(["-g", g]);
    }
    let out = cmd.arg(count.to_string()).arg(&ns.ou).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dc.modify(&String::from_utf8(out.stdout).unwrap());
}

/// A config for the test's OU whose directory is reached through `proxy`.
fn config_via(
    dc: &Dc,
    ns: &Ns,
    group: &str,
    mapping: bool,
    proxy: &FaultProxy,
    dir: &Path,
) -> PathBuf {
    let path = AdConfig {
        mapping,
        ..AdConfig::seed(ns, group)
    }
    .write(dc, dir);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&dc.ldaps_url, &proxy.ldaps_url())
        .replace("timeout = \"10s\"", "timeout = \"2s\"");
    std::fs::write(&path, text).unwrap();
    path
}

/// The group's members are exactly users `1..=count` of the test's OU: none missing, none twice.
fn assert_members_are_users(dc: &Dc, ns: &Ns, group: &str, count: usize) {
    let mut got: Vec<String> = dc
        .values(group, "member")
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    got.sort();
    let mut want: Vec<String> = (1..=count)
        .map(|i| ns.user_dn(&i.to_string()).to_ascii_lowercase())
        .collect();
    want.sort();
    assert_eq!(got, want);
}

fn rows(server: &Server) -> Vec<serde_json::Value> {
    server.get(ROWS).json()["records"]
        .as_array()
        .unwrap()
        .clone()
}

fn refresh(server: &Server) -> crate::support::HttpResponse {
    server.call("POST", REFRESH, server.admin_key.as_deref(), b"")
}

fn dc_addr(dc: &Dc) -> std::net::SocketAddr {
    dc.ldaps_url.trim_start_matches("ldaps://").parse().unwrap()
}

#[test]
fn dc_dying_mid_refresh_keeps_the_last_good_rows_whole() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    load_users(dc, &ns, 400, Some(&group));
    let proxy = FaultProxy::start(dc_addr(dc));
    let config = config_via(dc, &ns, &group, false, &proxy, tmp.path());
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    let loaded = eventually(Duration::from_secs(30), || rows(&server).len() == 400);
    assert!(
        loaded.is_some(),
        "first refresh never completed: {}",
        server.logs()
    );

    // What one whole refresh of 400 rows costs in DC bytes.
    let before = proxy.forwarded();
    assert_eq!(refresh(&server).status, 200);
    let one_refresh = proxy.forwarded() - before;
    let good = rows(&server);

    // A quarter of the group leaves; the DC dies halfway through the refresh that sees it.
    let leavers: Vec<String> = (1..=100).map(|i| ns.user_dn(&i.to_string())).collect();
    ns.set_members(dc, &group, "delete", &leavers);
    proxy.cut_after(one_refresh / 2);
    let r = refresh(&server);
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        proxy.is_down(),
        "the proxy never cut: the refresh did not reach it"
    );
    assert!(r.json()["detail"].as_str().unwrap().contains("last good"));
    assert_eq!(
        rows(&server),
        good,
        "a partial refresh reached the data set"
    );
    assert_eq!(server.decision("orders", &ns.mapped("1")), "block");

    // The DC is back: the next refresh converges to exactly the 300 who stayed.
    proxy.heal();
    let r = refresh(&server);
    assert_eq!(r.status, 200, "{}", r.body);
    let after = rows(&server);
    assert_eq!(after.len(), 300);
    assert_eq!(server.decision("orders", &ns.mapped("1")), "allow");
    assert_eq!(server.decision("orders", &ns.mapped("101")), "block");
}

#[test]
fn dc_dying_mid_push_converges_with_no_duplicate_or_missing_member() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    load_users(dc, &ns, 300, None);
    let proxy = FaultProxy::start(dc_addr(dc));
    let config = config_via(dc, &ns, &group, true, &proxy, tmp.path());
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    let add = |i: usize| assert_eq!(server.add_member(&ns.mapped(&i.to_string())), 201);
    let members = || dc.values(&group, "member");

    // The first half, pushed whole: what it costs in DC bytes.
    let before = proxy.forwarded();
    (1..=150).for_each(add);
    let first = eventually(Duration::from_secs(60), || members().len() == 150);
    assert!(
        first.is_some(),
        "first half never pushed: {}",
        server.logs()
    );
    let half_push = proxy.forwarded() - before;

    // The second half; the DC dies partway through pushing it.
    proxy.cut_after(half_push / 2);
    (151..=300).for_each(add);
    let cut = eventually(Duration::from_secs(60), || proxy.is_down());
    assert!(cut.is_some(), "the push never reached the cut");
    let at_cut = members().len();
    assert!(at_cut < 300, "the push completed before the cut");

    proxy.heal();
    let converged = eventually(Duration::from_secs(90), || members().len() == 300);
    assert!(
        converged.is_some(),
        "after the outage the group has {} of 300 members; logs:\n{}",
        members().len(),
        server.logs()
    );
    assert_members_are_users(dc, &ns, &group, 300);
    println!("push cut at {at_cut} of 300 members; converged after healing");
}

/// alice in the group behind a proxy; warden started and blocking her. Returns the proxy,
/// the config, the server and alice's mapped name.
fn alice_blocked_via_proxy(dc: &Dc, dir: &Path) -> (FaultProxy, PathBuf, Server, String) {
    let ns = Ns::new(dc);
    ns.add_user(dc, "alice");
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[ns.user_dn("alice")]);
    let proxy = FaultProxy::start(dc_addr(dc));
    let config = config_via(dc, &ns, &group, false, &proxy, dir);
    let server = start_warden(dir, &["--config", config.to_str().unwrap()]);
    // A fresh store: the data set is unknown until the first pull applies.
    server.wait_ready();
    let alice = ns.mapped("alice");
    let blocked = eventually(Duration::from_secs(30), || {
        server.decision("orders", &alice) == "block"
    });
    assert!(blocked.is_some(), "{}", server.logs());
    (proxy, config, server, alice)
}

#[test]
fn a_slow_dc_times_out_while_decisions_keep_flowing() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (proxy, _config, server, alice) = alice_blocked_via_proxy(dc, tmp.path());

    // Every answer from the DC now takes longer than the 2 s operation timeout.
    proxy.delay(Duration::from_secs(5));
    let (addr, key) = (server.addr, server.admin_key.clone());
    let slow = std::thread::spawn(move || {
        crate::support::http(
            addr,
            "POST",
            REFRESH,
            &[(
                "Authorization",
                &format!("Bearer {}", key.unwrap_or_default()),
            )],
            b"",
        )
    });
    // Decisions do not wait for the directory.
    for _ in 0..50 {
        assert_eq!(server.decision("orders", &alice), "block");
    }
    let r = slow.join().unwrap();
    assert_eq!(r.status, 502, "{}", r.body);
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("timed out") || detail.contains("timeout"),
        "{detail}"
    );
    assert_eq!(server.decision("orders", &alice), "block");

    proxy.heal();
    let recovered = eventually(Duration::from_secs(30), || refresh(&server).status == 200);
    assert!(recovered.is_some(), "{}", server.logs());
}

#[test]
fn a_restart_during_a_directory_outage_serves_the_last_good_rows_at_once() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (proxy, config, first, alice) = alice_blocked_via_proxy(dc, tmp.path());
    drop(first);
    // The directory goes away, and warden restarts while it is away.
    proxy.cut();
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(
        server.decision("orders", &alice),
        "block",
        "the first decision after the restart did not use the persisted rows"
    );
    assert_eq!(rows(&server).len(), 1);
    let failing = eventually(Duration::from_secs(30), || {
        server.get("/v1/devices").json()["devices"][0]["status"] == "failing"
    });
    assert!(failing.is_some(), "{}", server.get("/v1/devices").body);
    assert_eq!(server.decision("orders", &alice), "block");
}

/// The DC process itself dies (SIGKILL) with a refresh and a push in flight. It is frozen
/// first, so that both requests are provably sitting unread in its sockets when it dies
/// (`Dc::unread_bytes`); the proxy tests above cut at a byte count, this one is the crash.
/// The refresh fails and the last good rows stay whole; once the DC is back the push retry
/// converges to exactly the list, with no duplicate or missing member, and the data set and
/// decisions follow. Holds the DC exclusively and always restarts it.
#[test]
fn dc_process_killed_mid_refresh_and_mid_push_loses_nothing() {
    let _g = dc::exclusive();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    load_users(dc, &ns, 200, None);
    let config = AdConfig {
        refresh_interval: "5s",
        ..AdConfig::seed(&ns, &group)
    }
    .write(dc, tmp.path());
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    let add = |i: usize| assert_eq!(server.add_member(&ns.mapped(&i.to_string())), 201);
    let members = || dc.values(&group, "member");

    (1..=100).for_each(add);
    let synced = eventually(Duration::from_secs(60), || {
        members().len() == 100 && rows(&server).len() == 100
    });
    assert!(
        synced.is_some(),
        "first half never synced: {}",
        server.logs()
    );
    let good = rows(&server);
    // Warden's own change to the group comes back as a change notification and wakes one more
    // push (drift repair reads the group again): let the directory go quiet, so that the push
    // frozen below is the one the list change starts, not that echo.
    let newest_run = || {
        server.get("/v1/directories").json()["directories"][0]["recent_updates"][0]["started_at_ms"]
            .as_i64()
    };
    let quiet = eventually(Duration::from_secs(20), || {
        let before = newest_run();
        std::thread::sleep(Duration::from_millis(1500));
        newest_run() == before
    });
    assert!(
        quiet.is_some(),
        "the directory never went quiet: {}",
        server.logs()
    );

    let restart = dc::Restart(dc);
    dc.freeze();
    let idle = dc.unread_bytes();
    std::thread::scope(|s| {
        let refreshing = s.spawn(|| refresh(&server));
        let sent = eventually(Duration::from_secs(5), || dc.unread_bytes() > idle);
        assert!(sent.is_some(), "the refresh never reached the frozen DC");
        let with_refresh = dc.unread_bytes();
        (101..=200).for_each(add);
        let sent = eventually(Duration::from_secs(5), || dc.unread_bytes() > with_refresh);
        assert!(sent.is_some(), "the push never reached the frozen DC");
        assert!(
            !refreshing.is_finished(),
            "the refresh ended while the DC was frozen"
        );
        dc.kill();
        let r = refreshing.join().unwrap();
        assert_eq!(r.status, 502, "{}", r.body);
        let detail = r.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.contains("last good"), "{detail}");
        println!("refresh in flight when the DC was killed: {detail}");
    });

    // The DC is down: the last good rows, whole, still decide.
    assert_eq!(
        rows(&server),
        good,
        "a partial refresh reached the data set"
    );
    assert_eq!(server.decision("orders", &ns.mapped("1")), "block");
    assert_eq!(server.decision("orders", &ns.mapped("150")), "allow");

    drop(restart);
    let converged = eventually(Duration::from_secs(90), || {
        members().len() == 200 && rows(&server).len() == 200
    });
    assert!(
        converged.is_some(),
        "after the restart the group has {} of 200 members and the data set {} rows; logs:\n{}",
        members().len(),
        rows(&server).len(),
        server.logs()
    );
    assert_members_are_users(dc, &ns, &group, 200);
    assert_eq!(server.decision("orders", &ns.mapped("150")), "block");
    println!("converged {:?} after the DC came back", converged.unwrap());
}
