//! State sync rules (rooms.md "State sync") on the deterministic simulator.

use huddle::codec::Codec;
use huddle::config::Config;
use huddle::rooms::canon;
use huddle::sim::{ClientId, Sim};
use serde_json::{json, Value};

fn cfg() -> Config {
    Config {
        seed: 11,
        ..Config::default()
    }
}

fn hello(sim: &mut Sim, codec: Codec, extra: Value) -> ClientId {
    let c = sim.connect(0, codec);
    let mut h = json!({"v":1,"codecs":[codec.name()],"project_id":"demo"});
    h.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    sim.send_text(c, &h.to_string());
    sim.recv_type(c, "handshake.ok").expect("handshake.ok");
    c
}

fn join(sim: &mut Sim, c: ClientId, room: &str) {
    sim.send(c, json!({"v":1,"t":"room.join_or_create","rid":"j","room":room,"p":{"room_type":"state_room"}}));
    assert_eq!(sim.recv_type(c, "rpc.response").unwrap()["p"]["ok"], true);
}

fn set(sim: &mut Sim, c: ClientId, room: &str, path: &str, value: Value) {
    sim.send(c, json!({"v":1,"t":"room.message","room":room,"p":{"type":"state.set","data":{"path":path,"value":value}}}));
}

fn crc_of(state: &Value) -> u64 {
    u64::from(crc32fast::hash(&canon::to_vec(state)))
}

#[test]
fn checksum_is_crc32_of_the_jcs_state_and_only_for_clients_that_asked() {
    let mut sim = Sim::new(1, cfg());
    let crc = hello(&mut sim, Codec::Msgpack, json!({"checksum":"crc32"}));
    let plain = hello(&mut sim, Codec::Json, json!({}));
    join(&mut sim, crc, "s");
    join(&mut sim, plain, "s");
    let snap = sim.recv_type(crc, "state.snapshot").unwrap();
    assert_eq!(snap["p"]["checksum"], crc_of(&json!({})));
    assert!(sim.recv_type(plain, "state.snapshot").unwrap()["p"]
        .get("checksum")
        .is_none());
    set(&mut sim, plain, "s", "/b", json!({"é": 1.5, "A": [1, "x"]}));
    let patch = sim.recv_type(crc, "state.patch").unwrap();
    let expected = json!({"b": {"é": 1.5, "A": [1, "x"]}});
    assert_eq!(patch["p"]["checksum"], crc_of(&expected));
    assert_eq!(patch["p"]["seq"], 1);
    let plain_patch = sim.recv_type(plain, "state.patch").unwrap();
    assert!(
        plain_patch["p"].get("checksum").is_none(),
        "never null, never sent unasked"
    );
}

#[test]
fn a_joiner_gets_a_snapshot_with_the_seq_of_the_last_patch() {
    let mut sim = Sim::new(1, cfg());
    let a = hello(&mut sim, Codec::Json, json!({}));
    join(&mut sim, a, "s");
    set(&mut sim, a, "s", "/x", json!(1));
    set(&mut sim, a, "s", "/y", json!(2));
    let b = hello(&mut sim, Codec::Json, json!({"features":["crc32"]}));
    join(&mut sim, b, "s");
    let snap = sim.recv_type(b, "state.snapshot").unwrap();
    assert_eq!(snap["p"]["seq"], 2);
    assert_eq!(snap["p"]["state"], json!({"x":1,"y":2}));
    assert_eq!(snap["p"]["checksum"], crc_of(&json!({"x":1,"y":2})));
}

#[test]
fn ack_ahead_of_the_server_or_with_a_wrong_crc_gets_a_snapshot() {
    let mut sim = Sim::new(1, cfg());
    let a = hello(&mut sim, Codec::Json, json!({"checksum":"crc32"}));
    join(&mut sim, a, "s");
    set(&mut sim, a, "s", "/x", json!(1));
    sim.frames(a);
    let good = crc_of(&json!({"x":1}));
    sim.send(
        a,
        json!({"v":1,"t":"state.ack","room":"s","p":{"seq":1,"checksum":good}}),
    );
    assert!(sim.frames(a).is_empty(), "a correct ack needs nothing");
    sim.send(
        a,
        json!({"v":1,"t":"state.ack","room":"s","p":{"seq":1,"checksum":good + 1}}),
    );
    assert_eq!(sim.frames(a)[0]["t"], "state.snapshot");
    sim.send(a, json!({"v":1,"t":"state.ack","room":"s","p":{"seq":9}}));
    let got = sim.frames(a);
    assert_eq!(got[0]["t"], "state.snapshot");
    assert_eq!(got[0]["p"]["seq"], 1);
}

#[test]
fn the_reference_sdks_sha256_ack_is_ignored() {
    let mut sim = Sim::new(1, cfg());
    let a = hello(&mut sim, Codec::Msgpack, json!({}));
    join(&mut sim, a, "s");
    sim.frames(a);
    let sha = "a".repeat(64);
    sim.send(
        a,
        json!({"v":1,"t":"state.ack","room":"s","p":{"seq":0,"checksum":sha}}),
    );
    assert!(sim.frames(a).is_empty());
}

#[test]
fn resync_in_both_spellings_gets_one_snapshot_per_turn() {
    let mut sim = Sim::new(1, cfg());
    let a = hello(&mut sim, Codec::Json, json!({}));
    join(&mut sim, a, "s");
    sim.frames(a);
    sim.send(
        a,
        json!({"v":1,"t":"state.resync","p":{"room":"s","reason":"gap"}}),
    );
    assert_eq!(sim.frames(a).len(), 1);
    sim.send(
        a,
        json!({"v":1,"t":"state.resync","room":"s","p":{"since":0,"checksum":"x"}}),
    );
    assert_eq!(sim.frames(a).len(), 1);
    // Three resyncs in one reactor turn: coalesced into one snapshot.
    for _ in 0..3 {
        let bytes = json!({"v":1,"t":"state.resync","room":"s"})
            .to_string()
            .into_bytes();
        sim.input(a, bytes, false);
    }
    sim.run();
    assert_eq!(sim.frames(a).len(), 1);
}

#[test]
fn acks_and_resyncs_do_not_count_against_msgs_per_s() {
    let mut c = cfg();
    c.limits.msgs_per_s = 2;
    c.limits.msgs_burst = 2;
    let mut sim = Sim::new(1, c);
    let a = hello(&mut sim, Codec::Json, json!({}));
    join(&mut sim, a, "s");
    sim.frames(a);
    for _ in 0..15 {
        sim.send(a, json!({"v":1,"t":"state.ack","room":"s","p":{"seq":0}}));
    }
    assert!(sim
        .frames(a)
        .iter()
        .all(|f| f["p"]["code"] != "rate_limited"));
    sim.send(a, json!({"v":1,"t":"room.list","rid":"l"}));
    assert_eq!(
        sim.frames(a)[0]["p"]["ok"],
        true,
        "the message budget is untouched"
    );
}

#[test]
fn every_snapshot_every_th_patch_is_a_snapshot_with_that_seq() {
    let mut c = cfg();
    c.state.snapshot_every = 2;
    let mut sim = Sim::new(1, c);
    let a = hello(&mut sim, Codec::Json, json!({}));
    join(&mut sim, a, "s");
    sim.frames(a);
    set(&mut sim, a, "s", "/x", json!(1));
    assert_eq!(sim.frames(a)[0]["t"], "state.patch");
    set(&mut sim, a, "s", "/x", json!(2));
    let got = sim.frames(a);
    assert_eq!(got[0]["t"], "state.snapshot");
    assert_eq!(got[0]["p"], json!({"state":{"x":2},"seq":2}));
}

#[test]
fn checksum_every_spaces_the_checksums() {
    let mut c = cfg();
    c.state.checksum_every = 2;
    let mut sim = Sim::new(1, c);
    let a = hello(&mut sim, Codec::Json, json!({"checksum":"crc32"}));
    join(&mut sim, a, "s");
    sim.frames(a);
    set(&mut sim, a, "s", "/x", json!(1));
    assert!(sim.recv_type(a, "state.patch").unwrap()["p"]
        .get("checksum")
        .is_none());
    set(&mut sim, a, "s", "/x", json!(2));
    assert_eq!(
        sim.recv_type(a, "state.patch").unwrap()["p"]["checksum"],
        crc_of(&json!({"x":2}))
    );
}

#[test]
fn nested_ops_only_for_clients_that_asked_and_a_root_set_is_a_snapshot_for_the_rest() {
    let mut sim = Sim::new(1, cfg());
    let flat = hello(&mut sim, Codec::Json, json!({}));
    let nested = hello(&mut sim, Codec::Msgpack, json!({"features":["nested_ops"]}));
    join(&mut sim, flat, "s");
    join(&mut sim, nested, "s");
    sim.frames(flat);
    sim.frames(nested);
    set(&mut sim, flat, "s", "", json!({"fresh": true}));
    assert_eq!(
        sim.recv_type(flat, "state.snapshot").unwrap()["p"],
        json!({"state":{"fresh":true},"seq":1})
    );
    let p = sim.recv_type(nested, "state.patch").unwrap();
    assert_eq!(
        p["p"]["ops"],
        json!([{"op":"set","path":"","value":{"fresh":true}}])
    );
    // Deleting inside a nested object: flat clients get the key's whole new value.
    set(&mut sim, flat, "s", "/a/b/c", json!(1));
    sim.frames(flat);
    sim.frames(nested);
    sim.send(flat, json!({"v":1,"t":"room.message","room":"s","p":{"type":"state.del","data":{"path":"/a/b/c"}}}));
    assert_eq!(
        sim.recv_type(flat, "state.patch").unwrap()["p"]["ops"],
        json!([{"op":"set","path":"/a","value":{"b":{}}}])
    );
    assert_eq!(
        sim.recv_type(nested, "state.patch").unwrap()["p"]["ops"],
        json!([{"op":"del","path":"/a/b/c"}])
    );
}

#[test]
fn the_incremental_checksum_matches_a_full_recompute_over_random_ops() {
    use rand::{Rng, SeedableRng};
    let seed = 42u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut sim = Sim::new(1, cfg());
    let a = hello(&mut sim, Codec::Json, json!({"checksum":"crc32"}));
    join(&mut sim, a, "s");
    let keys = ["a", "B", "é", "z", "\u{1F600}", "k1", "k2"];
    for step in 0..300 {
        let path: String = (0..rng.gen_range(1..4))
            .map(|_| format!("/{}", keys[rng.gen_range(0..keys.len())]))
            .collect();
        if rng.gen_bool(0.3) {
            sim.send(a, json!({"v":1,"t":"room.message","room":"s","p":{"type":"state.del","data":{"path":path}}}));
        } else {
            let value = match rng.gen_range(0..4) {
                0 => json!(rng.gen_range(-1000..1000)),
                1 => json!(rng.gen::<f64>() * 1e6),
                2 => json!({"n": step, "s": "x\u{1}y"}),
                _ => json!([step, null, true]),
            };
            set(&mut sim, a, "s", &path, value);
        }
        for f in sim.frames(a) {
            if f["t"] == "state.patch" {
                let state = &sim.rooms(0).room("s").unwrap().state;
                assert_eq!(f["p"]["checksum"], crc_of(state), "seed {seed} step {step}");
            }
        }
    }
}
