//! Players refused for abuse, remembered after their connection closed:
//! [`AbuseCooldowns`].

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::shared::player::PlayerId;

/// Most players remembered at once; past it the one whose cooldown ends first is forgotten
/// (a flood of fresh ids cannot grow the memory).
pub const MAX_COOLING_PLAYERS: usize = 65_536;

/// Until when each player refused for abuse is refused again on a new connection.
#[derive(Debug, Clone, Default)]
pub(super) struct AbuseCooldowns {
    until: HashMap<PlayerId, Duration>,
    /// (player, until) in the order they were added, to forget expired ones cheaply.
    order: VecDeque<(PlayerId, Duration)>,
}

impl AbuseCooldowns {
    /// Refuses `player` until `until` (a later end replaces an earlier one).
    pub(super) fn cool(&mut self, player: PlayerId, until: Duration, now: Duration) {
        self.forget_expired(now);
        while self.until.len() >= MAX_COOLING_PLAYERS {
            self.forget_first();
        }
        let end = self.until.entry(player).or_insert(until);
        *end = (*end).max(until);
        self.order.push_back((player, *end));
        if self.order.len() > 2 * MAX_COOLING_PLAYERS {
            // renewals left stale entries behind: keep one per player, soonest end first
            let mut live: Vec<_> = self.until.iter().map(|(p, u)| (*p, *u)).collect();
            live.sort_unstable_by_key(|(p, u)| (*u, *p));
            self.order = live.into();
        }
    }

    /// The end of `player`'s cooldown, if it is cooling at `now`.
    pub(super) fn cooling_until(&self, player: PlayerId, now: Duration) -> Option<Duration> {
        self.until
            .get(&player)
            .copied()
            .filter(|until| now < *until)
    }

    /// Players cooling now (expired ones may still count until the next call to `cool`).
    pub(super) fn len(&self) -> usize {
        self.until.len()
    }

    fn forget_expired(&mut self, now: Duration) {
        while self.order.front().is_some_and(|(_, until)| *until <= now) {
            self.forget_first();
        }
    }

    /// Forgets the oldest entry (and its player, unless a later entry renewed it).
    fn forget_first(&mut self) {
        let Some((player, until)) = self.order.pop_front() else {
            return;
        };
        if self.until.get(&player) == Some(&until) {
            self.until.remove(&player);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_player_cools_until_the_end_and_is_forgotten_after() {
        let mut cooldowns = AbuseCooldowns::default();
        cooldowns.cool(7, S(60), S(0));
        assert_eq!(cooldowns.cooling_until(7, S(59)), Some(S(60)));
        assert_eq!(cooldowns.cooling_until(7, S(60)), None);
        assert_eq!(cooldowns.cooling_until(8, S(1)), None);
        // a second refusal extends it; the first entry expiring does not end it
        cooldowns.cool(7, S(90), S(30));
        cooldowns.cool(9, S(100), S(61));
        assert_eq!(cooldowns.cooling_until(7, S(80)), Some(S(90)));
        cooldowns.cool(10, S(200), S(95));
        assert_eq!(cooldowns.len(), 2, "7 expired and was forgotten");
    }

    #[test]
    fn memory_stays_under_the_cap_whatever_ids_come() {
        let mut cooldowns = AbuseCooldowns::default();
        for player in 0..(MAX_COOLING_PLAYERS as u64 + 100) {
            cooldowns.cool(player, Duration::MAX, S(1));
        }
        assert_eq!(cooldowns.len(), MAX_COOLING_PLAYERS);
        assert_eq!(
            cooldowns.cooling_until(0, S(2)),
            None,
            "the oldest went first"
        );
        assert!(
            cooldowns
                .cooling_until(MAX_COOLING_PLAYERS as u64 + 99, S(2))
                .is_some()
        );
    }
}
