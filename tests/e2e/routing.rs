//! The upgrade path picks the dialect: `/rooms` and `/` reach rooms, `/echo` the echo
//! dialect when it is enabled (off by default), anything else is HTTP 404. The echo
//! dialect sends every message back unchanged: text, binary, fragmented, and up to its
//! message bound (past it: close 1009).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error as WsError, Message};

use crate::support::*;

/// The HTTP status of a WebSocket upgrade to `path`.
fn upgrade_status(addr: SocketAddr, path: &str) -> u16 {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    match tungstenite::client::client(format!("ws://{addr}{path}").as_str(), stream) {
        Ok((_, response)) => response.status().as_u16(),
        Err(tungstenite::HandshakeError::Failure(WsError::Http(response))) => {
            response.status().as_u16()
        }
        Err(e) => panic!("{path}: no HTTP answer to the upgrade: {e}"),
    }
}

/// A server with the echo dialect on, at `message_bytes_max`.
fn echo_server(message_bytes_max: usize) -> TestServer {
    TestServer::start(|c| {
        c.echo.enabled = true;
        c.echo.message_bytes_max = message_bytes_max;
        c.limits.outbound_bytes_max = (message_bytes_max + 64).max(c.limits.outbound_bytes_max);
    })
}

/// The next data or close frame (pings are answered by tungstenite).
fn next(ws: &mut tungstenite::WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read() {
            Ok(Message::Ping(_)) => continue,
            Ok(m) => return m,
            Err(e) => panic!("no frame: {e}"),
        }
    }
}

#[test]
fn routing_each_path_reaches_its_dialect_and_an_unknown_path_is_404() {
    let s = TestServer::default_config();
    for path in ["/rooms", "/"] {
        let mut ws = ws_connect(s.addr, path);
        ws.send(Message::text(hello(Codec::Json).to_string()))
            .unwrap();
        match next(&mut ws) {
            Message::Text(t) => assert!(t.contains("handshake.ok"), "{path}: {t}"),
            other => panic!("{path}: {other:?}"),
        }
    }
    for path in ["/nope", "/rooms/x", "/roomsx", "/echo", "/echo/"] {
        assert_eq!(upgrade_status(s.addr, path), 404, "{path}");
    }
    // A 404 takes no session: the server still answers plain HTTP and counts nothing.
    assert_eq!(http_get(s.addr, "/healthz").0, 200);
    assert_eq!(metric(s.addr, "huddle_connections{shard=\"all\"}"), 0.0);
}

#[test]
fn routing_the_echo_dialect_is_off_by_default_and_on_in_a_config() {
    let off = TestServer::default_config();
    assert_eq!(upgrade_status(off.addr, "/echo"), 404);
    let on = echo_server(64 * 1024);
    assert_eq!(upgrade_status(on.addr, "/echo"), 101);
    // Rooms is still where it was.
    let mut c = Client::new(on.addr, Codec::Json);
    c.send(json!({"v": 1, "t": "room.list", "rid": "l", "p": {}}));
    assert!(c.response("l").is_ok());
}

#[test]
fn echo_sends_text_and_binary_back_unchanged_and_in_order() {
    let s = echo_server(64 * 1024);
    let mut ws = ws_connect(s.addr, "/echo");
    let sent = [
        Message::text("hello"),
        Message::binary(vec![0u8, 159, 146, 150, 255]),
        Message::text("ünïcødé ✓"),
        Message::binary(Vec::new()),
        Message::text(""),
        Message::text("{\"v\":1,\"codecs\":[\"json\"],\"project_id\":\"demo\"}"),
    ];
    for m in &sent {
        ws.send(m.clone()).unwrap();
    }
    for m in &sent {
        assert_eq!(
            &next(&mut ws),
            m,
            "echoed unchanged, as the same kind of message"
        );
    }
}

/// A client frame with a masking key, written by hand.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[test]
fn echo_reassembles_a_fragmented_message_into_one() {
    let s = echo_server(64 * 1024);
    let mut ws = ws_connect(s.addr, "/echo");
    let mut raw = client_frame(false, 0x1, b"frag");
    // A ping between fragments is answered and does not split the message.
    raw.extend(client_frame(true, 0x9, b"p"));
    raw.extend(client_frame(false, 0x0, b"men"));
    raw.extend(client_frame(true, 0x0, b"ted"));
    raw.extend(client_frame(false, 0x2, &[1, 2]));
    raw.extend(client_frame(true, 0x0, &[3]));
    ws.get_mut().write_all(&raw).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match ws.read().unwrap() {
            Message::Pong(p) => assert_eq!(p.as_ref(), b"p"),
            m => got.push(m),
        }
    }
    assert_eq!(
        got,
        [Message::text("fragmented"), Message::binary(vec![1, 2, 3])]
    );
}

#[test]
fn echo_takes_a_message_of_its_maximum_size_and_closes_1009_past_it() {
    const MAX: usize = 200 * 1024;
    let s = echo_server(MAX);
    let mut ws = ws_connect(s.addr, "/echo");
    let biggest: Vec<u8> = (0..MAX).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(biggest.clone())).unwrap();
    assert_eq!(
        next(&mut ws),
        Message::binary(biggest),
        "the largest message comes back whole"
    );
    let mut over = ws_connect(s.addr, "/echo");
    over.send(Message::binary(vec![7u8; MAX + 1])).unwrap();
    match next(&mut over) {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Size, "{f:?}"),
        other => panic!("expected close 1009, got {other:?}"),
    }
    // The first connection is unaffected.
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(next(&mut ws), Message::text("still here"));
}

#[test]
fn echo_is_not_a_rooms_session_and_closes_cleanly() {
    let s = echo_server(64 * 1024);
    let mut ws = ws_connect(s.addr, "/echo");
    ws.send(Message::text(hello(Codec::Json).to_string()))
        .unwrap();
    match next(&mut ws) {
        Message::Text(t) => assert_eq!(t, hello(Codec::Json).to_string(), "no handshake.ok"),
        other => panic!("{other:?}"),
    }
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(WsError::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let mut rest = Vec::new();
    let _ = ws.get_mut().read_to_end(&mut rest);
    assert_eq!(metric(s.addr, "huddle_rooms{shard=\"all\"}"), 0.0);
}
