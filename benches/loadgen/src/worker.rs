//! One load generator thread: a mio poll over many connections, each with one read buffer
//! (frames parsed in place) and, for senders, one pre-built masked message frame whose
//! timestamp bytes are patched per send. Nothing is allocated per message.
//!
//! `--pairkit`: each `--room` consecutive connections are one session, the first its host.
//! The host sends `session.create` and publishes the code it gets in `Shared::codes`; its
//! phones (on any worker) wait for that code, then `session.join`. Phones send
//! `input.widget_event` at `--rate`, hosts `control.broadcast` at `--host-rate` (two
//! pacers); deliveries are the inputs hosts receive and the `control.event`s phones
//! receive, each with its own latency histogram beside the overall one.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use memchr::memmem;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::json;
use super::ws::{self, mp, Parsed, Template, TS_LEN, TS_MARKER};
use super::{Codec, Plan, Shared};

const RBUF: usize = 16 * 1024;
/// Server error frames logged to stderr per worker (the rest are only counted).
const LOG_MAX: u32 = 8;

/// Counters a worker publishes for the coordinator (progress lines, phase changes).
#[derive(Default)]
pub struct Published {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub sent_win: AtomicU64,
    pub delivered_win: AtomicU64,
    pub expected_win: AtomicU64,
    pub ready: AtomicU64,
    /// Connections that ended before they were ready.
    pub failed: AtomicU64,
    pub errors: AtomicU64,
    /// 1 once the worker has sent its last message of the measured window.
    pub done_sending: AtomicU64,
}

#[derive(Default, Clone, Copy)]
pub struct Errors {
    pub connect: u64,
    pub upgrade: u64,
    pub closed: u64,
    pub eof: u64,
    pub io: u64,
    pub proto: u64,
    pub server: u64,
    pub join: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect
            + self.upgrade
            + self.closed
            + self.eof
            + self.io
            + self.proto
            + self.server
            + self.join
    }
    pub fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.upgrade += o.upgrade;
        self.closed += o.closed;
        self.eof += o.eof;
        self.io += o.io;
        self.proto += o.proto;
        self.server += o.server;
        self.join += o.join;
    }
}

#[derive(Default, Clone, Copy)]
pub struct Counts {
    pub sent: u64,
    pub delivered: u64,
    pub sent_win: u64,
    pub delivered_win: u64,
    pub expected_win: u64,
    /// Deliveries of messages sent during warm-up.
    pub delivered_warm: u64,
    /// Non-message frames received once ready (presence, snapshots, pongs...).
    pub other_frames: u64,
    /// Sends skipped because the connection was gone.
    pub skipped: u64,
    /// Sends that found earlier bytes still unwritten (client-side backlog).
    pub backlogged: u64,
    pub reads: u64,
    pub polls: u64,
    pub ready: u64,
    pub failed: u64,
    /// Connections that ended after they were ready (closed by the server, reset...).
    pub lost: u64,
    /// `--pairkit`: window deliveries of phones' inputs (at hosts) and of hosts'
    /// broadcasts (`control.event`s at phones).
    pub input_win: u64,
    pub event_win: u64,
}

/// `--pairkit`: the `system.error` codes of the protocol, counted one by one (any other
/// code is counted as `other`).
pub const PK_CODES: [&str; 16] = [
    "session_not_found",
    "session_full",
    "invalid_code",
    "rate_limited",
    "protocol_version_mismatch",
    "malformed_message",
    "payload_too_large",
    "player_not_found",
    "host_resume_rejected",
    "stale_input",
    "screen_not_found",
    "revision_conflict",
    "player_offline",
    "request_cancelled",
    "internal_error",
    "unauthorized",
];

/// `system.error`s received, per code of `PK_CODES`, then `other`.
pub type PkErrors = [u64; PK_CODES.len() + 1];

/// The slot of `code` in `PkErrors`.
fn pk_code_slot(code: &[u8]) -> usize {
    PK_CODES
        .iter()
        .position(|c| c.as_bytes() == code)
        .unwrap_or(PK_CODES.len())
}

pub struct WorkerResult {
    pub hist: Histogram<u64>,
    /// `--pairkit`: latency of phones' inputs at their host, and of hosts' broadcasts at
    /// their phones (window deliveries only, as `hist`).
    pub input_hist: Histogram<u64>,
    pub event_hist: Histogram<u64>,
    pub counts: Counts,
    pub errors: Errors,
    pub pk_errors: PkErrors,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Connecting,
    Upgrading,
    Handshaking,
    Joining,
    /// `--cl5`: the lobby was not there yet (its host is still creating it): join again.
    /// `--pairkit`: a phone whose host has no session code yet: look again.
    JoinRetry,
    /// `--cl5`, `--pairkit`: a join (or a look for the code) is scheduled.
    JoinWait,
    Ready,
    Closing,
    Dead,
}

struct Conn {
    /// Global connection index.
    id: usize,
    room: usize,
    /// Members of this connection's room (deliveries expected per message it sends).
    members: u64,
    mask: [u8; 4],
    st: St,
    stream: Option<TcpStream>,
    rbuf: Box<[u8]>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    /// The message frames a sender sends, in turn (none for a connection that only
    /// receives).
    tpls: Vec<Template>,
    next_tpl: usize,
}

/// Window bounds and per-thread accounting shared by every connection of a worker.
struct Ctx {
    plan: Arc<Plan>,
    /// `--pairkit`: where hosts publish their session codes for their phones.
    shared: Arc<Shared>,
    finder: memmem::Finder<'static>,
    m0: u64,
    m1: u64,
    hist: Histogram<u64>,
    input_hist: Histogram<u64>,
    event_hist: Histogram<u64>,
    counts: Counts,
    errors: Errors,
    pk_errors: PkErrors,
    logged: u32,
}

impl Ctx {
    fn log(&mut self, what: &str, id: usize, detail: &[u8]) {
        if self.logged < LOG_MAX {
            self.logged += 1;
            let shown = &detail[..detail.len().min(200)];
            eprintln!(
                "[loadgen] conn {id}: {what}: {}",
                String::from_utf8_lossy(shown).escape_debug()
            );
        }
    }
}

enum Outcome {
    Keep,
    /// The connection is finished (closed by the server, protocol error...).
    End,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memmem::find(hay, needle).is_some()
}

fn is_error_frame(p: &[u8]) -> bool {
    contains(p, b"\"t\":\"error\"")
        || contains(p, b"\xa1t\xa5error")
        || contains(p, b"\"opcode\":\"WARNING\"")
        || contains(p, b"\"opcode\":\"VIOLATION\"")
        || contains(p, b"\"type\":\"ERROR\"")
        || contains(p, b"\"type\":\"ID-TAKEN\"")
        || contains(p, b"\"type\":\"EXPIRE\"")
}

fn mask_for(id: usize) -> [u8; 4] {
    // splitmix64 of the index: a fixed, distinct-looking mask key per connection.
    let mut z = (id as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z as u32).to_le_bytes()
}

fn payload(plan: &Plan) -> Vec<u8> {
    let mut p = TS_MARKER.to_vec();
    p.extend(std::iter::repeat_n(b'0', TS_LEN - TS_MARKER.len()));
    p.resize(plan.size.max(TS_LEN), b'x');
    p
}

fn room_name(plan: &Plan, room: usize) -> String {
    format!("{}-{room}", plan.room_prefix)
}

/// `--peerjs`: a connection's id, and its partner's (none for an odd one out).
fn peerjs_id(id: usize) -> String {
    format!("lg{id}")
}

fn partner(plan: &Plan, id: usize) -> Option<usize> {
    Some(id ^ 1).filter(|&p| p < plan.conns)
}

/// Deliveries each message of connection `id` makes (in room `room`).
fn members(plan: &Plan, id: usize, room: usize) -> u64 {
    let in_room = (plan.conns - room * plan.room).min(plan.room) as u64;
    match plan.codec {
        // The relay delivers to every member but the sender.
        Codec::Cl5 => in_room - 1,
        Codec::Peerjs => u64::from(partner(plan, id).is_some()),
        // A host's broadcast reaches its phones; a phone's input, its host.
        Codec::Pairkit if is_host(plan, id) => in_room - 1,
        Codec::Pairkit => 1,
        _ => in_room,
    }
}

/// `--cl5`: the first connection of a lobby creates it. `--pairkit`: the first connection
/// of a session is its host.
fn is_host(plan: &Plan, id: usize) -> bool {
    id % plan.room == 0
}

/// `--pairkit`: a session code packed into a `Shared::codes` slot (0 = none yet): exactly
/// 4 ASCII letters or digits, as the protocol issues them.
fn pack_code(code: &[u8]) -> Option<u32> {
    let c: [u8; 4] = code.try_into().ok()?;
    c.iter()
        .all(u8::is_ascii_alphanumeric)
        .then(|| u32::from_le_bytes(c))
}

/// `--pairkit`: the code of session `room`, once its host has it.
fn session_code(shared: &Shared, room: usize) -> Option<[u8; 4]> {
    let v = shared.codes.get(room)?.load(Acquire);
    (v != 0).then(|| v.to_le_bytes())
}

/// `--pairkit`: a host's first message, or a phone's join (once its host has the code).
fn pairkit_setup_frame(id: usize, code: Option<[u8; 4]>, mask: [u8; 4], out: &mut Vec<u8>) {
    let m = match code {
        None => "{\"type\":\"session.create\"}".to_string(),
        Some(c) => format!(
            "{{\"type\":\"session.join\",\"code\":\"{}\",\"name\":\"lg{id}\"}}",
            String::from_utf8_lossy(&c)
        ),
    };
    ws::put_frame(out, ws::OP_TEXT, mask, m.as_bytes());
}

/// `--pairkit`: the payload object of a phone's input or a host's broadcast: the send time
/// in `t` (`~T` + 16 hex digits of ns since the loadgen's start) and, for `--size` above
/// that, a `pad` string, so that `t` and `pad` carry `--size` bytes as a rooms message's
/// `data` does.
fn pairkit_payload(plan: &Plan, phone: bool) -> String {
    let mut p = String::from("{");
    if phone {
        p.push_str("\"x\":0.1,\"y\":0.2,");
    }
    p.push_str("\"t\":\"");
    p.push_str(std::str::from_utf8(TS_MARKER).expect("ASCII"));
    p.push_str(&"0".repeat(TS_LEN - TS_MARKER.len()));
    p.push('"');
    if plan.size > TS_LEN {
        p.push_str(",\"pad\":\"");
        p.push_str(&"x".repeat(plan.size - TS_LEN));
        p.push('"');
    }
    p.push('}');
    p
}

fn cl5_frame(mask: [u8; 4], out: &mut Vec<u8>, opcode: &str, payload: &str) {
    let f = format!("{{\"opcode\":\"{opcode}\",\"payload\":{payload}}}");
    ws::put_frame(out, ws::OP_TEXT, mask, f.as_bytes());
}

fn cl5_lobby_op(plan: &Plan, id: usize, room: usize, mask: [u8; 4], out: &mut Vec<u8>) {
    let name = room_name(plan, room);
    if is_host(plan, id) {
        let p = format!(
            "{{\"name\":\"{name}\",\"max_players\":-1,\"password\":\"\",\"locked\":false,\"enable_relay\":true}}"
        );
        cl5_frame(mask, out, "CREATE_LOBBY", &p);
    } else {
        let p = format!("{{\"name\":\"{name}\",\"password\":\"\"}}");
        cl5_frame(mask, out, "JOIN_LOBBY", &p);
    }
}

/// The message frames a sender sends, in turn.
fn message_templates(plan: &Plan, id: usize, room: usize, mask: [u8; 4]) -> Vec<Template> {
    let data = payload(plan);
    let data = String::from_utf8(data).expect("the payload is ASCII");
    match plan.codec {
        Codec::Cl5 => {
            let m = format!("{{\"opcode\":\"G_MSG\",\"payload\":\"{data}\"}}");
            vec![Template::new(ws::OP_TEXT, mask, m.as_bytes())]
        }
        Codec::Peerjs => {
            let Some(dst) = partner(plan, id).map(peerjs_id) else {
                return Vec::new();
            };
            let (kind, sdp) = if id % 2 == 0 {
                ("OFFER", "offer")
            } else {
                ("ANSWER", "answer")
            };
            let first = format!(
                "{{\"type\":\"{kind}\",\"dst\":\"{dst}\",\"payload\":{{\"sdp\":{{\"type\":\"{sdp}\",\"sdp\":\"{data}\"}},\"type\":\"data\",\"connectionId\":\"dc_{id}\"}}}}"
            );
            let candidate = format!(
                "{{\"type\":\"CANDIDATE\",\"dst\":\"{dst}\",\"payload\":{{\"candidate\":{{\"candidate\":\"{data}\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0}},\"type\":\"data\",\"connectionId\":\"dc_{id}\"}}}}"
            );
            let mut tpls = vec![Template::new(ws::OP_TEXT, mask, first.as_bytes())];
            for _ in 0..plan.candidates {
                tpls.push(Template::new(ws::OP_TEXT, mask, candidate.as_bytes()));
            }
            tpls
        }
        Codec::Pairkit => {
            let host = is_host(plan, id);
            let payload = pairkit_payload(plan, !host);
            let m = if host {
                format!(
                    "{{\"type\":\"control.broadcast\",\"event\":\"tick\",\"payload\":{payload}}}"
                )
            } else {
                format!(
                    "{{\"type\":\"input.widget_event\",\"widget_id\":\"stick\",\"event_type\":\"move\",\"payload\":{payload}}}"
                )
            };
            vec![Template::new(ws::OP_TEXT, mask, m.as_bytes())]
        }
        _ => vec![message_template(plan, room, mask, data.as_bytes())],
    }
}

/// The message frame a sender sends (rooms dialect or raw peer payload).
fn message_template(plan: &Plan, room: usize, mask: [u8; 4], data: &[u8]) -> Template {
    match plan.codec {
        Codec::Peer => Template::new(ws::OP_BINARY, mask, data),
        Codec::Cl5 | Codec::Peerjs | Codec::Pairkit => {
            unreachable!("their templates are message_templates'")
        }
        Codec::Json => {
            let mut m = Vec::new();
            m.extend_from_slice(b"{\"v\":1,\"t\":\"room.message\",\"room\":\"");
            m.extend_from_slice(room_name(plan, room).as_bytes());
            m.extend_from_slice(b"\",\"p\":{\"type\":\"b\",\"data\":\"");
            m.extend_from_slice(data);
            m.extend_from_slice(b"\"}}");
            Template::new(ws::OP_TEXT, mask, &m)
        }
        Codec::Msgpack => {
            let mut m = Vec::new();
            mp::map(&mut m, 4);
            mp::str(&mut m, b"v");
            mp::uint(&mut m, 1);
            mp::str(&mut m, b"t");
            mp::str(&mut m, b"room.message");
            mp::str(&mut m, b"room");
            mp::str(&mut m, room_name(plan, room).as_bytes());
            mp::str(&mut m, b"p");
            mp::map(&mut m, 2);
            mp::str(&mut m, b"type");
            mp::str(&mut m, b"b");
            mp::str(&mut m, b"data");
            mp::str(&mut m, data);
            Template::new(ws::OP_BINARY, mask, &m)
        }
    }
}

fn handshake_frame(plan: &Plan, mask: [u8; 4], out: &mut Vec<u8>) {
    let codec = if plan.codec == Codec::Msgpack {
        "msgpack"
    } else {
        "json"
    };
    let hs = format!("{{\"v\":1,\"codecs\":[\"{codec}\"],\"project_id\":\"bench\"}}");
    ws::put_frame(out, ws::OP_TEXT, mask, hs.as_bytes());
}

fn join_frame(plan: &Plan, room: usize, mask: [u8; 4], out: &mut Vec<u8>) {
    let name = room_name(plan, room);
    if plan.codec == Codec::Msgpack {
        let mut m = Vec::new();
        mp::map(&mut m, 4);
        mp::str(&mut m, b"v");
        mp::uint(&mut m, 1);
        mp::str(&mut m, b"t");
        mp::str(&mut m, b"room.join_or_create");
        mp::str(&mut m, b"rid");
        mp::str(&mut m, b"1");
        mp::str(&mut m, b"p");
        mp::map(&mut m, 2);
        mp::str(&mut m, b"room_type");
        mp::str(&mut m, b"echo_room");
        mp::str(&mut m, b"room");
        mp::str(&mut m, name.as_bytes());
        ws::put_frame(out, ws::OP_BINARY, mask, &m);
    } else {
        let j = format!(
            "{{\"v\":1,\"t\":\"room.join_or_create\",\"rid\":\"1\",\"p\":{{\"room_type\":\"echo_room\",\"room\":\"{name}\"}}}}"
        );
        ws::put_frame(out, ws::OP_TEXT, mask, j.as_bytes());
    }
}

impl Conn {
    /// Writes what is queued; false when the connection failed.
    fn flush(&mut self, ctx: &mut Ctx) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        while self.wpos < self.wbuf.len() {
            match stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => {
                    ctx.errors.io += 1;
                    return false;
                }
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    if self.st != St::Closing {
                        ctx.errors.io += 1;
                        ctx.log("write", self.id, e.to_string().as_bytes());
                    }
                    return false;
                }
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        true
    }

    /// Sends the message frame stamped with `ts`; false when the connection failed.
    fn send(&mut self, ctx: &mut Ctx, ts: u64) -> bool {
        let Conn {
            tpls,
            next_tpl,
            stream,
            wbuf,
            wpos,
            ..
        } = self;
        let Some(stream) = stream.as_mut() else {
            return false;
        };
        if tpls.is_empty() {
            return false;
        }
        let n = tpls.len();
        let tpl = &mut tpls[*next_tpl % n];
        *next_tpl += 1;
        tpl.stamp(ts);
        if *wpos < wbuf.len() {
            ctx.counts.backlogged += 1;
            wbuf.extend_from_slice(&tpl.frame);
            return self.flush(ctx);
        }
        let frame = &tpl.frame;
        let mut at = 0;
        while at < frame.len() {
            match stream.write(&frame[at..]) {
                Ok(0) => {
                    ctx.errors.io += 1;
                    return false;
                }
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    ctx.counts.backlogged += 1;
                    wbuf.extend_from_slice(&frame[at..]);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    ctx.errors.io += 1;
                    ctx.log("write", self.id, e.to_string().as_bytes());
                    return false;
                }
            }
        }
        true
    }

    /// Reads until the socket is drained, handling every complete frame.
    fn on_readable(&mut self, ctx: &mut Ctx, start: Instant) -> Outcome {
        loop {
            if self.rlen == self.rbuf.len() {
                // Only an over-long HTTP head gets here: frames grow the buffer as needed.
                ctx.errors.upgrade += 1;
                ctx.log("upgrade", self.id, b"response head too long");
                return Outcome::End;
            }
            let Some(stream) = self.stream.as_mut() else {
                return Outcome::End;
            };
            match stream.read(&mut self.rbuf[self.rlen..]) {
                Ok(0) => {
                    if self.st != St::Closing {
                        ctx.errors.eof += 1;
                        ctx.log("eof", self.id, format!("in state {:?}", self.st).as_bytes());
                    }
                    return Outcome::End;
                }
                Ok(n) => {
                    ctx.counts.reads += 1;
                    self.rlen += n;
                    let now = start.elapsed().as_nanos() as u64;
                    if let Outcome::End = self.process(ctx, now) {
                        return Outcome::End;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Outcome::Keep,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    if self.st != St::Closing {
                        ctx.errors.io += 1;
                        ctx.log("read", self.id, e.to_string().as_bytes());
                    }
                    return Outcome::End;
                }
            }
        }
    }

    fn process(&mut self, ctx: &mut Ctx, now: u64) -> Outcome {
        let mut pos = 0;
        if self.st == St::Upgrading {
            let Some(end) = memmem::find(&self.rbuf[..self.rlen], b"\r\n\r\n") else {
                return Outcome::Keep;
            };
            let head = &self.rbuf[..end + 4];
            if !ws::upgrade_ok(head) {
                ctx.errors.upgrade += 1;
                ctx.log("upgrade refused", self.id, head);
                return Outcome::End;
            }
            pos = end + 4;
            match ctx.plan.codec {
                Codec::Peer => {
                    self.st = St::Ready;
                    ctx.counts.ready += 1;
                }
                Codec::Cl5 => {
                    let init = format!("{{\"username\":\"lg{}\"}}", self.id);
                    cl5_frame(self.mask, &mut self.wbuf, "INIT", &init);
                    self.st = St::Handshaking;
                }
                // The broker says OPEN.
                Codec::Peerjs => self.st = St::Joining,
                // A host creates its session; a phone joins it once the host has the code.
                Codec::Pairkit if is_host(&ctx.plan, self.id) => {
                    pairkit_setup_frame(self.id, None, self.mask, &mut self.wbuf);
                    self.st = St::Joining;
                }
                Codec::Pairkit => match session_code(&ctx.shared, self.room) {
                    Some(code) => {
                        pairkit_setup_frame(self.id, Some(code), self.mask, &mut self.wbuf);
                        self.st = St::Joining;
                    }
                    None => self.st = St::JoinRetry,
                },
                Codec::Json | Codec::Msgpack => {
                    handshake_frame(&ctx.plan, self.mask, &mut self.wbuf);
                    self.st = St::Handshaking;
                }
            }
        }
        let mut outcome = Outcome::Keep;
        loop {
            match ws::parse(&self.rbuf[pos..self.rlen]) {
                Parsed::Frame {
                    fin: _,
                    opcode,
                    start,
                    end,
                } => {
                    let Conn {
                        rbuf,
                        wbuf,
                        st,
                        id,
                        room,
                        mask,
                        ..
                    } = self;
                    let p = &rbuf[pos + start..pos + end];
                    pos += end;
                    let r = on_frame(ctx, *id, *room, *mask, st, wbuf, opcode, p, now);
                    if let Outcome::End = r {
                        outcome = Outcome::End;
                        break;
                    }
                }
                Parsed::Incomplete(need) => {
                    if need > self.rbuf.len() {
                        // A frame bigger than the buffer: grow once (not per message).
                        let mut bigger = vec![0u8; need.next_power_of_two()].into_boxed_slice();
                        bigger[..self.rlen - pos].copy_from_slice(&self.rbuf[pos..self.rlen]);
                        self.rbuf = bigger;
                        self.rlen -= pos;
                        pos = 0;
                    }
                    break;
                }
                Parsed::Bad(why) => {
                    ctx.errors.proto += 1;
                    ctx.log("protocol", self.id, why.as_bytes());
                    outcome = Outcome::End;
                    break;
                }
            }
        }
        if pos > 0 {
            self.rbuf.copy_within(pos..self.rlen, 0);
            self.rlen -= pos;
        }
        if self.wpos < self.wbuf.len() && !self.flush(ctx) {
            return Outcome::End;
        }
        outcome
    }
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn on_frame(
    ctx: &mut Ctx,
    id: usize,
    room: usize,
    mask: [u8; 4],
    st: &mut St,
    wbuf: &mut Vec<u8>,
    opcode: u8,
    p: &[u8],
    now: u64,
) -> Outcome {
    match opcode {
        ws::OP_TEXT if ctx.plan.codec == Codec::Pairkit => {
            return on_pairkit_frame(ctx, id, room, st, p, now);
        }
        ws::OP_TEXT | ws::OP_BINARY | ws::OP_CONT => {
            if let Some(ts) = ws::find_ts(&ctx.finder, p) {
                ctx.counts.delivered += 1;
                if ts >= ctx.m0 && ts < ctx.m1 {
                    ctx.counts.delivered_win += 1;
                    ctx.hist.saturating_record(now.saturating_sub(ts).max(1));
                } else if ts < ctx.m0 {
                    ctx.counts.delivered_warm += 1;
                }
                return Outcome::Keep;
            }
            match (*st, ctx.plan.codec) {
                (St::Handshaking, Codec::Cl5) => {
                    if contains(p, b"\"INIT_OK\"") {
                        cl5_lobby_op(&ctx.plan, id, room, mask, wbuf);
                        *st = St::Joining;
                    } else if is_error_frame(p) {
                        // NEW_LOBBY and the like may come first.
                        ctx.errors.server += 1;
                        ctx.log("INIT refused", id, p);
                        return Outcome::End;
                    }
                }
                (St::Joining, Codec::Cl5) => {
                    let ack = contains(p, b"\"CREATE_ACK\"") || contains(p, b"\"JOIN_ACK\"");
                    if ack && contains(p, b"\"payload\":\"ok\"") {
                        *st = St::Ready;
                        ctx.counts.ready += 1;
                    } else if ack && contains(p, b"\"payload\":\"not found\"") {
                        *st = St::JoinRetry;
                    } else if ack || is_error_frame(p) {
                        ctx.errors.join += 1;
                        ctx.log("lobby refused", id, p);
                        return Outcome::End;
                    }
                    // TRANSITION, NEW_HOST, NEW_LOBBY...: on the way.
                }
                (St::Joining, Codec::Peerjs) => {
                    if p == b"{\"type\":\"OPEN\"}" {
                        *st = St::Ready;
                        ctx.counts.ready += 1;
                    } else {
                        ctx.errors.join += 1;
                        ctx.log("broker refused", id, p);
                        return Outcome::End;
                    }
                }
                (St::Handshaking, _) => {
                    if contains(p, b"handshake.ok") {
                        join_frame(&ctx.plan, room, mask, wbuf);
                        *st = St::Joining;
                    } else {
                        ctx.errors.server += 1;
                        ctx.log("handshake refused", id, p);
                        return Outcome::End;
                    }
                }
                (St::Joining, _) if contains(p, b"rpc.response") => {
                    if contains(p, b"\"ok\":true") || contains(p, b"\xa2ok\xc3") {
                        *st = St::Ready;
                        ctx.counts.ready += 1;
                    } else {
                        ctx.errors.join += 1;
                        ctx.log("join refused", id, p);
                        return Outcome::End;
                    }
                }
                _ => {
                    ctx.counts.other_frames += 1;
                    if is_error_frame(p) {
                        ctx.errors.server += 1;
                        ctx.log("server error frame", id, p);
                    }
                }
            }
        }
        ws::OP_PING => {
            ws::put_frame(wbuf, ws::OP_PONG, mask, p);
        }
        ws::OP_PONG => {}
        ws::OP_CLOSE => {
            if *st != St::Closing {
                ctx.errors.closed += 1;
                let code = if p.len() >= 2 {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    1005
                };
                let reason = p.get(2..).unwrap_or_default();
                ctx.log(
                    "closed by server",
                    id,
                    format!("code {code} {}", String::from_utf8_lossy(reason)).as_bytes(),
                );
                ws::put_frame(wbuf, ws::OP_CLOSE, mask, &p[..p.len().min(2)]);
            }
            // The state stays as it was: `kill` counts a connection lost before it was
            // ready as failed.
            return Outcome::End;
        }
        _ => {
            ctx.errors.proto += 1;
            ctx.log("protocol", id, b"unknown opcode");
            return Outcome::End;
        }
    }
    Outcome::Keep
}

/// `--pairkit`: what a delivery was.
#[derive(Clone, Copy)]
enum Delivery {
    /// A phone's `input.widget_event`, at its host.
    Input,
    /// A host's `control.broadcast`, as a `control.event` at one of its phones.
    Event,
}

/// `--pairkit`: the send time in a delivered message's `payload.t`.
fn pairkit_ts(finder: &memmem::Finder<'_>, p: &[u8]) -> Option<u64> {
    let t = json::str_field(json::field(p, b"payload")?, b"t")?;
    if t.len() != TS_LEN || !t.starts_with(TS_MARKER) {
        return None;
    }
    ws::find_ts(finder, t)
}

/// `--pairkit`: one text frame from the relay (JSON, read by its members, in any order).
fn on_pairkit_frame(
    ctx: &mut Ctx,
    id: usize,
    room: usize,
    st: &mut St,
    p: &[u8],
    now: u64,
) -> Outcome {
    let host = is_host(&ctx.plan, id);
    let ty = json::str_field(p, b"type").unwrap_or_default();
    let delivery = match (ty, host) {
        (b"input.widget_event", true) => Some(Delivery::Input),
        (b"control.event", false) => Some(Delivery::Event),
        _ => None,
    };
    if let (Some(kind), St::Ready) = (delivery, *st) {
        let Some(ts) = pairkit_ts(&ctx.finder, p) else {
            ctx.errors.proto += 1;
            ctx.log("no payload.t", id, p);
            return Outcome::Keep;
        };
        ctx.counts.delivered += 1;
        if ts >= ctx.m0 && ts < ctx.m1 {
            let lat = now.saturating_sub(ts).max(1);
            ctx.counts.delivered_win += 1;
            ctx.hist.saturating_record(lat);
            match kind {
                Delivery::Input => {
                    ctx.counts.input_win += 1;
                    ctx.input_hist.saturating_record(lat);
                }
                Delivery::Event => {
                    ctx.counts.event_win += 1;
                    ctx.event_hist.saturating_record(lat);
                }
            }
        } else if ts < ctx.m0 {
            ctx.counts.delivered_warm += 1;
        }
        return Outcome::Keep;
    }
    match (ty, *st) {
        (b"system.error", _) => {
            let code = json::str_field(p, b"code").unwrap_or_default();
            ctx.pk_errors[pk_code_slot(code)] += 1;
            if *st == St::Joining {
                ctx.errors.join += 1;
                ctx.log("setup refused", id, p);
                return Outcome::End;
            }
            ctx.errors.server += 1;
            ctx.log("system.error", id, p);
        }
        (b"session.created", St::Joining) if host => {
            let code = json::str_field(p, b"code").and_then(pack_code);
            let Some(code) = code else {
                ctx.errors.join += 1;
                ctx.log("session.created without a 4-character code", id, p);
                return Outcome::End;
            };
            match ctx.shared.codes.get(room) {
                Some(slot) => slot.store(code, Release),
                None => {
                    ctx.errors.join += 1;
                    ctx.log("no code slot for session", id, p);
                    return Outcome::End;
                }
            }
            *st = St::Ready;
            ctx.counts.ready += 1;
        }
        (b"session.joined", St::Joining) if !host => {
            *st = St::Ready;
            ctx.counts.ready += 1;
        }
        (_, St::Joining) if ty.is_empty() => {
            ctx.errors.proto += 1;
            ctx.log("frame without a type", id, p);
            return Outcome::End;
        }
        // player.join at hosts, a session.ended before the close...
        _ => ctx.counts.other_frames += 1,
    }
    Outcome::Keep
}

pub struct Worker {
    idx: usize,
    shared: Arc<Shared>,
    poll: Poll,
    conns: Vec<Conn>,
    /// The connections that send, by pace: one pacer at `--rate`, and with `--pairkit` a
    /// second one for the hosts at `--host-rate`.
    pacers: Vec<Pacer>,
    /// `--cl5`: (when, local index) of joins to send again. `--pairkit`: of phones to look
    /// again for their host's session code.
    rejoins: std::collections::VecDeque<(u64, usize)>,
    ctx: Ctx,
}

/// Sends of one group of connections at one rate: slots evenly spaced over its senders.
struct Pacer {
    /// Local indices of the connections that send.
    senders: Vec<usize>,
    slot_ns: f64,
    /// Offset of this worker's slots (workers interleave theirs).
    phase: f64,
    slot: u64,
    /// No more sends: past the measured window, or nothing to send.
    done: bool,
}

impl Pacer {
    fn new(senders: Vec<usize>, rate: f64, idx: usize, threads: usize) -> Pacer {
        let done = senders.is_empty() || rate <= 0.0;
        let slot_ns = if done {
            f64::INFINITY
        } else {
            1e9 / (senders.len() as f64 * rate)
        };
        Pacer {
            senders,
            slot_ns,
            phase: if done {
                0.0
            } else {
                slot_ns * idx as f64 / threads as f64
            },
            slot: 0,
            done,
        }
    }
}

/// `--cl5`: how long a member waits before joining a lobby its host has not created yet.
const REJOIN_NS: u64 = 20_000_000;
/// `--pairkit`: how often a phone looks for its host's session code.
const CODE_WAIT_NS: u64 = 5_000_000;

impl Worker {
    pub fn new(idx: usize, plan: Arc<Plan>, shared: Arc<Shared>) -> std::io::Result<Worker> {
        let mut conns = Vec::new();
        let mut senders = Vec::new();
        let mut host_senders = Vec::new();
        for id in (idx..plan.conns).step_by(plan.threads) {
            let room = id / plan.room;
            let members = members(&plan, id, room);
            let mask = mask_for(id);
            let tpls = if plan.is_sender(id) {
                message_templates(&plan, id, room, mask)
            } else {
                Vec::new()
            };
            if tpls.is_empty() {
            } else if plan.codec == Codec::Pairkit && is_host(&plan, id) {
                host_senders.push(conns.len());
            } else {
                senders.push(conns.len());
            }
            conns.push(Conn {
                id,
                room,
                members,
                mask,
                st: St::Connecting,
                stream: None,
                rbuf: Box::default(),
                rlen: 0,
                wbuf: Vec::new(),
                wpos: 0,
                tpls,
                next_tpl: 0,
            });
        }
        let hist = || Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        let mut pacers = vec![Pacer::new(senders, plan.rate, idx, plan.threads)];
        if plan.codec == Codec::Pairkit {
            pacers.push(Pacer::new(host_senders, plan.host_rate, idx, plan.threads));
        }
        Ok(Worker {
            idx,
            shared: shared.clone(),
            poll: Poll::new()?,
            conns,
            pacers,
            rejoins: Default::default(),
            ctx: Ctx {
                plan,
                shared,
                finder: memmem::Finder::new(TS_MARKER),
                m0: u64::MAX,
                m1: u64::MAX,
                hist: hist(),
                input_hist: hist(),
                event_hist: hist(),
                counts: Counts::default(),
                errors: Errors::default(),
                pk_errors: PkErrors::default(),
                logged: 0,
            },
        })
    }

    fn now(&self) -> u64 {
        self.shared.start.elapsed().as_nanos() as u64
    }

    fn publish(&self) {
        let p = &self.shared.workers[self.idx];
        let c = &self.ctx.counts;
        p.sent.store(c.sent, Relaxed);
        p.delivered.store(c.delivered, Relaxed);
        p.sent_win.store(c.sent_win, Relaxed);
        p.delivered_win.store(c.delivered_win, Relaxed);
        p.expected_win.store(c.expected_win, Relaxed);
        p.ready.store(c.ready, Relaxed);
        p.failed.store(c.failed, Relaxed);
        p.errors.store(self.ctx.errors.total(), Relaxed);
    }

    fn kill(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
            let _ = s.shutdown(Shutdown::Both);
        }
        match c.st {
            St::Ready => self.ctx.counts.lost += 1,
            St::Closing | St::Dead => {}
            _ => self.ctx.counts.failed += 1,
        }
        c.st = St::Dead;
        c.rbuf = Box::default();
        c.wbuf = Vec::new();
        c.wpos = 0;
    }

    fn connect(&mut self, i: usize) {
        let plan = &self.ctx.plan;
        let c = &mut self.conns[i];
        match TcpStream::connect(plan.addr) {
            Ok(mut s) => {
                let _ = s.set_nodelay(true);
                if let Err(e) = self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    self.ctx.errors.connect += 1;
                    self.ctx.log("register", c.id, e.to_string().as_bytes());
                    self.kill(i);
                    return;
                }
                c.stream = Some(s);
                c.rbuf = vec![0u8; RBUF].into_boxed_slice();
                c.st = St::Connecting;
            }
            Err(e) => {
                self.ctx.errors.connect += 1;
                self.ctx.log("connect", c.id, e.to_string().as_bytes());
                self.kill(i);
            }
        }
    }

    /// A connection in `Connecting` got an event: connected (send the upgrade) or failed.
    fn on_connecting(&mut self, i: usize) -> bool {
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_ref() else {
            return false;
        };
        match s.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.ctx.errors.connect += 1;
                self.ctx.log("connect", c.id, e.to_string().as_bytes());
                return false;
            }
        }
        match s.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotConnected => return true,
            Err(e) => {
                self.ctx.errors.connect += 1;
                self.ctx.log("connect", c.id, e.to_string().as_bytes());
                return false;
            }
        }
        let plan = &self.ctx.plan;
        let path = match plan.codec {
            Codec::Peer => format!("{}room/{}", plan.base_path, room_name(plan, c.room)),
            Codec::Peerjs => format!(
                "{}peerjs?key=peerjs&id={}&token=t{}&version=1.5.4",
                plan.base_path,
                peerjs_id(c.id),
                c.id
            ),
            _ => plan.base_path.clone(),
        };
        c.wbuf
            .extend_from_slice(&ws::upgrade_request(&plan.host, &path));
        c.st = St::Upgrading;
        c.flush(&mut self.ctx)
    }

    fn on_event(&mut self, i: usize, readable: bool, writable: bool) {
        if self.conns[i].st == St::Connecting && !self.on_connecting(i) {
            return self.kill(i);
        }
        if self.conns[i].st == St::Connecting {
            return;
        }
        let start = self.shared.start;
        let c = &mut self.conns[i];
        if writable && c.wpos < c.wbuf.len() && !c.flush(&mut self.ctx) {
            return self.kill(i);
        }
        if readable {
            if let Outcome::End = c.on_readable(&mut self.ctx, start) {
                if c.wpos < c.wbuf.len() {
                    c.flush(&mut self.ctx);
                }
                return self.kill(i);
            }
        }
        if c.st == St::JoinRetry {
            c.st = St::JoinWait;
            let wait = match self.ctx.plan.codec {
                Codec::Pairkit => CODE_WAIT_NS,
                _ => REJOIN_NS,
            };
            let due = self.now() + wait;
            self.rejoins.push_back((due, i));
        }
    }

    /// `--cl5`: joins again the lobbies that were not there yet. `--pairkit`: joins the
    /// phones whose host now has its session code (the others wait again). Answers the
    /// next one's due time.
    fn rejoin_due(&mut self, now: u64) -> Option<u64> {
        while let Some(&(due, i)) = self.rejoins.front() {
            if due > now {
                return Some(due);
            }
            self.rejoins.pop_front();
            let plan = self.ctx.plan.clone();
            let c = &mut self.conns[i];
            if c.st != St::JoinWait {
                continue;
            }
            if plan.codec == Codec::Pairkit {
                let Some(code) = session_code(&self.ctx.shared, c.room) else {
                    self.rejoins.push_back((now + CODE_WAIT_NS, i));
                    continue;
                };
                pairkit_setup_frame(c.id, Some(code), c.mask, &mut c.wbuf);
            } else {
                cl5_lobby_op(&plan, c.id, c.room, c.mask, &mut c.wbuf);
            }
            c.st = St::Joining;
            if !c.flush(&mut self.ctx) {
                self.kill(i);
            }
        }
        None
    }

    /// Sends what pacer `k` has due at `now`; false once it is done. `wake_at` is lowered to
    /// its next slot.
    fn send_due(&mut self, k: usize, t0: u64, wake_at: &mut u64) -> bool {
        loop {
            let p = &mut self.pacers[k];
            if p.done {
                return false;
            }
            let due = t0 + (p.slot as f64 * p.slot_ns + p.phase) as u64;
            if due >= self.ctx.m1 {
                p.done = true;
                return false;
            }
            let ts = self.shared.start.elapsed().as_nanos() as u64;
            if due > ts {
                *wake_at = (*wake_at).min(due);
                return true;
            }
            let i = p.senders[(p.slot % p.senders.len() as u64) as usize];
            p.slot += 1;
            let c = &mut self.conns[i];
            if c.st != St::Ready {
                self.ctx.counts.skipped += 1;
                continue;
            }
            self.ctx.counts.sent += 1;
            if ts >= self.ctx.m0 && ts < self.ctx.m1 {
                self.ctx.counts.sent_win += 1;
                self.ctx.counts.expected_win += c.members;
            }
            if !c.send(&mut self.ctx, ts) {
                self.kill(i);
            }
        }
    }

    pub fn run(mut self) -> WorkerResult {
        let plan = self.ctx.plan.clone();
        if plan.batch_ns > 0 {
            // Sleep to the tick precisely (the default timer slack is 50 µs).
            // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
        }
        let mut events = Events::with_capacity(1024);
        let local = self.conns.len();
        // Connect pacing: this worker's share of the global connect rate.
        let connect_gap_ns = (1e9 * plan.threads as f64 / plan.connect_rate.max(1.0)) as u64;
        let mut next_connect = 0usize;
        let mut connect_at = self.now();
        let mut t0 = 0u64;
        let mut sending_done = self.pacers.iter().all(|p| p.done);
        let mut last_publish = 0u64;
        let mut last_poll = 0u64;
        loop {
            let now = self.now();
            // Connect, paced, with a bound on connections still in setup.
            let settled = (self.ctx.counts.ready + self.ctx.counts.failed) as usize;
            let mut in_setup = next_connect.saturating_sub(settled);
            while next_connect < local && now >= connect_at && in_setup < plan.max_pending {
                self.connect(next_connect);
                next_connect += 1;
                connect_at += connect_gap_ns;
                in_setup += 1;
            }
            // Send what is due.
            if t0 == 0 {
                let t = self.shared.t0.load(Acquire);
                if t != 0 {
                    t0 = t;
                    self.ctx.m0 = self.shared.m0.load(Relaxed);
                    self.ctx.m1 = self.shared.m1.load(Relaxed);
                }
            }
            let mut wake_at = now + 50_000_000;
            if t0 != 0 && !sending_done {
                let mut any = false;
                for k in 0..self.pacers.len() {
                    any |= self.send_due(k, t0, &mut wake_at);
                }
                sending_done = !any;
            }
            if sending_done {
                self.shared.workers[self.idx].done_sending.store(1, Release);
            }
            if next_connect < local {
                wake_at = wake_at.min(connect_at.max(now + 100_000));
            }
            if let Some(due) = self.rejoin_due(now) {
                wake_at = wake_at.min(due);
            }
            if now >= last_publish + 1_000_000 {
                self.publish();
                last_publish = now;
            }
            if self.shared.stop.load(Acquire) {
                break;
            }
            let now = self.now();
            let timeout = if plan.batch_ns > 0 {
                // Poll on a tick: arrivals pile up between polls (fewer wakeups, for us
                // and for the server, which then has no sleeping reader to wake) and the
                // sends due are made on the tick.
                let tick = last_poll + plan.batch_ns;
                if wake_at <= tick + plan.batch_ns {
                    if tick > now {
                        std::thread::sleep(Duration::from_nanos(tick - now));
                    }
                    Duration::ZERO
                } else {
                    Duration::from_nanos(wake_at.saturating_sub(now))
                }
            } else {
                Duration::from_nanos(wake_at.saturating_sub(now))
            };
            self.ctx.counts.polls += 1;
            let polled = self.poll.poll(&mut events, Some(timeout));
            last_poll = self.now();
            if let Err(e) = polled {
                if e.kind() != ErrorKind::Interrupted {
                    eprintln!("[loadgen] poll: {e}");
                    break;
                }
            }
            for ev in events.iter() {
                let i = ev.token().0;
                let (r, w) = (
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable(),
                );
                self.on_event(i, r, w);
            }
        }
        self.close_all(&mut events);
        self.publish();
        WorkerResult {
            hist: self.ctx.hist,
            input_hist: self.ctx.input_hist,
            event_hist: self.ctx.event_hist,
            counts: self.ctx.counts,
            errors: self.ctx.errors,
            pk_errors: self.ctx.pk_errors,
        }
    }

    /// Sends close 1000 on every live connection and waits briefly for the server's close.
    fn close_all(&mut self, events: &mut Events) {
        let mut open = 0;
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            if c.stream.is_none() {
                continue;
            }
            if c.st == St::Connecting {
                self.kill(i);
                continue;
            }
            ws::put_frame(&mut c.wbuf, ws::OP_CLOSE, c.mask, &1000u16.to_be_bytes());
            c.st = St::Closing;
            if c.flush(&mut self.ctx) {
                open += 1;
            } else {
                self.kill(i);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.poll.poll(events, Some(left)).is_err() {
                break;
            }
            for ev in events.iter() {
                let i = ev.token().0;
                let c = &mut self.conns[i];
                if c.stream.is_none() {
                    continue;
                }
                if ev.is_writable() && c.wpos < c.wbuf.len() {
                    c.flush(&mut self.ctx);
                }
                if let Outcome::End = c.on_readable(&mut self.ctx, self.shared.start) {
                    self.kill(i);
                    open -= 1;
                }
            }
        }
        for i in 0..self.conns.len() {
            if self.conns[i].stream.is_some() {
                self.kill(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_for(codec: Codec, conns: usize, room: usize) -> Arc<Plan> {
        Arc::new(Plan {
            addr: "127.0.0.1:9".parse().unwrap(),
            host: "127.0.0.1:9".into(),
            base_path: "/rooms".into(),
            codec,
            conns,
            room,
            rate: 1.0,
            senders: conns,
            size: 64,
            connect_rate: 1.0,
            max_pending: 1,
            threads: 1,
            room_prefix: "t".into(),
            candidates: 4,
            host_rate: 1.0,
            batch_ns: 0,
        })
    }

    fn plan() -> Arc<Plan> {
        plan_for(Codec::Json, 10, 10)
    }

    fn shared_for(sessions: usize) -> Arc<Shared> {
        Arc::new(Shared {
            start: Instant::now(),
            t0: AtomicU64::new(0),
            m0: AtomicU64::new(u64::MAX),
            m1: AtomicU64::new(u64::MAX),
            stop: Default::default(),
            workers: Vec::new(),
            codes: (0..sessions).map(|_| Default::default()).collect(),
        })
    }

    fn ctx_for(plan: Arc<Plan>, shared: Arc<Shared>, m0: u64, m1: u64) -> Ctx {
        let hist = || Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        Ctx {
            plan,
            shared,
            finder: memmem::Finder::new(TS_MARKER),
            m0,
            m1,
            hist: hist(),
            input_hist: hist(),
            event_hist: hist(),
            counts: Counts::default(),
            errors: Errors::default(),
            pk_errors: PkErrors::default(),
            logged: LOG_MAX,
        }
    }

    fn server_frame(out: &mut Vec<u8>, opcode: u8, p: &[u8]) {
        out.push(0x80 | opcode);
        if p.len() < 126 {
            out.push(p.len() as u8);
        } else if p.len() < 65536 {
            out.push(126);
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(p.len() as u64).to_be_bytes());
        }
        out.extend_from_slice(p);
    }

    /// Frames split across reads at every size, several per read, one bigger than the
    /// buffer, then a server close: every delivery counted once, the close seen.
    #[test]
    fn frames_in_any_chunking() {
        for chunk in [1usize, 2, 3, 7, 100, 4096, 1 << 20] {
            let mut stream = Vec::new();
            for i in 0..50u64 {
                let msg = format!(
                    "{{\"v\":1,\"t\":\"room.message\",\"room\":\"t-0\",\"p\":{{\"type\":\"b\",\"data\":\"~T{:016x}xxxx\",\"from\":\"c\"}}}}",
                    1000 + i
                );
                server_frame(&mut stream, ws::OP_TEXT, msg.as_bytes());
                if i == 20 {
                    let big = vec![b'm'; 70_000];
                    server_frame(&mut stream, ws::OP_TEXT, &big);
                }
            }
            server_frame(&mut stream, ws::OP_CLOSE, &1008u16.to_be_bytes());
            let mut ctx = ctx_for(plan(), shared_for(0), 1000, 1025);
            let mut c = Conn {
                id: 0,
                room: 0,
                members: 10,
                mask: [0; 4],
                st: St::Ready,
                stream: None,
                rbuf: vec![0u8; RBUF].into_boxed_slice(),
                rlen: 0,
                wbuf: Vec::new(),
                wpos: 0,
                tpls: Vec::new(),
                next_tpl: 0,
            };
            let mut ended = false;
            for piece in stream.chunks(chunk) {
                let mut piece = piece;
                while !piece.is_empty() {
                    let n = piece.len().min(c.rbuf.len() - c.rlen);
                    c.rbuf[c.rlen..c.rlen + n].copy_from_slice(&piece[..n]);
                    c.rlen += n;
                    piece = &piece[n..];
                    if let Outcome::End = c.process(&mut ctx, 5000) {
                        ended = true;
                    }
                }
            }
            assert!(ended, "chunk {chunk}: close seen");
            assert_eq!(ctx.counts.delivered, 50, "chunk {chunk}");
            assert_eq!(ctx.counts.delivered_win, 25, "chunk {chunk}");
            assert_eq!(ctx.counts.other_frames, 1, "chunk {chunk}");
            assert_eq!(ctx.errors.closed, 1, "chunk {chunk}");
            assert_eq!(ctx.hist.len(), 25);
        }
    }

    /// The unmasked payload of a client frame.
    fn unmask(frame: &[u8]) -> Vec<u8> {
        let (len, at) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => unreachable!(),
            n => (n as usize, 2),
        };
        let mask = &frame[at..at + 4];
        frame[at + 4..at + 4 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect()
    }

    fn conn(id: usize, room: usize, st: St) -> Conn {
        Conn {
            id,
            room,
            members: 1,
            mask: [9, 8, 7, 6],
            st,
            stream: None,
            rbuf: vec![0u8; RBUF].into_boxed_slice(),
            rlen: 0,
            wbuf: Vec::new(),
            wpos: 0,
            tpls: Vec::new(),
            next_tpl: 0,
        }
    }

    /// Feeds server frames to `c` as one read.
    fn feed(c: &mut Conn, ctx: &mut Ctx, frames: &[&[u8]], now: u64) -> bool {
        let mut stream = Vec::new();
        for f in frames {
            server_frame(&mut stream, ws::OP_TEXT, f);
        }
        c.rbuf[c.rlen..c.rlen + stream.len()].copy_from_slice(&stream);
        c.rlen += stream.len();
        matches!(c.process(ctx, now), Outcome::Keep)
    }

    #[test]
    fn pairkit_sessions_deliveries_and_send_shape() {
        // 20 connections in sessions of 9: 0 and 9 host 8 phones each, 18 hosts 1 (19).
        let plan = plan_for(Codec::Pairkit, 20, 9);
        assert_eq!(members(&plan, 0, 0), 8);
        assert_eq!(members(&plan, 1, 0), 1);
        assert_eq!(members(&plan, 18, 2), 1);
        assert_eq!(members(&plan, 19, 2), 1);
        let lone = plan_for(Codec::Pairkit, 19, 9);
        assert_eq!(
            members(&lone, 18, 2),
            0,
            "a lone host's broadcast reaches no one"
        );

        // What phones and hosts send: JSON whose payload.t is the stamp, --size bytes of
        // t + pad.
        for (id, ty) in [(1, "input.widget_event"), (0, "control.broadcast")] {
            let mut t = message_templates(&plan, id, 0, mask_for(id)).remove(0);
            t.stamp(0x1234);
            let p = unmask(&t.frame);
            assert_eq!(json::str_field(&p, b"type"), Some(ty.as_bytes()));
            let payload = json::field(&p, b"payload").unwrap();
            let (ts, pad) = (
                json::str_field(payload, b"t").unwrap(),
                json::str_field(payload, b"pad").unwrap(),
            );
            assert_eq!(ts.len() + pad.len(), 64);
            assert_eq!(
                pairkit_ts(&memmem::Finder::new(TS_MARKER), &p),
                Some(0x1234)
            );
            if id == 1 {
                assert_eq!(json::str_field(&p, b"widget_id"), Some(&b"stick"[..]));
                assert_eq!(json::str_field(&p, b"event_type"), Some(&b"move"[..]));
                assert_eq!(json::field(payload, b"x"), Some(&b"0.1"[..]));
            } else {
                assert_eq!(json::str_field(&p, b"event"), Some(&b"tick"[..]));
            }
        }
        let small = plan_for(Codec::Pairkit, 2, 2);
        let small = Arc::new(Plan {
            size: TS_LEN,
            ..Arc::try_unwrap(small).ok().unwrap()
        });
        let p = unmask(&message_templates(&small, 1, 0, [0; 4])[0].frame);
        assert_eq!(
            json::field(json::field(&p, b"payload").unwrap(), b"pad"),
            None
        );

        // Setup: the host creates, its phone waits for the code, then joins.
        let shared = shared_for(3);
        let mut ctx = ctx_for(plan.clone(), shared.clone(), 1000, 2000);
        let mut host = conn(0, 0, St::Upgrading);
        let mut phone = conn(1, 0, St::Upgrading);
        let head = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        for c in [&mut host, &mut phone] {
            c.rbuf[..head.len()].copy_from_slice(head);
            c.rlen = head.len();
        }
        // The flush fails without a socket: the frame stays in wbuf, which is what is read.
        let _ = host.process(&mut ctx, 1);
        assert_eq!(host.st, St::Joining);
        assert_eq!(unmask(&host.wbuf), br#"{"type":"session.create"}"#);
        let _ = phone.process(&mut ctx, 1);
        assert_eq!(phone.st, St::JoinRetry, "no code yet");
        assert!(phone.wbuf.is_empty());
        host.wbuf.clear();
        assert!(feed(
            &mut host,
            &mut ctx,
            &[br#"{ "players": [], "relay_capabilities": {"strict_payloads": false}, "code": "K7QZ", "type": "session.created", "host_id": "h" }"#],
            2,
        ));
        assert_eq!(host.st, St::Ready);
        assert_eq!(session_code(&shared, 0), Some(*b"K7QZ"));
        assert_eq!(session_code(&shared, 1), None);
        let mut phone2 = conn(2, 0, St::Upgrading);
        phone2.rbuf[..head.len()].copy_from_slice(head);
        phone2.rlen = head.len();
        let _ = phone2.process(&mut ctx, 3);
        assert_eq!(phone2.st, St::Joining);
        let join = unmask(&phone2.wbuf);
        assert_eq!(json::str_field(&join, b"type"), Some(&b"session.join"[..]));
        assert_eq!(json::str_field(&join, b"code"), Some(&b"K7QZ"[..]));
        phone2.wbuf.clear();
        assert!(feed(
            &mut phone2,
            &mut ctx,
            &[br#"{"resume_token":"r","player_id":"p1","type":"session.joined"}"#],
            4,
        ));
        assert_eq!(phone2.st, St::Ready);
        assert_eq!(ctx.counts.ready, 2);

        // Deliveries: inputs at the host, events at the phone, fields in any order; a type
        // meant for the other role, player.join and errors are not deliveries.
        let input = |ts: u64| {
            format!(
                r#"{{"player_id":"p1","payload":{{"t":"~T{ts:016x}","x":0.1,"y":0.2,"pad":"xx"}},"event_type":"move","type":"input.widget_event","widget_id":"stick"}}"#
            )
        };
        let event = |ts: u64| {
            format!(
                r#"{{"type" : "control.event","payload":{{"t":"~T{ts:016x}"}},"event":"tick"}}"#
            )
        };
        let (i1, i2, i3) = (input(1100), input(1200), input(500));
        assert!(feed(
            &mut host,
            &mut ctx,
            &[
                i1.as_bytes(),
                br##"{"type":"player.join","player_id":"p1","name":"lg1","color":"#ff0000","resumed":false}"##,
                i2.as_bytes(),
                i3.as_bytes(),
                event(1300).as_bytes(),
                br#"{"type":"system.error","code":"rate_limited","message":"slow down"}"#,
            ],
            1500,
        ));
        let (e1, e2) = (event(1400), event(2500));
        assert!(feed(
            &mut phone2,
            &mut ctx,
            &[e1.as_bytes(), e2.as_bytes(), input(1400).as_bytes()],
            1600,
        ));
        assert_eq!(ctx.counts.delivered, 5);
        assert_eq!(ctx.counts.delivered_win, 3);
        assert_eq!(ctx.counts.delivered_warm, 1);
        assert_eq!((ctx.counts.input_win, ctx.counts.event_win), (2, 1));
        assert_eq!(ctx.input_hist.len(), 2);
        assert_eq!(ctx.input_hist.max(), ctx.input_hist.highest_equivalent(400));
        assert_eq!(ctx.event_hist.len(), 1);
        assert_eq!(ctx.hist.len(), 3);
        assert_eq!(
            ctx.counts.other_frames, 3,
            "player.join, a host's event, a phone's input"
        );
        assert_eq!(ctx.pk_errors[pk_code_slot(b"rate_limited")], 1);
        assert_eq!(ctx.errors.server, 1);
        assert_eq!(ctx.errors.total(), 1);

        // An error answering a join ends the phone (a setup failure), counted by code.
        let mut phone3 = conn(3, 0, St::Joining);
        assert!(!feed(
            &mut phone3,
            &mut ctx,
            &[br#"{"type":"system.error","code":"session_full","message":"full"}"#],
            5,
        ));
        assert_eq!(ctx.pk_errors[pk_code_slot(b"session_full")], 1);
        assert_eq!(ctx.errors.join, 1);
        // A host whose session.created has no usable code fails too.
        let mut host2 = conn(9, 1, St::Joining);
        assert!(!feed(
            &mut host2,
            &mut ctx,
            &[br#"{"type":"session.created","code":"AB","host_id":"h","players":[]}"#],
            6,
        ));
        assert_eq!(session_code(&shared, 1), None);
        assert_eq!(pk_code_slot(b"something_new"), PK_CODES.len());
    }

    #[test]
    fn pairkit_codes_pack_only_four_alphanumerics() {
        assert_eq!(pack_code(b"AB2Z").map(u32::to_le_bytes), Some(*b"AB2Z"));
        assert_eq!(pack_code(b"ABC"), None);
        assert_eq!(pack_code(b"ABCDE"), None);
        assert_eq!(pack_code(b"AB\\u"), None);
        assert_eq!(pack_code(b"A\"CD"), None);
    }

    #[test]
    fn pacers_split_hosts_from_phones() {
        let plan = plan_for(Codec::Pairkit, 20, 9);
        let plan = Arc::new(Plan {
            rate: 30.0,
            host_rate: 10.0,
            ..Arc::try_unwrap(plan).ok().unwrap()
        });
        let w = Worker::new(0, plan, shared_for(3)).unwrap();
        assert_eq!(w.pacers.len(), 2);
        assert_eq!(w.pacers[0].senders.len(), 17);
        assert_eq!(w.pacers[1].senders, vec![0, 9, 18]);
        assert!((w.pacers[0].slot_ns - 1e9 / (17.0 * 30.0)).abs() < 1e-6);
        assert!((w.pacers[1].slot_ns - 1e9 / 30.0).abs() < 1e-6);
        let idle = plan_for(Codec::Json, 10, 10);
        let idle = Arc::new(Plan {
            rate: 0.0,
            ..Arc::try_unwrap(idle).ok().unwrap()
        });
        let w = Worker::new(0, idle, shared_for(0)).unwrap();
        assert_eq!(w.pacers.len(), 1);
        assert!(w.pacers[0].done);
    }
}
