//! `[events]` and `[[events.sinks]]`: SIEM events (`src/events`) and the sinks they go to —
//! sink names unique and fit for a directory name, each sink's keys those of its type, a syslog
//! address `host:port` (TLS always, verified against `ca_file` and the system roots), bounds
//! above their floors.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;

use super::KeyPath;
use super::check::Ctx;
use super::outbound::host_port;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    vendor: Option<String>,
    handoff: Option<usize>,
    #[serde(default)]
    sinks: Vec<RawSink>,
}

/// `[[events.sinks]]`: one flat shape for both types, so a key of the other type gets a
/// precise error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    format: Option<String>,
    address: Option<String>,
    server_name: Option<String>,
    ca_file: Option<String>,
    path: Option<String>,
    max_file_bytes: Option<u64>,
    keep_files: Option<usize>,
    queue_dir: Option<String>,
    queue_max_bytes: Option<u64>,
    decisions: Option<bool>,
    audit: Option<bool>,
}

/// `[events]`: SIEM events (`src/events`) and the sinks they are sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// CEF Device Vendor and OCSF `metadata.product.vendor_name`.
    pub vendor: String,
    /// Events waiting in memory for each sink's writer; beyond, an event is dropped and
    /// counted (the decision and gate paths never wait).
    pub handoff: usize,
    pub sinks: Vec<SinkConfig>,
}

/// `[[events.sinks]]`: where events go, in which format, through which bounded queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Unique; names the queue directory and the metrics.
    pub name: String,
    pub format: EventFormat,
    pub transport: SinkTransport,
    /// The queue's directory; `None`: beside the store ([`super::Config::event_queue_dir`]).
    pub queue_dir: Option<PathBuf>,
    /// Most bytes the queue holds on disk; events past it are dropped and counted.
    pub queue_max_bytes: u64,
    /// Whether recorded decisions (every block, the allows `[decision_log] allow_sample`
    /// picks) are sent too.
    pub decisions: bool,
    /// Whether audit records are sent (on a shared store, by the leader only).
    pub audit: bool,
}

/// How a sink writes an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// ArcSight CEF.
    Cef,
    /// OCSF JSON.
    Ocsf,
}

/// Where a sink delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTransport {
    /// RFC 5424 over TLS (RFC 5425), octet-counting framing, the receiver's certificate
    /// verified for `server_name` against `ca_file` and the system roots.
    Syslog {
        /// `host:port`.
        address: String,
        server_name: String,
        ca_file: Option<PathBuf>,
    },
    /// One event a line, the file rotated past `max_file_bytes`, `keep_files` kept.
    File {
        path: PathBuf,
        max_file_bytes: u64,
        keep_files: usize,
    },
}

const DEFAULT_VENDOR: &str = "warden";
const DEFAULT_HANDOFF: usize = 4096;
/// 64 MiB of queued events: about 100,000 CEF events.
const DEFAULT_QUEUE_BYTES: u64 = 64 << 20;
/// Below this a queue holds too few events to ride out even a short outage.
const MIN_QUEUE_BYTES: u64 = 4096;
const DEFAULT_FILE_BYTES: u64 = 64 << 20;
const DEFAULT_KEEP_FILES: usize = 5;

const SYSLOG_KEYS: &[&str] = &["address", "server_name", "ca_file"];
const FILE_KEYS: &[&str] = &["path", "max_file_bytes", "keep_files"];

/// `[events]` with its sinks.
pub(super) fn check(ctx: &mut Ctx<'_>, e: Raw) -> EventsConfig {
    let path = KeyPath::root().key("events");
    let vendor = e.vendor.unwrap_or_else(|| DEFAULT_VENDOR.to_owned());
    if vendor.trim().is_empty() {
        ctx.err(
            path.key("vendor"),
            "must not be empty: it is the device vendor of every CEF and OCSF event",
        );
    } else if vendor.chars().any(char::is_control) {
        ctx.err(path.key("vendor"), "must not contain control characters");
    }
    let handoff = ctx.at_least_one(path.key("handoff"), e.handoff, DEFAULT_HANDOFF);
    let mut names = HashSet::new();
    let sinks = e
        .sinks
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let p = path.key("sinks").index(i);
            if !names.insert(s.name.clone()) {
                ctx.err(
                    p.key("name"),
                    format!("{:?} is used by another sink", s.name),
                );
            }
            sink(ctx, &p, s)
        })
        .collect();
    EventsConfig {
        vendor,
        handoff,
        sinks,
    }
}

/// Whether `name` can name a queue directory beside the store, and nothing else.
fn directory_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

fn sink(ctx: &mut Ctx<'_>, path: &KeyPath, s: RawSink) -> Option<SinkConfig> {
    if !directory_name(&s.name) {
        ctx.err(
            path.key("name"),
            format!(
                "{:?}: a sink name names its queue directory: 1 to 64 letters, digits, '-', '_' \
                 or '.', not starting with '.'",
                s.name
            ),
        );
    }
    let format = match s.format.as_deref() {
        None if s.kind == "file" => EventFormat::Ocsf,
        None | Some("cef") => EventFormat::Cef,
        Some("ocsf") => EventFormat::Ocsf,
        Some(other) => {
            ctx.err(
                path.key("format"),
                format!("unknown format {other:?}; expected cef or ocsf"),
            );
            EventFormat::Cef
        }
    };
    let present = [
        ("address", s.address.is_some()),
        ("server_name", s.server_name.is_some()),
        ("ca_file", s.ca_file.is_some()),
        ("path", s.path.is_some()),
        ("max_file_bytes", s.max_file_bytes.is_some()),
        ("keep_files", s.keep_files.is_some()),
    ];
    let transport = match s.kind.as_str() {
        "syslog" => {
            ctx.unused_keys(path, "syslog", &present, SYSLOG_KEYS);
            syslog(ctx, path, &s)?
        }
        "file" => {
            ctx.unused_keys(path, "file", &present, FILE_KEYS);
            file(ctx, path, &s)?
        }
        kind => {
            ctx.err(
                path.key("type"),
                format!("unknown sink type {kind:?}; expected syslog (RFC 5424 over TLS) or file"),
            );
            return None;
        }
    };
    let queue_max_bytes = s.queue_max_bytes.unwrap_or(DEFAULT_QUEUE_BYTES);
    if queue_max_bytes < MIN_QUEUE_BYTES {
        ctx.err(
            path.key("queue_max_bytes"),
            format!("must be at least {MIN_QUEUE_BYTES} bytes"),
        );
    }
    Some(SinkConfig {
        name: s.name,
        format,
        transport,
        queue_dir: s.queue_dir.as_deref().map(|d| ctx.path_buf(d)),
        queue_max_bytes,
        decisions: s.decisions.unwrap_or(true),
        audit: s.audit.unwrap_or(true),
    })
}

fn syslog(ctx: &mut Ctx<'_>, path: &KeyPath, s: &RawSink) -> Option<SinkTransport> {
    let Some(address) = s.address.as_deref() else {
        ctx.err(
            path.key("address"),
            "is required for a syslog sink: the receiver's host:port (TLS, e.g. \"siem.example:6514\")",
        );
        return None;
    };
    let Some((host, _)) = host_port(address) else {
        ctx.err(
            path.key("address"),
            format!("{address:?} is not host:port (e.g. \"siem.example:6514\")"),
        );
        return None;
    };
    let server_name = s.server_name.clone().unwrap_or(host);
    if rustls::pki_types::ServerName::try_from(server_name.clone()).is_err() {
        ctx.err(
            path.key("server_name"),
            format!("{server_name:?} is not a DNS name or IP address the certificate can name"),
        );
    }
    Some(SinkTransport::Syslog {
        address: address.to_owned(),
        server_name,
        ca_file: s.ca_file.as_deref().map(|f| ctx.path_buf(f)),
    })
}

fn file(ctx: &mut Ctx<'_>, path: &KeyPath, s: &RawSink) -> Option<SinkTransport> {
    let Some(file) = s.path.as_deref() else {
        ctx.err(path.key("path"), "is required for a file sink");
        return None;
    };
    let max_file_bytes = s.max_file_bytes.unwrap_or(DEFAULT_FILE_BYTES);
    if max_file_bytes < MIN_QUEUE_BYTES {
        ctx.err(
            path.key("max_file_bytes"),
            format!("must be at least {MIN_QUEUE_BYTES} bytes"),
        );
    }
    let keep_files = ctx.at_least_one(path.key("keep_files"), s.keep_files, DEFAULT_KEEP_FILES);
    Some(SinkTransport::File {
        path: ctx.path_buf(file),
        max_file_bytes,
        keep_files,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::super::Config;
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, "t", Path::new("/etc/warden")).unwrap()
    }

    #[test]
    fn sinks_validate_with_their_defaults() {
        let c = parse(
            "[[events.sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"siem.example:6514\"\n\
             [[events.sinks]]\nname = \"file\"\ntype = \"file\"\npath = \"events.jsonl\"\n",
        );
        let [syslog, file] = &c.events.sinks[..] else {
            panic!("{:?}", c.events.sinks)
        };
        assert_eq!(syslog.format, EventFormat::Cef);
        assert_eq!(
            syslog.transport,
            SinkTransport::Syslog {
                address: "siem.example:6514".into(),
                server_name: "siem.example".into(),
                ca_file: None,
            }
        );
        assert_eq!(syslog.queue_max_bytes, DEFAULT_QUEUE_BYTES);
        assert!(syslog.decisions && syslog.audit);
        assert_eq!(file.format, EventFormat::Ocsf);
        assert!(
            matches!(&file.transport, SinkTransport::File { path, .. } if path == Path::new("/etc/warden/events.jsonl"))
        );
        assert_eq!(
            c.event_queue_dir(file),
            Path::new("/etc/warden/warden.db.events/file")
        );
    }

    #[test]
    fn sinks_change_only_with_a_restart() {
        let a = parse("[events]\nvendor = \"A\"\n");
        let b = parse("[events]\nvendor = \"B\"\n");
        let problems = a.needs_restart(&b);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path.to_string(), "events.sinks");
    }
}
