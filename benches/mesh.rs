//! A mesh hop between two shards: `MeshPort::send` of a `Deliver` (one recipient, a shared
//! frame) on one shard and `MeshPort::drain` on the other, alone and 64 per turn. Wakes are
//! not included (one eventfd write per destination per turn, not per message).
//!
//! Run: `cargo bench --bench mesh`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use huddle::codec::frame::{self, OpCode};
use huddle::core::outbound::Class;
use huddle::core::{MeshMsg, SessionKey, ShardId};
use huddle::dialects::Dialects;
use huddle::mesh::{Mesh, MeshPort};
use smallvec::smallvec;

fn bench_hop(c: &mut Criterion) {
    let polls: Vec<mio::Poll> = (0..2).map(|_| mio::Poll::new().expect("poll")).collect();
    let wakers = polls
        .iter()
        .map(|p| Arc::new(mio::Waker::new(p.registry(), mio::Token(0)).expect("waker")))
        .collect();
    let mesh = Arc::new(Mesh::new(wakers, 8_192));
    let mut from = MeshPort::new(ShardId(0), mesh.clone());
    let to = MeshPort::new(ShardId(1), mesh);
    let frame = frame::from_payload(OpCode::Text, &[b'x'; 96]);
    let key = SessionKey { index: 3, gen: 1 };

    let mut group = c.benchmark_group("mesh_hop");
    for batch in [1u64, 64] {
        group.throughput(Throughput::Elements(batch));
        group.bench_function(BenchmarkId::new("deliver", batch), |b| {
            b.iter(|| {
                for _ in 0..batch {
                    let msg = MeshMsg::<Dialects>::Deliver {
                        to: smallvec![key],
                        frame: frame.clone(),
                        class: Class::Reliable,
                    };
                    from.send(ShardId(1), msg);
                }
                let got = to.drain(usize::MAX, |_, msg| {
                    black_box(msg);
                });
                assert_eq!(got as u64, batch, "every message crossed");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_hop);
criterion_main!(benches);
