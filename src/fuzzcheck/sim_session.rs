//! A whole two-shard server in the simulator, driven by arbitrary client bytes: it never
//! panics, every frame a rooms client gets decodes to an envelope `{v:1, t, p:{…}}` (a
//! relayed unreliable message carries whatever `p` its sender gave, or none) (the
//! simulator decodes each one), the echo client gets back exactly what it sent, and once
//! every client is gone and parked sessions have expired no session or room is left.
//!
//! Input: `[setup]` then records `[ctl][len: u16 LE][bytes]`. `setup` bit 0: client B
//! speaks MessagePack; bit 1: A connects to shard 1; bit 2: B to shard 1; bit 3: A
//! connects on `/` (the first message decides its dialect) rather than `/rooms`.
//! `ctl % 5`: 0: A sends `len` bytes (A's first message after connecting is its
//! handshake); 1: B (handshaken, in room `r`) sends `len` bytes; 2: the clock advances
//! `len` ms; 3: A's socket drops and a new A connects to shard `(ctl >> 3) & 1`; 4: the
//! echo client E sends `len` bytes as a binary message.

use crate::codec::Codec;
use crate::config::{Config, Policy, SessionConfig};
use crate::core::TICK_MS;
use crate::dialects::Route;
use crate::sim::{ClientId, Received, Sim};
use serde_json::json;

const SHARDS: usize = 2;
/// Shorter than the default so waiting out parked sessions keeps executions fast.
const RESUME_TTL_MS: u64 = 2_000;

/// Checks every frame a client received is an envelope.
fn check_inbox(sim: &mut Sim, c: ClientId) {
    for received in sim.drain(c) {
        match received {
            Received::Frame(v) => {
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

    while let [ctl, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi]));
        rest = tail;
        match ctl % 5 {
            0 | 1 | 4 => {
                let (bytes, tail) = rest.split_at(len.min(rest.len()));
                rest = tail;
                let from = match ctl % 5 {
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
            _ => {
                sim.disconnect(a);
                a = sim.open(usize::from(ctl >> 3 & 1), a_route.clone(), Codec::Json);
                clients.push(a);
            }
        }
        for &c in &clients {
            check_inbox(&mut sim, c);
        }
    }

    for &c in &clients {
        sim.disconnect(c);
        check_inbox(&mut sim, c);
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
