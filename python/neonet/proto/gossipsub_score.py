"""GossipSub v1.1 peer scoring (libp2p/specs pubsub/gossipsub/gossipsub-v1.1.md "Peer Scoring").

The score of a peer is ``sum over topics of topic_weight * (w1*P1 + w2*P2 + w3*P3 +
w3b*P3b + w4*P4)`` (capped by ``topic_score_cap`` when that is positive) plus
``w5*P5 + w6*P6 + w7*P7``:

* P1 time in mesh (quanta, capped); P2 first message deliveries (capped, decaying);
  P3 mesh message delivery deficit squared, once the peer was ``activation`` seconds in
  the mesh; P3b the sticky mesh failure penalty (the deficit squared when pruned);
  P4 invalid messages squared; P5 application score; P6 surplus of peers sharing an IP
  squared (addresses in ``ip_colocation_whitelist`` never count); P7 behaviour penalty
  above ``behaviour_penalty_threshold``, squared.
* Counters decay every ``decay_interval`` (multiplied by their decay factor, zeroed
  under ``decay_to_zero``). A disconnected peer's counters are retained for
  ``retain_score`` seconds (so that reconnecting does not clear a bad score).

Sans-I/O: ``now`` is an argument. The spec gives no default weights; ours are chosen
so that a handful of invalid messages (P4) or broken promises (P7) push a peer below
the graylist threshold while an honest peer never goes negative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["PeerScore", "ScoreParams", "ScoreThresholds", "TopicScoreParams"]


@dataclass(frozen=True, slots=True)
class TopicScoreParams:
    """Per-topic weights and counters (the spec's ``TopicScoreParams``)."""

    topic_weight: float = 1.0
    time_in_mesh_weight: float = 0.01
    time_in_mesh_quantum: float = 1.0
    time_in_mesh_cap: float = 3600.0
    first_message_deliveries_weight: float = 1.0
    first_message_deliveries_decay: float = 0.5
    first_message_deliveries_cap: float = 100.0
    # P3 is off by default: its threshold depends on a topic's traffic (the spec says so).
    mesh_message_deliveries_weight: float = 0.0
    mesh_message_deliveries_decay: float = 0.5
    mesh_message_deliveries_cap: float = 100.0
    mesh_message_deliveries_threshold: float = 1.0
    mesh_message_deliveries_window: float = 0.01
    mesh_message_deliveries_activation: float = 5.0
    mesh_failure_penalty_weight: float = 0.0
    mesh_failure_penalty_decay: float = 0.5
    invalid_message_deliveries_weight: float = -10.0
    invalid_message_deliveries_decay: float = 0.99  # a half-life of about 70 s

    def __post_init__(self) -> None:
        _require(self.topic_weight >= 0, "topic_weight must be >= 0")
        _require(self.time_in_mesh_weight >= 0, "time_in_mesh_weight must be >= 0")
        _require(self.time_in_mesh_quantum > 0, "time_in_mesh_quantum must be > 0")
        _require(self.first_message_deliveries_weight >= 0, "P2 weight must be >= 0")
        _require(self.mesh_message_deliveries_weight <= 0, "P3 weight must be <= 0")
        _require(self.mesh_failure_penalty_weight <= 0, "P3b weight must be <= 0")
        _require(self.invalid_message_deliveries_weight <= 0, "P4 weight must be <= 0")
        for name in (
            "first_message_deliveries_decay",
            "mesh_message_deliveries_decay",
            "mesh_failure_penalty_decay",
            "invalid_message_deliveries_decay",
        ):
            _require(0.0 < getattr(self, name) < 1.0, f"{name} must be in (0, 1)")

    @property
    def mesh_deliveries_scored(self) -> bool:
        """Whether mesh deliveries count for anything (P3 or P3b has a weight)."""
        return self.mesh_message_deliveries_weight != 0 or self.mesh_failure_penalty_weight != 0


@dataclass(frozen=True, slots=True)
class ScoreParams:
    """Peer-level weights (``PeerScoreParams``); ``default_topic`` scores unlisted topics."""

    topics: Mapping[str, TopicScoreParams] = field(default_factory=dict)
    default_topic: TopicScoreParams | None = field(default_factory=TopicScoreParams)
    topic_score_cap: float = 0.0  # 0: no cap
    app_specific_weight: float = 1.0
    ip_colocation_factor_weight: float = -5.0
    ip_colocation_factor_threshold: int = 8
    ip_colocation_whitelist: frozenset[str] = frozenset(("127.0.0.1", "::1"))
    behaviour_penalty_weight: float = -10.0
    behaviour_penalty_threshold: float = 1.0
    behaviour_penalty_decay: float = 0.9
    decay_interval: float = 1.0
    decay_to_zero: float = 0.01
    retain_score: float = 3600.0
    max_retained: int = 10_000

    def __post_init__(self) -> None:
        _require(self.ip_colocation_factor_weight <= 0, "P6 weight must be <= 0")
        _require(self.ip_colocation_factor_threshold >= 1, "P6 threshold must be >= 1")
        _require(self.behaviour_penalty_weight <= 0, "P7 weight must be <= 0")
        _require(0.0 < self.behaviour_penalty_decay < 1.0, "P7 decay must be in (0, 1)")
        _require(self.decay_interval > 0, "decay_interval must be > 0")
        _require(self.max_retained >= 0, "max_retained must be >= 0")

    def for_topic(self, topic: str) -> TopicScoreParams | None:
        return self.topics.get(topic, self.default_topic)


@dataclass(frozen=True, slots=True)
class ScoreThresholds:
    """v1.1 "Score Thresholds"; gossip and publish also go into ``GossipParams``."""

    gossip_threshold: float = -10.0
    publish_threshold: float = -50.0
    graylist_threshold: float = -80.0
    accept_px_threshold: float = 10.0
    opportunistic_graft_threshold: float = 1.0

    def __post_init__(self) -> None:
        _require(
            self.graylist_threshold <= self.publish_threshold <= self.gossip_threshold <= 0,
            "need graylist <= publish <= gossip <= 0",
        )
        _require(self.accept_px_threshold >= 0, "accept_px_threshold must be >= 0")
        _require(self.opportunistic_graft_threshold >= 0, "opportunistic graft must be >= 0")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class _TopicStats:
    __slots__ = (
        "first_deliveries",
        "graft_time",
        "in_mesh",
        "invalid_deliveries",
        "mesh_active",
        "mesh_deliveries",
        "mesh_failure_penalty",
        "mesh_time",
    )

    def __init__(self) -> None:
        self.in_mesh = False
        self.graft_time = 0.0
        self.mesh_time = 0.0
        self.mesh_active = False
        self.first_deliveries = 0.0
        self.mesh_deliveries = 0.0
        self.mesh_failure_penalty = 0.0
        self.invalid_deliveries = 0.0


class _PeerStats:
    __slots__ = ("app_score", "behaviour_penalty", "connected", "expires", "ip", "topics")

    def __init__(self, ip: str | None) -> None:
        self.connected = True
        self.expires = 0.0
        self.ip = ip
        self.topics: dict[str, _TopicStats] = {}
        self.app_score = 0.0
        self.behaviour_penalty = 0.0


class PeerScore:
    """The score of every known peer (connected, or disconnected within ``retain_score``)."""

    def __init__(self, params: ScoreParams | None = None) -> None:
        self.params = params or ScoreParams()
        self._peers: dict[bytes, _PeerStats] = {}
        self._ips: dict[str, set[bytes]] = {}
        self._last_decay: float | None = None

    # -- membership -------------------------------------------------------------------

    def add_peer(self, peer: bytes, ip: str | None) -> None:
        stats = self._peers.get(peer)
        if stats is None:
            stats = self._peers[peer] = _PeerStats(ip)
        else:  # reconnected within retain_score: the old counters stand
            self._forget_ip(peer, stats.ip)
            stats.connected = True
            stats.ip = ip
        if ip is not None and ip not in self.params.ip_colocation_whitelist:
            self._ips.setdefault(ip, set()).add(peer)

    def remove_peer(self, peer: bytes, now: float) -> None:
        stats = self._peers.get(peer)
        if stats is None:
            return
        self._forget_ip(peer, stats.ip)
        for topic, topic_stats in stats.topics.items():
            if topic_stats.in_mesh:
                self.prune(peer, topic, now)
        if self.score(peer, now) > 0:  # only bad scores are worth remembering
            del self._peers[peer]
            return
        stats.connected = False
        stats.expires = now + self.params.retain_score
        retained = [p for p, s in self._peers.items() if not s.connected]
        if len(retained) > self.params.max_retained:
            oldest = min(retained, key=lambda p: self._peers[p].expires)
            del self._peers[oldest]

    def _forget_ip(self, peer: bytes, ip: str | None) -> None:
        if ip is None:
            return
        members = self._ips.get(ip)
        if members is not None:
            members.discard(peer)
            if not members:
                del self._ips[ip]

    def _topic(self, peer: bytes, topic: str) -> _TopicStats | None:
        stats = self._peers.get(peer)
        if stats is None or self.params.for_topic(topic) is None:
            return None
        topic_stats = stats.topics.get(topic)
        if topic_stats is None:
            if len(stats.topics) >= 1024:  # bounded: a peer's scored topics
                return None
            topic_stats = stats.topics[topic] = _TopicStats()
        return topic_stats

    # -- events -----------------------------------------------------------------------

    def graft(self, peer: bytes, topic: str, now: float) -> None:
        stats = self._topic(peer, topic)
        if stats is not None and not stats.in_mesh:
            stats.in_mesh = True
            stats.graft_time = now
            stats.mesh_time = 0.0
            stats.mesh_active = False

    def prune(self, peer: bytes, topic: str, now: float) -> None:
        stats = self._topic(peer, topic)
        params = self.params.for_topic(topic)
        if stats is None or params is None or not stats.in_mesh:
            return
        if stats.mesh_active:
            deficit = params.mesh_message_deliveries_threshold - stats.mesh_deliveries
            if deficit > 0:
                stats.mesh_failure_penalty += deficit * deficit
        stats.in_mesh = False
        stats.mesh_active = False

    def first_delivery(self, peer: bytes, topic: str) -> None:
        """``peer`` delivered a valid message first (P2, and P3 when in the mesh)."""
        stats = self._topic(peer, topic)
        params = self.params.for_topic(topic)
        if stats is None or params is None:
            return
        stats.first_deliveries = min(
            stats.first_deliveries + 1, params.first_message_deliveries_cap
        )
        if stats.in_mesh:
            stats.mesh_deliveries = min(
                stats.mesh_deliveries + 1, params.mesh_message_deliveries_cap
            )

    def near_first_delivery(self, peer: bytes, topic: str, first_seen: float, now: float) -> None:
        """A valid duplicate from ``peer``: counts for P3 inside the delivery window."""
        params = self.params.for_topic(topic)
        if params is None or not params.mesh_deliveries_scored:
            return  # most copies a node gets are these: skip them when P3/P3b are off
        stats = self._topic(peer, topic)
        if stats is None or not stats.in_mesh:
            return
        if now - first_seen <= params.mesh_message_deliveries_window:
            stats.mesh_deliveries = min(
                stats.mesh_deliveries + 1, params.mesh_message_deliveries_cap
            )

    def invalid_delivery(self, peer: bytes, topic: str) -> None:
        """``peer`` sent a message that failed validation (P4)."""
        stats = self._topic(peer, topic)
        if stats is not None:
            stats.invalid_deliveries += 1

    def behaviour_penalty(self, peer: bytes, count: float = 1.0) -> None:
        """P7: broken IWANT promises, GRAFT in backoff, repeated floods."""
        stats = self._peers.get(peer)
        if stats is not None:
            stats.behaviour_penalty += count

    def set_app_score(self, peer: bytes, value: float) -> None:
        """P5: the application's opinion of the peer."""
        stats = self._peers.get(peer)
        if stats is not None and math.isfinite(value):
            stats.app_score = value

    # -- time -------------------------------------------------------------------------

    def refresh(self, now: float) -> None:
        """Decay counters once per ``decay_interval`` elapsed; drop expired retained peers."""
        if self._last_decay is None:
            self._last_decay = now
            return
        interval = self.params.decay_interval
        while now - self._last_decay >= interval:
            self._last_decay += interval
            self._decay()
        expired = [p for p, s in self._peers.items() if not s.connected and s.expires <= now]
        for peer in expired:
            del self._peers[peer]

    def _decay(self) -> None:
        zero = self.params.decay_to_zero
        behaviour_decay = self.params.behaviour_penalty_decay

        def decayed(value: float, factor: float) -> float:
            value *= factor
            return 0.0 if value < zero else value

        for stats in self._peers.values():
            for topic, topic_stats in stats.topics.items():
                params = self.params.for_topic(topic)
                if params is None:
                    continue
                topic_stats.first_deliveries = decayed(
                    topic_stats.first_deliveries, params.first_message_deliveries_decay
                )
                topic_stats.mesh_deliveries = decayed(
                    topic_stats.mesh_deliveries, params.mesh_message_deliveries_decay
                )
                topic_stats.mesh_failure_penalty = decayed(
                    topic_stats.mesh_failure_penalty, params.mesh_failure_penalty_decay
                )
                topic_stats.invalid_deliveries = decayed(
                    topic_stats.invalid_deliveries, params.invalid_message_deliveries_decay
                )
            stats.behaviour_penalty = decayed(stats.behaviour_penalty, behaviour_decay)

    # -- the score --------------------------------------------------------------------

    def score(self, peer: bytes, now: float) -> float:
        stats = self._peers.get(peer)
        if stats is None:
            return 0.0
        params = self.params
        total = 0.0
        for topic, topic_stats in stats.topics.items():
            topic_params = params.for_topic(topic)
            if topic_params is None:
                continue
            total += topic_params.topic_weight * _topic_score(topic_stats, topic_params, now)
        if params.topic_score_cap > 0 and total > params.topic_score_cap:
            total = params.topic_score_cap
        total += params.app_specific_weight * stats.app_score
        if stats.ip is not None and stats.connected:
            sharing = len(self._ips.get(stats.ip, ()))
            surplus = sharing - params.ip_colocation_factor_threshold
            if surplus > 0:
                total += params.ip_colocation_factor_weight * surplus * surplus
        excess = stats.behaviour_penalty - params.behaviour_penalty_threshold
        if excess > 0:
            total += params.behaviour_penalty_weight * excess * excess
        return total

    def scores(self, peers: list[bytes], now: float) -> dict[bytes, float]:
        return {peer: self.score(peer, now) for peer in peers}

    def __len__(self) -> int:
        return len(self._peers)


def _topic_score(stats: _TopicStats, params: TopicScoreParams, now: float) -> float:
    score = 0.0
    if stats.in_mesh:
        in_mesh = now - stats.graft_time
        stats.mesh_time = in_mesh
        if in_mesh >= params.mesh_message_deliveries_activation:
            stats.mesh_active = True
        quanta = min(in_mesh / params.time_in_mesh_quantum, params.time_in_mesh_cap)
        score += params.time_in_mesh_weight * quanta
    score += params.first_message_deliveries_weight * stats.first_deliveries
    if stats.mesh_active:
        deficit = params.mesh_message_deliveries_threshold - stats.mesh_deliveries
        if deficit > 0:
            score += params.mesh_message_deliveries_weight * deficit * deficit
    score += params.mesh_failure_penalty_weight * stats.mesh_failure_penalty
    score += (
        params.invalid_message_deliveries_weight
        * stats.invalid_deliveries
        * stats.invalid_deliveries
    )
    return score
