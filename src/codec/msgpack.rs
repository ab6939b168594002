//! Lenient MessagePack input, as the reference SDK (msgpackr) writes it, into the same
//! borrowed value tree JSON decodes to. Markers are classified by `rmp::Marker`; strings
//! borrow from the frame. Output lives in `writer.rs`.
//!
//! Accepted beyond the strict form: maps and arrays in any width (fix/16/32) at any size,
//! `fixext1` type 0 (JavaScript `undefined`) as "absent" (a map entry is dropped, an array
//! item becomes null), `bin` as a standard base64 string. Refused: other extensions,
//! non-string map keys (`bin` included), invalid UTF-8, trailing bytes, the marker 0xc1,
//! nesting deeper than `DEPTH_MAX`.

use std::borrow::Cow;

use base64::Engine;
use rmp::Marker;
use simd_json::StaticNode;

use super::{DecodeError, Value, DEPTH_MAX};

/// Decodes one complete MessagePack value; the whole input must be consumed.
pub fn decode(bytes: &[u8]) -> Result<Value<'_>, DecodeError> {
    let mut reader = Reader { bytes, pos: 0 };
    let value = reader.value(0)?.unwrap_or(Value::Static(StaticNode::Null));
    if reader.pos != bytes.len() {
        return Err(DecodeError::Msgpack("trailing bytes after the value"));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

const EOF: DecodeError = DecodeError::Msgpack("unexpected end of input");

/// The refusal of 0xc1, the one marker MessagePack never uses (some decoders read it as
/// nil; the differential fuzz check tells the two apart by this text).
pub const RESERVED_MARKER: &str = "0xc1 is never used";

/// The refusal of a marker huddle does not take: an extension in any form but `fixext1`.
pub const UNSUPPORTED_MARKER: &str = "unsupported marker";

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(EOF)?;
        let slice = self.bytes.get(self.pos..end).ok_or(EOF)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn text(&mut self, len: usize) -> Result<&'a str, DecodeError> {
        let raw = self.take(len)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::Msgpack("string is not UTF-8"))
    }

    fn str(&mut self, len: usize) -> Result<Value<'a>, DecodeError> {
        Ok(Value::String(Cow::Borrowed(self.text(len)?)))
    }

    /// A map key: a `str` in any width. A `bin` key is refused like any other non-string
    /// key, not read as its base64 text as a `bin` value is (found by the msgpack_decode
    /// differential check against rmpv: the module documentation said non-string keys were
    /// refused, and `bin` keys were not).
    fn key(&mut self) -> Result<Cow<'a, str>, DecodeError> {
        let len = match Marker::from_u8(self.u8()?) {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 => usize::from(self.u8()?),
            Marker::Str16 => usize::from(self.u16()?),
            Marker::Str32 => self.u32()? as usize,
            _ => return Err(DecodeError::Msgpack("map keys must be strings")),
        };
        Ok(Cow::Borrowed(self.text(len)?))
    }

    fn bin(&mut self, len: usize) -> Result<Value<'a>, DecodeError> {
        let raw = self.take(len)?;
        Ok(Value::String(Cow::Owned(
            base64::engine::general_purpose::STANDARD.encode(raw),
        )))
    }

    /// A declared element count must be coverable by the remaining bytes (each element is
    /// at least one byte), so a huge declared length cannot make us allocate.
    fn count(&self, n: usize, min_bytes_each: usize) -> Result<usize, DecodeError> {
        let remaining = self.bytes.len() - self.pos;
        if n.saturating_mul(min_bytes_each) > remaining {
            return Err(EOF);
        }
        Ok(n)
    }

    fn seq(&mut self, len: usize, depth: usize) -> Result<Value<'a>, DecodeError> {
        Self::container_at(depth)?;
        let len = self.count(len, 1)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(
                self.value(depth + 1)?
                    .unwrap_or(Value::Static(StaticNode::Null)),
            );
        }
        Ok(Value::Array(Box::new(items)))
    }

    /// Containers nest `DEPTH_MAX` levels at most, as the JSON decoder allows.
    fn container_at(depth: usize) -> Result<(), DecodeError> {
        if depth >= DEPTH_MAX {
            return Err(DecodeError::TooDeep);
        }
        Ok(())
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value<'a>, DecodeError> {
        Self::container_at(depth)?;
        let len = self.count(len, 2)?;
        let mut map =
            simd_json::borrowed::Object::with_capacity_and_hasher(len, Default::default());
        for _ in 0..len {
            let key = self.key()?;
            if let Some(value) = self.value(depth + 1)? {
                map.insert(key, value);
            }
        }
        Ok(Value::Object(Box::new(map)))
    }

    /// One value; `None` for JavaScript `undefined` (fixext1 type 0).
    fn value(&mut self, depth: usize) -> Result<Option<Value<'a>>, DecodeError> {
        if depth > DEPTH_MAX {
            return Err(DecodeError::TooDeep);
        }
        let int = |n: i64| Ok(Some(Value::Static(StaticNode::I64(n))));
        let uint = |n: u64| Ok(Some(Value::Static(StaticNode::U64(n))));
        let marker = Marker::from_u8(self.u8()?);
        let value = match marker {
            Marker::FixPos(n) => return uint(u64::from(n)),
            Marker::FixNeg(n) => return int(i64::from(n)),
            Marker::Null => Value::Static(StaticNode::Null),
            Marker::True => Value::Static(StaticNode::Bool(true)),
            Marker::False => Value::Static(StaticNode::Bool(false)),
            Marker::U8 => return uint(u64::from(self.u8()?)),
            Marker::U16 => return uint(u64::from(self.u16()?)),
            Marker::U32 => return uint(u64::from(self.u32()?)),
            Marker::U64 => return uint(self.u64()?),
            Marker::I8 => return int(i64::from(self.u8()? as i8)),
            Marker::I16 => return int(i64::from(self.u16()? as i16)),
            Marker::I32 => return int(i64::from(self.u32()? as i32)),
            Marker::I64 => return int(self.u64()? as i64),
            Marker::F32 => Value::Static(StaticNode::F64(f64::from(f32::from_bits(self.u32()?)))),
            Marker::F64 => Value::Static(StaticNode::F64(f64::from_bits(self.u64()?))),
            Marker::FixStr(n) => self.str(usize::from(n))?,
            Marker::Str8 => {
                let n = self.u8()?;
                self.str(usize::from(n))?
            }
            Marker::Str16 => {
                let n = self.u16()?;
                self.str(usize::from(n))?
            }
            Marker::Str32 => {
                let n = self.u32()?;
                self.str(n as usize)?
            }
            Marker::Bin8 => {
                let n = self.u8()?;
                self.bin(usize::from(n))?
            }
            Marker::Bin16 => {
                let n = self.u16()?;
                self.bin(usize::from(n))?
            }
            Marker::Bin32 => {
                let n = self.u32()?;
                self.bin(n as usize)?
            }
            Marker::FixArray(n) => self.seq(usize::from(n), depth)?,
            Marker::Array16 => {
                let n = self.u16()?;
                self.seq(usize::from(n), depth)?
            }
            Marker::Array32 => {
                let n = self.u32()?;
                self.seq(n as usize, depth)?
            }
            Marker::FixMap(n) => self.map(usize::from(n), depth)?,
            Marker::Map16 => {
                let n = self.u16()?;
                self.map(usize::from(n), depth)?
            }
            Marker::Map32 => {
                let n = self.u32()?;
                self.map(n as usize, depth)?
            }
            Marker::FixExt1 => {
                let [ty, _data] = self.array::<2>()?;
                if ty == 0 {
                    return Ok(None);
                }
                return Err(DecodeError::Msgpack("unsupported extension type"));
            }
            Marker::Reserved => return Err(DecodeError::Msgpack(RESERVED_MARKER)),
            _ => return Err(DecodeError::Msgpack(UNSUPPORTED_MARKER)),
        };
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{as_i64, as_str, field};

    #[test]
    fn reads_the_reference_sdks_forms() {
        // map16 with 1 entry {"a": undefined-ext, ...} then {"b": 2.0 as f64}
        let mut bytes = vec![
            0xde, 0x00, 0x02, 0xa1, b'a', 0xd4, 0x00, 0x00, 0xa1, b'b', 0xcb,
        ];
        bytes.extend_from_slice(&2.0f64.to_be_bytes());
        let v = decode(&bytes).unwrap();
        assert!(field(&v, "a").is_none(), "undefined means absent");
        assert_eq!(as_i64(field(&v, "b").unwrap()), Some(2));
    }

    #[test]
    fn undefined_in_an_array_is_null() {
        let v = decode(&[0x92, 0xd4, 0x00, 0x00, 0x01]).unwrap();
        let Value::Array(items) = v else {
            panic!("array expected")
        };
        assert!(crate::codec::is_null(&items[0]));
        assert_eq!(as_i64(&items[1]), Some(1));
    }

    #[test]
    fn bin_becomes_base64() {
        let v = decode(&[0xc4, 0x03, 1, 2, 3]).unwrap();
        assert_eq!(as_str(&v), Some("AQID"));
    }

    #[test]
    fn huge_declared_lengths_fail_without_allocating() {
        assert!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(decode(&[0xdb, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn a_bin_map_key_is_refused() {
        assert_eq!(
            decode(&[0x81, 0xc4, 0x01, 0x00, 0xc0]),
            Err(DecodeError::Msgpack("map keys must be strings"))
        );
        assert!(
            decode(&[0x81, 0xd9, 0x01, b'k', 0xc0]).is_ok(),
            "str8 keys are fine"
        );
    }

    #[test]
    fn the_never_used_marker_is_refused_by_name() {
        assert_eq!(
            decode(&[0x92, 0x01, 0xc1]),
            Err(DecodeError::Msgpack(RESERVED_MARKER))
        );
        assert_eq!(
            decode(&[0xc7, 0x01, 0x00, 0x00]),
            Err(DecodeError::Msgpack(UNSUPPORTED_MARKER)),
            "undefined is taken as fixext1 only"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = vec![0x91; DEPTH_MAX + 10];
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep));
    }

    #[test]
    fn both_codecs_accept_and_refuse_the_same_nesting() {
        let mut d = crate::codec::Decoder::default();
        for levels in [DEPTH_MAX - 1, DEPTH_MAX, DEPTH_MAX + 1] {
            let mut packed = vec![0x91; levels - 1];
            packed.push(0x90);
            let mut json = format!("{}{}", "[".repeat(levels), "]".repeat(levels)).into_bytes();
            let mp = decode(&packed).is_ok();
            let js = d.decode(crate::codec::Codec::Json, &mut json).is_ok();
            assert_eq!(mp, js, "{levels} levels");
            assert_eq!(mp, levels <= DEPTH_MAX, "{levels} levels");
        }
    }

    #[test]
    fn trailing_bytes_and_bad_keys_are_refused() {
        assert!(decode(&[0x01, 0x02]).is_err());
        assert!(decode(&[0x81, 0x01, 0x02]).is_err());
        assert!(decode(&[0xa2, 0xff, 0xfe]).is_err());
    }

    #[test]
    fn integers_of_every_width() {
        for (bytes, want) in [
            (vec![0x7f], 127i64),
            (vec![0xe0], -32),
            (vec![0xcc, 0xff], 255),
            (vec![0xd0, 0x80], -128),
            (vec![0xcd, 0x01, 0x00], 256),
            (vec![0xd1, 0xff, 0x00], -256),
            (vec![0xce, 0, 1, 0, 0], 65536),
            (vec![0xd2, 0xff, 0xff, 0xff, 0xff], -1),
        ] {
            assert_eq!(as_i64(&decode(&bytes).unwrap()), Some(want), "{bytes:x?}");
        }
    }
}
