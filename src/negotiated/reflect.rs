//! Reflection of the plain-Rust value types of [`core`](super::core) that the ECS layer's
//! resources and messages hold, so the Bevy inspector can show them. The core stays free
//! of Bevy, so they reflect here as opaque values: shown and replaced whole, compared and
//! cloned (and made by default where they have one).

use bevy::prelude::ReflectDefault;
use bevy::reflect::impl_reflect_opaque;

use super::core::fact::NegotiatedFactId;
use super::core::machine::{NegotiatedRestartReason, NegotiatedRole};
use super::core::protocol::NegotiatedErrorKind;
use super::core::relay_core::NegotiatedRelayLimits;

impl_reflect_opaque!((in bevy_atomic_matchmaking::negotiated::core::fact) NegotiatedFactId(
    Debug, Clone, PartialEq, Hash, Default
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::negotiated::core::machine) NegotiatedRole(
    Debug, Clone, PartialEq, Hash
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::negotiated::core::machine) NegotiatedRestartReason(
    Debug, Clone, PartialEq, Hash
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::negotiated::core::protocol) NegotiatedErrorKind(
    Debug, Clone, PartialEq, Hash
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::negotiated::core::relay_core) NegotiatedRelayLimits(
    Debug, Clone, PartialEq, Default
));
