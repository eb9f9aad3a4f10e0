//! Criterion benchmarks of the connection data path: Noise transport framing and
//! ChaCha20-Poly1305, the yamux engine, and the two combined (one bulk socket read).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use neonet_core::noise_transport::{encrypted_size, NoiseTransport};
use neonet_core::noise_yamux::NoiseYamuxConnection;
use neonet_core::yamux::{Config, Event, YamuxConnection};
use std::hint::black_box;

const CLIENT_KEY: [u8; 32] = [1; 32];
const SERVER_KEY: [u8; 32] = [2; 32];

fn transports() -> (NoiseTransport, NoiseTransport) {
    (
        NoiseTransport::new(&CLIENT_KEY, &SERVER_KEY, b"", 0, 0).unwrap(),
        NoiseTransport::new(&SERVER_KEY, &CLIENT_KEY, b"", 0, 0).unwrap(),
    )
}

fn bench_noise(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("noise transport");
    let plaintext = vec![7u8; 256 * 1024];
    group.throughput(Throughput::Bytes(plaintext.len() as u64));
    group.bench_function("encrypt 256 KiB", |bencher| {
        let (mut client, _) = transports();
        let mut out = Vec::with_capacity(encrypted_size(plaintext.len()));
        bencher.iter(|| {
            out.clear();
            client.encrypt(black_box(&plaintext), &mut out).unwrap();
        })
    });
    group.bench_function("decrypt 256 KiB", |bencher| {
        let (mut client, _) = transports();
        let mut wire = Vec::new();
        client.encrypt(&plaintext, &mut wire).unwrap();
        let mut out = Vec::with_capacity(plaintext.len());
        bencher.iter(|| {
            // A fresh receiver per message (the nonce must match the one sealed).
            let (_, mut server) = transports();
            out.clear();
            server.receive_data(black_box(&wire), &mut out).unwrap();
        })
    });
    group.finish();
}

fn bench_yamux(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("yamux");
    group.throughput(Throughput::Elements(1));
    group.bench_function("open + 1-byte echo + close, both sides", |bencher| {
        let mut client = YamuxConnection::new(true, Config::default()).unwrap();
        let mut server = YamuxConnection::new(false, Config::default()).unwrap();
        let mut wire = Vec::new();
        bencher.iter(|| {
            let id = client.open_stream().unwrap();
            client.send_data(i64::from(id), b"x").unwrap();
            wire.clear();
            wire.extend_from_slice(client.pending_output());
            client.clear_output();
            server.receive_data(&wire).unwrap();
            server.consume(i64::from(id), 1).unwrap();
            server.send_data(i64::from(id), b"x").unwrap();
            server.close_stream(i64::from(id)).unwrap();
            wire.clear();
            wire.extend_from_slice(server.pending_output());
            server.clear_output();
            client.receive_data(&wire).unwrap();
            client.consume(i64::from(id), 1).unwrap();
            client.close_stream(i64::from(id)).unwrap();
            wire.clear();
            wire.extend_from_slice(client.pending_output());
            client.clear_output();
            server.receive_data(&wire).unwrap();
            client.receive_data(b"").unwrap();
            black_box(server.events().len());
        })
    });
    group.finish();
}

fn bench_noise_yamux(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("noise + yamux");
    let chunk = vec![9u8; 256 * 1024];
    group.throughput(Throughput::Bytes(chunk.len() as u64));
    group.bench_function("send and receive 256 KiB on one stream", |bencher| {
        let config = Config {
            initial_window: 16 << 20,
            max_receive_window: 16 << 20,
            ..Config::default()
        };
        let (client_noise, server_noise) = transports();
        let mut client = NoiseYamuxConnection::new(
            client_noise,
            YamuxConnection::new(true, config.clone()).unwrap(),
        );
        let mut server =
            NoiseYamuxConnection::new(server_noise, YamuxConnection::new(false, config).unwrap());
        let id = i64::from(client.yamux.open_stream().unwrap());
        let mut wire: Vec<u8> = Vec::new();
        bencher.iter(|| {
            client.yamux.send_data(id, black_box(&chunk)).unwrap();
            let size = client.output_size();
            wire.clear();
            wire.reserve(size);
            client
                .take_output_into(&mut wire.spare_capacity_mut()[..size])
                .unwrap();
            // SAFETY: take_output_into wrote all `size` bytes.
            unsafe { wire.set_len(size) };
            server.receive_data(&wire).unwrap();
            let received: usize = server
                .yamux
                .events()
                .iter()
                .map(|event| match *event {
                    Event::DataReceived { start, end, .. } => end - start,
                    _ => 0,
                })
                .sum();
            server.yamux.consume(id, received as i64).unwrap();
            let size = server.output_size();
            wire.clear();
            wire.reserve(size);
            server
                .take_output_into(&mut wire.spare_capacity_mut()[..size])
                .unwrap();
            // SAFETY: as above.
            unsafe { wire.set_len(size) };
            client.receive_data(&wire).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench_noise, bench_yamux, bench_noise_yamux);
criterion_main!(benches);
