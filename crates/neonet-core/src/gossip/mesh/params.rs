//! Router parameters (`GossipParams` and its checks) and the value types of the
//! `MeshState` API: the peer's protocol, the GRAFT verdict, the heartbeat's decisions.

use super::PeerHandle;
use crate::gossip::check_count;
use crate::Error;

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

pub(super) fn invalid(message: impl Into<String>) -> Error {
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
