//! Acknowledgements that ride in the next message's datagram.
//!
//! renet never puts acknowledgements in a packet that carries messages: it makes a separate
//! ack-only packet, so a message answered in the same frame costs two datagrams each way.
//! A quiet transport appends that ack-only packet to the last packet carrying messages of
//! the same frame, behind a trailer, when the peer has shown that it reads trailers:
//!
//! ```text
//! [renet packet][renet ack-only packet, ACK_LEN bytes][ACK_LEN: u16 LE][MAGIC: 8 bytes]
//! ```
//!
//! Every datagram a quiet transport sends carries the trailer (with `ACK_LEN` 0 when
//! nothing rides along), so each side learns from the first datagram it receives that the
//! other reads trailers. renet reads a packet from its front and ignores what follows, so
//! a renet_netcode peer reads the first packet of a datagram and never sees the trailer; a
//! quiet transport never appends an ack for such a peer, because it never receives a
//! trailer from it.

/// The end of every datagram a quiet transport sends.
const MAGIC: [u8; 8] = *b"\x00qUiEt\xa7\x02";

/// The trailer's length: the ack's length and the magic.
pub(super) const TRAILER_BYTES: usize = 2 + MAGIC.len();

/// A received payload, its trailer read.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Received<'a> {
    /// The renet packet at the front.
    pub packet: &'a [u8],
    /// An ack-only packet that rode along.
    pub ack: Option<&'a [u8]>,
    /// Whether the payload had a trailer: the peer reads them.
    pub from_quiet_peer: bool,
}

/// Reads the trailer of `payload`, if it has a well-formed one (a renet packet of at least
/// one byte in front, a ride-along that is an ack-only packet); otherwise the whole payload
/// is one renet packet.
pub(super) fn split(payload: &[u8]) -> Received<'_> {
    let plain = Received {
        packet: payload,
        ack: None,
        from_quiet_peer: false,
    };
    let Some(rest) = payload.strip_suffix(&MAGIC) else {
        return plain;
    };
    let Some((len_bytes, body)) = rest
        .len()
        .checked_sub(2)
        .map(|at| (&rest[at..], &rest[..at]))
    else {
        return plain;
    };
    let ack_len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
    let Some(packet_len) = body.len().checked_sub(ack_len).filter(|&n| n > 0) else {
        return plain;
    };
    let (packet, ack) = body.split_at(packet_len);
    if !ack.is_empty() && ack.first() != Some(&crate::shared::inbox::RENET_ACK_PACKET) {
        return plain;
    }
    Received {
        packet,
        ack: (!ack.is_empty()).then_some(ack),
        from_quiet_peer: true,
    }
}

/// Appends `ack` (when given) and the trailer to `packet`, if the result stays within
/// `max` bytes; returns whether `ack` was appended. A packet too large for the trailer is
/// left as it is (the peer reads it as plain renet).
pub(super) fn attach(packet: &mut Vec<u8>, ack: Option<&[u8]>, max: usize) -> bool {
    let ack = ack.filter(|a| packet.len() + a.len() + TRAILER_BYTES <= max);
    if packet.len() + TRAILER_BYTES + ack.map_or(0, <[u8]>::len) > max {
        return false;
    }
    let Ok(ack_len) = u16::try_from(ack.map_or(0, <[u8]>::len)) else {
        return false;
    };
    if let Some(ack) = ack {
        packet.extend_from_slice(ack);
    }
    packet.extend_from_slice(&ack_len.to_le_bytes());
    packet.extend_from_slice(&MAGIC);
    ack.is_some()
}

/// The packets of one frame to one peer, as renet made them: the ack-only packet (renet
/// puts it last) and the others.
pub(super) fn take_ack(packets: &mut Vec<Vec<u8>>) -> Option<Vec<u8>> {
    let is_ack = packets
        .last()
        .is_some_and(|p| p.first() == Some(&crate::shared::inbox::RENET_ACK_PACKET));
    if is_ack { packets.pop() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::inbox::RENET_ACK_PACKET;

    const MAX: usize = 1300;

    #[test]
    fn a_packet_and_its_ack_come_apart_as_they_went_in() {
        let ack = [RENET_ACK_PACKET, 9, 1, 1];
        let mut packet = vec![0, 5, 0, 0, 1, 7];
        assert!(attach(&mut packet, Some(&ack), MAX));
        let got = split(&packet);
        assert_eq!(got.packet, &[0, 5, 0, 0, 1, 7]);
        assert_eq!(got.ack, Some(&ack[..]));
        assert!(got.from_quiet_peer);
    }

    #[test]
    fn a_trailer_alone_says_the_peer_is_quiet() {
        let mut packet = vec![RENET_ACK_PACKET, 3];
        assert!(!attach(&mut packet, None, MAX));
        let got = split(&packet);
        assert_eq!(got.packet, &[RENET_ACK_PACKET, 3]);
        assert_eq!(got.ack, None);
        assert!(got.from_quiet_peer);
    }

    #[test]
    fn plain_renet_packets_pass_whole() {
        for payload in [&[][..], &[0], &[0, 1, 2, 3], &MAGIC[..]] {
            let got = split(payload);
            assert_eq!(got.packet, payload);
            assert!(!got.from_quiet_peer);
        }
    }

    #[test]
    fn malformed_trailers_are_plain_packets() {
        // an ack length longer than the body, or one that leaves no packet in front
        for ack_len in [5u16, 4, u16::MAX] {
            let mut payload = vec![RENET_ACK_PACKET, 1, 2, 3];
            payload.extend_from_slice(&ack_len.to_le_bytes());
            payload.extend_from_slice(&MAGIC);
            let got = split(&payload);
            assert_eq!(got.packet, &payload[..]);
            assert!(!got.from_quiet_peer, "ack_len {ack_len}");
        }
        // a ride-along that is not an ack-only packet
        let mut payload = vec![0, 1, 0, 2];
        payload.extend_from_slice(&2u16.to_le_bytes());
        payload.extend_from_slice(&MAGIC);
        assert!(!split(&payload).from_quiet_peer);
    }

    #[test]
    fn nothing_grows_past_the_limit() {
        let ack = [RENET_ACK_PACKET, 1];
        let mut full = vec![0; MAX - TRAILER_BYTES - 1];
        assert!(!attach(&mut full, Some(&ack), MAX), "no room for the ack");
        assert_eq!(full.len(), MAX - 1, "the trailer alone still fits");
        let mut fuller = vec![0; MAX - 1];
        assert!(!attach(&mut fuller, None, MAX));
        assert_eq!(fuller.len(), MAX - 1, "left as it was");
    }

    #[test]
    fn the_ack_is_taken_only_when_renet_put_one_last() {
        let mut packets = vec![vec![0, 1], vec![RENET_ACK_PACKET, 2]];
        assert_eq!(take_ack(&mut packets), Some(vec![RENET_ACK_PACKET, 2]));
        assert_eq!(packets, vec![vec![0, 1]]);
        assert_eq!(take_ack(&mut packets), None);
        assert_eq!(packets.len(), 1);
    }
}
