//! A PostgreSQL client on the wire, for what psql does not let a test do through the gate: a
//! small receive buffer and a result left unread, a pipeline sent in one write, a cancel
//! request over TLS. Protocol 3.0, TLS by rustls verifying the test CA, SCRAM-SHA-256 without
//! channel binding (ring); blocking, with timeouts on every read.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::postgres;

pub trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

pub struct Wire {
    stream: Box<dyn Io>,
    /// The backend's pid and secret, from `BackendKeyData`.
    pub key: Option<(u32, Vec<u8>)>,
}

/// One message from the server: its type and body.
pub type Message = (u8, Vec<u8>);

impl Wire {
    /// Connects to 127.0.0.1:`port`, with `SO_RCVBUF` set to `receive_buffer` before the
    /// handshake when given (the kernel then advertises a small window), over TLS when `tls`.
    pub fn connect(port: u16, tls: bool, receive_buffer: Option<usize>) -> io::Result<Wire> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        socket.connect(&addr.into())?;
        let mut tcp: TcpStream = socket.into();
        tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(15)))?;
        tcp.set_nodelay(true)?;
        if !tls {
            return Ok(Wire {
                stream: Box::new(tcp),
                key: None,
            });
        }
        tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47])?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)?;
        if answer[0] != b'S' {
            return Err(io::Error::other("the gate refused TLS"));
        }
        Ok(Wire {
            stream: Box::new(tls_client(tcp)?),
            key: None,
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    pub fn read_message(&mut self) -> io::Result<Message> {
        let mut header = [0u8; 5];
        self.stream.read_exact(&mut header)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        self.stream.read_exact(&mut body)?;
        Ok((header[0], body))
    }

    /// Messages up to and including the next `ReadyForQuery`.
    pub fn until_ready(&mut self) -> io::Result<Vec<Message>> {
        let mut out = Vec::new();
        loop {
            let m = self.read_message()?;
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                return Ok(out);
            }
        }
    }

    /// Messages up to and including the next `ReadyForQuery`, read as a slow client reads:
    /// a pause after every `every` bytes.
    pub fn until_ready_slowly(
        &mut self,
        every: usize,
        pause: Duration,
    ) -> io::Result<Vec<Message>> {
        let mut out = Vec::new();
        let mut since_pause = 0;
        loop {
            let m = self.read_message()?;
            since_pause += m.1.len() + 5;
            if since_pause >= every {
                std::thread::sleep(pause);
                since_pause = 0;
            }
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                return Ok(out);
            }
        }
    }

    /// Reads to the end of the stream: `Ok` on a clean close (TLS `close_notify`).
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest)?;
        Ok(rest)
    }

    /// The start-up message for `user` on `appdb` (plus `params`) and SCRAM-SHA-256 with
    /// `password`, up to the first `ReadyForQuery`. `Err` carries the server's (or the gate's)
    /// `ErrorResponse`.
    pub fn login(
        &mut self,
        user: &[u8],
        password: &str,
        params: &[(&str, &[u8])],
    ) -> Result<(), String> {
        let mut all: Vec<(&[u8], &[u8])> = vec![(b"user", user), (b"database", b"appdb")];
        all.extend(params.iter().map(|(k, v)| (k.as_bytes(), *v)));
        self.send(&startup(&all)).map_err(|e| e.to_string())?;
        let mut scram = None;
        loop {
            let (kind, body) = self.read_message().map_err(|e| e.to_string())?;
            match kind {
                b'R' => {
                    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    match code {
                        0 => {}
                        10 => {
                            let s = Scram::new(password);
                            self.send(&s.first()).map_err(|e| e.to_string())?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().ok_or("SASL continue before start")?;
                            let reply = s.last(&body[4..])?;
                            self.send(&reply).map_err(|e| e.to_string())?;
                        }
                        12 => {}
                        other => return Err(format!("authentication {other} not supported")),
                    }
                }
                b'K' => {
                    let pid = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    self.key = Some((pid, body[4..].to_vec()));
                }
                b'E' => return Err(error_text(&body)),
                b'Z' => return Ok(()),
                _ => {}
            }
        }
    }
}

fn tls_client(
    tcp: TcpStream,
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&postgres().ca).map_err(io::Error::other)? {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(io::Error::other)?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    // Finish the handshake now, so a failure shows here.
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// `SQLSTATE: message` of an `ErrorResponse` body.
pub fn error_text(body: &[u8]) -> String {
    let mut code = String::new();
    let mut message = String::new();
    for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let value = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    format!("{code}: {message}")
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

pub fn startup(params: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        cstr(&mut body, k);
        cstr(&mut body, v);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A simple `Query`.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, sql.as_bytes());
    message(b'Q', &body)
}

/// `Parse` (unnamed, parameter types left to the server), `Bind` with text parameters,
/// `Execute`, `Sync`: one extended-protocol statement.
pub fn extended(sql: &str, params: &[&[u8]]) -> Vec<u8> {
    let mut parse = Vec::new();
    cstr(&mut parse, b"");
    cstr(&mut parse, sql.as_bytes());
    parse.extend_from_slice(&0u16.to_be_bytes());
    let mut bind = Vec::new();
    cstr(&mut bind, b"");
    cstr(&mut bind, b"");
    bind.extend_from_slice(&0u16.to_be_bytes());
    bind.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        bind.extend_from_slice(&(p.len() as u32).to_be_bytes());
        bind.extend_from_slice(p);
    }
    bind.extend_from_slice(&0u16.to_be_bytes());
    let mut execute = Vec::new();
    cstr(&mut execute, b"");
    execute.extend_from_slice(&0u32.to_be_bytes());
    let mut out = message(b'P', &parse);
    out.extend(message(b'B', &bind));
    out.extend(message(b'E', &execute));
    out.extend(message(b'S', b""));
    out
}

pub fn copy_data(row: &[u8]) -> Vec<u8> {
    message(b'd', row)
}

pub fn copy_done() -> Vec<u8> {
    message(b'c', b"")
}

/// A `CancelRequest` packet.
pub fn cancel_request(pid: u32, secret: &[u8]) -> Vec<u8> {
    let mut out = ((12 + secret.len()) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&80_877_102u32.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(secret);
    out
}

/// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding.
struct Scram {
    password: String,
    first_bare: String,
    nonce: String,
}

impl Scram {
    fn new(password: &str) -> Scram {
        use ring::rand::SecureRandom;
        let mut raw = [0u8; 18];
        ring::rand::SystemRandom::new().fill(&mut raw).unwrap();
        let nonce = base64(&raw);
        Scram {
            password: password.to_owned(),
            first_bare: format!("n=,r={nonce}"),
            nonce,
        }
    }

    /// `SASLInitialResponse`.
    fn first(&self) -> Vec<u8> {
        let data = format!("n,,{}", self.first_bare);
        let mut body = Vec::new();
        cstr(&mut body, b"SCRAM-SHA-256");
        body.extend_from_slice(&(data.len() as u32).to_be_bytes());
        body.extend_from_slice(data.as_bytes());
        message(b'p', &body)
    }

    /// The `SASLResponse` to the server's first message.
    fn last(&self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        use ring::{digest, hmac, pbkdf2};
        let server_first = String::from_utf8_lossy(server_first).into_owned();
        let field = |k: &str| {
            server_first
                .split(',')
                .find_map(|f| f.strip_prefix(k))
                .ok_or(format!("no {k} in {server_first}"))
        };
        let nonce = field("r=")?;
        if !nonce.starts_with(&self.nonce) {
            return Err("server nonce does not extend ours".into());
        }
        let salt = unbase64(field("s=")?);
        let rounds: u32 = field("i=")?.parse().map_err(|_| "bad iteration count")?;
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(rounds).ok_or("zero iterations")?,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored = digest::digest(&digest::SHA256, client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref()),
            auth.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let data = format!("{without_proof},p={}", base64(&proof));
        Ok(message(b'p', data.as_bytes()))
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_round_trips() {
    for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
        assert_eq!(unbase64(&base64(input)), input);
    }
    assert_eq!(base64(b"n,,"), "biws");
}
