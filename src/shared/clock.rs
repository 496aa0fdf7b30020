//! Wall-clock time, for netcode and for the negotiated relay's epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The Unix time now (zero if the system clock is before 1970).
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
