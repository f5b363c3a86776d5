//! The containment API for playbooks (issue 30): `POST /v1/contain` of many principals with
//! an incident, its receipt (`GET /v1/contain/{id}`) showing each surface as the block lands
//! there — on the Samba DC, PostgreSQL and a gate — idempotent on the caller's key (on one
//! replica and across replicas of a PostgreSQL store), the release the same way, and the
//! shell playbook of `docs/playbooks/` run as shipped.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::accounts::{ad_gate_config, psql, store_database};
use crate::support::{Server, enc, eventually, list_config, postgres, start_warden};

/// Makes a key with `scopes` over HTTP with the bootstrap admin key.
fn make_key(server: &Server, name: &str, scopes: &[&str]) -> String {
    let r = server.post_json("/v1/keys", &json!({ "name": name, "scopes": scopes }));
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["key"].as_str().unwrap().to_owned()
}

/// POSTs `body` to `path` with `key` and, when given, an `Idempotency-Key` header.
fn post(
    server: &Server,
    path: &str,
    key: &str,
    idempotency: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    if let Some(k) = idempotency {
        headers.push(("Idempotency-Key", k));
    }
    let r = crate::support::http(
        server.addr,
        "POST",
        path,
        &headers,
        body.to_string().as_bytes(),
    );
    let value = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
    (r.status, value)
}

fn receipt(server: &Server, key: &str, id: &str) -> Value {
    let r = server.call("GET", &format!("/v1/contain/{}", enc(id)), Some(key), b"");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// The principal of a receipt written as `principal`.
fn principal<'a>(receipt: &'a Value, principal: &str) -> &'a Value {
    receipt["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["principal"] == principal)
        .unwrap_or_else(|| panic!("{principal} not in {receipt:#}"))
}

/// One surface of a receipt's principal.
fn surface<'a>(p: &'a Value, kind: &str) -> Option<&'a Value> {
    p["surfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["surface"] == kind)
}

/// On the Samba DC, a gate and PostgreSQL: two users contained in one request, one of them
/// with a `psql` session open through the gate. The receipt shows the group push (and that
/// the directory holds each), the row pulled back into the data set and the session ended,
/// each with its time, and becomes complete; a retried request under the same key contains
/// once; an unresolvable principal in a batch is reported, never dropped; the release lifts
/// the group and the pulled rows and its receipt says so.
#[test]
fn a_contain_lands_on_the_group_the_data_set_and_the_gate_and_its_receipt_says_when() {
    let _g = crate::dc::shared();
    let dc = crate::dc::dc();
    let ns = crate::dc::Ns::new(dc);
    let (ann, ann_dn) = (ns.sam("ann"), ns.add_user(dc, "ann"));
    let (ben, ben_dn) = (ns.sam("ben"), ns.add_user(dc, "ben"));
    let ben_upn = ns.upn("ben");
    let group = ns.add_group(dc, "Contained_Users", &[]);
    let password = format!("pw{}x", ns.p);
    psql(
        "postgres",
        &[
            "-c",
            &format!("CREATE ROLE \"{ann}\" LOGIN PASSWORD '{password}'"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let gate_port = crate::support::free_port();
    std::fs::write(
        dir.path().join("warden.toml"),
        ad_gate_config(dc, &ns, &group, gate_port),
    )
    .unwrap();
    let server = start_warden(dir.path(), &["--config", "warden.toml"]);
    server.wait_ready();
    let up = eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", gate_port)).is_ok()
    });
    assert!(up.is_some(), "{}", server.logs());
    let soar = make_key(&server, "soar", &["respond"]);

    // ann's session through the gate, open and busy until the gate ends it.
    let mut session = Kill(
        Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={gate_port} dbname=appdb user={ann} sslmode=verify-full \
             sslrootcert={}",
                postgres().ca.display()
            ))
            .args(["-X", "-At", "-c", "SELECT pg_sleep(600)"])
            .env("PGPASSWORD", &password)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let open = eventually(Duration::from_secs(20), || {
        let answer = server
            .call(
                "GET",
                &format!("/v1/accounts/{}", enc(&format!("CORP\\{ann}"))),
                Some(&soar),
                b"",
            )
            .json();
        !answer["open_gate_sessions"].as_array().unwrap().is_empty()
    });
    assert!(
        open.is_some(),
        "ann's session never opened: {}",
        server.logs()
    );

    let request = json!({
        "principals": [format!("CORP\\{ann}"), ben_upn],
        "list": "Suspicious Users",
        "incident": "SOAR-4711",
        "reason": "impossible travel",
        "expires_in": "1d",
        "confirm": ["group", "data_set"],
    });
    let started = Instant::now();
    let (status, first) = post(
        &server,
        "/v1/contain",
        &soar,
        Some("soar-4711-step-3"),
        &request,
    );
    assert_eq!(status, 201, "{first:#}");
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("RCPT-"), "{first:#}");
    assert!(
        first["incident"].as_str().unwrap().starts_with("INC-"),
        "{first:#}"
    );
    for p in first["principals"].as_array().unwrap() {
        assert_eq!(p["outcome"], "contained", "{first:#}");
        assert!(
            p["account_key"].as_str().unwrap().starts_with("guid:"),
            "{first:#}"
        );
    }
    assert_eq!(
        principal(&first, &ben_upn)["account"],
        format!("CORP\\{ben}")
    );
    assert_eq!(
        first["complete"], false,
        "nothing has landed yet: {first:#}"
    );

    // The receipt as the block lands: pushed into the group (which holds both), pulled back
    // into the data set, ann's session ended by the gate — each with its time.
    let mut last = Value::Null;
    let complete = eventually(Duration::from_secs(60), || {
        last = receipt(&server, &soar, &id);
        last["complete"] == true
            && surface(principal(&last, &format!("CORP\\{ann}")), "gate")
                .is_some_and(|g| g["state"] == "ended")
    });
    assert!(
        complete.is_some(),
        "never complete: {last:#}\n{}",
        server.logs()
    );
    let took = started.elapsed();
    eprintln!("contained everywhere {took:?} after the request");
    assert_eq!(last["missing"], json!([]), "{last:#}");
    for (name, dn) in [
        (format!("CORP\\{ann}"), &ann_dn),
        (ben_upn.clone(), &ben_dn),
    ] {
        let p = principal(&last, &name);
        assert_eq!(p["complete"], true, "{last:#}");
        let g = surface(p, "group").unwrap();
        assert_eq!(g["state"], "landed", "{last:#}");
        assert_eq!(g["holds_now"], true, "{last:#}");
        let d = surface(p, "data_set").unwrap();
        assert_eq!(d["target"], "PTR Suspicious Users", "{last:#}");
        assert_eq!(d["state"], "landed", "{last:#}");
        let (pushed, pulled) = (
            g["since_ms"].as_i64().unwrap(),
            d["since_ms"].as_i64().unwrap(),
        );
        assert!(pushed <= pulled, "pulled before it was pushed: {last:#}");
        assert!(
            dc.values(&group, "member")
                .iter()
                .any(|m| m.eq_ignore_ascii_case(dn)),
            "the directory does not hold {dn}"
        );
    }
    let ended = surface(principal(&last, &format!("CORP\\{ann}")), "gate").unwrap();
    assert_eq!(ended["target"], "appdb", "{last:#}");
    assert!(ended["since_ms"].as_i64().is_some(), "{last:#}");
    assert!(
        surface(principal(&last, &ben_upn), "gate").is_none(),
        "{last:#}"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut session.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("suspended by policy"),
        "ann's session was not ended by the gate: {stderr}"
    );

    // A retried step: the same receipt, nothing contained twice.
    let (status, again) = post(
        &server,
        "/v1/contain",
        &soar,
        Some("soar-4711-step-3"),
        &request,
    );
    assert_eq!(status, 200, "{again:#}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["replayed"], true);
    let history = server
        .get(&format!("/v1/accounts/{}", enc(&ben_upn)))
        .json();
    assert_eq!(
        history["lists"][0]["memberships"].as_array().unwrap().len(),
        1,
        "contained twice: {history:#}"
    );
    let incidents = server.get("/v1/incidents").json();
    let opened = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["title"] == "SOAR-4711")
        .count();
    assert_eq!(opened, 1, "{incidents:#}");
    // The same key with another request is refused, saying what to do.
    let mut other = request.clone();
    other["reason"] = json!("another reason");
    let (status, problem) = post(
        &server,
        "/v1/contain",
        &soar,
        Some("soar-4711-step-3"),
        &other,
    );
    assert_eq!(status, 409, "{problem:#}");
    assert!(
        problem["detail"].as_str().unwrap().contains("new key"),
        "{problem:#}"
    );

    // An unresolvable principal in a batch is reported with the reason; the others are
    // contained (ben again: another membership), and the receipt is never complete.
    let nobody = format!("CORP\\{}nobody", ns.p);
    let (status, mixed) = post(
        &server,
        "/v1/contain",
        &soar,
        None,
        &json!({
            "principals": [ben_upn, nobody],
            "list": "Suspicious Users",
            "incident": first["incident"],
            "reason": "second alert",
        }),
    );
    assert_eq!(status, 201, "{mixed:#}");
    assert_eq!(principal(&mixed, &ben_upn)["outcome"], "again", "{mixed:#}");
    let lost = principal(&mixed, &nobody);
    assert_eq!(lost["outcome"], "unresolved", "{mixed:#}");
    assert!(
        lost["error"].as_str().unwrap().contains("names no account"),
        "{mixed:#}"
    );
    assert_eq!(mixed["complete"], false, "{mixed:#}");
    assert!(
        mixed["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().starts_with(&nobody)),
        "{mixed:#}"
    );

    // The release, the same way: its receipt is complete once the group and the pulled
    // rows have let both go.
    let release = json!({
        "principals": [ann, ben_upn],
        "list": "Suspicious Users",
        "reason": "cleared by the analyst",
    });
    let (status, released) = post(
        &server,
        "/v1/release",
        &soar,
        Some("soar-4711-release"),
        &release,
    );
    assert_eq!(status, 201, "{released:#}");
    for p in released["principals"].as_array().unwrap() {
        assert_eq!(p["outcome"], "released", "{released:#}");
    }
    let rid = released["id"].as_str().unwrap().to_owned();
    let lifted = eventually(Duration::from_secs(60), || {
        last = receipt(&server, &soar, &rid);
        last["complete"] == true
    });
    assert!(lifted.is_some(), "release never complete: {last:#}");
    for name in [ann.as_str(), ben_upn.as_str()] {
        let p = principal(&last, name);
        assert_eq!(surface(p, "group").unwrap()["state"], "lifted", "{last:#}");
        assert_eq!(
            surface(p, "data_set").unwrap()["state"],
            "lifted",
            "{last:#}"
        );
    }
    assert!(dc.values(&group, "member").is_empty());
    let (status, again) = post(
        &server,
        "/v1/release",
        &soar,
        Some("soar-4711-release"),
        &release,
    );
    assert_eq!(status, 200, "{again:#}");
    assert_eq!(again["id"], rid.as_str());
}

/// A child process killed when the test ends, however it ends.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Requests are checked before anything is done, with a detail a person can act on; only a
/// `respond` key may contain; a receipt that does not exist is a 404 saying what ids are.
#[test]
fn contain_requests_are_checked_and_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_warden(dir.path(), &[]);
    let decide = make_key(&server, "proxy", &["decide"]);
    let respond = make_key(&server, "soar", &["respond"]);
    let body = json!({
        "principals": ["CORP\\alice"],
        "list": "Suspicious Users",
        "incident": "SOAR-1",
        "reason": "test",
    });
    let (status, _) = post(&server, "/v1/contain", &decide, None, &body);
    assert_eq!(status, 403);
    let refused = |patch: Value, field: &str| {
        let mut b = body.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (status, problem) = post(&server, "/v1/contain", &respond, None, &b);
        assert_eq!(status, 400, "{problem:#}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{field}: {detail}");
    };
    refused(json!({ "principals": [] }), "principals");
    refused(json!({ "confirm": ["dns"] }), "confirm[0]");
    refused(json!({ "reason": "" }), "reason");
    refused(json!({ "expires_in": "soon" }), "expires");
    refused(json!({ "idempotency_key": "" }), "idempotency_key");
    refused(json!({ "surprise": 1 }), "surprise");
    let mut keyed = body.clone();
    keyed["idempotency_key"] = json!("b");
    let (status, problem) = post(&server, "/v1/contain", &respond, Some("a"), &keyed);
    assert!(
        problem["detail"].as_str().unwrap().contains("differ"),
        "{problem:#}"
    );
    assert_eq!(status, 400, "{problem:#}");
    let mut nolist = body.clone();
    nolist["list"] = json!("Nope");
    let (status, problem) = post(&server, "/v1/contain", &respond, None, &nolist);
    assert_eq!(status, 404, "{problem:#}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("GET /v1/lists"),
        "{problem:#}"
    );
    let r = server.call("GET", "/v1/contain/RCPT-999", Some(&respond), b"");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = server.call("GET", "/v1/contain/17", Some(&respond), b"");
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("RCPT-17"), "{}", r.body);
    // Nothing was contained by any of these.
    let members = server.get("/v1/lists/Suspicious%20Users/members").json();
    assert_eq!(members["members"], json!([]), "{members:#}");
}

/// Receipts are in the store: written on one replica of a PostgreSQL store, read on
/// another, and a step retried on the other replica under the same key gets the same
/// receipt.
#[test]
fn a_receipt_is_read_and_retried_on_another_replica() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, store) = store_database(dir.path(), "contain_replicas");
    let config = list_config("", "\"*\"").replace("path = \"warden.db\"", &store);
    let mut servers: Vec<Server> = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let d = tempfile::tempdir().unwrap();
        // The store's password file is `dir`'s, named by its full path.
        std::fs::write(d.path().join("warden.toml"), &config).unwrap();
        let mut s = start_warden(d.path(), &["--config", "warden.toml"]);
        if let Some(first) = servers.first() {
            s.admin_key = first.admin_key.clone();
        }
        s.wait_ready();
        servers.push(s);
        dirs.push(d);
    }
    let key = make_key(&servers[0], "soar", &["respond"]);
    let request = json!({
        "principals": ["CORP\\carol", "dave@corp.example.test"],
        "list": "Suspicious Users",
        "incident": "SOAR-77",
        "reason": "replicated",
    });
    let (status, first) = post(&servers[0], "/v1/contain", &key, Some("k-77"), &request);
    assert_eq!(status, 201, "{first:#}");
    let id = first["id"].as_str().unwrap();
    // The key made on the first replica reaches the second one through the change feed.
    let known = eventually(Duration::from_secs(20), || {
        servers[1]
            .call("GET", &format!("/v1/contain/{id}"), Some(&key), b"")
            .status
            == 200
    });
    assert!(known.is_some(), "{}", servers[1].logs());
    let read = receipt(&servers[1], &key, id);
    assert_eq!(read["principals"], first["principals"], "{read:#}");
    assert_eq!(read["complete"], true, "no surface to wait for: {read:#}");
    let (status, again) = post(&servers[1], "/v1/contain", &key, Some("k-77"), &request);
    assert_eq!(status, 200, "{again:#}");
    assert_eq!(again["id"], id);
    assert_eq!(servers[1].decision("orders", "CORP\\carol"), "block");
}

/// `docs/playbooks/contain.sh` as shipped, with curl and jq: contains the users of an
/// incident and waits for the receipt; run again (a retried step), it gets the same receipt;
/// a user that cannot be resolved stops it with the reason.
#[test]
fn the_shell_playbook_contains_and_waits_for_the_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_warden(dir.path(), &[]);
    let key = make_key(&server, "soar", &["respond"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/playbooks/contain.sh");
    let run = |users: &[&str]| {
        let out = Command::new("sh")
            .arg(&script)
            .args([
                "Suspicious Users",
                "XSOAR-1203",
                "phishing: credentials entered",
            ])
            .args(users)
            .env("WARDEN_URL", format!("http://{}", server.addr))
            .env("WARDEN_KEY", &key)
            .env("WARDEN_TIMEOUT", "30")
            .output()
            .expect("run sh (and curl, jq: scripts/test installs them)");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&["CORP\\erin", "frank@corp.example.test"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("contained everywhere"), "{stdout}");
    assert!(
        stdout.contains("CORP\\erin -> CORP\\erin (contained)"),
        "{stdout}"
    );
    let id = stdout
        .lines()
        .find_map(|l| l.strip_suffix(": contained everywhere"))
        .unwrap()
        .to_owned();
    assert_eq!(
        server.decision("orders", "frank@corp.example.test"),
        "block"
    );
    let (code, again, stderr) = run(&["CORP\\erin", "frank@corp.example.test"]);
    assert_eq!(code, 0, "{again}\n{stderr}");
    assert!(
        again.contains(&format!("{id}: contained everywhere")),
        "{again}"
    );
    let (code, stdout, stderr) = run(&["CORP\\grace", "CORP\\"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("could not resolve"), "{stderr}");
}
