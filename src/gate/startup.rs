//! The first packets a PostgreSQL client sends (protocol v3, "start-up" phase): a pure parser
//! with typed errors and a size cap, shared by the gate and `fuzz/fuzz_targets/pg_startup.rs`.
//!
//! Every start-up packet is an `Int32` length (itself included) then an `Int32` code: the
//! protocol version of a `StartupMessage` (3.0 = 196608) followed by NUL-terminated
//! key/value pairs and a final NUL, or one of the special request codes below.

/// `SSLRequest`: the client asks for TLS before anything else.
pub const SSL_REQUEST: u32 = 80_877_103;
/// `GSSENCRequest`: the client asks for GSSAPI encryption.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// `CancelRequest`: cancel the query running on backend `pid` (with its secret key).
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Protocol 3.0; 3.x minors share the start-up format.
pub const PROTOCOL_3_0: u32 = 196_608;

/// The longest cancel key accepted (protocol 3.2 allows up to 256 bytes; 3.0 sends 4).
pub const MAX_CANCEL_KEY: usize = 256;

/// A start-up message's parameters in order, as bytes.
pub type Params = Vec<(Vec<u8>, Vec<u8>)>;

/// One parsed start-up packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: u32,
        secret: Vec<u8>,
    },
    Message {
        version: u32,
        /// The parameters in order (`user`, `database`, `application_name`, options …), as
        /// bytes: the server takes them without a character set, and so does the gate.
        params: Params,
    },
}

impl Startup {
    /// The value of a `StartupMessage` parameter.
    pub fn param(&self, key: &str) -> Option<&[u8]> {
        match self {
            Startup::Message { params, .. } => params
                .iter()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v.as_slice()),
            _ => None,
        }
    }
}

/// Why a start-up packet is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("start-up packet length {0} is shorter than its 8-byte header")]
    TooShort(u32),
    #[error("start-up packet of {len} bytes is longer than the {max}-byte limit")]
    TooLong { len: u32, max: usize },
    #[error("start-up packet is {have} bytes, its length field says {want}")]
    LengthMismatch { have: usize, want: usize },
    #[error("unsupported protocol version {major}.{minor}")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("cancel request with a {0}-byte key")]
    BadCancelKey(usize),
    #[error("special request code {0} with a body")]
    UnexpectedBody(u32),
    #[error("start-up parameters are not NUL-terminated")]
    Unterminated,
    #[error("start-up parameter {0:?} has no value")]
    MissingValue(String),
    #[error("start-up parameter {0:?} appears twice")]
    Duplicate(String),
}

/// The total length of a packet from its first four bytes, checked against `max`.
pub fn packet_len(header: [u8; 4], max: usize) -> Result<usize, StartupError> {
    let len = u32::from_be_bytes(header);
    if len < 8 {
        return Err(StartupError::TooShort(len));
    }
    let n = usize::try_from(len).map_err(|_| StartupError::TooLong { len, max })?;
    if n > max {
        return Err(StartupError::TooLong { len, max });
    }
    Ok(n)
}

/// Parses one whole packet (length field included), at most `max` bytes.
pub fn parse(packet: &[u8], max: usize) -> Result<Startup, StartupError> {
    let header: [u8; 4] =
        packet
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or(StartupError::LengthMismatch {
                have: packet.len(),
                want: 8,
            })?;
    let len = packet_len(header, max)?;
    if packet.len() != len {
        return Err(StartupError::LengthMismatch {
            have: packet.len(),
            want: len,
        });
    }
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let body = &packet[8..];
    match code {
        SSL_REQUEST | GSSENC_REQUEST if !body.is_empty() => Err(StartupError::UnexpectedBody(code)),
        SSL_REQUEST => Ok(Startup::SslRequest),
        GSSENC_REQUEST => Ok(Startup::GssEncRequest),
        CANCEL_REQUEST => {
            let secret = body.get(4..).unwrap_or_default();
            if body.len() < 8 || secret.len() > MAX_CANCEL_KEY {
                return Err(StartupError::BadCancelKey(body.len().saturating_sub(4)));
            }
            let pid = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            Ok(Startup::Cancel {
                pid,
                secret: secret.to_vec(),
            })
        }
        version if version >> 16 == 3 => Ok(Startup::Message {
            version,
            params: params(body)?,
        }),
        version => Err(StartupError::UnsupportedVersion {
            major: (version >> 16) as u16,
            minor: (version & 0xffff) as u16,
        }),
    }
}

/// `key\0value\0 … \0`, taken as bytes: PostgreSQL accepts any bytes but NUL here (an
/// `application_name` in Latin-1, say), so refusing what is not UTF-8 would refuse clients the
/// server serves.
fn params(body: &[u8]) -> Result<Params, StartupError> {
    let Some((&0, pairs)) = body.split_last() else {
        return Err(StartupError::Unterminated);
    };
    let mut out: Params = Vec::new();
    let Some((&0, pairs)) = pairs.split_last() else {
        return if pairs.is_empty() {
            Ok(out)
        } else {
            Err(StartupError::Unterminated)
        };
    };
    let name = |key: &[u8]| String::from_utf8_lossy(key).into_owned();
    let mut fields = pairs.split(|b| *b == 0);
    while let Some(key) = fields.next() {
        let Some(value) = fields.next() else {
            return Err(StartupError::MissingValue(name(key)));
        };
        if key.is_empty() {
            return Err(StartupError::MissingValue(String::new()));
        }
        // The server keeps the last of two; a real client never sends two, and two `user`s
        // would leave the gate and the server to pick differently.
        if out.iter().any(|(k, _)| k == key) {
            return Err(StartupError::Duplicate(name(key)));
        }
        out.push((key.to_vec(), value.to_vec()));
    }
    Ok(out)
}

/// A `StartupMessage` packet, for tests and the fuzz target's round trip.
pub fn encode_message<K: AsRef<[u8]>, V: AsRef<[u8]>>(version: u32, params: &[(K, V)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_ref());
        body.push(0);
        body.extend_from_slice(v.as_ref());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAX: usize = 10 * 1024;

    fn pairs(p: &[(&str, &str)]) -> Params {
        p.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn packet(code: u32, body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn packets_as_data() {
        let cases: Vec<(Vec<u8>, Result<Startup, StartupError>)> = vec![
            (packet(SSL_REQUEST, b""), Ok(Startup::SslRequest)),
            (packet(GSSENC_REQUEST, b""), Ok(Startup::GssEncRequest)),
            (
                packet(SSL_REQUEST, b"x"),
                Err(StartupError::UnexpectedBody(SSL_REQUEST)),
            ),
            (
                packet(CANCEL_REQUEST, &[0, 0, 0, 42, 1, 2, 3, 4]),
                Ok(Startup::Cancel {
                    pid: 42,
                    secret: vec![1, 2, 3, 4],
                }),
            ),
            (
                packet(CANCEL_REQUEST, &[0, 0, 0, 42]),
                Err(StartupError::BadCancelKey(0)),
            ),
            (
                encode_message(PROTOCOL_3_0, &[("user", "alice"), ("database", "appdb")]),
                Ok(Startup::Message {
                    version: PROTOCOL_3_0,
                    params: pairs(&[("user", "alice"), ("database", "appdb")]),
                }),
            ),
            (
                encode_message(PROTOCOL_3_0, &[("options", "")]),
                Ok(Startup::Message {
                    version: PROTOCOL_3_0,
                    params: pairs(&[("options", "")]),
                }),
            ),
            (
                encode_message::<&str, &str>(PROTOCOL_3_0, &[]),
                Ok(Startup::Message {
                    version: PROTOCOL_3_0,
                    params: vec![],
                }),
            ),
            (
                encode_message(PROTOCOL_3_0, &[("user", "a"), ("user", "b")]),
                Err(StartupError::Duplicate("user".into())),
            ),
            (
                packet(PROTOCOL_3_0, b"user\0alice"),
                Err(StartupError::Unterminated),
            ),
            (
                packet(PROTOCOL_3_0, b"user\0\0"),
                Err(StartupError::MissingValue("user".into())),
            ),
            // Not UTF-8: taken as the bytes the server takes.
            (
                packet(PROTOCOL_3_0, b"application_name\0caf\xe9\0\0"),
                Ok(Startup::Message {
                    version: PROTOCOL_3_0,
                    params: vec![(b"application_name".to_vec(), b"caf\xe9".to_vec())],
                }),
            ),
            (
                packet(2 << 16, b"\0"),
                Err(StartupError::UnsupportedVersion { major: 2, minor: 0 }),
            ),
            (vec![0, 0, 0, 4, 0, 0, 0, 0], Err(StartupError::TooShort(4))),
            (
                vec![0, 0, 0, 9, 0, 0, 0, 0],
                Err(StartupError::LengthMismatch { have: 8, want: 9 }),
            ),
            (
                vec![0x7f, 0xff, 0xff, 0xff],
                Err(StartupError::TooLong {
                    len: 0x7fff_ffff,
                    max: MAX,
                }),
            ),
            (
                vec![1, 2],
                Err(StartupError::LengthMismatch { have: 2, want: 8 }),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(&bytes, MAX), want, "{bytes:?}");
        }
    }

    #[test]
    fn the_cap_is_the_whole_packet() {
        let p = encode_message(PROTOCOL_3_0, &[("user", &"a".repeat(100))]);
        assert!(parse(&p, p.len()).is_ok());
        assert_eq!(
            parse(&p, p.len() - 1),
            Err(StartupError::TooLong {
                len: p.len() as u32,
                max: p.len() - 1
            })
        );
    }

    #[test]
    fn params_are_found_by_name() {
        let p = parse(
            &encode_message(
                PROTOCOL_3_0,
                &[("user", "bob"), ("application_name", "psql")],
            ),
            MAX,
        )
        .unwrap();
        assert_eq!(p.param("user"), Some(&b"bob"[..]));
        assert_eq!(p.param("application_name"), Some(&b"psql"[..]));
        assert_eq!(p.param("database"), None);
    }

    /// The fuzz target's properties over every one-byte change of a real start-up message.
    #[test]
    fn one_byte_mutations_never_panic_and_accepted_ones_round_trip() {
        let seed = encode_message(
            PROTOCOL_3_0,
            &[
                ("user", "alice"),
                ("database", "appdb"),
                ("application_name", "psql"),
            ],
        );
        for i in 0..seed.len() {
            for b in [0u8, 1, b'a', 0x7f, 0xff] {
                let mut m = seed.clone();
                m[i] = b;
                if let Ok(Startup::Message { version, params }) = parse(&m, MAX) {
                    assert_eq!(encode_message(version, &params), m, "byte {i} = {b}");
                }
            }
        }
    }
}
