//! RFC 8785 (JCS) canonical JSON of room state and its CRC-32, kept incrementally.
//!
//! The checksum a client verifies is CRC-32 (IEEE, crc32fast) of the canonical bytes of
//! the whole state. Recomputing it per patch would cost O(state size); instead the state's
//! top-level members (`"key":value`) sit in a treap ordered as JCS orders keys (UTF-16
//! code units), each node caching the CRC of its subtree's bytes. CRC-32 combines: the CRC
//! of `A ‖ B` is `crc(A)·x^(8|B|) ⊕ crc(B)` in GF(2)[x]/P, so a node's CRC comes from its
//! children's in two multiplications, with `x^(8·len)` cached beside each CRC. Changing
//! one top-level key re-serializes that key's value only and recombines O(log n) nodes.

use std::cmp::Ordering;

use serde_json::Value;

/// The reflected CRC-32 (IEEE) polynomial.
const POLY: u32 = 0xEDB8_8320;
/// `1` in the reflected representation (x^0).
const ONE: u32 = 1 << 31;

/// `a·b mod P` in the reflected representation.
fn mul_mod(a: u32, mut b: u32) -> u32 {
    if a == 0 {
        return 0;
    }
    let mut m = ONE;
    let mut p = 0u32;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
}

/// `x^(8·len) mod P`: the factor that shifts a CRC past `len` bytes.
fn shift_of(len: u64) -> u32 {
    // x^(2^k) for k = 3.. (x^8, x^16, ...), squared as we go.
    let mut square = 1u32 << 30; // x^1
    for _ in 0..3 {
        square = mul_mod(square, square);
    }
    let mut p = ONE;
    let mut n = len;
    while n != 0 {
        if n & 1 != 0 {
            p = mul_mod(square, p);
        }
        square = mul_mod(square, square);
        n >>= 1;
    }
    p
}

/// A byte string summarised for combining: its CRC-32, length and shift factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    crc: u32,
    len: u64,
    shift: u32,
}

impl Span {
    /// The empty string.
    pub const EMPTY: Span = Span {
        crc: 0,
        len: 0,
        shift: ONE,
    };

    /// Summarises bytes.
    pub fn of(bytes: &[u8]) -> Span {
        Span {
            crc: crc32fast::hash(bytes),
            len: bytes.len() as u64,
            shift: shift_of(bytes.len() as u64),
        }
    }

    /// The summary of `self ‖ next`.
    pub fn then(self, next: Span) -> Span {
        Span {
            crc: mul_mod(self.crc, next.shift) ^ next.crc,
            len: self.len + next.len,
            shift: mul_mod(self.shift, next.shift),
        }
    }

    /// CRC-32 of the bytes.
    pub fn crc32(self) -> u32 {
        self.crc
    }

    /// Length of the bytes.
    pub fn len(self) -> u64 {
        self.len
    }

    /// No bytes.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }
}

/// JCS key order: by UTF-16 code units.
pub fn key_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Writes the JCS canonical form of a value.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n.as_f64().unwrap_or(0.0), out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| key_order(a, b));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write(&map[k], out);
            }
            out.push(b'}');
        }
    }
}

/// The canonical bytes of a value.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

/// ECMAScript `Number.prototype.toString` (what `JSON.stringify` prints).
fn write_number(f: f64, out: &mut Vec<u8>) {
    if f == 0.0 {
        out.push(b'0'); // also -0
        return;
    }
    let mut buf = ryu_js::Buffer::new();
    out.extend_from_slice(buf.format_finite(f).as_bytes());
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

struct Node {
    key: Box<str>,
    /// `"key":value`.
    member: Span,
    /// The subtree's members joined with commas, in key order.
    all: Span,
    prio: u64,
    left: Link,
    right: Link,
}

type Link = Option<Box<Node>>;

fn all(link: &Link) -> Span {
    link.as_ref().map_or(Span::EMPTY, |n| n.all)
}

fn comma() -> Span {
    Span::of(b",")
}

fn join(a: Span, b: Span) -> Span {
    if a.is_empty() {
        b
    } else if b.is_empty() {
        a
    } else {
        a.then(comma()).then(b)
    }
}

fn refresh(n: &mut Node) {
    n.all = join(join(all(&n.left), n.member), all(&n.right));
}

/// Splits into keys `< key` and `>= key` (or `<= key` and `> key` when `inclusive`).
fn split(link: Link, key: &str, inclusive: bool) -> (Link, Link) {
    let Some(mut n) = link else {
        return (None, None);
    };
    let goes_left = match key_order(&n.key, key) {
        Ordering::Less => true,
        Ordering::Equal => inclusive,
        Ordering::Greater => false,
    };
    if goes_left {
        let (l, r) = split(n.right.take(), key, inclusive);
        n.right = l;
        refresh(&mut n);
        (Some(n), r)
    } else {
        let (l, r) = split(n.left.take(), key, inclusive);
        n.left = r;
        refresh(&mut n);
        (l, Some(n))
    }
}

/// Joins two treaps whose keys are all ordered `a < b`.
fn merge(a: Link, b: Link) -> Link {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(mut a), Some(mut b)) => {
            if a.prio >= b.prio {
                a.right = merge(a.right.take(), Some(b));
                refresh(&mut a);
                Some(a)
            } else {
                b.left = merge(Some(a), b.left.take());
                refresh(&mut b);
                Some(b)
            }
        }
    }
}

/// The CRC-32 of a state's canonical JSON, maintained per top-level key.
pub struct StateDigest {
    root: Link,
    rng: u64,
    scratch: Vec<u8>,
}

impl StateDigest {
    /// The digest of a whole state (an object; anything else digests as `{}`).
    pub fn build(state: &Value) -> StateDigest {
        let mut d = StateDigest {
            root: None,
            rng: 0x9E37_79B9_7F4A_7C15,
            scratch: Vec::new(),
        };
        if let Value::Object(map) = state {
            for (k, v) in map {
                d.set(k, Some(v));
            }
        }
        d
    }

    fn next_prio(&mut self) -> u64 {
        // xorshift64*: priorities only need to be well spread, not secret.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Records that top-level `key` now holds `value` (`None`: deleted).
    pub fn set(&mut self, key: &str, value: Option<&Value>) {
        let (less, rest) = split(self.root.take(), key, false);
        let (_old, greater) = split(rest, key, true);
        let mid = value.map(|v| {
            self.scratch.clear();
            write_string(key, &mut self.scratch);
            self.scratch.push(b':');
            write(v, &mut self.scratch);
            let member = Span::of(&self.scratch);
            Box::new(Node {
                key: key.into(),
                member,
                all: member,
                prio: self.next_prio(),
                left: None,
                right: None,
            })
        });
        self.root = merge(merge(less, mid), greater);
    }

    /// CRC-32 of the canonical JSON of the whole state.
    pub fn crc32(&self) -> u32 {
        Span::of(b"{")
            .then(all(&self.root))
            .then(Span::of(b"}"))
            .crc32()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn combined_spans_equal_crc32fast_of_the_concatenation() {
        let parts: [&[u8]; 4] = [b"", b"a", b"hello world", &[0u8; 1000]];
        for a in parts {
            for b in parts {
                let whole = [a, b].concat();
                assert_eq!(
                    Span::of(a).then(Span::of(b)).crc32(),
                    crc32fast::hash(&whole)
                );
                assert_eq!(Span::of(a).then(Span::of(b)).len(), whole.len() as u64);
            }
        }
    }

    #[test]
    fn canonical_form_follows_jcs() {
        let v = json!({"b": [1, 2.5, -0.0, 1e21, 1e-7], "a": {"z": null, "é": true, "A": "x\n\"\\\u{1}"}, "\u{1F600}": 1, "\u{FFFD}": 2});
        let text = String::from_utf8(to_vec(&v)).unwrap();
        // U+1F600 is a surrogate pair (D83D...) which sorts before U+FFFD in UTF-16.
        assert_eq!(
            text,
            "{\"a\":{\"A\":\"x\\n\\\"\\\\\\u0001\",\"z\":null,\"é\":true},\"b\":[1,2.5,0,1e+21,1e-7],\"\u{1F600}\":1,\"\u{FFFD}\":2}"
        );
    }

    #[test]
    fn the_digest_tracks_every_set_and_delete() {
        let mut state = json!({});
        let mut d = StateDigest::build(&state);
        assert_eq!(d.crc32(), crc32fast::hash(b"{}"));
        let keys = ["k", "a", "zz", "A", "é", "\u{1F600}", "m", "b"];
        for round in 0..200u32 {
            let key = keys[(round as usize * 7 + 3) % keys.len()];
            if round % 5 == 4 {
                state.as_object_mut().unwrap().remove(key);
                d.set(key, None);
            } else {
                let value = json!({"round": round, "list": [round, "x"]});
                state[key] = value.clone();
                d.set(key, Some(&value));
            }
            assert_eq!(d.crc32(), crc32fast::hash(&to_vec(&state)), "round {round}");
        }
        assert_eq!(StateDigest::build(&state).crc32(), d.crc32());
    }
}
