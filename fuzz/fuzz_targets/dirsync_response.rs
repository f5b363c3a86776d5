//! The DirSync response control value (`warden::directory::parse_dirsync_response`): BER from
//! the directory server, decoded by warden. Input: the raw control value.
//!
//! Properties:
//! - any input is refused or decoded, never a panic;
//! - a decoded cookie is at most `MAX_COOKIE` bytes and lies inside the input;
//! - a decoded response re-encoded the way a server writes it (`moreResults`, 0, cookie)
//!   decodes to the same response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::directory::{MAX_COOKIE, encode_dirsync_request, parse_dirsync_response};

fuzz_target!(|data: &[u8]| {
    let Ok(response) = parse_dirsync_response(data) else {
        return;
    };
    assert!(response.cookie.len() <= MAX_COOKIE);
    assert!(response.cookie.len() <= data.len());
    // The request shape is the response shape: flags ↔ moreResults, maxBytes ↔ unused.
    let again = encode_dirsync_request(i32::from(response.more), 0, &response.cookie);
    assert_eq!(parse_dirsync_response(&again).as_ref(), Ok(&response));
});
