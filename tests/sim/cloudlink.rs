//! The cloudlink dialect (`protocols/cloudlink.md`), rule by rule in the page's order, on
//! a simulated server: one shard, and two shards where a lobby's members arrive from both
//! (each moves to the lobby's home) while its listing and announcements reach every shard.

use std::net::IpAddr;

use huddle::cloudlink::lobby::home;
use huddle::codec::Codec;
use huddle::config::{CloudlinkAuth, Config};
use huddle::sim::{ClientId, Sim};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn cfg() -> Config {
    Config {
        seed: 5,
        ..Config::default()
    }
}

/// A name whose lobby lives on `shard` of 2 (for game `ugi`).
fn lobby_on(ugi: &str, shard: u16, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}{i}"))
        .find(|name| home(ugi, name, 2).0 == shard)
        .expect("some name hashes to every shard")
}

fn opcodes(frames: &[(String, Value)]) -> Vec<&str> {
    frames.iter().map(|(op, _)| op.as_str()).collect()
}

fn create(sim: &mut Sim, c: ClientId, name: &str, extra: Value) -> Vec<(String, Value)> {
    let mut payload = json!({"name": name, "max_players": -1, "password": "", "locked": false, "enable_relay": false});
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    sim.cl_send(c, "CREATE_LOBBY", payload);
    sim.cl_frames(c)
}

fn join(sim: &mut Sim, c: ClientId, name: &str, password: &str) -> Vec<(String, Value)> {
    sim.cl_send(c, "JOIN_LOBBY", json!({"name": name, "password": password}));
    sim.cl_frames(c)
}

fn manage(sim: &mut Sim, c: ClientId, method: &str, args: Value) -> Vec<(String, Value)> {
    sim.cl_send(c, "MANAGE_LOBBY", json!({"method": method, "args": args}));
    sim.cl_frames(c)
}

fn last(frames: &[(String, Value)], opcode: &str) -> Value {
    frames
        .iter()
        .rev()
        .find(|(op, _)| op == opcode)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("no {opcode} in {frames:?}"))
}

fn peer(info: &Value) -> Value {
    json!({"instance_id": info["instance_id"], "user_id": info["user_id"], "username": info["username"]})
}

// --- Transport -------------------------------------------------------------------------

#[test]
fn transport_a_missing_or_invalid_ugi_is_400_and_slash_with_ugi_is_cloudlink() {
    let mut sim = Sim::new(1, cfg());
    for target in [
        "/cl5",
        "/cl5?ugi=",
        "/cl5?ugi=a__b",
        "/?ugi=bad!",
        &format!("/cl5?ugi={}", "x".repeat(129)),
    ] {
        assert_eq!(
            sim.upgrade(0, target, None, None, Codec::Json),
            Err(400),
            "{target}"
        );
    }
    let c = sim
        .upgrade(0, "/?ugi=game", None, None, Codec::Json)
        .unwrap();
    sim.cl_send(c, "KEEPALIVE", Value::Null);
    assert_eq!(
        opcodes(&sim.cl_frames(c)),
        ["KEEPALIVE_ACK"],
        "/ with ugi speaks CL5"
    );
    let r = sim.upgrade(0, "/", None, None, Codec::Json).unwrap();
    sim.send_text(
        r,
        &json!({"v":1,"codecs":["json"],"project_id":"demo"}).to_string(),
    );
    assert!(
        sim.recv_type(r, "handshake.ok").is_some(),
        "/ without ugi is rooms"
    );
}

#[test]
fn transport_the_origin_allow_list_takes_wildcards_and_no_origin_unless_required() {
    let mut c = cfg();
    c.cloudlink.allowed_origins = vec![
        "https://*.turbowarp.org".into(),
        "https://penguinmod.com".into(),
    ];
    let mut sim = Sim::new(1, c.clone());
    let up = |sim: &mut Sim, origin| sim.upgrade(0, "/cl5?ugi=g", origin, None, Codec::Json);
    assert!(up(&mut sim, Some("https://studio.turbowarp.org")).is_ok());
    assert!(up(&mut sim, Some("https://penguinmod.com")).is_ok());
    assert_eq!(
        up(&mut sim, Some("https://turbowarp.org.evil.com")),
        Err(403)
    );
    assert_eq!(up(&mut sim, Some("https://example.com")), Err(403));
    assert!(
        up(&mut sim, None).is_ok(),
        "no Origin: a non-browser client"
    );
    c.cloudlink.require_origin = true;
    let mut sim = Sim::new(1, c);
    assert_eq!(up(&mut sim, None), Err(403));
}

#[test]
fn transport_new_connections_per_address_per_minute_past_the_bucket_are_429() {
    let mut c = cfg();
    c.cloudlink.conns_per_ip_per_min = 3;
    let mut sim = Sim::new(2, c);
    let a: IpAddr = "198.51.100.4".parse().unwrap();
    let b: IpAddr = "198.51.100.5".parse().unwrap();
    for shard in [0, 1, 0] {
        assert!(sim
            .upgrade(shard, "/cl5?ugi=g", None, Some(a), Codec::Json)
            .is_ok());
    }
    assert_eq!(
        sim.upgrade(1, "/cl5?ugi=g", None, Some(a), Codec::Json),
        Err(429),
        "the bucket is server-wide, whichever shard accepts"
    );
    assert!(sim
        .upgrade(1, "/cl5?ugi=g", None, Some(b), Codec::Json)
        .is_ok());
    assert!(
        sim.upgrade(0, "/rooms", None, Some(a), Codec::Json).is_ok(),
        "CL5 signaling only"
    );
    sim.advance(20_000);
    assert!(
        sim.upgrade(0, "/cl5?ugi=g", None, Some(a), Codec::Json)
            .is_ok(),
        "refilled per minute"
    );
}

#[test]
fn transport_unknown_fields_are_ignored_and_an_empty_list_is_sent_as_brackets() {
    let mut sim = Sim::new(1, cfg());
    let (c, _) = sim.cl_client(0, "g", "ann");
    sim.send_text(
        c,
        r#"{"opcode":"LIST_LOBBIES","listener":"x","extra":{"a":1}}"#,
    );
    assert_eq!(sim.cl_frames(c), [("LIST_ACK".to_string(), json!([]))]);
    sim.send_text(c, r#"{"opcode":"KEEPALIVE"}"#);
    let raw = sim.drain(c);
    assert_eq!(
        raw,
        [huddle::sim::Received::Frame(
            json!({"opcode":"KEEPALIVE_ACK"})
        )],
        "KEEPALIVE_ACK is the one frame without a payload"
    );
}

#[test]
fn transport_every_lobby_and_list_is_scoped_to_the_ugi() {
    let mut sim = Sim::new(1, cfg());
    let (a, _) = sim.cl_client(0, "game-a", "ann");
    let (b, _) = sim.cl_client(0, "game-b", "bob");
    create(&mut sim, a, "shared-name", json!({}));
    assert!(sim.cl_frames(b).is_empty(), "no NEW_LOBBY across games");
    sim.cl_send(b, "LIST_LOBBIES", Value::Null);
    assert_eq!(last(&sim.cl_frames(b), "LIST_ACK"), json!([]));
    sim.cl_send(b, "FIND_LOBBY", json!("shared-name"));
    assert_eq!(last(&sim.cl_frames(b), "FIND_ACK"), json!("not found"));
    let frames = create(&mut sim, b, "shared-name", json!({}));
    assert_eq!(
        last(&frames, "CREATE_ACK"),
        json!("ok"),
        "the same name in another game"
    );
}

// --- Client → server --------------------------------------------------------------------

#[test]
fn init_answers_init_ok_with_a_peerjs_valid_instance_id_and_a_guest_user_id() {
    let mut sim = Sim::new(1, cfg());
    let c = sim.cl5(0, "my_game-1");
    sim.cl_send(
        c,
        "INIT",
        json!({"username": "  Ann  ", "token": "let me in"}),
    );
    let frames = sim.cl_frames(c);
    assert_eq!(opcodes(&frames), ["INIT_OK"]);
    let ok = &frames[0].1;
    let id = ok["instance_id"].as_str().unwrap();
    let (ulid, ugi) = id.split_once('_').unwrap();
    assert_eq!((ulid.len(), ugi), (26, "my_game-1"));
    let peerjs_id = |s: &str| {
        s.split([' ', '_', '-'])
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
    };
    assert!(peerjs_id(id), "{id} is a PeerJS id");
    let user = ok["user_id"].as_str().unwrap();
    assert!(user.starts_with("GUEST_") && user.len() == 32, "{user}");
    assert_eq!(ok["username"], "Ann", "trimmed");
    assert_eq!(ok.as_object().unwrap().len(), 3);
    sim.cl_send(c, "INIT", json!({"username": "again"}));
    assert_eq!(
        sim.cl_frames(c),
        [("WARNING".into(), json!("already authorized"))]
    );
}

#[test]
fn init_with_a_bad_username_or_payload_is_a_violation_and_close_1001() {
    let mut sim = Sim::new(1, cfg());
    for payload in [
        json!({"username": ""}),
        json!({"username": "x".repeat(33)}),
        json!({"username": 7}),
        json!("ann"),
        Value::Null,
    ] {
        let c = sim.cl5(0, "g");
        sim.cl_send(c, "INIT", payload.clone());
        let frames = sim.cl_frames(c);
        assert_eq!(
            opcodes(&frames),
            ["VIOLATION", "close"],
            "{payload}: {frames:?}"
        );
        assert_eq!(frames[1].1, json!(1001));
        assert!(!sim.is_connected(c));
    }
}

#[test]
fn keepalive_is_acked_also_before_init() {
    let mut sim = Sim::new(1, cfg());
    let c = sim.cl5(0, "g");
    sim.cl_send(c, "KEEPALIVE", json!({"anything": true}));
    assert_eq!(opcodes(&sim.cl_frames(c)), ["KEEPALIVE_ACK"]);
}

#[test]
fn lobby_opcodes_before_init_are_unauthorized_and_unknown_opcodes_are_warned() {
    let mut sim = Sim::new(1, cfg());
    let c = sim.cl5(0, "g");
    for op in [
        "LIST_LOBBIES",
        "FIND_LOBBY",
        "CREATE_LOBBY",
        "JOIN_LOBBY",
        "MANAGE_LOBBY",
        "G_MSG",
        "P_MSG",
    ] {
        sim.cl_send(c, op, json!({"name": "x"}));
        assert_eq!(
            sim.cl_frames(c),
            [("WARNING".into(), json!("unauthorized"))],
            "{op}"
        );
    }
    sim.cl_send(c, "TELEPORT", json!(1));
    assert_eq!(
        sim.cl_frames(c),
        [("WARNING".into(), json!("unknown or unimplemented opcode"))]
    );
    assert!(sim.is_connected(c));
}

#[test]
fn malformed_frames_and_wrongly_shaped_payloads_are_violations_then_close_1001() {
    let mut sim = Sim::new(1, cfg());
    let bad: [(&str, &str); 8] = [
        ("not json", "x"),
        ("not an object", "[1,2]"),
        ("no opcode", r#"{"payload":1}"#),
        (
            "FIND_LOBBY of a number",
            r#"{"opcode":"FIND_LOBBY","payload":7}"#,
        ),
        (
            "CREATE_LOBBY without an object",
            r#"{"opcode":"CREATE_LOBBY","payload":"x"}"#,
        ),
        (
            "CREATE_LOBBY name not a string",
            r#"{"opcode":"CREATE_LOBBY","payload":{"name":5,"max_players":2}}"#,
        ),
        (
            "CREATE_LOBBY locked not a boolean",
            r#"{"opcode":"CREATE_LOBBY","payload":{"name":"n","max_players":2,"locked":"yes"}}"#,
        ),
        (
            "JOIN_LOBBY name not a string",
            r#"{"opcode":"JOIN_LOBBY","payload":{"name":1}}"#,
        ),
    ];
    for (what, text) in bad {
        let (c, _) = sim.cl_client(0, "g", "ann");
        sim.send_text(c, text);
        let frames = sim.cl_frames(c);
        assert_eq!(
            opcodes(&frames),
            ["VIOLATION", "close"],
            "{what}: {frames:?}"
        );
        assert!(
            frames[0].1.as_str().is_some_and(|s| !s.is_empty()),
            "{what}: says what was wrong"
        );
    }
}

#[test]
fn list_lobbies_lists_names_and_find_lobby_describes_one() {
    let mut sim = Sim::new(1, cfg());
    let (h, hi) = sim.cl_client(0, "g", "host");
    let (p, _) = sim.cl_client(0, "g", "peer");
    let (q, _) = sim.cl_client(0, "g", "asker");
    sim.cl_send(q, "LIST_LOBBIES", Value::Null);
    assert_eq!(last(&sim.cl_frames(q), "LIST_ACK"), json!([]));
    create(
        &mut sim,
        h,
        "room-b",
        json!({"max_players": 8, "password": "pw", "enable_relay": true}),
    );
    join(&mut sim, p, "room-b", "pw");
    create(&mut sim, q, "room-a", json!({"locked": true}));
    sim.cl_send(q, "LIST_LOBBIES", Value::Null);
    assert_eq!(
        last(&sim.cl_frames(q), "LIST_ACK"),
        json!(["room-a", "room-b"])
    );
    sim.cl_send(q, "FIND_LOBBY", json!("room-b"));
    assert_eq!(
        last(&sim.cl_frames(q), "FIND_ACK"),
        json!({"host": peer(&hi), "max_players": 8, "current_players": 1, "currently_locked": false, "password_required": true, "relay_enabled": true})
    );
    sim.cl_send(q, "FIND_LOBBY", json!("room-a"));
    let a = last(&sim.cl_frames(q), "FIND_ACK");
    assert_eq!(
        (
            a["max_players"].clone(),
            a["currently_locked"].clone(),
            a["current_players"].clone()
        ),
        (json!(-1), json!(true), json!(0))
    );
    assert_eq!(
        (a["password_required"].clone(), a["relay_enabled"].clone()),
        (json!(false), json!(false))
    );
    sim.cl_send(q, "FIND_LOBBY", json!("nope"));
    assert_eq!(last(&sim.cl_frames(q), "FIND_ACK"), json!("not found"));
}

#[test]
fn a_pubkey_sent_with_init_is_shown_with_the_peer() {
    let mut sim = Sim::new(1, cfg());
    let h = sim.cl5(0, "g");
    sim.cl_send(h, "INIT", json!({"username": "h", "pubkey": "PK1"}));
    sim.cl_frames(h);
    let frames = create(&mut sim, h, "l", json!({}));
    assert_eq!(last(&frames, "NEW_HOST")["pubkey"], "PK1");
}

#[test]
fn create_lobby_checks_name_then_max_players_then_exists_in_that_order() {
    let mut c = cfg();
    c.cloudlink.max_players_cap = 10;
    let mut sim = Sim::new(1, c);
    let (a, _) = sim.cl_client(0, "g", "ann");
    let (b, _) = sim.cl_client(0, "g", "bob");
    let ack = |sim: &mut Sim, c, name: &str, max: Value| {
        last(
            &create(sim, c, name, json!({"max_players": max})),
            "CREATE_ACK",
        )
    };
    assert_eq!(
        ack(&mut sim, a, "", json!(0)),
        json!("invalid name"),
        "the name first"
    );
    assert_eq!(
        ack(&mut sim, a, &"n".repeat(65), json!(2)),
        json!("invalid name")
    );
    for max in [
        json!(0),
        json!(-2),
        json!(2.5),
        json!("abc"),
        json!(11),
        Value::Null,
    ] {
        assert_eq!(
            ack(&mut sim, a, "l", max.clone()),
            json!("invalid max_players"),
            "{max}"
        );
    }
    assert_eq!(
        ack(&mut sim, a, &"é".repeat(64), json!(10)),
        json!("ok"),
        "64 characters, not bytes"
    );
    assert_eq!(
        ack(&mut sim, b, &"é".repeat(64), json!(0)),
        json!("invalid max_players"),
        "before exists"
    );
    assert_eq!(
        ack(&mut sim, b, &"é".repeat(64), json!(-1)),
        json!("exists")
    );
}

#[test]
fn create_lobby_replies_transition_ack_new_host_then_new_lobby_to_the_games_idle_clients() {
    let mut sim = Sim::new(1, cfg());
    let (h, hi) = sim.cl_client(0, "g", "host");
    let (idle, _) = sim.cl_client(0, "g", "idle");
    let pre_init = sim.cl5(0, "g");
    let (busy, _) = sim.cl_client(0, "g", "busy");
    create(&mut sim, busy, "other", json!({}));
    for c in [h, idle, pre_init] {
        sim.cl_frames(c);
    }
    let frames = create(&mut sim, h, "lobby", json!({}));
    assert_eq!(
        frames,
        [
            ("TRANSITION".to_string(), json!("host")),
            ("CREATE_ACK".into(), json!("ok")),
            ("NEW_HOST".into(), peer(&hi)),
        ]
    );
    for c in [idle, pre_init] {
        assert_eq!(
            sim.cl_frames(c),
            [("NEW_LOBBY".to_string(), json!("lobby"))]
        );
    }
    assert!(
        sim.cl_frames(busy).is_empty(),
        "a client in a lobby is not told"
    );
}

#[test]
fn join_lobby_checks_not_found_locked_full_password_in_that_order() {
    let mut sim = Sim::new(1, cfg());
    let (h, _) = sim.cl_client(0, "g", "host");
    let (p, _) = sim.cl_client(0, "g", "peer");
    let (j, _) = sim.cl_client(0, "g", "joiner");
    let ack = |sim: &mut Sim, c, name: &str, pw: &str| last(&join(sim, c, name, pw), "JOIN_ACK");
    assert_eq!(ack(&mut sim, j, "nope", ""), json!("not found"));
    create(
        &mut sim,
        h,
        "l",
        json!({"max_players": 1, "password": "pw", "locked": true}),
    );
    assert_eq!(
        ack(&mut sim, j, "l", "wrong"),
        json!("locked"),
        "locked before full and password"
    );
    manage(&mut sim, h, "unlock", Value::Null);
    assert_eq!(
        ack(&mut sim, p, "l", "pw"),
        json!("ok"),
        "one peer: the host is not counted"
    );
    assert_eq!(
        ack(&mut sim, j, "l", "wrong"),
        json!("full"),
        "full before password"
    );
    manage(&mut sim, h, "change_max_players", json!(2));
    assert_eq!(ack(&mut sim, j, "l", "wrong"), json!("password"));
    assert_eq!(ack(&mut sim, j, "l", ""), json!("password"));
    assert_eq!(ack(&mut sim, j, "l", "pw"), json!("ok"));
}

#[test]
fn join_lobby_tells_the_joiner_the_host_and_the_others_in_the_pages_order() {
    let mut sim = Sim::new(1, cfg());
    let (h, hi) = sim.cl_client(0, "g", "host");
    let (p, pi) = sim.cl_client(0, "g", "peer");
    let (j, ji) = sim.cl_client(0, "g", "joiner");
    create(&mut sim, h, "l", json!({}));
    join(&mut sim, p, "l", "");
    sim.cl_frames(h);
    sim.cl_frames(j);
    let frames = join(&mut sim, j, "l", "");
    assert_eq!(
        frames,
        [
            ("TRANSITION".to_string(), json!("peer")),
            ("JOIN_ACK".into(), json!("ok")),
            ("NEW_HOST".into(), peer(&hi)),
        ]
    );
    assert_eq!(sim.cl_frames(h), [("NEW_PEER".to_string(), peer(&ji))]);
    assert_eq!(sim.cl_frames(p), [("PEER_JOIN".to_string(), peer(&ji))]);
    let _ = pi;
}

#[test]
fn manage_lobby_is_for_the_host_only() {
    let mut sim = Sim::new(1, cfg());
    let (h, _) = sim.cl_client(0, "g", "host");
    let (p, _) = sim.cl_client(0, "g", "peer");
    create(&mut sim, h, "l", json!({}));
    join(&mut sim, p, "l", "");
    sim.cl_frames(h);
    for c in [p, sim.cl_client(0, "g", "outsider").0] {
        assert_eq!(
            manage(&mut sim, c, "lock", Value::Null),
            [("WARNING".into(), json!("unauthorized"))]
        );
    }
    assert_eq!(
        manage(&mut sim, h, "fly", Value::Null),
        [("MANAGE_ACK".into(), json!("unknown method"))]
    );
}

#[test]
fn manage_lobby_lock_unlock_password_and_max_players() {
    let mut sim = Sim::new(1, cfg());
    let (h, _) = sim.cl_client(0, "g", "host");
    let (j, _) = sim.cl_client(0, "g", "joiner");
    create(&mut sim, h, "l", json!({"max_players": 3}));
    let ok = [("MANAGE_ACK".to_string(), json!("ok"))];
    assert_eq!(manage(&mut sim, h, "lock", Value::Null), ok);
    assert_eq!(
        last(&join(&mut sim, j, "l", ""), "JOIN_ACK"),
        json!("locked")
    );
    assert_eq!(manage(&mut sim, h, "unlock", Value::Null), ok);
    assert_eq!(manage(&mut sim, h, "change_password", json!("s3")), ok);
    assert_eq!(
        last(&join(&mut sim, j, "l", ""), "JOIN_ACK"),
        json!("password")
    );
    assert_eq!(
        manage(&mut sim, h, "change_password", json!(5)),
        [(
            "MANAGE_ACK".into(),
            json!("type error: argument (new password) should be a string")
        )]
    );
    for bad in [
        json!(0),
        json!(2.5),
        json!("abc"),
        json!(-2),
        json!(257),
        Value::Null,
    ] {
        assert_eq!(
            manage(&mut sim, h, "change_max_players", bad.clone()),
            [("MANAGE_ACK".into(), json!("invalid max_players"))],
            "{bad}"
        );
    }
    assert_eq!(manage(&mut sim, h, "change_max_players", json!(-1)), ok);
    assert_eq!(
        manage(&mut sim, h, "change_max_players", json!(4.0)),
        ok,
        "an integral number is an integer"
    );
    sim.cl_send(j, "FIND_LOBBY", json!("l"));
    let found = last(&sim.cl_frames(j), "FIND_ACK");
    assert_eq!(
        (
            found["max_players"].clone(),
            found["password_required"].clone()
        ),
        (json!(4), json!(true))
    );
    assert_eq!(
        manage(&mut sim, h, "change_password", json!("")),
        ok,
        "an empty password is none"
    );
    assert_eq!(
        last(&join(&mut sim, j, "l", "whatever"), "JOIN_ACK"),
        json!("ok")
    );
}

#[test]
fn manage_lobby_kick_warns_and_disconnects_the_target_and_the_others_hear_peer_left() {
    let mut sim = Sim::new(1, cfg());
    let (h, _) = sim.cl_client(0, "g", "host");
    let (p, _) = sim.cl_client(0, "g", "peer");
    let (k, ki) = sim.cl_client(0, "g", "kicked");
    create(&mut sim, h, "l", json!({}));
    join(&mut sim, p, "l", "");
    join(&mut sim, k, "l", "");
    sim.cl_frames(h);
    sim.cl_frames(p);
    assert_eq!(
        manage(&mut sim, h, "kick", json!("nobody")),
        [("MANAGE_ACK".into(), json!("no peer found"))]
    );
    assert_eq!(
        manage(&mut sim, h, "kick", json!(3)),
        [(
            "MANAGE_ACK".into(),
            json!("type error: argument (peer id) should be a string")
        )]
    );
    let frames = manage(&mut sim, h, "kick", ki["instance_id"].clone());
    assert_eq!(
        frames,
        [
            ("MANAGE_ACK".to_string(), json!("ok")),
            ("PEER_LEFT".into(), ki["instance_id"].clone())
        ]
    );
    assert_eq!(
        sim.cl_frames(k),
        [
            (
                "WARNING".to_string(),
                json!("You have been kicked from the lobby.")
            ),
            ("close".into(), json!(1001))
        ]
    );
    assert!(!sim.is_connected(k));
    assert_eq!(
        sim.cl_frames(p),
        [("PEER_LEFT".to_string(), ki["instance_id"].clone())]
    );
    sim.cl_send(h, "FIND_LOBBY", json!("l"));
    assert_eq!(last(&sim.cl_frames(h), "FIND_ACK")["current_players"], 1);
}

#[test]
fn manage_lobby_close_lobby_transitions_every_member_and_tells_the_games_idle_clients() {
    let mut sim = Sim::new(1, cfg());
    let (h, _) = sim.cl_client(0, "g", "host");
    let (p, _) = sim.cl_client(0, "g", "peer");
    let (idle, _) = sim.cl_client(0, "g", "idle");
    create(&mut sim, h, "l", json!({}));
    join(&mut sim, p, "l", "");
    sim.cl_frames(idle);
    sim.cl_frames(h);
    let frames = manage(&mut sim, h, "close_lobby", Value::Null);
    assert_eq!(
        frames,
        [
            ("MANAGE_ACK".to_string(), json!("ok")),
            ("TRANSITION".into(), json!("")),
            ("LOBBY_CLOSED".into(), json!("l")),
        ],
        "LOBBY_CLOSED once"
    );
    assert_eq!(
        sim.cl_frames(p),
        [
            ("TRANSITION".to_string(), json!("")),
            ("LOBBY_CLOSED".into(), json!("l"))
        ]
    );
    assert_eq!(
        sim.cl_frames(idle),
        [("LOBBY_CLOSED".to_string(), json!("l"))]
    );
    assert_eq!(sim.cloudlink(0).lobbies.len(), 0);
    // The members are in no lobby now: they hear the next NEW_LOBBY.
    create(&mut sim, idle, "next", json!({}));
    assert_eq!(sim.cl_frames(h), [("NEW_LOBBY".to_string(), json!("next"))]);
}

#[test]
fn manage_lobby_transfer_ownership_transitions_both_and_tells_everyone_the_new_host() {
    let mut sim = Sim::new(1, cfg());
    let (h, _) = sim.cl_client(0, "g", "host");
    let (p, pi) = sim.cl_client(0, "g", "peer");
    let (q, _) = sim.cl_client(0, "g", "other");
    create(&mut sim, h, "l", json!({}));
    join(&mut sim, p, "l", "");
    join(&mut sim, q, "l", "");
    sim.cl_frames(h);
    sim.cl_frames(p);
    assert_eq!(
        manage(&mut sim, h, "transfer_ownership", json!("nobody")),
        [("MANAGE_ACK".into(), json!("no peer found"))]
    );
    let frames = manage(&mut sim, h, "transfer_ownership", pi["instance_id"].clone());
    assert_eq!(
        frames,
        [
            ("TRANSITION".to_string(), json!("peer")),
            ("NEW_HOST".into(), peer(&pi)),
            ("MANAGE_ACK".into(), json!("ok"))
        ]
    );
    assert_eq!(
        sim.cl_frames(p),
        [
            ("TRANSITION".to_string(), json!("host")),
            ("NEW_HOST".into(), peer(&pi))
        ]
    );
    assert_eq!(sim.cl_frames(q), [("NEW_HOST".to_string(), peer(&pi))]);
    assert_eq!(
        manage(&mut sim, h, "lock", Value::Null),
        [("WARNING".into(), json!("unauthorized"))],
        "no longer the host"
    );
    assert_eq!(
        manage(&mut sim, p, "lock", Value::Null),
        [("MANAGE_ACK".into(), json!("ok"))]
    );
}

// --- Leaving, promotion, deletion --------------------------------------------------------

#[test]
fn a_member_leaving_is_peer_left_to_the_host_and_the_others() {
    let mut sim = Sim::new(1, cfg());
    let (h, _) = sim.cl_client(0, "g", "host");
    let (p, pi) = sim.cl_client(0, "g", "peer");
    let (q, _) = sim.cl_client(0, "g", "other");
    create(&mut sim, h, "l", json!({}));
    join(&mut sim, p, "l", "");
    join(&mut sim, q, "l", "");
    sim.cl_frames(h);
    sim.disconnect(p);
    let left = [("PEER_LEFT".to_string(), pi["instance_id"].clone())];
    assert_eq!(sim.cl_frames(h), left);
    assert_eq!(sim.cl_frames(q), left);
}

#[test]
fn the_host_leaving_promotes_the_oldest_member() {
    let mut sim = Sim::new(1, cfg());
    let (h, hi) = sim.cl_client(0, "g", "host");
    let (p, pi) = sim.cl_client(0, "g", "first");
    let (q, _) = sim.cl_client(0, "g", "second");
    create(&mut sim, h, "l", json!({}));
    join(&mut sim, p, "l", "");
    join(&mut sim, q, "l", "");
    sim.cl_frames(p);
    sim.close(h, 1000);
    let gone = ("PEER_LEFT".to_string(), hi["instance_id"].clone());
    assert_eq!(
        sim.cl_frames(p),
        [
            gone.clone(),
            ("TRANSITION".into(), json!("host")),
            ("NEW_HOST".into(), peer(&pi))
        ]
    );
    assert_eq!(sim.cl_frames(q), [gone, ("NEW_HOST".into(), peer(&pi))]);
    assert_eq!(
        manage(&mut sim, p, "lock", Value::Null),
        [("MANAGE_ACK".into(), json!("ok"))]
    );
}

#[test]
fn the_last_member_leaving_deletes_the_lobby_and_the_idle_clients_hear_lobby_closed() {
    let mut sim = Sim::new(1, cfg());
    let (h, _) = sim.cl_client(0, "g", "host");
    let (idle, _) = sim.cl_client(0, "g", "idle");
    create(&mut sim, h, "l", json!({}));
    sim.cl_frames(idle);
    sim.disconnect(h);
    assert_eq!(
        sim.cl_frames(idle),
        [("LOBBY_CLOSED".to_string(), json!("l"))]
    );
    sim.cl_send(idle, "LIST_LOBBIES", Value::Null);
    assert_eq!(last(&sim.cl_frames(idle), "LIST_ACK"), json!([]));
}

#[test]
fn creating_or_joining_another_lobby_first_leaves_the_old_one_cleanly() {
    let mut sim = Sim::new(1, cfg());
    let (h, _) = sim.cl_client(0, "g", "host");
    let (p, pi) = sim.cl_client(0, "g", "peer");
    create(&mut sim, h, "old", json!({}));
    join(&mut sim, p, "old", "");
    sim.cl_frames(h);
    let frames = create(&mut sim, p, "new", json!({}));
    assert_eq!(
        opcodes(&frames),
        ["TRANSITION", "TRANSITION", "CREATE_ACK", "NEW_HOST"]
    );
    assert_eq!(frames[0].1, json!(""), "out of the old lobby first");
    assert_eq!(
        sim.cl_frames(h),
        [("PEER_LEFT".to_string(), pi["instance_id"].clone())]
    );
    // Its old lobby no longer counts it; joining back moves it again.
    sim.cl_send(h, "FIND_LOBBY", json!("old"));
    assert_eq!(last(&sim.cl_frames(h), "FIND_ACK")["current_players"], 0);
    let frames = join(&mut sim, p, "old", "");
    assert_eq!(
        opcodes(&frames),
        ["TRANSITION", "TRANSITION", "JOIN_ACK", "NEW_HOST"]
    );
    sim.cl_send(h, "LIST_LOBBIES", Value::Null);
    assert_eq!(
        last(&sim.cl_frames(h), "LIST_ACK"),
        json!(["old"]),
        "the emptied lobby was deleted"
    );
}

#[test]
fn shards_leaving_a_lobby_for_another_shard_reads_the_same_as_on_one_shard() {
    // The last member of a lobby on shard 1 joins a lobby that does not exist on shard 0,
    // then creates one there: it never hears its old lobby closing (it was in it), and the
    // idle clients on shard 0 hear the old lobby close before the new one opens.
    for shards in [1, 2] {
        let mut sim = Sim::new(shards, cfg());
        let (a, _) = sim.cl_client(0, "g", "ann");
        let (idle, _) = sim.cl_client(0, "g", "bob");
        let old = lobby_on("g", 1, "old");
        let (missing, new) = (lobby_on("g", 0, "missing"), lobby_on("g", 0, "new"));
        create(&mut sim, a, &old, json!({}));
        sim.cl_frames(idle);
        let frames = join(&mut sim, a, &missing, "");
        assert_eq!(
            frames,
            [
                ("TRANSITION".to_string(), json!("")),
                ("JOIN_ACK".to_string(), json!("not found"))
            ],
            "{shards} shard(s)"
        );
        assert_eq!(
            sim.cl_frames(idle),
            [("LOBBY_CLOSED".to_string(), json!(old))],
            "{shards} shard(s)"
        );
        create(&mut sim, a, &old, json!({}));
        sim.cl_frames(idle);
        let frames = create(&mut sim, a, &new, json!({}));
        assert_eq!(
            opcodes(&frames),
            ["TRANSITION", "TRANSITION", "CREATE_ACK", "NEW_HOST"],
            "{shards} shard(s)"
        );
        assert_eq!(
            sim.cl_frames(idle),
            [
                ("LOBBY_CLOSED".to_string(), json!(old)),
                ("NEW_LOBBY".to_string(), json!(new))
            ],
            "{shards} shard(s): the old lobby closed first"
        );
    }
}

// --- Token mode -------------------------------------------------------------------------

fn token(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(b"cl5-secret"),
    )
    .unwrap()
}

fn token_cfg() -> Config {
    let mut c = cfg();
    c.cloudlink.auth = CloudlinkAuth::Token;
    c.cloudlink.jwt_secret = "cl5-secret".into();
    c
}

#[test]
fn token_mode_takes_the_user_from_the_claims_and_refuses_bad_tokens() {
    let mut sim = Sim::new(1, token_cfg());
    let exp = 1_700_000_000 + 3600;
    let c = sim.cl5(0, "g");
    sim.cl_send(c, "INIT", json!({"token": token(json!({"ulid": "01USER", "username": "Ann", "exp": exp})), "username": "ignored"}));
    let ok = last(&sim.cl_frames(c), "INIT_OK");
    assert_eq!(
        (ok["user_id"].clone(), ok["username"].clone()),
        (json!("01USER"), json!("Ann"))
    );
    for bad in [
        token(json!({"ulid": "u", "exp": 1_600_000_000})),
        token(json!({"ulid": "u"})),
        "let me in".to_string(),
    ] {
        let c = sim.cl5(0, "g");
        sim.cl_send(c, "INIT", json!({"token": bad, "username": "x"}));
        assert_eq!(opcodes(&sim.cl_frames(c)), ["VIOLATION", "close"]);
    }
    let by_query = token(json!({"sub": "via-query", "username": "Q", "exp": exp}));
    let c = sim
        .upgrade(
            0,
            &format!("/cl5?ugi=g&token={by_query}"),
            None,
            None,
            Codec::Json,
        )
        .unwrap();
    sim.cl_send(c, "INIT", json!({"token": "not this one"}));
    assert_eq!(
        last(&sim.cl_frames(c), "INIT_OK")["user_id"],
        "via-query",
        "?token= first"
    );
}

#[test]
fn token_mode_one_session_per_user_and_game_across_shards() {
    let mut sim = Sim::new(2, token_cfg());
    let exp = 1_700_000_000 + 3600;
    let t = token(json!({"user_id": "same", "username": "S", "exp": exp}));
    let init = |sim: &mut Sim, shard, ugi: &str| {
        let c = sim.cl5(shard, ugi);
        sim.cl_send(c, "INIT", json!({ "token": t }));
        (c, sim.cl_frames(c))
    };
    let (first, frames) = init(&mut sim, 0, "g");
    assert_eq!(opcodes(&frames), ["INIT_OK"]);
    for shard in [0, 1] {
        let (_, frames) = init(&mut sim, shard, "g");
        assert_eq!(
            frames[0],
            (
                "VIOLATION".to_string(),
                json!("session already in use for this game")
            ),
            "shard {shard}"
        );
        assert_eq!(frames[1], ("close".to_string(), json!(1001)));
    }
    let (_, frames) = init(&mut sim, 1, "other-game");
    assert_eq!(
        opcodes(&frames),
        ["INIT_OK"],
        "another game is another session"
    );
    sim.disconnect(first);
    let (_, frames) = init(&mut sim, 1, "g");
    assert_eq!(
        opcodes(&frames),
        ["INIT_OK"],
        "free again once the first is gone"
    );
}

// --- The relay (beyond) -------------------------------------------------------------------

#[test]
fn relay_g_goes_to_every_other_member_and_p_to_its_recipient_stamped_with_origin() {
    let mut sim = Sim::new(1, cfg());
    let (h, hi) = sim.cl_client(0, "g", "host");
    let (p, pi) = sim.cl_client(0, "g", "peer");
    let (q, _) = sim.cl_client(0, "g", "other");
    create(&mut sim, h, "l", json!({"enable_relay": true}));
    join(&mut sim, p, "l", "");
    join(&mut sim, q, "l", "");
    for c in [h, p, q] {
        sim.cl_frames(c);
    }
    sim.send_text(
        p,
        &json!({"opcode": "G_VAR", "payload": {"x": 1}, "id": "score", "method": "set", "junk": 1})
            .to_string(),
    );
    let want = json!({"opcode": "G_VAR", "payload": {"x": 1}, "origin": pi["instance_id"], "id": "score", "method": "set"});
    for c in [h, q] {
        assert_eq!(sim.frames(c), std::slice::from_ref(&want));
    }
    assert!(sim.frames(p).is_empty(), "not back to the sender");
    sim.send_text(
        h,
        &json!({"opcode": "P_MSG", "payload": "psst", "recipient": pi["instance_id"]}).to_string(),
    );
    assert_eq!(
        sim.frames(p),
        [json!({"opcode": "P_MSG", "payload": "psst", "origin": hi["instance_id"]})]
    );
    assert!(sim.frames(q).is_empty());
    sim.send_text(
        h,
        &json!({"opcode": "P_LIST", "payload": [], "recipient": "nobody"}).to_string(),
    );
    assert_eq!(
        sim.cl_frames(h),
        [("WARNING".to_string(), json!("peer not found"))]
    );
}

#[test]
fn relay_opcodes_outside_a_relay_lobby_are_unknown() {
    let mut sim = Sim::new(1, cfg());
    let (h, _) = sim.cl_client(0, "g", "host");
    sim.cl_send(h, "G_MSG", json!("x"));
    assert_eq!(
        sim.cl_frames(h),
        [(
            "WARNING".to_string(),
            json!("unknown or unimplemented opcode")
        )]
    );
    create(&mut sim, h, "plain", json!({}));
    sim.cl_send(h, "G_MSG", json!("x"));
    assert_eq!(
        sim.cl_frames(h),
        [(
            "WARNING".to_string(),
            json!("unknown or unimplemented opcode")
        )]
    );
}

// --- Limits -------------------------------------------------------------------------------

#[test]
fn limits_over_the_rate_is_warned_and_ten_times_over_closes() {
    let mut c = cfg();
    c.limits.msgs_per_s = 2;
    c.limits.msgs_burst = 2;
    let mut sim = Sim::new(1, c);
    let k = sim.cl5(0, "g");
    for _ in 0..2 {
        sim.cl_send(k, "KEEPALIVE", Value::Null);
    }
    assert_eq!(
        opcodes(&sim.cl_frames(k)),
        ["KEEPALIVE_ACK", "KEEPALIVE_ACK"]
    );
    sim.cl_send(k, "KEEPALIVE", Value::Null);
    assert_eq!(
        sim.cl_frames(k),
        [("WARNING".to_string(), json!("rate limited"))]
    );
    for _ in 0..20 {
        sim.cl_send(k, "KEEPALIVE", Value::Null);
    }
    assert_eq!(
        sim.cl_frames(k).last(),
        Some(&("close".to_string(), json!(1008)))
    );
}

// --- Across shards -------------------------------------------------------------------------

#[test]
fn shards_a_lobbys_members_arrive_from_both_shards_and_meet_on_its_home() {
    let mut sim = Sim::new(2, cfg());
    for home_shard in [0u16, 1] {
        let ugi = format!("g{home_shard}");
        let name = lobby_on(&ugi, home_shard, "l");
        let (h, hi) = sim.cl_client(1 - home_shard as usize, &ugi, "host");
        let (p, pi) = sim.cl_client(0, &ugi, "peer");
        let (q, _) = sim.cl_client(1, &ugi, "other");
        let (idle0, _) = sim.cl_client(0, &ugi, "idle0");
        let (idle1, _) = sim.cl_client(1, &ugi, "idle1");
        let frames = create(&mut sim, h, &name, json!({"enable_relay": true}));
        assert_eq!(opcodes(&frames), ["TRANSITION", "CREATE_ACK", "NEW_HOST"]);
        assert_eq!(
            sim.shard_of(h),
            home_shard as usize,
            "the host moved to the lobby's home"
        );
        for idle in [idle0, idle1] {
            assert_eq!(
                sim.cl_frames(idle),
                [("NEW_LOBBY".to_string(), json!(name))],
                "every shard's idle clients"
            );
        }
        assert_eq!(last(&join(&mut sim, p, &name, ""), "NEW_HOST"), peer(&hi));
        assert_eq!(last(&join(&mut sim, q, &name, ""), "JOIN_ACK"), json!("ok"));
        assert_eq!(
            (sim.shard_of(p), sim.shard_of(q)),
            (home_shard as usize, home_shard as usize)
        );
        for idle in [idle0, idle1] {
            sim.cl_send(idle, "FIND_LOBBY", json!(name));
            assert_eq!(
                last(&sim.cl_frames(idle), "FIND_ACK")["current_players"],
                2,
                "listed on every shard"
            );
        }
        for c in [h, p, q] {
            sim.cl_frames(c);
        }
        sim.cl_send(p, "G_MSG", json!("hi"));
        for c in [h, q] {
            assert_eq!(
                sim.frames(c),
                [json!({"opcode": "G_MSG", "payload": "hi", "origin": pi["instance_id"]})]
            );
        }
        sim.disconnect(h);
        assert_eq!(
            opcodes(&sim.cl_frames(p)),
            ["PEER_LEFT", "TRANSITION", "NEW_HOST"]
        );
        manage(&mut sim, p, "close_lobby", Value::Null);
        for idle in [idle0, idle1] {
            assert_eq!(
                sim.cl_frames(idle),
                [("LOBBY_CLOSED".to_string(), json!(name))]
            );
        }
        for s in 0..2 {
            assert!(
                sim.cloudlink(s).directory.is_empty(),
                "shard {s} forgot the listing"
            );
        }
    }
}

#[test]
fn shards_a_join_that_finds_nothing_on_the_home_shard_is_not_found() {
    let mut sim = Sim::new(2, cfg());
    let name = lobby_on("g", 1, "missing");
    let (c, _) = sim.cl_client(0, "g", "ann");
    assert_eq!(
        last(&join(&mut sim, c, &name, ""), "JOIN_ACK"),
        json!("not found")
    );
    sim.cl_send(c, "KEEPALIVE", Value::Null);
    assert_eq!(
        opcodes(&sim.cl_frames(c)),
        ["KEEPALIVE_ACK"],
        "still served after the move"
    );
    let (h, _) = sim.cl_client(1, "g", "host");
    create(&mut sim, h, &name, json!({}));
    assert_eq!(
        sim.cl_frames(c),
        [("NEW_LOBBY".to_string(), json!(name))],
        "idle on its new shard"
    );
}

#[test]
fn sessions_and_lobbies_are_gone_once_everyone_disconnects() {
    let mut sim = Sim::new(2, cfg());
    let mut clients = Vec::new();
    for i in 0..6 {
        let (c, _) = sim.cl_client(i % 2, "g", &format!("u{i}"));
        clients.push(c);
    }
    create(&mut sim, clients[0], &lobby_on("g", 0, "a"), json!({}));
    create(&mut sim, clients[1], &lobby_on("g", 1, "b"), json!({}));
    join(&mut sim, clients[2], &lobby_on("g", 0, "a"), "");
    join(&mut sim, clients[3], &lobby_on("g", 1, "b"), "");
    for c in clients {
        sim.disconnect(c);
    }
    for s in 0..2 {
        let cl = sim.cloudlink(s);
        assert!(
            cl.lobbies.is_empty() && cl.directory.is_empty() && cl.idle.is_empty(),
            "shard {s}"
        );
        assert_eq!(sim.cores[s].session_count(), 0);
    }
}
