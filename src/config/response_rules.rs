//! `[[response_rules]]`: automated response — an alert that matches a rule (its source, its
//! least severity, its fields) becomes an incident whose users go on the rule's list.

use std::time::Duration;

use serde::Deserialize;

use super::KeyPath;
use super::check::{Ctx, Names};
use crate::base::severity::IncidentSeverity;
use crate::model::policy::ServiceScope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) name: String,
    list: String,
    #[serde(default)]
    sources: Vec<String>,
    min_severity: Option<String>,
    #[serde(default)]
    fields: std::collections::BTreeMap<String, String>,
    expires_in: Option<String>,
    reason: Option<String>,
}

/// `[[response_rules]]`: turns a matching alert into an incident whose users go on `list`.
#[derive(Debug, Clone)]
pub struct ResponseRuleConfig {
    pub name: String,
    pub list: String,
    /// Alert sources (names or globs); any source when absent.
    pub sources: Option<ServiceScope>,
    /// The least severity that matches; any when absent.
    pub min_severity: Option<IncidentSeverity>,
    /// Free fields the alert must carry, each matching its name or glob.
    pub fields: Vec<(String, ServiceScope)>,
    /// How long the users stay on the list; until removed when absent.
    pub expires_in: Option<Duration>,
    pub reason: Option<String>,
}

pub(super) fn check(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    path: KeyPath,
    r: Raw,
) -> Option<ResponseRuleConfig> {
    ctx.reference(path.key("list"), names.lists, "list", "lists", &r.list);
    let globs = |ctx: &mut Ctx<'_>, path: KeyPath, patterns: &[String]| {
        ServiceScope::new(patterns)
            .map_err(|e| ctx.err(path, e.to_string()))
            .ok()
    };
    let sources = if r.sources.is_empty() {
        None
    } else {
        Some(globs(ctx, path.key("sources"), &r.sources)?)
    };
    let mut fields = Vec::new();
    for (name, want) in &r.fields {
        if let Some(scope) = globs(
            ctx,
            path.key("fields").key(name),
            std::slice::from_ref(want),
        ) {
            fields.push((name.clone(), scope));
        }
    }
    let min_severity = match &r.min_severity {
        Some(text) => Some(ctx.word(path.key("min_severity"), text)?),
        None => None,
    };
    let expires_in = r
        .expires_in
        .as_deref()
        .map(|text| ctx.duration(path.key("expires_in"), Some(text), Duration::ZERO));
    Some(ResponseRuleConfig {
        name: r.name,
        list: r.list,
        sources,
        min_severity,
        fields,
        expires_in,
        reason: r.reason,
    })
}
