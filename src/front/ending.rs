//! How a relayed session ends, in one place, whatever ends it: a block, a user the snapshot
//! can no longer decide for, idleness, a refusal after authentication, a client that hangs up
//! or a server that closes. Nothing here waits on the client to stop the server.
//!
//! The contract, in order:
//! 1. **Stop the client.** The client → server pump is stopped and awaited: no byte the
//!    client sends from here on reaches the server.
//! 2. **Stop the server.** The running statement is stopped — the protocol's first hook,
//!    [`Ending::stop_statement`]: PostgreSQL's `CancelRequest` with the session's
//!    `BackendKeyData`, MySQL's `KILL CONNECTION` through the gate's control account — and at the
//!    same time the upstream is closed as soon as the server's message in flight has reached
//!    the client, or after [`END_GRACE`], whichever comes first; an open transaction rolls
//!    back.
//! 3. **Tell the client**, only if its stream is between two messages: the protocol's second
//!    hook, [`Ending::last_words`] (PostgreSQL's FATAL `ErrorResponse`, MySQL's ERR packet),
//!    and a clean close (TLS `close_notify`), within [`CLIENT_GRACE`].
//! 4. **Drop the client**, told or not.
//!
//! The protocol-specific parts come in as values (the stop as a future, the message in
//! flight as [`ClientOut`] and a finishing future — [`finish`] over the protocol's
//! [`Framing`] — the last words as bytes), so the sequence itself knows no protocol. This is the kit's contract for every session front end.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::task::JoinHandle;

use super::GateCounters;

/// How long an ending session may take to bring the server's message in flight to the client.
pub const END_GRACE: Duration = Duration::from_secs(1);
/// How long the client gets to take the last words and the close.
pub const CLIENT_GRACE: Duration = Duration::from_secs(1);

/// A future that stops the running statement on the server (bounded by its own timeout).
pub type StopStatement = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a relayed session ends, whatever its protocol; the words are the protocol's.
pub enum End {
    /// The server closed or refused, or its stream was not understood.
    Closed,
    /// The client hung up (or its stream was not understood).
    ClientGone,
    /// Refused at the decision after authentication.
    Refused { words: Vec<u8> },
    /// Blocked, or no longer decidable, on a snapshot swap (or a change of user).
    Ended {
        reason: &'static str,
        words: Vec<u8>,
    },
    /// Waited on its client for `idle_timeout`.
    Idle { words: Vec<u8> },
}

impl End {
    /// Counts how the session ended and says what the ending does: whether the statement is
    /// stopped on the server (an ended session's, and the one a client that hung up left
    /// `outstanding`), and the client's last words.
    pub fn settle(self, counters: &GateCounters, outstanding: bool) -> (bool, Option<Vec<u8>>) {
        match self {
            End::Closed => (false, None),
            End::ClientGone => (outstanding, None),
            End::Refused { words } => (false, Some(words)),
            End::Ended { reason, words } => {
                counters.ended(reason);
                (true, Some(words))
            }
            End::Idle { words } => {
                counters.ended("idle");
                (false, Some(words))
            }
        }
    }
}

/// The ticker a relay checks idleness on: a quarter of `idle_timeout`, between 0.1 s and 5 s
/// (hourly, and never consulted, without one).
pub fn idle_ticker(idle: Option<Duration>) -> tokio::time::Interval {
    tokio::time::interval(idle.map_or(Duration::from_secs(3600), |d| {
        (d / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }))
}

/// Everything an ending session hands over.
pub struct Ending<F, P = ()> {
    /// The client → server pump, if it still runs (what it returns is not read here).
    pub client_pump: Option<JoinHandle<P>>,
    /// Stops the running statement; `None` when nothing runs (idle, not yet admitted).
    pub stop_statement: Option<StopStatement>,
    /// Owns the upstream (closed when it completes or is dropped) and the client's writer:
    /// brings the client's stream to a message boundary and returns the writer there, or
    /// `None` when the client cannot be told cleanly.
    pub finish: F,
    /// What the client is told at the boundary.
    pub last_words: Option<Vec<u8>>,
}

/// Ends a session as the module documentation says; returns when the client is dropped and
/// the cancel has been sent (or has timed out).
pub async fn end<F, W, P>(ending: Ending<F, P>)
where
    F: Future<Output = Option<W>>,
    W: AsyncWrite + Unpin,
{
    let Ending {
        client_pump,
        stop_statement,
        finish,
        last_words,
    } = ending;
    // 1. Aborting is not enough on its own: the pump may be running on another worker until
    // its next await; awaiting it means it is gone.
    if let Some(pump) = client_pump {
        pump.abort();
        let _ = pump.await;
    }
    let stop = async {
        if let Some(stop) = stop_statement {
            stop.await;
        }
    };
    let tell = async {
        // 2. A finish that times out is dropped, and with it the upstream and the client.
        let Ok(Some(mut client)) = tokio::time::timeout(END_GRACE, finish).await else {
            return;
        };
        // 3.
        let _ = tokio::time::timeout(CLIENT_GRACE, async {
            if let Some(words) = &last_words {
                client.write_all(words).await?;
            }
            client.flush().await?;
            client.shutdown().await
        })
        .await;
        // 4. `client` drops here.
    };
    tokio::join!(stop, tell);
}

/// Where a protocol's stream is between two messages (PostgreSQL's messages, MySQL's packets):
/// what [`finish`] needs to bring a client to a boundary.
pub trait Framing {
    fn at_boundary(&self) -> bool;
    /// Advances over `chunk` up to the first boundary; how many bytes that took, or `None`
    /// when the stream is not understood.
    fn to_boundary(&mut self, chunk: &[u8]) -> Option<usize>;
}

/// Brings the client's stream to a message boundary: writes what is on its way, then takes
/// the rest of the server's message in flight (and nothing after it); returns the client's
/// writer there, or `None` when it cannot be told cleanly. The upstream closes when this
/// returns or is dropped. `whole` says the stream is known to be between messages already.
pub async fn finish<R, W, B>(
    mut upstream: ReadHalf<R>,
    mut client: W,
    mut out: ClientOut,
    mut bounds: B,
    whole: bool,
) -> Option<W>
where
    R: AsyncRead + AsyncWrite,
    W: AsyncWrite + Unpin,
    B: Framing,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        out.drain(&mut client).await.ok()?;
        if whole || bounds.at_boundary() {
            drop(upstream);
            return Some(client);
        }
        let n = upstream.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        let k = bounds.to_boundary(&buf[..n])?;
        out.push(&buf[..k]);
    }
}

/// Writes and flushes, as a relay's pumps send: a TLS stream keeps what the socket did not
/// take until flushed.
pub async fn forward<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    w.write_all(bytes).await?;
    w.flush().await
}

/// Bytes on their way to the client, written without ever blocking the caller: one write or
/// one flush per [`ClientOut::progress`], so a `select!` can wait on it next to everything else.
/// Every write that ends a batch is flushed: a TLS stream keeps what the socket did not take
/// in its own buffer until then.
#[derive(Default)]
pub struct ClientOut {
    bytes: Vec<u8>,
    written: usize,
}

impl ClientOut {
    /// Whether bytes wait to be written or flushed.
    pub fn pending(&self) -> bool {
        !self.bytes.is_empty()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Writes some bytes, or flushes once all are written; returns how many bytes were
    /// written and flushed when this step completed the batch.
    pub async fn progress<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<usize> {
        if self.written < self.bytes.len() {
            let n = w.write(&self.bytes[self.written..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.written += n;
            return Ok(0);
        }
        w.flush().await?;
        let done = self.bytes.len();
        self.bytes.clear();
        self.written = 0;
        Ok(done)
    }

    /// Writes and flushes everything (for the ending, under its deadline).
    pub async fn drain<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        while self.pending() {
            self.progress(w).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncReadExt;

    /// A client that never reads: the ending still stops the pump, sends the cancel and
    /// returns within its bounds.
    #[tokio::test]
    async fn a_client_that_never_reads_does_not_hold_the_end() {
        let (client, _peer) = tokio::io::duplex(64);
        let (_r, mut w) = tokio::io::split(client);
        // Fill the client's window so any write blocks.
        w.write_all(&[0; 64]).await.unwrap();
        let pump = tokio::spawn(std::future::pending::<()>());
        let cancelled = Arc::new(AtomicBool::new(false));
        let c = Arc::clone(&cancelled);
        let started = tokio::time::Instant::now();
        end(Ending {
            client_pump: Some(pump),
            stop_statement: Some(Box::pin(async move { c.store(true, Ordering::SeqCst) })),
            finish: async { Some(w) },
            last_words: Some(vec![b'E'; 1024]),
        })
        .await;
        assert!(cancelled.load(Ordering::SeqCst));
        assert!(started.elapsed() < END_GRACE + CLIENT_GRACE + Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_reading_client_gets_the_last_words_and_a_close() {
        let (client, mut peer) = tokio::io::duplex(1024);
        end(Ending {
            client_pump: None::<JoinHandle<()>>,
            stop_statement: None,
            finish: async { Some(client) },
            last_words: Some(b"bye".to_vec()),
        })
        .await;
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
    }

    #[tokio::test]
    async fn client_out_writes_then_flushes() {
        let (mut a, mut b) = tokio::io::duplex(4);
        let mut out = ClientOut::default();
        out.push(b"abcdef");
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 6];
            b.read_exact(&mut got).await.unwrap();
            got
        });
        out.drain(&mut a).await.unwrap();
        assert!(!out.pending());
        assert_eq!(reader.await.unwrap(), b"abcdef");
    }
}
