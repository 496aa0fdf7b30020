//! Moving the machine on in time: forgetting frames too old to matter, watching the
//! readable frames, expiring and deciding; and the creation times of our facts.
//!
//! Time always comes first: [`expire_to`](NegotiatedMachine::expire_to) ends what expired
//! by the time a fact arrived before the fact is handled, so a bid that arrives after our
//! request expired is not accepted, and a frame rollover never lets a fact be judged
//! against the previous frame.

use std::time::Duration;

use crate::negotiated::core::clock::as_us;
use crate::negotiated::core::protocol::NegotiatedClientMessage;

use super::{NegotiatedMachine, NegotiatedPhase, NegotiatedRestartReason};

/// What a phase step leaves to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The phase changed (something expired or closed): step the new phase.
    Again,
    /// Nothing more to decide until new facts or time arrive.
    Settled,
}

/// At most this many phase steps per advance: expire or close, then decide.
const MAX_STEPS: usize = 3;

impl NegotiatedMachine {
    /// Takes the relay time to `now` (never backwards), ends what expired, and, when
    /// online, steps the phase.
    pub(super) fn advance(&mut self, now: Duration) {
        self.expire_to(now);
        if !self.online {
            return;
        }
        let current = self.config.frames.frame_of(self.now);
        let readable = self.config.frames.readable(self.now);
        let all_synced = readable.iter().all(|f| self.synced.contains(f));
        for _ in 0..MAX_STEPS {
            if self.step(current, &readable, all_synced) == Step::Settled {
                return;
            }
        }
    }

    /// Takes the relay time to `now` (never backwards) and, when online, forgets old
    /// frames, watches the readable ones and ends what expired: our request (back to
    /// looking) or the wait on our bid (withdrawn). Decides nothing else.
    pub(super) fn expire_to(&mut self, now: Duration) {
        self.now = self.now.max(now);
        if !self.online {
            return;
        }
        let current = self.config.frames.frame_of(self.now);
        self.forget_before(current.saturating_sub(2));
        if self.is_searching() {
            let readable = self.config.frames.readable(self.now);
            self.watch(&readable);
        }
        match self.phase {
            NegotiatedPhase::Requesting { frame, .. }
                if !self.config.frames.is_live(frame, self.now) =>
            {
                self.restart(NegotiatedRestartReason::RequestExpired);
            }
            NegotiatedPhase::Bidding { .. } => self.expire_bid(),
            _ => {}
        }
    }

    /// One decision for the current phase.
    fn step(&mut self, current: u64, readable: &[u64], all_synced: bool) -> Step {
        match self.phase.clone() {
            NegotiatedPhase::Idle
            | NegotiatedPhase::Matched(_)
            | NegotiatedPhase::Accepting { .. }
            | NegotiatedPhase::Withdrawing { .. } => Step::Settled,
            NegotiatedPhase::Requesting { request, frame } => {
                self.step_requesting(request, frame, readable, all_synced)
            }
            NegotiatedPhase::Bidding { request, .. } => self.step_bidding(request),
            NegotiatedPhase::Looking => self.step_looking(current, readable, all_synced),
        }
    }

    /// Drops facts, given-up requests, refused bids and departures from frames before
    /// `keep`.
    fn forget_before(&mut self, keep: u64) {
        self.given_up.retain(|_, frame| *frame >= keep);
        if self.store.drop_before(keep) > 0 {
            let store = &self.store;
            self.refused_bids.retain(|bid| store.contains(*bid));
            self.departed
                .retain(|author| store.by_author(*author).next().is_some());
        }
    }

    /// (Re)subscribes to the search category's `readable` frames when that changed,
    /// keeping the sync marks of frames still watched.
    fn watch(&mut self, readable: &[u64]) {
        let category = self.category.clone().unwrap_or_default();
        let wanted = (category.clone(), readable.to_vec());
        if self.subscribed.as_ref() == Some(&wanted) {
            return;
        }
        if self.subscribed.as_ref().map(|(c, _)| c) != Some(&category) {
            self.synced.clear();
        }
        self.synced.retain(|f| readable.contains(f));
        self.send(NegotiatedClientMessage::Subscribe {
            category,
            frames: readable.to_vec(),
        });
        self.subscribed = Some(wanted);
    }

    /// Stops watching frames (the search is over).
    pub(super) fn stop_watching(&mut self) {
        if self.subscribed.take().is_some() && self.online {
            self.send(NegotiatedClientMessage::Unsubscribe);
        }
        self.synced.clear();
    }

    /// A creation time for a new request or bid: now, but strictly after the previous
    /// one, so two facts of ours never share content (and id) even within one instant.
    pub(super) fn stamp(&mut self) -> u64 {
        let us = as_us(self.now).max(self.last_stamp_us.saturating_add(1));
        self.last_stamp_us = us;
        us
    }
}
