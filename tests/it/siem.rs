//! SIEM events (issue 30) against a real receiver: Debian's rsyslog with rsyslog-gnutls
//! (`scripts/rsyslog`: an `imtcp` input with the gtls driver in mode 1, the test CA), which
//! writes every message it receives to a file the tests read back. Containment, release, a
//! decision, a gate refusal (real PostgreSQL through the gate) and a drift repair (the Samba
//! DC) arrive as CEF and as OCSF, parsed and checked field by field, with `|`, `=`, `\` and
//! newlines in the names and reasons; a SIEM outage across a restart of warden loses nothing
//! and duplicates nothing; a queue past its bound drops, counts and reports. And the decision
//! log answers "who was blocked when, by what".

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use warden::events::cef;

use crate::support::{Server, enc, eventually, free_port, start_warden};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rsyslog");

/// A list name, a policy name and a reason with every character CEF escapes (and a newline
/// where warden allows one: names come from the configuration; reasons refuse control
/// characters).
const LIST: &str = "Sus|pi=cious\\Users\nB";
const POLICY: &str = "Block | bad = users \\ here\nnow";
const REASON: &str = "r|e=a\\son x=y";
/// A principal with the same characters (a principal may hold any but control characters).
const PRINCIPAL: &str = "CORP\\a|b=c";

/// One rsyslog of this test, stopped and removed when dropped.
struct Rsyslog {
    dir: tempfile::TempDir,
    port: u16,
}

impl Rsyslog {
    fn start() -> Rsyslog {
        let r = Rsyslog {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
        };
        r.resume();
        r
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new(SCRIPT)
            .args(args)
            .output()
            .expect("run scripts/rsyslog");
        assert!(
            out.status.success(),
            "scripts/rsyslog {args:?} failed (run `scripts/rsyslog install`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts (again) on the same port, CA and file.
    fn resume(&self) {
        let dir = self.dir.path().display().to_string();
        self.script(&["start", &dir, &self.port.to_string()]);
    }

    fn stop(&self) {
        self.script(&["stop", &self.dir.path().display().to_string()]);
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// Two sinks to this receiver, CEF and OCSF; `extra` is added to each.
    fn sinks(&self, extra: &str) -> String {
        format!(
            r#"
[[events.sinks]]
name = "siem-cef"
type = "syslog"
address = "127.0.0.1:{port}"
ca_file = "{ca}"
{extra}

[[events.sinks]]
name = "siem-ocsf"
type = "syslog"
format = "ocsf"
address = "localhost:{port}"
ca_file = "{ca}"
{extra}
"#,
            port = self.port,
            ca = self.ca().display(),
        )
    }

    /// Every message received so far, parsed.
    fn messages(&self) -> Vec<Message> {
        let text =
            std::fs::read_to_string(self.dir.path().join("received.log")).unwrap_or_default();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(Message::parse)
            .collect()
    }

    /// Waits until `done` holds for the messages received, and returns them.
    fn wait(&self, what: &str, server: &Server, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
        let mut last = Vec::new();
        let ok = eventually(Duration::from_secs(60), || {
            last = self.messages();
            done(&last)
        });
        assert!(
            ok.is_some(),
            "{what} never arrived; received:\n{}\nwarden logs:\n{}",
            last.iter()
                .map(|m| m.raw.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            server.logs()
        );
        last
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .arg("destroy")
            .arg(self.dir.path())
            .output();
    }
}

/// One received RFC 5424 message.
#[derive(Debug, Clone)]
struct Message {
    raw: String,
    pri: String,
    msgid: String,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Cef(cef::Parsed),
    Ocsf(Value),
}

impl Message {
    fn parse(line: &str) -> Message {
        let parts: Vec<&str> = line.splitn(8, ' ').collect();
        assert_eq!(parts.len(), 8, "not RFC 5424: {line:?}");
        assert!(
            parts[0].starts_with('<') && parts[0].ends_with(">1"),
            "{line:?}"
        );
        assert!(
            parts[1].ends_with('Z') && parts[1].contains('.'),
            "{line:?}"
        );
        assert_eq!(parts[3], "warden", "{line:?}");
        assert_eq!(parts[6], "-", "{line:?}");
        let msg = parts[7];
        let body = if msg.starts_with("CEF:") {
            Body::Cef(cef::parse(msg).unwrap_or_else(|e| panic!("{e}: {msg:?}")))
        } else {
            Body::Ocsf(serde_json::from_str(msg).unwrap_or_else(|e| panic!("{e}: {msg:?}")))
        };
        Message {
            raw: line.to_owned(),
            pri: parts[0].to_owned(),
            msgid: parts[5].to_owned(),
            body,
        }
    }

    fn cef(&self) -> Option<&cef::Parsed> {
        match &self.body {
            Body::Cef(c) => Some(c),
            Body::Ocsf(_) => None,
        }
    }

    fn ocsf(&self) -> Option<&Value> {
        match &self.body {
            Body::Ocsf(o) => Some(o),
            Body::Cef(_) => None,
        }
    }
}

/// The CEF and the OCSF message of signature `msgid` about `user`.
fn pair<'a>(
    messages: &'a [Message],
    msgid: &str,
    user: &str,
) -> Option<(&'a Message, &'a Message)> {
    let of = |m: &&Message| m.msgid == msgid;
    let cef = messages
        .iter()
        .filter(of)
        .find(|m| m.cef().is_some_and(|c| c.get("duser") == Some(user)))?;
    let ocsf = messages.iter().filter(of).find(|m| {
        m.ocsf()
            .is_some_and(|o| o["user"]["name"] == user || o["actor"]["user"]["name"] == user)
    })?;
    Some((cef, ocsf))
}

fn config(extra: &str) -> String {
    format!(
        r#"
[store]
path = "warden.db"

# Names with no domain (and the hostile ones) are listed as the text they are.
[identity]
unresolvable = "keep"

[[lists]]
name = "{list}"

[[data_sets]]
name = "Suspicious Users"
case_sensitive = false
columns = [{{ name = "user", key = true }}]
source = {{ type = "list", list = "{list}" }}

[[policies]]
name = "{policy}"
action = "block"
severity = "high"
apply_to = ["*"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "Suspicious Users"
{extra}
"#,
        list = toml_escape(LIST),
        policy = toml_escape(POLICY),
    )
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

fn start(dir: &Path, config: &str) -> Server {
    std::fs::write(dir.join("warden.toml"), config).unwrap();
    let server = start_warden(dir, &["--config", "warden.toml"]);
    server.wait_ready();
    server
}

fn members_path() -> String {
    format!("/v1/lists/{}/members", enc(LIST))
}

fn contain(server: &Server, principal: &str, reason: &str) {
    let body = serde_json::json!({ "principal": principal, "reason": reason });
    let r = server.post_json(&members_path(), &body);
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A containment and a release of a principal with hostile characters, and the decision
/// that blocks it, arrive at rsyslog over TLS as CEF and as OCSF, every field as sent.
#[test]
fn containment_release_and_a_block_arrive_as_cef_and_ocsf() {
    let rsyslog = Rsyslog::start();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &config(&rsyslog.sinks("")));
    contain(&server, PRINCIPAL, REASON);
    assert_eq!(server.decision("finance", PRINCIPAL), "block");
    let r = server.call(
        "DELETE",
        &format!("{}/{}", members_path(), enc(PRINCIPAL)),
        server.admin_key.as_deref(),
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let got = rsyslog.wait("containment, block and release", &server, |m| {
        ["lists.add", "lists.remove", "decision.block"]
            .iter()
            .all(|id| pair(m, id, PRINCIPAL).is_some())
    });

    // The containment: Account Change, Lock.
    let (c, o) = pair(&got, "lists.add", PRINCIPAL).unwrap();
    assert_eq!(c.pri, "<82>1", "authpriv.crit: {}", c.raw);
    let cef = c.cef().unwrap();
    assert_eq!(cef.version, "0");
    assert_eq!(cef.header.vendor, "warden");
    assert_eq!(cef.header.product, "warden");
    assert_eq!(cef.header.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(cef.header.signature, "lists.add");
    assert_eq!(cef.header.name, "User contained");
    assert_eq!(cef.severity, "8");
    let actor = cef.get("suser").unwrap();
    assert!(
        actor.starts_with("key:") && actor.ends_with("(bootstrap admin)"),
        "{actor}"
    );
    assert_eq!(cef.get("duser"), Some(PRINCIPAL));
    assert_eq!(cef.get("src"), Some("127.0.0.1"));
    assert!(cef.get("spt").unwrap().parse::<u16>().is_ok());
    assert_eq!(cef.get("act"), Some("Lock"));
    assert_eq!(cef.get("outcome"), Some("success"));
    assert_eq!(cef.get("cat"), Some("Account Change"));
    assert_eq!(cef.labelled("target"), Some(LIST), "the newline comes back");
    assert_eq!(cef.labelled("reason"), Some(REASON));
    let rt: i64 = cef.get("rt").unwrap().parse().unwrap();
    assert!(rt > 1_600_000_000_000, "rt in ms: {rt}");
    let id = cef.get("externalId").unwrap();
    assert!(id.starts_with("audit-"), "{id}");
    assert!(cef.get("msg").unwrap().contains(PRINCIPAL));
    // On the wire, as the standard spells it.
    assert!(c.raw.contains(r"duser=CORP\\a|b\=c "), "{}", c.raw);
    assert!(c.raw.contains(r"cs1=Sus|pi\=cious\\Users\nB "), "{}", c.raw);
    assert!(c.raw.contains(r"cs4=r|e\=a\\son x\=y "), "{}", c.raw);

    let ocsf = o.ocsf().unwrap();
    assert_eq!(ocsf["class_uid"], 3001);
    assert_eq!(ocsf["category_uid"], 3);
    assert_eq!(ocsf["activity_id"], 9);
    assert_eq!(ocsf["activity_name"], "Lock");
    assert_eq!(ocsf["type_uid"], 300_109);
    assert_eq!(ocsf["severity_id"], 4);
    assert_eq!(ocsf["status_id"], 1);
    assert_eq!(ocsf["time"], rt);
    assert_eq!(ocsf["metadata"]["version"], "1.8.0");
    assert_eq!(ocsf["metadata"]["product"]["name"], "warden");
    assert_eq!(ocsf["metadata"]["product"]["vendor_name"], "warden");
    assert_eq!(ocsf["metadata"]["uid"], id);
    assert_eq!(ocsf["metadata"]["event_code"], "lists.add");
    assert_eq!(ocsf["user"]["name"], PRINCIPAL);
    assert_eq!(ocsf["user"]["domain"], "CORP");
    assert_eq!(ocsf["actor"]["user"]["name"], actor);
    assert_eq!(ocsf["src_endpoint"]["ip"], "127.0.0.1");
    assert_eq!(ocsf["status_detail"], REASON);
    assert_eq!(ocsf["unmapped"]["target"], LIST);

    // The release: Account Change, Unlock.
    let (c, o) = pair(&got, "lists.remove", PRINCIPAL).unwrap();
    assert_eq!(c.pri, "<84>1", "authpriv.warning: {}", c.raw);
    let cef = c.cef().unwrap();
    assert_eq!(cef.header.name, "User released");
    assert_eq!(cef.severity, "5");
    assert_eq!(cef.get("act"), Some("Unlock"));
    assert_eq!(cef.get("outcome"), Some("success"));
    assert_eq!(cef.labelled("target"), Some(LIST));
    let ocsf = o.ocsf().unwrap();
    assert_eq!(
        (
            ocsf["class_uid"].clone(),
            ocsf["activity_id"].clone(),
            ocsf["type_uid"].clone()
        ),
        (3001.into(), 12.into(), 300_112.into())
    );
    assert_eq!(ocsf["activity_name"], "Unlock");
    assert_eq!(ocsf["unmapped"]["target"], LIST);

    // The decision: Datastore Activity, Connect, Failure, naming the policy and snapshot.
    let (c, o) = pair(&got, "decision.block", PRINCIPAL).unwrap();
    let cef = c.cef().unwrap();
    assert_eq!(cef.header.name, "Access blocked by policy");
    assert_eq!(cef.get("outcome"), Some("failure"));
    assert_eq!(cef.get("act"), Some("Connect"));
    assert_eq!(cef.labelled("policy"), Some(POLICY));
    assert_eq!(cef.labelled("service"), Some("finance"));
    assert!(
        c.raw.contains(r"cs3=Block | bad \= users \\ here\nnow "),
        "{}",
        c.raw
    );
    let ocsf = o.ocsf().unwrap();
    assert_eq!(ocsf["class_uid"], 6005);
    assert_eq!(ocsf["type_uid"], 600_503);
    assert_eq!(ocsf["status_id"], 2);
    assert_eq!(ocsf["database"]["name"], "finance");
    assert_eq!(ocsf["unmapped"]["policy"], POLICY);
    assert_eq!(ocsf["unmapped"]["matched"][0]["policy"], POLICY);
    assert!(ocsf["unmapped"]["snapshot_revision"].as_i64().unwrap() > 0);
    assert_eq!(ocsf["unmapped"]["data_sets"][0]["name"], "Suspicious Users");
    assert_eq!(ocsf["metadata"]["uid"], cef.get("externalId").unwrap());
}

/// A session the PostgreSQL gate refuses arrives as an Authentication (Logon, Failure) in
/// both formats, with the client, the gate, the service and the blocking policy.
#[test]
fn a_gate_refusal_arrives_as_cef_and_ocsf() {
    let pg = crate::support::postgres();
    let rsyslog = Rsyslog::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gate = format!(
        "[[gates]]\nname = \"appdb\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"localhost:{}\"\n\
         service = \"pg-appdb\"\ntls_cert_file = \"{d}/tls/server.pem\"\n\
         tls_key_file = \"{d}/tls/server.key\"\nupstream_ca_file = \"{}\"\n",
        pg.port,
        pg.ca.display(),
        d = pg.dir.display(),
    );
    let server = start(
        dir.path(),
        &config(&format!(
            "{gate}\n[[domains]]\nnetbios = \"CORP\"\ndns = \"corp.example.test\"\ndefault = true\n{}",
            rsyslog.sinks("decisions = false")
        )),
    );
    assert!(
        eventually(Duration::from_secs(20), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok())
        .is_some()
    );
    contain(&server, "bob", REASON);
    let out = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} dbname=appdb user=bob sslmode=verify-full sslrootcert={}",
            pg.ca.display()
        ))
        .args(["-X", "-At", "-c", "SELECT 1"])
        .env("PGPASSWORD", pg.password("bob"))
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("suspended by policy"),
        "bob was not refused: {stderr}"
    );
    let got = rsyslog.wait("the gate refusal", &server, |m| {
        pair(m, "gate.refusal", "bob").is_some()
    });
    let (c, o) = pair(&got, "gate.refusal", "bob").unwrap();
    let cef = c.cef().unwrap();
    assert_eq!(cef.header.signature, "gate.refusal");
    assert_eq!(cef.header.name, "Logon refused at a database gate");
    assert_eq!(cef.severity, "8");
    assert_eq!(cef.get("suser"), Some("gate:appdb"));
    assert_eq!(cef.get("src"), Some("127.0.0.1"));
    assert_eq!(cef.get("act"), Some("Logon"));
    assert_eq!(cef.get("outcome"), Some("failure"));
    assert_eq!(cef.get("cat"), Some("Authentication"));
    assert_eq!(cef.labelled("target"), Some("appdb"));
    assert_eq!(cef.labelled("service"), Some("pg-appdb"));
    assert_eq!(cef.labelled("policy"), Some(POLICY));
    assert_eq!(
        cef.labelled("reason"),
        Some(format!("blocked by policy \"{POLICY}\"").as_str())
    );
    assert!(
        c.raw.contains(r"cs3=Block | bad \= users \\ here\nnow "),
        "{}",
        c.raw
    );
    let ocsf = o.ocsf().unwrap();
    assert_eq!(ocsf["class_uid"], 3002);
    assert_eq!(ocsf["activity_id"], 1);
    assert_eq!(ocsf["type_uid"], 300_201);
    assert_eq!(ocsf["status_id"], 2);
    assert_eq!(ocsf["status"], "Failure");
    assert_eq!(ocsf["user"]["name"], "bob");
    assert_eq!(ocsf["src_endpoint"]["ip"], "127.0.0.1");
    assert_eq!(ocsf["service"]["name"], "pg-appdb");
    assert_eq!(ocsf["dst_endpoint"]["name"], "appdb");
    assert_eq!(ocsf["unmapped"]["policy"], POLICY);
    assert_eq!(ocsf["metadata"]["event_code"], "gate.refusal");
}

/// A listed member removed from the mapped AD group by hand is put back; the repair arrives
/// as Group Management (Add User) naming the group, as does the push that first added her.
#[test]
fn a_drift_repair_arrives_as_cef_and_ocsf() {
    use crate::dc;
    let _g = dc::shared();
    let dc = dc::dc();
    let rsyslog = Rsyslog::start();
    let dir = tempfile::tempdir().unwrap();
    let ns = dc::Ns::new(dc);
    ns.add_user(dc, "alice");
    let group = ns.add_group(dc, "Suspicious", &[]);
    let path = dc::AdConfig::seed(&ns, &group).write(dc, dir.path());
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&rsyslog.sinks("decisions = false"));
    let server = start(dir.path(), &text);
    let alice = ns.mapped("alice");
    let body = serde_json::json!({ "principal": alice, "reason": REASON });
    let r = server.post_json("/v1/lists/Suspicious%20Users/members", &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let in_group = || {
        dc.values(&group, "member")
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&ns.user_dn("alice")))
    };
    assert!(
        eventually(Duration::from_secs(30), in_group).is_some(),
        "alice never pushed; logs:\n{}",
        server.logs()
    );
    assert!(
        eventually(Duration::from_secs(20), || server
            .logs()
            .contains("watching for changes"))
        .is_some(),
        "no watch; logs:\n{}",
        server.logs()
    );
    ns.set_members(dc, &group, "delete", &[ns.user_dn("alice")]);
    // Events name the account as the domain rules spell it (CORP\…), whatever was typed.
    let account = match alice.split_once('\\') {
        Some((domain, name)) => format!("{}\\{name}", domain.to_uppercase()),
        None => alice.clone(),
    };
    let got = rsyslog.wait("the drift repair", &server, |m| {
        pair(m, "group.drift_repaired", &account).is_some()
    });
    let (c, o) = pair(&got, "group.drift_repaired", &account).unwrap();
    let cef = c.cef().unwrap();
    assert_eq!(cef.header.name, "Group membership repaired after drift");
    assert_eq!(cef.severity, "8");
    assert_eq!(cef.get("suser"), Some("system"));
    assert_eq!(cef.get("sproc"), Some("drift repair"));
    assert_eq!(cef.get("act"), Some("Add User"));
    assert_eq!(cef.get("cat"), Some("Group Management"));
    assert_eq!(cef.labelled("target"), Some(group.as_str()));
    assert_eq!(cef.labelled("reason"), Some("drift repaired"));
    assert!(
        c.raw
            .contains(&format!("cs1={} ", group.replace('=', "\\="))),
        "{}",
        c.raw
    );
    let ocsf = o.ocsf().unwrap();
    assert_eq!(ocsf["class_uid"], 3006);
    assert_eq!(ocsf["activity_id"], 3);
    assert_eq!(ocsf["type_uid"], 300_603);
    assert_eq!(ocsf["group"]["name"], group.as_str());
    assert_eq!(ocsf["user"]["name"], account.as_str());
    assert_eq!(ocsf["status_detail"], "drift repaired");
    assert_eq!(ocsf["unmapped"]["list"], "Suspicious Users");
    // The first push's change to the surface came before, as its own event.
    let pushed = got
        .iter()
        .filter(|m| m.msgid == "push.member_added")
        .count();
    assert!(pushed >= 2, "no push.member_added in both formats");
    let added = got
        .iter()
        .filter_map(Message::cef)
        .find(|c| c.header.signature == "push.member_added")
        .unwrap();
    assert_eq!(added.labelled("target"), Some(group.as_str()));
    assert!(
        added.get("duser").unwrap().eq_ignore_ascii_case(&account),
        "{:?}",
        added.get("duser")
    );
}

/// The number of a sink in `/readyz`'s `events.sinks`.
fn sink_status(server: &Server, name: &str) -> Value {
    let r = server.get("/readyz");
    r.json()["events"]["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["sink"] == name).cloned())
        .unwrap_or_else(|| panic!("no sink {name} in {}", r.body))
}

/// rsyslog stops; 1,000 principals are contained; warden itself restarts; rsyslog comes
/// back: all 1,000 containments arrive, in order, each once.
#[test]
fn a_siem_outage_across_a_restart_of_warden_loses_nothing() {
    let rsyslog = Rsyslog::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        r#"
[[events.sinks]]
name = "siem"
type = "syslog"
address = "127.0.0.1:{}"
ca_file = "{}"
decisions = false
"#,
        rsyslog.port,
        rsyslog.ca().display()
    );
    let text = config(&sink);
    let mut server = start(dir.path(), &text);
    contain(&server, "warm-up", REASON);
    rsyslog.wait("the first containment", &server, |m| {
        m.iter()
            .any(|m| m.cef().is_some_and(|c| c.get("duser") == Some("warm-up")))
    });
    // Delivered for good (the connection stayed up past the confirmation time).
    assert!(
        eventually(Duration::from_secs(20), || {
            sink_status(&server, "siem")["delivered"]
                .as_u64()
                .is_some_and(|n| n >= 1)
        })
        .is_some()
    );
    rsyslog.stop();
    assert!(
        eventually(
            Duration::from_secs(20),
            || sink_status(&server, "siem")["connected"] == false
        )
        .is_some(),
        "the sink never noticed the receiver went away: {}",
        sink_status(&server, "siem")
    );
    let names: Vec<String> = (0..1000).map(|i| format!("u{i:04}")).collect();
    for n in &names {
        contain(&server, n, "outage");
    }
    assert!(
        eventually(Duration::from_secs(60), || {
            sink_status(&server, "siem")["queued_bytes"]
                .as_u64()
                .is_some_and(|b| b > 1000 * 300)
        })
        .is_some(),
        "not queued: {}",
        sink_status(&server, "siem")
    );
    assert_eq!(
        server.stop(),
        Some(0),
        "warden stopped badly:\n{}",
        server.logs()
    );
    let server = start_warden(dir.path(), &["--config", "warden.toml"]);
    rsyslog.resume();
    rsyslog.wait("1,000 containments", &server, |m| {
        m.iter().filter(|m| m.msgid == "lists.add").count() >= 1001
    });
    // Let anything sent twice arrive too, then count.
    std::thread::sleep(Duration::from_secs(3));
    let got: Vec<Message> = rsyslog
        .messages()
        .into_iter()
        .filter(|m| m.msgid == "lists.add")
        .collect();
    assert!(got.len() >= 1001);
    let users: Vec<&str> = got
        .iter()
        .map(|m| m.cef().unwrap().get("duser").unwrap())
        .collect();
    assert_eq!(users[0], "warm-up");
    assert_eq!(
        users[1..],
        names.iter().map(String::as_str).collect::<Vec<_>>()[..],
        "in order, each once"
    );
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|m| m.cef().unwrap().get("externalId").unwrap())
        .collect();
    assert_eq!(ids.len(), got.len(), "no event twice");
    drop(server);
}

/// A sink whose receiver is down fills its queue to the bound; the rest is dropped, counted
/// (metric, `/readyz`) and, once the queue has room again, audited — and the audit record
/// itself reaches the SIEM.
#[test]
fn drops_past_the_queue_bound_are_counted_and_reported() {
    let rsyslog = Rsyslog::start();
    rsyslog.stop();
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        r#"
[[events.sinks]]
name = "small"
type = "syslog"
address = "127.0.0.1:{}"
ca_file = "{}"
decisions = false
queue_max_bytes = 4096
"#,
        rsyslog.port,
        rsyslog.ca().display()
    );
    let server = start(dir.path(), &config(&sink));
    for i in 0..40 {
        contain(&server, &format!("d{i:02}"), "fill");
    }
    let dropped = || {
        sink_status(&server, "small")["dropped_queue_full"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(20), || dropped() > 0).is_some(),
        "{}",
        sink_status(&server, "small")
    );
    // The writer follows the audit log every 200 ms: let it take the last of the 40.
    std::thread::sleep(Duration::from_secs(2));
    let n = dropped();
    assert!(n > 0 && n < 40, "{}", sink_status(&server, "small"));
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains(&format!(
            "warden_events_dropped_total{{sink=\"small\",reason=\"queue_full\"}} {n}"
        )),
        "{metrics}"
    );
    assert_eq!(sink_status(&server, "small")["dropped"], n);
    rsyslog.resume();
    let got = rsyslog.wait("the drop report", &server, |m| {
        m.iter().any(|m| m.msgid == "events.dropped")
    });
    let report = got
        .iter()
        .filter_map(Message::cef)
        .find(|c| c.header.signature == "events.dropped")
        .unwrap();
    assert_eq!(report.get("cnt"), Some(n.to_string().as_str()));
    assert_eq!(report.labelled("target"), Some("small"));
    assert_eq!(report.get("outcome"), Some("failure"));
    let audit = server.get("/v1/audit?action=events.dropped").json();
    let records = audit["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["detail"]["count"], n);
    assert_eq!(records[0]["target"], "small");
    // What was queued arrived, the oldest first: drops are the newest.
    let users: Vec<String> = got
        .iter()
        .filter(|m| m.msgid == "lists.add")
        .filter_map(|m| m.cef()?.get("duser").map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..users.len()).map(|i| format!("d{i:02}")).collect();
    assert_eq!(users, expected);
    assert_eq!(users.len() as u64 + n, 40);
}

/// "Was alice blocked at 14:02 on finance, and by what?": every block is in the decision
/// log with its policy, snapshot and data sets, found by any spelling of the account, by
/// time, over HTTP and from the command line; allows are not logged unless sampled. The
/// same record reaches a file sink as an OCSF line.
#[test]
fn the_decision_log_says_who_was_blocked_when_and_by_what() {
    let dir = tempfile::tempdir().unwrap();
    let sink = "[[events.sinks]]\nname = \"file\"\ntype = \"file\"\npath = \"events.jsonl\"\n";
    let server = start(dir.path(), &config(sink));
    contain(&server, "corp\\alice", "INC-9");
    let before = warden::base::time::now_ms();
    assert_eq!(server.decision("finance", "CORP\\Alice"), "block");
    assert_eq!(server.decision("finance", "bob"), "allow");
    let after = warden::base::time::now_ms() + 1;
    let query = |q: &str| {
        let r = server.get(&format!("/v1/decision-log?{q}"));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["decisions"].as_array().unwrap().clone()
    };
    let found = eventually(Duration::from_secs(10), || {
        !query("principal=alice%40corp.example.test").is_empty()
    });
    assert!(found.is_some(), "{}", server.logs());
    let hits = query(&format!(
        "principal=alice%40corp.example.test&since={before}&until={after}&service=finance"
    ));
    assert_eq!(hits.len(), 1, "{hits:?}");
    let d = &hits[0];
    assert_eq!(d["decision"], "block");
    assert_eq!(d["db_user"][0], "CORP\\Alice");
    assert_eq!(d["service"], "finance");
    assert_eq!(d["matched"][0]["policy"], POLICY);
    assert_eq!(d["matched"][0]["action"], "block");
    assert!(d["snapshot_revision"].as_i64().unwrap() > 0);
    assert!(d["snapshot_version"].as_u64().unwrap() > 0);
    assert_eq!(d["data_sets"][0]["name"], "Suspicious Users");
    assert_eq!(d["data_sets"][0]["rows"], 1);
    let at = d["at_ms"].as_i64().unwrap();
    assert!((before..after).contains(&at));
    assert!(query(&format!("since={after}")).is_empty());
    assert!(
        query("principal=bob").is_empty(),
        "allows are sampled only by opt-in"
    );
    let r = server.get("/v1/decision-log?decision=maybe");
    assert_eq!(r.status, 400, "{}", r.body);
    let cli = crate::support::run({
        let mut c = crate::support::warden_cmd(dir.path());
        c.args([
            "--config",
            "warden.toml",
            "decision-log",
            "--principal",
            "Corp\\ALICE",
            "--json",
        ]);
        c
    });
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    let out: Value = serde_json::from_str(&cli.stdout).unwrap();
    assert_eq!(out["decisions"][0]["id"], d["id"]);
    let line = eventually(Duration::from_secs(20), || {
        std::fs::read_to_string(dir.path().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(d["id"].as_str().unwrap()))
    });
    assert!(line.is_some(), "the decision never reached the file sink");
    let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    let event: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["metadata"]["uid"] == d["id"])
        .unwrap();
    assert_eq!(event["class_uid"], 6005);
    assert_eq!(event["actor"]["user"]["name"], "CORP\\Alice");
    assert_eq!(event["unmapped"]["decision_id"], d["id"]);
    assert_eq!(
        event["unmapped"]["snapshot_revision"],
        d["snapshot_revision"]
    );
    assert_eq!(
        crate::support::mode_of(&dir.path().join("events.jsonl")),
        0o600
    );
}
