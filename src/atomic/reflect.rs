//! Reflection of the plain-Rust value types of [`core`](super::core) that the ECS layer's
//! components, resources and messages hold, so the Bevy inspector can show them. The core
//! stays free of Bevy, so they reflect here as opaque values: shown and replaced whole,
//! compared and cloned (and made by default where they have one).

use bevy::prelude::ReflectDefault;
use bevy::reflect::impl_reflect_opaque;

use super::core::commit::{AtomicCommitTimings, AtomicHealthCheck, AtomicMatchStatus};
use super::core::protocol::{AtomicErrorKind, AtomicMatchCancelReason, AtomicMatchedPlayer};
use super::core::stats::DurationWindow;

impl_reflect_opaque!((in bevy_atomic_matchmaking::atomic::core::commit) AtomicCommitTimings(
    Debug, Clone, PartialEq, Default
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::atomic::core::commit) AtomicHealthCheck(
    Debug, Clone, PartialEq
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::atomic::core::commit) AtomicMatchStatus(
    Debug, Clone, PartialEq, Hash
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::atomic::core::protocol) AtomicErrorKind(
    Debug, Clone, PartialEq, Hash
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::atomic::core::protocol) AtomicMatchCancelReason(
    Debug, Clone, PartialEq
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::atomic::core::protocol) AtomicMatchedPlayer(
    Debug, Clone, PartialEq
));
impl_reflect_opaque!((in bevy_atomic_matchmaking::atomic::core::stats) DurationWindow(
    Debug, Clone, Default
));
