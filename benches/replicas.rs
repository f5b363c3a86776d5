//! Replicas on one PostgreSQL store (issue #18), measured end to end with the real binary:
//!
//! 1. propagation — a member added through replica A, then C asked until it blocks: p50/p95
//!    over 100 changes (plus B, and the time until A itself blocks);
//! 2. write throughput — member adds per second over HTTP, one client and eight, on a SQLite
//!    store and on the PostgreSQL store;
//! 3. decision throughput — `GET /v1/decision` from one load generator with N keep-alive
//!    connections, spread over three replicas (connection i on replica i mod 3, as an L4
//!    balancer would) against all on one.
//!
//! `cargo bench --bench replicas` (needs `scripts/postgres install`; starts its own
//! PostgreSQL on a free port, and three `warden serve` on loopback). Prints a table for
//! BENCHMARKS.md. Environment: `REPLICAS_BENCH_SECONDS` (default 10) per throughput run,
//! `REPLICAS_BENCH_CONNECTIONS` (default 24).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_warden");

const CONFIG: &str = r#"
[server]
anonymous_decisions = true

[store]
path = "warden.db"
STORE

[[lists]]
name = "Suspicious Users"

[[data_sets]]
name = "Suspicious Users"
case_sensitive = false
columns = [{ name = "user", key = true }, { name = "reason" }]
source = { type = "list", list = "Suspicious Users" }

[[policies]]
name = "Block suspicious database users"
action = "block"
severity = "high"
apply_to = ["*"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "Suspicious Users"
search_in = ["user"]
"#;

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn call(&mut self, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
        let auth = key
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        write!(
            self.writer,
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

struct Server {
    child: Child,
    addr: SocketAddr,
    key: Option<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(store: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("warden.toml"),
        CONFIG.replace("STORE", store),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .env("RUST_LOG", "warn,warden=info")
        .args([
            "--config",
            "warden.toml",
            "--log-json",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("warden serving") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if let Some(a) = v["fields"]["address"].as_str() {
                    let _ = tx.send(a.parse::<SocketAddr>().unwrap());
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("warden serving");
    let key = std::fs::read_to_string(dir.path().join("warden.db.bootstrap-admin.key"))
        .ok()
        .map(|k| k.trim().to_owned());
    Server {
        child,
        addr,
        key,
        _dir: dir,
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres")
}

/// Our own PostgreSQL and the `[store]` keys of a database on it.
struct Pg {
    dir: PathBuf,
    port: u16,
    secret: PathBuf,
}

impl Pg {
    fn start() -> Pg {
        let dir = std::env::temp_dir().join(format!("warden-bench-pg-{}", std::process::id()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ok = Command::new(script())
            .arg("start")
            .arg(&dir)
            .arg(port.to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "scripts/postgres start");
        let secret = dir.join("bench.secret");
        let password = format!("b{}{}", std::process::id(), port);
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&secret)
                .unwrap();
            f.write_all(password.as_bytes()).unwrap();
        }
        let pg = Pg { dir, port, secret };
        pg.psql(&format!("CREATE ROLE warden LOGIN PASSWORD '{password}'"));
        pg
    }

    fn psql(&self, sql: &str) {
        let ok = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "psql",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
            ])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .status()
            .unwrap();
        assert!(ok.success(), "psql {sql}");
    }

    fn store(&self, db: &str) -> String {
        // As the README sets a store up: warden's alone (warden refuses one open to PUBLIC).
        self.psql(&format!("CREATE DATABASE {db} OWNER warden"));
        self.psql(&format!("REVOKE CONNECT ON DATABASE {db} FROM PUBLIC"));
        format!(
            "url = \"postgresql://warden@127.0.0.1:{}/{db}\"\npassword_file = \"{}\"\n\
             ca_file = \"{}\"",
            self.port,
            self.secret.display(),
            self.dir.join("tls/ca.pem").display()
        )
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("destroy")
            .arg(&self.dir)
            .status();
    }
}

fn add(conn: &mut Conn, key: &str, principal: &str) -> u16 {
    let body = format!(r#"{{"principal":"{principal}","reason":"bench"}}"#);
    conn.call(
        "POST",
        "/v1/lists/Suspicious%20Users/members",
        Some(key),
        &body,
    )
    .0
}

fn blocks(conn: &mut Conn, user: &str) -> bool {
    let (status, body) = conn.call(
        "GET",
        &format!("/v1/decision?service=orders&db_user={user}"),
        None,
        "",
    );
    status == 200 && body.contains(r#""decision":"block""#)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut c = Conn::open(addr);
    while c.call("GET", "/readyz", None, "").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn propagation(replicas: &[Server]) {
    let key = replicas[0].key.clone().unwrap();
    let mut a = Conn::open(replicas[0].addr);
    let mut b = Conn::open(replicas[1].addr);
    let mut c = Conn::open(replicas[2].addr);
    let (mut on_a, mut on_b, mut on_c) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..100 {
        let user = format!("prop{i}");
        let started = Instant::now();
        assert!(add(&mut a, &key, &user) < 300);
        on_a.push(started.elapsed());
        while !blocks(&mut c, &user) {}
        on_c.push(started.elapsed());
        while !blocks(&mut b, &user) {}
        on_b.push(started.elapsed());
    }
    for (name, v) in [
        ("A (the write returns)", &mut on_a),
        ("C blocks", &mut on_c),
        ("B blocks (asked after C)", &mut on_b),
    ] {
        v.sort();
        println!(
            "propagation write on A → {name}: p50 {:.2} ms  p95 {:.2} ms  max {:.2} ms",
            percentile(v, 0.5).as_secs_f64() * 1e3,
            percentile(v, 0.95).as_secs_f64() * 1e3,
            v[v.len() - 1].as_secs_f64() * 1e3
        );
    }
}

/// Member adds per second with `clients` concurrent clients, `per_client` adds each.
fn writes(server: &Server, label: &str, clients: usize, per_client: usize) {
    let key = server.key.clone().unwrap();
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let key = key.clone();
            let addr = server.addr;
            let label = label.to_owned();
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                for i in 0..per_client {
                    assert!(add(&mut c, &key, &format!("{label}{clients}t{t}n{i}")) < 300);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = clients * per_client;
    println!(
        "member adds, {label}, {clients} client(s): {n} in {:.2} s = {:.0}/s",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64()
    );
}

/// Decisions per second from `connections` keep-alive connections spread over `targets`.
fn decisions(targets: &[SocketAddr], connections: usize, seconds: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..connections)
        .map(|i| {
            let addr = targets[i % targets.len()];
            let stop = Arc::clone(&stop);
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let user = if n.is_multiple_of(2) {
                        "prop7"
                    } else {
                        "nobody"
                    };
                    c.call(
                        "GET",
                        &format!("/v1/decision?service=orders&db_user={user}"),
                        None,
                        "",
                    );
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / seconds as f64
}

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: nothing to do then
    // (this one starts servers and takes a minute).
    if !std::env::args().any(|a| a == "--bench") {
        println!("replicas: run with `cargo bench --bench replicas`");
        return;
    }
    let seconds: u64 = std::env::var("REPLICAS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let connections: usize = std::env::var("REPLICAS_BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let pg = Pg::start();
    let store = pg.store("bench");
    let mut replicas = vec![serve(&store)];
    wait_ready(replicas[0].addr);
    for _ in 0..2 {
        let mut s = serve(&store);
        s.key = replicas[0].key.clone();
        wait_ready(s.addr);
        replicas.push(s);
    }
    propagation(&replicas);

    let sqlite = serve("");
    wait_ready(sqlite.addr);
    for clients in [1, 8] {
        writes(&sqlite, "SQLite", clients, 500 / clients);
        writes(&replicas[0], "PostgreSQL", clients, 500 / clients);
    }
    drop(sqlite);

    let all: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let one = decisions(&all[..1], connections, seconds);
    let three = decisions(&all, connections, seconds);
    println!(
        "decisions/s, {connections} connections, {seconds} s: one replica {one:.0}, \
         three replicas {three:.0} ({:.2}×)",
        three / one
    );
}
