//! Best-effort reading of one top-level string field (the RPC id) from a frame that failed
//! to decode, so the client still gets an `rpc.response`. Never panics, bounded by the
//! input; returns `None` whenever the field cannot be read with certainty.

use super::Codec;

/// The string value of top-level `key` in a broken frame, if it can be read.
pub fn top_level_str(codec: Codec, bytes: &[u8], key: &str) -> Option<String> {
    match codec {
        Codec::Json => json(bytes, key),
        Codec::Msgpack => msgpack(bytes, key),
    }
}

/// Reads a JSON string starting at `at` (which must be `"`); returns it and the index after.
fn json_string(bytes: &[u8], mut at: usize) -> Option<(String, usize)> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    at += 1;
    let start = at;
    while let Some(&b) = bytes.get(at) {
        match b {
            b'"' => {
                let raw = std::str::from_utf8(&bytes[start..at]).ok()?;
                return Some((raw.to_string(), at + 1));
            }
            // Escapes: give up rather than guess (rids are plain ids).
            b'\\' => return None,
            _ => at += 1,
        }
    }
    None
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
        at += 1;
    }
    at
}

fn json(bytes: &[u8], key: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut at = skip_ws(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    // Walk the text tracking depth; at depth 1 a string followed by ':' is a key.
    while let Some(&b) = bytes.get(at) {
        match b {
            b'{' | b'[' => {
                depth += 1;
                at += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                at += 1;
            }
            b'"' => {
                let (text, after) = match json_string(bytes, at) {
                    Some(s) => s,
                    None => {
                        // An escaped string we do not read: skip to its end.
                        let mut i = at + 1;
                        while let Some(&c) = bytes.get(i) {
                            i += if c == b'\\' { 2 } else { 1 };
                            if c == b'"' {
                                break;
                            }
                        }
                        at = i;
                        continue;
                    }
                };
                let colon = skip_ws(bytes, after);
                if depth == 1 && text == key && bytes.get(colon) == Some(&b':') {
                    let value = skip_ws(bytes, colon + 1);
                    return json_string(bytes, value).map(|(s, _)| s);
                }
                at = after;
            }
            _ => at += 1,
        }
    }
    None
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn be(&mut self, n: usize) -> Option<usize> {
        let mut v = 0usize;
        for &b in self.take(n)? {
            v = v.checked_mul(256)?.checked_add(usize::from(b))?;
        }
        Some(v)
    }
    /// Reads a string if the next value is one, else skips the value; `depth` bounds
    /// nesting.
    fn value(&mut self, depth: usize) -> Option<Option<String>> {
        if depth > super::DEPTH_MAX {
            return None;
        }
        let m = *self.take(1)?.first()?;
        let str_len = match m {
            0xa0..=0xbf => Some(usize::from(m & 0x1f)),
            0xd9 => Some(self.be(1)?),
            0xda => Some(self.be(2)?),
            0xdb => Some(self.be(4)?),
            _ => None,
        };
        if let Some(n) = str_len {
            let raw = self.take(n)?;
            return Some(std::str::from_utf8(raw).ok().map(str::to_string));
        }
        let skip = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xca | 0xce | 0xd2 => 4,
            0xcb | 0xcf | 0xd3 => 8,
            0xc4 => self.be(1)?,
            0xc5 => self.be(2)?,
            0xc6 => self.be(4)?,
            0xd4 => 2,
            0xd5 => 3,
            0xd6 => 5,
            0xd7 => 9,
            0xd8 => 17,
            0xc7 => self.be(1)? + 1,
            0xc8 => self.be(2)? + 1,
            0xc9 => self.be(4)? + 1,
            0x90..=0x9f | 0xdc | 0xdd => {
                let n = match m {
                    0xdc => self.be(2)?,
                    0xdd => self.be(4)?,
                    _ => usize::from(m & 0x0f),
                };
                for _ in 0..n.min(self.bytes.len()) {
                    self.value(depth + 1)?;
                }
                return Some(None);
            }
            0x80..=0x8f | 0xde | 0xdf => {
                let n = match m {
                    0xde => self.be(2)?,
                    0xdf => self.be(4)?,
                    _ => usize::from(m & 0x0f),
                };
                for _ in 0..n.saturating_mul(2).min(self.bytes.len()) {
                    self.value(depth + 1)?;
                }
                return Some(None);
            }
            _ => return None, // 0xc1: never used
        };
        self.take(skip)?;
        Some(None)
    }
}

fn msgpack(bytes: &[u8], key: &str) -> Option<String> {
    let mut r = Reader { bytes, at: 0 };
    let m = *r.take(1)?.first()?;
    let n = match m {
        0x80..=0x8f => usize::from(m & 0x0f),
        0xde => r.be(2)?,
        0xdf => r.be(4)?,
        _ => return None,
    };
    for _ in 0..n.min(bytes.len()) {
        let k = r.value(1)?;
        // The value after the key we want: a string, read without full decoding.
        if k.as_deref() == Some(key) {
            return r.value(1)?;
        }
        r.value(1)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rid_of_a_broken_frame_is_read_at_the_top_level_only() {
        let broken = br#"{"v":1,"p":{"rid":"inner"},"rid":"outer","t":"room.list","x":[1,2,}"#;
        assert_eq!(
            top_level_str(Codec::Json, broken, "rid").as_deref(),
            Some("outer")
        );
        assert_eq!(
            top_level_str(Codec::Json, br#"{"rid": "a\"b"}"#, "rid"),
            None
        );
        assert_eq!(top_level_str(Codec::Json, b"[1,2", "rid"), None);
        assert_eq!(
            top_level_str(Codec::Json, br#"{"p":"rid","rid" : "r1" ,"#, "rid").as_deref(),
            Some("r1")
        );
    }

    #[test]
    fn msgpack_rid_is_read_past_values_we_cannot_decode() {
        // {v:1, p: fixext1 type 5, rid:"r2", t: <truncated>}
        let mut bytes = vec![
            0x84, 0xa1, b'v', 0x01, 0xa1, b'p', 0xd4, 0x05, 0x00, 0xa3, b'r', b'i', b'd', 0xa2,
            b'r', b'2',
        ];
        bytes.extend_from_slice(&[0xa1, b't', 0xdb, 0xff]);
        assert_eq!(
            top_level_str(Codec::Msgpack, &bytes, "rid").as_deref(),
            Some("r2")
        );
        assert_eq!(
            top_level_str(Codec::Msgpack, &[0xdf, 0xff, 0xff, 0xff, 0xff], "rid"),
            None
        );
        assert_eq!(top_level_str(Codec::Msgpack, &[0x91; 200], "rid"), None);
    }
}
