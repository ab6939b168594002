//! The PeerJS-compatible broker (`protocols/cloudlink.md`, "PeerJS-compatible broker"),
//! rule by rule, on a simulated server: one shard, and two shards where each id lives on
//! its home shard (a socket moves there on connect; a message crosses the mesh once).

use huddle::cloudlink::peerjs::{home, HELD_MAX, HOLD_MS};
use huddle::config::Config;
use huddle::sim::{ClientId, Received, Sim};
use serde_json::{json, Value};

fn cfg() -> Config {
    Config {
        seed: 9,
        ..Config::default()
    }
}

/// An id whose home is `shard` of 2.
fn id_on(shard: u16, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}{i}"))
        .find(|id| home(id, 2).0 == shard)
        .expect("some id hashes to every shard")
}

/// What a refused connection received: its frames, then the close code.
fn refused(sim: &mut Sim, c: ClientId) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    let mut close = None;
    for r in sim.drain(c) {
        match r {
            Received::Frame(v) => frames.push(v),
            Received::Close(code, _) => close = Some(code),
            _ => {}
        }
    }
    (frames, close)
}

#[test]
fn missing_id_token_or_key_is_an_error_then_close() {
    let mut sim = Sim::new(1, cfg());
    let msg = "No id, token, or key supplied to websocket server";
    for query in [
        "id=a&token=t",
        "key=peerjs&token=t",
        "key=peerjs&id=a",
        "key=peerjs&id=&token=t",
        "",
    ] {
        let c = sim.peerjs(0, query);
        let (frames, close) = refused(&mut sim, c);
        assert_eq!(
            frames,
            vec![json!({"type": "ERROR", "payload": {"msg": msg}})],
            "{query:?}"
        );
        assert!(close.is_some(), "{query:?}: closed");
        assert!(!sim.is_connected(c));
    }
    assert!(sim.cloudlink(0).broker.is_empty(), "nobody registered");
}

#[test]
fn a_wrong_key_is_an_error_then_close() {
    let mut sim = Sim::new(1, cfg());
    let c = sim.peerjs(0, "key=nope&id=a&token=t");
    let (frames, close) = refused(&mut sim, c);
    assert_eq!(
        frames,
        vec![json!({"type": "ERROR", "payload": {"msg": "Invalid key provided"}})]
    );
    assert!(close.is_some());
    // The configured key is the one that works.
    let mut config = cfg();
    config.cloudlink.peerjs_key = "secret".into();
    let mut sim = Sim::new(1, config);
    let c = sim.peerjs(0, "key=secret&id=a&token=t");
    assert_eq!(sim.frames(c), vec![json!({"type": "OPEN"})]);
    let c = sim.peerjs(0, "key=peerjs&id=b&token=t");
    assert_eq!(
        refused(&mut sim, c).0[0]["payload"]["msg"],
        "Invalid key provided"
    );
}

#[test]
fn on_connect_the_client_gets_exactly_open() {
    let mut sim = Sim::new(1, cfg());
    let c = sim.peerjs(0, "key=peerjs&id=alice&token=t1&version=1.5.4");
    assert_eq!(sim.drain(c), vec![Received::Frame(json!({"type": "OPEN"}))]);
    assert!(sim.is_connected(c));
    assert_eq!(sim.cloudlink(0).broker.len(), 1);
}

#[test]
fn a_cl5_instance_id_is_a_peerjs_id() {
    let mut sim = Sim::new(1, cfg());
    let (_, ok) = sim.cl_client(0, "game-1", "ann");
    let instance = ok["instance_id"].as_str().unwrap().to_string();
    let a = sim.peer(0, &instance, "t");
    let b = sim.peer(0, "other", "t");
    sim.send(
        b,
        json!({"type": "OFFER", "dst": instance, "payload": {"sdp": "x"}}),
    );
    assert_eq!(sim.frames(a)[0]["src"], "other");
}

#[test]
fn an_id_held_under_another_token_is_taken() {
    let mut sim = Sim::new(1, cfg());
    let first = sim.peer(0, "alice", "t1");
    let second = sim.peerjs(0, "key=peerjs&id=alice&token=t2");
    let (frames, close) = refused(&mut sim, second);
    assert_eq!(
        frames,
        vec![json!({"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}})]
    );
    assert!(close.is_some());
    // The holder keeps its id.
    let bob = sim.peer(0, "bob", "t");
    sim.send(bob, json!({"type": "OFFER", "dst": "alice", "payload": 1}));
    assert_eq!(sim.frames(first).len(), 1);
}

#[test]
fn the_same_id_and_token_silently_takes_over() {
    let mut sim = Sim::new(1, cfg());
    let old = sim.peer(0, "alice", "t1");
    let bob = sim.peer(0, "bob", "t");
    let new = sim.peerjs(0, "key=peerjs&id=alice&token=t1");
    assert!(sim.drain(new).is_empty(), "no OPEN on a takeover");
    assert!(sim.is_connected(old), "the old socket is not closed");
    sim.send(bob, json!({"type": "OFFER", "dst": "alice", "payload": 1}));
    assert_eq!(sim.frames(new).len(), 1, "messages go to the new socket");
    assert!(sim.frames(old).is_empty());
    // What the old socket sends still comes from the id.
    sim.send(old, json!({"type": "ANSWER", "dst": "bob", "payload": 2}));
    assert_eq!(sim.frames(bob)[0]["src"], "alice");
    // Its close does not free the id.
    sim.disconnect(old);
    sim.send(bob, json!({"type": "OFFER", "dst": "alice", "payload": 3}));
    assert_eq!(sim.frames(new)[0]["payload"], 3);
    assert_eq!(sim.cloudlink(0).broker.len(), 2);
}

#[test]
fn heartbeat_gets_no_reply() {
    let mut sim = Sim::new(1, cfg());
    let c = sim.peer(0, "alice", "t");
    sim.send(c, json!({"type": "HEARTBEAT"}));
    sim.advance(100);
    assert!(sim.drain(c).is_empty());
    assert!(sim.is_connected(c));
}

#[test]
fn signals_are_forwarded_as_exactly_type_src_dst_payload_with_the_servers_src() {
    let mut sim = Sim::new(1, cfg());
    let a = sim.peer(0, "alice", "t");
    let b = sim.peer(0, "bob", "t");
    for kind in ["OFFER", "ANSWER", "CANDIDATE", "LEAVE", "EXPIRE"] {
        sim.send(
            a,
            json!({"type": kind, "src": "mallory", "dst": "bob", "payload": {"sdp": "v=0", "n": [1, 2]}, "extra": true}),
        );
        assert_eq!(
            sim.frames(b),
            vec![
                json!({"type": kind, "src": "alice", "dst": "bob", "payload": {"sdp": "v=0", "n": [1, 2]}})
            ],
            "{kind}"
        );
    }
    // No payload given: none sent. A null payload stays null (as JSON.stringify keeps it).
    sim.send(a, json!({"type": "CANDIDATE", "dst": "bob"}));
    assert_eq!(
        sim.frames(b),
        vec![json!({"type": "CANDIDATE", "src": "alice", "dst": "bob"})]
    );
    sim.send(
        a,
        json!({"type": "CANDIDATE", "dst": "bob", "payload": null}),
    );
    assert_eq!(
        sim.frames(b),
        vec![json!({"type": "CANDIDATE", "src": "alice", "dst": "bob", "payload": null})]
    );
    // Other types, and frames that are not JSON objects, go nowhere.
    sim.send(a, json!({"type": "CHAT", "dst": "bob", "payload": 1}));
    sim.send_text(a, "not json");
    sim.send(a, json!(["OFFER"]));
    assert!(sim.frames(b).is_empty());
    assert!(sim.is_connected(a));
}

#[test]
fn a_message_for_an_absent_id_is_delivered_right_after_its_open() {
    let mut sim = Sim::new(1, cfg());
    let a = sim.peer(0, "alice", "t");
    sim.send(a, json!({"type": "OFFER", "dst": "bob", "payload": 1}));
    sim.send(a, json!({"type": "CANDIDATE", "dst": "bob", "payload": 2}));
    sim.advance(HOLD_MS - 1_000);
    let b = sim.peerjs(0, "key=peerjs&id=bob&token=t");
    assert_eq!(
        sim.frames(b),
        vec![
            json!({"type": "OPEN"}),
            json!({"type": "OFFER", "src": "alice", "dst": "bob", "payload": 1}),
            json!({"type": "CANDIDATE", "src": "alice", "dst": "bob", "payload": 2}),
        ]
    );
    sim.advance(HOLD_MS);
    assert!(sim.frames(a).is_empty(), "delivered: nothing expires");
}

#[test]
fn after_five_seconds_the_sender_gets_expire_once() {
    let mut sim = Sim::new(1, cfg());
    let a = sim.peer(0, "alice", "t");
    let c = sim.peer(0, "carol", "t");
    sim.send(a, json!({"type": "OFFER", "dst": "bob", "payload": 1}));
    sim.send(a, json!({"type": "CANDIDATE", "dst": "bob", "payload": 2}));
    sim.send(c, json!({"type": "OFFER", "dst": "bob", "payload": 3}));
    sim.advance(HOLD_MS - 100);
    assert!(sim.frames(a).is_empty(), "held for 5 s");
    sim.advance(200);
    let expire = |to: &str| json!({"type": "EXPIRE", "src": "bob", "dst": to});
    assert_eq!(sim.frames(a), vec![expire("alice")], "once per sender");
    assert_eq!(sim.frames(c), vec![expire("carol")]);
    // Expired messages are gone.
    let b = sim.peerjs(0, "key=peerjs&id=bob&token=t");
    assert_eq!(sim.frames(b), vec![json!({"type": "OPEN"})]);
    assert_eq!(sim.cloudlink(0).broker.held(), 0);
}

#[test]
fn a_new_hold_is_not_cut_short_by_an_earlier_one() {
    let mut sim = Sim::new(1, cfg());
    let a = sim.peer(0, "alice", "t");
    sim.send(a, json!({"type": "OFFER", "dst": "bob", "payload": 1}));
    sim.advance(2_000);
    let b = sim.peerjs(0, "key=peerjs&id=bob&token=t");
    assert_eq!(sim.frames(b).len(), 2, "OPEN and the offer");
    sim.disconnect(b);
    sim.advance(1_000);
    sim.send(a, json!({"type": "OFFER", "dst": "bob", "payload": 2}));
    sim.advance(HOLD_MS - 1_000);
    assert!(sim.frames(a).is_empty(), "the first hold's timer is stale");
    sim.advance(1_100);
    assert_eq!(sim.frames(a)[0]["type"], "EXPIRE");
}

#[test]
fn leave_and_expire_for_an_absent_id_are_dropped() {
    let mut sim = Sim::new(1, cfg());
    let a = sim.peer(0, "alice", "t");
    sim.send(a, json!({"type": "LEAVE", "dst": "bob"}));
    sim.send(a, json!({"type": "EXPIRE", "dst": "bob"}));
    assert_eq!(sim.cloudlink(0).broker.held(), 0);
    sim.advance(HOLD_MS + 1_000);
    assert!(sim.frames(a).is_empty(), "no EXPIRE comes back");
    let b = sim.peerjs(0, "key=peerjs&id=bob&token=t");
    assert_eq!(sim.frames(b), vec![json!({"type": "OPEN"})]);
}

#[test]
fn leave_without_dst_gives_the_id_up() {
    let mut sim = Sim::new(1, cfg());
    let a = sim.peer(0, "alice", "t1");
    let b = sim.peer(0, "bob", "t");
    sim.send(a, json!({"type": "LEAVE"}));
    assert_eq!(sim.cloudlink(0).broker.len(), 1);
    // Messages for it are held now, and the id is free for another token.
    sim.send(b, json!({"type": "OFFER", "dst": "alice", "payload": 1}));
    assert!(sim.frames(a).is_empty());
    let again = sim.peerjs(0, "key=peerjs&id=alice&token=t2");
    assert_eq!(sim.frames(again).len(), 2, "OPEN and the held offer");
    // The socket that left sends from nowhere.
    sim.send(a, json!({"type": "OFFER", "dst": "bob", "payload": 2}));
    assert!(sim.frames(b).is_empty());
}

#[test]
fn a_non_string_dst_matches_nobody() {
    let mut sim = Sim::new(1, cfg());
    let a = sim.peer(0, "alice", "t");
    sim.send(a, json!({"type": "LEAVE", "dst": 5}));
    sim.send(
        a,
        json!({"type": "OFFER", "dst": {"id": "x"}, "payload": 1}),
    );
    assert_eq!(
        sim.cloudlink(0).broker.len(),
        1,
        "LEAVE with a dst keeps the id"
    );
    assert_eq!(sim.cloudlink(0).broker.held(), 0);
}

#[test]
fn what_waits_for_one_absent_id_is_bounded() {
    let mut config = cfg();
    config.limits.msgs_burst = 10_000;
    config.limits.msgs_per_s = 10_000;
    let mut sim = Sim::new(1, config);
    let a = sim.peer(0, "alice", "t");
    for n in 0..HELD_MAX + 50 {
        sim.send(a, json!({"type": "CANDIDATE", "dst": "bob", "payload": n}));
    }
    let b = sim.peerjs(0, "key=peerjs&id=bob&token=t");
    let frames = sim.frames(b);
    assert_eq!(frames.len(), 1 + HELD_MAX);
    assert_eq!(
        frames[HELD_MAX]["payload"],
        HELD_MAX - 1,
        "the first ones kept"
    );
}

#[test]
fn ids_live_on_their_home_shard_and_messages_cross_once() {
    let mut sim = Sim::new(2, cfg());
    let (x, y) = (id_on(0, "x"), id_on(1, "y"));
    // Each connects to the shard that is not its id's home, and moves there.
    let a = sim.peer(1, &x, "t");
    let b = sim.peer(0, &y, "t");
    assert_eq!((sim.shard_of(a), sim.shard_of(b)), (0, 1));
    assert_eq!(sim.cloudlink(0).broker.len(), 1);
    assert_eq!(sim.cloudlink(1).broker.len(), 1);
    sim.send(a, json!({"type": "OFFER", "dst": y, "payload": "sdp"}));
    assert_eq!(
        sim.frames(b),
        vec![json!({"type": "OFFER", "src": x, "dst": y, "payload": "sdp"})]
    );
    // Taken, across shards.
    let c = sim.peerjs(0, &format!("key=peerjs&id={y}&token=other"));
    assert_eq!(refused(&mut sim, c).0[0]["type"], "ID-TAKEN");
    // Held on the absent id's home; the EXPIRE crosses back.
    let z = id_on(1, "z");
    sim.send(a, json!({"type": "OFFER", "dst": z, "payload": 1}));
    assert_eq!(sim.cloudlink(1).broker.held(), 1);
    sim.advance(HOLD_MS + 100);
    assert_eq!(
        sim.frames(a),
        vec![json!({"type": "EXPIRE", "src": z, "dst": x})]
    );
}

fn body(reply: &huddle::core::HttpReply) -> String {
    String::from_utf8(reply.body.clone()).unwrap()
}

#[test]
fn get_id_is_a_fresh_uuid_v4_under_both_prefixes() {
    let mut sim = Sim::new(1, cfg());
    let mut seen = std::collections::HashSet::new();
    for target in ["/peerjs/id", "/peerjs/peerjs/id?ts=123", "/peerjs/id"] {
        let reply = sim.http_get(0, target).expect(target);
        assert_eq!(reply.status, 200, "{target}");
        let id = body(&reply);
        let uuid = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 4, "{id}");
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id, uuid.hyphenated().to_string(), "lowercase, hyphenated");
        assert!(seen.insert(id), "fresh");
        assert!(reply
            .headers
            .contains(&("Access-Control-Allow-Origin", "*")));
    }
    assert!(sim.http_get(0, "/other/id").is_none(), "another key: 404");
    assert!(sim.http_get(0, "/peerjs/nope").is_none());
    assert!(sim.http_get(0, "/").is_none());
}

#[test]
fn get_peers_is_401_unless_discovery_is_on() {
    let mut sim = Sim::new(2, cfg());
    sim.peer(0, "alice", "t");
    for target in ["/peerjs/peers", "/peerjs/peerjs/peers"] {
        let reply = sim.http_get(0, target).unwrap();
        assert_eq!(reply.status, 401, "{target}");
    }
    let mut config = cfg();
    config.cloudlink.peerjs_discovery = true;
    let mut sim = Sim::new(2, config);
    let (x, y) = (id_on(0, "x"), id_on(1, "y"));
    let a = sim.peer(0, &x, "t");
    sim.peer(1, &y, "t");
    for shard in 0..2 {
        let reply = sim.http_get(shard, "/peerjs/peers").unwrap();
        assert_eq!(reply.status, 200);
        let mut ids: Vec<String> = serde_json::from_slice(&reply.body).unwrap();
        ids.sort();
        let mut want = vec![x.clone(), y.clone()];
        want.sort();
        assert_eq!(ids, want, "every shard's ids, asked on shard {shard}");
    }
    sim.disconnect(a);
    let reply = sim.http_get(1, "/peerjs/peerjs/peers").unwrap();
    assert_eq!(body(&reply), format!("[\"{y}\"]"));
}

#[test]
fn the_prefix_moves_the_socket_and_the_http_routes() {
    let mut config = cfg();
    config.cloudlink.peerjs_prefix = "/signal/".into();
    let mut sim = Sim::new(1, config);
    let c = sim
        .upgrade(
            0,
            "/signal/peerjs?key=peerjs&id=a&token=t",
            None,
            None,
            huddle::codec::Codec::Json,
        )
        .unwrap();
    assert_eq!(sim.frames(c), vec![json!({"type": "OPEN"})]);
    let c = sim
        .upgrade(
            0,
            "/signal/peerjs/peerjs?key=peerjs&id=b&token=t",
            None,
            None,
            huddle::codec::Codec::Json,
        )
        .unwrap();
    assert_eq!(sim.frames(c), vec![json!({"type": "OPEN"})]);
    let refused = sim.upgrade(
        0,
        "/peerjs?key=peerjs&id=c&token=t",
        None,
        None,
        huddle::codec::Codec::Json,
    );
    assert_eq!(refused, Err(404));
    assert_eq!(sim.http_get(0, "/signal/peerjs/id").unwrap().status, 200);
    assert_eq!(
        sim.http_get(0, "/signal/peerjs/peerjs/id").unwrap().status,
        200
    );
    assert!(sim.http_get(0, "/peerjs/id").is_none());
}

#[test]
fn a_closed_id_is_free_again() {
    let mut sim = Sim::new(2, cfg());
    let x = id_on(1, "x");
    let a = sim.peer(0, &x, "t1");
    sim.disconnect(a);
    assert!(sim.cloudlink(1).broker.is_empty());
    sim.peer(0, &x, "t2");
}

#[test]
fn a_flooding_peer_is_closed_like_any_client() {
    let mut sim = Sim::new(1, cfg());
    let a = sim.peer(0, "alice", "t");
    for _ in 0..2_000 {
        if !sim.is_connected(a) {
            break;
        }
        sim.send(a, json!({"type": "HEARTBEAT"}));
    }
    let (_, close) = refused(&mut sim, a);
    assert_eq!(close, Some(1008));
    assert!(sim.cloudlink(0).broker.is_empty(), "its id is free");
}
