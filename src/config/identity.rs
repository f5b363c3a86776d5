//! `[identity]` and `[[domains]]`: the domain rules names are brought to one account by.
//! NetBIOS names, DNS names and UPN suffixes each belong to one domain; at most one domain is
//! the default for bare names.

use std::collections::HashSet;

use serde::Deserialize;

use super::KeyPath;
use super::check::Ctx;
use crate::base::identity::{Domain, Identity, SuffixRule};

/// `[identity]`: how names are brought to one account.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    upn_suffix_rule: Option<String>,
    /// `refuse` (default) or `keep`: what a principal no rule or directory can place becomes.
    unresolvable: Option<String>,
}

/// `[[domains]]`: one domain the identity rules know.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDomain {
    netbios: String,
    dns: String,
    upn_suffixes: Option<Vec<String>>,
    default: Option<bool>,
}

/// `[identity] unresolvable`: whether a principal no rule or directory places is kept as the
/// text it is (`"keep"`) or refused (`"refuse"`, the default).
pub(super) fn keep_unresolvable(ctx: &mut Ctx<'_>, raw: &Raw) -> bool {
    match raw.unresolvable.as_deref() {
        None | Some("refuse") => false,
        Some("keep") => true,
        Some(other) => {
            ctx.err(
                KeyPath::root().key("identity").key("unresolvable"),
                format!("{other:?} is not one of \"refuse\", \"keep\""),
            );
            false
        }
    }
}

/// The `[[domains]]` entry a `domain` key names; refused, with the domains there are (or how
/// to declare one), when there is none.
pub(super) fn declared<'i>(
    ctx: &mut Ctx<'_>,
    identity: &'i Identity,
    path: KeyPath,
    name: &str,
) -> Option<&'i Domain> {
    let found = identity
        .domains()
        .iter()
        .find(|d| d.netbios.eq_ignore_ascii_case(name));
    if found.is_none() {
        let defined: Vec<&str> = identity
            .domains()
            .iter()
            .map(|d| d.netbios.as_str())
            .collect();
        let hint = if defined.is_empty() {
            format!(
                "no domain is defined: add [[domains]] with netbios = {name:?} and its dns name"
            )
        } else {
            format!("defined: {}", defined.join(", "))
        };
        ctx.err(
            path,
            format!("names domain {name:?}, which is not in [[domains]] ({hint})"),
        );
    }
    found
}

/// The domain the bare logins of a gate or an agentless database belong to: the `[[domains]]`
/// entry its `domain` names, else the default domain; `None` when neither.
pub(super) fn logins_domain(
    ctx: &mut Ctx<'_>,
    identity: &Identity,
    path: KeyPath,
    name: Option<&str>,
) -> Option<String> {
    match name {
        Some(name) => declared(ctx, identity, path, name),
        None => identity.default_domain(),
    }
    .map(|d| d.netbios.clone())
}

pub(super) fn check(ctx: &mut Ctx<'_>, raw: Raw, domains: Vec<(usize, RawDomain)>) -> Identity {
    let rule = match raw.upn_suffix_rule {
        Some(text) => {
            let path = KeyPath::root().key("identity").key("upn_suffix_rule");
            text.parse::<SuffixRule>()
                .map_err(|e| ctx.err(path, e.to_string()))
                .unwrap_or_default()
        }
        None => SuffixRule::default(),
    };
    let mut seen_netbios: HashSet<String> = HashSet::new();
    let mut seen_suffixes: HashSet<String> = HashSet::new();
    let mut default = None;
    let mut out = Vec::new();
    for (i, d) in domains {
        let path = KeyPath::root().key("domains").index(i);
        let netbios_ok = !d.netbios.is_empty()
            && d.netbios.len() <= 15
            && d.netbios
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\\/:*?\"<>|@.=,".contains(&b));
        if !netbios_ok {
            ctx.err(
                path.key("netbios"),
                format!(
                    "{:?} is not a NetBIOS domain name (1 to 15 characters, no \\ / : * ? \" < > | @ . = ,); e.g. \"CORP\"",
                    d.netbios
                ),
            );
        } else if !seen_netbios.insert(d.netbios.to_ascii_uppercase()) {
            ctx.err(
                path.key("netbios"),
                format!("{:?} is named by another domain", d.netbios),
            );
        }
        let suffixes = d.upn_suffixes.unwrap_or_default();
        let mut check = |ctx: &mut Ctx<'_>, path: KeyPath, s: &str| {
            let ok = !s.is_empty()
                && s.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                ctx.err(
                    path,
                    format!("{s:?} is not a DNS name; e.g. \"corp.example.test\""),
                );
            } else if !seen_suffixes.insert(s.to_ascii_lowercase()) {
                ctx.err(path, format!("{s:?} already belongs to a domain"));
            }
        };
        check(ctx, path.key("dns"), &d.dns);
        for (j, s) in suffixes.iter().enumerate() {
            check(ctx, path.key("upn_suffixes").index(j), s);
        }
        if d.default == Some(true) {
            if default.is_some() {
                ctx.err(
                    path.key("default"),
                    "only one domain can be the default for bare names",
                );
            }
            default = Some(out.len());
        }
        out.push(Domain {
            netbios: d.netbios,
            dns: d.dns.to_ascii_lowercase(),
            upn_suffixes: suffixes.iter().map(|s| s.to_ascii_lowercase()).collect(),
        });
    }
    Identity::new(out, rule, default)
}
