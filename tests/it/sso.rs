//! Single sign-on to the console through a real OpenID Connect provider (the `oidc-provider`
//! npm package, `scripts/oidc-provider`) on loopback over TLS with a test CA: the full code
//! flow driven over HTTP as a browser would (follow the redirects, post the provider's login
//! form, land on the callback), and the refusals — MFA required and missing, a replayed or
//! forged state, a user in no mapped group — each audited as a refused sign-in.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::support::{
    HttpResponse, Server, free_port, list_config, make_certs, start_warden_on, write_secret,
};

const CLIENT_SECRET: &str = "warden-test-client-secret";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oidc-provider")
}

/// Installs node and the package once per test run; fails loudly when it cannot.
fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let out = Command::new(script())
            .arg("install")
            .output()
            .expect("run scripts/oidc-provider install (needs bash)");
        assert!(
            out.status.success(),
            "scripts/oidc-provider install failed (node and npm from Debian, then the \
             oidc-provider package from npm):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The provider, stopped on drop.
struct Provider {
    child: Child,
    port: u16,
    ca: PathBuf,
}

impl Provider {
    fn start(dir: &Path, redirect: &str) -> Provider {
        install();
        make_certs(dir);
        write_secret(&dir.join("client.secret"), CLIENT_SECRET);
        // A liveness bound, not a timing check: node loading oidc-provider on two cores shared
        // with the whole suite (browsers, DCs, PostgreSQL) has taken over a minute, and twice in
        // full runs one provider printed its start-up warning but never began listening (alone
        // it starts in a second; not warden's doing: nothing has talked to warden yet). So a
        // provider silent for 120 s is replaced once, on a new port, and said so.
        match Provider::spawn(dir, redirect, Duration::from_secs(120)) {
            Ok(p) => p,
            Err(why) => {
                eprintln!("the OpenID provider did not start ({why}); starting another");
                Provider::spawn(dir, redirect, Duration::from_secs(240))
                    .unwrap_or_else(|why| panic!("the provider did not start: {why}"))
            }
        }
    }

    /// One provider on a free port, once it says it listens within `limit`.
    fn spawn(dir: &Path, redirect: &str, limit: Duration) -> Result<Provider, String> {
        let port = free_port();
        let mut child = Command::new(script())
            .args(["run", dir.to_str().unwrap(), &port.to_string(), redirect])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the provider");
        // Its first line says it listens; the rest is drained, so it never writes into a
        // closed pipe.
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut stdout, &mut line);
            let _ = tx.send(line);
            std::io::copy(&mut stdout, &mut std::io::sink())
        });
        let line = rx.recv_timeout(limit);
        if !line.as_deref().is_ok_and(|l| l.starts_with("listening")) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(match line {
                Ok(l) => format!("it exited or said something else first: {l:?}"),
                Err(_) => format!("nothing within {limit:?}"),
            });
        }
        Ok(Provider {
            child,
            port,
            ca: dir.join("ca.pem"),
        })
    }

    fn issuer(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// warden with `[console.oidc]` pointing at `provider`, listening on `port`.
fn warden(dir: &Path, port: u16, provider: &Provider, extra: &str) -> Server {
    let config = format!(
        r#"{}
[console.oidc]
issuer = "{}"
client_id = "warden"
client_secret_file = "client.secret"
redirect_url = "http://127.0.0.1:{port}/console/sso/callback"
scopes = ["openid", "email", "profile", "groups"]
ca_file = "ca.pem"
# warden itself is served over plain http on loopback in this test; the provider is TLS.
allow_insecure = true
{extra}
[console.oidc.groups]
"SOC Analysts" = "respond"
"Warden Admins" = "admin"
"#,
        list_config("", "\"*\""),
        provider.issuer()
    );
    std::fs::write(dir.join("warden.toml"), config).unwrap();
    start_warden_on(
        dir,
        &[],
        &["--config", "warden.toml"],
        &format!("127.0.0.1:{port}"),
    )
}

/// A browser's cookies, by name (the test talks to two loopback origins whose cookie names do
/// not collide).
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn take(&mut self, resp: &HttpResponse) {
        for (k, v) in &resp.headers {
            if !k.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let pair = v.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            self.0.retain(|(n, _)| n != name);
            let expired = v.to_ascii_lowercase().contains("max-age=0") || value.is_empty();
            if !expired {
                self.0
                    .push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request over plain HTTP (warden) or TLS verified against `ca` (the provider).
fn request(url: &str, method: &str, jar: &Jar, form: Option<&str>, ca: &Path) -> HttpResponse {
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://").unwrap()),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr: SocketAddr = authority.parse().unwrap();
    let body = form.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: text/html\r\nContent-Length: {}\r\n",
        body.len()
    );
    if form.is_some() {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    let cookies = jar.header();
    if !cookies.is_empty() {
        head.push_str(&format!("Cookie: {cookies}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let raw = if tls {
        let mut stream = rustls::StreamOwned::new(tls_client(ca), tcp);
        stream.write_all(head.as_bytes()).unwrap();
        read_all(&mut stream)
    } else {
        let mut stream = tcp;
        stream.write_all(head.as_bytes()).unwrap();
        read_all(&mut stream)
    };
    parse(&raw)
}

fn tls_client(ca: &Path) -> rustls::ClientConnection {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    rustls::ClientConnection::new(Arc::new(config), name).unwrap()
}

/// Reads until the peer closes (a TLS peer that closes without close_notify included).
fn read_all(stream: &mut impl Read) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    raw
}

fn parse(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `Location`, made absolute against `base` (`https://host:port`) when it is a path.
fn location(resp: &HttpResponse, base: &str) -> String {
    let l = resp
        .header("location")
        .unwrap_or_else(|| panic!("no Location in {} {}", resp.status, resp.body));
    if l.starts_with('/') {
        format!("{base}{l}")
    } else {
        l.to_owned()
    }
}

/// What the provider's login form posts to, from its HTML.
fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("a form") + "action=\"".len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&amp;", "&")
}

/// A browser signing in as `user`: warden's start, the provider's login form, back to
/// warden's callback. Returns the callback's URL and answer.
fn sign_in(
    warden: &Server,
    provider: &Provider,
    jar: &mut Jar,
    user: &str,
    password: &str,
) -> (String, HttpResponse) {
    let ca = &provider.ca;
    let issuer = provider.issuer();
    let start = request(
        &format!("http://{}/console/sso/start", warden.addr),
        "GET",
        jar,
        None,
        ca,
    );
    assert_eq!(start.status, 303, "{}", start.body);
    jar.take(&start);
    let authorize = location(&start, "");
    assert!(
        authorize.starts_with(&format!("{issuer}/auth?")),
        "{authorize}"
    );
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    // The provider: to its login page, post the form, follow it back to warden.
    let mut url = authorize;
    let mut form: Option<String> = None;
    for _ in 0..10 {
        if !url.starts_with(&issuer) {
            break;
        }
        let method = if form.is_some() { "POST" } else { "GET" };
        let resp = request(&url, method, jar, form.as_deref(), ca);
        jar.take(&resp);
        form = None;
        match resp.status {
            301..=303 | 307 | 308 => url = location(&resp, &issuer),
            200 if resp.body.contains("<form") => {
                url = format!("{issuer}{}", form_action(&resp.body));
                form = Some(format!("login={user}&password={password}"));
            }
            other => panic!("the provider answered {other} at {url}: {}", resp.body),
        }
    }
    let callback_prefix = format!("http://{}/console/sso/callback?", warden.addr);
    assert!(url.starts_with(&callback_prefix), "ended at {url}");
    let answer = request(&url, "GET", jar, None, ca);
    jar.take(&answer);
    (url, answer)
}

/// The `auth.failed` / `auth.forbidden` records of SSO refusals (reading the audit flushes the
/// aggregated refusals first).
fn refusals(warden: &Server, action: &str) -> Vec<serde_json::Value> {
    let audit = warden
        .get(&format!("/v1/audit?action={action}&limit=1000"))
        .json();
    audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"] == "/console/sso/callback")
        .cloned()
        .collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    provider: Provider,
    warden: Server,
}

fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let provider = Provider::start(
        dir.path(),
        &format!("http://127.0.0.1:{port}/console/sso/callback"),
    );
    let warden = warden(dir.path(), port, &provider, extra);
    Setup {
        _dir: dir,
        provider,
        warden,
    }
}

/// Opens a console page with the browser's cookies.
fn console_page(warden: &Server, jar: &Jar, path: &str) -> HttpResponse {
    request(
        &format!("http://{}{path}", warden.addr),
        "GET",
        jar,
        None,
        Path::new("unused"),
    )
}

#[test]
fn sso_signs_in_through_the_real_provider_with_the_mapped_scope() {
    let s = setup("require_mfa = true");
    let mut jar = Jar::default();
    // The sign-in page offers single sign-on.
    let sign_in_page = console_page(&s.warden, &jar, "/console/sign-in");
    assert!(
        sign_in_page.body.contains("href=\"/console/sso/start\""),
        "{}",
        sign_in_page.body
    );
    let (_, answer) = sign_in(&s.warden, &s.provider, &mut jar, "ana", "ana-password");
    // The console's own page moves the browser on (same-site, so the strict session cookie
    // goes along).
    assert_eq!(
        answer.status,
        200,
        "{}; logs:\n{}",
        answer.body,
        s.warden.logs()
    );
    assert!(
        answer.body.contains("content=\"0; url=/console/lists\""),
        "{}",
        answer.body
    );
    assert!(
        jar.get("warden_sso").is_none(),
        "the sign-in cookie is spent"
    );
    assert!(jar.get("warden_console").is_some(), "no session cookie");
    // The session opens the lists page, as the analyst the provider named…
    let lists = console_page(&s.warden, &jar, "/console/lists");
    assert_eq!(lists.status, 200, "{}", lists.body);
    assert!(lists.body.contains("Suspicious Users"), "{}", lists.body);
    assert!(
        lists.body.contains("ana@corp.example.test"),
        "{}",
        lists.body
    );
    // …and not an admin page: the provider's group maps to respond only.
    let audit_page = console_page(&s.warden, &jar, "/console/audit");
    assert_eq!(audit_page.status, 403, "{}", audit_page.body);
    // Without the cookie, the same page sends the browser to sign in.
    let anonymous = console_page(&s.warden, &Jar::default(), "/console/lists");
    assert_eq!(anonymous.status, 303);
    let audit = s
        .warden
        .get("/v1/audit?action=console.sign_in&limit=10")
        .json();
    let records = audit["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["actor"], "sso:ana (ana@corp.example.test)");
    assert!(
        records[0]["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{records:?}"
    );
    assert_eq!(records[0]["detail"]["method"], "sso");
    // The client secret is in no log line or audit record.
    let everything = s.warden.get("/v1/audit?format=jsonl&limit=10000").body;
    assert!(!everything.contains(CLIENT_SECRET));
    assert!(!s.warden.logs().contains(CLIENT_SECRET));
    assert_eq!(
        records[0]["detail"]["scopes"],
        serde_json::json!(["respond"])
    );
}

#[test]
fn sso_without_mfa_is_refused_when_mfa_is_required() {
    let s = setup("require_mfa = true");
    let mut jar = Jar::default();
    let (_, answer) = sign_in(&s.warden, &s.provider, &mut jar, "bo", "bo-password");
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body.contains("without multi-factor authentication"),
        "{}",
        answer.body
    );
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let refused = refusals(&s.warden, "auth.failed");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["detail"]["reason"], "sso_mfa");
    assert_eq!(refused[0]["actor"], "sso:bo (bo@corp.example.test)");
    assert_eq!(refused[0]["outcome"], "denied");
    // No session was made.
    assert!(jar.get("warden_console").is_none());
    let signed_in = s.warden.get("/v1/audit?action=console.sign_in").json();
    assert_eq!(signed_in["records"].as_array().unwrap().len(), 0);
}

#[test]
fn sso_without_mfa_signs_in_when_mfa_is_not_required() {
    let s = setup("require_mfa = false");
    let mut jar = Jar::default();
    let (_, answer) = sign_in(&s.warden, &s.provider, &mut jar, "bo", "bo-password");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(console_page(&s.warden, &jar, "/console/lists").status, 200);
    let audit = s.warden.get("/v1/audit?action=console.sign_in").json();
    assert_eq!(
        audit["records"][0]["actor"],
        "sso:bo (bo@corp.example.test)"
    );
}

/// Issue 24 §6 for single sign-on: every request re-checks a session against the
/// `[console.oidc]` in force. Turning `require_mfa` on ends the session of a person who
/// signed in without MFA (and not the one who used it); unmapping the group that gave a
/// session its scope ends that session too. Each goes to the sign-in page saying why.
#[test]
fn an_sso_session_follows_the_configuration_in_force() {
    let s = setup("require_mfa = false");
    let (mut ana, mut bo) = (Jar::default(), Jar::default());
    sign_in(&s.warden, &s.provider, &mut ana, "ana", "ana-password");
    sign_in(&s.warden, &s.provider, &mut bo, "bo", "bo-password");
    for jar in [&ana, &bo] {
        assert_eq!(console_page(&s.warden, jar, "/console/lists").status, 200);
    }
    let config = s._dir.path().join("warden.toml");
    let reload = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains(from), "{from} not in\n{text}");
        std::fs::write(&config, text.replace(from, to)).unwrap();
        let r = s
            .warden
            .post_json("/v1/admin/reload", &serde_json::json!({}));
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let ended = |jar: &Jar| {
        let page = console_page(&s.warden, jar, "/console/lists");
        assert_eq!(page.status, 303, "{}", page.body);
        page.header("location").unwrap().to_owned()
    };

    reload("require_mfa = false", "require_mfa = true");
    assert_eq!(ended(&bo), "/console/sign-in?ended=mfa");
    assert_eq!(console_page(&s.warden, &ana, "/console/lists").status, 200);

    reload(
        "\"SOC Analysts\" = \"respond\"",
        "\"SOC Leads\" = \"respond\"",
    );
    assert_eq!(ended(&ana), "/console/sign-in?ended=scope");
    let said = console_page(&s.warden, &Jar::default(), "/console/sign-in?ended=scope");
    assert!(said.body.contains("no longer gives"), "{}", said.body);
}

#[test]
fn sso_for_a_user_in_no_mapped_group_is_refused() {
    let s = setup("");
    let mut jar = Jar::default();
    let (_, answer) = sign_in(&s.warden, &s.provider, &mut jar, "cy", "cy-password");
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("in no group"), "{}", answer.body);
    let refused = refusals(&s.warden, "auth.forbidden");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["detail"]["reason"], "sso_group");
    assert_eq!(refused[0]["actor"], "sso:cy (cy@corp.example.test)");
}

#[test]
fn sso_refuses_a_replayed_or_forged_state() {
    let s = setup("");
    let ca = &s.provider.ca;
    let mut jar = Jar::default();
    let (callback, answer) = sign_in(&s.warden, &s.provider, &mut jar, "ana", "ana-password");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let state = callback
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .unwrap()
        .to_owned();
    // The same answer again, from the same browser (its state cookie put back): spent.
    let mut replaying = Jar::default();
    replaying.0.push(("warden_sso".into(), state.clone()));
    let replay = request(&callback, "GET", &replaying, None, ca);
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.body.contains("already used"), "{}", replay.body);
    // A state warden never issued, with a matching cookie.
    let mut forging = Jar::default();
    forging.0.push(("warden_sso".into(), "forged".into()));
    let forged = request(
        &format!(
            "http://{}/console/sso/callback?code=abc&state=forged",
            s.warden.addr
        ),
        "GET",
        &forging,
        None,
        ca,
    );
    assert_eq!(forged.status, 400, "{}", forged.body);
    // A real state, answered in another browser (no state cookie): login CSRF, refused.
    let mut victim = Jar::default();
    let start = request(
        &format!("http://{}/console/sso/start", s.warden.addr),
        "GET",
        &victim,
        None,
        ca,
    );
    victim.take(&start);
    let started = victim.get("warden_sso").unwrap().to_owned();
    let elsewhere = request(
        &format!(
            "http://{}/console/sso/callback?code=abc&state={started}",
            s.warden.addr
        ),
        "GET",
        &Jar::default(),
        None,
        ca,
    );
    assert_eq!(elsewhere.status, 400, "{}", elsewhere.body);
    let refused = refusals(&s.warden, "auth.failed");
    let count: u64 = refused
        .iter()
        .filter(|r| r["detail"]["reason"] == "sso_state")
        .map(|r| r["detail"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(count, 3, "{refused:?}");
    // Exactly one sign-in happened.
    let signed_in = s.warden.get("/v1/audit?action=console.sign_in").json();
    assert_eq!(signed_in["records"].as_array().unwrap().len(), 1);
}

/// The base64 SHA-256 of a certificate's public key, for Chromium's
/// `--ignore-certificate-errors-spki-list` (trust exactly that key, as a pin).
fn spki_hash(cert: &Path) -> String {
    let sh = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | base64",
        cert.display()
    );
    let out = Command::new("sh").args(["-c", &sh]).output().unwrap();
    assert!(out.status.success(), "openssl failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The SSO sign-in in headless Chromium (the console tests' chromedriver): the sign-in page's
/// single sign-on link, the provider's login form typed into, and back in the console as the
/// provider's user.
#[test]
fn sso_signs_in_from_a_real_browser() {
    use fantoccini::{ClientBuilder, Locator};
    let s = setup("require_mfa = true");
    let spki = spki_hash(&s._dir.path().join("server.pem"));
    let base = format!("http://{}", s.warden.addr);
    crate::console::run(async move {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": crate::console::CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         format!("--ignore-certificate-errors-spki-list={spki}")],
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(crate::console::chromedriver())
            .await
            .expect("a chromium session through chromedriver");
        c.goto(&format!("{base}/console/sign-in")).await.unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(
            crate::console::screenshot_dir().join("sign-in-sso.png"),
            png,
        )
        .unwrap();
        c.find(Locator::Css("#sso"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let login = c
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("input[name=login]"))
            .await
            .expect("the provider's login form");
        login.send_keys("ana").await.unwrap();
        c.find(Locator::Css("input[name=password]"))
            .await
            .unwrap()
            .send_keys("ana-password\u{E007}")
            .await
            .unwrap();
        let who = c
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(".who"))
            .await
            .expect("the console after single sign-on");
        assert_eq!(who.text().await.unwrap(), "sso:ana (ana@corp.example.test)");
        assert_eq!(c.current_url().await.unwrap().path(), "/console/lists");
        c.close().await.unwrap();
    });
}
