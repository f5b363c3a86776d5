//! Incidents as stored: what was reported (title, severity, source, users, IPs), the responses
//! run on each (which principals went on which list, why, until when), and every alert seen,
//! so that an alert id is acted on once however often it arrives.
//!
//! A response and its list members are written in one transaction: either the response is
//! recorded and its members are on the list, or neither. An alert, the incident it opens and
//! that incident's response are likewise one transaction.

use super::db::{Conn, DbError, OptionalExtension, Row, params};

use super::{Added, Atomic, NewMember, Store, StoreError};
use crate::base::account::Account;
use crate::base::time::now;

/// How an incident is named outside the store (`INC-17`), also on the members it added.
pub fn incident_ref(id: i64) -> String {
    format!("INC-{id}")
}

/// Reads `INC-17` or `17`.
pub fn parse_incident_ref(text: &str) -> Option<i64> {
    let digits = text
        .strip_prefix("INC-")
        .or_else(|| text.strip_prefix("inc-"))
        .unwrap_or(text);
    digits.parse().ok().filter(|id| *id > 0)
}

/// An incident to open.
#[derive(Debug, Clone, Default)]
pub struct NewIncident {
    pub title: String,
    pub severity: String,
    pub source: String,
    pub users: Vec<String>,
    pub ips: Vec<String>,
    pub created_by: String,
    /// The alert that opened it, if one did.
    pub alert_id: Option<String>,
}

/// An incident with the responses run on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    #[serde(serialize_with = "serialize_ref")]
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub source: String,
    pub users: Vec<String>,
    pub ips: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub created_by: String,
    pub alert_id: Option<String>,
    pub responses: Vec<ResponseRecord>,
}

/// A response to run: put `principals` on `list`, as the accounts they resolved to.
#[derive(Debug, Clone, Default)]
pub struct NewResponse {
    pub list: String,
    pub principals: Vec<String>,
    /// The account each principal resolved to (`base::account`), in the same order.
    pub accounts: Vec<Account>,
    /// Where the request came from (the client's address, `cli`).
    pub source: Option<String>,
    pub reason: String,
    /// Unix seconds; the members leave the list then.
    pub expires_at: Option<i64>,
    pub created_by: String,
    /// The automated-response rule that ran it, if one did.
    pub rule: Option<String>,
}

/// A response as recorded on its incident.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResponseRecord {
    pub id: i64,
    #[serde(serialize_with = "serialize_ref")]
    pub incident: i64,
    pub action: &'static str,
    pub list: String,
    pub principals: Vec<String>,
    pub reason: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub created_by: String,
    pub rule: Option<String>,
}

fn serialize_ref<S: serde::Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&incident_ref(*id))
}

/// What storing an alert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertSeen {
    /// First time seen; the incident it opened, if a rule matched, and the accounts its
    /// response put on the list (as stored).
    New {
        incident: Option<i64>,
        accounts: Vec<Account>,
    },
    /// Seen before: nothing was done again. The incident it opened then, if any.
    Duplicate { incident: Option<i64> },
}

const ADD_TO_LIST: &str = "add_to_list";

fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

fn parse_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

const INCIDENT_COLUMNS: &str =
    "id, title, severity, source, users, ips, created_at, created_by, alert_id";

fn incident_from_row(r: &Row) -> Result<Incident, DbError> {
    Ok(Incident {
        id: r.get(0)?,
        title: r.get(1)?,
        severity: r.get(2)?,
        source: r.get(3)?,
        users: parse_list(&r.get::<String>(4)?),
        ips: parse_list(&r.get::<String>(5)?),
        created_at: r.get(6)?,
        created_by: r.get(7)?,
        alert_id: r.get(8)?,
        responses: Vec::new(),
    })
}

fn response_from_row(r: &Row) -> Result<ResponseRecord, DbError> {
    Ok(ResponseRecord {
        id: r.get(0)?,
        incident: r.get(1)?,
        action: ADD_TO_LIST,
        list: r.get(2)?,
        principals: parse_list(&r.get::<String>(3)?),
        reason: r.get(4)?,
        expires_at: r.get(5)?,
        created_at: r.get(6)?,
        created_by: r.get(7)?,
        rule: r.get(8)?,
    })
}

/// Why a transaction of this module failed: SQL, or a domain error found inside it.
enum TxError {
    Sql(DbError),
    Store(StoreError),
}

impl From<DbError> for TxError {
    fn from(e: DbError) -> TxError {
        TxError::Sql(e)
    }
}

impl Store {
    fn tx_error(&self, action: &'static str) -> impl Fn(TxError) -> StoreError + '_ {
        move |e| match e {
            TxError::Sql(e) => self.sql(action)(e),
            TxError::Store(e) => e,
        }
    }

    /// Opens an incident; returns its id.
    pub fn create_incident(&self, new: &NewIncident) -> Result<i64, StoreError> {
        let conn = self.conn();
        insert_incident(&conn, new).map_err(self.sql("create incident"))
    }

    /// One incident with its responses.
    pub fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
        let conn = self.conn();
        let read = || -> Result<Option<Incident>, DbError> {
            let incident = conn
                .query_row(
                    &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"),
                    [id],
                    incident_from_row,
                )
                .optional()?;
            let Some(mut incident) = incident else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(
                "SELECT id, incident_id, list, principals, reason, expires_at, created_at,
                        created_by, rule
                 FROM responses WHERE incident_id = ?1 ORDER BY id",
            )?;
            incident.responses = stmt
                .query_map([id], response_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(Some(incident))
        };
        read().map_err(self.sql("read incident"))
    }

    /// The most recent incidents first, without their responses.
    pub fn incidents(&self, limit: u32) -> Result<Vec<Incident>, StoreError> {
        let conn = self.conn();
        let read = || -> Result<Vec<Incident>, DbError> {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents ORDER BY id DESC LIMIT ?1"
            ))?;
            stmt.query_map([limit], incident_from_row)?.collect()
        };
        read().map_err(self.sql("read incidents"))
    }

    /// Runs a response: its principals go on its list and it is recorded on the incident, in
    /// one transaction. Returns the record and, per principal, whether it was new on the list.
    pub fn record_response(
        &self,
        incident: i64,
        response: &NewResponse,
    ) -> Result<(ResponseRecord, Vec<(Added, Account)>), StoreError> {
        let conn = self.conn();
        let run = || -> Result<_, TxError> {
            let tx = Atomic::begin(&conn)?;
            let exists = tx
                .query_row("SELECT 1 FROM incidents WHERE id = ?1", [incident], |_| {
                    Ok(())
                })
                .optional()?;
            if exists.is_none() {
                return Err(TxError::Store(StoreError::NoSuchIncident(incident)));
            }
            let recorded = insert_response(&tx, incident, response)?;
            tx.commit()?;
            Ok(recorded)
        };
        run().map_err(self.tx_error("record response"))
    }

    /// Records an alert once. When it is new and `plan` is given (a rule matched), the incident
    /// and its response are created with it, in the same transaction.
    pub fn ingest_alert(
        &self,
        alert_id: &str,
        source: &str,
        severity: &str,
        plan: Option<(&NewIncident, &NewResponse)>,
    ) -> Result<AlertSeen, StoreError> {
        let conn = self.conn();
        let run = || -> Result<_, TxError> {
            let tx = Atomic::begin(&conn)?;
            let inserted = tx.execute(
                "INSERT INTO alerts (alert_id, source, severity, received_at, rule)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(alert_id) DO NOTHING",
                params![
                    alert_id,
                    source,
                    severity,
                    now(),
                    plan.and_then(|(_, r)| r.rule.clone())
                ],
            )?;
            if inserted == 0 {
                let incident = tx.query_row(
                    "SELECT incident_id FROM alerts WHERE alert_id = ?1",
                    [alert_id],
                    |r| r.get(0),
                )?;
                return Ok(AlertSeen::Duplicate { incident });
            }
            let Some((new_incident, response)) = plan else {
                tx.commit()?;
                return Ok(AlertSeen::New {
                    incident: None,
                    accounts: Vec::new(),
                });
            };
            let id = insert_incident(&tx, new_incident)?;
            let (_, added) = insert_response(&tx, id, response)?;
            tx.execute(
                "UPDATE alerts SET incident_id = ?1 WHERE alert_id = ?2",
                params![id, alert_id],
            )?;
            tx.commit()?;
            Ok(AlertSeen::New {
                incident: Some(id),
                accounts: added.into_iter().map(|(_, a)| a).collect(),
            })
        };
        run().map_err(self.tx_error("ingest alert"))
    }
}

fn insert_incident(conn: &Conn, new: &NewIncident) -> Result<i64, DbError> {
    conn.query_row(
        "INSERT INTO incidents (title, severity, source, users, ips, created_at, created_by, alert_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
        params![
            new.title,
            new.severity,
            new.source,
            json_list(&new.users),
            json_list(&new.ips),
            now(),
            new.created_by,
            new.alert_id
        ],
        |r| r.get(0),
    )
}

/// Adds the response's principals to its list and records it, inside the caller's transaction.
fn insert_response(
    tx: &Conn,
    incident: i64,
    response: &NewResponse,
) -> Result<(ResponseRecord, Vec<(Added, Account)>), TxError> {
    let list_id = Store::list_id(tx, &response.list)?
        .ok_or_else(|| TxError::Store(StoreError::NoSuchList(response.list.clone())))?;
    let mut added = Vec::with_capacity(response.principals.len());
    for (text, account) in response.principals.iter().zip(&response.accounts) {
        let member = NewMember {
            account: account.clone(),
            principal: text.clone(),
            reason: response.reason.clone(),
            incident: Some(incident_ref(incident)),
            added_by: response.created_by.clone(),
            source: response.source.clone(),
            expires_at: response.expires_at,
        };
        added.push(Store::insert_member(tx, list_id, &member)?);
    }
    let created_at = now();
    let id: i64 = tx.query_row(
        "INSERT INTO responses (incident_id, list, principals, reason, expires_at, created_at, created_by, rule)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
        params![
            incident,
            response.list,
            json_list(&response.principals),
            response.reason,
            response.expires_at,
            created_at,
            response.created_by,
            response.rule
        ],
        |r| r.get(0),
    )?;
    let record = ResponseRecord {
        id,
        incident,
        action: ADD_TO_LIST,
        list: response.list.clone(),
        principals: response.principals.clone(),
        reason: response.reason.clone(),
        expires_at: response.expires_at,
        created_at,
        created_by: response.created_by.clone(),
        rule: response.rule.clone(),
    };
    Ok((record, added))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.db")).unwrap();
        store.ensure_list("L", "").unwrap();
        (dir, store)
    }

    fn incident(alert: Option<&str>) -> NewIncident {
        NewIncident {
            title: "exfiltration".into(),
            severity: "high".into(),
            source: "dlp".into(),
            users: vec![r"corp\alice".into(), r"corp\bob".into()],
            ips: vec!["10.0.0.7".into()],
            created_by: "t".into(),
            alert_id: alert.map(str::to_owned),
        }
    }

    fn response(principals: &[&str]) -> NewResponse {
        NewResponse {
            list: "L".into(),
            principals: principals.iter().map(|p| (*p).to_owned()).collect(),
            accounts: principals
                .iter()
                .map(|p| NewMember::test(p).account)
                .collect(),
            source: None,
            reason: "contain".into(),
            expires_at: None,
            created_by: "t".into(),
            rule: None,
        }
    }

    #[test]
    fn a_response_adds_members_and_is_recorded_on_the_incident() {
        let (_d, store) = store();
        let id = store.create_incident(&incident(None)).unwrap();
        let (record, added) = store
            .record_response(id, &response(&[r"corp\alice"]))
            .unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].0, Added::New);
        assert_eq!(record.incident, id);
        let members = store.members("L").unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].incident.as_deref(), Some(&*incident_ref(id)));
        let read = store.incident(id).unwrap().unwrap();
        assert_eq!(read.responses, vec![record]);
        assert_eq!(read.users, vec![r"corp\alice", r"corp\bob"]);
    }

    #[test]
    fn a_failed_response_leaves_nothing_behind() {
        let (_d, store) = store();
        let id = store.create_incident(&incident(None)).unwrap();
        // The list does not exist: nothing is recorded on the incident.
        let err = store
            .record_response(
                id,
                &NewResponse {
                    list: "nope".into(),
                    ..response(&[r"corp\alice"])
                },
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::NoSuchList(_)), "{err}");
        assert!(store.members("L").unwrap().is_empty());
        assert!(store.incident(id).unwrap().unwrap().responses.is_empty());
        let err = store.record_response(99, &response(&["x"])).unwrap_err();
        assert!(matches!(err, StoreError::NoSuchIncident(99)));
    }

    #[test]
    fn an_alert_id_is_acted_on_once() {
        let (_d, store) = store();
        let new = incident(Some("A-1"));
        let resp = response(&[r"corp\alice"]);
        let first = store
            .ingest_alert("A-1", "dlp", "high", Some((&new, &resp)))
            .unwrap();
        let AlertSeen::New {
            incident: Some(id), ..
        } = first
        else {
            panic!("{first:?}");
        };
        let again = store
            .ingest_alert("A-1", "dlp", "high", Some((&new, &resp)))
            .unwrap();
        assert_eq!(again, AlertSeen::Duplicate { incident: Some(id) });
        assert_eq!(store.incidents(10).unwrap().len(), 1);
        assert_eq!(store.incident(id).unwrap().unwrap().responses.len(), 1);
        let unmatched = store.ingest_alert("A-2", "dlp", "low", None).unwrap();
        assert_eq!(
            unmatched,
            AlertSeen::New {
                incident: None,
                accounts: Vec::new()
            }
        );
        assert_eq!(
            store.ingest_alert("A-2", "dlp", "low", None).unwrap(),
            AlertSeen::Duplicate { incident: None }
        );
    }

    #[test]
    fn expired_members_stay_inactive_come_back_and_are_purged() {
        use crate::store::{Added, MemberState};
        let (_d, store) = store();
        let member = |p: &str, expires_at| NewMember {
            expires_at,
            ..NewMember::test(p)
        };
        let names = |refs: Vec<crate::store::MemberRef>| {
            refs.into_iter()
                .map(|m| (m.list, m.principal))
                .collect::<Vec<_>>()
        };
        let one = |p: &str| vec![("L".to_owned(), p.to_owned())];
        store.add_member("L", &member("c\\a", Some(100))).unwrap();
        store.add_member("L", &member("c\\b", Some(200))).unwrap();
        store.add_member("L", &member("c\\c", None)).unwrap();
        assert_eq!(names(store.deactivate_due("L", 150).unwrap()), one("C\\a"));
        assert!(store.deactivate_due("L", 150).unwrap().is_empty());
        let states: Vec<_> = store
            .members("L")
            .unwrap()
            .into_iter()
            .map(|m| (m.principal, m.state, m.expired_at))
            .collect();
        assert_eq!(
            states,
            vec![
                ("C\\a".into(), MemberState::Expired, Some(150)),
                ("C\\b".into(), MemberState::Active, None),
                ("C\\c".into(), MemberState::Active, None),
            ]
        );
        assert_eq!(store.lists().unwrap()[0].members, 2);
        assert_eq!(store.lists().unwrap()[0].expired, 1);
        // The clock comes back before a's expiry: a was deactivated early and returns.
        assert_eq!(names(store.reactivate_unexpired(50).unwrap()), one("C\\a"));
        assert!(store.members("L").unwrap()[0].is_active());
        // Added again while expired: active again, with the new details.
        store.deactivate_due("L", 150).unwrap();
        assert_eq!(
            store.add_member("L", &member("C\\A", Some(900))).unwrap().0,
            Added::Reactivated
        );
        let a = &store.members("L").unwrap()[0];
        assert_eq!((a.state, a.expires_at), (MemberState::Active, Some(900)));
        // Purged only once deactivated before the cut-off.
        assert_eq!(names(store.deactivate_due("L", 250).unwrap()), one("C\\b"));
        assert!(store.purge_expired(249).unwrap().is_empty());
        assert_eq!(names(store.purge_expired(250).unwrap()), one("C\\b"));
        assert_eq!(store.members("L").unwrap().len(), 2);
        // Purged, not forgotten: b's membership is released in its history.
        let key = crate::base::account::rules_key("C\\b");
        let history = store.memberships_of(&[key]).unwrap();
        assert_eq!(history[0].released_by.as_deref(), Some("system"));
    }

    #[test]
    fn incident_refs_round_trip() {
        assert_eq!(parse_incident_ref(&incident_ref(17)), Some(17));
        assert_eq!(parse_incident_ref("17"), Some(17));
        assert_eq!(parse_incident_ref("INC-0"), None);
        assert_eq!(parse_incident_ref("INC-x"), None);
    }
}
