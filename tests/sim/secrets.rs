//! Secrets stay secret: in busy sessions of the rooms and cloudlink dialects, on two
//! shards, every frame every client receives is watched, and no client ever sees another's
//! `session_id`, lobby password or token (pairkit's host ids and resume tokens have their
//! own test in `pairkit.rs`).

use huddle::codec::Codec;
use huddle::config::{CloudlinkAuth, Config};
use huddle::sim::{ClientId, Received, Sim};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn cfg() -> Config {
    Config {
        seed: 5,
        ..Config::default()
    }
}

/// Everything `c` received since the last look, as text (frames and close reasons).
fn seen(sim: &mut Sim, c: ClientId) -> Vec<String> {
    sim.drain(c)
        .into_iter()
        .filter_map(|r| match r {
            Received::Frame(v) => Some(v.to_string()),
            Received::Close(code, reason) => Some(format!("close {code} {reason}")),
            _ => None,
        })
        .collect()
}

#[test]
fn no_rooms_client_ever_sees_another_clients_session_id() {
    let mut sim = Sim::new(2, cfg());
    let mut clients: Vec<(ClientId, String)> = Vec::new();
    for i in 0..6 {
        let codec = if i % 2 == 0 {
            Codec::Json
        } else {
            Codec::Msgpack
        };
        let (c, ok) = sim.handshaken(i % 2, codec);
        clients.push((c, ok["session_id"].as_str().unwrap().to_string()));
    }
    let mut log: Vec<(ClientId, String)> = Vec::new();
    let mut watch = |sim: &mut Sim, clients: &[(ClientId, String)]| {
        for (c, _) in clients {
            for t in seen(sim, *c) {
                log.push((*c, t));
            }
        }
    };
    for (i, (c, _)) in clients.iter().enumerate() {
        for (room, kind) in [
            ("lobby", "echo_room"),
            ("board", "state_room"),
            ("tally", "counter_room"),
        ] {
            sim.send(*c, json!({"v":1,"t":"room.join_or_create","rid":format!("j{i}{room}"),"room":room,"p":{"room_type":kind}}));
        }
        sim.send(
            *c,
            json!({"v":1,"t":"room.message","room":"lobby","p":{"type":"chat","data":{"i":i}}}),
        );
        sim.send(*c, json!({"v":1,"t":"room.message","room":"board","p":{"type":"state.set","data":{"path":format!("/p{i}"),"value":i}}}));
        sim.send(*c, json!({"v":1,"t":"matchmaking.enqueue","rid":format!("m{i}"),"p":{"roomType":"echo_room","size":3}}));
    }
    watch(&mut sim, &clients);
    // A drop and a resume, with its room.reconnected and snapshots.
    let (c0, sid0) = clients[0].clone();
    sim.disconnect(c0);
    let back = sim.connect(1, Codec::Json);
    sim.send_text(
        back,
        &json!({"v":1,"codecs":["json"],"project_id":"demo","session_id":sid0}).to_string(),
    );
    sim.advance(200);
    let resumed = seen(&mut sim, back);
    assert!(resumed.iter().any(|t| t.contains("handshake.ok")));
    clients[0].0 = back;
    for (c, _) in &clients[1..] {
        sim.send(
            *c,
            json!({"v":1,"t":"room.message","room":"lobby","p":{"type":"chat","data":"after"}}),
        );
    }
    watch(&mut sim, &clients);
    log.extend(resumed.into_iter().map(|t| (back, t)));
    assert!(log.len() > 100, "a busy session: {}", log.len());
    // Who may see each session id: its own connections (the resumed one too).
    let own = |c: ClientId, i: usize| c == clients[i].0 || (i == 0 && (c == c0 || c == back));
    for (c, text) in &log {
        for (i, (_, sid)) in clients.iter().enumerate() {
            if !own(*c, i) {
                assert!(
                    !text.contains(sid.as_str()),
                    "client {c} saw client {i}'s session id: {text}"
                );
            }
        }
    }
}

#[test]
fn no_cloudlink_client_ever_sees_a_lobby_password_or_anyones_token() {
    let mut config = cfg();
    config.cloudlink.auth = CloudlinkAuth::Token;
    config.cloudlink.jwt_secret = "s3cret".into();
    config.cloudlink.conns_per_ip_per_min = 0;
    let mut sim = Sim::new(2, config);
    let token = |user: &str| {
        let claims = json!({"user_id": user, "username": user, "exp": 1_700_000_000u64 + 3600});
        encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap()
    };
    let mut clients: Vec<(ClientId, String)> = Vec::new();
    for i in 0..5 {
        let t = token(&format!("user{i}"));
        let c = sim.cl5(i % 2, "game");
        sim.cl_send(c, "INIT", json!({"token": t}));
        assert!(sim.recv_opcode(c, "INIT_OK").is_some(), "user{i} is in");
        clients.push((c, t));
    }
    let password = "hunter2-correct-horse";
    let (host, _) = clients[0].clone();
    sim.cl_send(host, "CREATE_LOBBY", json!({"name": "den", "max_players": 8, "password": password, "locked": false, "enable_relay": true}));
    for (c, _) in &clients[1..4] {
        sim.cl_send(
            *c,
            "JOIN_LOBBY",
            json!({"name": "den", "password": password}),
        );
    }
    let (wrong, _) = clients[4].clone();
    sim.cl_send(
        wrong,
        "JOIN_LOBBY",
        json!({"name": "den", "password": "nope"}),
    );
    sim.cl_send(wrong, "FIND_LOBBY", json!("den"));
    sim.cl_send(wrong, "LIST_LOBBIES", Value::Null);
    sim.cl_send(
        host,
        "MANAGE_LOBBY",
        json!({"method": "change_password", "args": "new-pass-swordfish"}),
    );
    sim.cl_send(clients[1].0, "G_MSG", json!("hello"));
    sim.cl_send(
        host,
        "MANAGE_LOBBY",
        json!({"method": "transfer_ownership", "args": Value::Null}),
    );
    let mut log = Vec::new();
    for (c, _) in &clients {
        for t in seen(&mut sim, *c) {
            log.push((*c, t));
        }
    }
    assert!(log.len() > 20, "a busy lobby: {}", log.len());
    for (c, text) in &log {
        assert!(
            !text.contains(password) && !text.contains("new-pass-swordfish"),
            "client {c} saw a password: {text}"
        );
        for (owner, t) in &clients {
            assert!(
                !text.contains(t.as_str()),
                "client {c} saw {owner}'s token: {text}"
            );
        }
    }
}
