//! Reading a fuzz input as a script (the cloudlink targets): bytes, little-endian numbers,
//! short byte strings, choices from a table, and small JSON values. Reading past the end
//! gives zeros, so a truncated record still means something; a target stops at a record
//! boundary once [`Input::is_empty`].

use serde_json::{json, Map, Value};

/// The rest of a fuzz input.
pub struct Input<'a> {
    data: &'a [u8],
}

/// Strings the value generator picks from (besides raw bytes).
const STRINGS: &[&str] = &[
    "",
    "a",
    "hello",
    " padded ",
    "é",
    "\u{0}",
    "line\nbreak",
    "\"quoted\"",
    "\\",
    "💥",
];

/// Numbers the value generator picks from: boundaries of i64/u64, a float that is an
/// integer, floats that are not.
const NUMBERS: &[f64] = &[2.0, 2.5, -0.5, 0.1, 1e300, -1e-300, 9.0e15];

impl<'a> Input<'a> {
    /// An input to read from.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Nothing left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length byte, then that many bytes.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.bytes(n)
    }

    /// A length byte, then that many bytes as text (invalid UTF-8 replaced: a WebSocket
    /// text message is UTF-8, the reactor's parser guarantees it).
    pub fn short_text(&mut self) -> String {
        String::from_utf8_lossy(self.short_bytes()).into_owned()
    }

    /// One entry of `table`, chosen by the next byte.
    pub fn pick<T: Copy>(&mut self, table: &[T]) -> T {
        table[usize::from(self.byte()) % table.len()]
    }

    /// A JSON value at most `depth` deep: null, booleans, integers (small and at the
    /// boundaries), floats, strings (from a table or raw), arrays and objects.
    pub fn value(&mut self, depth: u8) -> Value {
        let tag = self.byte();
        let leaf = depth == 0;
        match tag % 12 {
            0 => Value::Null,
            1 => Value::Bool(tag & 0x80 != 0),
            2 => json!(self.byte() as i8),
            3 => match self.byte() % 5 {
                0 => json!(i64::MIN),
                1 => json!(i64::MAX),
                2 => json!(u64::MAX),
                3 => json!(9_007_199_254_740_993u64),
                _ => json!(-1),
            },
            4 => json!(self.u64()),
            5 => json!(self.pick(NUMBERS)),
            6 | 7 => Value::String(self.pick(STRINGS).to_string()),
            8 => Value::String(self.short_text()),
            9 | 10 if !leaf => {
                if tag % 12 == 9 {
                    let n = self.byte() % 4;
                    Value::Array((0..n).map(|_| self.value(depth - 1)).collect())
                } else {
                    let n = self.byte() % 4;
                    let mut map = Map::new();
                    for _ in 0..n {
                        let key = match self.byte() % 4 {
                            0 => "k".to_string(),
                            1 => "opcode".to_string(),
                            2 => "payload".to_string(),
                            _ => self.short_text(),
                        };
                        let v = self.value(depth - 1);
                        map.insert(key, v);
                    }
                    Value::Object(map)
                }
            }
            _ => json!("v"),
        }
    }
}

/// JSON equality where numbers compare by value (an integer-valued float equals the
/// integer; floats within a relative 1e-12), as a number may take another form after a
/// server decodes and re-encodes it.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// PeerJS's id rule, `^[A-Za-z0-9]+([ _-][A-Za-z0-9]+)*$`, written out (not huddle's).
pub fn peerjs_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id
            .split([' ', '_', '-'])
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}
