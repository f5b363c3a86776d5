//! The PostgreSQL gate: a listener in front of a PostgreSQL server that refuses the sessions
//! of users a policy blocks and ends their open sessions when a snapshot swap blocks them.
//!
//! The gate speaks protocol v3 only up to the `StartupMessage` ([`startup`]): it answers
//! `SSLRequest` (`S` and TLS with its own certificate, or `N` when it has none and allows
//! plain clients), `GSSENCRequest` (`N`), PostgreSQL 17 direct TLS (first byte 0x16, ALPN
//! `postgresql`), and forwards a `CancelRequest` whose pid and secret match a session it
//! relays. The start-up message is forwarded unchanged; [`login`] reads from it every role name
//! the server will use (`user` cut to 63 bytes as the server cuts it, `role` and
//! `session_authorization` in parameters and `options`) and the application names. The upstream
//! is reached over TLS verified against `upstream_ca_file` (or plain by opt-in), and
//! authentication stays between client and server: the gate never sees a password.
//!
//! **The decision comes after authentication** ([`relay`]): at the server's `AuthenticationOk`,
//! in-process ([`Warden::decide`]) for each name as `db_user`, with `application_name` as
//! `source_app`, the peer address as `client_ip` and the gate's `service`; and again at its
//! first `ReadyForQuery`, with the role the server reports (`session_authorization`) added and
//! the snapshot of that moment. A block is a FATAL
//! `ErrorResponse` (SQLSTATE 28000) naming the policy. Deciding there costs a blocked user's
//! login a server connection and an authentication (measured in BENCHMARKS.md), and buys two
//! things: a client without the password learns nothing about the list (it gets the server's
//! own authentication failure), and libpq, having seen `AuthenticationOk`, takes the refusal as
//! final instead of retrying without TLS (`sslmode=prefer`). Until the decision only
//! authentication messages reach the server.
//!
//! **Channel binding.** With SCRAM-SHA-256-PLUS the client binds its proof to the TLS
//! certificate it sees (`tls-server-end-point`), the server to its own. Measured against
//! PostgreSQL 15 and libpq (tests/it/gate.rs): removing SCRAM-SHA-256-PLUS from the server's
//! `AuthenticationSASL` does *not* work — libpq then sends the GS2 flag `y` ("I support
//! channel binding, the server does not") and a TLS server rejects that as a downgrade
//! ("SCRAM channel binding negotiation error"); the flag is inside the signed exchange, so the
//! gate cannot rewrite it. So the gate relays the mechanism list unchanged, and channel binding
//! works end to end when the gate presents **the server's own certificate** (same
//! `tls-server-end-point` hash): configure `tls_cert_file`/`tls_key_file` with the server's.
//! With another certificate a TLS upstream fails for clients that prefer channel binding
//! (libpq's default); they need `channel_binding=disable`, or the upstream must be plain
//! (`upstream_plain`, loopback), where the server offers no channel binding at all.
//! A client on plain TCP (`allow_plain`) in front of a TLS upstream cannot bind at all: for it
//! the gate takes SCRAM-SHA-256-PLUS out of the offer ([`wire::strip_channel_binding`]), and
//! it answers `n`, which the server accepts.
//!
//! **Framing.** Both directions are relayed with message boundaries tracked
//! ([`wire::Boundaries`]) and every write flushed (a TLS stream keeps what a full socket did not
//! take until it is flushed): the server's stream so a session ends between two messages, the
//! client's to know when a statement is outstanding (for `idle_timeout` and a client that hangs
//! up). A snapshot swap decides again for every open session; a session blocked then ends as
//! [`ending`] says — client bytes stopped first, the running statement cancelled and the
//! upstream closed, then FATAL 57P01 to the client if it takes it within a second. Nothing
//! there waits on the client.
//!
//! **Fail closed.** No snapshot yet: refused (57P03). Upstream down: FATAL 08006 "the
//! database is unreachable through the gate", within `startup_timeout`.
//!
//! **Lifetime.** Each gate is a configured [`Service`]: a reload stops the listener and makes
//! it again on the new configuration. Open sessions are not ended by that (nor by shutdown's
//! drain: they end when warden exits); they keep being checked against every new snapshot.
//!
//! **Audit.** Anyone who can reach the gate can make it refuse, so a refusal never costs one
//! store write: refusals of blocked users and sessions ended by policy are tallied in a
//! bounded in-memory map (by gate, user, policy; at most [`MAX_TALLY`] keys, the rest counted
//! as overflow) that each gate service writes to the audit log as one `gate.refused` /
//! `gate.ended` record per key with its count, every [`AUDIT_FLUSH`] and when it stops. Every
//! refusal is also counted in metrics (`warden_gate_refused_total`) and logged.

mod ending;
pub mod login;
mod metrics;
mod relay;
pub mod startup;
pub mod wire;

pub use metrics::{GateCounters, GateMetrics};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::{GateConfig, UpstreamTls};
use crate::decide::{Decision, Outcome, Request, Snapshot};
use crate::runtime::Warden;
use crate::services::{Ready, Service, Shutdown};
use login::Login;
use startup::Startup;

/// The message of a refused session (the policy name is appended).
pub const REFUSED: &str = "access for this user is suspended by policy";
/// The message of an ended session (the policy name is appended).
pub const ENDED: &str = "your access was suspended by policy";
/// The message when the snapshot cannot decide for the user (a data set a policy reads has
/// never loaded): fail closed, nothing internal said.
pub const UNDECIDED: &str =
    "access for this user cannot be decided yet (policy data has not loaded); try again shortly";
/// The message when the upstream cannot be reached.
pub const UNREACHABLE: &str = "the database is unreachable through the gate";

/// Most distinct (gate, user, policy, action) keys tallied between two audit flushes.
pub const MAX_TALLY: usize = 1024;
/// How often a gate service writes the tally to the audit log.
pub const AUDIT_FLUSH: Duration = Duration::from_secs(10);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

/// One open session, as `GET /v1/gates` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub user: String,
    pub database: String,
    pub application: Option<String>,
    pub client: String,
    pub since: String,
    pub backend_pid: Option<u32>,
}

struct Entry {
    info: SessionInfo,
    secret: Option<Vec<u8>>,
}

/// The sessions of every gate; shared by the gate services and the HTTP gateway.
#[derive(Clone, Default)]
pub struct Gates(Arc<Registry>);

#[derive(Default)]
struct Registry {
    next: AtomicU64,
    sessions: Mutex<HashMap<String, HashMap<u64, Entry>>>,
    tally: Mutex<Tally>,
}

/// What happened to whom, not yet in the audit log.
#[derive(Default)]
struct Tally {
    counts: HashMap<TallyKey, TallyCount>,
    /// Events beyond [`MAX_TALLY`] keys, by action.
    overflow: HashMap<&'static str, u64>,
}

#[derive(Hash, PartialEq, Eq)]
struct TallyKey {
    action: &'static str,
    gate: String,
    user: String,
    /// The account name the login was decided as (its audit record is about that account).
    account: String,
    policy: String,
}

struct TallyCount {
    count: u64,
    first_ms: i64,
    last_ms: i64,
    last_client: String,
}

impl Gates {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Entry>>> {
        self.0
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The open sessions of gate `name`, oldest first.
    pub fn open_sessions(&self, name: &str) -> Vec<SessionInfo> {
        let sessions = self.sessions();
        let mut out: Vec<(u64, SessionInfo)> = sessions
            .get(name)
            .map(|m| m.iter().map(|(id, e)| (*id, e.info.clone())).collect())
            .unwrap_or_default();
        out.sort_by_key(|(id, _)| *id);
        out.into_iter().map(|(_, s)| s).collect()
    }

    /// Registers an admitted session with its backend's key (for cancel requests).
    fn register(&self, gate: &str, info: SessionInfo, key: Option<(u32, Vec<u8>)>) -> SessionGuard {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let secret = key.map(|(_, secret)| secret);
        self.sessions()
            .entry(gate.to_owned())
            .or_default()
            .insert(id, Entry { info, secret });
        SessionGuard {
            gates: self.clone(),
            gate: gate.to_owned(),
            id,
        }
    }

    /// Tallies one refusal or ended session for the audit log (never a store write here):
    /// `user` is the name that was blocked, `account` the account it was decided as.
    fn tally(
        &self,
        action: &'static str,
        gate: &str,
        who: (&str, &str),
        client: &str,
        policy: &str,
    ) {
        let (user, account) = who;
        let mut tally = self.0.tally.lock().unwrap_or_else(PoisonError::into_inner);
        let key = TallyKey {
            action,
            gate: gate.to_owned(),
            user: user.to_owned(),
            account: account.to_owned(),
            policy: policy.trim().trim_matches('"').to_owned(),
        };
        let now = crate::base::time::now_ms();
        let full = tally.counts.len() >= MAX_TALLY;
        match tally.counts.get_mut(&key) {
            Some(c) => {
                c.count += 1;
                c.last_ms = now;
                client.clone_into(&mut c.last_client);
            }
            None if full => *tally.overflow.entry(action).or_default() += 1,
            None => {
                tally.counts.insert(
                    key,
                    TallyCount {
                        count: 1,
                        first_ms: now,
                        last_ms: now,
                        last_client: client.to_owned(),
                    },
                );
            }
        }
    }

    /// Writes the tally to the audit log in one transaction and clears it.
    fn flush_audit(&self, warden: &Warden) {
        let tally =
            std::mem::take(&mut *self.0.tally.lock().unwrap_or_else(PoisonError::into_inner));
        if tally.counts.is_empty() && tally.overflow.is_empty() {
            return;
        }
        let actor = crate::base::actor::Actor::system("gate");
        let mut surfaces = Vec::new();
        let mut records: Vec<crate::store::AuditRecord> = tally
            .counts
            .into_iter()
            .map(|(k, c)| {
                let record = crate::store::AuditRecord::new(
                    &actor,
                    k.action,
                    &k.user,
                    serde_json::json!({
                        "gate": k.gate,
                        "account": k.account,
                        "policy": k.policy,
                        "count": c.count,
                        "first_ms": c.first_ms,
                        "last_ms": c.last_ms,
                        "last_client": c.last_client,
                    }),
                )
                .with_outcome("denied");
                // About the listed account the login is, and where its block landed.
                match crate::operations::accounts::gate_event(
                    warden, &k.gate, &k.account, k.action, c.count, c.first_ms,
                ) {
                    Some((key, surface)) => {
                        surfaces.push(surface);
                        record.about(&key)
                    }
                    None => record,
                }
            })
            .collect();
        for (action, count) in tally.overflow {
            records.push(
                crate::store::AuditRecord::new(
                    &actor,
                    action,
                    "(more users)",
                    serde_json::json!({ "count": count, "note": "tally full" }),
                )
                .with_outcome("denied"),
            );
        }
        let n = records.len();
        let written = warden
            .store()
            .audited(|store| store.record_surfaces(&surfaces), |_| records);
        if let Err(e) = written {
            tracing::error!(error = %e, records = n, "gate audit records not written");
        }
    }

    /// Whether gate `name` relays the session of backend `pid` with this secret key.
    fn knows_key(&self, gate: &str, pid: u32, secret: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let sessions = self.sessions();
        sessions.get(gate).is_some_and(|m| {
            m.values().any(|e| {
                e.info.backend_pid == Some(pid)
                    && e.secret
                        .as_deref()
                        .is_some_and(|s| s.len() == secret.len() && bool::from(s.ct_eq(secret)))
            })
        })
    }

    /// One service per configured gate (for [`crate::services::Supervisor::with_configured`]).
    pub fn services(&self, warden: &Arc<Warden>) -> Vec<Service> {
        warden
            .config()
            .gates
            .iter()
            .map(|g| {
                let (warden, gates, config) = (Arc::clone(warden), self.clone(), g.clone());
                Service::new(format!("gate {}", g.name), move |shutdown, ready| {
                    run(warden, gates, config, shutdown, ready)
                })
            })
            .collect()
    }
}

/// Removes its session from the registry when the session ends, however it ends.
struct SessionGuard {
    gates: Gates,
    gate: String,
    id: u64,
}

impl SessionGuard {
    fn key(&self) -> Option<(u32, Vec<u8>)> {
        let sessions = self.gates.sessions();
        let e = sessions.get(&self.gate)?.get(&self.id)?;
        Some((e.info.backend_pid?, e.secret.clone()?))
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(m) = self.gates.sessions().get_mut(&self.gate) {
            m.remove(&self.id);
        }
    }
}

/// What one running gate shares with its connections.
struct Gate {
    warden: Arc<Warden>,
    gates: Gates,
    config: GateConfig,
    counters: Arc<GateCounters>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    connector: Option<tokio_rustls::TlsConnector>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// Errors preparing a gate's TLS.
#[derive(Debug, thiserror::Error)]
pub enum GateTlsError {
    #[error("gate certificate: {0}")]
    Certificate(String),
    #[error("upstream CA {path}: {message}")]
    UpstreamCa { path: String, message: String },
}

fn acceptor(config: &GateConfig) -> Result<Option<tokio_rustls::TlsAcceptor>, GateTlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| GateTlsError::Certificate(format!("{}: {e}", tls.cert_file.display())))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| GateTlsError::Certificate(format!("{}: {e}", tls.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GateTlsError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| GateTlsError::Certificate(e.to_string()))?;
    // Direct TLS (PostgreSQL 17) requires it; after an SSLRequest clients may offer it too.
    server.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))))
}

fn connector(config: &GateConfig) -> Result<Option<tokio_rustls::TlsConnector>, GateTlsError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let UpstreamTls::Verify(path) = &config.upstream_tls else {
        return Ok(None);
    };
    let fail = |message: String| GateTlsError::UpstreamCa {
        path: path.display().to_string(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        roots
            .add(cert.map_err(|e| fail(e.to_string()))?)
            .map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tokio_rustls::TlsConnector::from(Arc::new(client))))
}

/// Runs one gate until `shutdown`: binds (retrying while the address is busy, e.g. during a
/// reload), then accepts until told to stop. Open sessions outlive the listener.
async fn run(
    warden: Arc<Warden>,
    gates: Gates,
    config: GateConfig,
    mut shutdown: Shutdown,
    ready: Ready,
) {
    let tls = acceptor(&config).and_then(|a| Ok((a, connector(&config)?)));
    let (acceptor, connector) = match tls {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(gate = %config.name, error = %e, "gate not started");
            return shutdown.requested().await;
        }
    };
    let listener = loop {
        match TcpListener::bind(config.listen).await {
            Ok(l) => break l,
            Err(e) => {
                tracing::warn!(gate = %config.name, listen = %config.listen, error = %e, "cannot listen; retrying");
                tokio::select! {
                    () = shutdown.requested() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    // The bound address, not the configured one: `listen = "…:0"` asks for any free port.
    let address = listener.local_addr().map_or(config.listen, |a| a);
    tracing::info!(gate = %config.name, %address, upstream = %config.upstream, "gate listening");
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let gate = Arc::new(Gate {
        counters: warden.metrics().get::<GateMetrics>().gate(&config.name),
        warden,
        gates,
        config,
        acceptor,
        connector,
        per_client: Mutex::new(HashMap::new()),
    });
    ready.set();
    let mut flush = tokio::time::interval(AUDIT_FLUSH);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.requested() => break,
            _ = flush.tick() => {
                flush_audit(&gate).await;
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "gate accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gate = Arc::clone(&gate);
        let slot = Arc::clone(&slots).try_acquire_owned();
        tokio::spawn(async move {
            let mut stream = stream;
            let Ok(_slot) = slot else {
                gate.counters.refused("max_connections");
                let _ = stream
                    .write_all(&wire::fatal(
                        "53300",
                        "too many connections through the gate",
                    ))
                    .await;
                return;
            };
            let Some(_client) = ClientSlot::take(&gate, peer.ip()) else {
                gate.counters.refused("max_connections_per_client");
                let _ = stream
                    .write_all(&wire::fatal(
                        "53300",
                        "too many connections from this client through the gate",
                    ))
                    .await;
                return;
            };
            connection(gate, stream, peer).await;
        });
    }
    flush_audit(&gate).await;
    tracing::info!(gate = %gate.config.name, "gate stopped listening; open sessions continue");
}

async fn flush_audit(gate: &Arc<Gate>) {
    let (gates, warden) = (gate.gates.clone(), Arc::clone(&gate.warden));
    let _ = tokio::task::spawn_blocking(move || gates.flush_audit(&warden)).await;
}

/// One connection's place in the per-client cap.
struct ClientSlot {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl ClientSlot {
    fn take(gate: &Arc<Gate>, ip: IpAddr) -> Option<ClientSlot> {
        let mut map = gate
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= gate.config.max_connections_per_client {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            gate: Arc::clone(gate),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self
            .gate
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Why the start-up phase ended without a session.
enum Refusal {
    /// Write this `ErrorResponse`, count `reason`, close.
    Error {
        reason: &'static str,
        message: Vec<u8>,
    },
    /// Close without a word (a handshake failure, a cancel request).
    Close,
}

async fn read_packet<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Vec<u8>, Refusal> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)
        .await
        .map_err(|_| Refusal::Close)?;
    let len = startup::packet_len(header, max).map_err(bad_packet)?;
    let mut packet = vec![0u8; len];
    packet[..4].copy_from_slice(&header);
    r.read_exact(&mut packet[4..])
        .await
        .map_err(|_| Refusal::Close)?;
    Ok(packet)
}

fn bad_packet(e: startup::StartupError) -> Refusal {
    Refusal::Error {
        reason: "invalid_startup",
        message: wire::fatal("08P01", &format!("invalid startup packet: {e}")),
    }
}

/// The client after negotiation: its stream, who its start-up message asks to be (`None`
/// without a user), and the message, forwarded unchanged.
struct Negotiated {
    stream: Stream,
    /// Whether the client speaks TLS to the gate.
    tls: bool,
    login: Option<Login>,
    packet: Vec<u8>,
}

/// Negotiates TLS and reads the start-up message (or a cancel request, handled here).
async fn negotiate(
    gate: &Gate,
    mut tcp: TcpStream,
) -> Result<Negotiated, (Option<Stream>, Refusal)> {
    let max = gate.config.max_startup_bytes;
    let mut first = [0u8; 1];
    let direct = matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == 0x16);
    let mut stream: Stream;
    let tls;
    if direct {
        let Some(acceptor) = &gate.acceptor else {
            return Err((None, Refusal::Close));
        };
        let s = acceptor
            .accept(tcp)
            .await
            .map_err(|_| (None, Refusal::Close))?;
        if s.get_ref().1.alpn_protocol() != Some(b"postgresql") {
            return Err((None, Refusal::Close));
        }
        stream = Box::new(s);
        tls = true;
    } else {
        // SSLRequest / GSSENCRequest come before TLS, on the bare socket.
        loop {
            let packet = match read_packet(&mut tcp, max).await {
                Ok(p) => p,
                Err(r) => return Err((Some(Box::new(tcp)), r)),
            };
            match startup::parse(&packet, max) {
                Ok(Startup::SslRequest) => match &gate.acceptor {
                    Some(acceptor) => {
                        tcp.write_all(b"S")
                            .await
                            .map_err(|_| (None, Refusal::Close))?;
                        let s = acceptor
                            .accept(tcp)
                            .await
                            .map_err(|_| (None, Refusal::Close))?;
                        stream = Box::new(s);
                        tls = true;
                        break;
                    }
                    None => {
                        tcp.write_all(b"N")
                            .await
                            .map_err(|_| (None, Refusal::Close))?;
                    }
                },
                Ok(Startup::GssEncRequest) => {
                    tcp.write_all(b"N")
                        .await
                        .map_err(|_| (None, Refusal::Close))?;
                }
                Ok(startup) => {
                    return finish(gate, Box::new(tcp), false, startup, packet).await;
                }
                Err(e) => return Err((Some(Box::new(tcp)), bad_packet(e))),
            }
        }
    }
    let packet = match read_packet(&mut stream, max).await {
        Ok(p) => p,
        Err(r) => return Err((Some(stream), r)),
    };
    match startup::parse(&packet, max) {
        Ok(s @ (Startup::Message { .. } | Startup::Cancel { .. })) => {
            finish(gate, stream, tls, s, packet).await
        }
        Ok(_) => Err((
            Some(stream),
            bad_packet(startup::StartupError::UnexpectedBody(0)),
        )),
        Err(e) => Err((Some(stream), bad_packet(e))),
    }
}

async fn finish(
    gate: &Gate,
    stream: Stream,
    tls: bool,
    startup: Startup,
    packet: Vec<u8>,
) -> Result<Negotiated, (Option<Stream>, Refusal)> {
    match startup {
        Startup::Cancel { pid, secret } => {
            if gate.gates.knows_key(&gate.config.name, pid, &secret) {
                forward_cancel(gate, pid, &secret).await;
            } else {
                tracing::debug!(gate = %gate.config.name, pid, "cancel request for no session of this gate dropped");
            }
            // Closed cleanly once the server has taken it, as the server closes it.
            Err((Some(stream), Refusal::Close))
        }
        Startup::Message { .. } if !tls && !gate.config.allow_plain => Err((
            Some(stream),
            Refusal::Error {
                reason: "tls_required",
                message: wire::fatal(
                    "28000",
                    "the gate accepts TLS connections only (sslmode=require)",
                ),
            },
        )),
        Startup::Message { params, .. } => Ok(Negotiated {
            stream,
            tls,
            login: Login::read(&params),
            packet,
        }),
        _ => Err((
            Some(stream),
            bad_packet(startup::StartupError::UnexpectedBody(0)),
        )),
    }
}

/// Connects to the upstream server, with TLS when configured.
async fn connect_upstream(gate: &Gate) -> std::io::Result<Stream> {
    let c = &gate.config;
    let mut tcp = TcpStream::connect((c.upstream_host.as_str(), c.upstream_port)).await?;
    let _ = tcp.set_nodelay(true);
    let Some(connector) = &gate.connector else {
        return Ok(Box::new(tcp));
    };
    tcp.write_all(&wire::ssl_request()).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        return Err(std::io::Error::other("the server does not accept TLS"));
    }
    let name = rustls::pki_types::ServerName::try_from(c.upstream_host.clone())
        .map_err(std::io::Error::other)?;
    Ok(Box::new(connector.connect(name, tcp).await?))
}

async fn forward_cancel(gate: &Gate, pid: u32, secret: &[u8]) {
    let sent = tokio::time::timeout(gate.config.startup_timeout, async {
        let mut up = connect_upstream(gate).await?;
        up.write_all(&wire::cancel_request(pid, secret)).await?;
        up.flush().await?;
        // The server answers a cancel request by closing the connection.
        let mut sink = [0u8; 64];
        while up.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
    match sent {
        Ok(Ok(())) => tracing::info!(gate = %gate.config.name, pid, "cancel request forwarded"),
        Ok(Err(e)) => {
            tracing::warn!(gate = %gate.config.name, pid, error = %e, "cancel request not forwarded")
        }
        Err(_) => tracing::warn!(gate = %gate.config.name, pid, "cancel request timed out"),
    }
}

/// The first policy that blocked, for the message.
fn blocking_policy(snapshot: &Snapshot, decision: &Decision) -> String {
    decision
        .matched
        .iter()
        .filter(|m| m.action == crate::model::policy::Action::Block)
        .find_map(|m| snapshot.policy(m))
        .map(|p| format!(" {:?}", p.name))
        .unwrap_or_default()
}

/// The decision on a whole login: every role name it asks for, with every application name
/// it sets.
enum Verdict {
    Allow,
    /// `user` (one of the login's names) is blocked by `policy` (quoted, with a leading space).
    Block {
        user: String,
        policy: String,
    },
    /// The snapshot cannot answer for `user`: not allow.
    Undecided {
        user: String,
    },
}

impl Gate {
    /// Decides `login` from the current snapshot: blocked when any name is, undecided when any
    /// cannot be decided and none is blocked. `first` records every decision (the login's);
    /// later checks record only what ends the session.
    fn verdict(&self, login: &Login, client: &str, first: bool) -> Verdict {
        let snapshot = self.warden.engine().snapshot();
        let applications: Vec<Option<&str>> = if login.applications.is_empty() {
            vec![None]
        } else {
            login
                .applications
                .iter()
                .map(|a| Some(a.as_str()))
                .collect()
        };
        let mut undecided = None;
        for name in login.names() {
            for application in &applications {
                // A bare login is decided as the account of the gate's domain.
                let account = self.config.account_name(name);
                let mut request = Request::new(&self.config.service).db_user(&account);
                request.source_app = *application;
                request.client_ip = Some(client);
                let decision = if first {
                    self.warden.decide(&snapshot, &request)
                } else {
                    snapshot.decide(&request)
                };
                if !first && decision.outcome != Outcome::Allow {
                    self.warden
                        .record_decision(&snapshot, &request, &decision, Duration::ZERO);
                }
                match decision.outcome {
                    Outcome::Allow => {}
                    Outcome::Block => {
                        return Verdict::Block {
                            user: name.to_owned(),
                            policy: blocking_policy(&snapshot, &decision),
                        };
                    }
                    Outcome::Error => {
                        undecided.get_or_insert_with(|| name.to_owned());
                    }
                }
            }
        }
        undecided.map_or(Verdict::Allow, |user| Verdict::Undecided { user })
    }
}

async fn refuse(gate: &Gate, stream: Option<Stream>, refusal: Refusal) {
    let Some(mut s) = stream else {
        return;
    };
    let message = match refusal {
        Refusal::Error { reason, message } => {
            gate.counters.refused(reason);
            Some(message)
        }
        Refusal::Close => None,
    };
    // A clean close (TLS close_notify) even without a word: libpq reports an abrupt end of a
    // TLS stream as an error, a cancel request's included.
    let _ = tokio::time::timeout(ending::CLIENT_GRACE, async {
        if let Some(message) = &message {
            s.write_all(message).await?;
        }
        s.flush().await?;
        s.shutdown().await
    })
    .await;
}

fn refusal(reason: &'static str, code: &str, message: &str) -> Refusal {
    Refusal::Error {
        reason,
        message: wire::fatal(code, message),
    }
}

async fn connection(gate: Arc<Gate>, tcp: TcpStream, peer: SocketAddr) {
    let negotiated = tokio::time::timeout(gate.config.startup_timeout, negotiate(&gate, tcp)).await;
    let Negotiated {
        stream,
        tls,
        login,
        packet,
    } = match negotiated {
        Ok(Ok(n)) => n,
        Ok(Err((stream, refusal))) => return refuse(&gate, stream, refusal).await,
        Err(_) => {
            gate.counters.refused("startup_timeout");
            return;
        }
    };
    let Some(login) = login else {
        let no_user = refusal(
            "no_user",
            "28000",
            "no PostgreSQL user name specified in startup packet",
        );
        return refuse(&gate, Some(stream), no_user).await;
    };
    if !gate.warden.engine().is_ready() {
        let not_ready = refusal(
            "not_ready",
            "57P03",
            "the gate has no policy snapshot yet; try again",
        );
        return refuse(&gate, Some(stream), not_ready).await;
    }
    // Subscribed before anything is decided: a swap from here on is seen by the relay, however
    // long the upstream takes to answer.
    let snapshots = gate.warden.subscribe_snapshots();
    let upstream = tokio::time::timeout(gate.config.startup_timeout, async {
        let mut up = connect_upstream(&gate).await?;
        up.write_all(&packet).await?;
        up.flush().await?;
        Ok::<_, std::io::Error>(up)
    })
    .await;
    let upstream = match upstream {
        Ok(Ok(up)) => up,
        failed => {
            let error = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            };
            tracing::warn!(gate = %gate.config.name, upstream = %gate.config.upstream, %error, "upstream unreachable");
            let unreachable = refusal("upstream_unreachable", "08006", UNREACHABLE);
            return refuse(&gate, Some(stream), unreachable).await;
        }
    };
    let client = relay::Client { stream, peer, tls };
    relay::relay(&gate, login, client, upstream, snapshots).await;
}
