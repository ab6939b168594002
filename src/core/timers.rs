//! The shard's one timer facility: a deadline heap every dialect (and the engine, for
//! parked sessions) sets timers in. Timers are never cancelled: whoever handles one checks
//! that what it was for still holds (session keys carry a generation, so a timer for a
//! session that is gone finds nothing).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Deadlines, earliest first; timers due at the same ms fire in the order they were set.
pub struct Timers<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

struct Entry<T> {
    due_ms: u64,
    seq: u64,
    what: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ms, self.seq) == (other.due_ms, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest deadline must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due_ms, other.seq).cmp(&(self.due_ms, self.seq))
    }
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T> Timers<T> {
    /// Sets a timer due at `due_ms`.
    pub fn set(&mut self, due_ms: u64, what: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { due_ms, seq, what });
    }

    /// The earliest timer due at or before `now`, removed.
    pub fn pop_due(&mut self, now: u64) -> Option<T> {
        if self.heap.peek()?.due_ms > now {
            return None;
        }
        self.heap.pop().map(|e| e.what)
    }

    /// When the earliest timer is due.
    pub fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.due_ms)
    }

    /// Timers set and not yet due.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// No timer set.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_order_then_in_the_order_set() {
        let mut t = Timers::default();
        t.set(30, "c");
        t.set(10, "a");
        t.set(20, "b1");
        t.set(20, "b2");
        assert_eq!(t.next_due(), Some(10));
        assert_eq!(t.pop_due(9), None, "nothing is due before 10");
        let mut fired = Vec::new();
        while let Some(what) = t.pop_due(20) {
            fired.push(what);
        }
        assert_eq!(fired, ["a", "b1", "b2"]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(u64::MAX), Some("c"));
        assert!(t.is_empty());
    }
}
