"""GossipSub caches: ``SeenCache`` (the ``seen`` cache) and ``MessageCache`` (the
``mcache`` behind IHAVE/IWANT), the pure-Python twins of the native classes.

Part of ``neonet.core.gossip`` (the decision layer; its docstring describes the whole),
which re-exports both classes. Must not import ``neonet._native`` or
``neonet.core.backend``.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Iterable

from neonet.core.gossip_params import _check_count

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
