//! The MySQL gate's handshake parsers (`warden::mysql::wire`): the server's `HandshakeV10`
//! (from an upstream), and what a client sends before anyone has authenticated it — the short
//! `SSLRequest`, `HandshakeResponse41` with its connection attributes, `COM_CHANGE_USER` —
//! and the packet framing both directions go through.
//!
//! Properties:
//! - no input panics;
//! - a whole packet split off a buffer is its header's length, and the rest stays;
//! - boundaries tracked chunk by chunk see the same packets as whole-packet splitting;
//! - a greeting's capability rewrite changes only the flags asked for;
//! - a response's user has no NUL and its attributes' bytes fit in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::mysql::wire::{self, Boundaries, Greeting, Hello, caps};

const MAX: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Greeting::parse(data) {
        let changed = g.with_capabilities(data, caps::SSL, caps::COMPRESS);
        assert_eq!(changed.len(), data.len());
        let again = Greeting::parse(&changed).expect("a rewritten greeting parses");
        assert_eq!(again.connection_id, g.connection_id);
        assert_eq!(again.scramble, g.scramble);
        assert_eq!(again.capabilities & caps::COMPRESS, 0);
    }
    if let Ok(Hello::Response(r)) = Hello::parse(data) {
        assert!(!r.user.contains(&0));
        let attrs: usize = r.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(attrs <= data.len());
        let _ = r.program_name();
    }
    let _ = wire::change_user(data);
    // Framing: whole packets off the front, and the same boundaries chunk by chunk.
    let mut buf = data.to_vec();
    let mut whole = Vec::new();
    while let Ok(Some(p)) = wire::next_packet(&mut buf, MAX) {
        assert_eq!(wire::payload_len([p.0[0], p.0[1], p.0[2], p.0[3]]), p.payload().len());
        whole.push((p.seq(), p.payload().first().copied(), p.payload().len()));
    }
    let consumed = data.len() - buf.len();
    let mut bounds = Boundaries::default();
    let mut seen = Vec::new();
    for chunk in data[..consumed].chunks(7) {
        bounds.advance(chunk, false, |seq, kind, len| seen.push((seq, kind, len)));
    }
    assert!(bounds.at_boundary());
    assert_eq!(seen, whole);
});
