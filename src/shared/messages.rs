//! One list of a plugin's message types serves to register them with the app and to record
//! them in the test harness.

use bevy::prelude::*;

/// Something done once for each message type of a plugin: register it, record it, …
pub trait MatchmakingMessageVisitor {
    /// Called once for each message type.
    fn visit<M: Message + Clone>(&mut self);
}

/// Registers every visited message type with an app.
#[cfg_attr(not(any(feature = "client", feature = "negotiated")), allow(dead_code))]
pub(crate) struct AddMessages<'a>(pub &'a mut App);

impl MatchmakingMessageVisitor for AddMessages<'_> {
    fn visit<M: Message + Clone>(&mut self) {
        self.0.add_message::<M>();
    }
}
