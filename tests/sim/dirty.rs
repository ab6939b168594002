//! The core's dirty list, as the reactor's write path uses it: a session with frames to
//! write is listed once, stays listed (frames queued meanwhile ride along) until the
//! writer takes it, and is listed again by its next frame after that.

use huddle::codec::Codec;
use huddle::config::Config;
use huddle::core::{Message, SessionKey};
use huddle::dialects::{Route, Shard};
use huddle::sim::encode_as;
use serde_json::json;

/// One text message to a session.
fn input(core: &mut Shard, key: SessionKey, mut bytes: Vec<u8>, now: u64) {
    let message = Message {
        bytes: &mut bytes,
        binary: false,
    };
    core.handle_message(key, message, now);
}

/// A shard core with `n` handshaken JSON sessions in room `r`, every queue emptied.
fn room(n: usize) -> (Shard, Vec<SessionKey>) {
    let mut core = Shard::alone(Config::default());
    let mut keys = Vec::new();
    for i in 0..n {
        let key = core.handle_open(i, Route::Rooms, b"", 1);
        let hello = json!({"v":1,"codecs":["json"],"project_id":"p"});
        input(&mut core, key, hello.to_string().into_bytes(), 1);
        let join = json!({"v":1,"t":"room.join_or_create","rid":"j","room":"r"});
        input(&mut core, key, encode_as(Codec::Json, &join), 1);
        keys.push(key);
    }
    core.end_turn(1);
    take_all(&mut core);
    (core, keys)
}

/// Drains the dirty list and every listed queue; returns the keys and frames per key.
fn take_all(core: &mut Shard) -> Vec<(SessionKey, usize)> {
    let mut dirty = Vec::new();
    core.drain_dirty(&mut dirty);
    dirty
        .into_iter()
        .filter_map(|key| {
            let session = core.session_to_flush(key)?;
            let frames = session.out.len();
            let bytes = session.out.bytes();
            session.out.advance(bytes);
            Some((key, frames))
        })
        .collect()
}

fn message(core: &mut Shard, from: SessionKey, n: u64) {
    let bytes = encode_as(
        Codec::Json,
        &json!({"v":1,"t":"room.message","room":"r","p":{"type":"t","data":n}}),
    );
    input(core, from, bytes, 2);
    core.end_turn(2);
}

#[test]
fn a_session_stays_listed_until_the_writer_takes_it_then_is_listed_again() {
    let (mut core, keys) = room(3);
    message(&mut core, keys[0], 1);
    let mut listed = Vec::new();
    core.drain_dirty(&mut listed);
    assert_eq!(listed.len(), 3, "every member listed once: {listed:?}");

    // Frames queued after the drain but before the write: nobody is listed twice, and
    // each queue carries both frames.
    message(&mut core, keys[1], 2);
    let mut again = Vec::new();
    core.drain_dirty(&mut again);
    assert!(
        again.is_empty(),
        "still listed from the first drain: {again:?}"
    );
    for key in &listed {
        let session = core.session_to_flush(*key).expect("live");
        assert_eq!(session.out.len(), 2, "both frames ride in one write");
        let bytes = session.out.bytes();
        session.out.advance(bytes);
    }

    // Taken: the next frame lists each member again.
    message(&mut core, keys[2], 3);
    let written = take_all(&mut core);
    assert_eq!(written.len(), 3);
    assert!(
        written.iter().all(|(_, frames)| *frames == 1),
        "{written:?}"
    );
}
