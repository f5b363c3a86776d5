//! The settings of every socket warden listens on — the HTTP gateway's `[server]` and each
//! `[[gates]]` entry — checked once: the address, the certificate and key it serves TLS with
//! ([`TlsPair`]), and no two listeners on one address. A setting every listener gains (a
//! per-address cap, a timeout) belongs here.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::KeyPath;
use super::check::Ctx;

/// A PEM certificate chain and private key a listener serves TLS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `tls_cert_file` / `tls_key_file`: both or neither.
pub(super) struct TlsPair {
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
}

impl TlsPair {
    /// The files when both are set; `None` when neither is, or (with the error recorded) when
    /// only one is.
    pub(super) fn check(self, ctx: &mut Ctx<'_>, path: &KeyPath) -> Option<TlsFiles> {
        match (self.cert_file, self.key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert_file: ctx.path_buf(&cert),
                key_file: ctx.path_buf(&key),
            }),
            (None, None) => None,
            (Some(_), None) => {
                ctx.err(path.key("tls_key_file"), "is required with tls_cert_file");
                None
            }
            (None, Some(_)) => {
                ctx.err(path.key("tls_cert_file"), "is required with tls_key_file");
                None
            }
        }
    }
}

/// A listener's `listen` address; `example` is shown with the error.
pub(super) fn address(
    ctx: &mut Ctx<'_>,
    path: KeyPath,
    text: &str,
    example: &str,
) -> Option<SocketAddr> {
    text.parse::<SocketAddr>()
        .map_err(|e| {
            ctx.err(
                path,
                format!("{text:?} is not an address:port ({e}); e.g. \"{example}\""),
            )
        })
        .ok()
}

/// Every listener's address, first come first served: a later one on an address an earlier
/// one holds is told at its `listen` key. Port 0 (any free port, as tests listen) never
/// collides.
pub(super) fn distinct(ctx: &mut Ctx<'_>, listeners: &[(KeyPath, SocketAddr)]) {
    for (i, (path, listen)) in listeners.iter().enumerate() {
        if listen.port() != 0 && listeners[..i].iter().any(|(_, earlier)| earlier == listen) {
            ctx.err(
                path.key("listen"),
                format!("{listen} is already used by another listener"),
            );
        }
    }
}
