//! Secrets (bind and MX passwords): where they come from and a type that never prints them.
//!
//! Configuration names a file or an environment variable, never the secret itself. The value is
//! read when needed and held in [`Secret`], whose `Debug` and `Display` print `***`. A secret
//! file (or the gateway's TLS key, through [`check_private`]) that group or others can read is
//! refused: it was meant for warden alone.

use std::fmt;
use std::path::{Path, PathBuf};

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
    #[error(
        "secret file {} is readable by group or others (mode {mode:04o}); make it readable by \
         warden alone: chmod 600 {}",
        path.display(),
        path.display()
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("environment variable {0} is not set or not valid UTF-8")]
    Env(String),
}

/// Mode bits that let group or others read a file.
pub const READABLE_BY_OTHERS: u32 = 0o044;

/// Refuses a secret file group or others can read (following symlinks: the mode that counts is
/// the target's). Elsewhere than Unix there are no such modes and every file passes.
pub fn check_private(path: &Path) -> Result<(), SecretError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| SecretError::File {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & READABLE_BY_OTHERS != 0 {
            return Err(SecretError::Readable {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl SecretSource {
    /// Reads the secret. A trailing newline in a file is not part of the secret; a file group
    /// or others can read is refused ([`check_private`]).
    pub fn read(&self) -> Result<Secret, SecretError> {
        match self {
            SecretSource::File(path) => {
                check_private(path)?;
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

    fn private(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bind.secret");
        private(&p, "pw\n");
        assert_eq!(SecretSource::File(p.clone()).read().unwrap().expose(), "pw");
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = SecretSource::File(p.clone()).read().unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, SecretError::Readable { .. }), "{text}");
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", p.display())),
                "{text}"
            );
        }
    }

    #[test]
    fn file_secret_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        private(&p, "pw\n");
        assert_eq!(SecretSource::File(p.clone()).read().unwrap().expose(), "pw");
        private(&p, "");
        assert!(matches!(
            SecretSource::File(p).read(),
            Err(SecretError::EmptyFile(_))
        ));
    }
}
