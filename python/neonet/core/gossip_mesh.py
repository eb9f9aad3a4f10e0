"""GossipSub mesh and fan-out state: ``MeshState`` (subscriptions, mesh, fan-out, scores,
backoffs, the heartbeat and publish targets), the pure-Python twin of the native class.

Part of ``neonet.core.gossip`` (the decision layer; its docstring describes the
heartbeat and the deterministic randomness), which re-exports ``MeshState``. Must not
import ``neonet._native`` or ``neonet.core.backend``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

from neonet.core.gossip_params import (
    _PROTOCOLS,
    MAX_PEER_ID_LENGTH,
    MAX_TOPIC_LENGTH,
    PROTOCOL_FLOODSUB,
    GossipParams,
    GraftVerdict,
    HeartbeatDecision,
    SplitMix64,
    _check_flag,
    _check_message,
    _check_time,
    _publish_batch,
)

# ---------------------------------------------------------------------------------------
# Mesh and fan-out state
# ---------------------------------------------------------------------------------------


class _Peer:
    __slots__ = ("explicit", "floodsub", "outbound", "topics")

    def __init__(self, outbound: bool, floodsub: bool, explicit: bool) -> None:
        self.outbound = outbound
        self.floodsub = floodsub
        self.explicit = explicit
        self.topics: set[str] = set()


class _Topic:
    __slots__ = ("_ordered", "extras", "fanout", "last_published", "mesh", "subscribers")

    def __init__(self) -> None:
        self.subscribers: set[bytes] = set()
        self._ordered: list[bytes] | None = []  # sorted(subscribers), rebuilt lazily
        self.extras: list[bytes] = []  # sorted floodsub and explicit subscribers
        self.mesh: list[bytes] | None = None  # sorted; None unless joined
        self.fanout: list[bytes] | None = None  # sorted; None unless fan-out state exists
        self.last_published = 0.0

    def ordered(self) -> list[bytes]:
        ordered = self._ordered
        if ordered is None:
            ordered = self._ordered = sorted(self.subscribers)
        return ordered

    def unused(self) -> bool:
        return not self.subscribers and self.mesh is None and self.fanout is None


def _remove_sorted(items: list[bytes], item: bytes) -> bool:
    index = bisect.bisect_left(items, item)
    if index < len(items) and items[index] == item:
        del items[index]
        return True
    return False


class MeshState:
    """Per-topic mesh, fan-out, subscriptions, scores and backoffs of one router.

    Peers are ``bytes`` (peer ID bytes), topics ``str``. Bounds (``GossipParams``):
    ``add_peer`` beyond ``max_peers`` and ``join``/fan-out ``publish_targets`` for a new
    topic when ``max_topics`` topics are known raise ``ValueError`` (local decisions);
    remote subscriptions beyond ``max_topics``, ``max_topics_per_peer``,
    ``max_peers_per_topic`` or ``MAX_TOPIC_LENGTH`` are refused (``peer_subscribed``
    returns False). Backoffs survive disconnection; when ``max_backoffs`` are held, the
    ended ones are forgotten, then the one ending first (ties: lowest topic, then peer).
    A topic is forgotten when nobody subscribes, it is not joined and has no fan-out.
    Unknown peers in calls other than ``set_score(s)`` raise ``ValueError``.
    """

    __slots__ = (
        "_backoff_count",
        "_backoffs",
        "_explicit",
        "_fanout_topics",
        "_joined",
        "_meshable",
        "_params",
        "_peers",
        "_scores",
        "_ticks",
        "_topics",
    )

    def __init__(self, params: GossipParams | None = None) -> None:
        self._params = GossipParams() if params is None else params
        self._peers: dict[bytes, _Peer] = {}
        self._scores: dict[bytes, float] = {}
        self._explicit: set[bytes] = set()
        self._meshable: set[bytes] = set()  # GossipSub peers that are not explicit
        self._topics: dict[str, _Topic] = {}
        self._joined: set[str] = set()
        self._fanout_topics: set[str] = set()
        self._backoffs: dict[str, dict[bytes, float]] = {}
        self._backoff_count = 0
        self._ticks = 0

    @property
    def params(self) -> GossipParams:
        """The parameters this state was made with."""
        return self._params

    # -- peers, subscriptions, scores -------------------------------------------------

    def _peer(self, peer: bytes) -> _Peer:
        record = self._peers.get(peer)
        if record is None:
            raise ValueError("unknown peer")
        return record

    def add_peer(self, peer: bytes, outbound: bool, protocol: str, explicit: bool = False) -> None:
        """A peer speaking ``protocol`` (floodsub or meshsub ID) connected."""
        if not 0 < len(peer) <= MAX_PEER_ID_LENGTH:
            raise ValueError(f"peer ID must be 1 to {MAX_PEER_ID_LENGTH} bytes")
        if protocol not in _PROTOCOLS:
            raise ValueError(f"unsupported pubsub protocol {protocol!r}")
        if peer in self._peers:
            raise ValueError("peer already known")
        if len(self._peers) >= self._params.max_peers:
            raise ValueError("max_peers reached")
        floodsub = protocol == PROTOCOL_FLOODSUB
        self._peers[peer] = _Peer(bool(outbound), floodsub, bool(explicit))
        self._scores[peer] = 0.0
        if explicit:
            self._explicit.add(peer)
        elif not floodsub:
            self._meshable.add(peer)

    def remove_peer(self, peer: bytes) -> None:
        """A peer disconnected: it leaves every subscription, mesh and fan-out."""
        record = self._peer(peer)
        for topic in sorted(record.topics):
            self._drop_subscription(peer, record, topic)
        del self._peers[peer]
        del self._scores[peer]
        self._explicit.discard(peer)
        self._meshable.discard(peer)

    def set_score(self, peer: bytes, score: float) -> None:
        """Set a peer's score; unknown peers are ignored, NaN is a ``ValueError``."""
        if score != score:
            raise ValueError("score is NaN")
        if peer in self._scores:
            self._scores[peer] = float(score)

    def set_scores(self, scores: Mapping[bytes, float]) -> None:
        """``set_score`` for each item, in the mapping's order."""
        known = self._scores
        for peer, score in scores.items():
            if score != score:
                raise ValueError("score is NaN")
            if peer in known:
                known[peer] = float(score)

    def peer_subscribed(self, peer: bytes, topic: str) -> bool:
        """The peer announced SUBSCRIBE; False when refused by a bound."""
        record = self._peer(peer)
        if topic in record.topics:
            return True
        params = self._params
        if len(record.topics) >= params.max_topics_per_peer:
            return False
        state = self._topics.get(topic)
        if state is None:
            if len(topic.encode()) > MAX_TOPIC_LENGTH or len(self._topics) >= params.max_topics:
                return False
            state = self._topics[topic] = _Topic()
        elif len(state.subscribers) >= params.max_peers_per_topic:
            return False
        state.subscribers.add(peer)
        state._ordered = None
        if record.floodsub or record.explicit:
            bisect.insort(state.extras, peer)
        record.topics.add(topic)
        return True

    def peer_unsubscribed(self, peer: bytes, topic: str) -> None:
        """The peer announced UNSUBSCRIBE: it also leaves that topic's mesh and fan-out."""
        record = self._peer(peer)
        if topic in record.topics:
            self._drop_subscription(peer, record, topic)

    def _drop_subscription(self, peer: bytes, record: _Peer, topic: str) -> None:
        record.topics.discard(topic)
        state = self._topics[topic]
        state.subscribers.discard(peer)
        state._ordered = None
        _remove_sorted(state.extras, peer)
        if state.mesh is not None:
            _remove_sorted(state.mesh, peer)
        if state.fanout is not None:
            _remove_sorted(state.fanout, peer)
        if state.unused():
            del self._topics[topic]

    # -- backoff ----------------------------------------------------------------------

    def backoff_until(self, peer: bytes, topic: str) -> float | None:
        """When the backoff of ``peer`` on ``topic`` ends, if one is recorded."""
        per_topic = self._backoffs.get(topic)
        return None if per_topic is None else per_topic.get(peer)

    def _add_backoff(self, peer: bytes, topic: str, until: float, now: float) -> None:
        per_topic = self._backoffs.get(topic)
        if per_topic is not None:
            current = per_topic.get(peer)
            if current is not None:
                if current < until:
                    per_topic[peer] = until
                return
        if self._backoff_count >= self._params.max_backoffs:
            self._expire_backoffs(now)
            if self._backoff_count >= self._params.max_backoffs:
                _, old_topic, old_peer = min(
                    (until_, name, who)
                    for name, entries in self._backoffs.items()
                    for who, until_ in entries.items()
                )
                self._forget_backoff(old_topic, old_peer)
            per_topic = self._backoffs.get(topic)
        if per_topic is None:
            per_topic = self._backoffs[topic] = {}
        per_topic[peer] = until
        self._backoff_count += 1

    def _forget_backoff(self, topic: str, peer: bytes) -> None:
        per_topic = self._backoffs[topic]
        del per_topic[peer]
        self._backoff_count -= 1
        if not per_topic:
            del self._backoffs[topic]

    def _expire_backoffs(self, now: float) -> None:
        slack = self._params.backoff_slack
        for topic in list(self._backoffs):
            per_topic = self._backoffs[topic]
            ended = [peer for peer, until in per_topic.items() if now >= until + slack]
            for peer in ended:
                self._forget_backoff(topic, peer)

    # -- candidates -------------------------------------------------------------------

    def _graft_candidates(self, topic: str, state: _Topic, now: float) -> list[bytes]:
        """Subscribed GossipSub non-explicit peers outside the mesh, score >= 0, no backoff."""
        meshable = self._meshable
        scores = self._scores
        mesh = set(state.mesh or ())
        backoffs = self._backoffs.get(topic)
        if backoffs is None:
            return [
                peer
                for peer in state.ordered()
                if peer in meshable and peer not in mesh and scores[peer] >= 0.0
            ]
        slack = self._params.backoff_slack
        return [
            peer
            for peer in state.ordered()
            if peer in meshable
            and peer not in mesh
            and scores[peer] >= 0.0
            and ((until := backoffs.get(peer)) is None or now >= until + slack)
        ]

    def _topic_for_local_use(self, topic: str) -> _Topic:
        state = self._topics.get(topic)
        if state is None:
            if len(topic.encode()) > MAX_TOPIC_LENGTH:
                raise ValueError(f"topic longer than {MAX_TOPIC_LENGTH} bytes")
            if len(self._topics) >= self._params.max_topics:
                raise ValueError("max_topics reached")
            state = self._topics[topic] = _Topic()
        return state

    # -- JOIN / LEAVE -----------------------------------------------------------------

    def join(self, topic: str, now: float, seed: int) -> list[bytes]:
        """JOIN(topic): build the mesh from fan-out, then subscribers; returns peers to GRAFT."""
        _check_time(now)
        rng = SplitMix64(seed)
        state = self._topic_for_local_use(topic)
        if state.mesh is not None:
            return []
        state.mesh = []
        chosen: list[bytes] = []
        if state.fanout is not None:
            fanout = state.fanout
            state.fanout = None
            self._fanout_topics.discard(topic)
            eligible = set(self._graft_candidates(topic, state, now))
            chosen = rng.sample([peer for peer in fanout if peer in eligible], self._params.d)
        state.mesh = sorted(chosen)
        if len(chosen) < self._params.d:
            more = rng.sample(
                self._graft_candidates(topic, state, now), self._params.d - len(chosen)
            )
            chosen.extend(more)
            state.mesh = sorted(chosen)
        self._joined.add(topic)
        return chosen

    def leave(self, topic: str, now: float) -> list[tuple[bytes, str, float]]:
        """LEAVE(topic): returns the PRUNEs (peer, topic, ``unsubscribe_backoff``) to send."""
        _check_time(now)
        state = self._topics.get(topic)
        if state is None or state.mesh is None:
            return []
        backoff = self._params.unsubscribe_backoff
        prunes = [(peer, topic, backoff) for peer in state.mesh]
        state.mesh = None
        self._joined.discard(topic)
        for peer, _, _ in prunes:
            self._add_backoff(peer, topic, now + backoff, now)
        if state.unused():
            del self._topics[topic]
        return prunes

    # -- control messages -------------------------------------------------------------

    def handle_graft(self, peer: bytes, topic: str, now: float) -> GraftVerdict:
        """An incoming GRAFT (v1.1 rules; refusals back the peer off ``prune_backoff``)."""
        _check_time(now)
        record = self._peer(peer)
        state = self._topics.get(topic)
        if record.floodsub or state is None or state.mesh is None:
            return "ignored"
        if record.explicit:
            return "refused_explicit"
        mesh = state.mesh
        index = bisect.bisect_left(mesh, peer)
        if index < len(mesh) and mesh[index] == peer:
            return "ignored"
        params = self._params
        per_topic = self._backoffs.get(topic)
        until = None if per_topic is None else per_topic.get(peer)
        if until is not None and now < until:
            self._add_backoff(peer, topic, now + params.prune_backoff, now)
            return "refused_backoff"
        if self._scores[peer] < 0.0:
            self._add_backoff(peer, topic, now + params.prune_backoff, now)
            return "refused_score"
        if len(mesh) >= params.d_hi and not record.outbound:
            self._add_backoff(peer, topic, now + params.prune_backoff, now)
            return "refused_full"
        if topic not in record.topics and not self.peer_subscribed(peer, topic):
            return "ignored"
        mesh.insert(index, peer)
        return "accepted"

    def handle_prune(self, peer: bytes, topic: str, backoff: float | None, now: float) -> bool:
        """An incoming PRUNE: leave the mesh and back off (``backoff`` s, else the default).

        Returns whether the peer was in our mesh. PRUNEs for topics we have not joined
        are ignored.
        """
        _check_time(now)
        if backoff is not None and not (math.isfinite(backoff) and backoff >= 0.0):
            raise ValueError("backoff must be a finite number of seconds >= 0")
        self._peer(peer)
        state = self._topics.get(topic)
        if state is None or state.mesh is None:
            return False
        removed = _remove_sorted(state.mesh, peer)
        duration = self._params.prune_backoff if backoff is None else float(backoff)
        self._add_backoff(peer, topic, now + duration, now)
        return removed

    # -- heartbeat --------------------------------------------------------------------

    def heartbeat(self, now: float, seed: int) -> HeartbeatDecision:
        """One heartbeat: mesh and fan-out maintenance and gossip targets (module doc)."""
        _check_time(now)
        rng = SplitMix64(seed)
        self._ticks += 1
        self._expire_backoffs(now)
        grafts: list[tuple[bytes, str]] = []
        prunes: list[tuple[bytes, str, float]] = []
        for topic in sorted(self._joined):
            self._maintain_mesh(topic, now, rng, grafts, prunes)
        expired = self._maintain_fanout(now, rng)
        gossip = self._gossip_targets(rng)
        return HeartbeatDecision(grafts, prunes, gossip, expired)

    def _prune(
        self,
        mesh: list[bytes],
        peer: bytes,
        topic: str,
        now: float,
        prunes: list[tuple[bytes, str, float]],
    ) -> None:
        _remove_sorted(mesh, peer)
        backoff = self._params.prune_backoff
        prunes.append((peer, topic, backoff))
        self._add_backoff(peer, topic, now + backoff, now)

    def _maintain_mesh(
        self,
        topic: str,
        now: float,
        rng: SplitMix64,
        grafts: list[tuple[bytes, str]],
        prunes: list[tuple[bytes, str, float]],
    ) -> None:
        params = self._params
        scores = self._scores
        peers = self._peers
        state = self._topics[topic]
        mesh = state.mesh
        assert mesh is not None
        for peer in [peer for peer in mesh if scores[peer] < 0.0]:
            self._prune(mesh, peer, topic, now, prunes)

        if len(mesh) < params.d_lo:
            chosen = rng.sample(self._graft_candidates(topic, state, now), params.d - len(mesh))
            for peer in chosen:
                bisect.insort(mesh, peer)
                grafts.append((peer, topic))
        elif len(mesh) > params.d_hi:
            ordered = rng.sample(list(mesh), len(mesh))
            ordered.sort(key=scores.__getitem__, reverse=True)
            rest = ordered[params.d_score :]
            ordered[params.d_score :] = rng.sample(rest, len(rest))
            keep = ordered[: params.d]
            beyond = ordered[params.d :]
            outbound = sum(1 for peer in keep if peers[peer].outbound)
            if outbound < params.d_out:
                slot = len(keep) - 1
                for index, peer in enumerate(beyond):
                    if outbound >= params.d_out:
                        break
                    if not peers[peer].outbound:
                        continue
                    while peers[keep[slot]].outbound:
                        slot -= 1
                    keep[slot], beyond[index] = peer, keep[slot]
                    slot -= 1
                    outbound += 1
            for peer in beyond:
                self._prune(mesh, peer, topic, now, prunes)

        if len(mesh) >= params.d_lo:
            outbound = sum(1 for peer in mesh if peers[peer].outbound)
            if outbound < params.d_out:
                candidates = [
                    peer
                    for peer in self._graft_candidates(topic, state, now)
                    if peers[peer].outbound
                ]
                for peer in rng.sample(candidates, params.d_out - outbound):
                    bisect.insort(mesh, peer)
                    grafts.append((peer, topic))

        if self._ticks % params.opportunistic_graft_ticks == 0 and len(mesh) > 1:
            median = sorted(scores[peer] for peer in mesh)[len(mesh) // 2]
            if median < params.opportunistic_graft_threshold:
                candidates = [
                    peer
                    for peer in self._graft_candidates(topic, state, now)
                    if scores[peer] > median
                ]
                for peer in rng.sample(candidates, params.opportunistic_graft_peers):
                    bisect.insort(mesh, peer)
                    grafts.append((peer, topic))

    def _fanout_candidates(self, state: _Topic, exclude: list[bytes]) -> list[bytes]:
        meshable = self._meshable
        scores = self._scores
        threshold = self._params.publish_threshold
        excluded = set(exclude)
        return [
            peer
            for peer in state.ordered()
            if peer in meshable and peer not in excluded and scores[peer] >= threshold
        ]

    def _maintain_fanout(self, now: float, rng: SplitMix64) -> list[str]:
        params = self._params
        scores = self._scores
        expired: list[str] = []
        for topic in sorted(self._fanout_topics):
            state = self._topics[topic]
            fanout = state.fanout
            assert fanout is not None
            if state.last_published + params.fanout_ttl < now:
                state.fanout = None
                self._fanout_topics.discard(topic)
                expired.append(topic)
                if state.unused():
                    del self._topics[topic]
                continue
            fanout[:] = [peer for peer in fanout if scores[peer] >= params.publish_threshold]
            if len(fanout) < params.d:
                candidates = self._fanout_candidates(state, fanout)
                for peer in rng.sample(candidates, params.d - len(fanout)):
                    bisect.insort(fanout, peer)
        return expired

    def _gossip_targets(self, rng: SplitMix64) -> dict[str, list[bytes]]:
        params = self._params
        meshable = self._meshable
        scores = self._scores
        threshold = params.gossip_threshold
        gossip: dict[str, list[bytes]] = {}
        for topic in sorted(self._joined | self._fanout_topics):
            state = self._topics[topic]
            excluded = set(state.mesh if state.mesh is not None else state.fanout or ())
            candidates = [
                peer
                for peer in state.ordered()
                if peer in meshable and peer not in excluded and scores[peer] >= threshold
            ]
            wanted = max(params.d_lazy, int(params.gossip_factor * len(candidates)))
            chosen = rng.sample(candidates, wanted)
            if chosen:
                gossip[topic] = chosen
        return gossip

    # -- publishing -------------------------------------------------------------------

    def publish_targets(
        self, topic: str, source: bytes | None, flood_publish: bool, now: float, seed: int
    ) -> list[bytes]:
        """Peers to send a message of ``topic`` to, in ascending ID order, never ``source``.

        Flood publish (our own messages, v1.1): every subscriber with score >=
        ``publish_threshold``, and explicit subscribers. Otherwise (v1.0): the mesh if we
        joined, else the fan-out (chosen: up to ``D`` GossipSub subscribers with score
        >= ``publish_threshold`` when empty; its publish time becomes ``now``), plus
        floodsub subscribers with score >= ``publish_threshold`` and explicit subscribers.
        """
        _check_message(topic, source)  # in the native side's order: arguments, then time
        _check_flag("flood_publish", flood_publish)
        _check_flag("flood_publish", flood_publish)
        rng = SplitMix64(seed)
        _check_time(now)
        return self._publish_one(topic, source, flood_publish, now, rng)

    def publish_targets_many(
        self,
        messages: Iterable[tuple[str, bytes | None]],
        flood_publish: bool,
        now: float,
        seed: int,
    ) -> list[list[bytes]]:
        """``publish_targets`` for each (topic, source) in order, one random stream."""
        _check_flag("flood_publish", flood_publish)
        rng = SplitMix64(seed)
        _check_time(now)
        batch = _publish_batch(messages)
        publish = self._publish_one
        return [publish(topic, source, flood_publish, now, rng) for topic, source in batch]

    def publish_targets_flat(
        self,
        messages: Iterable[tuple[str, bytes | None]],
        flood_publish: bool,
        now: float,
        seed: int,
    ) -> tuple[list[bytes], list[int]]:
        """``publish_targets_many`` with the answers back to back in one list, for bulk
        callers: ``(peers, counts)``, the targets of message ``i`` are the ``counts[i]``
        peers after those of the messages before it."""
        _check_flag("flood_publish", flood_publish)
        rng = SplitMix64(seed)
        _check_time(now)
        publish = self._publish_one
        peers: list[bytes] = []
        extend = peers.extend
        counts: list[int] = []
        record = counts.append
        for topic, source in _publish_batch(messages):
            targets = publish(topic, source, flood_publish, now, rng)
            extend(targets)
            record(len(targets))
        return peers, counts

    def _publish_one(
        self, topic: str, source: bytes | None, flood_publish: bool, now: float, rng: SplitMix64
    ) -> list[bytes]:
        state = self._topics.get(topic)
        scores = self._scores
        threshold = self._params.publish_threshold
        if flood_publish:
            if state is None:
                return []
            explicit = self._explicit
            return [
                peer
                for peer in state.ordered()
                if peer != source and (scores[peer] >= threshold or peer in explicit)
            ]
        if state is not None and state.mesh is not None:
            base = state.mesh
        else:
            if state is None:
                state = self._topic_for_local_use(topic)
            if not state.fanout:
                state.fanout = sorted(
                    rng.sample(self._fanout_candidates(state, []), self._params.d)
                )
                self._fanout_topics.add(topic)
            state.last_published = now
            base = state.fanout
        if state.extras:
            explicit = self._explicit
            extras = [
                peer for peer in state.extras if peer in explicit or scores[peer] >= threshold
            ]
            if extras:
                base = sorted(base + extras)
        return [peer for peer in base if peer != source]

    # -- queries ----------------------------------------------------------------------

    def mesh_peers(self, topic: str) -> list[bytes]:
        """Mesh members of ``topic`` in ascending order ([] unless joined)."""
        state = self._topics.get(topic)
        return [] if state is None or state.mesh is None else list(state.mesh)

    def fanout_peers(self, topic: str) -> list[bytes]:
        """Fan-out members of ``topic`` in ascending order."""
        state = self._topics.get(topic)
        return [] if state is None or state.fanout is None else list(state.fanout)

    def topic_peers(self, topic: str) -> list[bytes]:
        """Subscribers of ``topic`` in ascending order."""
        state = self._topics.get(topic)
        return [] if state is None else list(state.ordered())

    def joined_topics(self) -> list[str]:
        """Topics we joined, in ascending order."""
        return sorted(self._joined)

    def peer_topics(self, peer: bytes) -> list[str]:
        """Topics ``peer`` subscribes to, in ascending order."""
        return sorted(self._peer(peer).topics)

    def peer_count(self) -> int:
        """Known peers."""
        return len(self._peers)

    def topic_count(self) -> int:
        """Known topics (subscribed by someone, joined, or with fan-out state)."""
        return len(self._topics)
