//! Encodes envelopes in either codec straight into a frame buffer, so a broadcast is one
//! encode and one allocation. JSON strings and numbers go through simd-json's generator;
//! MessagePack through rmp, which always picks the smallest integer form.

use base64::Engine;
use simd_json::prelude::Writable;
use simd_json::StaticNode;
use smallvec::SmallVec;

use super::frame::{self, Frame};
use super::{Codec, Value};

/// Writes one value tree (usually an envelope map) into a frame buffer.
///
/// Maps and arrays declare their length up front (MessagePack needs it); JSON separators
/// are inserted from a small stack of per-level item counts.
pub struct Writer<'b> {
    codec: Codec,
    buf: &'b mut Vec<u8>,
    /// Items written so far at each open JSON level.
    levels: SmallVec<[u32; 16]>,
    /// The next JSON value follows a key (no comma).
    after_key: bool,
}

impl<'b> Writer<'b> {
    /// Starts a frame in `buf` (cleared, header space reserved).
    pub fn new(codec: Codec, buf: &'b mut Vec<u8>) -> Self {
        frame::begin(buf);
        Writer {
            codec,
            buf,
            levels: SmallVec::new(),
            after_key: false,
        }
    }

    /// Finishes the frame with the codec's opcode (a new allocation).
    pub fn finish(self) -> Frame {
        debug_assert!(self.levels.is_empty(), "unclosed map or array");
        frame::finish(self.buf, self.codec.opcode())
    }

    /// Finishes the frame in its own buffer: `buf` then holds the complete frame (used
    /// with pooled frame buffers).
    pub fn finish_in_place(self) {
        debug_assert!(self.levels.is_empty(), "unclosed map or array");
        frame::finish_in_place(self.buf, self.codec.opcode());
    }

    fn sep(&mut self) {
        if self.codec != Codec::Json {
            return;
        }
        if self.after_key {
            self.after_key = false;
        } else if let Some(count) = self.levels.last_mut() {
            if *count > 0 {
                self.buf.push(b',');
            }
            *count += 1;
        }
    }

    /// Opens a map of `len` entries; close it with [`Writer::end_map`].
    pub fn map(&mut self, len: u32) -> &mut Self {
        self.sep();
        match self.codec {
            Codec::Json => {
                self.buf.push(b'{');
                self.levels.push(0);
            }
            Codec::Msgpack => {
                let _ = rmp::encode::write_map_len(self.buf, len);
            }
        }
        self
    }

    /// Closes the innermost map.
    pub fn end_map(&mut self) -> &mut Self {
        if self.codec == Codec::Json {
            self.levels.pop();
            self.buf.push(b'}');
        }
        self
    }

    /// Opens an array of `len` items; close it with [`Writer::end_array`].
    pub fn array(&mut self, len: u32) -> &mut Self {
        self.sep();
        match self.codec {
            Codec::Json => {
                self.buf.push(b'[');
                self.levels.push(0);
            }
            Codec::Msgpack => {
                let _ = rmp::encode::write_array_len(self.buf, len);
            }
        }
        self
    }

    /// Closes the innermost array.
    pub fn end_array(&mut self) -> &mut Self {
        if self.codec == Codec::Json {
            self.levels.pop();
            self.buf.push(b']');
        }
        self
    }

    /// A map key; the next call writes its value.
    pub fn key(&mut self, key: &str) -> &mut Self {
        self.str(key);
        if self.codec == Codec::Json {
            self.buf.push(b':');
            self.after_key = true;
        }
        self
    }

    /// A string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.sep();
        match self.codec {
            Codec::Json => json_str(self.buf, s),
            Codec::Msgpack => {
                let _ = rmp::encode::write_str(self.buf, s);
            }
        }
        self
    }

    /// An unsigned integer (smallest MessagePack form).
    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.sep();
        match self.codec {
            Codec::Json => {
                self.buf
                    .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            }
            Codec::Msgpack => {
                let _ = rmp::encode::write_uint(self.buf, n);
            }
        }
        self
    }

    /// A signed integer (smallest MessagePack form).
    pub fn i64(&mut self, n: i64) -> &mut Self {
        self.sep();
        match self.codec {
            Codec::Json => {
                self.buf
                    .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            }
            Codec::Msgpack => {
                let _ = rmp::encode::write_sint(self.buf, n);
            }
        }
        self
    }

    /// A boolean.
    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.sep();
        match self.codec {
            Codec::Json => self
                .buf
                .extend_from_slice(if b { b"true" } else { b"false" }),
            Codec::Msgpack => {
                let _ = rmp::encode::write_bool(self.buf, b);
            }
        }
        self
    }

    /// Bytes: MessagePack `bin`, or a standard base64 string in JSON.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        match self.codec {
            Codec::Json => {
                let text = base64::engine::general_purpose::STANDARD.encode(bytes);
                self.str(&text)
            }
            Codec::Msgpack => {
                self.sep();
                let _ = rmp::encode::write_bin(self.buf, bytes);
                self
            }
        }
    }

    /// JSON only: opens an object from the text of one the caller has already validated
    /// with a JSON parser (a message as it arrived), leaving it open so that the next
    /// [`Writer::key`]s add fields to it; close it with [`Writer::end_map`]. A forward
    /// that adds a field is then one copy instead of a decode and a re-encode.
    pub fn open_json_object(&mut self, text: &[u8]) -> &mut Self {
        debug_assert_eq!(self.codec, Codec::Json, "JSON text in a JSON frame only");
        let text = text.trim_ascii();
        debug_assert!(text.first() == Some(&b'{') && text.last() == Some(&b'}'));
        let body = &text[..text.len() - 1];
        self.sep();
        self.buf.extend_from_slice(body);
        let empty = body[1..].trim_ascii().is_empty();
        self.levels.push(u32::from(!empty));
        self
    }

    /// An owned JSON value (room state, metadata), in this writer's codec.
    pub fn json(&mut self, value: &serde_json::Value) -> &mut Self {
        self.sep();
        match self.codec {
            Codec::Json => {
                let _ = serde_json::to_writer(&mut *self.buf, value);
            }
            Codec::Msgpack => write_msgpack_json(self.buf, value),
        }
        self
    }

    /// Any decoded value, transcoded to this writer's codec.
    pub fn value(&mut self, value: &Value<'_>) -> &mut Self {
        match self.codec {
            // A string (the common game payload) takes the plain-string fast path.
            Codec::Json => match value {
                Value::String(s) => {
                    self.str(s);
                }
                _ => {
                    self.sep();
                    let _ = value.write(self.buf);
                }
            },
            Codec::Msgpack => write_msgpack(self.buf, value),
        }
        self
    }
}

/// True when no byte of `s` needs escaping in JSON (a control character, `"` or `\\`),
/// tested eight bytes at a time (the word tricks are exact as a yes/no for the word).
fn json_plain(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let plain_word = |x: u64| {
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
        let quote = has_zero_byte(x ^ (ONES * u64::from(b'"')));
        let backslash = has_zero_byte(x ^ (ONES * u64::from(b'\\')));
        !(control | quote | backslash)
    };
    let mut words = s.chunks_exact(8);
    for word in &mut words {
        if !plain_word(u64::from_le_bytes(word.try_into().expect("eight bytes"))) {
            return false;
        }
    }
    // The tail (most envelope strings are shorter than a word) is one word too, read
    // with loads that may overlap bytes already tested: assembling it through a stack
    // copy would stall on store forwarding (37% of `Writer::str` at `fanout`).
    if words.remainder().is_empty() {
        return true;
    }
    let word = match s.len() {
        8.. => u64::from_le_bytes(s[s.len() - 8..].try_into().expect("eight bytes")),
        4.. => {
            let first = u32::from_le_bytes(s[..4].try_into().expect("four bytes"));
            let last = u32::from_le_bytes(s[s.len() - 4..].try_into().expect("four bytes"));
            u64::from(first) | (u64::from(last) << 32)
        }
        n => {
            // One to three bytes: the first, middle and last, padded with a plain byte.
            let pad = (ONES * u64::from(b'a')) & !0xff_ffff;
            pad | u64::from(s[0]) | (u64::from(s[n / 2]) << 8) | (u64::from(s[n - 1]) << 16)
        }
    };
    plain_word(word)
}

/// A JSON string. Envelope keys and ids need no escaping: they are copied as they are;
/// anything else goes through simd-json's generator.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    if json_plain(s.as_bytes()) {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        let _ = Value::String(s.into()).write(buf);
    }
}

fn write_msgpack_json(buf: &mut Vec<u8>, value: &serde_json::Value) {
    match value {
        serde_json::Value::Null => {
            let _ = rmp::encode::write_nil(buf);
        }
        serde_json::Value::Bool(b) => {
            let _ = rmp::encode::write_bool(buf, *b);
        }
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                let _ = rmp::encode::write_uint(buf, u);
            } else if let Some(i) = n.as_i64() {
                let _ = rmp::encode::write_sint(buf, i);
            } else {
                let _ = rmp::encode::write_f64(buf, n.as_f64().unwrap_or(0.0));
            }
        }
        serde_json::Value::String(s) => {
            let _ = rmp::encode::write_str(buf, s);
        }
        serde_json::Value::Array(items) => {
            let _ = rmp::encode::write_array_len(buf, items.len() as u32);
            for item in items {
                write_msgpack_json(buf, item);
            }
        }
        serde_json::Value::Object(map) => {
            let _ = rmp::encode::write_map_len(buf, map.len() as u32);
            for (k, v) in map {
                let _ = rmp::encode::write_str(buf, k);
                write_msgpack_json(buf, v);
            }
        }
    }
}

fn write_msgpack(buf: &mut Vec<u8>, value: &Value<'_>) {
    match value {
        Value::Static(StaticNode::Null) => {
            let _ = rmp::encode::write_nil(buf);
        }
        Value::Static(StaticNode::Bool(b)) => {
            let _ = rmp::encode::write_bool(buf, *b);
        }
        Value::Static(StaticNode::I64(i)) => {
            let _ = rmp::encode::write_sint(buf, *i);
        }
        Value::Static(StaticNode::U64(u)) => {
            let _ = rmp::encode::write_uint(buf, *u);
        }
        Value::Static(StaticNode::F64(f)) => {
            let _ = rmp::encode::write_f64(buf, *f);
        }
        Value::String(s) => {
            let _ = rmp::encode::write_str(buf, s);
        }
        Value::Array(items) => {
            let _ = rmp::encode::write_array_len(buf, items.len() as u32);
            for item in items.iter() {
                write_msgpack(buf, item);
            }
        }
        Value::Object(map) => {
            let _ = rmp::encode::write_map_len(buf, map.len() as u32);
            for (k, v) in map.iter() {
                let _ = rmp::encode::write_str(buf, k);
                write_msgpack(buf, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{frame, Decoder};

    fn envelope(codec: Codec) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut data_src = br#"{"x":[1,-2,3.5,"q\"uote"],"y":null}"#.to_vec();
        let data = simd_json::to_borrowed_value(&mut data_src).unwrap();
        let mut w = Writer::new(codec, &mut buf);
        w.map(3).key("v").u64(1).key("t").str("room.message");
        w.key("p")
            .map(3)
            .key("type")
            .str("chat")
            .key("data")
            .value(&data);
        w.key("seq").u64(300).end_map().end_map();
        let f = w.finish();
        let (_, payload, _) = frame::parse(&f).unwrap();
        payload.to_vec()
    }

    #[test]
    fn json_output_is_valid_json() {
        let payload = envelope(Codec::Json);
        let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"v":1,"t":"room.message","p":{"type":"chat","data":{"x":[1,-2,3.5,"q\"uote"],"y":null},"seq":300}})
        );
    }

    #[test]
    fn an_object_opened_from_json_text_takes_more_fields() {
        for (text, want) in [
            (
                &b" {\"a\": [1, {\"b\":2}] } \n"[..],
                r#"{"a": [1, {"b":2}] ,"id":"p1"}"#,
            ),
            (b"{}", r#"{"id":"p1"}"#),
            (b"{ }", r#"{ "id":"p1"}"#),
        ] {
            let mut buf = Vec::new();
            let mut w = Writer::new(Codec::Json, &mut buf);
            w.open_json_object(text).key("id").str("p1").end_map();
            let f = w.finish();
            let body = std::str::from_utf8(frame::parse(&f).unwrap().1)
                .unwrap()
                .to_string();
            assert_eq!(body, want);
            let _: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        }
    }

    #[test]
    fn signed_integers_in_both_codecs() {
        for n in [-1i64, 0, 7, -129, i64::MIN, i64::MAX] {
            for codec in [Codec::Json, Codec::Msgpack] {
                let mut buf = Vec::new();
                let mut w = Writer::new(codec, &mut buf);
                w.array(1).i64(n).end_array();
                let f = w.finish();
                let mut payload = frame::parse(&f).unwrap().1.to_vec();
                let tree = Decoder::default()
                    .decode(codec, &mut payload)
                    .map(|v| crate::codec::to_json(&v));
                assert_eq!(tree.unwrap(), serde_json::json!([n]), "{codec:?}");
            }
        }
    }

    #[test]
    fn msgpack_output_decodes_to_the_same_tree() {
        let mut payload = envelope(Codec::Msgpack);
        let mut json = envelope(Codec::Json);
        let mut d = Decoder::default();
        let a = crate::codec::to_json(&d.decode(Codec::Msgpack, &mut payload).unwrap());
        let b = crate::codec::to_json(&d.decode(Codec::Json, &mut json).unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn string_values_relay_as_the_same_string() {
        for s in [
            "plain 64 bytes of game state",
            "q\"uote \\ ctl\u{1}\n é 😀",
            "",
        ] {
            let mut src = serde_json::to_vec(&serde_json::json!({ "data": s })).unwrap();
            let mut d = Decoder::default();
            let value = d.decode(Codec::Json, &mut src).unwrap();
            let data = crate::codec::field(&value, "data").unwrap();
            let mut buf = Vec::new();
            let mut w = Writer::new(Codec::Json, &mut buf);
            w.map(2).key("data").value(data).key("n").u64(7).end_map();
            let f = w.finish();
            let (_, payload, _) = frame::parse(&f).unwrap();
            let back: serde_json::Value = serde_json::from_slice(payload).unwrap();
            assert_eq!(back, serde_json::json!({ "data": s, "n": 7 }));
        }
    }

    #[test]
    fn json_strings_are_escaped_exactly_when_needed() {
        for s in [
            "plain",
            "",
            "é 😀",
            "q\"uote",
            "back\\slash",
            "ctl\u{1}\n",
            "\u{7f}",
        ] {
            let mut buf = Vec::new();
            json_str(&mut buf, s);
            let back: String = serde_json::from_slice(&buf).unwrap();
            assert_eq!(back, s);
        }
        // The word-at-a-time check: each special byte at every position of a long
        // string, next to bytes that must not be mistaken for one.
        for special in ['"', '\\', '\u{0}', '\u{1f}', '\n'] {
            for at in 0..20 {
                let mut chars: Vec<char> = "ab!#~\u{7f}é😀 0123456789".chars().collect();
                chars.insert(at, special);
                let s: String = chars.into_iter().collect();
                let mut buf = Vec::new();
                json_str(&mut buf, &s);
                assert!(!json_plain(s.as_bytes()), "{s:?}");
                let back: String = serde_json::from_slice(&buf).unwrap();
                assert_eq!(back, s);
            }
        }
        for s in [
            "a!#$%&'()*+,-./:;<=>?@[]^_`{|}~\u{7f}",
            "\u{20}é😀 near the edges \u{7e}",
        ] {
            assert!(json_plain(s.as_bytes()), "{s:?}");
            let mut buf = Vec::new();
            json_str(&mut buf, s);
            let back: String = serde_json::from_slice(&buf).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn the_word_check_agrees_with_a_byte_check_at_every_length_and_position() {
        let by_byte = |s: &[u8]| s.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
        for len in 1..=17 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut s = vec![b'x'; len];
                    s[at] = byte;
                    assert_eq!(json_plain(&s), by_byte(&s), "{s:?}");
                }
            }
        }
        assert!(json_plain(b""));
    }

    #[test]
    fn msgpack_integers_use_the_smallest_form() {
        let mut buf = Vec::new();
        let mut w = Writer::new(Codec::Msgpack, &mut buf);
        w.u64(5);
        let f = w.finish();
        let (_, payload, _) = frame::parse(&f).unwrap();
        assert_eq!(payload, &[0x05]);
        let mut buf = Vec::new();
        let mut w = Writer::new(Codec::Msgpack, &mut buf);
        w.u64(300);
        let f = w.finish();
        assert_eq!(frame::parse(&f).unwrap().1, &[0xcd, 0x01, 0x2c]);
    }
}
