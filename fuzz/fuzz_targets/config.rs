//! Configuration parsing and validation (`warden::config`). Input: a TOML document. Seeds: the
//! files under config/.
//!
//! Properties:
//! - parsing never panics, and an error result lists at least one problem, each with a line
//!   inside the document;
//! - the result is deterministic (same errors, in the same order, on a second parse);
//! - an inline `bind_password` value (rejected) never shows up in an error message or key path;
//! - a configuration that validates also compiles: its policies build into a snapshot against
//!   (empty) data sets of the validated schemas, and every policy has a criterion and a scope.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use warden::config::Config;
use warden::model::dataset::DataSet;
use warden::decide::{IndexCache, Snapshot};

const MAX_LEN: usize = 8 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some(source) = warden_fuzz::text(data, MAX_LEN) else {
        return;
    };
    let base = Path::new("/nonexistent/warden-fuzz");
    let first = Config::parse(&source, "fuzz", base);
    match &first {
        Ok(config) => compiles(&source, config),
        Err(errors) => {
            assert!(
                !errors.errors.is_empty(),
                "{source:?}: error without problems"
            );
            let lines = source.lines().count() + 1;
            for e in &errors.errors {
                if let Some(line) = e.line {
                    assert!(
                        (1..=lines).contains(&line),
                        "{source:?}: line {line} of {lines}: {e}"
                    );
                }
            }
            let _ = errors.to_string();
            secrets_not_echoed(&source, &errors.errors);
        }
    }
    let second = Config::parse(&source, "fuzz", base);
    match (&first, &second) {
        (Err(a), Err(b)) => assert_eq!(a, b, "{source:?}: errors differ between two parses"),
        (Ok(_), Ok(_)) => {}
        _ => panic!("{source:?}: two parses disagree"),
    }
});

fn compiles(source: &str, config: &Config) {
    let data_sets: Vec<Arc<DataSet>> = config
        .data_sets
        .iter()
        .map(|d| Arc::new(DataSet::empty(d.name.clone(), d.schema.clone())))
        .collect();
    if let Err(e) = Snapshot::build(&config.policies, data_sets, &mut IndexCache::default()) {
        panic!("{source:?}: validated, but policies do not compile: {e}");
    }
    for p in &config.policies {
        assert!(
            !p.criteria.is_empty(),
            "{source:?}: policy without criteria"
        );
        assert!(
            !p.apply_to.patterns().is_empty(),
            "{source:?}: policy without apply_to"
        );
    }
}

/// Every string and key of `value` except the `bind_password` values.
fn other_strings<'a>(value: &'a toml::Value, key: Option<&str>, out: &mut Vec<&'a str>) {
    match value {
        toml::Value::String(s) if key != Some("bind_password") => out.push(s),
        toml::Value::Array(a) => a.iter().for_each(|v| other_strings(v, None, out)),
        toml::Value::Table(t) => {
            for (k, v) in t {
                out.push(k);
                other_strings(v, Some(k), out);
            }
        }
        _ => {}
    }
}

fn secrets_not_echoed(source: &str, errors: &[warden::config::ConfigError]) {
    let Ok(doc) = toml::from_str::<toml::Value>(source) else {
        return;
    };
    let Some(dirs) = doc.get("directories").and_then(toml::Value::as_array) else {
        return;
    };
    let mut others = Vec::new();
    other_strings(&doc, None, &mut others);
    for d in dirs {
        let Some(secret) = d.get("bind_password").and_then(toml::Value::as_str) else {
            continue;
        };
        // Only a secret that is unmistakably itself: long enough, plain, and written nowhere
        // else in the document (or a message quoting another value could contain it).
        if secret.len() < 8
            || !secret.bytes().all(|b| b.is_ascii_alphanumeric())
            || source.matches(secret).count() != 1
            || others.iter().any(|o| o.contains(secret))
        {
            continue;
        }
        for e in errors {
            assert!(
                !e.message.contains(secret) && !e.path.to_string().contains(secret),
                "{source:?}: the inline secret {secret:?} is echoed in: {e}"
            );
        }
    }
}
