//! AD DirSync (`LDAP_SERVER_DIRSYNC_OID`, 1.2.840.113556.1.4.841): the changes to groups'
//! `member` since a cookie, value by value, and the rootDSE facts that say whether a cookie
//! still speaks for the DC it came from.
//!
//! The control's value is BER, encoded and decoded here (ldap3 carries it as raw bytes):
//! request `SEQUENCE { flags INTEGER, maxBytes INTEGER, cookie OCTET STRING }`, response
//! `SEQUENCE { moreResults INTEGER, unused INTEGER, cookie OCTET STRING }`. With the
//! `LDAP_DIRSYNC_INCREMENTAL_VALUES` flag a changed group comes back with
//! `member;range=1-1` (values added) and `member;range=0-0` (values removed). The search base
//! must be a naming context head. The response parser takes untrusted bytes and is fuzzed
//! (`fuzz/fuzz_targets/dirsync_response.rs`).

use std::collections::HashSet;

use ldap3::controls::RawControl;
use tokio::time::{Instant, timeout_at};

use super::client::{DirectoryClient, check, ldap_error};
use super::entry::{Entry, Scope, parse_entry};
use super::error::DirectoryError;
use crate::base::escape::escape_filter_value;

/// `LDAP_SERVER_DIRSYNC_OID`.
pub const DIRSYNC_OID: &str = "1.2.840.113556.1.4.841";
/// `LDAP_DIRSYNC_INCREMENTAL_VALUES`: changed multi-valued attributes as added/removed values.
const INCREMENTAL_VALUES: i32 = i32::MIN; // 0x80000000
/// The most bytes one DirSync answer may carry (the server may send less).
const MAX_BYTES: i64 = 1 << 20;
/// A cookie longer than this is not a DirSync cookie.
pub const MAX_COOKIE: usize = 64 * 1024;
/// Rounds of "more results" one pull follows before giving up (1 MiB each).
const MAX_ROUNDS: usize = 1_000;
/// Matches no object: a DirSync with it returns no entries, only a cookie for "now".
const NOTHING: &str = "(objectClass=warden-matches-nothing)";

/// A decoded DirSync response control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSyncResponse {
    /// The server has more changes: ask again with `cookie`.
    pub more: bool,
    pub cookie: Vec<u8>,
}

/// Why a DirSync response control value is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DirSync response control: {0}")]
pub struct DirSyncParseError(String);

/// The `member` values of the watched groups that changed since a cookie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberChanges {
    /// DNs added to or removed from a group, as the server wrote them.
    pub changed: Vec<String>,
    /// The cookie for the next pull.
    pub cookie: Vec<u8>,
}

/// The DC a cookie was taken from: a cookie from another DC, or from this one before a
/// restore (a new `invocationId`, a `highestCommittedUSN` that went back), is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcIdentity {
    pub ds_service_name: String,
    pub invocation_id: Vec<u8>,
    pub highest_committed_usn: u64,
}

impl DcIdentity {
    /// Why a cookie taken at `self` does not hold at `now`, if it does not.
    pub fn doubt(&self, now: &DcIdentity) -> Option<String> {
        if !self
            .ds_service_name
            .eq_ignore_ascii_case(&now.ds_service_name)
        {
            return Some(format!(
                "the DC changed ({} → {})",
                self.ds_service_name, now.ds_service_name
            ));
        }
        if self.invocation_id != now.invocation_id {
            return Some("the DC's invocationId changed (restored from a backup?)".into());
        }
        if now.highest_committed_usn < self.highest_committed_usn {
            return Some(format!(
                "the DC's highestCommittedUSN went back ({} → {})",
                self.highest_committed_usn, now.highest_committed_usn
            ));
        }
        None
    }
}

/// The rootDSE facts warden uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootDse {
    pub supported_controls: Vec<String>,
    pub supported_capabilities: Vec<String>,
    pub ds_service_name: Option<String>,
    pub highest_committed_usn: Option<u64>,
    /// The domain's naming context: where a DirSync search must start.
    pub default_naming_context: Option<String>,
}

/// `LDAP_CAP_ACTIVE_DIRECTORY_V61_OID` (Windows Server 2008 and later, and Samba): such a
/// server evaluates `LDAP_MATCHING_RULE_IN_CHAIN`.
const CAP_AD_V61: &str = "1.2.840.113556.1.4.1935";

impl RootDse {
    pub fn has_dirsync(&self) -> bool {
        self.supported_controls.iter().any(|c| c == DIRSYNC_OID)
    }

    pub fn has_in_chain(&self) -> bool {
        self.supported_capabilities.iter().any(|c| c == CAP_AD_V61)
    }
}

/// Encodes the request control value.
pub fn encode_request(flags: i32, max_bytes: i64, cookie: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(cookie.len() + 16);
    ber_integer(&mut body, i64::from(flags));
    ber_integer(&mut body, max_bytes);
    ber_header(&mut body, 0x04, cookie.len());
    body.extend_from_slice(cookie);
    let mut out = Vec::with_capacity(body.len() + 6);
    ber_header(&mut out, 0x30, body.len());
    out.extend_from_slice(&body);
    out
}

fn ber_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A minimal two's-complement INTEGER.
fn ber_integer(out: &mut Vec<u8>, v: i64) {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    ber_header(out, 0x02, 8 - start);
    out.extend_from_slice(&bytes[start..]);
}

/// Reads one definite-length TLV of `tag` from `input`: its contents and the rest.
fn tlv<'a>(
    input: &'a [u8],
    tag: u8,
    what: &str,
) -> Result<(&'a [u8], &'a [u8]), DirSyncParseError> {
    let err = |m: &str| DirSyncParseError(format!("{what}: {m}"));
    let (&t, rest) = input.split_first().ok_or_else(|| err("missing"))?;
    if t != tag {
        return Err(err(&format!("tag {t:#04x}, expected {tag:#04x}")));
    }
    let (&first, mut rest) = rest.split_first().ok_or_else(|| err("no length"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(err("indefinite or oversized length"));
        }
        if rest.len() < n {
            return Err(err("truncated length"));
        }
        let (len_bytes, tail) = rest.split_at(n);
        rest = tail;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return Err(err(&format!(
            "{len} bytes announced, {} present",
            rest.len()
        )));
    }
    Ok(rest.split_at(len))
}

fn integer(contents: &[u8], what: &str) -> Result<i64, DirSyncParseError> {
    if contents.is_empty() || contents.len() > 8 {
        return Err(DirSyncParseError(format!(
            "{what}: an INTEGER of {} bytes",
            contents.len()
        )));
    }
    let negative = contents[0] & 0x80 != 0;
    let start = if negative { -1i64 } else { 0 };
    Ok(contents
        .iter()
        .fold(start, |acc, b| (acc << 8) | i64::from(*b)))
}

/// Decodes a response control value. Trailing bytes inside the sequence are refused.
pub fn parse_response(value: &[u8]) -> Result<DirSyncResponse, DirSyncParseError> {
    let (seq, _trailing) = tlv(value, 0x30, "sequence")?;
    let (more, rest) = tlv(seq, 0x02, "moreResults")?;
    let more = integer(more, "moreResults")? != 0;
    let (unused, rest) = tlv(rest, 0x02, "unused")?;
    integer(unused, "unused")?;
    let (cookie, rest) = tlv(rest, 0x04, "cookie")?;
    if !rest.is_empty() {
        return Err(DirSyncParseError(format!(
            "{} bytes after the cookie",
            rest.len()
        )));
    }
    if cookie.len() > MAX_COOKIE {
        return Err(DirSyncParseError(format!(
            "a cookie of {} bytes (at most {MAX_COOKIE})",
            cookie.len()
        )));
    }
    Ok(DirSyncResponse {
        more,
        cookie: cookie.to_vec(),
    })
}

/// `(|(distinguishedName=<g1>)(distinguishedName=<g2>)…)`.
fn groups_filter(groups: &[String]) -> String {
    let mut f = String::from("(|");
    for g in groups {
        f.push_str("(distinguishedName=");
        f.push_str(&escape_filter_value(g));
        f.push(')');
    }
    f.push(')');
    f
}

/// The `member` values one DirSync entry reports changed; `Err` if the server sent whole
/// values (it ignored `LDAP_DIRSYNC_INCREMENTAL_VALUES`), which say nothing about removals.
fn changed_members(entry: &Entry) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (name, values) in &entry.attrs {
        let lower = name.to_ascii_lowercase();
        if lower == "member" {
            return Err(format!(
                "{}: whole member values without incremental values",
                entry.dn
            ));
        }
        if lower.starts_with("member;range=") {
            out.extend(values.iter().cloned());
        }
    }
    Ok(out)
}

impl DirectoryClient {
    /// The rootDSE's controls, capabilities, `dsServiceName` and `highestCommittedUSN`.
    pub async fn root_dse(&self) -> Result<RootDse, DirectoryError> {
        let entry = self
            .read_entry(
                "",
                "(objectClass=*)",
                &[
                    "supportedControl",
                    "supportedCapabilities",
                    "dsServiceName",
                    "highestCommittedUSN",
                    "defaultNamingContext",
                ],
                None,
            )
            .await?
            .ok_or_else(|| DirectoryError::NoSuchEntry {
                dn: "rootDSE".into(),
            })?;
        let all = |a: &str| entry.get(a).map(<[String]>::to_vec).unwrap_or_default();
        Ok(RootDse {
            supported_controls: all("supportedControl"),
            supported_capabilities: all("supportedCapabilities"),
            ds_service_name: entry.first("dsServiceName").map(str::to_owned),
            highest_committed_usn: entry
                .first("highestCommittedUSN")
                .and_then(|v| v.trim().parse().ok()),
            default_naming_context: entry.first("defaultNamingContext").map(str::to_owned),
        })
    }

    /// Which DC this connection talks to (its rootDSE read as `root`), and how far its
    /// changes go.
    pub async fn dc_identity(&self, root: &RootDse) -> Result<DcIdentity, DirectoryError> {
        let protocol = |reason: &str| DirectoryError::Protocol {
            op: "read rootDSE",
            target: "rootDSE".into(),
            reason: reason.into(),
        };
        let name = root
            .ds_service_name
            .clone()
            .ok_or_else(|| protocol("no dsServiceName (not Active Directory?)"))?;
        let usn = root
            .highest_committed_usn
            .ok_or_else(|| protocol("no highestCommittedUSN"))?;
        let ntds = self
            .read_entry(&name, "(objectClass=*)", &["invocationId"], None)
            .await?
            .ok_or_else(|| DirectoryError::NoSuchEntry { dn: name.clone() })?;
        let invocation_id = ntds
            .get_bin("invocationId")
            .and_then(|v| v.first().cloned())
            .or_else(|| ntds.first("invocationId").map(|s| s.as_bytes().to_vec()))
            .ok_or_else(|| protocol("the DC's NTDS Settings have no invocationId"))?;
        Ok(DcIdentity {
            ds_service_name: name,
            invocation_id,
            highest_committed_usn: usn,
        })
    }

    /// A DirSync cookie for "now" over `naming_context`, without reading any object: the
    /// changes after it are what [`DirectoryClient::member_changes`] reports.
    pub async fn dirsync_cookie(&self, naming_context: &str) -> Result<Vec<u8>, DirectoryError> {
        let (_, response) = self
            .dirsync_round(naming_context, NOTHING, &[], Vec::new())
            .await?;
        Ok(response.cookie)
    }

    /// The `member` values of `groups` added or removed since `cookie` (DirSync with
    /// incremental values over `naming_context`, following "more results"), and the cookie
    /// after them. Bounded by `search_deadline` overall.
    pub async fn member_changes(
        &self,
        naming_context: &str,
        groups: &[String],
        cookie: Vec<u8>,
    ) -> Result<MemberChanges, DirectoryError> {
        let deadline = Instant::now() + self.settings().search_deadline;
        let filter = groups_filter(groups);
        let wanted: HashSet<String> = groups.iter().map(|g| g.to_ascii_lowercase()).collect();
        let mut changes = MemberChanges {
            changed: Vec::new(),
            cookie,
        };
        for _ in 0..MAX_ROUNDS {
            let round = self.dirsync_round(naming_context, &filter, &["member"], changes.cookie);
            let (entries, response) =
                timeout_at(deadline, round)
                    .await
                    .map_err(|_| DirectoryError::Timeout {
                        op: "dirsync",
                        target: naming_context.to_owned(),
                        timeout: self.settings().search_deadline,
                    })??;
            for entry in entries {
                if !wanted.contains(&entry.dn.to_ascii_lowercase()) {
                    continue;
                }
                let members =
                    changed_members(&entry).map_err(|reason| DirectoryError::Protocol {
                        op: "dirsync",
                        target: naming_context.to_owned(),
                        reason,
                    })?;
                changes.changed.extend(members);
            }
            changes.cookie = response.cookie;
            if !response.more {
                return Ok(changes);
            }
        }
        Err(DirectoryError::Protocol {
            op: "dirsync",
            target: naming_context.to_owned(),
            reason: format!("still more results after {MAX_ROUNDS} rounds"),
        })
    }

    async fn dirsync_round(
        &self,
        naming_context: &str,
        filter: &str,
        attrs: &[&str],
        cookie: Vec<u8>,
    ) -> Result<(Vec<Entry>, DirSyncResponse), DirectoryError> {
        const OP: &str = "dirsync";
        let op_timeout = self.settings().op_timeout;
        let mut ldap = self.handle();
        ldap.with_controls(RawControl {
            ctype: DIRSYNC_OID.to_owned(),
            crit: true,
            val: Some(encode_request(INCREMENTAL_VALUES, MAX_BYTES, &cookie)),
        });
        let attrs: Vec<String> = attrs.iter().map(|a| (*a).to_owned()).collect();
        let (raw_entries, res) = ldap
            .search(naming_context, Scope::Subtree.into(), filter, attrs)
            .await
            .map_err(|e| ldap_error(OP, naming_context, op_timeout, e))?
            .success()
            .map_err(|e| ldap_error(OP, naming_context, op_timeout, e))?;
        check(OP, naming_context, &res)?;
        let protocol = |reason: String| DirectoryError::Protocol {
            op: OP,
            target: naming_context.to_owned(),
            reason,
        };
        let value = res
            .ctrls
            .iter()
            .find(|c| c.1.ctype == DIRSYNC_OID)
            .and_then(|c| c.1.val.as_deref())
            .ok_or_else(|| protocol("no DirSync response control".into()))?;
        let response = parse_response(value).map_err(|e| protocol(e.to_string()))?;
        let entries = raw_entries
            .into_iter()
            .filter(|re| !re.is_ref() && !re.is_intermediate())
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(protocol)?;
        Ok((entries, response))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn response(more: i64, cookie: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        ber_integer(&mut body, more);
        ber_integer(&mut body, 0);
        ber_header(&mut body, 0x04, cookie.len());
        body.extend_from_slice(cookie);
        let mut out = Vec::new();
        ber_header(&mut out, 0x30, body.len());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn request_encodes_as_ldapsearch_does() {
        // ldapsearch -E dirSync=0x80000000/0/ sends 30 0b 02 04 80 00 00 00 02 01 00 04 00.
        assert_eq!(
            encode_request(INCREMENTAL_VALUES, 0, b""),
            [
                0x30, 0x0b, 0x02, 0x04, 0x80, 0, 0, 0, 0x02, 0x01, 0, 0x04, 0
            ]
        );
        let long = vec![7u8; 300];
        let enc = encode_request(0, 1 << 20, &long);
        assert_eq!(&enc[..4], &[0x30, 0x82, 0x01, 0x38]);
        assert_eq!(&enc[4..9], &[0x02, 0x01, 0x00, 0x02, 0x03]);
    }

    #[test]
    fn response_round_trips_and_refuses_garbage() {
        let cookie = b"MSDS\x03\x00cookie".to_vec();
        let parsed = parse_response(&response(1, &cookie)).unwrap();
        assert_eq!(
            parsed,
            DirSyncResponse {
                more: true,
                cookie: cookie.clone()
            }
        );
        assert!(!parse_response(&response(0, &[])).unwrap().more);
        let long = vec![1u8; 70_000];
        assert!(parse_response(&response(0, &long)).is_err());
        let good = response(0, &cookie);
        for cut in 0..good.len() {
            assert!(parse_response(&good[..cut]).is_err(), "{cut}");
        }
        assert!(parse_response(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(parse_response(&[0x30, 0x80, 0, 0]).is_err());
        assert!(parse_response(&[0x31, 0]).is_err());
    }

    #[test]
    fn integers_are_minimal_twos_complement() {
        for (v, want) in [
            (0i64, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0, 0x80]),
            (-1, vec![0xff]),
            (-129, vec![0xff, 0x7f]),
        ] {
            let mut out = Vec::new();
            ber_integer(&mut out, v);
            assert_eq!(&out[2..], want.as_slice(), "{v}");
            assert_eq!(integer(&out[2..], "x").unwrap(), v);
        }
    }

    #[test]
    fn a_cookie_from_another_or_restored_dc_is_doubted() {
        let at = DcIdentity {
            ds_service_name: "CN=NTDS Settings,CN=DC1".into(),
            invocation_id: vec![1, 2],
            highest_committed_usn: 100,
        };
        assert_eq!(
            at.doubt(&DcIdentity {
                highest_committed_usn: 150,
                ..at.clone()
            }),
            None
        );
        assert!(
            at.doubt(&DcIdentity {
                highest_committed_usn: 99,
                ..at.clone()
            })
            .is_some()
        );
        assert!(
            at.doubt(&DcIdentity {
                invocation_id: vec![3],
                ..at.clone()
            })
            .is_some()
        );
        assert!(
            at.doubt(&DcIdentity {
                ds_service_name: "CN=NTDS Settings,CN=DC2".into(),
                ..at.clone()
            })
            .is_some()
        );
    }

    #[test]
    fn member_changes_need_incremental_values() {
        let mut e = Entry {
            dn: "CN=g".into(),
            ..Entry::default()
        };
        e.attrs
            .insert("member;range=1-1".into(), vec!["CN=a".into()]);
        e.attrs
            .insert("member;range=0-0".into(), vec!["CN=b".into()]);
        let mut got = changed_members(&e).unwrap();
        got.sort();
        assert_eq!(got, ["CN=a", "CN=b"]);
        e.attrs.insert("member".into(), vec!["CN=c".into()]);
        assert!(changed_members(&e).is_err());
    }
}
