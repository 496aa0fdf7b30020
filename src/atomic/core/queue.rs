//! Per-category FIFO matchmaking queue with priority re-queue at the front.
//!
//! Every operation is O(1) or O(log n) in the size of one category, and forming
//! matches only looks at categories that hold enough players ([`MatchQueue::ready_categories`]),
//! so a server frame costs nothing for players who are merely waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Duration;

/// One player's place in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTicket<P> {
    /// The player holding the ticket.
    pub player: P,
    /// The category it queues for.
    pub category: String,
    /// When the player first joined; kept across priority re-queues.
    pub enqueued_at: Duration,
}

/// Why a ticket was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The player already holds a ticket (in this or another category).
    AlreadyQueued,
    /// The category holds `capacity` tickets already.
    Full {
        /// The capacity that was reached.
        capacity: usize,
    },
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::AlreadyQueued => write!(f, "player already holds a ticket"),
            QueueError::Full { capacity } => write!(f, "queue is full ({capacity} players)"),
        }
    }
}

impl std::error::Error for QueueError {}

#[derive(Debug)]
struct CategoryQueue<P> {
    /// Tickets by order key: smallest key is the front.
    entries: BTreeMap<i64, QueueTicket<P>>,
    /// Next key for a back insertion (grows).
    next_back: i64,
    /// Next key for a front insertion (shrinks).
    next_front: i64,
}

impl<P> Default for CategoryQueue<P> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            next_back: 0,
            next_front: -1,
        }
    }
}

/// FIFO queues keyed by category; a player holds at most one ticket overall.
#[derive(Debug)]
pub struct MatchQueue<P> {
    categories: HashMap<String, CategoryQueue<P>>,
    /// player -> (category, order key)
    index: HashMap<P, (String, i64)>,
    /// Categories holding at least `group_size` tickets.
    ready: BTreeSet<String>,
    group_size: usize,
    capacity: usize,
}

impl<P: Copy + Eq + Hash> MatchQueue<P> {
    /// An empty queue forming groups of `group_size` with at most `capacity` tickets per category.
    pub fn new(group_size: usize, capacity: usize) -> Self {
        Self {
            categories: HashMap::new(),
            index: HashMap::new(),
            ready: BTreeSet::new(),
            group_size: group_size.max(1),
            capacity,
        }
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
    pub fn enqueue(&mut self, ticket: QueueTicket<P>) -> Result<usize, QueueError> {
        if self.index.contains_key(&ticket.player) {
            return Err(QueueError::AlreadyQueued);
        }
        let len = self.len(&ticket.category);
        if len >= self.capacity {
            return Err(QueueError::Full {
                capacity: self.capacity,
            });
        }
        let queue = self.categories.entry(ticket.category.clone()).or_default();
        let key = queue.next_back;
        queue.next_back += 1;
        self.insert(key, ticket);
        Ok(len + 1)
    }

    /// Puts a ticket back at the front of its category, keeping its original enqueue time.
    ///
    /// A healthy player must never be lost, so this ignores the capacity. Re-queue a group's
    /// players in reverse order to keep their relative order. Returns `AlreadyQueued` if the
    /// player holds a ticket already.
    pub fn requeue_front(&mut self, ticket: QueueTicket<P>) -> Result<usize, QueueError> {
        if self.index.contains_key(&ticket.player) {
            return Err(QueueError::AlreadyQueued);
        }
        let queue = self.categories.entry(ticket.category.clone()).or_default();
        let key = queue.next_front;
        queue.next_front -= 1;
        self.insert(key, ticket);
        Ok(1)
    }

    fn insert(&mut self, key: i64, ticket: QueueTicket<P>) {
        let category = ticket.category.clone();
        self.index.insert(ticket.player, (category.clone(), key));
        let queue = self.categories.get_mut(&category).expect("category exists");
        queue.entries.insert(key, ticket);
        if queue.entries.len() >= self.group_size {
            self.ready.insert(category);
        }
    }

    /// Removes a player's ticket, wherever it is.
    pub fn remove(&mut self, player: &P) -> Option<QueueTicket<P>> {
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
        ticket
    }

    /// Takes the first `group_size` tickets of a category, if it holds that many.
    pub fn pop_group(&mut self, category: &str) -> Option<Vec<QueueTicket<P>>> {
        let n = self.group_size;
        let queue = self.categories.get_mut(category)?;
        if queue.entries.len() < n {
            return None;
        }
        let mut group = Vec::with_capacity(n);
        for _ in 0..n {
            let (_, ticket) = queue.entries.pop_first().expect("length checked");
            self.index.remove(&ticket.player);
            group.push(ticket);
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
        self.ready.iter().map(String::as_str)
    }

    /// The first ready category, if any (cheap: O(log categories)).
    pub fn first_ready(&self) -> Option<&str> {
        self.ready.first().map(String::as_str)
    }

    /// Whether the player holds a ticket.
    pub fn contains(&self, player: &P) -> bool {
        self.index.contains_key(player)
    }

    /// The category the player queues in.
    pub fn category_of(&self, player: &P) -> Option<&str> {
        self.index.get(player).map(|(c, _)| c.as_str())
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
        self.categories
            .iter()
            .map(|(c, q)| (c.as_str(), q.entries.len()))
    }

    /// The tickets of one category, front first (O(len); for inspection and tests).
    pub fn tickets(&self, category: &str) -> Vec<&QueueTicket<P>> {
        self.categories
            .get(category)
            .map(|q| q.entries.values().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ticket(player: u64, category: &str, at: u64) -> QueueTicket<u64> {
        QueueTicket {
            player,
            category: category.into(),
            enqueued_at: Duration::from_millis(at),
        }
    }

    #[test]
    fn fifo_per_category() {
        let mut q = MatchQueue::new(2, 10);
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
        let mut q = MatchQueue::new(2, 10);
        q.enqueue(ticket(1, "a", 0)).unwrap();
        assert_eq!(q.enqueue(ticket(1, "b", 0)), Err(QueueError::AlreadyQueued));
        assert_eq!(
            q.requeue_front(ticket(1, "a", 0)),
            Err(QueueError::AlreadyQueued)
        );
    }

    #[test]
    fn requeue_goes_to_front_and_keeps_time() {
        let mut q = MatchQueue::new(2, 2);
        q.enqueue(ticket(1, "a", 10)).unwrap();
        q.enqueue(ticket(2, "a", 20)).unwrap();
        assert_eq!(
            q.enqueue(ticket(3, "a", 30)),
            Err(QueueError::Full { capacity: 2 })
        );
        // priority re-queue ignores capacity
        q.requeue_front(ticket(9, "a", 5)).unwrap();
        let group = q.pop_group("a").unwrap();
        assert_eq!(group[0].player, 9);
        assert_eq!(group[0].enqueued_at, Duration::from_millis(5));
        assert_eq!(group[1].player, 1);
    }

    #[test]
    fn remove_and_set_group_size() {
        let mut q = MatchQueue::new(3, 10);
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

    #[derive(Debug, Clone)]
    enum Op {
        Join(u8, u8),
        Requeue(u8, u8),
        Leave(u8),
        Pop(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..20, 0u8..3).prop_map(|(p, c)| Op::Join(p, c)),
            (0u8..20, 0u8..3).prop_map(|(p, c)| Op::Requeue(p, c)),
            (0u8..20).prop_map(Op::Leave),
            (0u8..3).prop_map(Op::Pop),
        ]
    }

    proptest! {
        /// The queue behaves like a naive model (a Vec per category), never loses a
        /// ticket, never holds one player twice and and never leaves a grouped player queued.
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 0..200), size in 1usize..5) {
            let mut q = MatchQueue::new(size, 8);
            let mut model: HashMap<u8, Vec<u8>> = HashMap::new();
            for op in ops {
                match op {
                    Op::Join(p, c) => {
                        let held = model.values().any(|v| v.contains(&p));
                        let len = model.get(&c).map_or(0, Vec::len);
                        let r = q.enqueue(ticket(p as u64, &c.to_string(), 0));
                        if held {
                            prop_assert_eq!(r, Err(QueueError::AlreadyQueued));
                        } else if len >= 8 {
                            prop_assert_eq!(r, Err(QueueError::Full { capacity: 8 }));
                        } else {
                            prop_assert_eq!(r, Ok(len + 1));
                            model.entry(c).or_default().push(p);
                        }
                    }
                    Op::Requeue(p, c) => {
                        let held = model.values().any(|v| v.contains(&p));
                        let r = q.requeue_front(ticket(p as u64, &c.to_string(), 0));
                        prop_assert_eq!(r.is_ok(), !held);
                        if !held {
                            model.entry(c).or_default().insert(0, p);
                        }
                    }
                    Op::Leave(p) => {
                        let removed = q.remove(&(p as u64)).is_some();
                        let mut was = false;
                        for v in model.values_mut() {
                            if let Some(i) = v.iter().position(|x| *x == p) {
                                v.remove(i);
                                was = true;
                            }
                        }
                        prop_assert_eq!(removed, was);
                    }
                    Op::Pop(c) => {
                        let v = model.entry(c).or_default();
                        let got = q.pop_group(&c.to_string());
                        if v.len() >= size {
                            let want: Vec<u8> = v.drain(..size).collect();
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
                    prop_assert_eq!(&got, v);
                    prop_assert_eq!(q.ready_categories().any(|r| r == c.to_string()), v.len() >= size);
                }
            }
        }
    }
}
