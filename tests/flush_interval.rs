//! `limits.flush_interval_us`: a connection's frames are written at most once per
//! interval, so frames sent within one interval leave in one write.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use huddle::config::Config;
use huddle::server::Server;
use tungstenite::Message;

fn metric(addr: &str, name: &str) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let line = format!("{name}{{shard=\"all\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// A one-shard server with these limits and a JSON client that has joined room `r`
/// (its join frames read).
fn joined(
    limits: impl FnOnce(&mut huddle::limits::Limits),
) -> (Server, String, tungstenite::WebSocket<TcpStream>) {
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        shards: 1,
        pin_shards: false,
        ..Config::default()
    };
    limits(&mut cfg.limits);
    let server = Server::start(cfg).unwrap();
    let addr = server.addr.to_string();
    let stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (mut ws, _) = tungstenite::client::client(format!("ws://{addr}/rooms"), stream).unwrap();
    ws.send(Message::text(
        r#"{"v":1,"codecs":["json"],"project_id":"p"}"#,
    ))
    .unwrap();
    ws.read().unwrap();
    ws.send(Message::text(
        r#"{"v":1,"t":"room.join_or_create","rid":"j","room":"r"}"#,
    ))
    .unwrap();
    for _ in 0..4 {
        ws.read().unwrap(); // reply, joined, members, snapshot
    }
    std::thread::sleep(Duration::from_millis(50));
    (server, addr, ws)
}

/// Writes the server made while one client relays `n` messages to itself, 10 ms apart.
fn writes_for_messages(flush_interval_us: u64, n: usize) -> (u64, usize) {
    let (server, addr, mut ws) = joined(|l| l.flush_interval_us = flush_interval_us);
    let before = metric(&addr, "huddle_writes_total");
    let start = Instant::now();
    for i in 0..n {
        ws.send(Message::text(format!(
            r#"{{"v":1,"t":"room.message","room":"r","p":{{"type":"t","data":{i}}}}}"#
        )))
        .unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut got = 0;
    while got < n {
        if let Message::Text(t) = ws.read().unwrap() {
            assert!(t.contains(&format!(r#""data":{got}"#)), "in order: {t}");
            got += 1;
        }
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    // The /metrics request itself is one more write.
    let writes = metric(&addr, "huddle_writes_total") - before - 1;
    server.stop();
    (writes, got)
}

#[test]
fn with_a_flush_interval_frames_within_one_interval_leave_in_one_write() {
    // 8 messages over ~80 ms with a 400 ms interval: the first goes at once, the rest
    // wait for the next interval.
    let (writes, got) = writes_for_messages(400_000, 8);
    assert_eq!(got, 8);
    assert!(writes <= 2, "{writes} writes for 8 frames");
}

#[test]
fn without_a_flush_interval_each_turn_writes() {
    let (writes, got) = writes_for_messages(0, 8);
    assert_eq!(got, 8);
    assert!(writes >= 4, "{writes} writes for 8 frames sent 10 ms apart");
}

/// One burst from a client: the frames of a turn leave in as few writes as the socket
/// takes, small ones gathered into one buffer, large ones written vectored, all in order.
fn writes_for_burst(sizes: &[usize]) -> (u64, Vec<String>) {
    let (server, addr, mut ws) = joined(|l| l.frame_bytes_max = 64 * 1024);
    let before = metric(&addr, "huddle_writes_total");
    // Queued without flushing, then written at once: one burst on the wire.
    let sent: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| format!("{i}:{}", "x".repeat(size)))
        .collect();
    for data in &sent {
        ws.write(Message::text(format!(
            r#"{{"v":1,"t":"room.message","room":"r","p":{{"type":"t","data":"{data}"}}}}"#
        )))
        .unwrap();
    }
    ws.flush().unwrap();
    let mut got = Vec::new();
    while got.len() < sent.len() {
        if let Message::Text(t) = ws.read().unwrap() {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            got.push(v["p"]["data"].as_str().unwrap().to_string());
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    let writes = metric(&addr, "huddle_writes_total") - before - 1;
    server.stop();
    assert_eq!(got, sent, "every frame, whole and in order");
    (writes, got)
}

#[test]
fn small_frames_of_one_turn_leave_in_one_gathered_write() {
    let (writes, got) = writes_for_burst(&[40; 20]);
    assert_eq!(got.len(), 20);
    assert!(
        writes <= 2,
        "{writes} writes for 20 small frames of one burst"
    );
}

#[test]
fn large_frames_of_one_turn_leave_in_vectored_writes_in_order() {
    // 24 KiB in all: past the gather bound, written vectored straight from the frames.
    let sizes = [100, 100, 20_000, 100, 4_000, 100];
    let (writes, got) = writes_for_burst(&sizes);
    assert_eq!(got.len(), sizes.len());
    assert!(writes <= 3, "{writes} writes for one burst of 6 frames");
}
