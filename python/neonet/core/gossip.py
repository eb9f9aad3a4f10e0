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

import bisect
import math
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Literal, Protocol, TypeVar

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

PROTOCOL_FLOODSUB = "/floodsub/1.0.0"
PROTOCOL_MESHSUB_V10 = "/meshsub/1.0.0"
PROTOCOL_MESHSUB_V11 = "/meshsub/1.1.0"
PROTOCOL_MESHSUB_V12 = "/meshsub/1.2.0"
_PROTOCOLS = frozenset(
    (PROTOCOL_FLOODSUB, PROTOCOL_MESHSUB_V10, PROTOCOL_MESHSUB_V11, PROTOCOL_MESHSUB_V12)
)

MAX_PEER_ID_LENGTH = 128  # bytes; libp2p peer IDs are 34-40 bytes in practice
MAX_TOPIC_LENGTH = 1024  # bytes of UTF-8
_MAX_COUNT = 1 << 32  # upper bound of every count parameter (both backends)
_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

GraftVerdict = Literal[
    "accepted", "ignored", "refused_explicit", "refused_backoff", "refused_score", "refused_full"
]
"""What ``handle_graft`` decided. Every ``refused_*`` means: answer with a PRUNE carrying
``prune_backoff`` (peer exchange only for ``refused_full``, and only if the peer's score
is >= 0); ``refused_backoff`` is also a behavioural penalty (P7) for the router."""

_T = TypeVar("_T")


class SplitMix64:
    """The deterministic random source of both backends (see the module docstring)."""

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = _check_seed(seed)

    def next_u64(self) -> int:
        """The next 64-bit output."""
        state = (self._state + _GAMMA) & _MASK64
        self._state = state
        z = ((state ^ (state >> 30)) * _MIX1) & _MASK64
        z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
        return z ^ (z >> 31)

    def below(self, bound: int) -> int:
        """A draw in ``range(bound)``: the high 64 bits of ``next_u64() * bound``."""
        return (self.next_u64() * bound) >> 64

    def sample(self, items: list[_T], count: int) -> list[_T]:
        """Partial Fisher-Yates over ``items`` (reordered in place); the first ``count``."""
        size = len(items)
        taken = count if count < size else size
        for index in range(taken):
            other = index + self.below(size - index)
            items[index], items[other] = items[other], items[index]
        if taken < size:
            del items[taken:]
        return items


def _check_seed(seed: int) -> int:
    if not isinstance(seed, int):
        raise TypeError("seed must be an int")
    if not 0 <= seed <= _MASK64:
        raise ValueError("seed must be an int in [0, 2**64)")
    return seed


def _check_time(now: float) -> None:
    if not math.isfinite(now):
        raise ValueError("now must be a finite number of seconds")


def _check_message(topic: object, source: object) -> None:
    if not isinstance(topic, str):
        raise TypeError("topic must be a str")
    topic.encode()  # UnicodeEncodeError for a lone surrogate, as the native side
    if source is not None and not isinstance(source, bytes):
        raise TypeError("source must be bytes or None")


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool")


def _publish_batch(messages: Iterable[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    """The batch as a list, every item checked before any is published (as the native
    side does: a bad item publishes nothing and is a TypeError)."""
    batch = list(messages)
    for item in batch:
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError("messages must be (topic, source) pairs")
        _check_message(*item)
    return batch


def _check_count(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if not minimum <= value < _MAX_COUNT:
        raise ValueError(f"{name} out of range [{minimum}, 2**32)")


_AT_LEAST_ONE = frozenset(
    (
        "opportunistic_graft_ticks",
        "max_peers",
        "max_topics",
        "max_topics_per_peer",
        "max_peers_per_topic",
        "max_backoffs",
    )
)


@dataclass(frozen=True, slots=True)
class GossipParams:
    """GossipSub router parameters; defaults are the spec's (v1.0 and v1.1 tables).

    The thresholds are ours (the spec gives none): they only matter once the router
    supplies scores. ``max_*`` bound the state: see ``MeshState``.
    """

    d: int = 6
    d_lo: int = 5
    d_hi: int = 12
    d_lazy: int = 6
    d_score: int = 4
    d_out: int = 2
    gossip_factor: float = 0.25
    fanout_ttl: float = 60.0
    prune_backoff: float = 60.0
    unsubscribe_backoff: float = 10.0
    backoff_slack: float = 1.0  # one heartbeat: we regraft only this long after a backoff
    opportunistic_graft_ticks: int = 60
    opportunistic_graft_peers: int = 2
    opportunistic_graft_threshold: float = 1.0
    gossip_threshold: float = -10.0
    publish_threshold: float = -50.0
    max_peers: int = 10_000
    max_topics: int = 10_000
    max_topics_per_peer: int = 1_000
    max_peers_per_topic: int = 10_000
    max_backoffs: int = 100_000

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == "int":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise TypeError(f"{field.name} must be an int")
                _check_count(field.name, value, 1 if field.name in _AT_LEAST_ONE else 0)
            else:
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise TypeError(f"{field.name} must be a float")
                if not math.isfinite(value):
                    raise ValueError(f"{field.name} must be finite")
        if not self.d_lo <= self.d <= self.d_hi:
            raise ValueError("need d_lo <= d <= d_hi")
        if self.d_score > self.d:
            raise ValueError("need d_score <= d")
        if self.d_out * 2 > self.d or (self.d_out >= self.d_lo and self.d_out > 0):
            raise ValueError("need d_out < d_lo and d_out <= d / 2")
        if not 0.0 <= self.gossip_factor <= 1.0:
            raise ValueError("gossip_factor must be in [0, 1]")
        if self.fanout_ttl <= 0.0:
            raise ValueError("fanout_ttl must be positive")
        if min(self.prune_backoff, self.unsubscribe_backoff, self.backoff_slack) < 0.0:
            raise ValueError("backoffs and backoff_slack must not be negative")
        if not self.publish_threshold <= self.gossip_threshold <= 0.0:
            raise ValueError("need publish_threshold <= gossip_threshold <= 0")
        if self.opportunistic_graft_threshold < 0.0:
            raise ValueError("opportunistic_graft_threshold must not be negative")


@dataclass(frozen=True, slots=True)
class HeartbeatDecision:
    """What one heartbeat decided; the router turns it into control messages.

    ``grafts``: (peer, topic) to send GRAFT to, already in the mesh. ``prunes``: (peer,
    topic, backoff seconds) to send PRUNE to, already out of the mesh and backed off.
    ``gossip``: topic -> peers to send IHAVE with ``MessageCache.gossip_ids(topic)``
    (only topics with at least one target). ``fanout_expired``: topics whose fan-out
    state was dropped (``fanout_ttl`` since the last publish).
    """

    grafts: list[tuple[bytes, str]]
    prunes: list[tuple[bytes, str, float]]
    gossip: dict[str, list[bytes]]
    fanout_expired: list[str]


# ---------------------------------------------------------------------------------------
# Seen-cache
# ---------------------------------------------------------------------------------------


class SeenCache:
    """Message IDs seen in the last ``ttl`` seconds (v1.0 "Message Cache": ``seen``).

    First-seen semantics: an ID is remembered from its first ``add`` for ``ttl``
    seconds (a later ``add`` does not extend it). At most ``capacity`` IDs are kept;
    adding a new ID to a full cache evicts the oldest one. ``now`` must never go back
    (``ValueError``); ``in`` and ``contains_many`` answer as of the latest ``now`` given
    to ``add``, ``add_many`` or ``expire``. Batch calls check ``now`` before any change.
    """

    __slots__ = ("_capacity", "_expiries", "_ids", "_now", "_order", "_ttl")

    def __init__(self, ttl: float = 120.0, capacity: int = 262_144) -> None:
        if not (math.isfinite(ttl) and ttl > 0.0):
            raise ValueError("ttl must be a positive number of seconds")
        _check_count("capacity", capacity, 1)
        self._ttl = float(ttl)
        self._capacity = capacity
        self._ids: set[bytes] = set()
        self._order: deque[bytes] = deque()  # oldest first
        self._expiries: deque[float] = deque()  # parallel to _order
        self._now = -sys.float_info.max  # below every finite time; -inf is refused

    @property
    def ttl(self) -> float:
        """Seconds an ID is remembered."""
        return self._ttl

    @property
    def capacity(self) -> int:
        """Most IDs kept at once."""
        return self._capacity

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._ids

    def _advance(self, now: float) -> int:
        if not (now >= self._now and math.isfinite(now)):  # also refuses NaN
            raise ValueError("now must be finite and never go backwards")
        self._now = now
        expiries = self._expiries
        removed = 0
        if expiries and expiries[0] <= now:
            order = self._order
            ids = self._ids
            while expiries and expiries[0] <= now:
                expiries.popleft()
                ids.discard(order.popleft())
                removed += 1
        return removed

    def expire(self, now: float) -> int:
        """Forget IDs seen ``ttl`` or more seconds before ``now``; return how many."""
        return self._advance(now)

    def add(self, msg_id: bytes, now: float) -> bool:
        """Remember ``msg_id``; True when it is new (not seen within ``ttl``)."""
        if now != self._now:
            self._advance(now)
        ids = self._ids
        if msg_id in ids:
            return False
        if len(ids) >= self._capacity:
            self._expiries.popleft()
            ids.discard(self._order.popleft())
        ids.add(msg_id)
        self._order.append(msg_id)
        self._expiries.append(now + self._ttl)
        return True

    def add_many(self, msg_ids: Iterable[bytes], now: float) -> list[bool]:
        """``add`` for each ID in order, all at ``now``; one bool per ID."""
        if now != self._now:
            self._advance(now)
        ids = self._ids
        order = self._order
        expiries = self._expiries
        capacity = self._capacity
        expiry = now + self._ttl
        results: list[bool] = []
        record = results.append
        for msg_id in msg_ids:
            if msg_id in ids:
                record(False)
                continue
            if len(ids) >= capacity:
                expiries.popleft()
                ids.discard(order.popleft())
            ids.add(msg_id)
            order.append(msg_id)
            expiries.append(expiry)
            record(True)
        return results

    def contains_many(self, msg_ids: Iterable[bytes]) -> list[bool]:
        """``msg_id in cache`` for each ID (as of the latest ``now``)."""
        ids = self._ids
        return [msg_id in ids for msg_id in msg_ids]

    # Packed batches, for bulk callers (a simulator, or IDs of one fixed length read
    # from one buffer): IDs of ``id_len`` bytes back to back in one ``bytes``, and one
    # result byte per ID (1 or 0), so a batch crosses the native boundary once.

    def add_packed(self, msg_ids: bytes, id_len: int, now: float) -> bytes:
        """``add_many`` over the IDs packed in ``msg_ids``; byte ``i`` is 1 if ID ``i`` is new."""
        _check_packed(msg_ids, id_len)
        return bytes(
            self.add_many([msg_ids[at : at + id_len] for at in range(0, len(msg_ids), id_len)], now)
        )

    def contains_packed(self, msg_ids: bytes, id_len: int) -> bytes:
        """``contains_many`` over the IDs packed in ``msg_ids``; byte ``i`` is 1 if ID ``i``
        is in the cache."""
        _check_packed(msg_ids, id_len)
        ids = self._ids
        return bytes([msg_ids[at : at + id_len] in ids for at in range(0, len(msg_ids), id_len)])


def _check_packed(msg_ids: bytes, id_len: int) -> None:
    """Arguments of the packed batch calls: ``bytes`` holding whole ``id_len``-byte IDs."""
    if not isinstance(msg_ids, bytes):
        raise TypeError("msg_ids must be bytes")
    _check_count("id_len", id_len, 1)
    if len(msg_ids) % id_len:
        raise ValueError("msg_ids must hold a whole number of id_len-byte IDs")


# ---------------------------------------------------------------------------------------
# Message cache
# ---------------------------------------------------------------------------------------


class _Window:
    __slots__ = ("by_topic", "order")

    def __init__(self) -> None:
        self.order: deque[bytes] = deque()  # IDs in arrival order
        self.by_topic: dict[str, deque[bytes]] = {}  # the same IDs, per topic


class _Cached:
    __slots__ = ("message", "topic", "transmissions")

    def __init__(self, topic: str, message: bytes) -> None:
        self.topic = topic
        self.message = message
        self.transmissions: dict[bytes, int] | None = None  # IWANT replies per peer


class MessageCache:
    """The ``mcache`` behind IHAVE/IWANT (v1.0 "Message Cache", v1.1 IWANT limits).

    Messages live in ``history_length`` windows, one per heartbeat: ``put`` adds to the
    newest, ``shift`` drops the oldest and opens a new one. ``gossip_ids`` lists the IDs
    of one topic in the newest ``gossip_length`` windows (newest window first, arrival
    order within a window). At most ``capacity`` messages are kept: ``put`` into a full
    cache evicts the oldest message. ``get_for_peer`` answers IWANT: each peer gets a
    message at most ``max_transmissions`` times, and at most ``iwant_peers_per_message``
    distinct peers are counted per message (further peers get None).
    """

    __slots__ = (
        "_capacity",
        "_entries",
        "_gossip_length",
        "_history_length",
        "_iwant_peers",
        "_windows",
    )

    def __init__(
        self,
        history_length: int = 5,
        gossip_length: int = 3,
        capacity: int = 65_536,
        iwant_peers_per_message: int = 256,
    ) -> None:
        _check_count("history_length", history_length, 1)
        _check_count("gossip_length", gossip_length, 1)
        _check_count("capacity", capacity, 1)
        _check_count("iwant_peers_per_message", iwant_peers_per_message, 0)
        if gossip_length > history_length:
            raise ValueError("gossip_length must not exceed history_length")
        if history_length > 1024:
            raise ValueError("history_length above 1024 windows")
        self._history_length = history_length
        self._gossip_length = gossip_length
        self._capacity = capacity
        self._iwant_peers = iwant_peers_per_message
        self._entries: dict[bytes, _Cached] = {}
        self._windows: deque[_Window] = deque(_Window() for _ in range(history_length))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._entries

    def put(self, msg_id: bytes, topic: str, message: bytes) -> bool:
        """Cache a message in the newest window; False (and no change) if already cached."""
        entries = self._entries
        if msg_id in entries:
            return False
        if len(entries) >= self._capacity:
            self._evict_oldest()
        entries[msg_id] = _Cached(topic, message)
        window = self._windows[0]
        window.order.append(msg_id)
        per_topic = window.by_topic.get(topic)
        if per_topic is None:
            window.by_topic[topic] = deque((msg_id,))
        else:
            per_topic.append(msg_id)
        return True

    def _evict_oldest(self) -> None:
        for window in reversed(self._windows):
            if window.order:
                msg_id = window.order.popleft()
                topic = self._entries.pop(msg_id).topic
                per_topic = window.by_topic[topic]
                per_topic.popleft()  # the oldest of the window is the oldest of its topic
                if not per_topic:
                    del window.by_topic[topic]
                return

    def get(self, msg_id: bytes) -> bytes | None:
        """The cached message, or None."""
        entry = self._entries.get(msg_id)
        return None if entry is None else entry.message

    def get_for_peer(self, msg_id: bytes, peer: bytes, max_transmissions: int) -> bytes | None:
        """The message for an IWANT from ``peer``, unless it already had it that often."""
        _check_count("max_transmissions", max_transmissions, 0)
        entry = self._entries.get(msg_id)
        if entry is None:
            return None
        counts = entry.transmissions
        if counts is None:
            counts = entry.transmissions = {}
        sent = counts.get(peer)
        if sent is None:
            if len(counts) >= self._iwant_peers or max_transmissions == 0:
                return None
            counts[peer] = 1
        elif sent >= max_transmissions:
            return None
        else:
            counts[peer] = sent + 1
        return entry.message

    def gossip_ids(self, topic: str) -> list[bytes]:
        """IDs of ``topic`` in the newest ``gossip_length`` windows, newest first."""
        found: list[bytes] = []
        windows = self._windows
        for index in range(self._gossip_length):
            per_topic = windows[index].by_topic.get(topic)
            if per_topic:
                found.extend(per_topic)
        return found

    def shift(self) -> None:
        """Drop the oldest window (and its messages) and open a new newest one."""
        oldest = self._windows.pop()
        entries = self._entries
        for msg_id in oldest.order:
            del entries[msg_id]
        self._windows.appendleft(_Window())


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
