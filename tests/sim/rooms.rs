//! Deterministic shard-core tests: whole servers of 1 or 2 shards driven without sockets
//! through `huddle::sim::Sim`, with a virtual clock. Each test names the rule it checks.

use huddle::codec::Codec;
use huddle::config::Config;
use huddle::core::home_shard;
use huddle::sim::{ClientId, Received, Sim};
use serde_json::{json, Value};

fn cfg() -> Config {
    Config {
        seed: 7,
        ..Config::default()
    }
}

/// A room id whose home is `shard` of 2.
fn room_on(shard: usize, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|id| home_shard(id, 2).index() == shard)
        .unwrap()
}

fn join(sim: &mut Sim, c: ClientId, room: &str, room_type: &str) -> Value {
    sim.send(
        c,
        json!({"v":1,"t":"room.join_or_create","rid":"j","room":room,"p":{"room_type":room_type}}),
    );
    sim.recv_type(c, "rpc.response").expect("join reply")
}

fn types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["t"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn join_sequence_is_reply_then_joined_and_members_then_snapshot() {
    for codec in [Codec::Json, Codec::Msgpack] {
        let mut sim = Sim::new(1, cfg());
        let (a, hello) = sim.handshaken(0, codec);
        assert_eq!(hello["codec"], codec.name());
        sim.send(a, json!({"v":1,"t":"room.join_or_create","rid":"1","p":{"roomType":"echo_room","roomId":"r"}}));
        let frames = sim.frames(a);
        assert_eq!(
            types(&frames),
            [
                "rpc.response",
                "room.joined",
                "room.members",
                "state.snapshot"
            ]
        );
        assert_eq!(
            frames[0]["p"],
            json!({"ok":true,"room":"r","room_type":"echo_room","client_id":hello["client_id"]})
        );
        assert_eq!(frames[2]["p"]["count"], 1);
        assert_eq!(frames[3]["p"], json!({"state":{},"seq":0}));
        assert!(
            frames.iter().skip(1).all(|f| f["room"] == "r"),
            "room frames carry envelope room"
        );
    }
}

#[test]
fn room_defaults_are_echo_room_and_type_default_id() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    sim.send(a, json!({"v":1,"t":"room.join_or_create","rid":"1","p":{}}));
    let reply = sim.recv_type(a, "rpc.response").unwrap();
    assert_eq!(reply["p"]["room"], "echo_room:default");
    assert_eq!(reply["p"]["room_type"], "echo_room");
}

#[test]
fn unknown_room_type_is_refused_never_a_fallback() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let reply = join(&mut sim, a, "x", "poker_room");
    assert_eq!(reply["p"]["ok"], false);
    assert_eq!(reply["p"]["code"], "unknown_room_type");
    assert!(sim.rooms(0).room("x").is_none());
}

#[test]
fn joining_twice_is_already_joined() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    join(&mut sim, a, "r", "echo_room");
    sim.frames(a);
    let reply = join(&mut sim, a, "r", "echo_room");
    assert_eq!(reply["p"]["code"], "already_joined");
}

#[test]
fn echo_room_relays_to_all_members_sender_included_with_from() {
    let mut sim = Sim::new(1, cfg());
    let (a, ha) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(0, Codec::Msgpack);
    join(&mut sim, a, "r", "echo_room");
    join(&mut sim, b, "r", "echo_room");
    sim.frames(a);
    sim.frames(b);
    sim.send(
        a,
        json!({"v":1,"t":"room.message","room":"r","p":{"type":"chat","data":{"n":[1,2.5,"x"]}}}),
    );
    for c in [a, b] {
        let got = sim.frames(c);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0],
            json!({"v":1,"t":"room.message","room":"r","p":{"type":"chat","data":{"n":[1,2.5,"x"]},"from":ha["client_id"]}})
        );
    }
}

#[test]
fn leaving_tells_the_rest_and_an_empty_room_is_disposed() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, hb) = sim.handshaken(0, Codec::Json);
    join(&mut sim, a, "r", "echo_room");
    join(&mut sim, b, "r", "echo_room");
    sim.frames(a);
    sim.send(b, json!({"v":1,"t":"room.leave","rid":"l","room":"r"}));
    assert_eq!(sim.recv_type(b, "rpc.response").unwrap()["p"]["ok"], true);
    let got = sim.frames(a);
    assert_eq!(types(&got), ["room.left", "room.members"]);
    assert_eq!(got[0]["p"]["client_id"], hb["client_id"]);
    assert_eq!(got[1]["p"]["count"], 1);
    sim.close(a, 1000);
    assert!(sim.rooms(0).room("r").is_none(), "empty room disposed");
    assert_eq!(sim.rooms(0).room_count(), 0);
}

#[test]
fn close_1000_is_a_leave_at_once_for_the_other_members() {
    let mut sim = Sim::new(2, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, hb) = sim.handshaken(1, Codec::Json);
    let room = room_on(0, "d");
    join(&mut sim, a, &room, "echo_room");
    join(&mut sim, b, &room, "echo_room");
    sim.frames(a);
    sim.close(b, 1000);
    let got = sim.frames(a);
    assert_eq!(types(&got), ["room.left", "room.members"]);
    assert_eq!(got[0]["p"]["client_id"], hb["client_id"]);
}

#[test]
fn a_join_moves_the_session_to_the_rooms_home_shard() {
    let mut sim = Sim::new(2, cfg());
    let room = room_on(1, "move");
    let (a, _) = sim.handshaken(0, Codec::Msgpack);
    assert_eq!(sim.shard_of(a), 0);
    let reply = join(&mut sim, a, &room, "echo_room");
    assert_eq!(reply["p"]["ok"], true);
    assert_eq!(sim.shard_of(a), 1, "moved to the room's home");
    assert_eq!(sim.cores[0].session_count(), 0);
    assert_eq!(sim.rooms(1).room(&room).unwrap().members.len(), 1);
    // and it keeps working after the move
    sim.frames(a);
    sim.send(
        a,
        json!({"v":1,"t":"room.message","room":room,"p":{"type":"t","data":1}}),
    );
    assert_eq!(sim.frames(a).len(), 1);
}

#[test]
fn two_sessions_from_different_shards_meet_in_one_room() {
    let mut sim = Sim::new(2, cfg());
    let room = room_on(0, "meet");
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, hb) = sim.handshaken(1, Codec::Msgpack);
    join(&mut sim, a, &room, "echo_room");
    join(&mut sim, b, &room, "echo_room");
    assert_eq!(sim.shard_of(b), 0);
    sim.frames(a);
    sim.frames(b);
    sim.send(
        b,
        json!({"v":1,"t":"room.message","room":room,"p":{"type":"hi","data":"x"}}),
    );
    assert_eq!(sim.frames(a)[0]["p"]["from"], hb["client_id"]);
}

#[test]
fn a_session_in_rooms_on_two_shards_reaches_the_second_through_the_mesh() {
    let mut sim = Sim::new(2, cfg());
    let r0 = room_on(0, "first");
    let r1 = room_on(1, "second");
    let (a, ha) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(1, Codec::Msgpack);
    join(&mut sim, a, &r0, "echo_room");
    join(&mut sim, b, &r1, "echo_room");
    let reply = join(&mut sim, a, &r1, "echo_room");
    assert_eq!(reply["p"]["ok"], true, "{reply}");
    assert_eq!(
        sim.shard_of(a),
        0,
        "a stays home: it is already in a room there"
    );
    sim.frames(a);
    sim.frames(b);
    // a → second room (forwarded to shard 1), relayed to b and back to a
    sim.send(
        a,
        json!({"v":1,"t":"room.message","rid":"m","room":r1,"p":{"type":"x","data":{"k":"v"}}}),
    );
    let b_got = sim.frames(b);
    assert_eq!(b_got.len(), 1);
    assert_eq!(b_got[0]["p"]["from"], ha["client_id"]);
    let a_got = sim.frames(a);
    assert_eq!(types(&a_got), ["room.message", "rpc.response"]);
    assert_eq!(a_got[0]["room"], r1);
    // leaving the remote room works and the rest are told
    sim.send(a, json!({"v":1,"t":"room.leave","rid":"l","room":r1}));
    assert_eq!(sim.recv_type(a, "rpc.response").unwrap()["p"]["ok"], true);
    assert_eq!(types(&sim.frames(b)), ["room.left", "room.members"]);
}

#[test]
fn room_list_covers_every_shard_and_hides_private_rooms() {
    let mut sim = Sim::new(2, cfg());
    let r0 = room_on(0, "pub");
    let r1 = room_on(1, "pub");
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(1, Codec::Json);
    let (c, _) = sim.handshaken(0, Codec::Json);
    sim.send(a, json!({"v":1,"t":"room.join_or_create","rid":"1","room":r0,"p":{"room_type":"echo_room","options":{"max_players":4,"metadata":{"map":"x"}}}}));
    sim.send(b, json!({"v":1,"t":"room.join_or_create","rid":"1","room":r1,"p":{"room_type":"counter_room"}}));
    sim.send(c, json!({"v":1,"t":"room.join_or_create","rid":"1","room":"hidden","p":{"options":{"private":true}}}));
    let (d, _) = sim.handshaken(1, Codec::Msgpack);
    sim.send(d, json!({"v":1,"t":"room.list","rid":"L","p":{}}));
    let list = sim.recv_type(d, "rpc.response").unwrap();
    let rooms = list["p"]["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 2, "{list}");
    let first = rooms.iter().find(|r| r["id"] == r0.as_str()).unwrap();
    assert_eq!(
        first,
        &json!({"id":r0,"room_type":"echo_room","members":1,"max_players":4,"metadata":{"map":"x"}})
    );
    sim.send(
        d,
        json!({"v":1,"t":"room.list","rid":"L2","p":{"roomType":"counter_room"}}),
    );
    let list = sim.recv_type(d, "rpc.response").unwrap();
    assert_eq!(list["p"]["rooms"].as_array().unwrap().len(), 1);
}

#[test]
fn max_players_full_room_is_room_full() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(0, Codec::Json);
    sim.send(a, json!({"v":1,"t":"room.join_or_create","rid":"1","room":"r","p":{"options":{"max_players":1}}}));
    let reply = join(&mut sim, b, "r", "echo_room");
    assert_eq!(reply["p"]["code"], "room_full");
}

#[test]
fn counter_room_snapshot_then_patch_with_seq_one() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Msgpack);
    join(&mut sim, a, "c", "counter_room");
    let snap = sim.recv_type(a, "state.snapshot").unwrap();
    assert_eq!(snap["p"], json!({"state":{"counter":0},"seq":0}));
    sim.frames(a);
    sim.send(
        a,
        json!({"v":1,"t":"room.message","room":"c","p":{"type":"inc","data":{"by":3}}}),
    );
    let patch = sim.recv_type(a, "state.patch").unwrap();
    assert_eq!(
        patch["p"],
        json!({"ops":[{"op":"set","path":"/counter","value":3}],"seq":1})
    );
    assert!(
        sim.recv_type(a, "room.message").is_some(),
        "counter_room also relays"
    );
}

#[test]
fn state_room_ops_of_one_turn_are_one_patch_flattened_for_reference_clients() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let b = sim.connect(0, Codec::Json);
    sim.send_text(
        b,
        r#"{"v":1,"codecs":["json"],"project_id":"demo","features":["nested_ops"]}"#,
    );
    join(&mut sim, a, "s", "state_room");
    join(&mut sim, b, "s", "state_room");
    sim.frames(a);
    sim.frames(b);
    sim.send(a, json!({"v":1,"t":"room.message","room":"s","p":{"type":"state.set","data":{"path":"/p/x","value":5}}}));
    let flat = sim.recv_type(a, "state.patch").unwrap();
    assert_eq!(
        flat["p"],
        json!({"ops":[{"op":"set","path":"/p","value":{"x":5}}],"seq":1})
    );
    let nested = sim.recv_type(b, "state.patch").unwrap();
    assert_eq!(
        nested["p"],
        json!({"ops":[{"op":"set","path":"/p/x","value":5}],"seq":1})
    );
    // a del of a missing path changes nothing: no patch, seq unchanged
    sim.send(a, json!({"v":1,"t":"room.message","room":"s","p":{"type":"state.del","data":{"path":"/nope"}}}));
    assert!(sim.recv_type(a, "state.patch").is_none());
    assert_eq!(sim.rooms(0).room("s").unwrap().seq, 1);
}

#[test]
fn unknown_type_without_rid_is_an_error_and_with_rid_an_rpc_response() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    sim.send(a, json!({"v":1,"t":"no.such"}));
    let got = sim.frames(a);
    assert_eq!(got[0]["t"], "error");
    assert_eq!(got[0]["p"]["code"], "unknown_type");
    sim.send(a, json!({"v":1,"t":"no.such","rid":"q"}));
    let got = sim.frames(a);
    assert_eq!(
        got,
        vec![
            json!({"v":1,"t":"rpc.response","rid":"q","p":{"ok":false,"error":"unknown message type \"no.such\"","code":"unknown_type"}})
        ]
    );
}

#[test]
fn envelope_version_and_type_are_checked_with_rid_recovered() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Msgpack);
    sim.send(a, json!({"v":2,"t":"room.list","rid":"v2"}));
    let got = sim.frames(a);
    assert_eq!(got[0]["t"], "rpc.response");
    assert_eq!(got[0]["p"]["code"], "unsupported_version");
    sim.send(a, json!({"v":1,"rid":"no-t"}));
    assert_eq!(sim.frames(a)[0]["p"]["code"], "bad_request");
    sim.send_bytes(a, vec![0xc1]);
    let got = sim.frames(a);
    assert_eq!(got[0]["t"], "error");
    assert_eq!(got[0]["p"]["code"], "bad_request");
    assert!(sim.is_connected(a));
}

#[test]
fn oversized_frames_are_payload_too_large_and_the_connection_stays() {
    let mut c = cfg();
    c.limits.frame_bytes_max = 1024;
    let mut sim = Sim::new(1, c);
    let (a, _) = sim.handshaken(0, Codec::Json);
    let big = "x".repeat(2000);
    sim.send(
        a,
        json!({"v":1,"t":"room.list","rid":"big","p":{"pad":big}}),
    );
    let got = sim.frames(a);
    assert_eq!(got[0]["rid"], "big");
    assert_eq!(got[0]["p"]["code"], "payload_too_large");
    sim.send(a, json!({"v":1,"t":"room.list","rid":"small"}));
    assert_eq!(sim.frames(a)[0]["p"]["ok"], true);
}

#[test]
fn messages_to_a_room_not_joined_are_not_in_room() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    sim.send(
        a,
        json!({"v":1,"t":"room.message","rid":"m","room":"zz","p":{"type":"x"}}),
    );
    assert_eq!(sim.frames(a)[0]["p"]["code"], "not_in_room");
    sim.send(a, json!({"v":1,"t":"room.leave","rid":"l","room":"zz"}));
    assert_eq!(sim.frames(a)[0]["p"]["code"], "not_in_room");
}

#[test]
fn rate_limit_drops_with_rate_limited_and_abuse_closes_with_1008() {
    let mut c = cfg();
    c.limits.msgs_per_s = 5;
    c.limits.msgs_burst = 5;
    let mut sim = Sim::new(1, c);
    let (a, _) = sim.handshaken(0, Codec::Json);
    for i in 0..6 {
        sim.send(a, json!({"v":1,"t":"room.list","rid":format!("r{i}")}));
    }
    let got = sim.frames(a);
    assert_eq!(got.len(), 6);
    assert!(got[..5].iter().all(|f| f["p"]["ok"] == true));
    assert_eq!(got[5]["p"]["code"], "rate_limited");
    for _ in 0..50 {
        sim.send(a, json!({"v":1,"t":"room.list"}));
    }
    let all = sim.drain(a);
    assert!(all.iter().any(
        |r| matches!(r, Received::Frame(f) if f["t"] == "error" && f["p"]["code"] == "rate_limited")
    ));
    assert!(
        matches!(all.last(), Some(Received::Close(1008, _))),
        "{:?}",
        all.last()
    );
    assert!(!sim.is_connected(a));
}

#[test]
fn handshake_failures_get_an_error_then_close_1008() {
    for (first, code) in [
        ("not json", "bad_handshake"),
        ("[1,2]", "bad_handshake"),
        (
            r#"{"v":2,"codecs":["json"],"project_id":"p"}"#,
            "bad_handshake",
        ),
        (
            r#"{"v":1,"codecs":["cbor"],"project_id":"p"}"#,
            "bad_handshake",
        ),
        (r#"{"v":1,"codecs":["json"]}"#, "bad_handshake"),
    ] {
        let mut sim = Sim::new(1, cfg());
        let a = sim.connect(0, Codec::Json);
        sim.send_text(a, first);
        let got = sim.drain(a);
        assert!(
            matches!(&got[0], Received::Frame(f) if f["t"] == "error" && f["p"]["code"] == code),
            "{first}: {got:?}"
        );
        assert!(matches!(got[1], Received::Close(1008, _)), "{first}");
    }
}

#[test]
fn required_auth_refuses_missing_and_expired_tokens_and_accepts_valid_ones() {
    let mut c = cfg();
    c.auth.mode = huddle::rooms::auth::AuthMode::Required;
    c.auth.secrets.insert("demo".into(), "s3cret".into());
    let now = 1_700_000_000_000 + 1;
    let good = huddle::rooms::auth::mint_token(b"s3cret", "demo", now, 60_000);
    let expired = huddle::rooms::auth::mint_token(b"s3cret", "demo", now - 120_000, 60_000);
    let other = huddle::rooms::auth::mint_token(b"s3cret", "other", now, 60_000);
    let forged = huddle::rooms::auth::mint_token(b"wrong", "demo", now, 60_000);
    for (token, ok) in [
        ("", false),
        (expired.as_str(), false),
        (other.as_str(), false),
        (forged.as_str(), false),
        (good.as_str(), true),
    ] {
        let mut sim = Sim::new(1, c.clone());
        let a = sim.connect(0, Codec::Json);
        sim.send_text(
            a,
            &json!({"v":1,"codecs":["json"],"project_id":"demo","token":token}).to_string(),
        );
        let got = sim.drain(a);
        match &got[0] {
            Received::Frame(f) if ok => {
                assert_eq!(f["t"], "handshake.ok");
                assert_eq!(f["p"]["authenticated"], true);
                assert_eq!(f["p"]["auth_mode"], "required");
            }
            Received::Frame(f) => {
                assert_eq!(f["p"]["code"], "unauthorized", "{token}");
                assert!(matches!(got[1], Received::Close(1008, _)));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn handshake_timeout_is_bad_handshake_and_close_1008() {
    let mut c = cfg();
    c.limits.handshake_ms = 300;
    let mut sim = Sim::new(1, c);
    let a = sim.connect(0, Codec::Json);
    sim.advance(200);
    assert!(sim.drain(a).is_empty());
    sim.advance(200);
    let got = sim.drain(a);
    assert!(
        matches!(&got[0], Received::Frame(f) if f["p"] == json!({"code":"bad_handshake","reason":"handshake timeout"})),
        "{got:?}"
    );
    assert!(matches!(got[1], Received::Close(1008, _)));
}

#[test]
fn idle_connections_get_a_ping_then_close_1001() {
    let mut c = cfg();
    c.limits.ping_ms = 1_000;
    c.limits.idle_ms = 3_000;
    let mut sim = Sim::new(1, c);
    let (a, _) = sim.handshaken(0, Codec::Json);
    sim.advance(1_100);
    assert_eq!(sim.drain(a), vec![Received::Ping]);
    sim.advance(2_000);
    assert!(matches!(sim.drain(a).last(), Some(Received::Close(1001, r)) if r == "idle"));
}

#[test]
fn position_update_goes_to_the_others_not_the_sender() {
    let mut sim = Sim::new(1, cfg());
    let (a, ha) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(0, Codec::Msgpack);
    join(&mut sim, a, "r", "echo_room");
    join(&mut sim, b, "r", "echo_room");
    sim.frames(a);
    sim.frames(b);
    sim.send(
        a,
        json!({"v":1,"t":"position.update","room":"r","p":{"x":1,"y":2}}),
    );
    assert!(sim.frames(a).is_empty());
    let got = sim.frames(b);
    assert_eq!(
        got,
        vec![
            json!({"v":1,"t":"position.update","room":"r","from":ha["client_id"],"p":{"x":1,"y":2}})
        ]
    );
}

#[test]
fn bytes_relay_as_data_b64_or_bin_for_bin_bytes_clients() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let b = sim.connect(0, Codec::Msgpack);
    sim.send_text(
        b,
        r#"{"v":1,"codecs":["msgpack"],"project_id":"demo","features":["bin_bytes"]}"#,
    );
    let ok = sim.recv_type(b, "handshake.ok").unwrap();
    assert_eq!(ok["p"]["features"], json!(["bin_bytes"]));
    join(&mut sim, a, "r", "echo_room");
    join(&mut sim, b, "r", "echo_room");
    sim.frames(a);
    sim.frames(b);
    sim.send(a, json!({"v":1,"t":"room.message.bytes","room":"r","p":{"type":"blob","data_b64":"AQID+g=="}}));
    let at_a = sim.recv_type(a, "room.message.bytes").unwrap();
    assert_eq!(at_a["p"]["data_b64"], "AQID+g==");
    // The simulator decodes msgpack bin as base64 text: it arrived as `data`, not `data_b64`.
    let at_b = sim.recv_type(b, "room.message.bytes").unwrap();
    assert_eq!(at_b["p"]["data"], "AQID+g==");
    assert!(at_b["p"].get("data_b64").is_none());
}

#[test]
fn slow_consumer_gets_an_error_and_close_1008_when_reliable_frames_overflow() {
    let mut c = cfg();
    c.limits.outbound_bytes_max = 70 * 1024;
    c.limits.outbound_congested_bytes = 8 * 1024;
    c.limits.msgs_per_s = 100_000;
    c.limits.msgs_burst = 100_000;
    let mut sim = Sim::new(1, c);
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(0, Codec::Json);
    join(&mut sim, a, "r", "echo_room");
    join(&mut sim, b, "r", "echo_room");
    // The simulator empties every queue after each input, so fill b's queue in one turn:
    // state_room-less trick — send many messages through the core without running the sim.
    let big = "y".repeat(1000);
    let mut overflowed = false;
    for _ in 0..200 {
        let bytes = json!({"v":1,"t":"room.message","room":"r","p":{"type":"chat","data":big}})
            .to_string()
            .into_bytes();
        sim.input(a, bytes, false);
        if sim.cores[0]
            .session(sim.key_of(b))
            .is_some_and(|s| s.is_closing())
        {
            overflowed = true;
            break;
        }
    }
    assert!(overflowed, "b's queue must overflow");
    sim.run();
    let got = sim.drain(b);
    assert!(got
        .iter()
        .any(|r| matches!(r, Received::Frame(f) if f["p"]["code"] == "slow_consumer")));
    assert!(matches!(got.last(), Some(Received::Close(1008, _))));
}

#[test]
fn shutdown_closes_every_client_with_1001() {
    let mut sim = Sim::new(2, cfg());
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(1, Codec::Msgpack);
    let now = sim.now;
    for core in &mut sim.cores {
        core.begin_shutdown(now);
    }
    sim.run();
    for c in [a, b] {
        assert!(matches!(
            sim.drain(c).last(),
            Some(Received::Close(1001, _))
        ));
    }
}

#[test]
fn session_id_is_secret_and_client_id_public() {
    let mut sim = Sim::new(1, cfg());
    let (a, ha) = sim.handshaken(0, Codec::Json);
    let (b, hb) = sim.handshaken(0, Codec::Json);
    let sid = ha["session_id"].as_str().unwrap();
    assert!(
        sid.len() >= 32 && sid.chars().all(|c| c.is_ascii_hexdigit()),
        "128 random bits"
    );
    assert_ne!(ha["client_id"], hb["client_id"]);
    join(&mut sim, a, "r", "echo_room");
    join(&mut sim, b, "r", "echo_room");
    sim.send(
        a,
        json!({"v":1,"t":"room.message","room":"r","p":{"type":"x"}}),
    );
    let seen = serde_json::to_string(&sim.frames(b)).unwrap();
    assert!(
        !seen.contains(sid),
        "another member never sees the session id"
    );
}

#[test]
fn congested_unreliable_messages_are_replaced_latest_wins_or_dropped() {
    let mut c = cfg();
    c.limits.outbound_bytes_max = 64 * 1024 + 1024;
    c.limits.outbound_congested_bytes = 2 * 1024;
    c.limits.msgs_per_s = 100_000;
    c.limits.msgs_burst = 100_000;
    let mut sim = Sim::new(1, c);
    let (a, _) = sim.handshaken(0, Codec::Json);
    let (b, _) = sim.handshaken(0, Codec::Json);
    join(&mut sim, a, "r", "echo_room");
    join(&mut sim, b, "r", "echo_room");
    sim.frames(b);
    let kb = sim.key_of(b);
    let send = |sim: &mut Sim, p: Value| {
        let bytes = json!({"v":1,"t":"room.message","room":"r","p":p})
            .to_string()
            .into_bytes();
        sim.input(a, bytes, false);
    };
    // Queue b past the congestion threshold with reliable traffic (nobody flushes it).
    for i in 0..3 {
        send(
            &mut sim,
            json!({"type":"chat","data":{"i":i,"pad":"z".repeat(900)}}),
        );
    }
    let queued = sim.cores[0].session(kb).unwrap().out.len();
    // Now unreliable moves: the first one is dropped (nothing to replace), then none pile up.
    for x in 0..10 {
        send(&mut sim, json!({"type":"player.move","data":{"x":x}}));
    }
    assert_eq!(
        sim.cores[0].session(kb).unwrap().out.len(),
        queued,
        "unreliable frames do not queue when congested"
    );
    assert!(
        sim.cores[0]
            .metrics()
            .drops(huddle::metrics::DropReason::Congested)
            >= 10
    );
    sim.run();
    let got = sim.frames(b);
    assert_eq!(
        got.iter().filter(|f| f["p"]["type"] == "chat").count(),
        3,
        "reliable frames all arrive, in order"
    );
    assert!(sim.is_connected(b));
}

#[test]
fn crowd_rooms_announce_joins_to_the_joiner_only_with_a_capped_member_list() {
    let mut c = cfg();
    c.limits.presence_members_max = 3;
    let mut sim = Sim::new(1, c);
    let clients: Vec<ClientId> = (0..5).map(|_| sim.handshaken(0, Codec::Json).0).collect();
    for &x in &clients[..3] {
        join(&mut sim, x, "crowd", "echo_room");
    }
    for &x in &clients[..3] {
        sim.frames(x);
    }
    // The 4th member makes it a crowd: the others hear nothing, the joiner gets its view.
    let reply = join(&mut sim, clients[3], "crowd", "echo_room");
    assert_eq!(reply["p"]["ok"], true);
    let got = sim.frames(clients[3]);
    assert_eq!(
        types(&got),
        ["room.joined", "room.members", "state.snapshot"]
    );
    assert_eq!(got[1]["p"]["count"], 4);
    assert_eq!(
        got[1]["p"]["members"].as_array().unwrap().len(),
        3,
        "list cut to the bound"
    );
    for &x in &clients[..3] {
        assert!(sim.frames(x).is_empty(), "no presence broadcast in a crowd");
    }
    // Messages still reach everyone.
    sim.send(
        clients[0],
        json!({"v":1,"t":"room.message","room":"crowd","p":{"type":"x"}}),
    );
    assert_eq!(sim.frames(clients[3]).len(), 1);
    sim.frames(clients[0]);
    // Back under the bound, leaves are announced again.
    sim.close(clients[3], 1000);
    assert_eq!(
        types(&sim.frames(clients[0])),
        ["room.left", "room.members"]
    );
}
