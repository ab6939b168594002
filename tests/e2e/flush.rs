//! `limits.flush_interval_us`: a connection's frames are written at most once per
//! interval, so frames sent within one interval leave in one write.

use std::net::TcpStream;
use std::time::Duration;

use tungstenite::Message;

use crate::support::{metric, TestServer};

/// `huddle_writes_total` of every shard.
fn writes(s: &TestServer) -> u64 {
    metric(s.addr, "huddle_writes_total{shard=\"all\"}") as u64
}

/// A one-shard server with these limits and a JSON client that has joined room `r`
/// (its join frames read).
fn joined(
    limits: impl FnOnce(&mut huddle::limits::Limits),
) -> (TestServer, tungstenite::WebSocket<TcpStream>) {
    let server = TestServer::start(|c| {
        c.shards = 1;
        limits(&mut c.limits);
    });
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
    (server, ws)
}

/// Writes the server made while one client relays `n` messages to itself, 10 ms apart.
fn writes_for_messages(flush_interval_us: u64, n: usize) -> (u64, usize) {
    let (server, mut ws) = joined(|l| l.flush_interval_us = flush_interval_us);
    let before = writes(&server);
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
    // The /metrics request itself is one more write.
    (writes(&server) - before - 1, got)
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
    let (server, mut ws) = joined(|l| l.frame_bytes_max = 64 * 1024);
    let before = writes(&server);
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
    let writes = writes(&server) - before - 1;
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
