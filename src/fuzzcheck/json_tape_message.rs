//! The JSON hot path agrees with the full path: whenever `tape_message` reads a frame off
//! simd-json's tape, the value tree of the same bytes passes `envelope` and `command` as a
//! `room.message` with the same rid, room, type and data. The input is the frame.

use crate::codec::{to_json, Codec, Decoded, Decoder};
use crate::rooms::decode::{command, envelope, tape_message, Command};

/// The `json_tape_message` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_json_tape_message(frame: &[u8]) {
    let mut fast_bytes = frame.to_vec();
    let mut decoder = Decoder::default();
    let Ok(Decoded::Fast(fast)) = decoder.decode_fast(Codec::Json, &mut fast_bytes, tape_message)
    else {
        return;
    };
    let mut tree_bytes = frame.to_vec();
    let value = Decoder::default()
        .decode(Codec::Json, &mut tree_bytes)
        .expect("the tape parsed it, so the tree does");
    let env = envelope(&value).expect("read off the tape: a valid envelope");
    assert_eq!(env.t, "room.message");
    assert_eq!(env.rid, fast.rid);
    assert_eq!(env.room, Some(fast.room));
    match command(&env, &[]).expect("read off the tape: a valid command") {
        Command::Message {
            msg_type,
            data,
            bytes_b64: None,
        } => {
            assert_eq!(&*msg_type, fast.msg_type);
            assert_eq!(data.map(to_json), fast.data.as_ref().map(to_json));
        }
        other => panic!("read off the tape as a room.message, the full path saw {other:?}"),
    }
}
