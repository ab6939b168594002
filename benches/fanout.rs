//! Room fan-out through one shard core: a member's `room.message` (64 B of data, JSON)
//! decoded, relayed by an `echo_room` to all its members (sender included) with the frame
//! encoded once, queued on every session, and the queues drained as the reactor does
//! (`slices` + `advance`, without the `writev`). Rooms of 10 and of 100.
//!
//! The core is driven directly rather than through `huddle::sim::Sim`: the simulator decodes
//! every delivered frame back into JSON for its clients, which would cost more than the
//! fan-out being measured. Setup (handshakes, joins) is outside the timed loop.
//!
//! Run: `cargo bench --bench fanout`.

use std::hint::black_box;
use std::io::IoSlice;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use huddle::codec::Codec;
use huddle::config::Config;
use huddle::core::outbound::IOVECS_MAX;
use huddle::core::{Message, SessionKey};
use huddle::dialects::{Route, Shard};
use huddle::sim::encode_as;
use serde_json::json;

/// Virtual time between two messages: under `limits.msgs_per_s` (60/s) so the sender is
/// never rate limited however many iterations criterion runs.
const STEP_MS: u64 = 20;

struct Room {
    core: Shard,
    members: Vec<SessionKey>,
    dirty: Vec<SessionKey>,
    now: u64,
}

impl Room {
    /// A shard with `n` JSON sessions handshaken into one `echo_room`, queues drained.
    fn new(n: usize) -> Room {
        let cfg = Config {
            seed: 1,
            ..Config::default()
        };
        let core = Shard::alone(cfg);
        let mut room = Room {
            core,
            members: Vec::new(),
            dirty: Vec::new(),
            now: 1,
        };
        let hello = json!({"v": 1, "codecs": ["json"], "project_id": "demo", "token": ""});
        let join = json!({"v": 1, "t": "room.join_or_create", "rid": "j", "room": "arena", "p": {"room_type": "echo_room"}});
        for transport in 0..n {
            let key = room
                .core
                .handle_open(transport, Route::Rooms, b"", room.now);
            room.members.push(key);
            room.input(key, &mut encode_as(Codec::Json, &hello));
            room.input(key, &mut encode_as(Codec::Json, &join));
            room.now += STEP_MS;
        }
        let arena = room.core.dialect.rooms.room("arena");
        assert_eq!(arena.map(|r| r.members.len()), Some(n));
        room
    }

    /// One message from `key`; returns the bytes delivered.
    fn input(&mut self, key: SessionKey, bytes: &mut [u8]) -> usize {
        let message = Message {
            bytes,
            binary: false,
        };
        self.core.handle_message(key, message, self.now);
        self.core.end_turn(self.now);
        self.drain()
    }

    /// Drains every dirty session's queue like the reactor's write path.
    fn drain(&mut self) -> usize {
        self.core.drain_dirty(&mut self.dirty);
        let mut delivered = 0;
        for key in self.dirty.drain(..) {
            let Some(session) = self.core.session_to_flush(key) else {
                continue;
            };
            while !session.out.is_empty() {
                let len: usize = {
                    let mut slices = [IoSlice::new(&[]); IOVECS_MAX];
                    let n = session.out.slices(&mut slices);
                    slices[..n].iter().map(|s| s.len()).sum()
                };
                session.out.advance(len);
                delivered += len;
            }
        }
        delivered
    }
}

fn bench_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let data = json!({"x": 412.5, "y": -88.25, "vx": 3, "vy": -1, "anim": "run", "hp": 97});
    let wire = encode_as(
        Codec::Json,
        &json!({"v": 1, "t": "room.message", "room": "arena", "p": {"type": "player.state", "data": data}}),
    );
    for n in [10, 100] {
        let mut room = Room::new(n);
        let sender = room.members[0];
        let mut buf = wire.clone();
        let per_message = room.input(sender, &mut buf);
        assert!(
            per_message > n * wire.len() / 2,
            "every member got the message"
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("room_message_json", n), |b| {
            b.iter(|| {
                room.now += STEP_MS;
                buf.copy_from_slice(&wire);
                let delivered = room.input(sender, &mut buf);
                debug_assert_eq!(delivered, per_message);
                black_box(delivered)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_fanout);
criterion_main!(benches);
