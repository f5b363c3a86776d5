//! `[events]`, `[[events.sinks]]` and `[decision_log]` checked: sink names unique and fit
//! for a directory name, each sink's keys those of its type, a syslog address `host:port`
//! (TLS always, verified against `ca_file` and the system roots), bounds above their floors,
//! the allow sample a share.

use std::collections::HashSet;
use std::time::Duration;

use super::super::{
    DecisionLogConfig, EventFormat, EventsConfig, KeyPath, SinkConfig, SinkTransport,
};
use super::{Ctx, host_port, raw};

const DEFAULT_VENDOR: &str = "warden";
const DEFAULT_HANDOFF: usize = 4096;
/// 64 MiB of queued events: about 100,000 CEF events.
const DEFAULT_QUEUE_BYTES: u64 = 64 << 20;
/// Below this a queue holds too few events to ride out even a short outage.
const MIN_QUEUE_BYTES: u64 = 4096;
const DEFAULT_FILE_BYTES: u64 = 64 << 20;
const DEFAULT_KEEP_FILES: usize = 5;
const DEFAULT_LOG_BYTES: u64 = 1 << 30;
const MIN_LOG_BYTES: u64 = 1 << 20;
const DEFAULT_LOG_AGE: Duration = Duration::from_secs(30 * 86_400);

const SYSLOG_KEYS: &[&str] = &["address", "server_name", "ca_file"];
const FILE_KEYS: &[&str] = &["path", "max_file_bytes", "keep_files"];

pub(super) fn events(ctx: &mut Ctx<'_>, e: raw::Events) -> EventsConfig {
    let path = KeyPath::root().key("events");
    let vendor = e.vendor.unwrap_or_else(|| DEFAULT_VENDOR.to_owned());
    if vendor.trim().is_empty() || vendor.chars().any(char::is_control) {
        ctx.err(
            path.key("vendor"),
            "must be a name without control characters",
        );
    }
    let handoff = e.handoff.unwrap_or(DEFAULT_HANDOFF);
    if handoff == 0 {
        ctx.err(path.key("handoff"), "must be at least 1");
    }
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

fn sink(ctx: &mut Ctx<'_>, path: &KeyPath, s: raw::Sink) -> Option<SinkConfig> {
    let name_ok = !s.name.is_empty()
        && s.name.len() <= 64
        && s.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.name.starts_with('.');
    if !name_ok {
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
    let given = |key: &str| match key {
        "address" => s.address.is_some(),
        "server_name" => s.server_name.is_some(),
        "ca_file" => s.ca_file.is_some(),
        "path" => s.path.is_some(),
        "max_file_bytes" => s.max_file_bytes.is_some(),
        "keep_files" => s.keep_files.is_some(),
        _ => false,
    };
    let (other, other_kind): (&[&str], &str) = match s.kind.as_str() {
        "syslog" => (FILE_KEYS, "file"),
        "file" => (SYSLOG_KEYS, "syslog"),
        kind => {
            ctx.err(
                path.key("type"),
                format!("unknown sink type {kind:?}; expected syslog (RFC 5424 over TLS) or file"),
            );
            return None;
        }
    };
    for key in other.iter().filter(|k| given(k)) {
        ctx.err(
            path.key(key),
            format!("is only valid for type = {other_kind:?}"),
        );
    }
    let transport = if s.kind == "syslog" {
        syslog(ctx, path, &s)?
    } else {
        file(ctx, path, &s)?
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

fn syslog(ctx: &mut Ctx<'_>, path: &KeyPath, s: &raw::Sink) -> Option<SinkTransport> {
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

fn file(ctx: &mut Ctx<'_>, path: &KeyPath, s: &raw::Sink) -> Option<SinkTransport> {
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
    let keep_files = s.keep_files.unwrap_or(DEFAULT_KEEP_FILES);
    if keep_files == 0 {
        ctx.err(path.key("keep_files"), "must be at least 1");
    }
    Some(SinkTransport::File {
        path: ctx.path_buf(file),
        max_file_bytes,
        keep_files,
    })
}

pub(super) fn decision_log(ctx: &mut Ctx<'_>, d: raw::DecisionLog) -> DecisionLogConfig {
    let path = KeyPath::root().key("decision_log");
    let max_bytes = d.max_bytes.unwrap_or(DEFAULT_LOG_BYTES);
    if max_bytes < MIN_LOG_BYTES {
        ctx.err(
            path.key("max_bytes"),
            format!("must be at least {MIN_LOG_BYTES} bytes"),
        );
    }
    let allow_sample = d.allow_sample.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&allow_sample) {
        ctx.err(
            path.key("allow_sample"),
            "must be a share from 0 (no allows) to 1 (every allow)",
        );
    }
    DecisionLogConfig {
        enabled: d.enabled.unwrap_or(true),
        dir: d.dir.as_deref().map(|p| ctx.path_buf(p)),
        max_bytes,
        max_age: ctx.duration(path.key("max_age"), d.max_age.as_deref(), DEFAULT_LOG_AGE),
        allow_sample: allow_sample.clamp(0.0, 1.0),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::super::super::Config;
    use super::*;

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse(text, "t", Path::new("/etc/warden"))
            .map_err(|e| e.errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn sinks_validate_with_their_defaults() {
        let c = parse(
            "[[events.sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"siem.example:6514\"\n\
             [[events.sinks]]\nname = \"file\"\ntype = \"file\"\npath = \"events.jsonl\"\n",
        )
        .unwrap();
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
        assert!(c.decision_log.enabled);
        assert_eq!(c.decision_log.allow_sample, 0.0);
        assert_eq!(
            c.decision_log_dir(),
            Path::new("/etc/warden/warden.db.decisions")
        );
    }

    #[test]
    fn every_problem_names_its_key() {
        let errors = parse(
            "[[events.sinks]]\nname = \"../x\"\ntype = \"syslog\"\npath = \"a\"\nformat = \"leef\"\n\
             [[events.sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"p\"\nqueue_max_bytes = 10\n\
             [[events.sinks]]\nname = \"f\"\ntype = \"udp\"\n\
             [decision_log]\nallow_sample = 2.0\n",
        )
        .unwrap_err();
        for key in [
            "events.sinks[0].address",
            "events.sinks[0].name",
            "events.sinks[0].path",
            "events.sinks[0].format",
            "events.sinks[1].queue_max_bytes",
            "events.sinks[2].name",
            "events.sinks[2].type",
            "decision_log.allow_sample",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(key)),
                "{key} not in {errors:#?}"
            );
        }
    }

    #[test]
    fn sinks_change_only_with_a_restart() {
        let a = parse("[events]\nvendor = \"A\"\n").unwrap();
        let b = parse("[events]\nvendor = \"B\"\n").unwrap();
        let problems = a.needs_restart(&b);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path.to_string(), "events.sinks");
    }
}
