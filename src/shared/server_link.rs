//! The server side of a mode's channel, for the atomic server and the negotiated relay:
//! one [`SystemParam`] that sends to players and reads their messages for the connection
//! gate ([`GateTransport`]), with the inbox of connections that received something.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::RenetServer;
use serde::Serialize;

use crate::shared::channel::MatchmakingChannelId;
use crate::shared::codec;
use crate::shared::connection_config::MatchmakingConnectionConfig;
use crate::shared::gate::{ConnectionsToRead, GateTransport};
use crate::shared::inbox::InboxReader;
use crate::shared::player::PlayerId;

/// The renet server and a mode's channel `C` (with the inbox, when the transport keeps one).
#[derive(SystemParam)]
pub(crate) struct ServerLink<'w, C: MatchmakingChannelId> {
    /// The renet server.
    pub(crate) server: ResMut<'w, RenetServer>,
    /// The mode's channel.
    pub(crate) channel: Res<'w, C>,
    inbox: InboxReader<'w>,
    /// The recorded connection config: a channel it lacks is never handed to renet (which
    /// would panic). The receive and advance sets run only when it carries the channel; the
    /// check in [`send`](Self::send) covers the observers, which no set gates.
    config: Option<Res<'w, MatchmakingConnectionConfig>>,
}

impl<C: MatchmakingChannelId> ServerLink<'_, C> {
    /// Whether renet may be called on the mode's channel: the recorded config carries it,
    /// or no config is recorded.
    fn carried(&self) -> bool {
        self.config
            .as_ref()
            .is_none_or(|c| c.carries(self.channel.channel_id()))
    }

    /// Sends a message on the mode's channel to a player, if it is connected.
    pub(crate) fn send<M: Serialize>(&mut self, to: PlayerId, message: &M) {
        if self.server.is_connected(to) && self.carried() {
            let id = self.channel.channel_id();
            self.server.send_message(to, id, codec::encode(message));
        }
    }
}

impl<C: MatchmakingChannelId> GateTransport for ServerLink<'_, C> {
    fn clients(&self) -> Vec<PlayerId> {
        self.server.clients_id()
    }

    fn to_read(&mut self, now: Duration) -> ConnectionsToRead {
        self.inbox.connections_to_read(now)
    }

    fn read_again(&mut self, client: PlayerId) {
        self.inbox.read_again(client, &self.server);
    }

    fn unreported(&mut self, client: PlayerId) {
        self.inbox.unreported(client);
    }

    fn next_message(&mut self, client: PlayerId) -> Option<Vec<u8>> {
        // only the receive sets read, and they run only when the channel is carried
        let id = self.channel.channel_id();
        self.server.receive_message(client, id).map(Vec::from)
    }
}
