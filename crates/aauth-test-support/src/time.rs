//! The fixtures' fixed time.

use std::sync::Arc;

use aauth_keys::time::{FixedClock, UnixTime};

/// The instant every fixture treats as now (2027-01-15), far from any edge.
pub const NOW: UnixTime = UnixTime(1_800_000_000);

/// A clock stopped at [`NOW`], shared; move it with [`FixedClock::set`].
#[must_use]
pub fn fixed_clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(NOW))
}
