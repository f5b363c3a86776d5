//! A real nginx with `auth_request` in front of a tiny upstream, asking warden's `/v1/authz`
//! (docs/reference.md's snippet): warden's 200 lets the request through, 403 is a 403, and a 503 (a
//! data set that has never loaded) is a 503 — never the upstream. The test installs nothing:
//! without nginx it fails, naming the apt-get command (scripts/test installs it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Server, eventually, http, start_warden};

fn nginx_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"));
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "this test runs a real nginx (auth_request) in front of warden, and nginx is not \
         installed: apt-get install -y nginx   (scripts/test installs it)"
    );
}

/// An upstream that answers every request `200 upstream ok`.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nupstream ok",
            );
        }
    });
    addr
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx in the foreground, killed on drop.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// docs/reference.md's `auth_request` setup: the service and the user come from the client's query
/// (`?service=…&user=…`, already percent-encoded) and go to `/v1/authz`; a 503 from warden, which
/// nginx's auth_request turns into 500, is answered 503.
fn nginx_conf(dir: &Path, listen: u16, warden: SocketAddr, upstream: SocketAddr, key: &str) {
    let d = dir.display();
    let conf = format!(
        r#"
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    server {{
        listen 127.0.0.1:{listen};

        location /app {{
            set $warden_service $arg_service;
            set $warden_user $arg_user;
            auth_request /_warden;
            auth_request_set $warden_decision $upstream_http_warden_decision;
            add_header Warden-Decision $warden_decision always;
            error_page 500 = @warden_error;
            proxy_pass http://{upstream};
        }}

        location = /_warden {{
            internal;
            proxy_pass http://{warden}/v1/authz?service=$warden_service&db_user=$warden_user;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Authorization "Bearer {key}";
        }}

        # warden answered neither 2xx nor 401/403 (a 503: a data set never loaded), or could
        # not be reached: fail closed.
        location @warden_error {{
            add_header Warden-Decision error always;
            return 503;
        }}
    }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
}

/// warden with the embedded list shape on `orders`, plus an `api` set no one has written yet
/// read by a policy on `ledger`: unknown, so ledger decisions are errors.
fn start(dir: &Path) -> Server {
    let mut config = crate::support::list_config("", r#""orders""#);
    config.push_str(
        r#"
[[data_sets]]
name = "Feed"
columns = [{ name = "user", key = true }]
source = { type = "api" }

[[policies]]
name = "Block fed users"
action = "block"
severity = "high"
apply_to = ["ledger"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "Feed"
"#,
    );
    std::fs::write(dir.join("warden.toml"), config).unwrap();
    start_warden(dir, &["--config", "warden.toml"])
}

#[test]
fn nginx_auth_request_maps_warden_to_200_403_503() {
    let nginx = nginx_binary();
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path());
    let key = server.admin_key.clone().unwrap();
    assert_eq!(server.add_member("corp\\mallory"), 201);
    let listen = free_port();
    nginx_conf(tmp.path(), listen, server.addr, upstream(), &key);
    let child = Command::new(&nginx)
        .arg("-p")
        .arg(tmp.path())
        .arg("-c")
        .arg(tmp.path().join("nginx.conf"))
        .args(["-e", "stderr", "-g", "daemon off; master_process off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let _nginx = Nginx(child);
    let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    let up = eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    assert!(
        up.is_some(),
        "nginx did not start: {}",
        std::fs::read_to_string(tmp.path().join("nginx-error.log")).unwrap_or_default()
    );
    let get = |q: &str| http(addr, "GET", &format!("/app?{q}"), &[], b"");

    let allowed = get("service=orders&user=corp%5Cbob");
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.body, "upstream ok");
    assert_eq!(allowed.header("warden-decision"), Some("allow"));

    let blocked = get("service=orders&user=CORP%5CMallory");
    assert_eq!(blocked.status, 403, "{blocked:?}");
    assert!(!blocked.body.contains("upstream ok"));
    assert_eq!(blocked.header("warden-decision"), Some("block"));

    let unknown = get("service=ledger&user=corp%5Cbob");
    assert_eq!(unknown.status, 503, "{unknown:?}");
    assert!(!unknown.body.contains("upstream ok"));
    assert_eq!(unknown.header("warden-decision"), Some("error"));

    // Once the set is written it is known: the same request goes through.
    let w = server.post_json(
        "/v1/data-sets/Feed/data",
        &serde_json::json!({"records": [{"user": "corp\\eve"}]}),
    );
    assert_eq!(w.status, 200, "{}", w.body);
    let now_known = get("service=ledger&user=corp%5Cbob");
    assert_eq!(now_known.status, 200, "{now_known:?}");
    assert_eq!(get("service=ledger&user=corp%5Ceve").status, 403);
}
