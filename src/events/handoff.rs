//! The handoff between the paths that never wait (a decision, a gate, a push run) and the
//! threads that write: a bounded channel its writer polls on a tick instead of sleeping in.
//!
//! A receiver parked in `recv` makes the next offer wake it — a futex call on the offering
//! thread, microseconds on the decision path for every recorded decision that finds the writer
//! idle. Polled, an offer is a lock-free push that finds no one to wake; the writer takes what
//! waits every [`TICK`] (at once again after a full batch), so events wait at most that long.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

/// How long an idle writer sleeps before it looks at its handoff again.
pub const TICK: Duration = Duration::from_millis(20);

/// What one look at a handoff took.
pub struct Taken<T> {
    pub items: Vec<T>,
    /// Every sender is gone: nothing more will come.
    pub closed: bool,
}

impl<T> Taken<T> {
    /// Whether the writer should sleep a [`TICK`] before looking again: the batch was not
    /// full, so the handoff is (or was just now) empty.
    pub fn caught_up(&self, max: usize) -> bool {
        self.items.len() < max
    }
}

/// Up to `max` items waiting in `rx`, without waiting.
pub fn take<T>(rx: &Receiver<T>, max: usize) -> Taken<T> {
    let mut items = Vec::new();
    while items.len() < max {
        match rx.try_recv() {
            Ok(item) => items.push(item),
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => {
                return Taken {
                    items,
                    closed: true,
                };
            }
        }
    }
    Taken {
        items,
        closed: false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn takes_what_waits_up_to_a_batch_and_sees_the_senders_go() {
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        for i in 0..5 {
            tx.try_send(i).unwrap();
        }
        let first = take(&rx, 3);
        assert_eq!(first.items, [0, 1, 2]);
        assert!(!first.closed && !first.caught_up(3));
        drop(tx);
        let rest = take(&rx, 3);
        assert_eq!(rest.items, [3, 4]);
        assert!(rest.closed && rest.caught_up(3));
    }
}
