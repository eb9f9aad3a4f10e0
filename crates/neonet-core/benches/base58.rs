//! Criterion benchmark of base58btc on a peer-ID-sized input.
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn bench_base58(criterion: &mut Criterion) {
    let peer_id: Vec<u8> = (0u8..38).collect();
    let text = neonet_core::base58::encode(&peer_id).unwrap();
    criterion.bench_function("base58 encode 38 bytes", |bencher| {
        bencher.iter(|| neonet_core::base58::encode(black_box(&peer_id)).unwrap())
    });
    criterion.bench_function("base58 decode peer id", |bencher| {
        bencher.iter(|| neonet_core::base58::decode(black_box(&text)).unwrap())
    });
}

criterion_group!(benches, bench_base58);
criterion_main!(benches);
