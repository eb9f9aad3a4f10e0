"""The Kademlia routing table on both backends: buckets, pending checks, closest, refresh."""

from __future__ import annotations

import hashlib
import math
import re
import threading
from itertools import count

import pytest

from neonet.core.backend import Implementation
from neonet.core.routing import UpdateOutcome, UpdateStatus

LOCAL = b"\x00\x24local-peer"
ADDED = UpdateOutcome(UpdateStatus.ADDED)
UPDATED = UpdateOutcome(UpdateStatus.UPDATED)
QUEUED = UpdateOutcome(UpdateStatus.QUEUED)
REFUSED = UpdateOutcome(UpdateStatus.REFUSED)


def pending(peer: bytes) -> UpdateOutcome:
    return UpdateOutcome(UpdateStatus.PENDING, peer)


def peer_id(number: int) -> bytes:
    return b"\x12\x20" + number.to_bytes(8, "big")


def key_int(key: bytes) -> int:
    return int.from_bytes(key, "big")


def shared_prefix(a: bytes, b: bytes) -> int:
    return 256 - (key_int(a) ^ key_int(b)).bit_length()


def peers_in_bucket(bucket: int, how_many: int, local: bytes = LOCAL) -> list[bytes]:
    """The first ``how_many`` test peer IDs whose key shares ``bucket`` bits with ours."""
    local_key = hashlib.sha256(local).digest()
    found = []
    for number in count():
        candidate = peer_id(number)
        if shared_prefix(hashlib.sha256(candidate).digest(), local_key) == bucket:
            found.append(candidate)
            if len(found) == how_many:
                return found
    raise AssertionError("unreachable")


def brute_closest(peers: list[bytes], key: bytes, n: int) -> list[bytes]:
    target = key_int(key)
    return sorted(peers, key=lambda peer: key_int(hashlib.sha256(peer).digest()) ^ target)[:n]


def test_kad_key_is_sha256_of_the_peer_id(backend: Implementation) -> None:
    assert backend.kad_key(b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    for number in range(50):
        assert backend.kad_key(peer_id(number)) == hashlib.sha256(peer_id(number)).digest()


def test_construction_defaults_and_limits(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL)
    assert table.local_peer_id == LOCAL
    assert table.local_key == hashlib.sha256(LOCAL).digest()
    assert (table.bucket_size, table.replacement_size, table.pending_timeout) == (20, 10, 30.0)
    assert len(table) == 0
    assert table.bucket_sizes() == [0] * 256
    table = backend.RoutingTable(LOCAL, bucket_size=2**20, replacement_size=1024)
    assert table.bucket_size == 2**20


@pytest.mark.parametrize(
    ("local", "options", "message"),
    [
        (b"", {}, "peer ID must be 1 to 128 bytes long"),
        (b"x" * 129, {}, "peer ID must be 1 to 128 bytes long"),
        (LOCAL, {"bucket_size": 0}, "bucket_size must be in 1..1048576"),
        (LOCAL, {"bucket_size": 2**20 + 1}, "bucket_size must be in 1..1048576"),
        (LOCAL, {"replacement_size": -1}, "replacement_size must be in 0..1024"),
        (LOCAL, {"replacement_size": 1025}, "replacement_size must be in 0..1024"),
        (LOCAL, {"pending_timeout": -1.0}, "pending_timeout must be a finite number >= 0"),
        (LOCAL, {"pending_timeout": math.nan}, "pending_timeout must be a finite number >= 0"),
        (LOCAL, {"pending_timeout": math.inf}, "pending_timeout must be a finite number >= 0"),
    ],
)
def test_construction_arguments_are_checked(
    backend: Implementation, local: bytes, options: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        backend.RoutingTable(local, **options)  # type: ignore[arg-type]


def test_own_peer_is_refused_and_bad_input_rejected(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL)
    assert table.update(LOCAL, 0.0) == REFUSED
    assert LOCAL not in table
    assert len(table) == 0
    assert table.remove(LOCAL) is False
    assert table.resolve_pending(LOCAL, False, 0.0) is False
    with pytest.raises(ValueError, match="peer ID must be 1 to 128 bytes"):
        table.update(b"", 0.0)
    with pytest.raises(ValueError, match="peer ID must be 1 to 128 bytes"):
        table.update(b"p" * 129, 0.0)
    for now in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="now must be a finite number"):
            table.update(peer_id(1), now)
    with pytest.raises(ValueError, match="peer ID"):
        table.remove(b"")
    assert 42 not in table
    assert "text" not in table


def test_new_and_known_peers_keep_least_recently_seen_order(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL)
    first, second, third = peers_in_bucket(0, 3)
    outcomes = [table.update(peer, float(time)) for time, peer in enumerate([first, second, third])]
    assert outcomes == [ADDED, ADDED, ADDED]
    assert table.update(first, 7.5) == UPDATED
    assert table.bucket_peers(0) == [second, third, first]
    assert table.last_seen(first) == 7.5
    assert table.last_seen(second) == 1.0
    assert table.last_seen(peer_id(10**6)) is None
    assert len(table) == 3
    assert first in table
    assert table.bucket_sizes()[0] == 3
    assert table.peers() == [second, third, first]


def test_full_bucket_asks_for_one_check_and_caches_candidates(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL, bucket_size=3, replacement_size=2)
    ids = peers_in_bucket(0, 8)
    for time, peer in enumerate(ids[:3]):
        table.update(peer, float(time))
    assert table.update(ids[3], 10.0) == pending(ids[0])
    assert table.pending(0) == ids[0]
    assert table.update(ids[4], 11.0) == QUEUED
    assert table.update(ids[5], 12.0) == QUEUED
    # Bounded cache: the oldest candidate is dropped; a repeated candidate moves up.
    assert table.replacements(0) == [ids[4], ids[5]]
    assert table.update(ids[4], 13.0) == QUEUED
    assert table.replacements(0) == [ids[5], ids[4]]
    assert ids[4] not in table
    assert len(table) == 3
    # Dead: removed, and the most recent replacement takes the most-recently-seen end.
    assert table.resolve_pending(ids[0], False, 14.0) is True
    assert table.bucket_peers(0) == [ids[1], ids[2], ids[4]]
    assert table.last_seen(ids[4]) == 13.0
    assert table.replacements(0) == [ids[5]]
    assert table.pending(0) is None
    assert table.resolve_pending(ids[0], False, 14.0) is False
    # Alive: the checked peer moves to the most-recently-seen end.
    assert table.update(ids[6], 15.0) == pending(ids[1])
    assert table.resolve_pending(ids[2], True, 16.0) is False  # not the one being checked
    assert table.resolve_pending(ids[1], True, 16.0) is True
    assert table.bucket_peers(0) == [ids[2], ids[4], ids[1]]
    assert table.last_seen(ids[1]) == 16.0
    assert table.replacements(0) == [ids[5], ids[6]]


def test_pending_check_lapses_and_seeing_the_peer_settles_it(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL, bucket_size=1, replacement_size=1, pending_timeout=5.0)
    ids = peers_in_bucket(0, 4)
    table.update(ids[0], 0.0)
    assert table.update(ids[1], 1.0) == pending(ids[0])
    assert table.update(ids[2], 5.9) == QUEUED
    assert table.update(ids[3], 6.0) == pending(ids[0])  # the first check lapsed
    assert table.update(ids[0], 7.0) == UPDATED  # heard from it: nothing pending
    assert table.pending(0) is None
    assert table.resolve_pending(ids[0], False, 8.0) is False
    assert table.bucket_peers(0) == [ids[0]]


def test_no_replacement_cache(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL, bucket_size=1, replacement_size=0)
    ids = peers_in_bucket(0, 2)
    table.update(ids[0], 0.0)
    assert table.update(ids[1], 1.0) == pending(ids[0])
    assert table.replacements(0) == []
    assert table.resolve_pending(ids[0], False, 2.0) is True
    assert len(table) == 0
    assert table.bucket_sizes()[0] == 0
    assert table.stale_buckets(0.0, 1.0) == [0]


def test_remove_promotes_and_forgets_replacements(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL, bucket_size=2, replacement_size=3)
    ids = peers_in_bucket(1, 5)
    for time, peer in enumerate(ids):
        table.update(peer, float(time))
    assert table.replacements(1) == ids[2:]
    assert table.remove(ids[3]) is True  # a replacement
    assert table.remove(ids[3]) is False
    assert table.replacements(1) == [ids[2], ids[4]]
    assert table.pending(1) == ids[0]
    assert table.remove(ids[0]) is True  # the stored peer under check
    assert table.pending(1) is None
    assert table.bucket_peers(1) == [ids[1], ids[4]]
    assert table.remove(peer_id(10**7)) is False
    assert [table.remove(peer) for peer in (ids[1], ids[4], ids[2])] == [True, True, True]
    assert len(table) == 0
    assert table.peers() == []


@pytest.mark.parametrize("bucket_size", [1, 3, 20, 10_000])
def test_closest_is_exact(backend: Implementation, bucket_size: int) -> None:
    table = backend.RoutingTable(LOCAL, bucket_size=bucket_size, replacement_size=0)
    table.update_many([peer_id(number) for number in range(1500)], 0.0)
    stored = table.peers()
    keys = [hashlib.sha256(b"target %d" % number).digest() for number in range(40)]
    keys += [table.local_key, hashlib.sha256(stored[0]).digest(), b"\0" * 32, b"\xff" * 32]
    for key in keys:
        for n in (0, 1, 2, 5, 20, 64, len(stored), len(stored) + 5):
            assert table.closest(key, n) == brute_closest(stored, key, n)
    assert table.closest_many(keys, 20) == [table.closest(key, 20) for key in keys]
    assert table.closest_many([], 5) == []
    for n in (0, 3, 20, len(stored) + 5):
        flat = table.closest_many_flat(keys, n)
        assert flat == [peer for key in keys for peer in table.closest(key, n)]
        assert len(flat) == len(keys) * min(n, len(stored))
    assert table.closest_many_flat([], 5) == []


def test_closest_arguments(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL)
    assert table.closest(b"\0" * 32, 20) == []
    table.update(peer_id(1), 0.0)
    for bad_key in (b"", b"\0" * 31, b"\0" * 33):
        with pytest.raises(ValueError, match="a Kademlia key is 32 bytes long"):
            table.closest(bad_key, 1)
    with pytest.raises(ValueError, match="n must be >= 0"):
        table.closest(b"\0" * 32, -1)
    with pytest.raises(ValueError, match="32 bytes"):
        table.closest_many([b"\0" * 32, b"short"], 1)
    with pytest.raises(ValueError, match="n must be >= 0"):
        table.closest_many([b"\0" * 32], -3)
    with pytest.raises(ValueError, match="32 bytes"):
        table.closest_many_flat([b"\0" * 32, b"short"], 1)
    with pytest.raises(ValueError, match="n must be >= 0"):
        table.closest_many_flat([b"\0" * 32], -3)
    found = table.closest(b"\0" * 32, 3)
    assert found == [peer_id(1)]
    assert type(found[0]) is bytes


def test_update_many_is_update_in_order_and_checks_first(backend: Implementation) -> None:
    ids = peers_in_bucket(0, 6) + [peer_id(number) for number in range(40)] + [LOCAL]
    ids += ids[:5]
    batch = backend.RoutingTable(LOCAL, bucket_size=3, replacement_size=2)
    one_by_one = backend.RoutingTable(LOCAL, bucket_size=3, replacement_size=2)
    outcomes = batch.update_many(ids, 4.0)
    assert outcomes == [one_by_one.update(peer, 4.0) for peer in ids]
    assert REFUSED in outcomes
    assert any(outcome.status is UpdateStatus.PENDING for outcome in outcomes)
    assert batch.peers() == one_by_one.peers()
    before = batch.peers()
    with pytest.raises(ValueError, match="peer ID"):
        batch.update_many([peer_id(500), b""], 5.0)
    with pytest.raises(ValueError, match="now"):
        batch.update_many([peer_id(501)], math.nan)
    assert batch.peers() == before
    assert batch.update_many([], 6.0) == []


def test_bucket_index_and_introspection_arguments(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL)
    local_key = table.local_key
    for index in (0, 1, 7, 100, 255):
        assert table.bucket_index(table.random_key_for_bucket(index, b"\x5a" * 32)) == index
    with pytest.raises(ValueError, match="the local key belongs to no bucket"):
        table.bucket_index(local_key)
    with pytest.raises(ValueError, match="32 bytes"):
        table.bucket_index(b"\1" * 16)
    for index in (-1, 256):
        for query in (table.bucket_peers, table.replacements, table.pending):
            with pytest.raises(ValueError, match=r"bucket index must be in 0\.\.255"):
                query(index)
    assert table.bucket_peers(255) == []
    assert table.replacements(3) == []
    assert table.pending(9) is None


def test_random_key_for_bucket(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL)
    local = key_int(table.local_key)
    for index in range(256):
        for fill in (b"\0" * 32, b"\xff" * 32, bytes(range(32))):
            key = table.random_key_for_bucket(index, fill)
            assert len(key) == 32
            assert shared_prefix(key, table.local_key) == index
            low_bits = (1 << (255 - index)) - 1
            assert key_int(key) & low_bits == key_int(fill) & low_bits
            assert key_int(key) >> (256 - index) == local >> (256 - index) if index else True
    with pytest.raises(ValueError, match="bucket index"):
        table.random_key_for_bucket(256, b"\0" * 32)
    with pytest.raises(ValueError, match="random_bytes must be 32 bytes long"):
        table.random_key_for_bucket(0, b"\0" * 31)


def test_refresh_bookkeeping(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL)
    assert table.stale_buckets(0.0, 600.0) == [0]  # empty: only bucket 0 is worth a lookup
    table.update_many([peer_id(number) for number in range(300)], 0.0)
    deepest = max(index for index, size in enumerate(table.bucket_sizes()) if size)
    assert table.stale_buckets(1000.0, 600.0) == list(range(deepest + 2))
    table.mark_refreshed(0, 500.0)
    table.mark_refreshed(table.random_key_for_bucket(2, b"\x11" * 32), 900.0)
    stale = table.stale_buckets(1000.0, 600.0)
    assert 0 not in stale and 2 not in stale and 1 in stale
    assert 0 in table.stale_buckets(1100.0, 600.0)
    assert 2 not in table.stale_buckets(1100.0, 600.0)
    assert table.stale_buckets(1100.0, 0.0) == list(range(deepest + 2))
    with pytest.raises(ValueError, match="interval"):
        table.stale_buckets(0.0, -1.0)
    with pytest.raises(ValueError, match="interval"):
        table.stale_buckets(0.0, math.nan)
    with pytest.raises(ValueError, match="now"):
        table.stale_buckets(math.inf, 1.0)
    with pytest.raises(ValueError, match="bucket index"):
        table.mark_refreshed(256, 0.0)
    with pytest.raises(ValueError, match="local key"):
        table.mark_refreshed(table.local_key, 0.0)
    with pytest.raises(ValueError, match="now"):
        table.mark_refreshed(0, math.nan)


def test_bucket_membership_matches_shared_prefix(backend: Implementation) -> None:
    table = backend.RoutingTable(LOCAL, bucket_size=4)
    table.update_many([peer_id(number) for number in range(2000)], 0.0)
    sizes = table.bucket_sizes()
    assert len(sizes) == 256
    assert sum(sizes) == len(table)
    assert all(size <= 4 for size in sizes)
    for index, size in enumerate(sizes):
        members = table.bucket_peers(index)
        assert len(members) == size
        for peer in members:
            assert table.bucket_index(hashlib.sha256(peer).digest()) == index
    assert table.peers() == [peer for index in range(256) for peer in table.bucket_peers(index)]


def test_batches_run_from_worker_threads(backend: Implementation) -> None:
    """Batch calls release the GIL on the native side; they must work off the main thread."""
    table = backend.RoutingTable(LOCAL, bucket_size=100)
    keys = [hashlib.sha256(b"%d" % number).digest() for number in range(200)]
    results: list[object] = []

    def work() -> None:
        table.update_many([peer_id(number) for number in range(2000)], 1.0)
        results.append(table.closest_many(keys, 8))

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert results == [[table.closest(key, 8) for key in keys]]


def test_lookups_hand_back_the_stored_objects(backend: Implementation) -> None:
    """No copies: closest() and peers() return the very bytes objects that were stored."""
    table = backend.RoutingTable(LOCAL)
    first = bytes(peer_id(7))
    batch = [bytes(peer_id(number)) for number in range(8, 40)]
    table.update(first, 0.0)
    table.update_many(batch, 0.0)
    stored = {id(peer) for peer in [first, *batch]}
    assert all(id(peer) in stored for peer in table.closest(b"\x42" * 32, 100))
    assert all(id(peer) in stored for peer in table.peers())
    assert table.closest(hashlib.sha256(first).digest(), 1)[0] is first
