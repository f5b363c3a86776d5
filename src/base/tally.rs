//! A bounded tally: how many times each kind of event happened between two flushes, with when
//! the first and the last came — the one mechanism behind every aggregated audit of what
//! anyone on the network can cause (failed authentication, `auth::denials`; the gates'
//! refusals and ended sessions, `front::refusals`).
//!
//! Anyone who can reach a listener can make it refuse, so counting one more refusal must cost
//! almost nothing and hold memory whatever the caller varies: [`Tally::record`] adds one to an
//! in-memory count; the map holds at most `max` keys, and an event whose key is new when it is
//! full is counted under the overflow key the caller names for it (a few buckets, fixed by the
//! caller: the source left out, "more users"). A flush [`Tally::take`]s everything and, if
//! writing fails, [`Tally::restore`]s it, merged with what was counted meanwhile.

use std::collections::HashMap;
use std::hash::Hash;

/// The events of one key: how many, the first and last time (ms since the epoch), and what
/// the last one carried (the last client, say; `()` when nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count<X> {
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub last: X,
}

/// Counts by key, at most `max` keys besides the overflow buckets.
#[derive(Debug)]
pub struct Tally<K, X = ()> {
    max: usize,
    counts: HashMap<K, Count<X>>,
    /// Events counted under an overflow key since the last take.
    overflowed: u64,
}

/// What one [`Tally::take`] took.
#[derive(Debug)]
pub struct Taken<K, X> {
    pub counts: Vec<(K, Count<X>)>,
    /// Events among them that went to an overflow bucket.
    pub overflowed: u64,
}

impl<K, X> Taken<K, X> {
    /// The events taken, all keys together.
    pub fn events(&self) -> u64 {
        self.counts.iter().map(|(_, c)| c.count).sum()
    }
}

impl<K: Hash + Eq, X> Tally<K, X> {
    pub fn new(max: usize) -> Tally<K, X> {
        Tally {
            max,
            counts: HashMap::new(),
            overflowed: 0,
        }
    }

    /// Counts one event of `key` at `at_ms`, carrying `last`. When `key` is new and the tally
    /// holds `max` keys, it is counted under `overflow(key)` instead. Returns whether it was.
    pub fn record(&mut self, key: K, at_ms: i64, last: X, overflow: impl FnOnce(K) -> K) -> bool {
        let full = !self.counts.contains_key(&key) && self.counts.len() >= self.max;
        let key = if full {
            self.overflowed += 1;
            overflow(key)
        } else {
            key
        };
        match self.counts.get_mut(&key) {
            Some(c) => {
                c.count += 1;
                c.last_ms = at_ms;
                c.last = last;
            }
            None => {
                let first = Count {
                    count: 1,
                    first_ms: at_ms,
                    last_ms: at_ms,
                    last,
                };
                self.counts.insert(key, first);
            }
        }
        full
    }

    /// Events counted and not yet taken.
    pub fn pending(&self) -> u64 {
        self.counts.values().map(|c| c.count).sum()
    }

    /// Keys held now (overflow buckets included).
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Events that went to an overflow bucket since the last take.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Everything counted, leaving the tally empty.
    pub fn take(&mut self) -> Taken<K, X> {
        Taken {
            counts: self.counts.drain().collect(),
            overflowed: std::mem::take(&mut self.overflowed),
        }
    }

    /// Puts back what a failed flush took, merged with what was counted since (the later
    /// `last` wins).
    pub fn restore(&mut self, taken: Taken<K, X>) {
        for (key, c) in taken.counts {
            match self.counts.get_mut(&key) {
                Some(now) => {
                    now.count += c.count;
                    now.first_ms = now.first_ms.min(c.first_ms);
                }
                None => {
                    self.counts.insert(key, c);
                }
            }
        }
        self.overflowed += taken.overflowed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_key_and_folds_new_keys_into_the_overflow_once_full() {
        let mut t: Tally<String, u8> = Tally::new(2);
        assert!(!t.record("a".into(), 1, 1, |_| "other".into()));
        assert!(!t.record("a".into(), 5, 2, |_| "other".into()));
        assert!(!t.record("b".into(), 2, 3, |_| "other".into()));
        // Full: new keys go to the bucket, known ones still count under their own.
        assert!(t.record("c".into(), 3, 4, |_| "other".into()));
        assert!(t.record("d".into(), 4, 5, |_| "other".into()));
        assert!(!t.record("a".into(), 6, 6, |_| "other".into()));
        assert_eq!((t.len(), t.pending(), t.overflowed()), (3, 6, 2));
        let taken = t.take();
        assert!(t.is_empty());
        let by_key: HashMap<_, _> = taken.counts.iter().cloned().collect();
        assert_eq!(
            by_key["a"],
            Count {
                count: 3,
                first_ms: 1,
                last_ms: 6,
                last: 6
            }
        );
        assert_eq!(by_key["other"].count, 2);
        assert_eq!(taken.events(), 6);
    }

    #[test]
    fn a_failed_flush_puts_back_what_it_took() {
        let mut t: Tally<&str> = Tally::new(10);
        t.record("a", 10, (), |k| k);
        let taken = t.take();
        t.record("a", 20, (), |k| k);
        t.restore(taken);
        let taken = t.take();
        assert_eq!(taken.counts.len(), 1);
        let (_, c) = &taken.counts[0];
        assert_eq!((c.count, c.first_ms, c.last_ms), (2, 10, 20));
    }
}
