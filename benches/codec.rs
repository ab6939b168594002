//! Codec hot paths, per codec: decoding a client's `room.message` envelope (JSON read off
//! simd-json's tape, as the shard does; and the value tree + `envelope` + `command` that
//! MessagePack and every other frame take) and encoding the broadcast frame a
//! room sends its members (once per codec per message).
//!
//! Run: `cargo bench --bench codec`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use huddle::codec::{frame, to_json, Codec, Decoded, Decoder, Writer};
use huddle::core::{SessionAt, SessionKey, ShardId};
use huddle::rooms::decode::{command, envelope, tape_message, Command};
use huddle::rooms::encode;
use huddle::rooms::room::{Features, Member};
use huddle::sim::encode_as;
use serde_json::json;

/// A typical game message: ~64 bytes of `data` in JSON.
fn message() -> serde_json::Value {
    let data = json!({"x": 412.5, "y": -88.25, "vx": 3, "vy": -1, "anim": "run", "hp": 97});
    assert!((56..=72).contains(&data.to_string().len()), "~64 B payload");
    json!({"v": 1, "t": "room.message", "room": "arena-7", "p": {"type": "player.state", "data": data}})
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope_decode");
    // What the shard does with a JSON room.message: read it off simd-json's tape.
    let wire = encode_as(Codec::Json, &message());
    let mut buf = wire.clone();
    let mut decoder = Decoder::default();
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function(format!("json_tape_{}B", wire.len()), |b| {
        b.iter(|| {
            buf.copy_from_slice(&wire);
            match decoder.decode_fast(Codec::Json, &mut buf, tape_message) {
                Ok(Decoded::Fast(m)) => black_box((m.msg_type.len(), m.data.is_some())),
                _ => panic!("not read off the tape"),
            };
        })
    });
    // Every other frame, and MessagePack: the value tree, then envelope and command.
    for codec in [Codec::Json, Codec::Msgpack] {
        let wire = encode_as(codec, &message());
        let mut buf = wire.clone();
        let mut decoder = Decoder::default();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(format!("{}_{}B", codec.name(), wire.len()), |b| {
            b.iter(|| {
                // JSON is unescaped in place, so each round decodes a fresh copy.
                buf.copy_from_slice(&wire);
                let value = decoder.decode(codec, &mut buf).expect("decodes");
                let env = envelope(&value).expect("valid envelope");
                match command(&env, &[]).expect("valid command") {
                    Command::Message { msg_type, data, .. } => {
                        black_box((msg_type.len(), data.is_some()));
                    }
                    other => panic!("not a message: {other:?}"),
                }
            })
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast_encode");
    let mut src = encode_as(Codec::Json, &message()["p"]["data"]);
    let data = Decoder::default()
        .decode(Codec::Json, &mut src)
        .expect("decodes");
    for codec in [Codec::Json, Codec::Msgpack] {
        let member = Member {
            client_id: Arc::from("c3f9a01b2c4d"),
            at: SessionAt {
                shard: ShardId(0),
                key: SessionKey { index: 0, gen: 1 },
            },
            codec,
            features: Features::default(),
            acked_seq: 0,
        };
        let mut scratch = Vec::with_capacity(4096);
        let write = |scratch: &mut Vec<u8>| {
            let mut w = Writer::new(codec, scratch);
            encode::relayed_message(
                &mut w,
                &member,
                "arena-7",
                "player.state",
                Some(&data),
                None,
                &member.client_id,
            );
            w.finish()
        };
        let sample = write(&mut scratch);
        let (_, payload, _) = frame::parse(&sample).expect("frame");
        let mut payload = payload.to_vec();
        let decoded = to_json(
            &Decoder::default()
                .decode(codec, &mut payload)
                .expect("decodes"),
        );
        assert_eq!(
            decoded["p"]["data"],
            message()["p"]["data"],
            "the broadcast carries the data"
        );
        group.throughput(Throughput::Bytes(sample.len() as u64));
        group.bench_function(format!("{}_{}B", codec.name(), sample.len()), |b| {
            b.iter(|| black_box(write(&mut scratch)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
