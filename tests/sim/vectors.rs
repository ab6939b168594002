//! Cross-language test vectors for state checksums: the canonical JSON (RFC 8785) and
//! CRC-32 our Rust code computes must equal the committed expectations, which a Node
//! script (`tests/vectors/check.mjs`) recomputes independently.
//!
//! Two files: `state_vectors.json` (hand-written states) with its expectations in
//! `state_vectors.expected.json`, and `state_vectors.generated.json` (states with their
//! canonical form and CRC): the states every `fuzz/seeds/state_ops/` seed leaves, edge
//! states (number forms around ECMAScript's switches, keys ordered differently by UTF-16
//! code units than by code points, escapes), and states from a seeded generator. The test
//! here regenerates that file's entries and requires them equal to the committed ones, so
//! Rust and Node are both checked against the same file.
//! Regenerate both expectation files with `HUDDLE_WRITE_VECTORS=1 cargo test --test sim vectors`.

use std::path::PathBuf;
use std::process::Command;

use huddle::fuzzcheck::state_after_ops;
use huddle::rooms::canon::{self, StateDigest};
use serde_json::{json, Map, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// A state's canonical form and CRC-32, the incremental digest checked against them.
fn canonical_and_crc(name: &Value, state: &Value) -> (String, u32) {
    let bytes = canon::to_vec(state);
    let crc = crc32fast::hash(&bytes);
    assert_eq!(
        StateDigest::build(state).crc32(),
        crc,
        "incremental digest of {name}"
    );
    (String::from_utf8(bytes).unwrap(), crc)
}

fn computed() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("state_vectors.json")).unwrap();
    let states: Vec<Value> = serde_json::from_str(&text).unwrap();
    states
        .iter()
        .map(|v| {
            let (canonical, crc) = canonical_and_crc(&v["name"], &v["state"]);
            json!({"name": v["name"], "canonical": canonical, "crc32": crc})
        })
        .collect()
}

/// SplitMix64: a seeded sequence that is the same on every platform and crate version.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Clone>(&mut self, table: &[T]) -> T {
        table[self.below(table.len())].clone()
    }
}

/// Keys whose JCS order needs care: UTF-16 code units order U+E000 and U+FFFF after the
/// astral characters (surrogates are 0xD800–0xDFFF), code points before; integer-like keys
/// sort as text; combining marks, escapes and the empty key.
const KEYS: &[&str] = &[
    "",
    "a",
    "A",
    "_",
    "z",
    "9",
    "10",
    "01",
    "é",
    "e\u{301}",
    "\u{e000}",
    "\u{ffff}",
    "😀",
    "𐀀",
    "\u{10ffff}",
    "日本",
    "\u{7f}",
    "\u{0}",
    "\u{1f}",
    "\"",
    "\\",
    "/",
    "\u{2028}",
    "\u{2029}",
    "\u{feff}",
];

/// Numbers around ECMAScript's printing switches (exponent from 1e21 up and below 1e-6),
/// the ends of f64, integers past 2^53 and at the ends of i64/u64, negative zero.
fn edge_numbers() -> Vec<Value> {
    let floats = [
        0.0,
        -0.0,
        1e21,
        1e-7,
        1e-6,
        1e20,
        999_999_999_999_999_900_000.0,
        123_456_789_012_345_680_000.0,
        5e-324,
        -5e-324,
        f64::MIN_POSITIVE,
        2.225_073_858_507_201e-308,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        0.1,
        0.1 + 0.2,
        1.0 / 3.0,
        -1.5e-10,
        9_007_199_254_740_992.0,
        4.35,
        0.000_001_5,
        1.5e300,
        1e-300,
    ];
    let mut out: Vec<Value> = floats.iter().map(|&f| json!(f)).collect();
    out.extend([
        json!(u64::MAX),
        json!(u64::MAX - 1),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(9_007_199_254_740_993u64),
        json!(-9_007_199_254_740_993i64),
        json!(1u64 << 63),
    ]);
    out
}

/// A random string: up to 4 characters from ASCII (escapes included), Latin-1, the rest
/// of the BMP (surrogates excepted) and the astral planes.
fn random_string(rng: &mut SplitMix) -> String {
    (0..rng.below(5))
        .map(|_| {
            let c = match rng.below(4) {
                0 => rng.below(0x80) as u32,
                1 => 0x80 + rng.below(0x780) as u32,
                2 => 0x800 + rng.below(0xF800) as u32,
                _ => 0x10000 + rng.below(0x100000) as u32,
            };
            char::from_u32(c).unwrap_or('\u{fffd}')
        })
        .collect()
}

/// A random finite number: any f64 bit pattern, a mantissa times a power of ten near the
/// printing switches, an integer of any size, or an edge.
fn random_number(rng: &mut SplitMix) -> Value {
    match rng.below(5) {
        0 => {
            let f = f64::from_bits(rng.next());
            json!(if f.is_finite() { f } else { 0.5 })
        }
        1 => {
            let mantissa = (rng.next() % 1_000_000_000_000_000) as f64;
            let exponent = rng.below(60) as i32 - 35;
            json!(mantissa * 10f64.powi(exponent))
        }
        2 => json!(rng.next() as i64),
        3 => json!(rng.next() >> rng.below(64)),
        _ => rng.pick(&edge_numbers()),
    }
}

fn random_key(rng: &mut SplitMix) -> String {
    if rng.below(2) == 0 {
        rng.pick(KEYS).to_string()
    } else {
        random_string(rng)
    }
}

fn random_value(rng: &mut SplitMix, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => random_number(rng),
        3 => json!(rng.pick(KEYS)),
        4 => json!(random_string(rng)),
        5 => (0..rng.below(4))
            .map(|_| random_value(rng, depth - 1))
            .collect(),
        _ => random_object(rng, depth - 1),
    }
}

fn random_object(rng: &mut SplitMix, depth: usize) -> Value {
    let mut map = Map::new();
    for _ in 0..rng.below(7) {
        map.insert(random_key(rng), random_value(rng, depth));
    }
    Value::Object(map)
}

/// States drawn by the seeded generator.
const RANDOM_STATES: usize = 200;

/// The generated file's states, by name: every state_ops seed's, the edges, the random.
fn generated_states() -> Vec<(String, Value)> {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/state_ops");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&seeds)
        .expect("fuzz/seeds/state_ops exists")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out: Vec<(String, Value)> = files
        .iter()
        .map(|f| {
            let name = format!("state_ops/{}", f.file_name().unwrap().to_string_lossy());
            (name, state_after_ops(&std::fs::read(f).unwrap()))
        })
        .collect();
    let numbers: Map<String, Value> = edge_numbers()
        .into_iter()
        .enumerate()
        .map(|(i, n)| (format!("n{i}"), n))
        .collect();
    out.push(("edge_numbers".into(), Value::Object(numbers)));
    let keys: Map<String, Value> = KEYS
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), json!(i)))
        .collect();
    out.push(("edge_key_order".into(), Value::Object(keys)));
    let all_controls: String = (0u8..0x20).map(char::from).collect();
    out.push((
        "edge_escapes".into(),
        json!({"controls": all_controls, "values": KEYS, "nested": {"😀": [{"\u{ffff}": KEYS}]}}),
    ));
    let mut rng = SplitMix(0x5eed_c0de);
    for i in 0..RANDOM_STATES {
        out.push((format!("random_{i}"), random_object(&mut rng, 3)));
    }
    out
}

/// `state_vectors.generated.json`: one entry a line.
fn generated_file() -> String {
    let lines: Vec<String> = generated_states()
        .into_iter()
        .map(|(name, state)| {
            let name = Value::String(name);
            let (canonical, crc) = canonical_and_crc(&name, &state);
            let entry = json!({"name": name, "state": state, "canonical": canonical, "crc32": crc});
            serde_json::to_string(&entry).unwrap()
        })
        .collect();
    format!("[\n{}\n]\n", lines.join(",\n"))
}

#[test]
fn rust_reproduces_the_generated_vectors() {
    let path = dir().join("state_vectors.generated.json");
    let got = generated_file();
    if std::env::var_os("HUDDLE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    let parse = |text: &str| serde_json::from_str::<Vec<Value>>(text).unwrap();
    let (got, want) = (parse(&got), parse(&want));
    assert_eq!(got.len(), want.len(), "entries in {}", path.display());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            g, w,
            "regenerate with HUDDLE_WRITE_VECTORS=1 if the change is meant"
        );
    }
}

#[test]
fn rust_canonical_json_and_crc_match_the_committed_vectors() {
    let got = computed();
    let path = dir().join("state_vectors.expected.json");
    if std::env::var_os("HUDDLE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(got, want);
}

#[test]
fn node_computes_the_same_canonical_json_and_crc_independently() {
    let out = Command::new("node")
        .arg(dir().join("check.mjs"))
        .output()
        .expect("node must be installed (Node 20+): the vectors are checked in JavaScript too");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node check failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}
