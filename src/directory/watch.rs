//! Change notification on directory objects (Active Directory's
//! `LDAP_SERVER_NOTIFICATION_OID`): a persistent base-scope search per
//! watched DN on a dedicated connection, re-registered with backoff after a
//! disconnect, with a periodic `uSNChanged` check as a safety net.

use std::sync::Arc;
use std::time::Duration;

use ldap3::controls::RawControl;
use ldap3::{LdapError, LdapResult, SearchStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep};

use super::client::DirectoryClient;
use super::entry::{Scope, parse_entry};
use super::error::{DirectoryError, result_code_name};
use super::settings::DirectorySettings;
use crate::base::dn::parse_dn;

/// `LDAP_SERVER_NOTIFICATION_OID`: critical, no value; base or one-level
/// scope, filter `(objectClass=*)`.
pub const NOTIFICATION_OID: &str = "1.2.840.113556.1.4.528";
/// AD allows at most five notification searches per connection; more DNs
/// are spread over more connections.
pub const MAX_NOTIFICATIONS_PER_CONNECTION: usize = 5;
/// Default [`WatchOptions::heartbeat`].
pub const DEFAULT_WATCH_HEARTBEAT: Duration = Duration::from_secs(60);
/// Default [`WatchOptions::backoff_initial`].
pub const DEFAULT_WATCH_BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// Default [`WatchOptions::backoff_max`].
pub const DEFAULT_WATCH_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long after registering we wait for the server to reject the control
/// before reporting the watch as registered.
const REGISTRATION_SETTLE: Duration = Duration::from_millis(300);
/// Capacity of the event channel.
const EVENT_BUFFER: usize = 256;
/// unavailableCriticalExtension: the server does not do change notification.
const RC_UNAVAILABLE_CRITICAL_EXTENSION: u32 = 12;

/// Tuning for [`watch_with`].
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// How often the connection is checked with a `uSNChanged` read of each
    /// watched DN (bounded by `op_timeout`); a failure reconnects, a changed
    /// value that no notification reported yields [`WatchEvent::Changed`].
    pub heartbeat: Duration,
    /// First reconnect delay; doubles per failed attempt.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            heartbeat: DEFAULT_WATCH_HEARTBEAT,
            backoff_initial: DEFAULT_WATCH_BACKOFF_INITIAL,
            backoff_max: DEFAULT_WATCH_BACKOFF_MAX,
        }
    }
}

/// What a watch reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The notification searches are registered for the first time; refresh
    /// now, then on each `Changed`.
    Registered {
        /// The DNs on that connection, as given to `watch`.
        dns: Vec<String>,
    },
    /// A watched object changed.
    Changed {
        /// The DN as given to `watch`.
        dn: String,
        /// Its `uSNChanged` after the change, if the server sent it.
        usn_changed: Option<u64>,
    },
    /// The connection was lost; reconnect attempts follow with backoff.
    Disconnected {
        /// The DNs on that connection.
        dns: Vec<String>,
        /// Why (no password in it).
        reason: String,
    },
    /// Re-registered after a loss. Changes may have been missed: refresh.
    Reconnected {
        /// The DNs on that connection.
        dns: Vec<String>,
    },
    /// The server refused change notification (unavailableCriticalExtension)
    /// or a DN is invalid; this connection's watch has ended. Fall back to
    /// polling `uSNChanged`.
    Unsupported {
        /// The DNs on that connection.
        dns: Vec<String>,
        /// What the server said.
        reason: String,
    },
}

/// A running watch. Receive events with [`Watch::recv`]; dropping it stops
/// the background tasks and closes their connections.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<WatchEvent>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watch {
    /// The next event; `None` once every connection's watch has ended.
    pub async fn recv(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }

    /// Stops the watch.
    pub fn stop(self) {}
}

impl Drop for Watch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Watches one DN with default options. See [`watch_with`].
pub fn watch(settings: Arc<DirectorySettings>, dn: &str) -> Result<Watch, DirectoryError> {
    watch_with(settings, vec![dn.to_owned()], WatchOptions::default())
}

/// Watches `dns` for changes: one dedicated connection per
/// [`MAX_NOTIFICATIONS_PER_CONNECTION`] DNs, each DN a persistent base-scope
/// search with the critical [`NOTIFICATION_OID`] control (no value) and no
/// timeout. The server sends an entry each time the object changes.
///
/// On disconnect the watch reports [`WatchEvent::Disconnected`], reconnects
/// with exponential backoff (`backoff_initial` doubling up to `backoff_max`),
/// re-registers and reports [`WatchEvent::Reconnected`]. Must be called
/// inside a Tokio runtime.
pub fn watch_with(
    settings: Arc<DirectorySettings>,
    dns: Vec<String>,
    options: WatchOptions,
) -> Result<Watch, DirectoryError> {
    settings.validate()?;
    for dn in &dns {
        match parse_dn(dn) {
            Ok(d) if !d.is_root() => {}
            Ok(_) => {
                return Err(DirectoryError::InvalidDn {
                    dn: dn.clone(),
                    source: crate::base::dn::DnError::EmptyRdn { index: 0 },
                });
            }
            Err(source) => {
                return Err(DirectoryError::InvalidDn {
                    dn: dn.clone(),
                    source,
                });
            }
        }
    }
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    let tasks = dns
        .chunks(MAX_NOTIFICATIONS_PER_CONNECTION)
        .map(|chunk| {
            let worker = Worker {
                settings: settings.clone(),
                dns: chunk.to_vec(),
                options: options.clone(),
                tx: tx.clone(),
                last_usn: vec![None; chunk.len()],
            };
            tokio::spawn(worker.run())
        })
        .collect();
    Ok(Watch { rx, tasks })
}

struct Worker {
    settings: Arc<DirectorySettings>,
    dns: Vec<String>,
    options: WatchOptions,
    tx: mpsc::Sender<WatchEvent>,
    /// Last `uSNChanged` seen per DN, for the heartbeat's missed-change check.
    last_usn: Vec<Option<u64>>,
}

/// How one connection's session ended.
enum SessionEnd {
    /// The event receiver is gone: stop.
    ReceiverGone,
    /// Permanent refusal: report and stop.
    Unsupported(String),
    /// Connection problem; `registered` says whether the searches had been
    /// registered (then report a disconnect and reset the backoff).
    Lost { reason: String, registered: bool },
}

/// What a forwarding task reports from one notification search.
enum Item {
    Entry(usize, Option<u64>),
    Ended(usize, Result<LdapResult, LdapError>),
    Malformed(usize, String),
}

impl Worker {
    async fn run(mut self) {
        let mut backoff = self.options.backoff_initial;
        let mut ever_registered = false;
        loop {
            match self.session(ever_registered).await {
                SessionEnd::ReceiverGone => return,
                SessionEnd::Unsupported(reason) => {
                    tracing::warn!(dns = ?self.dns, %reason, "change notification unavailable");
                    let _ = self
                        .tx
                        .send(WatchEvent::Unsupported {
                            dns: self.dns.clone(),
                            reason,
                        })
                        .await;
                    return;
                }
                SessionEnd::Lost { reason, registered } => {
                    if registered {
                        ever_registered = true;
                        backoff = self.options.backoff_initial;
                        tracing::warn!(dns = ?self.dns, %reason, "change notification connection lost");
                        let event = WatchEvent::Disconnected {
                            dns: self.dns.clone(),
                            reason,
                        };
                        if self.tx.send(event).await.is_err() {
                            return;
                        }
                    } else {
                        tracing::warn!(dns = ?self.dns, %reason, retry_in = ?backoff, "change notification: cannot register");
                    }
                }
            }
            tokio::select! {
                _ = sleep(jitter(backoff)) => {}
                _ = self.tx.closed() => return,
            }
            backoff = (backoff * 2).min(self.options.backoff_max);
        }
    }

    async fn session(&mut self, reconnect: bool) -> SessionEnd {
        let lost = |reason: String| SessionEnd::Lost {
            reason,
            registered: false,
        };
        let client = match DirectoryClient::connect(self.settings.clone()).await {
            Ok(c) => c,
            Err(e) => return lost(e.to_string()),
        };
        let (itx, mut irx) = mpsc::channel::<Item>(EVENT_BUFFER);
        // Dropping the JoinSet (any return below) aborts the forwarders.
        let mut forwarders = JoinSet::new();
        for (i, dn) in self.dns.iter().enumerate() {
            let mut ldap = client.raw_handle();
            // No timeout: the search is meant to run forever.
            ldap.with_controls(RawControl {
                ctype: NOTIFICATION_OID.to_owned(),
                crit: true,
                val: None,
            });
            let attrs = vec!["uSNChanged".to_owned()];
            let stream = match ldap
                .streaming_search(dn, Scope::Base.into(), "(objectClass=*)", attrs)
                .await
            {
                Ok(s) => s,
                Err(e) => return lost(format!("registering {dn}: {e}")),
            };
            forwarders.spawn(forward(i, stream, itx.clone()));
        }
        drop(itx);

        // Confirm: the connection answers, each DN exists, and take the
        // baseline uSNChanged.
        for (i, dn) in self.dns.iter().enumerate() {
            match client.poll_usn_changed(dn).await {
                Ok(usn) => self.last_usn[i] = Some(usn),
                Err(e @ DirectoryError::NoSuchEntry { .. }) => {
                    return SessionEnd::Unsupported(e.to_string());
                }
                Err(e) if e.is_transient() => return lost(e.to_string()),
                // No uSNChanged (not AD): notification may still work.
                Err(e) => tracing::debug!(dn, error = %e, "no uSNChanged baseline"),
            }
        }
        // A server that rejects the control answers at once; give it a moment.
        let settle = Instant::now() + REGISTRATION_SETTLE;
        loop {
            match tokio::time::timeout_at(settle, irx.recv()).await {
                Err(_) => break,
                Ok(None) => return lost("notification searches ended".into()),
                Ok(Some(item)) => {
                    if let Some(end) = self.handle(item, false).await {
                        return end;
                    }
                }
            }
        }
        tracing::info!(dns = ?self.dns, reconnect, "change notification registered");
        let event = if reconnect {
            WatchEvent::Reconnected {
                dns: self.dns.clone(),
            }
        } else {
            WatchEvent::Registered {
                dns: self.dns.clone(),
            }
        };
        if self.tx.send(event).await.is_err() {
            return SessionEnd::ReceiverGone;
        }

        let start = Instant::now() + self.options.heartbeat;
        let mut heartbeat = interval_at(start, self.options.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = irx.recv() => match item {
                    None => return SessionEnd::Lost {
                        reason: "notification searches ended".into(),
                        registered: true,
                    },
                    Some(item) => {
                        if let Some(end) = self.handle(item, true).await {
                            return end;
                        }
                    }
                },
                _ = heartbeat.tick() => {
                    if let Some(end) = self.heartbeat(&client).await {
                        return end;
                    }
                }
                _ = self.tx.closed() => return SessionEnd::ReceiverGone,
            }
        }
    }

    /// Handles one forwarded item; `Some` ends the session.
    async fn handle(&mut self, item: Item, registered: bool) -> Option<SessionEnd> {
        match item {
            Item::Entry(i, usn) => {
                if let (Some(slot), Some(u)) = (self.last_usn.get_mut(i), usn) {
                    *slot = Some(u);
                }
                let dn = self.dns.get(i)?.clone();
                tracing::debug!(dn, ?usn, "change notification");
                let event = WatchEvent::Changed {
                    dn,
                    usn_changed: usn,
                };
                if self.tx.send(event).await.is_err() {
                    return Some(SessionEnd::ReceiverGone);
                }
                None
            }
            Item::Ended(i, Ok(res)) => {
                let dn = self.dns.get(i).cloned().unwrap_or_default();
                let reason = format!(
                    "notification search on {dn} ended: {} ({}) {}",
                    res.rc,
                    result_code_name(res.rc),
                    res.text
                );
                // 32/34: the DN is gone or invalid; 12: no notification support.
                if matches!(res.rc, RC_UNAVAILABLE_CRITICAL_EXTENSION | 32 | 34) {
                    Some(SessionEnd::Unsupported(reason))
                } else {
                    Some(SessionEnd::Lost { reason, registered })
                }
            }
            Item::Ended(i, Err(e)) => {
                let dn = self.dns.get(i).cloned().unwrap_or_default();
                Some(SessionEnd::Lost {
                    reason: format!("notification search on {dn}: {e}"),
                    registered,
                })
            }
            Item::Malformed(i, reason) => {
                let dn = self.dns.get(i).cloned().unwrap_or_default();
                Some(SessionEnd::Lost {
                    reason: format!("notification on {dn}: {reason}"),
                    registered,
                })
            }
        }
    }

    /// Checks the connection by reading each DN's `uSNChanged`; reports a
    /// change no notification announced.
    async fn heartbeat(&mut self, client: &DirectoryClient) -> Option<SessionEnd> {
        for (i, dn) in self.dns.iter().enumerate() {
            match client.poll_usn_changed(dn).await {
                Ok(usn) => {
                    let slot = self.last_usn.get_mut(i)?;
                    if slot.is_some_and(|old| old != usn) {
                        tracing::info!(dn, usn, "uSNChanged moved without a notification");
                        let event = WatchEvent::Changed {
                            dn: dn.clone(),
                            usn_changed: Some(usn),
                        };
                        if self.tx.send(event).await.is_err() {
                            return Some(SessionEnd::ReceiverGone);
                        }
                    }
                    *slot = Some(usn);
                }
                Err(e) if e.is_transient() => {
                    return Some(SessionEnd::Lost {
                        reason: format!("heartbeat: {e}"),
                        registered: true,
                    });
                }
                Err(e) => tracing::debug!(dn, error = %e, "heartbeat read failed"),
            }
        }
        None
    }
}

/// Forwards one notification search's entries until it ends.
async fn forward(
    i: usize,
    mut stream: SearchStream<'static, String, Vec<String>>,
    tx: mpsc::Sender<Item>,
) {
    loop {
        let item = match stream.next().await {
            Ok(Some(re)) if re.is_ref() || re.is_intermediate() => continue,
            Ok(Some(re)) => match parse_entry(re) {
                Ok(e) => Item::Entry(i, e.first("uSNChanged").and_then(|v| v.trim().parse().ok())),
                Err(reason) => Item::Malformed(i, reason),
            },
            Ok(None) => Item::Ended(i, Ok(stream.finish().await)),
            Err(e) => Item::Ended(i, Err(e)),
        };
        let last = !matches!(item, Item::Entry(..));
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Up to +25% on a delay, so many watchers do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}
