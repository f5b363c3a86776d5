//! The MariaDB/MySQL gate against a real MariaDB 10.11 (`scripts/mariadb`) and the real
//! `mariadb` client: allowed users query, listed users are refused with the policy's name,
//! open sessions of users who become blocked end and their statements stop on the server,
//! TLS verify-full against the gate, bad handshakes, an unreachable server.
//!
//! Each test runs warden in-process (`warden::server::Server`) and learns where it listens
//! from its `Handle` — no log is read.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use warden::server::{Handle, Intent, Server};

use crate::support::{Mariadb, eventually, free_port, http, list_config, mariadb, write_secret};

/// A warden running in this process with one MySQL gate.
struct Gate {
    runtime: tokio::runtime::Runtime,
    handle: Handle,
    http: SocketAddr,
    port: u16,
    key: String,
    _dir: tempfile::TempDir,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.runtime.block_on(self.handle.send(Intent::Stop));
    }
}

impl Gate {
    fn post(&self, path: &str, body: &serde_json::Value) -> crate::support::HttpResponse {
        let auth = format!("Bearer {}", self.key);
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        http(
            self.http,
            "POST",
            path,
            &headers,
            body.to_string().as_bytes(),
        )
    }

    fn get(&self, path: &str) -> crate::support::HttpResponse {
        let auth = format!("Bearer {}", self.key);
        http(
            self.http,
            "GET",
            path,
            &[("Authorization", auth.as_str())],
            b"",
        )
    }

    fn list(&self, user: &str) {
        let body = serde_json::json!({ "principal": user, "reason": "test" });
        let r = self.post("/v1/lists/Suspicious%20Users/members", &body);
        assert_eq!(r.status, 201, "{}", r.body);
    }

    /// The server's connection ids of the gate's open sessions of `user`.
    fn sessions_of(&self, user: &str) -> Vec<u64> {
        let r = self.get("/v1/gates");
        r.json()["gates"][0]["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["user"] == user)
            .filter_map(|s| s["backend_pid"].as_u64())
            .collect()
    }
}

/// Starts warden with a gate `mariadb` (listening on a port of its choosing) in front of
/// `upstream`, its own certificate from the test CA; `extra` adds keys to the gate.
fn start_gate(upstream: u16, extra: &str) -> Gate {
    let db = mariadb();
    let dir = tempfile::tempdir().unwrap();
    // The gate's key, the gate's alone (warden refuses one others may read).
    let key = dir.path().join("gate.key");
    write_secret(&key, std::fs::read(db.dir.join("tls/gate.key")).unwrap());
    let control = dir.path().join("control.secret");
    write_secret(&control, db.password("warden_control"));
    // Bare MariaDB logins (bob) are CORP's accounts, so listing bob (CORP\bob) refuses them.
    let config = format!(
        r#"{}
[[domains]]
netbios = "CORP"
dns = "corp.example.test"
default = true

[[gates]]
name = "mariadb"
protocol = "mysql"
listen = "127.0.0.1:0"
upstream = "127.0.0.1:{upstream}"
upstream_ca_file = "{ca}"
service = "mariadb"
tls_cert_file = "{cert}"
tls_key_file = "{key}"
control_user = "warden_control"
control_password_file = "{control}"
{extra}
"#,
        list_config("listen = \"127.0.0.1:0\"", "\"*\""),
        extra = extra.replace("{dir}", &dir.path().display().to_string()),
        ca = db.ca.display(),
        cert = db.dir.join("tls/gate.pem").display(),
        key = key.display(),
        control = control.display(),
    );
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, config).unwrap();
    let config = warden::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(Server::open(config, None))
        .unwrap_or_else(|e| panic!("{e}"));
    let handle = server.handle();
    runtime.spawn(server.run());
    let http = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), handle.ready())
            .await
            .expect("the server was not ready within 30 s")
    });
    let port = handle
        .address(&warden::front::gate_front("mariadb"))
        .expect("the gate listens")
        .port();
    let key = std::fs::read_to_string(dir.path().join(crate::support::BOOTSTRAP_KEY_FILE))
        .unwrap()
        .trim()
        .to_owned();
    Gate {
        runtime,
        handle,
        http,
        port,
        key,
        _dir: dir,
    }
}

/// The real `mariadb` client as `user` (password from the test server's secrets) against
/// `port`, running `sql`; `tls` are its TLS options.
fn client(port: u16, user: &str, password: &str, tls: &[&str], sql: &str) -> Command {
    let mut c = Command::new("mariadb");
    c.args(["--no-defaults", "-N", "-B", "--connect-timeout=10"])
        .args(["-h", "127.0.0.1", "-P", &port.to_string(), "-u", user])
        .args(tls)
        .args(["-e", sql])
        .env("MYSQL_PWD", password)
        .stdin(Stdio::null());
    c
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn verify_full(db: &Mariadb) -> Vec<String> {
    vec![
        format!("--ssl-ca={}", db.ca.display()),
        "--ssl-verify-server-cert".to_owned(),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn allowed_users_query_and_listed_users_are_refused_with_the_policy() {
    let db = mariadb();
    // Every refusal also reaches the SOC: a file sink of OCSF events.
    let gate = start_gate(
        db.port,
        "allow_plain = true\n\n[[events.sinks]]\nname = \"archive\"\ntype = \"file\"\n\
         path = \"{dir}/events.jsonl\"",
    );
    let tls = verify_full(db);
    // mysql_native_password, through TLS verified against the gate's certificate
    // (verify-full: the CA and the name 127.0.0.1).
    let out = client(
        gate.port,
        "alice",
        &db.password("alice"),
        &args(&tls),
        "SELECT CURRENT_USER(), @@ssl_cipher IS NOT NULL",
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("alice@%"));
    // ed25519 (an auth switch relayed end to end), on plain TCP the gate allows here.
    let out = client(
        gate.port,
        "carol",
        &db.password("carol"),
        &[],
        "SELECT CURRENT_USER()",
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // A wrong password is the server's own refusal: nothing about the list.
    let out = client(gate.port, "bob", "wrong", &[], "SELECT 1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Access denied for user 'bob'"),
        "{}",
        text(&out)
    );

    gate.list("bob");
    let out = client(
        gate.port,
        "bob",
        &db.password("bob"),
        &args(&tls),
        "SELECT 1",
    )
    .output()
    .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ERROR 1045 (28000)")
            && err.contains(
                "access for this user is suspended by policy \"Block suspicious database users\""
            ),
        "{}",
        text(&out)
    );
    // The same with a wrong password: the server's refusal, so the list is not told.
    let out = client(gate.port, "bob", "wrong", &[], "SELECT 1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("policy"), "{}", text(&out));
    // The refusal is counted and, at the next flush, audited.
    let metrics = http(gate.http, "GET", "/metrics", &[], b"").body;
    assert!(
        metrics.contains("warden_gate_refused_total{gate=\"mariadb\",reason=\"blocked\"} 1"),
        "{metrics}"
    );
    // … and sent as an OCSF Authentication failure, as the PostgreSQL gate's are.
    let events = gate._dir.path().join("events.jsonl");
    let mut refusal = None;
    eventually(Duration::from_secs(10), || {
        let lines = std::fs::read_to_string(&events).unwrap_or_default();
        refusal = lines
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["metadata"]["event_code"] == "gate.refusal");
        refusal.is_some()
    });
    let refusal = refusal.unwrap_or_else(|| panic!("no gate.refusal event in {events:?}"));
    assert_eq!(refusal["class_uid"], 3002);
    assert_eq!(refusal["status"], "Failure");
    assert_eq!(refusal["user"]["name"], "bob");
    assert_eq!(refusal["service"]["name"], "mariadb");
    assert_eq!(refusal["dst_endpoint"]["name"], "mariadb");
    assert_eq!(
        refusal["unmapped"]["policy"],
        "Block suspicious database users"
    );
}

#[test]
fn a_gate_without_allow_plain_refuses_plain_clients_and_serves_tls_ones() {
    let db = mariadb();
    let gate = start_gate(db.port, "");
    let out = client(
        gate.port,
        "alice",
        &db.password("alice"),
        &["--skip-ssl"],
        "SELECT 1",
    )
    .output()
    .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("accepts TLS connections only"),
        "{}",
        text(&out)
    );
    let tls = verify_full(db);
    let out = client(
        gate.port,
        "alice",
        &db.password("alice"),
        &args(&tls),
        "SELECT 1",
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// An open session running `SELECT SLEEP(60)` ends within about a second of the list change,
/// with the policy's name; a CPU-bound statement (which closing its connection would not
/// stop) is stopped on the server too: the gate kills both through its control account.
#[test]
fn open_sessions_of_a_listed_user_end_and_their_statements_stop_on_the_server() {
    let db = mariadb();
    let gate = start_gate(db.port, "allow_plain = true");
    let sleeper = client(
        gate.port,
        "bob",
        &db.password("bob"),
        &[],
        "SELECT SLEEP(60)",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let busy_sql = "SELECT BENCHMARK(20000000000, MD5('warden'))";
    let busy = client(gate.port, "alice", &db.password("alice"), &[], busy_sql)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ids = Vec::new();
    let running = eventually(Duration::from_secs(20), || {
        ids = gate.sessions_of("bob");
        ids.extend(gate.sessions_of("alice"));
        ids.len() == 2 && {
            let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            let n = db.admin(&format!(
                "SELECT COUNT(*) FROM information_schema.processlist \
                 WHERE id IN ({list}) AND info LIKE 'SELECT %'"
            ));
            n.trim() == "2"
        }
    });
    assert!(running.is_some(), "both statements never ran: {ids:?}");
    let listed = Instant::now();
    gate.list("bob");
    gate.list("alice");
    for (child, who) in [(sleeper, "bob"), (busy, "alice")] {
        let out = child.wait_with_output().unwrap();
        println!(
            "{who}'s open session ended {:?} after the list change",
            listed.elapsed()
        );
        assert!(!out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("your access was suspended by policy \"Block suspicious database users\""),
            "{who}: {}",
            text(&out)
        );
    }
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let gone = eventually(Duration::from_secs(20), || {
        let n = db.admin(&format!(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE id IN ({list})"
        ));
        n.trim() == "0"
    });
    assert!(gone.is_some(), "the statements still run on the server");
    println!(
        "both statements gone from the processlist {:?} after the list change",
        listed.elapsed()
    );
    let metrics = http(gate.http, "GET", "/metrics", &[], b"").body;
    assert!(
        metrics.contains("warden_gate_sessions_ended_total{gate=\"mariadb\",reason=\"blocked\"} 2"),
        "{metrics}"
    );
}

/// Reads one packet's payload (the gate's greeting or its ERR).
fn read_packet(s: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut header = [0u8; 4];
    s.read_exact(&mut header)?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload)?;
    Ok(payload)
}

#[test]
fn garbage_and_oversized_handshakes_are_refused_without_harm() {
    use std::io::Write;
    let db = mariadb();
    let gate = start_gate(db.port, "allow_plain = true\nmax_startup_bytes = 4096");
    let cases: [(&str, Vec<u8>); 3] = [
        ("garbage", b"\x05\x00\x00\x01hello".to_vec()),
        ("oversized", {
            let mut p = vec![0xff, 0xff, 0x0f, 0x01];
            p.extend_from_slice(&[b'x'; 1024]);
            p
        }),
        ("a pre-4.1 client", {
            let mut p = vec![40, 0, 0, 1];
            p.extend_from_slice(&[0; 40]);
            p
        }),
    ];
    for (what, bytes) in cases {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", gate.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let greeting = read_packet(&mut s).unwrap();
        assert_eq!(greeting[0], 10, "{what}: not a greeting");
        s.write_all(&bytes).unwrap();
        let answer = read_packet(&mut s).unwrap();
        assert_eq!(
            &answer[..3],
            b"\xff\x13\x04",
            "{what}: not ERR 1043 ({answer:?})"
        );
        println!("{what}: {}", String::from_utf8_lossy(&answer[9..]));
    }
    // The gate serves on.
    let out = client(gate.port, "alice", &db.password("alice"), &[], "SELECT 1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let metrics = http(gate.http, "GET", "/metrics", &[], b"").body;
    assert!(
        metrics
            .contains("warden_gate_refused_total{gate=\"mariadb\",reason=\"invalid_startup\"} 3"),
        "{metrics}"
    );
}

#[test]
fn the_server_down_is_a_clear_error_not_a_hang() {
    // Nothing listens on this port.
    let gate = start_gate(free_port(), "allow_plain = true\nstartup_timeout = \"3s\"");
    let started = Instant::now();
    let out = client(gate.port, "alice", "whatever", &[], "SELECT 1")
        .output()
        .unwrap();
    println!("refused after {:?}", started.elapsed());
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the database is unreachable through the gate"),
        "{}",
        text(&out)
    );
}

/// A session that waits on its client for `idle_timeout` ends, its client told why at its next
/// command; a statement the server works on for longer than the timeout is not idleness.
#[test]
fn an_idle_session_ends_after_idle_timeout_a_long_statement_does_not() {
    use std::io::Write;
    let db = mariadb();
    let gate = start_gate(db.port, "allow_plain = true\nidle_timeout = \"1s\"");
    let password = db.password("alice");
    let out = client(gate.port, "alice", &password, &[], "SELECT SLEEP(3)")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The same client, its statements on stdin: one at once, the next after 4 s of silence.
    let mut session = Command::new("mariadb")
        .args(["--no-defaults", "-N", "-B", "--skip-reconnect"])
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &gate.port.to_string(),
            "-u",
            "alice",
        ])
        .env("MYSQL_PWD", &password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = session.stdin.take().unwrap();
    stdin.write_all(b"SELECT 'first';\n").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    // The client may notice the closed connection while writing or while reading.
    let _ = stdin.write_all(b"SELECT 'second';\n");
    drop(stdin);
    let out = session.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("first"), "{}", text(&out));
    assert!(!stdout.contains("second"), "{}", text(&out));
    assert!(!out.status.success(), "{}", text(&out));
    // Told at the packet its next command expects (ER_CLIENT_INTERACTION_TIMEOUT).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ERROR 4031 (HY000)") && err.contains("the gate's idle timeout"),
        "{}",
        text(&out)
    );
    let metrics = http(gate.http, "GET", "/metrics", &[], b"").body;
    assert!(
        metrics.contains("warden_gate_sessions_ended_total{gate=\"mariadb\",reason=\"idle\"} 1"),
        "{metrics}"
    );
}
