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
//! **The kit.** What is not PostgreSQL is the front-end kit's ([`crate::front`]): the
//! decision on a login ([`front::answer_session`]), the session registry and the re-check on
//! every swap, the listener with its caps and TLS, the ending sequence, and the aggregated
//! audit of refusals (`gate.refused` / `gate.ended`, one record per key with its count). This
//! module frames PostgreSQL: the start-up phase ([`startup`], [`login`]), the relay's message
//! boundaries ([`wire`], [`relay`]), and PostgreSQL's ending — a `CancelRequest` stops the
//! statement, FATAL 57P01 tells the client.

pub mod login;
mod relay;
pub mod startup;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{GateConfig, GateProtocol, UpstreamTls};
use crate::front::{
    self, Asking, GateCounters, GateMetrics, OverCap, SessionFront, Shared, ending,
};
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

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

/// One service per configured PostgreSQL gate.
pub fn services(warden: &Arc<Warden>, shared: &Shared) -> Vec<Service> {
    front::gate_services(warden, shared, GateProtocol::Postgres, run)
}

/// What one running gate shares with its connections.
struct Gate {
    warden: Arc<Warden>,
    shared: Shared,
    config: GateConfig,
    counters: Arc<GateCounters>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    connector: Option<tokio_rustls::TlsConnector>,
}

impl Gate {
    /// Who `login` is, as its decisions read it.
    fn asking(&self, login: &Login, client: &str) -> Asking {
        Asking {
            service: self.config.service.clone(),
            names: login.names().map(str::to_owned).collect(),
            applications: login.applications.clone(),
            client_ip: client.to_owned(),
            domain: self.config.domain.clone(),
        }
    }
}

/// Runs one gate until `shutdown`: binds (retrying while the address is busy, e.g. during a
/// reload), then accepts until told to stop. Open sessions outlive the listener.
async fn run(
    warden: Arc<Warden>,
    shared: Shared,
    config: GateConfig,
    mut shutdown: Shutdown,
    ready: Ready,
) {
    let tls = tls(&config);
    let (acceptor, connector) = match tls {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(gate = %config.name, error = %e, "gate not started");
            return shutdown.requested().await;
        }
    };
    let gate = Arc::new(Gate {
        counters: warden.metrics().get::<GateMetrics>().gate(&config.name),
        warden: Arc::clone(&warden),
        shared: shared.clone(),
        config: config.clone(),
        acceptor,
        connector,
    });
    front::serve_gate(gate, &config, warden, shared, shutdown, ready).await;
}

type Tls = (
    Option<tokio_rustls::TlsAcceptor>,
    Option<tokio_rustls::TlsConnector>,
);

/// The gate's own TLS (with ALPN `postgresql`: PostgreSQL 17's direct TLS requires it, and
/// after an SSLRequest clients may offer it too) and its upstream's.
fn tls(config: &GateConfig) -> Result<Tls, front::tls::TlsError> {
    let acceptor = match &config.tls {
        Some(files) => Some(front::tls::acceptor(files, &[b"postgresql"])?),
        None => None,
    };
    let connector = match &config.upstream_tls {
        UpstreamTls::Verify(ca) => Some(front::tls::connector(ca)?),
        UpstreamTls::Plain => None,
    };
    Ok((acceptor, connector))
}

impl SessionFront for Gate {
    async fn over_cap(&self, mut stream: TcpStream, why: OverCap) {
        self.counters.refused(why.as_str());
        let message = match why {
            OverCap::Listener => "too many connections through the gate",
            OverCap::Client => "too many connections from this client through the gate",
        };
        let _ = stream.write_all(&wire::fatal("53300", message)).await;
    }

    async fn session(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        connection(self, stream, peer).await;
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
            if gate
                .shared
                .sessions
                .knows_key(&gate.config.name, pid, &secret)
            {
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
    let recheck = front::Recheck::subscribe(&gate.warden);
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
    relay::relay(&gate, login, client, upstream, recheck).await;
}
