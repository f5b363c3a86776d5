//! Active Directory: push lists into groups and pull data sets, against the real Samba DC.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::dc::{self, AdConfig, Dc, Ns};
use crate::support::{Run, eventually, run, start_warden, warden_cmd};

fn warden(dir: &Path, config: &Path, args: &[&str]) -> Run {
    let mut c = warden_cmd(dir);
    c.arg("--config").arg(config).args(args);
    run(c)
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", r.stdout, r.stderr))
}

fn decide(dir: &Path, config: &Path, user: &str) -> (i32, serde_json::Value) {
    let r = warden(
        dir,
        config,
        &["decide", "--service", "orders", "--db-user", user],
    );
    assert!(r.code == 0 || r.code == 1, "decide failed: {}", r.stderr);
    (r.code, json(&r))
}

fn add_to_list(dir: &Path, config: &Path, principal: &str) {
    let r = warden(
        dir,
        config,
        &["lists", "add", "Suspicious Users", principal],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn device_status(dir: &Path, config: &Path) -> serde_json::Value {
    let r = warden(dir, config, &["devices", "status", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    json(&r)[0].clone()
}

fn dn_keys(dns: &[String]) -> Vec<String> {
    let mut k: Vec<String> = dns
        .iter()
        .map(|d| d.to_ascii_lowercase().replace(", ", ","))
        .collect();
    k.sort();
    k
}

fn setup(
    dc: &Dc,
    tmp: &Path,
    users: &[&str],
    in_group: &[&str],
    mapping: bool,
    refresh: &str,
) -> (Ns, String, std::path::PathBuf) {
    let ns = Ns::new(dc);
    let dns: Vec<String> = users.iter().map(|u| ns.add_user(dc, u)).collect();
    let members: Vec<String> = in_group.iter().map(|u| ns.user_dn(u)).collect();
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &members);
    drop(dns);
    let config = AdConfig {
        ns: &ns,
        group_dn: &group,
        mapping,
        update_interval: "1m",
        refresh_interval: refresh,
        password_file: None,
    }
    .write(dc, tmp);
    (ns, group, config)
}

/// The seed flow end to end through the running server: list → PTR_Suspicious_Users →
/// (memberOf=<group>) with the seed's two mappings → row corp\alice / PTR_Suspicious_Users →
/// block for CORP\alice.
#[test]
fn seed_flow_list_to_group_to_data_set_to_block() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(dc, tmp.path(), &["alice", "bob"], &[], true, "1m");
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    // A fresh store: the data set is unknown until the first pull applies.
    server.wait_ready();
    let ask = |user: &str| server.decision("orders", user);
    let alice_upper = ns.mapped("alice").replacen("corp", "CORP", 1);
    assert_eq!(ask(&alice_upper), "allow");

    let start = Instant::now();
    add_to_list(tmp.path(), &config, &ns.mapped("alice"));
    let in_group = eventually(Duration::from_secs(20), || {
        dn_keys(&dc.values(&group, "member")) == dn_keys(&[ns.user_dn("alice")])
    });
    assert!(
        in_group.is_some(),
        "alice never reached the group; logs:\n{}",
        server.logs()
    );
    let group_at = start.elapsed();
    let blocked = eventually(Duration::from_secs(20), || ask(&alice_upper) == "block");
    assert!(
        blocked.is_some(),
        "decision never turned to block; logs:\n{}",
        server.logs()
    );
    println!(
        "seed flow: list → AD group {:?}, list → block {:?}",
        group_at,
        start.elapsed()
    );
    assert_eq!(ask(&ns.mapped("bob")), "allow");

    // The row itself, as the data set's test query builds it.
    let q = json(&warden(
        tmp.path(),
        &config,
        &["datasets", "test-query", "PTR Suspicious Users"],
    ));
    assert_eq!(q["rows"], 1, "{q}");
    assert_eq!(q["sample"][0]["user"], ns.mapped("alice"));
    assert_eq!(q["sample"][0]["group"], "PTR_Suspicious_Users");
    assert_eq!(q["values_dropped"], 0);
}

#[test]
fn mapping_to_a_missing_group_is_a_clear_error() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let missing = format!("CN=NoSuchGroup,{}", ns.ou);
    let config = AdConfig {
        ns: &ns,
        group_dn: &missing,
        mapping: true,
        update_interval: "1m",
        refresh_interval: "1m",
        password_file: None,
    }
    .write(dc, tmp.path());
    let r = warden(tmp.path(), &config, &["mappings", "check"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains(&format!("group {missing} does not exist")),
        "{}",
        r.stderr
    );
    let r = warden(tmp.path(), &config, &["devices", "sync", "dc"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    assert_eq!(device_status(tmp.path(), &config)["status"], "failing");
}

#[test]
fn first_sync_removes_members_the_list_lacks() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(
        dc,
        tmp.path(),
        &["alice", "bob", "carol"],
        &["bob", "carol"],
        true,
        "1m",
    );
    add_to_list(tmp.path(), &config, &ns.mapped("alice"));
    let check = warden(tmp.path(), &config, &["mappings", "check", "--json"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let plan = &json(&check)[0]["plan"];
    assert_eq!(plan["current_members"], 2, "{plan}");
    assert_eq!(plan["remove"].as_array().unwrap().len(), 2);
    assert_eq!(plan["add"].as_array().unwrap().len(), 1);
    assert_eq!(plan["first_sync"], true);

    let r = warden(tmp.path(), &config, &["devices", "sync", "dc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("added 1, removed 2"), "{}", r.stdout);
    assert_eq!(
        dn_keys(&dc.values(&group, "member")),
        dn_keys(&[ns.user_dn("alice")])
    );
    // Idempotent: a second run changes nothing.
    let r = warden(tmp.path(), &config, &["devices", "sync", "dc"]);
    assert!(r.stdout.contains("added 0, removed 0"), "{}", r.stdout);
    let status = device_status(tmp.path(), &config);
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(status["recent_updates"][0]["kind"], "push");
}

/// A principal is resolved when it is added: a name no entry answers to is refused there
/// with the reason (never listed as a string that blocks nobody).
fn refused(dir: &Path, config: &Path, principal: &str) -> String {
    let r = warden(
        dir,
        config,
        &["lists", "add", "Suspicious Users", principal],
    );
    assert_eq!(r.code, 2, "{principal} was listed: {}", r.stdout);
    r.stderr
}

#[test]
fn all_four_principal_forms_resolve_and_unknown_is_reported() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(dc, tmp.path(), &["u1", "u2", "u3", "u4"], &[], true, "1m");
    for p in [
        format!("CORP\\{}", ns.sam("u1")),
        ns.upn("u2"),
        ns.sam("u3"),
        ns.user_dn("u4"),
    ] {
        add_to_list(tmp.path(), &config, &p);
    }
    let why = refused(tmp.path(), &config, &ns.sam("ghost"));
    assert!(
        why.contains("no entry answers to it in directory dc"),
        "{why}"
    );
    let r = warden(tmp.path(), &config, &["devices", "sync", "dc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("added 4, removed 0, unresolved 0"),
        "{}",
        r.stdout
    );
    let want: Vec<String> = ["u1", "u2", "u3", "u4"]
        .iter()
        .map(|u| ns.user_dn(u))
        .collect();
    assert_eq!(dn_keys(&dc.values(&group, "member")), dn_keys(&want));
    // Listed, then deleted from the directory: its objectGUID answers no more. Unresolved
    // and reported — never looked for by a name someone else may have now.
    dc.modify(&format!("dn: {}\nchangetype: delete\n", ns.user_dn("u4")));
    let r = warden(tmp.path(), &config, &["devices", "sync", "dc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("unresolved 1"), "{}", r.stdout);
    let status = device_status(tmp.path(), &config);
    assert_eq!(status["status"], "degraded", "{status}");
    assert_eq!(
        status["recent_updates"][0]["unresolved"][0],
        format!("CORP\\{}", ns.sam("u4"))
    );
}

#[test]
fn hostile_principals_cannot_widen_a_filter_or_break_a_dn() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(dc, tmp.path(), &["alice"], &[], true, "1m");
    // A user whose CN needs DN escaping, named by DN.
    let smith = format!("CN={}Smith\\, John,{}", ns.p, ns.ou);
    dc.modify(&format!(
        "dn: {smith}\nchangetype: add\nobjectClass: user\nsAMAccountName: {}\nuserAccountControl: 544\n",
        ns.sam("smith")
    ));
    // Each is looked up escaped when it is added: a widened filter would find alice (or
    // several users) and list her; each names no account and is refused.
    for p in [
        "*)(objectClass=*",
        "a,b=c",
        "CORP\\*",
        "*",
        "*@corp.example.test",
    ] {
        let why = refused(tmp.path(), &config, p);
        assert!(why.contains("names no account"), "{p}: {why}");
    }
    add_to_list(tmp.path(), &config, &smith);
    add_to_list(tmp.path(), &config, &ns.mapped("alice"));
    let r = warden(tmp.path(), &config, &["devices", "sync", "dc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("added 2, removed 0, unresolved 0"),
        "{}",
        r.stdout
    );
    let members = dc.values(&group, "member");
    assert_eq!(members.len(), 2, "{members:?}");
}

#[test]
fn large_group_refreshes_completely_with_range_retrieval() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    let ldif = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ldif-users"),
    )
    .args(["-x", &ns.p, "-g", &group, "1600", &ns.ou])
    .output()
    .unwrap();
    assert!(
        ldif.status.success(),
        "{}",
        String::from_utf8_lossy(&ldif.stderr)
    );
    let started = Instant::now();
    dc.modify(&String::from_utf8(ldif.stdout).unwrap());
    println!(
        "loaded 1600 users into the group in {:?}",
        started.elapsed()
    );
    let config = AdConfig {
        ns: &ns,
        group_dn: &group,
        mapping: true,
        update_interval: "1m",
        refresh_interval: "1m",
        password_file: None,
    }
    .write(dc, tmp.path());

    let r = warden(
        tmp.path(),
        &config,
        &["datasets", "refresh", "PTR Suspicious Users"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let outcome = json(&r);
    assert_eq!(outcome["outcome"], "applied", "{outcome}");
    assert_eq!(outcome["rows"], 1600, "{outcome}");
    let (code, _) = decide(tmp.path(), &config, &format!("CORP\\{}1600", ns.p));
    assert_eq!(code, 1);

    // The DC honours ranged reads, and the config's page_size of 500 makes warden read the
    // group's 1600 members in four windows (0-499 … 1500-*) before it can remove 1599.
    assert_eq!(
        dc.returned_attr_names(&group, "member;range=0-499"),
        ["member;range=0-499"]
    );
    add_to_list(tmp.path(), &config, &format!("{}7", ns.p));
    let started = Instant::now();
    let mut sync = warden_cmd(tmp.path());
    sync.env("RUST_LOG", "warden::directory=debug")
        .arg("--log-json")
        .arg("--config")
        .arg(&config)
        .args(["devices", "sync", "dc"]);
    let r = run(sync);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("added 0, removed 1599"), "{}", r.stdout);
    assert!(
        r.stderr.lines().any(|l| l.contains("ranged read done")
            && l.contains("\"requests\":4")
            && l.contains("\"values\":1600")),
        "no four-window ranged read of 1600 members logged:\n{}",
        r.stderr
    );
    println!(
        "first sync removing 1599 members took {:?}",
        started.elapsed()
    );
    assert_eq!(dc.values(&group, "member").len(), 1);
}

#[test]
fn notification_reaches_the_data_set_in_seconds_while_the_schedule_is_ten_minutes() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(dc, tmp.path(), &["alice", "bob"], &["alice"], false, "10m");
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    // A fresh store: the data set is unknown until the first pull applies.
    server.wait_ready();
    let ask = |user: &str| server.decision("orders", user);
    assert!(
        eventually(Duration::from_secs(20), || ask(&ns.mapped("alice"))
            == "block")
        .is_some(),
        "initial refresh never applied; logs:\n{}",
        server.logs()
    );
    assert!(
        eventually(Duration::from_secs(10), || server
            .logs()
            .contains("watching for changes"))
        .is_some(),
        "watch never registered; logs:\n{}",
        server.logs()
    );
    assert_eq!(ask(&ns.mapped("bob")), "allow");
    let start = Instant::now();
    ns.set_members(dc, &group, "add", &[ns.user_dn("bob")]);
    let took = eventually(Duration::from_secs(5), || ask(&ns.mapped("bob")) == "block");
    assert!(
        took.is_some(),
        "change did not arrive within 5 s; logs:\n{}",
        server.logs()
    );
    println!(
        "group change → block through notification: {:?}",
        start.elapsed()
    );
}

#[test]
fn refresh_that_would_empty_the_set_is_held_until_accepted() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(dc, tmp.path(), &["alice"], &["alice"], false, "1m");
    let r = warden(
        tmp.path(),
        &config,
        &["datasets", "refresh", "PTR Suspicious Users"],
    );
    assert_eq!(json(&r)["rows"], 1, "{}", r.stderr);
    ns.set_members(dc, &group, "delete", &[ns.user_dn("alice")]);
    let r = warden(
        tmp.path(),
        &config,
        &["datasets", "refresh", "PTR Suspicious Users"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let held = json(&r);
    assert_eq!(held["outcome"], "held", "{held}");
    assert!(held["reason"].as_str().unwrap().contains("empty"), "{held}");
    assert_eq!(
        decide(tmp.path(), &config, &ns.mapped("alice")).0,
        1,
        "held refresh must not apply"
    );
    let id = held["id"].as_str().unwrap();
    let r = warden(
        tmp.path(),
        &config,
        &["datasets", "accept", "PTR Suspicious Users", "--id", id],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("now has 0 rows"), "{}", r.stdout);
    assert_eq!(decide(tmp.path(), &config, &ns.mapped("alice")).0, 0);
    let r = warden(
        tmp.path(),
        &config,
        &["datasets", "accept", "PTR Suspicious Users", "--id", id],
    );
    assert_eq!(r.code, 1, "nothing left to accept");
}

/// Issue 15, part 3: `accept` names the hold it accepts. A newer hold than the one reviewed
/// (the group changed again meanwhile) is refused, naming the current one; an accept without
/// an id is refused too.
#[test]
fn accept_takes_the_held_refresh_s_id() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(
        dc,
        tmp.path(),
        &["alice", "bob", "carol"],
        &["alice", "bob"],
        false,
        "1m",
    );
    let refresh = || {
        let r = warden(
            tmp.path(),
            &config,
            &["datasets", "refresh", "PTR Suspicious Users"],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        json(&r)
    };
    assert_eq!(refresh()["rows"], 2);
    ns.set_members(
        dc,
        &group,
        "delete",
        &[ns.user_dn("alice"), ns.user_dn("bob")],
    );
    let first = refresh();
    assert_eq!(first["outcome"], "held", "{first}");
    // Reviewed the first hold; meanwhile the group changed again.
    ns.set_members(dc, &group, "add", &[ns.user_dn("carol")]);
    let second = refresh();
    assert_eq!(second["outcome"], "held", "{second}");
    let (old, new) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    assert_ne!(old, new);
    let accept = |id: Option<&str>| {
        let mut args = vec!["datasets", "accept", "PTR Suspicious Users"];
        args.extend(id.map(|i| ["--id", i]).into_iter().flatten());
        warden(tmp.path(), &config, &args)
    };
    for r in [accept(Some(old)), accept(None)] {
        assert_eq!(r.code, 1, "{}", r.stdout);
        assert!(
            r.stderr.contains(new),
            "must name the current hold: {}",
            r.stderr
        );
    }
    assert_eq!(decide(tmp.path(), &config, &ns.mapped("alice")).0, 1);
    let r = accept(Some(new));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("now has 1 rows"), "{}", r.stdout);
    assert_eq!(decide(tmp.path(), &config, &ns.mapped("carol")).0, 1);
    assert_eq!(decide(tmp.path(), &config, &ns.mapped("alice")).0, 0);
}

#[test]
fn wrong_bind_password_is_a_clear_error_without_the_password() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    let wrong = "Wr0ng-Secret-7731!";
    let pw = tmp.path().join("wrong.secret");
    crate::support::write_secret(&pw, wrong);
    let config = AdConfig {
        ns: &ns,
        group_dn: &group,
        mapping: true,
        update_interval: "1m",
        refresh_interval: "1m",
        password_file: Some(&pw),
    }
    .write(dc, tmp.path());
    for args in [
        &["devices", "sync", "dc"][..],
        &["datasets", "refresh", "PTR Suspicious Users"],
    ] {
        let r = warden(tmp.path(), &config, args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.to_lowercase().contains("invalid credentials"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&dc.bind_dn),
            "error names the bind DN: {}",
            r.stderr
        );
        assert!(
            !r.stderr.contains(wrong) && !r.stdout.contains(wrong),
            "password leaked: {}",
            r.stderr
        );
    }
    let status = device_status(tmp.path(), &config);
    assert!(!status.to_string().contains(wrong));
    let store = std::fs::read(tmp.path().join("warden.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&store).contains(wrong),
        "password in the store"
    );
}

/// Stops the shared DC: runs alone (exclusive lock) and always restarts it.
#[test]
fn dc_outage_keeps_last_good_marks_failing_and_converges_after_restart() {
    let _g = dc::exclusive();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(dc, tmp.path(), &["alice", "bob"], &["alice"], true, "1m");
    add_to_list(tmp.path(), &config, &ns.mapped("alice"));
    let r = warden(
        tmp.path(),
        &config,
        &["datasets", "refresh", "PTR Suspicious Users"],
    );
    assert_eq!(json(&r)["rows"], 1, "{}", r.stderr);

    dc.stop();
    let restart = dc::Restart(dc);

    // Refreshes and syncs fail; the last good set stays and still blocks, even across a restart
    // of warden itself (a fresh process reads the persisted rows).
    let r = warden(
        tmp.path(),
        &config,
        &["datasets", "refresh", "PTR Suspicious Users"],
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(decide(tmp.path(), &config, &ns.mapped("alice")).0, 1);
    assert_eq!(device_status(tmp.path(), &config)["status"], "failing");
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    let ask = |user: &str| server.decision("orders", user);
    assert_eq!(
        ask(&ns.mapped("alice")),
        "block",
        "persisted set must block at once"
    );
    // A change made during the outage converges once the DC is back.
    add_to_list(tmp.path(), &config, &ns.mapped("bob"));
    drop(restart);
    let took = eventually(Duration::from_secs(90), || {
        ask(&ns.mapped("bob")) == "block"
    });
    assert!(
        took.is_some(),
        "did not converge after restart; logs:\n{}",
        server.logs()
    );
    println!("converged {:?} after the DC came back", took.unwrap());
    let want = [ns.user_dn("alice"), ns.user_dn("bob")];
    assert_eq!(dn_keys(&dc.values(&group, "member")), dn_keys(&want));
    drop(server);
    assert!(
        eventually(Duration::from_secs(10), || device_status(
            tmp.path(),
            &config
        )["status"]
            != "failing")
        .is_some()
    );
}

/// A reload that moves the mapping (and the data set's filter) to another group restarts the
/// sync loops on it: the new group is owned (its stray member removed, the list pushed) and
/// the data set follows it, with no restart of warden.
#[test]
fn reload_moves_the_mapping_to_another_group_without_a_restart() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, first, config) = setup(dc, tmp.path(), &["alice", "bob"], &[], true, "1m");
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    // A fresh store: the data set is unknown until the first pull applies.
    server.wait_ready();
    add_to_list(tmp.path(), &config, &ns.mapped("alice"));
    let alice = ns.mapped("alice");
    assert!(
        eventually(Duration::from_secs(20), || server
            .decision("orders", &alice)
            == "block")
        .is_some(),
        "alice never blocked; logs:\n{}",
        server.logs()
    );

    let second = ns.add_group(dc, "PTR_Contained", &[ns.user_dn("bob")]);
    AdConfig {
        ns: &ns,
        group_dn: &second,
        mapping: true,
        update_interval: "1m",
        refresh_interval: "1m",
        password_file: None,
    }
    .write(dc, tmp.path());
    let r = server.call("POST", "/v1/admin/reload", server.admin_key.as_deref(), b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let owned = eventually(Duration::from_secs(20), || {
        dn_keys(&dc.values(&second, "member")) == dn_keys(&[ns.user_dn("alice")])
    });
    assert!(
        owned.is_some(),
        "the new group never matched the list: {:?}; logs:\n{}",
        dc.values(&second, "member"),
        server.logs()
    );
    // The old group is no longer warden's: left as it was, until someone else empties it.
    assert_eq!(
        dn_keys(&dc.values(&first, "member")),
        dn_keys(&[ns.user_dn("alice")])
    );
    dc.modify(&format!(
        "dn: {first}\nchangetype: modify\ndelete: member\nmember: {}\n",
        ns.user_dn("alice")
    ));
    // The running loops are the new config's: a list change is pushed into the new group and
    // wakes a refresh of the new query, where both users have it as their only group.
    add_to_list(tmp.path(), &config, &ns.mapped("bob"));
    let want = serde_json::json!([
        { "user": alice, "group": "PTR_Contained" },
        { "user": ns.mapped("bob"), "group": "PTR_Contained" },
    ]);
    let rows = eventually(Duration::from_secs(20), || {
        let r = server.get("/v1/data-sets/PTR%20Suspicious%20Users/rows");
        let mut got = r.json()["records"].as_array().cloned().unwrap_or_default();
        got.sort_by_key(|row| row["user"].to_string());
        serde_json::Value::from(got) == want
    });
    assert!(
        rows.is_some(),
        "the data set never followed the new group: {}",
        server
            .get("/v1/data-sets/PTR%20Suspicious%20Users/rows")
            .body
    );
    assert_eq!(server.decision("orders", &alice), "block");
}

/// A member with an expiry leaves the AD group and the data set when it passes, like any
/// other removal from the list.
#[test]
fn expiry_takes_a_member_out_of_the_group_and_the_data_set() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(dc, tmp.path(), &["alice"], &[], true, "1m");
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    // A fresh store: the data set is unknown until the first pull applies.
    server.wait_ready();
    let alice = ns.mapped("alice");
    let r = warden(
        tmp.path(),
        &config,
        &[
            "lists",
            "add",
            "Suspicious Users",
            &alice,
            "--expires-in",
            "4s",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let joined = eventually(Duration::from_secs(20), || {
        dn_keys(&dc.values(&group, "member")) == dn_keys(&[ns.user_dn("alice")])
    });
    assert!(joined.is_some(), "never pushed; logs:\n{}", server.logs());
    let left = eventually(Duration::from_secs(30), || {
        dc.values(&group, "member").is_empty() && server.decision("orders", &alice) == "allow"
    });
    assert!(
        left.is_some(),
        "alice stayed after her expiry: group {:?}, decision {}; logs:\n{}",
        dc.values(&group, "member"),
        server.decision("orders", &alice),
        server.logs()
    );
}

/// The seed setup plus a data set fed straight from the list (no group round trip): what a
/// list member blocks, by every name its account has.
pub fn with_list_data_set(config: &Path) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(
        r#"
[[data_sets]]
name = "Listed"
case_sensitive = false
columns = [{ name = "user", key = true }]
source = { type = "list", list = "Suspicious Users" }

[[policies]]
name = "Block listed"
action = "block"
severity = "high"
apply_to = ["*"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "Listed"
"#,
    );
    std::fs::write(config, text).unwrap();
}

/// Issue 15, part 1: a member is resolved to its account, and the list's data set matches every
/// name the account has — also where the UPN prefix is not the sAMAccountName; a `DOMAIN\user`
/// of another domain does not resolve to this directory's user of that name.
#[test]
fn a_listed_upn_blocks_the_account_under_its_sam_account_name() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(dc, tmp.path(), &["jsmith"], &[], true, "1m");
    with_list_data_set(&config);
    let jdoe = ns.sam("jdoe");
    let upn = format!("{}john.doe@corp.example.test", ns.p);
    dc.modify(&format!(
        "dn: CN={jdoe},{}\nchangetype: add\nobjectClass: user\nsAMAccountName: {jdoe}\nuserPrincipalName: {upn}\nuserAccountControl: 544\n",
        ns.ou
    ));
    let sam_name = format!("CORP\\{jdoe}");
    // A fresh store: the LDAP data set is unknown (decisions are errors) until a pull applies.
    let r = warden(
        tmp.path(),
        &config,
        &["data-sets", "refresh", "PTR Suspicious Users"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(decide(tmp.path(), &config, &sam_name).0, 0);
    add_to_list(tmp.path(), &config, &upn);
    add_to_list(
        tmp.path(),
        &config,
        &format!("PARTNER\\{}", ns.sam("jsmith")),
    );
    let r = warden(tmp.path(), &config, &["devices", "sync", "dc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("added 1, removed 0, unresolved 1"),
        "{}",
        r.stdout
    );
    assert_eq!(
        dn_keys(&dc.values(&group, "member")),
        dn_keys(&[format!("CN={jdoe},{}", ns.ou)]),
        "PARTNER\\jsmith must not resolve to CORP's jsmith"
    );
    for name in [
        sam_name.clone(),
        format!("corp\\{}", jdoe.to_uppercase()),
        upn.clone(),
        upn.to_uppercase(),
        format!("{jdoe}@CORP.EXAMPLE.TEST"),
    ] {
        assert_eq!(
            decide(tmp.path(), &config, &name).0,
            1,
            "{name} not blocked"
        );
    }
    assert_eq!(
        decide(tmp.path(), &config, &format!("CORP\\{}", ns.sam("jsmith"))).0,
        0
    );
    assert_eq!(
        decide(tmp.path(), &config, &format!("PARTNER\\{jdoe}")).0,
        0
    );
}

/// Issue 15, part 3: someone removes a listed user from the mapped group by hand. The decision
/// never turns to allow (polled every 50 ms), warden puts her back, and the drift is recorded
/// in recent updates and the audit log.
#[test]
fn removing_a_listed_user_from_the_group_by_hand_does_not_unblock() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(dc, tmp.path(), &["alice", "bob"], &[], true, "1m");
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    let alice = ns.mapped("alice");
    add_to_list(tmp.path(), &config, &alice);
    add_to_list(tmp.path(), &config, &ns.mapped("bob"));
    let both = dn_keys(&[ns.user_dn("alice"), ns.user_dn("bob")]);
    assert!(
        eventually(Duration::from_secs(20), || dn_keys(
            &dc.values(&group, "member")
        ) == both)
        .is_some(),
        "members never reached the group; logs:\n{}",
        server.logs()
    );
    assert!(
        eventually(Duration::from_secs(20), || server
            .decision("orders", &alice)
            == "block")
        .is_some()
    );
    assert!(
        eventually(Duration::from_secs(10), || server
            .logs()
            .matches("watching for changes")
            .count()
            >= 2)
        .is_some(),
        "watches never registered; logs:\n{}",
        server.logs()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = std::sync::Arc::clone(&stop);
        let (addr, alice) = (server.addr, alice.clone());
        let auth = format!("Bearer {}", server.admin_key.clone().unwrap());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = crate::support::http(
                    addr,
                    "GET",
                    &format!(
                        "/v1/decision?service=orders&db_user={}",
                        crate::support::enc(&alice)
                    ),
                    &[("Authorization", auth.as_str())],
                    b"",
                );
                answers.push(r.json()["decision"].as_str().unwrap_or("error").to_string());
                std::thread::sleep(Duration::from_millis(50));
            }
            answers
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    ns.set_members(dc, &group, "delete", &[ns.user_dn("alice")]);
    let back = eventually(Duration::from_secs(10), || {
        dn_keys(&dc.values(&group, "member")) == both
    });
    // Keep polling a while after the repair: the pull that follows must not drop her either.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = poller.join().unwrap();
    assert!(
        back.is_some(),
        "alice never put back; logs:\n{}",
        server.logs()
    );
    println!(
        "drift repaired in {back:?}; {} decisions polled",
        answers.len()
    );
    assert!(answers.len() > 10);
    assert!(
        answers.iter().all(|a| a == "block"),
        "a decision was not block: {answers:?}; logs:\n{}",
        server.logs()
    );
    let status = device_status(tmp.path(), &config);
    let updates = status["recent_updates"].as_array().unwrap();
    assert!(
        updates
            .iter()
            .any(|u| u["kind"] == "drift" && u["added"] == 1),
        "{status}"
    );
    let key = server.admin_key.clone().unwrap();
    let audit = server.call(
        "GET",
        "/v1/audit?action=group.drift_repaired",
        Some(&key),
        b"",
    );
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(audit.body.contains(&ns.sam("alice")), "{}", audit.body);
    let metrics = server.call("GET", "/metrics", Some(&key), b"");
    assert!(
        metrics.body.contains("warden_drift_repaired_total{"),
        "{}",
        metrics.body
    );
}

/// Issue 15, part 3: a listed user moved to another OU (`modrdn`) stays in the group. The group
/// follows her to the new DN; the running warden still has her old DN cached, and its next
/// push (here for another member) neither re-adds the stale DN nor removes the new one.
#[test]
fn a_listed_user_moved_to_another_ou_stays_in_the_group() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let (ns, group, config) = setup(dc, tmp.path(), &["alice", "bob"], &[], true, "1m");
    let moved_ou = format!("OU=moved,{}", ns.ou);
    dc.modify(&format!(
        "dn: {moved_ou}\nchangetype: add\nobjectClass: organizationalUnit\n"
    ));
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    add_to_list(tmp.path(), &config, &ns.mapped("alice"));
    assert!(
        eventually(Duration::from_secs(20), || dn_keys(
            &dc.values(&group, "member")
        ) == dn_keys(&[
            ns.user_dn("alice")
        ]))
        .is_some(),
        "alice never reached the group; logs:\n{}",
        server.logs()
    );
    dc.modify(&format!(
        "dn: {}\nchangetype: modrdn\nnewrdn: CN={}\ndeleteoldrdn: 1\nnewsuperior: {moved_ou}\n",
        ns.user_dn("alice"),
        ns.sam("alice")
    ));
    let new_dn = format!("CN={},{moved_ou}", ns.sam("alice"));
    assert_eq!(
        dn_keys(&dc.values(&group, "member")),
        dn_keys(std::slice::from_ref(&new_dn)),
        "the DC did not follow the move in the group"
    );
    add_to_list(tmp.path(), &config, &ns.mapped("bob"));
    let want = dn_keys(&[new_dn.clone(), ns.user_dn("bob")]);
    assert!(
        eventually(Duration::from_secs(20), || dn_keys(
            &dc.values(&group, "member")
        ) == want)
        .is_some(),
        "group is {:?}; logs:\n{}",
        dc.values(&group, "member"),
        server.logs()
    );
    let status = device_status(tmp.path(), &config);
    for u in status["recent_updates"].as_array().unwrap() {
        assert_eq!(u["removed"], 0, "{status}");
    }
    // And a sync from the command line (fresh resolution) agrees.
    let r = warden(tmp.path(), &config, &["devices", "sync", "dc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("removed 0"), "{}", r.stdout);
    assert_eq!(dn_keys(&dc.values(&group, "member")), want);
}
