//! rust-libp2p interop peer for NeoNet's harness (see tests/interop/README.md).
//!
//! `rust-peer listen --transport tcp|ws [--ip IP] [--seed-hex HEX]`
//! `rust-peer pubsub [--ip IP] [--seed-hex HEX]` (gossip.rs)
//! `rust-peer dial --addr MA [--echo-bytes N] [--pings N] [--perf-upload N --perf-download M] [--streams N]`
//! `rust-peer kad [--seed-hex HEX]` (see kad.rs)
//! `rust-peer relay|relay-reserve|relay-dial ...` (see relay.rs)

mod gossip;
mod kad;
mod relay;

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
    identify, identity, multiaddr::Protocol, noise, ping, swarm::NetworkBehaviour,
    swarm::SwarmEvent, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
const PERF: StreamProtocol = StreamProtocol::new("/perf/1.0.0");
const PING: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");
const AGENT: &str = "neonet-interop/rust-libp2p/0.57.1";
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(NetworkBehaviour)]
struct Behaviour {
    ping: ping::Behaviour,
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn err(msg: impl Into<String>) -> AnyError {
    msg.into().into()
}

// ---------------------------------------------------------------- arguments

struct Args {
    mode: String,
    opts: HashMap<String, String>,
}

fn parse_args() -> Result<Args, AnyError> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or_else(|| err("usage: rust-peer listen|dial [options]"))?;
    const MODES: [&str; 7] = [
        "listen",
        "dial",
        "kad",
        "pubsub",
        "relay",
        "relay-reserve",
        "relay-dial",
    ];
    if !MODES.contains(&mode.as_str()) {
        return Err(err(format!("unknown mode {mode:?}")));
    }
    let mut opts = HashMap::new();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| err(format!("unexpected argument {flag:?}")))?;
        let value = it
            .next()
            .ok_or_else(|| err(format!("{flag} needs a value")))?;
        opts.insert(name.to_string(), value);
    }
    Ok(Args { mode, opts })
}

fn opt_u64(args: &Args, name: &str) -> Result<Option<u64>, AnyError> {
    args.opts
        .get(name)
        .map(|v| v.parse::<u64>().map_err(|e| err(format!("--{name}: {e}"))))
        .transpose()
}

fn keypair(seed_hex: Option<&String>) -> Result<identity::Keypair, AnyError> {
    let Some(hex) = seed_hex else {
        return Ok(identity::Keypair::generate_ed25519());
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(err("--seed-hex must be 64 hex digits"));
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|e| err(format!("--seed-hex: {e}")))?;
    }
    Ok(identity::Keypair::ed25519_from_bytes(seed)?)
}

// ---------------------------------------------------------------- swarm

async fn build_swarm(
    key: identity::Keypair,
    ping_interval: Duration,
) -> Result<Swarm<Behaviour>, AnyError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await?
        .with_behaviour(|key| Behaviour {
            ping: ping::Behaviour::new(ping::Config::new().with_interval(ping_interval)),
            identify: identify::Behaviour::new(
                identify::Config::new("/ipfs/0.1.0".to_string(), key.public())
                    .with_agent_version(AGENT.to_string()),
            ),
            stream: libp2p_stream::Behaviour::new(),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}

/// Pseudo-random bytes (xorshift64*), deterministic per seed.
fn pseudo_random(n: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

// ---------------------------------------------------------------- stream handlers

async fn serve_echo(stream: libp2p::Stream) -> std::io::Result<()> {
    let (mut rd, mut wr) = stream.split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        wr.write_all(&buf[..n]).await?;
    }
    wr.close().await
}

async fn serve_perf(mut stream: libp2p::Stream) -> std::io::Result<()> {
    let mut hdr = [0u8; 8];
    stream.read_exact(&mut hdr).await?;
    let to_send = u64::from_be_bytes(hdr);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stream.read(&mut buf).await? == 0 {
            break;
        }
    }
    let zeros = vec![0u8; 64 * 1024];
    let mut left = to_send;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        stream.write_all(&zeros[..n]).await?;
        left -= n as u64;
    }
    stream.close().await
}

fn spawn_servers(control: &mut libp2p_stream::Control) -> Result<(), AnyError> {
    let mut echo = control.accept(ECHO).map_err(|e| err(e.to_string()))?;
    let mut perf = control.accept(PERF).map_err(|e| err(e.to_string()))?;
    tokio::spawn(async move {
        while let Some((peer, stream)) = echo.next().await {
            tokio::spawn(async move {
                if let Err(e) = serve_echo(stream).await {
                    eprintln!("echo from {peer}: {e}");
                }
            });
        }
    });
    tokio::spawn(async move {
        while let Some((peer, stream)) = perf.next().await {
            tokio::spawn(async move {
                if let Err(e) = serve_perf(stream).await {
                    eprintln!("perf from {peer}: {e}");
                }
            });
        }
    });
    Ok(())
}

// ---------------------------------------------------------------- listen

async fn listen(args: &Args) -> Result<(), AnyError> {
    let transport = args
        .opts
        .get("transport")
        .map(String::as_str)
        .unwrap_or("tcp");
    let ip = args
        .opts
        .get("ip")
        .map(String::as_str)
        .unwrap_or("127.0.0.1");
    let ip_addr: std::net::IpAddr = ip.parse().map_err(|e| err(format!("--ip: {e}")))?;
    let mut addr = Multiaddr::empty();
    addr.push(match ip_addr {
        std::net::IpAddr::V4(v4) => Protocol::Ip4(v4),
        std::net::IpAddr::V6(v6) => Protocol::Ip6(v6),
    });
    addr.push(Protocol::Tcp(0));
    match transport {
        "tcp" => {}
        "ws" => addr.push(Protocol::Ws("/".into())),
        other => return Err(err(format!("unsupported transport {other:?}"))),
    }

    let key = keypair(args.opts.get("seed-hex"))?;
    let mut swarm = build_swarm(key, Duration::from_secs(15)).await?;
    let peer_id = *swarm.local_peer_id();
    spawn_servers(&mut swarm.behaviour().stream.new_control())?;
    swarm.listen_on(addr)?;

    let listen_addr = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await
    .map_err(|_| err("timed out waiting for a listen address"))?;
    // Catch SIGTERM/SIGINT before announcing the address, so a signal sent as
    // soon as the line is read still means a clean exit (status 0).
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let full = listen_addr.with(Protocol::P2p(peer_id));
    let line = json!({"peer_id": peer_id.to_string(), "addrs": [full.to_string()]});
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }

    let mut stdin = tokio::io::stdin();
    let stdin_eof = async move {
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::pin!(stdin_eof);
    loop {
        tokio::select! {
            _ = &mut stdin_eof => break,
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            ev = swarm.select_next_some() => {
                if let SwarmEvent::IncomingConnectionError { error, .. } = ev {
                    eprintln!("incoming connection error: {error}");
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- dial

enum Ev {
    Connected(PeerId),
    DialFailed(String),
    Identified(Box<identify::Info>),
    IdentifyFailed(String),
    Ping(Result<Duration, String>),
}

async fn dial(args: &Args) -> Result<Value, AnyError> {
    let addr: Multiaddr = args
        .opts
        .get("addr")
        .ok_or_else(|| err("dial needs --addr"))?
        .parse()?;
    let Some(Protocol::P2p(remote)) = addr.iter().last() else {
        return Err(err("--addr must end with /p2p/<peer id>"));
    };
    let pings = opt_u64(args, "pings")?.unwrap_or(3);
    let echo_bytes = opt_u64(args, "echo-bytes")?;
    let perf_up = opt_u64(args, "perf-upload")?;
    let perf_down = opt_u64(args, "perf-download")?;
    let streams = opt_u64(args, "streams")?;

    let key = keypair(args.opts.get("seed-hex"))?;
    // The stock ping behaviour serves inbound pings and pings once as soon as the
    // connection is up (then every 15 s); that first result must be a success.
    // The N measured pings run by hand on one stream so that no background
    // pinging disturbs the later measurements.
    let mut swarm = build_swarm(key, Duration::from_secs(15)).await?;
    let mut control = swarm.behaviour().stream.new_control();

    let started = Instant::now();
    swarm.dial(addr.clone())?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Ev>();
    let driver = tokio::spawn(async move {
        loop {
            let ev = match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => Ev::Connected(peer_id),
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    Ev::DialFailed(error.to_string())
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                    info,
                    ..
                })) => Ev::Identified(Box::new(info)),
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Error {
                    error,
                    ..
                })) => Ev::IdentifyFailed(error.to_string()),
                SwarmEvent::Behaviour(BehaviourEvent::Ping(ev)) => {
                    Ev::Ping(ev.result.map_err(|e| e.to_string()))
                }
                SwarmEvent::ConnectionClosed {
                    cause: Some(cause), ..
                } => {
                    eprintln!("connection closed: {cause}");
                    continue;
                }
                _ => continue,
            };
            if tx.send(ev).is_err() {
                return;
            }
        }
    });

    let mut report = serde_json::Map::new();
    let mut identified: Option<Box<identify::Info>> = None;
    let mut stock_ping = false;
    let mut connected = false;

    let result: Result<(), AnyError> = async {
        // Connect, identify and ping all come from the swarm's event stream.
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        while !connected || identified.is_none() || !stock_ping {
            let ev = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .map_err(|_| {
                    err(format!(
                        "timed out (connected={connected}, identified={}, pinged={stock_ping})",
                        identified.is_some(),
                    ))
                })?
                .ok_or_else(|| err("swarm stopped"))?;
            match ev {
                Ev::Connected(peer) => {
                    if peer != remote {
                        return Err(err(format!("connected to {peer}, expected {remote}")));
                    }
                    if !connected {
                        connected = true;
                        report.insert("remote_peer_id".into(), json!(peer.to_string()));
                        report.insert(
                            "connect_ms".into(),
                            json!(started.elapsed().as_secs_f64() * 1000.0),
                        );
                    }
                }
                Ev::DialFailed(e) => return Err(err(format!("dial failed: {e}"))),
                Ev::Identified(info) => identified = Some(info),
                Ev::IdentifyFailed(e) => return Err(err(format!("identify failed: {e}"))),
                Ev::Ping(Ok(_)) => stock_ping = true,
                Ev::Ping(Err(e)) => return Err(err(format!("ping failed: {e}"))),
            }
        }
        let info = identified.take().expect("identified");
        let rtts = if pings > 0 {
            let stream = timed("open ping stream", control.open_stream(remote, PING)).await?;
            timed("ping", ping_rounds(stream, pings)).await?
        } else {
            Vec::new()
        };
        report.insert("ping_rtt_ms".into(), json!(rtts));
        report.insert(
            "identify".into(),
            json!({
                "protocols": info.protocols.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "agent_version": info.agent_version,
                "protocol_version": info.protocol_version,
                "listen_addrs": info.listen_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "observed_addr": info.observed_addr.to_string(),
            }),
        );

        if let Some(n) = echo_bytes {
            let stream = timed("open echo stream", control.open_stream(remote, ECHO)).await?;
            let data = pseudo_random(n as usize, 0x9E37_79B9_7F4A_7C15 ^ n);
            let got = timed("echo", echo_round(stream, &data)).await?;
            if got != data {
                return Err(err(format!(
                    "echo mismatch: sent {} bytes, got {} back",
                    data.len(),
                    got.len()
                )));
            }
            report.insert("echo_ok".into(), json!(true));
            report.insert("echo_bytes".into(), json!(n));
        }

        if perf_up.is_some() || perf_down.is_some() {
            let up = perf_up.unwrap_or(0);
            let down = perf_down.unwrap_or(0);
            let stream = timed("open perf stream", control.open_stream(remote, PERF)).await?;
            let perf =
                tokio::time::timeout(Duration::from_secs(300), perf_client(stream, up, down))
                    .await
                    .map_err(|_| err("perf timed out"))??;
            report.insert("perf".into(), perf);
        }

        if let Some(n) = streams {
            let t0 = Instant::now();
            for i in 0..n {
                let stream = timed("open echo stream", control.open_stream(remote, ECHO)).await?;
                let byte = [(i & 0xff) as u8];
                let got = timed("echo", echo_round(stream, &byte)).await?;
                if got != byte {
                    return Err(err(format!("stream {i}: echo mismatch")));
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            report.insert(
                "streams_per_second".into(),
                json!(n as f64 / secs.max(1e-9)),
            );
        }
        Ok(())
    }
    .await;
    driver.abort();
    result?;
    report.insert("ok".into(), json!(true));
    Ok(Value::Object(report))
}

async fn timed<T, E: Into<AnyError>>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, AnyError> {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Err(_) => Err(err(format!("{what}: timed out"))),
        Ok(Err(e)) => {
            let e: AnyError = e.into();
            Err(err(format!("{what}: {e}")))
        }
        Ok(Ok(v)) => Ok(v),
    }
}

async fn ping_rounds(mut stream: libp2p::Stream, count: u64) -> std::io::Result<Vec<f64>> {
    let mut rtts = Vec::new();
    let mut pong = [0u8; 32];
    for i in 0..count {
        let payload = pseudo_random(
            32,
            0x1234_5678_9ABC_DEF0 ^ (i + 1) ^ std::process::id() as u64,
        );
        let t0 = Instant::now();
        stream.write_all(&payload).await?;
        stream.flush().await?;
        stream.read_exact(&mut pong).await?;
        rtts.push(t0.elapsed().as_secs_f64() * 1000.0);
        if pong[..] != payload[..] {
            return Err(std::io::Error::other("ping payload mismatch"));
        }
    }
    stream.close().await?;
    Ok(rtts)
}

/// Send `data` while concurrently reading; half-close; read until EOF.
async fn echo_round(stream: libp2p::Stream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let (mut rd, mut wr) = stream.split();
    let writer = async {
        for chunk in data.chunks(64 * 1024) {
            wr.write_all(chunk).await?;
        }
        wr.close().await
    };
    let reader = async {
        let mut got = Vec::with_capacity(data.len());
        rd.read_to_end(&mut got).await?;
        Ok::<_, std::io::Error>(got)
    };
    let (w, r) = futures::join!(writer, reader);
    w?;
    r
}

async fn perf_client(mut stream: libp2p::Stream, up: u64, down: u64) -> Result<Value, AnyError> {
    let t0 = Instant::now();
    stream.write_all(&down.to_be_bytes()).await?;
    let zeros = vec![0u8; 64 * 1024];
    let mut left = up;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        stream.write_all(&zeros[..n]).await?;
        left -= n as u64;
    }
    stream.close().await?;
    let up_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let down_secs = t1.elapsed().as_secs_f64();
    if got != down {
        return Err(err(format!("perf: asked for {down} bytes, got {got}")));
    }
    let mbps = |bytes: u64, secs: f64| bytes as f64 * 8.0 / secs.max(1e-9) / 1e6;
    Ok(json!({
        "upload_bytes": up,
        "download_bytes": got,
        "upload_mbps": mbps(up, up_secs),
        "download_mbps": mbps(got, down_secs),
    }))
}

// ---------------------------------------------------------------- main

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(async {
        let args = match parse_args() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        };
        if args.mode.starts_with("relay") {
            let outcome = match args.mode.as_str() {
                "relay" => relay::run_relay(&args).await.map(|()| None),
                "relay-reserve" => relay::run_reserve(&args).await.map(|()| None),
                _ => relay::run_dial(&args).await.map(Some),
            };
            match outcome {
                Ok(None) => 0,
                Ok(Some(line)) => {
                    println!("{line}");
                    0
                }
                Err(e) if args.mode == "relay-dial" => {
                    println!("{}", json!({"ok": false, "error": e.to_string()}));
                    1
                }
                Err(e) => {
                    eprintln!("{} failed: {e}", args.mode);
                    1
                }
            }
        } else if args.mode == "pubsub" {
            let ip = args
                .opts
                .get("ip")
                .cloned()
                .unwrap_or_else(|| "127.0.0.1".to_string());
            let result = match keypair(args.opts.get("seed-hex")) {
                Ok(key) => gossip::run(key, &ip).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("pubsub failed: {e}");
                    1
                }
            }
        } else if args.mode == "kad" {
            match kad::run(args.opts.get("seed-hex")).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("kad peer failed: {e}");
                    1
                }
            }
        } else if args.mode == "listen" {
            match listen(&args).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("listen failed: {e}");
                    1
                }
            }
        } else {
            let (line, code) = match dial(&args).await {
                Ok(v) => (v, 0),
                Err(e) => (json!({"ok": false, "error": e.to_string()}), 1),
            };
            println!("{line}");
            let _ = std::io::stdout().flush();
            code
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}
