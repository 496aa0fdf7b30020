//! [`AtomicPartitionedStore`]: any store behind a switch that cuts the node off from it,
//! as a network partition between a node and its Redis does (every call fails as
//! unreachable while it is down).

use std::time::Duration;

use crate::atomic::core::store::{
    AtomicClaim, AtomicCommit, AtomicNodeLease, AtomicReaped, AtomicStore, AtomicStoreError,
    AtomicStoreJoin, AtomicStoreLimits, AtomicStoreLobby, AtomicStoreMatch, AtomicStorePlayer,
};
use crate::shared::player::PlayerId;

/// A store a test can cut off: while [`down`](Self::down) is set, every call returns
/// [`AtomicStoreError::Unavailable`] and changes nothing.
#[derive(Debug, Default)]
pub struct AtomicPartitionedStore<S> {
    /// The store behind the switch.
    pub inner: S,
    /// Cut off: every call fails.
    pub down: bool,
    /// Calls refused so far.
    pub refused: u64,
    /// Random failures: with this share each call fails as unreachable, half of them
    /// before it reached the store (nothing done), half after (done, its reply lost).
    pub flaky: Option<(f64, fastrand::Rng)>,
    /// Calls done whose reply was lost, so far.
    pub lost_replies: u64,
}

impl<S> AtomicPartitionedStore<S> {
    /// `inner`, reachable.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            down: false,
            refused: 0,
            flaky: None,
            lost_replies: 0,
        }
    }

    /// Fails a share of the calls at random, drawn from `seed` (see [`Self::flaky`]).
    pub fn flaky(mut self, share: f64, seed: u64) -> Self {
        self.flaky = Some((share, fastrand::Rng::with_seed(seed)));
        self
    }

    /// Before a call: refused while down, or by a random failure before it reached the
    /// store. `Ok(true)`: its reply is to be lost.
    fn reach(&mut self) -> Result<bool, AtomicStoreError> {
        let unreachable = || AtomicStoreError::Unavailable("partitioned (test)".into());
        if self.down {
            self.refused += 1;
            return Err(unreachable());
        }
        let Some((share, rng)) = &mut self.flaky else {
            return Ok(false);
        };
        if rng.f64() >= *share {
            return Ok(false);
        }
        if rng.bool() {
            self.refused += 1;
            return Err(unreachable());
        }
        Ok(true)
    }

    /// After a call: its reply, or lost.
    fn reply<T>(
        &mut self,
        lose: bool,
        reply: Result<T, AtomicStoreError>,
    ) -> Result<T, AtomicStoreError> {
        if lose {
            self.lost_replies += 1;
            return Err(AtomicStoreError::Unavailable("reply lost (test)".into()));
        }
        reply
    }
}

/// Each method: refused while down, else the inner store's.
macro_rules! through {
    ($(fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            fn $name(&mut self $(, $arg: $ty)*) -> Result<$ret, AtomicStoreError> {
                let lose = self.reach()?;
                let reply = self.inner.$name($($arg),*);
                self.reply(lose, reply)
            }
        )*
    };
}

impl<S: AtomicStore> AtomicStore for AtomicPartitionedStore<S> {
    through! {
        fn acquire_lease(&mut self, node: &str, ttl: Duration) -> AtomicNodeLease;
        fn renew_lease(&mut self, lease: &AtomicNodeLease, ttl: Duration) -> ();
        fn release_lease(&mut self, lease: &AtomicNodeLease) -> ();
        fn join(
            &mut self,
            lease: &AtomicNodeLease,
            player: PlayerId,
            category: &str,
            limits: AtomicStoreLimits,
            seniority: Option<u64>
        ) -> AtomicStoreJoin;
        fn leave(&mut self, lease: &AtomicNodeLease, player: PlayerId) -> bool;
        fn ready_categories(&mut self, group_size: usize) -> Vec<String>;
        fn front(&mut self, category: &str, count: usize) -> Vec<crate::atomic::core::store::AtomicStoreTicket>;
        fn claim(&mut self, lease: &AtomicNodeLease, category: &str, players: &[PlayerId]) -> AtomicClaim;
        fn open_lobby(&mut self, lease: &AtomicNodeLease, match_id: u64, lobby_id: u64, code: &str) -> bool;
        fn commit(&mut self, lease: &AtomicNodeLease, match_id: u64) -> AtomicCommit;
        fn rollback(&mut self, lease: &AtomicNodeLease, match_id: u64, requeue: &[PlayerId]) -> Vec<PlayerId>;
        fn leave_lobby(&mut self, lease: &AtomicNodeLease, lobby_id: u64, player: PlayerId) -> bool;
        fn dead_nodes(&mut self) -> Vec<String>;
        fn reap(&mut self, lease: &AtomicNodeLease, dead: &str) -> AtomicReaped;
        fn player(&mut self, player: PlayerId) -> Option<AtomicStorePlayer>;
        fn match_record(&mut self, match_id: u64) -> Option<AtomicStoreMatch>;
        fn lobby(&mut self, lobby_id: u64) -> Option<AtomicStoreLobby>;
        fn match_floor(&mut self) -> u64;
        fn residue(&mut self) -> usize;
        fn coordinated_by(&mut self, node: &str) -> Vec<u64>;
        fn stats(&mut self) -> crate::atomic::core::store::AtomicStoreStats;
    }

    fn round_trips(&self) -> u64 {
        self.inner.round_trips()
    }
}
