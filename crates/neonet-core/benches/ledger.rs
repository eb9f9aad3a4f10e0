//! Criterion benchmark of ledger verification: hashing, decoding, ZIP-215 signatures, and
//! a whole chain of 10,000 signed blocks (the figure: >= 50,000 blocks/s).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_zebra::{SigningKey, VerificationKeyBytes};
use neonet_core::ledger::{
    self, chain, ed25519, encode_body, encode_signed, hash_block_body, kind,
};
use std::hint::black_box;

/// A valid chain of `count` blocks for one account: OPEN, then receives and transfers.
fn make_chain(count: usize) -> Vec<Vec<u8>> {
    let key = SigningKey::from([42u8; 32]);
    let public: [u8; 32] = VerificationKeyBytes::from(&key).into();
    let mut blocks = Vec::with_capacity(count);
    let (mut previous, mut balance) = ([0u8; 32], 0u64);
    for sequence in 0..count as u64 {
        let (kind, amount) = match sequence {
            0 => (kind::OPEN, 0),
            _ if sequence % 2 == 1 => (kind::RECEIVE, 1_000),
            _ => (kind::TRANSFER, 400),
        };
        balance = if kind == kind::TRANSFER {
            balance - amount
        } else {
            balance + amount
        };
        let body = encode_body(
            &public,
            sequence,
            &previous,
            kind,
            amount,
            balance,
            &public,
            b"invoice 1234",
        );
        previous = hash_block_body(&body);
        blocks.push(encode_signed(&body, &key.sign(&previous).to_bytes()));
    }
    blocks
}

fn bench_ledger(criterion: &mut Criterion) {
    let blocks = make_chain(10_000);
    let block = ledger::parse_block(&blocks[1]).unwrap();
    criterion.bench_function("parse_block", |bencher| {
        bencher.iter(|| ledger::parse_block(black_box(&blocks[1])).unwrap())
    });
    criterion.bench_function("hash_block_body", |bencher| {
        bencher.iter(|| hash_block_body(black_box(block.body)))
    });
    let message = hash_block_body(block.body);
    criterion.bench_function("ed25519 verify (ZIP-215, single)", |bencher| {
        bencher.iter(|| {
            ed25519::verify(
                black_box(block.key),
                black_box(&message),
                black_box(block.signature),
            )
        })
    });

    let mut group = criterion.benchmark_group("verify_chain");
    group.sample_size(10);
    for count in [256usize, 10_000] {
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(format!("{count} blocks"), |bencher| {
            bencher.iter(|| {
                let verdict = chain::verify_chain(black_box(&blocks[..count]), None, None).unwrap();
                assert_eq!(verdict.valid_count, count);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_ledger);
criterion_main!(benches);
