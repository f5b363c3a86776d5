//! Connection settings, the password newtype, URL validation and the rustls
//! client configuration (system roots plus an optional CA file).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use super::error::DirectoryError;
use crate::base::secret::Secret;

/// Default for [`DirectorySettings::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`DirectorySettings::op_timeout`].
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`DirectorySettings::search_deadline`].
pub const DEFAULT_SEARCH_DEADLINE: Duration = Duration::from_secs(300);
/// Default for [`DirectorySettings::page_size`].
pub const DEFAULT_PAGE_SIZE: u32 = 500;
/// Largest accepted page size (AD's default MaxPageSize).
pub const MAX_PAGE_SIZE: u32 = 1000;

/// How to reach and authenticate to the directory.
#[derive(Clone, Debug)]
pub struct DirectorySettings {
    /// `ldaps://host:636` or `ldap://host:389` (host, optional port, nothing else).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
    /// A PEM file of CA certificates trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Permit plain `ldap://` without StartTLS. Certificate verification is
    /// never turned off: put a private CA in `ca_file`.
    pub allow_insecure: bool,
    /// DN for the simple bind.
    pub bind_dn: String,
    /// Password for the simple bind.
    pub bind_password: Secret,
    /// Bound on TCP connect + StartTLS + TLS handshake.
    pub connect_timeout: Duration,
    /// Bound on each request/response (for searches: on each wait for the next
    /// server message, so on each page).
    pub op_timeout: Duration,
    /// Simple Paged Results page size, 1..=1000; also the window of values asked
    /// for in each range read of a multi-valued attribute (`member;range=0-999`).
    pub page_size: u32,
    /// Bound on a whole paged search (all pages and range follow-ups).
    pub search_deadline: Duration,
}

impl DirectorySettings {
    /// Settings with the defaults: no StartTLS, no extra CA, insecure refused,
    /// [`DEFAULT_CONNECT_TIMEOUT`], [`DEFAULT_OP_TIMEOUT`], [`DEFAULT_PAGE_SIZE`],
    /// [`DEFAULT_SEARCH_DEADLINE`].
    pub fn new(
        url: impl Into<String>,
        bind_dn: impl Into<String>,
        bind_password: Secret,
    ) -> DirectorySettings {
        DirectorySettings {
            url: url.into(),
            starttls: false,
            ca_file: None,
            allow_insecure: false,
            bind_dn: bind_dn.into(),
            bind_password,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            op_timeout: DEFAULT_OP_TIMEOUT,
            page_size: DEFAULT_PAGE_SIZE,
            search_deadline: DEFAULT_SEARCH_DEADLINE,
        }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), DirectoryError> {
        self.endpoint().map(|_| ())
    }

    pub(crate) fn endpoint(&self) -> Result<Endpoint, DirectoryError> {
        let bad = |field: &'static str, reason: &str| DirectoryError::Settings {
            field,
            reason: reason.to_owned(),
        };
        let endpoint = parse_url(&self.url).map_err(|reason| bad("url", &reason))?;
        if endpoint.ldaps && self.starttls {
            return Err(bad(
                "starttls",
                "StartTLS cannot be used with ldaps:// (already TLS)",
            ));
        }
        if self.bind_dn.trim().is_empty() {
            return Err(bad(
                "bind_dn",
                "must not be empty (anonymous binds are not supported)",
            ));
        }
        if self.bind_password.expose().is_empty() {
            // An empty password makes a simple bind "unauthenticated" (RFC 4513
            // §5.1.2), which many servers accept as anonymous.
            return Err(bad(
                "bind_password",
                "must not be empty (an empty password is an unauthenticated bind)",
            ));
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("op_timeout", self.op_timeout),
            ("search_deadline", self.search_deadline),
        ] {
            if d.is_zero() {
                return Err(bad(field, "must be greater than zero"));
            }
        }
        if self.page_size == 0 || self.page_size > MAX_PAGE_SIZE {
            return Err(bad("page_size", "must be between 1 and 1000"));
        }
        Ok(endpoint)
    }
}

/// A validated server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub ldaps: bool,
    /// `scheme://host:port`, as handed to ldap3.
    pub url: String,
}

/// Accepts `ldap[s]://host[:port][/]` only: no user info, path, query or
/// extensions (an LDAP URL extension could carry a password).
fn parse_url(url: &str) -> Result<Endpoint, String> {
    let lower = url.to_ascii_lowercase();
    let (ldaps, rest) = if lower.starts_with("ldaps://") {
        (true, &url[8..])
    } else if lower.starts_with("ldap://") {
        (false, &url[7..])
    } else {
        return Err("must start with ldaps:// or ldap://".into());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be scheme://host[:port] with no user, path, query or extensions".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("has an unterminated [IPv6] host")?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or("has junk after the [IPv6] host")?,
            ),
        };
        (format!("[{h}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" || host.contains(':') && !host.starts_with('[') {
        return Err("has an invalid host".into());
    }
    let port: u16 = match port {
        None => {
            if ldaps {
                636
            } else {
                389
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err("has an invalid port".into()),
        },
    };
    let scheme = if ldaps { "ldaps" } else { "ldap" };
    Ok(Endpoint {
        ldaps,
        url: format!("{scheme}://{host}:{port}"),
    })
}

/// The system trust store, loaded once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let res = rustls_native_certs::load_native_certs();
        for e in &res.errors {
            tracing::debug!(error = %e, "while loading system CA certificates");
        }
        res.certs
    })
}

/// Builds the rustls configuration: ring provider, safe protocol versions,
/// system roots plus `ca_file`. Verification is always on. Blocking (file I/O).
pub(crate) fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, DirectoryError> {
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| DirectoryError::CaFileRead {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |reason: &str, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
            DirectoryError::CaFileInvalid {
                path: path.to_owned(),
                reason: reason.to_owned(),
                source,
            }
        };
        let mut n = 0usize;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| invalid("not a PEM certificate file", Some(Box::new(e))))?;
            roots
                .add(cert)
                .map_err(|e| invalid("certificate rejected", Some(Box::new(e))))?;
            n += 1;
        }
        if n == 0 {
            return Err(invalid("contains no PEM certificate", None));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| DirectoryError::Tls { source })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(url: &str) -> DirectorySettings {
        DirectorySettings::new(url, "CN=svc,DC=x", Secret::new("hunter2"))
    }

    #[test]
    fn password_is_never_printed() {
        let dbg = format!("{:?}", settings("ldaps://dc:636"));
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn urls() {
        let ep = |u: &str| parse_url(u);
        assert_eq!(
            ep("ldaps://dc.corp:636"),
            Ok(Endpoint {
                ldaps: true,
                url: "ldaps://dc.corp:636".into()
            })
        );
        assert_eq!(
            ep("LDAPS://127.0.0.1/").map(|e| e.url),
            Ok("ldaps://127.0.0.1:636".into())
        );
        assert_eq!(ep("ldap://dc").map(|e| e.url), Ok("ldap://dc:389".into()));
        assert_eq!(
            ep("ldap://[::1]:3389").map(|e| e.url),
            Ok("ldap://[::1]:3389".into())
        );
        assert_eq!(
            ep("ldap://[::1]").map(|e| e.url),
            Ok("ldap://[::1]:389".into())
        );
        for bad in [
            "http://dc",
            "ldap://",
            "ldap:///",
            "ldap://dc:0",
            "ldap://dc:70000",
            "ldap://dc:+1",
            "ldap://dc:",
            "ldap://user@dc",
            "ldap://dc/dc=x??sub",
            "ldap://dc/??base?x-bindpw=secret",
            "ldap://::1",
            "ldap://[::1",
            "ldapi:///run/ldapi",
        ] {
            assert!(ep(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation() {
        assert!(settings("ldaps://dc").validate().is_ok());
        let mut s = settings("ldaps://dc");
        s.starttls = true;
        assert!(matches!(
            s.validate(),
            Err(DirectoryError::Settings {
                field: "starttls",
                ..
            })
        ));
        let mut s = settings("ldap://dc");
        s.page_size = 1001;
        assert!(matches!(
            s.validate(),
            Err(DirectoryError::Settings {
                field: "page_size",
                ..
            })
        ));
        s.page_size = 0;
        assert!(s.validate().is_err());
        let mut s = settings("ldap://dc");
        s.bind_password = Secret::new("");
        let err = s.validate().unwrap_err();
        assert!(matches!(
            err,
            DirectoryError::Settings {
                field: "bind_password",
                ..
            }
        ));
        let mut s = settings("ldap://dc");
        s.op_timeout = Duration::ZERO;
        assert!(matches!(
            s.validate(),
            Err(DirectoryError::Settings {
                field: "op_timeout",
                ..
            })
        ));
    }

    #[test]
    fn ca_file_errors() {
        let dir = std::env::temp_dir().join(format!("warden-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        assert!(matches!(
            tls_config(Some(&missing)),
            Err(DirectoryError::CaFileRead { .. })
        ));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            tls_config(Some(&empty)),
            Err(DirectoryError::CaFileInvalid { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(tls_config(None).is_ok());
    }
}
