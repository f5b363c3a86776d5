//! The PostgreSQL gate's start-up parser (`warden::gate::startup`) and what the gate reads from
//! a start-up message (`warden::gate::login`: the role names, the `options` command line), which
//! come from peers nobody has authenticated yet.
//!
//! Properties:
//! - no input panics, and none is accepted beyond the size cap;
//! - an accepted packet's length field is its length;
//! - an accepted `StartupMessage` re-encodes to the same bytes (nothing in it is dropped or
//!   read twice), and its parameters are unique, non-empty names without NUL;
//! - a login has a user exactly when the packet has a non-empty `user`; every name it decides
//!   on comes from at most 63 bytes (the server's cut) and appears once; `options` words never
//!   hold more bytes than the option string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::gate::login::{Login, MAX_NAME, settings, split_options};
use warden::gate::startup::{Startup, encode_message, packet_len, parse};

const MAX: usize = 10 * 1024;

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data, MAX);
    if let Some(header) = data.get(..4) {
        let header: [u8; 4] = header.try_into().expect("four bytes");
        if let Ok(n) = packet_len(header, MAX) {
            assert!((8..=MAX).contains(&n));
        }
    }
    // The options parser on the raw bytes, whatever the packet.
    let words = split_options(data);
    assert!(words.iter().map(Vec::len).sum::<usize>() <= data.len());
    for (name, _) in settings(&words) {
        assert!(!name.contains('-'));
    }
    let Ok(startup) = parsed else {
        return;
    };
    assert!(data.len() <= MAX && data.len() >= 8);
    assert_eq!(
        u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize,
        data.len()
    );
    if let Startup::Message { version, params } = &startup {
        assert_eq!(encode_message(*version, params), data);
        for (i, (k, v)) in params.iter().enumerate() {
            assert!(!k.is_empty() && !k.contains(&0) && !v.contains(&0));
            assert!(params[..i].iter().all(|(o, _)| o != k));
        }
        let login = Login::read(params);
        let user = startup.param("user").filter(|u| !u.is_empty());
        assert_eq!(login.is_some(), user.is_some());
        if let Some(login) = login {
            let names: Vec<&str> = login.names().collect();
            for (i, name) in names.iter().enumerate() {
                // A lossy U+FFFD takes three bytes for one: at most 63 source bytes.
                assert!(name.chars().count() <= MAX_NAME);
                assert!(!names[..i].contains(name));
            }
        }
    }
});
