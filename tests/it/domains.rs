//! Several domains: CORP (the shared DC on 127.0.0.1) and PARTNER (a second Samba DC on
//! 127.0.0.2, `dc::dc2`), each with its directory and both over LDAPS verified against their
//! own test CAs. A list mapped into a group in each domain puts each member into their own
//! domain's group only; one sAMAccountName in both domains is two accounts in decisions; a data
//! set unions queries over both; PARTNER unreachable (a fault proxy in front of it, the DC
//! itself untouched) leaves CORP's push and decisions alone and PARTNER's rows as they were.
//! Each test has its own OU (and groups) on both DCs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dc::{self, Dc, Ns};
use crate::proxy::FaultProxy;
use crate::support::{Run, enc, eventually, run, start_warden, warden_cmd};

/// Milliseconds since the epoch, as recent updates record their start.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The data sets every test configuration has, and the policy blocking each.
const CORP_SET: &str = "CORP Users";
const PARTNER_SET: &str = "PARTNER Users";
const UNION_SET: &str = "All Users";
const LIST_SET: &str = "Listed";

/// Both domains' namespaces: the same account names (prefix) in each.
struct Domains {
    corp: Ns,
    partner: Ns,
    corp_group: String,
    partner_group: String,
}

impl Domains {
    fn new() -> Domains {
        let corp = Ns::new(dc::dc());
        let partner = Ns::same_names(dc::dc2(), &corp);
        let corp_group = corp.add_group(dc::dc(), "Blocked", &[]);
        let partner_group = partner.add_group(dc::dc2(), "Blocked", &[]);
        Domains {
            corp,
            partner,
            corp_group,
            partner_group,
        }
    }

    /// `name` as a user in both domains (same sAMAccountName, each domain's UPN).
    fn user_in_both(&self, name: &str) {
        self.corp.add_user(dc::dc(), name);
        self.partner.add_user(dc::dc2(), name);
    }

    fn corp_name(&self, name: &str) -> String {
        format!("CORP\\{}", self.corp.sam(name))
    }

    fn partner_name(&self, name: &str) -> String {
        format!("PARTNER\\{}", self.partner.sam(name))
    }

    /// Writes the two-domain configuration; `partner_url` / `partner_ca` reach the PARTNER DC
    /// (directly, or through a proxy).
    fn write(&self, dir: &Path, partner_url: &str, partner_ca: &Path) -> PathBuf {
        let (c, p) = (dc::dc(), dc::dc2());
        let directory = |name: &str, url: &str, ca: &Path, dc: &Dc, ns: &Ns| {
            format!(
                r#"
[[directories]]
name = "{name}"
url = "{url}"
ca_file = "{ca}"
bind_dn = "{bind_dn}"
bind_password_file = "{pw}"
base_dn = "{ou}"
domain = "{domain}"
update_interval = "1m"
timeout = "10s"
connect_timeout = "10s"
"#,
                ca = ca.display(),
                bind_dn = dc.bind_dn,
                pw = dc.password_file.display(),
                ou = ns.ou,
                domain = dc.domain,
            )
        };
        let ldap_set = |name: &str, directory: &str, ns: &Ns, group: &str, union: &str| {
            format!(
                r#"
[[data_sets]]
name = "{name}"
case_sensitive = false
columns = [{{ name = "user", key = true }}]
[data_sets.source]
type = "ldap"
directory = "{directory}"
base = "{ou}"
filter = "(memberOf={group})"
refresh_interval = "1m"
max_shrink = 1.0
[[data_sets.source.mappings]]
column = "user"
attribute = "sAMAccountName"
{union}
"#,
                ou = ns.ou,
            )
        };
        let policy = |set: &str| {
            format!(
                r#"
[[policies]]
name = "Block {set}"
action = "block"
severity = "high"
apply_to = ["*"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "{set}"
"#
            )
        };
        let union = format!(
            "[[data_sets.source.union]]\ndirectory = \"partner\"\nbase = \"{}\"\nfilter = \"(memberOf={})\"\n",
            self.partner.ou, self.partner_group
        );
        let text = [
            r#"
[store]
path = "warden.db"

[[domains]]
netbios = "CORP"
dns = "corp.example.test"
default = true

[[domains]]
netbios = "PARTNER"
dns = "partner.example.test"

[[lists]]
name = "Suspicious Users"
"#
            .to_string(),
            directory("corp", &c.ldaps_url, &c.ca, c, &self.corp),
            directory("partner", partner_url, partner_ca, p, &self.partner),
            format!(
                "[[mappings]]\nlist = \"Suspicious Users\"\ndirectory = \"corp\"\ngroup_dn = \"{}\"\n\
                 [[mappings]]\nlist = \"Suspicious Users\"\ndirectory = \"partner\"\ngroup_dn = \"{}\"\n",
                self.corp_group, self.partner_group
            ),
            ldap_set(CORP_SET, "corp", &self.corp, &self.corp_group, ""),
            ldap_set(PARTNER_SET, "partner", &self.partner, &self.partner_group, ""),
            ldap_set(UNION_SET, "corp", &self.corp, &self.corp_group, &union),
            format!(
                "[[data_sets]]\nname = \"{LIST_SET}\"\ncase_sensitive = false\n\
                 columns = [{{ name = \"user\", key = true }}]\n\
                 source = {{ type = \"list\", list = \"Suspicious Users\" }}\n"
            ),
            policy(CORP_SET),
            policy(PARTNER_SET),
            policy(UNION_SET),
            policy(LIST_SET),
        ]
        .concat();
        let path = dir.join("warden.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn warden(dir: &Path, config: &Path, args: &[&str]) -> Run {
    let mut c = warden_cmd(dir);
    c.arg("--config").arg(config).args(args);
    run(c)
}

fn ok(dir: &Path, config: &Path, args: &[&str]) -> Run {
    let r = warden(dir, config, args);
    assert_eq!(r.code, 0, "warden {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", r.stdout, r.stderr))
}

/// The policies that matched `db_user` (the decision is `block` exactly when one did).
fn matched(dir: &Path, config: &Path, db_user: &str) -> Vec<String> {
    let r = warden(
        dir,
        config,
        &["decide", "--service", "orders", "--db-user", db_user],
    );
    assert!(r.code == 0 || r.code == 1, "decide {db_user}: {}", r.stderr);
    let v = json(&r);
    assert_eq!(v["decision"] == "block", r.code == 1, "{v}");
    let mut names: Vec<String> = v["matched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["policy"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn blocked_by(sets: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = sets.iter().map(|s| format!("Block {s}")).collect();
    names.sort();
    names
}

fn members(dc: &Dc, group: &str) -> Vec<String> {
    let mut m: Vec<String> = dc
        .values(group, "member")
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    m.sort();
    m
}

fn lower(dns: &[String]) -> Vec<String> {
    let mut m: Vec<String> = dns.iter().map(|d| d.to_ascii_lowercase()).collect();
    m.sort();
    m
}

fn add(dir: &Path, config: &Path, principal: &str) {
    ok(
        dir,
        config,
        &["lists", "add", "Suspicious Users", principal],
    );
}

/// Pushes the list into both groups and pulls every LDAP data set, through the CLI.
fn sync_all(dir: &Path, config: &Path) {
    ok(dir, config, &["directories", "sync", "corp"]);
    ok(dir, config, &["directories", "sync", "partner"]);
    for set in [CORP_SET, PARTNER_SET, UNION_SET] {
        ok(dir, config, &["data-sets", "refresh", set]);
    }
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

fn direct(tmp: &Path, d: &Domains) -> PathBuf {
    let p = dc::dc2();
    d.write(tmp, &p.ldaps_url, &p.ca)
}

/// A list with `CORP\alice` and `PARTNER\bob` mapped into a group in each domain: each group
/// gets only its own domain's member, although both domains have an alice and a bob; a
/// PARTNER UPN is never looked up in CORP (where a user carries it as a trap); an unknown
/// PARTNER name is unresolved there and removes nothing.
#[test]
fn each_domain_s_group_gets_only_its_own_members() {
    let _g = dc::shared();
    let tmp = tempfile::tempdir().unwrap();
    let d = Domains::new();
    for u in ["alice", "bob", "carol"] {
        d.user_in_both(u);
    }
    // In CORP, a user whose UPN has PARTNER's suffix: were PARTNER's UPNs looked up in CORP,
    // this one would land in CORP's group.
    let carol_upn = format!("{}@partner.example.test", d.partner.sam("carol"));
    let trap = format!("CN={}trap,{}", d.corp.p, d.corp.ou);
    dc::dc().modify(&format!(
        "dn: {trap}\nchangetype: add\nobjectClass: user\nsAMAccountName: {}trap\nuserPrincipalName: {carol_upn}\nuserAccountControl: 544\n",
        d.corp.p
    ));
    let config = direct(tmp.path(), &d);
    let dir = tmp.path();
    add(dir, &config, &d.corp_name("alice"));
    add(dir, &config, &d.partner_name("bob"));
    add(dir, &config, &carol_upn);

    let check = json(&ok(dir, &config, &["mappings", "check", "--json"]));
    let plan = |directory_group: &str| {
        check
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["group_dn"] == directory_group)
            .unwrap_or_else(|| panic!("{check}"))["plan"]
            .clone()
    };
    let corp_plan = plan(&d.corp_group);
    assert_eq!(
        lower(&serde_json::from_value::<Vec<String>>(corp_plan["add"].clone()).unwrap()),
        [d.corp.user_dn("alice").to_ascii_lowercase()],
        "{corp_plan}"
    );
    assert_eq!(
        corp_plan["unresolved"],
        serde_json::json!([]),
        "{corp_plan}"
    );
    let mut other: Vec<String> = serde_json::from_value(corp_plan["other_domain"].clone()).unwrap();
    other.sort();
    // Each as its account's canonical name: carol was listed by her UPN.
    let _ = &carol_upn;
    let mut want = vec![d.partner_name("bob"), d.partner_name("carol")];
    want.sort();
    assert_eq!(other, want, "{corp_plan}");
    let partner_plan = plan(&d.partner_group);
    assert_eq!(
        partner_plan["other_domain"],
        serde_json::json!([d.corp_name("alice")]),
        "{partner_plan}"
    );

    sync_all(dir, &config);
    assert_eq!(
        members(dc::dc(), &d.corp_group),
        lower(&[d.corp.user_dn("alice")])
    );
    assert_eq!(
        members(dc::dc2(), &d.partner_group),
        lower(&[d.partner.user_dn("bob"), d.partner.user_dn("carol")])
    );
    // Routed names are neither unresolved nor a failure: both directories are ok.
    let status = json(&ok(dir, &config, &["directories", "status", "--json"]));
    for (s, domain) in status.as_array().unwrap().iter().zip(["CORP", "PARTNER"]) {
        assert_eq!(s["status"], "ok", "{status}");
        assert_eq!(s["domain"], domain, "{status}");
    }

    // A PARTNER name PARTNER does not know: refused when it is added, having asked
    // PARTNER's directory only (never CORP's); nothing changes anywhere.
    let refused = warden(
        dir,
        &config,
        &[
            "lists",
            "add",
            "Suspicious Users",
            &d.partner_name("nobody"),
        ],
    );
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("no entry answers to it in directory partner"),
        "{}",
        refused.stderr
    );
    let partner_sync = ok(dir, &config, &["directories", "sync", "partner"]);
    assert!(
        partner_sync.stdout.contains("removed 0, unresolved 0"),
        "{}",
        partner_sync.stdout
    );
    let corp_sync = ok(dir, &config, &["directories", "sync", "corp"]);
    assert!(
        corp_sync
            .stdout
            .contains("added 0, removed 0, unresolved 0"),
        "{}",
        corp_sync.stdout
    );
    assert_eq!(
        members(dc::dc2(), &d.partner_group),
        lower(&[d.partner.user_dn("bob"), d.partner.user_dn("carol")])
    );
    assert_eq!(
        members(dc::dc(), &d.corp_group),
        lower(&[d.corp.user_dn("alice")])
    );
}

/// `jsmith` exists in both domains; only PARTNER's is listed. `PARTNER\jsmith` and its UPN are
/// blocked by every data set that holds it (the list's, PARTNER's, the union); CORP's
/// `jsmith`, however it is written (a bare name is the default domain's, CORP), by none.
#[test]
fn the_same_name_in_two_domains_is_two_accounts() {
    let _g = dc::shared();
    let tmp = tempfile::tempdir().unwrap();
    let d = Domains::new();
    d.user_in_both("jsmith");
    let config = direct(tmp.path(), &d);
    let dir = tmp.path();
    add(dir, &config, &d.partner_name("jsmith"));
    sync_all(dir, &config);
    assert_eq!(members(dc::dc(), &d.corp_group), Vec::<String>::new());
    assert_eq!(
        members(dc::dc2(), &d.partner_group),
        lower(&[d.partner.user_dn("jsmith")])
    );

    let all = blocked_by(&[LIST_SET, PARTNER_SET, UNION_SET]);
    let sam = d.partner.sam("jsmith");
    for name in [
        d.partner_name("jsmith"),
        format!("partner\\{sam}"),
        format!("{sam}@partner.example.test"),
        format!("{sam}@PARTNER.EXAMPLE.TEST"),
    ] {
        assert_eq!(matched(dir, &config, &name), all, "{name}");
    }
    for name in [
        d.corp_name("jsmith"),
        format!("{sam}@corp.example.test"),
        sam.clone(),
    ] {
        assert_eq!(matched(dir, &config, &name), Vec::<String>::new(), "{name}");
    }
    // The rows say whose account each is.
    let q = json(&ok(dir, &config, &["data-sets", "test-query", PARTNER_SET]));
    assert_eq!(keys(&q["sample"]), [d.partner_name("jsmith")], "{q}");
}

/// A union data set over both directories: one query per directory, each row tagged with its
/// directory's domain, so the two jsmiths are two keys; each is blocked as its own account.
#[test]
fn a_union_data_set_reads_both_directories() {
    let _g = dc::shared();
    let tmp = tempfile::tempdir().unwrap();
    let d = Domains::new();
    d.user_in_both("jsmith");
    d.user_in_both("bob");
    // Put by hand: the union reads whatever the groups hold.
    d.corp
        .set_members(dc::dc(), &d.corp_group, "add", &[d.corp.user_dn("jsmith")]);
    d.partner.set_members(
        dc::dc2(),
        &d.partner_group,
        "add",
        &[d.partner.user_dn("jsmith"), d.partner.user_dn("bob")],
    );
    let config = direct(tmp.path(), &d);
    let dir = tmp.path();
    let q = json(&ok(dir, &config, &["data-sets", "test-query", UNION_SET]));
    assert_eq!(q["entries"], 3, "{q}");
    assert_eq!(q["entries_skipped"], 0, "{q}");
    assert_eq!(
        keys(&q["sample"]),
        [
            d.corp_name("jsmith"),
            d.partner_name("bob"),
            d.partner_name("jsmith")
        ],
        "{q}"
    );
    for set in [CORP_SET, PARTNER_SET, UNION_SET] {
        ok(dir, &config, &["data-sets", "refresh", set]);
    }
    assert_eq!(
        matched(dir, &config, &d.corp_name("jsmith")),
        blocked_by(&[CORP_SET, UNION_SET])
    );
    assert_eq!(
        matched(dir, &config, &d.partner_name("jsmith")),
        blocked_by(&[PARTNER_SET, UNION_SET])
    );
    assert_eq!(
        matched(
            dir,
            &config,
            &format!("{}@partner.example.test", d.partner.sam("bob"))
        ),
        blocked_by(&[PARTNER_SET, UNION_SET])
    );
    assert_eq!(
        matched(dir, &config, &d.corp_name("bob")),
        Vec::<String>::new()
    );
}

/// Both directories are LDAPS verified against their own CA: the PARTNER DC's certificate
/// (for its own IP, from its own test CA) verifies with its CA and not with CORP's.
#[test]
fn both_directories_are_reached_over_verified_tls() {
    let _g = dc::shared();
    let tmp = tempfile::tempdir().unwrap();
    let d = Domains::new();
    let (c, p) = (dc::dc(), dc::dc2());
    // Two DCs on two addresses (127.0.0.1 and 127.0.0.2 under scripts/test; any pair of
    // loopback addresses a developer starts them on).
    assert_ne!(c.ldaps_url, p.ldaps_url, "the two domains share one DC");
    let config = direct(tmp.path(), &d);
    let dir = tmp.path();
    ok(dir, &config, &["mappings", "check"]);

    // PARTNER's DC with CORP's CA: the certificate does not verify, and nothing is synced.
    let wrong_ca = tmp.path().join("wrong");
    std::fs::create_dir(&wrong_ca).unwrap();
    let config = d.write(&wrong_ca, &p.ldaps_url, &c.ca);
    let r = warden(&wrong_ca, &config, &["directories", "sync", "partner"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.to_ascii_lowercase().contains("certificate"),
        "{}",
        r.stderr
    );
    ok(&wrong_ca, &config, &["directories", "sync", "corp"]);
}

/// The PARTNER DC unreachable (a fault proxy in front of it cuts every connection; the DC
/// itself is shared and untouched): CORP's push and decisions carry on, PARTNER's data set
/// and the union keep their last good rows, PARTNER's group loses no one, and PARTNER's
/// listed member stays blocked.
#[test]
fn partner_unreachable_leaves_corp_alone_and_partner_s_rows_as_they_were() {
    let _g = dc::shared();
    let tmp = tempfile::tempdir().unwrap();
    let d = Domains::new();
    for u in ["alice", "bob", "carol"] {
        d.user_in_both(u);
    }
    let p = dc::dc2();
    let target: SocketAddr = p.ldaps_url.trim_start_matches("ldaps://").parse().unwrap();
    let proxy = FaultProxy::start(target);
    let config = d.write(tmp.path(), &proxy.ldaps_url(), &p.ca);
    let dir = tmp.path();
    add(dir, &config, &d.corp_name("alice"));
    add(dir, &config, &d.partner_name("bob"));
    let first = start_warden(dir, &["--config", config.to_str().unwrap()]);
    first.wait_ready();
    let settled = eventually(Duration::from_secs(30), || {
        let r = first.get(&format!("/v1/data-sets/{}/rows", enc(UNION_SET)));
        r.status == 200 && r.json()["records"].as_array().is_some_and(|a| a.len() == 2)
    });
    assert!(settled.is_some(), "{}", first.logs());
    // A fresh start with both groups as the list says: its first refreshes wake nothing else,
    // so what wakes the union below is PARTNER's push.
    drop(first);
    let restarted_ms = now_ms();
    let server = start_warden(dir, &["--config", config.to_str().unwrap()]);
    server.wait_ready();
    let rows = |set: &str| {
        let r = server.get(&format!("/v1/data-sets/{}/rows", enc(set)));
        assert_eq!(r.status, 200, "{}", r.body);
        keys(&r.json()["records"])
    };
    let both = [d.corp_name("alice"), d.partner_name("bob")];
    // The union's first refresh since the restart is done.
    let refreshed = eventually(Duration::from_secs(30), || {
        let status = server.get("/v1/directories").json();
        status["directories"].as_array().unwrap().iter().any(|s| {
            s["recent_updates"].as_array().unwrap().iter().any(|u| {
                u["kind"] == "pull"
                    && u["target"] == UNION_SET
                    && u["started_at_ms"].as_i64().unwrap() >= restarted_ms
            })
        })
    });
    assert!(refreshed.is_some(), "{}", server.logs());
    assert_eq!(rows(UNION_SET), both);
    assert_eq!(rows(PARTNER_SET), [d.partner_name("bob")]);
    assert_eq!(server.decision("orders", &d.partner_name("bob")), "block");
    // The union (scheduled on CORP's directory, every minute) is woken by a push into
    // PARTNER's group too.
    assert_eq!(server.add_member(&d.partner_name("carol")), 201);
    let both = [
        d.corp_name("alice"),
        d.partner_name("bob"),
        d.partner_name("carol"),
    ];
    let woken = eventually(Duration::from_secs(30), || {
        rows(UNION_SET) == both
            && rows(PARTNER_SET) == [d.partner_name("bob"), d.partner_name("carol")]
    });
    assert!(woken.is_some(), "{:?}\n{}", rows(UNION_SET), server.logs());

    proxy.cut();
    // CORP carries on: a new CORP member reaches CORP's group and is blocked.
    assert_eq!(server.add_member(&d.corp_name("carol")), 201);
    let carol = eventually(Duration::from_secs(30), || {
        members(dc::dc(), &d.corp_group)
            == lower(&[d.corp.user_dn("alice"), d.corp.user_dn("carol")])
            && rows(CORP_SET) == [d.corp_name("alice"), d.corp_name("carol")]
    });
    assert!(carol.is_some(), "{}", server.logs());
    assert_eq!(server.decision("orders", &d.corp_name("carol")), "block");
    assert_eq!(server.decision("orders", &d.corp_name("bob")), "allow");

    // PARTNER's refresh fails, and so does the union's (it refreshes as one): the last good
    // rows stay.
    for set in [PARTNER_SET, UNION_SET] {
        let r = server.post_json(
            &format!("/v1/data-sets/{}/refresh", enc(set)),
            &serde_json::json!({}),
        );
        assert_eq!(r.status, 502, "{set}: {}", r.body);
        assert!(r.body.contains("partner"), "{set}: {}", r.body);
    }
    assert_eq!(
        rows(PARTNER_SET),
        [d.partner_name("bob"), d.partner_name("carol")]
    );
    assert_eq!(rows(UNION_SET), both);
    assert_eq!(server.decision("orders", &d.partner_name("bob")), "block");
    assert_eq!(
        server.decision(
            "orders",
            &format!("{}@partner.example.test", d.partner.sam("bob"))
        ),
        "block"
    );
    // PARTNER's group, read directly from its DC, lost no one.
    assert_eq!(
        members(p, &d.partner_group),
        lower(&[d.partner.user_dn("bob"), d.partner.user_dn("carol")])
    );
    let status = server.get("/v1/directories").json();
    let partner = status["directories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["directory"] == "partner")
        .cloned()
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(partner["status"], "failing", "{status}");

    // Back: the union picks up CORP's carol and keeps PARTNER's bob.
    proxy.heal();
    let healed = eventually(Duration::from_secs(30), || {
        let r = server.post_json(
            &format!("/v1/data-sets/{}/refresh", enc(UNION_SET)),
            &serde_json::json!({}),
        );
        r.status == 200
    });
    assert!(healed.is_some(), "{}", server.logs());
    let mut all = vec![
        d.corp_name("alice"),
        d.corp_name("carol"),
        d.partner_name("bob"),
        d.partner_name("carol"),
    ];
    all.sort();
    assert_eq!(rows(UNION_SET), all);
}
