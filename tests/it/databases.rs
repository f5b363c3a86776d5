//! The agentless mode against a real PostgreSQL 15 (`scripts/postgres`, its own server: the
//! test rewrites its `pg_hba.conf`) and real `psql`: warden reconciles "Suspicious Users"
//! into the role `warden_blocked`, whose members the `pg_hba.conf` reject line refuses.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::{
    Server, enc, eventually, list_config, run, start_postgres, start_warden, warden_cmd,
};

/// A PostgreSQL server of this test only, destroyed on drop.
struct OwnPg {
    dir: PathBuf,
    port: u16,
}

impl Drop for OwnPg {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("destroy")
            .arg(&self.dir)
            .output();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres")
}

impl OwnPg {
    /// A server of its own for the test `name` (tests run in parallel).
    fn start(name: &str) -> OwnPg {
        let dir =
            std::env::temp_dir().join(format!("warden-pg-agentless-{name}-{}", std::process::id()));
        let port = start_postgres(&dir);
        OwnPg { dir, port }
    }

    /// SQL as the superuser over the socket; panics on an error.
    fn admin(&self, sql: &str) -> String {
        let out = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "psql",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{user}.secret")))
            .unwrap()
            .trim()
            .to_string()
    }

    /// `psql` as `user` over verified TLS.
    fn psql(&self, user: &str, sql: &str) -> Command {
        let mut c = Command::new("psql");
        c.arg(format!(
            "host=127.0.0.1 port={} dbname=appdb user={user} sslmode=verify-full sslrootcert={}",
            self.port,
            self.dir.join("tls/ca.pem").display()
        ))
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", self.password(user))
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c
    }

    fn members(&self) -> String {
        self.admin(
            "SELECT coalesce(string_agg(m.rolname, ',' ORDER BY m.rolname), '') \
             FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid \
             JOIN pg_roles m ON m.oid = a.member \
             WHERE r.rolname = 'warden_blocked' AND NOT a.admin_option",
        )
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The setup docs/reference.md gives ("The agentless mode"): the managed role, the warden login
/// with ADMIN OPTION on it (what PostgreSQL 15 needs to grant and revoke it) and pg_signal_backend
/// (to end sessions); the reject line first but after warden's own (on 15, ADMIN OPTION makes
/// warden a member).
fn provision(pg: &OwnPg) -> PathBuf {
    let password = "wardenpw-test-agentless";
    pg.admin(&format!(
        "CREATE ROLE warden_blocked NOLOGIN; CREATE ROLE warden LOGIN PASSWORD '{password}'; \
         GRANT warden_blocked TO warden WITH ADMIN OPTION; GRANT pg_signal_backend TO warden; \
         GRANT warden_blocked TO bob;"
    ));
    let hba = pg.dir.join("data/pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all peer\n\
         host all warden 127.0.0.1/32 scram-sha-256\n\
         host all +warden_blocked 127.0.0.1/32 reject\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    assert_eq!(pg.admin("SELECT pg_reload_conf()"), "t");
    let secret = pg.dir.join("warden.secret");
    crate::support::write_secret(&secret, format!("{password}\n"));
    secret
}

fn login(pg: &OwnPg, user: &str) -> Output {
    pg.psql(user, "SELECT current_user").output().unwrap()
}

fn refused(out: &Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("pg_hba.conf rejects")
}

fn start(pg: &OwnPg, secret: &Path) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[databases]]\nname = \"appdb\"\nhost = \"127.0.0.1\"\nport = {}\n\
         user = \"warden\"\npassword_file = \"{}\"\nca_file = \"{}\"\n\
         update_interval = \"1s\"\n\
         [[databases.roles]]\nlist = \"Suspicious Users\"\nrole = \"warden_blocked\"\n\
         match = '^[^\\\\]*\\\\(.*)$'\nsubstitute = \"$1\"\n",
        list_config("", "\"*\""),
        pg.port,
        secret.display(),
        pg.dir.join("tls/ca.pem").display()
    );
    std::fs::write(dir.path().join("warden.toml"), config).unwrap();
    let server = start_warden(dir.path(), &["--config", "warden.toml"]);
    (server, dir)
}

fn wait_members(pg: &OwnPg, server: &Server, want: &str) {
    let done = eventually(Duration::from_secs(30), || pg.members() == want);
    assert!(
        done.is_some(),
        "members of warden_blocked: {:?}, want {want:?}\n{}",
        pg.members(),
        server.logs()
    );
}

/// First sync revokes bob (a member the list lacks); a listed principal becomes a member,
/// its open session is ended and its logins are refused; a hand revoke is repaired; removal
/// from the list revokes and logins work again.
#[test]
fn a_list_is_reconciled_into_a_role_that_pg_hba_refuses() {
    let pg = OwnPg::start("reconcile");
    let secret = provision(&pg);
    assert!(
        refused(&login(&pg, "bob")),
        "bob is blocked before warden runs"
    );
    let ok = login(&pg, "alice");
    assert!(ok.status.success(), "{}", text(&ok));
    // An open session of alice, ended when she is blocked.
    let mut session: Child = pg.psql("alice", "SELECT pg_sleep(120)").spawn().unwrap();

    let (mut server, dir) = start(&pg, &secret);
    // First sync: bob is revoked, and can log in again.
    wait_members(&pg, &server, "");
    let ok = login(&pg, "bob");
    assert!(ok.status.success(), "{}", text(&ok));

    assert_eq!(server.add_member("CORP\\alice"), 201);
    assert_eq!(server.add_member("CORP\\nobody"), 201);
    wait_members(&pg, &server, "alice");
    let ended = eventually(Duration::from_secs(30), || {
        session.try_wait().unwrap().is_some()
    });
    assert!(ended.is_some(), "alice's open session was not ended");
    let out = session.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("terminating connection"),
        "{}",
        text(&out)
    );
    assert!(refused(&login(&pg, "alice")), "alice's login is refused");

    // The unmatched principal is unresolved, recorded, and stops nobody.
    let unresolved = eventually(Duration::from_secs(30), || {
        let r = server.get("/v1/databases");
        let db = &r.json()["databases"][0];
        db["recent_updates"][0]["unresolved"] == serde_json::json!(["CORP\\nobody"])
            && db["status"] == "degraded"
    });
    assert!(unresolved.is_some(), "{}", server.get("/v1/databases").body);

    // Sync now, over HTTP: a revoke by hand is undone at once.
    pg.admin("REVOKE warden_blocked FROM alice");
    let r = server.post_json("/v1/databases/appdb/sync", &serde_json::json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    // (The 1 s schedule may have got there first: then this run added nothing.)
    assert_eq!(
        r.json()["runs"][0]["update"]["error"],
        serde_json::Value::Null
    );
    assert_eq!(pg.members(), "alice");
    let r = server.post_json("/v1/databases/nope/sync", &serde_json::json!({}));
    assert_eq!(r.status, 404, "{}", r.body);

    // Drift repair: a revoke by hand is undone by the next scheduled run. (Not read back in
    // between: the 1 s schedule may already have granted it again — the full suite saw that.)
    pg.admin("REVOKE warden_blocked FROM alice");
    wait_members(&pg, &server, "alice");

    // Off the list: revoked, and she logs in again.
    let r = server.call(
        "DELETE",
        &format!(
            "/v1/lists/Suspicious%20Users/members/{}",
            enc("CORP\\alice")
        ),
        server.admin_key.as_deref(),
        b"",
    );
    assert!(r.status < 300, "{} {}", r.status, r.body);
    wait_members(&pg, &server, "");
    let ok = login(&pg, "alice");
    assert!(ok.status.success(), "{}", text(&ok));

    // The CLI, with the server stopped (so no schedule runs): sync now repairs a hand grant.
    server.stop();
    pg.admin("GRANT warden_blocked TO alice");
    let cli = |args: &[&str]| {
        let mut c = warden_cmd(dir.path());
        c.args(["--config", "warden.toml"]).args(args);
        run(c)
    };
    let r = cli(&["databases", "sync", "appdb"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("granted 0, revoked 1"), "{}", r.stdout);
    assert_eq!(pg.members(), "");
    let r = cli(&["databases", "status", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let status: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        status[0]["recent_updates"][0]["kind"], "reconcile",
        "{}",
        r.stdout
    );
    assert_eq!(status[0]["recent_updates"][0]["target"], "warden_blocked");
    assert_eq!(status[0]["recent_updates"][0]["removed"], 1);

    // A managed role that does not exist fails the run, by name, and changes nothing.
    let config = std::fs::read_to_string(dir.path().join("warden.toml")).unwrap();
    std::fs::write(
        dir.path().join("warden.toml"),
        config.replace("role = \"warden_blocked\"", "role = \"no_such_role\""),
    )
    .unwrap();
    pg.admin("GRANT warden_blocked TO bob");
    let r = cli(&["databases", "sync", "appdb"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("role \"no_such_role\" does not exist"),
        "{}",
        r.stderr
    );
    assert_eq!(pg.members(), "bob");
}

/// The documented role pattern (`^[^\\]*\\(.*)$`, docs/reference.md "The agentless mode")
/// applies to the account's names: a member listed by its UPN is the account `CORP\alice`,
/// granted the role as `alice`, and `pg_hba` refuses her; the account's provenance names the
/// role with the time the grant landed.
#[test]
fn a_member_listed_by_upn_is_granted_the_role_and_refused_by_pg_hba() {
    let pg = OwnPg::start("upn");
    let secret = provision(&pg);
    let (server, dir) = start(&pg, &secret);
    wait_members(&pg, &server, "");
    assert!(login(&pg, "alice").status.success());
    assert_eq!(server.add_member("alice@corp.example.test"), 201);
    wait_members(&pg, &server, "alice");
    assert!(refused(&login(&pg, "alice")), "alice's login is refused");
    let r = server.get(&format!("/v1/accounts/{}", enc("ALICE@corp.example.test")));
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.json();
    assert_eq!(answer["account"]["canonical"], "CORP\\alice", "{answer}");
    let role = answer["surfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["surface"] == "role")
        .cloned()
        .unwrap_or_default();
    assert_eq!(role["target"], "appdb/warden_blocked", "{answer}");
    assert_eq!(role["state"], "landed", "{answer}");
    assert!(role["since_ms"].as_i64().unwrap() > 0, "{answer}");
    drop(dir);
}

/// Issue 24 §7: twelve members, ten of them expiring in the same second. The expiry sweep
/// holds (more than half the list at once): decisions stay block, and the agentless role
/// keeps all twelve — the reconcile reads the same "active" the snapshot does, not the clock.
#[test]
fn an_expiry_hold_holds_in_the_agentless_role_too() {
    let pg = OwnPg::start("hold");
    let secret = provision(&pg);
    let users: Vec<String> = (0..12).map(|i| format!("user{i:02}")).collect();
    pg.admin(
        &users
            .iter()
            .map(|u| format!("CREATE ROLE {u} LOGIN;"))
            .collect::<String>(),
    );
    let (server, _dir) = start(&pg, &secret);
    wait_members(&pg, &server, "");
    let expires_at = warden::base::time::format_rfc3339(warden::base::time::now() + 8);
    for (i, u) in users.iter().enumerate() {
        let mut body = serde_json::json!({ "principal": format!("CORP\\{u}"), "reason": "t" });
        if i < 10 {
            body["expires_at"] = expires_at.clone().into();
        }
        let added = server.post_json("/v1/lists/Suspicious%20Users/members", &body);
        assert_eq!(added.status, 201, "{}", added.body);
    }
    let all = users.join(",");
    wait_members(&pg, &server, &all);

    let held = eventually(Duration::from_secs(30), || {
        let lists = server.get("/v1/lists").json();
        !lists["lists"][0]["expiry_hold"].is_null()
    });
    assert!(
        held.is_some(),
        "no hold: {}\n{}",
        server.get("/v1/lists").body,
        server.logs()
    );
    let hold = server.get("/v1/lists").json()["lists"][0]["expiry_hold"].clone();
    assert_eq!(
        (hold["due"].clone(), hold["active"].clone()),
        (10.into(), 12.into())
    );
    // Reconciles run every second; one that started two seconds after the hold showed has
    // seen the held members as they are.
    let seen = warden::base::time::now_ms();
    let newest_run = |s: &Server| {
        s.get("/v1/databases").json()["databases"][0]["recent_updates"][0]["started_at_ms"]
            .as_i64()
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(30), || newest_run(&server)
            > seen + 2000)
        .is_some(),
        "no reconcile ran after the hold: {}",
        server.get("/v1/databases").body
    );
    assert_eq!(pg.members(), all, "the agentless role let held members go");
    assert_eq!(server.decision("orders", "CORP\\user03"), "block");
}
