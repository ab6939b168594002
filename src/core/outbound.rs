//! One connection's queue of frames the kernel has not taken yet, with the reliable /
//! unreliable policy at its bounds. The reactor drains it with one vectored write per turn.

use std::collections::VecDeque;
use std::io::IoSlice;

use crate::codec::Frame;

/// Delivery class of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Delivered in order, or the connection is closed (`slow_consumer`).
    Reliable,
    /// May be dropped under backpressure, or replaced by a newer frame with the same key
    /// (a hash of sender and message type: latest wins).
    Unreliable(u64),
}

/// What happened to a pushed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Appended to the queue.
    Queued,
    /// Took the place of a queued unreliable frame with the same key.
    Replaced,
    /// Unreliable and the connection is congested: dropped.
    Dropped,
    /// Reliable and over `outbound_bytes_max`: the connection must close (`slow_consumer`).
    Overflow,
}

struct Pending {
    frame: Frame,
    class: Class,
}

/// Frames waiting for the socket, front first: the front frame is kept inline and the
/// rest in a ring that is allocated only when more than one frame waits. A relay's queue
/// usually holds one frame, so queueing it and writing it touch only the session's own
/// record, not a separate allocation (the cache miss per member that a wide room pays
/// twice, when queueing and when writing). Empty queues hold no allocation.
#[derive(Default)]
pub struct Outbound {
    /// The front frame; `None` only when the queue is empty.
    front: Option<Pending>,
    /// Bytes of the front frame already written.
    head_written: u32,
    /// Unwritten bytes in the queue.
    bytes: u32,
    /// The frames behind the front one.
    rest: VecDeque<Pending>,
}

/// Queue slots an emptied queue keeps, so a steady relay reuses them without allocating,
/// even when a room's messages arrive together and wait for a flush interval (a room of
/// 50 is 50 frames at once); a queue that grew past this (a slow reader) is freed once
/// empty. Quiet connections give their slots back (`release_if_empty`).
pub const QUEUE_KEEP_LEN: usize = 64;

/// Iovecs one flush hands the kernel at most.
pub const IOVECS_MAX: usize = 64;

impl Outbound {
    /// Unwritten bytes.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        usize::from(self.front.is_some()) + self.rest.len()
    }

    /// Length of the front frame (what a write reads first).
    pub fn front_len(&self) -> Option<usize> {
        self.front.as_ref().map(|p| p.frame.len())
    }

    /// The unwritten bytes of every queued frame, front first (the front frame's part
    /// already written is skipped).
    fn unwritten(&self) -> impl Iterator<Item = &[u8]> {
        let skip = self.head_written as usize;
        let front = self.front.iter().map(move |p| &p.frame[skip..]);
        front.chain(self.rest.iter().map(|p| &p.frame[..]))
    }

    /// Queues a frame under the policy: reliable frames past `bytes_max` overflow;
    /// unreliable frames past `congested_bytes` replace a same-key frame or are dropped.
    /// Limits are capped at `u32::MAX` bytes.
    pub fn push(
        &mut self,
        frame: Frame,
        class: Class,
        bytes_max: usize,
        congested_bytes: usize,
    ) -> Pushed {
        let len = frame.len();
        let bytes = self.bytes as usize;
        let bytes_max = bytes_max.min(u32::MAX as usize);
        let congested_bytes = congested_bytes.min(u32::MAX as usize);
        match class {
            Class::Reliable => {
                if bytes + len > bytes_max {
                    return Pushed::Overflow;
                }
            }
            Class::Unreliable(key) => {
                if bytes + len > congested_bytes {
                    // The front frame may be partly written; never touch it.
                    let started = self.head_written > 0;
                    let same = self
                        .front
                        .iter_mut()
                        .filter(|_| !started)
                        .chain(self.rest.iter_mut())
                        .find(|p| p.class == Class::Unreliable(key));
                    return match same {
                        Some(p) if bytes - p.frame.len() + len <= bytes_max => {
                            self.bytes = (bytes - p.frame.len() + len) as u32;
                            p.frame = frame;
                            Pushed::Replaced
                        }
                        _ => Pushed::Dropped,
                    };
                }
            }
        }
        self.bytes = (bytes + len) as u32;
        let pending = Pending { frame, class };
        if self.front.is_none() {
            self.front = Some(pending);
        } else {
            self.rest.push_back(pending);
        }
        Pushed::Queued
    }

    /// Drops everything not yet started (before a close frame on a slow consumer).
    /// A partly written front frame stays, so the stream stays well-formed.
    pub fn truncate_unstarted(&mut self) {
        for p in self.rest.drain(..) {
            self.bytes -= p.frame.len() as u32;
        }
        if self.head_written == 0 {
            if let Some(p) = self.front.take() {
                self.bytes -= p.frame.len() as u32;
            }
        }
    }

    /// Fills `slices` with the unwritten bytes, front first; returns how many.
    pub fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>; IOVECS_MAX]) -> usize {
        let mut n = 0;
        for bytes in self.unwritten().take(IOVECS_MAX) {
            slices[n] = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// Frees an empty queue's slots (a connection gone quiet holds no queue memory).
    pub fn release_if_empty(&mut self) {
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
    }

    /// Appends every unwritten byte to `buf`, front first (a gathered write).
    pub fn gather_into(&self, buf: &mut Vec<u8>) {
        for bytes in self.unwritten() {
            buf.extend_from_slice(bytes);
        }
    }

    /// Records that the kernel took `written` bytes.
    pub fn advance(&mut self, mut written: usize) {
        self.bytes -= written as u32;
        while written > 0 {
            let Some(front) = &self.front else {
                break;
            };
            let left = front.frame.len() - self.head_written as usize;
            if written >= left {
                written -= left;
                self.head_written = 0;
                self.front = self.rest.pop_front();
            } else {
                self.head_written += written as u32;
                written = 0;
            }
        }
        if self.rest.is_empty() && self.rest.capacity() > QUEUE_KEEP_LEN {
            self.rest = VecDeque::new();
        }
    }

    /// Every queued frame's unwritten bytes, concatenated (tests and the simulator).
    pub fn take_all(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes());
        self.gather_into(&mut out);
        let n = self.bytes();
        self.advance(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(n: usize, byte: u8) -> Frame {
        Arc::from(vec![byte; n])
    }

    #[test]
    fn an_emptied_queue_keeps_its_slots_until_released() {
        let mut q = Outbound::default();
        assert_eq!(q.rest.capacity(), 0, "a new queue holds no allocation");
        q.push(frame(10, 1), Class::Reliable, 1 << 20, 1 << 20);
        q.push(frame(10, 2), Class::Reliable, 1 << 20, 1 << 20);
        q.release_if_empty();
        assert_eq!(q.len(), 2, "a queue with frames is never released");
        q.advance(20);
        assert!(q.is_empty());
        assert!(q.rest.capacity() > 0, "a busy connection reuses its slots");
        q.release_if_empty();
        assert_eq!(q.rest.capacity(), 0);
        let mut buf = Vec::new();
        q.push(frame(3, 7), Class::Reliable, 1 << 20, 1 << 20);
        q.push(frame(2, 8), Class::Reliable, 1 << 20, 1 << 20);
        q.advance(1);
        q.gather_into(&mut buf);
        assert_eq!(
            buf,
            [7, 7, 8, 8],
            "gathered from the unwritten part of the front"
        );
    }

    /// The front frame lives inline and the rest in the ring: against a plain byte queue,
    /// any mix of pushes and partial writes keeps every byte, in order.
    #[test]
    fn frames_keep_their_order_across_the_inline_front_and_the_ring() {
        let mut q = Outbound::default();
        let mut model: std::collections::VecDeque<u8> = Default::default();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..5_000u32 {
            if next(3) > 0 {
                let len = 1 + next(40) as usize;
                let byte = step as u8;
                q.push(frame(len, byte), Class::Reliable, 1 << 20, 1 << 20);
                model.extend(std::iter::repeat_n(byte, len));
            } else {
                let n = next(q.bytes() as u64 + 1) as usize;
                q.advance(n);
                model.drain(..n);
            }
            assert_eq!(q.bytes(), model.len());
            assert_eq!(q.is_empty(), model.is_empty());
            let mut buf = Vec::new();
            q.gather_into(&mut buf);
            assert!(buf.iter().eq(model.iter()), "step {step}");
            let mut slices = [IoSlice::new(&[]); IOVECS_MAX];
            let n = q.slices(&mut slices);
            let joined: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
            assert!(model.iter().take(joined.len()).eq(joined.iter()));
        }
    }

    #[test]
    fn reliable_overflow_is_reported_not_queued() {
        let mut q = Outbound::default();
        assert_eq!(
            q.push(frame(60, 1), Class::Reliable, 100, 50),
            Pushed::Queued
        );
        assert_eq!(
            q.push(frame(41, 2), Class::Reliable, 100, 50),
            Pushed::Overflow
        );
        assert_eq!(q.bytes(), 60);
    }

    #[test]
    fn congested_unreliable_frames_replace_same_key_or_drop() {
        let mut q = Outbound::default();
        assert_eq!(
            q.push(frame(30, 1), Class::Unreliable(7), 100, 50),
            Pushed::Queued
        );
        assert_eq!(
            q.push(frame(30, 2), Class::Reliable, 100, 50),
            Pushed::Queued
        );
        assert_eq!(
            q.push(frame(30, 3), Class::Unreliable(7), 100, 50),
            Pushed::Replaced
        );
        assert_eq!(
            q.push(frame(30, 4), Class::Unreliable(8), 100, 50),
            Pushed::Dropped
        );
        let bytes = q.take_all();
        assert_eq!(
            &bytes[..30],
            &[3u8; 30][..],
            "latest wins, in the old frame's place"
        );
        assert_eq!(&bytes[30..], &[2u8; 30][..]);
    }

    #[test]
    fn partial_writes_resume_mid_frame_and_the_front_is_never_replaced() {
        let mut q = Outbound::default();
        q.push(frame(40, 1), Class::Unreliable(7), 100, 50);
        q.push(frame(20, 2), Class::Reliable, 100, 50);
        q.advance(10);
        assert_eq!(
            q.push(frame(40, 9), Class::Unreliable(7), 100, 50),
            Pushed::Dropped
        );
        let mut slices = [IoSlice::new(&[]); IOVECS_MAX];
        let n = q.slices(&mut slices);
        assert_eq!(n, 2);
        assert_eq!(slices[0].len(), 30);
        q.truncate_unstarted();
        assert_eq!(q.len(), 1, "the started frame stays");
        assert_eq!(q.bytes(), 30);
    }
}
