"""GossipSub value types and constants: ``GossipParams``, ``HeartbeatDecision``, the
protocol IDs and bounds, ``SplitMix64`` (the deterministic random source of both backends)
and the argument checks the pure classes share.

Part of ``neonet.core.gossip`` (the decision layer; its docstring describes the whole),
which re-exports every public name here. The native binding imports ``GossipParams`` and
``HeartbeatDecision`` from ``neonet.core.gossip`` at run time, so this module must not
import ``neonet._native`` or ``neonet.core.backend``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Literal, TypeVar

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
