//! `/metrics` as a contract: the whole exposition of a running warden in a known state —
//! every family's name, HELP, TYPE, label sets and samples in order, and the values that do
//! not depend on timing — equals `metrics_exposition.txt`, on a SQLite store and on a
//! PostgreSQL store. Dashboards and alerts are written against these names; a change to one
//! shows here. The order of the families themselves is not compared: the text format gives it
//! no meaning (a scraper reads each family on its own), and it follows the order subsystems
//! register theirs in.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::support::{Server, eventually, free_port, list_config, postgres, start_warden};

/// The exposition expected, with the values of [`VARYING`] families replaced by `_`.
const EXPECTED: &str = include_str!("metrics_exposition.txt");

/// Families whose values depend on timing or on the store (latency, how often readiness or
/// metrics were asked, connections the listener has yet to count closed, revisions,
/// leadership on a shared store, whether the audit service's first flush came before or
/// after the refused requests): their samples are compared by name and labels only.
const VARYING: &[&str] = &[
    "warden_auth_refused_audit_records_total",
    "warden_decision_duration_seconds",
    "warden_http_requests_total",
    "warden_http_connections_open",
    "warden_snapshot_version",
    "warden_revision",
    "warden_revision_lag",
    "warden_leader",
];

/// The list policy on every service (it runs the `page` followed action), an `api` data set
/// no one has written (a decision it could change is an error), and a plain gate to a port
/// nothing listens on, its bare logins CORP's.
fn config(store: &str, upstream_port: u16) -> String {
    let list = list_config("", r#""*""#)
        .replace(
            "severity = \"high\"",
            "severity = \"high\"\nfollowed_action = \"page\"",
        )
        .replace("path = \"warden.db\"", store);
    format!(
        r#"{list}
[[data_sets]]
name = "Feed"
columns = [{{ name = "user", key = true }}]
source = {{ type = "api" }}

[[policies]]
name = "Block the feed"
action = "block"
severity = "medium"
apply_to = ["feed"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "Feed"

[[action_sets]]
name = "page"
actions = [{{ type = "log" }}]

[[domains]]
netbios = "CORP"
dns = "corp.example.test"

[[gates]]
name = "appdb"
listen = "127.0.0.1:0"
upstream = "localhost:{upstream_port}"
service = "pg-appdb"
allow_plain = true
upstream_plain = true
domain = "CORP"
"#
    )
}

/// A PostgreSQL start-up message with these parameters; the gate's answer, read to its end.
fn gate_startup(port: u16, params: &[(&str, &str)]) -> std::io::Result<Vec<u8>> {
    let mut body = 196_608_u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = u32::try_from(body.len() + 4)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    packet.extend_from_slice(&body);
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(&packet)?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    Ok(answer)
}

/// Brings `server` to the known state: alice listed; decisions over HTTP (block, allow, and
/// an error on the unwritten set); three refusals at the gate (no user, and two users it
/// cannot decide on with the upstream down: the gate decides after the server authenticated
/// them); two refused requests; the followed action run once and the decision log written.
fn known_state(server: &Server) {
    let gate_port = server.gate_port("appdb");
    assert_eq!(server.add_member("CORP\\alice"), 201);
    assert_eq!(server.decision("orders", "CORP\\alice"), "block");
    assert_eq!(server.decision("orders", "CORP\\bob"), "allow");
    let unknown = server.get("/v1/decision?service=feed&db_user=x");
    assert_eq!(unknown.status, 503, "{}", unknown.body);
    assert_eq!(server.call("GET", "/v1/lists", None, b"").status, 401);
    let bad = server.call("GET", "/v1/lists", Some("wk_nonsense"), b"");
    assert_eq!(bad.status, 401, "{}", bad.body);
    for params in [
        &[("database", "appdb")][..],
        &[("user", "CORP\\alice")],
        &[("user", "CORP\\bob")],
    ] {
        let answer = gate_startup(gate_port, params)
            .unwrap_or_else(|e| panic!("{params:?}: {e}\n{}", server.logs()));
        assert_eq!(answer.first(), Some(&b'E'), "{params:?}: {answer:?}");
    }
    // The followed action and the decision log (the block and the error; no allow is
    // sampled by default) run on their own threads, after the answers.
    for settled in [
        "warden_followed_actions_total{type=\"log\",outcome=\"sent\"} 1",
        "warden_decision_log_written_total 2",
    ] {
        let ran = eventually(Duration::from_secs(20), || {
            server.get("/metrics").body.contains(settled)
        });
        assert!(ran.is_some(), "{settled}: {}", server.get("/metrics").body);
    }
}

/// The exposition with the values of [`VARYING`] families replaced by `_`.
fn normalised(exposition: &str) -> String {
    let mut out = String::new();
    for line in exposition.lines() {
        let varies = !line.starts_with('#')
            && VARYING.iter().any(|family| {
                line.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with([' ', '{', '_']))
            });
        match line.rsplit_once(' ') {
            Some((series, _)) if varies => {
                out.push_str(series);
                out.push_str(" _");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn assert_exposition(server: &Server) {
    let r = server.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let shown = normalised(&r.body);
    let (got, want) = (families(&shown), families(EXPECTED));
    if got != want {
        let diff: Vec<String> = got
            .iter()
            .filter(|f| !want.contains(f))
            .map(|f| format!("shown, not expected:\n{f}"))
            .chain(
                want.iter()
                    .filter(|f| !got.contains(f))
                    .map(|f| format!("expected, not shown:\n{f}")),
            )
            .collect();
        panic!(
            "the exposition changed:\n{}\n\nwhole exposition, normalised:\n{shown}",
            diff.join("\n")
        );
    }
    assert!(shown.ends_with("# EOF\n"), "{shown}");
}

/// The families of an exposition, each its lines from `# HELP` on, in the order of their
/// names; the `# EOF` line apart.
fn families(exposition: &str) -> Vec<String> {
    let mut families: Vec<String> = Vec::new();
    for line in exposition.lines().filter(|l| *l != "# EOF") {
        match families.last_mut() {
            Some(family) if !line.starts_with("# HELP ") => {
                family.push('\n');
                family.push_str(line);
            }
            _ => families.push(line.to_owned()),
        }
    }
    families.sort();
    families
}

#[test]
fn the_exposition_of_a_known_state_is_unchanged_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = config("path = \"warden.db\"", free_port());
    std::fs::write(dir.path().join("warden.toml"), config).unwrap();
    let server = start_warden(dir.path(), &["--config", "warden.toml"]);
    known_state(&server);
    assert_exposition(&server);
}

#[test]
fn the_exposition_of_a_known_state_is_unchanged_on_postgresql() {
    let pg = postgres();
    let db = format!("metrics_{}", std::process::id());
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--", "psql", "-X", "-q", "-h"])
        .arg(&pg.dir)
        .args([
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-c", &format!("CREATE DATABASE {db}")])
        // A store database must be warden's alone (warden refuses one PUBLIC may connect to).
        .args([
            "-c",
            &format!("REVOKE CONNECT ON DATABASE {db} FROM PUBLIC"),
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = format!(
        "path = \"warden.db\"\nurl = \"postgresql://postgres@127.0.0.1:{}/{db}\"\n\
         password_file = \"{}\"\nca_file = \"{}\"",
        pg.port,
        pg.dir.join("postgres.secret").display(),
        pg.ca.display()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warden.toml"), config(&store, free_port())).unwrap();
    let server = start_warden(dir.path(), &["--config", "warden.toml"]);
    known_state(&server);
    assert_exposition(&server);
}
