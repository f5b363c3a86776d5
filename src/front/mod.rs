//! The front-end kit: what every front end shares, so that a protocol adapter only frames its
//! protocol. The HTTP gateway, the PostgreSQL gate and the MySQL gate are built on it.
//!
//! - **Answer** ([`answer`]): one `answer(request) → verdict` — the decision with its side
//!   effects, the blocking policy, the data sets that have never loaded, the snapshot version;
//!   for a session, every name it will be known by ([`answer::answer_session`]).
//! - **Sessions** ([`sessions`]): the registry of open sessions (`GET /v1/gates`), and the
//!   watch that re-decides a session on every snapshot swap and says when it is to end.
//! - **Listener** ([`listener`], [`tls`]): bind with retry, TLS, the caps per listener and per
//!   client address, the connection's write and idle timeouts; [`serve`] is the accept loop of
//!   a session front end.
//! - **Ending** ([`ending`]): how a session ends without ever waiting on its client, with the
//!   protocol's two hooks — stop the statement on the server, tell the client.
//! - **Refusals** ([`refusals`]): the aggregated audit of refused and ended sessions, in the
//!   bounded tally failed authentication uses too ([`crate::base::tally`]); the gates' metrics
//!   ([`GateMetrics`]), whatever protocol a gate speaks.
//!
//! A new front end plugs in here: it decides through [`answer`], registers its sessions in
//! [`Sessions`] and waits on a [`sessions::Recheck`], ends them through [`ending::end`], and
//! listens through [`serve`] (a session protocol) or the [`listener`] pieces (HTTP).

pub mod answer;
pub mod ending;
pub mod listener;
mod metrics;
pub mod refusals;
pub mod sessions;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

pub use answer::{Answer, Asking, Moment, Verdict, answer, answer_session};
pub use listener::{Caps, Held, Listening, OverCap};
pub use metrics::{GateCounters, GateMetrics};
pub use refusals::Refusals;
pub use sessions::{Recheck, Session, SessionInfo, Sessions};

use crate::config::{GateConfig, GateProtocol};
use crate::runtime::Warden;
use crate::services::{Ready, Service, Shutdown};

/// What the front ends of one server share: their open sessions, their refusals waiting to
/// be audited, and where each listens.
#[derive(Clone, Default)]
pub struct Shared {
    pub sessions: Sessions,
    pub refusals: Refusals,
    pub listening: Listening,
}

/// The name a gate's listener and service go by (`gate appdb`), whatever its protocol.
pub fn gate_front(gate: &str) -> String {
    format!("gate {gate}")
}

/// A session protocol on the kit's accept loop: what [`serve`] asks of it.
pub trait SessionFront: Send + Sync + 'static {
    /// Turns away a connection over a cap, in the protocol's words, without waiting on it.
    fn over_cap(&self, stream: TcpStream, why: OverCap) -> impl Future<Output = ()> + Send;

    /// Serves one admitted connection to its end.
    fn session(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send;
}

/// One service per configured gate speaking `protocol`, each running `run` on its own
/// configuration (remade on every reload, like every configured service).
pub fn gate_services<Fut>(
    warden: &Arc<Warden>,
    shared: &Shared,
    protocol: GateProtocol,
    run: fn(Arc<Warden>, Shared, GateConfig, Shutdown, Ready) -> Fut,
) -> Vec<Service>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    warden
        .config()
        .gates
        .iter()
        .filter(|g| g.protocol == protocol)
        .map(|g| {
            let (warden, shared, config) = (Arc::clone(warden), shared.clone(), g.clone());
            Service::new(gate_front(&g.name), move |shutdown, ready| {
                run(warden, shared, config, shutdown, ready)
            })
        })
        .collect()
}

/// Serves gate `config`'s `front`: binds its address (retrying while it is taken), says it is
/// ready, and accepts under its caps until `shutdown` ([`serve`]).
pub async fn serve_gate<F: SessionFront>(
    front: Arc<F>,
    config: &GateConfig,
    warden: Arc<Warden>,
    shared: Shared,
    mut shutdown: Shutdown,
    ready: Ready,
) {
    let name = gate_front(&config.name);
    let Some(listener) =
        listener::bind(&name, config.listen, &shared.listening, &mut shutdown).await
    else {
        return;
    };
    // The bound address, not the configured one: `listen = "…:0"` asks for any free port (the
    // binary's tests read it from this line; the library's callers ask `Listening`).
    let address = listener.local_addr().map_or(config.listen, |a| a);
    tracing::info!(gate = %config.name, protocol = config.protocol.as_str(), %address, upstream = %config.upstream, "gate listening");
    let caps = Caps::new(config.max_connections, config.max_connections_per_client);
    ready.set();
    serve(front, &name, listener, caps, warden, shared, shutdown).await;
}

/// Accepts on `listener` until `shutdown`: each connection takes its place under `caps` (or is
/// turned away by the protocol) and is served on a task of its own, which outlives the
/// listener — a reload remakes the listener, open sessions go on. The refusals are audited
/// every [`refusals::AUDIT_FLUSH`], right after a session was ended by policy, and once more
/// when the listener stops.
pub async fn serve<F: SessionFront>(
    front: Arc<F>,
    name: &str,
    listener: TcpListener,
    caps: Caps,
    warden: Arc<Warden>,
    shared: Shared,
    mut shutdown: Shutdown,
) {
    let mut flush = tokio::time::interval(refusals::AUDIT_FLUSH);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.requested() => break,
            _ = flush.tick() => {
                flush_refusals(&warden, &shared.refusals).await;
                continue;
            }
            () = shared.refusals.ended() => {
                flush_refusals(&warden, &shared.refusals).await;
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors is transient; back off rather than spin.
                    tracing::warn!(front = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let held = caps.try_hold(peer.ip());
        let front = Arc::clone(&front);
        tokio::spawn(async move {
            match held {
                Ok(_held) => front.session(stream, peer).await,
                Err(why) => front.over_cap(stream, why).await,
            }
        });
    }
    shared.listening.remove(name);
    flush_refusals(&warden, &shared.refusals).await;
    tracing::info!(
        front = name,
        "gate stopped listening; open sessions continue"
    );
}

async fn flush_refusals(warden: &Arc<Warden>, refusals: &Refusals) {
    let (warden, refusals) = (Arc::clone(warden), refusals.clone());
    let _ = tokio::task::spawn_blocking(move || refusals.flush(&warden)).await;
}
