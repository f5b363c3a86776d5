//! The PostgreSQL gate against a real PostgreSQL server (`scripts/postgres`) and real `psql`:
//! allowed users connect and query through it over verified TLS, blocked users are refused
//! with 28000, an open session is ended with 57P01 when its user is blocked, and bad
//! start-up packets harm nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Server, eventually, free_port, list_config, postgres, start_warden};

struct Gate {
    server: Server,
    port: u16,
    _dir: tempfile::TempDir,
}

fn start_gate() -> Gate {
    let pg = postgres();
    let dir = tempfile::tempdir().unwrap();
    // The server's own certificate, so SCRAM channel binding verifies through the gate.
    let port = free_port();
    let config = format!(
        "{}\n[[gates]]\nname = \"appdb\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"localhost:{}\"\n\
         service = \"pg-appdb\"\ntls_cert_file = \"{dir}/tls/server.pem\"\n\
         tls_key_file = \"{dir}/tls/server.key\"\nupstream_ca_file = \"{}\"\n",
        list_config("", "\"pg-*\""),
        pg.port,
        pg.ca.display(),
        dir = pg.dir.display(),
    );
    std::fs::write(dir.path().join("warden.toml"), config).unwrap();
    let server = start_warden(dir.path(), &["--config", "warden.toml"]);
    let up = eventually(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up.is_some(), "the gate did not listen:\n{}", server.logs());
    Gate {
        server,
        port,
        _dir: dir,
    }
}

fn psql(gate: &Gate, user: &str, sslmode: &str, ca: &Path, sql: &str) -> Command {
    let mut c = Command::new("psql");
    c.arg(format!(
        "host=127.0.0.1 port={} dbname=appdb user={user} sslmode={sslmode} sslrootcert={}",
        gate.port,
        ca.display()
    ))
    .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
    .env("PGPASSWORD", postgres().password(user))
    .env("PGCONNECT_TIMEOUT", "10")
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

fn gate_ca(_gate: &Gate) -> std::path::PathBuf {
    postgres().ca.clone()
}

#[test]
fn allowed_users_query_blocked_users_are_refused_and_ended() {
    let gate = start_gate();
    let ca = gate_ca(&gate);
    for mode in ["require", "verify-full"] {
        let out = psql(
            &gate,
            "alice",
            mode,
            &ca,
            "SELECT current_user || ':' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{mode}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "alice:true",
            "{}",
            text(&out)
        );
    }

    // bob sleeps in an open session, which GET /v1/gates shows.
    let sleeper = psql(&gate, "bob", "verify-full", &ca, "SELECT pg_sleep(60)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let shown = eventually(Duration::from_secs(20), || {
        let r = gate.server.get("/v1/gates");
        r.status == 200
            && r.json()["gates"][0]["sessions"]
                .as_array()
                .is_some_and(|s| {
                    s.iter()
                        .any(|s| s["user"] == "bob" && s["backend_pid"].is_number())
                })
    });
    assert!(shown.is_some(), "{}", gate.server.get("/v1/gates").body);

    let listed = Instant::now();
    assert_eq!(gate.server.add_member("bob"), 201);
    let out = sleeper.wait_with_output().unwrap();
    let ended = listed.elapsed();
    println!("bob's open session ended {ended:?} after the list change");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains("your access was suspended by policy"),
        "{}",
        text(&out)
    );
    // Its backend is gone too: the gate cancelled the query and closed the socket.
    let pg = postgres();
    let gone = eventually(Duration::from_secs(20), || {
        let out = Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} dbname=appdb user=alice sslmode=verify-full sslrootcert={}",
                pg.port,
                pg.ca.display()
            ))
            .args([
                "-X",
                "-At",
                "-c",
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bob'",
            ])
            .env("PGPASSWORD", pg.password("alice"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "0"
    });
    assert!(gone.is_some(), "bob's backend still runs");
    println!(
        "bob's backend gone {:?} after the session ended",
        gone.unwrap()
    );

    // A new session for bob is refused; alice still gets through.
    let out = psql(&gate, "bob", "verify-full", &ca, "SELECT 1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "access for this user is suspended by policy \"Block suspicious database users\""
        ),
        "{}",
        text(&out)
    );
    let out = psql(&gate, "alice", "verify-full", &ca, "SELECT 1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let metrics = gate.server.get("/metrics").body;
    assert!(
        metrics.contains("warden_gate_refused_total{gate=\"appdb\",reason=\"blocked\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_gate_sessions_ended_total{gate=\"appdb\",reason=\"blocked\"} 1"),
        "{metrics}"
    );
}

#[test]
fn oversized_and_garbage_startup_packets_are_refused_and_the_gate_serves_on() {
    let gate = start_gate();
    // A 10 MB start-up packet: refused after its length field, never read.
    let mut s = TcpStream::connect(("127.0.0.1", gate.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut big = (10_000_000u32).to_be_bytes().to_vec();
    big.extend_from_slice(&196_608u32.to_be_bytes());
    big.extend(std::iter::repeat_n(b'a', 1 << 16));
    let _ = s.write_all(&big);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert_eq!(answer.first(), Some(&b'E'), "{answer:?}");
    assert!(String::from_utf8_lossy(&answer).contains("08P01"));
    // Garbage.
    let mut s = TcpStream::connect(("127.0.0.1", gate.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert_eq!(answer.first(), Some(&b'E'), "{answer:?}");
    // Still serving.
    let out = psql(&gate, "alice", "verify-full", &gate_ca(&gate), "SELECT 42")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
}
