//! Shared helpers of the end-to-end tests: an in-process server that stops when dropped,
//! a blocking WebSocket client that speaks the rooms dialect in either codec, plain HTTP
//! and `/metrics`, and checks on raw MessagePack bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use huddle::config::Config;
use huddle::server::Server;

/// How long a client waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(3);

/// The server's clock counts whole milliseconds (it truncates), so a deadline of N ms,
/// timed by the test's own clock, can pass up to this much early. A test asserting that
/// something did not happen before a deadline allows it; how late it may come is bounded
/// by the reads' own timeouts (`WAIT`), not by a tight upper bound a loaded machine
/// breaks.
pub const CLOCK_GRAIN: Duration = Duration::from_millis(1);

/// A server running in this process; stopped (and its threads joined) when dropped.
pub struct TestServer {
    server: Option<Server>,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The base configuration of every test: loopback, a free port, two unpinned shards.
pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        pin_shards: false,
        ..Config::default()
    }
}

impl TestServer {
    /// Starts a server with the base configuration changed by `tweak`.
    pub fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = config();
        tweak(&mut cfg);
        let server = huddle::start(cfg).expect("server starts");
        let addr = server.addr;
        TestServer {
            server: Some(server),
            addr,
        }
    }

    /// Starts a server with the base configuration.
    pub fn default_config() -> TestServer {
        TestServer::start(|_| {})
    }

    /// Asks every shard to close its clients with 1001 (threads are joined on drop).
    pub fn shutdown(&self) {
        self.server.as_ref().expect("running").shutdown();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

/// The two codecs of the rooms dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// JSON text frames.
    Json,
    /// MessagePack binary frames.
    Msgpack,
}

/// Both codecs, for tests that run a rule in each.
pub const CODECS: [Codec; 2] = [Codec::Json, Codec::Msgpack];

impl Codec {
    /// The name used in `codecs` and in `handshake.ok`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Msgpack => "msgpack",
        }
    }
}

/// One data frame from the server, decoded by its opcode (text: JSON, binary: msgpack).
#[derive(Clone, Debug)]
pub struct Msg {
    /// Sent as a binary frame.
    pub binary: bool,
    /// The frame's payload bytes.
    pub raw: Vec<u8>,
    /// The decoded value (msgpack `bin` becomes `{"$bin": base64}`).
    pub v: Value,
    /// The msgpack value as decoded, for binary frames.
    pub mp: Option<rmpv::Value>,
}

static NULL: Value = Value::Null;

impl Msg {
    fn decode(binary: bool, raw: Vec<u8>) -> Msg {
        if binary {
            let mp = rmpv::decode::read_value(&mut &raw[..])
                .unwrap_or_else(|e| panic!("binary frame is not msgpack ({e}): {raw:02x?}"));
            Msg {
                binary,
                v: mp_to_json(&mp),
                mp: Some(mp),
                raw,
            }
        } else {
            let v = serde_json::from_slice(&raw).unwrap_or_else(|e| {
                panic!(
                    "text frame is not JSON ({e}): {}",
                    String::from_utf8_lossy(&raw)
                )
            });
            Msg {
                binary,
                raw,
                v,
                mp: None,
            }
        }
    }

    /// Envelope `t`.
    pub fn t(&self) -> &str {
        self.v["t"].as_str().unwrap_or("")
    }

    /// Envelope `rid`.
    pub fn rid(&self) -> Option<&str> {
        self.v["rid"].as_str()
    }

    /// Envelope `room`.
    pub fn room(&self) -> Option<&str> {
        self.v["room"].as_str()
    }

    /// Payload `p` (null when absent).
    pub fn p(&self) -> &Value {
        self.v.get("p").unwrap_or(&NULL)
    }

    /// `p.code` of an error or a failed rpc.response.
    pub fn code(&self) -> &str {
        self.p()["code"].as_str().unwrap_or("")
    }

    /// An `rpc.response` with `ok:true`.
    pub fn is_ok(&self) -> bool {
        self.t() == "rpc.response" && self.p()["ok"] == json!(true)
    }
}

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {}",
            if self.binary { "bin" } else { "text" },
            self.v
        )
    }
}

/// Lists frames, one per line, for failure messages.
pub fn show(frames: &[Msg]) -> String {
    frames
        .iter()
        .map(|m| format!("  {m}\n"))
        .collect::<String>()
}

/// msgpack → JSON for assertions; `bin` becomes `{"$bin": "<base64>"}`.
pub fn mp_to_json(v: &rmpv::Value) -> Value {
    use base64::Engine;
    match v {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => json!(b),
        rmpv::Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                json!(u)
            } else {
                json!(i.as_i64().expect("integer"))
            }
        }
        rmpv::Value::F32(f) => json!(f),
        rmpv::Value::F64(f) => json!(f),
        rmpv::Value::String(s) => json!(s.as_str().expect("UTF-8 string")),
        rmpv::Value::Binary(b) => {
            json!({"$bin": base64::engine::general_purpose::STANDARD.encode(b)})
        }
        rmpv::Value::Array(items) => Value::Array(items.iter().map(mp_to_json).collect()),
        rmpv::Value::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let k = k.as_str().unwrap_or_else(|| panic!("non-string key {k:?}"));
                    (k.to_string(), mp_to_json(v))
                })
                .collect(),
        ),
        rmpv::Value::Ext(ty, data) => json!({"$ext": ty, "data": data}),
    }
}

/// JSON → msgpack, integers as integers, other numbers as float64.
pub fn json_to_mp(v: &Value) -> rmpv::Value {
    match v {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else {
                rmpv::Value::F64(n.as_f64().expect("number"))
            }
        }
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::Array(items) => rmpv::Value::Array(items.iter().map(json_to_mp).collect()),
        Value::Object(map) => rmpv::Value::Map(
            map.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), json_to_mp(v)))
                .collect(),
        ),
    }
}

/// Encodes a msgpack value.
pub fn mp_bytes(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("encode msgpack");
    out
}

/// A WebSocket connection to the server (upgrade done, no rooms handshake yet).
pub fn ws_connect(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client::client_with_config(
        format!("ws://{addr}{path}").as_str(),
        stream,
        None,
    )
    .unwrap_or_else(|e| panic!("WebSocket upgrade failed: {e}"));
    ws
}

/// The base rooms handshake: `{v:1, codecs:[codec], project_id:"demo"}`.
pub fn hello(codec: Codec) -> Value {
    json!({"v": 1, "codecs": [codec.name()], "project_id": "demo"})
}

/// `base` with the fields of `extra` added or replaced.
pub fn merged(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
    base
}

/// What one read gave.
pub enum Read1 {
    /// A data frame.
    Data(Msg),
    /// A WebSocket ping (tungstenite queues the pong).
    Ping,
    /// A close frame with its code.
    Close(Option<u16>),
    /// Nothing within the read timeout.
    Timeout,
    /// The connection is gone.
    Gone(String),
}

/// A rooms-dialect client over a blocking socket.
pub struct Client {
    /// The WebSocket.
    pub ws: WebSocket<TcpStream>,
    /// Negotiated codec (what this client sends in).
    pub codec: Codec,
    /// `handshake.ok`.
    pub hello_ok: Msg,
    /// Its secret session id.
    pub session_id: String,
    /// Its public id.
    pub client_id: String,
    /// Every data frame received so far, in order.
    pub log: Vec<Msg>,
    /// Frames received but not consumed yet by `recv*`.
    pending: std::collections::VecDeque<Msg>,
    next_rid: u64,
}

impl Client {
    /// Connects and handshakes with `{v:1, codecs:[codec], project_id:"demo"}`.
    pub fn new(addr: SocketAddr, codec: Codec) -> Client {
        Client::with_hello(addr, codec, hello(codec))
    }

    /// Connects and handshakes with this handshake frame; `codec` is what the handshake
    /// should negotiate (frames are sent in it).
    pub fn with_hello(addr: SocketAddr, codec: Codec, hello: Value) -> Client {
        Client::over(ws_connect(addr, "/rooms"), codec, hello)
    }

    /// A fresh RPC id.
    pub fn rid(&mut self) -> String {
        self.next_rid += 1;
        format!("r{}", self.next_rid)
    }

    /// Sends a value in the session codec (JSON: text frame, msgpack: binary frame).
    pub fn send(&mut self, v: Value) {
        let msg = match self.codec {
            Codec::Json => Message::text(v.to_string()),
            Codec::Msgpack => Message::binary(mp_bytes(&json_to_mp(&v))),
        };
        self.ws.send(msg).expect("send");
    }

    /// Sends raw bytes as a binary frame.
    pub fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).expect("send");
    }

    /// Sends raw text as a text frame.
    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).expect("send");
    }

    /// Sends `{v:1, t, rid?, room?, p}`.
    pub fn send_env(&mut self, t: &str, rid: Option<&str>, room: Option<&str>, p: Value) {
        let mut env = json!({"v": 1, "t": t, "p": p});
        if let Some(rid) = rid {
            env["rid"] = json!(rid);
        }
        if let Some(room) = room {
            env["room"] = json!(room);
        }
        self.send(env);
    }

    fn read_timeout(&mut self, d: Duration) {
        self.ws.get_mut().set_read_timeout(Some(d)).unwrap();
    }

    /// One read with a timeout; data frames are logged.
    pub fn read_for(&mut self, d: Duration) -> Read1 {
        self.read_timeout(d.max(Duration::from_millis(1)));
        let r = read1(&mut self.ws);
        self.read_timeout(WAIT);
        if let Read1::Data(m) = &r {
            self.log.push(m.clone());
        }
        r
    }

    /// The next data frame (pings skipped); panics on close or timeout.
    pub fn recv(&mut self) -> Msg {
        if let Some(m) = self.pending.pop_front() {
            return m;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_for(left) {
                Read1::Data(m) => return m,
                Read1::Ping => {}
                Read1::Close(c) => panic!(
                    "{}: closed ({c:?}) while waiting for a frame; got so far:\n{}",
                    self.client_id,
                    show(&self.log)
                ),
                Read1::Timeout => panic!(
                    "{}: no frame within {WAIT:?}; got so far:\n{}",
                    self.client_id,
                    show(&self.log)
                ),
                Read1::Gone(e) => panic!("{}: connection gone: {e}", self.client_id),
            }
        }
    }

    /// The next data frame, which must have type `t`.
    pub fn expect(&mut self, t: &str) -> Msg {
        let m = self.recv();
        assert_eq!(
            m.t(),
            t,
            "{}: expected {t}, got {m}; log:\n{}",
            self.client_id,
            show(&self.log)
        );
        m
    }

    /// Reads until a frame matches, keeping the others for later `recv`s.
    pub fn recv_until(&mut self, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).expect("index");
        }
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_for(left) {
                Read1::Data(m) if pred(&m) => {
                    self.pending.extend(skipped);
                    return m;
                }
                Read1::Data(m) => skipped.push(m),
                Read1::Ping => {}
                other => {
                    let why = match other {
                        Read1::Close(c) => format!("closed ({c:?})"),
                        Read1::Gone(e) => format!("gone ({e})"),
                        _ => "timeout".to_string(),
                    };
                    panic!(
                        "{}: {why} while waiting for {what}; log:\n{}",
                        self.client_id,
                        show(&self.log)
                    )
                }
            }
        }
    }

    /// The `rpc.response` with this rid.
    pub fn response(&mut self, rid: &str) -> Msg {
        self.recv_until(&format!("rpc.response {rid}"), |m| {
            m.t() == "rpc.response" && m.rid() == Some(rid)
        })
    }

    /// Sends an RPC and returns its `rpc.response`.
    pub fn rpc(&mut self, t: &str, room: Option<&str>, p: Value) -> Msg {
        let rid = self.rid();
        self.send_env(t, Some(&rid), room, p);
        self.response(&rid)
    }

    /// Joins (or creates) a room; returns the reply after the joiner's snapshot arrived.
    pub fn join(&mut self, room_type: &str, room: &str) -> Msg {
        let reply = self.rpc(
            "room.join_or_create",
            None,
            json!({"room_type": room_type, "room": room}),
        );
        assert!(reply.is_ok(), "join {room} refused: {reply}");
        self.recv_until(&format!("state.snapshot of {room}"), |m| {
            m.t() == "state.snapshot" && m.room() == Some(room)
        });
        // The join's own frames (room.joined, room.members) are consumed (still in `log`).
        self.pending.retain(|m| {
            !(m.room() == Some(room) && matches!(m.t(), "room.joined" | "room.members"))
        });
        reply
    }

    /// Every data frame that arrives until the connection has been quiet for `quiet`.
    pub fn drain(&mut self, quiet: Duration) -> Vec<Msg> {
        let mut out: Vec<Msg> = self.pending.drain(..).collect();
        loop {
            match self.read_for(quiet) {
                Read1::Data(m) => out.push(m),
                Read1::Ping => {}
                Read1::Timeout => return out,
                Read1::Close(c) => panic!(
                    "{}: closed ({c:?}) while draining; got:\n{}",
                    self.client_id,
                    show(&out)
                ),
                Read1::Gone(e) => panic!("{}: gone while draining: {e}", self.client_id),
            }
        }
    }

    /// Reads until the server's close frame; returns its code and the data frames before it.
    pub fn until_close(&mut self) -> (Option<u16>, Vec<Msg>) {
        until_close(&mut self.ws, &mut self.pending)
    }

    /// Reads until the server's close frame, for at most `wait`.
    pub fn until_close_within(&mut self, wait: Duration) -> (Option<u16>, Vec<Msg>) {
        until_close_within(&mut self.ws, &mut self.pending, wait)
    }
}

/// Reads until a close frame; returns its code and the data frames before it.
pub fn until_close(
    ws: &mut WebSocket<TcpStream>,
    pending: &mut std::collections::VecDeque<Msg>,
) -> (Option<u16>, Vec<Msg>) {
    until_close_within(ws, pending, WAIT)
}

/// Reads until a close frame, for at most `wait`; returns its code and the data frames
/// before it.
pub fn until_close_within(
    ws: &mut WebSocket<TcpStream>,
    pending: &mut std::collections::VecDeque<Msg>,
    wait: Duration,
) -> (Option<u16>, Vec<Msg>) {
    let mut frames: Vec<Msg> = pending.drain(..).collect();
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        ws.get_mut().set_read_timeout(Some(left)).unwrap();
        match read1(ws) {
            Read1::Data(m) => frames.push(m),
            Read1::Ping => {}
            Read1::Close(c) => {
                ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
                return (c, frames);
            }
            Read1::Timeout => break,
            Read1::Gone(e) => panic!(
                "connection gone without a close frame ({e}); got:\n{}",
                show(&frames)
            ),
        }
    }
    panic!("no close frame within {wait:?}; got:\n{}", show(&frames))
}

/// One read from a WebSocket.
pub fn read1(ws: &mut WebSocket<TcpStream>) -> Read1 {
    match ws.read() {
        Ok(Message::Text(t)) => Read1::Data(Msg::decode(false, t.as_bytes().to_vec())),
        Ok(Message::Binary(b)) => Read1::Data(Msg::decode(true, b.to_vec())),
        Ok(Message::Ping(_)) => Read1::Ping,
        Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => Read1::Ping,
        Ok(Message::Close(c)) => Read1::Close(c.map(|f| u16::from(f.code))),
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Read1::Timeout
        }
        Err(e) => Read1::Gone(e.to_string()),
    }
}

/// Unix time now, in ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A room id (`<prefix>-<n>`) whose home is `shard` of 2.
pub fn room_on(shard: u16, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| huddle::core::home_shard(id, 2).0 == shard)
        .expect("some id hashes to every shard")
}

/// A plain HTTP GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (head, body) = http_request(addr, "GET", path);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {head:?}"));
    (status, String::from_utf8(body).expect("a UTF-8 body"))
}

/// One plain HTTP request (the server closes the connection after its reply); returns
/// the reply's head (status line and headers) and its body.
pub fn http_request(addr: SocketAddr, method: &str, target: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "{method} {target} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).expect("read HTTP reply");
    let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        panic!("not an HTTP reply: {:?}", String::from_utf8_lossy(&bytes));
    };
    let head = String::from_utf8_lossy(&bytes[..at]).into_owned();
    (head, bytes[at + 4..].to_vec())
}

/// The value of one Prometheus series (`name{labels}`) from `/metrics`.
pub fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "/metrics status");
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no series {series} in /metrics:\n{body}"))
}

/// Checks that a msgpack document uses the smallest form of every integer and has no
/// `nil` and no extension anywhere. Returns a description of the first offence.
pub fn msgpack_offence(bytes: &[u8]) -> Option<String> {
    let mut pos = 0;
    if let Err(e) = walk(bytes, &mut pos) {
        return Some(e);
    }
    (pos != bytes.len()).then(|| format!("{} trailing bytes", bytes.len() - pos))
}

fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let s = b
        .get(*pos..*pos + n)
        .ok_or_else(|| format!("truncated at {}", *pos))?;
    *pos += n;
    Ok(s)
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
}

fn walk(b: &[u8], pos: &mut usize) -> Result<(), String> {
    let at = *pos;
    let m = take(b, pos, 1)?[0];
    let items = |n: u64, pos: &mut usize| -> Result<(), String> {
        for _ in 0..n {
            walk(b, pos)?;
        }
        Ok(())
    };
    match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc2 | 0xc3 => Ok(()),
        0x80..=0x8f => items(u64::from(m & 0x0f) * 2, pos),
        0x90..=0x9f => items(u64::from(m & 0x0f), pos),
        0xa0..=0xbf => take(b, pos, usize::from(m & 0x1f)).map(|_| ()),
        0xc0 => Err(format!("nil at byte {at}")),
        0xc4 | 0xd9 => {
            let n = be(take(b, pos, 1)?);
            take(b, pos, n as usize).map(|_| ())
        }
        0xc5 | 0xda => {
            let n = be(take(b, pos, 2)?);
            take(b, pos, n as usize).map(|_| ())
        }
        0xc6 | 0xdb => {
            let n = be(take(b, pos, 4)?);
            take(b, pos, n as usize).map(|_| ())
        }
        0xca => take(b, pos, 4).map(|_| ()),
        0xcb => take(b, pos, 8).map(|_| ()),
        0xcc..=0xcf => {
            let width = 1usize << (m - 0xcc);
            let v = be(take(b, pos, width)?);
            let smallest = match v {
                0..=0x7f => 0,
                0x80..=0xff => 1,
                0x100..=0xffff => 2,
                0x1_0000..=0xffff_ffff => 4,
                _ => 8,
            };
            if smallest != width {
                return Err(format!(
                    "unsigned {v} at byte {at} written in {width} bytes (marker {m:#04x})"
                ));
            }
            Ok(())
        }
        0xd0..=0xd3 => {
            let width = 1usize << (m - 0xd0);
            let raw = be(take(b, pos, width)?);
            let v = match width {
                1 => i64::from(raw as u8 as i8),
                2 => i64::from(raw as u16 as i16),
                4 => i64::from(raw as u32 as i32),
                _ => raw as i64,
            };
            // Non-negative values belong in the unsigned forms, -32..=-1 in a fixint.
            let smallest = if v >= -32 {
                0
            } else if v >= -128 {
                1
            } else if v >= -32768 {
                2
            } else if v >= i64::from(i32::MIN) {
                4
            } else {
                8
            };
            if smallest != width {
                return Err(format!(
                    "signed {v} at byte {at} written in {width} bytes (marker {m:#04x})"
                ));
            }
            Ok(())
        }
        0xdc => {
            let n = be(take(b, pos, 2)?);
            items(n, pos)
        }
        0xdd => {
            let n = be(take(b, pos, 4)?);
            items(n, pos)
        }
        0xde => {
            let n = be(take(b, pos, 2)?);
            items(n * 2, pos)
        }
        0xdf => {
            let n = be(take(b, pos, 4)?);
            items(n * 2, pos)
        }
        0xc7..=0xc9 | 0xd4..=0xd8 => Err(format!("extension at byte {at}")),
        0xc1 => Err(format!("reserved marker 0xc1 at byte {at}")),
    }
}

/// The JSON pointer of the first `null` inside a value.
pub fn find_null(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::Null => Some(if path.is_empty() {
            "/".into()
        } else {
            path.into()
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| find_null(x, &format!("{path}/{i}"))),
        Value::Object(map) => map
            .iter()
            .find_map(|(k, x)| find_null(x, &format!("{path}/{k}"))),
        _ => None,
    }
}

/// Open WebSocket connections per shard (`huddle_connections{shard="i"}`) for `shards`
/// shards.
pub fn connections_per_shard(addr: SocketAddr, shards: usize) -> Vec<f64> {
    (0..shards)
        .map(|i| metric(addr, &format!("huddle_connections{{shard=\"{i}\"}}")))
        .collect()
}

/// A WebSocket connection (upgrade done, no rooms handshake yet) that landed on `shard` of
/// a 2-shard server, found by watching the per-shard connection gauges. Connections that
/// landed elsewhere (or could not be placed because another connection closed meanwhile)
/// are returned too: keep them open until done, closing them moves the gauges. No other
/// connection may open meanwhile.
pub fn ws_connect_on_shard(
    addr: SocketAddr,
    shard: u16,
) -> (WebSocket<TcpStream>, Vec<WebSocket<TcpStream>>) {
    ws_connect_on_shard_at(addr, "/rooms", shard)
}

/// As `ws_connect_on_shard`, upgrading on `path`.
pub fn ws_connect_on_shard_at(
    addr: SocketAddr,
    path: &str,
    shard: u16,
) -> (WebSocket<TcpStream>, Vec<WebSocket<TcpStream>>) {
    let mut elsewhere = Vec::new();
    for _ in 0..64 {
        let before = connections_per_shard(addr, 2);
        let ws = ws_connect(addr, path);
        let deadline = Instant::now() + Duration::from_millis(300);
        let landed = loop {
            let now = connections_per_shard(addr, 2);
            if let Some(i) = (0..2).find(|&i| now[i] > before[i]) {
                break Some(i);
            }
            if Instant::now() > deadline {
                // A close elsewhere hid the new connection: try again.
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if landed == Some(usize::from(shard)) {
            return (ws, elsewhere);
        }
        elsewhere.push(ws);
    }
    panic!("64 connections in a row missed shard {shard}")
}

impl Client {
    /// Handshakes over an upgraded WebSocket with this handshake frame (as `with_hello`).
    pub fn over(mut ws: WebSocket<TcpStream>, codec: Codec, hello: Value) -> Client {
        ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
        ws.send(Message::text(hello.to_string())).unwrap();
        let ok = loop {
            match read1(&mut ws) {
                Read1::Data(m) => break m,
                Read1::Ping => continue,
                Read1::Close(c) => panic!("closed ({c:?}) instead of handshake.ok"),
                Read1::Timeout => panic!("no handshake.ok within {WAIT:?}"),
                Read1::Gone(e) => panic!("connection gone before handshake.ok: {e}"),
            }
        };
        assert_eq!(ok.t(), "handshake.ok", "handshake answer: {ok}");
        let session_id = ok.p()["session_id"].as_str().unwrap_or("").to_string();
        let client_id = ok.p()["client_id"].as_str().unwrap_or("").to_string();
        Client {
            ws,
            codec,
            log: vec![ok.clone()],
            hello_ok: ok,
            session_id,
            client_id,
            pending: Default::default(),
            next_rid: 0,
        }
    }

    /// A client whose connection landed on `shard` of a 2-shard server, with the stray
    /// connections that landed elsewhere (see `ws_connect_on_shard`; keep them while more
    /// clients are placed).
    pub fn on_shard(
        addr: SocketAddr,
        shard: u16,
        codec: Codec,
        hello: Value,
    ) -> (Client, Vec<WebSocket<TcpStream>>) {
        let (ws, strays) = ws_connect_on_shard(addr, shard);
        (Client::over(ws, codec, hello), strays)
    }

    /// Encodes a value as one WebSocket message of the session codec.
    pub fn message(&self, v: Value) -> Message {
        match self.codec {
            Codec::Json => Message::text(v.to_string()),
            Codec::Msgpack => Message::binary(mp_bytes(&json_to_mp(&v))),
        }
    }

    /// Sends several envelopes in one socket write (one TCP segment on loopback), so the
    /// server reads them in one reactor turn.
    pub fn send_batch(&mut self, envs: &[Value]) {
        for v in envs {
            let m = self.message(v.clone());
            self.ws.write(m).expect("queue frame");
        }
        self.ws.flush().expect("flush");
    }
}

/// A CloudLink 5 signaling client over a blocking socket.
pub struct Cl5 {
    /// The WebSocket.
    pub ws: WebSocket<TcpStream>,
    /// Frames read but not yet asked for, in order: (opcode, payload).
    pending: std::collections::VecDeque<(String, Value)>,
}

/// The HTTP status that refused an upgrade, or the upgraded socket.
pub fn ws_upgrade(
    addr: SocketAddr,
    target: &str,
    origin: Option<&str>,
) -> Result<WebSocket<TcpStream>, u16> {
    use tungstenite::client::IntoClientRequest;
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut request = format!("ws://{addr}{target}")
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    match tungstenite::client::client(request, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            Err(r.status().as_u16())
        }
        Err(e) => panic!("{target}: no HTTP answer to the upgrade: {e}"),
    }
}

impl Cl5 {
    /// A client of game `ugi` on `/cl5`.
    pub fn connect(addr: SocketAddr, ugi: &str) -> Cl5 {
        Cl5::over(ws_upgrade(addr, &format!("/cl5?ugi={ugi}"), None).expect("upgrade"))
    }

    /// A client over an upgraded socket.
    pub fn over(ws: WebSocket<TcpStream>) -> Cl5 {
        Cl5 {
            ws,
            pending: Default::default(),
        }
    }

    /// A client of `ugi` that sent `INIT` as `username`; its `INIT_OK` payload.
    pub fn init(addr: SocketAddr, ugi: &str, username: &str) -> (Cl5, Value) {
        let mut c = Cl5::connect(addr, ugi);
        c.send("INIT", json!({ "username": username }));
        let ok = c.expect("INIT_OK");
        (c, ok)
    }

    /// Sends `{"opcode": opcode, "payload": payload}` (no payload when `null`).
    pub fn send(&mut self, opcode: &str, payload: Value) {
        let frame = if payload.is_null() {
            json!({ "opcode": opcode })
        } else {
            json!({ "opcode": opcode, "payload": payload })
        };
        self.send_raw(frame);
    }

    /// Sends a JSON value as one text frame.
    pub fn send_raw(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .expect("send");
    }

    /// The next frame (opcode, payload); a close frame is `("close", code)`.
    pub fn next(&mut self) -> (String, Value) {
        if let Some(f) = self.pending.pop_front() {
            return f;
        }
        loop {
            match read1(&mut self.ws) {
                Read1::Data(m) => {
                    let op = m.v["opcode"].as_str().unwrap_or("").to_string();
                    return (op, m.v.get("payload").cloned().unwrap_or(Value::Null));
                }
                Read1::Ping => continue,
                Read1::Close(code) => return ("close".into(), json!(code)),
                Read1::Timeout => panic!("no frame within {WAIT:?}"),
                Read1::Gone(e) => return ("gone".into(), json!(e)),
            }
        }
    }

    /// The whole next frame as it came (for the relay's extra fields).
    pub fn next_raw(&mut self) -> Value {
        assert!(
            self.pending.is_empty(),
            "frames already read: {:?}",
            self.pending
        );
        loop {
            match read1(&mut self.ws) {
                Read1::Data(m) => return m.v,
                Read1::Ping => continue,
                other => panic!("no frame: {}", matches!(other, Read1::Timeout)),
            }
        }
    }

    /// The payload of the next frame with this opcode (frames before it stay queued).
    pub fn expect(&mut self, opcode: &str) -> Value {
        if let Some(i) = self.pending.iter().position(|(op, _)| op == opcode) {
            return self.pending.remove(i).expect("found").1;
        }
        loop {
            let (op, payload) = self.next_unqueued();
            if op == opcode {
                return payload;
            }
            assert!(
                op != "close" && op != "gone",
                "closed before {opcode}: {payload}"
            );
            self.pending.push_back((op, payload));
        }
    }

    fn next_unqueued(&mut self) -> (String, Value) {
        let queued = std::mem::take(&mut self.pending);
        let f = self.next();
        self.pending = queued;
        f
    }

    /// Every frame that arrives within `d` (and those already read).
    pub fn drain(&mut self, d: Duration) -> Vec<(String, Value)> {
        let mut frames: Vec<_> = self.pending.drain(..).collect();
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return frames;
            }
            self.ws.get_mut().set_read_timeout(Some(left)).unwrap();
            match read1(&mut self.ws) {
                Read1::Data(m) => frames.push((
                    m.v["opcode"].as_str().unwrap_or("").to_string(),
                    m.v.get("payload").cloned().unwrap_or(Value::Null),
                )),
                Read1::Ping => {}
                Read1::Close(code) => frames.push(("close".into(), json!(code))),
                Read1::Timeout => {
                    self.ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
                    return frames;
                }
                Read1::Gone(_) => return frames,
            }
        }
    }
}
