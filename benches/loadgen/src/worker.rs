//! One load generator thread: a mio poll over many connections, each with one read buffer
//! (frames parsed in place) and, for senders, one pre-built masked message frame whose
//! timestamp bytes are patched per send. Nothing is allocated per message.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use memchr::memmem;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

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
}

pub struct WorkerResult {
    pub hist: Histogram<u64>,
    pub counts: Counts,
    pub errors: Errors,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Connecting,
    Upgrading,
    Handshaking,
    Joining,
    /// `--cl5`: the lobby was not there yet (its host is still creating it): join again.
    JoinRetry,
    /// `--cl5`: a join again is scheduled.
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
    finder: memmem::Finder<'static>,
    m0: u64,
    m1: u64,
    hist: Histogram<u64>,
    counts: Counts,
    errors: Errors,
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
        _ => in_room,
    }
}

/// `--cl5`: the first connection of a lobby creates it.
fn is_host(plan: &Plan, id: usize) -> bool {
    id % plan.room == 0
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
        _ => vec![message_template(plan, room, mask, data.as_bytes())],
    }
}

/// The message frame a sender sends (rooms dialect or raw peer payload).
fn message_template(plan: &Plan, room: usize, mask: [u8; 4], data: &[u8]) -> Template {
    match plan.codec {
        Codec::Peer => Template::new(ws::OP_BINARY, mask, data),
        Codec::Cl5 | Codec::Peerjs => unreachable!("their templates are message_templates'"),
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

pub struct Worker {
    idx: usize,
    shared: Arc<Shared>,
    poll: Poll,
    conns: Vec<Conn>,
    /// Local indices of the connections that send.
    senders: Vec<usize>,
    /// `--cl5`: (when, local index) of joins to send again.
    rejoins: std::collections::VecDeque<(u64, usize)>,
    ctx: Ctx,
}

/// `--cl5`: how long a member waits before joining a lobby its host has not created yet.
const REJOIN_NS: u64 = 20_000_000;

impl Worker {
    pub fn new(idx: usize, plan: Arc<Plan>, shared: Arc<Shared>) -> std::io::Result<Worker> {
        let mut conns = Vec::new();
        let mut senders = Vec::new();
        for id in (idx..plan.conns).step_by(plan.threads) {
            let room = id / plan.room;
            let members = members(&plan, id, room);
            let mask = mask_for(id);
            let tpls = if plan.is_sender(id) {
                message_templates(&plan, id, room, mask)
            } else {
                Vec::new()
            };
            if !tpls.is_empty() {
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
        let hist = Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        Ok(Worker {
            idx,
            shared,
            poll: Poll::new()?,
            conns,
            senders,
            rejoins: Default::default(),
            ctx: Ctx {
                plan,
                finder: memmem::Finder::new(TS_MARKER),
                m0: u64::MAX,
                m1: u64::MAX,
                hist,
                counts: Counts::default(),
                errors: Errors::default(),
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
            let due = self.now() + REJOIN_NS;
            self.rejoins.push_back((due, i));
        }
    }

    /// `--cl5`: joins again the lobbies that were not there yet; the next one's due time.
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
            cl5_lobby_op(&plan, c.id, c.room, c.mask, &mut c.wbuf);
            c.st = St::Joining;
            if !c.flush(&mut self.ctx) {
                self.kill(i);
            }
        }
        None
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
        // Send pacing: slots evenly spaced over this worker's senders.
        let n_send = self.senders.len();
        let slot_ns = if n_send > 0 && plan.rate > 0.0 {
            1e9 / (n_send as f64 * plan.rate)
        } else {
            f64::INFINITY
        };
        let phase = slot_ns * self.idx as f64 / plan.threads as f64;
        let mut slot: u64 = 0;
        let mut t0 = 0u64;
        let mut sending_done = n_send == 0 || plan.rate <= 0.0;
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
                loop {
                    let due = t0 + (slot as f64 * slot_ns + phase) as u64;
                    if due >= self.ctx.m1 {
                        sending_done = true;
                        self.shared.workers[self.idx].done_sending.store(1, Release);
                        break;
                    }
                    let ts = self.now();
                    if due > ts {
                        wake_at = wake_at.min(due);
                        break;
                    }
                    let i = self.senders[(slot % n_send as u64) as usize];
                    slot += 1;
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
            counts: self.ctx.counts,
            errors: self.ctx.errors,
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

    fn plan() -> Arc<Plan> {
        Arc::new(Plan {
            addr: "127.0.0.1:9".parse().unwrap(),
            host: "127.0.0.1:9".into(),
            base_path: "/rooms".into(),
            codec: Codec::Json,
            conns: 10,
            room: 10,
            rate: 1.0,
            senders: 10,
            size: 64,
            connect_rate: 1.0,
            max_pending: 1,
            threads: 1,
            room_prefix: "t".into(),
            candidates: 4,
            batch_ns: 0,
        })
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
            let mut ctx = Ctx {
                plan: plan(),
                finder: memmem::Finder::new(TS_MARKER),
                m0: 1000,
                m1: 1025,
                hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap(),
                counts: Counts::default(),
                errors: Errors::default(),
                logged: LOG_MAX,
            };
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
}
