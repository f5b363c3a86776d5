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
    dir: tempfile::TempDir,
}

/// `warden serve` with the list policy on services `pg-*` and these `[[gates]]` sections
/// (`{dir}` in them is the config's directory); waits until every `listen` port answers.
fn start_gates(gates: &str, ports: &[u16]) -> Gate {
    let dir = tempfile::tempdir().unwrap();
    let gates = gates.replace("{dir}", &dir.path().display().to_string());
    // Bare logins (alice) and bare listed names are CORP's accounts.
    let domains = "[[domains]]\nnetbios = \"CORP\"\ndns = \"corp.example.test\"\ndefault = true\n";
    let config = format!("{}\n{domains}\n{gates}", list_config("", "\"pg-*\""));
    std::fs::write(dir.path().join("warden.toml"), config).unwrap();
    let server = start_warden(dir.path(), &["--config", "warden.toml"]);
    for port in ports {
        let up = eventually(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", *port)).is_ok()
        });
        assert!(
            up.is_some(),
            "gate {port} did not listen:\n{}",
            server.logs()
        );
    }
    Gate {
        server,
        port: ports[0],
        dir,
    }
}

/// One gate presenting the server's own certificate, verifying the server's TLS.
fn start_gate() -> Gate {
    let pg = postgres();
    let port = free_port();
    let gates = format!(
        "[[gates]]\nname = \"appdb\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"localhost:{}\"\n\
         service = \"pg-appdb\"\n\
         # The server's own certificate, so SCRAM channel binding verifies through the gate.\n\
         tls_cert_file = \"{dir}/tls/server.pem\"\n\
         tls_key_file = \"{dir}/tls/server.key\"\nupstream_ca_file = \"{}\"\n",
        pg.port,
        pg.ca.display(),
        dir = pg.dir.display(),
    );
    start_gates(&gates, &[port])
}

fn psql(gate: &Gate, user: &str, sslmode: &str, ca: &Path, sql: &str) -> Command {
    let tls = format!("sslmode={sslmode} sslrootcert={}", ca.display());
    psql_at(gate.port, user, &tls, sql)
}

/// `psql -c sql` as `user` (with the test server's password) to 127.0.0.1:`port`.
fn psql_at(port: u16, user: &str, conninfo: &str, sql: &str) -> Command {
    let mut c = Command::new("psql");
    c.arg(format!(
        "host=127.0.0.1 port={port} dbname=appdb user={user} {conninfo}"
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
    // Both are in the audit log as tallies (one record per user and policy, with a count),
    // written by the gate service within its flush interval.
    let audited = eventually(Duration::from_secs(30), || {
        let refused = gate.server.get("/v1/audit?action=gate.refused").body;
        let ended = gate.server.get("/v1/audit?action=gate.ended").body;
        refused.contains("\"target\":\"bob\"")
            && refused.contains("\"count\":1")
            && ended.contains("\"target\":\"bob\"")
    });
    assert!(
        audited.is_some(),
        "{}",
        gate.server.get("/v1/audit?action=gate.refused").body
    );
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

/// What runs on the server for `user`, asked directly (not through a gate) as alice.
fn server_activity(user: &str) -> String {
    let pg = postgres();
    let tls = format!("sslmode=verify-full sslrootcert={}", pg.ca.display());
    let sql = format!(
        "SELECT coalesce(string_agg(state || ':' || query, ';'), '') FROM pg_stat_activity \
         WHERE usename = '{user}' AND pid <> pg_backend_pid()"
    );
    let out = psql_at(pg.port, "alice", &tls, &sql).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_cancel_reaches_its_backend_and_a_forged_one_is_dropped() {
    let gate = start_gate();
    let ca = gate_ca(&gate);
    let sleeper = psql(
        &gate,
        "alice",
        "verify-full",
        &ca,
        "SELECT pg_sleep(60) AS cancel_me",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut pid = None;
    let shown = eventually(Duration::from_secs(20), || {
        let r = gate.server.get("/v1/gates");
        pid = r.json()["gates"][0]["sessions"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["user"] == "alice"))
            .and_then(|s| s["backend_pid"].as_u64());
        pid.is_some()
            && server_activity("alice").contains("active:SELECT pg_sleep(60) AS cancel_me")
    });
    assert!(shown.is_some(), "{}", gate.server.get("/v1/gates").body);
    let pid = pid.unwrap() as u32;

    // A CancelRequest with the right pid and a wrong secret: dropped, the query runs on.
    let mut s = TcpStream::connect(("127.0.0.1", gate.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut forged = 16u32.to_be_bytes().to_vec();
    forged.extend_from_slice(&80_877_102u32.to_be_bytes());
    forged.extend_from_slice(&pid.to_be_bytes());
    forged.extend_from_slice(&[0x5a; 4]);
    s.write_all(&forged).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{answer:?}");
    assert!(
        server_activity("alice").contains("active:SELECT pg_sleep(60) AS cancel_me"),
        "a forged cancel stopped the query"
    );

    // psql's own cancel (SIGINT: it sends the BackendKeyData the gate relayed) reaches it.
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &sleeper.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = sleeper.wait_with_output().unwrap();
    println!("psql's cancel through the gate took {:?}", sent.elapsed());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("canceling statement due to user request"),
        "{}",
        text(&out)
    );
}

#[test]
fn plain_gates_caps_an_unreachable_server_and_a_foreign_certificate() {
    let pg = postgres();
    let (plain, down, foreign) = (free_port(), free_port(), free_port());
    let nothing = free_port();
    let gates = format!(
        r#"
[[gates]]
name = "plain"
listen = "127.0.0.1:{plain}"
upstream = "127.0.0.1:{pg_port}"
service = "pg-plain"
allow_plain = true
upstream_plain = true
max_connections_per_client = 1

[[gates]]
name = "down"
listen = "127.0.0.1:{down}"
upstream = "localhost:{nothing}"
service = "pg-down"
allow_plain = true
upstream_plain = true
startup_timeout = "3s"

[[gates]]
name = "foreign"
listen = "127.0.0.1:{foreign}"
upstream = "localhost:{pg_port}"
service = "pg-foreign"
tls_cert_file = "server.pem"
tls_key_file = "server.key"
upstream_ca_file = "{ca}"
"#,
        pg_port = pg.port,
        ca = pg.ca.display(),
    );
    // The foreign gate's own certificate (not the server's), made in the config's directory.
    let gate = {
        let dir = tempfile::tempdir().unwrap();
        crate::support::make_certs(dir.path());
        // Bare logins (alice) and bare listed names are CORP's accounts.
        let domains =
            "[[domains]]\nnetbios = \"CORP\"\ndns = \"corp.example.test\"\ndefault = true\n";
        let config = format!("{}\n{domains}\n{gates}", list_config("", "\"pg-*\""));
        std::fs::write(dir.path().join("warden.toml"), config).unwrap();
        let server = start_warden(dir.path(), &["--config", "warden.toml"]);
        for port in [plain, down, foreign] {
            let up = eventually(Duration::from_secs(20), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            assert!(
                up.is_some(),
                "gate {port} did not listen:\n{}",
                server.logs()
            );
        }
        Gate {
            server,
            port: plain,
            dir,
        }
    };

    // Plain: sslmode=prefer asks for TLS, hears `N`, and goes on without it.
    let out = psql_at(
        plain,
        "alice",
        "sslmode=prefer",
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "f");

    // One session per client address: a second one while the first sleeps gets 53300.
    let mut first = psql_at(plain, "alice", "sslmode=disable", "SELECT pg_sleep(60)")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let open = eventually(Duration::from_secs(20), || {
        let r = gate.server.get("/v1/gates");
        r.json()["gates"][0]["sessions"]
            .as_array()
            .is_some_and(|s| s.len() == 1)
    });
    assert!(open.is_some(), "{}", gate.server.get("/v1/gates").body);
    let out = psql_at(plain, "alice", "sslmode=disable", "SELECT 1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too many connections from this client"),
        "{}",
        text(&out)
    );
    let _ = first.kill();
    let _ = first.wait();

    // The server unreachable: a FATAL answer, not a hang.
    let out = psql_at(down, "alice", "sslmode=disable", "SELECT 1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the database is unreachable through the gate"),
        "{}",
        text(&out)
    );

    // A gate certificate that is not the server's: SCRAM channel binding cannot verify, and
    // the server refuses a client told it has none; without channel binding it works.
    let own_ca = gate.dir.path().join("ca.pem");
    let tls = format!("sslmode=verify-full sslrootcert={}", own_ca.display());
    let out = psql_at(foreign, "alice", &tls, "SELECT 1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("channel binding"),
        "{}",
        text(&out)
    );
    let out = psql_at(
        foreign,
        "alice",
        &format!("{tls} channel_binding=disable"),
        "SELECT 1",
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_session_waiting_on_its_client_ends_after_idle_timeout_a_long_query_does_not() {
    let pg = postgres();
    let port = free_port();
    let gates = format!(
        "[[gates]]\nname = \"idle\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:{}\"\n\
         service = \"pg-idle\"\nallow_plain = true\nupstream_plain = true\nidle_timeout = \"1s\"\n",
        pg.port
    );
    let gate = start_gates(&gates, &[port]);

    // A query that runs longer than idle_timeout is not idle.
    let out = psql_at(port, "alice", "sslmode=disable", "SELECT pg_sleep(3)")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // A session that waits on its client is ended.
    let mut waiting = psql_at(port, "alice", "sslmode=disable", "SELECT 1")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ended = eventually(Duration::from_secs(30), || {
        gate.server
            .get("/metrics")
            .body
            .contains("warden_gate_sessions_ended_total{gate=\"idle\",reason=\"idle\"} 1")
    });
    assert!(ended.is_some(), "{}", gate.server.get("/metrics").body);
    let mut stdin = waiting.stdin.take().unwrap();
    let _ = stdin.write_all(b"SELECT 2;\n");
    drop(stdin);
    let out = waiting.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
}

/// A TLS client for the gate straight from the first byte (PostgreSQL 17 direct TLS), with
/// these ALPN protocols.
fn direct_tls(
    port: u16,
    alpn: &[&[u8]],
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&postgres().ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

fn startup_message(user: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", "appdb")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

#[test]
fn direct_tls_with_alpn_and_gssenc_refusal() {
    let gate = start_gate();
    // Direct TLS with ALPN `postgresql`: the server's authentication request comes back.
    let mut s = direct_tls(gate.port, &[b"postgresql"]).unwrap();
    s.write_all(&startup_message("alice")).unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], b'R', "{head:?}");
    assert_eq!(head[5..9], 10u32.to_be_bytes(), "AuthenticationSASL");
    // Without ALPN a direct TLS connection is closed (as PostgreSQL 17 does).
    let mut s = direct_tls(gate.port, &[]).unwrap();
    let _ = s.write_all(&startup_message("alice"));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    // GSSENCRequest: `N`, then the client may go on (here: ask for TLS, get `S`).
    let mut tcp = TcpStream::connect(("127.0.0.1", gate.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = [0u8; 1];
    tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 48]).unwrap();
    tcp.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N");
    tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap();
    tcp.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"S");
}

#[test]
fn a_reload_remakes_the_listener_and_open_sessions_go_on() {
    let gate = start_gate();
    let ca = gate_ca(&gate);
    let sleeper = psql(
        &gate,
        "alice",
        "verify-full",
        &ca,
        "SELECT 'survived' FROM pg_sleep(2)",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let open = eventually(Duration::from_secs(20), || {
        let r = gate.server.get("/v1/gates");
        r.json()["gates"][0]["sessions"]
            .as_array()
            .is_some_and(|s| s.len() == 1)
    });
    assert!(open.is_some(), "{}", gate.server.get("/v1/gates").body);
    let r = gate.server.call(
        "POST",
        "/v1/admin/reload",
        gate.server.admin_key.as_deref(),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let out = sleeper.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "survived");
    // The remade listener serves.
    let served = eventually(Duration::from_secs(20), || {
        psql(&gate, "alice", "verify-full", &ca, "SELECT 1")
            .output()
            .unwrap()
            .status
            .success()
    });
    assert!(served.is_some(), "{}", gate.server.logs());
    assert!(
        gate.server
            .logs()
            .contains("gate stopped listening; open sessions continue")
    );
}

/// A gate whose snapshot cannot answer for a user — the data set its policy reads never
/// loaded (its directory is a closed port, the store is fresh) — refuses them: not allow.
#[test]
fn a_user_the_snapshot_cannot_decide_for_is_refused() {
    let pg = postgres();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    crate::support::write_secret(&dir.path().join("bind.secret"), "unused\n");
    let config = format!(
        r#"
[store]
path = "warden.db"

[[directories]]
name = "dead"
url = "ldap://127.0.0.1:1"
allow_insecure = true
bind_dn = "CN=warden,CN=Users,DC=corp,DC=example,DC=test"
bind_password_file = "{dir}/bind.secret"
base_dn = "DC=corp,DC=example,DC=test"
connect_timeout = "1s"
timeout = "2s"

[[data_sets]]
name = "Remote"
case_sensitive = false
columns = [{{ name = "user", key = true }}]
[data_sets.source]
type = "ldap"
directory = "dead"
base = "DC=corp,DC=example,DC=test"
filter = "(objectClass=user)"
refresh_interval = "1m"
[[data_sets.source.mappings]]
column = "user"
attribute = "sAMAccountName"

[[policies]]
name = "Block remote users"
action = "block"
severity = "high"
apply_to = ["pg-*"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "Remote"
search_in = ["user"]

[[gates]]
name = "appdb"
listen = "127.0.0.1:{port}"
upstream = "localhost:{pg_port}"
service = "pg-appdb"
allow_plain = true
upstream_ca_file = "{ca}"
domain = "CORP"

[[domains]]
netbios = "CORP"
dns = "corp.example.test"
"#,
        dir = dir.path().display(),
        pg_port = pg.port,
        ca = pg.ca.display(),
    );
    std::fs::write(dir.path().join("warden.toml"), config).unwrap();
    let server = start_warden(dir.path(), &["--config", "warden.toml"]);
    let up = eventually(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up.is_some(), "gate did not listen:\n{}", server.logs());
    let out = psql_at(port, "alice", "sslmode=disable", "SELECT 1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot be decided yet"),
        "{}\n{}",
        text(&out),
        server.logs()
    );
}

/// Runs SQL on the test server as its superuser (over its socket).
fn pg_admin(sql: &str) {
    let pg = postgres();
    let out = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .arg("-h")
        .arg(&pg.dir)
        .args([
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", text(&out));
}

/// The seed's own last step, end to end: an incident's response puts a user on the list, the
/// list reaches the AD group, the group the data set, and the database sees it — a new `psql`
/// through the gate is refused and the user's open session is ended. The database knows the
/// account by its bare sAMAccountName, as most database roles are named; `[[domains]]` says
/// bare names are CORP's. Each hop is printed with its time (no threshold).
#[test]
fn the_seed_through_the_gate_refuses_psql_and_ends_the_open_session() {
    use crate::dc::{self, AdConfig, Ns};
    let _g = dc::shared();
    let dc = dc::dc();
    let pg = postgres();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    ns.add_user(dc, "alice");
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    let config = AdConfig::seed(&ns, &group).write(dc, tmp.path());
    let role = ns.sam("alice");
    let password = format!("Gate-{role}-9!");
    pg_admin(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'; \
         GRANT CONNECT ON DATABASE appdb TO \"{role}\""
    ));
    std::fs::write(pg.dir.join(format!("{role}.secret")), &password).unwrap();
    let port = free_port();
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.push_str(&format!(
        "\n[[domains]]\nnetbios = \"CORP\"\ndns = \"corp.example.test\"\ndefault = true\n\n\
         [[gates]]\nname = \"appdb\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"localhost:{}\"\n\
         service = \"pg-appdb\"\ntls_cert_file = \"{dir}/tls/server.pem\"\n\
         tls_key_file = \"{dir}/tls/server.key\"\nupstream_ca_file = \"{}\"\n",
        pg.port,
        pg.ca.display(),
        dir = pg.dir.display()
    ));
    std::fs::write(&config, text_config).unwrap();
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    server.wait_ready();
    let up = eventually(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up.is_some(), "gate did not listen:\n{}", server.logs());
    let query = |sql: &str| psql_at(port, &role, "sslmode=require", sql);
    let out = query("SELECT current_user").output().unwrap();
    assert!(
        out.status.success(),
        "before: {}\n{}",
        text(&out),
        server.logs()
    );
    let open = query("SELECT pg_sleep(60)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let open = std::sync::Mutex::new(open);
    let seen = eventually(Duration::from_secs(10), || {
        server.get("/v1/gates").body.contains(&role)
    });
    assert!(
        seen.is_some(),
        "the open session never showed: {}",
        server.get("/v1/gates").body
    );

    let post = |path: &str, body: serde_json::Value| {
        let r = server.call(
            "POST",
            path,
            server.admin_key.as_deref(),
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 201, "{path}: {}", r.body);
        r.json()
    };
    let incident = post(
        "/v1/incidents",
        serde_json::json!({ "title": "Seed through the gate", "severity": "high",
                            "users": [ns.upn("alice")], "source": "seed" }),
    );
    let id = incident["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    post(
        &format!("/v1/incidents/{id}/responses"),
        serde_json::json!({ "list": "Suspicious Users", "reason": "seed through the gate" }),
    );
    println!(
        "gate seed: {:<40} {:?}",
        "response recorded (list)",
        started.elapsed()
    );
    let hop = |what: &str, check: &dyn Fn() -> bool| {
        let took = eventually(Duration::from_secs(30), check);
        assert!(
            took.is_some(),
            "{what} never happened; logs:\n{}",
            server.logs()
        );
        println!("gate seed: {what:<40} {:?}", started.elapsed());
    };
    hop("AD group PTR_Suspicious_Users", &|| {
        dc.values(&group, "member")
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&ns.user_dn("alice")))
    });
    hop("data set row corp\\alice", &|| {
        server
            .get("/v1/data-sets/PTR%20Suspicious%20Users/rows")
            .body
            .to_lowercase()
            .contains(&ns.mapped("alice").to_lowercase().replace('\\', "\\\\"))
    });
    hop("the open session ended (57P01)", &|| {
        open.lock().unwrap().try_wait().unwrap().is_some()
    });
    let mut ended = String::new();
    let mut open = open.into_inner().unwrap();
    // It has exited (above); reap it.
    assert!(!open.wait().unwrap().success());
    open.stderr
        .take()
        .unwrap()
        .read_to_string(&mut ended)
        .unwrap();
    assert!(ended.contains("suspended by policy"), "{ended}");
    let refused = query("SELECT current_user").output().unwrap();
    println!(
        "gate seed: {:<40} {:?}",
        "a new psql refused (28000)",
        started.elapsed()
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("suspended by policy"),
        "{}",
        text(&refused)
    );
    pg_admin(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""));
}
