//! One relayed MySQL session, from the client's response sent on to the end: authentication
//! packet by packet (renumbered between the two legs), the decision at the server's OK, then
//! both directions streamed with packet boundaries tracked, every snapshot swap deciding
//! again. How it ends is the kit's ([`front::ending`]); the MySQL parts — `KILL CONNECTION`
//! through the control account stops the statement, an ERR packet tells the client — are
//! handed to it here.
//!
//! **Before the decision** a client packet reaches the server only as the answer the server
//! asked for (an auth switch, more auth data); anything else a client sends early (a
//! pipelined command) is held until the session is admitted, so a blocked user's command
//! never runs.
//!
//! **Outstanding commands.** A command is outstanding from the client's packet that starts it
//! (sequence number 0) until the server's first packet in answer. Idle (for `idle_timeout`)
//! means none is outstanding and nobody spoke for that long, so a long statement the server
//! is still working on is not idle; a client that hangs up with one outstanding has it
//! stopped on the server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;

use super::wire::{self, reply};
use super::{ACCESS_DENIED, ENDED, Gate, KILLED, Login, REFUSED, Stream, UNDECIDED};
use crate::base::time::format_rfc3339;
use crate::front::ending::{self, ClientOut, End, Ending, forward};
use crate::front::refusals::Action;
use crate::front::{self, GateCounters, Moment, Recheck, SessionInfo, Verdict};

/// Largest packet accepted while authentication runs (they are all small).
const MAX_AUTH_PACKET: usize = 64 * 1024;
/// Most bytes a client may send ahead of the decision.
const MAX_HELD: usize = 64 * 1024;
/// MySQL's `ER_CLIENT_INTERACTION_TIMEOUT`, for a session ended for idleness.
const IDLE_CODE: u16 = 4031;

/// The client side of a session.
pub(super) struct Client {
    pub stream: Stream,
    pub peer: SocketAddr,
}

/// How the two legs relate: the sequence numbers the server uses are the client's plus
/// `offset` until authentication ends (one leg may have had an `SSLRequest` the other had
/// not), and the server's id of the session.
pub(super) struct Legs {
    pub offset: u8,
    pub connection_id: u32,
}

/// What both pumps share: whether a command is outstanding, the last sequence number either
/// side used, how the server's last packet looked, and when anyone last spoke.
struct Flow(Mutex<FlowState>);

struct FlowState {
    outstanding: bool,
    last_seq: u8,
    /// The server's last packet ends an answer (OK, ERR, or a classic EOF).
    answered: bool,
    last_activity: Instant,
}

impl Flow {
    fn new() -> Flow {
        Flow(Mutex::new(FlowState {
            outstanding: false,
            last_seq: 0,
            answered: true,
            last_activity: Instant::now(),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FlowState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client packet starts: sequence number 0 starts a command (`COM_QUIT` wants no
    /// answer).
    fn client_packet(&self, seq: u8, kind: Option<u8>) {
        let mut s = self.state();
        if seq == 0 && kind != Some(wire::COM_QUIT) {
            s.outstanding = true;
            s.answered = false;
        }
        s.last_seq = seq;
        s.last_activity = Instant::now();
    }

    fn server_packet(s: &mut FlowState, seq: u8, kind: Option<u8>, len: usize) {
        s.outstanding = false;
        s.last_seq = seq;
        s.answered = match kind {
            Some(reply::OK | reply::ERR) => true,
            Some(reply::EOF_OR_SWITCH) => len < 9,
            _ => false,
        };
    }

    fn touch(&self) {
        self.state().last_activity = Instant::now();
    }

    fn outstanding(&self) -> bool {
        self.state().outstanding
    }

    fn idle_for(&self, limit: Duration) -> bool {
        let s = self.state();
        !s.outstanding && s.last_activity.elapsed() >= limit
    }

    /// The sequence number the client expects of the next packet: the answer to its next
    /// command when the last one was answered, else the next of this exchange.
    fn next_seq(&self) -> u8 {
        let s = self.state();
        if s.answered && !s.outstanding {
            1
        } else {
            s.last_seq.wrapping_add(1)
        }
    }
}

/// What authentication left: the client's halves, the server's, the bytes each sent past
/// the OK, and the client's packets held for the decision.
struct Admitted {
    from_server: Vec<u8>,
    from_client: Vec<u8>,
    held: Vec<u8>,
}

/// Relays authentication until the server's OK, and decides there.
async fn authenticate(
    gate: &Gate,
    login: &Login,
    client_ip: &str,
    halves: &mut Halves,
    offset: u8,
) -> Result<Admitted, End> {
    let Halves { cr, cw, ur, uw } = halves;
    let mut from_server = Vec::new();
    let mut from_client = Vec::new();
    let mut held = Vec::new();
    // The server has sent the gate the client's response: it speaks next.
    let mut server_waits = false;
    let mut sbuf = vec![0u8; 16 * 1024];
    let mut cbuf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = ur.read(&mut sbuf) => {
                let n = match read { Ok(0) | Err(_) => return Err(End::Closed), Ok(n) => n };
                from_server.extend_from_slice(&sbuf[..n]);
                while let Some(mut p) = wire::next_packet(&mut from_server, MAX_AUTH_PACKET).map_err(|_| End::Closed)? {
                    p.set_seq(p.seq().wrapping_sub(offset));
                    match p.kind() {
                        reply::OK => {
                            let asking = gate.asking(login, client_ip);
                            let snapshot = gate.warden.engine().snapshot();
                            return match front::answer_session(&gate.warden, &snapshot, &asking, Moment::Admission) {
                                Verdict::Allow => {
                                    forward(cw, &p.0).await.map_err(|_| End::ClientGone)?;
                                    Ok(Admitted { from_server, from_client, held })
                                }
                                refused => Err(by_policy(gate, login, client_ip, refused, Some(p.seq()))),
                            };
                        }
                        reply::ERR => {
                            // The server's own refusal (a wrong password): the client hears it.
                            let _ = forward(cw, &p.0).await;
                            return Err(End::Closed);
                        }
                        kind => {
                            // `caching_sha2_password`'s fast-auth success is followed by the OK
                            // without an answer; every other request wants one.
                            server_waits = !(kind == reply::MORE_DATA && p.payload() == [1, 3]);
                            forward(cw, &p.0).await.map_err(|_| End::ClientGone)?;
                        }
                    }
                }
            }
            read = cr.read(&mut cbuf) => {
                let n = match read { Ok(0) | Err(_) => return Err(End::ClientGone), Ok(n) => n };
                from_client.extend_from_slice(&cbuf[..n]);
                while server_waits {
                    let Some(mut p) = wire::next_packet(&mut from_client, MAX_AUTH_PACKET).map_err(|_| End::ClientGone)? else {
                        break;
                    };
                    p.set_seq(p.seq().wrapping_add(offset));
                    forward(uw, &p.0).await.map_err(|_| End::Closed)?;
                    server_waits = false;
                }
                if !server_waits && !from_client.is_empty() {
                    held.append(&mut from_client);
                    if held.len() > MAX_HELD {
                        return Err(End::ClientGone);
                    }
                }
            }
        }
    }
}

/// Both streams, split.
struct Halves {
    cr: ReadHalf<Stream>,
    cw: WriteHalf<Stream>,
    ur: ReadHalf<Stream>,
    uw: WriteHalf<Stream>,
}

/// Relays one session whose client response has been sent upstream. `recheck` was subscribed
/// before anything was decided, so no swap since is missed.
pub(super) async fn relay(
    gate: &Arc<Gate>,
    login: Login,
    client: Client,
    upstream: Stream,
    legs: Legs,
    mut recheck: Recheck,
) {
    let peer = client.peer;
    let client_ip = peer.ip().to_string();
    let (cr, cw) = tokio::io::split(client.stream);
    let (ur, uw) = tokio::io::split(upstream);
    let mut halves = Halves { cr, cw, ur, uw };
    let Some(admitted) = admit(gate, &login, &client_ip, &mut halves, legs.offset).await else {
        return;
    };
    let Halves {
        cr,
        mut cw,
        mut ur,
        uw,
    } = halves;
    let session = open_session(gate, &login, peer, legs.connection_id);
    let login = Arc::new(Mutex::new(login));
    let flow = Arc::new(Flow::new());
    let mut pending = admitted.held;
    pending.extend_from_slice(&admitted.from_client);
    let mut client_pump = Some(tokio::spawn(client_to_server(
        Arc::clone(gate),
        cr,
        uw,
        pending,
        Arc::clone(&flow),
        Arc::clone(&login),
        client_ip.clone(),
    )));
    let mut bounds = wire::Boundaries::default();
    let mut out = ClientOut::default();
    let mut first = Some(admitted.from_server);
    let idle = gate.config.idle_timeout;
    let mut idle_check = ending::idle_ticker(idle);
    let mut buf = vec![0u8; 16 * 1024];
    let end = loop {
        if let Some(early) = first.take().filter(|b| !b.is_empty()) {
            server_bytes(&flow, &mut bounds, &mut out, &early);
        }
        tokio::select! {
            read = ur.read(&mut buf), if !out.pending() => {
                let n = match read { Ok(0) | Err(_) => break End::Closed, Ok(n) => n };
                server_bytes(&flow, &mut bounds, &mut out, &buf[..n]);
            }
            written = out.progress(&mut cw), if out.pending() => match written {
                Ok(n) => gate.counters.relayed_to_client(n),
                Err(_) => break End::ClientGone,
            },
            ended = async {
                let asking = {
                    let login = login.lock().unwrap_or_else(PoisonError::into_inner);
                    gate.asking(&login, &client_ip)
                };
                recheck.blocked(&gate.warden, &asking).await
            } => match ended {
                Some(verdict) => break ended_by_policy(gate, &login, &client_ip, verdict, flow.next_seq()),
                None => break End::Closed,
            },
            _ = idle_check.tick(), if idle.is_some() => {
                if idle.is_some_and(|limit| flow.idle_for(limit)) {
                    let words = "terminating the connection after the gate's idle timeout";
                    break End::Idle { words: wire::err_packet(flow.next_seq(), IDLE_CODE, "HY000", words) };
                }
            }
            pumped = async { client_pump.as_mut()?.await.ok() }, if client_pump.is_some() => {
                client_pump = None;
                break match pumped.flatten() {
                    Some(verdict) => ended_by_policy(gate, &login, &client_ip, verdict, flow.next_seq()),
                    None => End::ClientGone,
                };
            }
        }
    };
    let (stop, last_words) = end.settle(&gate.counters, flow.outstanding());
    let stop_statement = stop
        .then(|| super::control::stop(gate, legs.connection_id))
        .flatten();
    let at_boundary = bounds.at_boundary();
    ending::end(Ending {
        client_pump,
        stop_statement,
        finish: ending::finish(ur, cw, out, bounds, at_boundary),
        last_words,
    })
    .await;
    drop(session);
    gate.counters.session_closed();
}

/// The server's bytes of an admitted session: boundaries and the flow learn them, the client
/// gets them.
fn server_bytes(flow: &Flow, bounds: &mut wire::Boundaries, out: &mut ClientOut, chunk: &[u8]) {
    {
        let mut s = flow.state();
        bounds.advance(chunk, false, |seq, kind, len| {
            Flow::server_packet(&mut s, seq, kind, len)
        });
        s.last_activity = Instant::now();
    }
    out.push(chunk);
}

/// Authentication within the gate's `startup_timeout`; `None` when the session is not
/// admitted (a refused client has been told).
async fn admit(
    gate: &Gate,
    login: &Login,
    client_ip: &str,
    halves: &mut Halves,
    offset: u8,
) -> Option<Admitted> {
    let auth = tokio::time::timeout(
        gate.config.startup_timeout,
        authenticate(gate, login, client_ip, halves, offset),
    )
    .await;
    match auth {
        Ok(Ok(admitted)) => Some(admitted),
        Ok(Err(end)) => {
            end_unadmitted(&mut halves.cw, end).await;
            None
        }
        Err(_) => {
            gate.counters.refused("startup_timeout");
            None
        }
    }
}

/// Tells a client refused during authentication (nothing of the session was relayed yet).
async fn end_unadmitted(cw: &mut WriteHalf<Stream>, end: End) {
    if let End::Refused { words } = end {
        let _ = tokio::time::timeout(ending::CLIENT_GRACE, async {
            cw.write_all(&words).await?;
            cw.flush().await?;
            cw.shutdown().await
        })
        .await;
    }
}

/// What the client of an ended session is told.
fn ended_words(verdict: &Verdict, seq: u8) -> Vec<u8> {
    match verdict {
        Verdict::Block { policy, .. } if !policy.is_empty() => {
            wire::err_packet(seq, KILLED, "70100", &format!("{ENDED} {policy:?}"))
        }
        Verdict::Block { .. } => wire::err_packet(seq, KILLED, "70100", ENDED),
        _ => wire::err_packet(seq, KILLED, "70100", UNDECIDED),
    }
}

/// Registers an admitted session (for `GET /v1/gates`) and counts it.
fn open_session(
    gate: &Gate,
    login: &Login,
    peer: SocketAddr,
    connection_id: u32,
) -> front::Session {
    let info = SessionInfo {
        user: login.user.clone(),
        database: login.database.clone().unwrap_or_default(),
        application: login.application.clone(),
        client: peer.to_string(),
        since: format_rfc3339(crate::base::time::now()),
        backend_pid: Some(connection_id),
    };
    gate.counters.session_opened();
    gate.shared.sessions.register(&gate.config.name, info, None)
}

/// The refusal at the server's OK (`ok_seq`: the sequence number the client expects there):
/// tallied, counted, logged.
fn by_policy(
    gate: &Gate,
    login: &Login,
    client: &str,
    verdict: Verdict,
    ok_seq: Option<u8>,
) -> End {
    let seq = ok_seq.unwrap_or(2);
    let words = match &verdict {
        Verdict::Block { policy, .. } if !policy.is_empty() => wire::err_packet(
            seq,
            ACCESS_DENIED,
            "28000",
            &format!("{REFUSED} {policy:?}"),
        ),
        Verdict::Block { .. } => wire::err_packet(seq, ACCESS_DENIED, "28000", REFUSED),
        _ => wire::err_packet(seq, ACCESS_DENIED, "28000", UNDECIDED),
    };
    gate.counters.refused(verdict.reason());
    record(gate, &login.user, client, &verdict, Action::Refused);
    End::Refused { words }
}

/// The end of an open session a verdict brings (`seq`: the sequence number the client
/// expects next): tallied, logged.
fn ended_by_policy(
    gate: &Gate,
    login: &Mutex<Login>,
    client: &str,
    verdict: Verdict,
    seq: u8,
) -> End {
    let user = login
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .user
        .clone();
    record(gate, &user, client, &verdict, Action::Ended);
    End::Ended {
        reason: verdict.reason(),
        words: ended_words(&verdict, seq),
    }
}

/// Reports a refusal or ended session (audit tally, SIEM event) and logs it.
fn record(gate: &Gate, login: &str, client: &str, verdict: &Verdict, action: Action) {
    let user = verdict.user().unwrap_or(login);
    let what = match action {
        Action::Refused => "gate refused a session after authentication",
        Action::Ended => "gate ended a session by policy",
    };
    tracing::warn!(gate = %gate.config.name, user = %user, login = %login, client = %client, policy = %verdict.policy(), "{what}");
    crate::front::refusals::report(
        &gate.warden,
        &gate.shared.refusals,
        &gate.config,
        (user, client),
        verdict,
        action,
    );
}

/// The client → server pump of an admitted session: streams the client's packets, tracking
/// where each command starts; a `COM_CHANGE_USER` is read whole and decided before it is
/// sent. Returns the verdict that blocked a change of user, or `None` when the client closed
/// or a write failed. It never closes the upstream (the ending does, after the stop).
async fn client_to_server(
    gate: Arc<Gate>,
    mut client: ReadHalf<Stream>,
    mut upstream: WriteHalf<Stream>,
    mut pending: Vec<u8>,
    flow: Arc<Flow>,
    login: Arc<Mutex<Login>>,
    client_ip: String,
) -> Option<Verdict> {
    let counters: &GateCounters = &gate.counters;
    let mut buf = vec![0u8; 16 * 1024];
    // Payload bytes of the packet being streamed still to come.
    let mut remaining = 0usize;
    loop {
        if remaining > 0 && !pending.is_empty() {
            let n = remaining.min(pending.len());
            forward(&mut upstream, &pending[..n]).await.ok()?;
            counters.relayed_to_server(n);
            pending.drain(..n);
            remaining -= n;
            continue;
        }
        if remaining == 0 && pending.len() >= 4 {
            let header = [pending[0], pending[1], pending[2], pending[3]];
            let (len, seq) = (wire::payload_len(header), header[3]);
            if seq == 0 && len > 0 && pending.len() < 5 {
                // The command byte decides how the packet is relayed: read it first.
            } else if seq == 0 && pending.get(4) == Some(&wire::COM_CHANGE_USER) {
                if len > gate.config.max_startup_bytes {
                    return None;
                }
                if pending.len() >= 4 + len {
                    let packet: Vec<u8> = pending.drain(..4 + len).collect();
                    if let Some(blocked) = change_user(&gate, &login, &client_ip, &packet) {
                        return Some(blocked);
                    }
                    flow.client_packet(seq, Some(wire::COM_CHANGE_USER));
                    forward(&mut upstream, &packet).await.ok()?;
                    counters.relayed_to_server(packet.len());
                    continue;
                }
            } else {
                flow.client_packet(seq, pending.get(4).copied().filter(|_| len > 0));
                // The header with as much of the payload as is here, in one send: a command
                // is one write to the server, not two.
                let n = (4 + len).min(pending.len());
                forward(&mut upstream, &pending[..n]).await.ok()?;
                counters.relayed_to_server(n);
                pending.drain(..n);
                remaining = 4 + len - n;
                continue;
            }
        }
        let n = match client.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        flow.touch();
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Decides a `COM_CHANGE_USER` on the session's names with the new one added; `Some` when it
/// is not allowed (the packet is then never sent).
fn change_user(gate: &Gate, login: &Mutex<Login>, client: &str, packet: &[u8]) -> Option<Verdict> {
    let user = match wire::change_user(packet.get(4..).unwrap_or_default()) {
        Ok(u) if !u.is_empty() && u.len() <= super::MAX_USER => u,
        _ => {
            return Some(Verdict::Undecided {
                user: "(unreadable COM_CHANGE_USER)".into(),
            });
        }
    };
    let mut login = login.lock().unwrap_or_else(PoisonError::into_inner);
    let mut next = login.clone();
    next.add_name(String::from_utf8_lossy(&user).into_owned());
    let snapshot = gate.warden.engine().snapshot();
    let asking = gate.asking(&next, client);
    match front::answer_session(&gate.warden, &snapshot, &asking, Moment::Admission) {
        Verdict::Allow => {
            *login = next;
            None
        }
        refused => Some(refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_sequence_number_follows_the_exchange() {
        let flow = Flow::new();
        // Idle after connecting: the next command's answer is number 1.
        assert_eq!(flow.next_seq(), 1);
        flow.client_packet(0, Some(wire::COM_QUIT));
        assert!(!flow.outstanding());
        flow.client_packet(0, Some(wire::COM_QUERY));
        assert!(flow.outstanding());
        assert_eq!(flow.next_seq(), 1);
        // A result set under way: column count, a definition…
        for (seq, kind, len) in [(1, 1, 1), (2, 3, 40)] {
            Flow::server_packet(&mut flow.state(), seq, Some(kind), len);
        }
        assert!(!flow.outstanding());
        assert_eq!(flow.next_seq(), 3);
        // …its closing EOF: answered.
        Flow::server_packet(&mut flow.state(), 3, Some(reply::EOF_OR_SWITCH), 5);
        assert_eq!(flow.next_seq(), 1);
        // A row that starts with 0xFE is long (an 8-byte length): not an EOF.
        Flow::server_packet(&mut flow.state(), 4, Some(reply::EOF_OR_SWITCH), 20);
        assert_eq!(flow.next_seq(), 5);
    }
}
