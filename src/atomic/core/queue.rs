//! Per-category FIFO matchmaking queue with priority re-queue at the front.
//!
//! Every operation is O(1) or O(log n) in the size of one category (except
//! [`AtomicQueue::position`], which counts the tickets ahead), and forming matches only looks
//! at categories that hold enough players ([`AtomicQueue::ready_categories`]), so a server
//! frame costs nothing for players who are merely waiting.
//!
//! Re-queued tickets (after a rollback) go to the front, ahead of every ticket that joined
//! normally, and among themselves they stand in the order of their original enqueue time:
//! however many matches roll back at once and in whatever order they are processed, the
//! player who waited longest is first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

/// One player's place in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicQueueTicket<P> {
    /// The player holding the ticket.
    pub player: P,
    /// The category it queues for.
    pub category: String,
    /// When the player first joined; kept across priority re-queues.
    pub enqueued_at: Duration,
}

/// Why a ticket was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AtomicQueueError {
    /// The player already holds a ticket (in this or another category).
    #[error("player already holds a ticket")]
    AlreadyQueued,
    /// The category holds `capacity` tickets already.
    #[error("queue is full ({capacity} players)")]
    Full {
        /// The capacity that was reached.
        capacity: usize,
    },
    /// The ticket would open a new category, and `max` categories are open already.
    #[error("{max} categories are open already")]
    TooManyCategories {
        /// The limit that was reached.
        max: usize,
    },
}

/// Where a ticket stands in its category: re-queued tickets (class 0) by original enqueue
/// time, then joined tickets (class 1) in arrival order; `seq` breaks ties in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct OrderKey {
    class: u8,
    enqueued_at: Duration,
    seq: u64,
}

/// A ticket as a category stores it: its category is the category's (shared) name.
#[derive(Debug)]
struct Waiting<P> {
    player: P,
    enqueued_at: Duration,
}

impl<P: Copy> Waiting<P> {
    fn ticket(&self, category: &str) -> AtomicQueueTicket<P> {
        AtomicQueueTicket {
            player: self.player,
            category: category.to_owned(),
            enqueued_at: self.enqueued_at,
        }
    }
}

#[derive(Debug)]
struct CategoryQueue<P> {
    /// Tickets by order key: smallest key is the front.
    entries: BTreeMap<OrderKey, Waiting<P>>,
}

impl<P> Default for CategoryQueue<P> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }
}

/// FIFO queues keyed by category; a player holds at most one ticket overall.
///
/// A category's name is stored once and shared by its tickets (about 200 bytes per
/// queued ticket in all, see the `frame` benchmark).
#[derive(Debug)]
pub struct AtomicQueue<P> {
    categories: HashMap<Arc<str>, CategoryQueue<P>>,
    /// player -> (category, order key)
    index: HashMap<P, (Arc<str>, OrderKey)>,
    /// Next tie-breaking sequence number (grows).
    next_seq: u64,
    /// Categories holding at least `group_size` tickets.
    ready: BTreeSet<Arc<str>>,
    group_size: usize,
    capacity: usize,
    /// Most categories with tickets, for normal joins.
    max_categories: usize,
}

impl<P: Copy + Eq + Hash> AtomicQueue<P> {
    /// An empty queue forming groups of `group_size` with at most `capacity` tickets per category.
    pub fn new(group_size: usize, capacity: usize) -> Self {
        Self {
            categories: HashMap::new(),
            index: HashMap::new(),
            next_seq: 0,
            ready: BTreeSet::new(),
            group_size: group_size.max(1),
            capacity,
            max_categories: usize::MAX,
        }
    }

    /// Changes how many categories may hold tickets at once for normal joins (priority
    /// re-queues ignore it); categories open now stay.
    pub fn set_max_categories(&mut self, max: usize) {
        self.max_categories = max;
    }

    /// Categories holding at least one ticket.
    pub fn categories(&self) -> usize {
        self.categories.len()
    }

    /// Players per group that [`Self::pop_group`] takes.
    pub fn group_size(&self) -> usize {
        self.group_size
    }

    /// Changes the group size; recomputes which categories are ready (O(categories), rare).
    pub fn set_group_size(&mut self, group_size: usize) {
        let group_size = group_size.max(1);
        if group_size == self.group_size {
            return;
        }
        self.group_size = group_size;
        self.ready = self
            .categories
            .iter()
            .filter(|(_, q)| q.entries.len() >= group_size)
            .map(|(c, _)| c.clone())
            .collect();
    }

    /// Maximum tickets per category for normal joins (priority re-queues ignore it).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the per-category capacity; existing tickets stay.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Adds a ticket at the back of its category. Returns the 1-based position.
    pub fn enqueue(&mut self, ticket: AtomicQueueTicket<P>) -> Result<usize, AtomicQueueError> {
        if self.index.contains_key(&ticket.player) {
            return Err(AtomicQueueError::AlreadyQueued);
        }
        let len = self.len(&ticket.category);
        if len >= self.capacity {
            return Err(AtomicQueueError::Full {
                capacity: self.capacity,
            });
        }
        if len == 0 && self.categories.len() >= self.max_categories {
            return Err(AtomicQueueError::TooManyCategories {
                max: self.max_categories,
            });
        }
        let key = self.key(1, Duration::ZERO);
        self.insert(key, ticket);
        Ok(len + 1)
    }

    /// Puts a ticket back at the front of its category, keeping its original enqueue time.
    ///
    /// The front holds every re-queued ticket, ordered by original enqueue time (ties in the
    /// order of these calls), ahead of every ticket that joined normally. A healthy player
    /// must never be lost, so this ignores the capacity. Returns the 1-based position now
    /// (a later re-queue of an older ticket moves it back), or `AlreadyQueued` if the player
    /// holds a ticket already.
    pub fn requeue_front(
        &mut self,
        ticket: AtomicQueueTicket<P>,
    ) -> Result<usize, AtomicQueueError> {
        if self.index.contains_key(&ticket.player) {
            return Err(AtomicQueueError::AlreadyQueued);
        }
        let key = self.key(0, ticket.enqueued_at);
        let player = ticket.player;
        self.insert(key, ticket);
        Ok(self.position(&player).expect("just inserted"))
    }

    fn key(&mut self, class: u8, enqueued_at: Duration) -> OrderKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        OrderKey {
            class,
            enqueued_at,
            seq,
        }
    }

    fn insert(&mut self, key: OrderKey, ticket: AtomicQueueTicket<P>) {
        let category = match self.categories.get_key_value(ticket.category.as_str()) {
            Some((name, _)) => name.clone(),
            None => Arc::from(ticket.category),
        };
        self.index.insert(ticket.player, (category.clone(), key));
        let queue = self.categories.entry(category.clone()).or_default();
        let waiting = Waiting {
            player: ticket.player,
            enqueued_at: ticket.enqueued_at,
        };
        queue.entries.insert(key, waiting);
        if queue.entries.len() >= self.group_size {
            self.ready.insert(category);
        }
    }

    /// Removes a player's ticket, wherever it is.
    pub fn remove(&mut self, player: &P) -> Option<AtomicQueueTicket<P>> {
        let (category, key) = self.index.remove(player)?;
        let queue = self.categories.get_mut(&category)?;
        let ticket = queue.entries.remove(&key);
        let len = queue.entries.len();
        if len < self.group_size {
            self.ready.remove(&category);
        }
        if len == 0 {
            self.categories.remove(&category);
        }
        ticket.map(|waiting| waiting.ticket(&category))
    }

    /// Takes the first `group_size` tickets of a category, if it holds that many.
    pub fn pop_group(&mut self, category: &str) -> Option<Vec<AtomicQueueTicket<P>>> {
        let n = self.group_size;
        let queue = self.categories.get_mut(category)?;
        if queue.entries.len() < n {
            return None;
        }
        let mut group = Vec::with_capacity(n);
        for _ in 0..n {
            let (_, waiting) = queue.entries.pop_first().expect("length checked");
            self.index.remove(&waiting.player);
            group.push(waiting.ticket(category));
        }
        let len = queue.entries.len();
        if len < n {
            self.ready.remove(category);
        }
        if len == 0 {
            self.categories.remove(category);
        }
        Some(group)
    }

    /// Categories that hold at least one full group, in name order.
    pub fn ready_categories(&self) -> impl Iterator<Item = &str> {
        self.ready.iter().map(|c| &**c)
    }

    /// The first ready category, if any (cheap: O(log categories)).
    pub fn first_ready(&self) -> Option<&str> {
        self.ready.first().map(|c| &**c)
    }

    /// Whether the player holds a ticket.
    pub fn contains(&self, player: &P) -> bool {
        self.index.contains_key(player)
    }

    /// The player's 1-based position in its category (O(tickets ahead of it): cheap for
    /// the front, where re-queued players stand).
    pub fn position(&self, player: &P) -> Option<usize> {
        let (category, key) = self.index.get(player)?;
        let queue = self.categories.get(category)?;
        Some(queue.entries.range(..*key).count() + 1)
    }

    /// The category the player queues in.
    pub fn category_of(&self, player: &P) -> Option<&str> {
        self.index.get(player).map(|(c, _)| &**c)
    }

    /// Tickets in one category.
    pub fn len(&self, category: &str) -> usize {
        self.categories
            .get(category)
            .map_or(0, |queue| queue.entries.len())
    }

    /// Tickets over all categories.
    pub fn total(&self) -> usize {
        self.index.len()
    }

    /// Whether no ticket is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Ticket counts per non-empty category.
    pub fn lengths(&self) -> impl Iterator<Item = (&str, usize)> {
        self.categories.iter().map(|(c, q)| (&**c, q.entries.len()))
    }

    /// The tickets of one category, front first (O(len); for inspection and tests).
    pub fn tickets(&self, category: &str) -> Vec<AtomicQueueTicket<P>> {
        let Some((name, queue)) = self.categories.get_key_value(category) else {
            return Vec::new();
        };
        queue.entries.values().map(|w| w.ticket(name)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ticket(player: u64, category: &str, at: u64) -> AtomicQueueTicket<u64> {
        AtomicQueueTicket {
            player,
            category: category.into(),
            enqueued_at: Duration::from_millis(at),
        }
    }

    /// Found by the fuzzer: re-queued tickets are ordered by their whole enqueue time,
    /// however far it lies (an earlier key kept saturating nanoseconds and tied them).
    #[test]
    fn requeues_order_by_enqueue_time_beyond_u64_nanoseconds() {
        let far = Duration::from_secs(u64::MAX / 2);
        let mut q = AtomicQueue::new(2, 10);
        let late = AtomicQueueTicket {
            player: 1,
            category: "a".into(),
            enqueued_at: far + Duration::from_secs(1),
        };
        let early = AtomicQueueTicket {
            enqueued_at: far,
            player: 2,
            ..late.clone()
        };
        assert_eq!(q.requeue_front(late), Ok(1));
        assert_eq!(
            q.requeue_front(early),
            Ok(1),
            "the one that waited longer is first"
        );
        assert_eq!(q.position(&1), Some(2));
    }

    #[test]
    fn fifo_per_category() {
        let mut q = AtomicQueue::new(2, 10);
        assert_eq!(q.enqueue(ticket(1, "a", 0)), Ok(1));
        assert_eq!(q.enqueue(ticket(2, "b", 0)), Ok(1));
        assert_eq!(q.enqueue(ticket(3, "a", 0)), Ok(2));
        assert_eq!(q.enqueue(ticket(4, "a", 0)), Ok(3));
        assert_eq!(q.ready_categories().collect::<Vec<_>>(), vec!["a"]);
        let group = q.pop_group("a").unwrap();
        assert_eq!(group.iter().map(|t| t.player).collect::<Vec<_>>(), [1, 3]);
        assert!(q.pop_group("a").is_none());
        assert!(q.pop_group("b").is_none());
        assert_eq!(q.total(), 2);
    }

    #[test]
    fn one_ticket_per_player() {
        let mut q = AtomicQueue::new(2, 10);
        q.enqueue(ticket(1, "a", 0)).unwrap();
        assert_eq!(
            q.enqueue(ticket(1, "b", 0)),
            Err(AtomicQueueError::AlreadyQueued)
        );
        assert_eq!(
            q.requeue_front(ticket(1, "a", 0)),
            Err(AtomicQueueError::AlreadyQueued)
        );
    }

    #[test]
    fn requeue_goes_to_front_and_keeps_time() {
        let mut q = AtomicQueue::new(2, 2);
        q.enqueue(ticket(1, "a", 10)).unwrap();
        q.enqueue(ticket(2, "a", 20)).unwrap();
        assert_eq!(
            q.enqueue(ticket(3, "a", 30)),
            Err(AtomicQueueError::Full { capacity: 2 })
        );
        // priority re-queue ignores capacity
        q.requeue_front(ticket(9, "a", 5)).unwrap();
        let group = q.pop_group("a").unwrap();
        assert_eq!(group[0].player, 9);
        assert_eq!(group[0].enqueued_at, Duration::from_millis(5));
        assert_eq!(group[1].player, 1);
    }

    #[test]
    fn new_categories_stop_at_the_limit_but_requeues_and_known_ones_do_not() {
        let mut q = AtomicQueue::new(2, 10);
        q.set_max_categories(2);
        q.enqueue(ticket(1, "a", 0)).unwrap();
        q.enqueue(ticket(2, "b", 0)).unwrap();
        assert_eq!(
            q.enqueue(ticket(3, "c", 0)),
            Err(AtomicQueueError::TooManyCategories { max: 2 })
        );
        // a known category still takes tickets
        assert_eq!(q.enqueue(ticket(3, "a", 0)), Ok(2));
        // a healthy player is never lost: a re-queue opens a category past the limit
        assert_eq!(q.requeue_front(ticket(4, "c", 0)), Ok(1));
        assert_eq!(q.categories(), 3);
        // an emptied category closes and frees its place
        q.remove(&4);
        q.remove(&2);
        assert_eq!(q.enqueue(ticket(5, "d", 0)), Ok(1));
    }

    #[test]
    fn remove_and_set_group_size() {
        let mut q = AtomicQueue::new(3, 10);
        for p in 0..3 {
            q.enqueue(ticket(p, "a", p)).unwrap();
        }
        assert_eq!(q.first_ready(), Some("a"));
        assert_eq!(q.remove(&1).unwrap().player, 1);
        assert_eq!(q.first_ready(), None);
        q.set_group_size(2);
        assert_eq!(q.first_ready(), Some("a"));
        assert!(q.remove(&1).is_none());
        q.remove(&0);
        q.remove(&2);
        assert!(q.is_empty());
        assert_eq!(q.lengths().count(), 0);
    }

    /// Several rollbacks in one frame, processed in any order: the front is ordered by
    /// original enqueue time and each re-queue reports the position it really has.
    #[test]
    fn requeues_keep_seniority_whatever_the_order() {
        let mut q = AtomicQueue::new(2, 10);
        q.enqueue(ticket(7, "a", 50)).unwrap();
        // match 2 (enqueued at 30 and 40) rolls back first, then match 1 (10 and 20)
        assert_eq!(q.requeue_front(ticket(3, "a", 30)), Ok(1));
        assert_eq!(q.requeue_front(ticket(4, "a", 40)), Ok(2));
        assert_eq!(q.requeue_front(ticket(1, "a", 10)), Ok(1));
        assert_eq!(q.requeue_front(ticket(2, "a", 20)), Ok(2));
        let order: Vec<u64> = q.tickets("a").iter().map(|t| t.player).collect();
        assert_eq!(order, [1, 2, 3, 4, 7]);
        let positions: Vec<usize> = order.iter().map(|p| q.position(p).unwrap()).collect();
        assert_eq!(positions, [1, 2, 3, 4, 5]);
        assert_eq!(q.position(&99), None);
        // ties keep the order of the calls (match order)
        let mut q = AtomicQueue::new(2, 10);
        q.requeue_front(ticket(5, "b", 0)).unwrap();
        q.requeue_front(ticket(6, "b", 0)).unwrap();
        let group = q.pop_group("b").unwrap();
        assert_eq!(group.iter().map(|t| t.player).collect::<Vec<_>>(), [5, 6]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Join(u8, u8),
        Requeue(u8, u8, u8),
        Leave(u8),
        Pop(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..20, 0u8..3).prop_map(|(p, c)| Op::Join(p, c)),
            (0u8..20, 0u8..3, 0u8..5).prop_map(|(p, c, at)| Op::Requeue(p, c, at)),
            (0u8..20).prop_map(Op::Leave),
            (0u8..3).prop_map(Op::Pop),
        ]
    }

    /// The model: per category, (class, enqueue time, sequence, player), kept sorted.
    type Model = HashMap<u8, Vec<(u8, u8, u64, u8)>>;

    fn players(v: &[(u8, u8, u64, u8)]) -> Vec<u8> {
        v.iter().map(|e| e.3).collect()
    }

    proptest! {
        /// The queue behaves like a naive model (a sorted Vec per category), never loses a
        /// ticket, never holds one player twice, never leaves a grouped player queued and
        /// reports every re-queue's true position.
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 0..200), size in 1usize..5) {
            let mut q = AtomicQueue::new(size, 8);
            let mut model = Model::new();
            let mut seq = 0u64;
            for op in ops {
                let held = |model: &Model, p: u8| model.values().any(|v| v.iter().any(|e| e.3 == p));
                match op {
                    Op::Join(p, c) => {
                        let len = model.get(&c).map_or(0, Vec::len);
                        let r = q.enqueue(ticket(p as u64, &c.to_string(), 0));
                        if held(&model, p) {
                            prop_assert_eq!(r, Err(AtomicQueueError::AlreadyQueued));
                        } else if len >= 8 {
                            prop_assert_eq!(r, Err(AtomicQueueError::Full { capacity: 8 }));
                        } else {
                            prop_assert_eq!(r, Ok(len + 1));
                            seq += 1;
                            model.entry(c).or_default().push((1, 0, seq, p));
                        }
                    }
                    Op::Requeue(p, c, at) => {
                        let was_held = held(&model, p);
                        let r = q.requeue_front(ticket(p as u64, &c.to_string(), at as u64));
                        prop_assert_eq!(r.is_ok(), !was_held);
                        if !was_held {
                            seq += 1;
                            let v = model.entry(c).or_default();
                            v.push((0, at, seq, p));
                            v.sort();
                            let want = v.iter().position(|e| e.3 == p).unwrap() + 1;
                            prop_assert_eq!(r, Ok(want));
                        }
                    }
                    Op::Leave(p) => {
                        let removed = q.remove(&(p as u64)).is_some();
                        let was = held(&model, p);
                        for v in model.values_mut() {
                            v.retain(|e| e.3 != p);
                        }
                        prop_assert_eq!(removed, was);
                    }
                    Op::Pop(c) => {
                        let v = model.entry(c).or_default();
                        let got = q.pop_group(&c.to_string());
                        if v.len() >= size {
                            let want = players(&v.drain(..size).collect::<Vec<_>>());
                            let got: Vec<u8> = got.unwrap().iter().map(|t| t.player as u8).collect();
                            prop_assert_eq!(&got, &want);
                            for p in &got {
                                prop_assert!(!q.contains(&(*p as u64)), "a grouped player still holds a ticket");
                            }
                        } else {
                            prop_assert!(got.is_none());
                        }
                    }
                }
                let total: usize = model.values().map(Vec::len).sum();
                prop_assert_eq!(q.total(), total);
                for (c, v) in &model {
                    let got: Vec<u8> = q.tickets(&c.to_string()).iter().map(|t| t.player as u8).collect();
                    prop_assert_eq!(&got, &players(v));
                    prop_assert_eq!(q.ready_categories().any(|r| r == c.to_string()), v.len() >= size);
                }
            }
        }
    }
}
