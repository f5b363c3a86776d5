//! The untrusted bodies of the respond routes and of the MX's answers: `POST /v1/incidents`,
//! `POST /v1/alerts` (through the gateway's own `parse_json`, then `validate`), a rule matched
//! against the alert, and `sync::imperva::imp_error` and `parse_columns` on whatever an MX
//! sends back.
//!
//! Properties:
//! - nothing panics;
//! - an accepted incident or alert has a known severity, principals that parse, IP addresses
//!   that parse, and text fields free of control characters;
//! - an MX error answer yields an IMP code only from the documented `errors[0].error-code`, and
//!   a message of at most 200 characters when the answer is not that JSON;
//! - an MX columns answer is read only when every column has a name and a `key` that is a
//!   boolean or the string "true"/"false", and yields one column per element.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use warden::config::ResponseRuleConfig;
use warden::http::problem::parse_json;
use warden::model::policy::ServiceScope;
use warden::base::principal::Principal;
use warden::operations::incidents::{Alert, IncidentRequest, rule_matches};
use warden::sync::imperva::{imp_error, parse_columns};

const MAX_LEN: usize = 16 * 1024;

fn clean(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

fn subjects_ok(users: &[String], ips: &[String]) -> bool {
    users.iter().all(|u| Principal::parse(u).is_ok())
        && ips.iter().all(|i| i.parse::<IpAddr>().is_ok())
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LEN {
        return;
    }
    if let Ok(req) = parse_json::<IncidentRequest>(data)
        && req.validate().is_ok()
    {
        assert!(clean(&req.title) && clean(&req.source));
        assert!(!req.title.trim().is_empty());
        assert!(subjects_ok(&req.users, &req.ips));
    }
    if let Ok(alert) = parse_json::<Alert>(data)
        && let Ok(severity) = alert.validate()
    {
        assert!(clean(&alert.id) && clean(&alert.source));
        assert!(alert.title.as_deref().is_none_or(clean));
        assert!(subjects_ok(&alert.users, &alert.ips));
        let scope = |p: &str| ServiceScope::new(&[p.to_owned()]).expect("glob");
        let rule = ResponseRuleConfig {
            name: "r".into(),
            list: "L".into(),
            sources: Some(scope("dlp*")),
            min_severity: None,
            fields: vec![("category".into(), scope("exfil*"))],
            expires_in: None,
            reason: None,
        };
        let _ = rule_matches(&rule, &alert, severity);
    }
    if let Ok(answer) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(columns) = parse_columns(&answer)
    {
        let given = answer["columns"].as_array().expect("columns were read from an array");
        assert_eq!(columns.len(), given.len());
        for ((name, key), c) in columns.iter().zip(given) {
            assert_eq!(c["name"].as_str(), Some(name.as_str()));
            let spelled = match &c["key"] {
                serde_json::Value::Bool(b) => *b,
                serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
                other => panic!("key {other} was read"),
            };
            assert_eq!(spelled, *key);
        }
    }
    let (code, message) = imp_error(data);
    if let Some(code) = code {
        let v: serde_json::Value = serde_json::from_slice(data).expect("a code comes from JSON");
        assert_eq!(v["errors"][0]["error-code"].as_str(), Some(code.as_str()));
    } else if serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
        .is_none_or(|e| e.is_empty())
    {
        assert!(message.chars().count() <= 200);
    }
});
