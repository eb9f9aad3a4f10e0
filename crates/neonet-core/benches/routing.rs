//! Criterion benchmark of the Kademlia routing table: closest(20) over a 10,000-peer
//! table (the case), the same over a k=20 table, and updates of known peers.
use criterion::{criterion_group, criterion_main, Criterion};
use neonet_core::routing::{kad_key, Config, Key, RoutingTable};
use std::hint::black_box;

fn peer(number: u32) -> Box<[u8]> {
    // A sha2-256 multihash shape: 0x12 0x20 + 32 bytes.
    let mut id = vec![0x12, 0x20];
    id.extend_from_slice(&kad_key(&number.to_be_bytes()));
    id.into()
}

fn table(bucket_size: i64, peers: u32) -> RoutingTable {
    let config = Config {
        bucket_size,
        ..Config::default()
    };
    let mut table = RoutingTable::new(b"local peer", config).unwrap();
    table
        .update_many((0..peers).map(peer).collect(), 0.0)
        .unwrap();
    table
}

fn bench_routing(criterion: &mut Criterion) {
    let targets: Vec<Key> = (0..1024u32)
        .map(|number| kad_key(&(number + 1_000_000).to_be_bytes()))
        .collect();
    let large = table(10_000, 10_000);
    assert_eq!(large.len(), 10_000);
    let mut next = 0;
    criterion.bench_function("closest(20) over a 10,000-peer table", |bencher| {
        bencher.iter(|| {
            next = (next + 1) % targets.len();
            large.closest(black_box(&targets[next]), 20).unwrap().len()
        })
    });
    let small = table(20, 10_000);
    criterion.bench_function("closest(20) over a k=20 table", |bencher| {
        bencher.iter(|| {
            next = (next + 1) % targets.len();
            small.closest(black_box(&targets[next]), 20).unwrap().len()
        })
    });
    let keys: Vec<&[u8]> = targets.iter().map(|key| &key[..]).collect();
    criterion.bench_function("closest_many(1024 keys, 20), 10,000 peers", |bencher| {
        bencher.iter(|| large.closest_many(black_box(&keys), 20).unwrap().len())
    });
    let mut updated = table(10_000, 10_000);
    let known: Vec<Box<[u8]>> = (0..1024).map(peer).collect();
    criterion.bench_function("update of a known peer, 10,000 peers", |bencher| {
        bencher.iter(|| {
            next = (next + 1) % known.len();
            let id = &known[next];
            updated
                .update_with(black_box(id), 1.0, || id.clone())
                .unwrap()
        })
    });
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
