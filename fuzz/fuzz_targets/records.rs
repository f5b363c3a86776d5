//! Data-set JSON bodies in Imperva's `{"records": [...]}` shape (`warden::dataset`): what the
//! data API, static sources and the last-known-good store read.
//!
//! Properties:
//! - `parse_records` never panics;
//! - records that build a data set (keys present, single-valued and unique after case folding)
//!   write back to JSON that parses and builds the same data set, with the same fingerprint;
//! - the key index of the built set finds every key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::model::dataset::{Column, DataSet, Schema, parse_records};

const MAX_LEN: usize = 8 * 1024;

fn schema(case_sensitive: bool) -> Schema {
    let col = |name: &str, key| Column {
        name: name.into(),
        key,
    };
    Schema::new(
        vec![col("user", true), col("groups", false), col("note", false)],
        case_sensitive,
    )
    .expect("schema")
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LEN {
        return;
    }
    let Ok(records) = parse_records(data) else {
        return;
    };
    // The first byte picks the case sensitivity, so both kinds of set see every shape.
    let case_sensitive = data.first().is_some_and(|b| b & 1 == 1);
    let Ok(ds) = DataSet::from_records("fuzz", schema(case_sensitive), records) else {
        return;
    };
    let mut json = Vec::new();
    ds.write_records_json(&mut json);
    let input = String::from_utf8_lossy(data);
    let text = String::from_utf8_lossy(&json);
    let again = parse_records(&json)
        .unwrap_or_else(|e| panic!("{input:?} written as {text:?} does not parse: {e}"));
    let back = DataSet::from_records("fuzz", schema(case_sensitive), again)
        .unwrap_or_else(|e| panic!("{input:?} written as {text:?} does not build: {e}"));
    assert_eq!(back, ds, "{input:?} written as {text:?}");
    assert_eq!(back.fingerprint(), ds.fingerprint());
    let index = ds.index(&[ds.schema().key_index()]);
    assert_eq!(index.len(), ds.len(), "{input:?}: keys are unique");
    for row in ds.rows() {
        let key = ds.key_of(row);
        assert!(index.contains(key), "{input:?}: key {key:?} not found");
    }
});
