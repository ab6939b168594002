//! Server-to-client WebSocket frames as complete bytes (header included), built once and
//! shared by every recipient. Server frames are unmasked, so the same bytes serve all.
//! Parsing client frames is tungstenite's job, not this module's.

use std::collections::VecDeque;
use std::sync::Arc;

/// The complete bytes of one WebSocket frame, shared by all its recipients.
pub type Frame = Arc<Vec<u8>>;

/// Frame buffers handed out again once every recipient has written them, so a steady
/// relay allocates nothing per message.
#[derive(Default)]
pub struct FramePool {
    /// Frames handed out, oldest first; the pool holds one reference to each.
    live: VecDeque<Frame>,
    /// Frames nobody else holds any more.
    free: Vec<Frame>,
}

impl FramePool {
    /// Frames tracked at most; past it the oldest is forgotten (freed by its last holder).
    pub const LIVE_MAX: usize = 4096;
    /// Buffers that grew past this are not reused (a huge frame must not pin memory).
    pub const REUSE_BYTES_MAX: usize = 4096;

    /// A cleared buffer that nobody else holds.
    pub fn take(&mut self) -> Frame {
        while let Some(front) = self.live.front_mut() {
            if Arc::get_mut(front).is_none() {
                break;
            }
            let frame = self.live.pop_front().expect("front exists");
            if frame.capacity() <= Self::REUSE_BYTES_MAX {
                self.free.push(frame);
            }
        }
        let mut frame = self
            .free
            .pop()
            .unwrap_or_else(|| Arc::new(Vec::with_capacity(256)));
        Arc::get_mut(&mut frame)
            .expect("free frames are unique")
            .clear();
        frame
    }

    /// Tracks a frame handed out, to reuse it once its recipients are done.
    pub fn track(&mut self, frame: &Frame) {
        if self.live.len() >= Self::LIVE_MAX {
            self.live.pop_front();
        }
        self.live.push_back(frame.clone());
    }
}

/// Room reserved before a payload for its header: 2 + 8 bytes for a 64-bit length.
pub const HEADER_BYTES_MAX: usize = 10;

/// The opcodes the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// UTF-8 text data.
    Text = 0x1,
    /// Binary data.
    Binary = 0x2,
    /// Connection close.
    Close = 0x8,
    /// Ping.
    Ping = 0x9,
}

/// Starts a frame buffer: clears `buf` and reserves the header space.
pub fn begin(buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(HEADER_BYTES_MAX, 0);
}

/// Completes a frame begun with [`begin`]: writes the header in front of the payload and
/// returns the frame's bytes (one allocation, shared by every recipient).
pub fn finish(buf: &mut [u8], opcode: OpCode) -> Frame {
    let start = write_header(buf, opcode);
    Arc::new(buf[start..].to_vec())
}

/// Completes a frame begun with [`begin`] in place: the header goes in front of the
/// payload and the frame is moved to the start of `buf`.
pub fn finish_in_place(buf: &mut Vec<u8>, opcode: OpCode) {
    let start = write_header(buf, opcode);
    buf.copy_within(start.., 0);
    buf.truncate(buf.len() - start);
}

/// Writes the header right-aligned into `buf[..HEADER_BYTES_MAX]` for the payload that
/// follows it; returns where the frame starts.
pub fn write_header(buf: &mut [u8], opcode: OpCode) -> usize {
    assert!(buf.len() >= HEADER_BYTES_MAX, "frame buffer was not begun");
    let len = buf.len() - HEADER_BYTES_MAX;
    let first = 0x80 | opcode as u8;
    let start = if len < 126 {
        buf[HEADER_BYTES_MAX - 1] = len as u8;
        HEADER_BYTES_MAX - 2
    } else if len <= usize::from(u16::MAX) {
        buf[HEADER_BYTES_MAX - 3] = 126;
        buf[HEADER_BYTES_MAX - 2..HEADER_BYTES_MAX].copy_from_slice(&(len as u16).to_be_bytes());
        HEADER_BYTES_MAX - 4
    } else {
        buf[1] = 127;
        buf[2..HEADER_BYTES_MAX].copy_from_slice(&(len as u64).to_be_bytes());
        0
    };
    buf[start] = first;
    start
}

/// A whole frame from a payload.
pub fn from_payload(opcode: OpCode, payload: &[u8]) -> Frame {
    let mut buf = Vec::with_capacity(HEADER_BYTES_MAX + payload.len());
    begin(&mut buf);
    buf.extend_from_slice(payload);
    finish(&mut buf, opcode)
}

/// A close frame with a status code and a reason (cut to fit the 123-byte limit).
pub fn close(code: u16, reason: &str) -> Frame {
    let mut payload = code.to_be_bytes().to_vec();
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    from_payload(OpCode::Close, &payload)
}

/// An empty ping.
pub fn ping() -> Frame {
    from_payload(OpCode::Ping, &[])
}

/// Parses a server frame back into (opcode byte, payload) — for tests and the load
/// generator. Returns the frame's total length too; `None` when incomplete.
pub fn parse(bytes: &[u8]) -> Option<(u8, &[u8], usize)> {
    let first = *bytes.first()?;
    let second = *bytes.get(1)?;
    let (len, at): (usize, usize) = match second & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
            4,
        ),
        127 => {
            let raw: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(raw)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    let payload = bytes.get(at..at.checked_add(len)?)?;
    Some((first & 0x0f, payload, at + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_follow_rfc6455_length_forms() {
        for (len, header) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let frame = from_payload(OpCode::Binary, &vec![7u8; len]);
            assert_eq!(frame.len(), len + header, "payload {len}");
            assert_eq!(frame[0], 0x82, "FIN + binary");
            let (op, payload, total) = parse(&frame).unwrap();
            assert_eq!((op, payload.len(), total), (2, len, frame.len()));
        }
    }

    #[test]
    fn frames_parse_back_with_tungstenite() {
        use std::io::Cursor;
        let frame = from_payload(OpCode::Text, b"hello");
        let mut ws = tungstenite::protocol::WebSocket::from_raw_socket(
            Cursor::new(frame.to_vec()),
            tungstenite::protocol::Role::Client,
            None,
        );
        assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "hello");
    }

    #[test]
    fn pooled_frames_are_reused_once_their_recipients_let_go() {
        let mut pool = FramePool::default();
        let mut a = pool.take();
        Arc::get_mut(&mut a).unwrap().extend_from_slice(b"abc");
        pool.track(&a);
        let held = a.clone();
        drop(a);
        let b = pool.take();
        assert!(
            !Arc::ptr_eq(&b, &held),
            "still held by a recipient: not reused"
        );
        drop(held);
        pool.track(&b);
        drop(b);
        let c = pool.take();
        assert!(c.is_empty(), "a reused frame comes back cleared");
    }

    #[test]
    fn in_place_frames_equal_copied_ones() {
        let mut buf = Vec::new();
        begin(&mut buf);
        buf.extend_from_slice(&[9u8; 300]);
        let copied = finish(&mut buf.clone(), OpCode::Binary);
        finish_in_place(&mut buf, OpCode::Binary);
        assert_eq!(&buf[..], &copied[..]);
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let frame = close(1008, &"é".repeat(100));
        let (op, payload, _) = parse(&frame).unwrap();
        assert_eq!(op, 8);
        assert!(payload.len() <= 125);
        assert_eq!(&payload[..2], &1008u16.to_be_bytes());
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
