//! Connection limits and transport against the real binary: a client trickling its headers
//! (slowloris) is cut by the header timeout while decisions keep flowing, and the optional TLS
//! listener serves HTTPS that a client verifies against the server's CA.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{list_config, make_certs, start_warden};

fn config(server_extra: &str) -> String {
    list_config(
        &format!("anonymous_decisions = true\nheader_read_timeout = \"1s\"\n{server_extra}"),
        r#""*""#,
    )
}

/// Trickles one header byte at a time; returns how long until the server closed the
/// connection, or None if it was still open after `patience`.
fn trickle(addr: std::net::SocketAddr, patience: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut buf = [0u8; 512];
    for byte in head.iter().cycle().take(10_000) {
        if start.elapsed() > patience {
            return None;
        }
        if s.write_all(&[*byte]).is_err() {
            return Some(start.elapsed());
        }
        match s.read(&mut buf) {
            // Closed (possibly after a 408): the server gave up on us.
            Ok(_) => return Some(start.elapsed()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn slowloris_is_cut_by_the_header_timeout_while_decisions_flow() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("warden.toml"), config("")).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let addr = server.addr;
    let slow: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || trickle(addr, Duration::from_secs(20))))
        .collect();
    // Decisions keep answering while the slow clients hold their connections.
    for _ in 0..50 {
        let r = server.call(
            "GET",
            "/v1/decision?service=orders&db_user=alice",
            None,
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for t in slow {
        let cut = t.join().unwrap();
        assert!(
            cut.is_some(),
            "a client trickling headers was never disconnected"
        );
    }
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is required for the TLS test (apt-get install curl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn tls_listener_serves_https_verified_against_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    make_certs(tmp.path());
    let config = config("tls_cert_file = \"server.pem\"\ntls_key_file = \"server.key\"");
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let url = format!(
        "https://127.0.0.1:{}/v1/decision?service=orders&db_user=alice",
        server.addr.port()
    );
    let ca = tmp.path().join("ca.pem");
    let (ok, out) = curl(&["--cacert", ca.to_str().unwrap(), &url]);
    assert!(ok, "{out}");
    assert!(out.contains(r#""decision":"allow""#), "{out}");
    // Without the CA the client refuses the certificate: it really is TLS, and verifiable.
    let (ok, out) = curl(&[&url]);
    assert!(!ok, "an unverified certificate was accepted: {out}");
    // Plain HTTP to the TLS port gets nothing useful.
    let plain = format!("http://127.0.0.1:{}/healthz", server.addr.port());
    let (ok, out) = curl(&[&plain]);
    assert!(!ok || !out.contains("\"ok\""), "{out}");
}

/// A request whose body is still arriving when SIGTERM comes is answered before warden exits.
#[test]
fn sigterm_finishes_in_flight_requests() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("warden.toml"), config("")).unwrap();
    let mut server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let body = br#"{"requests":[{"service":"orders","db_user":"alice"}]}"#;
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..10]).unwrap();
    // Give the server time to start the request, then ask it to stop.
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""decision":"allow""#), "{answer}");
    assert_eq!(server.stop(), Some(0), "{}", server.logs());
}
