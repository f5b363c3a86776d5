//! Identity: which names are one account.
//!
//! Databases present one Active Directory account as `CORP\alice` (SQL Server),
//! `alice@CORP.EXAMPLE.TEST` (Kerberos) or `alice@corp.example.test` (a UPN), and sometimes a
//! bare `alice`. A list member, a data-set key and a decision's principal are compared as
//! accounts: each side is brought to one *canonical account name* ([`Identity::canonical`])
//! before the (case-folding) hash lookup, so a decision stays one lookup.
//!
//! The canonical name of an account is `NETBIOS\user`, the NetBIOS domain spelled as the rules
//! spell it (upper case where derived). The rules ([`Identity`]) say which NetBIOS domain a DNS
//! name or UPN suffix belongs to — configured domains first, then, under the seed's rule
//! ([`SuffixRule::FirstLabel`]), the first label of the suffix (`corp.example.test` is `CORP`) —
//! and which domain a bare name belongs to, if any. A name the rules cannot place stays as it
//! is: `PARTNER\alice` is `PARTNER\alice`, never `CORP\alice`.
//!
//! Names that are another account's in a way the rules cannot know (a UPN whose prefix is not
//! the sAMAccountName: `john.doe@corp.example.test` is `CORP\jdoe`) come from the directory,
//! as alias keys of the list data set (see `runtime`).

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};

/// One domain the rules know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The NetBIOS name, as canonical names spell it (`CORP`).
    pub netbios: String,
    /// The DNS name (`corp.example.test`).
    pub dns: String,
    /// UPN suffixes besides the DNS name that belong to this domain (`example.com`).
    pub upn_suffixes: Vec<String>,
}

/// How a DNS name or UPN suffix no configured domain claims maps to a NetBIOS domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SuffixRule {
    /// The seed's rule: the first label, upper-cased (`alice@corp.example.test` is `CORP\alice`).
    #[default]
    FirstLabel,
    /// Only configured domains: any other suffix names an account of its own.
    Listed,
}

crate::base::word::words!(SuffixRule, "first-label, listed", {
    "first-label" => SuffixRule::FirstLabel,
    "listed" => SuffixRule::Listed,
});

impl SuffixRule {
    pub fn as_str(self) -> &'static str {
        match self {
            SuffixRule::FirstLabel => "first-label",
            SuffixRule::Listed => "listed",
        }
    }
}

/// The domain rules: configured domains, the rule for other suffixes, the default domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    domains: Vec<Domain>,
    rule: SuffixRule,
    /// Position in `domains` of the domain bare names belong to.
    default: Option<usize>,
}

/// A canonical name built without allocating for ordinary principals.
type NameBuf = smallvec::SmallVec<[u8; 128]>;

impl Identity {
    /// Rules from configured domains (validated by `config`: unique names, at most one default).
    pub fn new(domains: Vec<Domain>, rule: SuffixRule, default: Option<usize>) -> Identity {
        let default = default.filter(|&i| i < domains.len());
        Identity {
            domains,
            rule,
            default,
        }
    }

    /// No rules at all: every name is compared as written.
    pub fn none() -> Identity {
        Identity::new(Vec::new(), SuffixRule::Listed, None)
    }

    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    pub fn rule(&self) -> SuffixRule {
        self.rule
    }

    pub fn default_domain(&self) -> Option<&Domain> {
        self.default.and_then(|i| self.domains.get(i))
    }

    /// Whether canonicalisation can change any name (else lookups skip it).
    pub fn is_identity(&self) -> bool {
        self.domains.is_empty() && self.rule == SuffixRule::Listed
    }

    /// A hash of the rules, so indexes built under other rules are not reused.
    pub fn fingerprint(&self) -> u64 {
        let mut h = foldhash::fast::FixedState::with_seed(0x1d_e7).build_hasher();
        h.write(self.rule.as_str().as_bytes());
        h.write_usize(self.default.map_or(usize::MAX, |d| d));
        for d in &self.domains {
            h.write(d.netbios.as_bytes());
            h.write_u8(0xff);
            h.write(d.dns.as_bytes());
            for s in &d.upn_suffixes {
                h.write_u8(0xfe);
                h.write(s.as_bytes());
            }
            h.write_u8(0xfd);
        }
        h.finish()
    }

    /// The NetBIOS domain a DNS name or UPN suffix belongs to, as canonical names spell it.
    pub fn netbios_for_suffix<'a>(&'a self, suffix: &'a str) -> Option<Cow<'a, str>> {
        if let Some(d) = self.domains.iter().find(|d| {
            d.dns.eq_ignore_ascii_case(suffix)
                || d.upn_suffixes
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(suffix))
        }) {
            return Some(Cow::Borrowed(&d.netbios));
        }
        match self.rule {
            SuffixRule::Listed => None,
            SuffixRule::FirstLabel => {
                let label = suffix.split('.').next().filter(|l| !l.is_empty())?;
                Some(upper(label))
            }
        }
    }

    /// The NetBIOS domain as canonical names spell it: a configured one's spelling, else the
    /// name upper-cased (NetBIOS names are case-insensitive).
    pub fn netbios_spelling<'a>(&'a self, netbios: &'a str) -> Cow<'a, str> {
        match self
            .domains
            .iter()
            .find(|d| d.netbios.eq_ignore_ascii_case(netbios))
        {
            Some(d) => Cow::Borrowed(&d.netbios),
            None => upper(netbios),
        }
    }

    /// The NetBIOS domain of the directory whose naming context is `base_dn`'s `DC=` labels
    /// (`corp.example.test`), if the rules place it.
    pub fn netbios_for_dns(&self, dns: &str) -> Option<String> {
        self.netbios_for_suffix(dns).map(Cow::into_owned)
    }

    /// The canonical account name of `name`: `DOMAIN\user` with the domain spelled as the rules
    /// spell it, a UPN (or Kerberos principal) whose suffix the rules place as that domain's
    /// `DOMAIN\user`, a bare name as the default domain's `DOMAIN\user` when there is one;
    /// anything else (a DN, an unplaced suffix, a bare name without a default) unchanged.
    /// Idempotent: the canonical name of a canonical name is itself.
    ///
    /// Cheap on the decision path: a `DOMAIN\user` already spelled canonically (the common
    /// SQL Server form) returns the input borrowed after one scan for `\`.
    #[inline]
    pub fn canonical<'a>(&self, name: &'a str) -> Cow<'a, str> {
        if self.is_identity() {
            return Cow::Borrowed(name);
        }
        let bytes = name.as_bytes();
        if let Some(slash) = bytes.iter().position(|&b| b == b'\\') {
            let (domain, user) = (&name[..slash], &name[slash + 1..]);
            // The common case, decided in one short pass: a NetBIOS domain already spelled as
            // the rules spell it (upper case, no dot, no `=`).
            if !user.is_empty() && self.is_canonical_netbios(domain.as_bytes()) {
                return Cow::Borrowed(name);
            }
            // `CN=Smith\, John,…` is a DN, not a domain user.
            if domain.is_empty() || user.is_empty() || domain.contains('=') {
                return Cow::Borrowed(name);
            }
            let netbios = if domain.contains('.') {
                match self.netbios_for_suffix(domain) {
                    Some(n) => n,
                    None => return Cow::Borrowed(name),
                }
            } else {
                self.netbios_spelling(domain)
            };
            if *netbios == *domain {
                return Cow::Borrowed(name);
            }
            return Cow::Owned(join(&netbios, user));
        }
        if let Some(at) = bytes.iter().rposition(|&b| b == b'@') {
            let (user, suffix) = (&name[..at], &name[at + 1..]);
            if user.is_empty() || suffix.is_empty() || name.contains('=') {
                return Cow::Borrowed(name);
            }
            return match self.netbios_for_suffix(suffix) {
                Some(netbios) => Cow::Owned(join(&netbios, user)),
                None => Cow::Borrowed(name),
            };
        }
        match self.default_domain() {
            Some(d) if !name.is_empty() && !name.contains('=') => {
                Cow::Owned(join(&d.netbios, name))
            }
            _ => Cow::Borrowed(name),
        }
    }

    /// Whether `domain` is a NetBIOS name canonical names spell exactly so: a configured one,
    /// or (not configured) one with no lower-case letter, dot or `=`.
    #[inline]
    fn is_canonical_netbios(&self, domain: &[u8]) -> bool {
        if domain.is_empty() {
            return false;
        }
        if let Some(d) = self
            .domains
            .iter()
            .find(|d| d.netbios.as_bytes().eq_ignore_ascii_case(domain))
        {
            return d.netbios.as_bytes() == domain;
        }
        domain
            .iter()
            .all(|&b| !b.is_ascii_lowercase() && b != b'.' && b != b'=')
    }

    /// The NetBIOS domain `name` belongs to by the rules, as canonical names spell it: the
    /// domain of a `DOMAIN\user`, of a UPN whose suffix the rules place, of a bare name when
    /// there is a default domain. `None` for a DN, an unplaced suffix, a bare name without a
    /// default: names whose domain the rules cannot tell.
    pub fn domain_of(&self, name: &str) -> Option<String> {
        let canonical = self.canonical(name);
        let (domain, user) = canonical.split_once('\\')?;
        let plain = !domain.is_empty()
            && !user.is_empty()
            && !domain.contains('=')
            && !domain.contains('.');
        plain.then(|| self.netbios_spelling(domain).into_owned())
    }

    /// Every name the account `netbios\sam` with UPN `upn` answers to, canonical first.
    pub fn account_names(&self, netbios: &str, sam: &str, upn: Option<&str>) -> Vec<String> {
        let mut names = vec![join(&self.netbios_spelling(netbios), sam)];
        if let Some(upn) = upn.filter(|u| !u.is_empty()) {
            names.push(upn.to_string());
            let canonical = self.canonical(upn).into_owned();
            if !names.contains(&canonical) {
                names.push(canonical);
            }
        }
        names
    }
}

/// Whether `name` is its own canonical account name up to ASCII case, under any rules: a
/// `DOMAIN\user` whose domain has no `.` (a NetBIOS name, not a DNS one). Its canonical name
/// is the name itself or the name with the domain spelled as the rules spell it (a configured
/// spelling, or upper case): [`Identity::canonical`] changes nothing else in it. So a
/// case-insensitive lookup may use the name as written (`MemberIndex::contains_as_account`
/// does, deciding this in the pass that hashes the name).
pub fn is_canonical_up_to_case(name: &str) -> bool {
    name.split_once('\\')
        .is_some_and(|(domain, _)| !domain.contains('.'))
}

fn upper(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(s.to_ascii_uppercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn join(domain: &str, user: &str) -> String {
    let mut buf = NameBuf::new();
    buf.extend_from_slice(domain.as_bytes());
    buf.push(b'\\');
    buf.extend_from_slice(user.as_bytes());
    // Both parts are str slices and `\` is ASCII: the bytes are UTF-8.
    String::from_utf8(buf.to_vec()).unwrap_or_default()
}

/// A login as an account of `domain` when it is bare (`alice` of CORP is `CORP\alice`); a
/// qualified one (`DOMAIN\user`, a UPN, a DN) as it is. What a gate or a database whose bare
/// logins belong to a domain decides on.
pub fn qualify<'a>(login: &'a str, domain: Option<&str>) -> Cow<'a, str> {
    match domain {
        Some(d) if !login.is_empty() && !login.contains(['\\', '@', '=']) => {
            Cow::Owned(join(d, login))
        }
        _ => Cow::Borrowed(login),
    }
}

/// The DNS name a base DN's `DC=` components spell (`DC=corp,DC=example,DC=test` is
/// `corp.example.test`), lower-cased; `None` without any.
pub fn dns_of_base_dn(base_dn: &str) -> Option<String> {
    let dn = crate::base::dn::parse_dn(base_dn).ok()?;
    let labels: Vec<String> = dn
        .rdns()
        .iter()
        .filter_map(|rdn| match rdn.avas.as_slice() {
            [ava] if ava.attr.eq_ignore_ascii_case("dc") && !ava.ber => {
                Some(ava.value.to_ascii_lowercase())
            }
            _ => None,
        })
        .collect();
    (!labels.is_empty()).then(|| labels.join("."))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn corp() -> Identity {
        Identity::new(
            vec![Domain {
                netbios: "CORP".into(),
                dns: "corp.example.test".into(),
                upn_suffixes: vec!["example.com".into()],
            }],
            SuffixRule::Listed,
            Some(0),
        )
    }

    #[test]
    fn the_seed_rule_names_one_account() {
        let id = Identity::default();
        for name in [
            "CORP\\alice",
            "corp\\alice",
            "alice@corp.example.test",
            "alice@CORP.EXAMPLE.TEST",
            "corp.example.test\\alice",
        ] {
            assert_eq!(id.canonical(name), "CORP\\alice", "{name}");
        }
        assert_eq!(id.canonical("PARTNER\\alice"), "PARTNER\\alice");
        assert_eq!(id.canonical("alice@partner.test"), "PARTNER\\alice");
        // No default domain under the seed's rule: a bare name is its own.
        assert_eq!(id.canonical("alice"), "alice");
        // DNs are left alone.
        let dn = "CN=Smith\\, John,CN=Users,DC=corp";
        assert_eq!(id.canonical(dn), dn);
        assert!(matches!(id.canonical("CORP\\alice"), Cow::Borrowed(_)));
    }

    #[test]
    fn configured_domains_and_default() {
        let id = corp();
        for name in [
            "corp\\alice",
            "alice@corp.example.test",
            "alice@EXAMPLE.COM",
            "alice",
        ] {
            assert_eq!(id.canonical(name), "CORP\\alice", "{name}");
        }
        // Listed only: another suffix is another account.
        assert_eq!(id.canonical("alice@partner.test"), "alice@partner.test");
        assert_eq!(id.canonical("partner\\alice"), "PARTNER\\alice");
    }

    #[test]
    fn canonical_is_idempotent() {
        for id in [Identity::default(), corp(), Identity::none()] {
            for name in [
                "CORP\\alice",
                "a\\b\\c",
                "x@y@corp.example.test",
                "alice",
                "bob@partner",
                "é@ÉX.test",
                "\\",
                "@",
                "a=b",
            ] {
                let once = id.canonical(name).into_owned();
                assert_eq!(id.canonical(&once), once, "{name}");
            }
        }
    }

    /// Every short name over the characters canonicalisation looks at, under rules with and
    /// without configured domains and a default: a name [`is_canonical_up_to_case`] lets a
    /// lookup use as written canonicalises to itself up to ASCII case.
    #[test]
    fn names_canonical_up_to_case_only_change_case() {
        let partner = Domain {
            netbios: "Partner".into(),
            dns: "partner.test".into(),
            upn_suffixes: vec![],
        };
        let mut with_partner = corp().domains().to_vec();
        with_partner.push(partner);
        let rules = [
            Identity::default(),
            corp(),
            Identity::new(with_partner.clone(), SuffixRule::FirstLabel, Some(1)),
            Identity::new(with_partner, SuffixRule::Listed, None),
        ];
        let alphabet = ['a', 'P', '\\', '.', '@', '=', 'é', 'c'];
        let mut names = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = names
                .iter()
                .filter(|n| n.chars().count() == names.last().map_or(0, |l| l.chars().count()))
                .flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}")))
                .collect();
            names.extend(longer);
        }
        names
            .extend(["corp\\alice", "PaRtNeR\\bob", "CORP\\a@corp.example.test"].map(String::from));
        let mut checked = 0;
        for name in names.iter().filter(|n| is_canonical_up_to_case(n)) {
            for id in &rules {
                let canonical = id.canonical(name);
                assert!(
                    canonical.eq_ignore_ascii_case(name),
                    "{name:?} canonicalises to {canonical:?} under {id:?}"
                );
            }
            checked += 1;
        }
        assert!(checked > 1000, "{checked}");
        assert!(!is_canonical_up_to_case("corp.example.test\\alice"));
        assert!(!is_canonical_up_to_case("alice@corp.example.test"));
        assert!(!is_canonical_up_to_case("alice"));
    }

    #[test]
    fn the_domain_a_name_belongs_to() {
        let id = Identity::new(
            vec![
                Domain {
                    netbios: "CORP".into(),
                    dns: "corp.example.test".into(),
                    upn_suffixes: vec![],
                },
                Domain {
                    netbios: "PARTNER".into(),
                    dns: "partner.example.test".into(),
                    upn_suffixes: vec!["partner.example".into()],
                },
            ],
            SuffixRule::Listed,
            Some(0),
        );
        let of = |n: &str| id.domain_of(n);
        assert_eq!(of("PARTNER\\jsmith").as_deref(), Some("PARTNER"));
        assert_eq!(of("partner\\jsmith").as_deref(), Some("PARTNER"));
        assert_eq!(
            of("jsmith@partner.example.test").as_deref(),
            Some("PARTNER")
        );
        assert_eq!(of("jsmith@PARTNER.EXAMPLE").as_deref(), Some("PARTNER"));
        assert_eq!(of("jsmith@corp.example.test").as_deref(), Some("CORP"));
        // A bare name is the default domain's.
        assert_eq!(of("jsmith").as_deref(), Some("CORP"));
        // Names the rules cannot place.
        assert_eq!(of("jsmith@elsewhere.test"), None);
        assert_eq!(of("CN=Smith\\, John,DC=corp"), None);
        assert_eq!(of("other.test\\jsmith"), None);
        assert_eq!(of("OTHER\\jsmith").as_deref(), Some("OTHER"));
        let no_default = Identity::new(id.domains().to_vec(), SuffixRule::Listed, None);
        assert_eq!(no_default.domain_of("jsmith"), None);
    }

    #[test]
    fn a_bare_login_is_qualified_by_its_gate_s_domain() {
        assert_eq!(qualify("alice", Some("CORP")), "CORP\\alice");
        assert_eq!(qualify("alice", None), "alice");
        for qualified in ["PARTNER\\alice", "alice@partner.test", "CN=a,DC=x"] {
            assert_eq!(qualify(qualified, Some("CORP")), qualified);
        }
    }

    #[test]
    fn account_names_include_the_directory_upn() {
        let id = Identity::default();
        assert_eq!(
            id.account_names("corp", "jdoe", Some("john.doe@corp.example.test")),
            ["CORP\\jdoe", "john.doe@corp.example.test", "CORP\\john.doe"]
        );
        assert_eq!(
            dns_of_base_dn("DC=corp,DC=example,DC=test").as_deref(),
            Some("corp.example.test")
        );
    }
}
