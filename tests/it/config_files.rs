//! Every file shipped under config/ parses and validates, so examples cannot rot; and a broken
//! configuration reports every problem with its key path and line.

use std::path::Path;

use warden::config::Config;

use crate::support::{run, warden_cmd};

fn toml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

#[test]
fn every_shipped_config_validates() {
    let mut files = Vec::new();
    toml_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
        &mut files,
    );
    assert!(
        files.len() >= 2,
        "expected the default and the AD example, found {files:?}"
    );
    for f in &files {
        if let Err(e) = Config::load(f) {
            panic!("{e}");
        }
    }
    Config::embedded_default().unwrap();
}

const BROKEN: &str = r#"
[server]
listen = "nowhere"
colour = "blue"

[[directories]]
name = "dc"
url = "ldap://dc.example:389"
bind_dn = "CN=x"
bind_password = "hunter2-inline"
base_dn = "DC=x"
timeout = "10"

[[lists]]
name = "Suspicious Users"

[[mappings]]
list = "Suspicous Users"
directory = "dc"
group_dn = "CN=g,DC=x"

[[data_sets]]
name = "PTR"
columns = [{ name = "user", key = true }]
[data_sets.source]
type = "ldap"
directory = "dc"
base = "DC=x"
filter = "(memberOf=x)"
[[data_sets.source.mappings]]
column = "user"
attribute = "userPrincipalName"
match = '^([^@]*@'
substitute = '$2\$1'

[[policies]]
name = "p"
action = "deny"
severity = "high"
apply_to = ["*"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "Missing"
search_in = ["user"]
"#;

#[test]
fn broken_config_reports_every_problem_with_key_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, BROKEN).unwrap();
    let out = run({
        let mut c = warden_cmd(dir.path());
        c.arg("check-config").arg(&path);
        c
    });
    assert_eq!(out.code, 1, "{}", out.stderr);
    let expected = [
        "server.listen (line 3)",
        "server.colour (line 4): unknown field",
        "directories[0].url (line 8): ",
        "directories[0].bind_password (line 10): inline secrets are not allowed",
        "directories[0].timeout (line 12): \"10\" has no unit",
        "mappings[0].list (line 18): names list \"Suspicous Users\", which does not exist",
        "data_sets[0].source.mappings[0].match (line 33): invalid match pattern",
        "policies[0].action (line 38): \"deny\" is not one of block, none",
        "policies[0].criteria[0].data_set (line 44): names data set \"Missing\"",
    ];
    for e in expected {
        assert!(out.stderr.contains(e), "missing {e:?} in:\n{}", out.stderr);
    }
    assert!(out.stderr.contains("9 problems"), "{}", out.stderr);
    // The inline secret is rejected without being echoed.
    assert!(!out.stderr.contains("hunter2-inline"), "{}", out.stderr);
}

#[test]
fn syntax_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("syntax.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:1\"\n[[lists]\nname = \"x\"\n",
    )
    .unwrap();
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.errors[0].line, Some(3), "{err}");
    assert!(err.to_string().contains("TOML syntax"), "{err}");
}

#[test]
fn broken_gates_report_their_key_paths() {
    let text = r#"
[server]
listen = "127.0.0.1:8470"

[[gates]]
name = "a"
listen = "127.0.0.1:8470"
upstream = "db1.corp.example.test"
service = ""

[[gates]]
name = "b"
listen = "127.0.0.1:6432"
upstream = "db1.corp.example.test:5432"
service = "pg-b"
upstream_plain = true
allow_plain = true
max_connections = 0

[[gates]]
name = "c"
listen = "127.0.0.1:6433"
upstream = "localhost:5432"
service = "pg-c"
tls_cert_file = "gate.pem"
upstream_ca_file = "ca.pem"
upstream_plain = true
idle_timeout = "0s"
"#;
    let err = Config::parse(text, "gates.toml", Path::new("/etc/warden")).unwrap_err();
    let shown = err.to_string();
    let expected = [
        "gates[0].upstream (line 8): \"db1.corp.example.test\" is not host:port",
        "gates[0].service (line 9): must not be empty",
        "gates[0].upstream_ca_file",
        "gates[1].upstream_plain (line 16): is only allowed for a loopback upstream",
        "gates[1].max_connections (line 18): must be at least 1",
        "gates[2].tls_key_file",
        "gates[2].upstream_plain (line 27): cannot be true with upstream_ca_file",
        "gates[2].idle_timeout (line 28): must be longer than zero",
    ];
    for e in expected {
        assert!(shown.contains(e), "missing {e:?} in:\n{shown}");
    }
    // The first gate also lacks a certificate, but it is not valid enough to say so; a valid
    // one without either is told.
    let bare = "[[gates]]\nname = \"d\"\nlisten = \"127.0.0.1:6434\"\nupstream = \"localhost:5432\"\n\
                service = \"pg-d\"\nupstream_plain = true\n";
    let err = Config::parse(bare, "bare.toml", Path::new(".")).unwrap_err();
    assert!(
        err.to_string()
            .contains("gates[0].tls_cert_file (line 1): a gate needs a certificate"),
        "{err}"
    );
    // A good one resolves its files against the config's directory.
    let good = format!("{bare}allow_plain = true\nidle_timeout = \"5m\"\n");
    let config = Config::parse(&good, "good.toml", Path::new(".")).unwrap();
    let g = &config.gates[0];
    assert_eq!(
        (g.upstream_host.as_str(), g.upstream_port),
        ("localhost", 5432)
    );
    assert_eq!(g.max_startup_bytes, 10 * 1024);
    assert_eq!(g.idle_timeout, Some(std::time::Duration::from_secs(300)));
}

/// A gate in front of a service decided on `db_user` must say whose accounts its bare logins
/// are: without a `domain` (or a default domain) they would match no listed `DOMAIN\user`,
/// and check-config says which setting fixes it.
#[test]
fn a_gate_whose_bare_logins_belong_to_no_domain_is_refused_with_the_fix() {
    let policy = r#"
[[lists]]
name = "L"
[[data_sets]]
name = "L"
columns = [{ name = "user", key = true }]
source = { type = "list", list = "L" }
[[policies]]
name = "p"
action = "block"
severity = "high"
apply_to = ["pg-*"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "L"
"#;
    let gate = "[[gates]]\nname = \"g\"\nlisten = \"127.0.0.1:6434\"\nupstream = \"localhost:5432\"\n\
                service = \"pg-d\"\nupstream_plain = true\nallow_plain = true\n";
    let corp = "[[domains]]\nnetbios = \"CORP\"\ndns = \"corp.example.test\"\n";
    let err = Config::parse(&format!("{policy}{gate}"), "g.toml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gates[0].domain")
            && err.contains("domain = \"CORP\"")
            && err.contains("default = true"),
        "{err}"
    );
    // Its own domain, or the default domain: accepted, and bare logins are that domain's.
    let own = Config::parse(
        &format!("{policy}{corp}{gate}domain = \"corp\"\n"),
        "g.toml",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(own.gates[0].domain.as_deref(), Some("CORP"));
    assert_eq!(own.gates[0].account_name("alice"), "CORP\\alice");
    let inherited = Config::parse(
        &format!("{policy}{corp}default = true\n{gate}"),
        "g.toml",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(inherited.gates[0].domain.as_deref(), Some("CORP"));
    let unknown = Config::parse(
        &format!("{policy}{gate}domain = \"PARTNER\"\n"),
        "g.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(
        unknown.contains("gates[0].domain") && unknown.contains("not in [[domains]]"),
        "{unknown}"
    );
}

#[test]
fn broken_databases_report_their_key_paths() {
    let text = r#"
[[directories]]
name = "corp"
url = "ldaps://dc1.corp.example.test"
bind_dn = "CN=warden,CN=Users,DC=corp,DC=example,DC=test"
bind_password_file = "bind.secret"
base_dn = "DC=corp,DC=example,DC=test"

[[lists]]
name = "Suspicious Users"

[[databases]]
name = "corp"
host = "db1.corp.example.test"
user = "warden"
password = "inline"
plain = true

[[databases.roles]]
list = "Nobody"
role = "warden_blocked"
match = '^[^\\]*\\(.*)$'
substitute = "$2"

[[databases]]
name = "db2"
host = "db2.corp.example.test"
user = "warden"
password_env = "DB2_PASSWORD"
roles = []
"#;
    let err = Config::parse(text, "databases.toml", Path::new("/etc/warden")).unwrap_err();
    let shown = err.to_string();
    let expected = [
        "databases[0].name (line 13): \"corp\" is also a directory's name",
        "databases[0].password (line 16): inline secrets are not allowed",
        "databases[0].plain (line 17): is only allowed for a loopback server",
        "databases[0].roles[0].list (line 20)",
        "databases[0].roles[0].substitute (line 23)",
        "databases[1].ca_file (line 25)",
        "databases[1].roles (line 30): missing `[[databases.roles]]`",
    ];
    for e in expected {
        assert!(shown.contains(e), "missing {e:?} in:\n{shown}");
    }
    let good = r#"
[[lists]]
name = "Suspicious Users"

[[databases]]
name = "db1"
host = "db1.corp.example.test"
user = "warden"
password_env = "DB1_PASSWORD"
ca_file = "ca.pem"

[[databases.roles]]
list = "Suspicious Users"
role = "warden_blocked"
match = '^[^\\]*\\(.*)$'
substitute = "$1"
"#;
    let config = Config::parse(good, "good.toml", Path::new("/etc/warden")).unwrap();
    let db = &config.databases[0];
    assert_eq!((db.port, db.dbname.as_str()), (5432, "postgres"));
    assert_eq!(
        db.roles[0].member.map_one("CORP\\alice").as_deref(),
        Some("alice")
    );
    assert_eq!(db.roles[0].member.map_one("alice"), None);
}
