//! Which connections may have messages waiting: [`MatchmakingInbox`], so that a server
//! reads those connections and not every connection every frame.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::renet::{ClientId, ClientNotFound, RenetClient, RenetServer};

use super::gate::ConnectionsToRead;
use super::player::PlayerId;

/// The first byte of renet 2's acknowledgement-only packet (its packet type).
pub(crate) const RENET_ACK_PACKET: u8 = 4;

/// The connections that received a packet carrying messages since the server last read
/// them.
///
/// Without this resource the atomic server and the negotiated relay ask every connection
/// for messages every frame. renet has no list of the connections with messages waiting,
/// and asking one costs about half a microsecond, so 120,000 local connections cost 57 ms a
/// frame. With it they read only the connections listed here, in id order.
///
/// The crate's quiet server transport
/// ([`MatchmakingQuietServerPlugin`](crate::transport::MatchmakingQuietServerPlugin)) adds
/// it and reports every packet it gives renet, and so does the test harness's local link.
/// renet_netcode's transport cannot report, so a server on it keeps reading every
/// connection.
///
/// # Contract, and the sweep
///
/// While the resource exists, **every** packet the app gives its [`RenetServer`] must be
/// reported with [`packet_arrived`](Self::packet_arrived). A listen server that also drives
/// a local client of its own (renet's `process_local_client`) uses
/// [`matchmaking_process_local_client`] instead, which reports them. As a safety net, every
/// connection is read anyway once per [`sweep_interval`](Self::sweep_interval) (1 s by
/// default): a message that came by a path that does not report waits at most that long,
/// and the first one found logs a warning naming the connection. A sweep costs about
/// 0.8 µs per connection (under a millisecond for the 1,024 clients a netcode server takes
/// at most; the `frame` benchmark turns it off for its 120,000 local connections and times
/// it apart).
#[derive(Resource, Reflect, Debug)]
#[reflect(Resource, Debug, Default)]
pub struct MatchmakingInbox {
    /// Connections to read, in arrival order, possibly repeated.
    waiting: Vec<ClientId>,
    /// How often every connection is read anyway (`None`: never, for an app sure that
    /// every packet is reported and with so many connections that a sweep costs).
    pub sweep_interval: Option<Duration>,
    /// When the last sweep ran.
    last_sweep: Option<Duration>,
    /// Whether a sweep found an unreported message (warned once).
    unreported_seen: bool,
}

impl Default for MatchmakingInbox {
    fn default() -> Self {
        Self {
            waiting: Vec::new(),
            sweep_interval: Some(Duration::from_secs(1)),
            last_sweep: None,
            unreported_seen: false,
        }
    }
}

impl MatchmakingInbox {
    /// A packet from `client` reached the server: its connection is read next time unless
    /// the packet carries only acknowledgements (which hold no messages).
    pub fn packet_arrived(&mut self, client: ClientId, payload: &[u8]) {
        if payload.first() != Some(&RENET_ACK_PACKET) {
            self.mark(client);
        }
    }

    /// Reads `client`'s connection next time whatever arrived.
    pub fn mark(&mut self, client: ClientId) {
        if self.waiting.last() != Some(&client) {
            self.waiting.push(client);
        }
    }

    /// Whether no connection is waiting to be read.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Moves `other`'s connections into this inbox.
    #[cfg(feature = "transport")]
    pub(crate) fn append(&mut self, other: &mut MatchmakingInbox) {
        self.waiting.append(&mut other.waiting);
    }

    /// What a server reads at app time `now`: the connections reported since the last
    /// call, or every connection when there is no inbox or a sweep is due.
    pub(crate) fn to_read(inbox: Option<&mut Self>, now: Duration) -> ConnectionsToRead {
        let Some(inbox) = inbox else {
            return ConnectionsToRead::Every { reported: None };
        };
        let reported = inbox.take();
        let due = inbox.sweep_interval.is_some_and(|interval| {
            inbox
                .last_sweep
                .is_none_or(|last| now.saturating_sub(last) >= interval)
        });
        if !due {
            return ConnectionsToRead::Reported(reported);
        }
        inbox.last_sweep = Some(now);
        ConnectionsToRead::Every {
            reported: Some(reported),
        }
    }

    /// A sweep found a message from `client` that no report announced: the warning to log,
    /// the first time.
    pub(crate) fn unreported(&mut self, client: ClientId) -> Option<String> {
        if std::mem::replace(&mut self.unreported_seen, true) {
            return None;
        }
        Some(format!(
            "a message from connection {client} reached the RenetServer without being reported \
             to the MatchmakingInbox, so it was read late (by the sweep); give packets to renet \
             through a reporting transport or matchmaking_process_local_client"
        ))
    }

    /// Whether a sweep has found a message no report announced.
    pub fn unreported_seen(&self) -> bool {
        self.unreported_seen
    }

    /// Takes the connections to read, each once, in id order.
    pub fn take(&mut self) -> Vec<PlayerId> {
        let mut clients = std::mem::take(&mut self.waiting);
        clients.sort_unstable();
        clients.dedup();
        clients
    }
}

/// The app's inbox, if it has one, as the atomic server's and the relay's receive
/// systems use it.
#[derive(SystemParam)]
pub(crate) struct InboxReader<'w> {
    inbox: Option<ResMut<'w, MatchmakingInbox>>,
}

impl InboxReader<'_> {
    /// What to read at app time `now` (see [`MatchmakingInbox::to_read`]).
    pub(crate) fn connections_to_read(&mut self, now: Duration) -> ConnectionsToRead {
        MatchmakingInbox::to_read(self.inbox.as_deref_mut(), now)
    }

    /// `client`'s messages were left unread: read it again next time if `server` still
    /// has the connection.
    pub(crate) fn read_again(&mut self, client: ClientId, server: &RenetServer) {
        if let Some(inbox) = self.inbox.as_mut()
            && server.is_connected(client)
        {
            inbox.mark(client);
        }
    }

    /// A sweep found a message from `client` no report announced: warns, once.
    pub(crate) fn unreported(&mut self, client: ClientId) {
        if let Some(warning) = self.inbox.as_mut().and_then(|i| i.unreported(client)) {
            warn!("matchmaking: {warning}");
        }
    }
}

/// renet's `process_local_client` (moves a local client's packets both ways), reporting
/// the packets that reach the server to `inbox` when there is one.
pub fn matchmaking_process_local_client(
    server: &mut RenetServer,
    inbox: Option<&mut MatchmakingInbox>,
    client_id: ClientId,
    client: &mut RenetClient,
) -> Result<(), ClientNotFound> {
    for packet in server.get_packets_to_send(client_id)? {
        client.process_packet(&packet);
    }
    let mut inbox = inbox;
    for packet in client.get_packets_to_send() {
        server.process_packet_from(&packet, client_id)?;
        if let Some(inbox) = inbox.as_deref_mut() {
            inbox.packet_arrived(client_id, &packet);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bevy_renet::renet::{ConnectionConfig, DefaultChannel};

    #[test]
    fn acknowledgements_alone_are_not_reported() {
        let mut inbox = MatchmakingInbox::default();
        inbox.packet_arrived(7, &[RENET_ACK_PACKET, 1, 2]);
        assert!(inbox.is_empty());
        inbox.packet_arrived(7, &[0, 1, 2]);
        inbox.packet_arrived(7, &[0, 3]);
        inbox.packet_arrived(3, &[1]);
        inbox.packet_arrived(7, &[2]);
        assert_eq!(inbox.take(), vec![3, 7]);
        assert!(inbox.is_empty());
    }

    #[test]
    fn every_connection_is_read_once_per_sweep_interval() {
        let second = Duration::from_secs(1);
        let mut inbox = MatchmakingInbox::default();
        let reads = |inbox: &mut MatchmakingInbox, ms: u64| {
            MatchmakingInbox::to_read(Some(inbox), Duration::from_millis(ms))
        };
        let every = |reported: Vec<u64>| ConnectionsToRead::Every {
            reported: Some(reported),
        };
        assert_eq!(reads(&mut inbox, 0), every(vec![]), "the first read sweeps");
        inbox.mark(4);
        assert_eq!(reads(&mut inbox, 10), ConnectionsToRead::Reported(vec![4]));
        assert_eq!(reads(&mut inbox, 999), ConnectionsToRead::Reported(vec![]));
        inbox.mark(5);
        assert_eq!(reads(&mut inbox, 1_000), every(vec![5]));
        inbox.sweep_interval = None;
        assert_eq!(
            reads(&mut inbox, 5_000),
            ConnectionsToRead::Reported(vec![])
        );
        assert_eq!(
            MatchmakingInbox::to_read(None, second),
            ConnectionsToRead::Every { reported: None },
            "no inbox: every connection, every time"
        );
        assert!(
            inbox
                .unreported(9)
                .is_some_and(|w| w.contains("connection 9"))
        );
        assert_eq!(inbox.unreported(9), None, "warned once");
        assert!(inbox.unreported_seen());
    }

    #[test]
    fn a_local_client_reports_the_packets_that_carry_its_messages() {
        let mut server = RenetServer::new(ConnectionConfig::default());
        let mut client = server.new_local_client(9);
        let mut inbox = MatchmakingInbox::default();
        matchmaking_process_local_client(&mut server, Some(&mut inbox), 9, &mut client).unwrap();
        assert!(inbox.is_empty(), "nothing was sent yet");
        client.send_message(DefaultChannel::ReliableOrdered, vec![1, 2, 3]);
        matchmaking_process_local_client(&mut server, Some(&mut inbox), 9, &mut client).unwrap();
        assert_eq!(inbox.take(), vec![9]);
        let received = server.receive_message(9, DefaultChannel::ReliableOrdered);
        assert_eq!(received.as_deref(), Some(&[1u8, 2, 3][..]));
        // the server acknowledges; the client's ack of that ack is not a message
        for _ in 0..3 {
            server.update(std::time::Duration::from_millis(10));
            client.update(std::time::Duration::from_millis(10));
            matchmaking_process_local_client(&mut server, Some(&mut inbox), 9, &mut client)
                .unwrap();
        }
        assert!(inbox.is_empty());
    }
}
