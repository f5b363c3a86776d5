//! The expiry sweep's metrics (`lists::expire_members`, run by `services::expiry`): sweeps
//! that deactivated nothing because the clocks disagreed, and sweeps held for a list.

use crate::metrics::{Collect, Counter, Desc, Exposition};

static CLOCK_SKIPS: Desc = Desc::counter(
    "warden_expiry_clock_skips_total",
    "Expiry sweeps that deactivated nothing because the wall clock and the monotonic clock \
     disagreed (a clock jump).",
);
static HOLDS: Desc = Desc::counter(
    "warden_expiry_holds_total",
    "Expiry sweeps held because they would deactivate too large a share of a list.",
);

pub struct ExpiryMetrics {
    clock_skips: Counter,
    holds: Counter,
}

impl Default for ExpiryMetrics {
    fn default() -> ExpiryMetrics {
        ExpiryMetrics {
            clock_skips: Counter::new(&CLOCK_SKIPS),
            holds: Counter::new(&HOLDS),
        }
    }
}

impl Collect for ExpiryMetrics {
    fn collect(&self, out: &mut Exposition<'_>) {
        self.clock_skips.collect(out);
        self.holds.collect(out);
    }
}

impl ExpiryMetrics {
    /// An expiry sweep skipped its deactivations: the clocks disagreed.
    pub fn clock_skipped(&self) {
        self.clock_skips.inc();
    }

    /// An expiry sweep was held for a list (counted when a hold begins or changes).
    pub fn held(&self) {
        self.holds.inc();
    }
}
