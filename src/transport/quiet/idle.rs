//! What a quiet transport sends when no message flows: the policy and one peer's state.

use std::time::Duration;

use bevy::prelude::Resource;

use renetcode::NETCODE_MAX_PAYLOAD_BYTES;

use super::bundle;
use crate::shared::inbox::RENET_ACK_PACKET;

/// How quiet a connection is when no message flows.
///
/// As a resource of the app, it is the policy the quiet helpers of [`crate::transport`] use.
///
/// renet acknowledges every packet, acknowledgements included, on every update; netcode
/// sends a keep-alive whenever nothing went out for 250 ms. A quiet transport sends an
/// acknowledgement at once after a packet carrying messages arrived (so reliable messages
/// are acknowledged as fast as before and never resent for want of one), and otherwise
/// one packet per [`idle_interval`](Self::idle_interval) to each peer: an ack-only packet
/// if renet has one, else netcode's keep-alive.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchmakingAckPolicy {
    /// Time between two idle packets to one peer. Default 1 s: a connection stays open
    /// as long as a packet arrives within the token's timeout (15 s by default), and
    /// acknowledgement ranges are cumulative, so a damped packet loses nothing. Zero
    /// sends every ack-only packet renet makes and every keep-alive netcode makes
    /// (renet_netcode's behaviour).
    pub idle_interval: Duration,
}

impl Default for MatchmakingAckPolicy {
    fn default() -> Self {
        Self {
            idle_interval: Duration::from_secs(1),
        }
    }
}

/// Packet counters of a quiet transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchmakingTransportStats {
    /// UDP datagrams received.
    pub packets_received: u64,
    /// UDP datagrams sent (payloads, keep-alives, connection packets).
    pub packets_sent: u64,
    /// Ack-only packets renet made that were not sent.
    pub acks_damped: u64,
    /// Keep-alives netcode made that were not sent (something else went out instead).
    pub keep_alives_damped: u64,
    /// Ack-only packets sent inside the datagram of a packet carrying messages, instead of
    /// in one of their own (the peer is a quiet transport too).
    pub acks_bundled: u64,
}

/// One peer as a quiet transport sees it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct IdleLink {
    /// A packet carrying messages arrived since the last ack-only packet went out.
    owes_ack: bool,
    /// When the next idle packet is due (none yet: at once).
    next_idle: Option<Duration>,
    /// The peer sent a datagram with a quiet transport's trailer: it reads them, so acks
    /// may ride along with messages to it.
    quiet_peer: bool,
}

impl IdleLink {
    /// A payload arrived from the peer.
    pub(super) fn received(&mut self, payload: &[u8]) {
        if payload.first() != Some(&RENET_ACK_PACKET) {
            self.owes_ack = true;
        }
    }

    /// Whether the peer reads a quiet transport's trailers.
    pub(super) fn is_quiet_peer(&self) -> bool {
        self.quiet_peer
    }

    /// The peer showed that it reads a quiet transport's trailers.
    pub(super) fn heard_quiet_peer(&mut self) {
        self.quiet_peer = true;
    }

    /// What goes out to the peer this frame: renet's `packets`, its ack-only packet
    /// damped, riding along with the last packet carrying messages (to a quiet peer), or
    /// alone; every datagram with the trailer.
    pub(super) fn outgoing(
        &mut self,
        mut packets: Vec<Vec<u8>>,
        idle: bool,
        stats: &mut MatchmakingTransportStats,
    ) -> Vec<Vec<u8>> {
        let ack = bundle::take_ack(&mut packets).filter(|ack| {
            let admitted = self.admit(ack, idle);
            stats.acks_damped += u64::from(!admitted);
            admitted
        });
        let last = packets.len().checked_sub(1);
        let mut ack_went = false;
        for (i, packet) in packets.iter_mut().enumerate() {
            let ride = ack
                .as_deref()
                .filter(|_| self.quiet_peer && Some(i) == last);
            ack_went |= bundle::attach(packet, ride, NETCODE_MAX_PAYLOAD_BYTES);
        }
        stats.acks_bundled += u64::from(ack_went);
        if let Some(mut ack) = ack.filter(|_| !ack_went) {
            bundle::attach(&mut ack, None, NETCODE_MAX_PAYLOAD_BYTES);
            packets.push(ack);
        }
        packets
    }

    /// Whether a packet carrying messages arrived since the last ack-only packet went out.
    pub(super) fn owes_ack(&self) -> bool {
        self.owes_ack
    }

    /// Whether the idle packet is due at `now`.
    pub(super) fn idle_due(&self, now: Duration) -> bool {
        self.next_idle.is_none_or(|at| now >= at)
    }

    /// Whether to send `payload` (`idle`: the idle packet is due this frame).
    pub(super) fn admit(&mut self, payload: &[u8], idle: bool) -> bool {
        if payload.first() != Some(&RENET_ACK_PACKET) {
            return true;
        }
        if !(self.owes_ack || idle) {
            return false;
        }
        self.owes_ack = false;
        true
    }

    /// The idle packet of `now` was dealt with: the next is due an interval later.
    pub(super) fn idled(&mut self, now: Duration, policy: MatchmakingAckPolicy) {
        self.next_idle = Some(now.saturating_add(policy.idle_interval));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const ACK: [u8; 3] = [RENET_ACK_PACKET, 1, 2];
    const DATA: [u8; 3] = [0, 7, 7];

    /// One frame at `ms`: whether renet's ack-only packet went out.
    fn frame(link: &mut IdleLink, ms: u64, policy: MatchmakingAckPolicy) -> bool {
        let idle = link.idle_due(MS(ms));
        let sent = link.admit(&ACK, idle);
        if idle {
            link.idled(MS(ms), policy);
        }
        sent
    }

    #[test]
    fn acks_go_out_at_once_after_a_message_and_once_an_interval_otherwise() {
        let policy = MatchmakingAckPolicy::default();
        let mut link = IdleLink::default();
        // data always goes
        assert!(link.admit(&DATA, false));
        // the first frame is idle; the next ones wait for the interval
        assert!(frame(&mut link, 0, policy));
        assert!(!frame(&mut link, 16, policy));
        assert!(!frame(&mut link, 999, policy));
        assert!(frame(&mut link, 1000, policy));
        // an ack-only packet from the peer owes nothing
        link.received(&ACK);
        assert!(!frame(&mut link, 1010, policy));
        // a message from the peer is acknowledged at once, once
        link.received(&DATA);
        assert!(frame(&mut link, 1020, policy));
        assert!(!frame(&mut link, 1030, policy));
        assert!(frame(&mut link, 2000, policy));
    }

    #[test]
    fn a_zero_interval_sends_every_ack() {
        let policy = MatchmakingAckPolicy {
            idle_interval: Duration::ZERO,
        };
        let mut link = IdleLink::default();
        for ms in 0..10 {
            assert!(frame(&mut link, ms, policy));
        }
    }
}
