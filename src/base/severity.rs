//! The two severity scales warden speaks: a policy violation's (Imperva's `high` … `noAlert`)
//! and an incident's or alert's (`informative` … `critical`, in rising order).

use serde::Serialize;

use super::word::{UnknownWord, words};

/// Severity of a policy violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    #[serde(rename = "high")]
    High,
    #[serde(rename = "medium")]
    Medium,
    #[serde(rename = "low")]
    Low,
    #[serde(rename = "informative")]
    Informative,
    #[serde(rename = "noAlert")]
    NoAlert,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Informative => "informative",
            Severity::NoAlert => "noAlert",
        }
    }
}

words!(Severity, "high, medium, low, informative, noAlert", {
    "high" => Severity::High, "medium" => Severity::Medium, "low" => Severity::Low,
    "informative" => Severity::Informative, "noAlert" => Severity::NoAlert,
});

/// How serious an incident or alert is, in rising order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IncidentSeverity {
    Informative,
    Low,
    Medium,
    High,
    Critical,
}

impl IncidentSeverity {
    pub const NAMES: &'static str = "informative, low, medium, high, critical";

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentSeverity::Informative => "informative",
            IncidentSeverity::Low => "low",
            IncidentSeverity::Medium => "medium",
            IncidentSeverity::High => "high",
            IncidentSeverity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for IncidentSeverity {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "informative" | "info" => IncidentSeverity::Informative,
            "low" => IncidentSeverity::Low,
            "medium" => IncidentSeverity::Medium,
            "high" => IncidentSeverity::High,
            "critical" => IncidentSeverity::Critical,
            _ => {
                return Err(UnknownWord {
                    got: s.to_owned(),
                    expected: IncidentSeverity::NAMES,
                });
            }
        })
    }
}

impl std::fmt::Display for IncidentSeverity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
