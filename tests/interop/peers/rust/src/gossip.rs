//! GossipSub mode of the rust-libp2p interop peer: `rust-peer pubsub [--ip IP] [--seed-hex HEX]`.
//!
//! The JSON-lines contract of tests/interop/README.md ("Pubsub peers"): print
//! `{"event":"listening",...}`, then one JSON command per stdin line (connect,
//! subscribe, publish, peers); every received message prints as `{"event":"message",...}`.
//! rust-libp2p's default message ID is not the spec's: it is set to `from` + `seqno`
//! (raw bytes, seqno as 8 big-endian bytes), as go, js and py compute it.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    gossipsub, identify, identity, multiaddr::Protocol, noise, swarm::NetworkBehaviour,
    swarm::SwarmEvent, tcp, yamux, Multiaddr, PeerId,
};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;

const AGENT: &str = "neonet-interop/rust-libp2p/0.57.1";

type AnyError = Box<dyn std::error::Error + Send + Sync>;

#[derive(NetworkBehaviour)]
struct PubsubBehaviour {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
}

fn emit(event: Value) {
    println!("{event}");
}

fn to_hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Result<Vec<u8>, AnyError> {
    if !text.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.into()))
        .collect()
}

fn spec_message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let mut id = message.source.map(|p| p.to_bytes()).unwrap_or_default();
    if let Some(seqno) = message.sequence_number {
        id.extend_from_slice(&seqno.to_be_bytes());
    }
    gossipsub::MessageId::from(id)
}

pub async fn run(key: identity::Keypair, ip: &str) -> Result<(), AnyError> {
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_secs(1))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .message_id_fn(spec_message_id)
        .build()?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            Ok(PubsubBehaviour {
                gossipsub: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    config,
                )?,
                identify: identify::Behaviour::new(
                    identify::Config::new("/ipfs/0.1.0".to_string(), key.public())
                        .with_agent_version(AGENT.to_string()),
                ),
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    let family = if ip.contains(':') { "ip6" } else { "ip4" };
    swarm.listen_on(format!("/{family}/{ip}/tcp/0").parse()?)?;
    let local = *swarm.local_peer_id();
    let listen_addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    emit(json!({
        "event": "listening",
        "peer_id": local.to_string(),
        "addrs": [listen_addr.with(Protocol::P2p(local)).to_string()],
    }));

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut pending: HashMap<PeerId, ()> = HashMap::new();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                if line.trim().is_empty() {
                    continue;
                }
                if let Err(e) = handle(&mut swarm, &line, &mut pending) {
                    emit(json!({"event": "error", "cmd": line, "error": e.to_string()}));
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(PubsubBehaviourEvent::Gossipsub(
                    gossipsub::Event::Message { message, .. },
                )) => emit(json!({
                    "event": "message",
                    "topic": message.topic.to_string(),
                    "data": to_hex(&message.data),
                    "from": message.source.map(|p| p.to_string()),
                })),
                SwarmEvent::ConnectionEstablished { peer_id, .. }
                    if pending.remove(&peer_id).is_some() =>
                {
                    emit(json!({"event": "connected", "peer_id": peer_id.to_string()}));
                }
                SwarmEvent::OutgoingConnectionError { peer_id: Some(peer_id), error, .. }
                    if pending.remove(&peer_id).is_some() =>
                {
                    emit(json!({"event": "error", "cmd": "connect", "error": error.to_string()}));
                }
                _ => {}
            }
        }
    }
}

fn handle(
    swarm: &mut libp2p::Swarm<PubsubBehaviour>,
    line: &str,
    pending: &mut HashMap<PeerId, ()>,
) -> Result<(), AnyError> {
    let command: Value = serde_json::from_str(line)?;
    let field = |name: &str| -> Result<String, AnyError> {
        command[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("missing {name}").into())
    };
    match field("cmd")?.as_str() {
        "connect" => {
            let addr: Multiaddr = field("addr")?.parse()?;
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err("address without /p2p".into());
            };
            pending.insert(peer, ());
            swarm.dial(addr)?;
        }
        "subscribe" => {
            let topic = field("topic")?;
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&gossipsub::IdentTopic::new(topic.clone()))?;
            emit(json!({"event": "subscribed", "topic": topic}));
        }
        "publish" => {
            let topic = field("topic")?;
            let data = from_hex(&field("data")?)?;
            swarm
                .behaviour_mut()
                .gossipsub
                .publish(gossipsub::IdentTopic::new(topic.clone()), data)?;
            emit(json!({"event": "published", "topic": topic}));
        }
        "peers" => {
            let topic = field("topic")?;
            let hash = gossipsub::IdentTopic::new(topic.clone()).hash();
            let mut peers: Vec<String> = swarm
                .behaviour()
                .gossipsub
                .all_peers()
                .filter(|(_, topics)| topics.contains(&&hash))
                .map(|(p, _)| p.to_string())
                .collect();
            peers.sort();
            emit(json!({"event": "peers", "topic": topic, "peers": peers}));
        }
        other => return Err(format!("unknown command {other:?}").into()),
    }
    Ok(())
}
