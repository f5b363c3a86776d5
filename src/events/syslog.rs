//! Syslog for SIEM sinks: the RFC 5424 message around an event's CEF or OCSF text, RFC 6587
//! octet-counting frames (`<length> <message>`, the framing RFC 5425 requires over TLS), and
//! one TLS connection to a receiver, verified against a CA file or the system roots
//! ([`crate::directory::tls_config`]; verification cannot be turned off).
//!
//! Blocking I/O on purpose: a sink's sender is a thread of its own (`super::sink`), and
//! every read and write of the connection is bounded by socket timeouts.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::event::Severity;

/// Facility 10, security/authorization (authpriv), as the followed actions' syslog uses.
const FACILITY: u8 = 10;

/// This host's name for the RFC 5424 HOSTNAME field (and OCSF endpoints of local actions):
/// `$HOSTNAME`, else the kernel's, else `-` (the field's nil value).
pub fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let name = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        printable(&name, 255).unwrap_or_else(|| "-".to_owned())
    })
}

/// `text` as an RFC 5424 header field: printable US-ASCII without spaces, at most `max`
/// characters; other characters become `_`. `None` when empty.
fn printable(text: &str, max: usize) -> Option<String> {
    let field: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    (!field.is_empty()).then_some(field)
}

/// The RFC 5424 message carrying `msg`: `<PRI>1 TIMESTAMP HOSTNAME warden PROCID MSGID - MSG`,
/// PRI from facility authpriv and the event's severity, the timestamp the event's time in
/// UTC with milliseconds, MSGID the event's signature (at most 32 characters).
pub fn message(at_ms: i64, severity: Severity, msgid: &str, msg: &str) -> String {
    let level = match severity {
        Severity::High => 2,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Informational => 6,
    };
    let pri = u16::from(FACILITY) * 8 + level;
    let secs = at_ms.div_euclid(1000);
    let millis = at_ms.rem_euclid(1000);
    let stamp = crate::base::time::format_rfc3339(secs);
    let stamp = stamp.trim_end_matches('Z');
    format!(
        "<{pri}>1 {stamp}.{millis:03}Z {host} warden {pid} {msgid} - {msg}",
        host = hostname(),
        pid = std::process::id(),
        msgid = printable(msgid, 32).unwrap_or_else(|| "-".to_owned()),
    )
}

/// Appends the RFC 6587 octet-counting frame of `message` to `out`.
pub fn frame(out: &mut Vec<u8>, message: &[u8]) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message);
}

/// How long connecting, the handshake and one write may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One verified TLS connection to a syslog receiver.
pub struct Connection {
    tls: StreamOwned<ClientConnection, TcpStream>,
}

impl Connection {
    /// Connects to `address` (`host:port`) and completes the TLS handshake, verifying the
    /// receiver's certificate for `server_name` with `config`.
    pub fn open(
        address: &str,
        server_name: &str,
        config: Arc<ClientConfig>,
    ) -> std::io::Result<Connection> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e))?;
        let mut last = std::io::Error::new(ErrorKind::NotFound, format!("{address}: no address"));
        let mut tcp = None;
        for addr in address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or(last)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        let conn = ClientConnection::new(config, name)
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(Connection { tls })
    }

    /// Writes `bytes` (whole frames) and flushes them to the socket.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// Whether the receiver still holds the connection: a receiver never writes, so a read
    /// that finds an end of stream, an alert or an error means it went away (checked without
    /// waiting more than a millisecond).
    pub fn alive(&mut self) -> bool {
        if self
            .tls
            .sock
            .set_read_timeout(Some(Duration::from_millis(1)))
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 512];
        let alive = match self.tls.read(&mut buf) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        alive && self.tls.sock.set_read_timeout(Some(IO_TIMEOUT)).is_ok()
    }

    /// Ends the session politely (close_notify), without waiting for the receiver.
    pub fn close(mut self) {
        self.tls.conn.send_close_notify();
        let _ = self.tls.conn.complete_io(&mut self.tls.sock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_rfc5424_with_millisecond_utc_time() {
        let m = message(1_700_000_000_123, Severity::High, "lists.add", "CEF:0|x");
        let parts: Vec<&str> = m.splitn(8, ' ').collect();
        assert_eq!(parts[0], "<82>1");
        assert_eq!(parts[1], "2023-11-14T22:13:20.123Z");
        assert_eq!(parts[3], "warden");
        assert_eq!(parts[5], "lists.add");
        assert_eq!(parts[6], "-");
        assert_eq!(parts[7], "CEF:0|x");
        let m = message(0, Severity::Informational, "a b\u{e9}", "x");
        assert!(m.starts_with("<86>1 1970-01-01T00:00:00.000Z "));
        assert!(m.contains(" a_b_ - x"));
    }

    #[test]
    fn frames_count_octets() {
        let mut out = Vec::new();
        frame(&mut out, "h\u{e9}".as_bytes());
        assert_eq!(out, b"3 h\xc3\xa9");
    }
}
