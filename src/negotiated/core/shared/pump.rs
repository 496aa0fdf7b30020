//! [`NegotiatedSharedPump`]: one relay's calls to the shared store, in order, and the log
//! read back, with every verdict handed over after the entries it was decided behind.

use std::collections::VecDeque;
use std::time::Duration;

use crate::shared::player::PlayerId;

use super::super::fact::{NegotiatedFact, NegotiatedFactId};
use super::{
    NegotiatedConnection, NegotiatedLogEntry, NegotiatedLogPosition, NegotiatedSharedStore,
    NegotiatedSharedStoreError, NegotiatedSharedVerdict, post_id,
};

/// Log entries read per call.
const READ_BATCH: usize = 512;

/// Reads per run before the pump hands over what it has (a log that grows faster than
/// one relay reads it still lets its verdicts through).
const MAX_READS_PER_RUN: usize = 8;

/// What a relay asks of the shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedSharedOp {
    /// A client posted a fact.
    Post {
        /// The connection that posted it.
        author: PlayerId,
        /// The fact.
        fact: NegotiatedFact,
        /// Relay time.
        now: Duration,
    },
    /// A client connected.
    Connect {
        /// Who.
        player: PlayerId,
        /// Its connection.
        connection: NegotiatedConnection,
        /// Relay time.
        now: Duration,
    },
    /// A client's connection closed.
    Disconnect {
        /// Who.
        player: PlayerId,
        /// The connection that closed.
        connection: NegotiatedConnection,
        /// Relay time.
        now: Duration,
    },
}

/// What the pump hands back to its relay, in the order to apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedSharedReply {
    /// The next log entry.
    Log(NegotiatedLogEntry),
    /// The verdict on a post (after every log entry it was decided behind).
    Verdict {
        /// Who posted.
        author: PlayerId,
        /// The posted fact's id.
        fact: NegotiatedFactId,
        /// The verdict.
        verdict: NegotiatedSharedVerdict,
    },
    /// A connect or a close was recorded.
    Answered,
    /// The log was read to its end for the first time (again after a
    /// [`Reset`](Self::Reset)): the replica holds everything stored before.
    CaughtUp,
    /// The log no longer held what this relay had not read: forget every replicated fact;
    /// the log follows again from its start.
    Reset,
    /// The store stopped answering (once per outage); calls wait, in order, until it is
    /// back.
    Unavailable(String),
    /// The store answers again.
    Available,
}

/// One relay's queue of calls to the shared store and its place in the log.
///
/// [`run`](Self::run) makes the queued calls in order, each until the store answers (a
/// call whose reply was lost is made again: every call is idempotent), then reads the log
/// to its end and hands back the entries and the verdicts, each verdict after the entries
/// up to the position it was decided at.
#[derive(Debug, Default)]
pub struct NegotiatedSharedPump {
    queue: VecDeque<NegotiatedSharedOp>,
    cursor: NegotiatedLogPosition,
    /// Verdicts decided, waiting for the log to be read up to their position.
    waiting: VecDeque<NegotiatedSharedReply>,
    outage: Option<String>,
    caught_up: bool,
}

impl NegotiatedSharedPump {
    /// A pump at the start of the log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a call.
    pub fn push(&mut self, op: NegotiatedSharedOp) {
        self.queue.push_back(op);
    }

    /// Calls queued, not yet answered by the store.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The log position read so far.
    pub fn cursor(&self) -> NegotiatedLogPosition {
        self.cursor
    }

    /// Whether the store did not answer the last call.
    pub fn is_unavailable(&self) -> bool {
        self.outage.is_some()
    }

    /// Makes the queued calls, reads the log (waiting up to `wait` for an entry when there
    /// was nothing to call) and returns what to apply, in order.
    pub fn run(
        &mut self,
        store: &mut impl NegotiatedSharedStore,
        wait: Duration,
    ) -> Vec<NegotiatedSharedReply> {
        let mut out = Vec::new();
        let idle = self.queue.is_empty() && self.waiting.is_empty() && self.caught_up;
        let called = self.call_queued(store, &mut out);
        if called {
            self.read_log(store, if idle { wait } else { Duration::ZERO }, &mut out);
        }
        out
    }

    /// Makes the queued calls in order until one fails; whether every one was answered.
    fn call_queued(
        &mut self,
        store: &mut impl NegotiatedSharedStore,
        out: &mut Vec<NegotiatedSharedReply>,
    ) -> bool {
        while let Some(op) = self.queue.front() {
            let answered = match op {
                NegotiatedSharedOp::Post { author, fact, now } => {
                    store.post(*author, fact, *now).map(|verdict| {
                        Some(NegotiatedSharedReply::Verdict {
                            author: *author,
                            fact: post_id(*author, fact),
                            verdict,
                        })
                    })
                }
                NegotiatedSharedOp::Connect {
                    player,
                    connection,
                    now,
                } => store
                    .connect(*player, connection, *now)
                    .map(|_| Some(NegotiatedSharedReply::Answered)),
                NegotiatedSharedOp::Disconnect {
                    player,
                    connection,
                    now,
                } => store
                    .disconnect(*player, connection, *now)
                    .map(|_| Some(NegotiatedSharedReply::Answered)),
            };
            match answered {
                Ok(reply) => {
                    self.queue.pop_front();
                    self.waiting.extend(reply);
                    self.answered(out);
                }
                Err(error) => {
                    self.failed(error, out);
                    return false;
                }
            }
        }
        true
    }

    /// Reads the log to its end (or [`MAX_READS_PER_RUN`] batches), handing over each
    /// entry and, after it, the verdicts decided up to it; at the end, every verdict.
    fn read_log(
        &mut self,
        store: &mut impl NegotiatedSharedStore,
        mut wait: Duration,
        out: &mut Vec<NegotiatedSharedReply>,
    ) {
        for _ in 0..MAX_READS_PER_RUN {
            let entries = match store.read(self.cursor, READ_BATCH, wait) {
                Ok(entries) => entries,
                Err(NegotiatedSharedStoreError::Behind(_)) => {
                    self.cursor = NegotiatedLogPosition::START;
                    self.caught_up = false;
                    out.push(NegotiatedSharedReply::Reset);
                    continue;
                }
                Err(error) => return self.failed(error, out),
            };
            self.answered(out);
            wait = Duration::ZERO;
            let at_end = entries.len() < READ_BATCH;
            for entry in entries {
                self.cursor = self.cursor.max(entry.position);
                out.push(NegotiatedSharedReply::Log(entry));
                self.release(false, out);
            }
            if at_end {
                // everything decided so far is behind what was read
                self.release(true, out);
                if !self.caught_up {
                    self.caught_up = true;
                    out.push(NegotiatedSharedReply::CaughtUp);
                }
                return;
            }
        }
    }

    /// Hands over the waiting verdicts decided up to the cursor (`all`: every one).
    fn release(&mut self, all: bool, out: &mut Vec<NegotiatedSharedReply>) {
        while let Some(front) = self.waiting.front() {
            if let NegotiatedSharedReply::Verdict { verdict, .. } = front
                && !all
                && verdict.position() > self.cursor
            {
                break;
            }
            out.extend(self.waiting.pop_front());
        }
    }

    fn answered(&mut self, out: &mut Vec<NegotiatedSharedReply>) {
        if self.outage.take().is_some() {
            out.push(NegotiatedSharedReply::Available);
        }
    }

    fn failed(&mut self, error: NegotiatedSharedStoreError, out: &mut Vec<NegotiatedSharedReply>) {
        if self.outage.is_none() {
            let why = error.to_string();
            self.outage = Some(why.clone());
            out.push(NegotiatedSharedReply::Unavailable(why));
        }
    }
}
