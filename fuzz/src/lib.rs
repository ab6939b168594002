//! Helpers shared by the fuzz targets: the codec round trip every decoder target asserts,
//! and (`input`) reading an input as a script of operations for the cloudlink targets.
//! Owns the properties; each target in `fuzz_targets/` owns how it reads its input.

pub mod input;

use huddle::codec::{frame, to_json, Codec, Decoder, Value, Writer};
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
