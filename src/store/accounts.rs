//! Accounts as pushed: per mapping (list → group), the DN each listed principal resolved to
//! when it was last pushed, and every name that account has. The DN is what a push never
//! removes while the principal is listed (even when resolving it fails); the names are the
//! alias keys of the list's data set, so `john.doe@corp.example.test` finds `CORP\jdoe`.

use std::collections::HashMap;

use super::db::params;

use super::{Atomic, Store, StoreError};
use crate::base::time::now_ms;

/// One listed principal's account as last pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedAccount {
    /// [`super::principal_key`] of the listed principal.
    pub principal_key: String,
    pub dn: String,
    /// Every name the account answers to (canonical first).
    pub names: Vec<String>,
}

impl Store {
    /// The accounts last pushed for `list` into `group_dn`, by principal key.
    pub fn pushed_accounts(
        &self,
        list: &str,
        group_dn: &str,
    ) -> Result<HashMap<String, PushedAccount>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT principal_key, dn, names FROM pushed_accounts
                 WHERE list = ?1 AND group_dn = ?2",
            )
            .map_err(self.sql("read pushed accounts"))?;
        let rows = stmt
            .query_map(params![list, group_dn.to_ascii_lowercase()], |r| {
                Ok(PushedAccount {
                    principal_key: r.get(0)?,
                    dn: r.get(1)?,
                    names: split_names(&r.get::<String>(2)?),
                })
            })
            .map_err(self.sql("read pushed accounts"))?;
        let mut out = HashMap::new();
        for row in rows {
            let a = row.map_err(self.sql("read pushed accounts"))?;
            out.insert(a.principal_key.clone(), a);
        }
        Ok(out)
    }

    /// Replaces what was last pushed for `list` into `group_dn`; returns whether any name
    /// changed (the list's data set then has other alias keys).
    pub fn set_pushed_accounts(
        &self,
        list: &str,
        group_dn: &str,
        accounts: &[PushedAccount],
    ) -> Result<bool, StoreError> {
        let before = self.pushed_accounts(list, group_dn)?;
        let names_changed = before.len() != accounts.len()
            || accounts.iter().any(|a| {
                before
                    .get(&a.principal_key)
                    .is_none_or(|b| b.names != a.names)
            });
        let unchanged = !names_changed
            && accounts
                .iter()
                .all(|a| before.get(&a.principal_key).is_some_and(|b| b.dn == a.dn));
        if unchanged {
            return Ok(false);
        }
        let conn = self.conn();
        let group = group_dn.to_ascii_lowercase();
        let tx = Atomic::begin(&conn).map_err(self.sql("save pushed accounts"))?;
        tx.execute(
            "DELETE FROM pushed_accounts WHERE list = ?1 AND group_dn = ?2",
            params![list, group],
        )
        .map_err(self.sql("save pushed accounts"))?;
        let at = now_ms();
        for a in accounts {
            tx.execute(
                "INSERT INTO pushed_accounts (list, group_dn, principal_key, dn, names, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (list, group_dn, principal_key) DO UPDATE SET dn = excluded.dn,
                   names = excluded.names, at_ms = excluded.at_ms",
                params![list, group, a.principal_key, a.dn, a.names.join("\n"), at],
            )
            .map_err(self.sql("save pushed accounts"))?;
        }
        tx.commit().map_err(self.sql("save pushed accounts"))?;
        Ok(names_changed)
    }

    /// Every name the accounts of `list`'s principals have, over all its mappings, by
    /// principal key.
    pub fn account_names(&self, list: &str) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT principal_key, names FROM pushed_accounts WHERE list = ?1")
            .map_err(self.sql("read account names"))?;
        let rows = stmt
            .query_map(params![list], |r| {
                Ok((r.get::<String>(0)?, r.get::<String>(1)?))
            })
            .map_err(self.sql("read account names"))?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for row in rows {
            let (key, names) = row.map_err(self.sql("read account names"))?;
            let entry = out.entry(key).or_default();
            for n in split_names(&names) {
                if !entry.contains(&n) {
                    entry.push(n);
                }
            }
        }
        Ok(out)
    }
}

fn split_names(text: &str) -> Vec<String> {
    text.split('\n')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pushed_accounts_round_trip_and_report_name_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.db")).unwrap();
        let jdoe = PushedAccount {
            principal_key: "john.doe@corp.example.test".into(),
            dn: "CN=jdoe,CN=Users,DC=corp".into(),
            names: vec!["CORP\\jdoe".into(), "john.doe@corp.example.test".into()],
        };
        assert!(
            store
                .set_pushed_accounts("L", "CN=G", std::slice::from_ref(&jdoe))
                .unwrap()
        );
        assert!(
            !store
                .set_pushed_accounts("L", "cn=g", std::slice::from_ref(&jdoe))
                .unwrap()
        );
        let got = store.pushed_accounts("L", "CN=G").unwrap();
        assert_eq!(got.get(&jdoe.principal_key), Some(&jdoe));
        assert_eq!(
            store.account_names("L").unwrap()[&jdoe.principal_key],
            jdoe.names
        );
        // A moved DN is saved, but the names (and so the data set) did not change.
        let moved = PushedAccount {
            dn: "CN=jdoe,OU=Moved,DC=corp".into(),
            ..jdoe.clone()
        };
        assert!(
            !store
                .set_pushed_accounts("L", "CN=G", std::slice::from_ref(&moved))
                .unwrap()
        );
        assert_eq!(
            store.pushed_accounts("L", "CN=G").unwrap()[&jdoe.principal_key].dn,
            moved.dn
        );
        assert!(store.set_pushed_accounts("L", "CN=G", &[]).unwrap());
        assert!(store.account_names("L").unwrap().is_empty());
    }
}
