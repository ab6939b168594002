//! The fuzz targets' properties as plain functions (the `fuzzcheck` feature): one
//! `check_<target>(&[u8])` per target in `fuzz/fuzz_targets/`, which panics on the first
//! property the input violates. Each target is a one-line call to its function, and
//! `tests/fuzz_replay.rs` replays every committed seed (`fuzz/seeds/<target>/`) and every
//! past crash input (`fuzz/regressions/<target>/`) through the same functions on stable, so
//! `cargo test` keeps what fuzzing found. [`TARGETS`] lists them by target name.
//!
//! Shared here: the codec round trip every decoder target asserts ([`assert_round_trip`]),
//! and ([`input`]) reading an input as a script of operations for the dialect targets.
//! Each module owns how its target reads its input and what it checks.

pub mod input;

mod auth;
mod cloudlink_frames;
mod http_handoff;
mod http_parse;
mod inbound;
mod json_decode;
mod json_tape_message;
mod msgpack_decode;
mod pairkit_messages;
mod peerjs_frames;
mod recover;
mod rooms_envelope;
mod sim_session;
mod state_ops;
mod upgrade_query;
mod ws_frame_parse;

pub use auth::check_auth;
pub use cloudlink_frames::check_cloudlink_frames;
pub use http_handoff::check_http_handoff;
pub use http_parse::check_http_parse;
pub use inbound::check_inbound;
pub use json_decode::check_json_decode;
pub use json_tape_message::check_json_tape_message;
pub use msgpack_decode::check_msgpack_decode;
pub use pairkit_messages::check_pairkit_messages;
pub use peerjs_frames::check_peerjs_frames;
pub use recover::check_recover;
pub use rooms_envelope::check_rooms_envelope;
pub use sim_session::check_sim_session;
pub use state_ops::{check_state_ops, state_after_ops};
pub use upgrade_query::check_upgrade_query;
pub use ws_frame_parse::check_ws_frame_parse;

/// A target's check: panics on the first property the input violates.
pub type Check = fn(&[u8]);

/// Every fuzz target by its name in `fuzz/Cargo.toml` (and its folders under `fuzz/seeds/`
/// and `fuzz/regressions/`), with its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("auth", check_auth),
    ("cloudlink_frames", check_cloudlink_frames),
    ("http_handoff", check_http_handoff),
    ("http_parse", check_http_parse),
    ("inbound", check_inbound),
    ("json_decode", check_json_decode),
    ("json_tape_message", check_json_tape_message),
    ("msgpack_decode", check_msgpack_decode),
    ("pairkit_messages", check_pairkit_messages),
    ("peerjs_frames", check_peerjs_frames),
    ("recover", check_recover),
    ("rooms_envelope", check_rooms_envelope),
    ("sim_session", check_sim_session),
    ("state_ops", check_state_ops),
    ("upgrade_query", check_upgrade_query),
    ("ws_frame_parse", check_ws_frame_parse),
];

use crate::codec::{frame, to_json, Codec, Decoder, Value, Writer};
use simd_json::StaticNode;

/// Encodes a value with [`Writer`] in `codec` and returns the frame's payload, checking the
/// frame on the way: it parses back whole, with the codec's opcode.
pub fn encode(codec: Codec, value: &Value<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut writer = Writer::new(codec, &mut buf);
    writer.value(value);
    let frame = writer.finish();
    let (opcode, payload, frame_len) = frame::parse(&frame).expect("a built frame parses");
    assert_eq!(frame_len, frame.len(), "a built frame is parsed whole");
    assert_eq!(
        opcode,
        codec.opcode() as u8,
        "the frame carries the codec's opcode"
    );
    payload.to_vec()
}

/// True when no float in the tree is NaN or infinite (JSON cannot carry those, and
/// `to_json` maps them to null, so comparisons through them say nothing).
pub fn all_finite(value: &Value<'_>) -> bool {
    match value {
        Value::Static(StaticNode::F64(f)) => f.is_finite(),
        Value::Static(_) | Value::String(_) => true,
        Value::Array(items) => items.iter().all(all_finite),
        Value::Object(map) => map.values().all(all_finite),
    }
}

/// The round-trip property: a decoded value, written by [`Writer`] in either codec and
/// decoded again, is the same tree (compared as JSON).
pub fn assert_round_trip(decoder: &mut Decoder, value: &Value<'_>) {
    for codec in [Codec::Json, Codec::Msgpack] {
        let mut bytes = encode(codec, value);
        if !all_finite(value) {
            continue;
        }
        let want = to_json(value);
        let again = match decoder.decode(codec, &mut bytes) {
            Ok(v) => v,
            Err(e) => panic!(
                "{} output does not decode: {e}\nvalue: {want}\nbytes: {:?}",
                codec.name(),
                String::from_utf8_lossy(&encode(codec, value))
            ),
        };
        assert_eq!(to_json(&again), want, "{} round trip", codec.name());
    }
}
