//! The MariaDB/MySQL gate (`[[gates]] protocol = "mysql"`): a listener in front of a MariaDB or
//! MySQL server that refuses the sessions of users a policy blocks and ends their open
//! sessions when a snapshot swap blocks them. A protocol adapter over the front-end kit
//! ([`crate::front`]): the kit decides, registers, re-checks, listens and ends; this module
//! frames MySQL.
//!
//! **The server speaks first.** On a client's connection the gate connects upstream, reads the
//! server's `HandshakeV10` and relays it — with the server's own scramble, so that the client's
//! proof (`mysql_native_password`, `caching_sha2_password`'s fast path, `ed25519`) is valid for
//! the server: authentication stays between client and server, the gate never sees a password
//! hash. It changes the capability flags it relays: `CLIENT_SSL` is offered when the gate has a
//! certificate (and only then); compression (`CLIENT_COMPRESS`, `CLIENT_ZSTD`) is taken out,
//! since the gate reads packet boundaries; `CLIENT_DEPRECATE_EOF` is taken out so that a result
//! set always ends with a classic EOF packet the gate can recognise. The client's short
//! `SSLRequest` switches it to TLS with the gate's certificate; its `HandshakeResponse41` gives
//! the user name, the schema and the connection attributes ([`wire`]).
//!
//! **Upstream.** The gate sends the client's response on: to a TLS upstream (verified against
//! `upstream_ca_file`) after an `SSLRequest` of its own, else (`upstream_plain`) as is with
//! `CLIENT_SSL` cleared. The two legs may differ in TLS, so sequence numbers differ by one during
//! authentication; the relay renumbers each packet until the server's OK. A
//! `caching_sha2_password` full authentication sends the password in clear when the client's
//! leg is TLS: give such a gate a TLS upstream, or the server refuses the clear password (or it
//! would cross the network in clear).
//!
//! **The decision comes after authentication** ([`relay`]), as at the PostgreSQL gate and for
//! the same reasons: at the server's OK, in-process ([`front::answer_session`]) on the user name
//! (as the account its gate's domain makes it) with `program_name` as `source_app`, the peer
//! address as `client_ip` and the gate's `service`. A client without the password learns
//! nothing about the list (it gets the server's own access denied), and a blocked user's
//! refusal costs the server one authentication. The OK is held; a block replaces it with an ERR
//! packet (1045, SQLSTATE 28000, naming the policy) and the upstream is closed. Until the OK
//! only authentication reaches the server: a command a client pipelines is held.
//!
//! **Open sessions.** Both directions are relayed with packet boundaries tracked. Every
//! snapshot swap decides again ([`front::Recheck`]); `COM_CHANGE_USER` is decided before it
//! reaches the server. A session blocked then ends as the kit's ending says: the client's bytes
//! stopped first, the server's statement stopped — `KILL CONNECTION <id>` through the gate's
//! control account ([`control`]) when one is configured, else closing the upstream, which
//! MariaDB 10.11 notices within about four seconds for `SLEEP()` and not at all for a CPU-bound
//! statement (measured, BENCHMARKS.md) — then an ERR packet (1927, SQLSTATE 70100) to the
//! client at a packet boundary, if it takes it within a second.
//!
//! **Fail closed.** No snapshot yet, or a user the snapshot cannot decide for: refused. The
//! upstream down or silent: an ERR (1105) "the database is unreachable through the gate" within
//! `startup_timeout`. A handshake that is not one (garbage, too long, compression, the pre-4.1
//! protocol): an ERR (1043) and the connection closed.

pub mod control;
mod relay;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::base::secret::Secret;
use crate::config::{GateConfig, GateProtocol, UpstreamTls};
use crate::front::{
    self, Asking, GateCounters, GateMetrics, OverCap, SessionFront, Shared, ending,
};
use crate::runtime::Warden;
use crate::services::{Ready, Service, Shutdown};
use wire::{Greeting, Hello, Packet, caps};

/// The message of a refused session (the policy name is appended).
pub const REFUSED: &str = "Access denied: access for this user is suspended by policy";
/// The message of an ended session (the policy name is appended).
pub const ENDED: &str = "your access was suspended by policy";
/// The message when the snapshot cannot decide for the user: fail closed.
pub const UNDECIDED: &str =
    "access for this user cannot be decided yet (policy data has not loaded); try again shortly";
/// The message when the upstream cannot be reached.
pub const UNREACHABLE: &str = "the database is unreachable through the gate";

/// `ER_ACCESS_DENIED_ERROR`.
const ACCESS_DENIED: u16 = 1045;
/// `ER_HANDSHAKE_ERROR` ("Bad handshake").
const BAD_HANDSHAKE: u16 = 1043;
/// `ER_CON_COUNT_ERROR` ("Too many connections").
const TOO_MANY: u16 = 1040;
/// `ER_UNKNOWN_ERROR`, for an upstream the gate cannot reach. Not a client error code
/// (`CR_CONN_HOST_ERROR`, 2003): libmariadb takes an ERR from a server with a code in the
/// client range for a malformed packet, and the message is lost.
const UNREACHABLE_CODE: u16 = 1105;
/// MariaDB's `ER_CONNECTION_KILLED`.
const KILLED: u16 = 1927;
/// The longest user name the gate lets through: longer than any server keeps (MariaDB 128
/// characters, MySQL 32), and a server that cut it could log in as another account.
const MAX_USER: usize = 128;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

/// One service per configured MySQL gate.
pub fn services(warden: &Arc<Warden>, shared: &Shared) -> Vec<Service> {
    front::gate_services(warden, shared, GateProtocol::Mysql, run)
}

/// What one running gate shares with its connections.
struct Gate {
    warden: Arc<Warden>,
    shared: Shared,
    config: GateConfig,
    counters: Arc<GateCounters>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    connector: Option<tokio_rustls::TlsConnector>,
    /// The control account's name and password (read when the gate starts).
    control: Option<(String, Secret)>,
}

/// Why a gate cannot start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Tls(#[from] front::tls::TlsError),
    #[error("control account password: {0}")]
    Control(#[from] crate::base::secret::SecretError),
}

async fn run(
    warden: Arc<Warden>,
    shared: Shared,
    config: GateConfig,
    mut shutdown: Shutdown,
    ready: Ready,
) {
    let prepared = prepare(&config);
    let (acceptor, connector, control) = match prepared {
        Ok(p) => p,
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
        control,
    });
    front::serve_gate(gate, &config, warden, shared, shutdown, ready).await;
}

type Prepared = (
    Option<tokio_rustls::TlsAcceptor>,
    Option<tokio_rustls::TlsConnector>,
    Option<(String, Secret)>,
);

fn prepare(config: &GateConfig) -> Result<Prepared, StartError> {
    let acceptor = match &config.tls {
        Some(files) => Some(front::tls::acceptor(files, &[])?),
        None => None,
    };
    let connector = match &config.upstream_tls {
        UpstreamTls::Verify(ca) => Some(front::tls::connector(ca)?),
        UpstreamTls::Plain => None,
    };
    let control = match &config.control {
        Some(account) => Some((account.user.clone(), account.password.read()?)),
        None => None,
    };
    Ok((acceptor, connector, control))
}

impl SessionFront for Gate {
    async fn over_cap(&self, mut stream: TcpStream, why: OverCap) {
        self.counters.refused(why.as_str());
        let message = match why {
            OverCap::Listener => "Too many connections through the gate",
            OverCap::Client => "Too many connections from this client through the gate",
        };
        // The server speaks first: an ERR in place of the greeting, as a full server answers.
        let _ = stream
            .write_all(&wire::err_packet(0, TOO_MANY, "08004", message))
            .await;
    }

    async fn session(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        connection(self, stream, peer).await;
    }
}

/// Who a login through this gate is: its user name as the server reads it, and the same name
/// trimmed of trailing spaces and read as Latin-1 when it is not UTF-8 (a server compares in
/// the connection's character set), each as its account.
#[derive(Debug, Clone)]
struct Login {
    user: String,
    names: Vec<String>,
    database: Option<String>,
    application: Option<String>,
}

impl Login {
    fn read(response: &wire::Response) -> Option<Login> {
        let raw = &response.user;
        if raw.is_empty() || raw.len() > MAX_USER {
            return None;
        }
        let user = String::from_utf8_lossy(raw).into_owned();
        let mut names = vec![user.clone()];
        if std::str::from_utf8(raw).is_err() {
            names.push(raw.iter().map(|b| char::from(*b)).collect());
        }
        let trimmed = user.trim_end_matches(' ');
        if trimmed != user && !trimmed.is_empty() {
            names.push(trimmed.to_owned());
        }
        Some(Login {
            user,
            names,
            database: response
                .database
                .as_ref()
                .map(|d| String::from_utf8_lossy(d).into_owned()),
            application: response.program_name(),
        })
    }

    fn add_name(&mut self, name: String) {
        if !self.names.contains(&name) {
            self.names.push(name);
        }
    }
}

impl Gate {
    fn asking(&self, login: &Login, client: &str) -> Asking {
        Asking {
            service: self.config.service.clone(),
            names: login.names.clone(),
            applications: login.application.iter().cloned().collect(),
            client_ip: client.to_owned(),
            domain: self.config.domain.clone(),
        }
    }
}

/// Why the handshake ended without a session: what the client is told (an ERR packet, with
/// the sequence number it expects) and under which reason it is counted.
struct Refusal {
    reason: &'static str,
    packet: Vec<u8>,
}

fn refusal(reason: &'static str, seq: u8, code: u16, state: &str, message: &str) -> Refusal {
    Refusal {
        reason,
        packet: wire::err_packet(seq, code, state, message),
    }
}

async fn refuse(gate: &Gate, stream: Option<Stream>, refusal: Option<Refusal>) {
    if let Some(r) = &refusal {
        gate.counters.refused(r.reason);
    }
    let Some(mut stream) = stream else {
        return;
    };
    let _ = tokio::time::timeout(ending::CLIENT_GRACE, async {
        if let Some(r) = &refusal {
            stream.write_all(&r.packet).await?;
        }
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
}

/// Reads one whole packet of at most `max` payload bytes.
async fn read_packet<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Packet, ReadError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)
        .await
        .map_err(|_| ReadError::Closed)?;
    let len = wire::payload_len(header);
    if len > max {
        return Err(ReadError::Wire(wire::WireError::TooLong { len, max }));
    }
    let mut packet = vec![0u8; 4 + len];
    packet[..4].copy_from_slice(&header);
    r.read_exact(&mut packet[4..])
        .await
        .map_err(|_| ReadError::Closed)?;
    Ok(Packet(packet))
}

enum ReadError {
    Closed,
    Wire(wire::WireError),
}

/// The server's end after the greeting: its stream and what it said.
struct Upstream {
    stream: TcpStream,
    greeting: Greeting,
    payload: Vec<u8>,
}

/// Connects to the upstream and reads its greeting (or the ERR it answers with instead).
async fn connect_upstream(gate: &Gate) -> Result<Result<Upstream, Packet>, String> {
    let c = &gate.config;
    let mut tcp = TcpStream::connect((c.upstream_host.as_str(), c.upstream_port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let packet = match read_packet(&mut tcp, gate.config.max_startup_bytes.max(1024)).await {
        Ok(p) => p,
        Err(ReadError::Closed) => return Err("the server closed before its greeting".into()),
        Err(ReadError::Wire(e)) => return Err(format!("the server's greeting: {e}")),
    };
    if packet.kind() == wire::reply::ERR {
        return Ok(Err(packet));
    }
    let greeting = Greeting::parse(packet.payload()).map_err(|e| e.to_string())?;
    Ok(Ok(Upstream {
        stream: tcp,
        greeting,
        payload: packet.payload().to_vec(),
    }))
}

/// The client after the handshake: its stream, the sequence number of its response, the
/// response's payload and what it says.
struct Greeted {
    stream: Stream,
    seq: u8,
    payload: Vec<u8>,
    response: wire::Response,
}

/// Relays the greeting (with the gate's capability flags) and reads the client's response,
/// through TLS when it asks.
async fn greet(
    gate: &Gate,
    mut tcp: TcpStream,
    up: &Upstream,
) -> Result<Greeted, (Option<Stream>, Option<Refusal>)> {
    let mut clear = caps::COMPRESS | caps::ZSTD | caps::DEPRECATE_EOF;
    let mut set = 0;
    if gate.acceptor.is_some() {
        set |= caps::SSL;
    } else {
        clear |= caps::SSL;
    }
    let greeting = up.greeting.with_capabilities(&up.payload, set, clear);
    if tcp.write_all(&Packet::new(0, &greeting).0).await.is_err() {
        return Err((Some(Box::new(tcp)), None));
    }
    let max = gate.config.max_startup_bytes;
    let bad = |seq: u8, e: wire::WireError| {
        refusal(
            "invalid_startup",
            seq.wrapping_add(1),
            BAD_HANDSHAKE,
            "08S01",
            &format!("Bad handshake: {e}"),
        )
    };
    let first = match read_packet(&mut tcp, max).await {
        Ok(p) => p,
        Err(ReadError::Closed) => return Err((Some(Box::new(tcp)), None)),
        Err(ReadError::Wire(e)) => return Err((Some(Box::new(tcp)), Some(bad(0, e)))),
    };
    let (mut stream, tls, packet): (Stream, bool, Packet) = match Hello::parse(first.payload()) {
        Ok(Hello::SslRequest { .. }) => {
            let Some(acceptor) = &gate.acceptor else {
                let e = wire::WireError::Malformed("an SSL request the gate did not offer");
                return Err((Some(Box::new(tcp)), Some(bad(first.seq(), e))));
            };
            let Ok(tls) = acceptor.accept(tcp).await else {
                return Err((None, None));
            };
            let mut stream: Stream = Box::new(tls);
            match read_packet(&mut stream, max).await {
                Ok(p) => (stream, true, p),
                Err(ReadError::Closed) => return Err((Some(stream), None)),
                Err(ReadError::Wire(e)) => {
                    return Err((Some(stream), Some(bad(first.seq().wrapping_add(1), e))));
                }
            }
        }
        Ok(Hello::Response(_)) => (Box::new(tcp), false, first),
        Err(e) => return Err((Some(Box::new(tcp)), Some(bad(first.seq(), e)))),
    };
    let seq = packet.seq();
    let response = match Hello::parse(packet.payload()) {
        Ok(Hello::Response(r)) => r,
        Ok(Hello::SslRequest { .. }) => {
            let e = wire::WireError::Malformed("a second SSL request");
            return Err((Some(stream), Some(bad(seq, e))));
        }
        Err(e) => return Err((Some(stream), Some(bad(seq, e)))),
    };
    if !tls && !gate.config.allow_plain {
        let words = "Access denied: the gate accepts TLS connections only (--ssl)";
        let r = refusal(
            "tls_required",
            seq.wrapping_add(1),
            ACCESS_DENIED,
            "28000",
            words,
        );
        return Err((Some(stream), Some(r)));
    }
    let _ = stream.flush().await;
    Ok(Greeted {
        stream,
        seq,
        payload: packet.payload().to_vec(),
        response,
    })
}

/// Sends the client's response on to the server, through TLS when the gate's upstream is;
/// returns the stream and the sequence number the server saw the response under.
async fn authenticate_upstream(
    gate: &Gate,
    up: Upstream,
    mut payload: Vec<u8>,
    capabilities: u32,
) -> Result<(Stream, u8), String> {
    let mut tcp = up.stream;
    let Some(connector) = &gate.connector else {
        wire::set_client_capabilities(&mut payload, capabilities & !caps::SSL);
        tcp.write_all(&Packet::new(1, &payload).0)
            .await
            .map_err(|e| e.to_string())?;
        return Ok((Box::new(tcp), 1));
    };
    if up.greeting.capabilities & caps::SSL == 0 {
        return Err("the server does not offer TLS".into());
    }
    let caps = capabilities | caps::SSL;
    wire::set_client_capabilities(&mut payload, caps);
    tcp.write_all(&Packet::new(1, &wire::ssl_request_from(&payload)).0)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(gate.config.upstream_host.clone())
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(&Packet::new(2, &payload).0)
        .await
        .map_err(|e| e.to_string())?;
    tls.flush().await.map_err(|e| e.to_string())?;
    Ok((Box::new(tls), 2))
}

/// The upstream and its greeting within `startup_timeout`, or the refusal its client gets: the
/// server's own ERR when it answered one instead of a greeting (too many connections, host
/// blocked), else "unreachable".
async fn reach_upstream(gate: &Gate) -> Result<Upstream, Refusal> {
    let error = match tokio::time::timeout(gate.config.startup_timeout, connect_upstream(gate))
        .await
    {
        Ok(Ok(Ok(up))) => return Ok(up),
        Ok(Ok(Err(server_err))) => {
            tracing::warn!(gate = %gate.config.name, error = %wire::err_message(server_err.payload()), "the server refused the connection");
            return Err(Refusal {
                reason: "upstream_refused",
                packet: server_err.0,
            });
        }
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_owned(),
    };
    tracing::warn!(gate = %gate.config.name, upstream = %gate.config.upstream, %error, "upstream unreachable");
    Err(unreachable(0))
}

/// "The database is unreachable through the gate", as packet `seq`.
fn unreachable(seq: u8) -> Refusal {
    refusal(
        "upstream_unreachable",
        seq,
        UNREACHABLE_CODE,
        "08S01",
        UNREACHABLE,
    )
}

async fn connection(gate: Arc<Gate>, tcp: TcpStream, peer: SocketAddr) {
    let timeout = gate.config.startup_timeout;
    if !gate.warden.engine().is_ready() {
        let words = "Access denied: the gate has no policy snapshot yet; try again";
        let r = refusal("not_ready", 0, ACCESS_DENIED, "28000", words);
        return refuse(&gate, Some(Box::new(tcp)), Some(r)).await;
    }
    // Subscribed before anything is decided: a swap from here on is seen by the relay.
    let recheck = front::Recheck::subscribe(&gate.warden);
    let up = match reach_upstream(&gate).await {
        Ok(up) => up,
        Err(r) => return refuse(&gate, Some(Box::new(tcp)), Some(r)).await,
    };
    let connection_id = up.greeting.connection_id;
    let greeted = match tokio::time::timeout(timeout, greet(&gate, tcp, &up)).await {
        Ok(Ok(g)) => g,
        Ok(Err((stream, r))) => return refuse(&gate, stream, r).await,
        Err(_) => {
            gate.counters.refused("startup_timeout");
            return;
        }
    };
    let Some(login) = Login::read(&greeted.response) else {
        let words = "Access denied: no user name, or one longer than any server keeps";
        let r = refusal(
            "no_user",
            greeted.seq.wrapping_add(1),
            ACCESS_DENIED,
            "28000",
            words,
        );
        return refuse(&gate, Some(greeted.stream), Some(r)).await;
    };
    let caps = greeted.response.capabilities;
    let upstream = tokio::time::timeout(
        timeout,
        authenticate_upstream(&gate, up, greeted.payload, caps),
    )
    .await;
    let (upstream, upstream_seq) = match upstream {
        Ok(Ok(u)) => u,
        failed => {
            let error = match failed {
                Ok(Err(e)) => e,
                _ => "timed out".to_owned(),
            };
            tracing::warn!(gate = %gate.config.name, upstream = %gate.config.upstream, %error, "upstream handshake failed");
            let r = unreachable(greeted.seq.wrapping_add(1));
            return refuse(&gate, Some(greeted.stream), Some(r)).await;
        }
    };
    let client = relay::Client {
        stream: greeted.stream,
        peer,
    };
    let legs = relay::Legs {
        // Sequence numbers the server uses = the client's + this, until authentication ends.
        offset: upstream_seq.wrapping_sub(greeted.seq),
        connection_id,
    };
    relay::relay(&gate, login, client, upstream, legs, recheck).await;
}
