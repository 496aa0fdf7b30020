//! What the plugin sends to the server: the game's requests (join, leave, leave lobby)
//! and the health-check pongs once they are due.

use bevy::prelude::*;
use bevy_renet::RenetClient;

use super::messages::{AtomicClientError, AtomicJoinQueue, AtomicLeaveLobby, AtomicLeaveQueue};
use super::state::ClientSession;
use crate::atomic::AtomicChannel;
use crate::atomic::core::protocol::{AtomicClientMessage, AtomicErrorKind};
use crate::shared::codec;
use crate::shared::player::validate_category;

/// Encodes `message` and queues it for the server on the matchmaking channel.
pub(super) fn send_to_server(
    client: &mut RenetClient,
    channel: &AtomicChannel,
    message: &AtomicClientMessage,
) {
    client.send_message(channel.id, codec::encode(message));
}

/// Sends the game's join, leave and leave-lobby requests (a join written before the
/// server welcomed us waits in the session until it does).
pub(super) fn send_requests(
    mut client: ResMut<RenetClient>,
    channel: Res<AtomicChannel>,
    mut session: ResMut<ClientSession>,
    mut joins: MessageReader<AtomicJoinQueue>,
    mut leaves: MessageReader<AtomicLeaveQueue>,
    mut lobby_leaves: MessageReader<AtomicLeaveLobby>,
    mut errors: MessageWriter<AtomicClientError>,
) {
    for join in joins.read() {
        // checked here as the server would: a name it refuses would cost us a strike
        if let Err(why) = validate_category(&join.category) {
            errors.write(AtomicClientError {
                kind: AtomicErrorKind::InvalidCategory,
                message: why.to_string(),
            });
            continue;
        }
        if session.welcomed {
            let category = join.category.clone();
            send_to_server(
                &mut client,
                &channel,
                &AtomicClientMessage::JoinQueue { category },
            );
        } else {
            // joins as soon as the server welcomes us
            session.pending_join = Some(join.category.clone());
        }
    }
    for _ in leaves.read() {
        if session.welcomed {
            send_to_server(&mut client, &channel, &AtomicClientMessage::LeaveQueue);
        } else {
            session.pending_join = None;
        }
    }
    for _ in lobby_leaves.read() {
        match session.lobby_id {
            Some(lobby_id) if session.welcomed => {
                send_to_server(
                    &mut client,
                    &channel,
                    &AtomicClientMessage::LeaveLobby { lobby_id },
                );
            }
            _ => {
                errors.write(AtomicClientError {
                    kind: AtomicErrorKind::NotAMember,
                    message: "not in a lobby".into(),
                });
            }
        }
    }
}

/// Sends every pending pong whose (fault-injected) delay has passed.
pub(super) fn send_due_pongs(
    mut client: ResMut<RenetClient>,
    channel: Res<AtomicChannel>,
    time: Res<Time<Real>>,
    mut session: ResMut<ClientSession>,
) {
    let now = time.elapsed();
    session.pending_pongs.retain(|&(due, nonce)| {
        let is_due = now >= due;
        if is_due {
            send_to_server(&mut client, &channel, &AtomicClientMessage::Pong { nonce });
        }
        !is_due
    });
}
