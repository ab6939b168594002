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

/// Frames waiting for the socket. Empty queues hold no allocation.
#[derive(Default)]
pub struct Outbound {
    queue: VecDeque<Pending>,
    /// Bytes of the front frame already written.
    head_written: usize,
    /// Unwritten bytes in the queue.
    bytes: usize,
}

/// Queue slots an emptied queue keeps (a steady relay reuses them without allocating);
/// a queue that grew past this is freed once empty, so idle connections stay small.
pub const QUEUE_KEEP_LEN: usize = 8;

/// Iovecs one flush hands the kernel at most.
pub const IOVECS_MAX: usize = 64;

impl Outbound {
    /// Unwritten bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Length of the front frame (what a write reads first).
    pub fn front_len(&self) -> Option<usize> {
        self.queue.front().map(|p| p.frame.len())
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Queues a frame under the policy: reliable frames past `bytes_max` overflow;
    /// unreliable frames past `congested_bytes` replace a same-key frame or are dropped.
    pub fn push(
        &mut self,
        frame: Frame,
        class: Class,
        bytes_max: usize,
        congested_bytes: usize,
    ) -> Pushed {
        let len = frame.len();
        match class {
            Class::Reliable => {
                if self.bytes + len > bytes_max {
                    return Pushed::Overflow;
                }
            }
            Class::Unreliable(key) => {
                if self.bytes + len > congested_bytes {
                    // The front frame may be partly written; never touch it.
                    let skip = usize::from(self.head_written > 0);
                    let same = self
                        .queue
                        .iter_mut()
                        .skip(skip)
                        .find(|p| p.class == Class::Unreliable(key));
                    return match same {
                        Some(p) if self.bytes - p.frame.len() + len <= bytes_max => {
                            self.bytes = self.bytes - p.frame.len() + len;
                            p.frame = frame;
                            Pushed::Replaced
                        }
                        _ => Pushed::Dropped,
                    };
                }
            }
        }
        self.bytes += len;
        self.queue.push_back(Pending { frame, class });
        Pushed::Queued
    }

    /// Drops everything not yet started (before a close frame on a slow consumer).
    /// A partly written front frame stays, so the stream stays well-formed.
    pub fn truncate_unstarted(&mut self) {
        let keep = usize::from(self.head_written > 0);
        while self.queue.len() > keep {
            if let Some(p) = self.queue.pop_back() {
                self.bytes -= p.frame.len();
            }
        }
    }

    /// Fills `slices` with the unwritten bytes, front first; returns how many.
    pub fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>; IOVECS_MAX]) -> usize {
        let mut n = 0;
        for (i, p) in self.queue.iter().take(IOVECS_MAX).enumerate() {
            let bytes = if i == 0 {
                &p.frame[self.head_written..]
            } else {
                &p.frame[..]
            };
            slices[n] = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// Frees an empty queue's slots (a connection gone quiet holds no queue memory).
    pub fn release_if_empty(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
    }

    /// Appends every unwritten byte to `buf`, front first (a gathered write).
    pub fn gather_into(&self, buf: &mut Vec<u8>) {
        for (i, p) in self.queue.iter().enumerate() {
            let skip = if i == 0 { self.head_written } else { 0 };
            buf.extend_from_slice(&p.frame[skip..]);
        }
    }

    /// Records that the kernel took `written` bytes.
    pub fn advance(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let Some(front) = self.queue.front() else {
                break;
            };
            let left = front.frame.len() - self.head_written;
            if written >= left {
                written -= left;
                self.head_written = 0;
                self.queue.pop_front();
            } else {
                self.head_written += written;
                written = 0;
            }
        }
        if self.queue.is_empty() && self.queue.capacity() > QUEUE_KEEP_LEN {
            self.queue = VecDeque::new();
        }
    }

    /// Every queued frame's unwritten bytes, concatenated (tests and the simulator).
    pub fn take_all(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes);
        self.gather_into(&mut out);
        let n = self.bytes;
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
        assert_eq!(q.queue.capacity(), 0, "a new queue holds no allocation");
        q.push(frame(10, 1), Class::Reliable, 1 << 20, 1 << 20);
        q.push(frame(10, 2), Class::Reliable, 1 << 20, 1 << 20);
        q.release_if_empty();
        assert_eq!(q.len(), 2, "a queue with frames is never released");
        q.advance(20);
        assert!(q.is_empty());
        assert!(q.queue.capacity() > 0, "a busy connection reuses its slots");
        q.release_if_empty();
        assert_eq!(q.queue.capacity(), 0);
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
