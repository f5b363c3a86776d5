//! One relayed session, from the start-up message forwarded to the end: authentication passes
//! through as whole messages, the gate decides at the server's first `ReadyForQuery` (after
//! `AuthenticationOk`, so a client without the password never learns whether its user is
//! listed), then both directions stream with their message boundaries tracked, and every
//! snapshot swap decides again ([`front::Recheck`]). How the session ends is the kit's
//! ([`front::ending`]); the PostgreSQL parts — a `CancelRequest` stops the statement, FATAL
//! tells the client — are handed to it here.
//!
//! **Before the decision** only authentication reaches the server: the client → server pump
//! forwards whole password/SASL messages (`p`) and holds anything else until the session is
//! admitted, so a blocked user's pipelined query never runs. The server's messages after
//! `AuthenticationOk` (parameters, `BackendKeyData`) are held until the decision too;
//! `AuthenticationOk` itself goes on at once, so libpq with `sslmode=prefer` takes a refusal
//! as final instead of retrying without TLS.
//!
//! **Outstanding statements.** A statement is outstanding from the client's `Query`,
//! `FunctionCall` or `Sync` until the server's matching `ReadyForQuery` ([`Flow`]). Idle
//! (for `idle_timeout`) means none is outstanding and neither side has spoken for that long:
//! a pipeline whose first result came back is not idle while the server works on the rest. A
//! client that hangs up with one outstanding gets it cancelled.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::login::Login;
use super::{ENDED, Gate, REFUSED, Stream, UNDECIDED, wire};
use crate::base::time::format_rfc3339;
use crate::front::ending::{self, ClientOut, End, Ending, forward};
use crate::front::refusals::Action;
use crate::front::{self, GateCounters, Moment, Recheck, SessionInfo, Verdict};

/// Largest message accepted while authentication runs (they are all small).
const MAX_AUTH_MESSAGE: usize = 1 << 20;
/// Most bytes of server messages held between `AuthenticationOk` and the decision.
const MAX_HELD: usize = 1 << 20;

/// The state both pumps share: what is outstanding on the server, and when anyone last spoke.
struct Flow(Mutex<FlowState>);

struct FlowState {
    /// `Query`, `FunctionCall` and counted `Sync` messages the client sent.
    requests: u64,
    /// `ReadyForQuery` messages the server sent after the first.
    answered: u64,
    /// The server is taking `COPY … FROM STDIN` data: it ignores `Sync` until `CopyDone`.
    copy_in: bool,
    /// `Sync` messages sent since the last `Execute`/`Query`: the ones a `CopyInResponse`
    /// to that command makes the server ignore (libpq sends one after `Execute` and another
    /// after `CopyDone`).
    syncs_since_command: u64,
    last_activity: Instant,
}

impl Flow {
    fn new() -> Flow {
        Flow(Mutex::new(FlowState {
            requests: 0,
            answered: 0,
            copy_in: false,
            syncs_since_command: 0,
            last_activity: Instant::now(),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FlowState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client message's type, counted before the message is forwarded (so its answer can
    /// never be counted first).
    fn client_message(s: &mut FlowState, kind: u8) {
        use wire::client::*;
        match kind {
            QUERY | EXECUTE => {
                s.syncs_since_command = 0;
                s.requests += u64::from(kind == QUERY);
            }
            SYNC if !s.copy_in => {
                s.requests += 1;
                s.syncs_since_command += 1;
            }
            FUNCTION_CALL => s.requests += 1,
            COPY_DONE | COPY_FAIL => s.copy_in = false,
            _ => {}
        }
    }

    fn server_message(s: &mut FlowState, kind: u8) {
        match kind {
            wire::server::READY_FOR_QUERY => s.answered += 1,
            wire::server::COPY_IN => {
                s.copy_in = true;
                s.requests = s.requests.saturating_sub(s.syncs_since_command);
                s.syncs_since_command = 0;
            }
            _ => {}
        }
    }

    fn outstanding(&self) -> bool {
        let s = self.state();
        s.requests > s.answered
    }

    fn touch(&self) {
        self.state().last_activity = Instant::now();
    }

    /// Whether nothing is outstanding and nobody spoke for `limit`.
    fn idle_for(&self, limit: Duration) -> bool {
        let s = self.state();
        s.requests <= s.answered && s.last_activity.elapsed() >= limit
    }
}

/// The server's messages up to its first `ReadyForQuery`, whole.
#[derive(Default)]
struct Authentication {
    /// The client is not on TLS, the upstream may be: SCRAM-SHA-256-PLUS is taken out of the
    /// server's offer, which a client without TLS refuses (and cannot use) otherwise.
    without_channel_binding: bool,
    pending: Vec<u8>,
    authenticated: bool,
    /// Messages after `AuthenticationOk`, held until the decision.
    held: Vec<u8>,
    key: Option<(u32, Vec<u8>)>,
    /// The role the server says it logged in (`session_authorization`).
    reported_user: Option<Vec<u8>>,
}

/// What the server's bytes so far mean during authentication.
enum AuthStep {
    /// Forward these now; more is to come.
    Forward(Vec<u8>),
    /// Forward these now, ending with `AuthenticationOk`: decide before anything else.
    Authenticated(Vec<u8>),
    /// The server is ready: forward `now`, decide, then forward the held messages and
    /// stream `rest`.
    Ready { now: Vec<u8>, rest: Vec<u8> },
}

impl Authentication {
    fn read(&mut self, chunk: &[u8]) -> Result<AuthStep, wire::FrameError> {
        self.pending.extend_from_slice(chunk);
        let mut now = Vec::new();
        while let Some(mut message) = wire::next_message(&mut self.pending, MAX_AUTH_MESSAGE)? {
            if self.without_channel_binding
                && let Some(stripped) = wire::strip_channel_binding(&message)
            {
                message = stripped;
            }
            match message[0] {
                wire::server::BACKEND_KEY => self.key = wire::backend_key(&message),
                wire::server::PARAMETER_STATUS => {
                    if let Some((b"session_authorization", user)) = wire::parameter_status(&message)
                    {
                        self.reported_user = Some(user.to_vec());
                    }
                }
                _ => {}
            }
            if !self.authenticated {
                now.extend_from_slice(&message);
                if wire::authentication_code(&message) == Some(0) {
                    self.authenticated = true;
                    return Ok(AuthStep::Authenticated(now));
                }
            } else if message[0] == wire::server::ERROR {
                // The server refused the session itself after authenticating it (a setting
                // it would not take, a database that is gone): the client hears why.
                now.append(&mut self.held);
                now.extend_from_slice(&message);
            } else {
                if self.held.len() + message.len() > MAX_HELD {
                    return Err(wire::FrameError::TooLong {
                        len: self.held.len() + message.len(),
                        max: MAX_HELD,
                    });
                }
                self.held.extend_from_slice(&message);
            }
            if message[0] == wire::server::READY_FOR_QUERY {
                return Ok(AuthStep::Ready {
                    now,
                    rest: std::mem::take(&mut self.pending),
                });
            }
        }
        Ok(AuthStep::Forward(now))
    }
}

/// Where authentication stands after the server's latest bytes.
enum Admission {
    Pending,
    Refused(End),
    /// The server is ready and the login allowed: the held messages go to the client, `rest`
    /// streams.
    Admitted {
        rest: Vec<u8>,
    },
}

/// Takes the server's bytes while authentication runs and decides twice: at
/// `AuthenticationOk` on every name the start-up message asks for (before the server acts on
/// any of them for the client), and at the first `ReadyForQuery` again with the role the
/// server reports, on the snapshot of that moment.
fn authenticate(
    gate: &Gate,
    auth: &mut Authentication,
    chunk: &[u8],
    login: &mut Login,
    client: &str,
    out: &mut ClientOut,
) -> Result<Admission, wire::FrameError> {
    let mut chunk = chunk;
    loop {
        let now = match auth.read(chunk)? {
            AuthStep::Forward(now) => {
                out.push(&now);
                return Ok(Admission::Pending);
            }
            AuthStep::Authenticated(now) => now,
            AuthStep::Ready { now, rest } => {
                out.push(&now);
                if let Some(user) = &auth.reported_user {
                    for name in super::login::server_names(user) {
                        login.add_role(name);
                    }
                }
                return Ok(match decide(gate, login, client, Moment::Recheck) {
                    Verdict::Allow => Admission::Admitted { rest },
                    refused => Admission::Refused(by_policy(gate, login, client, refused, false)),
                });
            }
        };
        out.push(&now);
        if let refused @ (Verdict::Block { .. } | Verdict::Undecided { .. }) =
            decide(gate, login, client, Moment::Admission)
        {
            return Ok(Admission::Refused(by_policy(
                gate, login, client, refused, false,
            )));
        }
        chunk = &[];
    }
}

/// Decides `login` from the snapshot in force now. At `AuthenticationOk` the decisions are the
/// login's own ([`Moment::Admission`]: all recorded); at `ReadyForQuery` they only confirm it
/// with the role the server reports, and record only a refusal.
fn decide(gate: &Gate, login: &Login, client: &str, moment: Moment) -> Verdict {
    let snapshot = gate.warden.engine().snapshot();
    front::answer_session(&gate.warden, &snapshot, &gate.asking(login, client), moment)
}

/// The client side of a session.
pub(super) struct Client {
    pub stream: Stream,
    pub peer: SocketAddr,
    /// Whether it speaks TLS to the gate.
    pub tls: bool,
}

/// Relays one session whose start-up message `upstream` has been sent. `recheck` was
/// subscribed before anything was decided, so no swap since is missed.
pub(super) async fn relay(
    gate: &Arc<Gate>,
    mut login: Login,
    client: Client,
    upstream: Stream,
    mut recheck: Recheck,
) {
    let peer = client.peer;
    let (cr, mut cw) = tokio::io::split(client.stream);
    let (mut ur, uw) = tokio::io::split(upstream);
    let flow = Arc::new(Flow::new());
    let (admit, admitted) = watch::channel(false);
    let mut client_pump = Some(tokio::spawn(client_to_server(
        cr,
        uw,
        Arc::clone(&flow),
        admitted,
        Arc::clone(&gate.counters),
    )));
    let client_ip = peer.ip().to_string();
    let mut auth = Some(Authentication {
        without_channel_binding: !client.tls,
        ..Authentication::default()
    });
    let mut session = None;
    // Who the admitted session is, for the re-check on every swap.
    let mut asking = None;
    let mut bounds = wire::Boundaries::default();
    let mut out = ClientOut::default();
    let idle = gate.config.idle_timeout;
    let mut idle_check = ending::idle_ticker(idle);
    let mut buf = vec![0u8; 16 * 1024];
    let end = loop {
        tokio::select! {
            read = ur.read(&mut buf), if !out.pending() => {
                let n = match read {
                    Ok(0) | Err(_) => break End::Closed,
                    Ok(n) => n,
                };
                flow.touch();
                let admission = auth
                    .as_mut()
                    .map(|a| authenticate(gate, a, &buf[..n], &mut login, &client_ip, &mut out));
                let rest = match admission {
                    None => None,
                    Some(Ok(Admission::Pending)) => continue,
                    Some(Ok(Admission::Refused(end))) => break end,
                    Some(Ok(Admission::Admitted { rest })) => {
                        let Some(done) = auth.take() else { break End::Closed };
                        // The held messages end with the first ReadyForQuery, which answers
                        // no request: boundaries learn it, the flow does not count it.
                        let _ = bounds.advance(&done.held, false);
                        out.push(&done.held);
                        session = Some(open_session(gate, &login, peer, done.key));
                        asking = Some(gate.asking(&login, &client_ip));
                        let _ = admit.send(true);
                        Some(rest)
                    }
                    Some(Err(e)) => {
                        tracing::warn!(gate = %gate.config.name, error = %e, "server stream not understood during authentication; session closed");
                        break End::Closed;
                    }
                };
                let chunk = rest.as_deref().unwrap_or(&buf[..n]);
                if let Err(e) = server_bytes(&flow, &mut bounds, &mut out, chunk) {
                    tracing::warn!(gate = %gate.config.name, error = %e, "server stream not understood; session closed");
                    break End::Closed;
                }
            }
            written = out.progress(&mut cw), if out.pending() => match written {
                Ok(n) => gate.counters.relayed_to_client(n),
                Err(_) => break End::ClientGone,
            },
            ended = async { recheck.blocked(&gate.warden, asking.as_ref()?).await }, if asking.is_some() => {
                match ended {
                    Some(ended) => break by_policy(gate, &login, &client_ip, ended, true),
                    None => break End::Closed,
                }
            }
            _ = idle_check.tick(), if session.is_some() && idle.is_some() => {
                if idle.is_some_and(|limit| flow.idle_for(limit)) {
                    break End::Idle {
                        words: wire::fatal("57P05", "terminating connection due to idle timeout of the gate"),
                    };
                }
            }
            _ = async { client_pump.as_mut()?.await.ok() }, if client_pump.is_some() => {
                client_pump = None;
                break End::ClientGone;
            }
        }
    };
    let key = session.as_ref().and_then(front::Session::key);
    let at_boundary = auth.is_some() || bounds.at_boundary();
    let (cancel, last_words) = end.settle(&gate.counters, flow.outstanding());
    let cancel = key.filter(|_| cancel).map(|(pid, secret)| {
        let gate = Arc::clone(gate);
        Box::pin(async move { super::forward_cancel(&gate, pid, &secret).await })
            as ending::StopStatement
    });
    ending::end(Ending {
        client_pump,
        stop_statement: cancel,
        finish: ending::finish(ur, cw, out, bounds, at_boundary),
        last_words,
    })
    .await;
    if session.is_some() {
        gate.counters.session_closed();
    }
}

/// The server's bytes of a session past authentication: boundaries and the flow learn them,
/// the client gets them.
fn server_bytes(
    flow: &Flow,
    bounds: &mut wire::Boundaries,
    out: &mut ClientOut,
    chunk: &[u8],
) -> Result<(), wire::FrameError> {
    {
        let mut s = flow.state();
        bounds.advance_with(chunk, false, |kind| Flow::server_message(&mut s, kind))?;
    }
    out.push(chunk);
    Ok(())
}

/// Registers an admitted session (for `GET /v1/gates` and cancel requests) and counts it.
fn open_session(
    gate: &Gate,
    login: &Login,
    peer: SocketAddr,
    key: Option<(u32, Vec<u8>)>,
) -> front::Session {
    let info = SessionInfo {
        user: login.user.clone(),
        database: login.database.clone(),
        application: login.applications.first().cloned(),
        client: peer.to_string(),
        since: format_rfc3339(crate::base::time::now()),
        backend_pid: key.as_ref().map(|(pid, _)| *pid),
    };
    gate.counters.session_opened();
    let secret = key.map(|(_, secret)| secret);
    gate.shared
        .sessions
        .register(&gate.config.name, info, secret)
}

/// The end a verdict other than allow brings: at the decision after authentication, a refusal
/// (28000 for a block); on a snapshot swap, the end of an open session (57P01). Tallied for
/// the audit log under the name that was blocked, and logged.
fn by_policy(gate: &Gate, login: &Login, client: &str, verdict: Verdict, open: bool) -> End {
    let policy = match &verdict {
        Verdict::Allow => return End::Closed,
        Verdict::Block { policy, .. } if !policy.is_empty() => format!(" {policy:?}"),
        _ => String::new(),
    };
    let (reason, user) = (verdict.reason(), verdict.user().unwrap_or_default());
    let words = match (&verdict, open) {
        (Verdict::Block { .. }, false) => wire::fatal("28000", &format!("{REFUSED}{policy}")),
        (Verdict::Block { .. }, true) => wire::fatal("57P01", &format!("{ENDED}{policy}")),
        (_, false) => wire::fatal("57P03", UNDECIDED),
        (_, true) => wire::fatal("57P01", UNDECIDED),
    };
    let (action, what) = if open {
        (Action::Ended, "gate ended a session by policy")
    } else {
        gate.counters.refused(reason);
        (
            Action::Refused,
            "gate refused a session after authentication",
        )
    };
    tracing::warn!(gate = %gate.config.name, user = %user, login = %login.user, client = %client, policy = %verdict.policy(), "{what}");
    front::refusals::report(
        &gate.warden,
        &gate.shared.refusals,
        &gate.config,
        (user, client),
        &verdict,
        action,
    );
    if open {
        End::Ended { reason, words }
    } else {
        End::Refused { words }
    }
}

/// The client → server pump. Until the session is admitted it forwards whole authentication
/// messages only; then it streams, counting the messages that ask for an answer. Every write
/// is flushed. It returns when the client closes or a write fails; it never closes the
/// upstream (the ending does, after the cancel).
async fn client_to_server(
    mut client: ReadHalf<Stream>,
    mut upstream: WriteHalf<Stream>,
    flow: Arc<Flow>,
    mut admitted: watch::Receiver<bool>,
    counters: Arc<GateCounters>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending = Vec::new();
    // Authentication: whole `p` messages; anything else waits for the decision.
    while !*admitted.borrow() {
        while pending.first() == Some(&wire::client::AUTHENTICATION) {
            match wire::next_message(&mut pending, MAX_AUTH_MESSAGE) {
                Ok(Some(m)) => {
                    if forward(&mut upstream, &m).await.is_err() {
                        return;
                    }
                    counters.relayed_to_server(m.len());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // What a client sends ahead of the decision is held, within bounds.
        if pending.len() > MAX_AUTH_MESSAGE {
            return;
        }
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            },
            changed = admitted.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
    let mut bounds = wire::Boundaries::default();
    let mut stream = |chunk: &[u8]| {
        let mut s = flow.state();
        s.last_activity = Instant::now();
        bounds.advance_with(chunk, false, |kind| Flow::client_message(&mut s, kind))
    };
    // What was held for the decision, then the rest as it comes.
    if stream(&pending).is_err() || forward(&mut upstream, &pending).await.is_err() {
        return;
    }
    counters.relayed_to_server(pending.len());
    loop {
        let n = match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream(&buf[..n]).is_err() || forward(&mut upstream, &buf[..n]).await.is_err() {
            return;
        }
        counters.relayed_to_server(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client: &[u8], server: &[u8]) -> (u64, u64) {
        let flow = Flow::new();
        let mut s = flow.state();
        for k in client {
            Flow::client_message(&mut s, *k);
        }
        for k in server {
            Flow::server_message(&mut s, *k);
        }
        (s.requests, s.answered)
    }

    #[test]
    fn outstanding_statements_as_data() {
        // (client messages, server messages in between, outstanding after)
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"Q", b"", true),
            (b"Q", b"TDCZ", false),
            // A pipeline: the first Sync answered, the second still running.
            (b"PBESPBES", b"12CZ", true),
            (b"PBESPBES", b"12CZ12CZ", false),
            (b"HX", b"", false),
            (b"F", b"VZ", false),
        ];
        for (client, server, want) in cases {
            let (requests, answered) = run(client, server);
            assert_eq!(requests > answered, *want, "{client:?} / {server:?}");
        }
    }

    /// libpq's extended-protocol COPY FROM STDIN: Execute, Sync (ignored by the server in
    /// copy-in), CopyData, CopyDone, Sync; one ReadyForQuery.
    #[test]
    fn an_extended_copy_in_balances() {
        let flow = Flow::new();
        let mut s = flow.state();
        for k in b"PBES" {
            Flow::client_message(&mut s, *k);
        }
        Flow::server_message(&mut s, b'1');
        Flow::server_message(&mut s, b'2');
        Flow::server_message(&mut s, b'G');
        for k in b"ddcS" {
            Flow::client_message(&mut s, *k);
        }
        assert!(s.requests > s.answered);
        Flow::server_message(&mut s, b'C');
        Flow::server_message(&mut s, b'Z');
        assert_eq!(s.requests, s.answered);
        // Simple-query COPY: Query, CopyData…, CopyDone; one ReadyForQuery.
        for k in b"Qddc" {
            Flow::client_message(&mut s, *k);
        }
        Flow::server_message(&mut s, b'G');
        Flow::server_message(&mut s, b'C');
        Flow::server_message(&mut s, b'Z');
        assert_eq!(s.requests, s.answered);
    }
}
