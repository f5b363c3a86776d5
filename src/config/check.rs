//! The validation context every section is checked in: it collects errors, each with its key
//! path and the line of the deepest value along that path, and holds the checks a section
//! shares with others (durations, counts, file paths, names and references to other sections,
//! keys a type does not use, attribute patterns).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{ConfigError, KeyPath, Segment};
use crate::base::time::parse_duration;
use crate::model::pattern::{AttributeMapping, PatternError};
use crate::model::policy::UnknownWord;

/// Collects errors; maps key paths to lines through the spanned document.
pub(super) struct Ctx<'s> {
    pub(super) source: &'s str,
    pub(super) doc: Option<Spanned<DeTable<'s>>>,
    pub(super) base_dir: &'s Path,
    pub(super) errors: Vec<ConfigError>,
}

impl<'s> Ctx<'s> {
    pub(super) fn new(source: &'s str, base_dir: &'s Path) -> Ctx<'s> {
        Ctx {
            source,
            doc: None,
            base_dir,
            errors: Vec::new(),
        }
    }

    pub(super) fn err(&mut self, path: KeyPath, message: impl Into<String>) {
        let line = self.line_of(&path);
        self.errors.push(ConfigError {
            path,
            line,
            message: message.into(),
        });
    }

    /// The number of errors so far, to tell whether a check added one.
    pub(super) fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub(super) fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.source.len());
        self.source.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The line of the deepest value along `path` that exists in the document.
    pub(super) fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut span = doc.span();
        let mut value: Option<&DeValue<'_>> = None;
        let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
        for seg in path.segments() {
            let next = match (seg, table, value) {
                (Segment::Key(k), Some(t), _) => t
                    .iter()
                    .find(|(key, _)| key.get_ref() == k)
                    .map(|(key, v)| (key.span(), v)),
                (Segment::Index(i), _, Some(DeValue::Array(a))) => {
                    a.into_iter().nth(*i).map(|v| (v.span(), v))
                }
                _ => None,
            };
            let Some((s, v)) = next else { break };
            span = s;
            value = Some(v.get_ref());
            table = match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        Some(self.line_at(span.start))
    }

    /// A path as written, relative ones against the configuration's directory.
    pub(super) fn path_buf(&self, text: &str) -> PathBuf {
        let p = Path::new(text);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// A duration longer than zero, `default` when absent (or wrong, with the error recorded).
    pub(super) fn duration(
        &mut self,
        path: KeyPath,
        text: Option<&str>,
        default: Duration,
    ) -> Duration {
        match text.map(parse_duration) {
            None => default,
            Some(Ok(d)) if d.is_zero() => {
                self.err(path, "must be longer than zero");
                default
            }
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(path, e);
                default
            }
        }
    }

    /// A count of at least one, `default` when absent.
    pub(super) fn at_least_one(
        &mut self,
        path: KeyPath,
        value: Option<usize>,
        default: usize,
    ) -> usize {
        let v = value.unwrap_or(default);
        if v == 0 {
            self.err(path, "must be at least 1");
        }
        v
    }

    /// A string key that must be present and not blank; `""` when it is not.
    pub(super) fn required<'a>(
        &mut self,
        path: &KeyPath,
        key: &str,
        v: &'a Option<String>,
    ) -> &'a str {
        match v.as_deref() {
            Some(s) if !s.trim().is_empty() => s,
            Some(_) => {
                self.err(path.key(key), "must not be empty");
                ""
            }
            None => {
                self.err(path.clone(), format!("missing `{key}`"));
                ""
            }
        }
    }

    /// One of a fixed set of words (an action, a severity, a field…).
    pub(super) fn word<T: std::str::FromStr<Err = UnknownWord>>(
        &mut self,
        path: KeyPath,
        text: &str,
    ) -> Option<T> {
        text.parse()
            .map_err(|e: UnknownWord| self.err(path, e.to_string()))
            .ok()
    }

    /// Reports the keys set on a `type = kind` entry that its type does not use; `present`
    /// names every optional key with whether it is set.
    pub(super) fn unused_keys(
        &mut self,
        path: &KeyPath,
        kind: &str,
        present: &[(&str, bool)],
        allowed: &[&str],
    ) {
        for &(key, set) in present {
            if set && !allowed.contains(&key) {
                self.err(
                    path.key(key),
                    format!("`{key}` is not used by type = {kind:?}"),
                );
            }
        }
    }

    /// A `match` / `substitute` pair compiled into a mapping of `attribute` into `column`;
    /// errors go to the key that holds the problem.
    pub(super) fn mapping(
        &mut self,
        path: &KeyPath,
        column: &str,
        attribute: &str,
        match_pattern: Option<&str>,
        substitute: Option<&str>,
    ) -> Option<AttributeMapping> {
        if substitute.is_some() && match_pattern.is_none() {
            self.err(
                path.key("substitute"),
                "a substitute needs a `match` pattern to take groups from",
            );
            return None;
        }
        AttributeMapping::new(column, attribute, match_pattern, substitute)
            .map_err(|e| {
                let key = match e {
                    PatternError::Template { .. } | PatternError::UnknownGroup { .. } => {
                        "substitute"
                    }
                    _ => "match",
                };
                self.err(path.key(key), e.to_string());
            })
            .ok()
    }

    /// Checks that `names` of the entries of `section` are unique and non-empty.
    pub(super) fn unique_names<'a>(
        &mut self,
        section: &str,
        names: impl Iterator<Item = (usize, &'a str)>,
    ) -> HashSet<String> {
        let mut seen = HashSet::new();
        for (i, name) in names {
            let path = KeyPath::root().key(section).index(i).key("name");
            if name.trim().is_empty() {
                self.err(path, "must not be empty");
            } else if !seen.insert(name.to_string()) {
                self.err(path, format!("{name:?} is defined twice"));
            }
        }
        seen
    }

    /// Checks that `name` is one of the `known` entries of `section` (a `kind`).
    pub(super) fn reference(
        &mut self,
        path: KeyPath,
        known: &HashSet<String>,
        kind: &str,
        section: &str,
        name: &str,
    ) {
        if !known.contains(name) {
            let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
            names.sort_unstable();
            let hint = if names.is_empty() {
                format!("no {kind} is defined in [[{section}]]")
            } else {
                format!("defined: {}", names.join(", "))
            };
            self.err(
                path,
                format!("names {kind} {name:?}, which does not exist ({hint})"),
            );
        }
    }
}

/// The names each section defines, for the references of the others.
pub(super) struct Names<'a> {
    pub(super) directories: &'a HashSet<String>,
    /// Directories that say which domain they serve (`domain = …`).
    pub(super) directories_with_domain: &'a HashSet<String>,
    pub(super) lists: &'a HashSet<String>,
    pub(super) data_sets: &'a HashSet<String>,
    pub(super) action_sets: &'a HashSet<String>,
}

/// Whether an LDAP filter is parenthesized, the least a filter must be.
pub(super) fn is_parenthesized(filter: &str) -> bool {
    filter.starts_with('(') && filter.ends_with(')')
}
