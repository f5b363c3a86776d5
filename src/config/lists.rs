//! `[[lists]]`: the local user lists analysts contain principals on.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) name: String,
    description: Option<String>,
}

/// `[[lists]]`: a local user list.
#[derive(Debug, Clone)]
pub struct ListConfig {
    pub name: String,
    pub description: String,
}

pub(super) fn check(l: Raw) -> ListConfig {
    ListConfig {
        name: l.name,
        description: l.description.unwrap_or_default(),
    }
}
