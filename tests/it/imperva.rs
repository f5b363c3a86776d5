//! The Imperva MX push against the real binary and the in-process MX of `fake_mx`, which
//! follows the Open API's reference pages and is stricter than warden: created when missing
//! (probed through its columns, whatever `GET /conf/dataSets` answers, `key` spelled either
//! way), an empty replace by `DELETE …/data`, differences as one overwriting add and the
//! deletes of gone keys, requests bounded in size, a new login when the session expires
//! (between pushes and part way through one), doubling backoff through an outage, dry runs that
//! contact nothing, a column mismatch reported and never rebuilt, and convergence after the
//! MX stops holding what warden last pushed: a hand edit, a push cut between two requests, a
//! request that timed out after the MX applied it, a data set deleted on the MX. TLS verified,
//! the config checked with key paths, and the MX password nowhere.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_mx::{FakeMx, Fault, KeyShape, Listing, self_signed};
use crate::support::{
    HttpResponse, Server, eventually, list_config, make_certs, run, start_warden, warden_cmd,
};

const PASSWORD: &str = "mx-Secr3t-do-not-leak";
const MX_NAME: &str = "PTR Suspicious Users";
const DATA: &str = "/SecureSphere/api/v1/conf/dataSets/PTR%20Suspicious%20Users/data";
const APPS_DATA: &str = "/SecureSphere/api/v1/conf/dataSets/Apps/data";

/// The list config, pushed to `url` as `MX_NAME`, with the MX password in a file.
fn write_config(dir: &Path, url: &str, extra: &str) {
    crate::support::write_secret(&dir.join("mx.secret"), format!("{PASSWORD}\n"));
    let config = list_config("anonymous_decisions = true", r#""*""#)
        + &format!(
            r#"
[imperva]
url = "{url}"
username = "warden"
password_file = "mx.secret"
ca_file = "ca.pem"
timeout = "3s"
{extra}
[[imperva.data_sets]]
data_set = "Suspicious Users"
name = "{MX_NAME}"

# The members are bare names no domain rule places: listed as the text they are.
[identity]
unresolvable = "keep"
"#
        );
    std::fs::write(dir.join("warden.toml"), config).unwrap();
}

/// An `api` data set "Apps": key `app`, column `owner`.
const APPS: &str = r#"
[[data_sets]]
name = "Apps"
case_sensitive = false
columns = [{ name = "app", key = true }, { name = "owner" }]
source = { type = "api" }
"#;

/// An `api` data set "Apps" (key `app`, column `owner`) pushed to the MX data set "Apps",
/// instead of the list.
fn push_apps_instead(dir: &Path, timeout: &str) {
    let config = std::fs::read_to_string(dir.join("warden.toml"))
        .unwrap()
        .replace(
            &format!("data_set = \"Suspicious Users\"\nname = \"{MX_NAME}\""),
            "data_set = \"Apps\"\nname = \"Apps\"",
        )
        .replace("timeout = \"3s\"", &format!("timeout = \"{timeout}\""))
        + APPS;
    std::fs::write(dir.join("warden.toml"), config).unwrap();
}

/// A test CA, an MX that uses it, and a config pushing to it, in a fresh directory.
fn mx_and_config() -> (tempfile::TempDir, FakeMx) {
    let tmp = tempfile::tempdir().unwrap();
    make_certs(tmp.path());
    let mx = FakeMx::start(tmp.path(), "warden", PASSWORD);
    write_config(tmp.path(), &mx.url(), "");
    (tmp, mx)
}

fn member(server: &Server, method: &str, principal: &str) {
    let (path, body) = if method == "POST" {
        (
            "/v1/lists/Suspicious%20Users/members".to_owned(),
            json!({ "principal": principal, "reason": "mx" }).to_string(),
        )
    } else {
        (
            format!("/v1/lists/Suspicious%20Users/members/{principal}"),
            String::new(),
        )
    };
    let r = server.call(method, &path, server.admin_key.as_deref(), body.as_bytes());
    assert!(r.status < 300, "{}", r.body);
}

/// Writes the `api` data set "Apps" through warden (`POST` replaces, `PUT` adds or deletes).
fn write_apps(server: &Server, method: &str, body: Value) {
    let r = server.call(
        method,
        "/v1/data-sets/Apps/data",
        server.admin_key.as_deref(),
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `POST /v1/imperva/push?{query}` with the admin key.
fn push(server: &Server, query: &str) -> HttpResponse {
    let path = format!("/v1/imperva/push?{query}");
    server.call("POST", &path, server.admin_key.as_deref(), b"")
}

fn status(server: &Server) -> Value {
    server.get("/v1/imperva").json()["pushes"][0].clone()
}

fn users(mx: &FakeMx) -> Vec<String> {
    column(mx, MX_NAME, "user")
}

fn column(mx: &FakeMx, data_set: &str, name: &str) -> Vec<String> {
    mx.records(data_set)
        .unwrap_or_default()
        .iter()
        .map(|r| r[name].as_str().unwrap_or("").to_owned())
        .collect()
}

fn wait_for(mx: &FakeMx, server: &Server, want: &[&str]) {
    let got = eventually(Duration::from_secs(30), || users(mx) == want);
    assert!(
        got.is_some(),
        "MX holds {:?}, wanted {want:?}; requests {:?}; logs:\n{}",
        users(mx),
        mx.requests(),
        server.logs()
    );
}

/// Waits until the MX data set "Apps" holds exactly `want` (records in key order) and the
/// last push succeeded.
fn wait_for_apps(mx: &FakeMx, server: &Server, want: &[Value]) {
    let got = eventually(Duration::from_secs(30), || {
        mx.records("Apps").as_deref() == Some(want) && status(server)["failures"] == 0
    });
    assert!(
        got.is_some(),
        "MX holds {:?}, wanted {want:?}\nstatus {}\nrequests {:?}\nrefusals {:?}\nlogs:\n{}",
        mx.records("Apps"),
        status(server),
        mx.requests(),
        mx.refusals(),
        server.logs()
    );
}

/// Waits until the last push succeeded in `mode` (the MX may hold the records a moment before
/// warden records the push).
fn wait_mode(server: &Server, mode: &str) {
    let got = eventually(Duration::from_secs(30), || {
        let st = status(server);
        st["last_mode"] == mode && st["failures"] == 0
    });
    assert!(got.is_some(), "{}\n{}", status(server), server.logs());
}

/// An MX, and warden (with a per-request `timeout`) pushing the `api` data set "Apps" to it,
/// which holds excel and toad, pushed.
fn apps_pushed(timeout: &str) -> (tempfile::TempDir, FakeMx, Server) {
    let (tmp, mx) = mx_and_config();
    push_apps_instead(tmp.path(), timeout);
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    write_apps(
        &server,
        "POST",
        json!({"records": [app("excel", "a"), app("toad", "t")]}),
    );
    wait_for_apps(&mx, &server, &[app("excel", "a"), app("toad", "t")]);
    (tmp, mx, server)
}

fn app(name: &str, owner: &str) -> Value {
    json!({ "app": name, "owner": owner })
}

#[test]
fn the_mx_follows_the_list_full_first_then_differences() {
    let (tmp, mx) = mx_and_config();
    // An MX data set an admin made and filled; warden's list is empty.
    mx.create(MX_NAME, &[("user", true), ("reason", false)]);
    mx.insert(MX_NAME, json!({ "user": "filled-by-hand" }));
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);

    // Replaced whole on the first push — and a whole replace with no records is
    // DELETE …/data.
    let cleared = eventually(Duration::from_secs(30), || {
        mx.requests().contains(&format!("DELETE {DATA}"))
    });
    assert!(cleared.is_some(), "{:?}\n{}", mx.requests(), server.logs());
    assert_eq!(mx.records(MX_NAME), Some(vec![]));
    assert!(
        !mx.requests()
            .iter()
            .any(|r| r.starts_with("POST ") && r.ends_with("/data")),
        "an empty replace was POSTed: {:?}",
        mx.requests()
    );
    assert!(mx.refusals().is_empty(), "{:?}", mx.refusals());

    // Each change goes as a difference: adds with overwrite=true, deletes of gone keys.
    member(&server, "POST", "alice");
    wait_for(&mx, &server, &["alice"]);
    member(&server, "POST", "bob");
    wait_for(&mx, &server, &["alice", "bob"]);
    member(&server, "DELETE", "alice");
    wait_for(&mx, &server, &["bob"]);
    let puts: Vec<_> = mx
        .seen()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 3, "{puts:?}");
    assert_eq!(puts[0].query, "overwrite=true");
    assert_eq!(puts[2].query, "");
    wait_mode(&server, "incremental");

    // The MX forgets the session: warden logs in again and goes on.
    let logins = |mx: &FakeMx| {
        mx.requests()
            .iter()
            .filter(|r| *r == "POST /SecureSphere/api/v1/auth/session")
            .count()
    };
    let before = logins(&mx);
    mx.expire_sessions();
    member(&server, "POST", "carol");
    wait_for(&mx, &server, &["bob", "carol"]);
    assert!(
        logins(&mx) > before,
        "no new login after the session expired"
    );

    // Sessions that expire every other call: a push (columns, add) meets the expiry part way
    // through, logs in again and finishes.
    mx.expire_sessions_after(Some(1));
    let before = (logins(&mx), mx.refusals().len());
    member(&server, "DELETE", "carol");
    wait_for(&mx, &server, &["bob"]);
    member(&server, "POST", "carol");
    wait_for(&mx, &server, &["bob", "carol"]);
    let expired = mx.refusals()[before.1..]
        .iter()
        .filter(|c| *c == "IMP-10063")
        .count();
    assert!(expired >= 2, "{:?}", mx.refusals());
    assert!(logins(&mx) >= before.0 + expired, "{:?}", mx.requests());
    mx.expire_sessions_after(None);

    // An outage: the failures show in the status, retries back off doubling, then the
    // retry converges.
    mx.set_down(true);
    member(&server, "POST", "dave");
    let failing = eventually(Duration::from_secs(30), || {
        status(&server)["failures"].as_i64() >= Some(3)
    });
    assert!(failing.is_some(), "{}", server.get("/v1/imperva").body);
    let st = status(&server);
    assert!(st["last_error"].as_str().unwrap().contains("503"), "{st}");
    let delays: Vec<String> = server
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "Imperva MX push to be retried")
        .map(|l| l["fields"]["retry_in"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        delays.get(..3),
        Some(&["500ms", "1s", "2s"].map(String::from)[..]),
        "{}",
        server.logs()
    );
    mx.set_down(false);
    wait_for(&mx, &server, &["bob", "carol", "dave"]);

    // A dry run says what would go and contacts nothing; a full push replaces in one POST.
    let seen = mx.requests().len();
    let r = push(&server, "dry_run=true&full=true");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["pushes"][0]["mode"], "full");
    assert_eq!(r.json()["pushes"][0]["add"], 3);
    let would_add = &r.json()["pushes"][0]["would_send"]["add"];
    assert_eq!(
        would_add[2],
        json!({ "user": "dave", "reason": "mx" }),
        "{}",
        r.body
    );
    assert_eq!(mx.requests().len(), seen, "the dry run contacted the MX");
    let r = push(&server, "full=true");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["pushes"][0]["outcome"],
        json!({"mode": "full", "sent": 3})
    );
    assert_eq!(users(&mx), ["bob", "carol", "dave"]);
    assert!(mx.requests().contains(&format!("POST {DATA}")));
    // Nothing asked for the data set listing, which most MX versions do not have.
    assert!(
        !mx.requests().iter().any(|r| r.ends_with("/conf/dataSets")),
        "{:?}",
        mx.requests()
    );

    // The password is in no answer, log line, audit record or the store.
    let audit = server.get("/v1/audit?format=jsonl").body;
    let store = std::fs::read(tmp.path().join("warden.db")).unwrap();
    for (what, text) in [
        ("status", server.get("/v1/imperva").body),
        ("logs", server.logs()),
        ("audit", audit),
        ("store", String::from_utf8_lossy(&store).into_owned()),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "the MX password appears in the {what}"
        );
    }
}

/// A changed record is one add with overwrite=true, which the MX applies as a replace: at no
/// moment does the MX lack it, and nothing is deleted.
#[test]
fn a_changed_record_is_replaced_by_one_overwriting_add() {
    let (_tmp, mx, server) = apps_pushed("3s");
    let before = mx.seen().len();
    write_apps(
        &server,
        "PUT",
        json!({"action": "add", "records": [app("toad", "t2")]}),
    );
    wait_for_apps(&mx, &server, &[app("excel", "a"), app("toad", "t2")]);
    let writes: Vec<_> = mx.seen()[before..]
        .iter()
        .filter(|r| r.method != "GET")
        .cloned()
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        (
            writes[0].method.as_str(),
            writes[0].path.as_str(),
            writes[0].query.as_str()
        ),
        ("PUT", APPS_DATA, "overwrite=true")
    );
    assert_eq!(writes[0].records, Some(1));
    wait_mode(&server, "incremental");
}

/// An MX admin edits the data set by hand: a record added by hand that warden also adds is
/// replaced (overwrite, no refusal); a record deleted by hand that warden then deletes meets
/// IMP-10099, and warden reads the data set back and reconciles it (hand-added and changed
/// records too), whichever way the MX treats the rest of a refused delete. The stored base
/// moves: the next difference applies without a refusal.
#[test]
fn a_hand_edit_on_the_mx_is_reconciled_and_the_base_moves() {
    for partial_deletes in [false, true] {
        let (tmp, mx) = mx_and_config();
        mx.set_partial_deletes(partial_deletes);
        push_apps_instead(tmp.path(), "3s");
        let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
        write_apps(
            &server,
            "POST",
            json!({"records": [app("excel", "a"), app("sqlplus", "s"), app("toad", "t")]}),
        );
        wait_for_apps(
            &mx,
            &server,
            &[app("excel", "a"), app("sqlplus", "s"), app("toad", "t")],
        );

        // Added by hand, then by warden: the MX replaces it.
        mx.insert("Apps", app("dbeaver", "by hand"));
        write_apps(
            &server,
            "PUT",
            json!({"action": "add", "records": [app("dbeaver", "d")]}),
        );
        wait_for_apps(
            &mx,
            &server,
            &[
                app("dbeaver", "d"),
                app("excel", "a"),
                app("sqlplus", "s"),
                app("toad", "t"),
            ],
        );
        assert!(
            mx.refusals().iter().all(|c| c == "IMP-10094"),
            "{:?}",
            mx.refusals()
        );

        // Deleted by hand (toad), changed by hand (excel), added by hand (psql); warden then
        // deletes toad and sqlplus in one request, which meets the missing toad.
        mx.remove("Apps", "toad");
        mx.insert("Apps", app("excel", "changed by hand"));
        mx.insert("Apps", app("psql", "by hand"));
        write_apps(
            &server,
            "PUT",
            json!({"action": "delete", "records": [{"app": "toad"}, {"app": "sqlplus"}]}),
        );
        wait_for_apps(&mx, &server, &[app("dbeaver", "d"), app("excel", "a")]);
        assert!(
            mx.refusals().contains(&"IMP-10099".to_owned()),
            "{:?}",
            mx.refusals()
        );
        wait_mode(&server, "reconciled");
        assert!(
            mx.seen()
                .iter()
                .any(|r| r.method == "GET" && r.path == APPS_DATA && r.query == "from=1&to=5000"),
            "{:?}",
            mx.requests()
        );

        // The base moved: the next change is a plain difference, refused nowhere.
        let refusals = mx.refusals().len();
        write_apps(
            &server,
            "PUT",
            json!({"action": "delete", "records": [{"app": "dbeaver"}]}),
        );
        wait_for_apps(&mx, &server, &[app("excel", "a")]);
        assert_eq!(mx.refusals().len(), refusals, "{:?}", mx.refusals());
        wait_mode(&server, "incremental");
    }
}

/// A push cut between two requests (its adds applied, its deletes refused with a 503) is
/// retried whole: the adds again (the MX overwrites them), then the deletes.
#[test]
fn a_push_cut_between_two_requests_converges() {
    let (_tmp, mx, server) = apps_pushed("3s");

    // The next push sends an add, then a delete; the delete fails.
    mx.fault_on_write(2, Fault::Unavailable);
    let before = mx.seen().len();
    write_apps(
        &server,
        "POST",
        json!({"records": [app("excel", "a2"), app("psql", "p")]}),
    );
    wait_for_apps(&mx, &server, &[app("excel", "a2"), app("psql", "p")]);
    let writes: Vec<(String, u16)> = mx.seen()[before..]
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| (r.query.clone(), r.status))
        .collect();
    assert_eq!(
        writes,
        [
            ("overwrite=true".to_owned(), 200),
            (String::new(), 503),
            ("overwrite=true".to_owned(), 200),
            (String::new(), 200),
        ]
    );
    assert!(
        mx.refusals().iter().all(|c| c == "IMP-10094"),
        "{:?}",
        mx.refusals()
    );
    wait_mode(&server, "incremental");
}

/// A delete the MX applied but answered only after warden gave up on it: warden retries it,
/// meets IMP-10099 (the key is gone), reads the data set back and converges.
#[test]
fn a_request_that_timed_out_after_the_mx_applied_it_converges() {
    let (_tmp, mx, server) = apps_pushed("1s");

    mx.fault_on_write(1, Fault::AnswerLate(Duration::from_millis(2500)));
    write_apps(
        &server,
        "PUT",
        json!({"action": "delete", "records": [{"app": "toad"}]}),
    );
    let timed_out = eventually(Duration::from_secs(30), || {
        server.logs().contains("no answer within 1s")
    });
    assert!(timed_out.is_some(), "{}", server.logs());
    wait_for_apps(&mx, &server, &[app("excel", "a")]);
    assert!(
        mx.refusals().contains(&"IMP-10099".to_owned()),
        "{:?}",
        mx.refusals()
    );
    wait_mode(&server, "reconciled");
}

/// A missing MX data set — never made, or deleted on the MX — is created with warden's
/// columns, key and case sensitivity by the next push (which probes for it first: IMP-10094
/// from `GET …/columns`) and filled whole.
#[test]
fn a_missing_mx_data_set_is_created_and_filled_whole() {
    let (tmp, mx) = mx_and_config();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let created = eventually(Duration::from_secs(30), || mx.columns(MX_NAME).is_some());
    assert!(created.is_some(), "{:?}\n{}", mx.requests(), server.logs());
    assert_eq!(
        mx.columns(MX_NAME).unwrap(),
        vec![("user".to_owned(), true), ("reason".to_owned(), false)]
    );
    assert_eq!(mx.case_sensitive(MX_NAME), Some(false));
    member(&server, "POST", "alice");
    wait_for(&mx, &server, &["alice"]);
    mx.drop_data_set(MX_NAME);
    member(&server, "POST", "bob");
    wait_for(&mx, &server, &["alice", "bob"]);
    assert_eq!(mx.refusals(), ["IMP-10094", "IMP-10094"]);
    assert_eq!(
        mx.requests()
            .iter()
            .filter(|r| r.contains("createDataset"))
            .count(),
        2
    );
    wait_mode(&server, "full");
}

/// Requests stay bounded whatever the data set's size: a first push of 12,000 records goes as
/// three adds of at most 5,000; a full replace of a data set that does not fit one request is a
/// reconcile (read back 5,000 records at a time), never a POST followed by adds, which would leave
/// the MX without most rows in between.
#[test]
fn large_pushes_go_in_bounded_requests() {
    let (tmp, mx) = mx_and_config();
    push_apps_instead(tmp.path(), "10s");
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let records: Vec<Value> = (0..12_000)
        .map(|i| app(&format!("app-{i:05}"), "o"))
        .collect();
    write_apps(&server, "POST", json!({ "records": records }));
    let all = eventually(Duration::from_secs(60), || {
        mx.records("Apps").map(|r| r.len()) == Some(12_000)
    });
    assert!(all.is_some(), "{:?}\n{}", mx.requests(), server.logs());
    let writes: Vec<usize> = mx
        .seen()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.records.unwrap())
        .collect();
    assert_eq!(writes, [5_000, 5_000, 2_000]);
    assert!(
        mx.seen()
            .iter()
            .all(|r| r.body_bytes <= warden::sync::imperva::MAX_BATCH_BYTES)
    );

    // Changed by hand on the MX, then replaced whole on request.
    mx.insert("Apps", app("app-00007", "by hand"));
    mx.remove("Apps", "app-11999");
    mx.insert("Apps", app("extra", "by hand"));
    let before = mx.seen().len();
    let r = push(&server, "full=true");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["pushes"][0]["outcome"],
        json!({"mode": "full", "sent": 3})
    );
    let after: Vec<_> = mx.seen()[before..].to_vec();
    let reads = after
        .iter()
        .filter(|r| r.method == "GET" && r.path == APPS_DATA)
        .count();
    assert_eq!(reads, 3, "{after:?}");
    assert!(
        !after
            .iter()
            .any(|r| r.method == "POST" && r.path == APPS_DATA)
    );
    assert_eq!(mx.records("Apps").unwrap().len(), 12_000);
    assert_eq!(mx.records("Apps").unwrap()[7], app("app-00007", "o"));
    assert!(!column(&mx, "Apps", "app").contains(&"extra".to_owned()));
}

/// The figures of BENCHMARKS.md ("The MX push at 100,000 rows"): a data set of 100,000 rows
/// shaped like the seed's (a `DOMAIN\user` key and a reason). Side by side on one MX in one
/// run: the one request the push used to send against the batches it sends now, each timed;
/// then warden's own first push and a full replace (read back and compared). Prints the sizes
/// and times; asserts only that every row arrives and that no request exceeds the bounds.
#[test]
fn a_push_of_100000_rows_goes_in_bounded_requests() {
    use warden::sync::imperva::{MAX_BATCH_BYTES, MAX_BATCH_RECORDS};
    const ROWS: usize = 100_000;
    let (tmp, mx) = mx_and_config();
    let records: Vec<Value> = (0..ROWS)
        .map(|i| {
            json!({
                "user": format!("corp\\user{i:06}"),
                "reason": format!("INC-{:05} contained by the SOC", i % 50_000),
            })
        })
        .collect();
    let whole = json!({ "records": records }).to_string();

    // The same records to the same MX: as one request, then as the batches warden sends.
    mx.create("Timed", &[("user", true), ("reason", false)]);
    let batches: Vec<String> = records
        .chunks(MAX_BATCH_RECORDS)
        .map(|c| json!({ "action": "add", "records": c }).to_string())
        .collect();
    let mut timed = vec![("POST", "", whole.clone())];
    timed.extend(
        batches
            .iter()
            .map(|b| ("PUT", "?overwrite=true", b.clone())),
    );
    let times = time_requests(&mx, tmp.path(), "Timed", &timed);
    assert_eq!(mx.records("Timed").unwrap().len(), ROWS);
    let one = times[0];
    let batch_total: Duration = times[1..].iter().sum();
    let batch_max = times[1..].iter().max().copied().unwrap_or_default();

    // warden's own push, of a static data set holding the same rows.
    std::fs::write(tmp.path().join("big.json"), &whole).unwrap();
    let config = std::fs::read_to_string(tmp.path().join("warden.toml"))
        .unwrap()
        .replace("data_set = \"Suspicious Users\"", "data_set = \"Big\"")
        .replace("timeout = \"3s\"", "timeout = \"30s\"")
        + r#"
[[data_sets]]
name = "Big"
case_sensitive = false
columns = [{ name = "user", key = true }, { name = "reason" }]
source = { type = "static", path = "big.json" }
"#;
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let push_cli = |extra: &[&str]| {
        let mut c = warden_cmd(tmp.path());
        c.args(["--config", "warden.toml", "imperva", "push"])
            .args(extra);
        let started = std::time::Instant::now();
        let r = run(c);
        assert_eq!(r.code, 0, "{}", r.stderr);
        started.elapsed()
    };
    let seen = mx.seen().len();
    let first = push_cli(&[]);
    assert_eq!(mx.records(MX_NAME).unwrap().len(), ROWS);
    let writes: Vec<_> = mx.seen()[seen..]
        .iter()
        .filter(|r| r.method == "PUT")
        .cloned()
        .collect();
    assert_eq!(writes.len(), ROWS.div_ceil(MAX_BATCH_RECORDS));
    assert!(writes.iter().all(|w| w.records <= Some(MAX_BATCH_RECORDS)));
    assert!(writes.iter().all(|w| w.body_bytes <= MAX_BATCH_BYTES));
    let largest = writes.iter().map(|w| w.body_bytes).max().unwrap_or(0);

    let seen = mx.seen().len();
    let full = push_cli(&["--full"]);
    let reads: Vec<_> = mx.seen()[seen..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/data"))
        .cloned()
        .collect();
    assert!(
        !mx.seen()[seen..]
            .iter()
            .any(|r| r.method != "GET" && r.path.ends_with("/data"))
    );
    let page = reads.iter().map(|r| r.answer_bytes).max().unwrap_or(0);
    println!(
        "MX push of {ROWS} rows. One request: {} bytes, answered in {one:?}. Batches: {} of at \
         most {MAX_BATCH_RECORDS} records, the largest {largest} bytes, answered in {batch_max:?} \
         at most, {batch_total:?} in all. warden: first push {first:?}; full replace (read back \
         in {} pages of at most {page} bytes, nothing to send) {full:?}",
        whole.len(),
        batches.len(),
        reads.len(),
    );
}

/// Logs in to the MX as warden does and times each request (method, query, body) on the data
/// of `data_set`.
fn time_requests(
    mx: &FakeMx,
    dir: &Path,
    data_set: &str,
    requests: &[(&str, &str, String)],
) -> Vec<Duration> {
    use warden::outbound::Endpoint;
    let endpoint = Endpoint::new(
        &mx.url(),
        Some(&dir.join("ca.pem")),
        false,
        Duration::from_secs(600),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let basic = warden::auth::base64_standard(format!("warden:{PASSWORD}").as_bytes());
        let (_, login) = endpoint
            .send(
                &hyper::Method::POST,
                "/SecureSphere/api/v1/auth/session",
                &[("Authorization", &format!("Basic {basic}"))],
                None,
            )
            .await
            .unwrap();
        let login: Value = serde_json::from_slice(&login).unwrap();
        let cookie = login["session-id"].as_str().unwrap().to_owned();
        let mut times = Vec::new();
        for (method, query, body) in requests {
            let path = format!("/SecureSphere/api/v1/conf/dataSets/{data_set}/data{query}");
            let method = hyper::Method::from_bytes(method.as_bytes()).unwrap();
            let started = std::time::Instant::now();
            let (status, answer) = endpoint
                .send(
                    &method,
                    &path,
                    &[("Cookie", &cookie)],
                    Some(body.clone().into()),
                )
                .await
                .unwrap();
            times.push(started.elapsed());
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        }
        times
    })
}

/// Whatever `GET /conf/dataSets` answers (absent as before v14, an array as in the v14
/// swagger, or an object), and whichever way `key` is spelled, a push creates a missing data
/// set and accepts an existing one with the same columns.
#[test]
fn the_push_needs_no_listing_and_reads_column_keys_either_way() {
    for listing in [Listing::Absent, Listing::Array, Listing::Object] {
        for shape in [KeyShape::Strings, KeyShape::Booleans] {
            let (tmp, mx) = mx_and_config();
            mx.set_listing(listing);
            mx.set_key_shape(shape);
            let push_cli = || {
                let mut c = warden_cmd(tmp.path());
                c.args(["--config", "warden.toml", "imperva", "push"]);
                run(c)
            };
            let r = push_cli();
            assert_eq!(r.code, 0, "{listing:?} {shape:?}: {}", r.stderr);
            assert!(mx.columns(MX_NAME).is_some());
            // Again, now that it exists: its columns are read and match.
            let r = push_cli();
            assert_eq!(r.code, 0, "{listing:?} {shape:?}: {}", r.stderr);
            assert!(
                !mx.requests().iter().any(|r| r.ends_with("/conf/dataSets")),
                "{:?}",
                mx.requests()
            );
            assert_eq!(
                mx.requests()
                    .iter()
                    .filter(|r| r.contains("createDataset"))
                    .count(),
                1
            );
        }
    }
}

#[test]
fn a_data_set_never_loaded_does_not_empty_the_mx_data_set() {
    let (tmp, mx) = mx_and_config();
    push_apps_instead(tmp.path(), "3s");
    mx.create("Apps", &[("app", true), ("owner", false)]);
    mx.insert("Apps", json!({ "app": "filled-before-warden" }));
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);

    let waited = eventually(Duration::from_secs(30), || {
        server.logs().contains("waiting for its first load")
    });
    assert!(waited.is_some(), "{}", server.logs());
    let r = push(&server, "full=true");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("not been loaded"), "{}", r.body);
    assert_eq!(
        mx.records("Apps").unwrap(),
        [json!({ "app": "filled-before-warden" })]
    );
    assert!(
        !mx.requests().iter().any(|r| r.ends_with("/data")),
        "{:?}",
        mx.requests()
    );

    // Its first load is pushed whole.
    write_apps(&server, "POST", json!({"records": [{"app": "toad"}]}));
    wait_for_apps(&mx, &server, &[json!({ "app": "toad" })]);
}

#[test]
fn a_column_mismatch_is_reported_and_the_mx_data_set_left_alone() {
    let (tmp, mx) = mx_and_config();
    mx.create(MX_NAME, &[("user", true), ("department", false)]);
    // Configured but never pushed: listed, with nothing to say yet.
    let mut c = warden_cmd(tmp.path());
    c.args(["--config", "warden.toml", "imperva", "status"]);
    let status: serde_json::Value = serde_json::from_str(&run(c).stdout).unwrap();
    assert_eq!(status[0]["mx_name"], MX_NAME, "{status}");
    assert_eq!(status[0]["last_push_at"], json!(null), "{status}");
    let mut c = warden_cmd(tmp.path());
    c.args(["--config", "warden.toml", "imperva", "push"]);
    let r = run(c);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("department"), "{}", r.stderr);
    assert!(r.stderr.contains("never rebuilds"), "{}", r.stderr);
    assert_eq!(
        mx.columns(MX_NAME).unwrap(),
        vec![("user".to_owned(), true), ("department".to_owned(), false)]
    );
    assert!(
        !mx.requests()
            .iter()
            .any(|r| r.ends_with("/data") || r.contains("createDataset")),
        "{:?}",
        mx.requests()
    );
    let mut c = warden_cmd(tmp.path());
    c.args(["--config", "warden.toml", "imperva", "status"]);
    let status = run(c).stdout;
    assert!(status.contains("never rebuilds"), "{status}");
}

#[test]
fn plain_http_and_an_unknown_certificate_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    make_certs(tmp.path());
    // Plain HTTP without the opt-in is a config error naming the key.
    write_config(tmp.path(), "http://127.0.0.1:9", "");
    let mut c = warden_cmd(tmp.path());
    c.args(["check-config", "warden.toml"]);
    let r = run(c);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("imperva.url"), "{}", r.stderr);

    // An MX whose certificate the configured CA did not sign is refused.
    let mx = FakeMx::start(tmp.path(), "warden", PASSWORD);
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    make_certs(&other);
    write_config(tmp.path(), &mx.url(), "");
    let config = std::fs::read_to_string(tmp.path().join("warden.toml"))
        .unwrap()
        .replace("ca_file = \"ca.pem\"", "ca_file = \"other/ca.pem\"");
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let mut c = warden_cmd(tmp.path());
    c.args(["--config", "warden.toml", "imperva", "push"]);
    let r = run(c);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("TLS"), "{}", r.stderr);
    assert!(mx.requests().is_empty(), "{:?}", mx.requests());
}

/// The fingerprint of the certificate a TLS server presents, read the way docs/imperva.md tells
/// an operator to: `openssl s_client … | openssl x509 -noout -fingerprint -sha256`, as a pin.
fn pin_of(addr: std::net::SocketAddr) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null \
             | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .expect("openssl runs (is openssl installed?)");
    let text = String::from_utf8_lossy(&out.stdout);
    // `sha256 Fingerprint=AB:CD:…` (OpenSSL 3; `SHA256 Fingerprint=` before).
    let (label, hex) = text.trim().split_once('=').expect("a fingerprint line");
    assert!(label.eq_ignore_ascii_case("sha256 Fingerprint"), "{text}");
    format!("sha256/{hex}")
}

/// An MX with a self-signed certificate that names no host (as MXs usually have): without a CA
/// or a pin it is refused; with a pin of another certificate it is refused and the error says
/// which fingerprint it found; with its own pin, read by docs/imperva.md's openssl command, the
/// push goes through — the certificate is verified exactly, never skipped.
#[test]
fn a_self_signed_mx_is_reached_through_its_pinned_certificate_only() {
    let tmp = tempfile::tempdir().unwrap();
    self_signed(tmp.path());
    let mx = FakeMx::start(tmp.path(), "warden", PASSWORD);
    let pin = pin_of(mx.addr);
    let push_with = |trust: &str| {
        write_config(tmp.path(), &mx.url(), "");
        let config = std::fs::read_to_string(tmp.path().join("warden.toml"))
            .unwrap()
            .replace("ca_file = \"ca.pem\"", trust);
        std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
        let mut c = warden_cmd(tmp.path());
        c.args(["--config", "warden.toml", "imperva", "push"]);
        run(c)
    };

    let r = push_with("");
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("TLS failed: invalid peer certificate"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("tls_pin = \"sha256/…\""), "{}", r.stderr);

    let other = format!("tls_pin = \"sha256/{}\"", ["AB"; 32].join(":"));
    let r = push_with(&other);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!(
            "the server's certificate has SHA-256 fingerprint {pin}, not the pinned sha256/AB:AB"
        )),
        "{}",
        r.stderr
    );
    assert!(mx.requests().is_empty(), "{:?}", mx.requests());

    // Lower case, no colons: the same pin.
    let own = format!("tls_pin = \"{}\"", pin.replace(':', "").to_lowercase());
    let r = push_with(&own);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mx.columns(MX_NAME).map(|c| c.len()), Some(2));

    // A pin and a CA file at once, or a pin that is not one, is a config error by key path.
    let both = format!("{own}\nca_file = \"ca.pem\"");
    write_config(
        tmp.path(),
        &mx.url(),
        &both.replace("ca_file = \"ca.pem\"", ""),
    );
    let config = std::fs::read_to_string(tmp.path().join("warden.toml")).unwrap();
    assert!(config.contains("ca_file") && config.contains("tls_pin"));
    let mut c = warden_cmd(tmp.path());
    c.args(["check-config", "warden.toml"]);
    let r = run(c);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("imperva.tls_pin (line"), "{}", r.stderr);
    assert!(r.stderr.contains("not both"), "{}", r.stderr);
    let r = push_with("tls_pin = \"sha256//YhKJKSzoTt2b5FP18fvpHo7fJYqQCjAa3HWY3tvRMwE=\"");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("imperva.tls_pin"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("openssl x509 -noout -fingerprint -sha256"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_imperva_section_is_checked_with_key_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let config = list_config("", r#""*""#)
        + r#"
[[data_sets]]
name = "Apps"
case_sensitive = true
columns = [{ name = "app", key = true }]
source = { type = "api" }

[[data_sets]]
name = "Prod/Apps"
case_sensitive = true
columns = [{ name = "app", key = true }]
source = { type = "api" }

[imperva]
url = "http://mx.example:8083"
username = "warden"
password = "inline-Secr3t"

[[imperva.data_sets]]
data_set = "Suspicious Users"
name = "PTR"

[[imperva.data_sets]]
data_set = "Apps"
name = "PTR"

[[imperva.data_sets]]
data_set = "Apps"
name = "Apps"
case_sensitive = false

[[imperva.data_sets]]
data_set = "Missing"

[[imperva.data_sets]]
data_set = "Apps"
name = "Apps/Prod"

[[imperva.data_sets]]
data_set = "Prod/Apps"
"#;
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let mut c = warden_cmd(tmp.path());
    c.args(["check-config", "warden.toml"]);
    let r = run(c);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for expected in [
        "imperva.url",
        "imperva.password",
        "imperva.data_sets[1].name",
        "imperva.data_sets[2].case_sensitive",
        "imperva.data_sets[3].data_set",
        "imperva.data_sets[4].name",
        "imperva.data_sets[5].data_set",
    ] {
        assert!(
            r.stderr.contains(&format!("{expected} (line")),
            "missing {expected} in:\n{}",
            r.stderr
        );
    }
    assert!(!r.stderr.contains("inline-Secr3t"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("\"Apps/Prod\" contains '/', which the MX Open API cannot address"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("set name = "), "{}", r.stderr);
}

/// An MX password file that group or others can read is never used: the push fails, and the
/// status says which file and how to fix it; made private, the same push goes through.
#[test]
fn an_mx_password_file_others_can_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, mx) = mx_and_config();
    let secret = tmp.path().join("mx.secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    member(&server, "POST", "bob");
    let refused = eventually(Duration::from_secs(30), || {
        status(&server)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("readable by group or others"))
    });
    let body = server.get("/v1/imperva").body;
    assert!(refused.is_some(), "{body}");
    assert!(body.contains("chmod 600"), "{body}");
    assert!(
        users(&mx).is_empty(),
        "warden logged in with a readable password file"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    wait_for(&mx, &server, &["bob"]);
}

/// warden's own data sets on the MX Open API's paths answer as an MX answers: the listing, the
/// columns, records a page at a time, writes with `overwrite`, and every mistake as 406
/// `{"errors":[{"error-code","description"}]}` with the code an MX gives it — so a script
/// written for an MX reads warden's errors. The same mistakes on `/v1/data-sets/{name}/data`
/// stay problem+json, with the same codes.
#[test]
fn warden_answers_its_own_imperva_style_routes_as_an_mx_does() {
    let tmp = tempfile::tempdir().unwrap();
    let config = list_config("", r#""*""#) + APPS;
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let key = server.admin_key.clone();
    let respond = server
        .post_json("/v1/keys", &json!({ "name": "soc", "scopes": ["respond"] }))
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = "/SecureSphere/api/v1/conf/dataSets";
    let data = format!("{base}/Apps/data");
    let call = |method: &str, path: &str, body: &str| {
        server.call(method, path, key.as_deref(), body.as_bytes())
    };
    // An error in the MX's shape: its status, and the code of its first error.
    let mx_error = |r: &HttpResponse| -> (u16, String) {
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{}",
            r.body
        );
        let v = r.json();
        assert!(v["errors"][0]["description"].is_string(), "{}", r.body);
        (
            r.status,
            v["errors"][0]["error-code"].as_str().unwrap().to_owned(),
        )
    };
    let refused = |r: HttpResponse, code: &str| assert_eq!(mx_error(&r), (406, code.into()));

    assert_eq!(
        call("GET", base, "").json(),
        json!(["Suspicious Users", "Apps"])
    );
    let columns = call("GET", &format!("{base}/Apps/columns"), "");
    assert_eq!(
        columns.json(),
        json!({"dataset-name": "Apps", "number-of-columns": 2,
               "columns": [{"name": "app", "key": true}, {"name": "owner", "key": false}]})
    );
    // mx-toolbox's probe: a data set that does not exist is a 406.
    refused(
        call("GET", &format!("{base}/Nope/columns"), ""),
        "IMP-10094",
    );

    let r = call(
        "POST",
        &data,
        r#"{"records":[{"app":"excel","owner":"a"},{"app":"toad","owner":["t","u"]}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // overwrite=false keeps the row; the default replaces it.
    let add = r#"{"action":"add","records":[{"app":"EXCEL","owner":"b"}]}"#;
    assert_eq!(
        call("PUT", &format!("{data}?overwrite=false"), add).status,
        200
    );
    let read = |query: &str| call("GET", &format!("{data}{query}"), "").json();
    assert_eq!(
        read("")["records"][0],
        json!({"app": "excel", "owner": "a"})
    );
    assert_eq!(call("PUT", &data, add).status, 200);
    assert_eq!(
        read(""),
        json!({"dataset-name": "Apps", "number-of-records": 2, "records": [
            {"app": "toad", "owner": ["t", "u"]}, {"app": "EXCEL", "owner": "b"}]})
    );
    assert_eq!(
        read("?from=2&to=2")["records"],
        json!([{"app": "EXCEL", "owner": "b"}])
    );
    assert_eq!(read("?from=3")["records"], json!([]));
    refused(call("GET", &format!("{data}?from=0"), ""), "IMP-10016");

    // A delete that meets a missing key deletes nothing.
    let gone = r#"{"action":"delete","records":[{"app":"toad"},{"app":"sqlplus"}]}"#;
    refused(call("PUT", &data, gone), "IMP-10099");
    assert_eq!(read("")["number-of-records"], 2);
    for (body, code) in [
        ("{not json", "IMP-10002"),
        (r#"{"records":[{"app":"x"}]}"#, "IMP-10015"),
        (r#"{"action":"upsert","records":[]}"#, "IMP-10002"),
        (r#"{"action":"add"}"#, "IMP-10015"),
        (
            r#"{"action":"add","records":[{"app":"x","colour":"red"}]}"#,
            "IMP-10095",
        ),
        (r#"{"action":"add","records":[{"owner":"x"}]}"#, "IMP-10096"),
        (
            r#"{"action":"add","records":[{"app":"x"},{"app":"X"}]}"#,
            "IMP-10097",
        ),
        (
            r#"{"action":"add","records":[{"app":["x","y"]}]}"#,
            "IMP-10098",
        ),
        (r#"{"action":"add","records":[{"app":7}]}"#, "IMP-10002"),
    ] {
        let r = call("PUT", &data, body);
        assert_eq!(mx_error(&r), (406, code.to_owned()), "{body}: {}", r.body);
    }
    refused(
        call("PUT", &format!("{data}?overwrite=maybe"), add),
        "IMP-10002",
    );
    refused(
        call("POST", &format!("{base}/Nope/data"), r#"{"records":[]}"#),
        "IMP-10094",
    );
    // A data set filled from another source takes no writes.
    let r = call("DELETE", &format!("{base}/Suspicious%20Users/data"), "");
    refused(r, "IMP-10007");

    // Creation: checked as an MX checks it; warden's data sets come from its configuration.
    let create = format!("{base}/createDataset?caseSensitive=false");
    let columns = r#"[{"name":"app","key":true},{"name":"owner","key":false}]"#;
    for (body, code) in [
        (
            format!(r#"{{"dataset-name":"Apps","number-of-columns":2,"columns":{columns}}}"#),
            "IMP-10005",
        ),
        (
            format!(r#"{{"dataset-name":"New","number-of-columns":2,"columns":{columns}}}"#),
            "IMP-10007",
        ),
        (
            format!(r#"{{"dataset-name":"New","number-of-columns":3,"columns":{columns}}}"#),
            "IMP-10016",
        ),
        (
            r#"{"dataset-name":"New","number-of-columns":1,"columns":[{"name":"a","key":"true"}]}"#
                .into(),
            "IMP-10002",
        ),
        (r#"{"number-of-columns":0}"#.into(), "IMP-10015"),
    ] {
        let r = call("POST", &create, &body);
        assert_eq!(mx_error(&r), (406, code.to_owned()), "{body}: {}", r.body);
        if code == "IMP-10007" {
            assert!(r.body.contains("[[data_sets]]"), "{}", r.body);
        }
    }

    // Every one of these routes needs the admin scope: without a valid key, the MX's 401
    // IMP-10063; with a key of another scope, refused.
    let doc = server.get("/v1/openapi.json").json();
    let mut routes = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let Some(path) = path.strip_prefix("/SecureSphere/api/v1/conf/dataSets") else {
            continue;
        };
        let path = format!("{base}{}", path.replace("{name}", "Apps"));
        for (method, op) in ops.as_object().unwrap() {
            assert_eq!(op["x-scope"], "admin", "{method} {path}");
            let method = method.to_uppercase();
            let r = server.call(&method, &path, None, b"");
            assert_eq!(
                mx_error(&r),
                (401, "IMP-10063".to_owned()),
                "{method} {path}"
            );
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"warden\"")
            );
            let r = server.call(&method, &path, Some(&respond), b"{}");
            assert_eq!(
                mx_error(&r),
                (406, "IMP-10007".to_owned()),
                "{method} {path}"
            );
            assert!(r.body.contains("lacks the admin scope"), "{}", r.body);
            routes += 1;
        }
    }
    assert_eq!(routes, 7);

    // On warden's own path the same mistakes are problem+json, with the same codes.
    let v1 = "/v1/data-sets/Apps/data";
    let r = call("PUT", v1, gone);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["imp_code"], "IMP-10099");
    let r = call(
        "PUT",
        v1,
        r#"{"action":"add","records":[{"app":["x","y"]}]}"#,
    );
    assert_eq!(
        (r.status, r.json()["imp_code"].clone()),
        (400, json!("IMP-10098"))
    );
    let r = call("PUT", &format!("{v1}?overwrite=false"), add);
    assert_eq!(r.status, 200, "{}", r.body);
}
