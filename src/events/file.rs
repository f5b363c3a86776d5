//! A file sink's delivery: one event a line (OCSF JSON lines, or CEF lines), appended and
//! synced per batch, the file (mode 0600) rotated once the next batch would take it past its
//! size — `events.jsonl` becomes `events.jsonl.1`, the older ones move up, and the one past
//! `keep_files` is deleted.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sink::Delivery;

pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    open: Option<(File, u64)>,
}

impl RotatingFile {
    pub fn new(path: PathBuf, max_bytes: u64, keep: usize) -> RotatingFile {
        RotatingFile {
            path,
            max_bytes,
            keep: keep.max(1),
            open: None,
        }
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.open = None;
        let _ = std::fs::remove_file(self.numbered(self.keep));
        for n in (1..self.keep).rev() {
            rename_if_there(&self.numbered(n), &self.numbered(n + 1))?;
        }
        rename_if_there(&self.path, &self.numbered(1))
    }
}

fn rename_if_there(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Delivery for RotatingFile {
    fn deliver(&mut self, records: &[&[u8]]) -> std::io::Result<()> {
        let batch: u64 = records.iter().map(|r| r.len() as u64 + 1).sum();
        if self
            .open
            .as_ref()
            .is_some_and(|(_, size)| *size > 0 && size + batch > self.max_bytes)
        {
            self.rotate()?;
        }
        if self.open.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
            let size = f.metadata()?.len();
            self.open = Some((f, size));
            if size > 0 && size + batch > self.max_bytes {
                self.rotate()?;
                return self.deliver(records);
            }
        }
        let Some((f, size)) = &mut self.open else {
            return Err(std::io::Error::other("event file not open"));
        };
        let mut bytes = Vec::with_capacity(usize::try_from(batch).unwrap_or(0));
        for r in records {
            bytes.extend_from_slice(r);
            bytes.push(b'\n');
        }
        let written = f.write_all(&bytes).and_then(|()| f.sync_data());
        if written.is_err() {
            self.open = None;
        } else {
            *size += batch;
        }
        written
    }

    fn healthy(&mut self) -> bool {
        true
    }

    fn disconnect(&mut self, _graceful: bool) {
        self.open = None;
    }

    fn confirm_after(&self) -> Duration {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rotates_past_the_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut f = RotatingFile::new(path.clone(), 10, 2);
        for line in ["aaaa", "bbbb", "cccc", "dddd", "eeee", "ffff", "gggg"] {
            f.deliver(&[line.as_bytes()]).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "gggg\n");
        assert_eq!(read(&f.numbered(1)), "eeee\nffff\n");
        assert_eq!(read(&f.numbered(2)), "cccc\ndddd\n");
        assert!(!f.numbered(3).exists());
    }
}
