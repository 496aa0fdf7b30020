//! Draining the relay, as the atomic server drains: the app writes [`NegotiatedRelayDrain`];
//! from then on the relay stores no new request or bid (they are refused with
//! `RelayClosing`), tells every welcomed client once ([`NegotiatedRelayMessage::RelayClosing`]),
//! and keeps storing the accepts, rejects and cancels of the negotiations under way until
//! the timeout or until every client left. Then it writes [`NegotiatedRelayDrainFinished`]
//! and the app may exit.

use std::collections::HashSet;
use std::time::Duration;

use bevy::prelude::*;

use crate::negotiated::core::fact::{NegotiatedFact, NegotiatedSignedFact};
use crate::negotiated::core::protocol::{NegotiatedErrorKind, NegotiatedRelayMessage};
use crate::shared::player::PlayerId;

use super::{NegotiatedRelayLink, NegotiatedRelayState};

/// Starts draining the relay (the `negotiated` example writes it on SIGTERM). A second
/// drain changes nothing.
#[derive(Message, Reflect, Debug, Clone, Copy, PartialEq, Eq)]
#[reflect(Debug, Clone, PartialEq)]
pub struct NegotiatedRelayDrain {
    /// How long the negotiations under way may go on (their accepts, rejects and cancels
    /// are still stored).
    pub timeout: Duration,
}

/// The drain is over: every client was told, and the timeout passed or every client left.
/// Written once.
#[derive(Message, Reflect, Debug, Clone, Copy, PartialEq, Eq)]
#[reflect(Debug, Clone, PartialEq)]
pub struct NegotiatedRelayDrainFinished {
    /// Clients told that the relay is closing.
    pub clients_told: u64,
    /// Requests and bids refused because the relay was closing.
    pub posts_refused: u64,
}

/// A drain under way.
#[derive(Debug, Clone, Default)]
pub(super) struct RelayDrain {
    deadline: Duration,
    told: HashSet<PlayerId>,
    told_total: u64,
    pub(super) posts_refused: u64,
    finished: bool,
}

/// Starts the drain at the first [`NegotiatedRelayDrain`].
pub(super) fn start_drain(
    time: Res<Time<Real>>,
    mut drains: MessageReader<NegotiatedRelayDrain>,
    mut state: ResMut<NegotiatedRelayState>,
) {
    for drain in drains.read() {
        if state.drain.is_none() {
            info!(
                "negotiated relay: draining: {} facts stored (timeout {:?})",
                state.store().len(),
                drain.timeout
            );
            state.drain = Some(RelayDrain {
                deadline: time.elapsed().saturating_add(drain.timeout),
                ..default()
            });
        }
    }
}

/// Tells every welcomed client not yet told (clients that connect during the drain too),
/// and finishes the drain at its deadline or once no client is left.
pub(super) fn advance_drain(
    time: Res<Time<Real>>,
    mut state: ResMut<NegotiatedRelayState>,
    mut link: NegotiatedRelayLink,
    mut finished: MessageWriter<NegotiatedRelayDrainFinished>,
) {
    let state = &mut *state;
    let Some(drain) = state.drain.as_mut() else {
        return;
    };
    if drain.finished {
        return;
    }
    let mut clients = link.server.clients_id();
    // sorted, so forgetting the clients that left costs n log n, not n² (up to 1,024)
    clients.sort_unstable();
    drain.told.retain(|c| clients.binary_search(c).is_ok());
    for client in clients.iter().copied() {
        if state.gate.is_welcomed(client) && drain.told.insert(client) {
            drain.told_total += 1;
            let closing = NegotiatedRelayMessage::RelayClosing {
                retry_elsewhere: true,
            };
            link.send(client, &closing);
        }
    }
    if time.elapsed() >= drain.deadline || clients.is_empty() {
        drain.finished = true;
        info!(
            "negotiated relay: drained ({} clients told, {} posts refused)",
            drain.told_total, drain.posts_refused
        );
        finished.write(NegotiatedRelayDrainFinished {
            clients_told: drain.told_total,
            posts_refused: drain.posts_refused,
        });
    }
}

/// While draining, a new request or bid is refused (the verdict the poster gets); accepts,
/// rejects and cancels still go to the store.
pub(super) fn refuse_while_draining(
    state: &mut NegotiatedRelayState,
    author: PlayerId,
    fact: &NegotiatedFact,
) -> Option<NegotiatedRelayMessage> {
    let drain = state.drain.as_mut()?;
    if !matches!(fact, NegotiatedFact::Request(_) | NegotiatedFact::Bid(_)) {
        return None;
    }
    drain.posts_refused += 1;
    Some(NegotiatedRelayMessage::Refused {
        fact: NegotiatedSignedFact::new(author, fact.clone()).id(),
        kind: NegotiatedErrorKind::RelayClosing,
        message: "the relay is closing: no new requests or bids; connect to another relay".into(),
    })
}
