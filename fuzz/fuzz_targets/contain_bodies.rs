//! The untrusted bodies of the containment routes: `POST /v1/contain` and `POST /v1/release`
//! (through the gateway's own `parse_json`, then `validate`), the `Idempotency-Key` check,
//! and the receipt id of `GET /v1/contain/{id}`.
//!
//! Properties:
//! - nothing panics;
//! - an accepted request names 1 to 1000 principals, a list, a reason (and for a contain an
//!   incident) that are not empty and free of control characters, only known surfaces to
//!   confirm (never `gate` for a release), and an idempotency key of 1 to 255 printable ASCII
//!   characters when it has one;
//! - a receipt id is read only as `RCPT-` and a positive number, which writes back to an id
//!   read as the same number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::http::problem::parse_json;
use warden::operations::contain::{
    ContainRequest, MAX_IDEMPOTENCY_KEY, ReleaseRequest, SURFACES, check_key,
};
use warden::store::receipts::{parse_receipt_ref, receipt_ref};

const MAX_LEN: usize = 64 * 1024;

fn clean(text: &str) -> bool {
    !text.trim().is_empty() && !text.chars().any(char::is_control)
}

fn key_ok(key: Option<&str>) -> bool {
    key.is_none_or(|k| {
        (1..=MAX_IDEMPOTENCY_KEY).contains(&k.len())
            && k.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    })
}

fn common_ok(principals: &[String], list: &str, reason: &str, confirm: &[String]) -> bool {
    (1..=1000).contains(&principals.len())
        && clean(list)
        && clean(reason)
        && confirm.iter().all(|c| SURFACES.contains(&c.as_str()))
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LEN {
        return;
    }
    if let Ok(req) = parse_json::<ContainRequest>(data)
        && req.validate().is_ok()
    {
        assert!(common_ok(&req.principals, &req.list, &req.reason, &req.confirm));
        assert!(clean(&req.incident));
        assert!(key_ok(req.idempotency_key.as_deref()));
    }
    if let Ok(req) = parse_json::<ReleaseRequest>(data)
        && req.validate().is_ok()
    {
        assert!(common_ok(&req.principals, &req.list, &req.reason, &req.confirm));
        assert!(!req.confirm.iter().any(|c| c == "gate"));
        assert!(key_ok(req.idempotency_key.as_deref()));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(check_key(text).is_ok(), key_ok(Some(text)));
        if let Some(id) = parse_receipt_ref(text) {
            assert!(id > 0);
            assert!(text.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("RCPT-")));
            assert_eq!(parse_receipt_ref(&receipt_ref(id)), Some(id));
        }
    }
});
