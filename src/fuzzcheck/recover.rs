//! `codec::recover::top_level_str`, the best-effort read of a broken frame's RPC id, in
//! both codecs.
//!
//! Properties:
//! - Arbitrary bytes and key never panic it, and it returns for the input repeated to
//!   64 KiB (libFuzzer's timeout catches a blow-up).
//! - When the bytes decode whole (JSON by `serde_json`, MessagePack by huddle's decoder)
//!   to a map holding the key once at the top level, a `Some(s)` is that key's value.
//! - On a document built here (a map of input values, the key maybe among them, written
//!   by `Writer`): the answer is the key's value exactly when that value is a string and
//!   (JSON) neither key nor value needs escaping, else `None`; cut short anywhere, or
//!   followed by any bytes, the answer is `None` or that value, never another string.
//! - What the rooms dialect reads: after huddle's decoder failed on the bytes (JSON
//!   decoding unescapes in place), the answer is `None` or the answer on the bytes as
//!   they came.
//!
//! Input: byte 0 picks the codec (bit 0) and the key (bits 1–2: `rid`, `id`, `""`, or a
//! short text); the next bytes build the document; the whole input is also the arbitrary
//! bytes, and what follows the document the appended bytes.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value as Json};

use super::encode;
use super::input::Input;
use crate::codec::msgpack;
use crate::codec::recover::top_level_str;
use crate::codec::{from_json, to_json, Codec, Decoder};

/// Bytes the bounded-work property repeats the input to.
const LONG_INPUT_BYTES: usize = 64 * 1024;

/// The `recover` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_recover(data: &[u8]) {
    let mut input = Input::new(data);
    let choice = input.byte();
    let codec = if choice & 1 == 0 {
        Codec::Json
    } else {
        Codec::Msgpack
    };
    let key = match (choice >> 1) % 4 {
        0 => "rid".to_string(),
        1 => "id".to_string(),
        2 => String::new(),
        _ => input.short_text(),
    };

    for codec in [Codec::Json, Codec::Msgpack] {
        arbitrary(codec, data, &key);
    }
    if !data.is_empty() {
        let long: Vec<u8> = data
            .iter()
            .copied()
            .cycle()
            .take(LONG_INPUT_BYTES)
            .collect();
        for codec in [Codec::Json, Codec::Msgpack] {
            let _ = top_level_str(codec, &long, &key);
        }
    }
    built(codec, &key, &mut input);
}

/// A JSON object's members in order, duplicates kept.
struct Members(Vec<(String, Json)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Json>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// The top-level value of `key` when `bytes` decode whole to a map holding it once;
/// `Some(None)` when they decode to a map without it; `None` when they are not such a map
/// (or hold the key more than once: decoders keep the last, a broken frame's reader can
/// only see the first).
fn decoded_member(codec: Codec, bytes: &[u8], key: &str) -> Option<Option<Json>> {
    match codec {
        Codec::Json => {
            let Members(members) = serde_json::from_slice(bytes).ok()?;
            let mut found = members.into_iter().filter(|(k, _)| k == key);
            let first = found.next();
            found.next().is_none().then(|| first.map(|(_, v)| v))
        }
        Codec::Msgpack => {
            let value = msgpack::decode(bytes).ok()?;
            let Json::Object(map) = to_json(&value) else {
                return None;
            };
            // Every key distinct: as many entries as the map's header declares.
            let declared = match *bytes.first()? {
                m @ 0x80..=0x8f => usize::from(m & 0x0f),
                0xde => usize::from(u16::from_be_bytes([*bytes.get(1)?, *bytes.get(2)?])),
                0xdf => u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?) as usize,
                _ => return None,
            };
            (declared == map.len()).then(|| map.get(key).cloned())
        }
    }
}

/// Arbitrary bytes: no panic, agreement with a whole decode, and the rooms dialect's read
/// after a failed decode.
fn arbitrary(codec: Codec, bytes: &[u8], key: &str) {
    let answer = top_level_str(codec, bytes, key);
    if let (Some(s), Some(real)) = (&answer, decoded_member(codec, bytes, key)) {
        assert_eq!(
            real,
            Some(Json::String(s.clone())),
            "{} read {s:?} for {key:?} from a document that decodes",
            codec.name()
        );
    }
    after_failed_decode(codec, bytes, key, answer.as_deref());
}

/// What rooms does with a frame its decoder refused: read the id from the same buffer.
fn after_failed_decode(codec: Codec, bytes: &[u8], key: &str, answer: Option<&str>) {
    let mut buffer = bytes.to_vec();
    if Decoder::default().decode(codec, &mut buffer).is_ok() {
        return;
    }
    let after = top_level_str(codec, &buffer, key);
    assert!(
        after.is_none() || after.as_deref() == answer,
        "{} read {after:?} for {key:?} from a buffer the decoder refused, {answer:?} before",
        codec.name()
    );
}

/// True when JSON writes `s` without an escape.
fn json_plain(s: &str) -> bool {
    !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// A document built from the input, with and without its end, and with bytes after it.
fn built(codec: Codec, key: &str, input: &mut Input<'_>) {
    let mut map = Map::new();
    for _ in 0..input.byte() % 5 {
        let name = match input.byte() % 3 {
            0 => key.to_string(),
            1 => format!("{key}x"),
            _ => input.short_text(),
        };
        let value = input.value(3);
        map.insert(name, value);
    }
    let doc = Json::Object(map);
    let real = doc.get(key);
    let value = from_json(&doc);
    let bytes = encode(codec, &value);

    let answer = top_level_str(codec, &bytes, key);
    let want = match real {
        Some(Json::String(s)) if codec == Codec::Msgpack || (json_plain(s) && json_plain(key)) => {
            Some(s.clone())
        }
        _ => None,
    };
    assert_eq!(answer, want, "{} document {doc} for {key:?}", codec.name());
    arbitrary(codec, &bytes, key);

    let cut = |n: usize| {
        let got = top_level_str(codec, &bytes[..n], key);
        assert!(
            got.is_none() || got == answer,
            "{} document {doc} cut to {n} bytes: {got:?}, {answer:?} whole",
            codec.name()
        );
    };
    if bytes.len() <= 512 {
        (0..bytes.len()).for_each(cut);
    } else {
        cut(usize::from(input.u16()) % bytes.len());
    }
    if answer.is_some() {
        let mut longer = bytes.clone();
        longer.extend_from_slice(input.bytes(usize::MAX));
        assert_eq!(
            top_level_str(codec, &longer, key),
            answer,
            "{} document {doc} followed by more bytes",
            codec.name()
        );
        after_failed_decode(codec, &longer, key, answer.as_deref());
    }
}
