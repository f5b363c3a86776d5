//! `warden check-config [PATH]`: validate a configuration and print every problem with its key
//! path (exit 1 when there is one).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::Source;

pub fn run(source: Source, path: Option<PathBuf>) -> Result<ExitCode> {
    let mut source = source.config_source();
    source.store_override = None;
    if let Some(path) = path {
        source.path = Some(path);
    }
    let origin = source.origin();
    match source.load() {
        Ok(c) => {
            println!(
                "{origin}: ok ({} lists, {} data sets, {} policies, {} directories)",
                c.lists.len(),
                c.data_sets.len(),
                c.policies.len(),
                c.directories.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprint!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}
