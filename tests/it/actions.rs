//! Followed actions against the real binary and real local receivers opened by the test: a
//! webhook listener (failing once, to see the retry), a UDP syslog socket and a TCP syslog
//! listener; de-duplication per (policy, principal); a dead webhook that changes no decision;
//! and a full queue counted in /metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Server, eventually, list_config, start_warden};

/// The list config whose blocking policy follows `notify`, with these actions.
fn start(dir: &std::path::Path, server: &str, actions: &str) -> Server {
    let config = list_config(server, r#""*""#).replace(
        "severity = \"high\"\napply_to",
        "severity = \"high\"\nfollowed_action = \"notify\"\napply_to",
    ) + &format!(
        "\n[[action_sets]]\nname = \"notify\"\ndedup_window = \"1h\"\nactions = [\n{actions}\n]\n"
    );
    std::fs::write(dir.join("warden.toml"), config).unwrap();
    start_warden(dir, &["--config", "warden.toml"])
}

fn add(server: &Server, principal: &str) {
    assert_eq!(server.add_member(principal), 201);
}

/// An HTTP listener answering each request with the next status of `script` (then 200),
/// keeping the JSON bodies it answered 2xx.
fn webhook_receiver(script: Vec<u16>) -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&delivered);
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let status = script.next().unwrap_or(200);
            if status == 200 {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or_default());
            }
            let _ = reader.get_mut().write_all(
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (port, delivered)
}

fn metric(server: &Server, series: &str) -> u64 {
    server
        .get("/metrics")
        .body
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

#[test]
fn blocks_reach_a_webhook_and_syslog_once_per_principal() {
    let tmp = tempfile::tempdir().unwrap();
    let (hook_port, delivered) = webhook_receiver(vec![500]);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let actions = format!(
        r#"{{ type = "log", level = "warn" }},
{{ type = "webhook", url = "http://127.0.0.1:{hook_port}/hook", timeout = "2s", retries = 3, allow_insecure = true }},
{{ type = "syslog", address = "{}", protocol = "udp" }},
{{ type = "syslog", address = "{}", protocol = "tcp" }},"#,
        udp.local_addr().unwrap(),
        tcp.local_addr().unwrap()
    );
    let server = start(tmp.path(), "anonymous_decisions = true", &actions);
    add(&server, r"corp\alice");
    add(&server, r"corp\bob");
    for user in [r"CORP\alice", r"corp\ALICE", r"corp\alice", r"corp\bob"] {
        assert_eq!(server.decision("orders", user), "block");
    }
    assert_eq!(server.decision("orders", "carol"), "allow");

    // The webhook: the first delivery failed (500) and was retried; one event per principal.
    let two = eventually(Duration::from_secs(20), || {
        delivered.lock().unwrap().len() == 2
    });
    assert!(
        two.is_some(),
        "{:?}\n{}",
        delivered.lock().unwrap(),
        server.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    let events = delivered.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    let mut principals: Vec<String> = events
        .iter()
        .map(|e| e["principal"].as_str().unwrap().to_lowercase())
        .collect();
    principals.sort();
    assert_eq!(principals, [r"corp\alice", r"corp\bob"]);
    assert_eq!(events[0]["policy"], "Block suspicious database users");
    assert_eq!(events[0]["decision"], "block");
    assert_eq!(events[0]["service"], "orders");

    // Syslog over UDP: RFC 5424, one datagram per event.
    let mut buf = [0u8; 2048];
    for _ in 0..2 {
        let n = udp.recv(&mut buf).unwrap();
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(m.starts_with("<82>1 "), "{m}");
        assert!(m.contains(" warden "), "{m}");
        assert!(
            m.contains(r#"policy="Block suspicious database users""#),
            "{m}"
        );
        assert!(m.to_lowercase().contains("principal=\"corp\\\\"), "{m}");
    }
    // Syslog over TCP: octet-counted frames on one connection.
    let (stream, _) = tcp.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..2 {
        let mut len = Vec::new();
        reader.read_until(b' ', &mut len).unwrap();
        let len: usize = String::from_utf8_lossy(&len).trim().parse().unwrap();
        let mut frame = vec![0; len];
        reader.read_exact(&mut frame).unwrap();
        let m = String::from_utf8(frame).unwrap();
        assert!(m.starts_with("<82>1 "), "{m}");
    }
    assert!(server.logs().contains("followed action"), "no log action");
    assert_eq!(
        metric(
            &server,
            "warden_followed_actions_total{type=\"webhook\",outcome=\"sent\"}"
        ),
        2
    );
}

#[test]
fn a_dead_webhook_changes_no_decision_and_a_full_queue_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    // A webhook that accepts and never answers, and a queue of one.
    let stalled = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stalled.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for s in stalled.incoming().map_while(Result::ok) {
            keep.lock().unwrap().push(s);
        }
    });
    let actions = format!(
        r#"{{ type = "webhook", url = "http://127.0.0.1:{port}/", timeout = "10s", retries = 0, allow_insecure = true }},"#
    );
    let server = start(
        tmp.path(),
        "anonymous_decisions = true\nfollowed_action_queue = 1",
        &actions,
    );
    for i in 0..40 {
        add(&server, &format!(r"corp\user{i}"));
    }
    for i in 0..40 {
        assert_eq!(
            server.decision("orders", &format!(r"CORP\user{i}")),
            "block"
        );
    }
    let dropped = metric(&server, "warden_followed_actions_dropped_total");
    assert!(
        dropped > 0,
        "no event was dropped with a queue of one and a stalled receiver"
    );
    assert!(dropped <= 39);
}

/// One worker per action: a webhook that accepts and never answers (each event holds it for
/// its 30s timeout) does not hold up the syslog action of the same set, which delivers every
/// event. With one worker for the whole set, the second syslog datagram would wait 30s
/// behind the first stalled webhook call, the twentieth ten minutes.
#[test]
fn a_stalled_webhook_does_not_starve_syslog_in_the_same_action_set() {
    let tmp = tempfile::tempdir().unwrap();
    let stalled = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stalled.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for s in stalled.incoming().map_while(Result::ok) {
            keep.lock().unwrap().push(s);
        }
    });
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let actions = format!(
        r#"{{ type = "webhook", url = "http://127.0.0.1:{port}/", timeout = "30s", retries = 0, allow_insecure = true }},
{{ type = "syslog", address = "{}", protocol = "udp" }},"#,
        udp.local_addr().unwrap()
    );
    let server = start(tmp.path(), "anonymous_decisions = true", &actions);
    for i in 0..20 {
        add(&server, &format!(r"corp\user{i}"));
    }
    for i in 0..20 {
        assert_eq!(
            server.decision("orders", &format!(r"CORP\user{i}")),
            "block"
        );
    }
    let mut seen = std::collections::HashSet::new();
    let mut buf = [0u8; 2048];
    while seen.len() < 20 {
        let n = udp
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{} of 20 syslog messages: {e}", seen.len()));
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        let user = m.split("principal=\"").nth(1).unwrap().split('"').next();
        seen.insert(user.unwrap().to_owned());
    }
    // Counted once each send returns, just after the datagram left.
    let counted = eventually(Duration::from_secs(10), || {
        metric(
            &server,
            "warden_followed_actions_total{type=\"syslog\",outcome=\"sent\"}",
        ) == 20
    });
    assert!(counted.is_some(), "{}", server.logs());
}
