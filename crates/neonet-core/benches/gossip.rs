//! Criterion benchmarks of the gossip decision layer: seen-cache inserts and lookups in a
//! steady sliding window, fan-out selection (publish targets) and the heartbeat.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use neonet_core::gossip::{GossipParams, MeshState, SeenCache, SplitMix64};
use std::hint::black_box;

const RATE: usize = 1000; // message IDs per simulated second
const TTL: f64 = 120.0;

fn message_ids(count: usize, seed: u64) -> Vec<[u8; 32]> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            let mut id = [0u8; 32];
            for chunk in id.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            id
        })
        .collect()
}

fn bench_seen_cache(criterion: &mut Criterion) {
    let ids = message_ids(1_000_000, 1);
    let absent = message_ids(100_000, 2);
    // A steady window: 120 s of 1000 IDs per second are alive.
    let mut cache = SeenCache::new(TTL, 1 << 20).unwrap();
    let mut clock = 0.0;
    let mut out = Vec::new();
    for batch in ids.chunks(RATE) {
        out.clear();
        cache
            .add_many(batch.iter().map(|id| &id[..]), clock, &mut out)
            .unwrap();
        clock += 1.0;
    }
    let mut group = criterion.benchmark_group("seen cache, 120k live IDs");
    group.throughput(Throughput::Elements(RATE as u64));
    let mut next = 0;
    group.bench_function("add_many 1000 new IDs", |bencher| {
        bencher.iter(|| {
            let batch = &ids[next * RATE..(next + 1) * RATE];
            next = (next + 1) % (ids.len() / RATE);
            out.clear();
            cache
                .add_many(batch.iter().map(|id| &id[..]), clock, &mut out)
                .unwrap();
            clock += 1.0;
            black_box(&out);
        })
    });
    let recent: Vec<&[u8]> = ids[ids.len() - 500..]
        .iter()
        .map(|id| &id[..])
        .chain(absent[..500].iter().map(|id| &id[..]))
        .collect();
    group.bench_function("contains_many 500 hits + 500 misses", |bencher| {
        bencher.iter(|| {
            out.clear();
            cache.contains_many(recent.iter().copied(), &mut out);
            black_box(&out);
        })
    });
    group.finish();
}

/// 100 peers in 10 topics (each peer in 5), 5 topics joined, 5 published to as fan-out.
fn mesh_state() -> (MeshState, Vec<Vec<u8>>) {
    let mut state = MeshState::new(GossipParams::default()).unwrap();
    let peers: Vec<Vec<u8>> = (0..100u32)
        .map(|n| {
            let mut id = b"\x00\x24\x08\x01\x12\x20".to_vec();
            id.extend(n.to_be_bytes().repeat(8));
            id
        })
        .collect();
    for (number, id) in peers.iter().enumerate() {
        state
            .add_peer(id, number % 3 == 0, "/meshsub/1.1.0", false)
            .unwrap();
        for topic in 0..5 {
            let topic = format!("topic-{}", (number + topic * 2) % 10);
            state.peer_subscribed(id, &topic).unwrap();
        }
    }
    for topic in 0..5 {
        state.join(&format!("topic-{topic}"), 0.0, topic).unwrap();
    }
    state.heartbeat(1.0, 1).unwrap();
    (state, peers)
}

fn bench_fanout(criterion: &mut Criterion) {
    let (mut state, peers) = mesh_state();
    let topics: Vec<String> = (0..10).map(|n| format!("topic-{n}")).collect();
    let mut rng = SplitMix64::new(3);
    let messages: Vec<(usize, Option<usize>)> = (0..10_000)
        .map(|_| {
            let topic = rng.below(10);
            let source = (rng.below(4) != 0).then(|| rng.below(peers.len()));
            (topic, source)
        })
        .collect();
    let mut group = criterion.benchmark_group("fan-out, 100 peers in 10 topics");
    group.throughput(Throughput::Elements(messages.len() as u64));
    for (name, flood) in [
        ("publish_targets x10000 (mesh/fan-out)", false),
        ("publish_targets x10000 (flood)", true),
    ] {
        group.bench_function(name, |bencher| {
            let mut out = Vec::new();
            bencher.iter(|| {
                let mut rng = SplitMix64::new(9);
                for &(topic, source) in &messages {
                    out.clear();
                    let source = source.map(|index| &peers[index][..]);
                    state
                        .publish_targets(&topics[topic], source, flood, 2.0, &mut rng, &mut out)
                        .unwrap();
                    black_box(&out);
                }
            })
        });
    }
    group.finish();
    criterion.bench_function("heartbeat, 100 peers in 10 topics", |bencher| {
        bencher.iter_batched(
            || mesh_state().0,
            |mut state| black_box(state.heartbeat(2.0, 7).unwrap()),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench_seen_cache, bench_fanout);
criterion_main!(benches);
