//! Per-topic mesh, fan-out, subscriptions, scores and backoffs of one GossipSub router.
//!
//! Mirrors `neonet.core.gossip.MeshState` step by step (that module's docstring gives the
//! heartbeat order and the sampling rules). Peers are interned: every known peer has a
//! `PeerHandle`, valid until `remove_peer`, and all per-topic peer lists are kept sorted
//! by peer ID bytes so that candidate lists come out in the documented order.

use std::cmp::Ordering;

use hashbrown::HashMap;

use crate::gossip::{check_count, check_time, SplitMix64, MAX_COUNT};
use crate::Error;

/// Index of a known peer (reused after the peer is removed).
pub type PeerHandle = u32;
type TopicHandle = u32;

/// Longest accepted peer ID, in bytes.
pub const MAX_PEER_ID_LENGTH: usize = 128;
/// Longest accepted topic, in bytes of UTF-8.
pub const MAX_TOPIC_LENGTH: usize = 1024;

/// The pubsub protocol a peer speaks (floodsub peers are never grafted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerProtocol {
    /// `/floodsub/1.0.0`
    Floodsub,
    /// `/meshsub/1.0.0`
    Meshsub10,
    /// `/meshsub/1.1.0`
    Meshsub11,
    /// `/meshsub/1.2.0`
    Meshsub12,
}

impl PeerProtocol {
    /// Parses a multistream protocol ID.
    pub fn from_protocol_id(protocol: &str) -> Result<Self, Error> {
        match protocol {
            "/floodsub/1.0.0" => Ok(Self::Floodsub),
            "/meshsub/1.0.0" => Ok(Self::Meshsub10),
            "/meshsub/1.1.0" => Ok(Self::Meshsub11),
            "/meshsub/1.2.0" => Ok(Self::Meshsub12),
            other => Err(Error::InvalidArgument(format!(
                "unsupported pubsub protocol {other:?}"
            ))),
        }
    }
}

/// Router parameters; the defaults are the spec's (v1.0 and v1.1 tables).
#[derive(Clone, Debug, PartialEq)]
pub struct GossipParams {
    pub d: usize,
    pub d_lo: usize,
    pub d_hi: usize,
    pub d_lazy: usize,
    pub d_score: usize,
    pub d_out: usize,
    pub gossip_factor: f64,
    pub fanout_ttl: f64,
    pub prune_backoff: f64,
    pub unsubscribe_backoff: f64,
    pub backoff_slack: f64,
    pub opportunistic_graft_ticks: usize,
    pub opportunistic_graft_peers: usize,
    pub opportunistic_graft_threshold: f64,
    pub gossip_threshold: f64,
    pub publish_threshold: f64,
    pub max_peers: usize,
    pub max_topics: usize,
    pub max_topics_per_peer: usize,
    pub max_peers_per_topic: usize,
    pub max_backoffs: usize,
}

impl Default for GossipParams {
    fn default() -> Self {
        Self {
            d: 6,
            d_lo: 5,
            d_hi: 12,
            d_lazy: 6,
            d_score: 4,
            d_out: 2,
            gossip_factor: 0.25,
            fanout_ttl: 60.0,
            prune_backoff: 60.0,
            unsubscribe_backoff: 10.0,
            backoff_slack: 1.0,
            opportunistic_graft_ticks: 60,
            opportunistic_graft_peers: 2,
            opportunistic_graft_threshold: 1.0,
            gossip_threshold: -10.0,
            publish_threshold: -50.0,
            max_peers: 10_000,
            max_topics: 10_000,
            max_topics_per_peer: 1_000,
            max_peers_per_topic: 10_000,
            max_backoffs: 100_000,
        }
    }
}

impl GossipParams {
    /// The same checks as `neonet.core.gossip.GossipParams.__post_init__`.
    pub fn validate(&self) -> Result<(), Error> {
        let counts = [
            ("d", self.d, 0),
            ("d_lo", self.d_lo, 0),
            ("d_hi", self.d_hi, 0),
            ("d_lazy", self.d_lazy, 0),
            ("d_score", self.d_score, 0),
            ("d_out", self.d_out, 0),
            (
                "opportunistic_graft_ticks",
                self.opportunistic_graft_ticks,
                1,
            ),
            (
                "opportunistic_graft_peers",
                self.opportunistic_graft_peers,
                0,
            ),
            ("max_peers", self.max_peers, 1),
            ("max_topics", self.max_topics, 1),
            ("max_topics_per_peer", self.max_topics_per_peer, 1),
            ("max_peers_per_topic", self.max_peers_per_topic, 1),
            ("max_backoffs", self.max_backoffs, 1),
        ];
        for (name, value, minimum) in counts {
            check_count(name, value as u64, minimum)?;
        }
        let floats = [
            ("gossip_factor", self.gossip_factor),
            ("fanout_ttl", self.fanout_ttl),
            ("prune_backoff", self.prune_backoff),
            ("unsubscribe_backoff", self.unsubscribe_backoff),
            ("backoff_slack", self.backoff_slack),
            (
                "opportunistic_graft_threshold",
                self.opportunistic_graft_threshold,
            ),
            ("gossip_threshold", self.gossip_threshold),
            ("publish_threshold", self.publish_threshold),
        ];
        for (name, value) in floats {
            if !value.is_finite() {
                return Err(invalid(format!("{name} must be finite")));
            }
        }
        if !(self.d_lo <= self.d && self.d <= self.d_hi) {
            return Err(invalid("need d_lo <= d <= d_hi"));
        }
        if self.d_score > self.d {
            return Err(invalid("need d_score <= d"));
        }
        if self.d_out * 2 > self.d || (self.d_out >= self.d_lo && self.d_out > 0) {
            return Err(invalid("need d_out < d_lo and d_out <= d / 2"));
        }
        if !(0.0..=1.0).contains(&self.gossip_factor) {
            return Err(invalid("gossip_factor must be in [0, 1]"));
        }
        if self.fanout_ttl <= 0.0 {
            return Err(invalid("fanout_ttl must be positive"));
        }
        if self
            .prune_backoff
            .min(self.unsubscribe_backoff)
            .min(self.backoff_slack)
            < 0.0
        {
            return Err(invalid("backoffs and backoff_slack must not be negative"));
        }
        if !(self.publish_threshold <= self.gossip_threshold && self.gossip_threshold <= 0.0) {
            return Err(invalid("need publish_threshold <= gossip_threshold <= 0"));
        }
        if self.opportunistic_graft_threshold < 0.0 {
            return Err(invalid(
                "opportunistic_graft_threshold must not be negative",
            ));
        }
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

/// What `handle_graft` decided (see `neonet.core.gossip.GraftVerdict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraftVerdict {
    Accepted,
    Ignored,
    RefusedExplicit,
    RefusedBackoff,
    RefusedScore,
    RefusedFull,
}

impl GraftVerdict {
    /// The Python name of the verdict.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Ignored => "ignored",
            Self::RefusedExplicit => "refused_explicit",
            Self::RefusedBackoff => "refused_backoff",
            Self::RefusedScore => "refused_score",
            Self::RefusedFull => "refused_full",
        }
    }
}

/// What one heartbeat decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Heartbeat {
    /// (peer, topic) to GRAFT, already in the mesh.
    pub grafts: Vec<(PeerHandle, String)>,
    /// (peer, topic, backoff seconds) to PRUNE, already out of the mesh and backed off.
    pub prunes: Vec<(PeerHandle, String, f64)>,
    /// Topic -> IHAVE targets, ascending topics, only topics with targets.
    pub gossip: Vec<(String, Vec<PeerHandle>)>,
    /// Topics whose fan-out state expired.
    pub fanout_expired: Vec<String>,
}

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

/// Backoffs per (topic, peer ID), bounded; they outlive the peer's connection.
#[derive(Debug)]
struct Backoffs {
    map: HashMap<Box<str>, HashMap<Box<[u8]>, f64>>,
    count: usize,
    capacity: usize,
    slack: f64,
}

impl Backoffs {
    fn until(&self, topic: &str, id: &[u8]) -> Option<f64> {
        self.map
            .get(topic)
            .and_then(|per_topic| per_topic.get(id))
            .copied()
    }

    fn expire(&mut self, now: f64) {
        let slack = self.slack;
        let mut removed = 0;
        self.map.retain(|_, per_topic| {
            let before = per_topic.len();
            per_topic.retain(|_, until| now < *until + slack);
            removed += before - per_topic.len();
            !per_topic.is_empty()
        });
        self.count -= removed;
    }

    fn add(&mut self, topic: &str, id: &[u8], until: f64, now: f64) {
        if let Some(current) = self
            .map
            .get_mut(topic)
            .and_then(|per_topic| per_topic.get_mut(id))
        {
            if *current < until {
                *current = until;
            }
            return;
        }
        if self.count >= self.capacity {
            self.expire(now);
            if self.count >= self.capacity {
                self.evict_first_ending();
            }
        }
        match self.map.get_mut(topic) {
            Some(per_topic) => {
                per_topic.insert(Box::from(id), until);
            }
            None => {
                let mut per_topic = HashMap::new();
                per_topic.insert(Box::from(id), until);
                self.map.insert(Box::from(topic), per_topic);
            }
        }
        self.count += 1;
    }

    fn evict_first_ending(&mut self) {
        let mut first: Option<(f64, &str, &[u8])> = None;
        for (topic, per_topic) in &self.map {
            for (id, &until) in per_topic {
                let candidate = (until, &topic[..], &id[..]);
                let earlier = match first {
                    None => true,
                    Some(best) => {
                        match candidate.0.partial_cmp(&best.0).unwrap_or(Ordering::Equal) {
                            Ordering::Less => true,
                            Ordering::Greater => false,
                            Ordering::Equal => (candidate.1, candidate.2) < (best.1, best.2),
                        }
                    }
                };
                if earlier {
                    first = Some(candidate);
                }
            }
        }
        if let Some((_, topic, id)) = first {
            let (topic, id) = (topic.to_owned(), id.to_owned());
            if let Some(per_topic) = self.map.get_mut(topic.as_str()) {
                per_topic.remove(id.as_slice());
                if per_topic.is_empty() {
                    self.map.remove(topic.as_str());
                }
            }
            self.count -= 1;
        }
    }
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

    // -- heartbeat ----------------------------------------------------------------------

    /// One heartbeat: mesh and fan-out maintenance, gossip targets.
    pub fn heartbeat(&mut self, now: f64, seed: u64) -> Result<Heartbeat, Error> {
        check_time(now)?;
        let mut rng = SplitMix64::new(seed);
        self.ticks += 1;
        self.backoffs.expire(now);
        let mut decision = Heartbeat::default();
        for topic in self.sorted_topics(|topic| topic.mesh.is_some()) {
            self.maintain_mesh(topic, now, &mut rng, &mut decision);
        }
        for topic in self.sorted_topics(|topic| topic.fanout.is_some()) {
            self.maintain_fanout(topic, now, &mut rng, &mut decision);
        }
        for topic in self.sorted_topics(|topic| topic.mesh.is_some() || topic.fanout.is_some()) {
            let state = self.topic(topic);
            let excluded = state
                .mesh
                .as_deref()
                .or(state.fanout.as_deref())
                .unwrap_or(&[]);
            let threshold = self.params.gossip_threshold;
            let mut candidates: Vec<PeerHandle> = state
                .subscribers
                .iter()
                .copied()
                .filter(|&handle| {
                    let peer = self.peer(handle);
                    peer.meshable() && !excluded.contains(&handle) && peer.score >= threshold
                })
                .collect();
            let by_factor = (self.params.gossip_factor * candidates.len() as f64) as usize;
            rng.sample(&mut candidates, self.params.d_lazy.max(by_factor));
            if !candidates.is_empty() {
                decision.gossip.push((state.name.to_string(), candidates));
            }
        }
        Ok(decision)
    }

    fn prune_from(
        &mut self,
        mesh: &mut Vec<PeerHandle>,
        handle: PeerHandle,
        name: &str,
        now: f64,
        decision: &mut Heartbeat,
    ) {
        remove_sorted(&self.peers, mesh, handle);
        let backoff = self.params.prune_backoff;
        decision.prunes.push((handle, name.to_owned(), backoff));
        self.add_backoff(handle, name, now + backoff, now);
    }

    fn graft_into(
        &self,
        mesh: &mut Vec<PeerHandle>,
        chosen: Vec<PeerHandle>,
        name: &str,
        decision: &mut Heartbeat,
    ) {
        for handle in chosen {
            insert_sorted(&self.peers, mesh, handle);
            decision.grafts.push((handle, name.to_owned()));
        }
    }

    fn maintain_mesh(
        &mut self,
        topic: TopicHandle,
        now: f64,
        rng: &mut SplitMix64,
        decision: &mut Heartbeat,
    ) {
        let params = self.params.clone();
        let name = self.topic(topic).name.to_string();
        let mut mesh = self.topic_mut(topic).mesh.take().expect("joined topic");

        let negative: Vec<PeerHandle> = mesh
            .iter()
            .copied()
            .filter(|&handle| self.score(handle) < 0.0)
            .collect();
        for handle in negative {
            self.prune_from(&mut mesh, handle, &name, now, decision);
        }

        if mesh.len() < params.d_lo {
            let mut candidates = self.graft_candidates(topic, now, &mesh);
            rng.sample(&mut candidates, params.d - mesh.len());
            self.graft_into(&mut mesh, candidates, &name, decision);
        } else if mesh.len() > params.d_hi {
            let mut ordered = mesh.clone();
            rng.shuffle(&mut ordered);
            ordered.sort_by(|&a, &b| {
                self.score(b)
                    .partial_cmp(&self.score(a))
                    .unwrap_or(Ordering::Equal)
            });
            let scored = params.d_score.min(ordered.len());
            rng.shuffle(&mut ordered[scored..]);
            let (keep, beyond) = ordered.split_at_mut(params.d);
            let mut outbound = keep
                .iter()
                .filter(|&&handle| self.peer(handle).outbound)
                .count();
            if outbound < params.d_out {
                let mut slot = keep.len() - 1;
                for candidate in beyond.iter_mut() {
                    if outbound >= params.d_out {
                        break;
                    }
                    if !self.peer(*candidate).outbound {
                        continue;
                    }
                    while self.peer(keep[slot]).outbound {
                        slot -= 1;
                    }
                    std::mem::swap(&mut keep[slot], candidate);
                    slot = slot.saturating_sub(1);
                    outbound += 1;
                }
            }
            for &handle in beyond.iter() {
                self.prune_from(&mut mesh, handle, &name, now, decision);
            }
        }

        if mesh.len() >= params.d_lo {
            let outbound = mesh
                .iter()
                .filter(|&&handle| self.peer(handle).outbound)
                .count();
            if outbound < params.d_out {
                let mut candidates: Vec<PeerHandle> = self
                    .graft_candidates(topic, now, &mesh)
                    .into_iter()
                    .filter(|&handle| self.peer(handle).outbound)
                    .collect();
                rng.sample(&mut candidates, params.d_out - outbound);
                self.graft_into(&mut mesh, candidates, &name, decision);
            }
        }

        if self.ticks % params.opportunistic_graft_ticks as u64 == 0 && mesh.len() > 1 {
            let mut scores: Vec<f64> = mesh.iter().map(|&handle| self.score(handle)).collect();
            scores.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
            let median = scores[scores.len() / 2];
            if median < params.opportunistic_graft_threshold {
                let mut candidates: Vec<PeerHandle> = self
                    .graft_candidates(topic, now, &mesh)
                    .into_iter()
                    .filter(|&handle| self.score(handle) > median)
                    .collect();
                rng.sample(&mut candidates, params.opportunistic_graft_peers);
                self.graft_into(&mut mesh, candidates, &name, decision);
            }
        }
        self.topic_mut(topic).mesh = Some(mesh);
    }

    fn maintain_fanout(
        &mut self,
        topic: TopicHandle,
        now: f64,
        rng: &mut SplitMix64,
        decision: &mut Heartbeat,
    ) {
        let state = self.topic(topic);
        if state.last_published + self.params.fanout_ttl < now {
            decision.fanout_expired.push(state.name.to_string());
            self.topic_mut(topic).fanout = None;
            self.release_topic_if_unused(topic);
            return;
        }
        let threshold = self.params.publish_threshold;
        let mut fanout = self.topic_mut(topic).fanout.take().expect("fan-out topic");
        fanout.retain(|&handle| self.score(handle) >= threshold);
        if fanout.len() < self.params.d {
            let mut candidates = self.fanout_candidates(topic, &fanout);
            rng.sample(&mut candidates, self.params.d - fanout.len());
            for handle in candidates {
                insert_sorted(&self.peers, &mut fanout, handle);
            }
        }
        self.topic_mut(topic).fanout = Some(fanout);
    }

    // -- publishing ---------------------------------------------------------------------

    /// Peers to send a message of `name` to, ascending by ID, never `source` (see
    /// `neonet.core.gossip.MeshState.publish_targets`); appended to `out`.
    pub fn publish_targets(
        &mut self,
        name: &str,
        source: Option<&[u8]>,
        flood_publish: bool,
        now: f64,
        rng: &mut SplitMix64,
        out: &mut Vec<PeerHandle>,
    ) -> Result<(), Error> {
        check_time(now)?;
        let source = source.and_then(|id| self.peer_handle(id));
        let threshold = self.params.publish_threshold;
        let existing = self.topic_index.get(name).copied();
        if flood_publish {
            if let Some(topic) = existing {
                out.extend(
                    self.topic(topic)
                        .subscribers
                        .iter()
                        .copied()
                        .filter(|&handle| {
                            let peer = self.peer(handle);
                            Some(handle) != source && (peer.score >= threshold || peer.explicit)
                        }),
                );
            }
            return Ok(());
        }
        let topic = match existing {
            Some(topic) => topic,
            None => self.topic_for_local_use(name)?,
        };
        if self.topic(topic).mesh.is_none() {
            if self.topic(topic).fanout.as_ref().is_none_or(Vec::is_empty) {
                let mut chosen = self.fanout_candidates(topic, &[]);
                rng.sample(&mut chosen, self.params.d);
                sort_by_id(&self.peers, &mut chosen);
                self.topic_mut(topic).fanout = Some(chosen);
            }
            self.topic_mut(topic).last_published = now;
        }
        let state = self.topic(topic);
        let base = state
            .mesh
            .as_deref()
            .or(state.fanout.as_deref())
            .unwrap_or(&[]);
        let keep = |handle: &PeerHandle| Some(*handle) != source;
        if state.extras.is_empty() {
            out.extend(base.iter().filter(|handle| keep(handle)));
            return Ok(());
        }
        let extras = state.extras.iter().copied().filter(|&handle| {
            let peer = self.peer(handle);
            peer.explicit || peer.score >= threshold
        });
        // Merge two ID-ordered lists (disjoint: extras are never in mesh or fan-out).
        let mut base = base.iter().copied().peekable();
        let mut extras = extras.peekable();
        loop {
            let next = match (base.peek(), extras.peek()) {
                (Some(&a), Some(&b)) => {
                    if self.peer(a).id <= self.peer(b).id {
                        base.next()
                    } else {
                        extras.next()
                    }
                }
                (Some(_), None) => base.next(),
                (None, Some(_)) => extras.next(),
                (None, None) => break,
            };
            if let Some(handle) = next.filter(keep) {
                out.push(handle);
            }
        }
        Ok(())
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
mod tests {
    use super::*;

    const MESHSUB: &str = "/meshsub/1.1.0";
    const TOPIC: &str = "blocks";

    fn peer(number: u8) -> Vec<u8> {
        let mut id = b"\x00\x24\x08\x01\x12\x20".to_vec();
        id.extend([number; 32]);
        id
    }

    fn ids(state: &MeshState, handles: &[PeerHandle]) -> Vec<Vec<u8>> {
        handles
            .iter()
            .map(|&handle| state.peer_id(handle).to_vec())
            .collect()
    }

    fn state_with(count: u8, outbound: &[u8]) -> MeshState {
        let mut state = MeshState::new(GossipParams::default()).unwrap();
        for number in 0..count {
            state
                .add_peer(&peer(number), outbound.contains(&number), MESHSUB, false)
                .unwrap();
            assert!(state.peer_subscribed(&peer(number), TOPIC).unwrap());
        }
        state
    }

    #[test]
    fn params_are_validated() {
        assert!(GossipParams::default().validate().is_ok());
        let bad = [
            GossipParams {
                d_lo: 7,
                ..GossipParams::default()
            },
            GossipParams {
                d_out: 3,
                d: 5,
                ..GossipParams::default()
            },
            GossipParams {
                gossip_factor: 1.5,
                ..GossipParams::default()
            },
            GossipParams {
                fanout_ttl: f64::NAN,
                ..GossipParams::default()
            },
            GossipParams {
                gossip_threshold: 1.0,
                ..GossipParams::default()
            },
            GossipParams {
                max_peers: 0,
                ..GossipParams::default()
            },
        ];
        for params in bad {
            assert!(MeshState::new(params).is_err());
        }
    }

    #[test]
    fn peers_and_bounds() {
        let params = GossipParams {
            max_peers: 2,
            max_topics: 1,
            ..GossipParams::default()
        };
        let mut state = MeshState::new(params).unwrap();
        state.add_peer(b"a", false, MESHSUB, false).unwrap();
        assert!(state.add_peer(b"a", false, MESHSUB, false).is_err());
        assert!(state.add_peer(b"b", false, "/meshsub/0.1", false).is_err());
        assert!(state.add_peer(b"", false, MESHSUB, false).is_err());
        state
            .add_peer(b"b", false, "/floodsub/1.0.0", false)
            .unwrap();
        assert!(state.add_peer(b"c", false, MESHSUB, false).is_err());
        assert!(state.peer_subscribed(b"a", "one").unwrap());
        assert!(!state.peer_subscribed(b"a", "two").unwrap());
        assert!(state.join("two", 0.0, 1).is_err());
        assert!(state.peer_subscribed(b"zz", "one").is_err());
        state.remove_peer(b"a").unwrap();
        assert_eq!(state.topic_count(), 0);
        assert_eq!(state.peer_count(), 1);
    }

    #[test]
    fn join_takes_d_subscribers_and_leave_prunes_them() {
        let mut state = state_with(20, &[]);
        let chosen = state.join(TOPIC, 0.0, 7).unwrap();
        assert_eq!(chosen.len(), 6);
        let mut sorted = ids(&state, &chosen);
        sorted.sort();
        assert_eq!(ids(&state, &state.mesh_peers(TOPIC)), sorted);
        let prunes = state.leave(TOPIC, 5.0).unwrap();
        assert_eq!(prunes.len(), 6);
        assert!(prunes
            .iter()
            .all(|(_, topic, backoff)| topic == TOPIC && *backoff == 10.0));
        let first = state.peer_id(prunes[0].0).to_vec();
        assert_eq!(state.backoff_until(&first, TOPIC), Some(15.0));
        assert!(state.joined_topics().is_empty());
    }

    #[test]
    fn graft_rules() {
        let mut state = state_with(13, &[]);
        assert_eq!(
            state.handle_graft(&peer(0), TOPIC, 0.0).unwrap(),
            GraftVerdict::Ignored
        );
        state.join(TOPIC, 0.0, 1).unwrap();
        let members = ids(&state, &state.mesh_peers(TOPIC));
        let outsiders: Vec<Vec<u8>> = (0..13)
            .map(peer)
            .filter(|id| !members.contains(id))
            .collect();
        state.set_score(&outsiders[0], -1.0).unwrap();
        assert_eq!(
            state.handle_graft(&outsiders[0], TOPIC, 1.0).unwrap(),
            GraftVerdict::RefusedScore
        );
        assert_eq!(
            state.handle_graft(&outsiders[0], TOPIC, 2.0).unwrap(),
            GraftVerdict::RefusedBackoff
        );
        assert_eq!(state.backoff_until(&outsiders[0], TOPIC), Some(62.0));
        for other in &outsiders[1..] {
            assert_eq!(
                state.handle_graft(other, TOPIC, 3.0).unwrap(),
                GraftVerdict::Accepted
            );
        }
        state.add_peer(b"inbound", false, MESHSUB, false).unwrap();
        state.add_peer(b"outbound", true, MESHSUB, false).unwrap();
        state.add_peer(b"explicit", false, MESHSUB, true).unwrap();
        assert_eq!(
            state.handle_graft(b"inbound", TOPIC, 4.0).unwrap(),
            GraftVerdict::RefusedFull
        );
        assert_eq!(
            state.handle_graft(b"outbound", TOPIC, 4.0).unwrap(),
            GraftVerdict::Accepted
        );
        assert_eq!(
            state.handle_graft(b"explicit", TOPIC, 4.0).unwrap(),
            GraftVerdict::RefusedExplicit
        );
        assert_eq!(state.mesh_peers(TOPIC).len(), 13);
        assert!(state
            .handle_prune(b"outbound", TOPIC, Some(5.0), 4.0)
            .unwrap());
        assert_eq!(state.backoff_until(b"outbound", TOPIC), Some(9.0));
        assert!(state
            .handle_prune(b"outbound", TOPIC, Some(-1.0), 4.0)
            .is_err());
    }

    #[test]
    fn oversubscription_keeps_best_scores_and_outbound_quota() {
        for seed in 0..20 {
            let mut state = MeshState::new(GossipParams::default()).unwrap();
            state.join(TOPIC, 0.0, seed).unwrap();
            for number in 0..14u8 {
                state
                    .add_peer(&peer(number), number >= 12, MESHSUB, false)
                    .unwrap();
                state
                    .set_score(&peer(number), if number < 4 { 10.0 } else { 1.0 })
                    .unwrap();
                assert_eq!(
                    state.handle_graft(&peer(number), TOPIC, 0.0).unwrap(),
                    GraftVerdict::Accepted
                );
            }
            let decision = state.heartbeat(1.0, seed).unwrap();
            let expected: Vec<Vec<u8>> = [0, 1, 2, 3, 12, 13].into_iter().map(peer).collect();
            assert_eq!(ids(&state, &state.mesh_peers(TOPIC)), expected);
            assert_eq!(decision.prunes.len(), 8);
            assert!(decision.grafts.is_empty());
        }
    }

    #[test]
    fn heartbeat_tops_up_and_prunes_negative_peers() {
        let mut state = state_with(3, &[]);
        state.join(TOPIC, 0.0, 1).unwrap();
        for number in 3..15 {
            state
                .add_peer(&peer(number), false, MESHSUB, false)
                .unwrap();
            state.peer_subscribed(&peer(number), TOPIC).unwrap();
        }
        let decision = state.heartbeat(1.0, 2).unwrap();
        assert_eq!(decision.grafts.len(), 3);
        assert_eq!(state.mesh_peers(TOPIC).len(), 6);
        let victim = state.peer_id(state.mesh_peers(TOPIC)[0]).to_vec();
        state.set_score(&victim, -3.0).unwrap();
        let decision = state.heartbeat(2.0, 3).unwrap();
        assert_eq!(
            ids(
                &state,
                &decision.prunes.iter().map(|p| p.0).collect::<Vec<_>>()
            ),
            vec![victim.clone()]
        );
        assert!(!ids(&state, &state.mesh_peers(TOPIC)).contains(&victim));
    }

    #[test]
    fn fanout_publish_top_up_and_expiry() {
        let mut state = state_with(2, &[]);
        let mut rng = SplitMix64::new(1);
        let mut out = Vec::new();
        state
            .publish_targets(TOPIC, None, false, 0.0, &mut rng, &mut out)
            .unwrap();
        assert_eq!(ids(&state, &out), vec![peer(0), peer(1)]);
        for number in 2..10 {
            state
                .add_peer(&peer(number), false, MESHSUB, false)
                .unwrap();
            state.peer_subscribed(&peer(number), TOPIC).unwrap();
        }
        state.heartbeat(1.0, 1).unwrap();
        assert_eq!(state.fanout_peers(TOPIC).len(), 6);
        assert!(state.heartbeat(60.0, 1).unwrap().fanout_expired.is_empty());
        assert_eq!(
            state.heartbeat(60.5, 1).unwrap().fanout_expired,
            vec![TOPIC.to_string()]
        );
        assert!(state.fanout_peers(TOPIC).is_empty());
    }

    #[test]
    fn publish_merges_extras_and_skips_the_source() {
        let mut state = state_with(8, &[]);
        state
            .add_peer(b"\x00", false, "/floodsub/1.0.0", false)
            .unwrap();
        state.add_peer(b"\xff", false, MESHSUB, true).unwrap();
        state.peer_subscribed(b"\x00", TOPIC).unwrap();
        state.peer_subscribed(b"\xff", TOPIC).unwrap();
        state.join(TOPIC, 0.0, 3).unwrap();
        let mesh = ids(&state, &state.mesh_peers(TOPIC));
        let mut rng = SplitMix64::new(1);
        let mut out = Vec::new();
        state
            .publish_targets(TOPIC, Some(&mesh[0]), false, 1.0, &mut rng, &mut out)
            .unwrap();
        let mut expected = vec![b"\x00".to_vec()];
        expected.extend(mesh[1..].iter().cloned());
        expected.push(b"\xff".to_vec());
        assert_eq!(ids(&state, &out), expected);
        out.clear();
        state
            .publish_targets(TOPIC, None, true, 1.0, &mut rng, &mut out)
            .unwrap();
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn backoffs_are_bounded_and_evict_the_first_ending() {
        let params = GossipParams {
            max_backoffs: 2,
            ..GossipParams::default()
        };
        let mut state = MeshState::new(params).unwrap();
        for number in 0..4 {
            state
                .add_peer(&peer(number), false, MESHSUB, false)
                .unwrap();
            state.peer_subscribed(&peer(number), TOPIC).unwrap();
        }
        state.join(TOPIC, 0.0, 1).unwrap();
        state
            .handle_prune(&peer(0), TOPIC, Some(30.0), 0.0)
            .unwrap();
        state
            .handle_prune(&peer(1), TOPIC, Some(10.0), 0.0)
            .unwrap();
        state
            .handle_prune(&peer(2), TOPIC, Some(20.0), 0.0)
            .unwrap();
        assert_eq!(state.backoff_until(&peer(1), TOPIC), None);
        assert_eq!(state.backoff_until(&peer(2), TOPIC), Some(20.0));
        state
            .handle_prune(&peer(3), TOPIC, Some(5.0), 25.0)
            .unwrap();
        assert_eq!(state.backoff_until(&peer(2), TOPIC), None);
        assert_eq!(state.backoff_until(&peer(0), TOPIC), Some(30.0));
        assert_eq!(state.backoff_until(&peer(3), TOPIC), Some(30.0));
    }

    #[test]
    fn same_seed_same_decisions() {
        let run = |seed: u64| {
            let mut state = state_with(40, &[0, 5, 10, 15, 20]);
            let joined = state.join(TOPIC, 0.0, seed).unwrap();
            let mut log = vec![ids(&state, &joined)];
            for tick in 1..6u8 {
                for number in (tick..40).step_by(7) {
                    state
                        .handle_graft(&peer(number), TOPIC, f64::from(tick))
                        .unwrap();
                }
                let decision = state
                    .heartbeat(f64::from(tick), seed + u64::from(tick))
                    .unwrap();
                log.push(ids(
                    &state,
                    &decision.grafts.iter().map(|g| g.0).collect::<Vec<_>>(),
                ));
                log.push(ids(
                    &state,
                    &decision.prunes.iter().map(|p| p.0).collect::<Vec<_>>(),
                ));
            }
            log
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
