//! The settings of every connection warden makes, checked once for every section that has
//! them: where a secret is read from ([`SecretRef`]), an HTTPS server warden calls
//! ([`HttpsEndpoint`]), and TLS to an upstream database server ([`UpstreamTlsRef`]).

use std::path::PathBuf;

use super::KeyPath;
use super::check::Ctx;
use crate::base::secret::SecretSource;

/// `<name>` / `<name>_file` / `<name>_env` of a section: where a secret is read from. The inline
/// form is only ever refused, with a message that says where the secret goes instead.
pub(super) struct SecretRef<'a> {
    /// The key's stem (`password`, `bind_password`, `client_secret`).
    pub(super) name: &'a str,
    /// Whether `<name>` itself was written.
    pub(super) inline: bool,
    pub(super) file: Option<String>,
    pub(super) env: Option<String>,
}

impl SecretRef<'_> {
    /// The secret's source; errors at `path.<name>…`, or at `path` when none is given.
    pub(super) fn check(self, ctx: &mut Ctx<'_>, path: &KeyPath) -> Option<SecretSource> {
        let name = self.name;
        if self.inline {
            ctx.err(
                path.key(name),
                format!(
                    "inline secrets are not allowed; put the secret in a file ({name}_file = \"/path\", \
                     readable only by warden) or an environment variable ({name}_env = \"VAR\")"
                ),
            );
            return None;
        }
        match (self.file, self.env) {
            (Some(f), None) => Some(SecretSource::File(ctx.path_buf(&f))),
            (None, Some(e)) if !e.is_empty() => Some(SecretSource::Env(e)),
            (None, Some(_)) => {
                ctx.err(
                    path.key(&format!("{name}_env")),
                    "must name an environment variable",
                );
                None
            }
            (Some(_), Some(_)) => {
                ctx.err(
                    path.key(&format!("{name}_file")),
                    format!("set only one of {name}_file and {name}_env"),
                );
                None
            }
            (None, None) => {
                ctx.err(
                    path.clone(),
                    format!("missing {name}_file or {name}_env (where to read the {name} from)"),
                );
                None
            }
        }
    }
}

/// An HTTP server warden calls (the MX, the single sign-on provider, a webhook's receiver):
/// `https://`, or plain `http://` only with `allow_insecure`.
pub(super) struct HttpsEndpoint<'a> {
    pub(super) url: &'a str,
    pub(super) allow_insecure: bool,
}

/// Why an [`HttpsEndpoint`]'s URL is refused. The section words the error: what plain http
/// would carry in clear differs from one to the next.
pub(super) enum UrlRefused {
    /// `http://` without `allow_insecure`.
    PlainHttp,
    /// Neither `https://` nor `http://`.
    NotHttp,
}

impl<'a> HttpsEndpoint<'a> {
    /// The URL after its scheme, and whether it is TLS; `None` when refused, with the section's
    /// words for why at `path`.
    pub(super) fn check(
        &self,
        ctx: &mut Ctx<'_>,
        path: KeyPath,
        words: impl FnOnce(UrlRefused) -> String,
    ) -> Option<(bool, &'a str)> {
        let refused = if let Some(rest) = self.url.strip_prefix("https://") {
            return Some((true, rest));
        } else if let Some(rest) = self.url.strip_prefix("http://") {
            if self.allow_insecure {
                return Some((false, rest));
            }
            UrlRefused::PlainHttp
        } else {
            UrlRefused::NotHttp
        };
        ctx.err(path, words(refused));
        None
    }
}

/// How warden (a gate, the store, the agentless mode) reaches a database server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTls {
    /// TLS, the server's certificate verified against this CA file (PEM).
    Verify(PathBuf),
    /// Plain TCP (`upstream_plain = true`, loopback upstreams only).
    Plain,
}

/// The keys of an upstream's TLS in one section, and the words its errors use.
pub(super) struct UpstreamTlsKeys {
    /// The CA file's key (`ca_file`, a gate's `upstream_ca_file`).
    pub(super) ca_file: &'static str,
    /// The opt-out's key (`plain`, a gate's `upstream_plain`).
    pub(super) plain: &'static str,
    /// What the peer is called in the loopback rule (`server`, `upstream`).
    pub(super) peer: &'static str,
    /// What a missing CA file is told (`is required`, `is required with url`).
    pub(super) required: &'static str,
}

/// A CA file, or plain TCP by explicit opt-in to a loopback host only.
pub(super) struct UpstreamTlsRef<'a> {
    pub(super) keys: &'a UpstreamTlsKeys,
    pub(super) ca_file: Option<String>,
    pub(super) plain: bool,
    /// The server's host where it is known (the loopback rule is checked on it).
    pub(super) host: Option<&'a str>,
}

impl UpstreamTlsRef<'_> {
    pub(super) fn check(self, ctx: &mut Ctx<'_>, path: &KeyPath) -> Option<UpstreamTls> {
        let keys = self.keys;
        match (self.ca_file, self.plain) {
            (Some(ca), false) => Some(UpstreamTls::Verify(ctx.path_buf(&ca))),
            (None, true) => {
                if let Some(host) = self.host
                    && !is_loopback_host(host)
                {
                    ctx.err(
                        path.key(keys.plain),
                        format!(
                            "is only allowed for a loopback {}, not {host:?}: set {} to verify \
                             the server's TLS",
                            keys.peer, keys.ca_file
                        ),
                    );
                }
                Some(UpstreamTls::Plain)
            }
            (Some(_), true) => {
                ctx.err(
                    path.key(keys.plain),
                    format!("cannot be true with {}", keys.ca_file),
                );
                None
            }
            (None, false) => {
                ctx.err(
                    path.key(keys.ca_file),
                    format!(
                        "{} (the CA that signed the server's certificate), or {} = true for a \
                         loopback server without TLS",
                        keys.required, keys.plain
                    ),
                );
                None
            }
        }
    }
}

/// Whether `host` names this machine: plain TCP to an upstream is only allowed there.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Splits `host:port` (`[v6]:port` too) into its parts.
pub(super) fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    Some((host.to_string(), port))
}
