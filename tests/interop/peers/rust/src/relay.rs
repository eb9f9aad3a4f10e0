//! Circuit relay v2 modes of the rust-libp2p interop peer (see tests/interop/README.md).
//!
//! `rust-peer relay [--ip IP]`: a relay (`relay::Behaviour`, its listen address set as
//!   external so it serves reservations), prints `{"peer_id", "addrs"}`.
//! `rust-peer relay-reserve --relay MA`: reserves on a relay (`relay::client`), serves
//!   /echo/1.0.0, prints `{"peer_id", "addrs": [circuit addr], "limit_*"}`.
//! `rust-peer relay-dial --addr CIRCUIT_MA [--echo-bytes N]`: dials through a relay,
//!   echoes N bytes, prints one JSON report.
//! The first two run until stdin reaches EOF. With `--dcutr 1`, relay-reserve and
//! relay-dial also listen on 127.0.0.1 TCP and run `dcutr::Behaviour` (hole punching);
//! relay-dial then waits for its outcome and reports it.

use std::io::Write as _;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
    dcutr, identify, multiaddr::Protocol, noise, relay, swarm::behaviour::toggle::Toggle,
    swarm::NetworkBehaviour, swarm::SwarmEvent, tcp, yamux, Multiaddr,
};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt as _;

use crate::{err, keypair, opt_u64, pseudo_random, serve_echo, AnyError, Args, AGENT, ECHO};

#[derive(NetworkBehaviour)]
struct ServerBehaviour {
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
}

#[derive(NetworkBehaviour)]
struct ClientBehaviour {
    relay_client: relay::client::Behaviour,
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
    dcutr: Toggle<dcutr::Behaviour>,
}

fn dcutr_enabled(args: &Args) -> bool {
    args.opts.get("dcutr").map(String::as_str) == Some("1")
}

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

fn identify_behaviour(key: &libp2p::identity::Keypair) -> identify::Behaviour {
    identify::Behaviour::new(
        identify::Config::new("/ipfs/0.1.0".to_string(), key.public())
            .with_agent_version(AGENT.to_string()),
    )
}

fn print_line(value: &Value) -> Result<(), AnyError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

async fn stdin_eof() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn client_swarm(args: &Args) -> Result<libp2p::Swarm<ClientBehaviour>, AnyError> {
    let key = keypair(args.opts.get("seed-hex"))?;
    let with_dcutr = dcutr_enabled(args);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay_client| ClientBehaviour {
            relay_client,
            identify: identify_behaviour(key),
            stream: libp2p_stream::Behaviour::new(),
            dcutr: Toggle::from(
                with_dcutr.then(|| dcutr::Behaviour::new(key.public().to_peer_id())),
            ),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    if with_dcutr {
        // Hole punching needs a listener: outbound connections then leave from its port.
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    }
    Ok(swarm)
}

pub async fn run_relay(args: &Args) -> Result<(), AnyError> {
    let ip = args
        .opts
        .get("ip")
        .map(String::as_str)
        .unwrap_or("127.0.0.1");
    let key = keypair(args.opts.get("seed-hex"))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| ServerBehaviour {
            relay: relay::Behaviour::new(key.public().to_peer_id(), relay::Config::default()),
            identify: identify_behaviour(key),
            stream: libp2p_stream::Behaviour::new(),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    let peer_id = *swarm.local_peer_id();
    swarm.listen_on(format!("/ip4/{ip}/tcp/0").parse()?)?;
    let address = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await
    .map_err(|_| err("timed out waiting for a listen address"))?;
    // The relay behaviour only serves reservations once the node has an external address.
    swarm.add_external_address(address.clone());
    print_line(&json!({
        "peer_id": peer_id.to_string(),
        "addrs": [address.with(Protocol::P2p(peer_id)).to_string()],
    }))?;
    let eof = stdin_eof();
    tokio::pin!(eof);
    loop {
        tokio::select! {
            _ = &mut eof => break,
            ev = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(ServerBehaviourEvent::Relay(event)) = ev {
                    eprintln!("relay: {event:?}");
                }
            }
        }
    }
    Ok(())
}

pub async fn run_reserve(args: &Args) -> Result<(), AnyError> {
    let relay_addr: Multiaddr = args
        .opts
        .get("relay")
        .ok_or_else(|| err("relay-reserve needs --relay"))?
        .parse()?;
    let mut swarm = client_swarm(args)?;
    let peer_id = *swarm.local_peer_id();
    let mut control = swarm.behaviour().stream.new_control();
    let mut echo = control.accept(ECHO).map_err(|e| err(e.to_string()))?;
    tokio::spawn(async move {
        while let Some((peer, stream)) = echo.next().await {
            tokio::spawn(async move {
                if let Err(e) = serve_echo(stream).await {
                    eprintln!("echo from {peer}: {e}");
                }
            });
        }
    });
    swarm.listen_on(relay_addr.clone().with(Protocol::P2pCircuit))?;
    let limit = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(ClientBehaviourEvent::RelayClient(
                    relay::client::Event::ReservationReqAccepted { limit, .. },
                )) => return Ok(limit),
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(err(format!("reservation listener closed: {reason:?}")))
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(err(format!("cannot reach the relay: {error}")))
                }
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| err("no reservation within 30 s"))??;
    let circuit = relay_addr
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(peer_id));
    print_line(&json!({
        "peer_id": peer_id.to_string(),
        "addrs": [circuit.to_string()],
        "limit_duration_s": limit.as_ref().and_then(|l| l.duration()).map(|d| d.as_secs()),
        "limit_data_bytes": limit.as_ref().and_then(|l| l.data_in_bytes()),
    }))?;
    let eof = stdin_eof();
    tokio::pin!(eof);
    loop {
        tokio::select! {
            _ = &mut eof => break,
            ev = swarm.select_next_some() => {
                match ev {
                    SwarmEvent::Behaviour(ClientBehaviourEvent::RelayClient(event)) => {
                        eprintln!("relay client: {event:?}");
                    }
                    SwarmEvent::Behaviour(ClientBehaviourEvent::Dcutr(event)) => {
                        eprintln!("dcutr: {event:?}");
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

pub async fn run_dial(args: &Args) -> Result<Value, AnyError> {
    let addr: Multiaddr = args
        .opts
        .get("addr")
        .ok_or_else(|| err("relay-dial needs --addr"))?
        .parse()?;
    let Some(Protocol::P2p(target)) = addr.iter().last() else {
        return Err(err("--addr must end with /p2p/<peer id>"));
    };
    let echo_bytes = opt_u64(args, "echo-bytes")?.unwrap_or(1024) as usize;
    let mut swarm = client_swarm(args)?;
    let mut control = swarm.behaviour().stream.new_control();
    let start = Instant::now();
    swarm.dial(addr)?;
    let remote: Multiaddr = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished {
                    peer_id, endpoint, ..
                } if peer_id == target => return Ok(endpoint.get_remote_address().clone()),
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. }
                    if peer_id == Some(target) =>
                {
                    return Err(err(format!("dial failed: {error}")))
                }
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| err("no connection within 30 s"))??;
    let connect_ms = start.elapsed().as_secs_f64() * 1000.0;
    let mut dcutr_report = Value::Null;
    let mut direct_addr: Option<Multiaddr> = None;
    if dcutr_enabled(args) {
        let outcome = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::Behaviour(ClientBehaviourEvent::Dcutr(event))
                        if event.remote_peer_id == target =>
                    {
                        return event.result.map(|_| ()).map_err(|e| e.to_string())
                    }
                    SwarmEvent::ConnectionEstablished {
                        peer_id, endpoint, ..
                    } if peer_id == target && !is_relayed(endpoint.get_remote_address()) => {
                        direct_addr = Some(endpoint.get_remote_address().clone());
                    }
                    _ => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err("no DCUtR outcome within 20 s".to_string()));
        dcutr_report = match outcome {
            Ok(()) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error": e}),
        };
    }
    // Keep the swarm running while the echo runs on its own task.
    let echo = tokio::spawn(async move {
        let data = pseudo_random(echo_bytes, 11);
        let stream = control
            .open_stream(target, ECHO)
            .await
            .map_err(|e| err(e.to_string()))?;
        let (mut rd, mut wr) = stream.split();
        let sent = data.clone();
        let writer = async move {
            wr.write_all(&sent).await?;
            wr.close().await
        };
        let reader = async move {
            let mut got = Vec::new();
            rd.read_to_end(&mut got).await?;
            Ok::<_, std::io::Error>(got)
        };
        let (written, got) = futures::join!(writer, reader);
        written?;
        let got = got?;
        if got != data {
            return Err(err(format!(
                "echo mismatch: {} of {} bytes",
                got.len(),
                data.len()
            )));
        }
        Ok::<_, AnyError>(())
    });
    tokio::pin!(echo);
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            tokio::select! {
                done = &mut echo => return done,
                _ = swarm.select_next_some() => {}
            }
        }
    })
    .await
    .map_err(|_| err("echo did not finish within 60 s"))?;
    outcome.map_err(|e| err(e.to_string()))??;
    Ok(json!({
        "ok": true,
        "remote_peer_id": target.to_string(),
        "remote_addr": remote.to_string(),
        "connect_ms": connect_ms,
        "echo_ok": true,
        "echo_bytes": echo_bytes,
        "relayed": is_relayed(&remote),
        "dcutr": dcutr_report,
        "direct_addr": direct_addr.map(|a| a.to_string()),
    }))
}
