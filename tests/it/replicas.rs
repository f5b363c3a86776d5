//! Several `warden serve` replicas on one PostgreSQL store (issue #18): changes reach every
//! replica through the change log and NOTIFY, lost LISTEN connections and a stopped server lose
//! nothing, and `warden store migrate` copies a SQLite store without loss.
//!
//! These tests run their own PostgreSQL (scripts/postgres, on a free port), never the shared
//! one: some stop and restart it or terminate its backends. Each test has its own database;
//! tests that stop the server hold [`exclusive`], the others [`shared`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::support::{
    Server, destroy_postgres_on_exit, enc, eventually, list_config, run, start_postgres,
    start_warden, warden_cmd, write_secret,
};

/// Generous: the issue's "within a second" is measured in BENCHMARKS.md, not here.
const WAIT: Duration = Duration::from_secs(30);

struct Pg {
    dir: PathBuf,
    port: u16,
    password_file: PathBuf,
}

static LOCK: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    LOCK.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    LOCK.write().unwrap_or_else(|e| e.into_inner())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres")
}

/// This test process's own PostgreSQL, with a role `warden` that owns the test databases.
fn pg() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("warden-replicas-pg-{}", std::process::id()));
        let port = start_postgres(&dir);
        destroy_postgres_on_exit(&dir);
        let password = format!("w{}x{}", std::process::id(), port);
        let password_file = dir.join("warden-store.secret");
        write_secret(&password_file, &password);
        let pg = Pg {
            dir,
            port,
            password_file,
        };
        pg.psql(
            "postgres",
            &format!("CREATE ROLE warden LOGIN PASSWORD '{password}'"),
        );
        pg
    })
}

impl Pg {
    /// Runs SQL as the superuser over the server's socket; returns its output (unaligned).
    fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t"])
            .args(["-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A new database owned by `warden`.
    fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name} OWNER warden"));
        name.to_string()
    }

    fn stop(&self) {
        let out = Command::new(script())
            .arg("stop")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        let out = Command::new(script())
            .arg("start")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `[store]` keys of a replica on database `db`.
fn store_keys(db: &str) -> String {
    let pg = pg();
    format!(
        "path = \"warden.db\"\nurl = \"postgresql://warden@127.0.0.1:{}/{db}\"\n\
         password_file = \"{}\"\nca_file = \"{}\"\nleader_failover = \"3s\"",
        pg.port,
        pg.password_file.display(),
        pg.dir.join("tls/ca.pem").display()
    )
}

struct Replicas {
    _dirs: Vec<tempfile::TempDir>,
    servers: Vec<Server>,
}

/// `n` replicas of the list config on database `db`, started one after the other (the first
/// writes the bootstrap admin key; the others use it: keys are in the shared store).
fn replicas(db: &str, n: usize) -> Replicas {
    replicas_of(db, n, "")
}

/// Like [`replicas`], with `extra` appended to the config.
fn replicas_of(db: &str, n: usize, extra: &str) -> Replicas {
    let config = list_config("", r#""*""#).replace("path = \"warden.db\"", &store_keys(db)) + extra;
    let mut dirs = Vec::new();
    let mut servers: Vec<Server> = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("warden.toml"), &config).unwrap();
        let mut s = start_warden(dir.path(), &["--config", "warden.toml"]);
        if let Some(first) = servers.first() {
            s.admin_key = first.admin_key.clone();
        }
        assert!(s.admin_key.is_some(), "no admin key: {}", s.logs());
        s.wait_ready();
        servers.push(s);
        dirs.push(dir);
    }
    Replicas {
        _dirs: dirs,
        servers,
    }
}

fn decision_of(s: &Server, user: &str) -> Option<(String, i64)> {
    let r = s.get(&format!(
        "/v1/decision?service=orders&db_user={}",
        enc(user)
    ));
    if r.status != 200 {
        return None;
    }
    let v = r.json();
    Some((v["decision"].as_str()?.to_string(), v["revision"].as_i64()?))
}

fn blocks_everywhere(r: &Replicas, users: &[String], want: &str) -> bool {
    r.servers.iter().all(|s| {
        users
            .iter()
            .all(|u| decision_of(s, u).is_some_and(|(d, _)| d == want))
    })
}

fn remove(s: &Server, principal: &str) -> u16 {
    s.call(
        "DELETE",
        &format!("/v1/lists/Suspicious%20Users/members/{}", enc(principal)),
        s.admin_key.as_deref(),
        b"",
    )
    .status
}

fn revisions(r: &Replicas) -> Vec<i64> {
    r.servers
        .iter()
        .map(|s| s.get("/v1/status").json()["revision"].as_i64().unwrap())
        .collect()
}

#[test]
fn a_member_added_on_one_replica_blocks_on_the_others_and_removed_allows_again() {
    let _g = shared();
    let db = pg().database("propagation");
    let r = replicas(&db, 3);
    let (a, b, c) = (&r.servers[0], &r.servers[1], &r.servers[2]);
    let roles: Vec<String> = r
        .servers
        .iter()
        .map(|s| {
            s.get("/v1/status").json()["role"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        eventually(WAIT, || r
            .servers
            .iter()
            .filter(|s| s.get("/v1/status").json()["role"] == "leader")
            .count()
            == 1)
        .is_some(),
        "not exactly one leader: {roles:?}"
    );

    let body = serde_json::json!({ "principal": "corp\\mallory", "reason": "test" });
    let added = a.post_json("/v1/lists/Suspicious%20Users/members", &body);
    assert!(added.status < 300, "{}", added.body);
    let revision: i64 = added
        .header("warden-revision")
        .expect("a write answers with its revision")
        .parse()
        .unwrap();
    // Read-your-writes on another replica: the decision waits for that revision.
    let d = c.get(&format!(
        "/v1/decision?service=orders&db_user=corp%5Cmallory&min_revision={revision}"
    ));
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["decision"], "block", "{}", d.body);
    assert!(d.json()["revision"].as_i64().unwrap() >= revision);

    let batch = c.call(
        "POST",
        &format!("/v1/decisions?min_revision={revision}"),
        c.admin_key.as_deref(),
        br#"{"requests":[{"service":"orders","db_user":"corp\\mallory"}]}"#,
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert_eq!(
        batch.json()["decisions"][0]["decision"],
        "block",
        "{}",
        batch.body
    );

    let mallory = vec!["corp\\mallory".to_string()];
    assert!(
        eventually(WAIT, || blocks_everywhere(&r, &mallory, "block")).is_some(),
        "not blocked everywhere"
    );
    assert!(
        eventually(WAIT, || {
            let rs = revisions(&r);
            rs.iter().all(|x| *x == rs[0] && *x >= revision)
        })
        .is_some(),
        "revisions differ: {:?}",
        revisions(&r)
    );
    let revs: Vec<i64> = r
        .servers
        .iter()
        .map(|s| decision_of(s, "corp\\mallory").unwrap().1)
        .collect();
    assert!(revs.iter().all(|x| *x == revs[0]), "{revs:?}");

    assert!(remove(b, "corp\\mallory") < 300);
    assert!(
        eventually(WAIT, || blocks_everywhere(&r, &mallory, "allow")).is_some(),
        "not allowed again everywhere"
    );
    // A revision no replica has reached: an error after a bounded wait, not a stale answer.
    let far = c.get("/v1/decision?service=orders&db_user=corp%5Cmallory&min_revision=999999");
    assert_eq!(far.status, 503, "{}", far.body);
    assert!(
        far.header("content-type")
            .is_some_and(|t| t.contains("problem+json"))
    );
}

#[test]
fn listen_connections_terminated_during_a_burst_lose_no_change() {
    let _g = shared();
    let db = pg().database("burst");
    let r = replicas(&db, 3);
    let users: Vec<String> = (0..60).map(|i| format!("corp\\burst{i}")).collect();
    for (i, u) in users.iter().enumerate() {
        if i == 20 || i == 40 {
            // All three listening (again) before they are cut.
            let listening = format!(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND application_name = 'warden change feed'"
            );
            assert!(
                eventually(WAIT, || pg().psql("postgres", &listening) == "3").is_some(),
                "the change feeds did not come back"
            );
            let killed = pg().psql(
                "postgres",
                &format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = '{db}' AND application_name = 'warden change feed'"
                ),
            );
            assert_eq!(killed, "3", "three LISTEN connections terminated");
        }
        let s = &r.servers[i % 3];
        assert!(s.add_member(u) < 300, "{}", s.logs());
    }
    assert!(
        eventually(WAIT, || blocks_everywhere(&r, &users, "block")).is_some(),
        "a change was lost: revisions {:?}",
        revisions(&r)
    );
    assert!(
        eventually(WAIT, || {
            let rs = revisions(&r);
            rs.iter().all(|x| *x == rs[0])
        })
        .is_some(),
        "{:?}",
        revisions(&r)
    );
}

#[test]
fn postgres_stopped_decisions_continue_writes_answer_503_and_everyone_catches_up() {
    let _g = exclusive();
    let db = pg().database("stopped");
    let r = replicas(&db, 3);
    let before = vec!["corp\\before".to_string()];
    assert!(r.servers[0].add_member(&before[0]) < 300);
    assert!(eventually(WAIT, || blocks_everywhere(&r, &before, "block")).is_some());

    pg().stop();
    let after = vec!["corp\\after".to_string()];
    // Fail-static: every replica decides from its last snapshot.
    assert!(blocks_everywhere(&r, &before, "block"));
    assert!(blocks_everywhere(&r, &after, "allow"));
    let body = serde_json::json!({ "principal": after[0], "reason": "test" });
    let refused = r.servers[1].post_json("/v1/lists/Suspicious%20Users/members", &body);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused
            .header("content-type")
            .is_some_and(|t| t.contains("problem+json"))
    );
    for s in &r.servers {
        assert!(
            eventually(WAIT, || {
                let ready = s.get("/readyz");
                ready.status == 200 && ready.json()["status"] == "degraded"
            })
            .is_some(),
            "{}",
            s.get("/readyz").body
        );
    }
    assert!(blocks_everywhere(&r, &before, "block"));

    pg().start();
    assert!(
        eventually(WAIT, || r.servers[1]
            .post_json("/v1/lists/Suspicious%20Users/members", &body)
            .status
            < 300)
        .is_some(),
        "writes never came back"
    );
    assert!(
        eventually(WAIT, || blocks_everywhere(&r, &after, "block")).is_some(),
        "not everyone caught up: {:?}",
        revisions(&r)
    );
    for s in &r.servers {
        assert!(
            eventually(WAIT, || s.get("/readyz").json()["status"] == "ready").is_some(),
            "{}",
            s.get("/readyz").body
        );
    }
}

#[test]
fn a_thousand_acknowledged_writes_over_the_replicas_survive_a_restart() {
    let _g = exclusive();
    let db = pg().database("thousand");
    let r = replicas(&db, 3);
    let mut acknowledged = Vec::new();
    for i in 0..1000 {
        if i == 500 {
            pg().stop();
            pg().start();
        }
        let p = format!("corp\\w{i}");
        if r.servers[i % 3].add_member(&p) < 300 {
            acknowledged.push(p);
        }
    }
    assert!(
        acknowledged.len() > 500,
        "{} acknowledged",
        acknowledged.len()
    );
    let listed = pg().psql(
        &db,
        "SELECT s.principal FROM memberships s JOIN members m \
           ON m.list_id = s.list_id AND m.account_key = s.account_key \
         JOIN lists l ON l.id = m.list_id WHERE l.name = 'Suspicious Users'",
    );
    let listed: std::collections::HashSet<&str> = listed.lines().collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|p| !listed.contains(p.as_str()))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(
        eventually(WAIT, || blocks_everywhere(&r, &acknowledged, "block")).is_some(),
        "not every replica caught up"
    );
}

#[test]
fn store_migrate_copies_a_populated_sqlite_store_and_decisions_stay_equal() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_config = list_config("", r#""*""#);
    std::fs::write(dir.path().join("warden.toml"), &sqlite_config).unwrap();
    let users: Vec<String> = (0..20).map(|i| format!("corp\\m{i}")).collect();
    let before: Vec<String>;
    {
        let s = start_warden(dir.path(), &["--config", "warden.toml"]);
        s.wait_ready();
        for u in &users {
            assert!(s.add_member(u) < 300);
        }
        let incident = s.post_json(
            "/v1/incidents",
            &serde_json::json!({ "title": "lateral movement", "severity": "high",
                                 "users": ["corp\\m1"] }),
        );
        assert!(incident.status < 300, "{}", incident.body);
        before = ["corp\\m3", "corp\\nobody"]
            .iter()
            .map(|u| decision_of(&s, u).unwrap().0)
            .collect();
    }
    let counts_sqlite: Vec<(String, i64)> = {
        let c = rusqlite::Connection::open(dir.path().join("warden.db")).unwrap();
        warden::store::migrate::TABLES
            .iter()
            .map(|t| {
                let n: i64 = c
                    .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
                    .unwrap();
                ((*t).to_string(), n)
            })
            .collect()
    };
    let db = pg().database("migrated");
    let pg_config = sqlite_config.replace("path = \"warden.db\"", &store_keys(&db));
    std::fs::write(dir.path().join("warden.toml"), &pg_config).unwrap();
    let mut c = warden_cmd(dir.path());
    c.args(["--config", "warden.toml", "store", "migrate"]);
    let out = run(c);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for (table, n) in &counts_sqlite {
        let got: i64 = pg()
            .psql(&db, &format!("SELECT COUNT(*) FROM {table}"))
            .parse()
            .unwrap();
        assert_eq!(got, *n, "table {table}");
    }
    assert!(
        counts_sqlite
            .iter()
            .any(|(t, n)| t == "members" && *n == 20)
    );
    // A second copy into the same store is refused: nothing is merged.
    let mut again = warden_cmd(dir.path());
    again.args(["--config", "warden.toml", "store", "migrate"]);
    let again = run(again);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("not empty"), "{}", again.stderr);

    let s = start_warden(dir.path(), &["--config", "warden.toml"]);
    s.wait_ready();
    let after: Vec<String> = ["corp\\m3", "corp\\nobody"]
        .iter()
        .map(|u| decision_of(&s, u).unwrap().0)
        .collect();
    assert_eq!(before, after);
    assert_eq!(before, ["block", "allow"]);
    let incidents = s.get("/v1/incidents");
    assert!(
        incidents.body.contains("lateral movement"),
        "{}",
        incidents.body
    );
}

/// The AD group's members, as DNs in lower case, sorted.
fn group_members(dc: &crate::dc::Dc, group: &str) -> Vec<String> {
    let mut m: Vec<String> = dc
        .values(group, "member")
        .iter()
        .map(|v| v.to_ascii_lowercase())
        .collect();
    m.sort();
    m
}

#[test]
fn the_leader_killed_with_a_list_change_pending_another_takes_over_and_the_group_converges() {
    let _g = shared();
    let _dc = crate::dc::shared();
    let dc = crate::dc::dc();
    let ns = crate::dc::Ns::new(dc);
    let dns: Vec<String> = (1..=4).map(|i| ns.add_user(dc, &format!("r{i}"))).collect();
    let group = ns.add_group(dc, "Replicas", &[]);
    let db = pg().database("leader");
    let template = tempfile::tempdir().unwrap();
    let config_path = crate::dc::AdConfig::seed(&ns, &group).write(dc, template.path());
    let config = std::fs::read_to_string(config_path)
        .unwrap()
        .replace("path = \"warden.db\"", &store_keys(&db));
    let mut dirs = Vec::new();
    let mut servers: Vec<Server> = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("warden.toml"), &config).unwrap();
        let mut s = start_warden(dir.path(), &["--config", "warden.toml"]);
        if let Some(first) = servers.first() {
            s.admin_key = first.admin_key.clone();
        }
        s.wait_ready();
        servers.push(s);
        dirs.push(dir);
    }
    let role = |s: &Server| {
        s.get("/v1/status").json()["role"]
            .as_str()
            .map(str::to_owned)
    };
    assert!(
        eventually(WAIT, || servers
            .iter()
            .filter(|s| role(s).as_deref() == Some("leader"))
            .count()
            == 1)
        .is_some()
    );
    let leader = servers
        .iter()
        .position(|s| role(s).as_deref() == Some("leader"))
        .unwrap();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let want = |n: usize| {
        let mut w: Vec<String> = dns[..n].iter().map(|d| d.to_ascii_lowercase()).collect();
        w.sort();
        w
    };
    for i in 1..=2 {
        assert!(servers[followers[0]].add_member(&ns.mapped(&format!("r{i}"))) < 300);
    }
    assert!(
        eventually(WAIT, || group_members(dc, &group) == want(2)).is_some(),
        "the leader did not push: {:?}",
        group_members(dc, &group)
    );

    // A change through a follower, and the leader gone before (or while) it pushes.
    assert!(servers[followers[1]].add_member(&ns.mapped("r3")) < 300);
    servers[leader].child.kill().unwrap();
    servers[leader].child.wait().unwrap();
    assert!(servers[followers[0]].add_member(&ns.mapped("r4")) < 300);
    assert!(
        eventually(WAIT, || followers
            .iter()
            .filter(|i| role(&servers[**i]).as_deref() == Some("leader"))
            .count()
            == 1)
        .is_some(),
        "no follower took over"
    );
    assert!(
        eventually(WAIT, || group_members(dc, &group) == want(4)).is_some(),
        "the group did not converge to the list: {:?}",
        group_members(dc, &group)
    );
    assert!(remove(&servers[followers[1]], &ns.mapped("r1")) < 300);
    let mut rest = want(4);
    rest.retain(|d| *d != dns[0].to_ascii_lowercase());
    assert!(
        eventually(WAIT, || group_members(dc, &group) == rest).is_some(),
        "{:?}",
        group_members(dc, &group)
    );
}

/// Writes to an `api` data set through different replicas at once all stay: each merges onto
/// the rows last committed (the store's, when another replica wrote them), one writer at a
/// time over all replicas.
#[test]
fn parallel_data_set_writes_through_three_replicas_are_all_kept() {
    let _g = shared();
    let db = pg().database("apiwrites");
    let r = replicas_of(
        &db,
        3,
        r#"
[[data_sets]]
name = "Blocked Apps"
case_sensitive = false
columns = [{ name = "app", key = true }]
source = { type = "api" }
"#,
    );
    std::thread::scope(|scope| {
        for i in 0..60 {
            let server = &r.servers[i % 3];
            scope.spawn(move || {
                let body = format!(r#"{{"action":"add","records":[{{"app":"app-{i}"}}]}}"#);
                let answer = server.call(
                    "PUT",
                    "/v1/data-sets/Blocked%20Apps/data",
                    server.admin_key.as_deref(),
                    body.as_bytes(),
                );
                assert_eq!(answer.status, 200, "{}", answer.body);
            });
        }
    });
    let mut want: Vec<String> = (0..60).map(|i| format!("app-{i}")).collect();
    want.sort();
    for s in &r.servers {
        let apps = || {
            let rows = s.get("/v1/data-sets/Blocked%20Apps/rows");
            let mut apps: Vec<String> = rows.json()["records"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["app"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            apps.sort();
            apps
        };
        assert!(
            eventually(WAIT, || apps() == want).is_some(),
            "rows lost: {:?}",
            apps()
        );
    }
}
