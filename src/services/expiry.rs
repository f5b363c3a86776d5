//! The expiry sweep: every [`SWEEP_INTERVAL`], deactivates members past their expiry and
//! purges long-expired ones ([`crate::operations::lists::expire_members`]) — but only while
//! the wall clock agrees with the monotonic clock. A wall clock that moved more or less than
//! the monotonic one by over [`CLOCK_TOLERANCE`] since the last sweep (an NTP step, a wrong
//! RTC, an operator's `date -s`) skips that sweep's deactivations, logs and counts it, and
//! re-bases: one jump never deactivates every member with an expiry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Ready, Service, Shutdown};
use crate::base::time::now_ms;
use crate::operations::lists::expire_members;
use crate::runtime::Warden;
use crate::store::changes::{as_leader_blocking, fencing_token};

/// How often the sweep looks for expired members: members leave within this of their time.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How far the wall clock may drift from the monotonic clock between two sweeps before the
/// sweep is skipped. NTP slews by at most 0.5 ms/s, so honest clocks stay far inside it.
pub const CLOCK_TOLERANCE: Duration = Duration::from_secs(5);

/// Both clocks read at one sweep.
#[derive(Debug, Clone, Copy)]
pub struct ClockReading {
    /// Wall clock, Unix milliseconds.
    pub wall_ms: i64,
    pub mono: Instant,
}

impl ClockReading {
    pub fn now() -> ClockReading {
        ClockReading {
            wall_ms: now_ms(),
            mono: Instant::now(),
        }
    }
}

/// How far (milliseconds, signed: positive when the wall clock ran ahead) the wall clock moved
/// beyond the monotonic one between `before` and `after`, when that is more than `tolerance`;
/// `None` when they agree.
pub fn clock_disagreement(
    before: ClockReading,
    after: ClockReading,
    tolerance: Duration,
) -> Option<i64> {
    let wall = after.wall_ms.saturating_sub(before.wall_ms);
    let mono = i64::try_from(
        after
            .mono
            .saturating_duration_since(before.mono)
            .as_millis(),
    )
    .unwrap_or(i64::MAX);
    let skew = wall.saturating_sub(mono);
    let tolerance = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
    (skew.unsigned_abs() > tolerance.unsigned_abs()).then_some(skew)
}

pub fn service(warden: Arc<Warden>) -> Service {
    Service::new("expiry", move |shutdown, ready| {
        sweep(warden, shutdown, ready)
    })
}

async fn sweep(warden: Arc<Warden>, mut shutdown: Shutdown, ready: Ready) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = ClockReading::now();
    loop {
        tokio::select! {
            () = shutdown.requested() => return,
            _ = tick.tick() => {}
        }
        let reading = ClockReading::now();
        let skew = clock_disagreement(last, reading, CLOCK_TOLERANCE);
        // Re-base either way: a jump is skipped once, then the new time is the time.
        last = reading;
        if let Some(skew_ms) = skew {
            warden
                .metrics()
                .get::<crate::operations::ExpiryMetrics>()
                .clock_skipped();
            tracing::warn!(
                skew_ms,
                "the wall clock moved {} than the monotonic clock since the last expiry sweep: \
                 this sweep deactivates nothing",
                if skew_ms > 0 { "further" } else { "less" }
            );
        }
        let w = Arc::clone(&warden);
        let now = reading.wall_ms.div_euclid(1000);
        let deactivate = skew.is_none();
        // The blocking thread does not carry this task's fence: hand the token over.
        let fence = fencing_token();
        let sweep = move || as_leader_blocking(fence, || expire_members(&w, now, deactivate));
        match tokio::task::spawn_blocking(sweep).await {
            Ok(Ok(_)) => ready.set(),
            Ok(Err(e)) => tracing::error!(error = %e, "expiry sweep failed; retrying"),
            Err(e) => tracing::error!(error = %e, "expiry sweep task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(wall_ms: i64, mono: Instant) -> ClockReading {
        ClockReading { wall_ms, mono }
    }

    #[test]
    fn clocks_that_move_together_agree_and_a_jump_either_way_does_not() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let tol = CLOCK_TOLERANCE;
        let before = at(1_000_000, t0);
        // One second on both, or a slewed few milliseconds off: agree.
        assert_eq!(clock_disagreement(before, at(1_001_000, t1), tol), None);
        assert_eq!(clock_disagreement(before, at(1_001_250, t1), tol), None);
        // Exactly the tolerance off still agrees; a millisecond more does not.
        assert_eq!(clock_disagreement(before, at(1_006_000, t1), tol), None);
        assert_eq!(
            clock_disagreement(before, at(1_006_001, t1), tol),
            Some(5_001)
        );
        // Sixty days forward, or an hour back.
        let forward = 60 * 86_400 * 1000;
        assert_eq!(
            clock_disagreement(before, at(1_001_000 + forward, t1), tol),
            Some(forward)
        );
        assert_eq!(
            clock_disagreement(before, at(1_001_000 - 3_600_000, t1), tol),
            Some(-3_600_000)
        );
        // A sweep delayed for a minute (a stalled host) moves both clocks: agree.
        let late = t0 + Duration::from_secs(60);
        assert_eq!(clock_disagreement(before, at(1_060_000, late), tol), None);
    }
}
