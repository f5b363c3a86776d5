//! Incident use cases: open an incident, run a response on it (put some or all of its users on
//! a list), and ingest alerts that automated-response rules turn into an incident with a
//! response.
//!
//! Each is validated first and written to the store in one transaction with its audit record
//! (a response and its members together; an alert, its incident and its response together,
//! once per alert id), then republished so that decisions and the push see it — the same path
//! a list change takes.

use std::net::IpAddr;

use serde::Deserialize;

use super::{Actor, OperationError, accounts, check_text, expiry};
use crate::base::account::Account;
use crate::base::principal::{Principal, PrincipalError};
use crate::base::severity::IncidentSeverity;
use crate::base::time::now;
use crate::base::word::UnknownWord;
use crate::config::ResponseRuleConfig;
use crate::runtime::Warden;
use crate::store::incidents::incident_ref;
use crate::store::{
    Added, AlertSeen, AuditRecord, Incident, NewIncident, NewResponse, ResponseRecord,
};

/// Most users or IPs one incident or alert may name.
pub const MAX_SUBJECTS: usize = 1000;

/// An incident as reported by an analyst (`POST /v1/incidents`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentRequest {
    pub title: String,
    pub severity: String,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default = "manual")]
    pub source: String,
}

fn manual() -> String {
    "manual".to_owned()
}

/// A response to run on an incident (`POST /v1/incidents/{id}/responses`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseRequest {
    /// The list to put users on.
    pub list: String,
    /// Which of the incident's users; all of them when absent.
    pub users: Option<Vec<String>>,
    pub reason: String,
    /// RFC 3339 time, or…
    pub expires_at: Option<String>,
    /// …a duration such as `7d`.
    pub expires_in: Option<String>,
}

/// An alert from a detection system (`POST /v1/alerts`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// The sender's id for this alert: the same id is acted on once.
    pub id: String,
    pub source: String,
    pub severity: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    /// Free fields rules can match on (strings, numbers and booleans compare as text).
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// What ingesting an alert did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertOutcome {
    pub alert: String,
    /// The rule that matched, if one did.
    pub rule: Option<String>,
    /// The incident the alert opened (now or, for a duplicate, before).
    pub incident: Option<String>,
    /// True when this alert id had been seen before and nothing was done again.
    pub duplicate: bool,
}

fn check_users(field: &str, users: &[String]) -> Result<(), OperationError> {
    if users.len() > MAX_SUBJECTS {
        return Err(OperationError::invalid(
            field,
            format!("at most {MAX_SUBJECTS} users"),
        ));
    }
    for (i, u) in users.iter().enumerate() {
        Principal::parse(u).map_err(|e: PrincipalError| {
            OperationError::invalid(&format!("{field}[{i}]"), e.to_string())
        })?;
    }
    Ok(())
}

fn check_ips(field: &str, ips: &[String]) -> Result<(), OperationError> {
    if ips.len() > MAX_SUBJECTS {
        return Err(OperationError::invalid(
            field,
            format!("at most {MAX_SUBJECTS} addresses"),
        ));
    }
    for (i, ip) in ips.iter().enumerate() {
        ip.parse::<IpAddr>().map_err(|_| {
            OperationError::invalid(
                &format!("{field}[{i}]"),
                format!("{ip:?} is not an IPv4 or IPv6 address"),
            )
        })?;
    }
    Ok(())
}

fn severity(text: &str) -> Result<IncidentSeverity, OperationError> {
    text.parse()
        .map_err(|e: UnknownWord| OperationError::invalid("severity", e.to_string()))
}

impl IncidentRequest {
    /// Checks every field of an untrusted incident; returns its severity.
    pub fn validate(&self) -> Result<IncidentSeverity, OperationError> {
        check_text("title", &self.title, true)?;
        check_text("source", &self.source, true)?;
        let severity = severity(&self.severity)?;
        check_users("users", &self.users)?;
        check_ips("ips", &self.ips)?;
        Ok(severity)
    }
}

impl Alert {
    /// Checks every field of an untrusted alert; returns its severity.
    pub fn validate(&self) -> Result<IncidentSeverity, OperationError> {
        check_text("id", &self.id, true)?;
        check_text("source", &self.source, true)?;
        if let Some(t) = &self.title {
            check_text("title", t, false)?;
        }
        let severity = severity(&self.severity)?;
        check_users("users", &self.users)?;
        check_ips("ips", &self.ips)?;
        Ok(severity)
    }
}

/// Opens an incident.
pub fn create_incident(
    warden: &Warden,
    actor: &Actor,
    req: &IncidentRequest,
) -> Result<Incident, OperationError> {
    let severity = req.validate()?;
    let new = NewIncident {
        title: req.title.trim().to_owned(),
        severity: severity.as_str().to_owned(),
        source: req.source.trim().to_owned(),
        users: req.users.clone(),
        ips: req.ips.clone(),
        created_by: actor.name.clone(),
        alert_id: None,
    };
    let id = warden.store().audited(
        |store| store.create_incident(&new),
        |id| {
            AuditRecord::new(
                actor,
                "incidents.create",
                &incident_ref(*id),
                serde_json::json!({ "severity": new.severity, "users": new.users.len() }),
            )
        },
    )?;
    read_incident(warden, id)
}

/// One incident with its responses.
pub fn read_incident(warden: &Warden, id: i64) -> Result<Incident, OperationError> {
    warden
        .store()
        .incident(id)?
        .ok_or(OperationError::NoSuchIncident(id))
}

/// Runs a response on an incident: its users (all, or the ones named, which must be the
/// incident's) go on the list with the reason and expiry; recorded on the incident, audited,
/// and in the snapshot before this returns.
pub fn respond(
    warden: &Warden,
    actor: &Actor,
    incident: i64,
    req: &ResponseRequest,
) -> Result<ResponseRecord, OperationError> {
    check_text("reason", &req.reason, true)?;
    let current = read_incident(warden, incident)?;
    let principals = match &req.users {
        None => current.users.clone(),
        Some(named) => {
            for (i, u) in named.iter().enumerate() {
                if !current.users.iter().any(|c| c.eq_ignore_ascii_case(u)) {
                    return Err(OperationError::invalid(
                        &format!("users[{i}]"),
                        format!(
                            "{u:?} is not one of {}'s users ({})",
                            incident_ref(incident),
                            current.users.join(", ")
                        ),
                    ));
                }
            }
            named.clone()
        }
    };
    if principals.is_empty() {
        return Err(OperationError::invalid(
            "users",
            format!("{} names no users to respond on", incident_ref(incident)),
        ));
    }
    let expires_at = expiry(
        req.expires_at.as_deref(),
        req.expires_in.as_deref(),
        "expires_in",
    )?;
    if !warden.store().list_exists(&req.list)? {
        return Err(OperationError::NoSuchList(req.list.clone()));
    }
    let accounts = principals
        .iter()
        .enumerate()
        .map(|(i, p)| accounts::resolve_text(warden, &format!("users[{i}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    let response = NewResponse {
        list: req.list.clone(),
        principals,
        accounts,
        source: actor.source.clone(),
        reason: req.reason.trim().to_owned(),
        expires_at,
        created_by: actor.name.clone(),
        rule: None,
    };
    let (record, _) = warden.commit(
        |store| store.record_response(incident, &response),
        |(record, added)| {
            let mut records = vec![AuditRecord::new(
                actor,
                "incidents.respond",
                &incident_ref(incident),
                serde_json::json!({
                    "list": record.list,
                    "users": record.principals,
                    "expires_at": record.expires_at,
                }),
            )];
            records.extend(member_records(actor, record, added));
            records
        },
    )?;
    Ok(record)
}

/// One `lists.add` record per account a response put on its list, so that the audit log
/// finds the containment by account.
fn member_records(
    actor: &Actor,
    record: &ResponseRecord,
    added: &[(Added, Account)],
) -> Vec<AuditRecord> {
    record
        .principals
        .iter()
        .zip(added)
        .map(|(typed, (how, account))| {
            AuditRecord::new(
                actor,
                "lists.add",
                &record.list,
                serde_json::json!({
                    "principal": typed,
                    "account": account.canonical,
                    "again": *how == Added::Again,
                    "reason": record.reason,
                    "incident": incident_ref(record.incident),
                    "expires_at": record.expires_at,
                }),
            )
            .about(&account.key)
        })
        .collect()
}

/// Whether `rule` matches `alert` (of `severity`).
pub fn rule_matches(rule: &ResponseRuleConfig, alert: &Alert, severity: IncidentSeverity) -> bool {
    let source_ok = rule
        .sources
        .as_ref()
        .is_none_or(|s| s.applies_to(&alert.source));
    let severity_ok = rule.min_severity.is_none_or(|min| severity >= min);
    let fields_ok = rule.fields.iter().all(|(name, want)| {
        alert.fields.get(name).is_some_and(|v| match v {
            serde_json::Value::String(s) => want.applies_to(s),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                want.applies_to(&v.to_string())
            }
            _ => false,
        })
    });
    source_ok && severity_ok && fields_ok
}

/// Ingests an alert: the first rule that matches opens an incident with a response on its
/// list, all at most once per alert id.
pub fn ingest_alert(
    warden: &Warden,
    actor: &Actor,
    alert: &Alert,
) -> Result<AlertOutcome, OperationError> {
    let severity = alert.validate()?;
    let config = warden.config();
    let rule = config
        .response_rules
        .iter()
        .find(|r| rule_matches(r, alert, severity) && !alert.users.is_empty());
    let plan = match rule {
        Some(r) => Some(alert_plan(warden, actor, alert, severity, r)?),
        None => None,
    };
    let outcome = |seen: &AlertSeen| {
        let (incident, duplicate) = match seen {
            AlertSeen::New { incident, .. } => (*incident, false),
            AlertSeen::Duplicate { incident } => (*incident, true),
        };
        AlertOutcome {
            alert: alert.id.clone(),
            rule: rule.filter(|_| !duplicate).map(|r| r.name.clone()),
            incident: incident.map(incident_ref),
            duplicate,
        }
    };
    let ingest = |store: &crate::store::Store| {
        store.ingest_alert(
            &alert.id,
            &alert.source,
            severity.as_str(),
            plan.as_ref().map(|(i, r)| (i, r)),
        )
    };
    let audit = |seen: &AlertSeen| {
        let detail = serde_json::to_value(outcome(seen)).unwrap_or_default();
        let mut records = vec![AuditRecord::new(actor, "alerts.ingest", &alert.id, detail)];
        if let (AlertSeen::New { accounts, .. }, Some((_, response))) = (seen, &plan) {
            for (typed, account) in response.principals.iter().zip(accounts) {
                records.push(
                    AuditRecord::new(
                        actor,
                        "lists.add",
                        &response.list,
                        serde_json::json!({
                            "principal": typed,
                            "account": account.canonical,
                            "reason": response.reason,
                            "alert": alert.id,
                            "expires_at": response.expires_at,
                        }),
                    )
                    .about(&account.key),
                );
            }
        }
        records
    };
    // Only an alert that put users on a list changes what decisions see.
    let seen = if plan.is_some() {
        warden.commit(ingest, audit)?
    } else {
        warden.store().audited(ingest, audit)?
    };
    Ok(outcome(&seen))
}

fn alert_plan(
    warden: &Warden,
    actor: &Actor,
    alert: &Alert,
    severity: IncidentSeverity,
    rule: &ResponseRuleConfig,
) -> Result<(NewIncident, NewResponse), OperationError> {
    let accounts = alert
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| accounts::resolve_text(warden, &format!("users[{i}]"), u))
        .collect::<Result<Vec<_>, _>>()?;
    let title = alert
        .title
        .clone()
        .unwrap_or_else(|| format!("alert {} from {}", alert.id, alert.source));
    let incident = NewIncident {
        title,
        severity: severity.as_str().to_owned(),
        source: alert.source.clone(),
        users: alert.users.clone(),
        ips: alert.ips.clone(),
        created_by: actor.name.clone(),
        alert_id: Some(alert.id.clone()),
    };
    let expires_at = rule
        .expires_in
        .map(|d| now().saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    let response = NewResponse {
        list: rule.list.clone(),
        principals: alert.users.clone(),
        accounts,
        source: actor.source.clone(),
        reason: rule.reason.clone().unwrap_or_else(|| {
            format!(
                "automated response {:?} to alert {} from {}",
                rule.name, alert.id, alert.source
            )
        }),
        expires_at,
        created_by: actor.name.clone(),
        rule: Some(rule.name.clone()),
    };
    Ok((incident, response))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::policy::ServiceScope;

    fn alert(source: &str, severity: &str, fields: serde_json::Value) -> Alert {
        Alert {
            id: "A-1".into(),
            source: source.into(),
            severity: severity.into(),
            title: None,
            users: vec!["alice".into()],
            ips: vec![],
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    fn rule(
        sources: &[&str],
        min: Option<IncidentSeverity>,
        fields: &[(&str, &str)],
    ) -> ResponseRuleConfig {
        let scope = |p: &[&str]| {
            ServiceScope::new(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
        };
        ResponseRuleConfig {
            name: "r".into(),
            list: "L".into(),
            sources: (!sources.is_empty()).then(|| scope(sources)),
            min_severity: min,
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), scope(&[v])))
                .collect(),
            expires_in: None,
            reason: None,
        }
    }

    #[test]
    fn rules_match_on_source_severity_and_fields() {
        let r = rule(
            &["dlp*"],
            Some(IncidentSeverity::High),
            &[("category", "exfil*"), ("count", "3")],
        );
        let fields = serde_json::json!({ "category": "exfiltration", "count": 3 });
        let matches = |a: &Alert| rule_matches(&r, a, a.severity.parse().unwrap());
        assert!(matches(&alert("dlp-east", "critical", fields.clone())));
        assert!(matches(&alert("dlp", "HIGH", fields.clone())));
        assert!(!matches(&alert("ueba", "critical", fields.clone())));
        assert!(!matches(&alert("dlp", "medium", fields.clone())));
        assert!(!matches(&alert(
            "dlp",
            "high",
            serde_json::json!({ "category": "exfiltration" })
        )));
        assert!(!matches(&alert(
            "dlp",
            "high",
            serde_json::json!({ "category": "phish", "count": 3 })
        )));
        let any = rule(&[], None, &[]);
        assert!(rule_matches(
            &any,
            &alert("x", "low", serde_json::json!({})),
            IncidentSeverity::Low
        ));
    }

    #[test]
    fn severities_order_and_parse() {
        assert!(IncidentSeverity::Critical > IncidentSeverity::High);
        assert!(IncidentSeverity::Informative < IncidentSeverity::Low);
        assert_eq!(
            "Info".parse::<IncidentSeverity>().unwrap(),
            IncidentSeverity::Informative
        );
        assert!("urgent".parse::<IncidentSeverity>().is_err());
    }
}
