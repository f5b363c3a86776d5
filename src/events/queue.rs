//! A sink's queue on disk: bounded, durable, in order, one writer thread and one reader
//! thread.
//!
//! Records are appended to numbered segment files (`00000000000000000001.seg`, …) as
//! `length (u32 LE) · CRC-32 (u32 LE) · bytes`, made durable (`fdatasync`) once per batch
//! before the reader may see them. The reader's position is *committed* (a `cursor` file,
//! written aside and renamed) only once what it read has been delivered; segments wholly
//! before it are deleted. So a restart resumes at the first record not known delivered — a
//! record may be delivered twice (the last ones before a crash or a lost connection), never
//! lost once appended: at-least-once.
//!
//! The bound is on the bytes appended and not yet delivered (`max_bytes`): a record that
//! would pass it is refused and counted by the caller, never written; the oldest are never
//! overwritten, so what is queued stays in order and what is lost is the newest, counted.
//! Delivered records stay on disk until their segment is wholly read and a newer one begun,
//! so the directory holds at most one segment more than the bound (segments are an eighth of
//! it, at least 4 KiB, at most [`MAX_SEGMENT_BYTES`]).
//!
//! Opening the queue checks the newest segment record by record and cuts it at the first one
//! a crash left torn (short, or its CRC wrong); older segments were made durable before the
//! next one began. The queue also keeps one number beside the records, the *mark* (the id of
//! the last audit record appended, `super::sink`), written the same way as the cursor.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The largest segment file.
pub const MAX_SEGMENT_BYTES: u64 = 8 << 20;
/// The largest record; longer ones are refused as over the bound.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
const HEADER: u64 = 8;

/// Where the reader is: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// What one append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub accepted: usize,
    /// Records refused because the queue was at its bound.
    pub dropped: usize,
}

#[derive(Debug)]
struct State {
    /// Live segments, oldest first: (number, durable length).
    segments: VecDeque<(u64, u64)>,
    committed: Position,
    closed: bool,
}

impl State {
    fn total(&self) -> u64 {
        self.segments.iter().map(|(_, len)| len).sum()
    }

    /// Bytes after the committed position.
    fn pending(&self) -> u64 {
        let consumed: u64 = self
            .segments
            .iter()
            .filter(|(n, _)| *n < self.committed.segment)
            .map(|(_, len)| len)
            .sum::<u64>()
            + self.committed.offset;
        self.total().saturating_sub(consumed)
    }

    fn end(&self) -> Position {
        self.segments
            .back()
            .map_or(self.committed, |&(segment, offset)| Position {
                segment,
                offset,
            })
    }
}

/// A bounded durable queue in one directory.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    state: Mutex<State>,
    wake: Condvar,
    /// The writer's open segment (only the writer thread uses it).
    file: Mutex<Option<(u64, File)>>,
}

fn segment_name(n: u64) -> String {
    format!("{n:020}.seg")
}

impl Queue {
    /// Opens (or creates, mode 0700) the queue in `dir`, bounded to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Queue> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut numbers: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        let mut segments = VecDeque::new();
        for (i, &n) in numbers.iter().enumerate() {
            let path = dir.join(segment_name(n));
            let len = if i + 1 == numbers.len() {
                repair(&path)?
            } else {
                std::fs::metadata(&path)?.len()
            };
            segments.push_back((n, len));
        }
        let stored = read_number_pair(&dir.join("cursor"));
        let first = segments.front().map_or(1, |&(n, _)| n);
        let mut committed = match stored {
            Some((segment, offset)) if segment >= first => Position { segment, offset },
            _ => Position {
                segment: first,
                offset: 0,
            },
        };
        if segments.is_empty() {
            // Nothing left: start a fresh segment after the one the cursor named.
            let next = if committed.offset > 0 {
                committed.segment + 1
            } else {
                committed.segment.max(1)
            };
            committed = Position {
                segment: next,
                offset: 0,
            };
        } else if let Some(&(_, len)) = segments.iter().find(|(n, _)| *n == committed.segment) {
            committed.offset = committed.offset.min(len);
        } else {
            // The cursor names a segment past the last one: everything was delivered.
            let &(n, len) = segments.back().unwrap_or(&(first, 0));
            committed = Position {
                segment: n,
                offset: len,
            };
        }
        let queue = Queue {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(4096, MAX_SEGMENT_BYTES),
            state: Mutex::new(State {
                segments,
                committed,
                closed: false,
            }),
            wake: Condvar::new(),
            file: Mutex::new(None),
        };
        queue.forget_before(committed.segment)?;
        Ok(queue)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes on disk in live segments.
    pub fn bytes(&self) -> u64 {
        self.state().total()
    }

    /// Bytes appended and not yet committed as delivered.
    pub fn pending_bytes(&self) -> u64 {
        self.state().pending()
    }

    /// Whether `bytes` more would fit.
    pub fn has_room(&self, bytes: u64) -> bool {
        self.state().pending() + bytes <= self.max_bytes
    }

    /// Appends `records` in order, durable before this returns; records past the bound are
    /// refused (counted in the answer). Only one thread may append.
    pub fn append(&self, records: &[Vec<u8>]) -> std::io::Result<Appended> {
        let (mut total, mut last) = {
            let s = self.state();
            (s.pending(), s.segments.back().copied())
        };
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let mut done = Appended::default();
        let mut added: Vec<(u64, u64)> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for record in records {
            let framed = HEADER + record.len() as u64;
            if record.len() > MAX_RECORD_BYTES || total + framed > self.max_bytes {
                done.dropped += 1;
                continue;
            }
            // `len` counts what is buffered for the segment too.
            let roll = last.is_none_or(|(_, len)| len >= self.segment_bytes);
            if roll {
                if let Some((n, len)) = last {
                    self.flush(&mut file, n, &mut buf)?;
                    update(&mut added, n, len);
                }
                let next = last.map_or_else(|| self.state().committed.segment, |(n, _)| n + 1);
                last = Some((next, 0));
                added.push((next, 0));
            }
            buf.extend_from_slice(&(record.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32(record).to_le_bytes());
            buf.extend_from_slice(record);
            total += framed;
            if let Some((_, len)) = &mut last {
                *len += framed;
            }
            done.accepted += 1;
        }
        if let Some((n, len)) = last
            && !buf.is_empty()
        {
            self.flush(&mut file, n, &mut buf)?;
            update(&mut added, n, len);
        }
        drop(file);
        let mut s = self.state();
        for (n, len) in added {
            match s.segments.iter_mut().find(|(m, _)| *m == n) {
                Some(seg) => seg.1 = len,
                None => s.segments.push_back((n, len)),
            }
        }
        drop(s);
        self.wake.notify_all();
        Ok(done)
    }

    /// Writes `buf` to segment `n` and makes it durable.
    fn flush(
        &self,
        file: &mut Option<(u64, File)>,
        n: u64,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        if file.as_ref().is_none_or(|(m, _)| *m != n) {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.dir.join(segment_name(n)))?;
            *file = Some((n, f));
        }
        if let Some((_, f)) = file.as_mut() {
            f.write_all(buf)?;
            f.sync_data()?;
        }
        buf.clear();
        Ok(())
    }

    /// The committed position: where a restarted reader begins.
    pub fn committed(&self) -> Position {
        self.state().committed
    }

    /// Waits until there is something after `from`, the queue is closed, or `timeout`.
    pub fn wait(&self, from: Position, timeout: Duration) {
        let s = self.state();
        if s.closed || s.end() > from {
            return;
        }
        let _ = self
            .wake
            .wait_timeout_while(s, timeout, |s| !s.closed && s.end() <= from);
    }

    /// Wakes a waiting reader for good (the sink stops).
    pub fn close(&self) {
        self.state().closed = true;
        self.wake.notify_all();
    }

    /// Reads durable records after `from`, up to about `max_bytes`, each with the position
    /// after it.
    pub fn read(
        &self,
        from: Position,
        max_bytes: usize,
    ) -> std::io::Result<Vec<(Vec<u8>, Position)>> {
        let segments: Vec<(u64, u64)> = self.state().segments.iter().copied().collect();
        let mut out = Vec::new();
        let mut taken = 0usize;
        let mut at = from;
        for &(n, len) in segments.iter().filter(|(n, _)| *n >= from.segment) {
            if n > at.segment {
                at = Position {
                    segment: n,
                    offset: 0,
                };
            }
            if at.offset >= len {
                continue;
            }
            let mut f = File::open(self.dir.join(segment_name(n)))?;
            f.seek(SeekFrom::Start(at.offset))?;
            let mut r = std::io::BufReader::new(f.take(len - at.offset));
            while let Some(record) = read_record(&mut r)? {
                at.offset += HEADER + record.len() as u64;
                taken += record.len();
                out.push((record, at));
                if taken >= max_bytes {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Records `pos` as delivered: the cursor is written (durably) and segments wholly before
    /// it are deleted.
    pub fn commit(&self, pos: Position) -> std::io::Result<()> {
        let pos = {
            let s = self.state();
            match s.segments.iter().position(|(n, _)| *n == pos.segment) {
                // At the end of a segment with a newer one after it: start of the next.
                Some(i) if i + 1 < s.segments.len() && s.segments[i].1 <= pos.offset => Position {
                    segment: s.segments[i + 1].0,
                    offset: 0,
                },
                _ => pos,
            }
        };
        write_atomically(
            &self.dir.join("cursor"),
            &format!("{} {}\n", pos.segment, pos.offset),
        )?;
        self.state().committed = pos;
        self.forget_before(pos.segment)
    }

    fn forget_before(&self, segment: u64) -> std::io::Result<()> {
        let gone: Vec<u64> = {
            let mut s = self.state();
            let mut gone = Vec::new();
            while s.segments.len() > 1 && s.segments.front().is_some_and(|(n, _)| *n < segment) {
                if let Some((n, _)) = s.segments.pop_front() {
                    gone.push(n);
                }
            }
            gone
        };
        for n in gone {
            match std::fs::remove_file(self.dir.join(segment_name(n))) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The mark kept beside the records (see the module docs), if one was saved.
    pub fn mark(&self) -> Option<i64> {
        std::fs::read_to_string(self.dir.join("mark"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Saves the mark, durably.
    pub fn set_mark(&self, mark: i64) -> std::io::Result<()> {
        write_atomically(&self.dir.join("mark"), &format!("{mark}\n"))
    }
}

fn update(added: &mut Vec<(u64, u64)>, n: u64, len: u64) {
    match added.iter_mut().find(|(m, _)| *m == n) {
        Some(entry) => entry.1 = len,
        None => added.push((n, len)),
    }
}

/// One record at the start of `bytes` and the bytes it took; `None` at the end or at a torn
/// or corrupt record.
fn decode(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    if len == 0 || len > MAX_RECORD_BYTES {
        return None;
    }
    let record = bytes.get(8..8 + len)?;
    (crc32(record) == crc).then_some((record, 8 + len))
}

/// The next record of a durable segment; `None` at its end (or at a record the open check
/// would have cut, which cannot be there).
fn read_record(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; HEADER as usize];
    match r.read_exact(&mut header) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let [a, b, c, d, e, f, g, h] = header;
    let len = u32::from_le_bytes([a, b, c, d]) as usize;
    if len == 0 || len > MAX_RECORD_BYTES {
        return Ok(None);
    }
    let mut record = vec![0u8; len];
    match r.read_exact(&mut record) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    Ok((crc32(&record) == u32::from_le_bytes([e, f, g, h])).then_some(record))
}

/// Cuts the segment at `path` after its last whole record; returns its length.
fn repair(path: &Path) -> std::io::Result<u64> {
    let bytes = std::fs::read(path)?;
    let mut good = 0usize;
    while let Some((_, used)) = decode(&bytes[good..]) {
        good += used;
    }
    if good < bytes.len() {
        tracing::warn!(
            segment = %path.display(),
            kept = good,
            cut = bytes.len() - good,
            "event queue segment ended in a torn record (a crash while writing); cut after the last whole record"
        );
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(good as u64)?;
    }
    Ok(good as u64)
}

fn read_number_pair(path: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (a, b) = text.trim().split_once(' ')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Writes `text` to `path` through a temporary file renamed over it, synced first.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's): enough to find a record a crash tore.
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut c = !0u32;
    for &b in bytes {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn records(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
        range
            .map(|i| format!("event {i:04}").into_bytes())
            .collect()
    }

    fn drain(q: &Queue) -> Vec<String> {
        let mut at = q.committed();
        let mut out = Vec::new();
        loop {
            let batch = q.read(at, 100).unwrap();
            let Some(&(_, last)) = batch.last() else {
                return out;
            };
            out.extend(
                batch
                    .into_iter()
                    .map(|(r, _)| String::from_utf8(r).unwrap()),
            );
            at = last;
        }
    }

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 64 << 10).unwrap();
        assert_eq!(q.append(&records(0..1000)).unwrap().accepted, 1000);
        let all = drain(&q);
        assert_eq!(all.len(), 1000);
        assert_eq!(all[999], "event 0999");
        let segments = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(segments > 2, "{segments} files");
        // Deliver half, reopen: the rest, in order, from where the cursor was.
        let half = q.read(q.committed(), usize::MAX).unwrap()[499].1;
        q.commit(half).unwrap();
        drop(q);
        let q = Queue::open(dir.path(), 64 << 10).unwrap();
        let rest = drain(&q);
        assert_eq!(rest.first().map(String::as_str), Some("event 0500"));
        assert_eq!(rest.len(), 500);
    }

    #[test]
    fn the_bound_refuses_the_newest_and_frees_room_as_records_are_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 8192).unwrap();
        let done = q.append(&records(0..1000)).unwrap();
        assert!(done.dropped > 0 && done.accepted > 0);
        assert_eq!(done.accepted + done.dropped, 1000);
        assert!(q.pending_bytes() <= 8192);
        assert!(q.bytes() <= 8192 + q.segment_bytes);
        let kept = drain(&q);
        assert_eq!(kept.len(), done.accepted);
        assert_eq!(
            kept.last().unwrap(),
            &format!("event {:04}", done.accepted - 1)
        );
        let end = q.read(q.committed(), usize::MAX).unwrap().last().unwrap().1;
        q.commit(end).unwrap();
        assert_eq!(q.pending_bytes(), 0);
        assert!(q.has_room(8192));
        // Delivered room is room again, for as many as before.
        let again = q.append(&records(1000..2000)).unwrap();
        assert_eq!(again.accepted, done.accepted);
    }

    #[test]
    fn a_torn_tail_is_cut_and_what_came_before_survives() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        q.append(&records(0..3)).unwrap();
        drop(q);
        let seg = dir.path().join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(drain(&q), ["event 0000", "event 0001", "event 0002"]);
        q.append(&records(3..4)).unwrap();
        assert_eq!(drain(&q).len(), 4);
    }

    #[test]
    fn the_mark_and_an_empty_queue_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(q.mark(), None);
        q.set_mark(41).unwrap();
        q.append(&records(0..2)).unwrap();
        let end = q.read(q.committed(), usize::MAX).unwrap().last().unwrap().1;
        q.commit(end).unwrap();
        drop(q);
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(q.mark(), Some(41));
        assert!(drain(&q).is_empty());
        q.append(&records(5..6)).unwrap();
        assert_eq!(drain(&q), ["event 0005"]);
    }
}
