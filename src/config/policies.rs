//! `[[policies]]`: what is blocked — an action and a severity, the services a policy applies
//! to, criteria over data sets (all must match), what a data set that never loaded does, and
//! the followed action it triggers.

use serde::Deserialize;

use super::KeyPath;
use super::check::{Ctx, Names};
use super::data_sets::DataSetConfig;
use crate::model::policy::{Criterion, Policy, ServiceScope, WhenUnknown};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) name: String,
    #[serde(default = "yes")]
    enabled: bool,
    action: String,
    severity: String,
    followed_action: Option<String>,
    apply_to: Vec<String>,
    criteria: Vec<RawCriterion>,
    when_unknown: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCriterion {
    field: String,
    operation: String,
    data_set: String,
    #[serde(default)]
    search_in: Vec<String>,
    handle_unknown_values: Option<String>,
}

pub(super) fn check(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    data_sets: &[DataSetConfig],
    path: KeyPath,
    p: Raw,
) -> Option<Policy> {
    let action = ctx.word(path.key("action"), &p.action);
    let severity = ctx.word(path.key("severity"), &p.severity);
    // `error` unless the policy says otherwise; `allow` is accepted only written out here.
    let when_unknown = match &p.when_unknown {
        Some(w) => ctx.word(path.key("when_unknown"), w),
        None => Some(WhenUnknown::default()),
    };
    if let Some(a) = &p.followed_action {
        ctx.reference(
            path.key("followed_action"),
            names.action_sets,
            "action set",
            "action_sets",
            a,
        );
    }
    if p.apply_to.is_empty() {
        ctx.err(
            path.key("apply_to"),
            "must name at least one service or glob (\"*\" applies to every service)",
        );
    }
    let apply_to = ServiceScope::new(&p.apply_to)
        .map_err(|e| ctx.err(path.key("apply_to"), e.to_string()))
        .ok();
    if p.criteria.is_empty() {
        ctx.err(
            path.key("criteria"),
            "a policy needs at least one criterion; without one it would match every request",
        );
    }
    let criteria = p
        .criteria
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| criterion(ctx, names, data_sets, path.key("criteria").index(i), c))
        .collect();
    Some(Policy {
        name: p.name,
        enabled: p.enabled,
        action: action?,
        severity: severity?,
        followed_action: p.followed_action,
        apply_to: apply_to?,
        criteria,
        when_unknown: when_unknown?,
    })
}

/// One `[[policies.criteria]]`: a field, an operation and a data set, searched in its columns.
fn criterion(
    ctx: &mut Ctx<'_>,
    names: &Names<'_>,
    data_sets: &[DataSetConfig],
    cpath: KeyPath,
    c: RawCriterion,
) -> Option<Criterion> {
    let field = ctx.word(cpath.key("field"), &c.field);
    let operation = ctx.word(cpath.key("operation"), &c.operation);
    let unknown = match &c.handle_unknown_values {
        Some(h) => ctx.word(cpath.key("handle_unknown_values"), h),
        None => Some(Default::default()),
    };
    ctx.reference(
        cpath.key("data_set"),
        names.data_sets,
        "data set",
        "data_sets",
        &c.data_set,
    );
    if let Some(ds) = data_sets.iter().find(|d| d.name == c.data_set) {
        for (j, col) in c.search_in.iter().enumerate() {
            if ds.schema.column_index(col).is_none() {
                let cols: Vec<&str> = ds
                    .schema
                    .columns()
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                ctx.err(
                    cpath.key("search_in").index(j),
                    format!(
                        "data set {:?} has no column {col:?} (columns: {})",
                        ds.name,
                        cols.join(", ")
                    ),
                );
            }
        }
    }
    Some(Criterion {
        field: field?,
        operation: operation?,
        data_set: c.data_set,
        search_in: c.search_in,
        handle_unknown_values: unknown?,
    })
}
