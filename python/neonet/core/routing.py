"""The Kademlia routing table, pure-Python twin of the Rust one in ``neonet._native``.

libp2p Kademlia DHT spec (kad-dht/README.md), "Distance" and "Kademlia routing
table": a peer's key is the SHA-256 of its peer ID bytes, the distance between two
keys is their XOR, and the table keeps up to ``k`` (``bucket_size``, 20 by default)
peers for every shared-prefix length ``L`` in 0..255 with the local key. Bucket ``L``
holds the peers whose key shares exactly ``L`` leading bits with ours; the local peer
is never stored. The "Bootstrap process" section is served by the refresh bookkeeping.

Each bucket keeps its peers in least-recently-seen order (Kademlia paper, section
2.2). A new peer that finds its bucket full goes to the bucket's bounded replacement
cache, and the caller is asked to check the least-recently-seen peer: one pending
check per bucket at a time, lapsing after ``pending_timeout`` seconds. The caller
answers with ``resolve_pending``; a dead peer is replaced by the most recently seen
replacement.

``closest(key, n)`` is exact. Every bucket also keeps its keys sorted, so a lookup
visits the buckets in XOR order from the target and, inside a large bucket, narrows
the sorted keys bit by bit (a binary trie walked with ``bisect``) instead of scanning
them: a few binary searches plus sorting about n keys, rather than O(size).

Batches (``update_many``, ``closest_many``) give the same results as the single calls
in order; they check every argument before changing anything, and ``update_many``
sorts each touched bucket once instead of inserting key by key. The native batches
run without the GIL, so a second thread using the same native table meanwhile gets
PyO3's RuntimeError "Already mutably borrowed": share a table between threads only
with a lock.

The table is a plain data structure: no I/O, no clock (``now`` is an argument), no
randomness (``random_key_for_bucket`` takes the random bytes). It has the same
interface, results and errors as the native class; ``neonet.core.backend`` picks one.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from enum import StrEnum
from hashlib import sha256
from typing import NamedTuple

KEY_LENGTH = 32
BUCKET_COUNT = 256
MAX_PEER_ID_LENGTH = 128
MAX_BUCKET_SIZE = 1 << 20
MAX_REPLACEMENT_SIZE = 1024
DEFAULT_BUCKET_SIZE = 20
DEFAULT_REPLACEMENT_SIZE = 10
DEFAULT_PENDING_TIMEOUT = 30.0


class UpdateStatus(StrEnum):
    """What ``RoutingTable.update`` did with a peer that was seen."""

    ADDED = "added"  # new peer, stored at the most-recently-seen end of its bucket
    UPDATED = "updated"  # known peer, moved to the most-recently-seen end
    PENDING = "pending"  # bucket full: candidate cached; ping ``outcome.ping`` and resolve
    QUEUED = "queued"  # bucket full: candidate cached; a check is already pending
    REFUSED = "refused"  # our own peer ID (or key): never stored


class UpdateOutcome(NamedTuple):
    """Result of ``update``: a status and, for ``PENDING``, the peer to check."""

    status: UpdateStatus
    ping: bytes | None = None


_ADDED = UpdateOutcome(UpdateStatus.ADDED)
_UPDATED = UpdateOutcome(UpdateStatus.UPDATED)
_QUEUED = UpdateOutcome(UpdateStatus.QUEUED)
_REFUSED = UpdateOutcome(UpdateStatus.REFUSED)
_NEVER = -math.inf


def kad_key(peer_id: bytes) -> bytes:
    """The Kademlia key of a peer: SHA-256 of its peer ID bytes (32 bytes)."""
    return sha256(peer_id).digest()


def _check_peer_id(peer_id: bytes) -> None:
    if not 0 < len(peer_id) <= MAX_PEER_ID_LENGTH:
        raise ValueError(f"peer ID must be 1 to {MAX_PEER_ID_LENGTH} bytes long")


def _check_now(now: float) -> None:
    if not math.isfinite(now):
        raise ValueError("now must be a finite number")


def _check_index(index: int) -> None:
    if not 0 <= index < BUCKET_COUNT:
        raise ValueError(f"bucket index must be in 0..{BUCKET_COUNT - 1}")


def _key_int(key: bytes) -> int:
    if len(key) != KEY_LENGTH:
        raise ValueError(f"a Kademlia key is {KEY_LENGTH} bytes long")
    return int.from_bytes(key)


def _nearest(keys: list[int], target: int, count: int, found: list[int]) -> None:
    """Append the XOR distances of the ``count`` keys (of sorted ``keys``) nearest ``target``.

    A binary trie walked with bisect: keys in ``keys[low:high]`` share every bit above
    the highest bit where the first and last differ; the half that matches the
    target at that bit is nearer than the other half. Take the near half whole when
    it holds too few keys, else narrow to it. Distances are appended nearest first.
    """
    low, high = 0, len(keys)
    while high - low > count:
        first = keys[low]
        shift = (first ^ keys[high - 1]).bit_length() - 1
        middle = bisect_left(keys, ((first >> shift) | 1) << shift, low, high)
        if target >> shift & 1:
            near_low, near_high, far_low, far_high = middle, high, low, middle
        else:
            near_low, near_high, far_low, far_high = low, middle, middle, high
        size = near_high - near_low
        if size >= count:
            low, high = near_low, near_high
        else:
            found.extend(sorted([key ^ target for key in keys[near_low:near_high]]))
            count -= size
            low, high = far_low, far_high
    found.extend(sorted([key ^ target for key in keys[low:high]]))


class _Bucket:
    """One k-bucket: peers in least-recently-seen order, sorted keys, replacements."""

    __slots__ = ("entries", "keys", "pending", "pending_since", "replacements")

    def __init__(self) -> None:
        self.entries: OrderedDict[bytes, float] = OrderedDict()  # peer -> last seen
        self.keys: list[int] = []  # the entries' keys, sorted
        self.replacements: OrderedDict[bytes, float] = OrderedDict()  # oldest first
        self.pending: bytes | None = None  # the peer whose liveness check is out
        self.pending_since = _NEVER


class RoutingTable:
    """A Kademlia routing table of 256 k-buckets around ``local_peer_id``.

    ``bucket_size`` is k (1..2**20), ``replacement_size`` bounds each bucket's
    replacement cache (0..1024; the oldest replacement is dropped when it is full),
    ``pending_timeout`` (seconds, >= 0) is how long a liveness check stays pending
    before a new full-bucket update may start another. Peer IDs are 1..128 bytes.
    """

    __slots__ = (
        "_bucket_size",
        "_buckets",
        "_key_of",
        "_local_int",
        "_local_key",
        "_local_peer_id",
        "_occupied",
        "_peer_of",
        "_pending_timeout",
        "_refreshed",
        "_replacement_size",
        "_unsorted",
    )

    def __init__(
        self,
        local_peer_id: bytes,
        *,
        bucket_size: int = DEFAULT_BUCKET_SIZE,
        replacement_size: int = DEFAULT_REPLACEMENT_SIZE,
        pending_timeout: float = DEFAULT_PENDING_TIMEOUT,
    ) -> None:
        _check_peer_id(local_peer_id)
        if not 1 <= bucket_size <= MAX_BUCKET_SIZE:
            raise ValueError(f"bucket_size must be in 1..{MAX_BUCKET_SIZE}")
        if not 0 <= replacement_size <= MAX_REPLACEMENT_SIZE:
            raise ValueError(f"replacement_size must be in 0..{MAX_REPLACEMENT_SIZE}")
        if not (math.isfinite(pending_timeout) and pending_timeout >= 0):
            raise ValueError("pending_timeout must be a finite number >= 0")
        self._local_peer_id = bytes(local_peer_id)
        self._local_key = kad_key(local_peer_id)
        self._local_int = int.from_bytes(self._local_key)
        self._bucket_size = bucket_size
        self._replacement_size = replacement_size
        self._pending_timeout = float(pending_timeout)
        self._key_of: dict[bytes, int] = {}  # stored peer -> key
        self._peer_of: dict[int, bytes] = {}  # key -> stored peer
        # Buckets are made on first use: most of the 256 stay empty in a real table.
        self._buckets: list[_Bucket | None] = [None] * BUCKET_COUNT
        self._occupied: list[int] = []  # indices of non-empty buckets, ascending
        self._refreshed = [_NEVER] * BUCKET_COUNT
        self._unsorted: set[_Bucket] | None = None  # buckets with unsorted keys (batches)

    # -- properties -------------------------------------------------------------------

    @property
    def local_peer_id(self) -> bytes:
        """Our own peer ID (never stored in the table)."""
        return self._local_peer_id

    @property
    def local_key(self) -> bytes:
        """Our own Kademlia key, SHA-256 of ``local_peer_id``."""
        return self._local_key

    @property
    def bucket_size(self) -> int:
        """k: the most peers one bucket holds."""
        return self._bucket_size

    @property
    def replacement_size(self) -> int:
        """The most candidates one bucket's replacement cache holds."""
        return self._replacement_size

    @property
    def pending_timeout(self) -> float:
        """Seconds after which a pending liveness check lapses."""
        return self._pending_timeout

    # -- updates ----------------------------------------------------------------------

    def _bucket_of(self, key: int) -> _Bucket:
        index = BUCKET_COUNT - (key ^ self._local_int).bit_length()
        bucket = self._buckets[index]
        if bucket is None:
            bucket = self._buckets[index] = _Bucket()
        return bucket

    def update(self, peer_id: bytes, now: float) -> UpdateOutcome:
        """Record that ``peer_id`` was seen at ``now``; see ``UpdateStatus`` for outcomes."""
        _check_now(now)
        key = self._key_of.get(peer_id)
        if key is not None:
            home = self._bucket_of(key)
            home.entries.move_to_end(peer_id)
            home.entries[peer_id] = now
            if home.pending == peer_id:  # it answered: the check is moot
                home.pending = None
            return _UPDATED
        _check_peer_id(peer_id)
        key = int.from_bytes(sha256(peer_id).digest())
        if key == self._local_int:
            return _REFUSED
        index = BUCKET_COUNT - (key ^ self._local_int).bit_length()
        bucket = self._buckets[index]
        if bucket is None:
            bucket = self._buckets[index] = _Bucket()
        if len(bucket.entries) < self._bucket_size:
            self._insert(index, bucket, peer_id, key, now)
            return _ADDED
        if self._replacement_size:
            replacements = bucket.replacements
            if peer_id in replacements:
                replacements.move_to_end(peer_id)
            elif len(replacements) >= self._replacement_size:
                replacements.popitem(last=False)
            replacements[peer_id] = now
        if bucket.pending is None or now - bucket.pending_since >= self._pending_timeout:
            oldest = next(iter(bucket.entries))
            bucket.pending = oldest
            bucket.pending_since = now
            return UpdateOutcome(UpdateStatus.PENDING, oldest)
        return _QUEUED

    def update_many(self, peer_ids: Sequence[bytes], now: float) -> list[UpdateOutcome]:
        """``update`` each peer in order; all arguments are checked before any change."""
        _check_now(now)
        for peer_id in peer_ids:
            _check_peer_id(peer_id)
        # Keys of new peers are appended unsorted and each touched bucket sorted once
        # at the end (Timsort merges the sorted run and the new one): loading n peers
        # costs O(n log n), not the O(n^2) of n sorted insertions.
        self._unsorted = set()
        try:
            update = self.update
            return [update(peer_id, now) for peer_id in peer_ids]
        finally:
            for bucket in self._unsorted:
                bucket.keys.sort()
            self._unsorted = None

    def _insert(self, index: int, bucket: _Bucket, peer_id: bytes, key: int, now: float) -> None:
        if not bucket.entries:
            insort(self._occupied, index)
        self._store(bucket, peer_id, key, now)

    def _store(self, bucket: _Bucket, peer_id: bytes, key: int, now: float) -> None:
        bucket.entries[peer_id] = now
        if self._unsorted is None:
            insort(bucket.keys, key)
        else:
            bucket.keys.append(key)
            self._unsorted.add(bucket)
        self._key_of[peer_id] = key
        self._peer_of[key] = peer_id

    def _evict(self, bucket: _Bucket, peer_id: bytes, key: int) -> None:
        """Drop a stored peer and promote the most recent replacement into its place."""
        del bucket.entries[peer_id]
        keys = bucket.keys
        del keys[bisect_left(keys, key)]
        del self._key_of[peer_id]
        del self._peer_of[key]
        if bucket.pending == peer_id:
            bucket.pending = None
        if bucket.replacements:
            replacement, seen = bucket.replacements.popitem()
            self._store(bucket, replacement, int.from_bytes(sha256(replacement).digest()), seen)
        elif not bucket.entries:
            index = BUCKET_COUNT - (key ^ self._local_int).bit_length()
            del self._occupied[bisect_left(self._occupied, index)]

    def resolve_pending(self, peer_id: bytes, alive: bool, now: float) -> bool:
        """Answer the liveness check of ``peer_id``; False if none is pending for it.

        Alive: the peer moves to the most-recently-seen end. Dead: it is removed and
        the most recently seen replacement takes its place.
        """
        _check_now(now)
        _check_peer_id(peer_id)
        key = self._key_of.get(peer_id)
        if key is None:
            return False
        bucket = self._bucket_of(key)
        if bucket.pending != peer_id:
            return False
        bucket.pending = None
        if alive:
            bucket.entries.move_to_end(peer_id)
            bucket.entries[peer_id] = now
        else:
            self._evict(bucket, peer_id, key)
        return True

    def remove(self, peer_id: bytes) -> bool:
        """Forget ``peer_id`` (a stored peer or a replacement); True if it was known.

        A stored peer's place goes to the bucket's most recent replacement.
        """
        _check_peer_id(peer_id)
        key = self._key_of.get(peer_id)
        if key is not None:
            self._evict(self._bucket_of(key), peer_id, key)
            return True
        key = int.from_bytes(sha256(peer_id).digest())
        if key == self._local_int:
            return False
        bucket = self._buckets[BUCKET_COUNT - (key ^ self._local_int).bit_length()]
        if bucket is None or peer_id not in bucket.replacements:
            return False
        del bucket.replacements[peer_id]
        return True

    # -- queries ----------------------------------------------------------------------

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._key_of

    def __len__(self) -> int:
        return len(self._key_of)

    def peers(self) -> list[bytes]:
        """Every stored peer: bucket 0 to 255, each least-recently-seen first."""
        found: list[bytes] = []
        for index in self._occupied:
            bucket = self._buckets[index]
            assert bucket is not None
            found.extend(bucket.entries)
        return found

    def bucket_sizes(self) -> list[int]:
        """How many peers each of the 256 buckets holds."""
        return [0 if bucket is None else len(bucket.entries) for bucket in self._buckets]

    def _existing(self, index: int) -> _Bucket | None:
        _check_index(index)
        return self._buckets[index]

    def bucket_peers(self, index: int) -> list[bytes]:
        """The peers of bucket ``index``, least-recently-seen first."""
        bucket = self._existing(index)
        return [] if bucket is None else list(bucket.entries)

    def replacements(self, index: int) -> list[bytes]:
        """The replacement cache of bucket ``index``, oldest first."""
        bucket = self._existing(index)
        return [] if bucket is None else list(bucket.replacements)

    def pending(self, index: int) -> bytes | None:
        """The peer of bucket ``index`` whose liveness check is pending, if any."""
        bucket = self._existing(index)
        return None if bucket is None else bucket.pending

    def last_seen(self, peer_id: bytes) -> float | None:
        """When a stored peer was last seen (None if it is not stored)."""
        key = self._key_of.get(peer_id)
        return None if key is None else self._bucket_of(key).entries[peer_id]

    def bucket_index(self, key: bytes) -> int:
        """The bucket a 32-byte key falls in (its shared-prefix length with ours)."""
        distance = _key_int(key) ^ self._local_int
        if not distance:
            raise ValueError("the local key belongs to no bucket")
        return BUCKET_COUNT - distance.bit_length()

    def _visit_order(self, target: int) -> Iterator[int]:
        """Non-empty bucket indices, nearest to ``target`` first (whole buckets never mix)."""
        distance = target ^ self._local_int
        own = BUCKET_COUNT - distance.bit_length()
        occupied = self._occupied
        split = bisect_left(occupied, own)
        if split < len(occupied) and occupied[split] == own:
            yield own
            deeper = occupied[split + 1 :]
        else:
            deeper = occupied[split:]
        # Past the target's own bucket: a bucket whose distinguishing bit the target
        # shares is nearer than everything deeper; the others come after all of it.
        later: list[int] = []
        for index in deeper:
            if distance >> (255 - index) & 1:
                yield index
            else:
                later.append(index)
        yield from reversed(later)
        yield from reversed(occupied[:split])

    def closest(self, key: bytes, n: int) -> list[bytes]:
        """Up to ``n`` stored peers nearest ``key`` (a 32-byte key) by XOR, nearest first."""
        target = _key_int(key)
        if n < 0:
            raise ValueError("n must be >= 0")
        return self._closest(target, n)

    def _closest(self, target: int, count: int) -> list[bytes]:
        found: list[int] = []
        if count:
            buckets = self._buckets
            for index in self._visit_order(target):
                keys = buckets[index].keys  # type: ignore[union-attr]
                if len(keys) >= count:
                    _nearest(keys, target, count, found)
                    break
                found.extend(sorted([key ^ target for key in keys]))
                count -= len(keys)
        peer_of = self._peer_of
        return [peer_of[distance ^ target] for distance in found]

    def closest_many(self, keys: Sequence[bytes], n: int) -> list[list[bytes]]:
        """``closest(key, n)`` for each key; all arguments are checked first."""
        targets = [_key_int(key) for key in keys]
        if n < 0:
            raise ValueError("n must be >= 0")
        closest = self._closest
        return [closest(target, n) for target in targets]

    def closest_many_flat(self, keys: Sequence[bytes], n: int) -> list[bytes]:
        """``closest_many`` with the answers back to back in one list, for bulk callers
        (a simulator): each key's answer is ``min(n, len(self))`` peers long."""
        targets = [_key_int(key) for key in keys]
        if n < 0:
            raise ValueError("n must be >= 0")
        closest = self._closest
        found: list[bytes] = []
        extend = found.extend
        for target in targets:
            extend(closest(target, n))
        return found

    # -- refresh bookkeeping ----------------------------------------------------------

    def mark_refreshed(self, bucket: int | bytes, now: float) -> None:
        """Record that a lookup refreshed a bucket (given by index, or by a key inside it)."""
        _check_now(now)
        if isinstance(bucket, bytes):
            index = self.bucket_index(bucket)
        else:
            index = bucket
            _check_index(index)
        self._refreshed[index] = float(now)

    def stale_buckets(self, now: float, interval: float) -> list[int]:
        """Buckets not refreshed for ``interval`` seconds, up to one past the deepest
        non-empty bucket (deeper ones cannot fill before it does); never-refreshed
        buckets are stale.
        """
        _check_now(now)
        if not (math.isfinite(interval) and interval >= 0):
            raise ValueError("interval must be a finite number >= 0")
        limit = min(BUCKET_COUNT, (self._occupied[-1] + 2) if self._occupied else 1)
        refreshed = self._refreshed
        return [index for index in range(limit) if now - refreshed[index] >= interval]

    def random_key_for_bucket(self, index: int, random_bytes: bytes) -> bytes:
        """A lookup target in bucket ``index``: our key's first ``index`` bits, the next
        bit flipped, the rest from the 32 ``random_bytes``.
        """
        _check_index(index)
        if len(random_bytes) != KEY_LENGTH:
            raise ValueError(f"random_bytes must be {KEY_LENGTH} bytes long")
        shift = 255 - index
        low_bits = (1 << shift) - 1
        prefix = ((self._local_int >> shift) ^ 1) << shift
        key = prefix | (int.from_bytes(random_bytes) & low_bits)
        return key.to_bytes(KEY_LENGTH)
