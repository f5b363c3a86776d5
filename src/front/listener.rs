//! What a listener holds each connection to, whatever protocol it speaks — the HTTP gateway and
//! every gate alike: the address, bound with retry ([`bind`], recorded in [`Listening`]); a cap
//! on the connections the listener holds and on those one client address holds ([`Caps`],
//! [`ClientCaps`]); and the connection's own timeouts ([`Deadlines`]) — a client that leaves
//! what it is sent unread loses the connection after `write_timeout`, one on which nothing moves
//! while nothing is being answered after `idle_timeout`, one that has not sent its next
//! request's head within `header_read_timeout` of the previous answer (or of connecting) after
//! that.
//!
//! None of it knows a protocol. The protocol on top tells [`Deadlines`] when it is answering (a
//! [`Busy`] from [`Watch::busy`] held while a request is in flight, so a slow answer is not
//! taken for an idle client), and reads from the [`Watch`] why the connection ended
//! ([`Watch::expired`]), to count it; a connection over a cap is the protocol's to turn away
//! with its own words ([`OverCap`]).
//!
//! Why a write timeout is needed at all: a server's answer is written into the kernel's socket
//! buffer, and a client that never reads fills it; the write then waits forever, and the
//! connection keeps its slot under the listener's cap. Sixteen such clients, pipelining
//! requests they never read, held every slot of a gateway with `max_connections = 16`.
//!
//! What it does not stop: a client that reads, but slowly (a little every few seconds), keeps
//! its connection; the write clock restarts whenever the socket takes bytes, so that a large
//! answer (a data set's rows) to a slow but honest client is not cut. The per-address cap
//! bounds what such a client can hold.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

use crate::services::Shutdown;

/// How long [`bind`] waits before trying a taken address again.
const BIND_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Where each front end of a server listens now, by name (`http`, `gate appdb`): the address
/// it bound, port 0 resolved. A server is ready to take connections once every front end it
/// runs is here ([`Listening::wait_for`]), which is how a caller (a test) learns it without
/// reading a log.
#[derive(Clone)]
pub struct Listening(Arc<watch::Sender<HashMap<String, SocketAddr>>>);

impl Default for Listening {
    fn default() -> Listening {
        Listening(Arc::new(watch::Sender::new(HashMap::new())))
    }
}

impl Listening {
    pub fn set(&self, name: &str, address: SocketAddr) {
        self.0.send_modify(|m| {
            m.insert(name.to_owned(), address);
        });
    }

    pub fn remove(&self, name: &str) {
        self.0.send_if_modified(|m| m.remove(name).is_some());
    }

    /// Where `name` listens now.
    pub fn get(&self, name: &str) -> Option<SocketAddr> {
        self.0.borrow().get(name).copied()
    }

    /// Waits until every one of `names` listens.
    pub async fn wait_for(&self, names: &[String]) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`: the wait ends only when all are there.
        let _ = rx
            .wait_for(|m| names.iter().all(|n| m.contains_key(n)))
            .await;
    }
}

/// Binds `listen` for front end `name`, trying again every half second while the address is
/// taken (a reload remakes a listener while the old one lets go), and records it in
/// `listening`; `None` when `shutdown` comes first.
pub async fn bind(
    name: &str,
    listen: SocketAddr,
    listening: &Listening,
    shutdown: &mut Shutdown,
) -> Option<TcpListener> {
    loop {
        match TcpListener::bind(listen).await {
            Ok(l) => {
                listening.set(name, l.local_addr().unwrap_or(listen));
                return Some(l);
            }
            Err(e) => {
                tracing::warn!(front = name, %listen, error = %e, "cannot listen; retrying");
                tokio::select! {
                    () = shutdown.requested() => return None,
                    () = tokio::time::sleep(BIND_RETRY) => {}
                }
            }
        }
    }
}

/// Which cap turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCap {
    /// The listener held `max_connections`.
    Listener,
    /// The client's address held `max_connections_per_client`.
    Client,
}

impl OverCap {
    /// The name of the setting, the `reason` label of a refusal.
    pub fn as_str(self) -> &'static str {
        match self {
            OverCap::Listener => "max_connections",
            OverCap::Client => "max_connections_per_client",
        }
    }
}

/// A listener's caps: at most `max_connections` connections at once, and
/// `max_connections_per_client` from one client ([`Client`]). Fixed for the listener's life.
#[derive(Clone)]
pub struct Caps {
    slots: Arc<Semaphore>,
    clients: Arc<ClientCaps>,
}

/// A connection's place under a listener's [`Caps`], given back on drop.
#[derive(Debug)]
pub struct Held {
    _slot: OwnedSemaphorePermit,
    _client: ClientSlot,
}

impl Caps {
    pub fn new(max_connections: usize, max_connections_per_client: usize) -> Caps {
        Caps {
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            clients: ClientCaps::new(max_connections_per_client),
        }
    }

    /// A place for a connection from `ip` now, or which cap is full.
    pub fn try_hold(&self, ip: IpAddr) -> Result<Held, OverCap> {
        let slot = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| OverCap::Listener)?;
        self.hold_with(slot, ip)
    }

    /// A place for a connection once the listener has one free (the rest wait in the kernel's
    /// accept queue); `None` if the caps were closed.
    pub async fn listener_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).acquire_owned().await.ok()
    }

    /// Adds the client's place to a listener slot already held.
    pub fn hold_with(&self, slot: OwnedSemaphorePermit, ip: IpAddr) -> Result<Held, OverCap> {
        let client = self.clients.take(ip).ok_or(OverCap::Client)?;
        Ok(Held {
            _slot: slot,
            _client: client,
        })
    }

    /// Clients holding a connection now.
    pub fn clients(&self) -> usize {
        self.clients.clients()
    }
}

/// Why the HTTP listener dropped a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionDrop {
    /// Its client address already held `max_connections_per_client`.
    PerClientCap,
    /// A request head (or the TLS handshake) did not arrive within `header_read_timeout`.
    HeaderTimeout,
    /// Nothing moved while nothing was being answered for `idle_timeout`.
    IdleTimeout,
    /// The client left its answer unread for `write_timeout`.
    WriteTimeout,
}

impl ConnectionDrop {
    pub const ALL: [ConnectionDrop; 4] = [
        ConnectionDrop::PerClientCap,
        ConnectionDrop::HeaderTimeout,
        ConnectionDrop::IdleTimeout,
        ConnectionDrop::WriteTimeout,
    ];

    /// The `reason` label, the name of the setting that drops it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionDrop::PerClientCap => "max_connections_per_client",
            ConnectionDrop::HeaderTimeout => "header_read_timeout",
            ConnectionDrop::IdleTimeout => "idle_timeout",
            ConnectionDrop::WriteTimeout => "write_timeout",
        }
    }
}

/// The client a connection comes from, as the per-address cap counts it: an IPv4 address, or
/// an IPv6 /64 — the block one subscriber or host is given, which a single client can spread
/// its connections over (an IPv4-mapped IPv6 address is its IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl Client {
    pub fn of(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(v4) => Client::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4),
                None => Client::V6Prefix((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

/// How many connections each client holds, at most `max` each.
///
/// An entry exists only while its client holds a connection, and is removed with the last
/// one; a connection takes its place here only once it holds a slot of the listener's own cap.
/// So the map never holds more entries than the listener has connections, whatever an
/// unauthenticated caller sends.
#[derive(Debug)]
pub struct ClientCaps {
    max: usize,
    held: Mutex<HashMap<Client, usize>>,
}

impl ClientCaps {
    pub fn new(max: usize) -> Arc<ClientCaps> {
        Arc::new(ClientCaps {
            max: max.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection of `ip`'s client, or `None` when it holds `max`.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let client = Client::of(ip);
        let mut held = self.held.lock();
        let n = held.entry(client).or_insert(0);
        if *n >= self.max {
            // `max` is at least 1, so the entry was there before: nothing left behind.
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            caps: Arc::clone(self),
            client,
        })
    }

    /// Clients holding a connection now.
    pub fn clients(&self) -> usize {
        self.held.lock().len()
    }
}

/// One connection's place under [`ClientCaps`], given back on drop.
#[derive(Debug)]
pub struct ClientSlot {
    caps: Arc<ClientCaps>,
    client: Client,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.caps.held.lock();
        if let Some(n) = held.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// A connection's timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long the client may leave what it was sent unread (the socket takes nothing).
    pub write: Duration,
    /// How long nothing may move, either way, while nothing is being answered.
    pub idle: Duration,
    /// How long the next request's head may take to be answered from the previous answer
    /// (or the connection's start): a slowloris client trickling a head is cut after this
    /// however often its bytes arrive, and so is a keep-alive connection left waiting.
    pub head: Duration,
}

/// What a connection's stream, its protocol and its task share: whether a request is being
/// answered, and why the stream ended the connection, if it did.
#[derive(Debug, Clone, Default)]
pub struct Watch(Arc<WatchState>);

#[derive(Debug, Default)]
struct WatchState {
    busy: AtomicUsize,
    /// 0 while the connection has not expired, else `1 +` the [`EXPIRIES`] index.
    expired: AtomicU8,
}

/// The reasons [`Deadlines`] ends a connection for, in [`WatchState::expired`]'s numbering.
const EXPIRIES: [ConnectionDrop; 3] = [
    ConnectionDrop::WriteTimeout,
    ConnectionDrop::IdleTimeout,
    ConnectionDrop::HeaderTimeout,
];

impl Watch {
    /// Marks a request in flight until the returned guard drops: the idle clock stops.
    pub fn busy(&self) -> Busy {
        self.0.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn is_busy(&self) -> bool {
        self.0.busy.load(Ordering::Acquire) > 0
    }

    /// Why [`Deadlines`] ended the connection: `write_timeout`, `idle_timeout` or
    /// `header_read_timeout`.
    pub fn expired(&self) -> Option<ConnectionDrop> {
        let n = self.0.expired.load(Ordering::Acquire);
        EXPIRIES.get(usize::from(n).checked_sub(1)?).copied()
    }

    fn expire(&self, why: ConnectionDrop) {
        if let Some(i) = EXPIRIES.iter().position(|e| *e == why) {
            let _ = self.0.expired.compare_exchange(
                0,
                (i + 1) as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

/// A request in flight on a connection (see [`Watch::busy`]).
#[derive(Debug)]
pub struct Busy(Watch);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's stream held to its [`Timeouts`]: reading or writing fails with `TimedOut`
/// once one runs out, which ends the connection in whatever protocol reads it, and the
/// [`Watch`] says which.
///
/// - The **write clock** starts when a write or flush cannot proceed (the socket is full: the
///   client is not reading) and stops when the socket takes bytes again or a flush completes.
/// - The **idle clock** runs from the last byte moved either way, while no request is in
///   flight and no write is waiting; it is checked when a read finds nothing to read.
/// - The **head clock** runs from the last byte of the previous answer (or the connection's
///   start) while no request is in flight, whatever the client sends meanwhile; checked
///   likewise. (hyper's own header timeout does the same with a timer armed and cancelled
///   per request, which cost more than the rest of the listener: BENCHMARKS.md.)
///
/// One timer serves the idle and head clocks: it is moved on only when it goes off before
/// the earlier of their deadlines, never per request.
pub struct Deadlines<S> {
    inner: S,
    timeouts: Timeouts,
    watch: Watch,
    write_clock: Option<Pin<Box<Sleep>>>,
    clock: Pin<Box<Sleep>>,
    last_moved: Instant,
    last_written: Instant,
}

impl<S> Deadlines<S> {
    pub fn new(inner: S, timeouts: Timeouts, watch: Watch) -> Deadlines<S> {
        let now = Instant::now();
        Deadlines {
            inner,
            timeouts,
            watch,
            write_clock: None,
            clock: Box::pin(tokio::time::sleep_until(
                now + timeouts.idle.min(timeouts.head),
            )),
            last_moved: now,
            last_written: now,
        }
    }

    fn expire(&self, why: ConnectionDrop) -> io::Error {
        self.watch.expire(why);
        let message = match why {
            ConnectionDrop::WriteTimeout => "the client left the answer unread (write timeout)",
            ConnectionDrop::HeaderTimeout => "no request head in time (header read timeout)",
            _ => "nothing moved on the connection (idle timeout)",
        };
        io::Error::new(io::ErrorKind::TimedOut, message)
    }

    /// A write or flush could not proceed: runs the write clock (armed now if it is not
    /// running) and fails once it has run out.
    fn write_stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeouts.write;
        let clock = self
            .write_clock
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if clock.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.expire(ConnectionDrop::WriteTimeout)));
        }
        Poll::Pending
    }

    /// The socket took `n` bytes: the client is reading.
    fn wrote(&mut self, n: usize) {
        if n > 0 {
            self.write_clock = None;
            self.last_moved = Instant::now();
            self.last_written = self.last_moved;
        }
    }

    /// A read found nothing: fails once the connection has been idle too long, or has waited
    /// too long for a request head.
    fn read_waits(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.watch.is_busy() || self.write_clock.is_some() {
            return Poll::Pending;
        }
        // The clock is moved on only when it goes off before a deadline, not every time a
        // byte moves: resetting a timer on every request is measurable.
        let head = self.last_written + self.timeouts.head;
        let idle = self.last_moved + self.timeouts.idle;
        while self.clock.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if now >= head {
                return Poll::Ready(Err(self.expire(ConnectionDrop::HeaderTimeout)));
            }
            if now >= idle {
                return Poll::Ready(Err(self.expire(ConnectionDrop::IdleTimeout)));
            }
            self.clock.as_mut().reset(head.min(idle));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_moved = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.read_waits(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Pending => this.write_stalled(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Pending => this.write_stalled(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                // Everything written so far is with the kernel.
                this.write_clock = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.write_stalled(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.write_stalled(cx),
            done => done,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const SHORT: Duration = Duration::from_millis(200);
    const LONG: Duration = Duration::from_secs(600);

    #[test]
    fn a_client_holds_at_most_its_cap_and_its_entry_goes_with_its_last_connection() {
        let caps = ClientCaps::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = caps.take(a).unwrap();
        let second = caps.take(a).unwrap();
        assert!(caps.take(a).is_none(), "a third connection of one client");
        // Another client is not affected by the first one's cap.
        let other = caps.take(b).unwrap();
        assert_eq!(caps.clients(), 2);
        drop(first);
        let again = caps.take(a).unwrap();
        drop((second, again, other));
        assert_eq!(caps.clients(), 0, "entries left behind");
        // Refusals leave nothing behind either.
        let held: Vec<_> = (0..2).map(|_| caps.take(a).unwrap()).collect();
        for _ in 0..100 {
            assert!(caps.take(a).is_none());
        }
        assert_eq!(caps.clients(), 1);
        drop(held);
        assert_eq!(caps.clients(), 0);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_a_mapped_ipv4_is_the_ipv4() {
        let caps = ClientCaps::new(1);
        let _held = caps.take("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(caps.take("2001:db8:1:2:ffff::9".parse().unwrap()).is_none());
        assert!(caps.take("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = caps.take("192.0.2.9".parse().unwrap()).unwrap();
        assert!(caps.take("::ffff:192.0.2.9".parse().unwrap()).is_none());
    }

    /// The write clock: a peer that reads nothing is cut once the pipe is full for
    /// `write`; one that keeps reading is not, however long the whole transfer takes.
    #[tokio::test]
    async fn a_peer_that_does_not_read_is_cut_and_one_that_reads_is_not() {
        let timeouts = Timeouts {
            write: SHORT,
            idle: LONG,
            head: LONG,
        };
        let (ours, _theirs) = tokio::io::duplex(1024);
        let watch = Watch::default();
        let mut stream = Deadlines::new(ours, timeouts, watch.clone());
        let err = stream.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(watch.expired(), Some(ConnectionDrop::WriteTimeout));

        let (ours, mut theirs) = tokio::io::duplex(1024);
        let watch = Watch::default();
        let mut stream = Deadlines::new(ours, timeouts, watch.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut total = 0;
            while total < 16 * 1024 {
                tokio::time::sleep(SHORT / 4).await;
                total += theirs.read(&mut buf).await.unwrap();
            }
        });
        // Sixteen KiB at 512 bytes per 50 ms: more than `write` in all, never stalled so long.
        stream.write_all(&[0u8; 16 * 1024]).await.unwrap();
        stream.flush().await.unwrap();
        reader.await.unwrap();
        assert_eq!(watch.expired(), None);
    }

    /// The idle clock: a connection where nothing moves is cut, unless a request is in
    /// flight (the answer may take its time).
    #[tokio::test]
    async fn an_idle_connection_is_cut_unless_a_request_is_in_flight() {
        let timeouts = Timeouts {
            write: LONG,
            idle: SHORT,
            head: LONG,
        };
        let (ours, _theirs) = tokio::io::duplex(1024);
        let watch = Watch::default();
        let mut stream = Deadlines::new(ours, timeouts, watch.clone());
        let mut buf = [0u8; 16];
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(watch.expired(), Some(ConnectionDrop::IdleTimeout));

        let (ours, mut theirs) = tokio::io::duplex(1024);
        let watch = Watch::default();
        let mut stream = Deadlines::new(ours, timeouts, watch.clone());
        let busy = watch.busy();
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let n = stream.read(&mut buf).await;
            (n.map_err(|e| e.kind()), stream)
        });
        tokio::time::sleep(SHORT * 3).await;
        assert!(!read.is_finished(), "cut while a request was in flight");
        theirs.write_all(b"next").await.unwrap();
        let (n, _stream) = read.await.unwrap();
        assert_eq!(n, Ok(4));
        drop(busy);
        assert_eq!(watch.expired(), None);

        // Bytes arriving more often than `idle` keep it open well past `idle` since it opened.
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let watch = Watch::default();
        let mut stream = Deadlines::new(ours, timeouts, watch.clone());
        let sender = tokio::spawn(async move {
            for _ in 0..8 {
                tokio::time::sleep(SHORT / 2).await;
                theirs.write_all(b"x").await.unwrap();
            }
            theirs
        });
        for _ in 0..8 {
            assert_eq!(stream.read(&mut buf).await.unwrap(), 1);
        }
        let _theirs = sender.await.unwrap();
        assert_eq!(watch.expired(), None);
    }

    /// The head clock: bytes trickling in more often than `idle` do not keep a connection
    /// whose request head never completes past `head`; an answer written restarts it.
    #[tokio::test]
    async fn a_trickled_head_is_cut_and_each_answer_restarts_the_head_clock() {
        let timeouts = Timeouts {
            write: LONG,
            idle: LONG,
            head: SHORT,
        };
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let watch = Watch::default();
        let mut stream = Deadlines::new(ours, timeouts, watch.clone());
        let sender = tokio::spawn(async move {
            for _ in 0..40 {
                tokio::time::sleep(SHORT / 4).await;
                if theirs.write_all(b"x").await.is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let err = loop {
            match stream.read(&mut buf).await {
                Ok(0) => panic!("the head clock never ran out"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(watch.expired(), Some(ConnectionDrop::HeaderTimeout));
        assert!(started.elapsed() < SHORT * 4, "{:?}", started.elapsed());
        drop(stream);
        sender.await.unwrap();

        // A request every `head / 2`, each answered: well past `head` in all, never cut.
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let watch = Watch::default();
        let mut stream = Deadlines::new(ours, timeouts, watch.clone());
        let client = tokio::spawn(async move {
            let mut answer = [0u8; 1];
            for _ in 0..8 {
                tokio::time::sleep(SHORT / 2).await;
                theirs.write_all(b"q").await.unwrap();
                theirs.read_exact(&mut answer).await.unwrap();
            }
        });
        for _ in 0..8 {
            assert_eq!(stream.read(&mut buf).await.unwrap(), 1);
            stream.write_all(b"a").await.unwrap();
        }
        client.await.unwrap();
        assert_eq!(watch.expired(), None);
    }
}
