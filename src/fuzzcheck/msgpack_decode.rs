//! MessagePack decoding against an independent decoder, `rmpv`: arbitrary bytes never
//! panic, whatever decodes survives a round trip through `Writer` in both codecs unchanged,
//! and huddle's verdict and tree agree with rmpv's.
//!
//! huddle's decoder (`codec::msgpack`) reads into the JSON value tree, so it refuses what
//! that tree cannot carry; rmpv reads every form. The comparison is therefore:
//! - What huddle accepts, rmpv reads whole (no byte left over) into the same tree, where a
//!   `bin` is its standard base64 string and `fixext1` type 0 (JavaScript `undefined`) is
//!   a null array item, a dropped map entry, or null at the top. Map entries are read
//!   last-wins (an `undefined` does not remove an earlier entry of its key); integers
//!   compare by value, floats bit for bit after the same f32 → f64 widening.
//! - What huddle refuses, rmpv refuses too, or leaves bytes over, or reads into a tree
//!   huddle does not carry: an extension other than a one-byte type 0, or that one when
//!   huddle refused a marker it does not take (rmpv reads `ext8` of one byte as it reads
//!   `fixext1`, the only form huddle takes), a map key
//!   that is not a string, a string that is not UTF-8 (rmpv keeps its bytes), containers
//!   nested deeper than `DEPTH_MAX`, or the marker 0xc1 that the format never uses (rmpv
//!   reads it as nil; huddle refuses it with its own error).
//! - rmpv's own depth bound (1024 reads, about 512 containers) lies beyond huddle's, so
//!   when rmpv gives up there huddle must already have refused.

use rmpv::Value as Mp;
use simd_json::StaticNode;

use crate::codec::{msgpack, DecodeError, Decoder, Value, DEPTH_MAX};

/// The `msgpack_decode` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_msgpack_decode(data: &[u8]) {
    let ours = msgpack::decode(data);
    against_rmpv(data, &ours);
    if let Ok(value) = ours {
        super::assert_round_trip(&mut Decoder::default(), &value);
    }
}

/// The differential property: huddle's verdict and tree against rmpv's.
fn against_rmpv(data: &[u8], ours: &Result<Value<'_>, DecodeError>) {
    let mut rest = data;
    let theirs = rmpv::decode::read_value(&mut rest);
    let left_over = rest.len();
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => {
            assert_eq!(
                left_over, 0,
                "huddle read {data:02x?} whole, rmpv left bytes over"
            );
            if let Err(at) = same_tree(Some(ours), &theirs, &mut String::new()) {
                panic!("huddle and rmpv read different trees at {at}\ninput: {data:02x?}");
            }
        }
        (Ok(ours), Err(e)) => panic!(
            "huddle read {} from what rmpv refuses ({e})\ninput: {data:02x?}",
            crate::codec::to_json(ours)
        ),
        (Err(e), Ok(theirs)) => {
            let carried = left_over == 0 && carriable(&theirs, 0, e);
            assert!(
                !carried,
                "huddle refused ({e}) what rmpv reads whole as {theirs}\ninput: {data:02x?}"
            );
        }
        (Err(_), Err(_)) => {}
    }
}

/// Whether huddle's tree can carry rmpv's `value` found `depth` containers deep (the
/// exceptions in the module's documentation); `refusal` is huddle's error on the input.
fn carriable(value: &Mp, depth: usize, refusal: &DecodeError) -> bool {
    let inner = |v: &Mp| carriable(v, depth + 1, refusal);
    match value {
        Mp::Nil => *refusal != DecodeError::Msgpack(msgpack::RESERVED_MARKER),
        Mp::String(s) => s.is_str(),
        Mp::Ext(..) if is_undefined(value) => {
            *refusal != DecodeError::Msgpack(msgpack::UNSUPPORTED_MARKER)
        }
        Mp::Ext(..) => false,
        Mp::Array(_) | Mp::Map(_) if depth >= DEPTH_MAX => false,
        Mp::Array(items) => items.iter().all(inner),
        Mp::Map(entries) => entries.iter().all(|(k, v)| k.is_str() && inner(v)),
        Mp::Boolean(_) | Mp::Integer(_) | Mp::F32(_) | Mp::F64(_) | Mp::Binary(_) => true,
    }
}

/// JavaScript `undefined` as the reference SDK writes it (`fixext1` type 0).
fn is_undefined(value: &Mp) -> bool {
    matches!(value, Mp::Ext(0, bytes) if bytes.len() == 1)
}

/// Compares huddle's tree (`None`: undefined) with rmpv's as the module's documentation
/// says; on a difference, returns where (a path built in `at`).
fn same_tree(ours: Option<&Value<'_>>, theirs: &Mp, at: &mut String) -> Result<(), String> {
    use base64::Engine;
    let Some(ours) = ours else {
        return if is_undefined(theirs) {
            Ok(())
        } else {
            Err(format!("{at} (ours undefined, rmpv {theirs})"))
        };
    };
    let nested = |at: &mut String, step: &str, x, y| {
        let len = at.len();
        at.push_str(step);
        same_tree(x, y, at)?;
        at.truncate(len);
        Ok::<(), String>(())
    };
    let same = match (ours, theirs) {
        (Value::Static(StaticNode::Null), Mp::Nil) => true,
        (Value::Static(StaticNode::Null), t) if is_undefined(t) => true,
        (Value::Static(StaticNode::Bool(a)), Mp::Boolean(b)) => a == b,
        (Value::Static(StaticNode::I64(a)), Mp::Integer(b)) => b.as_i64() == Some(*a),
        (Value::Static(StaticNode::U64(a)), Mp::Integer(b)) => b.as_u64() == Some(*a),
        (Value::Static(StaticNode::F64(a)), Mp::F32(b)) => a.to_bits() == f64::from(*b).to_bits(),
        (Value::Static(StaticNode::F64(a)), Mp::F64(b)) => a.to_bits() == b.to_bits(),
        (Value::String(a), Mp::String(b)) => b.as_str() == Some(&**a),
        (Value::String(a), Mp::Binary(b)) => {
            **a == base64::engine::general_purpose::STANDARD.encode(b)
        }
        (Value::Array(a), Mp::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!(
                    "{at} (arrays of {} and {} items)",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                nested(at, &format!("/{i}"), Some(x), y)?;
            }
            true
        }
        (Value::Object(a), Mp::Map(b)) => {
            // rmpv keeps every entry in order: the expected map is its last-wins reading,
            // undefined values dropped.
            let mut want: Vec<(&str, &Mp)> = Vec::new();
            for (k, v) in b {
                let Some(k) = k.as_str() else {
                    return Err(format!("{at} (rmpv has a key {k} that is not a string)"));
                };
                match want.iter_mut().find(|(key, _)| *key == k) {
                    Some(entry) if !is_undefined(v) => entry.1 = v,
                    None if !is_undefined(v) => want.push((k, v)),
                    _ => {}
                }
            }
            if a.len() != want.len() {
                return Err(format!(
                    "{at} (maps of {} and {} keys)",
                    a.len(),
                    want.len()
                ));
            }
            for (k, y) in want {
                nested(at, &format!("/{k}"), a.get(k), y)?;
            }
            true
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "{at} (ours {}, rmpv {theirs})",
            crate::codec::to_json(ours)
        ))
    }
}
