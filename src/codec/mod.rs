//! Wire codecs shared by the dialects: JSON (simd-json) and MessagePack (rmp) decoded into one
//! borrowed value tree, a writer that emits either codec, and WebSocket frame building.
//! Owns bytes ↔ values; not what the values mean (that is each dialect's decoder).

pub mod frame;
pub mod msgpack;
pub mod recover;
pub mod writer;

use std::borrow::Cow;

pub use simd_json::BorrowedValue as Value;
use simd_json::StaticNode;

pub use frame::Frame;
pub use writer::Writer;

/// Deepest nesting either decoder accepts. Game payloads are shallow; the bound keeps
/// recursion (and so the stack) small whatever a client sends.
pub const DEPTH_MAX: usize = 64;

/// The codecs a session can negotiate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// JSON: text frames out, any frame in.
    Json,
    /// MessagePack: binary frames out, any frame in.
    Msgpack,
}

impl Codec {
    /// The codec's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Msgpack => "msgpack",
        }
    }

    /// Index for per-codec caches (`[T; 2]`).
    pub fn index(self) -> usize {
        match self {
            Codec::Json => 0,
            Codec::Msgpack => 1,
        }
    }

    /// The WebSocket opcode frames of this codec go out with.
    pub fn opcode(self) -> frame::OpCode {
        match self {
            Codec::Json => frame::OpCode::Text,
            Codec::Msgpack => frame::OpCode::Binary,
        }
    }
}

/// Why bytes could not be decoded into a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not valid JSON (simd-json's message).
    Json(String),
    /// Not valid MessagePack, or a form we do not accept.
    Msgpack(&'static str),
    /// Nested deeper than `DEPTH_MAX`.
    TooDeep,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Json(e) => write!(f, "invalid JSON: {e}"),
            DecodeError::Msgpack(e) => write!(f, "invalid MessagePack: {e}"),
            DecodeError::TooDeep => write!(f, "nested deeper than {DEPTH_MAX} levels"),
        }
    }
}

/// A view of one value on simd-json's tape (a parsed JSON frame before any tree is built).
pub type TapeValue<'t, 'a> = simd_json::tape::Value<'t, 'a>;

/// A frame decoded by [`Decoder::decode_fast`]: what the fast reader picked out of the
/// JSON tape, or the value tree.
pub enum Decoded<'a, T> {
    /// The fast reader took the frame.
    Fast(T),
    /// The whole value.
    Tree(Value<'a>),
}

/// Reusable decode state of one shard (simd-json's buffers and tape), so decoding
/// allocates no scratch space per frame.
pub struct Decoder {
    json: simd_json::Buffers,
    /// Kept between frames for its allocation (empty, with no borrow, in between).
    tape: Option<simd_json::Tape<'static>>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            json: simd_json::Buffers::with_max_depth(4096, DEPTH_MAX),
            tape: None,
        }
    }
}

impl Decoder {
    /// Decodes a frame with `codec`. JSON is unescaped in place, so the buffer is mutated
    /// and the value borrows from it.
    pub fn decode<'a>(
        &mut self,
        codec: Codec,
        bytes: &'a mut [u8],
    ) -> Result<Value<'a>, DecodeError> {
        match self.decode_fast(codec, bytes, |_| None::<std::convert::Infallible>)? {
            Decoded::Tree(value) => Ok(value),
            Decoded::Fast(never) => match never {},
        }
    }

    /// Decodes a frame, first offering a JSON frame's tape to `fast`: a hot message read
    /// straight off the tape skips building the value tree (its allocations are most of
    /// the cost of decoding a small frame). When `fast` declines, and for MessagePack, the
    /// tree is built as by [`Decoder::decode`].
    pub fn decode_fast<'a, T>(
        &mut self,
        codec: Codec,
        bytes: &'a mut [u8],
        fast: impl FnOnce(TapeValue<'_, 'a>) -> Option<T>,
    ) -> Result<Decoded<'a, T>, DecodeError> {
        match codec {
            Codec::Json => {
                let mut tape = self
                    .tape
                    .take()
                    .unwrap_or_else(simd_json::Tape::null)
                    .reset();
                let decoded = simd_json::fill_tape(bytes, &mut self.json, &mut tape)
                    .map(|()| match fast(tape.as_value()) {
                        Some(picked) => Decoded::Fast(picked),
                        None => Decoded::Tree(
                            simd_json::value::lazy::Value::from_tape(tape.as_value()).into_value(),
                        ),
                    })
                    .map_err(|e| match e.error() {
                        simd_json::ErrorType::DepthLimitExceeded => DecodeError::TooDeep,
                        _ => DecodeError::Json(e.to_string()),
                    });
                self.tape = Some(tape.reset());
                decoded
            }
            Codec::Msgpack => msgpack::decode(bytes).map(Decoded::Tree),
        }
    }
}

/// Reads a field of an object value.
pub fn field<'v, 'a>(value: &'v Value<'a>, key: &str) -> Option<&'v Value<'a>> {
    match value {
        Value::Object(map) => map.get(key),
        _ => None,
    }
}

/// A string value.
pub fn as_str<'v>(value: &'v Value<'_>) -> Option<&'v str> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// An integer value; a float with an integral value counts (the reference SDK's msgpack
/// sends some integers as float64).
pub fn as_i64(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Static(StaticNode::I64(i)) => Some(*i),
        Value::Static(StaticNode::U64(u)) => i64::try_from(*u).ok(),
        Value::Static(StaticNode::F64(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Some(*f as i64)
        }
        _ => None,
    }
}

/// A boolean value.
pub fn as_bool(value: &Value<'_>) -> Option<bool> {
    match value {
        Value::Static(StaticNode::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// True for `null` (which counts as absent for optional fields).
pub fn is_null(value: &Value<'_>) -> bool {
    matches!(value, Value::Static(StaticNode::Null))
}

/// A short name of a value's type for error texts.
pub fn type_name(value: &Value<'_>) -> &'static str {
    match value {
        Value::Static(StaticNode::Null) => "null",
        Value::Static(StaticNode::Bool(_)) => "boolean",
        Value::Static(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Converts a borrowed value into an owned `serde_json::Value` (for state and metadata that
/// outlive the frame).
pub fn to_json(value: &Value<'_>) -> serde_json::Value {
    match value {
        Value::Static(StaticNode::Null) => serde_json::Value::Null,
        Value::Static(StaticNode::Bool(b)) => serde_json::Value::Bool(*b),
        Value::Static(StaticNode::I64(i)) => serde_json::Value::from(*i),
        Value::Static(StaticNode::U64(u)) => serde_json::Value::from(*u),
        Value::Static(StaticNode::F64(f)) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        ),
    }
}

/// Converts an owned JSON value into a borrowed one (to encode it with a `Writer`).
pub fn from_json(value: &serde_json::Value) -> Value<'_> {
    match value {
        serde_json::Value::Null => Value::Static(StaticNode::Null),
        serde_json::Value::Bool(b) => Value::Static(StaticNode::Bool(*b)),
        serde_json::Value::Number(n) => Value::Static(if let Some(u) = n.as_u64() {
            StaticNode::U64(u)
        } else if let Some(i) = n.as_i64() {
            StaticNode::I64(i)
        } else {
            StaticNode::F64(n.as_f64().unwrap_or(0.0))
        }),
        serde_json::Value::String(s) => Value::String(Cow::Borrowed(s)),
        serde_json::Value::Array(items) => {
            Value::Array(Box::new(items.iter().map(from_json).collect()))
        }
        serde_json::Value::Object(map) => {
            let mut out = simd_json::borrowed::Object::with_capacity_and_hasher(
                map.len(),
                Default::default(),
            );
            for (k, v) in map {
                out.insert(Cow::Borrowed(k.as_str()), from_json(v));
            }
            Value::Object(Box::new(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_decodes_into_borrowed_values() {
        let mut d = Decoder::default();
        let mut bytes =
            br#"{"v":1,"t":"room.message","p":{"type":"chat","data":[1,2.5,"x"]}}"#.to_vec();
        let v = d.decode(Codec::Json, &mut bytes).unwrap();
        assert_eq!(as_i64(field(&v, "v").unwrap()), Some(1));
        assert_eq!(as_str(field(&v, "t").unwrap()), Some("room.message"));
        let p = field(&v, "p").unwrap();
        assert_eq!(as_str(field(p, "type").unwrap()), Some("chat"));
    }

    #[test]
    fn json_deeper_than_the_bound_is_refused() {
        let mut d = Decoder::default();
        let mut bytes =
            format!("{}{}", "[".repeat(DEPTH_MAX + 5), "]".repeat(DEPTH_MAX + 5)).into_bytes();
        assert!(d.decode(Codec::Json, &mut bytes).is_err());
        let mut ok = format!("{}{}", "[".repeat(10), "]".repeat(10)).into_bytes();
        assert!(d.decode(Codec::Json, &mut ok).is_ok());
    }

    #[test]
    fn integers_beyond_u64_read_as_the_nearest_float() {
        // JavaScript prints 1e20 as 100000000000000000000 (past u64::MAX); JSON.parse and
        // serde_json read such integers as the nearest f64, and so must we (simd-json's
        // big-int-as-float; found by the json_decode differential check against serde_json).
        let mut d = Decoder::default();
        let mut bytes =
            b"[100000000000000000000,-9223372036854775809,18446744073709551615]".to_vec();
        let v = d.decode(Codec::Json, &mut bytes).unwrap();
        assert_eq!(
            to_json(&v),
            serde_json::json!([1e20, -9_223_372_036_854_775_809.0, u64::MAX])
        );
    }

    #[test]
    fn integral_floats_count_as_integers() {
        assert_eq!(as_i64(&Value::Static(StaticNode::F64(4.0))), Some(4));
        assert_eq!(as_i64(&Value::Static(StaticNode::F64(4.5))), None);
        assert_eq!(as_i64(&Value::Static(StaticNode::U64(7))), Some(7));
    }

    #[test]
    fn owned_and_borrowed_json_round_trip() {
        let owned: serde_json::Value =
            serde_json::json!({"a": [1, -2, 2.5, "s", null, true], "b": {"c": {}}});
        assert_eq!(to_json(&from_json(&owned)), owned);
    }
}
