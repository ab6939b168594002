//! The mesh: one bounded lock-free queue per ordered pair of shards plus one `mio::Waker`
//! per shard, built at startup. Shards cross only through it. A full queue hands the
//! message back; the sender keeps it in a local backlog and retries on its next turn.
//! Generic over the message (the core's `MeshMsg`); what a message means is not its
//! concern.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::core::ShardId;

/// All queues and wakers of the server.
pub struct Mesh<T> {
    shards: usize,
    /// `queues[from * shards + to]`.
    queues: Vec<ArrayQueue<T>>,
    wakers: Vec<Arc<mio::Waker>>,
}

impl<T> Mesh<T> {
    /// A mesh for `wakers.len()` shards with queues of `queue_len` messages.
    pub fn new(wakers: Vec<Arc<mio::Waker>>, queue_len: usize) -> Self {
        let shards = wakers.len();
        let queues = (0..shards * shards)
            .map(|_| ArrayQueue::new(queue_len))
            .collect();
        Mesh {
            shards,
            queues,
            wakers,
        }
    }

    fn queue(&self, from: ShardId, to: ShardId) -> &ArrayQueue<T> {
        &self.queues[from.index() * self.shards + to.index()]
    }

    /// Wakes every shard (shutdown).
    pub fn wake_all(&self) {
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

/// One shard's end of the mesh.
pub struct MeshPort<T> {
    me: ShardId,
    mesh: Arc<Mesh<T>>,
    /// Messages a full queue handed back, per destination, in order.
    backlog: Vec<VecDeque<T>>,
    /// Destinations that got messages since the last `wake`.
    to_wake: Vec<bool>,
}

impl<T> MeshPort<T> {
    /// Shard `me`'s port.
    pub fn new(me: ShardId, mesh: Arc<Mesh<T>>) -> Self {
        let n = mesh.shards;
        MeshPort {
            me,
            mesh,
            backlog: (0..n).map(|_| VecDeque::new()).collect(),
            to_wake: vec![false; n],
        }
    }

    /// Sends a message, keeping order per destination.
    pub fn send(&mut self, to: ShardId, msg: T) {
        let backlog = &mut self.backlog[to.index()];
        if backlog.is_empty() {
            if let Err(msg) = self.mesh.queue(self.me, to).push(msg) {
                backlog.push_back(msg);
            }
        } else {
            backlog.push_back(msg);
        }
        self.to_wake[to.index()] = true;
    }

    /// Retries backlogged messages; true when some remain.
    pub fn retry_backlog(&mut self) -> bool {
        let mut left = false;
        for (to, backlog) in self.backlog.iter_mut().enumerate() {
            let queue = self.mesh.queue(self.me, ShardId(to as u16));
            while let Some(msg) = backlog.pop_front() {
                if let Err(msg) = queue.push(msg) {
                    backlog.push_front(msg);
                    left = true;
                    break;
                }
                self.to_wake[to] = true;
            }
        }
        left
    }

    /// Wakes the shards that were sent something (one wake each per turn).
    pub fn wake(&mut self) {
        for (to, flag) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(flag) {
                let _ = self.mesh.wakers[to].wake();
            }
        }
    }

    /// Takes up to `max` messages addressed to this shard, from every sender.
    pub fn drain(&self, max: usize, mut f: impl FnMut(ShardId, T)) -> usize {
        let mut n = 0;
        for from in 0..self.mesh.shards {
            let from = ShardId(from as u16);
            if from == self.me {
                continue;
            }
            let queue = self.mesh.queue(from, self.me);
            while n < max {
                let Some(msg) = queue.pop() else { break };
                f(from, msg);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_backlogs_in_order() {
        let polls: Vec<mio::Poll> = (0..2).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers = polls
            .iter()
            .map(|p| Arc::new(mio::Waker::new(p.registry(), mio::Token(0)).unwrap()))
            .collect();
        let mesh = Arc::new(Mesh::new(wakers, 16));
        let mut a = MeshPort::new(ShardId(0), mesh.clone());
        let b = MeshPort::new(ShardId(1), mesh);
        for i in 0..40u32 {
            a.send(ShardId(1), i);
        }
        let mut got = Vec::new();
        b.drain(usize::MAX, |_, m| got.push(m));
        assert_eq!(got, (0..16).collect::<Vec<_>>());
        assert!(a.retry_backlog());
        b.drain(usize::MAX, |_, m| got.push(m));
        a.retry_backlog();
        b.drain(usize::MAX, |_, m| got.push(m));
        assert!(!a.retry_backlog());
        b.drain(usize::MAX, |_, m| got.push(m));
        assert_eq!(got, (0..40).collect::<Vec<_>>(), "FIFO across the backlog");
    }
}
