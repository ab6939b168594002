//! The server's real inbound path: a client's bytes, arriving in chunks of arbitrary sizes
//! (frames split mid-header, many frames in one read), go through the same code the
//! reactor runs ([`inbound::read_message`]: the connection's carry, tungstenite in server
//! role configured by [`inbound::context`], the shard core and the dialect the upgrade
//! routed to), on a one-shard simulator. Properties:
//!
//! - nothing panics, whatever the bytes and the dialect;
//! - the carry never holds more than one receive buffer ([`inbound::RECV_BYTES`]), and no
//!   message longer than the route's `message_bytes_max` reaches the core;
//! - on `/echo`, for a stream of masked messages (single frames or fragmented, pings
//!   between fragments) the client gets exactly those messages back in order, with a pong
//!   where each ping was, whatever the chunking;
//! - a breach (an unmasked frame, RSV bits, an unknown opcode, a fragmented or oversize
//!   control frame, a continuation with nothing to continue, a frame or message over the
//!   limit, invalid UTF-8 text) closes the connection with 1002, 1009 or 1007 (as
//!   `tests/e2e/hostile.rs` expects of the real server), and nothing sent after it reaches
//!   the dialect; a client's close frame is answered, and nothing after it is read either.
//!   On the other dialects: the connection ends closed, and no message after the breach
//!   reaches the core.
//!
//! Input: `[setup][n][n chunk sizes][body]`. `setup & 3` picks the path (`/echo`, `/rooms`,
//! `/cl5?ugi=g`, `/pairkit`); bit 2: the body is the client's bytes as they are (else a
//! script, below); bit 3: the first chunk came in with the request head (tungstenite starts
//! with it). Chunk size byte `s`: `s + 1` bytes below 192, else `(s - 191) * 512`; the sizes
//! repeat until the stream is out (no sizes: one chunk), and the stream ends with EOF.
//!
//! Script records: `[kind][len][len bytes]`, each becoming frames (masked with a key made
//! from the record) by `kind % 8`: 0 a text message (the bytes as lossy UTF-8); 1 a binary
//! message; 2 a binary and 7 a text message in `(kind >> 3) % 4 + 2` fragments, a ping
//! after the first when `kind & 0x80`; 3 a ping and 4 a pong (up to 125 bytes each); 5 a breach,
//! `(kind >> 3) % 10` choosing which (see [`breach`]); 6 a close frame, code 1000 (the record's printable ASCII, up to 100 bytes, as its
//! reason).

use std::io::{self, Read};

use crate::config::Config;
use crate::core::Upgrade;
use crate::reactor::inbound::{self, Carry, Step, WsIo, RECV_BYTES};
use crate::sim::{ClientId, Received, Sim};

/// The paths the script's setup picks from (all of huddle's dialects).
const PATHS: [&str; 4] = ["/echo", "/rooms", "/cl5?ugi=g", "/pairkit"];
/// `/echo`'s message limit here: small, so a script reaches it.
const ECHO_MESSAGE_BYTES_MAX: usize = 4096;

/// The client's bytes as a socket hands them out: what has arrived, then WouldBlock
/// until more arrives, then EOF once the client is done.
#[derive(Default)]
struct Arrivals {
    bytes: Vec<u8>,
    at: usize,
    eof: bool,
}

impl Read for Arrivals {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.bytes[self.at..];
        if rest.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

/// One connection: the client's bytes in, as the reactor holds them.
struct Conn {
    client: ClientId,
    ctx: Box<tungstenite::protocol::WebSocketContext>,
    arrivals: Arrivals,
    carry: Carry,
    drained: bool,
    scratch: Vec<u8>,
    out: Vec<u8>,
    message: Vec<u8>,
    message_bytes_max: usize,
    gone: bool,
}

impl Conn {
    /// `bytes` arrive (or, when `None`, the client's FIN): read as the reactor reads a
    /// readable socket, then the server runs until quiet.
    fn arrive(&mut self, sim: &mut Sim, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => {
                self.arrivals.bytes.drain(..self.arrivals.at);
                self.arrivals.at = 0;
                self.arrivals.bytes.extend_from_slice(bytes);
            }
            None => self.arrivals.eof = true,
        }
        self.drained = false;
        // A take-over rekeys the connection during the turn: read on with the new key.
        while !self.gone {
            let key = sim.key_of(self.client);
            self.read_until_stopped(sim, key);
            sim.run();
            if sim.key_of(self.client) == key {
                break;
            }
        }
    }

    fn read_until_stopped(&mut self, sim: &mut Sim, key: crate::core::SessionKey) {
        loop {
            let mut io = WsIo {
                stream: &mut self.arrivals,
                out: &mut self.out,
                drained: &mut self.drained,
                carry: &mut self.carry,
                scratch: &mut self.scratch,
            };
            let now = sim.now;
            let step = inbound::read_message(
                &mut sim.cores[0],
                key,
                &mut self.ctx,
                &mut io,
                &mut self.message,
                now,
            );
            assert!(
                self.carry.len() <= RECV_BYTES,
                "the carry holds {} bytes",
                self.carry.len()
            );
            match step {
                Step::Delivered => assert!(
                    self.message.len() <= self.message_bytes_max,
                    "a {}-byte message passed a {}-byte limit",
                    self.message.len(),
                    self.message_bytes_max
                ),
                Step::Again => {}
                Step::Stop => return,
                Step::Gone => {
                    self.gone = true;
                    sim.disconnect(self.client);
                    return;
                }
            }
        }
    }
}

/// A client frame: `first` is FIN, RSV and opcode; `len` the declared payload length
/// (the payload sent may be shorter); masked with `mask` unless it is `None`.
fn frame(first: u8, len: u64, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A whole frame: its declared length is its payload's.
fn whole(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    frame(first, payload.len() as u64, payload, Some(mask))
}

/// Breach `which` (of 10) built from `bytes`, with the close code it must bring.
fn breach(which: u8, bytes: &[u8], mask: [u8; 4], limit: usize) -> (Vec<u8>, u16) {
    let limit = limit as u64;
    match which % 10 {
        0 => (frame(0x81, bytes.len() as u64, bytes, None), 1002),
        1 => (whole(0xC2, bytes, mask), 1002),
        2 => (
            whole(if bytes.len() % 2 == 0 { 0xA2 } else { 0x92 }, bytes, mask),
            1002,
        ),
        3 => (whole(0x89, &[7; 126], mask), 1002),
        4 => (whole(0x09, bytes.get(..125).unwrap_or(bytes), mask), 1002),
        5 => {
            let opcode = [3, 4, 5, 6, 7, 11, 12, 13, 14, 15][bytes.len() % 10];
            (whole(0x80 | opcode, bytes, mask), 1002)
        }
        6 => (whole(0x80, bytes, mask), 1002),
        7 => {
            let declared = if bytes.len() % 2 == 0 {
                1 << 63
            } else {
                limit + 1 + bytes.len() as u64
            };
            (frame(0x82, declared, bytes, Some(mask)), 1009)
        }
        8 => {
            // Two fragments, each within the limit, together over it.
            let half = vec![b'h'; limit as usize / 2 + 1];
            let mut out = whole(0x02, &half, mask);
            out.extend(whole(0x80, &half, mask));
            (out, 1009)
        }
        _ => {
            let mut text = bytes.to_vec();
            text.extend_from_slice(b"\xc3\x28");
            (whole(0x81, &text, mask), 1007)
        }
    }
}

/// What a script makes: the client's stream and what `/echo` must answer.
#[derive(Default)]
struct Script {
    stream: Vec<u8>,
    /// The echo client's inbox, close reasons blanked.
    want: Vec<Received>,
    /// Messages the core may receive (those before the first breach or close).
    messages: u64,
    /// The stream breaks the protocol or closes: the connection must end closed.
    ends: bool,
}

impl Script {
    fn push(&mut self, bytes: Vec<u8>, want: Option<Received>) {
        self.stream.extend(bytes);
        if !self.ends {
            self.want.extend(want);
        }
    }

    fn message(&mut self, text: bool, payload: &[u8], pieces: usize, ping: bool, mask: [u8; 4]) {
        let (payload, opcode) = if text {
            (
                String::from_utf8_lossy(payload).into_owned().into_bytes(),
                0x1,
            )
        } else {
            (payload.to_vec(), 0x2)
        };
        let step = payload.len().div_ceil(pieces).max(1);
        let mut chunks: Vec<&[u8]> = payload.chunks(step).collect();
        chunks.resize(pieces.max(chunks.len()), &[]);
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.iter().enumerate() {
            let first = if i == 0 { opcode } else { 0 } | if i == last { 0x80 } else { 0 };
            self.push(whole(first, chunk, mask), None);
            if i == 0 && ping && last > 0 {
                self.push(
                    whole(0x89, b"between", mask),
                    Some(Received::Binary(vec![0xA])),
                );
            }
        }
        let echoed = if text {
            Received::Text(String::from_utf8(payload).expect("lossy UTF-8 is UTF-8"))
        } else {
            Received::Binary(payload)
        };
        if !self.ends {
            self.messages += 1;
        }
        self.push(Vec::new(), Some(echoed));
    }

    fn end(&mut self, bytes: Vec<u8>, code: u16) {
        self.push(bytes, Some(Received::Close(code, String::new())));
        self.ends = true;
    }
}

/// Reads script records into frames (the module's documentation has the format).
fn script(mut body: &[u8], limit: usize) -> Script {
    let mut s = Script::default();
    let mut index = 0u8;
    while let [kind, len, rest @ ..] = body {
        let (bytes, rest) = rest.split_at(usize::from(*len).min(rest.len()));
        body = rest;
        index = index.wrapping_add(1);
        let mask = [kind ^ 0x37, len ^ 0xfa, index, 0x3d];
        let pieces = usize::from(kind >> 3) % 4 + 2;
        match kind % 8 {
            0 => s.message(true, bytes, 1, false, mask),
            1 => s.message(false, bytes, 1, false, mask),
            2 => s.message(false, bytes, pieces, kind & 0x80 != 0, mask),
            7 => s.message(true, bytes, pieces, kind & 0x80 != 0, mask),
            3 => {
                let ping = bytes.get(..125).unwrap_or(bytes);
                s.push(whole(0x89, ping, mask), Some(Received::Binary(vec![0xA])));
            }
            4 => {
                let pong = bytes.get(..125).unwrap_or(bytes);
                s.push(whole(0x8A, pong, mask), None);
            }
            5 => {
                let (bytes, code) = breach(kind >> 3, bytes, mask, limit);
                s.end(bytes, code);
            }
            _ => {
                let mut close = 1000u16.to_be_bytes().to_vec();
                // A close frame is a control frame: its reason stays within 123 bytes.
                close.extend(bytes.iter().filter(|b| b.is_ascii_graphic()).take(100));
                s.end(whole(0x88, &close, mask), 1000);
            }
        }
    }
    s
}

/// The size of the next chunk from size byte `s`.
fn chunk_bytes(s: u8) -> usize {
    match s {
        0..192 => usize::from(s) + 1,
        _ => usize::from(s - 191) * 512,
    }
}

/// The `inbound` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_inbound(data: &[u8]) {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let (sizes, body) = rest.split_at(usize::from(n).min(rest.len()));
    let path = PATHS[usize::from(setup & 3)];
    let echo = setup & 3 == 0;
    let raw = setup & 4 != 0;

    let mut cfg = Config {
        seed: 7,
        ..Config::default()
    };
    cfg.echo.enabled = true;
    cfg.echo.message_bytes_max = ECHO_MESSAGE_BYTES_MAX;
    cfg.cloudlink.conns_per_ip_per_min = 0;
    let mut sim = Sim::new(1, cfg);
    let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
    let upgrade = Upgrade {
        path: path_only,
        query,
        origin: None,
        peer: None,
    };
    let routed = sim.cores[0]
        .route(&upgrade, sim.now)
        .unwrap_or_else(|r| panic!("{path} is refused: {}", r.status));
    let limit = routed.message_bytes_max;
    let client = sim.open_raw(0, routed.route);

    let s = if raw {
        Script {
            stream: body.to_vec(),
            ..Script::default()
        }
    } else {
        script(body, limit)
    };
    let mut chunks = Vec::new();
    let mut at = 0;
    for i in 0.. {
        if at >= s.stream.len() {
            break;
        }
        let len = sizes
            .get(i % sizes.len().max(1))
            .map_or(s.stream.len(), |&b| chunk_bytes(b));
        chunks.push(&s.stream[at..(at + len).min(s.stream.len())]);
        at += len;
    }
    let with_head = setup & 8 != 0 && !chunks.is_empty();
    let head = if with_head {
        chunks.remove(0).to_vec()
    } else {
        Vec::new()
    };
    let mut conn = Conn {
        client,
        ctx: inbound::context(head, limit),
        arrivals: Arrivals::default(),
        carry: Carry::default(),
        drained: false,
        scratch: vec![0; RECV_BYTES],
        out: Vec::new(),
        message: Vec::new(),
        message_bytes_max: limit,
        gone: false,
    };
    if with_head {
        // The reactor reads at once after the upgrade: the head's rest may hold messages.
        conn.arrive(&mut sim, Some(&[]));
    }
    for chunk in chunks {
        conn.arrive(&mut sim, Some(chunk));
    }
    let frames_in = sim.cores[0]
        .metrics()
        .frames_in
        .load(std::sync::atomic::Ordering::Relaxed);
    let inbox: Vec<Received> = sim
        .drain(client)
        .into_iter()
        .map(|r| match r {
            Received::Close(code, _) => Received::Close(code, String::new()),
            other => other,
        })
        .collect();
    if raw {
        conn.arrive(&mut sim, None);
        return;
    }
    assert!(
        frames_in <= s.messages,
        "{frames_in} messages reached the core of the {} sent before any breach or close",
        s.messages
    );
    if echo {
        assert_eq!(inbox, s.want, "the echo client's inbox");
    } else if s.ends {
        assert!(
            inbox.iter().any(|r| matches!(r, Received::Close(..))),
            "{path}: a breach or close ends in a close frame: {inbox:?}"
        );
    }
    if s.ends {
        assert!(
            !sim.is_connected(client),
            "{path}: the connection is closed"
        );
    }
    conn.arrive(&mut sim, None);
}
