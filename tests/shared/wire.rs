//! One direction of a faulty link as the fault runs of both modes state it, included by
//! both test binaries (`#[path]`).

use std::time::Duration;

use bevy_atomic_matchmaking::testing::local_link::DirectionFaults;

/// One direction of a link as a test case states it (percentages and milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    pub loss: u8,
    pub delay: u8,
    pub jitter: u8,
    pub dup: u8,
    pub reorder: u8,
}

impl Wire {
    /// A perfect wire.
    pub const CLEAN: Wire = Wire {
        loss: 0,
        delay: 0,
        jitter: 0,
        dup: 0,
        reorder: 0,
    };

    /// The harness's faults for this wire.
    pub fn faults(self) -> DirectionFaults {
        DirectionFaults {
            loss: f64::from(self.loss) / 100.0,
            delay: Duration::from_millis(self.delay.into()),
            jitter: Duration::from_millis(self.jitter.into()),
            duplicate: f64::from(self.dup) / 100.0,
            reorder: f64::from(self.reorder) / 100.0,
            ..DirectionFaults::default()
        }
    }
}
