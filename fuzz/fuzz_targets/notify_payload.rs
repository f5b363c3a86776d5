//! The change feed's reading of a NOTIFY payload (`warden::store::postgres::
//! announced_revision`). Input: a payload as any role that may connect could send it (up to
//! PostgreSQL's 8000 bytes). Seeds: fuzz/corpus/notify_payload/.
//!
//! Properties:
//! - reading never panics, whatever the bytes;
//! - a payload is read as a revision only if it is exactly what warden writes for that
//!   revision (`revision.to_string()`, a positive number): nothing else — a sign, a leading
//!   zero, spaces, other digits, a number past `i64::MAX` — is taken for one;
//! - every revision warden can write reads back as itself (checked on a revision made from
//!   the input's first eight bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::store::postgres::announced_revision;

/// PostgreSQL's limit on a NOTIFY payload, and a little past it.
const MAX_LEN: usize = 8 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some(payload) = warden_fuzz::text(data, MAX_LEN) else {
        return;
    };
    if let Some(revision) = announced_revision(&payload) {
        assert!(revision > 0, "{payload:?} read as {revision}");
        assert_eq!(revision.to_string(), payload, "{payload:?} is not warden's form");
    }
    let mut bytes = [0u8; 8];
    for (b, d) in bytes.iter_mut().zip(data) {
        *b = *d;
    }
    let written = i64::try_from(u64::from_le_bytes(bytes) >> 1)
        .unwrap_or(i64::MAX)
        .max(1);
    assert_eq!(
        announced_revision(&written.to_string()),
        Some(written),
        "warden's own payload for revision {written} is not read back"
    );
});
