//! Matchmaking rules (rooms.md "Matchmaking") on the deterministic simulator, with
//! participants on different shards.

use std::collections::HashMap;

use huddle::codec::Codec;
use huddle::config::Config;
use huddle::sim::{ClientId, Sim};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

fn cfg() -> Config {
    Config {
        seed: 5,
        ..Config::default()
    }
}

fn enqueue(sim: &mut Sim, c: ClientId, room_type: &str, size: Value) -> Value {
    sim.send(
        c,
        json!({"v":1,"t":"matchmaking.enqueue","rid":"mm","p":{"roomType":room_type,"size":size}}),
    );
    sim.recv_type(c, "rpc.response").expect("enqueue reply")
}

#[test]
fn queued_reply_has_a_one_based_position_fifo_per_type_and_size() {
    let mut sim = Sim::new(2, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(1, Codec::Msgpack);
    let (c, _) = sim.handshaken(1, Codec::Json);
    assert_eq!(
        enqueue(&mut sim, a, "echo_room", json!(3))["p"],
        json!({"ok":true,"queued":true,"room_type":"echo_room","size":3,"position":1})
    );
    assert_eq!(
        enqueue(&mut sim, b, "echo_room", json!(3))["p"]["position"],
        2
    );
    assert_eq!(
        enqueue(&mut sim, c, "echo_room", json!(4))["p"]["position"],
        1,
        "another size, another queue"
    );
}

#[test]
fn enqueuing_again_replaces_the_old_ticket() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(0, Codec::Json);
    enqueue(&mut sim, a, "echo_room", json!(3));
    assert_eq!(
        enqueue(&mut sim, a, "echo_room", json!(3))["p"]["position"],
        1
    );
    assert_eq!(
        enqueue(&mut sim, b, "echo_room", json!(3))["p"]["position"],
        2
    );
    // a moves to another queue: b is alone now
    enqueue(&mut sim, a, "counter_room", json!(2));
    sim.send(b, json!({"v":1,"t":"matchmaking.dequeue","rid":"d","p":{}}));
    assert_eq!(
        sim.recv_type(b, "rpc.response").unwrap()["p"],
        json!({"ok":true,"removed":true})
    );
    sim.send(
        b,
        json!({"v":1,"t":"matchmaking.dequeue","rid":"d2","p":{}}),
    );
    assert_eq!(
        sim.recv_type(b, "rpc.response").unwrap()["p"],
        json!({"ok":true,"removed":false})
    );
}

#[test]
fn a_match_across_shards_reserves_seats_and_tells_every_participant() {
    let mut sim = Sim::new(2, cfg());
    let (a, ha) = sim.handshaken(0, Codec::Json);
    let (b, hb) = sim.handshaken(1, Codec::Msgpack);
    enqueue(&mut sim, a, "counter_room", json!(2));
    let done = enqueue(&mut sim, b, "counter_room", json!(2.0));
    assert_eq!(done["p"]["ok"], true);
    assert_eq!(done["p"]["matched"], true);
    let room = done["p"]["room"].as_str().unwrap().to_string();
    for c in [a, b] {
        let found = sim
            .recv_type(c, "match.found")
            .expect("match.found to every participant");
        assert_eq!(found["room"], room.as_str());
        assert_eq!(
            found["p"],
            json!({"room":room,"room_type":"counter_room","size":2,"participants":[ha["client_id"],hb["client_id"]]})
        );
    }
    let home = huddle::core::home_shard(&room, 2).index();
    let r = sim
        .rooms(home)
        .room(&room)
        .expect("room created on its home");
    assert_eq!(r.options.max_players, Some(2));
    // An outsider cannot take a seat while it is reserved.
    let (o, _) = sim.handshaken(0, Codec::Json);
    sim.send(o, json!({"v":1,"t":"room.join_or_create","rid":"x","room":room,"p":{"room_type":"counter_room"}}));
    assert_eq!(
        sim.recv_type(o, "rpc.response").unwrap()["p"]["code"],
        "room_full"
    );
    // Participants join as the SDK does.
    for c in [a, b] {
        sim.send(c, json!({"v":1,"t":"room.join_or_create","rid":"j","p":{"roomType":"counter_room","roomId":room}}));
        assert_eq!(sim.recv_type(c, "rpc.response").unwrap()["p"]["ok"], true);
    }
}

#[test]
fn a_reserved_room_nobody_joins_is_disposed_when_the_reservation_ends() {
    let mut c = cfg();
    c.matchmaking.seat_reservation_ms = 1_000;
    let mut sim = Sim::new(1, c);
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(0, Codec::Json);
    enqueue(&mut sim, a, "echo_room", json!(2));
    let room = enqueue(&mut sim, b, "echo_room", json!(2))["p"]["room"]
        .as_str()
        .unwrap()
        .to_string();
    sim.advance(500);
    assert!(
        sim.rooms(0).room(&room).is_some(),
        "not disposed while reserved and empty"
    );
    sim.advance(600);
    assert!(sim.rooms(0).room(&room).is_none());
}

#[test]
fn tickets_expire_with_matchmaking_expired() {
    let mut c = cfg();
    c.matchmaking.ticket_ttl_ms = 1_000;
    let mut sim = Sim::new(2, c);
    let (a, _) = sim.handshaken(1, Codec::Msgpack);
    enqueue(&mut sim, a, "echo_room", json!(2));
    sim.advance(900);
    assert!(sim.recv_type(a, "matchmaking.expired").is_none());
    sim.advance(200);
    let expired = sim.recv_type(a, "matchmaking.expired").unwrap();
    assert_eq!(expired["p"], json!({"room_type":"echo_room","size":2}));
}

#[test]
fn a_disconnected_sessions_ticket_is_removed() {
    let mut sim = Sim::new(2, cfg());
    let (a, _) = sim.handshaken(1, Codec::Json);
    let (b, _) = sim.handshaken(0, Codec::Json);
    enqueue(&mut sim, a, "echo_room", json!(2));
    sim.disconnect(a);
    assert_eq!(
        enqueue(&mut sim, b, "echo_room", json!(2))["p"]["position"],
        1
    );
}

#[test]
fn bad_sizes_and_unknown_types_are_refused() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    for size in [json!(1), json!(65), json!(2.5), json!("2"), Value::Null] {
        assert_eq!(
            enqueue(&mut sim, a, "echo_room", size.clone())["p"]["code"],
            "bad_request",
            "{size}"
        );
    }
    assert_eq!(
        enqueue(&mut sim, a, "poker_room", json!(2))["p"]["code"],
        "unknown_room_type"
    );
}

#[test]
fn a_ticket_follows_its_session_when_it_moves_shards() {
    let mut sim = Sim::new(2, cfg());
    let (a, ha) = sim.handshaken(0, Codec::Json);
    enqueue(&mut sim, a, "echo_room", json!(2));
    // a joins a room homed on shard 1: it moves there with its ticket
    let room = (0..)
        .map(|i| format!("mv-{i}"))
        .find(|r| huddle::core::home_shard(r, 2).index() == 1)
        .unwrap();
    sim.send(
        a,
        json!({"v":1,"t":"room.join_or_create","rid":"j","room":room}),
    );
    assert_eq!(sim.shard_of(a), 1);
    let (b, _) = sim.handshaken(0, Codec::Json);
    assert_eq!(
        enqueue(&mut sim, b, "echo_room", json!(2))["p"]["matched"],
        true
    );
    let found = sim
        .recv_type(a, "match.found")
        .expect("the moved session is still matched");
    assert_eq!(found["p"]["participants"][0], ha["client_id"]);
}

/// 1000 sessions on 2 shards enqueue in random order into queues of sizes 2..=4: every one
/// ends in exactly one match or one expiry, none twice.
#[test]
fn churn_every_ticket_ends_in_exactly_one_match_or_expiry() {
    let seed = 2026u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = cfg();
    c.matchmaking.ticket_ttl_ms = 5_000;
    c.limits.conns_per_shard_max = 2_000;
    let mut sim = Sim::new(2, c);
    let mut clients: Vec<(ClientId, i64, &str)> = (0..1000)
        .map(|i| {
            let codec = if i % 2 == 0 {
                Codec::Json
            } else {
                Codec::Msgpack
            };
            let (c, _) = sim.handshaken(i % 2, codec);
            let room_type = ["echo_room", "counter_room"][rng.gen_range(0..2)];
            (c, rng.gen_range(2..=4), room_type)
        })
        .collect();
    clients.shuffle(&mut rng);
    for (i, (c, size, room_type)) in clients.iter().enumerate() {
        let reply = enqueue(&mut sim, *c, room_type, json!(size));
        assert_eq!(reply["p"]["ok"], true, "seed {seed} #{i}");
        if i % 97 == 0 {
            sim.advance(10);
        }
    }
    sim.advance(6_000);
    let mut rooms: HashMap<String, Vec<ClientId>> = HashMap::new();
    for (c, size, room_type) in &clients {
        let frames = sim.frames(*c);
        let found: Vec<&Value> = frames.iter().filter(|f| f["t"] == "match.found").collect();
        let expired = frames
            .iter()
            .filter(|f| f["t"] == "matchmaking.expired")
            .count();
        assert_eq!(
            found.len() + expired,
            1,
            "seed {seed}: client {c} got {frames:?}"
        );
        if let Some(f) = found.first() {
            assert_eq!(f["p"]["size"], *size);
            assert_eq!(f["p"]["room_type"], *room_type);
            rooms
                .entry(f["p"]["room"].as_str().unwrap().to_string())
                .or_default()
                .push(*c);
        }
    }
    for (room, members) in &rooms {
        assert_eq!(
            members.len(),
            clients.iter().find(|c| c.0 == members[0]).unwrap().1 as usize,
            "{room}"
        );
    }
    let matched: usize = rooms.values().map(Vec::len).sum();
    assert!(matched > 900, "most tickets match: {matched}");
}
