//! Sessions and resume (rooms.md "Sessions and resume") on the deterministic simulator.

use huddle::codec::Codec;
use huddle::config::Config;
use huddle::core::home_shard;
use huddle::sim::{ClientId, Received, Sim};
use serde_json::{json, Value};

fn cfg() -> Config {
    Config {
        seed: 3,
        ..Config::default()
    }
}

fn room_on(shard: usize) -> String {
    (0..)
        .map(|i| format!("res-{i}"))
        .find(|r| home_shard(r, 2).index() == shard)
        .unwrap()
}

fn join(sim: &mut Sim, c: ClientId, room: &str) {
    sim.send(c, json!({"v":1,"t":"room.join_or_create","rid":"j","room":room,"p":{"room_type":"counter_room"}}));
    assert_eq!(sim.recv_type(c, "rpc.response").unwrap()["p"]["ok"], true);
}

/// A new connection on `shard` that asks to resume `session_id`.
fn resume(
    sim: &mut Sim,
    shard: usize,
    codec: Codec,
    project: &str,
    session_id: &Value,
) -> (ClientId, Value) {
    let c = sim.connect(shard, codec);
    let h = json!({"v":1,"codecs":[codec.name()],"project_id":project,"session_id":session_id});
    sim.send_text(c, &h.to_string());
    let ok = sim.recv_type(c, "handshake.ok").expect("handshake.ok");
    (c, ok["p"].clone())
}

#[test]
fn a_drop_parks_the_session_and_its_rooms_hear_room_dropped() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, hb) = sim.handshaken(0, Codec::Json);
    join(&mut sim, a, "r");
    join(&mut sim, b, "r");
    sim.frames(a);
    sim.disconnect(b);
    assert_eq!(
        sim.frames(a),
        vec![json!({"v":1,"t":"room.dropped","room":"r","p":{"client_id":hb["client_id"]}})]
    );
    assert_eq!(
        sim.rooms(0).room("r").unwrap().members.len(),
        2,
        "the seat is kept"
    );
}

#[test]
fn close_1001_parks_and_close_1000_leaves() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(0, Codec::Json);
    let (c, _) = sim.handshaken(0, Codec::Json);
    for x in [a, b, c] {
        join(&mut sim, x, "r");
    }
    sim.frames(a);
    sim.close(b, 1001);
    assert_eq!(sim.frames(a)[0]["t"], "room.dropped");
    sim.close(c, 1000);
    let got: Vec<Value> = sim.frames(a);
    assert_eq!(got[0]["t"], "room.left");
    assert_eq!(got[1]["t"], "room.members");
}

#[test]
fn resume_within_the_window_keeps_ids_and_sends_reconnected_and_a_fresh_snapshot_after_a_delay() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, hb) = sim.handshaken(0, Codec::Json);
    join(&mut sim, a, "r");
    join(&mut sim, b, "r");
    sim.disconnect(b);
    // The room moves on while b is away; b's frames are not buffered.
    sim.send(
        a,
        json!({"v":1,"t":"room.message","room":"r","p":{"type":"inc","data":{"by":5}}}),
    );
    sim.frames(a);
    let (b2, ok) = resume(&mut sim, 0, Codec::Msgpack, "demo", &hb["session_id"]);
    assert_eq!(ok["resumed"], true);
    assert_eq!(ok["session_id"], hb["session_id"]);
    assert_eq!(ok["client_id"], hb["client_id"]);
    assert_eq!(ok["codec"], "msgpack");
    assert!(
        sim.drain(b2).is_empty(),
        "nothing follows handshake.ok in the same burst"
    );
    sim.advance(100);
    let got = sim.frames(b2);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["t"], "state.snapshot");
    assert_eq!(got[0]["p"], json!({"state":{"counter":5},"seq":1}));
    assert_eq!(
        sim.frames(a),
        vec![json!({"v":1,"t":"room.reconnected","room":"r","p":{"client_id":hb["client_id"]}})]
    );
    // and it is a member again, in its new codec
    sim.send(
        a,
        json!({"v":1,"t":"room.message","room":"r","p":{"type":"hi"}}),
    );
    assert_eq!(sim.frames(b2)[0]["t"], "room.message");
}

#[test]
fn a_resume_landing_on_another_shard_moves_to_the_parked_session() {
    let mut sim = Sim::new(2, cfg());
    let room = room_on(0);
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, hb) = sim.handshaken(1, Codec::Json);
    join(&mut sim, a, &room);
    join(&mut sim, b, &room);
    assert_eq!(sim.shard_of(b), 0);
    sim.disconnect(b);
    let (b2, ok) = resume(&mut sim, 1, Codec::Json, "demo", &hb["session_id"]);
    assert_eq!(ok["resumed"], true);
    assert_eq!(sim.shard_of(b2), 0, "moved to its rooms' home");
    sim.advance(100);
    assert_eq!(sim.frames(b2)[0]["t"], "state.snapshot");
    sim.frames(a);
    sim.send(
        b2,
        json!({"v":1,"t":"room.message","room":room,"p":{"type":"back"}}),
    );
    assert_eq!(sim.frames(a)[0]["p"]["from"], hb["client_id"]);
}

#[test]
fn after_the_window_the_rooms_hear_room_left_and_the_id_no_longer_resumes() {
    let mut c = cfg();
    c.session.resume_ttl_ms = 2_000;
    let mut sim = Sim::new(2, c);
    let room = room_on(1);
    let (a, _) = sim.handshaken(1, Codec::Json);
    let (b, hb) = sim.handshaken(0, Codec::Json);
    join(&mut sim, a, &room);
    join(&mut sim, b, &room);
    sim.frames(a);
    sim.disconnect(b);
    sim.advance(1_500);
    assert_eq!(sim.frames(a)[0]["t"], "room.dropped");
    sim.advance(600);
    let got = sim.frames(a);
    assert_eq!(
        got[0],
        json!({"v":1,"t":"room.left","room":room,"p":{"client_id":hb["client_id"]}})
    );
    assert_eq!(got[1]["p"]["count"], 1);
    let (_, ok) = resume(&mut sim, 0, Codec::Json, "demo", &hb["session_id"]);
    assert_eq!(ok["resumed"], false);
    assert_ne!(ok["session_id"], hb["session_id"]);
}

#[test]
fn a_wrong_session_id_starts_a_new_session() {
    let mut sim = Sim::new(2, cfg());
    let (_, ok) = resume(
        &mut sim,
        1,
        Codec::Json,
        "demo",
        &json!("00000000000000000000000000000000"),
    );
    assert_eq!(ok["resumed"], false);
}

#[test]
fn another_projects_session_id_never_resumes() {
    let mut sim = Sim::new(1, cfg());
    let (a, ha) = sim.handshaken(0, Codec::Json);
    join(&mut sim, a, "r");
    sim.disconnect(a);
    let (_, ok) = resume(&mut sim, 0, Codec::Json, "other-project", &ha["session_id"]);
    assert_eq!(ok["resumed"], false);
    assert_ne!(ok["client_id"], ha["client_id"]);
    // the rightful owner still can
    let (_, ok) = resume(&mut sim, 0, Codec::Json, "demo", &ha["session_id"]);
    assert_eq!(ok["resumed"], true);
}

#[test]
fn a_remote_room_hears_dropped_and_reconnected_too() {
    let mut sim = Sim::new(2, cfg());
    let r0 = room_on(0);
    let r1 = room_on(1);
    let (a, ha) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(1, Codec::Json);
    join(&mut sim, a, &r0);
    join(&mut sim, b, &r1);
    join(&mut sim, a, &r1); // a is a remote member of r1
    sim.frames(b);
    sim.disconnect(a);
    assert_eq!(sim.frames(b)[0]["t"], "room.dropped");
    let (a2, ok) = resume(&mut sim, 1, Codec::Msgpack, "demo", &ha["session_id"]);
    assert_eq!(ok["resumed"], true);
    sim.advance(100);
    assert_eq!(sim.frames(b)[0]["t"], "room.reconnected");
    let snaps: Vec<Value> = sim
        .frames(a2)
        .into_iter()
        .filter(|f| f["t"] == "state.snapshot")
        .collect();
    assert_eq!(snaps.len(), 2, "a fresh snapshot of every room");
    assert!(matches!(
        sim.drain(a2).last(),
        None | Some(Received::Frame(_))
    ));
}
