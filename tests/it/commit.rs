//! Committing an `ldap`/`api` data set's rows (`Warden::commit_data_set`): a refresh that
//! found the rows already committed writes no new generation (every replica would read the
//! whole set again for nothing); a change does, and so does the same content once another
//! writer has put a newer generation in the store.

use warden::decide::{Outcome, Published, Request};
use warden::model::dataset::{Cell, DataSet, DataSetBuilder};
use warden::runtime::Warden;

use crate::support::list_config;

const SET: &str = "Blocked Apps";

fn open(dir: &std::path::Path) -> Warden {
    let source = list_config("", r#""*""#)
        + r#"
[[data_sets]]
name = "Blocked Apps"
case_sensitive = false
columns = [{ name = "app", key = true }]
source = { type = "api" }

[[policies]]
name = "Block apps"
action = "block"
severity = "high"
apply_to = ["*"]
[[policies.criteria]]
field = "source_app"
operation = "at-least-one"
data_set = "Blocked Apps"
"#;
    let mut config = warden::config::Config::parse(&source, "t", dir).unwrap();
    config.store.path = dir.join("w.db");
    Warden::open(config).unwrap()
}

fn rows(warden: &Warden, apps: &[&str]) -> DataSet {
    let schema = warden.data_set(SET).unwrap().schema().clone();
    let mut b = DataSetBuilder::new(SET, schema);
    for app in apps {
        b.push(vec![Cell::from_values(vec![(*app).to_owned()])])
            .unwrap();
    }
    b.build()
}

fn blocks(warden: &Warden, app: &str) -> bool {
    let request = Request {
        service: "orders",
        source_app: Some(app),
        ..Default::default()
    };
    warden.engine().decide(&request).outcome == Outcome::Block
}

#[test]
fn the_same_rows_again_write_no_generation_a_change_does() {
    let dir = tempfile::tempdir().unwrap();
    let warden = open(dir.path());
    let generation = || warden.store().rows_generation(SET).unwrap();
    assert_eq!(generation(), None, "nothing committed yet");

    assert!(matches!(
        warden
            .commit_data_set(rows(&warden, &["excel", "sqlcmd"]))
            .unwrap(),
        Published::Swapped(_)
    ));
    let first = generation().expect("the first commit is persisted");
    assert!(blocks(&warden, "excel"));

    assert!(matches!(
        warden
            .commit_data_set(rows(&warden, &["excel", "sqlcmd"]))
            .unwrap(),
        Published::Unchanged(_)
    ));
    assert_eq!(
        generation(),
        Some(first),
        "unchanged rows are not written again"
    );

    warden.commit_data_set(rows(&warden, &["sqlcmd"])).unwrap();
    assert_eq!(generation(), Some(first + 1));
    assert!(!blocks(&warden, "excel"));
    assert!(blocks(&warden, "sqlcmd"));
}

#[test]
fn the_same_rows_are_written_again_after_another_writer_moved_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let warden = open(dir.path());
    let generation = || warden.store().rows_generation(SET).unwrap();
    warden.commit_data_set(rows(&warden, &["excel"])).unwrap();
    let first = generation().unwrap();
    // Another replica on the same store commits other rows.
    warden
        .store()
        .save_rows(SET, 1, r#"[{"app":"toad"}]"#)
        .unwrap();
    assert_eq!(generation(), Some(first + 1));

    // This process's refresh finds what it last committed: the store must get it back.
    warden.commit_data_set(rows(&warden, &["excel"])).unwrap();
    assert_eq!(generation(), Some(first + 2));
    let stored = warden.store().load_rows(SET).unwrap().unwrap();
    assert!(stored.records.contains("excel") && !stored.records.contains("toad"));
}
