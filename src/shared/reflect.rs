//! Reflection of the shared plain-Rust value types that ECS resources hold, so the Bevy
//! inspector can show them: [`gate`](super::gate) stays free of Bevy, so its settings
//! types reflect here as opaque values (shown and replaced whole, compared and cloned).

use bevy::prelude::ReflectDefault;
use bevy::reflect::impl_reflect_opaque;

use super::gate::{MatchmakingGatePolicy, MatchmakingRateLimit};

impl_reflect_opaque!((in bevy_atomic_matchmaking::shared::gate) MatchmakingGatePolicy(
    Debug, Clone, PartialEq, Default
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::shared::gate) MatchmakingRateLimit(
    Debug, Clone, PartialEq, Default
));
