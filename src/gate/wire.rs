//! The few protocol v3 messages the gate writes or reads, and message framing of both
//! streams. Pure: no I/O.

/// A framing error in a stream of messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message length {0} is shorter than its own length field")]
    BadLength(u32),
    #[error("message of {len} bytes during authentication exceeds {max} bytes")]
    TooLong { len: usize, max: usize },
}

/// Server messages the gate reads.
pub mod server {
    /// `AuthenticationOk` and the other authentication requests.
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY: u8 = b'K';
    pub const ERROR: u8 = b'E';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// `CopyInResponse`: the server takes `CopyData` until `CopyDone`/`CopyFail`.
    pub const COPY_IN: u8 = b'G';
}

/// Client messages the gate reads.
pub mod client {
    /// Password, SASL and GSS responses: the only messages before `AuthenticationOk`.
    pub const AUTHENTICATION: u8 = b'p';
    pub const QUERY: u8 = b'Q';
    pub const EXECUTE: u8 = b'E';
    pub const SYNC: u8 = b'S';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
}

/// An `ErrorResponse` (`E`) with severity, SQLSTATE and message.
pub fn error_response(severity: &str, code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(32 + message.len());
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        // A NUL inside a value would end it early; none of ours has one, but be exact.
        body.extend(value.bytes().filter(|b| *b != 0));
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(b'E');
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A FATAL `ErrorResponse`.
pub fn fatal(code: &str, message: &str) -> Vec<u8> {
    error_response("FATAL", code, message)
}

/// The mechanism a client must not pick through a gate that terminated TLS.
pub const SCRAM_PLUS: &[u8] = b"SCRAM-SHA-256-PLUS";

/// If `message` is an `AuthenticationSASL` (`R`, code 10), the same message without
/// `SCRAM-SHA-256-PLUS`; `None` for every other message.
pub fn strip_channel_binding(message: &[u8]) -> Option<Vec<u8>> {
    if message.len() < 9 || message[0] != b'R' || message[5..9] != 10u32.to_be_bytes() {
        return None;
    }
    let mut body = 10u32.to_be_bytes().to_vec();
    for mechanism in message[9..].split(|b| *b == 0) {
        if mechanism.is_empty() || mechanism == SCRAM_PLUS {
            continue;
        }
        body.extend_from_slice(mechanism);
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'R'];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

/// Takes one whole message (type byte, length, body) off the front of `buf`, if there is one.
pub fn next_message(buf: &mut Vec<u8>, max: usize) -> Result<Option<Vec<u8>>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength(len));
    }
    let total = len as usize + 1;
    if total > max {
        return Err(FrameError::TooLong { len: total, max });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let rest = buf.split_off(total);
    Ok(Some(std::mem::replace(buf, rest)))
}

/// The request code of an authentication message (`R`): 0 is `AuthenticationOk`.
pub fn authentication_code(message: &[u8]) -> Option<u32> {
    if message.first() != Some(&server::AUTHENTICATION) || message.len() < 9 {
        return None;
    }
    Some(u32::from_be_bytes([
        message[5], message[6], message[7], message[8],
    ]))
}

/// A `ParameterStatus` (`S`): the parameter's name and value.
pub fn parameter_status(message: &[u8]) -> Option<(&[u8], &[u8])> {
    if message.first() != Some(&server::PARAMETER_STATUS) {
        return None;
    }
    let mut fields = message.get(5..)?.split(|b| *b == 0);
    Some((fields.next()?, fields.next()?))
}

/// `BackendKeyData` (`K`): the backend's pid and secret key.
pub fn backend_key(message: &[u8]) -> Option<(u32, Vec<u8>)> {
    if message.first() != Some(&b'K') || message.len() < 13 {
        return None;
    }
    let pid = u32::from_be_bytes([message[5], message[6], message[7], message[8]]);
    Some((pid, message[9..].to_vec()))
}

/// A `CancelRequest` packet for backend `pid` with its secret key.
pub fn cancel_request(pid: u32, secret: &[u8]) -> Vec<u8> {
    let mut out = ((12 + secret.len()) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&super::startup::CANCEL_REQUEST.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(secret);
    out
}

/// The `SSLRequest` packet.
pub fn ssl_request() -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&8u32.to_be_bytes());
    out[4..].copy_from_slice(&super::startup::SSL_REQUEST.to_be_bytes());
    out
}

/// Tracks message boundaries in a stream without buffering messages, so a long result (or a
/// long `COPY`) streams through, a session can still be ended between two messages, and the
/// type of each message is seen.
#[derive(Debug, Default, Clone)]
pub struct Boundaries {
    header: [u8; 5],
    filled: usize,
    remaining: usize,
    /// The type byte of the last message whose header was read.
    last: u8,
}

impl crate::front::ending::Framing for Boundaries {
    fn at_boundary(&self) -> bool {
        Boundaries::at_boundary(self)
    }

    fn to_boundary(&mut self, chunk: &[u8]) -> Option<usize> {
        self.advance(chunk, true).ok()
    }
}

impl Boundaries {
    /// Whether everything seen so far ends with a whole message.
    pub fn at_boundary(&self) -> bool {
        self.filled == 0 && self.remaining == 0
    }

    /// Whether the stream so far ends with a whole `ReadyForQuery`: the server waits for the
    /// client.
    pub fn ready_for_query(&self) -> bool {
        self.at_boundary() && self.last == b'Z'
    }

    /// Consumes `chunk` and returns how many of its bytes were consumed: all of them, or with
    /// `stop`, the bytes up to the first message boundary.
    pub fn advance(&mut self, chunk: &[u8], stop: bool) -> Result<usize, FrameError> {
        self.advance_with(chunk, stop, |_| {})
    }

    /// [`Boundaries::advance`], calling `message` with the type byte of each message whose
    /// header is complete.
    pub fn advance_with(
        &mut self,
        chunk: &[u8],
        stop: bool,
        mut message: impl FnMut(u8),
    ) -> Result<usize, FrameError> {
        let mut i = 0;
        loop {
            if stop && self.at_boundary() {
                return Ok(i);
            }
            if i == chunk.len() {
                return Ok(i);
            }
            if self.remaining > 0 {
                let n = self.remaining.min(chunk.len() - i);
                self.remaining -= n;
                i += n;
                continue;
            }
            let n = (5 - self.filled).min(chunk.len() - i);
            self.header[self.filled..self.filled + n].copy_from_slice(&chunk[i..i + n]);
            self.filled += n;
            i += n;
            if self.filled == 5 {
                let h = &self.header;
                let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
                if len < 4 {
                    return Err(FrameError::BadLength(len));
                }
                self.remaining = len as usize - 4;
                self.filled = 0;
                self.last = h[0];
                message(self.last);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn channel_binding_is_removed_from_sasl_only() {
        let mut body = 10u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let sasl = message(b'R', &body);
        let mut want = 10u32.to_be_bytes().to_vec();
        want.extend_from_slice(b"SCRAM-SHA-256\0\0");
        assert_eq!(strip_channel_binding(&sasl), Some(message(b'R', &want)));
        // AuthenticationOk, and any other message, pass unchanged.
        assert_eq!(
            strip_channel_binding(&message(b'R', &0u32.to_be_bytes())),
            None
        );
        assert_eq!(strip_channel_binding(&message(b'Z', b"I")), None);
    }

    #[test]
    fn error_response_fields() {
        let e = fatal("28000", "no");
        assert_eq!(
            e,
            message(b'E', b"SFATAL\0VFATAL\0C28000\0Mno\0\0"),
            "{:?}",
            String::from_utf8_lossy(&e)
        );
    }

    #[test]
    fn whole_messages_come_off_the_front() {
        let mut buf = message(b'K', &[0, 0, 0, 7, 1, 2, 3, 4]);
        buf.extend_from_slice(&message(b'Z', b"I")[..3]);
        let k = next_message(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(backend_key(&k), Some((7, vec![1, 2, 3, 4])));
        assert_eq!(next_message(&mut buf, 1024), Ok(None));
        assert_eq!(buf.len(), 3);
        let mut bad = vec![b'Z', 0, 0, 0, 3];
        assert_eq!(next_message(&mut bad, 1024), Err(FrameError::BadLength(3)));
        let mut big = message(b'D', &[0; 100]);
        assert!(matches!(
            next_message(&mut big, 50),
            Err(FrameError::TooLong { .. })
        ));
    }

    #[test]
    fn authentication_and_parameter_status_are_read() {
        assert_eq!(
            authentication_code(&message(b'R', &0u32.to_be_bytes())),
            Some(0)
        );
        assert_eq!(
            authentication_code(&message(b'R', &10u32.to_be_bytes())),
            Some(10)
        );
        assert_eq!(authentication_code(&message(b'R', b"")), None);
        assert_eq!(authentication_code(&message(b'S', b"xxxx")), None);
        let status = message(b'S', b"session_authorization\0alice\0");
        assert_eq!(
            parameter_status(&status),
            Some((&b"session_authorization"[..], &b"alice"[..]))
        );
        assert_eq!(parameter_status(&message(b'S', b"x")), None);
        assert_eq!(parameter_status(&message(b'Z', b"I")), None);
    }

    #[test]
    fn boundaries_report_each_message_type() {
        let mut stream = message(b'Q', b"select 1\0");
        stream.extend_from_slice(&message(b'S', b""));
        stream.extend_from_slice(&message(b'd', &[0; 40]));
        let mut seen = Vec::new();
        let mut b = Boundaries::default();
        for piece in stream.chunks(7) {
            b.advance_with(piece, false, |k| seen.push(k)).unwrap();
        }
        assert_eq!(seen, b"QSd");
        assert!(b.at_boundary());
    }

    #[test]
    fn boundaries_across_split_reads() {
        let mut stream = message(b'D', &[9; 10]);
        stream.extend_from_slice(&message(b'C', b"SELECT 1\0"));
        stream.extend_from_slice(&message(b'Z', b"I"));
        let first = stream.len() - 6;
        // Byte by byte: at a boundary exactly after each message.
        let mut b = Boundaries::default();
        let mut at = Vec::new();
        for (i, byte) in stream.iter().enumerate() {
            assert_eq!(b.advance(&[*byte], false), Ok(1));
            if b.at_boundary() {
                at.push(i + 1);
            }
        }
        assert_eq!(at, vec![15, 29, stream.len()]);
        assert!(b.ready_for_query());
        // With `stop` in the middle of the first message, consumption ends at its end.
        let mut b = Boundaries::default();
        assert_eq!(b.advance(&stream[..3], false), Ok(3));
        assert_eq!(b.advance(&stream[3..first], true), Ok(12));
        assert!(b.at_boundary() && !b.ready_for_query());
        assert_eq!(
            Boundaries::default().advance(&[b'Z', 0, 0, 0, 1], false),
            Err(FrameError::BadLength(1))
        );
    }
}
