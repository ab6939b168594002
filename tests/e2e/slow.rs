//! A slow consumer learns why it was cut off: a member that stops reading while others
//! fill its queue is closed with `slow_consumer` then 1008, and what it reads when it
//! comes back is bounded (the kernel's buffers plus `limits.outbound_bytes_max`), even
//! after a stall of seconds (`limits.close_drain_ms`).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::Message;

use crate::support::*;

/// A member that sends 16 KiB messages to `room` at 40/s (reading all it gets, so it
/// keeps up) until `stop`; returns how many it sent.
fn sender(
    addr: SocketAddr,
    room: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut c = Client::new(addr, Codec::Json);
        c.join("echo_room", room);
        let data = "x".repeat(16 * 1024 - 128);
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            c.send(json!({"v": 1, "t": "room.message", "room": room, "p": {"type": "blob", "data": data}}));
            sent += 1;
            let next = start + Duration::from_millis(25 * sent);
            while Instant::now() < next {
                let _ = c.read_for(Duration::from_millis(5));
            }
            c.log.clear();
        }
        sent
    })
}

/// The largest send buffer the kernel gives a socket (`tcp_wmem`'s maximum).
fn wmem_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 << 20)
}

#[test]
fn a_member_stalled_for_four_seconds_reads_slow_consumer_then_1008_and_a_bounded_rest() {
    let s = TestServer::start(|c| c.shards = 1);
    let limits = huddle::config::Config::default().limits;
    assert!(limits.close_drain_ms >= 10_000, "the default drain window");
    // The stalled member: a small receive buffer, so the server's queue fills soon.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(32 * 1024).unwrap();
    socket.connect(&s.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (ws, _) = tungstenite::client::client_with_config(
        format!("ws://{}/rooms", s.addr).as_str(),
        stream,
        None,
    )
    .unwrap();
    let mut stalled = Client::over(ws, Codec::Json, hello(Codec::Json));
    stalled.join("echo_room", "slow");
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..2)
        .map(|_| sender(s.addr, "slow", stop.clone()))
        .collect();
    // It stops reading until its queue overflows (the kernel's buffers fill first), and
    // for four seconds after that.
    let series = r#"huddle_errors_total{shard="all",dialect="rooms",code="slow_consumer"}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(s.addr, series) < 1.0 {
        assert!(Instant::now() < deadline, "no overflow within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = senders.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(sent >= 200, "the senders kept their pace: {sent}");
    // Now it reads: the rest of what was queued, the error, the close.
    let mut bytes = 0usize;
    let mut error = None;
    let close = loop {
        match stalled.ws.read() {
            Ok(Message::Text(t)) => {
                bytes += t.len();
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["t"] == "error" {
                    error = Some(v);
                }
            }
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(e) => panic!("the connection was dropped before its close frame ({e}); read {bytes} B, error {error:?}"),
        }
    };
    let error = error.expect("an error frame before the close");
    assert_eq!(error["p"]["code"], "slow_consumer", "{error}");
    assert_eq!(close, Some(1008));
    let bound = wmem_max() + 2 * 32 * 1024 + limits.outbound_bytes_max + 64 * 1024;
    assert!(
        bytes <= bound,
        "read {bytes} B after the stall: more than the kernel's buffers and the queue ({bound})"
    );
    assert!(
        sent as usize * 16 * 1024 > bound,
        "the senders sent more than that: the queue was cut"
    );
}
