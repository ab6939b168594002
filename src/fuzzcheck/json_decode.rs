//! JSON decoding (simd-json, in place) against an independent decoder, `serde_json`:
//! arbitrary bytes never panic, whatever decodes survives a round trip through `Writer` in
//! both codecs unchanged, and on valid UTF-8 both decoders agree on accept or reject and,
//! where both accept, on the tree.
//!
//! Where the two may legitimately differ, each case is handled here on purpose:
//! - Nesting: huddle refuses more than `DEPTH_MAX` levels ([`DecodeError::TooDeep`]);
//!   serde_json stops at 128 and calls that an error of its own. Our refusal must be for an
//!   input that nests deeper than we allow (serde_json's tree shows it); serde_json's
//!   recursion-limit error says nothing about the input's validity, so it is not compared.
//! - Numbers: both read integers in i64/u64 range as integers and everything else as the
//!   correctly rounded f64 (simd-json's `big-int-as-float` feature: an integer beyond
//!   u64 is a float, as serde_json and `JSON.parse` read it; the `fuzzcheck` feature turns
//!   on serde_json's `float_roundtrip`, without which serde_json may be one ulp off, as on
//!   2.2250738585072011e-308). A literal beyond f64 (1e400) is refused by both. Integers compare exactly,
//!   floats bit for bit. The one representation that differs is `-0`: simd-json reads the
//!   integer 0, serde_json the float -0.0, equal in value (the sign of a zero integer is
//!   lost, a deliberate simplification: JavaScript's `JSON.stringify(-0)` is `"0"`).
//! - Repeated keys: serde_json (and `JSON.parse`) keep the last occurrence. simd-json keeps
//!   every occurrence in an object of up to 32 keys (a lookup finds the first) and the last
//!   beyond that. The tree here is compared as last-wins, and the keys our tree repeats are
//!   counted against serde_json's distinct ones; the dialects that read objects refuse a
//!   repeated key where it matters (see `pairkit` and `rooms::decode::tape_message`).
//! - Invalid UTF-8 is not compared: a WebSocket text message is UTF-8 (the reactor checks
//!   it), and serde_json refuses it outright while simd-json checks it as it goes.

use serde_json::Value as Json;
use simd_json::StaticNode;

use crate::codec::{Codec, DecodeError, Decoder, Value, DEPTH_MAX};

/// The `json_decode` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_json_decode(data: &[u8]) {
    let mut bytes = data.to_vec();
    let mut decoder = Decoder::default();
    let ours = decoder.decode(Codec::Json, &mut bytes);
    if std::str::from_utf8(data).is_ok() {
        against_serde_json(data, &ours);
    }
    if let Ok(value) = ours {
        super::assert_round_trip(&mut Decoder::default(), &value);
    }
}

/// The differential property: huddle's verdict and tree against serde_json's.
fn against_serde_json(data: &[u8], ours: &Result<Value<'_>, DecodeError>) {
    let input = String::from_utf8_lossy(data);
    let theirs = serde_json::from_slice::<Json>(data);
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => {
            if let Err(at) = same_tree(ours, &theirs, &mut String::new()) {
                panic!("huddle and serde_json read different trees at {at}\ninput: {input:?}");
            }
        }
        (Err(DecodeError::TooDeep), Ok(theirs)) => assert!(
            nesting(&theirs) > DEPTH_MAX,
            "huddle refused as too deep what nests {} levels\ninput: {input:?}",
            nesting(&theirs)
        ),
        (Err(e), Ok(theirs)) => {
            panic!("huddle refused ({e}) what serde_json reads as {theirs}\ninput: {input:?}")
        }
        (Ok(ours), Err(e)) if !is_recursion_limit(&e) => panic!(
            "huddle read {} from what serde_json refuses ({e})\ninput: {input:?}",
            crate::codec::to_json(ours)
        ),
        (Ok(_), Err(_)) | (Err(_), Err(_)) => {}
    }
}

/// serde_json's own nesting bound (not a verdict on the input).
fn is_recursion_limit(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("recursion limit exceeded")
}

/// Containers nested in a value: 0 for a scalar, 1 for `[]`.
fn nesting(value: &Json) -> usize {
    match value {
        Json::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Json::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Compares huddle's tree with serde_json's as the module's documentation says; on a
/// difference, returns where (a JSON-pointer-like path, built in `at`).
fn same_tree(ours: &Value<'_>, theirs: &Json, at: &mut String) -> Result<(), String> {
    let same = match (ours, theirs) {
        (Value::Static(StaticNode::Null), Json::Null) => true,
        (Value::Static(StaticNode::Bool(a)), Json::Bool(b)) => a == b,
        (Value::Static(n), Json::Number(b)) => same_number(*n, b),
        (Value::String(a), Json::String(b)) => a == b,
        (Value::Array(a), Json::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!(
                    "{at} (arrays of {} and {} items)",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let len = at.len();
                at.push_str(&format!("/{i}"));
                same_tree(x, y, at)?;
                at.truncate(len);
            }
            true
        }
        (Value::Object(a), Json::Object(b)) => {
            // Last-wins, as serde_json reads it: each distinct key of ours once, with the
            // value of its last occurrence.
            let entries: Vec<_> = a.iter().collect();
            let last_of = |k: &str| entries.iter().rev().find(|(key, _)| *key == k);
            let distinct = entries
                .iter()
                .enumerate()
                .filter(|(i, (k, _))| !entries[i + 1..].iter().any(|(later, _)| later == k))
                .count();
            if distinct != b.len() {
                return Err(format!("{at} (objects of {distinct} and {} keys)", b.len()));
            }
            for (k, y) in b {
                let Some((_, x)) = last_of(k) else {
                    return Err(format!("{at} (key {k:?} missing from ours)"));
                };
                let len = at.len();
                at.push_str(&format!("/{k}"));
                same_tree(x, y, at)?;
                at.truncate(len);
            }
            true
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "{at} (ours {}, serde_json {theirs})",
            crate::codec::to_json(ours)
        ))
    }
}

/// Numbers compare by value: integers exactly, floats bit for bit; an integer and a float
/// only as `0` against `-0.0` (the module's documentation says why).
fn same_number(ours: StaticNode, theirs: &serde_json::Number) -> bool {
    let theirs_int = theirs
        .as_i64()
        .map(i128::from)
        .or_else(|| theirs.as_u64().map(i128::from));
    match (ours, theirs_int) {
        (StaticNode::I64(a), Some(b)) => i128::from(a) == b,
        (StaticNode::U64(a), Some(b)) => i128::from(a) == b,
        (StaticNode::F64(a), None) => theirs.as_f64().is_some_and(|b| a.to_bits() == b.to_bits()),
        (StaticNode::I64(0), None) => theirs.as_f64().is_some_and(|b| b == 0.0),
        _ => false,
    }
}
