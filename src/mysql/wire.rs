//! The MariaDB/MySQL client/server protocol, as far as the gate reads it: packets (a 3-byte
//! little-endian length, a sequence number, the payload), the server's `HandshakeV10`, the
//! client's short `SSLRequest` and `HandshakeResponse41`, `COM_CHANGE_USER`, and the ERR
//! packet. Pure and bounded, shared with `fuzz/fuzz_targets/mysql_handshake.rs`.
//!
//! References: MariaDB's "Client/Server Protocol" pages (`Connection`: Initial Handshake
//! Packet, SSLRequest Packet, Handshake Response Packet; `0-packet`: ERR_Packet; `Protocol
//! Data Types`: length-encoded integers and strings; `COM_CHANGE_USER`).

/// Largest payload of one packet; a payload this long continues in the next packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// Capability flags the gate reads or changes.
pub mod caps {
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const COMPRESS: u32 = 1 << 5;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const SSL: u32 = 1 << 11;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    /// Result sets end with an OK packet instead of EOF (the gate takes it out of the offer).
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    /// MySQL 8's zstd compression, framed like `COMPRESS`.
    pub const ZSTD: u32 = 1 << 26;
}

/// The first payload byte of a server's reply that ends or steers authentication.
pub mod reply {
    pub const OK: u8 = 0x00;
    pub const MORE_DATA: u8 = 0x01;
    pub const EOF_OR_SWITCH: u8 = 0xFE;
    pub const ERR: u8 = 0xFF;
}

/// The command byte of `COM_CHANGE_USER`: the session becomes another user.
pub const COM_CHANGE_USER: u8 = 0x11;
/// The command byte of `COM_QUERY`.
pub const COM_QUERY: u8 = 0x03;
/// The command byte of `COM_QUIT`.
pub const COM_QUIT: u8 = 0x01;

/// Why bytes are not the packet the gate expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("packet of {len} bytes exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("{0} is cut short")]
    Truncated(&'static str),
    #[error("protocol version {0} is not 10")]
    Version(u8),
    #[error("the client does not speak protocol 4.1 (CLIENT_PROTOCOL_41)")]
    OldProtocol,
    #[error("the client asks for compression, which the gate does not offer")]
    Compression,
    #[error("{0} is malformed")]
    Malformed(&'static str),
}

/// One packet, header included (for relaying unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet(pub Vec<u8>);

impl Packet {
    pub fn new(seq: u8, payload: &[u8]) -> Packet {
        let len = payload.len().min(MAX_PAYLOAD);
        let mut p = Vec::with_capacity(4 + len);
        p.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        p.push(seq);
        p.extend_from_slice(&payload[..len]);
        Packet(p)
    }

    pub fn seq(&self) -> u8 {
        self.0[3]
    }

    pub fn set_seq(&mut self, seq: u8) {
        self.0[3] = seq;
    }

    pub fn payload(&self) -> &[u8] {
        &self.0[4..]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.0[4..]
    }

    /// The first payload byte (`0` for an empty payload).
    pub fn kind(&self) -> u8 {
        self.0.get(4).copied().unwrap_or(0)
    }
}

/// The length a packet header announces.
pub fn payload_len(header: [u8; 4]) -> usize {
    usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16
}

/// Takes the first whole packet off `buf`, if it holds one; refuses one whose payload is
/// longer than `max`.
pub fn next_packet(buf: &mut Vec<u8>, max: usize) -> Result<Option<Packet>, WireError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let len = payload_len([header[0], header[1], header[2], header[3]]);
    if len > max {
        return Err(WireError::TooLong { len, max });
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let rest = buf.split_off(4 + len);
    Ok(Some(Packet(std::mem::replace(buf, rest))))
}

/// Where a stream of packets is: between two packets, or inside one (how many bytes of it are
/// still to come). Tracks boundaries without holding bytes, for relaying.
#[derive(Debug, Default, Clone)]
pub struct Boundaries {
    /// Header bytes of the next packet seen so far.
    header: Vec<u8>,
    /// Payload bytes of the current packet still to come.
    remaining: usize,
    /// A packet whose header is in but whose first payload byte is not yet: (seq, length).
    announced: Option<(u8, usize)>,
}

impl Boundaries {
    pub fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.remaining == 0
    }

    /// Advances over `chunk`, calling `each(seq, first_payload_byte, payload_len)` once for
    /// every packet, as soon as its first payload byte is in (`None` for an empty payload).
    /// With `stop_at_boundary`, stops at the first boundary reached and returns how many bytes
    /// it took.
    pub fn advance(
        &mut self,
        chunk: &[u8],
        stop_at_boundary: bool,
        mut each: impl FnMut(u8, Option<u8>, usize),
    ) -> usize {
        let mut i = 0;
        while i < chunk.len() {
            if self.remaining > 0 {
                if let Some((seq, len)) = self.announced.take() {
                    each(seq, Some(chunk[i]), len);
                }
                let take = self.remaining.min(chunk.len() - i);
                self.remaining -= take;
                i += take;
            } else {
                self.header.push(chunk[i]);
                i += 1;
                if self.header.len() == 4 {
                    let h = [
                        self.header[0],
                        self.header[1],
                        self.header[2],
                        self.header[3],
                    ];
                    self.remaining = payload_len(h);
                    self.header.clear();
                    if self.remaining == 0 {
                        each(h[3], None, 0);
                    } else {
                        self.announced = Some((h[3], self.remaining));
                    }
                }
            }
            if stop_at_boundary && self.at_boundary() {
                return i;
            }
        }
        i
    }
}

impl crate::front::ending::Framing for Boundaries {
    fn at_boundary(&self) -> bool {
        Boundaries::at_boundary(self)
    }

    fn to_boundary(&mut self, chunk: &[u8]) -> Option<usize> {
        Some(self.advance(chunk, true, |_, _, _| {}))
    }
}

/// An ERR packet: `code`, `SQLSTATE` and a message a person reads.
pub fn err_packet(seq: u8, code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut payload = vec![reply::ERR];
    payload.extend_from_slice(&code.to_le_bytes());
    payload.push(b'#');
    let mut state = state.as_bytes().to_vec();
    state.resize(5, b'0');
    payload.extend_from_slice(&state);
    payload.extend_from_slice(message.as_bytes());
    Packet::new(seq, &payload).0
}

/// The message of an ERR payload (after code and SQLSTATE), for logs.
pub fn err_message(payload: &[u8]) -> String {
    let rest = payload.get(3..).unwrap_or_default();
    let rest = match rest.first() {
        Some(b'#') => rest.get(6..).unwrap_or_default(),
        _ => rest,
    };
    String::from_utf8_lossy(rest).into_owned()
}

/// A byte reader over a payload that never reads past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { bytes, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated(self.what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A NUL-terminated string (a missing NUL ends it at the end of the payload, as the
    /// server reads it).
    fn nul_str(&mut self) -> &'a [u8] {
        let end = memchr::memchr(0, self.bytes).unwrap_or(self.bytes.len());
        let s = &self.bytes[..end];
        self.bytes = self.bytes.get(end + 1..).unwrap_or_default();
        s
    }

    fn lenenc_int(&mut self) -> Result<u64, WireError> {
        Ok(match self.u8()? {
            n @ 0..=0xFA => u64::from(n),
            0xFC => u64::from(self.u16()?),
            0xFD => {
                let b = self.take(3)?;
                u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16
            }
            0xFE => {
                let b = self.take(8)?;
                u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
            _ => return Err(WireError::Malformed(self.what)),
        })
    }

    fn lenenc_bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.lenenc_int()?;
        let n = usize::try_from(n).map_err(|_| WireError::Truncated(self.what))?;
        self.take(n)
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes
    }
}

/// The server's `HandshakeV10`, as far as the gate needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: String,
    /// The server's id of the session (its thread id, `CONNECTION_ID()`, what `KILL` takes).
    pub connection_id: u32,
    pub capabilities: u32,
    /// The authentication plugin the server starts with.
    pub auth_plugin: Option<String>,
    /// The scramble (nonce) the client proves its password against: both parts joined, the
    /// trailing NUL dropped.
    pub scramble: Vec<u8>,
    /// Where the lower and upper capability bytes are in the payload.
    lower_at: usize,
    upper_at: Option<usize>,
}

impl Greeting {
    pub fn parse(payload: &[u8]) -> Result<Greeting, WireError> {
        let mut r = Reader::new(payload, "the server greeting");
        let version = r.u8()?;
        if version != 10 {
            return Err(WireError::Version(version));
        }
        let server_version = String::from_utf8_lossy(r.nul_str()).into_owned();
        let connection_id = r.u32()?;
        let mut scramble = r.take(8)?.to_vec();
        r.take(1)?;
        let lower_at = payload.len() - r.rest().len();
        let lower = u32::from(r.u16()?);
        let mut g = Greeting {
            server_version,
            connection_id,
            capabilities: lower,
            auth_plugin: None,
            scramble: Vec::new(),
            lower_at,
            upper_at: None,
        };
        if r.is_empty() {
            g.scramble = scramble;
            return Ok(g);
        }
        r.take(1)?; // character set
        r.take(2)?; // status flags
        g.upper_at = Some(payload.len() - r.rest().len());
        g.capabilities |= u32::from(r.u16()?) << 16;
        let auth_data_len = usize::from(r.u8()?);
        r.take(10)?; // reserved (MariaDB: its extended capabilities in the last four)
        if g.capabilities & caps::SECURE_CONNECTION != 0 {
            let n = auth_data_len.saturating_sub(8).max(13);
            let part2 = r.take(n.min(r.rest().len()))?;
            scramble.extend_from_slice(part2);
            if scramble.last() == Some(&0) {
                scramble.pop();
            }
        }
        if g.capabilities & caps::PLUGIN_AUTH != 0 {
            g.auth_plugin = Some(String::from_utf8_lossy(r.nul_str()).into_owned());
        }
        g.scramble = scramble;
        Ok(g)
    }

    /// The payload with capabilities `set` set and `clear` cleared.
    pub fn with_capabilities(&self, payload: &[u8], set: u32, clear: u32) -> Vec<u8> {
        let caps = (self.capabilities | set) & !clear;
        let mut out = payload.to_vec();
        out[self.lower_at..self.lower_at + 2].copy_from_slice(&(caps as u16).to_le_bytes());
        if let Some(at) = self.upper_at {
            out[at..at + 2].copy_from_slice(&((caps >> 16) as u16).to_le_bytes());
        }
        out
    }
}

/// What a client sends after the greeting: the short `SSLRequest` (it switches to TLS next),
/// or its `HandshakeResponse41`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    SslRequest { capabilities: u32 },
    Response(Response),
}

/// The client's `HandshakeResponse41`, as the gate decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub capabilities: u32,
    /// The user name as sent (the server reads it up to its NUL).
    pub user: Vec<u8>,
    /// The schema it asks for (`CLIENT_CONNECT_WITH_DB`).
    pub database: Option<Vec<u8>>,
    /// The authentication plugin the client answered with.
    pub auth_plugin: Option<Vec<u8>>,
    /// Its connection attributes (`CLIENT_CONNECT_ATTRS`), in order.
    pub attributes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Response {
    /// The `program_name` connection attribute, the application the session names.
    pub fn program_name(&self) -> Option<String> {
        self.attributes
            .iter()
            .find(|(k, _)| k == b"program_name")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .filter(|v| !v.is_empty())
    }
}

/// The length of an `SSLRequest` payload: capabilities, max packet, character set, filler.
pub const SSL_REQUEST_LEN: usize = 32;

impl Hello {
    pub fn parse(payload: &[u8]) -> Result<Hello, WireError> {
        let mut r = Reader::new(payload, "the client's handshake response");
        let capabilities = r.u32()?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(WireError::OldProtocol);
        }
        if capabilities & (caps::COMPRESS | caps::ZSTD) != 0 {
            return Err(WireError::Compression);
        }
        r.take(4)?; // max packet size
        r.take(1)?; // character set
        r.take(23)?; // filler (MariaDB: its extended capabilities in the last four)
        if payload.len() == SSL_REQUEST_LEN && capabilities & caps::SSL != 0 {
            return Ok(Hello::SslRequest { capabilities });
        }
        let user = r.nul_str().to_vec();
        if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?;
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.take(n)?;
        } else {
            r.nul_str();
        }
        let database = (capabilities & caps::CONNECT_WITH_DB != 0).then(|| r.nul_str().to_vec());
        let auth_plugin = (capabilities & caps::PLUGIN_AUTH != 0).then(|| r.nul_str().to_vec());
        let mut attributes = Vec::new();
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            let all = r.lenenc_bytes()?;
            let mut a = Reader::new(all, "the connection attributes");
            while !a.is_empty() {
                let key = a.lenenc_bytes()?.to_vec();
                let value = a.lenenc_bytes()?.to_vec();
                attributes.push((key, value));
            }
        }
        Ok(Hello::Response(Response {
            capabilities,
            user,
            database,
            auth_plugin,
            attributes,
        }))
    }
}

/// Sets the capability flags of a client's `SSLRequest` or `HandshakeResponse41` payload.
pub fn set_client_capabilities(payload: &mut [u8], capabilities: u32) {
    if let Some(head) = payload.get_mut(..4) {
        head.copy_from_slice(&capabilities.to_le_bytes());
    }
}

/// The `SSLRequest` a client with `response`'s leading fields sends (the gate sends it to a TLS
/// upstream on the client's behalf): its first 32 bytes, with `CLIENT_SSL` set.
pub fn ssl_request_from(response: &[u8]) -> Vec<u8> {
    let mut payload = response
        .get(..SSL_REQUEST_LEN)
        .map_or_else(|| vec![0; SSL_REQUEST_LEN], <[u8]>::to_vec);
    let caps = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
    set_client_capabilities(&mut payload, caps | caps::SSL);
    payload
}

/// The user a `COM_CHANGE_USER` payload (command byte first) asks the session to become.
pub fn change_user(payload: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut r = Reader::new(payload, "COM_CHANGE_USER");
    if r.u8()? != COM_CHANGE_USER {
        return Err(WireError::Malformed("COM_CHANGE_USER"));
    }
    Ok(r.nul_str().to_vec())
}

/// The proof `mysql_native_password` sends: `SHA1(password) XOR SHA1(scramble ++
/// SHA1(SHA1(password)))` (the gate's control account logs in with it).
pub fn native_password_proof(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    use ring::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY as SHA1, digest};
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = digest(&SHA1, password);
    let stage2 = digest(&SHA1, stage1.as_ref());
    let mut ctx = Context::new(&SHA1);
    ctx.update(scramble);
    ctx.update(stage2.as_ref());
    let mix = ctx.finish();
    stage1
        .as_ref()
        .iter()
        .zip(mix.as_ref())
        .map(|(a, b)| a ^ b)
        .collect()
}

/// A length-encoded string.
pub fn lenenc_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len() as u64;
    match n {
        0..=0xFA => out.push(n as u8),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A MariaDB 10.11 greeting as it was captured from the test server (`scripts/mariadb`).
    fn greeting() -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(b"5.5.5-10.11.19-MariaDB\0");
        p.extend_from_slice(&42u32.to_le_bytes());
        p.extend_from_slice(b"abcdefgh");
        p.push(0);
        let caps = caps::PROTOCOL_41
            | caps::SSL
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::CONNECT_ATTRS
            | caps::COMPRESS;
        p.extend_from_slice(&(caps as u16).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0");
        p.extend_from_slice(b"mysql_native_password\0");
        p
    }

    #[test]
    fn a_greeting_gives_its_connection_id_scramble_and_plugin_and_its_flags_can_change() {
        let payload = greeting();
        let g = Greeting::parse(&payload).unwrap();
        assert_eq!(g.connection_id, 42);
        assert_eq!(g.scramble, b"abcdefghijklmnopqrst");
        assert_eq!(g.auth_plugin.as_deref(), Some("mysql_native_password"));
        assert_ne!(g.capabilities & caps::COMPRESS, 0);
        let changed = g.with_capabilities(&payload, 0, caps::COMPRESS | caps::SSL);
        let again = Greeting::parse(&changed).unwrap();
        assert_eq!(again.capabilities & (caps::COMPRESS | caps::SSL), 0);
        assert_eq!(
            again.capabilities | caps::COMPRESS | caps::SSL,
            g.capabilities
        );
        assert_eq!(again.scramble, g.scramble);
        // Every cut of it is an error or a greeting, never a panic.
        for n in 0..payload.len() {
            let _ = Greeting::parse(&payload[..n]);
        }
        assert_eq!(Greeting::parse(&[9, 0]), Err(WireError::Version(9)));
    }

    fn response(user: &[u8], attrs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let caps = caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::CONNECT_WITH_DB
            | caps::CONNECT_ATTRS;
        let mut p = caps.to_le_bytes().to_vec();
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user);
        p.push(0);
        p.push(20);
        p.extend_from_slice(&[7; 20]);
        p.extend_from_slice(b"appdb\0");
        p.extend_from_slice(b"mysql_native_password\0");
        let mut a = Vec::new();
        for (k, v) in attrs {
            lenenc_bytes(&mut a, k);
            lenenc_bytes(&mut a, v);
        }
        lenenc_bytes(&mut p, &a);
        p
    }

    #[test]
    fn a_response_gives_its_user_schema_plugin_and_program_name() {
        let payload = response(
            b"alice",
            &[
                (b"_client_name", b"libmariadb"),
                (b"program_name", b"mysql"),
            ],
        );
        let Hello::Response(r) = Hello::parse(&payload).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(r.user, b"alice");
        assert_eq!(r.database.as_deref(), Some(&b"appdb"[..]));
        assert_eq!(
            r.auth_plugin.as_deref(),
            Some(&b"mysql_native_password"[..])
        );
        assert_eq!(r.program_name().as_deref(), Some("mysql"));
        for n in 0..payload.len() {
            let _ = Hello::parse(&payload[..n]);
        }
        // The short SSL request.
        let mut ssl = payload[..SSL_REQUEST_LEN].to_vec();
        let caps = u32::from_le_bytes([ssl[0], ssl[1], ssl[2], ssl[3]]) | caps::SSL;
        set_client_capabilities(&mut ssl, caps);
        assert_eq!(
            Hello::parse(&ssl).unwrap(),
            Hello::SslRequest { capabilities: caps }
        );
        assert_eq!(ssl_request_from(&payload), ssl);
        // Compression and the pre-4.1 protocol are refused.
        let mut compress = payload.clone();
        set_client_capabilities(&mut compress, caps | caps::COMPRESS);
        assert_eq!(Hello::parse(&compress), Err(WireError::Compression));
        let mut old = payload;
        set_client_capabilities(&mut old, caps::SECURE_CONNECTION);
        assert_eq!(Hello::parse(&old), Err(WireError::OldProtocol));
    }

    #[test]
    fn packets_split_whole_and_boundaries_are_tracked_across_chunks() {
        let mut stream = Packet::new(0, b"\x03SELECT 1").0;
        stream.extend(Packet::new(1, b"").0);
        stream.extend(Packet::new(2, &[0xFE; 300]).0);
        let mut buf = stream[..5].to_vec();
        assert_eq!(next_packet(&mut buf, 1000).unwrap(), None);
        buf.extend_from_slice(&stream[5..]);
        let first = next_packet(&mut buf, 1000).unwrap().unwrap();
        assert_eq!((first.seq(), first.kind()), (0, COM_QUERY));
        let second = next_packet(&mut buf, 1000).unwrap().unwrap();
        assert_eq!(second.payload(), b"");
        assert_eq!(
            next_packet(&mut buf, 100),
            Err(WireError::TooLong { len: 300, max: 100 })
        );
        let mut b = Boundaries::default();
        let mut starts = Vec::new();
        for chunk in stream.chunks(3) {
            b.advance(chunk, false, |seq, kind, _| starts.push((seq, kind)));
        }
        assert!(b.at_boundary());
        assert_eq!(
            starts,
            vec![(0, Some(COM_QUERY)), (1, None), (2, Some(0xFE))]
        );
        // Stopping at the first boundary.
        let mut b = Boundaries::default();
        assert_eq!(b.advance(&stream, true, |_, _, _| {}), 13);
    }

    #[test]
    fn err_packets_carry_code_state_and_message() {
        let p = err_packet(2, 1045, "28000", "access denied");
        let mut buf = p.clone();
        let packet = next_packet(&mut buf, 100).unwrap().unwrap();
        assert_eq!(packet.seq(), 2);
        assert_eq!(&packet.payload()[..9], b"\xff\x15\x04#28000");
        assert_eq!(err_message(packet.payload()), "access denied");
    }

    /// The proof XORs back to SHA1(password) with the scramble's mix (the control account's
    /// login against a real server is tests/it/mysql.rs's).
    #[test]
    fn the_native_password_proof_xors_back_to_the_password_hash() {
        use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY as SHA1, digest};
        let scramble = b"01234567890123456789";
        let proof = native_password_proof(b"secret", scramble);
        let stage1 = digest(&SHA1, b"secret");
        let stage2 = digest(&SHA1, stage1.as_ref());
        let mut input = scramble.to_vec();
        input.extend_from_slice(stage2.as_ref());
        let mix = digest(&SHA1, &input);
        let back: Vec<u8> = proof.iter().zip(mix.as_ref()).map(|(a, b)| a ^ b).collect();
        assert_eq!(back, stage1.as_ref());
        assert!(native_password_proof(b"", scramble).is_empty());
    }

    #[test]
    fn change_user_names_the_new_user() {
        let mut p = vec![COM_CHANGE_USER];
        p.extend_from_slice(b"bob\0\x14");
        assert_eq!(change_user(&p).unwrap(), b"bob");
        assert!(change_user(&[COM_QUERY]).is_err());
        assert!(change_user(&[]).is_err());
    }
}
