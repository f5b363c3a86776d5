//! `[[mappings]]`: a list pushed into an Active Directory group on a directory.

use serde::Deserialize;

use super::KeyPath;
use super::check::{Ctx, Names};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    list: String,
    directory: String,
    group_dn: String,
}

/// `[[mappings]]`: a list pushed into an AD group.
#[derive(Debug, Clone)]
pub struct MappingConfig {
    pub list: String,
    pub directory: String,
    pub group_dn: String,
}

pub(super) fn check(ctx: &mut Ctx<'_>, names: &Names<'_>, path: KeyPath, m: Raw) -> MappingConfig {
    ctx.reference(path.key("list"), names.lists, "list", "lists", &m.list);
    ctx.reference(
        path.key("directory"),
        names.directories,
        "directory",
        "directories",
        &m.directory,
    );
    if !m.group_dn.contains('=') {
        ctx.err(
            path.key("group_dn"),
            format!("{:?} is not a DN; e.g. \"CN=PTR_Suspicious_Users,CN=Users,DC=corp,DC=example,DC=test\"", m.group_dn),
        );
    }
    MappingConfig {
        list: m.list,
        directory: m.directory,
        group_dn: m.group_dn,
    }
}
