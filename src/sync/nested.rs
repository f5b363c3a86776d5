//! Nested data sets: the query a data set with `nested` runs, and the chain of groups it
//! follows. The `(memberOf=<group>)` of its filter becomes
//! `(memberOf:1.2.840.113556.1.4.1941:=<group>)` where the server evaluates the in-chain
//! matching rule, or `(|(memberOf=<group>)(memberOf=<sub-group>)…)` over the chain warden
//! found breadth-first where it does not. Cycles in the nesting are reported (a warning when
//! they change, the `warden_nesting_cycles` gauge); the chain is cut at its bounds, which a
//! warden-expanded query refuses (a pull that misses members must not apply).

use super::SyncError;
use super::SyncMetrics;
use crate::base::escape::escape_filter_value;
use crate::config::{LdapSource, Nesting};
use crate::directory::{Directory, DirectoryClient, DirectoryError, GroupChain};

/// `LDAP_MATCHING_RULE_IN_CHAIN`.
pub const IN_CHAIN_OID: &str = "1.2.840.113556.1.4.1941";

/// What a data set's pull searches with.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The filter to search with.
    pub filter: String,
    /// The groups whose membership the rows follow (the filter's group alone unless nested);
    /// `None` when the filter selects on no group.
    pub chain: Option<GroupChain>,
}

/// The `(memberOf=<value>)` atom of a filter — or, written by hand, its in-chain form
/// `(memberOf:1.2.840.113556.1.4.1941:=<value>)` — : its byte range, its value, and whether
/// it is the in-chain form.
fn member_of_atom(filter: &str) -> Option<(std::ops::Range<usize>, &str, bool)> {
    let lower = filter.to_ascii_lowercase();
    let plain = "(memberof=";
    let chained = format!("(memberof:{IN_CHAIN_OID}:=");
    let (at, len, in_chain) = match (lower.find(plain), lower.find(&chained)) {
        (Some(a), Some(b)) if b < a => (b, chained.len(), true),
        (Some(a), _) => (a, plain.len(), false),
        (None, Some(b)) => (b, chained.len(), true),
        (None, None) => return None,
    };
    let value_start = at + len;
    let end = value_start + filter[value_start..].find(')')?;
    let value = filter[value_start..end].trim();
    (!value.is_empty()).then(|| (at..end + 1, value, in_chain))
}

/// The group a filter selects on (`(memberOf=<g>)`, or the in-chain rule on `<g>`): what
/// to watch, and where a nested data set's chain starts.
pub fn selected_group(filter: &str) -> Option<&str> {
    member_of_atom(filter).map(|(_, g, _)| g)
}

/// Whether a filter selects on a group through the in-chain rule written by hand: it is
/// watched like `nested = true` (`config` makes it so), since the server follows the chain.
pub fn is_in_chain(filter: &str) -> bool {
    member_of_atom(filter).is_some_and(|(_, _, in_chain)| in_chain)
}

/// `filter` with its `(memberOf=<g>)` atom replaced by `with(<g>)`.
fn rewrite(filter: &str, with: impl FnOnce(&str) -> String) -> Option<String> {
    let (range, value, _) = member_of_atom(filter)?;
    let mut out = String::with_capacity(filter.len() + 64);
    out.push_str(&filter[..range.start]);
    out.push_str(&with(value));
    out.push_str(&filter[range.end..]);
    Some(out)
}

/// The in-chain form of a filter's `(memberOf=<group>)`.
pub fn in_chain_filter(filter: &str) -> Option<String> {
    rewrite(filter, |g| format!("(memberOf:{IN_CHAIN_OID}:={g})"))
}

/// A filter's `(memberOf=<group>)` ORed over every group of the chain (the first as written).
pub fn expanded_filter(filter: &str, chain: &GroupChain) -> Option<String> {
    rewrite(filter, |g| {
        let mut f = format!("(|(memberOf={g})");
        for other in chain.groups.iter().skip(1) {
            f.push_str("(memberOf=");
            f.push_str(&escape_filter_value(other));
            f.push(')');
        }
        f.push(')');
        f
    })
}

/// The chain of groups below `group` for data set `name`, reported when its cycles change.
pub async fn chain(
    directory: &Directory,
    client: &DirectoryClient,
    metrics: &SyncMetrics,
    name: &str,
    group: &str,
) -> Result<GroupChain, DirectoryError> {
    let chain = client
        .group_chain(&directory.config().base_dn, group)
        .await?;
    let before = directory.note_chain(name, chain.clone());
    metrics.nesting_cycles(name, chain.cycles.len());
    if before.as_ref().is_none_or(|b| b.cycles != chain.cycles) {
        for cycle in &chain.cycles {
            tracing::warn!(data_set = name, %cycle, "nesting cycle in the groups of a nested data set; each group is followed once");
        }
    }
    if let Some(why) = &chain.truncated
        && before
            .as_ref()
            .is_none_or(|b| b.truncated != chain.truncated)
    {
        tracing::warn!(data_set = name, reason = %why, "nested groups beyond the bound are not followed");
    }
    if before.as_ref().is_some_and(|b| !b.same_groups(&chain)) {
        tracing::info!(
            data_set = name,
            groups = chain.groups.len(),
            "the chain of nested groups changed"
        );
    }
    Ok(chain)
}

/// The filter and chain a pull of the data set runs with.
pub async fn resolve(
    directory: &Directory,
    client: &DirectoryClient,
    metrics: &SyncMetrics,
    name: &str,
    source: &LdapSource,
) -> Result<Resolved, SyncError> {
    let dir_err = |e| SyncError::directory(directory, e);
    let group = selected_group(&source.filter).map(str::to_owned);
    let (Some(nesting), Some(group)) = (source.nested, group.as_deref()) else {
        return Ok(Resolved {
            filter: source.filter.clone(),
            chain: group.as_deref().map(GroupChain::single),
        });
    };
    let chain = chain(directory, client, metrics, name, group)
        .await
        .map_err(dir_err)?;
    let in_chain = match nesting {
        Nesting::InChain => true,
        Nesting::Expand => false,
        Nesting::Auto => client.root_dse().await.map_err(dir_err)?.has_in_chain(),
    };
    let filter = if in_chain {
        in_chain_filter(&source.filter)
    } else {
        if let Some(why) = &chain.truncated {
            return Err(SyncError::NestingTooLarge {
                data_set: name.to_owned(),
                reason: why.clone(),
            });
        }
        expanded_filter(&source.filter, &chain)
    };
    Ok(Resolved {
        filter: filter.unwrap_or_else(|| source.filter.clone()),
        chain: Some(chain),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_member_of_atom_is_rewritten_in_place() {
        let f = "(&(objectClass=user)(memberOf=CN=Top,OU=x,DC=corp))";
        assert_eq!(
            in_chain_filter(f).unwrap(),
            "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=CN=Top,OU=x,DC=corp))"
        );
        let chain = GroupChain {
            groups: vec!["CN=Top,OU=x,DC=corp".into(), "CN=a(1),OU=x,DC=corp".into()],
            cycles: Vec::new(),
            truncated: None,
        };
        assert_eq!(
            expanded_filter(f, &chain).unwrap(),
            "(&(objectClass=user)(|(memberOf=CN=Top,OU=x,DC=corp)(memberOf=CN=a\\281\\29,OU=x,DC=corp)))"
        );
        assert_eq!(in_chain_filter("(objectClass=user)"), None);
        assert_eq!(in_chain_filter("(memberOf=)"), None);
    }

    /// A filter written the way AD admins write nesting selects on the same group, and is
    /// left as it is by the in-chain rewrite.
    #[test]
    fn a_hand_written_in_chain_filter_selects_on_its_group() {
        let f = "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=CN=Top,OU=x,DC=corp))";
        assert_eq!(selected_group(f), Some("CN=Top,OU=x,DC=corp"));
        assert!(is_in_chain(f));
        assert_eq!(in_chain_filter(f).as_deref(), Some(f));
        assert!(!is_in_chain("(memberOf=CN=Top,DC=corp)"));
        assert_eq!(
            selected_group("(memberOf=CN=Top,DC=corp)"),
            Some("CN=Top,DC=corp")
        );
    }
}
