//! Retry with exponential backoff for background loops: a failed run is retried after
//! [`RETRY_INITIAL`], doubling up to [`RETRY_MAX`]; a success forgets the failures.

use std::time::Duration;

/// First retry delay after a failed run; doubles up to [`RETRY_MAX`].
pub const RETRY_INITIAL: Duration = Duration::from_millis(500);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// When a loop retries a failed run: [`RETRY_INITIAL`] after the first failure, doubling up to
/// [`RETRY_MAX`], forgotten after a success. Every background loop that retries (push, pull, the Imperva MX push) uses it.
pub struct Retry {
    delay: Duration,
    at: Option<tokio::time::Instant>,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry::new()
    }
}

impl Retry {
    pub fn new() -> Retry {
        Retry {
            delay: RETRY_INITIAL,
            at: None,
        }
    }

    /// Resolves when a retry is due; never while none is scheduled.
    pub async fn due(&self) {
        match self.at {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    }

    pub fn succeeded(&mut self) {
        *self = Retry::new();
    }

    /// Makes an attempt due at once (a first run), without touching the delay.
    pub fn due_now(&mut self) {
        self.due_in(Duration::ZERO);
    }

    /// Makes an attempt due after `wait` (not a failure: the delay stays as it is).
    pub fn due_in(&mut self, wait: Duration) {
        self.at = Some(tokio::time::Instant::now() + wait);
    }

    /// Schedules the next retry; returns how long until it.
    pub fn failed(&mut self) -> Duration {
        let delay = self.delay;
        self.at = Some(tokio::time::Instant::now() + delay);
        self.delay = (delay * 2).min(RETRY_MAX);
        delay
    }
}
