//! Nested groups (issue 19, part 1), against the real Samba DC: a data set with `nested`
//! follows members of groups nested in its group, every group of the chain is watched (five
//! per notification connection, more connections up to `watch_connections`, the rest polled),
//! a sub-group joining or leaving the chain re-registers the watches, and a nesting cycle is
//! reported without hanging anything. The schedule is ten minutes, so every change below
//! reaches decisions through the watches.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::dc::{self, Dc, Ns};
use crate::support::{Server, eventually, start_warden};

/// How long a change may take to reach decisions: generous, the machine is shared, and past
/// the watch's 60 s heartbeat, which catches a notification the loaded DC never sent.
const ARRIVES: Duration = Duration::from_secs(90);
pub const DATA_SET: &str = "PTR Nested Users";

/// A configuration pulling `(&(objectClass=user)(memberOf=<top>))` from the test's OU, with
/// `source` appended to the data set's source (e.g. `nested = true`) and a ten-minute
/// `refresh_interval` unless `source` sets one. The nested tests remove
/// members on purpose, so they open the shrink guard (`max_shrink = 1.0`).
pub fn config(dc: &Dc, dir: &Path, ns: &Ns, top: &str, source: &str) -> PathBuf {
    let text = format!(
        r#"
[store]
path = "warden.db"

[[directories]]
name = "dc"
url = "{url}"
ca_file = "{ca}"
bind_dn = "{bind_dn}"
bind_password_file = "{pw}"
base_dn = "{ou}"
update_interval = "10m"
timeout = "10s"
connect_timeout = "3s"

[[data_sets]]
name = "{DATA_SET}"
case_sensitive = false
columns = [{{ name = "user", key = true }}]
[data_sets.source]
type = "ldap"
directory = "dc"
base = "{ou}"
scope = "sub"
filter = "(&(objectClass=user)(memberOf={top}))"
{schedule}notify = true
{source}
[[data_sets.source.mappings]]
column = "user"
attribute = "userPrincipalName"
match = '^([^@]*)@([^.]*)\..*$'
substitute = '$2\$1'

[[policies]]
name = "Block nested"
action = "block"
severity = "high"
apply_to = ["*"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "{DATA_SET}"
search_in = ["user"]
"#,
        url = dc.ldaps_url,
        ca = dc.ca.display(),
        bind_dn = dc.bind_dn,
        pw = dc.password_file.display(),
        ou = ns.ou,
        schedule = if source.lines().any(|l| l.starts_with("refresh_interval")) {
            ""
        } else {
            "refresh_interval = \"10m\"\n"
        },
    );
    let path = dir.join("warden.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts warden and waits (as long as a change may take) for its first pulls.
pub fn serve(dir: &Path, config: &Path) -> Server {
    let server = start_warden(dir, &["--config", config.to_str().unwrap()]);
    assert!(
        eventually(ARRIVES, || server.get("/readyz").status == 200).is_some(),
        "warden never became ready; logs:\n{}",
        server.logs()
    );
    server
}

/// Waits until `user`'s decision is `want`; returns how long it took.
pub fn until(server: &Server, user: &str, want: &str) -> Duration {
    eventually(ARRIVES, || server.decision("orders", user) == want)
        .unwrap_or_else(|| panic!("{user} never became {want}; logs:\n{}", server.logs()))
}

/// Waits until the logs hold `text`.
pub fn logged(server: &Server, text: &str) {
    assert!(
        eventually(ARRIVES, || server.logs().contains(text)).is_some(),
        "never logged {text:?}; logs:\n{}",
        server.logs()
    );
}

/// The value of one `/metrics` series (0 if absent).
pub fn metric(server: &Server, series: &str) -> u64 {
    let body = server.get("/metrics").body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Times one change at `group` to its decision.
fn timed(server: &Server, change: impl FnOnce(), user: &str, want: &str) -> Duration {
    let start = Instant::now();
    change();
    until(server, user, want);
    start.elapsed()
}

#[test]
fn members_three_groups_deep_reach_decisions_through_the_watches() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    for u in ["t1", "a1", "b1", "t2", "a2", "b2"] {
        ns.add_user(dc, u);
    }
    let b = ns.add_group(dc, "B", &[ns.user_dn("b1")]);
    let a = ns.add_group(dc, "A", &[ns.user_dn("a1"), b.clone()]);
    let top = ns.add_group(dc, "Top", &[ns.user_dn("t1"), a.clone()]);
    let config = config(dc, tmp.path(), &ns, &top, "nested = true\nmax_shrink = 1.0");
    let server = serve(tmp.path(), &config);
    for u in ["t1", "a1", "b1"] {
        until(&server, &ns.mapped(u), "block");
    }
    logged(&server, "watching for changes");
    assert_eq!(server.decision("orders", &ns.mapped("t2")), "allow");
    for (level, group, user) in [(1, &top, "t2"), (2, &a, "a2"), (3, &b, "b2")] {
        let dn = ns.user_dn(user);
        let added = timed(
            &server,
            || ns.set_members(dc, group, "add", std::slice::from_ref(&dn)),
            &ns.mapped(user),
            "block",
        );
        let removed = timed(
            &server,
            || ns.set_members(dc, group, "delete", std::slice::from_ref(&dn)),
            &ns.mapped(user),
            "allow",
        );
        println!(
            "nested level {level}: member added → block {added:?}, removed → allow {removed:?}"
        );
    }
    // The others stayed.
    for u in ["t1", "a1", "b1"] {
        assert_eq!(server.decision("orders", &ns.mapped(u)), "block", "{u}");
    }
}

#[test]
fn a_sub_group_joining_and_leaving_the_chain_re_registers_the_watches() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    for u in ["t1", "c1", "c2"] {
        ns.add_user(dc, u);
    }
    let a = ns.add_group(dc, "A", &[]);
    let top = ns.add_group(dc, "Top", &[ns.user_dn("t1"), a.clone()]);
    let c = ns.add_group(dc, "C", &[ns.user_dn("c1")]);
    let config = config(dc, tmp.path(), &ns, &top, "nested = true\nmax_shrink = 1.0");
    let server = serve(tmp.path(), &config);
    until(&server, &ns.mapped("t1"), "block");
    logged(&server, "watching for changes");
    assert_eq!(server.decision("orders", &ns.mapped("c1")), "allow");
    ns.set_members(dc, &a, "add", std::slice::from_ref(&c));
    until(&server, &ns.mapped("c1"), "block");
    logged(&server, "re-registering the watches");
    // C is watched now: a member added to it arrives without a schedule.
    let took = timed(
        &server,
        || ns.set_members(dc, &c, "add", &[ns.user_dn("c2")]),
        &ns.mapped("c2"),
        "block",
    );
    println!("member added to a group that joined the chain → block {took:?}");
    ns.set_members(dc, &a, "delete", std::slice::from_ref(&c));
    until(&server, &ns.mapped("c1"), "allow");
    until(&server, &ns.mapped("c2"), "allow");
    assert_eq!(server.decision("orders", &ns.mapped("t1")), "block");
}

/// Top ⊃ A ⊃ B ⊃ Top, expanded by warden itself (`nested = "expand"`): the cycle is reported
/// (a warning and `warden_nesting_cycles`), every group is followed once, and changes still
/// arrive.
#[test]
fn a_nesting_cycle_is_reported_and_members_stay_right() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    for u in ["t1", "a1", "b1", "b2", "out"] {
        ns.add_user(dc, u);
    }
    let b = ns.add_group(dc, "B", &[ns.user_dn("b1")]);
    let a = ns.add_group(dc, "A", &[ns.user_dn("a1"), b.clone()]);
    let top = ns.add_group(dc, "Top", &[ns.user_dn("t1"), a.clone()]);
    ns.set_members(dc, &b, "add", std::slice::from_ref(&top));
    let config = config(
        dc,
        tmp.path(),
        &ns,
        &top,
        "nested = \"expand\"\nmax_shrink = 1.0",
    );
    let server = serve(tmp.path(), &config);
    for u in ["t1", "a1", "b1"] {
        until(&server, &ns.mapped(u), "block");
    }
    logged(&server, "nesting cycle");
    let series = format!("warden_nesting_cycles{{data_set=\"{DATA_SET}\"}}");
    assert_eq!(
        metric(&server, &series),
        1,
        "{}",
        server.get("/metrics").body
    );
    assert_eq!(server.decision("orders", &ns.mapped("out")), "allow");
    until(&server, &ns.mapped("t1"), "block");
    ns.set_members(dc, &b, "add", &[ns.user_dn("b2")]);
    until(&server, &ns.mapped("b2"), "block");
    // Breaking the cycle is reported too: the gauge goes back to 0.
    ns.set_members(dc, &b, "delete", std::slice::from_ref(&top));
    assert!(
        eventually(ARRIVES, || metric(&server, &series) == 0).is_some(),
        "{}",
        server.get("/metrics").body
    );
    for u in ["t1", "a1", "b1", "b2"] {
        assert_eq!(server.decision("orders", &ns.mapped(u)), "block", "{u}");
    }
}

/// Eight groups in the chain: two notification connections (five groups each at most), and
/// a member added to the eighth arrives through the second.
#[test]
fn more_than_five_groups_in_the_chain_are_watched_on_several_connections() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let (top, subs) = eight_groups(dc, &ns);
    let config = config(dc, tmp.path(), &ns, &top, "nested = true\nmax_shrink = 1.0");
    let server = serve(tmp.path(), &config);
    until(&server, &ns.mapped("u1"), "block");
    logged(&server, "\"connections\":2");
    let took = timed(
        &server,
        || ns.set_members(dc, &subs[6], "add", &[ns.user_dn("late")]),
        &ns.mapped("late"),
        "block",
    );
    println!("member added to the 8th group of the chain → block {took:?}");
}

/// With one notification connection, the three groups beyond its five are polled by their
/// `uSNChanged`, and a change there arrives too.
#[test]
fn groups_beyond_the_notification_connections_are_polled() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let (top, subs) = eight_groups(dc, &ns);
    let config = config(
        dc,
        tmp.path(),
        &ns,
        &top,
        "nested = true\nwatch_connections = 1\nmax_shrink = 1.0",
    );
    let server = serve(tmp.path(), &config);
    until(&server, &ns.mapped("u1"), "block");
    logged(&server, "polling uSNChanged of the groups beyond");
    logged(&server, "\"connections\":1");
    ns.set_members(dc, &subs[6], "add", &[ns.user_dn("late")]);
    until(&server, &ns.mapped("late"), "block");
}

/// Top ⊃ S1..S7, one user in each (u1..u7), and a user `late` in none.
fn eight_groups(dc: &Dc, ns: &Ns) -> (String, Vec<String>) {
    ns.add_user(dc, "late");
    let subs: Vec<String> = (1..=7)
        .map(|i| {
            let u = format!("u{i}");
            ns.add_user(dc, &u);
            ns.add_group(dc, &format!("S{i}"), &[ns.user_dn(&u)])
        })
        .collect();
    let top = ns.add_group(dc, "Top", &subs);
    (top, subs)
}

/// A filter written the way AD admins write nesting — the in-chain rule on the group, no
/// `nested` key — is followed and watched like `nested = true`: every group of its chain is
/// watched, so a member added to a sub-group reaches decisions through the watches.
#[test]
fn a_hand_written_in_chain_filter_is_watched_like_nested() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    for u in ["t1", "a1", "a2"] {
        ns.add_user(dc, u);
    }
    let a = ns.add_group(dc, "A", &[ns.user_dn("a1")]);
    let top = ns.add_group(dc, "Top", &[ns.user_dn("t1"), a.clone()]);
    let config = config(dc, tmp.path(), &ns, &top, "max_shrink = 1.0");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("(memberOf={top})"),
        &format!("(memberOf:1.2.840.113556.1.4.1941:={top})"),
    );
    assert!(text.contains("1.2.840.113556.1.4.1941"));
    std::fs::write(&config, text).unwrap();
    let server = serve(tmp.path(), &config);
    for u in ["t1", "a1"] {
        until(&server, &ns.mapped(u), "block");
    }
    logged(&server, "watching for changes");
    let took = timed(
        &server,
        || ns.set_members(dc, &a, "add", &[ns.user_dn("a2")]),
        &ns.mapped("a2"),
        "block",
    );
    println!("hand-written in-chain filter: member added in a sub-group → block {took:?}");
    // Both groups of the chain are watched (before, such a filter was watched not at all).
    assert!(
        server
            .logs()
            .lines()
            .any(|l| l.contains("watching for changes") && l.contains("\"groups\":2")),
        "{}",
        server.logs()
    );
}
