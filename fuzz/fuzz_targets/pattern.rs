//! Match patterns and substitution templates (`warden::pattern`).
//!
//! Input: fields separated by `0xFF` — the match pattern, the template (`0xFE` alone = none),
//! then up to eight values to map. Seeds come from testdata/patterns.toml.
//!
//! Properties, checked against regex-automata's own full capture search (no prefix fast path)
//! and a template reader written from docs/ARCHITECTURE.md ("Substitution patterns"):
//! - a pattern compiles iff the regex builds and the template is valid by the reference;
//! - `apply` gives `None` iff the regex does not match, else the reference rendering;
//! - without a template the result is the whole match;
//! - `apply_into` appends exactly what `apply` returns and leaves the buffer alone on no match;
//! - `AttributeMapping::map_values` maps value by value and counts what it drops.
#![no_main]

use std::fmt;

use libfuzzer_sys::fuzz_target;
use regex_automata::{PatternID, meta};
use warden::model::pattern::{AttributeMapping, DEFAULT_SIZE_LIMIT, MappingStats, Pattern};
use warden_fuzz::{fields, parse_template, render_template};

const MAX_PATTERN: usize = 128;
const MAX_TEMPLATE: usize = 128;
const MAX_VALUE: usize = 256;
const MAX_VALUES: usize = 8;

struct Case {
    pattern: String,
    template: Option<String>,
    values: Vec<String>,
}

/// Prints a ready reproducer.
impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "let p = Pattern::compile({:?}, {:?}).unwrap();",
            self.pattern,
            self.template.as_deref()
        )?;
        for v in &self.values {
            writeln!(f, "p.apply({v:?});")?;
        }
        Ok(())
    }
}

fn case(data: &[u8]) -> Option<Case> {
    let mut it = fields(data).into_iter();
    let pattern = it.next()??;
    let template = it.next().flatten();
    let values: Vec<String> = it.take(MAX_VALUES).map(Option::unwrap_or_default).collect();
    if pattern.len() > MAX_PATTERN
        || template.as_ref().is_some_and(|t| t.len() > MAX_TEMPLATE)
        || values.iter().any(|v| v.len() > MAX_VALUE)
    {
        return None;
    }
    Some(Case {
        pattern,
        template,
        values,
    })
}

fn reference_regex(pattern: &str) -> Option<meta::Regex> {
    meta::Regex::builder()
        .configure(meta::Config::new().nfa_size_limit(Some(DEFAULT_SIZE_LIMIT)))
        .build(pattern)
        .ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(case) = case(data) else { return };
    check(&case);
});

fn check(case: &Case) {
    let compiled = Pattern::compile(&case.pattern, case.template.as_deref());
    let Some(re) = reference_regex(&case.pattern) else {
        assert!(
            compiled.is_err(),
            "{case:?}compiled, but the regex does not build"
        );
        return;
    };
    let info = re.group_info().clone();
    let group_len = info.group_len(PatternID::ZERO);
    let pieces = match &case.template {
        Some(t) => parse_template(t, group_len, |name| info.to_index(PatternID::ZERO, name)),
        None => Some(vec![warden_fuzz::TemplatePiece::Group(0)]),
    };
    let (p, pieces) = match (compiled, pieces) {
        (Ok(p), Some(pieces)) => (p, pieces),
        (Err(_), None) => return,
        (Ok(_), None) => panic!("{case:?}compiled, but the template is invalid"),
        (Err(e), Some(_)) => panic!("{case:?}rejected a valid pattern and template: {e}"),
    };
    assert_eq!(p.match_pattern(), case.pattern);
    assert_eq!(p.substitute(), case.template.as_deref());
    assert_eq!(p.group_count(), group_len - 1, "{case:?}");
    let whole = Pattern::compile(&case.pattern, None)
        .unwrap_or_else(|e| panic!("{case:?}whole-match form rejected: {e}"));

    let mut caps = re.create_captures();
    for value in &case.values {
        re.captures(value.as_str(), &mut caps);
        let expected = caps
            .is_match()
            .then(|| render_template(&pieces, |g| caps.get_group(g).map(|s| &value[s.range()])));
        let got = p.apply(value);
        assert_eq!(got, expected, "{case:?}on {value:?}");
        let expected_whole = caps.get_match().map(|m| &value[m.range()]);
        assert_eq!(
            whole.apply(value).as_deref(),
            expected_whole,
            "{case:?}whole match on {value:?}"
        );
        let mut buf = String::from("prefix:");
        let matched = p.apply_into(value, &mut buf);
        assert_eq!(matched, got.is_some(), "{case:?}apply_into on {value:?}");
        assert_eq!(
            buf.strip_prefix("prefix:"),
            Some(got.as_deref().unwrap_or("")),
            "{case:?}apply_into on {value:?}"
        );
    }

    let mapping = AttributeMapping::new(
        "column",
        "attribute",
        Some(&case.pattern),
        case.template.as_deref(),
    )
    .unwrap_or_else(|e| panic!("{case:?}mapping rejected what Pattern accepted: {e}"));
    let mut out = Vec::new();
    let mut stats = MappingStats::default();
    mapping.map_values(case.values.iter().map(String::as_str), &mut out, &mut stats);
    let expected: Vec<String> = case.values.iter().filter_map(|v| p.apply(v)).collect();
    assert_eq!(out, expected, "{case:?}map_values");
    assert_eq!(stats.values_mapped, expected.len() as u64);
    assert_eq!(
        stats.values_mapped + stats.values_dropped,
        case.values.len() as u64
    );
}
