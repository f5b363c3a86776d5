//! Nested groups: the chain of groups below a top group, found breadth-first one level at a
//! time (`(&(objectClass=group)(memberOf=<group>))` per group), bounded in depth and size, with
//! the nesting cycles in it named. The chain is what change notification watches and, where
//! the server lacks `LDAP_MATCHING_RULE_IN_CHAIN`, what a nested data set's filter ORs over.

use std::collections::HashMap;

use super::client::DirectoryClient;
use super::entry::Scope;
use super::error::DirectoryError;
use crate::base::escape::escape_filter_value;

/// Levels of nesting followed below the top group.
pub const MAX_NESTING_DEPTH: usize = 16;
/// Groups in a chain, the top one included.
pub const MAX_CHAIN_GROUPS: usize = 256;

/// A top group and the groups nested in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChain {
    /// The top group first (as given), then the others breadth-first (as the server spells
    /// them); each once.
    pub groups: Vec<String>,
    /// Each nesting that closes a cycle, as `"<group> → <group it contains>"`.
    pub cycles: Vec<String>,
    /// Set when the chain was cut at [`MAX_NESTING_DEPTH`] or [`MAX_CHAIN_GROUPS`]: why.
    pub truncated: Option<String>,
}

impl GroupChain {
    /// A chain of one group: no nesting followed.
    pub fn single(dn: &str) -> GroupChain {
        GroupChain {
            groups: vec![dn.to_owned()],
            cycles: Vec::new(),
            truncated: None,
        }
    }

    /// True if both chains hold the same groups (DNs compared case-insensitively).
    pub fn same_groups(&self, other: &GroupChain) -> bool {
        let key = |c: &GroupChain| {
            let mut k: Vec<String> = c.groups.iter().map(|g| g.to_ascii_lowercase()).collect();
            k.sort_unstable();
            k
        };
        key(self) == key(other)
    }
}

impl DirectoryClient {
    /// The chain of groups nested in `top`, searched for under `base_dn`.
    pub async fn group_chain(
        &self,
        base_dn: &str,
        top: &str,
    ) -> Result<GroupChain, DirectoryError> {
        let mut groups = vec![top.to_owned()];
        let mut index: HashMap<String, usize> = HashMap::from([(top.to_ascii_lowercase(), 0)]);
        let mut edges: Vec<Vec<usize>> = vec![Vec::new()];
        let mut frontier = vec![0usize];
        let mut truncated = None;
        for depth in 0.. {
            if frontier.is_empty() {
                break;
            }
            if depth == MAX_NESTING_DEPTH {
                truncated = Some(format!(
                    "nesting deeper than {MAX_NESTING_DEPTH} levels below {top}"
                ));
                break;
            }
            let mut next = Vec::new();
            for parent in frontier {
                let filter = format!(
                    "(&(objectClass=group)(memberOf={}))",
                    escape_filter_value(&groups[parent])
                );
                let children = self
                    .search_paged(base_dn, Scope::Subtree, &filter, &["1.1"])
                    .await?;
                for child in children {
                    let key = child.dn.to_ascii_lowercase();
                    let at = match index.get(&key) {
                        Some(&at) => at,
                        None if groups.len() >= MAX_CHAIN_GROUPS => {
                            truncated = Some(format!(
                                "more than {MAX_CHAIN_GROUPS} groups nested in {top}"
                            ));
                            continue;
                        }
                        None => {
                            groups.push(child.dn);
                            edges.push(Vec::new());
                            index.insert(key, groups.len() - 1);
                            next.push(groups.len() - 1);
                            groups.len() - 1
                        }
                    };
                    edges[parent].push(at);
                }
            }
            frontier = next;
        }
        let cycles = back_edges(&edges)
            .into_iter()
            .map(|(from, to)| format!("{} → {}", groups[from], groups[to]))
            .collect();
        Ok(GroupChain {
            groups,
            cycles,
            truncated,
        })
    }
}

/// The edges of a depth-first walk from node 0 that lead back to a node on the current path:
/// each closes a cycle. Iterative, so a deep chain cannot overflow the stack.
fn back_edges(edges: &[Vec<usize>]) -> Vec<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; edges.len()];
    let mut found = Vec::new();
    if edges.is_empty() {
        return found;
    }
    let mut stack = vec![(0usize, 0usize)];
    mark[0] = Mark::OnPath;
    while let Some(&mut (node, ref mut next)) = stack.last_mut() {
        match edges[node].get(*next) {
            Some(&to) => {
                *next += 1;
                match mark[to] {
                    Mark::New => {
                        mark[to] = Mark::OnPath;
                        stack.push((to, 0));
                    }
                    Mark::OnPath => found.push((node, to)),
                    Mark::Done => {}
                }
            }
            None => {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_the_back_edges() {
        // 0 → 1 → 2 → 0 is a cycle; 0 → 3 → 2 is a diamond, not one.
        let edges = vec![vec![1, 3], vec![2], vec![0], vec![2]];
        assert_eq!(back_edges(&edges), vec![(2, 0)]);
        let diamond = vec![vec![1, 2], vec![3], vec![3], vec![]];
        assert!(back_edges(&diamond).is_empty());
        // A group in itself.
        assert_eq!(back_edges(&[vec![0]]), vec![(0, 0)]);
    }

    #[test]
    fn chains_compare_by_their_groups() {
        let a = GroupChain {
            groups: vec!["CN=a".into(), "CN=b".into()],
            cycles: Vec::new(),
            truncated: None,
        };
        let b = GroupChain {
            groups: vec!["cn=B".into(), "cn=A".into()],
            ..a.clone()
        };
        assert!(a.same_groups(&b));
        assert!(!a.same_groups(&GroupChain::single("CN=a")));
    }
}
