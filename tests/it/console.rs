//! The analyst console in a real headless Chromium, driven over WebDriver (fantoccini →
//! chromedriver, one chromedriver process per test run, one browser session per test): the
//! seed's workflow clicked through on the Samba DC, and the refusals a console must make. The
//! same browser writes the screenshots (into `docs/console/` when run with
//! `WARDEN_SCREENSHOTS=docs/console`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test` installs them); without
//! them these tests fail, naming the packages.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::dc::{self, AdConfig, Ns};
use crate::support::{
    HttpResponse, Server, enc, eventually, free_port, http, list_config, run as run_cmd,
    start_warden, warden_cmd,
};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a page may take to show what a test waits for (a push through the DC included).
const WAIT: Duration = Duration::from_secs(30);

/// The one chromedriver of this test run; it ends with the test process.
pub(crate) fn chromedriver() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        for tool in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: install the Debian packages chromium and chromium-driver \
                 (scripts/test does)"
            );
        }
        let port = free_port();
        // chromedriver in a process group of its own (with the browsers it starts), under a
        // shell that ends the group once this test process is gone, so that a browser left
        // open by a failed test does not outlive the run.
        let script = format!(
            "setsid '{CHROMEDRIVER}' --port={port} >/dev/null 2>&1 & d=$!; \
             while kill -0 {} 2>/dev/null && kill -0 $d 2>/dev/null; do sleep 1; done; \
             kill -- -$d 2>/dev/null || kill $d",
            std::process::id()
        );
        // Not waited for: it outlives every test of the run on purpose.
        #[allow(clippy::zombie_processes)]
        let _driver = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // It listens once it is ready for sessions.
        let up = eventually(WAIT, || std::net::TcpStream::connect(addr).is_ok());
        assert!(up.is_some(), "chromedriver did not start on port {port}");
        format!("http://127.0.0.1:{port}")
    })
}

/// Runs one browser test on its own single-threaded runtime.
pub(crate) fn run(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

/// A new headless browser session.
async fn browser() -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(chromedriver())
        .await
        .expect("a chromium session through chromedriver")
}

struct Console {
    c: Client,
    base: String,
}

impl Console {
    async fn open(server: &Server) -> Console {
        Console {
            c: browser().await,
            base: format!("http://{}", server.addr),
        }
    }

    async fn goto(&self, path: &str) {
        self.c
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_owned()
    }

    /// The text of the first element `css` finds.
    async fn text(&self, css: &str) -> String {
        let el = self
            .c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"));
        el.text().await.unwrap()
    }

    async fn fill(&self, css: &str, text: &str) {
        let el = self
            .c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no field {css}: {e}"));
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing to click at {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Waits until an element `css` finds contains `want` (live regions update on their own);
    /// returns its text.
    async fn wait_for(&self, css: &str, want: &str) -> String {
        let mut seen = Vec::new();
        let started = std::time::Instant::now();
        while started.elapsed() < WAIT {
            seen.clear();
            if let Ok(els) = self.c.find_all(Locator::Css(css)).await {
                for el in els {
                    let t = el.text().await.unwrap_or_default();
                    if t.contains(want) {
                        return t;
                    }
                    seen.push(t);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never showed {want:?}; last seen {seen:?}");
    }

    /// Like [`Console::wait_for`], for a page with no live region: reloads it until it shows.
    async fn wait_for_reloading(&self, css: &str, want: &str) -> String {
        let started = std::time::Instant::now();
        while started.elapsed() < WAIT {
            for el in self.c.find_all(Locator::Css(css)).await.unwrap_or_default() {
                let t = el.text().await.unwrap_or_default();
                if t.contains(want) {
                    return t;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.c.refresh().await.unwrap();
        }
        panic!("{css} never showed {want:?}");
    }

    /// Signs in with `key` by keyboard alone: the key field has the focus on arrival, Enter
    /// submits.
    async fn sign_in(&self, key: &str) {
        self.goto("/console/sign-in").await;
        // `autofocus` applies once the page has rendered, which a loaded machine may not have
        // done by the time `goto` returns: wait for it (bounded) rather than read it once.
        let mut focused = None;
        for _ in 0..50 {
            let field = self.c.active_element().await.unwrap();
            focused = field.attr("id").await.unwrap();
            if focused.as_deref() == Some("key") {
                field.send_keys(&format!("{key}\u{E007}")).await.unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the sign-in page never focused the key field (focus on {focused:?})");
    }

    /// Presses Tab from where the focus is until the control `id` has it.
    async fn keyboard_to(&self, id: &str) {
        for _ in 0..60 {
            self.type_keys("\u{E004}").await;
            let active = self.c.active_element().await.unwrap();
            if active.attr("id").await.unwrap().as_deref() == Some(id) {
                return;
            }
        }
        panic!("Tab never reached #{id}");
    }

    /// Types into whatever has the focus (WebDriver key codes: \u{E004} Tab, \u{E007} Enter).
    async fn type_keys(&self, keys: &str) {
        let active = self.c.active_element().await.unwrap();
        active.send_keys(keys).await.unwrap();
    }

    /// Every visible form control has a label (or an accessible name).
    async fn check_labels(&self) {
        let unlabeled = self
            .c
            .execute(
                "return Array.from(document.querySelectorAll(\
                 'input:not([type=hidden]), select, textarea'))\
                 .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))\
                 .map(e => e.name);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            unlabeled,
            json!([]),
            "unlabeled controls on {}",
            self.path().await
        );
    }

    /// Writes `<name>.png` from the browser's viewport into [`screenshot_dir`].
    async fn screenshot(&self, name: &str) {
        self.check_labels().await;
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    async fn close(self) {
        self.c.close().await.unwrap();
    }
}

/// Where screenshots go: `target/console-screenshots`, or the directory `WARDEN_SCREENSHOTS`
/// names relative to the checkout (`WARDEN_SCREENSHOTS=docs/console` refreshes the committed
/// ones), so an ordinary test run leaves the checkout clean. Created if missing.
pub(crate) fn screenshot_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var_os("WARDEN_SCREENSHOTS") {
        Some(d) => root.join(d),
        None => root.join("target/console-screenshots"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes a key with `scopes` over HTTP with the bootstrap admin key.
fn make_key(server: &Server, name: &str, scopes: &[&str]) -> String {
    let r = server.post_json("/v1/keys", &json!({ "name": name, "scopes": scopes }));
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["key"].as_str().unwrap().to_owned()
}

/// How many members "Suspicious Users" has, asked over the API.
fn member_count(server: &Server) -> usize {
    server
        .get(&format!("/v1/lists/{}/members", enc("Suspicious Users")))
        .json()["members"]
        .as_array()
        .unwrap()
        .len()
}

fn list_path(list: &str) -> String {
    format!("/console/lists/{}", enc(list))
}

/// The seed's workflow as an analyst clicks it: sign in → open an incident with the user →
/// Response to "Suspicious Users" → the member row (and the account it resolved to) appears →
/// the directory's Recent Updates show the push on the Samba DC → the decision tester says
/// block; then release the user from the list page and watch it leave the group and the
/// tester say allow. Screenshots of every page along the way.
#[test]
fn an_analyst_contains_and_releases_a_user_from_the_browser() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let alice_dn = ns.add_user(dc, "alice");
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &[]);
    let config = AdConfig::seed(&ns, &group).write(dc, tmp.path());
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    server.wait_ready();
    let key = make_key(&server, "analyst", &["admin"]);
    let alice = ns.mapped("alice");
    let db_user = alice.replacen("corp", "CORP", 1);
    let in_group = || {
        dc.values(&group, "member")
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&alice_dn))
    };

    run(async {
        let b = Console::open(&server).await;
        b.goto("/console/lists").await;
        assert_eq!(
            b.path().await,
            "/console/sign-in",
            "unauthenticated → sign-in"
        );
        b.screenshot("sign-in").await;
        b.sign_in(&key).await;
        b.wait_for("h1", "Lists").await;
        assert!(b.text("header .who").await.contains("(analyst)"));

        // Open an incident naming the user.
        b.click("nav a[href='/console/incidents']").await;
        b.fill("#title", "Suspicious database access").await;
        b.c.find(Locator::Css("#severity"))
            .await
            .unwrap()
            .select_by_value("high")
            .await
            .unwrap();
        b.fill("#users", &alice).await;
        b.fill("#ips", "10.0.0.7").await;
        b.click("form[action='/console/incidents'] button[type=submit]")
            .await;
        b.wait_for("#flash", "Opened INC-").await;
        let incident = b.path().await;
        assert!(
            incident.starts_with("/console/incidents/INC-"),
            "{incident}"
        );

        // Response: the user onto "Suspicious Users".
        b.c.find(Locator::Css("#list"))
            .await
            .unwrap()
            .select_by_value("Suspicious Users")
            .await
            .unwrap();
        b.fill("#reason", "phishing kit login").await;
        b.fill("#expires_in", "7d").await;
        b.click("#respond").await;
        b.wait_for("#flash", "on Suspicious Users").await;
        b.wait_for("table tbody tr", "phishing kit login").await;
        b.screenshot("incident").await;
        b.goto("/console/incidents").await;
        b.wait_for("table tbody tr", "Suspicious database access")
            .await;
        b.screenshot("incidents").await;

        // The member row, and (live, once pushed) the account it resolved to.
        b.goto(&list_path("Suspicious Users")).await;
        let row = b.wait_for("#members tr.member", &db_user).await;
        assert!(row.contains("phishing kit login"), "{row}");
        b.wait_for("#members tr.member", &ns.user_dn("alice")).await;
        // Another spelling of the listed account (her UPN), added from the list page: a
        // second membership of the same member, never a second row.
        b.fill("#principal", &ns.upn("alice")).await;
        b.fill("#reason", "second report").await;
        b.fill("#incident", "INC-99").await;
        b.click("form[action$='/members'] button[type=submit]")
            .await;
        b.wait_for("#flash", "Already listed").await;
        let row = b.wait_for("#members tr.member", "second report").await;
        assert!(
            row.contains("phishing kit login"),
            "both memberships: {row}"
        );
        assert_eq!(b.text("#members h2 .muted").await, "(1 active)");
        b.screenshot("list").await;
        // The account's panel: every name, both memberships, and the group the block landed in.
        b.click("#members a.principal").await;
        b.wait_for("#account", &ns.upn("alice")).await;
        b.wait_for("#listings", "INC-99").await;
        let surfaces = b.wait_for("#surfaces", "landed").await;
        assert!(surfaces.contains(&group), "{surfaces}");
        b.screenshot("account").await;
        assert!(in_group(), "the push reached the Samba DC's group");
        b.click("nav a[href='/console/lists']").await;
        let row = b.wait_for("table tbody tr", "Suspicious Users").await;
        assert!(row.contains(&group), "the list names its group: {row}");
        b.screenshot("lists").await;

        // The directory: status and the push in Recent Updates.
        b.click("nav a[href='/console/directories']").await;
        let update = b.wait_for("tr.update", &group).await;
        assert!(update.contains("push"), "{update}");
        b.wait_for(".badge", "ok").await;
        let mapping = b.text("table.mappings tbody tr").await;
        assert!(
            mapping.contains("Suspicious Users") && mapping.contains("yes"),
            "{mapping}"
        );
        b.screenshot("directories").await;

        // The decision tester: blocked once the data set pulled the group.
        let mut outcome = String::new();
        for _ in 0..60 {
            b.goto("/console/policies").await;
            b.fill("#principal", &db_user).await;
            b.fill("#service", "orders").await;
            b.click("form[action='/console/policies'] button[type=submit]")
                .await;
            // The tester's answer is the next page: wait for it rather than read at once.
            outcome = b.wait_for("#outcome", "").await;
            if outcome == "block" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(outcome, "block");
        assert!(
            b.text("#decision")
                .await
                .contains("PTR Block Suspicious Users")
        );
        // The tester says which account it decided on.
        assert_eq!(b.text("#tested-account").await, db_user);
        b.screenshot("policies").await;

        // The data set: its rows, and a Test Query with sample results.
        b.click("nav a[href='/console/data-sets']").await;
        b.wait_for("table tbody tr", "PTR Suspicious Users").await;
        b.screenshot("data-sets").await;
        b.goto(&format!(
            "/console/data-sets/{}",
            enc("PTR Suspicious Users")
        ))
        .await;
        // Searching the data set by another name of the account (her UPN) finds her row.
        b.goto(&format!(
            "/console/data-sets/{}?q={}",
            enc("PTR Suspicious Users"),
            enc(&ns.upn("alice"))
        ))
        .await;
        b.wait_for("table tbody", &alice).await;
        b.click("form[action$='/test-query'] button").await;
        let sample = b.wait_for("#test-result", "Sample Results").await;
        assert!(sample.contains(&alice), "{sample}");
        b.screenshot("data-set").await;

        // The audit log, filtered to the analyst: the console's actions, from the browser.
        b.goto("/console/audit").await;
        let actor = b.text("header .who").await;
        b.fill("#actor", &actor).await;
        b.click("form[action='/console/audit'] button[type=submit]")
            .await;
        let respond = b
            .wait_for("table.audit tbody tr", "incidents.respond")
            .await;
        assert!(
            respond.contains("127.0.0.1"),
            "audited with the address: {respond}"
        );
        b.wait_for("table.audit tbody tr", "console.sign_in").await;
        b.screenshot("audit").await;
        b.click("nav a[href='/console/gates']").await;
        b.wait_for("main", "No PostgreSQL gates").await;

        // Release: one release of the account from the list page, with a reason.
        b.goto(&list_path("Suspicious Users")).await;
        b.fill("#members input[name=reason]", "false positive")
            .await;
        b.click(&format!(
            "#members button[aria-label='Release {} from Suspicious Users']",
            db_user.replace('\\', "\\\\")
        ))
        .await;
        b.wait_for("#flash", "Released").await;
        b.wait_for("#members", "Nobody is on this list.").await;
        b.close().await;
    });
    // Every spelling is allowed again: the release was of the account, not of the text.
    for name in [db_user.clone(), ns.upn("alice")] {
        assert!(
            eventually(WAIT, || server.decision("orders", &name) == "allow").is_some(),
            "{name} is still blocked after the release"
        );
    }
    assert!(
        eventually(WAIT, || !in_group()).is_some(),
        "the release left the user in the group; logs:\n{}",
        server.logs()
    );
    assert!(
        eventually(WAIT, || server.decision("orders", &db_user) == "allow").is_some(),
        "the released user is still blocked"
    );
    let audit = server.get("/v1/audit?action=lists.remove").json();
    let removed = &audit["records"][0];
    assert!(
        removed["actor"].as_str().unwrap().ends_with("(analyst)"),
        "{removed}"
    );
    assert!(
        removed["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{removed}"
    );
}

/// What a console must refuse: a wrong key (counted with failed keys), a `respond` analyst on
/// admin pages (hidden and refused), a post without the CSRF token or from another origin;
/// and a principal with markup renders as text.
#[test]
fn the_console_refuses_what_it_must_and_renders_markup_inert() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("warden.toml"), list_config("", "\"*\"")).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let responder = make_key(&server, "responder", &["respond"]);
    let members = || member_count(&server);

    run(async {
        let b = Console::open(&server).await;
        b.sign_in("wdn_000000000000_not-a-key").await;
        let refused = b.wait_for("#flash", "Sign-in refused").await;
        assert!(refused.contains("not valid"), "{refused}");
        assert_eq!(b.path().await, "/console/sign-in");

        b.sign_in(&responder).await;
        b.wait_for("h1", "Lists").await;
        let nav = b.text("header nav").await;
        assert!(nav.contains("Lists") && nav.contains("Incidents"), "{nav}");
        for admin in ["Directories", "Data sets", "Policies", "Audit log", "Gates"] {
            assert!(
                !nav.contains(admin),
                "a respond analyst sees {admin}: {nav}"
            );
        }
        for page in [
            "/console/directories",
            "/console/audit",
            "/console/policies",
        ] {
            b.goto(page).await;
            let refusal = b.text("#problem").await;
            assert!(
                refusal.contains("needs the admin scope"),
                "{page}: {refusal}"
            );
        }

        // A post without the CSRF token: refused, nothing added.
        b.goto(&list_path("Suspicious Users")).await;
        b.c.execute(
            "document.querySelector(\"form[action$='/members'] input[name=csrf]\").remove();",
            vec![],
        )
        .await
        .unwrap();
        b.fill("#principal", "corp\\mallory").await;
        b.click("form[action$='/members'] button[type=submit]")
            .await;
        let refusal = b.wait_for("#problem", "anti-CSRF").await;
        assert!(!refusal.is_empty());
        assert_eq!(members(), 0, "a post without the token changed nothing");

        // The same post with the token but from another origin (a raw request carrying the
        // browser's own session cookie): refused; from the console's origin: accepted.
        b.goto(&list_path("Suspicious Users")).await;
        let csrf =
            b.c.find(Locator::Css("form[action$='/members'] input[name=csrf]"))
                .await
                .unwrap()
                .attr("value")
                .await
                .unwrap()
                .unwrap();
        let cookie = b.c.get_named_cookie("warden_console").await.unwrap();
        let cookie = format!("warden_console={}", cookie.value());
        let path = format!("{}/members", list_path("Suspicious Users"));
        let body = format!("csrf={csrf}&principal=corp%5Cmallory&reason=test");
        let post = |origin: &str| {
            http(
                server.addr,
                "POST",
                &path,
                &[
                    ("Cookie", cookie.as_str()),
                    ("Origin", origin),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                body.as_bytes(),
            )
        };
        let foreign = post("http://evil.example");
        assert_eq!(foreign.status, 403, "{}", foreign.body);
        assert!(foreign.body.contains("Origin"), "{}", foreign.body);
        assert_eq!(members(), 0);
        let own = post(&b.base);
        assert_eq!(own.status, 303, "{}", own.body);
        assert_eq!(members(), 1);

        // A principal with markup: shown as text, nothing runs.
        b.goto(&list_path("Suspicious Users")).await;
        let evil = "corp\\<script>window.xss=1;alert(1)</script>";
        b.fill("#principal", evil).await;
        b.fill("#reason", "<img src=x onerror=window.xss=2>").await;
        b.click("form[action$='/members'] button[type=submit]")
            .await;
        let row = b.wait_for("#members tr.member", "<script>").await;
        assert!(row.contains(evil) && row.contains("<img src=x"), "{row}");
        assert!(b.c.get_alert_text().await.is_err(), "an alert ran");
        let ran =
            b.c.execute(
                "return [window.xss === undefined, \
                 document.querySelectorAll('main script, main img').length];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            ran,
            json!([true, 0]),
            "markup in a principal became elements"
        );

        // Without a mouse: Tab reaches the add form, Enter submits it.
        b.goto(&list_path("Suspicious Users")).await;
        b.keyboard_to("principal").await;
        b.type_keys("corp\\keyboard\u{E004}by keyboard alone\u{E007}")
            .await;
        let flash = b.wait_for("#flash", "Added").await;
        assert!(flash.contains("corp\\keyboard"), "{flash}");
        b.wait_for("#members tr.member", "by keyboard alone").await;
        b.close().await;
    });
    let failed = server.get("/v1/audit?action=auth.failed").json();
    assert!(
        failed["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["detail"].to_string().contains("/console/sign-in")),
        "the failed sign-in went through the aggregated audit: {failed}"
    );
    let forbidden = server.get("/v1/audit?action=auth.forbidden").json();
    assert!(
        forbidden["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["actor"].as_str().unwrap_or("").ends_with("(responder)")),
        "{forbidden}"
    );
}

/// A refresh the shrink guard held, reviewed in the browser: the data set page lists who
/// accepting it would unblock, and Accept (for that hold's id) applies it.
#[test]
fn a_held_refresh_shows_who_it_would_unblock_and_is_accepted_from_the_browser() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new(dc);
    let users: Vec<String> = ["bob", "carol"]
        .iter()
        .map(|u| ns.add_user(dc, u))
        .collect();
    let group = ns.add_group(dc, "PTR_Suspicious_Users", &users);
    let config = AdConfig {
        mapping: false,
        ..AdConfig::seed(&ns, &group)
    }
    .write(dc, tmp.path());
    let server = start_warden(tmp.path(), &["--config", config.to_str().unwrap()]);
    server.wait_ready();
    let rows = |server: &Server| {
        server
            .get(&format!(
                "/v1/data-sets/{}/rows",
                enc("PTR Suspicious Users")
            ))
            .json()["records"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(rows(&server), 2);
    // Both leave the group: the next pull would empty the set, so it is held.
    ns.set_members(dc, &group, "delete", &users);
    let key = make_key(&server, "reviewer", &["admin"]);

    run(async {
        let b = Console::open(&server).await;
        b.sign_in(&key).await;
        b.wait_for("h1", "Lists").await;
        b.goto(&format!(
            "/console/data-sets/{}",
            enc("PTR Suspicious Users")
        ))
        .await;
        // Refresh now: the shrink guard holds it (the change notification may have run the
        // same pull already: the same rows are the same hold).
        b.click("form[action$='/refresh'] button").await;
        let flash = b.wait_for("#flash", "is held").await;
        assert!(flash.contains("2 → 0 rows"), "{flash}");
        let held = b.wait_for("#refresh", "Accepting it would unblock").await;
        for u in ["bob", "carol"] {
            assert!(held.contains(&ns.mapped(u)), "{u} missing from {held}");
        }
        b.screenshot("data-set-held").await;
        b.click("#refresh form button").await;
        b.wait_for("#flash", "Accepted hold").await;
        assert!(
            !b.text("#refresh").await.contains("Held refresh"),
            "the hold is gone once accepted"
        );
        b.close().await;
    });
    assert_eq!(rows(&server), 0, "the accepted refresh applied");
    let accepted = server.get("/v1/audit?action=data_sets.accept").json();
    assert!(
        accepted.to_string().contains("(reviewer)"),
        "the accept is audited with the analyst: {accepted}"
    );
}

/// Every console answer carries the security headers, and the session cookie the attributes
/// a browser needs to keep it to the console (checked on the wire, not through a browser).
#[test]
fn console_answers_carry_the_security_headers_and_a_strict_cookie() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("warden.toml"), list_config("", "\"*\"")).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let key = server.admin_key.clone().unwrap();
    let origin = format!("http://{}", server.addr);
    let body = format!("key={}", enc(&key));
    let sign_in = |origin: &str| {
        http(
            server.addr,
            "POST",
            "/console/sign-in",
            &[
                ("Origin", origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        )
    };
    // Login CSRF: a sign-in posted from another site is refused too.
    assert_eq!(sign_in("http://evil.example").status, 403);
    let signed = sign_in(&origin);
    assert_eq!(signed.status, 303, "{}", signed.body);
    let cookie = signed.header("set-cookie").unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    for path in [
        "/console/sign-in",
        "/console/lists",
        "/console/nope",
        "/console/assets/console.js",
    ] {
        let r = http(
            server.addr,
            "GET",
            path,
            &[("Cookie", session.as_str())],
            b"",
        );
        assert_eq!(
            r.header("content-security-policy"),
            Some(
                "default-src 'self'; script-src 'self'; style-src 'self'; \
                 frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
            ),
            "{path}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{path}");
    }
    let page = http(
        server.addr,
        "GET",
        "/console/lists",
        &[("Cookie", session.as_str())],
        b"",
    );
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>") && !page.body.contains("style="));
    // Signed out, the cookie no longer opens a page.
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let out = http(
        server.addr,
        "POST",
        "/console/sign-out",
        &[
            ("Cookie", session.as_str()),
            ("Origin", origin.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("csrf={csrf}").as_bytes(),
    );
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = http(
        server.addr,
        "GET",
        "/console/lists",
        &[("Cookie", session.as_str())],
        b"",
    );
    assert_eq!(after.status, 303);
    assert_eq!(after.header("location"), Some("/console/sign-in"));
}

/// An alert that an automated-response rule turned into an incident shows the alert and the
/// rule; a directory that cannot be reached is red with the reason, after Sync now.
#[test]
fn an_alerts_rule_and_a_failing_directory_show_in_the_console() {
    let _g = dc::shared();
    let dc = dc::dc();
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens there: every push to this directory fails.
    let down = free_port();
    let config = format!(
        r#"{base}
[[directories]]
name = "branch-dc"
url = "ldaps://127.0.0.1:{down}"
ca_file = "{ca}"
bind_dn = "{bind_dn}"
bind_password_file = "{pw}"
base_dn = "{base_dn}"
update_interval = "10m"
timeout = "2s"
connect_timeout = "1s"

[[mappings]]
list = "Suspicious Users"
directory = "branch-dc"
group_dn = "CN=PTR_Suspicious_Users,{base_dn}"

[[response_rules]]
name = "contain exfiltration"
list = "Suspicious Users"
sources = ["dlp*"]
min_severity = "high"
fields = {{ category = "exfil*" }}
expires_in = "24h"
"#,
        base = list_config("", "\"*\""),
        ca = dc.ca.display(),
        bind_dn = dc.bind_dn,
        pw = dc.password_file.display(),
        base_dn = dc.base_dn,
    );
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let alert = server.post_json(
        "/v1/alerts",
        &json!({ "id": "dlp-7731", "source": "dlp-prod", "severity": "high",
                 "title": "USB export of payroll", "users": ["corp\\eve"],
                 "fields": { "category": "exfil-usb" } }),
    );
    assert_eq!(alert.status, 201, "{}", alert.body);
    let key = make_key(&server, "analyst", &["admin"]);

    run(async {
        let b = Console::open(&server).await;
        b.sign_in(&key).await;
        b.wait_for("h1", "Lists").await;
        b.click("nav a[href='/console/incidents']").await;
        let row = b.wait_for("table tbody tr", "USB export of payroll").await;
        assert!(row.contains("alert dlp-7731 (dlp-prod)"), "{row}");
        b.click("table tbody tr a").await;
        let response = b.wait_for("table tbody tr", "contain exfiltration").await;
        assert!(response.contains("corp\\eve"), "{response}");

        b.click("nav a[href='/console/directories']").await;
        b.click("form[action='/console/directories/branch-dc/sync'] button")
            .await;
        let flash = b.wait_for("#flash", "branch-dc").await;
        assert!(flash.contains("failed"), "{flash}");
        b.wait_for(".badge", "failing").await;
        let reason = b.text(".status .reason").await;
        assert!(reason.starts_with("The last run failed:"), "{reason}");
        let mapping = b.text("table.mappings tbody tr").await;
        assert!(mapping.contains("cannot tell"), "{mapping}");
        b.screenshot("directory-failing").await;

        // Updates appear without a reload: a sync asked over HTTP shows up in Recent Updates
        // while the page (and a marker set on it) stays.
        let count = "return document.querySelectorAll('tr.update').length;";
        let before = b.c.execute(count, vec![]).await.unwrap().as_u64().unwrap();
        assert!(before < 10, "room for more rows (the page shows ten)");
        b.c.execute("window.notReloaded = true;", vec![])
            .await
            .unwrap();
        let sync = server.call(
            "POST",
            "/v1/directories/branch-dc/sync",
            server.admin_key.as_deref(),
            b"",
        );
        assert_eq!(sync.status, 502, "{}", sync.body);
        let mut after = before;
        for _ in 0..100 {
            after = b.c.execute(count, vec![]).await.unwrap().as_u64().unwrap();
            if after > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // More than one may land: a failed push is also retried on its own.
        assert!(
            after > before,
            "the new run never appeared on the open page"
        );
        let kept = b.c.execute("return window.notReloaded === true;", vec![]);
        assert_eq!(kept.await.unwrap(), json!(true), "the page was reloaded");
        b.close().await;
    });
}

/// The gates page lists a PostgreSQL gate's open sessions (a real `psql` through a real gate
/// to the shared PostgreSQL server).
#[test]
fn the_gates_page_lists_open_sessions() {
    let pg = crate::support::postgres();
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[gates]]\nname = \"appdb\"\nlisten = \"127.0.0.1:{port}\"\n\
         upstream = \"127.0.0.1:{}\"\nservice = \"pg-appdb\"\nallow_plain = true\n\
         upstream_plain = true\ndomain = \"CORP\"\n\
         [[domains]]\nnetbios = \"CORP\"\ndns = \"corp.example.test\"\n",
        list_config("", "\"pg-*\""),
        pg.port
    );
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let up = eventually(WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up.is_some(), "the gate did not listen:\n{}", server.logs());
    // A session that stays open: psql waits for its next statement on stdin.
    let open_session = || {
        Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} dbname=appdb user=alice sslmode=disable \
                 application_name=payroll-report"
            ))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .env("PGPASSWORD", pg.password("alice"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql (scripts/postgres install provides it)")
    };
    let key = server.admin_key.clone().unwrap();

    run(async {
        let b = Console::open(&server).await;
        b.sign_in(&key).await;
        b.wait_for("h1", "Lists").await;
        b.click("nav a[href='/console/gates']").await;
        b.wait_for("#gates", "No open sessions.").await;
        // The session appears on the open page, and leaves it when it ends.
        let mut session = open_session();
        let row = b.wait_for("#gates tbody tr", "alice").await;
        assert!(
            row.contains("appdb") && row.contains("payroll-report"),
            "{row}"
        );
        b.screenshot("gates").await;
        drop(session.stdin.take());
        let out = session.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        b.wait_for("#gates", "No open sessions.").await;
        b.close().await;
    });
}

/// A member added with a short expiry moves to the list's expired members on the open page,
/// without a reload, once the expiry sweep deactivates it.
#[test]
fn an_expiring_member_moves_to_expired_on_the_open_page() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("warden.toml"), list_config("", "\"*\"")).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let key = make_key(&server, "responder", &["respond"]);
    run(async {
        let b = Console::open(&server).await;
        b.sign_in(&key).await;
        b.wait_for("h1", "Lists").await;
        b.goto(&list_path("Suspicious Users")).await;
        b.fill("#principal", "corp\\contractor").await;
        b.fill("#reason", "access review pending").await;
        b.fill("#expires_in", "2s").await;
        b.click("form[action$='/members'] button[type=submit]")
            .await;
        b.wait_for("#members tr.member", "CORP\\contractor").await;
        b.c.execute("window.notReloaded = true;", vec![])
            .await
            .unwrap();
        let expired = b.wait_for("#members tr.expired", "CORP\\contractor").await;
        assert!(expired.contains("access review pending"), "{expired}");
        b.wait_for("#members", "Nobody is on this list.").await;
        let kept = b.c.execute("return window.notReloaded === true;", vec![]);
        assert_eq!(kept.await.unwrap(), json!(true), "the page was reloaded");
        b.close().await;
    });
}

/// A held expiry sweep (every member of a list due at once) is shown to every analyst; only
/// an admin gets the Release button, and a `respond` analyst's post to it is refused.
#[test]
fn a_held_expiry_sweep_is_released_by_an_admin_only() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("warden.toml"), list_config("", "\"*\"")).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    for i in 0..10 {
        let r = server.post_json(
            &format!("/v1/lists/{}/members", enc("Suspicious Users")),
            &json!({ "principal": format!("corp\\temp{i}"), "expires_in": "2s" }),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let responder = make_key(&server, "responder", &["respond"]);
    let admin = make_key(&server, "admin", &["admin"]);
    let release = format!("{}/release-expiry", list_path("Suspicious Users"));
    run(async {
        let b = Console::open(&server).await;
        b.sign_in(&responder).await;
        b.wait_for("h1", "Lists").await;
        let held = b
            .wait_for_reloading("table tbody tr", "held: 10 of 10")
            .await;
        assert!(
            !held.contains("Release"),
            "a respond analyst sees Release: {held}"
        );
        // The route refuses the respond analyst too (the form is not there: post it anyway).
        let csrf: String =
            b.c.execute(
                "return document.querySelector('form.signout input[name=csrf]').value;",
                vec![],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        let cookie = b.c.get_named_cookie("warden_console").await.unwrap();
        let refused = http(
            server.addr,
            "POST",
            &release,
            &[
                ("Cookie", &format!("warden_console={}", cookie.value())),
                ("Origin", &b.base),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            format!("csrf={csrf}").as_bytes(),
        );
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(refused.body.contains("admin scope"), "{}", refused.body);
        b.close().await;

        let b = Console::open(&server).await;
        b.sign_in(&admin).await;
        b.wait_for("h1", "Lists").await;
        b.click("button[aria-label='Release the expiry sweep of Suspicious Users']")
            .await;
        let flash = b.wait_for("#flash", "Released").await;
        assert!(flash.contains("10 member(s)"), "{flash}");
        b.close().await;
    });
    let lists = server.get("/v1/lists").json();
    assert_eq!(lists["lists"][0]["members"], 0, "{lists}");
    assert_eq!(lists["lists"][0]["expired"], 10, "{lists}");
}

/// Over TLS the session cookie is `Secure`, and the origin a post must come from is the
/// `https` one (checked with curl against warden's own HTTPS listener).
#[test]
fn over_tls_the_cookie_is_secure_and_the_origin_https() {
    let tmp = tempfile::tempdir().unwrap();
    crate::support::make_certs(tmp.path());
    let config = list_config(
        "tls_cert_file = \"server.pem\"\ntls_key_file = \"server.key\"",
        "\"*\"",
    );
    std::fs::write(tmp.path().join("warden.toml"), config).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let key = server.admin_key.clone().unwrap();
    let sign_in = |origin: &str| {
        let out = Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert"])
            .arg(tmp.path().join("ca.pem"))
            .args(["-H", &format!("Origin: {origin}")])
            .args(["--data-urlencode", &format!("key={key}")])
            .arg(format!("https://{}/console/sign-in", server.addr))
            .output()
            .expect("curl (scripts/test installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = sign_in(&format!("http://{}", server.addr));
    assert!(plain.starts_with("HTTP/1.1 403"), "{plain}");
    let head = sign_in(&format!("https://{}", server.addr));
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {head}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(cookie.trim_end().ends_with("; Secure"), "{cookie}");
}

/// Posts the console's sign-in form with `key` from the console's own origin.
fn sign_in_over_http(server: &Server, key: &str) -> HttpResponse {
    let origin = format!("http://{}", server.addr);
    http(
        server.addr,
        "POST",
        "/console/sign-in",
        &[
            ("Origin", origin.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        format!("key={}", enc(key)).as_bytes(),
    )
}

/// A console session over plain HTTP: its cookie, as a browser would send it.
pub(crate) struct Session<'s> {
    server: &'s Server,
    cookie: String,
}

impl<'s> Session<'s> {
    pub(crate) fn open(server: &'s Server, key: &str) -> Session<'s> {
        let signed = sign_in_over_http(server, key);
        assert_eq!(signed.status, 303, "{}", signed.body);
        let cookie = signed.header("set-cookie").unwrap();
        Session {
            server,
            cookie: cookie.split(';').next().unwrap().to_owned(),
        }
    }

    pub(crate) fn get(&self, path: &str) -> HttpResponse {
        http(
            self.server.addr,
            "GET",
            path,
            &[("Cookie", self.cookie.as_str())],
            b"",
        )
    }

    fn post(&self, path: &str, form: &str) -> HttpResponse {
        let origin = format!("http://{}", self.server.addr);
        http(
            self.server.addr,
            "POST",
            path,
            &[
                ("Cookie", self.cookie.as_str()),
                ("Origin", origin.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            form.as_bytes(),
        )
    }

    /// The session's anti-CSRF token, from a page that carries a form.
    fn csrf(&self) -> String {
        let page = self.get(&list_path("Suspicious Users"));
        assert_eq!(page.status, 200, "{}", page.body);
        page.body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned()
    }
}

/// The id of a key (`wdn_<id>_<secret>`).
pub(crate) fn key_id(key: &str) -> &str {
    &key[4..16]
}

/// `warden keys …` on the store the running server reads: another process, as an operator
/// would run it.
fn keys_cli(dir: &Path, args: &[&str]) -> String {
    let mut cmd = warden_cmd(dir);
    cmd.args(["--config", "warden.toml", "keys"]).args(args);
    let out = run_cmd(cmd);
    assert_eq!(out.code, 0, "warden keys {args:?}: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// Issue 24 §6: a console session outlived its key. Signed in with a key, revoked with
/// `warden keys revoke`, the bearer was refused but the session still read the audit log and
/// removed a list member, audited with the revoked key as actor. Now every console request
/// re-checks the key: after a revocation a form posted from a page loaded before is refused
/// and changes nothing, the session is gone, the sign-in page says why; after a rotation the
/// old key still serves its clients for the overlap, but its session ends and it opens no new
/// one. The refusals are audited (in aggregate) with the key.
#[test]
fn a_console_session_ends_when_its_key_is_revoked_or_rotated() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("warden.toml"), list_config("", "\"*\"")).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let members = || member_count(&server);
    let bearer = |key: &str| server.call("GET", "/v1/lists", Some(key), b"").status;

    // Revoked.
    let ana = make_key(&server, "soc-ana", &["admin"]);
    let session = Session::open(&server, &ana);
    assert_eq!(session.get("/console/audit").status, 200);
    assert_eq!(server.add_member("corp\\alice"), 201);
    let csrf = session.csrf();
    keys_cli(tmp.path(), &["revoke", key_id(&ana)]);
    let refused = eventually(Duration::from_secs(10), || bearer(&ana) == 401);
    assert!(
        refused.is_some(),
        "the running server never saw the revocation"
    );
    let remove = format!("{}/remove", list_path("Suspicious Users"));
    let post = session.post(&remove, &format!("csrf={csrf}&principal=corp%5Calice"));
    assert_eq!(post.status, 403, "{}", post.body);
    assert!(post.body.contains("has been revoked"), "{}", post.body);
    assert!(post.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(members(), 1, "a revoked key's session removed a member");
    let audit = session.get("/console/audit");
    assert_eq!(audit.status, 303, "{}", audit.body);
    assert_eq!(audit.header("location"), Some("/console/sign-in"));
    assert_eq!(sign_in_over_http(&server, &ana).status, 401);

    // Rotated.
    let bo = make_key(&server, "soc-bo", &["respond"]);
    let session = Session::open(&server, &bo);
    assert_eq!(session.get("/console/lists").status, 200);
    let replacement = keys_cli(tmp.path(), &["rotate", key_id(&bo), "--overlap", "1h"]);
    let mut last = None;
    let ended = eventually(Duration::from_secs(10), || {
        let r = session.get("/console/lists");
        let done = r.status == 303;
        last = Some(r);
        done
    });
    assert!(
        ended.is_some(),
        "the rotated key's session went on: {last:?}"
    );
    let last = last.unwrap();
    assert_eq!(
        last.header("location"),
        Some("/console/sign-in?ended=rotated")
    );
    let said = http(
        server.addr,
        "GET",
        "/console/sign-in?ended=rotated",
        &[],
        b"",
    );
    assert!(said.body.contains("has been rotated"), "{}", said.body);
    assert_eq!(
        bearer(&bo),
        200,
        "the old key serves clients for its overlap"
    );
    let again = sign_in_over_http(&server, &bo);
    assert_eq!(again.status, 401, "{}", again.body);
    assert!(again.body.contains("rotated"), "{}", again.body);
    Session::open(&server, &replacement);

    let records = server.get("/v1/audit?action=lists.remove").json();
    assert_eq!(records["records"], json!([]), "{records}");
    let failed = server.get("/v1/audit?action=auth.failed").json();
    for (who, why) in [("soc-ana", "revoked"), ("soc-bo", "rotated")] {
        let counted = failed["records"].as_array().unwrap().iter().any(|r| {
            r["actor"].as_str().unwrap().ends_with(&format!("({who})"))
                && r["detail"]["reason"] == why
        });
        assert!(counted, "{who} {why}: {failed}");
    }
}

/// Issue 24 §6 in the browser: an analyst signed in with a key has the audit log and a list
/// open when the key is revoked (`warden keys revoke`); the open page goes to the sign-in page
/// by itself and says why, the audit log no longer opens, and the member stays listed. Signed
/// in with a key an admin then rotates, the next page is the sign-in page too, and the
/// replacement key signs in.
#[test]
fn the_browser_is_signed_out_when_its_key_is_revoked_or_rotated() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("warden.toml"), list_config("", "\"*\"")).unwrap();
    let server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let ana = make_key(&server, "soc-ana", &["admin"]);
    let bo = make_key(&server, "soc-bo", &["respond"]);
    assert_eq!(server.add_member("corp\\alice"), 201);
    run(async {
        let b = Console::open(&server).await;
        b.sign_in(&ana).await;
        b.wait_for("h1", "Lists").await;
        b.goto("/console/audit").await;
        b.wait_for("h1", "Audit log").await;
        b.goto(&list_path("Suspicious Users")).await;
        b.wait_for("#members tr.member", "corp\\alice").await;
        keys_cli(tmp.path(), &["revoke", key_id(&ana)]);
        // The members region's next re-fetch finds the session ended.
        let said = b.wait_for("#flash", "Your console session has ended").await;
        assert!(said.contains("has been revoked"), "{said}");
        assert_eq!(b.path().await, "/console/sign-in");
        b.goto("/console/audit").await;
        assert_eq!(b.path().await, "/console/sign-in");
        b.sign_in(&ana).await;
        b.wait_for("#flash", "Sign-in refused").await;

        b.sign_in(&bo).await;
        b.wait_for("h1", "Lists").await;
        let rotated = server.call(
            "POST",
            &format!("/v1/keys/{}/rotate", key_id(&bo)),
            server.admin_key.as_deref(),
            br#"{"overlap":"1h"}"#,
        );
        assert_eq!(rotated.status, 201, "{}", rotated.body);
        let replacement = rotated.json()["key"].as_str().unwrap().to_owned();
        b.goto("/console/incidents").await;
        let said = b.wait_for("#flash", "Your console session has ended").await;
        assert!(said.contains("rotated"), "{said}");
        b.sign_in(&replacement).await;
        b.wait_for("h1", "Lists").await;
        b.close().await;
    });
    let members = server
        .get(&format!("/v1/lists/{}/members", enc("Suspicious Users")))
        .json();
    // The member is the account, named canonically whatever spelling added it.
    assert_eq!(
        members["members"][0]["principal"], "CORP\\alice",
        "{members}"
    );
}
