//! Steady-state relay allocates nothing per message in the core's fan-out path: with a
//! counting global allocator, one `room.message` through a shard core to a room of 10
//! (dispatch, room logic, encode once per codec, queue on every member, drain as the
//! reactor does) allocates exactly what decoding the envelope alone allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::IoSlice;

use huddle::codec::{Codec, Decoder};
use huddle::config::Config;
use huddle::core::outbound::IOVECS_MAX;
use huddle::core::{Message, SessionKey};
use huddle::dialects::{Route, Shard};
use huddle::rooms::decode::tape_message;
use huddle::sim::encode_as;
use serde_json::json;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

struct Room {
    core: Shard,
    members: Vec<SessionKey>,
    dirty: Vec<SessionKey>,
    now: u64,
    /// Frames written to members so far.
    frames_out: usize,
}

impl Room {
    fn new(size: usize, codecs: &[Codec]) -> Room {
        let mut cfg = Config::default();
        cfg.limits.msgs_per_s = 1_000_000;
        cfg.limits.msgs_burst = 1_000_000;
        let mut core = Shard::alone(cfg);
        let mut members = Vec::new();
        for i in 0..size {
            let codec = codecs[i % codecs.len()];
            let key = core.handle_open(i, Route::Rooms, b"", 1);
            let mut hello = json!({"v":1,"codecs":[codec.name()],"project_id":"p"})
                .to_string()
                .into_bytes();
            input(&mut core, key, &mut hello, 1);
            let mut join = encode_as(
                codec,
                &json!({"v":1,"t":"room.join_or_create","rid":"j","room":"r"}),
            );
            input(&mut core, key, &mut join, 1);
            members.push(key);
        }
        let mut room = Room {
            core,
            members,
            dirty: Vec::with_capacity(size * 2),
            now: 1,
            frames_out: 0,
        };
        room.drain();
        room
    }

    /// Writes every queued frame as the reactor does, without the socket.
    fn drain(&mut self) {
        self.core.drain_dirty(&mut self.dirty);
        for key in self.dirty.drain(..) {
            let Some(s) = self.core.session_to_flush(key) else {
                continue;
            };
            self.frames_out += s.out.len();
            while !s.out.is_empty() {
                let mut slices = [IoSlice::new(&[]); IOVECS_MAX];
                let n = s.out.slices(&mut slices);
                let len: usize = slices[..n].iter().map(|s| s.len()).sum();
                s.out.advance(len);
            }
        }
        self.core.end_turn(self.now);
    }

    fn relay(&mut self, message: &[u8], buf: &mut Vec<u8>) {
        self.now += 1;
        buf.clear();
        buf.extend_from_slice(message);
        input(&mut self.core, self.members[0], buf, self.now);
        self.drain();
    }
}

/// One message to a session, as the reactor hands it over.
fn input(core: &mut Shard, key: SessionKey, bytes: &mut [u8], now: u64) {
    core.handle_message(
        key,
        Message {
            bytes,
            binary: false,
        },
        now,
    );
}

/// Allocations of decoding `message` as the shard does, once the decoder is warm: a JSON
/// room.message is read off the tape (only its `data` becomes a tree); MessagePack builds
/// the tree. The copy of the message the decoder works on is not counted.
fn decode_allocations(codec: Codec, message: &[u8]) -> u64 {
    let mut decoder = Decoder::default();
    let mut copy = message.to_vec();
    let _ = decoder.decode_fast(codec, &mut copy, tape_message);
    allocations(|| {
        let mut copy = message.to_vec();
        let decoded = decoder.decode_fast(codec, &mut copy, tape_message).unwrap();
        std::hint::black_box(&decoded);
        drop(decoded);
        drop(copy);
    }) - 1 // the copy of the message itself
}

/// The sender is member 0, whose codec is `codecs[0]`.
fn check(codecs: &[Codec]) {
    let sender = codecs[0];
    let mut room = Room::new(10, codecs);
    let message = encode_as(
        sender,
        &json!({"v":1,"t":"room.message","room":"r","p":{"type":"move","data":{"x":12.5,"y":-3,"id":"abcdefgh"}}}),
    );
    let mut buf = Vec::with_capacity(1024);
    for _ in 0..200 {
        room.relay(&message, &mut buf); // warm up queues, pools and buffers
    }
    let decode_only = decode_allocations(sender, &message);
    let before = room.frames_out;
    let relayed = allocations(|| {
        for _ in 0..100 {
            room.relay(&message, &mut buf);
        }
    });
    assert_eq!(
        room.frames_out - before,
        100 * 10,
        "every message reached all 10 members"
    );
    assert_eq!(
        relayed,
        100 * decode_only,
        "{codecs:?}: the fan-out path allocated {} times per message beyond decoding",
        (relayed as f64 / 100.0) - decode_only as f64
    );
}

/// With `limits.flush_interval_us` a connection's frames wait for the interval, so a
/// room's messages pile up in its members' queues before one write: the queues keep
/// their slots, and a steady burst allocates nothing beyond decoding either.
#[test]
fn bursts_held_for_a_flush_interval_allocate_nothing_beyond_decoding() {
    const BURST: usize = 40;
    let mut room = Room::new(10, &[Codec::Json]);
    let message = encode_as(
        Codec::Json,
        &json!({"v":1,"t":"room.message","room":"r","p":{"type":"move","data":{"x":1}}}),
    );
    let burst = |room: &mut Room| {
        for _ in 0..BURST {
            room.now += 1;
            let mut copy = message.clone();
            input(&mut room.core, room.members[0], &mut copy, room.now);
            room.core.end_turn(room.now);
        }
        room.drain();
    };
    for _ in 0..3 {
        burst(&mut room); // warm up queues, pools and buffers
    }
    // `burst` copies each message before handing it to the core: that copy counts too.
    let decode_only = decode_allocations(Codec::Json, &message) + 1;
    let before = room.frames_out;
    let allocated = allocations(|| {
        for _ in 0..5 {
            burst(&mut room);
        }
    });
    assert_eq!(room.frames_out - before, 5 * BURST * 10);
    assert_eq!(
        allocated,
        5 * BURST as u64 * decode_only,
        "held bursts allocated {} times per message beyond decoding",
        allocated as f64 / (5 * BURST) as f64 - decode_only as f64
    );
}

#[test]
fn relaying_to_a_json_room_allocates_nothing_beyond_decoding() {
    check(&[Codec::Json]);
}

#[test]
fn relaying_to_a_mixed_codec_room_allocates_nothing_beyond_decoding() {
    check(&[Codec::Msgpack, Codec::Json]);
}

/// The JSON hot path reads a room.message off simd-json's reused tape: with string `data`
/// (the common game payload) decoding allocates nothing at all once warm.
#[test]
fn a_json_room_message_with_string_data_decodes_without_allocating() {
    let message = encode_as(
        Codec::Json,
        &json!({"v":1,"t":"room.message","room":"r","p":{"type":"move","data":"x:12.5 y:-3"}}),
    );
    let mut decoder = Decoder::default();
    let mut copy = message.clone();
    let _ = decoder.decode_fast(Codec::Json, &mut copy, tape_message);
    let allocated = allocations(|| {
        let mut copy = message.clone();
        let decoded = decoder
            .decode_fast(Codec::Json, &mut copy, tape_message)
            .unwrap();
        assert!(matches!(decoded, huddle::codec::Decoded::Fast(_)));
        drop(decoded);
        drop(copy);
    }) - 1; // the copy of the message itself
    assert_eq!(allocated, 0);
}
