//! The PostgreSQL gate's start-up parser (`warden::gate::startup`), which reads bytes from
//! peers nobody has authenticated yet.
//!
//! Properties:
//! - no input panics, and none is accepted beyond the size cap;
//! - an accepted packet's length field is its length;
//! - an accepted `StartupMessage` re-encodes to the same bytes (nothing in it is dropped or
//!   read twice), and its parameters are unique, non-empty names without NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
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
    let Ok(startup) = parsed else {
        return;
    };
    assert!(data.len() <= MAX && data.len() >= 8);
    assert_eq!(
        u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize,
        data.len()
    );
    if let Startup::Message { version, params } = &startup {
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(encode_message(*version, &pairs), data);
        for (i, (k, v)) in params.iter().enumerate() {
            assert!(!k.is_empty() && !k.contains('\0') && !v.contains('\0'));
            assert!(params[..i].iter().all(|(o, _)| o != k));
        }
    }
});
