//! State ops and checksums: one `set` into a room state of 10,000 top-level keys, applied
//! and checksummed (CRC-32 of the RFC 8785 canonical JSON) incrementally by the
//! `StateDigest`, next to recomputing the checksum from the whole canonical form.
//!
//! Run: `cargo bench --bench state`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use huddle::rooms::canon::{self, StateDigest};
use huddle::rooms::state::{self, Op};
use serde_json::{json, Map, Value};

fn state_of(keys: usize) -> Value {
    let mut map = Map::new();
    for i in 0..keys {
        map.insert(
            format!("player_{i:05}"),
            json!({"x": i as f64 * 0.5, "y": -(i as i64), "hp": 100, "name": format!("p{i}")}),
        );
    }
    Value::Object(map)
}

fn bench_state(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_set_10k_keys");
    let mut state = state_of(10_000);
    let mut digest = StateDigest::build(&state);
    let mut n = 0u64;
    group.bench_function("apply_and_incremental_crc", |b| {
        b.iter(|| {
            n += 1;
            let op = Op::Set("/player_04242/x".into(), json!(n as f64 * 0.25));
            state::apply(&mut state, &op).unwrap();
            digest.set("player_04242", state.get("player_04242"));
            black_box(digest.crc32())
        })
    });
    group.bench_function("apply_and_full_recompute", |b| {
        let mut buf = Vec::with_capacity(1 << 20);
        b.iter(|| {
            n += 1;
            let op = Op::Set("/player_04242/x".into(), json!(n as f64 * 0.25));
            state::apply(&mut state, &op).unwrap();
            buf.clear();
            canon::write(&state, &mut buf);
            black_box(crc32fast::hash(&buf))
        })
    });
    group.bench_function("insert_and_delete_a_key_incremental", |b| {
        b.iter(|| {
            n += 1;
            let key = format!("new_{}", n % 64);
            digest.set(&key, Some(&json!(n)));
            digest.set(&key, None);
            black_box(digest.crc32())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_state);
criterion_main!(benches);
