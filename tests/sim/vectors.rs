//! Cross-language test vectors for state checksums: the canonical JSON (RFC 8785) and
//! CRC-32 our Rust code computes must equal the committed expectations, which a Node
//! script (`tests/vectors/check.mjs`) recomputes independently.
//! Regenerate the expectations with `HUDDLE_WRITE_VECTORS=1 cargo test --test vectors`.

use std::path::PathBuf;
use std::process::Command;

use huddle::rooms::canon::{self, StateDigest};
use serde_json::{json, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn computed() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("state_vectors.json")).unwrap();
    let states: Vec<Value> = serde_json::from_str(&text).unwrap();
    states
        .iter()
        .map(|v| {
            let state = &v["state"];
            let bytes = canon::to_vec(state);
            let crc = crc32fast::hash(&bytes);
            assert_eq!(
                StateDigest::build(state).crc32(),
                crc,
                "incremental digest of {}",
                v["name"]
            );
            json!({"name": v["name"], "canonical": String::from_utf8(bytes).unwrap(), "crc32": crc})
        })
        .collect()
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
