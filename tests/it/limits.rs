//! Connection limits and transport against the real binary: a client trickling its headers
//! (slowloris) is cut by the header timeout while decisions keep flowing; clients that never
//! read their answers lose their connections to the write timeout; one address cannot hold
//! every connection; idle connections close, connections answering a slow request do not; and
//! the optional TLS listener serves HTTPS that a client verifies against the server's CA.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Server, eventually, list_config, make_certs, start_warden};

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
    // Counted under the setting that cut them (the bytes they trickle keep them from idling).
    let cut = metric(&server, ONE, &dropped("header_read_timeout")).unwrap();
    assert!(cut >= 20, "{cut} counted as header_read_timeout");
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

/// Loopback addresses a test connects from: warden listens on 127.0.0.1, and any 127/8
/// address reaches it as another client.
const ONE: [u8; 4] = [127, 0, 0, 1];
const OTHER: [u8; 4] = [127, 0, 0, 2];

/// A TCP connection to `to` from `from` (port chosen by the kernel), with a small receive
/// buffer so that a client that does not read fills it soon.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
        socket.connect(to).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
}

/// A client that pipelines a thousand `GET /v1/openapi.json` (55 MB of answers) and never
/// reads one: the server's writes to it block as soon as the socket buffers are full.
fn slow_reader(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let mut s = connect_from(from, to);
    let requests = "GET /v1/openapi.json HTTP/1.1\r\nHost: warden\r\n\r\n".repeat(1000);
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    // The server may stop reading before it has them all (it answers in order): fine.
    let _ = s.write_all(requests.as_bytes());
    s
}

/// The status of `GET path` sent from `from`, if an answer arrives within `patience`; `None`
/// if none does (or the connection is closed without one).
fn answer_within(from: [u8; 4], to: SocketAddr, path: &str, patience: Duration) -> Option<u16> {
    let mut s = connect_from(from, to);
    s.set_read_timeout(Some(patience)).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: warden\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

const DECISION: &str = "/v1/decision?service=orders&db_user=alice";

/// The value of one sample of `/metrics`, read from `from`.
fn metric(server: &Server, from: [u8; 4], sample: &str) -> Option<u64> {
    let mut s = connect_from(from, server.addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: warden\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

fn dropped(reason: &str) -> String {
    format!("warden_http_connections_dropped_total{{reason=\"{reason}\"}}")
}

/// Issue 24 §5: sixteen clients pipelining `GET /v1/openapi.json` without reading the answers
/// held all sixteen connections of `max_connections = 16` for as long as they stayed open,
/// and `/v1/decision` went unanswered. Now a client that leaves its answer unread loses the
/// connection after `write_timeout`, and the decision is answered soon after, while the
/// sixteen sockets are still open.
#[test]
fn clients_that_never_read_lose_their_connections_to_the_write_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = "max_connections = 16\nmax_connections_per_client = 16\nwrite_timeout = \"1s\"";
    std::fs::write(tmp.path().join("warden.toml"), config(extra)).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let slow: Vec<TcpStream> = (0..16).map(|_| slow_reader(ONE, server.addr)).collect();
    // A liveness bound, not a timing: the write timeout plus a margin for a loaded machine.
    let patience = Duration::from_secs(4);
    let status = answer_within(ONE, server.addr, DECISION, patience);
    assert_eq!(
        status,
        Some(200),
        "no decision within {patience:?} while 16 clients sat on their answers; logs:\n{}",
        server.logs()
    );
    let all_dropped = eventually(Duration::from_secs(10), || {
        metric(&server, ONE, &dropped("write_timeout")) == Some(16)
    });
    assert!(
        all_dropped.is_some(),
        "write_timeout drops: {:?}",
        metric(&server, ONE, &dropped("write_timeout"))
    );
    drop(slow);
}

/// One address cannot hold every connection: beyond `max_connections_per_client` its
/// connections are refused at once (and counted), so another address is answered while the
/// first one's clients sit on their answers (and the write timeout is far off). The count is
/// given back as connections close.
#[test]
fn one_address_cannot_take_every_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = "max_connections = 16\nmax_connections_per_client = 4\nwrite_timeout = \"60s\"";
    std::fs::write(tmp.path().join("warden.toml"), config(extra)).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let slow: Vec<TcpStream> = (0..16).map(|_| slow_reader(ONE, server.addr)).collect();
    let patience = Duration::from_secs(4);
    assert_eq!(
        answer_within(OTHER, server.addr, DECISION, patience),
        Some(200),
        "another address got no decision within {patience:?}; logs:\n{}",
        server.logs()
    );
    // The first address is at its cap: its next connection is turned away, not queued.
    assert_ne!(
        answer_within(ONE, server.addr, DECISION, patience),
        Some(200)
    );
    let refused = metric(&server, OTHER, &dropped("max_connections_per_client")).unwrap();
    assert!(refused >= 13, "{refused} refused");
    // The four slow readers and the request asking (once the earlier ones are closed).
    let open = eventually(Duration::from_secs(10), || {
        metric(&server, OTHER, "warden_http_connections_open") == Some(5)
    });
    assert!(
        open.is_some(),
        "{:?} open",
        metric(&server, OTHER, "warden_http_connections_open")
    );
    drop(slow);
    let released = eventually(Duration::from_secs(10), || {
        answer_within(ONE, server.addr, DECISION, patience) == Some(200)
    });
    assert!(released.is_some(), "the address's count was not given back");
}

/// A connection on which nothing moves while nothing is being answered closes after
/// `idle_timeout`; one whose request takes longer than that to answer (a decision waiting for
/// a `min_revision` that never comes, 2 s) is answered, not cut.
#[test]
fn idle_connections_close_but_slow_answers_are_not_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = "idle_timeout = \"500ms\"\nheader_read_timeout = \"30s\"";
    let config = list_config(&format!("anonymous_decisions = true\n{extra}"), r#""*""#);
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let mut idle = connect_from(ONE, server.addr);
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    // Closed by the server (end of stream or reset), not by our read timeout.
    match idle.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {}
        other => panic!("the idle connection was not closed: {other:?}"),
    }
    let slow = format!("{DECISION}&min_revision=1000000");
    let status = answer_within(ONE, server.addr, &slow, Duration::from_secs(10));
    assert_eq!(
        status,
        Some(503),
        "a slow answer was cut by the idle timeout"
    );
    assert!(metric(&server, ONE, &dropped("idle_timeout")).unwrap() >= 1);
}
