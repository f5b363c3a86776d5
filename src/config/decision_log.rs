//! `[decision_log]`: the decisions an auditor can replay (`events::decision_log`) — where they
//! are written, bounded by size and age, and the share of allows kept beside every block.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::KeyPath;
use super::check::Ctx;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    enabled: Option<bool>,
    dir: Option<String>,
    max_bytes: Option<u64>,
    max_age: Option<String>,
    allow_sample: Option<f64>,
}

/// `[decision_log]`: the decisions an auditor can replay.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionLogConfig {
    pub enabled: bool,
    /// `None`: beside the store ([`super::Config::decision_log_dir`]).
    pub dir: Option<PathBuf>,
    /// Most bytes kept; the oldest files go first.
    pub max_bytes: u64,
    /// Files older than this go.
    pub max_age: Duration,
    /// The share of allows recorded (0 to 1); every block and error is.
    pub allow_sample: f64,
}

const DEFAULT_LOG_BYTES: u64 = 1 << 30;
const MIN_LOG_BYTES: u64 = 1 << 20;
const DEFAULT_LOG_AGE: Duration = Duration::from_secs(30 * 86_400);

pub(super) fn check(ctx: &mut Ctx<'_>, d: Raw) -> DecisionLogConfig {
    let path = KeyPath::root().key("decision_log");
    let max_bytes = d.max_bytes.unwrap_or(DEFAULT_LOG_BYTES);
    if max_bytes < MIN_LOG_BYTES {
        ctx.err(
            path.key("max_bytes"),
            format!("must be at least {MIN_LOG_BYTES} bytes"),
        );
    }
    let allow_sample = d.allow_sample.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&allow_sample) {
        ctx.err(
            path.key("allow_sample"),
            "must be a share from 0 (no allows) to 1 (every allow)",
        );
    }
    DecisionLogConfig {
        enabled: d.enabled.unwrap_or(true),
        dir: d.dir.as_deref().map(|p| ctx.path_buf(p)),
        max_bytes,
        max_age: ctx.duration(path.key("max_age"), d.max_age.as_deref(), DEFAULT_LOG_AGE),
        allow_sample: allow_sample.clamp(0.0, 1.0),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::super::Config;

    #[test]
    fn on_by_default_beside_the_store_with_blocks_only() {
        let c = Config::parse("", "t", Path::new("/etc/warden")).unwrap();
        assert!(c.decision_log.enabled);
        assert_eq!(c.decision_log.allow_sample, 0.0);
        assert_eq!(
            c.decision_log_dir(),
            Path::new("/etc/warden/warden.db.decisions")
        );
    }
}
