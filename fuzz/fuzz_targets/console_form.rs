//! Console form bodies (`warden::http::console::form::Form`): any bytes a browser (or anyone)
//! posts to the console.
//!
//! Properties:
//! - parsing never panics, and refuses rather than guesses: an accepted form has at most
//!   `MAX_FIELDS` pairs;
//! - a form re-encoded from the parsed pairs parses to the same pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::http::console::form::{Form, MAX_FIELDS};

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(form) = Form::parse(data) else {
        return;
    };
    let pairs = form.pairs();
    assert!(pairs.len() <= MAX_FIELDS);
    let again: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let reparsed = Form::parse(again.join("&").as_bytes()).expect("a re-encoded form parses");
    assert_eq!(reparsed.pairs(), pairs);
});
