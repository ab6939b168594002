//! WebSocket client framing for the load generator: the upgrade request, masked frames
//! built once (the send path only patches the timestamp bytes), and in-place parsing of
//! the server's (unmasked) frames.

/// The fixed `Sec-WebSocket-Key` every connection sends, and the accept value it implies.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Marker in front of the 16 hex digits of the send timestamp inside every payload.
pub const TS_MARKER: &[u8] = b"~T";
/// Marker plus the 16 hex digits.
pub const TS_LEN: usize = TS_MARKER.len() + 16;

pub fn upgrade_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Checks an upgrade response head (up to and including the blank line).
pub fn upgrade_ok(head: &[u8]) -> bool {
    (head.starts_with(b"HTTP/1.1 101") || head.starts_with(b"HTTP/1.0 101"))
        && memchr::memmem::find(head, WS_ACCEPT).is_some()
}

/// Appends a complete masked client frame (FIN set) with `payload` to `out`; returns the
/// offset of the payload's first byte inside `out`.
pub fn put_frame(out: &mut Vec<u8>, opcode: u8, mask: [u8; 4], payload: &[u8]) -> usize {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let at = out.len();
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    at
}

/// A pre-built masked message frame with a timestamp slot inside its payload.
pub struct Template {
    pub frame: Box<[u8]>,
    /// Offset of the 16 hex digits inside `frame`.
    ts_at: usize,
    /// Offset of those digits inside the payload (the mask phase).
    ts_phase: usize,
    mask: [u8; 4],
}

impl Template {
    /// `payload` must contain `TS_MARKER` followed by 16 placeholder bytes.
    pub fn new(opcode: u8, mask: [u8; 4], payload: &[u8]) -> Template {
        let marker = memchr::memmem::find(payload, TS_MARKER).expect("payload has a ts slot");
        let ts_phase = marker + TS_MARKER.len();
        let mut frame = Vec::with_capacity(payload.len() + 14);
        let at = put_frame(&mut frame, opcode, mask, payload);
        Template {
            frame: frame.into_boxed_slice(),
            ts_at: at + ts_phase,
            ts_phase,
            mask,
        }
    }

    /// Writes `ts` (16 lowercase hex digits) into the frame, masked in place.
    #[inline]
    pub fn stamp(&mut self, ts: u64) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digits = &mut self.frame[self.ts_at..self.ts_at + 16];
        for (i, d) in digits.iter_mut().enumerate() {
            let nibble = (ts >> (60 - 4 * i)) & 0xf;
            *d = HEX[nibble as usize] ^ self.mask[(self.ts_phase + i) & 3];
        }
    }
}

/// Reads the timestamp that follows the first `TS_MARKER` in `payload`.
#[inline]
pub fn find_ts(finder: &memchr::memmem::Finder<'_>, payload: &[u8]) -> Option<u64> {
    let at = finder.find(payload)? + TS_MARKER.len();
    let digits = payload.get(at..at + 16)?;
    let mut v = 0u64;
    for &d in digits {
        let n = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | n as u64;
    }
    Some(v)
}

/// One parsed server frame, positions relative to the parsed slice.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Frame {
        fin: bool,
        opcode: u8,
        start: usize,
        end: usize,
    },
    /// Not complete yet: this many bytes are needed in total (header included), when known.
    Incomplete(usize),
    /// Not a valid server frame (masked, reserved bits, bad control frame).
    Bad(&'static str),
}

#[inline]
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < 2 {
        return Parsed::Incomplete(2);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Parsed::Bad("reserved bits set");
    }
    if b1 & 0x80 != 0 {
        return Parsed::Bad("masked server frame");
    }
    let opcode = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    let (len, hdr) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Parsed::Incomplete(4);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Parsed::Incomplete(10);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if opcode >= 0x8 && (len > 125 || !fin) {
        return Parsed::Bad("bad control frame");
    }
    if len > (1 << 30) {
        return Parsed::Bad("frame too large");
    }
    let end = hdr + len as usize;
    if buf.len() < end {
        return Parsed::Incomplete(end);
    }
    Parsed::Frame {
        fin,
        opcode,
        start: hdr,
        end,
    }
}

/// Minimal MessagePack writer for the few client maps the loadgen sends.
pub mod mp {
    pub fn map(out: &mut Vec<u8>, n: u8) {
        debug_assert!(n < 16);
        out.push(0x80 | n);
    }
    pub fn str(out: &mut Vec<u8>, s: &[u8]) {
        let n = s.len();
        if n < 32 {
            out.push(0xa0 | n as u8);
        } else if n < 256 {
            out.push(0xd9);
            out.push(n as u8);
        } else if n < 65536 {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(0xdb);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        out.extend_from_slice(s);
    }
    pub fn uint(out: &mut Vec<u8>, v: u8) {
        debug_assert!(v < 128);
        out.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let op = frame[0] & 0xf;
        let (len, mut at) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => unreachable!(),
            n => (n as usize, 2),
        };
        let mask = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
        at += 4;
        let p = frame[at..at + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        (op, p)
    }

    #[test]
    fn template_stamps_masked_timestamp() {
        for size in [18usize, 64, 125, 126, 300] {
            let mut payload = b"ab~T".to_vec();
            payload.extend(std::iter::repeat_n(b'0', 16));
            payload.resize(size.max(payload.len()), b'x');
            let mut t = Template::new(OP_TEXT, [1, 2, 3, 250], &payload);
            t.stamp(0x0123_4567_89ab_cdef);
            let (op, p) = unmask(&t.frame);
            assert_eq!(op, OP_TEXT);
            assert_eq!(p.len(), payload.len());
            let f = memchr::memmem::Finder::new(TS_MARKER);
            assert_eq!(find_ts(&f, &p), Some(0x0123_4567_89ab_cdef));
            assert!(p[TS_LEN + 2..].iter().all(|&b| b == b'x'));
        }
    }

    #[test]
    fn parses_split_and_joined_frames() {
        let mut buf = vec![0x81, 3, b'a', b'b', b'c', 0x82, 126, 0, 200];
        buf.extend(std::iter::repeat_n(7u8, 200));
        assert_eq!(
            parse(&buf),
            Parsed::Frame {
                fin: true,
                opcode: 1,
                start: 2,
                end: 5
            }
        );
        assert_eq!(parse(&buf[5..7]), Parsed::Incomplete(4));
        assert_eq!(parse(&buf[5..100]), Parsed::Incomplete(204));
        assert_eq!(
            parse(&buf[5..]),
            Parsed::Frame {
                fin: true,
                opcode: 2,
                start: 4,
                end: 204
            }
        );
        assert_eq!(parse(&[0x81]), Parsed::Incomplete(2));
        assert!(matches!(parse(&[0x81, 0x83, 0, 0, 0, 0]), Parsed::Bad(_)));
    }
}
