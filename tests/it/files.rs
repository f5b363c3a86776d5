//! Files and their modes: the store is private (0600, `-wal` and `-shm` too) and a readable
//! one is refused unless `[store] allow_readable`; a secret file others can read is refused;
//! the bootstrap admin key lives next to its store, named after it, expires, and a leftover
//! one never stops a start.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{
    BOOTSTRAP_KEY_FILE, list_config, make_certs, mode_of, run, start_warden, warden_cmd,
};

fn write_config(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `warden serve` with `config` that is expected not to start: its exit code and stderr.
fn refused(dir: &Path, config: &str) -> (i32, String) {
    let mut c = warden_cmd(dir);
    c.args(["--config", config, "serve", "--listen", "127.0.0.1:0"]);
    let r = run(c);
    (r.code, r.stderr)
}

#[test]
fn the_store_and_the_key_file_are_private_and_a_readable_store_is_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), "warden.toml", &list_config("", r#""*""#));
    let mut server = start_warden(tmp.path(), &["--config", "warden.toml"]);
    assert_eq!(server.add_member(r"corp\alice"), 201);
    for name in [
        "warden.db",
        "warden.db-wal",
        "warden.db-shm",
        BOOTSTRAP_KEY_FILE,
    ] {
        assert_eq!(mode_of(&tmp.path().join(name)), 0o600, "{name}");
    }
    // The key file is where the docs say: next to the store, named after it.
    assert!(server.admin_key.is_some(), "{}", server.logs());
    assert!(!tmp.path().join("warden-bootstrap-admin.key").exists());
    // It expires: a day by default.
    let keys = server.get("/v1/keys").json();
    let bootstrap = &keys["keys"][0];
    let created = bootstrap["created_at"].as_i64().unwrap();
    assert_eq!(bootstrap["expires_at"].as_i64(), Some(created + 86_400));
    assert_eq!(server.stop(), Some(0));

    let store = tmp.path().join("warden.db");
    chmod(&store, 0o644);
    let (code, stderr) = refused(tmp.path(), "warden.toml");
    assert_eq!(code, 2, "{stderr}");
    for needle in [
        "store ./warden.db is readable by group or others (mode 0644)",
        "chmod 600 ./warden.db",
        "allow_readable = true",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    assert_eq!(mode_of(&store), 0o644, "a refused store is left as it is");

    let allowed = list_config("", r#""*""#).replace(
        "path = \"warden.db\"",
        "path = \"warden.db\"\nallow_readable = true",
    );
    write_config(tmp.path(), "allowed.toml", &allowed);
    let server = start_warden(tmp.path(), &["--config", "allowed.toml"]);
    assert_eq!(server.decision("orders", r"CORP\alice"), "block");
}

#[test]
fn a_tls_key_others_can_read_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    make_certs(tmp.path());
    let config = list_config(
        "tls_cert_file = \"server.pem\"\ntls_key_file = \"server.key\"",
        r#""*""#,
    );
    write_config(tmp.path(), "warden.toml", &config);
    let key = tmp.path().join("server.key");
    chmod(&key, 0o640);
    let (code, stderr) = refused(tmp.path(), "warden.toml");
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("readable by group or others (mode 0640)")
            && stderr.contains("chmod 600 ./server.key"),
        "{stderr}"
    );
    chmod(&key, 0o600);
    assert!(
        !tmp.path().join(BOOTSTRAP_KEY_FILE).exists(),
        "a refused start made a key"
    );
    let _server = start_warden(tmp.path(), &["--config", "warden.toml"]);
}

/// Deleting the store to start over leaves its key file behind; the next start replaces it
/// with a new key instead of refusing ("File exists").
#[test]
fn a_store_deleted_to_start_over_starts_with_a_new_key() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), "warden.toml", &list_config("", r#""*""#));
    let mut first = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let old_key = first.admin_key.clone().unwrap();
    assert_eq!(first.stop(), Some(0));
    for name in ["warden.db", "warden.db-wal", "warden.db-shm"] {
        let _ = std::fs::remove_file(tmp.path().join(name));
    }
    assert!(tmp.path().join(BOOTSTRAP_KEY_FILE).exists());

    let second = start_warden(tmp.path(), &["--config", "warden.toml"]);
    let new_key = second.admin_key.clone().unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(mode_of(&tmp.path().join(BOOTSTRAP_KEY_FILE)), 0o600);
    assert_eq!(second.get("/v1/keys").status, 200);
    assert_eq!(
        second.call("GET", "/v1/keys", Some(&old_key), b"").status,
        401
    );
    assert!(
        second
            .logs()
            .contains("replaced a leftover bootstrap key file")
    );
}

/// Two configs in one directory with stores of their own: each store gets its own key file,
/// so both start and each key opens its own warden only.
#[test]
fn two_stores_whose_configs_share_a_directory_both_start() {
    let tmp = tempfile::tempdir().unwrap();
    for (config, store) in [("a.toml", "a.db"), ("b.toml", "b.db")] {
        let text = list_config("", r#""*""#).replace("warden.db", store);
        write_config(tmp.path(), config, &text);
    }
    let mut a = start_warden(tmp.path(), &["--config", "a.toml"]);
    let mut b = start_warden(tmp.path(), &["--config", "b.toml"]);
    let key = |store: &str| {
        std::fs::read_to_string(tmp.path().join(format!("{store}.bootstrap-admin.key")))
            .unwrap()
            .trim()
            .to_owned()
    };
    a.admin_key = Some(key("a.db"));
    b.admin_key = Some(key("b.db"));
    assert_ne!(a.admin_key, b.admin_key);
    assert_eq!(a.get("/v1/keys").status, 200);
    assert_eq!(b.get("/v1/keys").status, 200);
    assert_eq!(
        a.call("GET", "/v1/keys", b.admin_key.as_deref(), b"")
            .status,
        401
    );
}
