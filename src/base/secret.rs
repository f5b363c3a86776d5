//! Secrets (bind and MX passwords): where they come from and a type that never prints them.
//!
//! Configuration names a file or an environment variable, never the secret itself. The value is
//! read when needed and held in [`Secret`], whose `Debug` and `Display` print `***`.

use std::fmt;
use std::path::PathBuf;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// A secret value. It can be read with [`Secret::expose`] and is never formatted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A secret that could not be read. Names the source, never the content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file {0} is empty")]
    EmptyFile(PathBuf),
    #[error("environment variable {0} is not set or not valid UTF-8")]
    Env(String),
}

impl SecretSource {
    /// Reads the secret. A trailing newline in a file is not part of the secret.
    pub fn read(&self) -> Result<Secret, SecretError> {
        match self {
            SecretSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                })?;
                let value = text.strip_suffix('\n').unwrap_or(&text);
                let value = value.strip_suffix('\r').unwrap_or(value);
                if value.is_empty() {
                    return Err(SecretError::EmptyFile(path.clone()));
                }
                Ok(Secret::new(value))
            }
            SecretSource::Env(name) => std::env::var(name)
                .map(Secret::new)
                .map_err(|_| SecretError::Env(name.clone())),
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Env(n) => write!(f, "environment variable {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_never_format() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_secret_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "pw\n").unwrap();
        assert_eq!(SecretSource::File(p.clone()).read().unwrap().expose(), "pw");
        std::fs::write(&p, "").unwrap();
        assert!(matches!(
            SecretSource::File(p).read(),
            Err(SecretError::EmptyFile(_))
        ));
    }
}
