//! Attribute mapping throughput: the seed's two mappings (config/examples/ad-imperva.toml)
//! applied to every entry of a pull, beside the naive peer `regex::Regex::captures` +
//! `Captures::expand`.
//!
//! ```text
//! cargo bench --bench pattern -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! An entry is what the seed's LDAP query returns per user: one `userPrincipalName`
//! (`^([^@]*)@([^.]*)\..*$` → `$2\$1`) and one `memberOf` DN (`^CN=([^,]*),.*$` → `$1`).
//! Throughput is in entries (or values, for the one-mapping groups) per second.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden::model::pattern::{AttributeMapping, MappingStats};

const UPN_MATCH: &str = r"^([^@]*)@([^.]*)\..*$";
const UPN_SUBSTITUTE: &str = r"$2\$1";
const DN_MATCH: &str = r"^CN=([^,]*),.*$";
const DN_SUBSTITUTE: &str = r"$1";

/// Entries per iteration: one pull page is at most 1000 entries.
const ENTRIES: usize = 1000;

struct Entry {
    upn: String,
    member_of: String,
}

/// Realistic values: several domains, mixed case, names of varying length, and a few UPNs
/// the pattern does not match (dropped, as in a real pull).
fn entries() -> Vec<Entry> {
    let domains = ["corp", "EMEA", "apac-prod", "Research"];
    let groups = [
        "PTR_Suspicious_Users",
        "Domain Users",
        "SQL-Admins-Finance",
        "g",
    ];
    (0..ENTRIES)
        .map(|i| {
            let domain = domains[i % domains.len()];
            let upn = if i % 97 == 0 {
                format!("broken-upn-{i}")
            } else if i % 3 == 0 {
                format!("Firstname.Lastname{i}@{domain}.example.test")
            } else {
                format!("user{i}@{domain}.corp.example.com")
            };
            let member_of = format!(
                "CN={},OU=Groups,OU={domain},DC=corp,DC=example,DC=test",
                groups[i % groups.len()]
            );
            Entry { upn, member_of }
        })
        .collect()
}

/// The peer: what a caller of the `regex` crate writes first.
struct Naive {
    re: regex::Regex,
    template: &'static str,
}

impl Naive {
    fn new(pattern: &str, template: &'static str) -> Naive {
        Naive {
            re: regex::Regex::new(pattern).unwrap(),
            template,
        }
    }

    fn map_one(&self, value: &str) -> Option<String> {
        let caps = self.re.captures(value)?;
        let mut out = String::new();
        caps.expand(self.template, &mut out);
        Some(out)
    }
}

fn mappings(c: &mut Criterion) {
    let entries = entries();
    let upn = AttributeMapping::new(
        "user",
        "userPrincipalName",
        Some(UPN_MATCH),
        Some(UPN_SUBSTITUTE),
    )
    .unwrap();
    let dn =
        AttributeMapping::new("group", "memberOf", Some(DN_MATCH), Some(DN_SUBSTITUTE)).unwrap();
    let naive_upn = Naive::new(UPN_MATCH, UPN_SUBSTITUTE);
    let naive_dn = Naive::new(DN_MATCH, DN_SUBSTITUTE);

    // Both sides give the same values before anything is timed.
    for e in &entries {
        assert_eq!(upn.map_one(&e.upn), naive_upn.map_one(&e.upn), "{}", e.upn);
        assert_eq!(dn.map_one(&e.member_of), naive_dn.map_one(&e.member_of));
    }
    assert_eq!(
        upn.map_one("alice@corp.example.test").as_deref(),
        Some(r"corp\alice")
    );

    let mut g = c.benchmark_group("entry_upn_and_memberof");
    g.throughput(Throughput::Elements(ENTRIES as u64));
    // What a pull does: map each attribute's values into the row's cells (a fresh `String` per
    // value, as the data set keeps them).
    g.bench_function("warden_map_values", |b| {
        let mut users = Vec::with_capacity(ENTRIES);
        let mut groups = Vec::with_capacity(ENTRIES);
        b.iter(|| {
            users.clear();
            groups.clear();
            let mut stats = MappingStats::default();
            for e in black_box(&entries) {
                upn.map_values([e.upn.as_str()], &mut users, &mut stats);
                dn.map_values([e.member_of.as_str()], &mut groups, &mut stats);
            }
            black_box((&users, &groups, stats));
        });
    });
    // Into one reused buffer: the mapping without the per-value allocation.
    g.bench_function("warden_apply_into", |b| {
        let (p_upn, p_dn) = (upn.pattern().unwrap(), dn.pattern().unwrap());
        let mut out = String::with_capacity(64 * 1024);
        b.iter(|| {
            out.clear();
            for e in black_box(&entries) {
                p_upn.apply_into(&e.upn, &mut out);
                p_dn.apply_into(&e.member_of, &mut out);
            }
            black_box(&out);
        });
    });
    g.bench_function("regex_captures_expand", |b| {
        let mut users = Vec::with_capacity(ENTRIES);
        let mut groups = Vec::with_capacity(ENTRIES);
        b.iter(|| {
            users.clear();
            groups.clear();
            for e in black_box(&entries) {
                users.extend(naive_upn.map_one(&e.upn));
                groups.extend(naive_dn.map_one(&e.member_of));
            }
            black_box((&users, &groups));
        });
    });
    g.finish();

    // Each mapping alone, per value.
    for (name, mapping, naive, values) in [
        (
            "value_upn",
            &upn,
            &naive_upn,
            entries.iter().map(|e| e.upn.as_str()).collect::<Vec<_>>(),
        ),
        (
            "value_dn",
            &dn,
            &naive_dn,
            entries.iter().map(|e| e.member_of.as_str()).collect(),
        ),
    ] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(values.len() as u64));
        g.bench_function("warden_map_one", |b| {
            b.iter(|| {
                for v in black_box(&values) {
                    black_box(mapping.map_one(v));
                }
            });
        });
        g.bench_function("regex_captures_expand", |b| {
            b.iter(|| {
                for v in black_box(&values) {
                    black_box(naive.map_one(v));
                }
            });
        });
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = mappings
}
criterion_main!(benches);
