//! Incremental pulls (issue 19, part 3), against the real Samba DC: DirSync changes applied
//! without a full pull, a lost cookie (a restart) answered by a full pull, a full pull that
//! repairs what the incremental state could not see, and the shrink guard holding an
//! incremental delta as it holds a full one.

use std::time::Duration;

use crate::dc::{self, Ns};
use crate::nested::{DATA_SET, config, logged, metric, serve, until};
use crate::support::eventually;

fn pulls(kind: &str) -> String {
    format!("warden_pulls_total{{data_set=\"{DATA_SET}\",kind=\"{kind}\"}}")
}

/// `n` users `m1..mn` in one group; returns the group.
fn group_of(dc: &dc::Dc, ns: &Ns, n: usize) -> String {
    let members: Vec<String> = (1..=n).map(|i| ns.add_user(dc, &format!("m{i}"))).collect();
    ns.add_group(dc, "G", &members)
}

#[test]
fn an_incremental_pull_applies_adds_and_removes() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let group = group_of(dc, &ns, 4);
    let extra = ns.add_user(dc, "new");
    let config = config(dc, tmp.path(), &ns, &group, "incremental = true");
    let server = serve(tmp.path(), &config);
    until(&server, &ns.mapped("m1"), "block");
    logged(&server, "watching for changes");
    assert_eq!(metric(&server, &pulls("full")), 1);
    ns.set_members(dc, &group, "add", std::slice::from_ref(&extra));
    until(&server, &ns.mapped("new"), "block");
    ns.set_members(dc, &group, "delete", &[ns.user_dn("m1")]);
    until(&server, &ns.mapped("m1"), "allow");
    logged(
        &server,
        "incremental pull: members changed since the cookie",
    );
    assert!(
        metric(&server, &pulls("incremental")) >= 2,
        "{}",
        server.get("/metrics").body
    );
    assert_eq!(
        metric(&server, &pulls("full")),
        1,
        "no full pull after the first"
    );
    for u in ["m2", "m3", "m4", "new"] {
        assert_eq!(server.decision("orders", &ns.mapped(u)), "block", "{u}");
    }
}

/// The cookie lives in memory: after a restart the first pull is a full one, and it sees the
/// changes made while warden was down.
#[test]
fn a_lost_cookie_means_a_full_pull() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let group = group_of(dc, &ns, 4);
    let extra = ns.add_user(dc, "new");
    let config = config(dc, tmp.path(), &ns, &group, "incremental = true");
    let mut server = serve(tmp.path(), &config);
    until(&server, &ns.mapped("m1"), "block");
    server.stop();
    ns.set_members(dc, &group, "add", std::slice::from_ref(&extra));
    ns.set_members(dc, &group, "delete", &[ns.user_dn("m1")]);
    let server = serve(tmp.path(), &config);
    until(&server, &ns.mapped("new"), "block");
    until(&server, &ns.mapped("m1"), "allow");
    logged(&server, "no cookie (the first pull since warden started)");
    assert_eq!(metric(&server, &pulls("full")), 1);
}

/// A renamed account is not a `member` change, so the incremental state keeps its old name;
/// the next full pull finds the row wrong, counts it and applies its own result.
#[test]
fn a_full_pull_repairs_what_the_incremental_state_missed() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let group = group_of(dc, &ns, 4);
    let config = config(
        dc,
        tmp.path(),
        &ns,
        &group,
        "incremental = true\nrefresh_interval = \"1s\"\nfull_refresh_interval = \"6s\"",
    );
    let server = serve(tmp.path(), &config);
    until(&server, &ns.mapped("m1"), "block");
    dc.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userPrincipalName\nuserPrincipalName: {}\n",
        ns.user_dn("m1"),
        ns.upn("renamed")
    ));
    until(&server, &ns.mapped("renamed"), "block");
    until(&server, &ns.mapped("m1"), "allow");
    logged(
        &server,
        "the full pull found rows the incremental state had wrong",
    );
    let series = format!("warden_incremental_mismatches_total{{data_set=\"{DATA_SET}\"}}");
    assert!(
        metric(&server, &series) >= 1,
        "{}",
        server.get("/metrics").body
    );
}

/// An incremental delta removing 3 of 5 members (60%) is held by the shrink guard like a full
/// pull would be: the removed members stay blocked until an admin accepts.
#[test]
fn an_incremental_delta_removing_most_of_the_set_is_held() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let group = group_of(dc, &ns, 5);
    let config = config(
        dc,
        tmp.path(),
        &ns,
        &group,
        "incremental = true\nmax_shrink = 0.4",
    );
    let server = serve(tmp.path(), &config);
    until(&server, &ns.mapped("m1"), "block");
    logged(&server, "watching for changes");
    let removed: Vec<String> = ["m1", "m2", "m3"].iter().map(|u| ns.user_dn(u)).collect();
    ns.set_members(dc, &group, "delete", &removed);
    logged(&server, "refresh held; accept it to apply");
    assert!(
        eventually(Duration::from_secs(10), || metric(
            &server,
            &pulls("incremental")
        ) >= 1)
        .is_some()
    );
    assert_eq!(
        metric(&server, &pulls("full")),
        1,
        "the delta was incremental"
    );
    for u in ["m1", "m2", "m3", "m4", "m5"] {
        assert_eq!(server.decision("orders", &ns.mapped(u)), "block", "{u}");
    }
}
