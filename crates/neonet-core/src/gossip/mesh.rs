//! Per-topic mesh, fan-out, subscriptions, scores and backoffs of one GossipSub router.
//!
//! Mirrors `neonet.core.gossip.MeshState` step by step (that module's docstring gives the
//! heartbeat order and the sampling rules). Peers are interned: every known peer has a
//! `PeerHandle`, valid until `remove_peer`, and all per-topic peer lists are kept sorted
//! by peer ID bytes so that candidate lists come out in the documented order.
//!
//! Files: this one holds the interned peers and topics, [`MeshState`] and its peer,
//! subscription, backoff, JOIN/LEAVE, control-message and query methods;
//! `mesh/params.rs` the router parameters and the result types ([`PeerProtocol`],
//! [`GossipParams`], [`GraftVerdict`], [`Heartbeat`]); `mesh/backoffs.rs` the bounded
//! PRUNE backoff store; `mesh/heartbeat.rs` the heartbeat (mesh and fan-out upkeep) and
//! `publish_targets` (a second impl block); `mesh/tests.rs` the unit tests.

mod backoffs;
mod heartbeat;
mod params;

use hashbrown::HashMap;

use crate::gossip::{check_time, SplitMix64, MAX_COUNT};
use crate::Error;
use backoffs::Backoffs;
use params::invalid;
pub use params::{GossipParams, GraftVerdict, Heartbeat, PeerProtocol};

/// Index of a known peer (reused after the peer is removed).
pub type PeerHandle = u32;
type TopicHandle = u32;

/// Longest accepted peer ID, in bytes.
pub const MAX_PEER_ID_LENGTH: usize = 128;
/// Longest accepted topic, in bytes of UTF-8.
pub const MAX_TOPIC_LENGTH: usize = 1024;

#[derive(Debug)]
struct Peer {
    id: Box<[u8]>,
    outbound: bool,
    floodsub: bool,
    explicit: bool,
    score: f64,
    topics: Vec<TopicHandle>,
}

impl Peer {
    fn meshable(&self) -> bool {
        !self.floodsub && !self.explicit
    }
}

#[derive(Debug)]
struct Topic {
    name: Box<str>,
    subscribers: Vec<PeerHandle>,    // sorted by peer ID
    extras: Vec<PeerHandle>,         // floodsub and explicit subscribers, sorted
    mesh: Option<Vec<PeerHandle>>,   // sorted; Some when joined
    fanout: Option<Vec<PeerHandle>>, // sorted; Some while fan-out state exists
    last_published: f64,
}

impl Topic {
    fn unused(&self) -> bool {
        self.subscribers.is_empty() && self.mesh.is_none() && self.fanout.is_none()
    }
}

fn peer_of(peers: &[Option<Peer>], handle: PeerHandle) -> &Peer {
    peers[handle as usize]
        .as_ref()
        .expect("peer lists hold live handles only")
}

fn position(peers: &[Option<Peer>], list: &[PeerHandle], id: &[u8]) -> Result<usize, usize> {
    list.binary_search_by(|&other| peer_of(peers, other).id[..].cmp(id))
}

fn insert_sorted(peers: &[Option<Peer>], list: &mut Vec<PeerHandle>, handle: PeerHandle) {
    if let Err(index) = position(peers, list, &peer_of(peers, handle).id) {
        list.insert(index, handle);
    }
}

fn remove_sorted(peers: &[Option<Peer>], list: &mut Vec<PeerHandle>, handle: PeerHandle) -> bool {
    match position(peers, list, &peer_of(peers, handle).id) {
        Ok(index) => {
            list.remove(index);
            true
        }
        Err(_) => false,
    }
}

fn sort_by_id(peers: &[Option<Peer>], list: &mut [PeerHandle]) {
    list.sort_unstable_by(|&a, &b| peer_of(peers, a).id.cmp(&peer_of(peers, b).id));
}

/// Mesh, fan-out, subscriptions, scores and backoffs (see `neonet.core.gossip.MeshState`).
#[derive(Debug)]
pub struct MeshState {
    params: GossipParams,
    peers: Vec<Option<Peer>>,
    free_peers: Vec<PeerHandle>,
    peer_index: HashMap<Box<[u8]>, PeerHandle>,
    topics: Vec<Option<Topic>>,
    free_topics: Vec<TopicHandle>,
    topic_index: HashMap<Box<str>, TopicHandle>,
    backoffs: Backoffs,
    ticks: u64,
}

impl MeshState {
    /// An empty state; `params` must validate.
    pub fn new(params: GossipParams) -> Result<Self, Error> {
        params.validate()?;
        let backoffs = Backoffs {
            map: HashMap::new(),
            count: 0,
            capacity: params.max_backoffs,
            slack: params.backoff_slack,
        };
        Ok(Self {
            params,
            peers: Vec::new(),
            free_peers: Vec::new(),
            peer_index: HashMap::new(),
            topics: Vec::new(),
            free_topics: Vec::new(),
            topic_index: HashMap::new(),
            backoffs,
            ticks: 0,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &GossipParams {
        &self.params
    }

    /// The ID bytes of a live handle.
    pub fn peer_id(&self, handle: PeerHandle) -> &[u8] {
        &peer_of(&self.peers, handle).id
    }

    /// The handle of a known peer.
    pub fn peer_handle(&self, id: &[u8]) -> Option<PeerHandle> {
        self.peer_index.get(id).copied()
    }

    fn handle(&self, id: &[u8]) -> Result<PeerHandle, Error> {
        self.peer_handle(id).ok_or_else(|| invalid("unknown peer"))
    }

    fn peer(&self, handle: PeerHandle) -> &Peer {
        peer_of(&self.peers, handle)
    }

    fn peer_mut(&mut self, handle: PeerHandle) -> &mut Peer {
        self.peers[handle as usize]
            .as_mut()
            .expect("live peer handle")
    }

    fn topic(&self, handle: TopicHandle) -> &Topic {
        self.topics[handle as usize]
            .as_ref()
            .expect("live topic handle")
    }

    fn topic_mut(&mut self, handle: TopicHandle) -> &mut Topic {
        self.topics[handle as usize]
            .as_mut()
            .expect("live topic handle")
    }

    fn score(&self, handle: PeerHandle) -> f64 {
        self.peer(handle).score
    }

    // -- peers, subscriptions, scores ---------------------------------------------------

    /// A peer speaking `protocol` (a floodsub or meshsub protocol ID) connected.
    pub fn add_peer(
        &mut self,
        id: &[u8],
        outbound: bool,
        protocol: &str,
        explicit: bool,
    ) -> Result<PeerHandle, Error> {
        if id.is_empty() || id.len() > MAX_PEER_ID_LENGTH {
            return Err(invalid(format!(
                "peer ID must be 1 to {MAX_PEER_ID_LENGTH} bytes"
            )));
        }
        let protocol = PeerProtocol::from_protocol_id(protocol)?;
        if self.peer_index.contains_key(id) {
            return Err(invalid("peer already known"));
        }
        if self.peer_index.len() >= self.params.max_peers {
            return Err(invalid("max_peers reached"));
        }
        let peer = Peer {
            id: Box::from(id),
            outbound,
            floodsub: protocol == PeerProtocol::Floodsub,
            explicit,
            score: 0.0,
            topics: Vec::new(),
        };
        let handle = match self.free_peers.pop() {
            Some(handle) => {
                self.peers[handle as usize] = Some(peer);
                handle
            }
            None => {
                self.peers.push(Some(peer));
                (self.peers.len() - 1) as PeerHandle
            }
        };
        self.peer_index.insert(Box::from(id), handle);
        Ok(handle)
    }

    /// A peer disconnected; returns its (now free) handle.
    pub fn remove_peer(&mut self, id: &[u8]) -> Result<PeerHandle, Error> {
        let handle = self.handle(id)?;
        let topics = std::mem::take(&mut self.peer_mut(handle).topics);
        for topic in topics {
            self.drop_subscription(handle, topic);
        }
        self.peer_index.remove(id);
        self.peers[handle as usize] = None;
        self.free_peers.push(handle);
        Ok(handle)
    }

    /// Sets a peer's score; unknown peers are ignored, NaN is an error.
    pub fn set_score(&mut self, id: &[u8], score: f64) -> Result<(), Error> {
        if score.is_nan() {
            return Err(invalid("score is NaN"));
        }
        if let Some(handle) = self.peer_handle(id) {
            self.peer_mut(handle).score = score;
        }
        Ok(())
    }

    fn new_topic(&mut self, name: &str) -> TopicHandle {
        let topic = Topic {
            name: Box::from(name),
            subscribers: Vec::new(),
            extras: Vec::new(),
            mesh: None,
            fanout: None,
            last_published: 0.0,
        };
        let handle = match self.free_topics.pop() {
            Some(handle) => {
                self.topics[handle as usize] = Some(topic);
                handle
            }
            None => {
                self.topics.push(Some(topic));
                (self.topics.len() - 1) as TopicHandle
            }
        };
        self.topic_index.insert(Box::from(name), handle);
        handle
    }

    fn release_topic_if_unused(&mut self, handle: TopicHandle) {
        if self.topic(handle).unused() {
            if let Some(topic) = self.topics[handle as usize].take() {
                self.topic_index.remove(&topic.name);
            }
            self.free_topics.push(handle);
        }
    }

    fn topic_for_local_use(&mut self, name: &str) -> Result<TopicHandle, Error> {
        if let Some(&handle) = self.topic_index.get(name) {
            return Ok(handle);
        }
        if name.len() > MAX_TOPIC_LENGTH {
            return Err(invalid(format!(
                "topic longer than {MAX_TOPIC_LENGTH} bytes"
            )));
        }
        if self.topic_index.len() >= self.params.max_topics {
            return Err(invalid("max_topics reached"));
        }
        Ok(self.new_topic(name))
    }

    /// The peer announced SUBSCRIBE; false when refused by a bound.
    pub fn peer_subscribed(&mut self, id: &[u8], topic: &str) -> Result<bool, Error> {
        let handle = self.handle(id)?;
        Ok(self.subscribe(handle, topic))
    }

    fn subscribe(&mut self, handle: PeerHandle, name: &str) -> bool {
        let existing = self.topic_index.get(name).copied();
        let peer = self.peer(handle);
        if existing.is_some_and(|topic| peer.topics.contains(&topic)) {
            return true;
        }
        if peer.topics.len() >= self.params.max_topics_per_peer {
            return false;
        }
        let topic = match existing {
            None => {
                if name.len() > MAX_TOPIC_LENGTH || self.topic_index.len() >= self.params.max_topics
                {
                    return false;
                }
                self.new_topic(name)
            }
            Some(topic) => {
                if self.topic(topic).subscribers.len() >= self.params.max_peers_per_topic {
                    return false;
                }
                topic
            }
        };
        let extra = {
            let peer = self.peer(handle);
            peer.floodsub || peer.explicit
        };
        let peers = &self.peers;
        let state = self.topics[topic as usize].as_mut().expect("live topic");
        insert_sorted(peers, &mut state.subscribers, handle);
        if extra {
            insert_sorted(peers, &mut state.extras, handle);
        }
        self.peer_mut(handle).topics.push(topic);
        true
    }

    /// The peer announced UNSUBSCRIBE; it also leaves that topic's mesh and fan-out.
    pub fn peer_unsubscribed(&mut self, id: &[u8], topic: &str) -> Result<(), Error> {
        let handle = self.handle(id)?;
        if let Some(&topic) = self.topic_index.get(topic) {
            if self.peer(handle).topics.contains(&topic) {
                self.peer_mut(handle).topics.retain(|&other| other != topic);
                self.drop_subscription(handle, topic);
            }
        }
        Ok(())
    }

    fn drop_subscription(&mut self, handle: PeerHandle, topic: TopicHandle) {
        let peers = &self.peers;
        let state = self.topics[topic as usize].as_mut().expect("live topic");
        remove_sorted(peers, &mut state.subscribers, handle);
        remove_sorted(peers, &mut state.extras, handle);
        if let Some(mesh) = state.mesh.as_mut() {
            remove_sorted(peers, mesh, handle);
        }
        if let Some(fanout) = state.fanout.as_mut() {
            remove_sorted(peers, fanout, handle);
        }
        self.release_topic_if_unused(topic);
    }

    // -- backoff ------------------------------------------------------------------------

    /// When the backoff of `id` on `topic` ends, if one is recorded.
    pub fn backoff_until(&self, id: &[u8], topic: &str) -> Option<f64> {
        self.backoffs.until(topic, id)
    }

    fn add_backoff(&mut self, handle: PeerHandle, topic: &str, until: f64, now: f64) {
        let id = &peer_of(&self.peers, handle).id;
        self.backoffs.add(topic, id, until, now);
    }

    // -- candidates ---------------------------------------------------------------------

    /// Subscribed meshable peers outside `exclude`, score >= 0, no backoff (with slack).
    fn graft_candidates(
        &self,
        topic: TopicHandle,
        now: f64,
        exclude: &[PeerHandle],
    ) -> Vec<PeerHandle> {
        let state = self.topic(topic);
        let backoffs = self.backoffs.map.get(&state.name);
        let slack = self.backoffs.slack;
        state
            .subscribers
            .iter()
            .copied()
            .filter(|&handle| {
                let peer = self.peer(handle);
                peer.meshable()
                    && !exclude.contains(&handle)
                    && peer.score >= 0.0
                    && backoffs
                        .and_then(|per_topic| per_topic.get(&peer.id))
                        .is_none_or(|&until| now >= until + slack)
            })
            .collect()
    }

    fn fanout_candidates(&self, topic: TopicHandle, exclude: &[PeerHandle]) -> Vec<PeerHandle> {
        let threshold = self.params.publish_threshold;
        self.topic(topic)
            .subscribers
            .iter()
            .copied()
            .filter(|&handle| {
                let peer = self.peer(handle);
                peer.meshable() && !exclude.contains(&handle) && peer.score >= threshold
            })
            .collect()
    }

    fn sorted_topics(&self, wanted: impl Fn(&Topic) -> bool) -> Vec<TopicHandle> {
        let mut found: Vec<TopicHandle> = self
            .topics
            .iter()
            .enumerate()
            .filter_map(|(handle, topic)| {
                topic
                    .as_ref()
                    .filter(|topic| wanted(topic))
                    .map(|_| handle as TopicHandle)
            })
            .collect();
        found.sort_unstable_by(|&a, &b| self.topic(a).name.cmp(&self.topic(b).name));
        found
    }

    // -- JOIN / LEAVE -------------------------------------------------------------------

    /// JOIN(topic): the mesh from fan-out, then subscribers; returns the peers to GRAFT.
    pub fn join(&mut self, name: &str, now: f64, seed: u64) -> Result<Vec<PeerHandle>, Error> {
        check_time(now)?;
        let mut rng = SplitMix64::new(seed);
        let topic = self.topic_for_local_use(name)?;
        if self.topic(topic).mesh.is_some() {
            return Ok(Vec::new());
        }
        let d = self.params.d;
        let mut chosen = Vec::new();
        if let Some(fanout) = self.topic_mut(topic).fanout.take() {
            let eligible = self.graft_candidates(topic, now, &[]);
            chosen = fanout
                .into_iter()
                .filter(|handle| eligible.contains(handle))
                .collect();
            rng.sample(&mut chosen, d);
        }
        let mut mesh = chosen.clone();
        sort_by_id(&self.peers, &mut mesh);
        if chosen.len() < d {
            let mut more = self.graft_candidates(topic, now, &mesh);
            rng.sample(&mut more, d - chosen.len());
            chosen.extend(more);
            mesh.clone_from(&chosen);
            sort_by_id(&self.peers, &mut mesh);
        }
        self.topic_mut(topic).mesh = Some(mesh);
        Ok(chosen)
    }

    /// LEAVE(topic): returns the PRUNEs (peer, topic, `unsubscribe_backoff`) to send.
    pub fn leave(&mut self, name: &str, now: f64) -> Result<Vec<(PeerHandle, String, f64)>, Error> {
        check_time(now)?;
        let Some(&topic) = self.topic_index.get(name) else {
            return Ok(Vec::new());
        };
        let Some(mesh) = self.topic_mut(topic).mesh.take() else {
            return Ok(Vec::new());
        };
        let backoff = self.params.unsubscribe_backoff;
        for &handle in &mesh {
            self.add_backoff(handle, name, now + backoff, now);
        }
        self.release_topic_if_unused(topic);
        Ok(mesh
            .into_iter()
            .map(|handle| (handle, name.to_owned(), backoff))
            .collect())
    }

    // -- control messages ---------------------------------------------------------------

    /// An incoming GRAFT (v1.1 rules; refusals back the peer off `prune_backoff`).
    pub fn handle_graft(&mut self, id: &[u8], name: &str, now: f64) -> Result<GraftVerdict, Error> {
        check_time(now)?;
        let handle = self.handle(id)?;
        let Some(&topic) = self.topic_index.get(name) else {
            return Ok(GraftVerdict::Ignored);
        };
        let peer = self.peer(handle);
        let Some(mesh) = self.topic(topic).mesh.as_ref() else {
            return Ok(GraftVerdict::Ignored);
        };
        if peer.floodsub {
            return Ok(GraftVerdict::Ignored);
        }
        if peer.explicit {
            return Ok(GraftVerdict::RefusedExplicit);
        }
        if position(&self.peers, mesh, id).is_ok() {
            return Ok(GraftVerdict::Ignored);
        }
        let refusal = if self
            .backoffs
            .until(name, id)
            .is_some_and(|until| now < until)
        {
            Some(GraftVerdict::RefusedBackoff)
        } else if peer.score < 0.0 {
            Some(GraftVerdict::RefusedScore)
        } else if mesh.len() >= self.params.d_hi && !peer.outbound {
            Some(GraftVerdict::RefusedFull)
        } else {
            None
        };
        if let Some(verdict) = refusal {
            self.add_backoff(handle, name, now + self.params.prune_backoff, now);
            return Ok(verdict);
        }
        if !self.peer(handle).topics.contains(&topic) && !self.subscribe(handle, name) {
            return Ok(GraftVerdict::Ignored);
        }
        let peers = &self.peers;
        let state = self.topics[topic as usize].as_mut().expect("live topic");
        insert_sorted(peers, state.mesh.as_mut().expect("joined"), handle);
        Ok(GraftVerdict::Accepted)
    }

    /// An incoming PRUNE: leave the mesh, back off `backoff` seconds (else the default).
    /// Returns whether the peer was in the mesh; PRUNEs for topics not joined are ignored.
    pub fn handle_prune(
        &mut self,
        id: &[u8],
        name: &str,
        backoff: Option<f64>,
        now: f64,
    ) -> Result<bool, Error> {
        check_time(now)?;
        if backoff.is_some_and(|seconds| !(seconds.is_finite() && seconds >= 0.0)) {
            return Err(invalid("backoff must be a finite number of seconds >= 0"));
        }
        let handle = self.handle(id)?;
        let Some(&topic) = self.topic_index.get(name) else {
            return Ok(false);
        };
        let peers = &self.peers;
        let state = self.topics[topic as usize].as_mut().expect("live topic");
        let Some(mesh) = state.mesh.as_mut() else {
            return Ok(false);
        };
        let removed = remove_sorted(peers, mesh, handle);
        let duration = backoff.unwrap_or(self.params.prune_backoff);
        self.add_backoff(handle, name, now + duration, now);
        Ok(removed)
    }

    // -- queries ------------------------------------------------------------------------

    fn list_of(
        &self,
        name: &str,
        pick: impl Fn(&Topic) -> Option<&Vec<PeerHandle>>,
    ) -> Vec<PeerHandle> {
        self.topic_index
            .get(name)
            .and_then(|&topic| pick(self.topic(topic)).cloned())
            .unwrap_or_default()
    }

    /// Mesh members of `name`, ascending (empty unless joined).
    pub fn mesh_peers(&self, name: &str) -> Vec<PeerHandle> {
        self.list_of(name, |topic| topic.mesh.as_ref())
    }

    /// Fan-out members of `name`, ascending.
    pub fn fanout_peers(&self, name: &str) -> Vec<PeerHandle> {
        self.list_of(name, |topic| topic.fanout.as_ref())
    }

    /// Subscribers of `name`, ascending.
    pub fn topic_peers(&self, name: &str) -> Vec<PeerHandle> {
        self.list_of(name, |topic| Some(&topic.subscribers))
    }

    /// Joined topics, ascending.
    pub fn joined_topics(&self) -> Vec<String> {
        self.sorted_topics(|topic| topic.mesh.is_some())
            .into_iter()
            .map(|topic| self.topic(topic).name.to_string())
            .collect()
    }

    /// Topics a peer subscribes to, ascending.
    pub fn peer_topics(&self, id: &[u8]) -> Result<Vec<String>, Error> {
        let handle = self.handle(id)?;
        let mut names: Vec<String> = self
            .peer(handle)
            .topics
            .iter()
            .map(|&topic| self.topic(topic).name.to_string())
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Known peers.
    pub fn peer_count(&self) -> usize {
        self.peer_index.len()
    }

    /// Known topics (subscribed by someone, joined, or with fan-out state).
    pub fn topic_count(&self) -> usize {
        self.topic_index.len()
    }
}

const _: () = assert!(MAX_COUNT > 10_000);

#[cfg(test)]
mod tests;
