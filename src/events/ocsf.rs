//! Open Cybersecurity Schema Framework (OCSF) JSON for [`super::Event`]s, schema
//! [`VERSION`]. One compact JSON object per event; the classes, activities and attributes are
//! those of the schema's `events/iam/account_change.json` (3001: Lock 9, Unlock 12),
//! `events/iam/authentication.json` (3002: Logon 1, Logoff 2),
//! `events/iam/group_management.json` (3006: Add User 3, Remove User 4),
//! `events/application/api_activity.json` (6003: Create 1, Update 3, Delete 4, Other 99) and
//! `events/application/datastore_activity.json` (6005: Connect 3) at tag 1.8.0 of
//! `ocsf/ocsf-schema`, with the base event's `severity_id` (1 Informational … 4 High) and
//! `status_id` (1 Success, 2 Failure) from its `dictionary.json`.
//!
//! Every event carries the required base attributes (`time`, `category_uid`, `class_uid`,
//! `activity_id`, `type_uid`, `severity_id`, `metadata` with `version` and `product`) and
//! each class's required ones: `user` (3001, 3002), `group` (3006), `actor`, `api` and
//! `src_endpoint` (6003), `actor` and `src_endpoint` (6005). What has no attribute of its
//! own (the list, the incident, warden's policy, the audit detail) is under `unmapped`.

use serde_json::{Map, Value, json};

use super::event::{Activity, Event};
use crate::base::json::escape_raw_controls;

/// The OCSF schema version events follow (`metadata.version`).
pub const VERSION: &str = "1.8.0";

/// The event as an OCSF object.
pub fn encode(event: &Event, vendor: &str) -> Value {
    let (category_uid, category_name, class_uid, class_name) = event.activity.class();
    let (activity_id, activity_name) = event.activity.activity();
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        o.insert(k.to_owned(), v);
    };
    put("time", json!(event.at_ms));
    put("category_uid", json!(category_uid));
    put("category_name", json!(category_name));
    put("class_uid", json!(class_uid));
    put("class_name", json!(class_name));
    put("activity_id", json!(activity_id));
    put("activity_name", json!(activity_name));
    put("type_uid", json!(event.activity.type_uid()));
    put("type_name", json!(format!("{class_name}: {activity_name}")));
    put("severity_id", json!(event.severity.ocsf_id()));
    put("severity", json!(event.severity.ocsf_name()));
    put("status_id", json!(if event.success { 1 } else { 2 }));
    put(
        "status",
        json!(if event.success { "Success" } else { "Failure" }),
    );
    if let Some(reason) = &event.reason {
        put("status_detail", json!(reason));
    }
    put("message", json!(event.message));
    if let Some(count) = event.count {
        put("count", json!(count));
    }
    put(
        "metadata",
        json!({
            "version": VERSION,
            "product": {
                "name": "warden",
                "vendor_name": vendor,
                "version": env!("CARGO_PKG_VERSION"),
            },
            "uid": event.uid,
            "event_code": event.signature,
            "log_name": "warden",
        }),
    );
    let actor_user = event.actor.as_deref().map(user);
    let src = event.source.as_deref().map(endpoint);
    match event.activity {
        Activity::Connect => {
            let mut actor = Map::new();
            if let Some(u) = event.user.as_deref() {
                actor.insert("user".into(), user(u));
            }
            if let Some(app) = event.detail.get("source_app").filter(|v| !v.is_null()) {
                actor.insert("app_name".into(), app.clone());
            }
            put("actor", Value::Object(actor));
            put(
                "src_endpoint",
                src.unwrap_or_else(|| json!({"name": "unknown"})),
            );
            put(
                "database",
                json!({
                    "name": event.service.as_deref().unwrap_or_default(),
                    "type_id": 0,
                    "type": "Unknown",
                }),
            );
        }
        Activity::Create | Activity::Update | Activity::Delete | Activity::Other => {
            put(
                "actor",
                json!({ "user": actor_user.unwrap_or_else(|| user("unknown")) }),
            );
            put("api", json!({ "operation": event.signature }));
            // A local action (the command line, a timer) came from this host.
            put(
                "src_endpoint",
                src.unwrap_or_else(|| json!({ "hostname": super::syslog::hostname() })),
            );
            if let Some(t) = &event.target {
                put("resources", json!([{ "name": t }]));
            }
        }
        _ => {
            if let Some(a) = actor_user {
                put("actor", json!({ "user": a }));
            }
            if let Some(s) = src {
                put("src_endpoint", s);
            }
            put("user", user(event.user.as_deref().unwrap_or("unknown")));
            match event.activity {
                Activity::AddUser | Activity::RemoveUser => {
                    put(
                        "group",
                        json!({ "name": event.target.as_deref().unwrap_or_default() }),
                    );
                }
                Activity::Logon | Activity::Logoff => {
                    if let Some(s) = &event.service {
                        put("service", json!({ "name": s }));
                    }
                    if let Some(t) = &event.target {
                        put("dst_endpoint", json!({ "name": t }));
                    }
                }
                _ => {}
            }
        }
    }
    put("unmapped", Value::Object(unmapped(event)));
    Value::Object(o)
}

/// The event as one line of compact JSON, every control character escaped.
pub fn encode_line(event: &Event, vendor: &str) -> String {
    escape_raw_controls(encode(event, vendor).to_string())
}

/// An OCSF `user`: the name as [`super::event::subject`] gave it, and the NetBIOS domain of
/// a `DOMAIN\user` name.
fn user(name: &str) -> Value {
    match name.split_once('\\') {
        Some((domain, _)) if !domain.is_empty() => json!({ "name": name, "domain": domain }),
        _ => json!({ "name": name }),
    }
}

/// An endpoint: an address (`ip`, and `port` when given) or, for a source that is not one
/// (`cli`, `expiry`), its name.
fn endpoint(source: &str) -> Value {
    if let Ok(ip) = source.parse::<std::net::IpAddr>() {
        return json!({ "ip": ip.to_string() });
    }
    if let Ok(addr) = source.parse::<std::net::SocketAddr>() {
        return json!({ "ip": addr.ip().to_string(), "port": addr.port() });
    }
    json!({ "name": source })
}

fn unmapped(event: &Event) -> Map<String, Value> {
    let mut u = event.detail.clone();
    for (key, value) in [
        ("target", &event.target),
        ("incident", &event.incident),
        ("policy", &event.policy),
        ("service", &event.service),
    ] {
        if let Some(v) = value {
            u.insert(key.to_owned(), json!(v));
        }
    }
    u
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::AuditRecord;

    #[test]
    fn a_release_is_an_account_change_unlock_with_the_required_attributes() {
        let r = AuditRecord {
            id: 3,
            at_ms: 1_700_000_000_000,
            actor: "cli:root".into(),
            action: "lists.remove".into(),
            target: "Suspicious Users".into(),
            outcome: "ok".into(),
            source: Some("cli".into()),
            account: None,
            detail: json!({"principal": "CORP\\alice"}),
        };
        let e = &super::super::event::from_audit(&r)[0];
        let o = encode(e, "Acme");
        assert_eq!(o["class_uid"], 3001);
        assert_eq!(o["category_uid"], 3);
        assert_eq!(o["activity_id"], 12);
        assert_eq!(o["type_uid"], 300_112);
        assert_eq!(o["status_id"], 1);
        assert_eq!(o["metadata"]["version"], VERSION);
        assert_eq!(o["metadata"]["product"]["name"], "warden");
        assert_eq!(o["metadata"]["product"]["vendor_name"], "Acme");
        assert_eq!(o["user"]["name"], "CORP\\alice");
        assert_eq!(o["user"]["domain"], "CORP");
        assert_eq!(o["actor"]["user"]["name"], "cli:root");
        assert_eq!(o["src_endpoint"]["name"], "cli");
        assert_eq!(o["unmapped"]["target"], "Suspicious Users");
        let line = encode_line(e, "Acme");
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), o);
    }

    #[test]
    fn an_admin_change_is_api_activity_with_actor_api_and_source() {
        let r = AuditRecord {
            id: 4,
            at_ms: 1,
            actor: "key:k (admin)".into(),
            action: "keys.create".into(),
            target: "k2".into(),
            outcome: "ok".into(),
            source: Some("10.1.2.3:4444".into()),
            account: None,
            detail: json!({"name": "proxy", "scopes": ["decide"]}),
        };
        let o = encode(&super::super::event::from_audit(&r)[0], "v");
        assert_eq!(o["class_uid"], 6003);
        assert_eq!(o["type_uid"], 600_301);
        assert_eq!(o["api"]["operation"], "keys.create");
        assert_eq!(o["src_endpoint"]["ip"], "10.1.2.3");
        assert_eq!(o["src_endpoint"]["port"], 4444);
        assert_eq!(o["resources"][0]["name"], "k2");
        assert_eq!(o["unmapped"]["scopes"][0], "decide");
    }
}
