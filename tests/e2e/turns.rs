//! Reactor turns under concurrent load: while a turn writes its dirty connections it
//! polls and handles what arrived meanwhile (README, "Turns that coalesce"). Whatever the
//! interleaving, every member must get every frame of every sender, whole and in each
//! sender's order, and the writes must carry more than one frame each on average.

// This file uses a few of the shared helpers only.

use std::sync::{Arc, Barrier};
use std::thread;

use serde_json::json;

use crate::support::*;

const ROOMS: usize = 3;
const MEMBERS: usize = 8;
const MESSAGES: u64 = 40;

/// A counter summed over shards, from `/metrics`.
fn total(addr: std::net::SocketAddr, name: &str) -> u64 {
    metric(addr, &format!("{name}{{shard=\"all\"}}")) as u64
}

fn every_frame_of_every_sender_arrives_in_order(codec: Codec) {
    // One shard: every room and member on one core, so turns interleave the most.
    let server = TestServer::start(|c| c.shards = 1);
    let mut clients = Vec::new();
    for r in 0..ROOMS {
        for _ in 0..MEMBERS {
            let mut c = Client::new(server.addr, codec);
            c.join("echo_room", &format!("turns-{r}"));
            clients.push(c);
        }
    }
    // Let the join announcements settle, then start counting writes.
    for c in &mut clients {
        c.drain(std::time::Duration::from_millis(100));
    }
    let frames_before = total(server.addr, "huddle_frames_out_total");
    let writes_before = total(server.addr, "huddle_writes_total");
    let start = Arc::new(Barrier::new(clients.len()));
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let start = start.clone();
            thread::spawn(move || {
                let room = format!("turns-{}", i / MEMBERS);
                start.wait();
                for n in 0..MESSAGES {
                    c.send_env(
                        "room.message",
                        None,
                        Some(&room),
                        json!({"type": "seq", "data": {"n": n, "pad": "x".repeat(40)}}),
                    );
                }
                // Per sender: the next n expected.
                let mut next = std::collections::HashMap::<String, u64>::new();
                let mut got = 0;
                while got < MESSAGES as usize * MEMBERS {
                    let m = c.recv();
                    if m.t() != "room.message" {
                        continue;
                    }
                    assert_eq!(m.room(), Some(room.as_str()), "only its own room's frames");
                    let from = m.p()["from"].as_str().expect("from").to_string();
                    let n = m.p()["data"]["n"].as_u64().expect("n");
                    let want = next.entry(from.clone()).or_insert(0);
                    assert_eq!(n, *want, "frames of {from} out of order at client {i}");
                    *want += 1;
                    got += 1;
                }
                assert_eq!(next.len(), MEMBERS, "every member of the room was heard");
                assert!(next.values().all(|&n| n == MESSAGES));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    // The /metrics reply is one more frame-less write; room messages are the rest.
    let frames = total(server.addr, "huddle_frames_out_total") - frames_before;
    let writes = total(server.addr, "huddle_writes_total") - writes_before - 1;
    let expected = (ROOMS * MEMBERS * MEMBERS) as u64 * MESSAGES;
    assert!(
        frames >= expected,
        "{frames} frames out, {expected} expected"
    );
    assert!(
        writes < frames,
        "{writes} writes for {frames} frames: bursts must share writes"
    );
}

#[test]
fn every_frame_of_every_sender_arrives_in_order_under_interleaved_turns() {
    for codec in CODECS {
        every_frame_of_every_sender_arrives_in_order(codec);
    }
}

/// A join that moves the session to the room's home shard, followed at once by frames
/// for that room, each in its own TCP write (new readiness while the turn that requested
/// the move is still polling): every frame is read after the join, on the room's home.
fn frames_after_a_moving_join_are_read_after_it(codec: Codec) {
    let server = TestServer::start(|c| c.shards = 2);
    for attempt in 0..16 {
        let mut c = Client::new(server.addr, codec);
        let room = format!("move-{}-{attempt}", codec.name());
        c.send_env(
            "room.join_or_create",
            Some("join"),
            None,
            json!({"room_type": "echo_room", "room": room}),
        );
        for i in 0..10 {
            c.send_env(
                "room.message",
                Some(&format!("m{i}")),
                Some(&room),
                json!({"type": "t", "data": i}),
            );
        }
        let join = c.response("join");
        assert!(join.is_ok(), "attempt {attempt}: join refused: {join}");
        for i in 0..10 {
            let reply = c.response(&format!("m{i}"));
            assert!(
                reply.is_ok(),
                "attempt {attempt}: message {i} after the join refused: {reply}"
            );
        }
    }
}

#[test]
fn frames_after_a_moving_join_are_read_after_it_in_both_codecs() {
    for codec in CODECS {
        frames_after_a_moving_join_are_read_after_it(codec);
    }
}
