//! A node as its players' home: it takes messages for them from its inbox, forwards what
//! still applies and moves their seats; what no longer applies is answered (a forming
//! match hears the player is gone, a lobby or a ticket it was put in is cleared).

use std::time::Duration;

use crate::atomic::core::commit::AtomicMatchStatus;
use crate::atomic::core::protocol::{AtomicMatchCancelReason, AtomicServerMessage};
use crate::shared::player::PlayerId;

use super::node::{
    AtomicClusterNode, AtomicLocalSeat, Departure, PING_RESENDS, PingInFlight, queued,
};
use super::{AtomicClusterInbox, AtomicClusterMessage, AtomicClusterSeat};

/// What a home does with a coordinator's message for one of its players.
enum Verdict {
    /// Forward it and move the seat.
    Forward,
    /// A copy of something already handled, or overtaken by a newer match: drop it.
    Ignore,
    /// The player is not (or no longer) in that match here: answer for it.
    Refuse,
}

impl AtomicClusterNode {
    /// Handles a message for this node: as the home of its player, or as a coordinator.
    pub(super) fn handle(
        &mut self,
        message: AtomicClusterMessage,
        now: Duration,
        inbox: &mut dyn AtomicClusterInbox,
    ) {
        match message {
            AtomicClusterMessage::ToPlayer {
                match_id,
                coordinator,
                player,
                message,
                seat,
            } => {
                let order = Forwarded {
                    match_id,
                    coordinator,
                    player,
                    message,
                    seat,
                };
                self.forward(order, now, inbox);
            }
            AtomicClusterMessage::Health {
                match_id,
                player,
                nonce,
                rtt_us,
            } => self.on_health(match_id, player, nonce, Duration::from_micros(rtt_us)),
            AtomicClusterMessage::Acked { match_id, player } => self.on_acked(match_id, player),
            AtomicClusterMessage::Gone { match_id, player } => self.on_gone(match_id, player),
            AtomicClusterMessage::Reaped { player } => self.recheck.push(player),
        }
    }

    /// A player answered a health ping at `now`: its home measured the round trip and
    /// reports it to the match's coordinator.
    pub fn pong(
        &mut self,
        player: PlayerId,
        nonce: u64,
        now: Duration,
        inbox: &mut dyn AtomicClusterInbox,
    ) {
        let Some(local) = self.players.get_mut(&player) else {
            return;
        };
        let Some(ping) = local.ping.take_if(|p| p.nonce == nonce) else {
            return;
        };
        // the home stalled while the answer was on its way: the round trip it would
        // measure is its own delay, so the player is pinged again (as on one node)
        let threshold = self.settings.timings.stall_threshold;
        let stalled = self
            .last_poll
            .is_some_and(|p| now.saturating_sub(p) > threshold)
            || self.last_stall.is_some_and(|s| s > ping.sent && s <= now);
        if stalled && ping.resent < PING_RESENDS {
            let resent = PingInFlight {
                sent: now,
                resent: ping.resent + 1,
                ..ping
            };
            local.ping = Some(resent);
            return self.tell(player, AtomicServerMessage::Ping { nonce });
        }
        let rtt_us = u64::try_from(now.saturating_sub(ping.sent).as_micros()).unwrap_or(u64::MAX);
        let health = AtomicClusterMessage::Health {
            match_id: ping.match_id,
            player,
            nonce,
            rtt_us,
        };
        self.deliver(&ping.coordinator, health, inbox);
    }

    /// A player acknowledged the proposal of `match_id`.
    pub fn acknowledge(
        &mut self,
        player: PlayerId,
        match_id: u64,
        inbox: &mut dyn AtomicClusterInbox,
    ) {
        if let Some(AtomicLocalSeat::Matching {
            match_id: m,
            coordinator,
        }) = self.seat(player).cloned()
            && m == match_id
        {
            self.deliver(
                &coordinator,
                AtomicClusterMessage::Acked { match_id, player },
                inbox,
            );
        }
    }

    fn verdict(&self, order: &Forwarded) -> Verdict {
        let Some(local) = self.players.get(&order.player) else {
            return Verdict::Refuse;
        };
        if local.seat == AtomicLocalSeat::Idle {
            return Verdict::Refuse; // answering for an idle player changes nothing twice
        }
        if order.match_id < local.last_match || order.match_id <= local.resolved {
            return Verdict::Ignore;
        }
        let repeated_ping = matches!(
            (&order.message, &local.ping),
            (AtomicServerMessage::Ping { nonce }, Some(ping)) if *nonce == ping.nonce
        );
        let outcome = order.seat != AtomicClusterSeat::Matching;
        match &local.seat {
            AtomicLocalSeat::Matching { .. } if repeated_ping => Verdict::Ignore,
            // an outcome is for the match the player is in: a queued player's ticket is
            // another one (its last connection's match, resolved without it)
            AtomicLocalSeat::Matching { match_id, .. }
                if outcome && *match_id != order.match_id =>
            {
                Verdict::Refuse
            }
            AtomicLocalSeat::Queued { .. } if outcome => match order.seat {
                AtomicClusterSeat::InLobby { .. } => Verdict::Refuse,
                _ => Verdict::Ignore,
            },
            AtomicLocalSeat::Queued { .. } | AtomicLocalSeat::Matching { .. } => Verdict::Forward,
            AtomicLocalSeat::Idle | AtomicLocalSeat::InLobby { .. } => Verdict::Refuse,
        }
    }

    /// As the player's home: forwards a coordinator's message and moves its seat, once.
    fn forward(&mut self, order: Forwarded, now: Duration, inbox: &mut dyn AtomicClusterInbox) {
        match self.verdict(&order) {
            Verdict::Ignore => {}
            Verdict::Refuse => self.refuse_for(order, inbox),
            Verdict::Forward => self.forward_now(order, now),
        }
    }

    /// The player is not in `order`'s match here: the match hears it is gone, a lobby or a
    /// ticket the store put it in is cleared at the next poll.
    fn refuse_for(&mut self, order: Forwarded, inbox: &mut dyn AtomicClusterInbox) {
        let Forwarded {
            match_id,
            coordinator,
            player,
            seat,
            ..
        } = order;
        match seat {
            AtomicClusterSeat::Matching => {
                let gone = AtomicClusterMessage::Gone { match_id, player };
                self.deliver(&coordinator, gone, inbox);
            }
            AtomicClusterSeat::InLobby { lobby_id } => {
                self.departed.push(Departure::Lobby(lobby_id, player));
            }
            AtomicClusterSeat::Requeued { .. } => {
                if self
                    .seat(player)
                    .is_none_or(|s| *s == AtomicLocalSeat::Idle)
                {
                    self.departed.push(Departure::Ticket(player));
                }
            }
            AtomicClusterSeat::Dropped => {}
        }
    }

    fn forward_now(&mut self, order: Forwarded, now: Duration) {
        let Forwarded {
            match_id,
            coordinator,
            player,
            message,
            seat,
        } = order;
        // a newer match overtook the one the player was in: that one is off for it
        if let Some(AtomicLocalSeat::Matching { match_id: old, .. }) = self.seat(player).cloned()
            && old != match_id
        {
            self.tell(player, called_off(old, true));
        }
        let new_seat = match seat {
            AtomicClusterSeat::Matching => AtomicLocalSeat::Matching {
                match_id,
                coordinator: coordinator.clone(),
            },
            AtomicClusterSeat::InLobby { lobby_id } => AtomicLocalSeat::InLobby { lobby_id },
            AtomicClusterSeat::Requeued { category } => queued(&category, None),
            AtomicClusterSeat::Dropped => AtomicLocalSeat::Idle,
        };
        let resolved = !matches!(new_seat, AtomicLocalSeat::Matching { .. });
        self.set_seat(player, new_seat);
        if let Some(local) = self.players.get_mut(&player) {
            local.last_match = match_id;
            if resolved {
                local.resolved = match_id;
                local.ping = None;
            }
            if let AtomicServerMessage::Ping { nonce } = message {
                local.ping = Some(PingInFlight {
                    nonce,
                    sent: now,
                    match_id,
                    coordinator,
                    resent: 0,
                });
            }
        }
        self.tell(player, message);
    }
}

/// A coordinator's message for one player, as its home takes it.
struct Forwarded {
    match_id: u64,
    coordinator: String,
    player: PlayerId,
    message: AtomicServerMessage,
    seat: AtomicClusterSeat,
}

/// What a player is told of a match called off outside its commit machine: a newer one
/// took it (its coordinator died), the store no longer holds it, or the node lost its lease.
pub(super) fn called_off(match_id: u64, requeued: bool) -> AtomicServerMessage {
    AtomicServerMessage::MatchCancelled {
        match_id,
        status: AtomicMatchStatus::Aborted,
        reason: AtomicMatchCancelReason::MatchAborted,
        requeued,
    }
}
