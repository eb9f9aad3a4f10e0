"""Differential tests: the pure and the native routing table, fed the same operations.

Hypothesis draws operation sequences (valid and invalid arguments alike) over a small
pool of peers, so buckets fill, checks go pending and replacements get promoted; both
backends must return equal results and raise the same exception types and messages.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from functools import partial
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neonet.core import backend as backend_module

LOCAL = b"\x00\x24local-peer"


def _pool() -> list[bytes]:
    """Peers concentrated in buckets 0..3, so that small buckets fill up quickly."""
    local_key = int.from_bytes(hashlib.sha256(LOCAL).digest(), "big")
    wanted = {0: 9, 1: 7, 2: 5, 3: 3}
    pool = []
    number = 0
    while any(wanted.values()):
        peer = b"\x12\x20" + number.to_bytes(4, "big")
        distance = int.from_bytes(hashlib.sha256(peer).digest(), "big") ^ local_key
        bucket = 256 - distance.bit_length()
        if wanted.get(bucket, 0):
            wanted[bucket] -= 1
            pool.append(peer)
        number += 1
    return pool


POOL = _pool()
BAD_PEERS = [b"", b"x" * 129]
KEYS = [hashlib.sha256(peer).digest() for peer in POOL[:6]] + [hashlib.sha256(LOCAL).digest()]

peers = st.one_of(st.sampled_from(POOL), st.sampled_from([LOCAL, *BAD_PEERS]))
times = st.one_of(
    st.floats(min_value=0.0, max_value=100.0),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
valid_times = st.floats(min_value=0.0, max_value=100.0)
keys = st.one_of(
    st.sampled_from(KEYS),
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=40),
)
indices = st.one_of(st.integers(0, 5), st.integers(-2, 258))

# (method name, argument strategy); each draws one call.
OPERATIONS: list[tuple[str, st.SearchStrategy[tuple[Any, ...]]]] = [
    ("update", st.tuples(peers, times)),
    ("update", st.tuples(st.sampled_from(POOL), valid_times)),
    ("update", st.tuples(st.sampled_from(POOL), valid_times)),
    ("update", st.tuples(st.sampled_from(POOL), valid_times)),
    ("resolve_pending", st.tuples(st.sampled_from(POOL), st.booleans(), valid_times)),
    ("update_many", st.tuples(st.lists(peers, max_size=8), times)),
    ("resolve_pending", st.tuples(peers, st.booleans(), times)),
    ("remove", st.tuples(peers)),
    ("closest", st.tuples(keys, st.integers(-1, 30))),
    ("closest_many", st.tuples(st.lists(keys, max_size=4), st.integers(-1, 30))),
    ("closest_many_flat", st.tuples(st.lists(keys, max_size=4), st.integers(-1, 30))),
    ("mark_refreshed", st.tuples(st.one_of(indices, keys), times)),
    ("stale_buckets", st.tuples(times, st.one_of(st.floats(-1, 50), st.just(math.nan)))),
    ("random_key_for_bucket", st.tuples(indices, st.binary(min_size=31, max_size=33))),
    ("bucket_index", st.tuples(keys)),
    ("bucket_peers", st.tuples(indices)),
    ("replacements", st.tuples(indices)),
    ("pending", st.tuples(indices)),
    ("last_seen", st.tuples(peers)),
    ("__contains__", st.tuples(peers)),
    ("__len__", st.tuples()),
    ("peers", st.tuples()),
    ("bucket_sizes", st.tuples()),
]
operations = st.one_of([st.tuples(st.just(name), arguments) for name, arguments in OPERATIONS]).map(
    lambda drawn: (drawn[0], drawn[1])
)
configurations = st.fixed_dictionaries(
    {
        "bucket_size": st.integers(1, 4),
        "replacement_size": st.integers(0, 3),
        "pending_timeout": st.sampled_from([0.0, 3.0, 1000.0]),
    }
)


def snapshot(table: Any) -> tuple[object, ...]:
    """The whole observable state of the buckets the pool lives in."""
    return (
        table.peers(),
        table.bucket_sizes(),
        [table.replacements(index) for index in range(4)],
        [table.pending(index) for index in range(4)],
        [table.last_seen(peer) for peer in POOL],
        table.stale_buckets(50.0, 10.0),
    )


def outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return ("ok", call())
    except Exception as error:
        return ("error", (type(error), str(error)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations, st.lists(operations, min_size=5, max_size=80))
def test_backends_agree_on_any_operation_sequence(
    configuration: dict[str, Any], sequence: list[tuple[str, tuple[Any, ...]]]
) -> None:
    tables = [
        backend_module.implementation(name).RoutingTable(LOCAL, **configuration)
        for name in ("pure", "native")
    ]
    for step, (method, arguments) in enumerate(sequence):
        pure_result, native_result = (
            outcome(partial(getattr(table, method), *arguments)) for table in tables
        )
        assert pure_result == native_result, (step, method, arguments)
        assert snapshot(tables[0]) == snapshot(tables[1]), (step, method, arguments)
    for index in range(256):
        assert tables[0].replacements(index) == tables[1].replacements(index)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 64),
    st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=600, unique=True),
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=20),
    st.integers(0, 80),
)
def test_backends_agree_on_closest_in_large_tables(
    bucket_size: int, peer_ids: list[bytes], targets: list[bytes], n: int
) -> None:
    tables = [
        backend_module.implementation(name).RoutingTable(LOCAL, bucket_size=bucket_size)
        for name in ("pure", "native")
    ]
    outcomes = [table.update_many(peer_ids, 1.0) for table in tables]
    assert outcomes[0] == outcomes[1]
    stored = tables[0].peers()
    assert stored == tables[1].peers()
    for target in [*targets, tables[0].local_key]:
        expected = sorted(
            stored,
            key=lambda peer: (
                int.from_bytes(hashlib.sha256(peer).digest(), "big") ^ int.from_bytes(target, "big")
            ),
        )[:n]
        assert tables[0].closest(target, n) == expected
        assert tables[1].closest(target, n) == expected
    assert tables[0].closest_many(targets, n) == tables[1].closest_many(targets, n)
    assert tables[0].closest_many_flat(targets, n) == tables[1].closest_many_flat(targets, n)


BULK_PEERS = [b"\x12\x20" + hashlib.sha256(b"bulk %d" % number).digest() for number in range(700)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=700),
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=4),
    st.integers(1, 45),
)
def test_backends_agree_while_large_buckets_grow_and_shrink(
    steps: list[int], targets: list[bytes], n: int
) -> None:
    """Large buckets (the native side indexes buckets of 64+ keys by key bits) changed
    one peer at a time: removals (3 steps in 4) down past the index threshold and
    single inserts."""
    tables = [
        backend_module.implementation(name).RoutingTable(LOCAL, bucket_size=10_000)
        for name in ("pure", "native")
    ]
    for table in tables:
        table.update_many(BULK_PEERS[:500], 1.0)
    stored = list(BULK_PEERS[:500])
    spare = list(BULK_PEERS[500:])
    for step, pick in enumerate(steps):
        if (pick % 4 or not spare) and stored:
            peer = stored.pop(pick % len(stored))
            assert [table.remove(peer) for table in tables] == [True, True]
        elif spare:
            peer = spare.pop(pick % len(spare))
            stored.append(peer)
            outcomes = [table.update(peer, 2.0) for table in tables]
            assert outcomes[0] == outcomes[1]
        if step % 50 == 0 or step == len(steps) - 1:
            assert tables[0].bucket_sizes() == tables[1].bucket_sizes()
            for target in targets:
                expected = sorted(
                    stored,
                    key=lambda peer: (
                        int.from_bytes(hashlib.sha256(peer).digest(), "big")
                        ^ int.from_bytes(target, "big")
                    ),
                )[:n]
                assert tables[0].closest(target, n) == expected
                assert tables[1].closest(target, n) == expected
