//! TOML → raw sections, one value at a time: each section and each array element is
//! deserialized on its own, so one bad entry does not hide the next, and an unknown key is
//! reported and dropped so that a typo does not hide a bad value beside it.

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::check::Ctx;
use super::{ConfigError, KeyPath, Segment};

/// How many unknown keys one table may report before we stop retrying it.
const MAX_UNKNOWN_KEYS: usize = 32;

/// Deserializes one value, recording its errors (with the inner key path) on failure.
///
/// serde stops at the first problem in a struct. An unknown key is the common one and says
/// nothing about the rest of the table, so it is recorded, removed, and the value deserialized
/// again: a typo does not hide a bad value beside it.
pub(super) fn de_value<T: DeserializeOwned>(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    mut value: Spanned<DeValue<'_>>,
) -> Option<T> {
    for _ in 0..MAX_UNKNOWN_KEYS {
        let attempt = value.clone();
        let e = match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(attempt)) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let mut inner_path: Vec<Segment> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => {
                    Some(Segment::Key(variant.clone()))
                }
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let message = e.inner().message().trim().to_string();
        let unknown = unknown_key(&message).map(str::to_string);
        // serde_path_to_error's path already ends with the unknown key; the table holding it
        // is one level up.
        if let (Some(key), Some(Segment::Key(last))) = (&unknown, inner_path.last())
            && key == last
        {
            inner_path.pop();
        }
        let mut full = path.clone();
        for seg in &inner_path {
            full = match seg {
                Segment::Key(k) => full.key(k),
                Segment::Index(i) => full.index(*i),
            };
        }
        let inner = e.into_inner();
        if let Some(key) = &unknown {
            full = full.key(key);
        }
        let line = inner.span().map(|s| ctx.line_at(s.start));
        ctx.errors.push(ConfigError {
            path: full.clone(),
            line: line.or_else(|| ctx.line_of(&full)),
            message,
        });
        match unknown {
            Some(key) if remove_key(value.get_mut(), &inner_path, &key) => continue,
            _ => return None,
        }
    }
    None
}

/// The key named by serde's "unknown field `x`, expected …" message.
fn unknown_key(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(key, _)| key)
}

/// Removes `key` from the table at `path` inside `value`; false if there is no such key.
fn remove_key(value: &mut DeValue<'_>, path: &[Segment], key: &str) -> bool {
    let mut current = value;
    for seg in path {
        let next = match (seg, current) {
            (Segment::Key(k), DeValue::Table(t)) => t.get_mut(k.as_str()),
            (Segment::Index(i), DeValue::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => current = v.get_mut(),
            None => return false,
        }
    }
    match current {
        DeValue::Table(t) => t.remove(key).is_some(),
        _ => false,
    }
}

/// Deserializes each element of an array section on its own.
pub(super) fn de_array<T: DeserializeOwned>(
    ctx: &mut Ctx<'_>,
    section: &str,
    value: Spanned<DeValue<'_>>,
) -> Vec<(usize, T)> {
    let path = KeyPath::root().key(section);
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| de_value(ctx, &path.index(i), item).map(|v| (i, v)))
            .collect(),
        other => {
            ctx.err(
                path,
                format!(
                    "expected an array of tables ([[{section}]]), found a {}",
                    other.type_str()
                ),
            );
            Vec::new()
        }
    }
}
