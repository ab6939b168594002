//! A whole two-shard server in the simulator, driven by arbitrary client bytes: it never
//! panics, every frame a rooms client gets decodes to an envelope `{v:1, t, p:{…}}` (a
//! relayed unreliable message carries whatever `p` its sender gave, or none) (the
//! simulator decodes each one), the echo client gets back exactly what it sent, and once
//! every client is gone and parked sessions have expired no session or room is left.
//! Beside the clients that send arbitrary bytes, two scripted ones: D in room `r` (with B)
//! and C in room `s`. Their sequenced room messages (`{type:"seq", data:{n}}`, `n` rising
//! per sender) reach every member in the order sent (per receiver and sender, `n` only
//! rises); a message never leaves its room (C never sees a frame about a room but `s`, D
//! none but `r`, answers to their own requests aside; and whoever receives C's or D's messages gets them under their room); and
//! each of their RPCs (a unique `rid` each) gets exactly one `rpc.response` with its `rid`,
//! at once (the server runs until quiet after each), unless the client's connection is
//! gone.
//!
//! Input: `[setup]` then records `[ctl][len: u16 LE][bytes]`. `setup` bit 0: client B
//! speaks MessagePack; bit 1: A connects to shard 1; bit 2: B to shard 1; bit 3: A
//! connects on `/` (the first message decides its dialect) rather than `/rooms`; bit 4: C
//! to shard 1; bit 5: D to shard 1. `ctl % 8`: 0: A sends `len` bytes (A's first message
//! after connecting is its handshake); 1: B (handshaken, in room `r`) sends `len` bytes;
//! 2: the clock advances `len` ms; 3: A's socket drops and a new A connects to shard
//! `(ctl >> 3) & 1`; 4: the echo client E sends `len` bytes as a binary message; 5: D sends
//! its next sequenced message to `r`; 6: C its next to `s`; 7: D (C when `ctl & 8`) sends
//! RPC `(ctl >> 4) % 4`: `room.list`, a join of the room it is in (`already_joined`), an
//! unknown type, a `room.leave` of a room it is not in. Records 2, 3, 5, 6 and 7 carry no
//! bytes.

use crate::codec::Codec;
use crate::config::{Config, Policy, SessionConfig};
use crate::core::TICK_MS;
use crate::dialects::Route;
use crate::sim::{ClientId, Received, Sim};
use serde_json::json;

const SHARDS: usize = 2;
/// Shorter than the default so waiting out parked sessions keeps executions fast.
const RESUME_TTL_MS: u64 = 2_000;

/// Checks every frame a client received is an envelope, and the scripted senders'
/// messages in it are in order and in their rooms.
fn check_inbox(sim: &mut Sim, c: ClientId, order: &mut Order, senders: &[&Scripted]) {
    for received in sim.drain(c) {
        match received {
            Received::Frame(v) => {
                order.check(c, &v, senders);
                assert_eq!(v["v"], 1, "envelope version: {v}");
                assert!(v["t"].is_string(), "envelope type: {v}");
                // A relayed unreliable message carries its sender's `p` as it was, or none.
                let relayed = Policy::default()
                    .unreliable_types
                    .iter()
                    .any(|t| v["t"] == *t);
                assert!(relayed || v["p"].is_object(), "envelope payload: {v}");
            }
            Received::Text(_) | Received::Binary(_) => {
                panic!("a rooms frame that does not decode: {received:?}")
            }
            Received::Ping | Received::Close(..) => {}
        }
    }
}

/// A scripted client: only sends what the script says, so what it receives can be held
/// to its room.
struct Scripted {
    id: ClientId,
    /// Its `client_id` (relayed messages carry it as `from`).
    client_id: serde_json::Value,
    room: &'static str,
    /// The `n` of its next sequenced message.
    next_n: u64,
    /// Its RPCs so far (their `rid`s are `<room><count>`).
    rpcs: u64,
}

impl Scripted {
    /// A client handshaken on `shard` and joined to `room`.
    fn join(sim: &mut Sim, shard: usize, room: &'static str) -> Scripted {
        let (id, ok) = sim.handshaken(shard, Codec::Json);
        sim.send(id, json!({"v": 1, "t": "room.join_or_create", "rid": "j", "room": room, "p": {"room_type": "echo_room"}}));
        let joined = sim.recv_where(id, |v| v["t"] == "rpc.response" && v["rid"] == "j");
        assert_eq!(
            joined.map(|v| v["p"]["ok"].clone()),
            Some(json!(true)),
            "{room}: joined"
        );
        Scripted {
            id,
            client_id: ok["client_id"].clone(),
            room,
            next_n: 0,
            rpcs: 0,
        }
    }

    fn send_sequenced(&mut self, sim: &mut Sim) {
        if sim.is_connected(self.id) {
            let message = json!({"v": 1, "t": "room.message", "room": self.room, "p": {"type": "seq", "data": {"n": self.next_n}}});
            self.next_n += 1;
            sim.send(self.id, message);
        }
    }

    /// Sends RPC `which` (the module's documentation lists them); returns its `rid`, or
    /// `None` when the connection is gone.
    fn send_rpc(&mut self, sim: &mut Sim, which: u8) -> Option<String> {
        if !sim.is_connected(self.id) {
            return None;
        }
        self.rpcs += 1;
        let rid = format!("{}{}", self.room, self.rpcs);
        let request = match which % 4 {
            0 => json!({"v": 1, "t": "room.list", "rid": rid, "p": {}}),
            1 => {
                json!({"v": 1, "t": "room.join_or_create", "rid": rid, "room": self.room, "p": {"room_type": "echo_room"}})
            }
            2 => json!({"v": 1, "t": "no.such.type", "rid": rid, "p": {}}),
            _ => json!({"v": 1, "t": "room.leave", "rid": rid, "room": "elsewhere"}),
        };
        sim.send(self.id, request);
        Some(rid)
    }
}

/// What the per-sender and per-room checks remember across a session.
#[derive(Default)]
struct Order {
    /// (receiver, sender's `client_id`) → the last `n` the receiver got from the sender.
    last_n: std::collections::HashMap<(ClientId, String), u64>,
}

impl Order {
    /// Holds `frame`, received by `receiver`, to the room and order rules for the scripted
    /// `senders`.
    fn check(&mut self, receiver: ClientId, frame: &serde_json::Value, senders: &[&Scripted]) {
        if frame["t"] != "room.message" || frame["p"]["type"] != "seq" {
            return;
        }
        let Some(sender) = senders.iter().find(|s| frame["p"]["from"] == s.client_id) else {
            return;
        };
        assert_eq!(
            frame["room"], sender.room,
            "a message left its room: {frame}"
        );
        let n = frame["p"]["data"]["n"]
            .as_u64()
            .unwrap_or_else(|| panic!("a sequenced message without its n: {frame}"));
        let last = self
            .last_n
            .insert((receiver, sender.client_id.to_string()), n);
        assert!(
            last.is_none_or(|last| last < n),
            "client {receiver} got n {n} from {} after n {last:?}",
            sender.client_id
        );
    }
}

/// Holds a scripted client's inbox to its room, and its responses to one per RPC.
fn check_scripted(
    sim: &mut Sim,
    me: &Scripted,
    order: &mut Order,
    senders: &[&Scripted],
    rid: Option<&str>,
) {
    let mut responses = 0;
    for received in sim.drain(me.id) {
        let Received::Frame(v) = received else {
            continue;
        };
        // An rpc.response names the room its request named (here: "elsewhere").
        let room = &v["room"];
        assert!(
            room.is_null() || *room == me.room || v["t"] == "rpc.response",
            "client in {} got a frame about another room: {v}",
            me.room
        );
        if v["t"] == "rpc.response" {
            let answered = v["rid"].as_str();
            assert_eq!(
                answered, rid,
                "an rpc.response to no open request of {}: {v}",
                me.room
            );
            responses += 1;
        }
        order.check(me.id, &v, senders);
    }
    if rid.is_some() && sim.is_connected(me.id) {
        assert_eq!(
            responses, 1,
            "rpc.responses to {rid:?} of the client in {}",
            me.room
        );
    }
}

fn setup_bit(setup: u8, bit: u8) -> usize {
    usize::from(setup >> bit & 1)
}

/// The `sim_session` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_sim_session(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let mut cfg = Config {
        seed: 7,
        session: SessionConfig {
            resume_ttl_ms: RESUME_TTL_MS,
            ..SessionConfig::default()
        },
        ..Config::default()
    };
    cfg.echo.enabled = true;
    let mut sim = Sim::new(SHARDS, cfg);
    let b_codec = if setup & 1 == 1 {
        Codec::Msgpack
    } else {
        Codec::Json
    };
    let (b, _) = sim.handshaken(setup_bit(setup, 2), b_codec);
    sim.send(b, json!({"v": 1, "t": "room.join_or_create", "rid": "j", "room": "r", "p": {"room_type": "echo_room"}}));
    let a_route = if setup_bit(setup, 3) == 1 {
        Route::Shared(crate::pairkit::PkRoute { peer: None })
    } else {
        Route::Rooms
    };
    let mut a = sim.open(setup_bit(setup, 1), a_route.clone(), Codec::Json);
    let echo = sim.open_raw(0, Route::Echo);
    let mut clients = vec![b, a];
    let mut c = Scripted::join(&mut sim, setup_bit(setup, 4), "s");
    let mut d = Scripted::join(&mut sim, setup_bit(setup, 5), "r");
    let mut order = Order::default();

    while let [ctl, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi]));
        rest = tail;
        let mut rpc = None;
        match ctl % 8 {
            0 | 1 | 4 => {
                let (bytes, tail) = rest.split_at(len.min(rest.len()));
                rest = tail;
                let from = match ctl % 8 {
                    0 => a,
                    1 => b,
                    _ => echo,
                };
                // An echo client left silent while the clock ran is pinged, and closed once
                // idle; while it is connected, each message comes back as it was sent.
                let echo_open = from == echo && sim.is_connected(echo);
                sim.send_bytes(from, bytes.to_vec());
                if from == echo {
                    let data: Vec<Received> = sim
                        .drain(echo)
                        .into_iter()
                        .filter(|r| !matches!(r, Received::Ping | Received::Close(..)))
                        .collect();
                    let want = if echo_open {
                        vec![Received::Binary(bytes.to_vec())]
                    } else {
                        Vec::new()
                    };
                    assert_eq!(data, want, "echo sends the message back unchanged");
                }
            }
            2 => sim.advance(len as u64),
            3 => {
                sim.disconnect(a);
                a = sim.open(usize::from(ctl >> 3 & 1), a_route.clone(), Codec::Json);
                clients.push(a);
            }
            5 => d.send_sequenced(&mut sim),
            6 => c.send_sequenced(&mut sim),
            _ if ctl & 8 == 0 => rpc = d.send_rpc(&mut sim, ctl >> 4).map(|rid| (d.id, rid)),
            _ => rpc = c.send_rpc(&mut sim, ctl >> 4).map(|rid| (c.id, rid)),
        }
        let senders = [&c, &d];
        for &client in &clients {
            check_inbox(&mut sim, client, &mut order, &senders);
        }
        for me in senders {
            let rid = rpc.as_ref().filter(|(id, _)| *id == me.id);
            check_scripted(
                &mut sim,
                me,
                &mut order,
                &senders,
                rid.map(|(_, rid)| rid.as_str()),
            );
        }
    }

    let senders = [&c, &d];
    for &client in &clients {
        sim.disconnect(client);
        check_inbox(&mut sim, client, &mut order, &senders);
    }
    for me in senders {
        sim.disconnect(me.id);
        check_scripted(&mut sim, me, &mut order, &senders, None);
    }
    sim.disconnect(echo);
    // Only parked sessions outlive their connection; wait them out, with two ticks to spare.
    sim.advance(RESUME_TTL_MS + 2 * TICK_MS);
    let gauge = |g: &std::sync::atomic::AtomicU64| g.load(std::sync::atomic::Ordering::Relaxed);
    for (i, core) in sim.cores.iter().enumerate() {
        assert_eq!(core.session_count(), 0, "sessions left on shard {i}");
        let rooms = &core.dialect.rooms;
        assert_eq!(rooms.room_count(), 0, "rooms left on shard {i}");
        let connections = gauge(&core.metrics().connections);
        assert_eq!(connections, 0, "connections gauge, shard {i}");
        assert_eq!(gauge(&rooms.metrics.rooms), 0, "rooms gauge, shard {i}");
    }
}
