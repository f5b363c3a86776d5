//! Accounts: what a principal names once it is resolved, the unit every surface keys on.
//!
//! A principal (`CORP\alice`, `alice@corp.example.test`, `alice`, a DN) is text someone typed;
//! an [`Account`] is the person it names. It is resolved once, when it enters warden: with a
//! directory, to the user entry (its objectGUID is the stable key, and every name the entry
//! has is kept); without one, by the domain rules ([`Identity`]) to a canonical `DOMAIN\user`.
//! A principal neither can place is *unresolvable*: refused, or — where the operator allows it
//! (`[identity] unresolvable = "keep"`) — kept as the text it is ([`Resolution::Text`]), and
//! shown as such everywhere.
//!
//! The key says how the account was found, so that two spellings of one account meet on one
//! key and two accounts never do:
//!
//! - `guid:<objectGUID>` — a directory entry (survives renames and moves);
//! - `name:<canonical name, lower-cased>` — the domain rules' canonical name;
//! - `text:<text, lower-cased>` — an unresolvable principal kept as text.
//!
//! An account resolved by the rules while its directory was unreachable, or migrated from a
//! store that keyed members by text, is found by its directory later (the push resolves it)
//! and *merged* into the entry's key; the keys it had are kept as its `former_keys`, so audit
//! records written under them still find it.

use std::fmt::Write as _;

use super::identity::Identity;
use super::principal::{Principal, PrincipalKind};

/// How an account was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// A directory entry: the key is its objectGUID.
    Directory,
    /// The domain rules placed it: the key is its canonical name.
    Rules,
    /// Unresolvable, kept as the text it is by the operator's choice.
    Text,
    /// Carried over from a store that keyed members by text; settled by the rules when the
    /// store is opened with a configuration (see `store::members`).
    Pending,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Directory => "directory",
            Resolution::Rules => "rules",
            Resolution::Text => "text",
            Resolution::Pending => "pending",
        }
    }

    pub fn parse(text: &str) -> Resolution {
        match text {
            "directory" => Resolution::Directory,
            "rules" => Resolution::Rules,
            "text" => Resolution::Text,
            _ => Resolution::Pending,
        }
    }

    /// Whether the directory has not confirmed this account yet (a push or the next add
    /// asks it).
    pub fn is_provisional(self) -> bool {
        !matches!(self, Resolution::Directory)
    }
}

/// A resolved account: its stable key, its canonical name and every name it is known by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub key: String,
    /// `DOMAIN\user` (for [`Resolution::Text`], the text).
    pub canonical: String,
    /// Every name the account answers to, canonical first. Only qualified names (`DOMAIN\x`,
    /// UPNs): a bare name is a login of some domain, which each gate and database says.
    pub names: Vec<String>,
    pub resolution: Resolution,
    /// The directory that found it, its entry's DN and objectSid (`S-1-5-21-…`).
    pub directory: Option<String>,
    pub dn: Option<String>,
    pub sid: Option<String>,
}

/// Why a principal names no account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{principal:?} {why}")]
pub struct Unresolvable {
    pub principal: String,
    pub why: String,
}

/// The lower-cased form names and keys are compared in.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// The key of the account the rules name `canonical`.
pub fn rules_key(canonical: &str) -> String {
    format!("name:{}", name_key(canonical))
}

/// The key of an unresolvable principal kept as text.
pub fn text_key(text: &str) -> String {
    format!("text:{}", name_key(text))
}

/// The key of a directory entry.
pub fn guid_key(guid: &str) -> String {
    format!("guid:{}", guid.to_ascii_lowercase())
}

/// The objectGUID a key names, if it is a directory entry's.
pub fn guid_of_key(key: &str) -> Option<&str> {
    key.strip_prefix("guid:")
}

/// Whether `name` is qualified: it says its domain (`DOMAIN\user`, `user@realm`).
fn is_qualified(name: &str) -> bool {
    matches!(
        Principal::parse(name).map(|p| p.kind()),
        Ok(PrincipalKind::DomainUser | PrincipalKind::Upn)
    )
}

impl Account {
    /// The account the domain rules say `principal` is, or why they cannot place it: a bare
    /// name without a default domain, a UPN or `DOMAIN\user` whose domain is a DNS name the
    /// rules do not place, or a DN (only a directory knows whose it is).
    pub fn by_rules(identity: &Identity, principal: &Principal) -> Result<Account, Unresolvable> {
        let text = principal.as_str();
        let refuse = |why: String| Unresolvable {
            principal: text.to_owned(),
            why,
        };
        if principal.kind() == PrincipalKind::Dn {
            return Err(refuse(
                "is a distinguished name: only a directory can say whose it is, and none \
                 answered for it; list the account's DOMAIN\\user or UPN"
                    .to_owned(),
            ));
        }
        let Some(domain) = identity.domain_of(text) else {
            let why = match principal.kind() {
                PrincipalKind::SamAccountName => format!(
                    "names no domain: write DOMAIN\\{text} or its UPN, or make one [[domains]] \
                     entry the default for bare names (default = true)"
                ),
                _ => "is in a domain the rules do not place: declare it in [[domains]] (its \
                      netbios and dns), or write DOMAIN\\user"
                    .to_owned(),
            };
            return Err(refuse(why));
        };
        let canonical = identity.canonical(text).into_owned();
        debug_assert!(canonical.contains('\\'), "{domain}: {canonical}");
        // The canonical name must name the account again (it is what releases it, what the
        // console shows): a UPN whose user part ends in a space would not.
        if let Err(e) = Principal::parse(&canonical) {
            return Err(refuse(format!(
                "would be the account {canonical:?}, which is no valid name ({e})"
            )));
        }
        let mut account = Account {
            key: rules_key(&canonical),
            names: vec![canonical.clone()],
            canonical,
            resolution: Resolution::Rules,
            directory: None,
            dn: None,
            sid: None,
        };
        account.add_spelling(text);
        Ok(account)
    }

    /// The account the rules say `text` is, or the text itself where they cannot place it:
    /// for members already listed (a store carried over), which are never dropped.
    pub fn by_rules_or_text(identity: &Identity, text: &str) -> Account {
        Principal::parse(text)
            .ok()
            .and_then(|p| Account::by_rules(identity, &p).ok())
            .unwrap_or_else(|| Account::as_text(text))
    }

    /// An unresolvable principal kept as the text it is.
    pub fn as_text(text: &str) -> Account {
        Account {
            key: text_key(text),
            canonical: text.to_owned(),
            names: vec![text.to_owned()],
            resolution: Resolution::Text,
            directory: None,
            dn: None,
            sid: None,
        }
    }

    /// The account of a directory entry: objectGUID as the key (an entry without one, outside
    /// Active Directory, is keyed by its canonical name), the names the entry has (`names`,
    /// canonical first, from `Identity::account_names`).
    pub fn of_entry(
        directory: &str,
        guid: Option<&str>,
        sid: Option<String>,
        dn: &str,
        names: Vec<String>,
    ) -> Account {
        let canonical = names.first().cloned().unwrap_or_else(|| dn.to_owned());
        Account {
            key: guid.map_or_else(|| rules_key(&canonical), guid_key),
            canonical,
            names,
            resolution: Resolution::Directory,
            directory: Some(directory.to_owned()),
            dn: Some(dn.to_owned()),
            sid,
        }
    }

    /// Adds a name the account was typed as, if it is qualified and not known yet.
    pub fn add_spelling(&mut self, text: &str) {
        if is_qualified(text) || self.resolution == Resolution::Text {
            self.add_name(text);
        }
    }

    /// Adds `name` unless a name equal to it (case aside) is known.
    pub fn add_name(&mut self, name: &str) {
        let key = name_key(name);
        if !self.names.iter().any(|n| name_key(n) == key) {
            self.names.push(name.to_owned());
        }
    }

    /// The keys the names are found by (lower-cased), each once.
    pub fn name_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.names.iter().map(|n| name_key(n)).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// objectGUID in its string form (`6f8f0e4c-…`): the first three fields little-endian, as
/// Active Directory and Samba print it. `None` unless 16 bytes.
pub fn guid_string(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    let mut s = String::with_capacity(36);
    for (i, at) in [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15]
        .into_iter()
        .enumerate()
    {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{:02x}", b[at]);
    }
    Some(s)
}

/// The 16 bytes of an objectGUID string ([`guid_string`]'s inverse).
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        raw[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    let mut out = [0u8; 16];
    for (i, at) in [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15]
        .into_iter()
        .enumerate()
    {
        out[at] = raw[i];
    }
    Some(out)
}

/// objectSid in its string form (`S-1-5-21-…`). `None` for a malformed value.
pub fn sid_string(bytes: &[u8]) -> Option<String> {
    let (&revision, rest) = bytes.split_first()?;
    let (&count, rest) = rest.split_first()?;
    if rest.len() != 6 + 4 * usize::from(count) {
        return None;
    }
    let authority = rest[..6]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut s = format!("S-{revision}-{authority}");
    for sub in rest[6..].chunks_exact(4) {
        let v = u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]]);
        let _ = write!(s, "-{v}");
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::base::identity::{Domain, SuffixRule};

    fn corp(default: bool) -> Identity {
        Identity::new(
            vec![Domain {
                netbios: "CORP".into(),
                dns: "corp.example.test".into(),
                upn_suffixes: vec![],
            }],
            SuffixRule::FirstLabel,
            default.then_some(0),
        )
    }

    fn rules(id: &Identity, text: &str) -> Result<Account, Unresolvable> {
        Account::by_rules(id, &Principal::parse(text).unwrap())
    }

    #[test]
    fn every_spelling_of_one_account_has_one_key() {
        let id = corp(true);
        let keys: Vec<String> = [
            r"CORP\alice",
            r"corp\ALICE",
            "alice@corp.example.test",
            "alice@CORP.EXAMPLE.TEST",
            "alice",
        ]
        .iter()
        .map(|t| rules(&id, t).unwrap().key)
        .collect();
        assert!(keys.iter().all(|k| k == r"name:corp\alice"), "{keys:?}");
        let upn = rules(&id, "alice@corp.example.test").unwrap();
        assert_eq!(upn.canonical, r"CORP\alice");
        assert_eq!(upn.names, [r"CORP\alice", "alice@corp.example.test"]);
        // A bare name is never one of its names: it is a login of whichever domain a gate
        // says.
        assert_eq!(rules(&id, "alice").unwrap().names, [r"CORP\alice"]);
        assert_ne!(rules(&id, r"PARTNER\alice").unwrap().key, keys[0]);
    }

    #[test]
    fn what_the_rules_cannot_place_is_unresolvable_with_a_reason() {
        let id = corp(false);
        let e = rules(&id, "alice").unwrap_err();
        assert!(e.to_string().contains("default = true"), "{e}");
        let listed = Identity::new(id.domains().to_vec(), SuffixRule::Listed, None);
        let e = rules(&listed, "bob@elsewhere.test").unwrap_err();
        assert!(e.to_string().contains("[[domains]]"), "{e}");
        let e = rules(&id, "CN=Alice,CN=Users,DC=corp").unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        // Found by fuzzing (principal): a UPN whose user part ends in a space would be an
        // account whose canonical name (`ICE\CORP#RP# `) names nothing, so it could not be
        // released by it.
        let e = rules(&id, "CORP#RP# @ice").unwrap_err();
        assert!(e.to_string().contains("no valid name"), "{e}");
        let kept = Account::as_text("alice");
        assert_eq!(
            (kept.key.as_str(), kept.resolution),
            ("text:alice", Resolution::Text)
        );
    }

    #[test]
    fn guids_and_sids_print_as_the_directory_prints_them() {
        let raw: Vec<u8> = (0u8..16).collect();
        let s = guid_string(&raw).unwrap();
        assert_eq!(s, "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(guid_bytes(&s).unwrap().to_vec(), raw);
        assert!(guid_string(&raw[..15]).is_none());
        assert!(guid_bytes("not-a-guid").is_none());
        // S-1-5-21-1-2-3-500
        let mut sid = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for v in [21u32, 1, 2, 3, 500] {
            sid.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(sid_string(&sid).unwrap(), "S-1-5-21-1-2-3-500");
        assert!(sid_string(&sid[..9]).is_none());
    }
}
