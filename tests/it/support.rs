//! Shared test support: run the real binary, talk HTTP/1.1 to it, keep its logs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_warden");

/// The embedded default's shape for tests: `[server]` with `server` as its body, a store in
/// the config's directory, the "Suspicious Users" list, a data set over it (columns `user`,
/// `reason`) and a policy blocking its members on the services `apply_to` lists (TOML
/// strings, e.g. `"*"`).
pub fn list_config(server: &str, apply_to: &str) -> String {
    format!(
        r#"
[server]
{server}

[store]
path = "warden.db"

[[lists]]
name = "Suspicious Users"

[[data_sets]]
name = "Suspicious Users"
case_sensitive = false
columns = [{{ name = "user", key = true }}, {{ name = "reason" }}]
source = {{ type = "list", list = "Suspicious Users" }}

[[policies]]
name = "Block suspicious database users"
action = "block"
severity = "high"
apply_to = [{apply_to}]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "Suspicious Users"
search_in = ["user"]
"#
    )
}

/// A `warden` command with its store in `dir`.
pub fn warden_cmd(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_STORE")
        .env("RUST_LOG", "info");
    c
}

/// Output of a finished command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("run warden");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `warden serve`, stopped (SIGTERM) on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The bootstrap admin key warden wrote on first start, if it wrote one in `dir`.
    pub admin_key: Option<String>,
}

/// Starts `warden serve` in `dir` with extra arguments, on an ephemeral port, and waits until
/// it reports its address.
pub fn start_warden(dir: &Path, args: &[&str]) -> Server {
    start_warden_env(dir, &[], args)
}

/// Like [`start_warden`], with extra environment variables (e.g. libfaketime's
/// `LD_PRELOAD` and `FAKETIME`: set on warden itself, so that the signals [`Server::stop`]
/// sends reach it, not a wrapper).
pub fn start_warden_env(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
    start_warden_on(dir, env, args, "127.0.0.1:0")
}

/// Like [`start_warden_env`], listening on `listen` (for a config that must name warden's
/// own URL, such as an SSO redirect URL).
pub fn start_warden_on(dir: &Path, env: &[(&str, &str)], args: &[&str], listen: &str) -> Server {
    let mut cmd = warden_cmd(dir);
    cmd.envs(env.iter().copied());
    cmd.args(args)
        .args(["--log-json", "serve", "--listen", listen])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn warden serve");
    let stderr = child.stderr.take().expect("stderr");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("warden serving") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if let Some(a) = v["fields"]["address"].as_str() {
                    let _ = tx.send(a.parse::<SocketAddr>().expect("address"));
                }
            }
            sink.lock().unwrap().push(line);
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "warden did not start; logs:\n{}",
                logs.lock().unwrap().join("\n")
            );
        }
    };
    let admin_key = std::fs::read_to_string(dir.join(BOOTSTRAP_KEY_FILE))
        .ok()
        .map(|k| k.trim().to_string());
    Server {
        child,
        addr,
        logs,
        admin_key,
    }
}

/// Where warden writes its bootstrap admin key: next to the store, named after it (the test
/// configs keep the store, `warden.db`, in the config's directory).
pub const BOOTSTRAP_KEY_FILE: &str = "warden.db.bootstrap-admin.key";

/// Writes a secret file readable by its owner alone, as warden requires.
pub fn write_secret(path: &Path, text: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The permission bits of a file.
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

impl Server {
    /// GET with the bootstrap admin key, when there is one.
    pub fn get(&self, path_and_query: &str) -> HttpResponse {
        self.call("GET", path_and_query, self.admin_key.as_deref(), b"")
    }

    /// A request with `key` as the bearer token (or none).
    pub fn call(&self, method: &str, path: &str, key: Option<&str>, body: &[u8]) -> HttpResponse {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http(self.addr, method, path, &headers, body)
    }

    /// POSTs `body` as JSON with the admin key.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> HttpResponse {
        self.call(
            "POST",
            path,
            self.admin_key.as_deref(),
            body.to_string().as_bytes(),
        )
    }

    /// Waits until `/readyz` answers 200: every data set a policy reads has loaded once (a
    /// fresh store's LDAP set after its first pull). Panics with the last answer otherwise.
    pub fn wait_ready(&self) {
        let mut last = None;
        let ready = eventually(Duration::from_secs(30), || {
            let r = self.get("/readyz");
            let ok = r.status == 200;
            last = Some(r);
            ok
        });
        assert!(
            ready.is_some(),
            "warden never became ready: {last:?}; logs:\n{}",
            self.logs()
        );
    }

    /// Puts `principal` on "Suspicious Users" over HTTP; returns the status.
    pub fn add_member(&self, principal: &str) -> u16 {
        let body = serde_json::json!({ "principal": principal, "reason": "test" });
        self.post_json("/v1/lists/Suspicious%20Users/members", &body)
            .status
    }

    /// The decision (`allow`/`block`) for one db_user of `service`, asked with the admin key.
    pub fn decision(&self, service: &str, db_user: &str) -> String {
        let r = self.get(&format!(
            "/v1/decision?service={}&db_user={}",
            enc(service),
            enc(db_user)
        ));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["decision"].as_str().unwrap().to_string()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The port gate `name` listens on, once it does (its latest listener, after a reload):
    /// test gates listen on `127.0.0.1:0`, so no other test's listener can take their port
    /// between choosing and binding it.
    pub fn gate_port(&self, name: &str) -> u16 {
        let bound = |line: &String| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let fields = &v["fields"];
            if fields["message"] != "gate listening" || fields["gate"] != name {
                return None;
            }
            let address: SocketAddr = fields["address"].as_str()?.parse().ok()?;
            Some(address.port())
        };
        let mut port = None;
        eventually(Duration::from_secs(20), || {
            port = self.logs.lock().unwrap().iter().rev().find_map(bound);
            port.is_some()
        });
        port.unwrap_or_else(|| panic!("gate {name} did not listen:\n{}", self.logs()))
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        // SAFETY-free: use the kill command rather than libc.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `f` until it returns true or `timeout` passes; returns the elapsed time if it did.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A keep-alive HTTP/1.1 connection: many requests on one socket.
pub struct KeepAlive {
    stream: BufReader<TcpStream>,
}

impl KeepAlive {
    pub fn connect(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(KeepAlive {
            stream: BufReader::new(s),
        })
    }

    /// Sends a GET and reads the answer (status and body).
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: warden\r\n\r\n");
        self.stream.get_mut().write_all(req.as_bytes())?;
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<(u16, String)> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().map_err(|_| bad("content-length"))?;
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Raises the open-file limit of process `pid` (root can), for tests that hold thousands of
/// sockets; fails loudly where it cannot.
pub fn raise_fd_limit(pid: u32, n: u32) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={n}:{n}")])
        .status()
        .expect("prlimit (util-linux) is required to raise the open-file limit");
    assert!(
        status.success(),
        "prlimit --nofile={n} failed for pid {pid}"
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI.
pub fn make_certs(dir: &Path) {
    let sh = format!(
        r#"set -e
cd '{}'
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=warden-test-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext.cnf 2>/dev/null
"#,
        dir.display()
    );
    let status = Command::new("sh").arg("-c").arg(sh).status().unwrap();
    assert!(status.success(), "openssl failed (is openssl installed?)");
}

/// The PostgreSQL server the gate tests share: one per test run, started through
/// `scripts/postgres start` in a temp dir on a free port (or the one `WARDEN_TEST_PG_DIR`
/// names, already started), destroyed when the test process exits.
pub struct Postgres {
    pub dir: std::path::PathBuf,
    pub port: u16,
    pub ca: std::path::PathBuf,
}

impl Postgres {
    pub fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{user}.secret")))
            .unwrap()
            .trim()
            .to_string()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn postgres() -> &'static Postgres {
    static PG: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
    PG.get_or_init(|| {
        let (dir, port) = match std::env::var("WARDEN_TEST_PG_DIR") {
            Ok(d) => {
                let dir = std::path::PathBuf::from(d);
                let port = std::fs::read_to_string(dir.join("port")).unwrap();
                (dir, port.trim().parse().unwrap())
            }
            Err(_) => {
                let dir = std::env::temp_dir().join(format!("warden-pg-{}", std::process::id()));
                let port = start_postgres(&dir);
                destroy_postgres_on_exit(&dir);
                (dir, port)
            }
        };
        Postgres {
            ca: dir.join("tls/ca.pem"),
            dir,
            port,
        }
    })
}

fn postgres_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres")
}

/// Starts a PostgreSQL of this test process's own in `dir` (`scripts/postgres start`) on a
/// free loopback port, and returns the port.
pub fn start_postgres(dir: &Path) -> u16 {
    let port = free_port();
    let out = Command::new(postgres_script())
        .arg("start")
        .arg(dir)
        .arg(port.to_string())
        .output()
        .expect("run scripts/postgres");
    assert!(
        out.status.success(),
        "scripts/postgres start failed (run `scripts/postgres install`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    port
}

/// Destroys the PostgreSQL in `dir` once this test process is gone, however it ends.
pub fn destroy_postgres_on_exit(dir: &Path) {
    destroy_on_exit(&postgres_script(), dir);
}

/// Runs `script destroy dir` once this test process is gone, however it ends.
fn destroy_on_exit(script: &Path, dir: &Path) {
    let watchdog = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; '{}' destroy '{}'",
        std::process::id(),
        script.display(),
        dir.display()
    );
    // Not waited for: it outlives this process on purpose.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("sh")
        .arg("-c")
        .arg(watchdog)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the server's watchdog");
}

/// The MariaDB server the MySQL gate tests share: one per test run, started through
/// `scripts/mariadb start` in a temp dir on a free port (or the one `WARDEN_TEST_MARIADB_DIR`
/// names, already started), destroyed when the test process exits.
pub struct Mariadb {
    pub dir: std::path::PathBuf,
    pub port: u16,
    pub ca: std::path::PathBuf,
}

impl Mariadb {
    pub fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{user}.secret")))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Runs SQL as root over the server's socket; returns stdout (tab-separated, no headers).
    pub fn admin(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-N", "-B", "-u", "root", "-S"])
            .arg(self.dir.join("mysqld.sock"))
            .args(["-e", sql])
            .output()
            .expect("run mariadb (scripts/mariadb install)");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn mariadb_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mariadb")
}

pub fn mariadb() -> &'static Mariadb {
    static DB: std::sync::OnceLock<Mariadb> = std::sync::OnceLock::new();
    DB.get_or_init(|| {
        let (dir, port) = match std::env::var("WARDEN_TEST_MARIADB_DIR") {
            Ok(d) => {
                let dir = std::path::PathBuf::from(d);
                let port = std::fs::read_to_string(dir.join("port")).unwrap();
                (dir, port.trim().parse().unwrap())
            }
            Err(_) => {
                let dir =
                    std::env::temp_dir().join(format!("warden-mariadb-{}", std::process::id()));
                let port = free_port();
                let out = Command::new(mariadb_script())
                    .arg("start")
                    .arg(&dir)
                    .arg(port.to_string())
                    .output()
                    .expect("run scripts/mariadb");
                assert!(
                    out.status.success(),
                    "scripts/mariadb start failed (run `scripts/mariadb install`):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                destroy_on_exit(&mariadb_script(), &dir);
                (dir, port)
            }
        };
        Mariadb {
            ca: dir.join("tls/ca.pem"),
            dir,
            port,
        }
    })
}
