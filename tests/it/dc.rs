//! The Samba AD domain controllers shared by this test run, and per-test namespaces in them:
//! CORP ([`dc`], 127.0.0.1) and a second domain, PARTNER ([`dc2`], 127.0.0.2).
//!
//! `scripts/test` starts both DCs and exports `WARDEN_TEST_DC_DIR` and `WARDEN_TEST_DC2_DIR`;
//! a plain `cargo test` starts each itself under the target directory (installing Samba if
//! needed) and leaves it running for the next run. Either way a missing DC is a loud failure,
//! never a skip.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub struct Dc {
    pub dir: PathBuf,
    pub ldaps_url: String,
    pub ca: PathBuf,
    pub base_dn: String,
    pub bind_dn: String,
    pub password_file: PathBuf,
    /// The NetBIOS domain (`CORP`, `PARTNER`).
    pub domain: String,
    /// The DNS domain (`corp.example.test`), the UPN suffix of test users.
    pub dns_domain: String,
}

static DC: OnceLock<Dc> = OnceLock::new();
static DC2: OnceLock<Dc> = OnceLock::new();
/// Tests hold this shared; the outage test holds it exclusively while it stops the DC.
static DC_LOCK: RwLock<()> = RwLock::new(());

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/samba-dc")
}

fn must(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The CORP DC (corp.example.test on 127.0.0.1).
pub fn dc() -> &'static Dc {
    DC.get_or_init(|| load("WARDEN_TEST_DC_DIR", "samba-dc", &[]))
}

/// The PARTNER DC (partner.example.test on 127.0.0.2), a second domain for
/// `tests/it/domains.rs`: `scripts/test` starts it and exports `WARDEN_TEST_DC2_DIR`; a plain
/// `cargo test` starts one under the target directory, like [`dc`].
pub fn dc2() -> &'static Dc {
    DC2.get_or_init(|| {
        load(
            "WARDEN_TEST_DC2_DIR",
            "samba-dc2",
            &["--domain", "PARTNER", "--address", "127.0.0.2"],
        )
    })
}

/// The DC of `$var`'s directory, or one started under the target directory with `args`.
fn load(var_name: &str, default_dir: &str, args: &[&str]) -> Dc {
    let dir = match std::env::var(var_name) {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(default_dir);
            must(
                Command::new(script()).arg("install"),
                "scripts/samba-dc install",
            );
            must(
                Command::new(script()).arg("start").arg(&dir).args(args),
                "scripts/samba-dc start",
            );
            dir
        }
    };
    let env = std::fs::read_to_string(dir.join("env"))
        .unwrap_or_else(|e| panic!("{}/env: {e}; is the DC provisioned?", dir.display()));
    let vars: HashMap<String, String> = env
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim_matches(|c| c == '"' || c == '\'').to_string(),
            )
        })
        .collect();
    let var = |k: &str| {
        vars.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing in {}/env", dir.display()))
    };
    // A DC provisioned before the script wrote its domain is the default one.
    let domain = vars
        .get("WARDEN_TEST_DOMAIN")
        .cloned()
        .unwrap_or_else(|| "CORP".into());
    let dns_domain = vars
        .get("WARDEN_TEST_DNS_DOMAIN")
        .cloned()
        .unwrap_or_else(|| "corp.example.test".into());
    Dc {
        dir: dir.clone(),
        ldaps_url: var("WARDEN_TEST_LDAPS_URL"),
        ca: PathBuf::from(var("WARDEN_TEST_LDAP_CA")),
        base_dn: var("WARDEN_TEST_BASE_DN"),
        bind_dn: var("WARDEN_TEST_BIND_DN"),
        password_file: PathBuf::from(var("WARDEN_TEST_BIND_PASSWORD_FILE")),
        domain,
        dns_domain,
    }
}

pub fn shared() -> RwLockReadGuard<'static, ()> {
    DC_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    DC_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

impl Dc {
    fn ldap_tool(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("LDAPTLS_CACERT", &self.ca)
            .env("LDAPTLS_REQCERT", "demand")
            .args(["-x", "-H", &self.ldaps_url, "-D", &self.bind_dn, "-y"])
            .arg(&self.password_file);
        c
    }

    /// Applies an LDIF through `ldapmodify -a`: records without a changetype are adds.
    pub fn modify(&self, ldif: &str) {
        let mut child = self
            .ldap_tool("ldapmodify")
            .arg("-a")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify");
        // Feed stdin from a thread so a full stdout pipe cannot deadlock us; a write error
        // means ldapmodify exited early, and its stderr below says why.
        let mut stdin = child.stdin.take().unwrap();
        let input = ldif.to_owned();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(
            out.status.success(),
            "ldapmodify failed: {}\n{ldif}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Values of `attr` on the entry `dn` (ldapsearch, base scope; wrapped lines joined).
    pub fn values(&self, dn: &str, attr: &str) -> Vec<String> {
        let out = self
            .ldap_tool("ldapsearch")
            .args([
                "-o",
                "ldif-wrap=no",
                "-LLL",
                "-E",
                "pr=1000/noprompt",
                "-s",
                "base",
                "-b",
                dn,
                "(objectClass=*)",
                attr,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ldapsearch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let prefix = format!("{}: ", attr.to_ascii_lowercase());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].to_string())
            .collect()
    }

    /// The attribute descriptions the DC returns for `attr` on `dn` in one plain read, e.g.
    /// `member;range=0-1499` when the value count exceeds its MaxValRange.
    pub fn returned_attr_names(&self, dn: &str, attr: &str) -> Vec<String> {
        let out = self
            .ldap_tool("ldapsearch")
            .args(["-o", "ldif-wrap=no", "-LLL", "-s", "base", "-b", dn])
            .args(["(objectClass=*)", attr])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ldapsearch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(':').map(|(name, _)| name.to_string()))
            .filter(|name| {
                name.to_ascii_lowercase()
                    .starts_with(&attr.to_ascii_lowercase())
            })
            .collect();
        names.dedup();
        names
    }

    pub fn stop(&self) {
        must(
            Command::new(script()).arg("stop").arg(&self.dir),
            "scripts/samba-dc stop",
        );
    }

    /// A crash: SIGKILL, no shutdown; open connections are reset. Hold [`exclusive`].
    pub fn kill(&self) {
        must(
            Command::new(script()).arg("kill").arg(&self.dir),
            "scripts/samba-dc kill",
        );
    }

    /// A hang: SIGSTOP; requests queue unanswered until [`Dc::kill`]. Hold [`exclusive`].
    pub fn freeze(&self) {
        must(
            Command::new(script()).arg("freeze").arg(&self.dir),
            "scripts/samba-dc freeze",
        );
    }

    /// Bytes warden (or anyone) sent the DC that it has not read yet: the receive queues of
    /// its established LDAPS connections, from `/proc/net/tcp`. Non-zero while it is frozen
    /// means a request is in flight.
    pub fn unread_bytes(&self) -> u64 {
        let port = self
            .ldaps_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap();
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
                let established = *f.get(3)? == "01";
                let rx = u64::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()?;
                (local_port == port && established).then_some(rx)
            })
            .sum()
    }

    pub fn start(&self) {
        must(
            Command::new(script()).arg("start").arg(&self.dir),
            "scripts/samba-dc start",
        );
    }
}

/// Starts the DC again when dropped, whatever a test did to it (stopped, frozen, killed) and
/// however the test ended.
pub struct Restart<'a>(pub &'a Dc);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        // A frozen DC would never answer `start`'s readiness check: end it first (an error
        // here only means it was not running).
        let _ = Command::new(script()).arg("kill").arg(&self.0.dir).output();
        self.0.start();
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A test's own OU, with short unique names (sAMAccountName allows 20 characters).
pub struct Ns {
    /// Unique prefix for account names, e.g. `k3f2a`.
    pub p: String,
    pub ou: String,
    /// The DC's DNS domain: the UPN suffix of the users made here.
    pub dns_domain: String,
}

impl Ns {
    pub fn new(dc: &Dc) -> Ns {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let p = format!("w{:x}{n:x}", (t ^ u128::from(std::process::id())) & 0xffff);
        Ns::with_prefix(dc, p)
    }

    /// The namespace of prefix `other.p` on another DC: the same account names in another
    /// domain (`CORP\w1jsmith` and `PARTNER\w1jsmith`).
    pub fn same_names(dc: &Dc, other: &Ns) -> Ns {
        Ns::with_prefix(dc, other.p.clone())
    }

    fn with_prefix(dc: &Dc, p: String) -> Ns {
        let ou = format!("OU={p},{}", dc.base_dn);
        dc.modify(&format!(
            "dn: {ou}\nchangetype: add\nobjectClass: organizationalUnit\n"
        ));
        Ns {
            p,
            ou,
            dns_domain: dc.dns_domain.clone(),
        }
    }

    pub fn sam(&self, name: &str) -> String {
        format!("{}{name}", self.p)
    }

    pub fn upn(&self, name: &str) -> String {
        format!("{}@{}", self.sam(name), self.dns_domain)
    }

    /// `corp\<sam>` (on CORP): what the seed's UPN mapping yields.
    pub fn mapped(&self, name: &str) -> String {
        let label = self.dns_domain.split('.').next().unwrap_or_default();
        format!("{label}\\{}", self.sam(name))
    }

    pub fn user_dn(&self, name: &str) -> String {
        format!("CN={},{}", self.sam(name), self.ou)
    }

    pub fn add_user(&self, dc: &Dc, name: &str) -> String {
        let dn = self.user_dn(name);
        dc.modify(&format!(
            "dn: {dn}\nchangetype: add\nobjectClass: user\nsAMAccountName: {}\nuserPrincipalName: {}\nuserAccountControl: 544\n",
            self.sam(name),
            self.upn(name)
        ));
        dn
    }

    /// Creates a group `CN=<cn>` in the OU with the given members.
    /// A user whose UPN prefix is another name than its sAMAccountName (`jdoe` with
    /// `john.doe@…`, namespaced): returns its sAMAccountName, UPN and DN.
    pub fn add_user_with_upn(
        &self,
        dc: &Dc,
        sam: &str,
        upn_prefix: &str,
    ) -> (String, String, String) {
        let (sam, upn) = (
            self.sam(sam),
            format!("{}{upn_prefix}@{}", self.p, self.dns_domain),
        );
        let dn = format!("CN={sam},{}", self.ou);
        dc.modify(&format!(
            "dn: {dn}\nchangetype: add\nobjectClass: user\nsAMAccountName: {sam}\n\
             userPrincipalName: {upn}\nuserAccountControl: 544\n"
        ));
        (sam, upn, dn)
    }

    pub fn add_group(&self, dc: &Dc, cn: &str, members: &[String]) -> String {
        let dn = format!("CN={cn},{}", self.ou);
        let mut ldif = format!(
            "dn: {dn}\nchangetype: add\nobjectClass: group\nsAMAccountName: {}{}\n",
            self.p,
            &cn[..cn.len().min(8)]
        );
        for m in members {
            ldif.push_str(&format!("member: {m}\n"));
        }
        dc.modify(&ldif);
        dn
    }

    pub fn set_members(&self, dc: &Dc, group: &str, op: &str, members: &[String]) {
        let mut ldif = format!("dn: {group}\nchangetype: modify\n{op}: member\n");
        for m in members {
            ldif.push_str(&format!("member: {m}\n"));
        }
        dc.modify(&ldif);
    }
}

/// Settings for writing a test configuration.
pub struct AdConfig<'a> {
    pub ns: &'a Ns,
    pub group_dn: &'a str,
    pub mapping: bool,
    pub update_interval: &'a str,
    pub refresh_interval: &'a str,
    pub password_file: Option<&'a Path>,
}

impl<'a> AdConfig<'a> {
    /// The seed setup: `group_dn` mapped and pulled, both on one-minute schedules.
    pub fn seed(ns: &'a Ns, group_dn: &'a str) -> AdConfig<'a> {
        AdConfig {
            ns,
            group_dn,
            mapping: true,
            update_interval: "1m",
            refresh_interval: "1m",
            password_file: None,
        }
    }

    /// Writes `warden.toml` into `dir` for the seed setup scoped to the test's OU.
    pub fn write(&self, dc: &Dc, dir: &Path) -> PathBuf {
        let password_file = self.password_file.unwrap_or(&dc.password_file);
        let mapping = if self.mapping {
            format!(
                "[[mappings]]\nlist = \"Suspicious Users\"\ndirectory = \"dc\"\ngroup_dn = \"{}\"\n",
                self.group_dn
            )
        } else {
            String::new()
        };
        let text = format!(
            r#"
[store]
path = "warden.db"

[[directories]]
name = "dc"
url = "{url}"
ca_file = "{ca}"
bind_dn = "{bind_dn}"
bind_password_file = "{pw}"
base_dn = "{ou}"
update_interval = "{update}"
timeout = "10s"
connect_timeout = "3s"
page_size = 500

[[lists]]
name = "Suspicious Users"

{mapping}

[[data_sets]]
name = "PTR Suspicious Users"
case_sensitive = false
columns = [{{ name = "user", key = true }}, {{ name = "group" }}]
[data_sets.source]
type = "ldap"
directory = "dc"
base = "{ou}"
scope = "sub"
filter = "(memberOf={group})"
refresh_interval = "{refresh}"
notify = true
max_shrink = 0.5
[[data_sets.source.mappings]]
column = "user"
attribute = "userPrincipalName"
match = '^([^@]*)@([^.]*)\..*$'
substitute = '$2\$1'
[[data_sets.source.mappings]]
column = "group"
attribute = "memberOf"
match = '^CN=([^,]*),.*$'
substitute = '$1'

[[policies]]
name = "PTR Block Suspicious Users"
action = "block"
severity = "high"
apply_to = ["*"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "PTR Suspicious Users"
search_in = ["user"]
"#,
            url = dc.ldaps_url,
            ca = dc.ca.display(),
            bind_dn = dc.bind_dn,
            pw = password_file.display(),
            ou = self.ns.ou,
            update = self.update_interval,
            refresh = self.refresh_interval,
            group = self.group_dn,
        );
        let path = dir.join("warden.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}
