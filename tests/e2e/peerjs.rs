//! The PeerJS broker over loopback on a 2-shard server: ids whose homes are different
//! shards signal each other, a taken id is refused, and the HTTP routes answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use huddle::cloudlink::peerjs::home;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::support::*;

/// An id whose home is `shard` of 2.
fn id_on(shard: u16, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}{i}"))
        .find(|id| home(id, 2).0 == shard)
        .expect("some id hashes to every shard")
}

fn connect(addr: SocketAddr, path: &str, id: &str, token: &str) -> WebSocket<TcpStream> {
    let target = format!("{path}?key=peerjs&id={id}&token={token}&version=1.5.4");
    ws_upgrade(addr, &target, None).expect("upgrade")
}

fn next(ws: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match read1(ws) {
            Read1::Data(m) => return m.v,
            Read1::Ping => continue,
            Read1::Close(code) => return json!({ "close": code }),
            Read1::Timeout => panic!("no frame within {WAIT:?}"),
            Read1::Gone(e) => panic!("gone: {e}"),
        }
    }
}

fn send(ws: &mut WebSocket<TcpStream>, v: Value) {
    ws.send(Message::text(v.to_string())).expect("send");
}

#[test]
fn peerjs_peers_on_two_shards_signal_each_other_and_a_taken_id_is_refused() {
    let s = TestServer::default_config();
    let (x, y) = (id_on(0, "x"), id_on(1, "y"));
    let mut a = connect(s.addr, "/peerjs", &x, "t1");
    let mut b = connect(s.addr, "/peerjs/peerjs", &y, "t2");
    assert_eq!(next(&mut a), json!({"type": "OPEN"}));
    assert_eq!(next(&mut b), json!({"type": "OPEN"}));
    send(
        &mut a,
        json!({"type": "OFFER", "src": "forged", "dst": y, "payload": {"sdp": "v=0"}}),
    );
    assert_eq!(
        next(&mut b),
        json!({"type": "OFFER", "src": x, "dst": y, "payload": {"sdp": "v=0"}})
    );
    send(&mut b, json!({"type": "HEARTBEAT"}));
    send(&mut b, json!({"type": "ANSWER", "dst": x, "payload": 1}));
    assert_eq!(
        next(&mut a),
        json!({"type": "ANSWER", "src": y, "dst": x, "payload": 1}),
        "the heartbeat got no reply"
    );
    let mut taken = connect(s.addr, "/peerjs", &y, "other");
    assert_eq!(
        next(&mut taken),
        json!({"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}})
    );
    assert!(next(&mut taken).get("close").is_some());
    let mut nokey = ws_upgrade(s.addr, "/peerjs?id=z&token=t", None).unwrap();
    let msg = "No id, token, or key supplied to websocket server";
    assert_eq!(
        next(&mut nokey),
        json!({"type": "ERROR", "payload": {"msg": msg}})
    );
}

#[test]
fn peerjs_http_id_and_peers() {
    let s = TestServer::default_config();
    for path in ["/peerjs/id", "/peerjs/peerjs/id?ts=1"] {
        let (status, body) = http_get(s.addr, path);
        assert_eq!(status, 200, "{path}");
        let uuid = uuid::Uuid::parse_str(&body).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 4);
    }
    assert_eq!(http_get(s.addr, "/peerjs/peers").0, 401);
    assert_eq!(http_get(s.addr, "/peerjs/nothing").0, 404);
    // Browsers on any origin may fetch an id.
    let mut tcp = TcpStream::connect(s.addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        tcp,
        "GET /peerjs/id HTTP/1.1\r\nHost: t\r\nOrigin: https://a.example\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    assert!(
        text.contains("\r\nAccess-Control-Allow-Origin: *\r\n"),
        "{text}"
    );
}
