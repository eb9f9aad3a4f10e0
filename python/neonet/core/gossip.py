"""GossipSub decision layer: mesh and fan-out bookkeeping, seen-cache, message cache.

Pure-Python twin of the Rust ``neonet._native`` classes of the same names; both give the
same results and raise the same errors for the same calls (``neonet.core.backend`` picks
one). These are plain data structures for the GossipSub router: no I/O, no protobufs,
and time (``now``, seconds as a float) and randomness (``seed``) are arguments.

Spec sections (libp2p/specs ``pubsub/gossipsub``):

* v1.0 "Router State" (mesh, fanout, ``peers.floodsub``/``peers.gossipsub``),
  "Topic Membership" (JOIN/LEAVE), "Message Processing" (publish to floodsub peers and
  mesh or fanout), "Heartbeat" (mesh and fanout maintenance, gossip emission) and
  "Message Cache" (``mcache`` windows, ``seen`` cache).
* v1.1 "Explicit Peering Agreements", "PRUNE Backoff" (both sides back off; GRAFTs
  inside the backoff are refused), "Flood Publishing", "Adaptive Gossip Dissemination"
  (``max(D_lazy, gossip_factor * candidates)``), "Outbound Mesh Quotas" (``D_out``),
  "Score Thresholds", "Heartbeat Maintenance" (``D_score``), "Opportunistic Grafting"
  and "Spam Protection Measures" (GRAFTs for unknown topics ignored, IWANT replies
  limited per peer).

Scores are the router's: it hands them in with ``set_score``/``set_scores``; a peer
without one scores 0.0.

Deterministic randomness
------------------------
Both backends draw from SplitMix64 (Steele, Lea, Flood 2014) seeded with the call's
``seed`` (an int in [0, 2**64)): ``state += 0x9E3779B97F4A7C15``; ``z = state``;
``z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9``; ``z = (z ^ z >> 27) * 0x94D049BB133111EB``;
output ``z ^ z >> 31`` (all modulo 2**64). A draw below ``n`` is ``(output * n) >> 64``.
``sample(items, k)`` is a partial Fisher-Yates shuffle: for ``i`` in ``0 .. min(k, n)``,
``j = i + below(n - i)`` and ``items[i], items[j]`` swap; the sample is ``items[:k]``
in that order. A shuffle is ``sample(items, n)``.

Candidate lists are always built in ascending byte order of peer ID and topics are
visited in ascending order (code point order, the same as UTF-8 byte order), so the
same state, ``now`` and ``seed`` give the same decisions on both backends.

The heartbeat, in this order: (1) forget backoffs that ended ``backoff_slack`` seconds
ago; (2) for each joined topic: prune mesh peers with a negative score; if the mesh has
fewer than ``D_lo`` peers graft ``sample(candidates, D - |mesh|)``; if it has more
than ``D_hi``, shuffle it, sort it by score (best first, stable), keep the first
``D_score``, shuffle the rest, then swap outbound peers from beyond position ``D`` in
for the last inbound peers within it until ``D_out`` of the first ``D`` are outbound,
and prune everything beyond ``D``; then, if at least ``D_lo`` peers are in the mesh but
fewer than ``D_out`` outbound, graft ``sample(outbound candidates, D_out - outbound)``;
every ``opportunistic_graft_ticks``-th heartbeat, if the median mesh score (the
``len // 2``-th of the ascending scores, with more than one peer) is below
``opportunistic_graft_threshold``, graft ``sample(candidates scoring above the median,
opportunistic_graft_peers)``; (3) for each fan-out topic: drop it when
``last_published + fanout_ttl < now``, else drop members below ``publish_threshold``
and top it up to ``D``; (4) for each topic in mesh or fan-out: IHAVE targets are
``sample(candidates, max(D_lazy, int(gossip_factor * len(candidates))))``. Graft
candidates are subscribed GossipSub (not floodsub), non-explicit peers outside the mesh
with score >= 0 and no backoff (including the slack); gossip candidates are subscribed
GossipSub, non-explicit peers outside mesh and fan-out with score >= ``gossip_threshold``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

# The classes live in their own modules, all re-exported here (the native binding imports
# GossipParams and HeartbeatDecision from this module): gossip_params (value types,
# constants, SplitMix64, shared checks), gossip_caches (SeenCache, MessageCache) and
# gossip_mesh (MeshState). None of them may import neonet._native or neonet.core.backend.
from neonet.core.gossip_caches import MessageCache, SeenCache
from neonet.core.gossip_mesh import MeshState
from neonet.core.gossip_params import (
    MAX_PEER_ID_LENGTH,
    MAX_TOPIC_LENGTH,
    PROTOCOL_FLOODSUB,
    PROTOCOL_MESHSUB_V10,
    PROTOCOL_MESHSUB_V11,
    PROTOCOL_MESHSUB_V12,
    GossipParams,
    GraftVerdict,
    HeartbeatDecision,
    SplitMix64,
)

__all__ = [
    "MAX_PEER_ID_LENGTH",
    "MAX_TOPIC_LENGTH",
    "PROTOCOL_FLOODSUB",
    "PROTOCOL_MESHSUB_V10",
    "PROTOCOL_MESHSUB_V11",
    "PROTOCOL_MESHSUB_V12",
    "GossipParams",
    "GraftVerdict",
    "HeartbeatDecision",
    "MeshState",
    "MeshStateInterface",
    "MessageCache",
    "MessageCacheInterface",
    "SeenCache",
    "SeenCacheInterface",
    "SplitMix64",
]

# ---------------------------------------------------------------------------------------
# The interface both backends implement (for typing callers and neonet.core.backend)
# ---------------------------------------------------------------------------------------


class SeenCacheInterface(Protocol):
    """What ``SeenCache`` offers on both backends."""

    @property
    def ttl(self) -> float: ...
    @property
    def capacity(self) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, msg_id: bytes, /) -> bool: ...
    def expire(self, now: float) -> int: ...
    def add(self, msg_id: bytes, now: float) -> bool: ...
    def add_many(self, msg_ids: Iterable[bytes], now: float) -> list[bool]: ...
    def contains_many(self, msg_ids: Iterable[bytes]) -> list[bool]: ...
    def add_packed(self, msg_ids: bytes, id_len: int, now: float) -> bytes: ...
    def contains_packed(self, msg_ids: bytes, id_len: int) -> bytes: ...


class MessageCacheInterface(Protocol):
    """What ``MessageCache`` offers on both backends."""

    def __len__(self) -> int: ...
    def __contains__(self, msg_id: bytes, /) -> bool: ...
    def put(self, msg_id: bytes, topic: str, message: bytes) -> bool: ...
    def get(self, msg_id: bytes) -> bytes | None: ...
    def get_for_peer(self, msg_id: bytes, peer: bytes, max_transmissions: int) -> bytes | None: ...
    def gossip_ids(self, topic: str) -> list[bytes]: ...
    def shift(self) -> None: ...


class MeshStateInterface(Protocol):
    """What ``MeshState`` offers on both backends."""

    @property
    def params(self) -> GossipParams: ...
    def add_peer(
        self, peer: bytes, outbound: bool, protocol: str, explicit: bool = False
    ) -> None: ...
    def remove_peer(self, peer: bytes) -> None: ...
    def set_score(self, peer: bytes, score: float) -> None: ...
    def set_scores(self, scores: Mapping[bytes, float]) -> None: ...
    def peer_subscribed(self, peer: bytes, topic: str) -> bool: ...
    def peer_unsubscribed(self, peer: bytes, topic: str) -> None: ...
    def backoff_until(self, peer: bytes, topic: str) -> float | None: ...
    def join(self, topic: str, now: float, seed: int) -> list[bytes]: ...
    def leave(self, topic: str, now: float) -> list[tuple[bytes, str, float]]: ...
    def handle_graft(self, peer: bytes, topic: str, now: float) -> GraftVerdict: ...
    def handle_prune(self, peer: bytes, topic: str, backoff: float | None, now: float) -> bool: ...
    def heartbeat(self, now: float, seed: int) -> HeartbeatDecision: ...
    def publish_targets(
        self, topic: str, source: bytes | None, flood_publish: bool, now: float, seed: int
    ) -> list[bytes]: ...
    def publish_targets_many(
        self,
        messages: Iterable[tuple[str, bytes | None]],
        flood_publish: bool,
        now: float,
        seed: int,
    ) -> list[list[bytes]]: ...
    def publish_targets_flat(
        self,
        messages: Iterable[tuple[str, bytes | None]],
        flood_publish: bool,
        now: float,
        seed: int,
    ) -> tuple[list[bytes], list[int]]: ...
    def mesh_peers(self, topic: str) -> list[bytes]: ...
    def fanout_peers(self, topic: str) -> list[bytes]: ...
    def topic_peers(self, topic: str) -> list[bytes]: ...
    def joined_topics(self) -> list[str]: ...
    def peer_topics(self, peer: bytes) -> list[str]: ...
    def peer_count(self) -> int: ...
    def topic_count(self) -> int: ...
