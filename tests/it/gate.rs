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

mod wire_client;
use wire_client::Wire;

struct Gate {
    server: Server,
    port: u16,
    dir: tempfile::TempDir,
}

/// `warden serve` with the list policy on services `pg-*` and these `[[gates]]` sections
/// (`{dir}` in them is the config's directory); waits until every `listen` port answers.
fn start_gates(gates: &str, names: &[&str]) -> Gate {
    let dir = tempfile::tempdir().unwrap();
    let gates = gates.replace("{dir}", &dir.path().display().to_string());
    // Bare logins (alice) and bare listed names are CORP's accounts.
    let domains = "[[domains]]\nnetbios = \"CORP\"\ndns = \"corp.example.test\"\ndefault = true\n";
    let config = format!("{}\n{domains}\n{gates}", list_config("", "\"pg-*\""));
    std::fs::write(dir.path().join("warden.toml"), config).unwrap();
    let server = start_warden(dir.path(), &["--config", "warden.toml"]);
    let ports: Vec<u16> = names.iter().map(|name| server.gate_port(name)).collect();
    Gate {
        server,
        port: ports[0],
        dir,
    }
}

/// One gate presenting the server's own certificate, verifying the server's TLS.
fn start_gate() -> Gate {
    let pg = postgres();
    let gates = format!(
        "[[gates]]\nname = \"appdb\"\nlisten = \"127.0.0.1:0\"\nupstream = \"localhost:{}\"\n\
         service = \"pg-appdb\"\n\
         # The server's own certificate, so SCRAM channel binding verifies through the gate.\n\
         tls_cert_file = \"{dir}/tls/server.pem\"\n\
         tls_key_file = \"{dir}/tls/server.key\"\nupstream_ca_file = \"{}\"\n",
        pg.port,
        pg.ca.display(),
        dir = pg.dir.display(),
    );
    start_gates(&gates, &["appdb"])
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

/// Asserts that a client command failed and said `needle` on stderr.
fn fails_saying(out: &Output, needle: &str) {
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains(needle),
        "expected a failure saying {needle:?}: {}",
        text(out)
    );
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
    let nothing = free_port();
    let gates = format!(
        r#"
[[gates]]
name = "plain"
listen = "127.0.0.1:0"
upstream = "127.0.0.1:{pg_port}"
service = "pg-plain"
allow_plain = true
upstream_plain = true
max_connections_per_client = 1

[[gates]]
name = "down"
listen = "127.0.0.1:0"
upstream = "localhost:{nothing}"
service = "pg-down"
allow_plain = true
upstream_plain = true
startup_timeout = "3s"

[[gates]]
name = "foreign"
listen = "127.0.0.1:0"
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
        Gate {
            port: server.gate_port("plain"),
            server,
            dir,
        }
    };
    let (plain, down, foreign) = (
        gate.port,
        gate.server.gate_port("down"),
        gate.server.gate_port("foreign"),
    );

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

/// A plain gate (plain upstream) with this `idle_timeout`, and its port.
fn idle_gate(idle_timeout: &str) -> (Gate, u16) {
    let gates = format!(
        "[[gates]]\nname = \"idle\"\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:{}\"\n\
         service = \"pg-idle\"\nallow_plain = true\nupstream_plain = true\n\
         idle_timeout = \"{idle_timeout}\"\n",
        postgres().port
    );
    let gate = start_gates(&gates, &["idle"]);
    let port = gate.port;
    (gate, port)
}

#[test]
fn a_session_waiting_on_its_client_ends_after_idle_timeout_a_long_query_does_not() {
    let (gate, port) = idle_gate("1s");

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
    // The remade listener serves (on a new port: the gate listens on port 0).
    let tls = format!("sslmode=verify-full sslrootcert={}", ca.display());
    let served = eventually(Duration::from_secs(20), || {
        psql_at(gate.server.gate_port("appdb"), "alice", &tls, "SELECT 1")
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
listen = "127.0.0.1:0"
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
    let port = server.gate_port("appdb");
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

/// Runs SQL in `appdb` on the test server as its superuser (over its socket); returns what it
/// printed.
fn pg_admin(sql: &str) -> String {
    let pg = postgres();
    let out = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-q",
            "-At",
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
            "appdb",
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
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
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.push_str(&format!(
        "\n[[domains]]\nnetbios = \"CORP\"\ndns = \"corp.example.test\"\ndefault = true\n\n\
         [[gates]]\nname = \"appdb\"\nlisten = \"127.0.0.1:0\"\nupstream = \"localhost:{}\"\n\
         service = \"pg-appdb\"\ntls_cert_file = \"{dir}/tls/server.pem\"\n\
         tls_key_file = \"{dir}/tls/server.key\"\nupstream_ca_file = \"{}\"\n",
        pg.port,
        pg.ca.display(),
        dir = pg.dir.display()
    ));
    std::fs::write(&config, text_config).unwrap();
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    server.wait_ready();
    let port = server.gate_port("appdb");
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

/// Whether backend `pid` still runs a statement (`active`) on the test server.
fn backend_state(pid: u32) -> String {
    pg_admin(&format!(
        "SELECT coalesce(max(state), 'gone') FROM pg_stat_activity WHERE pid = {pid}"
    ))
}

/// A table alice may write, made afresh.
fn fresh_table(name: &str, columns: &str) {
    pg_admin(&format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} ({columns}); \
         GRANT ALL ON {name} TO alice"
    ));
}

/// Issue 24 §3: a client with a small receive buffer leaves a large result unread and streams
/// COPY rows; its user is blocked. The gate stops its bytes at once, cancels and closes the
/// upstream without waiting on it: no row sent after the block (plus a second of grace) is
/// committed, nor the INSERT after the COPY, and the backend is gone within 5 s. (Before: the
/// end waited in a write to the client while rows kept flowing and committing.)
#[test]
fn a_client_that_stops_reading_is_ended_and_nothing_it_sends_after_the_block_commits() {
    let gate = start_gate();
    let table = "gate_stuck_reader";
    fresh_table(table, "n int");
    let mut w = Wire::connect(gate.port, true, Some(4096)).unwrap();
    w.login(b"alice", &postgres().password("alice"), &[])
        .unwrap();
    let (pid, _) = w.key.clone().unwrap();
    w.send(&wire_client::query("SELECT repeat('x', 3000000)"))
        .unwrap();
    w.send(&wire_client::query(&format!("COPY {table} FROM STDIN")))
        .unwrap();
    let mut listed: Option<Instant> = None;
    let mut cutoff = None;
    for n in 0..200u32 {
        if n == 10 {
            assert_eq!(gate.server.add_member("alice"), 201);
            listed = Some(Instant::now());
        }
        if let Some(at) = listed {
            if cutoff.is_none() && at.elapsed() > Duration::from_secs(1) {
                cutoff = Some(n);
            }
            if at.elapsed() > Duration::from_secs(4) {
                break;
            }
        }
        if w.send(&wire_client::copy_data(format!("{n}\n").as_bytes()))
            .is_err()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = w.send(&wire_client::copy_done());
    let _ = w.send(&wire_client::query(&format!(
        "INSERT INTO {table} VALUES (-1)"
    )));
    let listed = listed.unwrap();
    let gone = eventually(
        Duration::from_secs(5).saturating_sub(listed.elapsed()),
        || backend_state(pid) == "gone",
    );
    drop(w);
    assert!(
        gone.is_some(),
        "backend {pid} outlived the block by 5 s (now {} after {:?})\n{}",
        backend_state(pid),
        listed.elapsed(),
        gate.server.logs()
    );
    let cutoff = cutoff.unwrap_or(u32::MAX);
    let late = pg_admin(&format!(
        "SELECT count(*) FROM {table} WHERE n >= {cutoff} OR n = -1"
    ));
    let all = pg_admin(&format!("SELECT count(*) FROM {table}"));
    println!("rows committed: {all} (after the block + 1 s: {late})");
    assert_eq!(late, "0", "rows sent after the block were committed");
}

/// Issue 24 §3: a client that hangs up while its statement runs (a DO loop inserting rows)
/// has the statement cancelled: it stops within 3 s. (Before: it ran until someone
/// terminated the backend.)
#[test]
fn a_client_that_hangs_up_mid_statement_has_it_cancelled() {
    let gate = start_gate();
    let table = "gate_hang_up";
    fresh_table(table, "n int");
    let mut w = Wire::connect(gate.port, true, None).unwrap();
    w.login(b"alice", &postgres().password("alice"), &[])
        .unwrap();
    let (pid, _) = w.key.clone().unwrap();
    w.send(&wire_client::query(&format!(
        "DO $$ BEGIN LOOP INSERT INTO {table} VALUES (1); PERFORM pg_sleep(0.01); END LOOP; END $$"
    )))
    .unwrap();
    let running = eventually(Duration::from_secs(10), || backend_state(pid) == "active");
    assert!(
        running.is_some(),
        "{}: {:?}",
        backend_state(pid),
        w.until_ready()
    );
    std::thread::sleep(Duration::from_millis(300));
    let hung_up = Instant::now();
    drop(w);
    let stopped = eventually(Duration::from_secs(3), || backend_state(pid) != "active");
    println!(
        "the statement stopped {:?} after the hang-up",
        hung_up.elapsed()
    );
    assert!(
        stopped.is_some(),
        "backend {pid} still {} 3 s after its client hung up",
        backend_state(pid)
    );
}

/// A loopback proxy to the test server that holds each connection `delay` before it connects
/// on: a slow upstream accept.
fn slow_proxy(delay: Duration) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = postgres().port;
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut s) = (client, server);
                let _ = std::io::copy(&mut s, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
        }
    });
    port
}

/// Issue 24 §3: a block published while the gate connects upstream is not missed: alice's
/// connect through a slow upstream, alice listed 0.5 s into it, is refused. (Before: the
/// relay subscribed to swaps after connecting and alice worked.)
#[test]
fn a_block_published_while_the_gate_connects_upstream_is_not_missed() {
    let pg = postgres();
    let proxy = slow_proxy(Duration::from_secs(3));
    let gates = format!(
        "[[gates]]\nname = \"slow\"\nlisten = \"127.0.0.1:0\"\nupstream = \"localhost:{proxy}\"\n\
         service = \"pg-slow\"\ntls_cert_file = \"{dir}/tls/server.pem\"\n\
         tls_key_file = \"{dir}/tls/server.key\"\nupstream_ca_file = \"{}\"\n",
        pg.ca.display(),
        dir = pg.dir.display(),
    );
    let gate = start_gates(&gates, &["slow"]);
    let port = gate.port;
    let tls = format!("sslmode=verify-full sslrootcert={}", pg.ca.display());
    let client = psql_at(port, "alice", &tls, "SELECT 'worked'")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gate.server.add_member("alice"), 201);
    let out = client.wait_with_output().unwrap();
    fails_saying(&out, "suspended by policy");
}

/// Issue 24 §4: the gate decides the name the server will use. A listed 63-byte role with
/// `XYZ` appended (the server cuts it back), and a member of a listed role asking for it in
/// `options` (`-c role=`, `--role=`, escaped, `session_authorization`) or as a start-up
/// parameter, are refused; the member on its own is served.
#[test]
fn the_gate_decides_on_every_name_the_server_will_use() {
    let gate = start_gate();
    let pg = postgres();
    let long = format!("gate_long_{}", "x".repeat(53));
    assert_eq!(long.len(), 63);
    let member = "gate_member";
    let password = "Gate-member-9!";
    pg_admin(&format!(
        "CREATE ROLE \"{long}\" LOGIN PASSWORD '{password}'; \
         CREATE ROLE {member} LOGIN PASSWORD '{password}'; GRANT alice TO {member}; \
         GRANT CONNECT ON DATABASE appdb TO \"{long}\", {member}"
    ));
    assert_eq!(gate.server.add_member(&long), 201);
    assert_eq!(gate.server.add_member("alice"), 201);
    let tls = format!(
        "sslmode=verify-full sslrootcert={} channel_binding=disable",
        pg.ca.display()
    );
    let as_user = |user: &str, options: &str| {
        Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} dbname=appdb user={user} {tls}",
                gate.port
            ))
            .args(["-X", "-At", "-c", "SELECT current_user"])
            .env("PGPASSWORD", password)
            .env("PGOPTIONS", options)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = as_user(&format!("{long}XYZ"), "");
    fails_saying(&out, "suspended by policy");
    let out = as_user(member, "");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), member);
    for options in [
        "-c role=alice",
        "--role=alice",
        "-crole=al\\ice",
        "-c ROLE=alice",
        "-c session_authorization=alice",
        "-c search_path=public -c role=alice",
    ] {
        let out = as_user(member, options);
        fails_saying(&out, "suspended by policy");
    }
    // `role` as a start-up parameter of its own (libpq cannot send one; the wire can).
    let mut w = Wire::connect(gate.port, true, None).unwrap();
    let refused = w.login(member.as_bytes(), password, &[("role", b"alice")]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("28000") && e.contains("suspended by policy")),
        "{refused:?}"
    );
    pg_admin(&format!(
        "DROP OWNED BY \"{long}\", {member}; DROP ROLE \"{long}\", {member}"
    ));
}

/// Issue 24 §3b: large transfers through TLS finish, both ways, when the far side is slow.
/// Before, the gate wrote to its TLS streams without flushing them: when a socket was full
/// at the last write of a transfer, its tail stayed in the gate's TLS buffer and the session
/// hung for good. Whether a socket is full at the last write is a race, so the test runs many
/// transfers larger than the kernel's buffers to a slow far side. Server → client: clients
/// with a 4 KiB receive buffer read 12 MB at about 25 MB/s (eight runs on each of four);
/// client → server: a `COPY` of 16 MB in one write into a table whose trigger makes the
/// server read slowly, ending with `CopyDone` (once each). Against the gate before the fix,
/// three runs of this test in three hung (each on one or two of its 32 results).
#[test]
fn large_transfers_through_tls_to_slow_peers_never_hang() {
    let gate = start_gate();
    let table = "gate_slow_copy";
    fresh_table(table, "v text");
    pg_admin(&format!(
        "CREATE OR REPLACE FUNCTION gate_slow_row() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(0.0005); RETURN NEW; END $$; \
         CREATE TRIGGER gate_slow BEFORE INSERT ON {table} FOR EACH ROW \
         EXECUTE FUNCTION gate_slow_row()"
    ));
    let port = gate.port;
    let password = postgres().password("alice");
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let password = password.clone();
            std::thread::spawn(move || {
                let mut w = Wire::connect(port, true, Some(4096)).unwrap();
                w.login(b"alice", &password, &[]).unwrap();
                for run in 0..8 {
                    w.send(&wire_client::query(
                        "SELECT repeat('y', 300) FROM generate_series(1, 40000)",
                    ))
                    .unwrap();
                    std::thread::sleep(Duration::from_millis(100));
                    let answer = w.until_ready_slowly(256 << 10, Duration::from_millis(10));
                    assert!(
                        answer.as_ref().is_ok_and(|m| m.len() == 40_003),
                        "worker {worker} run {run}: the result never finished: {:?}",
                        answer.map(|m| m.len())
                    );
                }
                for run in 0..1 {
                    w.send(&wire_client::query(&format!("COPY {table} FROM STDIN")))
                        .unwrap();
                    let (kind, _) = w.read_message().unwrap();
                    assert_eq!(kind, b'G', "worker {worker}: no CopyInResponse");
                    let row = format!("{}\n", "z".repeat(8191));
                    let mut copy = Vec::new();
                    for _ in 0..2000 {
                        copy.extend(wire_client::copy_data(row.as_bytes()));
                    }
                    copy.extend(wire_client::copy_done());
                    w.send(&copy).unwrap();
                    let answer = w.until_ready();
                    assert!(
                        answer.as_ref().is_ok_and(|m| m
                            .iter()
                            .any(|(k, b)| *k == b'C' && b.starts_with(b"COPY 2000"))),
                        "worker {worker} run {run}: the COPY never reached its end: {answer:?}"
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    println!("32 results and 4 COPYs in {:?}", started.elapsed());
}

/// Issue 24 §3b: `idle_timeout` leaves a pipeline alone while the server works on it: `select
/// 1; sync; select pg_sleep(4); sync` in one write through a gate with a 2 s idle timeout
/// completes. (Before: ReadyForQuery after the first sync and no new client bytes counted as
/// idle, and the session ended with 57P05 at 2.5 s.)
#[test]
fn idle_timeout_leaves_a_running_pipeline_alone() {
    let (_gate, port) = idle_gate("2s");
    let mut w = Wire::connect(port, false, None).unwrap();
    w.login(b"alice", &postgres().password("alice"), &[])
        .unwrap();
    let mut pipeline = wire_client::extended("SELECT 1", &[]);
    pipeline.extend(wire_client::extended("SELECT pg_sleep(4)", &[]));
    w.send(&pipeline).unwrap();
    for sync in ["first", "second"] {
        let answer = w.until_ready().unwrap();
        let errors: Vec<String> = answer
            .iter()
            .filter(|(k, _)| *k == b'E')
            .map(|(_, b)| wire_client::error_text(b))
            .collect();
        assert!(errors.is_empty(), "{sync} sync: {errors:?}");
    }
}

/// The Python with the gate tests' pinned clients, which `scripts/postgres install` makes.
fn client_python() -> std::path::PathBuf {
    let python = clients_home().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/postgres install",
        python.display()
    );
    python
}

/// Issue 24 §3b: a CancelRequest over TLS is closed cleanly (close_notify) once forwarded, so
/// libpq 18's `cancel_safe()` (psycopg) reports no "unexpected eof"; the query is cancelled.
#[test]
fn a_cancel_over_tls_is_closed_cleanly() {
    let gate = start_gate();
    let pg = postgres();
    let mut w = Wire::connect(gate.port, true, None).unwrap();
    w.login(b"alice", &pg.password("alice"), &[]).unwrap();
    let (pid, secret) = w.key.clone().unwrap();
    w.send(&wire_client::query("SELECT pg_sleep(30)")).unwrap();
    let running = eventually(Duration::from_secs(10), || backend_state(pid) == "active");
    assert!(running.is_some());
    let mut cancel = Wire::connect(gate.port, true, None).unwrap();
    cancel
        .send(&wire_client::cancel_request(pid, &secret))
        .unwrap();
    let closed = cancel.read_to_end();
    assert!(
        closed.as_ref().is_ok_and(Vec::is_empty),
        "the gate did not close the cancel's TLS stream cleanly: {closed:?}"
    );
    let answer = w.until_ready().unwrap();
    assert!(
        answer
            .iter()
            .any(|(k, b)| *k == b'E' && wire_client::error_text(b).starts_with("57014")),
        "{answer:?}"
    );

    // The same through psycopg 3 (libpq 18): cancel_safe() from another thread.
    let dsn = format!(
        "host=127.0.0.1 port={} dbname=appdb user=alice password={} sslmode=verify-full \
         sslrootcert={}",
        gate.port,
        pg.password("alice"),
        pg.ca.display()
    );
    let script = r#"
import sys, threading, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
failure = []
def cancel():
    time.sleep(1)
    try:
        conn.cancel_safe(timeout=10)
    except Exception as e:
        failure.append(repr(e))
t = threading.Thread(target=cancel)
t.start()
try:
    conn.execute("SELECT pg_sleep(30)")
    print("not cancelled")
except psycopg.errors.QueryCanceled:
    print("cancelled")
t.join()
print("cancel_safe failed: " + failure[0] if failure else "cancel_safe ok")
print("libpq", psycopg.pq.version())
"#;
    let out = Command::new(client_python())
        .args(["-c", script, &dsn])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("cancelled\ncancel_safe ok"),
        "{}",
        text(&out)
    );
}

/// Issue 24 §3b: start-up parameters that are not UTF-8 pass as the server takes them
/// (`PGAPPNAME=caf\xe9`); before, the gate refused them with 08P01.
#[test]
fn start_up_parameters_that_are_not_utf8_pass() {
    use std::os::unix::ffi::OsStrExt;
    let gate = start_gate();
    let out = psql(
        &gate,
        "alice",
        "verify-full",
        &gate_ca(&gate),
        "SELECT 'served'",
    )
    .env("PGAPPNAME", std::ffi::OsStr::from_bytes(b"caf\xe9"))
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "served");
}

/// Issue 24 §3b: a refusal comes after the server's AuthenticationOk. A listed user with
/// libpq's default `sslmode=prefer` sees the refusal once (libpq does not retry without TLS
/// and print "the gate accepts TLS connections only"), and a wrong password for a listed user
/// gets the server's authentication failure, not a word about the list.
#[test]
fn refusals_come_after_authentication() {
    let gate = start_gate();
    let ca = gate_ca(&gate);
    assert_eq!(gate.server.add_member("bob"), 201);
    let out = psql(&gate, "bob", "prefer", &ca, "SELECT 1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(err.contains("suspended by policy"), "{}", text(&out));
    assert!(!err.contains("TLS connections only"), "{}", text(&out));
    let out = psql(&gate, "bob", "verify-full", &ca, "SELECT 1")
        .env("PGPASSWORD", "not-bobs-password")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains("password authentication failed"),
        "{}",
        text(&out)
    );
    assert!(!err.contains("suspended"), "{}", text(&out));
}

/// The gate tests' clients' home (`scripts/postgres install` fills it).
fn clients_home() -> std::path::PathBuf {
    std::env::var_os("WARDEN_PG_CLIENTS_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pg-clients"))
}

/// Issue 24 §3b, with the refusal now after authentication: psycopg 3, asyncpg and
/// node-postgres each query as an allowed user, surface a listed user's refusal (28000) and
/// the end of their own session when their user is listed (57P01), over verified TLS.
#[test]
fn psycopg_asyncpg_and_node_postgres_see_refusals_and_ends() {
    let gate = start_gate();
    let pg = postgres();
    let ca = pg.ca.display().to_string();
    let password = "Gate-client-9!";
    let users = ["gate_psycopg", "gate_asyncpg", "gate_node"];
    for user in users {
        pg_admin(&format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{password}'; GRANT CONNECT ON DATABASE appdb TO {user}"
        ));
    }
    assert_eq!(gate.server.add_member("bob"), 201);
    let bob = pg.password("bob");
    let port = gate.port.to_string();
    let psycopg = r#"
import sys, psycopg
port, ca, user, password, bob = sys.argv[1:]
dsn = f"host=127.0.0.1 port={port} dbname=appdb sslmode=verify-full sslrootcert={ca}"
try:
    psycopg.connect(f"{dsn} user=bob password={bob}")
    print("bob connected")
except psycopg.OperationalError as e:
    print("refused:", e)
conn = psycopg.connect(f"{dsn} user={user} password={password}", autocommit=True)
print("ok", conn.execute("select current_user").fetchone()[0], flush=True)
try:
    conn.execute("select pg_sleep(30)")
    print("not ended")
except psycopg.Error as e:
    print("ended:", e.sqlstate, e)
"#;
    let asyncpg = r#"
import asyncio, ssl, sys, asyncpg
port, ca, user, password, bob = sys.argv[1:]
tls = ssl.create_default_context(cafile=ca)
async def main():
    args = dict(host="127.0.0.1", port=int(port), database="appdb", ssl=tls)
    try:
        await asyncpg.connect(user="bob", password=bob, **args)
        print("bob connected")
    except Exception as e:
        print("refused:", getattr(e, "sqlstate", "?"), e)
    conn = await asyncpg.connect(user=user, password=password, **args)
    print("ok", await conn.fetchval("select current_user"), flush=True)
    try:
        await conn.execute("select pg_sleep(30)")
        print("not ended")
    except Exception as e:
        print("ended:", getattr(e, "sqlstate", "?"), e)
asyncio.run(main())
"#;
    let node = r#"
const { Client } = require('pg');
const fs = require('fs');
const [port, ca, user, password, bob] = process.argv.slice(1);
const base = { host: '127.0.0.1', port: Number(port), database: 'appdb',
               ssl: { ca: fs.readFileSync(ca), servername: 'localhost' } };
(async () => {
  try {
    const b = new Client({ ...base, user: 'bob', password: bob });
    await b.connect();
    console.log('bob connected');
  } catch (e) {
    console.log('refused:', e.code, e.message);
  }
  const c = new Client({ ...base, user, password });
  c.on('error', () => {});
  await c.connect();
  const r = await c.query('select current_user');
  console.log('ok', r.rows[0].current_user);
  try {
    await c.query('select pg_sleep(30)');
    console.log('not ended');
  } catch (e) {
    console.log('ended:', e.code, e.message);
  }
  process.exit(0);
})();
"#;
    let home = clients_home();
    let python = client_python();
    let node_modules = home.join("node/node_modules");
    assert!(
        node_modules.join("pg").exists(),
        "{} is missing: run scripts/postgres install",
        node_modules.display()
    );
    // `python -c SCRIPT ARGS…` and `node -e SCRIPT ARGS…` alike.
    let run = |program: &Path, flag: &str, script: &str, user: &str| {
        Command::new(program)
            .args([flag, script])
            .args([port.as_str(), ca.as_str(), user, password, bob.as_str()])
            .env("NODE_PATH", &node_modules)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let clients = vec![
        (users[0], run(&python, "-c", psycopg, users[0])),
        (users[1], run(&python, "-c", asyncpg, users[1])),
        (users[2], run(Path::new("node"), "-e", node, users[2])),
    ];
    let open = eventually(Duration::from_secs(30), || {
        let sessions = gate.server.get("/v1/gates").body;
        users
            .iter()
            .all(|u| sessions.contains(&format!("\"user\":\"{u}\"")))
    });
    if open.is_none() {
        let said: Vec<String> = clients
            .into_iter()
            .map(|(user, mut child)| {
                let _ = child.kill();
                format!("{user}: {}", text(&child.wait_with_output().unwrap()))
            })
            .collect();
        panic!(
            "not every client got a session: {}\n{}",
            gate.server.get("/v1/gates").body,
            said.join("\n")
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    for user in users {
        assert_eq!(gate.server.add_member(user), 201);
    }
    for (user, child) in clients {
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        println!("{user}:\n{said}");
        assert!(out.status.success(), "{user}: {}", text(&out));
        let lines: Vec<&str> = said.lines().collect();
        assert!(
            lines.len() == 3
                && lines[0].starts_with("refused:")
                && lines[0].contains("access for this user is suspended by policy"),
            "{user}: {}",
            text(&out)
        );
        assert_eq!(lines[1], format!("ok {user}"), "{user}: {}", text(&out));
        assert!(
            lines[2].starts_with("ended:")
                && lines[2].contains("your access was suspended by policy"),
            "{user}: {}",
            text(&out)
        );
    }
    for user in users {
        pg_admin(&format!("DROP OWNED BY {user}; DROP ROLE {user}"));
    }
}
