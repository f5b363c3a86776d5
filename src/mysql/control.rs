//! The gate's control account: a connection of the gate's own to the upstream, logged in with
//! `mysql_native_password`, that stops a blocked session's statement on the server with
//! `KILL CONNECTION <id>` (the id the server's greeting gave the session).
//!
//! Why it is needed (measured against MariaDB 10.11, BENCHMARKS.md): closing the upstream of a
//! session running `SELECT SLEEP(60)` ends it only when the server next checks the
//! connection, three to five seconds later; a CPU-bound statement runs to its end whatever
//! happened to its client. `KILL CONNECTION` ends either at once, and rolls back an open
//! transaction. It needs `CONNECTION ADMIN` (MariaDB 10.5+; `SUPER` before). Without a
//! control account the gate closes the upstream and the server stops the statement when it
//! notices.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{self, Greeting, Packet, caps, reply};
use super::{Gate, Stream, read_packet};
use crate::front::ending::StopStatement;

/// The plugin the control account logs in with.
const NATIVE: &[u8] = b"mysql_native_password";

/// Why the control account could not stop a statement.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server's answer is not understood: {0}")]
    Protocol(String),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("the control account must use mysql_native_password, the server asks for {0}")]
    Plugin(String),
    #[error("timed out")]
    Timeout,
}

/// The stop the ending runs for a session of server id `connection_id`, when the gate has a
/// control account.
pub(super) fn stop(gate: &std::sync::Arc<Gate>, connection_id: u32) -> Option<StopStatement> {
    gate.control.as_ref()?;
    let gate = std::sync::Arc::clone(gate);
    Some(Box::pin(async move {
        let killed = tokio::time::timeout(gate.config.startup_timeout, kill(&gate, connection_id))
            .await
            .unwrap_or(Err(ControlError::Timeout));
        match killed {
            Ok(()) => {
                tracing::info!(gate = %gate.config.name, connection_id, "session's connection killed on the server");
            }
            Err(e) => {
                tracing::warn!(gate = %gate.config.name, connection_id, error = %e, "could not kill the session on the server; its upstream is closed");
            }
        }
    }))
}

async fn kill(gate: &Gate, connection_id: u32) -> Result<(), ControlError> {
    let Some((user, password)) = &gate.control else {
        return Ok(());
    };
    let mut conn = login(gate, user, password.expose().as_bytes()).await?;
    let query = format!("KILL CONNECTION {connection_id}");
    let mut payload = vec![wire::COM_QUERY];
    payload.extend_from_slice(query.as_bytes());
    send(&mut conn, 0, &payload).await?;
    let answer = next(&mut conn).await?;
    let _ = send(&mut conn, 0, &[wire::COM_QUIT]).await;
    match answer.kind() {
        reply::OK => Ok(()),
        // 1094: no such thread — the session is already gone, which is what was wanted.
        reply::ERR if answer.payload().get(1..3) == Some(&1094u16.to_le_bytes()) => Ok(()),
        _ => Err(ControlError::Refused(wire::err_message(answer.payload()))),
    }
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, seq: u8, payload: &[u8]) -> std::io::Result<()> {
    s.write_all(&Packet::new(seq, payload).0).await?;
    s.flush().await
}

async fn next<S: AsyncRead + Unpin>(s: &mut S) -> Result<Packet, ControlError> {
    read_packet(s, 1 << 20)
        .await
        .map_err(|_| ControlError::Protocol("the server closed the control connection".into()))
}

/// Connects and logs in as the control account, through TLS when the gate's upstream is.
async fn login(gate: &Gate, user: &str, password: &[u8]) -> Result<Stream, ControlError> {
    let c = &gate.config;
    let mut tcp = TcpStream::connect((c.upstream_host.as_str(), c.upstream_port)).await?;
    let greeting_packet = next(&mut tcp).await?;
    if greeting_packet.kind() == reply::ERR {
        return Err(ControlError::Refused(wire::err_message(
            greeting_packet.payload(),
        )));
    }
    let greeting = Greeting::parse(greeting_packet.payload())
        .map_err(|e| ControlError::Protocol(e.to_string()))?;
    let mut capabilities = caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH;
    capabilities |= 1 | 1 << 13 | 1 << 17; // LONG_PASSWORD, TRANSACTIONS, MULTI_RESULTS
    let proof = wire::native_password_proof(password, &greeting.scramble);
    let mut response = Vec::new();
    let mut seq = 1;
    let mut conn: Stream = match &gate.connector {
        Some(connector) => {
            capabilities |= caps::SSL;
            let mut ssl = capabilities.to_le_bytes().to_vec();
            ssl.extend_from_slice(&(1u32 << 24).to_le_bytes());
            ssl.push(45); // utf8mb4_general_ci
            ssl.extend_from_slice(&[0; 23]);
            send(&mut tcp, seq, &ssl).await?;
            seq += 1;
            let name = rustls::pki_types::ServerName::try_from(c.upstream_host.clone())
                .map_err(|e| ControlError::Protocol(e.to_string()))?;
            Box::new(connector.connect(name, tcp).await?)
        }
        None => Box::new(tcp),
    };
    response.extend_from_slice(&capabilities.to_le_bytes());
    response.extend_from_slice(&(1u32 << 24).to_le_bytes());
    response.push(45);
    response.extend_from_slice(&[0; 23]);
    response.extend_from_slice(user.as_bytes());
    response.push(0);
    response.push(proof.len() as u8);
    response.extend_from_slice(&proof);
    response.extend_from_slice(NATIVE);
    response.push(0);
    send(&mut conn, seq, &response).await?;
    let mut answer = next(&mut conn).await?;
    if answer.kind() == reply::EOF_OR_SWITCH {
        // An auth switch: plugin name, then the new scramble.
        let body = answer.payload().get(1..).unwrap_or_default();
        let end = memchr::memchr(0, body).unwrap_or(body.len());
        let plugin = &body[..end];
        if plugin != NATIVE {
            return Err(ControlError::Plugin(
                String::from_utf8_lossy(plugin).into_owned(),
            ));
        }
        let mut scramble = body.get(end + 1..).unwrap_or_default().to_vec();
        if scramble.last() == Some(&0) {
            scramble.pop();
        }
        let proof = wire::native_password_proof(password, &scramble);
        send(&mut conn, answer.seq().wrapping_add(1), &proof).await?;
        answer = next(&mut conn).await?;
    }
    match answer.kind() {
        reply::OK => Ok(conn),
        _ => Err(ControlError::Refused(wire::err_message(answer.payload()))),
    }
}
