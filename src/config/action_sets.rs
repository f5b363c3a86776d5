//! `[[action_sets]]`: the followed actions a matching policy runs — a log line, a webhook, a
//! syslog message — and the window within which one (policy, principal) is reported once.

use std::time::Duration;

use serde::Deserialize;

use super::KeyPath;
use super::check::Ctx;
use super::outbound::{HttpsEndpoint, UrlRefused};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) name: String,
    actions: Vec<RawAction>,
    dedup_window: Option<String>,
}

/// One flat shape for every action type, so a key another type uses is told precisely.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    address: Option<String>,
    protocol: Option<String>,
    level: Option<String>,
    allow_insecure: Option<bool>,
}

impl RawAction {
    /// Reports the keys set that `type = kind` does not use.
    fn only_keys(&self, ctx: &mut Ctx<'_>, path: &KeyPath, allowed: &[&str]) {
        let present = [
            ("url", self.url.is_some()),
            ("timeout", self.timeout.is_some()),
            ("retries", self.retries.is_some()),
            ("address", self.address.is_some()),
            ("protocol", self.protocol.is_some()),
            ("level", self.level.is_some()),
            ("allow_insecure", self.allow_insecure.is_some()),
        ];
        ctx.unused_keys(path, &self.kind, &present, allowed);
    }
}

/// `[[action_sets]]`: named followed actions.
#[derive(Debug, Clone)]
pub struct ActionSetConfig {
    pub name: String,
    pub actions: Vec<ActionConfig>,
    /// A (policy, principal) pair is reported at most once within this window.
    pub dedup_window: Duration,
}

/// A followed action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionConfig {
    Log {
        level: tracing::Level,
    },
    Webhook {
        url: String,
        timeout: Duration,
        retries: u32,
        /// `http://` is refused unless this is set (the event would travel in clear).
        allow_insecure: bool,
    },
    Syslog {
        address: String,
        tcp: bool,
    },
}

const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(60);
const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_WEBHOOK_RETRIES: u32 = 3;

pub(super) fn check(ctx: &mut Ctx<'_>, path: KeyPath, a: Raw) -> ActionSetConfig {
    let actions = a
        .actions
        .into_iter()
        .enumerate()
        .filter_map(|(i, act)| action(ctx, path.key("actions").index(i), act))
        .collect();
    // `0s` turns de-duplication off, where every other duration must be longer than zero.
    let dedup_window = match a.dedup_window.as_deref() {
        Some("0s") => Duration::ZERO,
        text => ctx.duration(path.key("dedup_window"), text, DEFAULT_DEDUP_WINDOW),
    };
    ActionSetConfig {
        name: a.name,
        actions,
        dedup_window,
    }
}

fn action(ctx: &mut Ctx<'_>, path: KeyPath, act: RawAction) -> Option<ActionConfig> {
    match act.kind.as_str() {
        "log" => Some(log(ctx, &path, &act)),
        "webhook" => Some(webhook(ctx, &path, &act)),
        "syslog" => Some(syslog(ctx, &path, &act)),
        other => {
            ctx.err(
                path.key("type"),
                format!("unknown action type {other:?}; expected log, webhook or syslog"),
            );
            None
        }
    }
}

fn log(ctx: &mut Ctx<'_>, path: &KeyPath, act: &RawAction) -> ActionConfig {
    act.only_keys(ctx, path, &["level"]);
    let level = match act.level.as_deref().unwrap_or("warn") {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "info" => tracing::Level::INFO,
        other => {
            ctx.err(
                path.key("level"),
                format!("unknown level {other:?}; expected error, warn or info"),
            );
            tracing::Level::WARN
        }
    };
    ActionConfig::Log { level }
}

fn webhook(ctx: &mut Ctx<'_>, path: &KeyPath, act: &RawAction) -> ActionConfig {
    act.only_keys(ctx, path, &["url", "timeout", "retries", "allow_insecure"]);
    let url = ctx.required(path, "url", &act.url).to_string();
    let allow_insecure = act.allow_insecure.unwrap_or(false);
    if !url.is_empty() {
        let endpoint = HttpsEndpoint {
            url: &url,
            allow_insecure,
        };
        endpoint.check(ctx, path.key("url"), |refused| match refused {
            UrlRefused::NotHttp => format!("{url:?} must be an http:// or https:// URL"),
            UrlRefused::PlainHttp => format!(
                "{url:?} is plain http: the decision event would travel in clear; use https://, \
                 or opt in with allow_insecure = true (only for a receiver on loopback)"
            ),
        });
    }
    let timeout = ctx.duration(
        path.key("timeout"),
        act.timeout.as_deref(),
        DEFAULT_WEBHOOK_TIMEOUT,
    );
    ActionConfig::Webhook {
        url,
        timeout,
        retries: act.retries.unwrap_or(DEFAULT_WEBHOOK_RETRIES),
        allow_insecure,
    }
}

fn syslog(ctx: &mut Ctx<'_>, path: &KeyPath, act: &RawAction) -> ActionConfig {
    act.only_keys(ctx, path, &["address", "protocol"]);
    let address = ctx.required(path, "address", &act.address).to_string();
    let tcp = match act.protocol.as_deref().unwrap_or("udp") {
        "udp" => false,
        "tcp" => true,
        other => {
            ctx.err(
                path.key("protocol"),
                format!("unknown protocol {other:?}; expected udp or tcp"),
            );
            false
        }
    };
    ActionConfig::Syslog { address, tcp }
}
