//! The PeerJS-compatible broker (`protocols/cloudlink.md`, "PeerJS-compatible broker") on
//! a simulated two-shard server, driven by a script: sockets connect with ids, tokens and
//! keys from small tables (so ids collide, under the same token or another), send
//! `OFFER`/`ANSWER`/`CANDIDATE`/`LEAVE`/`EXPIRE`/`HEARTBEAT` (a `dst` that is connected,
//! absent, empty, not a string; a forged `src`; extra fields) or raw text, drop, come back,
//! let the clock run past the 5 s hold, and `GET /peerjs/id` and `/peers`.
//!
//! What every socket receives is exactly one of `{"type":"OPEN"}` (first, once),
//! `{"type":"ERROR"|"ID-TAKEN","payload":{"msg":…}}` (then a close), or a forwarded
//! `{type, src, dst[, payload]}` with only those keys, `type` one of the five, `dst` the
//! socket's own id and `src` the id of a socket that held its id — or, for the server's
//! `EXPIRE` (no payload), an id the receiver's id sent a held message to. The broker never
//! holds more ids than distinct ids are connected. A model of the page run alongside
//! predicts every frame (in order; the `EXPIRE`s of one clock advance in any order), the
//! ids held, the ids with messages waiting, and `/peers` with discovery on. Raw frames are
//! read with huddle's own decoder (JSON's edge cases are not the broker's); with duplicate
//! keys, idle timeouts (setup bit) or a hold past its bound only the properties hold.
//!
//! Input: `[setup][q0][q1][q2][q3]` then operations `[op]…`: `op & 3` a slot,
//! `(op >> 2) % 8` the kind (see the match below). `qN` is slot N's first query (bits
//! 0–2 id, 3–4 token, 5–6 key). `setup` bits 0–3: the shards of slots 0–3; bit 4: default
//! ping/idle timeouts; bit 5: `peerjs_discovery`.

use std::collections::{BTreeMap, BTreeSet};

use super::input::{json_eq, Input};
use crate::cloudlink::peerjs::{HELD_MAX, HOLD_MS};
use crate::codec::{self, Codec, Decoder};
use crate::config::Config;
use crate::sim::{ClientId, Received, Sim};
use serde_json::{json, Map, Value};

const SHARDS: usize = 2;
const SOCKETS_MAX: usize = 12;
const FORWARDED: [&str; 5] = ["OFFER", "ANSWER", "CANDIDATE", "LEAVE", "EXPIRE"];
const NO_PARAMS: &str = "No id, token, or key supplied to websocket server";

/// Ids as they go in a query, and what the server reads (`""`: none).
const IDS: [(&str, &str); 8] = [
    ("alice", "alice"),
    ("bob", "bob"),
    ("carol", "carol"),
    ("a%20b", "a b"),
    ("a+b", "a b"),
    (
        "01HZZZZZZZZZZZZZZZZZZZZZZZ_game",
        "01HZZZZZZZZZZZZZZZZZZZZZZZ_game",
    ),
    ("alice&id=bob", "alice"),
    ("", ""),
];
const TOKENS: [&str; 4] = ["t", "u", "", "t"];
const KEYS: [&str; 4] = ["peerjs", "peerjs", "PEERJS", ""];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Refused (`ERROR`, `ID-TAKEN`).
    Refused,
    /// Holds its id.
    Holding,
    /// Another socket with the same token took its id over; it still sends as the id.
    Replaced,
    /// Gave its id up with `LEAVE` and no `dst`.
    Left,
    /// Its connection is gone.
    Gone,
}

#[derive(Clone, Debug)]
struct Sock {
    /// The id the server reads from the query ("" when none).
    id: String,
    token: String,
    key: String,
    status: St,
    /// It held its id at some point (may send as it).
    entitled: bool,
}

#[derive(Clone, Debug)]
struct Hold {
    since: u64,
    /// (sender id, frame), the first `HELD_MAX`.
    msgs: Vec<(String, Value)>,
}

#[derive(Clone, Debug, Default)]
struct Broker {
    socks: BTreeMap<ClientId, Sock>,
    holders: BTreeMap<String, ClientId>,
    holds: BTreeMap<String, Hold>,
    /// (sender id, dst) of every message ever held: the `EXPIRE`s that may come back.
    held_for: BTreeSet<(String, String)>,
}

#[derive(Clone, Debug)]
enum Exp {
    Frame(Value),
    Close,
}

#[derive(Clone, Debug)]
enum Got {
    Frame(Value),
    Close,
}

struct Model {
    b: Broker,
    out: BTreeMap<ClientId, Vec<Exp>>,
    exact: bool,
}

impl Model {
    fn send(&mut self, c: ClientId, e: Exp) {
        self.out.entry(c).or_default().push(e);
    }

    fn refuse(&mut self, c: ClientId, kind: &str, msg: &str) {
        self.send(
            c,
            Exp::Frame(json!({"type": kind, "payload": {"msg": msg}})),
        );
        self.send(c, Exp::Close);
        self.b.socks.get_mut(&c).unwrap().status = St::Refused;
    }

    fn connect(&mut self, c: ClientId, sock: Sock) {
        self.b.socks.insert(c, sock.clone());
        if sock.id.is_empty() || sock.token.is_empty() || sock.key.is_empty() {
            return self.refuse(c, "ERROR", NO_PARAMS);
        }
        if sock.key != "peerjs" {
            return self.refuse(c, "ERROR", "Invalid key provided");
        }
        match self.b.holders.get(&sock.id).copied() {
            Some(old) if self.b.socks[&old].token != sock.token => {
                return self.refuse(c, "ID-TAKEN", "ID is taken");
            }
            Some(old) => self.b.socks.get_mut(&old).unwrap().status = St::Replaced,
            None => self.send(c, Exp::Frame(json!({"type": "OPEN"}))),
        }
        self.b.holders.insert(sock.id.clone(), c);
        let s = self.b.socks.get_mut(&c).unwrap();
        s.status = St::Holding;
        s.entitled = true;
        if let Some(hold) = self.b.holds.remove(&sock.id) {
            for (_, frame) in hold.msgs {
                self.send(c, Exp::Frame(frame));
            }
        }
    }

    fn gone(&mut self, c: ClientId) {
        let Some(s) = self.b.socks.get_mut(&c) else {
            return;
        };
        let was = s.status;
        s.status = St::Gone;
        if was == St::Holding && self.b.holders.get(&s.id) == Some(&c) {
            let id = s.id.clone();
            self.b.holders.remove(&id);
        }
    }

    /// One frame from `c`, as the `peer` server reads it.
    fn message(&mut self, c: ClientId, v: &Value, now: u64) {
        let s = self.b.socks[&c].clone();
        if !matches!(s.status, St::Holding | St::Replaced) {
            return;
        }
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            return;
        };
        let dst = match v.get("dst") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if d.is_empty() => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(_) => return,
        };
        match (kind, dst) {
            ("HEARTBEAT", _) => {}
            ("LEAVE", None) if s.status == St::Holding => {
                self.b.holders.remove(&s.id);
                self.b.socks.get_mut(&c).unwrap().status = St::Left;
            }
            (k, Some(dst)) if FORWARDED.contains(&k) => {
                let mut frame = Map::new();
                frame.insert("type".into(), json!(k));
                frame.insert("src".into(), json!(s.id));
                frame.insert("dst".into(), json!(dst));
                if let Some(p) = v.get("payload") {
                    frame.insert("payload".into(), p.clone());
                }
                let frame = Value::Object(frame);
                if let Some(&to) = self.b.holders.get(&dst) {
                    return self.send(to, Exp::Frame(frame));
                }
                if matches!(k, "LEAVE" | "EXPIRE") {
                    return;
                }
                self.b.held_for.insert((s.id.clone(), dst.clone()));
                let hold = self.b.holds.entry(dst).or_insert(Hold {
                    since: now,
                    msgs: Vec::new(),
                });
                if hold.msgs.len() < HELD_MAX {
                    hold.msgs.push((s.id, frame));
                } else {
                    // Past the bound (beyond the page): which senders hear EXPIRE is the
                    // implementation's.
                    self.exact = false;
                }
            }
            _ => {}
        }
    }

    /// The clock reached `now`: holds older than 5 s send `EXPIRE` back to each sender.
    fn expire(&mut self, now: u64) {
        let due: Vec<String> = self
            .b
            .holds
            .iter()
            .filter(|(_, h)| h.since + HOLD_MS <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let hold = self.b.holds.remove(&id).unwrap();
            let mut told: Vec<String> = Vec::new();
            for (src, _) in hold.msgs {
                if told.contains(&src) {
                    continue;
                }
                if let Some(&to) = self.b.holders.get(&src) {
                    let frame = json!({"type": "EXPIRE", "src": id, "dst": src});
                    self.send(to, Exp::Frame(frame));
                }
                told.push(src);
            }
        }
    }
}

/// Every string value under a `dst` key (what a frame with duplicate keys may send to).
fn dsts(v: &codec::Value<'_>, out: &mut Vec<String>) {
    if let codec::Value::Object(map) = v {
        for (k, x) in map.iter() {
            if k == "dst" {
                if let Some(s) = codec::as_str(x) {
                    out.push(s.to_string());
                }
            }
        }
    }
}

fn duplicate_keys(v: &codec::Value<'_>) -> bool {
    match v {
        codec::Value::Object(map) => {
            let keys: BTreeSet<&str> = map.keys().map(|k| &**k).collect();
            keys.len() != map.len() || map.values().any(duplicate_keys)
        }
        codec::Value::Array(items) => items.iter().any(duplicate_keys),
        _ => false,
    }
}

fn uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && hex(0..8)
        && hex(9..13)
        && hex(14..18)
        && hex(19..23)
        && hex(24..36)
        && b[14] == b'4'
        && b"89ab".contains(&b[19])
}

struct Harness {
    sim: Sim,
    slots: [Option<ClientId>; 4],
    b: Broker,
    /// Idle timeouts are off: advancing the clock only runs the holds out.
    timeless: bool,
    discovery: bool,
    /// The model lost track (see the module doc): only the properties are checked.
    lost: bool,
}

#[derive(Debug)]
enum Action {
    Connect {
        slot: usize,
        shard: usize,
        nested: bool,
        query: String,
        sock: Sock,
        drop_old: bool,
    },
    Frame(usize, Value),
    Raw(usize, String),
    Advance(u64),
    Disconnect(usize, bool),
    Get(String),
}

impl Harness {
    fn step(&mut self, action: Action) {
        if trace() {
            eprintln!("--- {action:?}");
        }
        let mut m = Model {
            b: self.b.clone(),
            out: BTreeMap::new(),
            exact: true,
        };
        let mut unordered = false;
        let mut leaving = Vec::new();
        match action {
            Action::Connect {
                slot,
                shard,
                nested,
                query,
                sock,
                drop_old,
            } => {
                if self.b.socks.len() >= SOCKETS_MAX {
                    return;
                }
                if let (true, Some(old)) = (drop_old, self.slots[slot]) {
                    self.sim.disconnect(old);
                    m.gone(old);
                    leaving.push(old);
                }
                let path = if nested { "/peerjs/peerjs" } else { "/peerjs" };
                let c = self
                    .sim
                    .upgrade(shard, &format!("{path}?{query}"), None, None, Codec::Json)
                    .expect("the broker's paths are routed");
                self.slots[slot] = Some(c);
                m.connect(c, sock);
            }
            Action::Frame(slot, v) => {
                if let Some(c) = self.slots[slot] {
                    m.message(c, &v, self.sim.now);
                    self.sim.send_text(c, &v.to_string());
                }
            }
            Action::Raw(slot, text) => {
                if let Some(c) = self.slots[slot] {
                    let mut bytes = text.as_bytes().to_vec();
                    let mut decoder = Decoder::default();
                    if let Ok(v) = decoder.decode(Codec::Json, &mut bytes) {
                        if duplicate_keys(&v) {
                            m.exact = false;
                            // The EXPIREs it may cause come back from any of its dsts.
                            let mut to = Vec::new();
                            dsts(&v, &mut to);
                            let id = m.b.socks[&c].id.clone();
                            m.b.held_for.extend(to.into_iter().map(|d| (id.clone(), d)));
                        } else {
                            m.message(c, &codec::to_json(&v), self.sim.now);
                        }
                    }
                    self.sim.send_text(c, &text);
                }
            }
            Action::Advance(ms) => {
                self.sim.advance(ms);
                m.expire(self.sim.now);
                unordered = true;
                m.exact &= self.timeless;
            }
            Action::Disconnect(slot, close_frame) => {
                if let Some(c) = self.slots[slot] {
                    if close_frame {
                        self.sim.close(c, 1000);
                    } else {
                        self.sim.disconnect(c);
                    }
                    m.gone(c);
                    leaving.push(c);
                }
            }
            Action::Get(path) => {
                let reply = self.sim.http_get(0, &path);
                let bare = path.split('?').next().unwrap_or("");
                let what = match bare {
                    "/peerjs/id" | "/peerjs/peerjs/id" => Some("id"),
                    "/peerjs/peers" | "/peerjs/peerjs/peers" => Some("peers"),
                    _ => None,
                };
                match (what, reply) {
                    (Some("id"), Some(r)) => {
                        let body = String::from_utf8(r.body).expect("utf-8");
                        assert_eq!(r.status, 200, "GET {path}");
                        assert!(uuid_v4(&body), "GET {path}: not a UUIDv4: {body}");
                    }
                    (Some(_), Some(r)) if self.discovery => {
                        assert_eq!(r.status, 200, "GET {path}");
                        let ids: Vec<String> =
                            serde_json::from_slice(&r.body).expect("/peers is a JSON list");
                        let ids: BTreeSet<String> = ids.into_iter().collect();
                        let held: BTreeSet<String> = m.b.holders.keys().cloned().collect();
                        if !self.lost {
                            assert_eq!(ids, held, "GET {path}: the ids connected");
                        }
                    }
                    (Some(_), Some(r)) => assert_eq!(r.status, 401, "GET {path}"),
                    (Some(_), None) => panic!("GET {path} not served"),
                    (None, Some(r)) => {
                        assert!([200, 401].contains(&r.status), "GET {path}: {}", r.status)
                    }
                    (None, None) => {}
                }
            }
        }
        let exact = m.exact && !self.lost;
        let out = std::mem::take(&mut m.out);
        // Drain and check every socket.
        let ids: Vec<ClientId> = m.b.socks.keys().copied().collect();
        let mut out = out;
        for c in ids {
            let got: Vec<Got> = self
                .sim
                .drain(c)
                .into_iter()
                .filter_map(|r| match r {
                    Received::Frame(v) => Some(Got::Frame(v)),
                    Received::Close(..) => Some(Got::Close),
                    Received::Ping => None,
                    other => panic!("socket {c}: a frame that is not JSON: {other:?}"),
                })
                .collect();
            if trace() && !got.is_empty() {
                eprintln!("  {c} ({}): {got:?}", m.b.socks[&c].id);
            }
            check_frames(c, &got, &self.b, &m.b);
            if leaving.contains(&c) {
                assert!(
                    got.iter().all(|g| matches!(g, Got::Close)),
                    "socket {c} gets frames as it goes: {got:?}"
                );
                continue;
            }
            if !exact {
                continue;
            }
            let want = out.remove(&c).unwrap_or_default();
            let matches = |e: &Exp, g: &Got| match (e, g) {
                (Exp::Frame(w), Got::Frame(v)) => json_eq(w, v),
                (Exp::Close, Got::Close) => true,
                _ => false,
            };
            let same = if unordered {
                let mut left: Vec<&Exp> = want.iter().collect();
                got.len() == want.len()
                    && got
                        .iter()
                        .all(|g| match left.iter().position(|e| matches(e, g)) {
                            Some(i) => {
                                left.remove(i);
                                true
                            }
                            None => false,
                        })
            } else {
                got.len() == want.len() && want.iter().zip(&got).all(|(e, g)| matches(e, g))
            };
            assert!(
                same,
                "socket {c} ({:?}) received\n  {got:?}\nthe page says\n  {want:?}",
                m.b.socks[&c]
            );
        }
        // The broker holds no more ids than distinct ids are connected.
        let held: usize = (0..SHARDS)
            .map(|s| self.sim.cloudlink(s).broker.len())
            .sum();
        let connected: BTreeSet<&str> =
            m.b.socks
                .iter()
                .filter(|(c, s)| self.sim.is_connected(**c) && !s.id.is_empty())
                .map(|(_, s)| s.id.as_str())
                .collect();
        assert!(
            held <= connected.len(),
            "the broker holds {held} ids, {} distinct ids connected",
            connected.len()
        );
        if exact {
            assert_eq!(held, m.b.holders.len(), "ids held: {:?}", m.b.holders);
            let waiting: usize = (0..SHARDS)
                .map(|s| self.sim.cloudlink(s).broker.held())
                .sum();
            assert_eq!(waiting, m.b.holds.len(), "ids with messages waiting");
            for (c, s) in &m.b.socks {
                let open = !matches!(s.status, St::Refused | St::Gone);
                assert_eq!(self.sim.is_connected(*c), open, "socket {c} connected");
            }
        } else {
            // From here on the model cannot follow the holds: it reads back who holds what
            // and checks the properties only.
            self.lost = true;
            self.resync(&mut m.b);
        }
        self.b = m.b;
    }

    /// The server's view of which socket holds each id and of each socket's standing (the
    /// holds are forgotten: an `EXPIRE` they cause is checked against `held_for`, which
    /// keeps every pair it might be).
    fn resync(&mut self, b: &mut Broker) {
        use crate::cloudlink::peerjs::PeerState;
        use crate::dialects::DialectSession;
        b.holders.clear();
        for (c, s) in b.socks.iter_mut() {
            if !self.sim.is_connected(*c) {
                s.status = St::Gone;
                continue;
            }
            let core = &self.sim.cores[self.sim.shard_of(*c)];
            let Some(session) = core.session(self.sim.key_of(*c)) else {
                continue;
            };
            if let DialectSession::Peerjs(p) = &session.dialect {
                s.status = match p.state {
                    PeerState::Holding => St::Holding,
                    PeerState::Replaced => St::Replaced,
                    PeerState::Done | PeerState::Connecting => St::Left,
                };
                if s.status == St::Holding {
                    s.entitled = true;
                    b.holders.insert(s.id.clone(), *c);
                }
            }
        }
        b.holds.clear();
    }
}

/// `HUDDLE_FUZZ_TRACE=1`: print each operation and what every socket received.
fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HUDDLE_FUZZ_TRACE").is_some())
}

/// What holds for any socket's frames.
fn check_frames(c: ClientId, got: &[Got], before: &Broker, after: &Broker) {
    let me = &after.socks[&c];
    let opened_before = before.socks.get(&c).is_some_and(|s| s.entitled);
    let mut closed = false;
    for (i, g) in got.iter().enumerate() {
        assert!(!closed, "socket {c}: {g:?} after its close");
        let v = match g {
            Got::Close => {
                closed = true;
                continue;
            }
            Got::Frame(v) => v,
        };
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("socket {c}: not an object: {v}"));
        let kind = v["type"]
            .as_str()
            .unwrap_or_else(|| panic!("socket {c}: no type: {v}"));
        match kind {
            "OPEN" => {
                assert_eq!(obj.len(), 1, "{v}");
                assert!(
                    i == 0 && !opened_before,
                    "socket {c}: OPEN not first: {got:?}"
                );
            }
            "ERROR" | "ID-TAKEN" => {
                assert_eq!(obj.len(), 2, "{v}");
                let p = v["payload"].as_object().expect("payload");
                assert!(p.len() == 1 && p["msg"].is_string(), "{v}");
                assert!(
                    i == 0 && !opened_before && matches!(got.get(1), Some(Got::Close)),
                    "socket {c}: a refusal is all it gets, then a close: {got:?}"
                );
            }
            k if FORWARDED.contains(&k) => {
                let keys = ["type", "src", "dst", "payload"];
                assert!(
                    obj.keys().all(|k| keys.contains(&k.as_str())),
                    "extra fields: {v}"
                );
                assert_eq!(v["dst"], me.id.as_str(), "socket {c}: not its id: {v}");
                let src = v["src"]
                    .as_str()
                    .unwrap_or_else(|| panic!("src not a string: {v}"));
                let from_a_holder = after.socks.values().any(|s| s.entitled && s.id == src);
                let expired = k == "EXPIRE"
                    && !obj.contains_key("payload")
                    && after.held_for.contains(&(me.id.clone(), src.to_string()));
                assert!(
                    from_a_holder || expired,
                    "socket {c}: src {src} never held its id: {v}"
                );
            }
            _ => panic!("socket {c}: unknown type: {v}"),
        }
    }
}

fn query(q: u8) -> (String, Sock) {
    let (raw_id, id) = IDS[usize::from(q & 7)];
    let token = TOKENS[usize::from(q >> 3 & 3)];
    let key = KEYS[usize::from(q >> 5 & 3)];
    let mut parts = Vec::new();
    if !key.is_empty() {
        parts.push(format!("key={key}"));
    }
    parts.push(format!("id={raw_id}"));
    if !token.is_empty() {
        parts.push(format!("token={token}"));
    }
    parts.push("version=1.5.4".into());
    let sock = Sock {
        id: id.into(),
        token: token.into(),
        key: key.into(),
        status: St::Gone,
        entitled: false,
    };
    (parts.join("&"), sock)
}

impl Harness {
    fn id_of(&self, slot: usize) -> String {
        self.slots[slot]
            .and_then(|c| self.b.socks.get(&c))
            .map_or_else(|| "zed".into(), |s| s.id.clone())
    }

    fn dst(&self, inp: &mut Input<'_>) -> Option<Value> {
        let b = inp.byte();
        Some(match b % 16 {
            0 => return None,
            1 => Value::Null,
            2 => json!(""),
            3 => json!(5),
            4 => json!({"id": "alice"}),
            5 => json!(["alice"]),
            6 => json!("zed"),
            7 => json!("ALICE"),
            8 => Value::String(inp.short_text()),
            9..=12 => json!(IDS[usize::from(b % 16 - 9) % 6].1),
            _ => json!(self.id_of(usize::from(b >> 4 & 3))),
        })
    }

    fn signal(&self, inp: &mut Input<'_>, to_slot: bool) -> Value {
        let mut obj = Map::new();
        let kind = inp.pick(&[
            "OFFER",
            "ANSWER",
            "CANDIDATE",
            "LEAVE",
            "EXPIRE",
            "HEARTBEAT",
            "OFFER",
            "CANDIDATE",
            "offer",
            "OPEN",
            "ID-TAKEN",
            "",
        ]);
        obj.insert("type".into(), json!(kind));
        let dst = if to_slot {
            Some(json!(self.id_of(usize::from(inp.byte() & 3))))
        } else {
            self.dst(inp)
        };
        if let Some(d) = dst {
            obj.insert("dst".into(), d);
        }
        match inp.byte() % 4 {
            0 => {}
            1 => {
                obj.insert("payload".into(), Value::Null);
            }
            _ => {
                obj.insert("payload".into(), inp.value(2));
            }
        }
        if !to_slot {
            match inp.byte() % 4 {
                1 => {
                    obj.insert("src".into(), json!("mallory"));
                }
                2 => {
                    obj.insert("src".into(), json!(self.id_of(1)));
                }
                3 => {
                    obj.insert("extra".into(), inp.value(1));
                }
                _ => {}
            }
        }
        Value::Object(obj)
    }
}

/// The `peerjs_frames` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_peerjs_frames(data: &[u8]) {
    let mut inp = Input::new(data);
    let setup = inp.byte();
    let timeless = setup & 0x10 == 0;
    let discovery = setup & 0x20 != 0;
    let mut cfg = Config {
        seed: 17,
        ..Config::default()
    };
    cfg.limits.msgs_burst = 1 << 20;
    cfg.limits.msgs_per_s = 1 << 20;
    if timeless {
        cfg.limits.ping_ms = 1 << 40;
        cfg.limits.idle_ms = 1 << 41;
    }
    cfg.cloudlink.peerjs_discovery = discovery;
    let mut h = Harness {
        sim: Sim::new(SHARDS, cfg),
        slots: [None; 4],
        b: Broker::default(),
        timeless,
        discovery,
        lost: false,
    };
    for slot in 0..4 {
        let (query, sock) = query(inp.byte());
        h.step(Action::Connect {
            slot,
            shard: usize::from(setup >> slot & 1),
            nested: false,
            query,
            sock,
            drop_old: false,
        });
    }
    while !inp.is_empty() {
        let op = inp.byte();
        let slot = usize::from(op & 3);
        let action = match op >> 2 & 7 {
            0 => {
                let (query, sock) = query(inp.byte());
                let b = inp.byte();
                Action::Connect {
                    slot,
                    shard: usize::from(b & 1),
                    nested: b & 2 != 0,
                    query,
                    sock,
                    drop_old: b & 4 != 0,
                }
            }
            1 => Action::Frame(slot, h.signal(&mut inp, false)),
            2 => Action::Raw(slot, inp.short_text()),
            3 => Action::Advance(u64::from(inp.u16())),
            4 => Action::Disconnect(slot, inp.byte() & 1 != 0),
            5 => {
                // The slot's id comes back, with its token or another, the old socket
                // dropped or left open.
                let b = inp.byte();
                let old = h.slots[slot].and_then(|c| h.b.socks.get(&c)).cloned();
                let (id, token) = match old {
                    Some(s) if !s.id.is_empty() => {
                        let token = if b & 1 == 0 { s.token } else { "u".into() };
                        (s.id, token)
                    }
                    _ => ("alice".to_string(), "t".to_string()),
                };
                let raw = id.replace(' ', "%20");
                let token = if token.is_empty() { "t".into() } else { token };
                Action::Connect {
                    slot,
                    shard: usize::from(b >> 1 & 1),
                    nested: b & 8 != 0,
                    query: format!("key=peerjs&id={raw}&token={token}"),
                    sock: Sock {
                        id,
                        token,
                        key: "peerjs".into(),
                        status: St::Gone,
                        entitled: false,
                    },
                    drop_old: b & 4 != 0,
                }
            }
            6 => {
                let path = match inp.byte() % 10 {
                    0 => "/peerjs/id".to_string(),
                    1 => "/peerjs/peerjs/id".into(),
                    2 => "/peerjs/peers".into(),
                    3 => "/peerjs/peerjs/peers".into(),
                    4 => "/PEERJS/id".into(),
                    5 => "/peerjs/id/".into(),
                    6 => "/peerjs".into(),
                    7 => "/peerjs/peerjs/peerjs/id".into(),
                    _ => format!("/{}", inp.short_text()),
                };
                Action::Get(path)
            }
            _ => Action::Frame(slot, h.signal(&mut inp, true)),
        };
        h.step(action);
    }
}
