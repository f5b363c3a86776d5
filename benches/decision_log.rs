//! What recording decisions costs a decision: `Warden::decide` with the decision log on
//! (every block, 1% of allows: `allow_sample = 0.01`) against off, and on with a SIEM sink
//! taking every recorded decision whose receiver is stalled (it accepts the TCP connection and
//! never answers the TLS handshake) — as ratios that hold still on a noisy machine.
//!
//! ```text
//! cargo bench --bench decision_log [-- ROUNDS]      (default 101 rounds)
//! ```
//!
//! Three wardens over the same in-memory store shape (1,000 listed users, one blocking
//! policy) decide the same 4,096 requests. Two mixes: 10% blocked (every one recorded) and
//! none blocked (only the 1% sample recorded). Each round times one pass per warden back to
//! back, alternating which goes first (`common::interleaved`); the figure is the median of
//! the per-round ratios with their p10–p90. The writers run on their own threads, as in
//! `serve`: the decision only builds the record and offers it. At the end the bench prints
//! what the log wrote and dropped and what the stalled sink queued and dropped: with its
//! sender stuck in a handshake, decisions go on at the same rate and the excess is counted,
//! never waited for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{QUERIES, Rng, interleaved, pass};
use warden::base::account::Account;
use warden::config::Config;
use warden::decide::Request;
use warden::runtime::Warden;
use warden::store::{NewMember, Store};

const MEMBERS: usize = 1_000;

fn config(extra: &str) -> String {
    format!(
        r#"
[[lists]]
name = "L"
[[data_sets]]
name = "L"
case_sensitive = false
columns = [{{ name = "user", key = true }}]
source = {{ type = "list", list = "L" }}
[[policies]]
name = "Block listed users"
action = "block"
severity = "high"
apply_to = ["*"]
[[policies.criteria]]
field = "db_user"
operation = "at-least-one"
data_set = "L"
{extra}
"#
    )
}

fn warden(dir: &Path, extra: &str) -> Arc<Warden> {
    let config = Config::parse(&config(extra), "bench", dir).unwrap();
    let store = Arc::new(Store::in_memory().unwrap());
    let warden = Arc::new(Warden::with_store(config, store).unwrap());
    let identity = Arc::clone(&warden.config().identity);
    for i in 0..MEMBERS {
        let name = common::member(i);
        let account = Account::by_rules_or_text(&identity, &name);
        let member = NewMember::new(account, &name, "bench");
        warden.store().add_member("L", &member).unwrap();
    }
    warden.reload_from_store().unwrap();
    warden
}

/// A receiver that takes the connection and never says a word: the sink's sender waits in
/// the TLS handshake (up to its I/O timeout, then again).
fn stalled_receiver() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// `QUERIES` requests, `blocked` percent of them for listed users.
fn queries(blocked: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..QUERIES)
        .map(|_| {
            let listed = rng.below(100) < blocked;
            let i = rng.below(MEMBERS);
            common::query(if listed { i } else { MEMBERS + i })
        })
        .collect()
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(101);
    let tmp = tempfile::tempdir().unwrap();
    let off = warden(tmp.path(), "[decision_log]\nenabled = false\n");
    // The same as `off`: what two identical wardens differ by on this machine, the floor
    // below which a ratio says nothing.
    let twin = warden(tmp.path(), "[decision_log]\nenabled = false\n");
    let on_dir = tmp.path().join("on");
    let on = warden(
        tmp.path(),
        &format!(
            "[decision_log]\nallow_sample = 0.01\ndir = \"{}\"\n",
            on_dir.display()
        ),
    );
    let on_writer = on
        .decisions()
        .start(on_dir, 1 << 30, Duration::from_secs(86_400))
        .unwrap();
    let stalled_dir = tmp.path().join("stalled");
    let stalled = warden(
        tmp.path(),
        &format!(
            "[decision_log]\nallow_sample = 0.01\ndir = \"{log}\"\n\
             [[events.sinks]]\nname = \"stalled\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\n\
             queue_dir = \"{queue}\"\n",
            log = stalled_dir.join("log").display(),
            queue = stalled_dir.join("queue").display(),
            port = stalled_receiver(),
        ),
    );
    let stalled_writer = stalled
        .decisions()
        .start(
            stalled_dir.join("log"),
            1 << 30,
            Duration::from_secs(86_400),
        )
        .unwrap();
    let config = stalled.config().clone();
    let sinks = stalled.events().start(&config, stalled.store());

    println!(
        "Warden::decide with the decision log on (every block, 1% of allows) against off, \
         median of {rounds} interleaved rounds of {QUERIES} decisions, ns per decision"
    );
    println!(
        "{:<10} {:<22} {:>9} {:>9} {:>7} {:>14}",
        "mix", "against off", "on ns", "off ns", "ratio", "ratio p10-p90"
    );
    for (label, blocked) in [("10% block", 10), ("all allow", 0)] {
        let texts = queries(blocked, 0xd1ce + blocked as u64);
        let requests: Vec<Request<'_>> = common::requests(&texts);
        for (name, subject) in [
            ("log off (A/A)", &twin),
            ("log on", &on),
            ("log on + stalled sink", &stalled),
        ] {
            let (a, b) = (subject.engine().snapshot(), off.engine().snapshot());
            let r = interleaved(
                rounds,
                || pass(&requests, |q| subject.decide(&a, q)),
                || pass(&requests, |q| off.decide(&b, q)),
            );
            println!(
                "{:<10} {:<22} {:>9.1} {:>9.1} {:>6.3}x {:>7.3}-{:.3}x",
                label, name, r.a, r.b, r.ratio, r.p10, r.p90
            );
        }
    }
    let log = on.decisions().stats();
    println!(
        "decision log (on): {} written, {} dropped",
        log.written.load(Ordering::Relaxed),
        log.dropped.load(Ordering::Relaxed)
    );
    for s in stalled.events().statuses() {
        println!(
            "stalled sink: connected {}, {} bytes queued, {} delivered, dropped {} (queue full) + {} (handoff full)",
            s.connected, s.queued_bytes, s.delivered, s.dropped_queue_full, s.dropped_handoff_full
        );
    }
    on_writer.stop();
    stalled_writer.stop();
    stalled.events().stop(sinks, Duration::from_secs(1));
}
