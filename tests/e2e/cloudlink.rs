//! The cloudlink dialect over loopback, on a 2-shard server: clients land on either
//! shard and move to their lobby's home as they create or join it. Create / join /
//! manage / kick / transfer / close / leave with two and three clients, the host leaving
//! mid-lobby, the relay, and the upgrade refusals (Origin, per-address bucket).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const QUIET: Duration = Duration::from_millis(150);

fn id(info: &Value) -> Value {
    info["instance_id"].clone()
}

fn peer(info: &Value) -> Value {
    json!({"instance_id": info["instance_id"], "user_id": info["user_id"], "username": info["username"]})
}

#[test]
fn cloudlink_create_join_manage_kick_transfer_close_with_three_clients() {
    let s = TestServer::default_config();
    let (mut h, hi) = Cl5::init(s.addr, "game", "host");
    let (mut p, pi) = Cl5::init(s.addr, "game", "peer");
    let (mut k, ki) = Cl5::init(s.addr, "game", "kicked");
    h.send("CREATE_LOBBY", json!({"name": "arena", "max_players": 4, "password": "pw", "locked": false, "enable_relay": false}));
    assert_eq!(h.expect("TRANSITION"), json!("host"));
    assert_eq!(h.expect("CREATE_ACK"), json!("ok"));
    assert_eq!(h.expect("NEW_HOST"), peer(&hi));
    for c in [&mut p, &mut k] {
        assert_eq!(c.expect("NEW_LOBBY"), json!("arena"));
    }
    p.send("JOIN_LOBBY", json!({"name": "arena", "password": "nope"}));
    assert_eq!(p.expect("JOIN_ACK"), json!("password"));
    for (c, info) in [(&mut p, &pi), (&mut k, &ki)] {
        c.send("JOIN_LOBBY", json!({"name": "arena", "password": "pw"}));
        assert_eq!(c.expect("TRANSITION"), json!("peer"));
        assert_eq!(c.expect("JOIN_ACK"), json!("ok"));
        assert_eq!(c.expect("NEW_HOST"), peer(&hi));
        assert_eq!(h.expect("NEW_PEER"), peer(info));
    }
    assert_eq!(p.expect("PEER_JOIN"), peer(&ki));
    h.send("MANAGE_LOBBY", json!({"method": "lock"}));
    assert_eq!(h.expect("MANAGE_ACK"), json!("ok"));
    h.send("MANAGE_LOBBY", json!({"method": "kick", "args": id(&ki)}));
    assert_eq!(h.expect("MANAGE_ACK"), json!("ok"));
    assert_eq!(
        k.expect("WARNING"),
        json!("You have been kicked from the lobby.")
    );
    assert_eq!(k.next(), ("close".to_string(), json!(1001)));
    for c in [&mut h, &mut p] {
        assert_eq!(c.expect("PEER_LEFT"), id(&ki));
    }
    h.send(
        "MANAGE_LOBBY",
        json!({"method": "transfer_ownership", "args": id(&pi)}),
    );
    assert_eq!(h.expect("TRANSITION"), json!("peer"));
    assert_eq!(h.expect("NEW_HOST"), peer(&pi));
    assert_eq!(h.expect("MANAGE_ACK"), json!("ok"));
    assert_eq!(p.expect("TRANSITION"), json!("host"));
    assert_eq!(p.expect("NEW_HOST"), peer(&pi));
    p.send("MANAGE_LOBBY", json!({"method": "close_lobby"}));
    assert_eq!(p.expect("MANAGE_ACK"), json!("ok"));
    for c in [&mut p, &mut h] {
        assert_eq!(c.expect("TRANSITION"), json!(""));
        assert_eq!(c.expect("LOBBY_CLOSED"), json!("arena"));
        assert!(c.drain(QUIET).is_empty(), "LOBBY_CLOSED once");
    }
    h.send("LIST_LOBBIES", Value::Null);
    assert_eq!(h.expect("LIST_ACK"), json!([]));
}

#[test]
fn cloudlink_the_host_leaving_mid_lobby_promotes_the_oldest_peer() {
    let s = TestServer::default_config();
    let (mut h, hi) = Cl5::init(s.addr, "promo", "host");
    let (mut p, pi) = Cl5::init(s.addr, "promo", "first");
    let (mut q, qi) = Cl5::init(s.addr, "promo", "second");
    h.send("CREATE_LOBBY", json!({"name": "l", "max_players": -1}));
    h.expect("NEW_HOST");
    for c in [&mut p, &mut q] {
        c.send("JOIN_LOBBY", json!({"name": "l"}));
        c.expect("JOIN_ACK");
    }
    p.drain(QUIET);
    q.drain(QUIET);
    h.ws.close(None).unwrap();
    assert_eq!(p.expect("PEER_LEFT"), id(&hi));
    assert_eq!(p.expect("TRANSITION"), json!("host"));
    assert_eq!(p.expect("NEW_HOST"), peer(&pi));
    assert_eq!(q.expect("PEER_LEFT"), id(&hi));
    assert_eq!(q.expect("NEW_HOST"), peer(&pi));
    q.ws.close(None).unwrap();
    assert_eq!(p.expect("PEER_LEFT"), id(&qi));
    let (mut watcher, _) = Cl5::init(s.addr, "promo", "watcher");
    p.ws.close(None).unwrap();
    assert_eq!(
        watcher.expect("LOBBY_CLOSED"),
        json!("l"),
        "the last member leaving deletes it"
    );
}

#[test]
fn cloudlink_the_relay_fans_out_g_and_delivers_p_with_origin() {
    let s = TestServer::default_config();
    let (mut h, hi) = Cl5::init(s.addr, "relay", "host");
    let (mut p, pi) = Cl5::init(s.addr, "relay", "p");
    let (mut q, _) = Cl5::init(s.addr, "relay", "q");
    h.send(
        "CREATE_LOBBY",
        json!({"name": "r", "max_players": -1, "enable_relay": true}),
    );
    h.expect("NEW_HOST");
    for c in [&mut p, &mut q] {
        c.send("JOIN_LOBBY", json!({"name": "r"}));
        c.expect("NEW_HOST");
    }
    for c in [&mut h, &mut p, &mut q] {
        c.drain(QUIET);
    }
    p.send_raw(json!({"opcode": "G_MSG", "payload": {"score": 3}, "id": "v1", "method": "set"}));
    let want = json!({"opcode": "G_MSG", "payload": {"score": 3}, "origin": id(&pi), "id": "v1", "method": "set"});
    assert_eq!(h.next_raw(), want);
    assert_eq!(q.next_raw(), want);
    assert!(p.drain(QUIET).is_empty(), "not echoed to the sender");
    h.send_raw(json!({"opcode": "P_VAR", "payload": 1, "recipient": id(&pi)}));
    assert_eq!(
        p.next_raw(),
        json!({"opcode": "P_VAR", "payload": 1, "origin": id(&hi)})
    );
    assert!(q.drain(QUIET).is_empty());
    h.send_raw(json!({"opcode": "P_MSG", "payload": 1, "recipient": "ghost"}));
    assert_eq!(h.expect("WARNING"), json!("peer not found"));
    h.send("FIND_LOBBY", json!("r"));
    assert_eq!(h.expect("FIND_ACK")["relay_enabled"], true);
}

#[test]
fn cloudlink_upgrades_refused_by_origin_and_by_the_per_address_bucket() {
    let s = TestServer::start(|c| {
        c.cloudlink.allowed_origins = vec!["https://*.turbowarp.org".into()];
        c.cloudlink.conns_per_ip_per_min = 3;
    });
    let ok = ws_upgrade(s.addr, "/cl5?ugi=g", Some("https://studio.turbowarp.org"));
    assert!(ok.is_ok());
    let refused = ws_upgrade(s.addr, "/cl5?ugi=g", Some("https://evil.example"));
    assert_eq!(refused.err(), Some(403));
    assert_eq!(ws_upgrade(s.addr, "/cl5?ugi=", None).err(), Some(400));
    assert!(
        ws_upgrade(s.addr, "/?ugi=g", None).is_ok(),
        "/ with ugi is cloudlink"
    );
    assert!(ws_upgrade(s.addr, "/cl5?ugi=g", None).is_ok());
    assert_eq!(
        ws_upgrade(s.addr, "/cl5?ugi=g", None).err(),
        Some(429),
        "a fourth signaling upgrade within the minute"
    );
    let mut rooms = Client::new(s.addr, Codec::Json);
    assert!(
        rooms.rpc("room.list", None, json!({})).is_ok(),
        "rooms upgrades do not count"
    );
}

#[test]
fn cloudlink_slash_with_ugi_is_cloudlink_and_without_it_rooms() {
    let s = TestServer::default_config();
    let mut c = Cl5::over(ws_upgrade(s.addr, "/?ugi=g", None).unwrap());
    c.send("KEEPALIVE", Value::Null);
    assert_eq!(c.next(), ("KEEPALIVE_ACK".to_string(), Value::Null));
    let mut r = Client::new(s.addr, Codec::Json);
    assert!(r.rpc("room.list", None, json!({})).is_ok());
}
