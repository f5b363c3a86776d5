//! The SIEM writers' escaping (`warden::events::{cef, ocsf, syslog}`) and warden's CEF reader.
//! Input: fields separated by 0xFF — the vendor, the signature, the actor, the user, the
//! target, the reason, the policy, the service, the incident, the message and a detail value
//! (missing ones are empty); the first byte also picks the event's activity. Seeds:
//! fuzz/corpus/event_escaping/.
//!
//! Properties:
//! - the CEF line is one line (no CR, no LF) and reads back, both through warden's reader
//!   (`cef::parse`) and through the reference reader written from the standard
//!   (`warden_fuzz::cef_reference`), with every header field and every extension value as
//!   sent — control characters in their visible form, but CR and LF kept in extension values
//!   (`cef::header_as_read`, `cef::value_as_read`);
//! - the OCSF line is one line of JSON that reads back with every field exactly as sent;
//! - the RFC 5424 message around either is one line whose MSGID is printable ASCII;
//! - warden's CEF reader never panics on the raw input, and what it reads from a line, written
//!   again, reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warden::events::{Activity, Event, Severity, cef, ocsf, syslog};

const MAX_LEN: usize = 4096;

const ACTIVITIES: [Activity; 11] = [
    Activity::Lock,
    Activity::Unlock,
    Activity::Logon,
    Activity::Logoff,
    Activity::AddUser,
    Activity::RemoveUser,
    Activity::Create,
    Activity::Update,
    Activity::Delete,
    Activity::Other,
    Activity::Connect,
];

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LEN {
        return;
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(read) = cef::parse(text)
    {
        rewritten_reads_the_same(&read);
    }
    let mut f = warden_fuzz::fields(data).into_iter().map(Option::unwrap_or_default);
    let mut next = || f.next().unwrap_or_default();
    let vendor = next();
    let event = Event {
        uid: "u-1".into(),
        at_ms: 1_700_000_000_000,
        activity: ACTIVITIES[usize::from(data.first().copied().unwrap_or(0)) % ACTIVITIES.len()],
        signature: next(),
        name: "Name | with = and \\",
        severity: Severity::High,
        success: data.len() % 2 == 0,
        actor: Some(next()),
        user: Some(next()),
        target: Some(next()),
        reason: Some(next()),
        policy: Some(next()),
        service: Some(next()),
        incident: Some(next()),
        source: Some("10.0.0.1".into()),
        count: Some(3),
        message: next(),
        detail: serde_json::Map::from_iter([("value".to_owned(), Value::from(next()))]),
        audit_id: None,
    };
    cef_reads_back(&event, &vendor);
    ocsf_reads_back(&event, &vendor);
});

fn cef_reads_back(e: &Event, vendor: &str) {
    let line = cef::encode(e, vendor);
    assert!(!line.contains(['\n', '\r']), "{line:?}: not one line");
    let read = cef::parse(&line).unwrap_or_else(|err| panic!("{line:?}: {err}"));
    assert_eq!(read.header.vendor, cef::header_as_read(vendor), "{line:?}");
    assert_eq!(read.header.signature, cef::header_as_read(&e.signature), "{line:?}");
    assert_eq!(read.header.name, cef::header_as_read(e.name), "{line:?}");
    let sent = [
        ("suser", e.actor.as_deref()),
        ("duser", e.user.as_deref()),
        ("msg", Some(e.message.as_str())),
    ];
    let labelled = [
        ("target", e.target.as_deref()),
        ("reason", e.reason.as_deref()),
        ("policy", e.policy.as_deref()),
        ("service", e.service.as_deref()),
        ("incident", e.incident.as_deref()),
    ];
    for (key, value) in sent {
        let want = value.map(cef::value_as_read);
        assert_eq!(read.get(key).map(str::to_owned), want, "{key} in {line:?}");
    }
    for (label, value) in labelled {
        let want = value.map(cef::value_as_read);
        assert_eq!(read.labelled(label).map(str::to_owned), want, "{label} in {line:?}");
    }
    let detail: Value = serde_json::from_str(read.labelled("detail").unwrap_or_default())
        .unwrap_or_else(|err| panic!("detail in {line:?}: {err}"));
    assert_eq!(detail["value"], e.detail["value"], "{line:?}");
    // The reference reader agrees on every field.
    let (header, pairs) = warden_fuzz::cef_reference(&line).expect("reference reads it");
    assert_eq!(header[1], read.header.vendor, "{line:?}");
    assert_eq!(header[4], read.header.signature, "{line:?}");
    assert_eq!(header[5], read.header.name, "{line:?}");
    assert_eq!(pairs, read.extensions, "{line:?}");
    let message = syslog::message(e.at_ms, e.severity, &e.signature, &line);
    assert!(!message.contains(['\n', '\r']), "{message:?}");
    let msgid = message.split(' ').nth(5).unwrap_or_default();
    assert!(
        !msgid.is_empty() && msgid.len() <= 32 && msgid.bytes().all(|b| b.is_ascii_graphic()),
        "{message:?}"
    );
}

fn ocsf_reads_back(e: &Event, vendor: &str) {
    let line = ocsf::encode_line(e, vendor);
    assert!(!line.contains(['\n', '\r']), "{line:?}: not one line");
    let o: Value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("{line:?}: {err}"));
    assert_eq!(o["metadata"]["product"]["vendor_name"], vendor);
    assert_eq!(o["metadata"]["event_code"], e.signature.as_str());
    assert_eq!(o["message"], e.message.as_str());
    assert_eq!(o["status_detail"], e.reason.as_deref().unwrap_or_default());
    let user = match e.activity {
        Activity::Connect => &o["actor"]["user"]["name"],
        Activity::Create | Activity::Update | Activity::Delete | Activity::Other => {
            assert_eq!(o["actor"]["user"]["name"], e.actor.as_deref().unwrap_or_default());
            assert_eq!(o["api"]["operation"], e.signature.as_str());
            &Value::Null
        }
        _ => &o["user"]["name"],
    };
    if !user.is_null() {
        assert_eq!(user, e.user.as_deref().unwrap_or_default(), "{line:?}");
    }
    for (key, value) in [
        ("target", &e.target),
        ("incident", &e.incident),
        ("policy", &e.policy),
        ("service", &e.service),
    ] {
        assert_eq!(o["unmapped"][key], value.as_deref().unwrap_or_default(), "{line:?}");
    }
    assert_eq!(o["unmapped"]["value"], e.detail["value"]);
    assert_eq!(o["type_uid"], e.activity.type_uid());
}

/// What warden's reader read, written again, reads back the same.
fn rewritten_reads_the_same(read: &cef::Parsed) {
    let ext: Vec<(&str, &str)> = read
        .extensions
        .iter()
        .filter(|(k, _)| is_key(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if ext.len() != read.extensions.len() {
        return;
    }
    let mut line = String::new();
    cef::write_line(&mut line, &read.header, &ext);
    let again = cef::parse(&line).unwrap_or_else(|err| panic!("{line:?}: {err}"));
    assert_eq!(again.header.vendor, cef::header_as_read(&read.header.vendor));
    for ((k1, v1), (k2, v2)) in read.extensions.iter().zip(&again.extensions) {
        assert_eq!(k1, k2, "{line:?}");
        assert_eq!(&cef::value_as_read(v1), v2, "{line:?}");
    }
    assert_eq!(read.extensions.len(), again.extensions.len(), "{line:?}");
}

/// A key warden could write: a word of letters and digits.
fn is_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric())
}
