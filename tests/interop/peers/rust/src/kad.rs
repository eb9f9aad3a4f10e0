//! `rust-peer kad [--seed-hex HEX]`: a rust-libp2p Kademlia peer for NeoNet's harness.
//!
//! Listens on 127.0.0.1 TCP port 0 with Noise + yamux, runs the stock `kad::Behaviour`
//! (protocol /ipfs/kad/1.0.0, `Mode::Server` set explicitly, in-memory store that
//! accepts any record) plus identify, prints `{"peer_id": ..., "addrs": [...]}` and
//! then answers one JSON command per stdin line with one JSON line, exactly like
//! `tests/interop/peers/py/kad_peer.py`: bootstrap, put, get, provide,
//! find_providers, find_peer, table. It exits at EOF.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    identify, identity, kad, multiaddr::Protocol, noise, swarm::NetworkBehaviour,
    swarm::SwarmEvent, tcp, yamux, Multiaddr, PeerId, StreamProtocol,
};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;

use crate::{err, AnyError};

const KAD: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");
const AGENT: &str = "neonet-interop/rust-libp2p/0.57.1";

#[derive(NetworkBehaviour)]
struct KadBehaviour {
    kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
}

/// A command waiting for its query to finish.
enum Pending {
    Bootstrap,
    Put,
    Get,
    Provide,
    Providers(HashSet<PeerId>),
    FindPeer(PeerId),
}

fn reply(value: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn hex_decode(text: &str) -> Result<Vec<u8>, AnyError> {
    if text.len() % 2 != 0 {
        return Err(err("odd hex length"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| err(e.to_string())))
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text<'a>(command: &'a Value, name: &str) -> Result<&'a str, AnyError> {
    command[name]
        .as_str()
        .ok_or_else(|| err(format!("missing {name}")))
}

/// Start a query for `command`; Ok(None) means it was answered at once.
fn start(
    swarm: &mut libp2p::Swarm<KadBehaviour>,
    command: &Value,
) -> Result<Option<(kad::QueryId, Pending)>, AnyError> {
    let kad = &mut swarm.behaviour_mut().kad;
    match text(command, "cmd")? {
        "bootstrap" => {
            let mut addrs = Vec::new();
            for entry in command["addrs"]
                .as_array()
                .ok_or_else(|| err("missing addrs"))?
            {
                let addr: Multiaddr = entry.as_str().ok_or_else(|| err("bad addr"))?.parse()?;
                let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                    return Err(err("bootstrap address without /p2p/"));
                };
                let mut plain = addr.clone();
                plain.pop();
                kad.add_address(&peer, plain);
                addrs.push(addr);
            }
            for addr in addrs {
                swarm.dial(addr)?;
            }
            let id = swarm.behaviour_mut().kad.bootstrap()?;
            Ok(Some((id, Pending::Bootstrap)))
        }
        "put" => {
            let key = kad::RecordKey::new(&text(command, "key")?);
            let value = hex_decode(text(command, "value_hex")?)?;
            let id = kad.put_record(kad::Record::new(key, value), kad::Quorum::One)?;
            Ok(Some((id, Pending::Put)))
        }
        "get" => {
            let id = kad.get_record(kad::RecordKey::new(&text(command, "key")?));
            Ok(Some((id, Pending::Get)))
        }
        "provide" => {
            let key = kad::RecordKey::new(&hex_decode(text(command, "key_hex")?)?);
            Ok(Some((kad.start_providing(key)?, Pending::Provide)))
        }
        "find_providers" => {
            let key = kad::RecordKey::new(&hex_decode(text(command, "key_hex")?)?);
            Ok(Some((
                kad.get_providers(key),
                Pending::Providers(HashSet::new()),
            )))
        }
        "find_peer" => {
            let peer: PeerId = text(command, "peer_id")?.parse()?;
            Ok(Some((kad.get_closest_peers(peer), Pending::FindPeer(peer))))
        }
        "table" => {
            let mut peers = Vec::new();
            for bucket in kad.kbuckets() {
                for entry in bucket.iter() {
                    peers.push(entry.node.key.preimage().to_string());
                }
            }
            reply(json!({"ok": true, "peers": peers}));
            Ok(None)
        }
        other => Err(err(format!("unknown command {other:?}"))),
    }
}

/// Handle one query event; Some(answer) when the command is done.
fn progress(pending: &mut Pending, result: kad::QueryResult, last: bool) -> Option<Value> {
    use kad::QueryResult as R;
    match (pending, result) {
        (Pending::Bootstrap, R::Bootstrap(r)) => {
            let done = last || matches!(&r, Ok(ok) if ok.num_remaining == 0);
            done.then(|| json!({"ok": true}))
        }
        (Pending::Put, R::PutRecord(r)) => Some(match r {
            Ok(_) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        }),
        (Pending::Get, R::GetRecord(r)) => match r {
            Ok(kad::GetRecordOk::FoundRecord(found)) => {
                Some(json!({"ok": true, "value_hex": hex_encode(&found.record.value)}))
            }
            Ok(_) | Err(_) if last => Some(json!({"ok": true, "value_hex": null})),
            _ => None,
        },
        (Pending::Provide, R::StartProviding(r)) => Some(match r {
            Ok(_) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        }),
        (Pending::Providers(found), R::GetProviders(r)) => {
            if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = r {
                found.extend(providers);
            }
            last.then(|| {
                let ids: Vec<String> = found.iter().map(PeerId::to_string).collect();
                json!({"ok": true, "providers": ids})
            })
        }
        (Pending::FindPeer(target), R::GetClosestPeers(r)) => {
            let peers = match r {
                Ok(ok) => ok.peers,
                Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
            };
            let addrs: Vec<String> = peers
                .iter()
                .filter(|info| info.peer_id == *target)
                .flat_map(|info| info.addrs.iter().map(Multiaddr::to_string))
                .collect();
            Some(json!({"ok": true, "addrs": addrs}))
        }
        _ => None,
    }
}

pub async fn run(seed_hex: Option<&String>) -> Result<(), AnyError> {
    let key: identity::Keypair = crate::keypair(seed_hex)?;
    let local = key.public().to_peer_id();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let mut config = kad::Config::new(KAD);
            config.set_query_timeout(Duration::from_secs(30));
            let mut kad =
                kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), config);
            kad.set_mode(Some(kad::Mode::Server));
            KadBehaviour {
                kad,
                identify: identify::Behaviour::new(
                    identify::Config::new("/ipfs/0.1.0".to_string(), key.public())
                        .with_agent_version(AGENT.to_string()),
                ),
            }
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let listen_addr = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await
    .map_err(|_| err("timed out waiting for a listen address"))?;
    let full = listen_addr.with(Protocol::P2p(local));
    reply(json!({"peer_id": local.to_string(), "addrs": [full.to_string()]}));

    let (lines_tx, mut lines) = mpsc::channel::<String>(16);
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines_tx.send(line).await.is_err() {
                break;
            }
        }
    });
    let mut pending: HashMap<kad::QueryId, Pending> = HashMap::new();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { return Ok(()) };
                if line.trim().is_empty() {
                    continue;
                }
                let outcome = serde_json::from_str::<Value>(&line)
                    .map_err(AnyError::from)
                    .and_then(|command| start(&mut swarm, &command));
                match outcome {
                    Ok(Some((id, what))) => {
                        pending.insert(id, what);
                    }
                    Ok(None) => {}
                    Err(e) => reply(json!({"ok": false, "error": e.to_string()})),
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(KadBehaviourEvent::Kad(
                    kad::Event::OutboundQueryProgressed { id, result, step, .. },
                )) => {
                    if let Some(what) = pending.get_mut(&id) {
                        if let Some(answer) = progress(what, result, step.last) {
                            pending.remove(&id);
                            reply(answer);
                        }
                    }
                }
                SwarmEvent::Behaviour(KadBehaviourEvent::Identify(
                    identify::Event::Received { peer_id, info, .. },
                )) => {
                    if info.protocols.contains(&KAD) {
                        for addr in info.listen_addrs {
                            swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                        }
                    }
                }
                _ => {}
            },
        }
    }
}
