//! Followed actions: what happens after a decision matched a policy that names an action set —
//! a log line, a webhook (HTTP POST of the decision event, with a timeout and retries), a
//! syslog message (RFC 5424 over UDP, or TCP with RFC 6587 octet counting).
//!
//! They never slow a decision: the decision path offers events to a bounded queue
//! ([`crate::decide::Dispatcher`]). This service drains it and hands each event, without
//! waiting, to one bounded queue per action of its action set, each drained by its own worker
//! task: a slow or dead webhook fills only its own queue (further events for it are dropped
//! and counted) while syslog and log actions keep going. Workers are made for the actions of
//! the configuration in force; an action whose configuration changed gets a new worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::{Ready, Service, Shutdown};
use crate::base::escape::{escape_control, push_control};
use crate::config::ActionConfig;
use crate::decide::DecisionEvent;
use crate::metrics::{Collect, CounterMap, Desc, Exposition};
use crate::outbound::Endpoint;
use crate::runtime::Warden;

/// First retry delay of a failed webhook; doubles per retry.
pub const WEBHOOK_RETRY_INITIAL: Duration = Duration::from_millis(200);

pub fn service(warden: Arc<Warden>) -> Service {
    Service::new("followed actions", move |shutdown, ready| {
        run(warden, shutdown, ready)
    })
}

/// One action's queue, and the configuration its worker runs.
struct Worker {
    action: ActionConfig,
    queue: mpsc::Sender<Arc<DecisionEvent>>,
}

/// Hands queued events to the workers of their action set's actions until shut down.
async fn run(warden: Arc<Warden>, mut shutdown: Shutdown, ready: Ready) {
    let Some(mut events) = warden.actions().take_receiver() else {
        return;
    };
    ready.set();
    // Keyed by (action set, position of the action in it).
    let mut workers: HashMap<(String, usize), Worker> = HashMap::new();
    loop {
        let event = tokio::select! {
            () = shutdown.requested() => return,
            event = events.recv() => match event {
                Some(e) => Arc::new(e),
                None => return,
            },
        };
        let config = warden.config().clone();
        let Some(set) = config
            .action_sets
            .iter()
            .find(|a| a.name == event.action_set)
        else {
            continue;
        };
        for (i, action) in set.actions.iter().enumerate() {
            let key = (set.name.clone(), i);
            let current = workers.get(&key).is_some_and(|w| w.action == *action);
            if !current {
                // A changed action gets a new worker; the old one ends once its queue is empty.
                let (queue, rx) = mpsc::channel(config.server.followed_action_queue.max(1));
                tokio::spawn(work(
                    Arc::clone(&warden),
                    action.clone(),
                    rx,
                    shutdown.clone(),
                ));
                workers.insert(
                    key.clone(),
                    Worker {
                        action: action.clone(),
                        queue,
                    },
                );
            }
            if let Some(w) = workers.get(&key)
                && w.queue.try_send(Arc::clone(&event)).is_err()
            {
                warden.decision_metrics().followed_action_dropped();
            }
        }
    }
}

/// Runs one action for every event in its queue until shut down (never waiting on a slow
/// receiver to stop) or until its queue is closed and empty.
async fn work(
    warden: Arc<Warden>,
    action: ActionConfig,
    mut events: mpsc::Receiver<Arc<DecisionEvent>>,
    mut shutdown: Shutdown,
) {
    let mut tcp = TcpSyslog::default();
    loop {
        let event = tokio::select! {
            () = shutdown.requested() => return,
            event = events.recv() => match event {
                Some(e) => e,
                None => return,
            },
        };
        tokio::select! {
            () = shutdown.requested() => return,
            () = run_action(&warden, &action, &event, &mut tcp) => {}
        }
    }
}

async fn run_action(
    warden: &Warden,
    action: &ActionConfig,
    event: &DecisionEvent,
    tcp: &mut TcpSyslog,
) {
    let (kind, result) = match action {
        ActionConfig::Log { level } => {
            log_event(*level, event);
            ("log", Ok(()))
        }
        ActionConfig::Webhook {
            url,
            timeout,
            retries,
            allow_insecure,
        } => (
            "webhook",
            webhook(url, *allow_insecure, *timeout, *retries, event).await,
        ),
        ActionConfig::Syslog {
            address,
            tcp: false,
        } => ("syslog", syslog_udp(address, event).await),
        ActionConfig::Syslog { address, tcp: true } => ("syslog", tcp.send(address, event).await),
    };
    match result {
        Ok(()) => warden
            .metrics()
            .get::<FollowedActionMetrics>()
            .ran(kind, "sent"),
        Err(e) => {
            warden
                .metrics()
                .get::<FollowedActionMetrics>()
                .ran(kind, "failed");
            tracing::warn!(action = kind, policy = %escape_control(&event.policy), error = %e, "followed action failed");
        }
    }
}

fn log_event(level: tracing::Level, e: &DecisionEvent) {
    // Display fields are written as they are; a caller's principal or service must not end
    // the line and forge another.
    let (policy, principal, service) = (
        escape_control(&e.policy),
        escape_control(&e.principal),
        escape_control(&e.service),
    );
    match level {
        tracing::Level::ERROR => {
            tracing::error!(%policy, %principal, %service, decision = e.decision, "followed action")
        }
        tracing::Level::WARN => {
            tracing::warn!(%policy, %principal, %service, decision = e.decision, "followed action")
        }
        _ => {
            tracing::info!(%policy, %principal, %service, decision = e.decision, "followed action")
        }
    }
}

async fn webhook(
    url: &str,
    allow_insecure: bool,
    timeout: Duration,
    retries: u32,
    event: &DecisionEvent,
) -> Result<(), String> {
    let endpoint = Endpoint::new(url, None, allow_insecure, timeout).map_err(|e| e.to_string())?;
    let body = Bytes::from(serde_json::to_vec(event).map_err(|e| e.to_string())?);
    let mut delay = WEBHOOK_RETRY_INITIAL;
    let mut last = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        match endpoint
            .send(&Method::POST, "", &[], Some(body.clone()))
            .await
        {
            Ok((status, _)) if status.is_success() => return Ok(()),
            Ok((status, _)) => last = format!("{url} answered {status}"),
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(format!("{last} (after {} attempts)", retries + 1))
}

/// Escapes an RFC 5424 SD-PARAM value: `"`, `\` and `]` get a backslash (RFC 5424 §6.3.3);
/// control characters become their visible form (`\n`, `\u{1b}`), so no value can end the
/// message or the frame.
pub fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            push_control(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// An RFC 5424 message: facility security/authorization (10), severity from the policy.
pub fn syslog_message(e: &DecisionEvent) -> String {
    let severity = match e.severity {
        "high" => 2,
        "medium" => 4,
        "low" => 5,
        _ => 6,
    };
    let pri = 10 * 8 + severity;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "-".into());
    let host = if host.is_empty() { "-".into() } else { host };
    format!(
        "<{pri}>1 {time} {host} warden {pid} decision [warden@32473 policy=\"{policy}\" \
         principal=\"{principal}\" service=\"{service}\" decision=\"{decision}\" \
         action=\"{action}\"] {decision} for {principal_msg} on {service_msg} by policy {policy_msg}",
        time = e.time,
        pid = std::process::id(),
        policy = sd_escape(&e.policy),
        principal = sd_escape(&e.principal),
        service = sd_escape(&e.service),
        decision = e.decision,
        action = e.action,
        principal_msg = escape_control(&e.principal),
        service_msg = escape_control(&e.service),
        policy_msg = escape_control(&e.policy),
    )
}

async fn syslog_udp(address: &str, event: &DecisionEvent) -> Result<(), String> {
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| e.to_string())?;
    socket
        .send_to(syslog_message(event).as_bytes(), address)
        .await
        .map_err(|e| format!("{address}: {e}"))?;
    Ok(())
}

/// One TCP syslog connection per address, reconnected after a failure.
#[derive(Default)]
struct TcpSyslog {
    open: Option<(String, tokio::net::TcpStream)>,
}

impl TcpSyslog {
    async fn send(&mut self, address: &str, event: &DecisionEvent) -> Result<(), String> {
        let message = syslog_message(event);
        // RFC 6587 octet counting: "<length> <message>".
        let frame = format!("{} {message}", message.len());
        for attempt in 0..2 {
            if self.open.as_ref().is_none_or(|(a, _)| a != address) {
                let stream = tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(|e| format!("{address}: {e}"))?;
                self.open = Some((address.to_owned(), stream));
            }
            if let Some((_, stream)) = &mut self.open {
                match stream.write_all(frame.as_bytes()).await {
                    Ok(()) => return Ok(()),
                    Err(e) if attempt == 1 => return Err(format!("{address}: {e}")),
                    Err(_) => self.open = None,
                }
            }
        }
        Err(format!("{address}: cannot send"))
    }
}

static RUN: Desc = Desc::counter(
    "warden_followed_actions_total",
    "Followed actions run, by type and outcome.",
);

/// The followed actions run, by type and outcome (`sent`, `failed`).
pub struct FollowedActionMetrics {
    run: CounterMap<(&'static str, &'static str)>,
}

impl Default for FollowedActionMetrics {
    fn default() -> FollowedActionMetrics {
        FollowedActionMetrics {
            run: CounterMap::new(&RUN, &["type", "outcome"]),
        }
    }
}

impl Collect for FollowedActionMetrics {
    fn collect(&self, out: &mut Exposition<'_>) {
        self.run.collect(out);
    }
}

impl FollowedActionMetrics {
    fn ran(&self, kind: &'static str, outcome: &'static str) {
        self.run.inc((kind, outcome));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event() -> DecisionEvent {
        DecisionEvent {
            time: "2026-11-23T03:00:00Z".into(),
            policy: r#"Block "bad" [users]\x"#.into(),
            action: "block",
            severity: "high",
            action_set: "notify".into(),
            decision: "block",
            service: "orders".into(),
            principal: r"corp\alice".into(),
            os_user: None,
            source_app: None,
            client_ip: None,
            snapshot_version: 3,
        }
    }

    #[test]
    fn sd_param_values_escape_quote_backslash_and_bracket() {
        assert_eq!(sd_escape(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(sd_escape("plain"), "plain");
    }

    #[test]
    fn control_characters_cannot_forge_a_syslog_line() {
        let mut e = event();
        e.principal = "eve\n<86>1 2026-11-23T03:00:00Z host warden - forged".into();
        e.service = "orders\r\u{0}".into();
        let m = syslog_message(&e);
        assert!(!m.chars().any(char::is_control), "{m:?}");
        assert!(m.contains(r#"principal="eve\n<86>1"#), "{m}");
        assert!(m.contains(r#"service="orders\r\u{0}""#), "{m}");
        assert!(m.contains(r"for eve\n<86>1"), "{m}");
        assert_eq!(sd_escape("a\tb\"]"), r#"a\tb\"\]"#);
    }

    #[test]
    fn syslog_messages_are_rfc5424() {
        let m = syslog_message(&event());
        assert!(m.starts_with("<82>1 2026-11-23T03:00:00Z "), "{m}");
        assert!(m.contains(r#"policy="Block \"bad\" [users\]\\x""#), "{m}");
        assert!(m.contains(r#"principal="corp\\alice""#), "{m}");
        assert!(m.contains(" warden "), "{m}");
    }
}
