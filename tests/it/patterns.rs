//! Runs every case of `testdata/patterns.toml`; see the header of that file
//! for the case format.

use std::collections::HashSet;

use serde::Deserialize;
use warden::base::dn::Dn;
use warden::model::pattern::{AttributeMapping, MappingStats};

#[derive(Debug, Default, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Kind {
    #[default]
    Pattern,
    DnFirstRdn,
    MapValues,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    kind: Kind,
    pattern: Option<String>,
    substitute: Option<String>,
    input: Option<String>,
    repeat_input: Option<usize>,
    inputs: Option<Vec<String>>,
    expected: Option<String>,
    expected_repeat: Option<usize>,
    expected_values: Option<Vec<String>>,
    values_dropped: Option<u64>,
    #[serde(default)]
    no_match: bool,
    compile_error: Option<String>,
    error_position: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    case: Vec<Case>,
}

/// Expected outcome of a single-value case.
enum Expect {
    Value(String),
    NoMatch,
    CompileError(String),
}

fn expectation(case: &Case) -> Result<Expect, String> {
    let n = usize::from(case.expected.is_some())
        + usize::from(case.no_match)
        + usize::from(case.compile_error.is_some());
    if n != 1 {
        return Err("needs exactly one of `expected`, `no_match`, `compile_error`".into());
    }
    if let Some(e) = &case.expected {
        return Ok(Expect::Value(e.repeat(case.expected_repeat.unwrap_or(1))));
    }
    if case.no_match {
        return Ok(Expect::NoMatch);
    }
    Ok(Expect::CompileError(
        case.compile_error.clone().unwrap_or_default(),
    ))
}

fn run_case(case: &Case) -> Result<(), String> {
    match case.kind {
        Kind::Pattern => run_pattern(case),
        Kind::DnFirstRdn => run_dn(case),
        Kind::MapValues => run_map_values(case),
    }
}

fn input_of(case: &Case) -> Result<String, String> {
    let input = case.input.as_deref().ok_or("missing `input`")?;
    Ok(input.repeat(case.repeat_input.unwrap_or(1)))
}

fn show(s: &str) -> String {
    if s.len() > 200 {
        format!(
            "{:?}… ({} bytes)",
            &s[..s.floor_char_boundary(200)],
            s.len()
        )
    } else {
        format!("{s:?}")
    }
}

fn compile(case: &Case, expect: &Expect) -> Result<Option<AttributeMapping>, String> {
    let built = AttributeMapping::new(
        "col",
        "attr",
        case.pattern.as_deref(),
        case.substitute.as_deref(),
    );
    match (built, expect) {
        (Ok(m), Expect::CompileError(want)) => Err(format!(
            "expected compile error containing {want:?}, but it compiled: {:?}",
            m.pattern()
        )),
        (Ok(m), _) => Ok(Some(m)),
        (Err(e), Expect::CompileError(want)) => {
            let msg = e.to_string();
            if !msg.contains(want.as_str()) {
                return Err(format!("compile error {msg:?} does not contain {want:?}"));
            }
            if let Some(pos) = case.error_position
                && e.position() != Some(pos)
            {
                return Err(format!(
                    "error position {:?}, expected {pos} (error: {msg})",
                    e.position()
                ));
            }
            Ok(None)
        }
        (Err(e), _) => Err(format!("unexpected compile error: {e}")),
    }
}

fn run_pattern(case: &Case) -> Result<(), String> {
    let expect = expectation(case)?;
    let Some(mapping) = compile(case, &expect)? else {
        return Ok(());
    };
    let input = input_of(case)?;
    let got = mapping.map_one(&input);
    // `apply_into` must agree with `apply` and leave a no-match untouched.
    if let Some(p) = mapping.pattern() {
        let mut buf = String::from("prefix|");
        let matched = p.apply_into(&input, &mut buf);
        let via_into = matched.then(|| buf["prefix|".len()..].to_owned());
        if via_into != got || (!matched && buf != "prefix|") {
            return Err(format!(
                "apply_into disagrees with apply: {via_into:?} vs {got:?}"
            ));
        }
    }
    match (&expect, got) {
        (Expect::Value(want), Some(got)) if *want == got => Ok(()),
        (Expect::NoMatch, None) => Ok(()),
        (Expect::Value(want), got) => Err(format!(
            "expected {}, got {}",
            show(want),
            got.map_or("no match".to_owned(), |g| show(&g))
        )),
        (Expect::NoMatch, Some(got)) => Err(format!("expected no match, got {}", show(&got))),
        (Expect::CompileError(_), _) => unreachable!("handled by compile"),
    }
}

fn run_dn(case: &Case) -> Result<(), String> {
    if case.pattern.is_some() || case.substitute.is_some() || case.compile_error.is_some() {
        return Err("dn_first_rdn cases take only `input` and `expected`/`no_match`".into());
    }
    let expect = expectation(case)?;
    let input = input_of(case)?;
    let first = Dn::parse(&input)
        .ok()
        .and_then(|dn| dn.first_value().map(str::to_owned));
    match (expect, first) {
        (Expect::Value(want), Some(got)) if want == got => Ok(()),
        (Expect::NoMatch, None) => Ok(()),
        (Expect::Value(want), got) => Err(format!("expected {}, got {got:?}", show(&want))),
        (Expect::NoMatch, Some(got)) => Err(format!("expected None, got {}", show(&got))),
        (Expect::CompileError(_), _) => Err("dn_first_rdn cannot have compile errors".into()),
    }
}

fn run_map_values(case: &Case) -> Result<(), String> {
    let inputs = case.inputs.as_ref().ok_or("missing `inputs`")?;
    let want = case
        .expected_values
        .as_ref()
        .ok_or("missing `expected_values`")?;
    let mapping = AttributeMapping::new(
        "col",
        "attr",
        case.pattern.as_deref(),
        case.substitute.as_deref(),
    )
    .map_err(|e| format!("unexpected compile error: {e}"))?;
    let mut out = vec!["already there".to_owned()];
    let mut stats = MappingStats {
        values_mapped: 1,
        values_dropped: 1,
    };
    mapping.map_values(inputs.iter().map(String::as_str), &mut out, &mut stats);
    if out.first().map(String::as_str) != Some("already there") {
        return Err("map_values did not append".into());
    }
    let got = &out[1..];
    if got != want.as_slice() {
        return Err(format!("expected values {want:?}, got {got:?}"));
    }
    let dropped = case.values_dropped.unwrap_or(0);
    let expected_stats = MappingStats {
        values_mapped: 1 + want.len() as u64,
        values_dropped: 1 + dropped,
    };
    if stats != expected_stats {
        return Err(format!("stats {stats:?}, expected {expected_stats:?}"));
    }
    Ok(())
}

#[test]
fn pattern_cases() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/patterns.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let file: File = toml::from_str(&text).unwrap();
    assert!(!file.case.is_empty(), "no cases in {path}");
    let mut names = HashSet::new();
    let mut failures = Vec::new();
    for case in &file.case {
        if !names.insert(case.name.as_str()) {
            failures.push(format!("{}: duplicate case name", case.name));
            continue;
        }
        // Nothing may panic on any input: a panic is a failure of its case.
        let result = std::panic::catch_unwind(|| run_case(case))
            .unwrap_or_else(|_| Err("panicked".to_owned()));
        if let Err(e) = result {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}",
        failures.len(),
        file.case.len(),
        failures.join("\n  ")
    );
    eprintln!("{} pattern cases passed", file.case.len());
}
