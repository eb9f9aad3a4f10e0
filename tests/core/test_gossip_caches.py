"""SeenCache and MessageCache (neonet.core.gossip) on both backends, and differentially."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core import backend as backend_module
from neonet.core.backend import Implementation

# ---------------------------------------------------------------------------------------
# SeenCache
# ---------------------------------------------------------------------------------------


def test_add_reports_new_ids_once(backend: Implementation) -> None:
    cache = backend.seen_cache(120.0, 100)
    assert cache.add(b"a", 0.0) is True
    assert cache.add(b"a", 1.0) is False
    assert cache.add(b"b", 1.0) is True
    assert b"a" in cache
    assert b"c" not in cache
    assert len(cache) == 2
    assert (cache.ttl, cache.capacity) == (120.0, 100)


def test_defaults(backend: Implementation) -> None:
    cache = backend.seen_cache()
    assert (cache.ttl, cache.capacity) == (120.0, 262_144)


def test_ids_expire_after_ttl_and_first_sight_is_not_refreshed(backend: Implementation) -> None:
    cache = backend.seen_cache(10.0, 100)
    cache.add(b"a", 0.0)
    assert cache.add(b"a", 5.0) is False  # does not extend the first sighting
    cache.add(b"b", 5.0)
    assert cache.expire(9.999) == 0
    assert b"a" in cache
    assert cache.expire(10.0) == 1  # gone exactly ttl seconds after the first add
    assert b"a" not in cache
    assert b"b" in cache
    assert cache.add(b"a", 10.0) is True
    assert cache.expire(100.0) == 2
    assert len(cache) == 0


def test_add_expires_old_ids_first(backend: Implementation) -> None:
    cache = backend.seen_cache(1.0, 10)
    cache.add(b"old", 0.0)
    assert cache.add(b"new", 1.5) is True
    assert b"old" not in cache
    assert cache.contains_many([b"old", b"new"]) == [False, True]


def test_full_cache_evicts_the_oldest(backend: Implementation) -> None:
    cache = backend.seen_cache(1000.0, 3)
    for number in range(5):
        assert cache.add(b"id%d" % number, float(number)) is True
    assert len(cache) == 3
    assert cache.contains_many([b"id%d" % n for n in range(5)]) == [False, False, True, True, True]


def test_batch_calls_match_single_calls(backend: Implementation) -> None:
    batch = backend.seen_cache(5.0, 4)
    single = backend.seen_cache(5.0, 4)
    rounds = [([b"a", b"b", b"a"], 0.0), ([b"c", b"d", b"e", b"b"], 1.0), ([b"a", b"f"], 6.5)]
    for ids, now in rounds:
        assert batch.add_many(ids, now) == [single.add(i, now) for i in ids]
        probe = [b"a", b"b", b"c", b"d", b"e", b"f", b"x"]
        assert batch.contains_many(probe) == [i in single for i in probe]
    assert batch.add_many([], 7.0) == []
    assert batch.add_many(iter([b"g", b"g"]), 7.0) == [True, False]  # any iterable
    assert batch.contains_many(i for i in (b"g", b"h")) == [True, False]


def test_packed_batches_match_list_batches(backend: Implementation) -> None:
    packed = backend.seen_cache(5.0, 4)
    lists = backend.seen_cache(5.0, 4)
    rounds = [([b"aa", b"bb", b"aa"], 0.0), ([b"cc", b"dd", b"ee", b"bb"], 1.0), ([b"aa"], 6.5)]
    probe = [b"aa", b"bb", b"cc", b"dd", b"ee", b"xx"]
    for ids, now in rounds:
        assert packed.add_packed(b"".join(ids), 2, now) == bytes(lists.add_many(ids, now))
        assert packed.contains_packed(b"".join(probe), 2) == bytes(lists.contains_many(probe))
    assert packed.add_packed(b"", 7, 7.0) == b""
    assert packed.contains_packed(b"", 1) == b""
    assert packed.add_packed(b"gg" * 2, 2, 7.0) == b"\x01\x00"  # one byte per ID
    assert packed.contains_packed(b"gghh", 2) == b"\x01\x00"
    assert packed.contains_packed(b"ggh", 3) == b"\x00"  # one 3-byte ID
    assert len(packed) == len(lists) + 1


@pytest.mark.parametrize(
    ("msg_ids", "id_len", "error"),
    [
        (bytearray(b"abcd"), 2, TypeError),
        (memoryview(b"abcd"), 2, TypeError),
        (b"abcd", 0, ValueError),
        (b"abcd", -1, ValueError),
        (b"abcd", 2**32, ValueError),
        (b"abcd", 3, ValueError),
        (b"abcd", 2.0, TypeError),
    ],
)
def test_packed_batches_refuse_bad_arguments(
    backend: Implementation, msg_ids: Any, id_len: Any, error: type[Exception]
) -> None:
    cache = backend.seen_cache(1.0, 10)
    cache.add(b"ab", 0.0)
    with pytest.raises(error):
        cache.add_packed(msg_ids, id_len, 5.0)
    with pytest.raises(error):
        cache.contains_packed(msg_ids, id_len)
    assert b"ab" in cache  # nothing changed: the arguments are checked before the clock
    with pytest.raises(ValueError, match="backwards"):
        cache.add_packed(b"cd", 2, -1.0)
    assert cache.contains_packed(b"abcd", 2) == b"\x01\x00"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_time_must_be_finite(backend: Implementation, bad: float) -> None:
    cache = backend.seen_cache(1.0, 10)
    with pytest.raises(ValueError, match="now"):
        cache.add(b"a", bad)
    with pytest.raises(ValueError, match="now"):
        cache.add_many([b"a"], bad)
    with pytest.raises(ValueError, match="now"):
        cache.expire(bad)
    assert len(cache) == 0


def test_time_must_not_go_back(backend: Implementation) -> None:
    cache = backend.seen_cache(1.0, 10)
    cache.add(b"a", 5.0)
    with pytest.raises(ValueError, match="backwards"):
        cache.add(b"b", 4.0)
    with pytest.raises(ValueError, match="backwards"):
        cache.add_many([b"b"], 4.0)
    assert b"b" not in cache


@pytest.mark.parametrize(
    ("ttl", "capacity", "error"),
    [
        (0.0, 1, ValueError),
        (-1.0, 1, ValueError),
        (math.nan, 1, ValueError),
        (math.inf, 1, ValueError),
        (1.0, 0, ValueError),
        (1.0, -5, ValueError),
        (1.0, 2**32, ValueError),
        (1.0, 2**70, ValueError),
        (1.0, 1.5, TypeError),
    ],
)
def test_bad_parameters(
    backend: Implementation, ttl: float, capacity: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        backend.seen_cache(ttl, capacity)


def test_many_ids_over_a_sliding_window(backend: Implementation) -> None:
    cache = backend.seen_cache(50.0, 10_000)
    for second in range(200):
        ids = [b"message-%d" % (second * 100 + n) for n in range(100)]
        assert all(cache.add_many(ids, float(second)))
    assert len(cache) == 5000  # seconds 150..199
    assert cache.contains_many([b"message-19999", b"message-0", b"message-15000"]) == [
        True,
        False,
        True,
    ]
    assert b"message-14999" not in cache


SEEN_IDS = st.binary(min_size=0, max_size=6)
# (buffer, id_len): whole IDs of one length (mostly 1-2 bytes, so they repeat), now and
# then a stray byte or an id_len of 0: both backends must refuse those alike.
PACKED = st.integers(0, 2).flatmap(
    lambda id_len: st.tuples(
        st.lists(st.binary(min_size=max(id_len, 1), max_size=max(id_len, 1)), max_size=8).map(
            b"".join
        ),
        st.just(id_len),
    )
) | st.tuples(st.binary(max_size=7), st.integers(1, 3))
SEEN_OPERATION = st.one_of(
    st.tuples(st.just("add"), SEEN_IDS, st.floats(0, 3)),
    st.tuples(st.just("add_many"), st.lists(SEEN_IDS, max_size=8), st.floats(0, 3)),
    st.tuples(st.just("contains_many"), st.lists(SEEN_IDS, max_size=8)),
    st.tuples(st.just("add_packed"), PACKED, st.floats(0, 3)),
    st.tuples(st.just("contains_packed"), PACKED),
    st.tuples(st.just("expire"), st.floats(-0.5, 5)),
    st.tuples(st.just("len")),
)


def _outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return ("ok", call())
    except Exception as error:  # both backends must fail alike
        return ("error", type(error))


def _seen_step(cache: Any, clock: list[float], operation: tuple[Any, ...]) -> object:
    kind = operation[0]
    if kind in ("add", "add_many"):
        clock[0] += operation[2]
        method = cache.add if kind == "add" else cache.add_many
        return _outcome(lambda: method(operation[1], clock[0]))
    if kind == "contains_many":
        return _outcome(lambda: cache.contains_many(operation[1]))
    if kind == "add_packed":
        clock[0] += operation[2]
        return _outcome(lambda: cache.add_packed(*operation[1], clock[0]))
    if kind == "contains_packed":
        return _outcome(lambda: cache.contains_packed(*operation[1]))
    if kind == "expire":
        return _outcome(lambda: cache.expire(clock[0] + operation[1]))
    return len(cache)


@settings(max_examples=300, deadline=None)
@given(
    ttl=st.sampled_from([0.5, 2.0, 7.0]),
    capacity=st.integers(1, 6),
    operations=st.lists(SEEN_OPERATION, max_size=40),
)
def test_seen_cache_backends_agree(
    ttl: float, capacity: int, operations: list[tuple[Any, ...]]
) -> None:
    pure = backend_module.implementation("pure").seen_cache(ttl, capacity)
    native = backend_module.implementation("native").seen_cache(ttl, capacity)
    pure_clock, native_clock = [0.0], [0.0]
    for operation in operations:
        expected = _seen_step(pure, pure_clock, operation)
        assert _seen_step(native, native_clock, operation) == expected, operation
        # Time that was refused must be refused by both: keep the clocks in step.
        pure_clock[0] = native_clock[0] = max(pure_clock[0], native_clock[0])
        probe = [bytes([n]) for n in range(4)] + [b""]
        assert native.contains_many(probe) == pure.contains_many(probe)


# ---------------------------------------------------------------------------------------
# MessageCache
# ---------------------------------------------------------------------------------------


def test_put_get_and_duplicates(backend: Implementation) -> None:
    cache = backend.message_cache(5, 3, 100)
    message = b"payload"
    assert cache.put(b"m1", "a", message) is True
    assert cache.put(b"m1", "a", b"other") is False
    assert cache.get(b"m1") is message  # the caller's object, not a copy
    assert cache.get(b"zz") is None
    assert len(cache) == 1
    assert b"m1" in cache
    assert b"zz" not in cache


def test_gossip_covers_the_newest_windows_newest_first(backend: Implementation) -> None:
    cache = backend.message_cache()  # spec defaults: 5 windows, gossip from 3
    for round_ in range(6):
        cache.put(b"a%d" % round_, "a", b"x")
        cache.put(b"b%d" % round_, "b", b"x")
        cache.shift()
    cache.put(b"a6", "a", b"x")
    cache.put(b"a7", "a", b"x")
    assert cache.gossip_ids("a") == [b"a6", b"a7", b"a5", b"a4"]
    assert cache.gossip_ids("b") == [b"b5", b"b4"]
    assert cache.gossip_ids("nothing") == []
    # Five windows are kept: the current one and those of rounds 5..2.
    assert [cache.get(b"a%d" % n) is not None for n in range(8)] == [
        False,
        False,
        True,
        True,
        True,
        True,
        True,
        True,
    ]
    assert len(cache) == 10


def test_capacity_evicts_the_oldest_message(backend: Implementation) -> None:
    cache = backend.message_cache(3, 2, 3)
    cache.put(b"1", "a", b"x")
    cache.shift()
    cache.put(b"2", "b", b"x")
    cache.put(b"3", "a", b"x")
    cache.put(b"4", "a", b"x")  # evicts "1", the oldest
    assert cache.get(b"1") is None
    assert cache.gossip_ids("a") == [b"3", b"4"]
    cache.put(b"5", "c", b"x")  # evicts "2"
    assert cache.gossip_ids("b") == []
    assert len(cache) == 3


def test_iwant_replies_are_limited_per_peer(backend: Implementation) -> None:
    cache = backend.message_cache(5, 3, 10, 2)
    cache.put(b"m", "t", b"body")
    assert cache.get_for_peer(b"m", b"p1", 2) == b"body"
    assert cache.get_for_peer(b"m", b"p1", 2) == b"body"
    assert cache.get_for_peer(b"m", b"p1", 2) is None
    assert cache.get_for_peer(b"m", b"p1", 3) == b"body"  # the limit is the caller's
    assert cache.get_for_peer(b"m", b"p2", 2) == b"body"
    assert cache.get_for_peer(b"m", b"p3", 2) is None  # only 2 peers tracked per message
    assert cache.get_for_peer(b"m", b"p4", 0) is None
    assert cache.get_for_peer(b"unknown", b"p1", 2) is None
    assert cache.get(b"m") == b"body"  # plain get is not counted
    with pytest.raises(ValueError, match="out of range"):
        cache.get_for_peer(b"m", b"p1", -1)


def test_shift_forgets_transmission_counts_with_the_message(backend: Implementation) -> None:
    cache = backend.message_cache(1, 1, 10)
    cache.put(b"m", "t", b"body")
    assert cache.get_for_peer(b"m", b"p", 1) == b"body"
    cache.shift()
    assert cache.get(b"m") is None
    cache.put(b"m", "t", b"again")
    assert cache.get_for_peer(b"m", b"p", 1) == b"again"


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ((3, 4, 10), ValueError),
        ((0, 0, 10), ValueError),
        ((5, 3, 0), ValueError),
        ((2000, 3, 10), ValueError),
        ((5, 3, 10, -1), ValueError),
        ((5, 3, 2**64), ValueError),
        ((5.0, 3, 10), TypeError),
    ],
)
def test_message_cache_bad_parameters(
    backend: Implementation, arguments: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        backend.message_cache(*arguments)


MCACHE_IDS = st.sampled_from([b"m%d" % n for n in range(8)])
MCACHE_TOPICS = st.sampled_from(["a", "b", "ü"])
MCACHE_PEERS = st.sampled_from([b"p1", b"p2", b"p3"])
MCACHE_OPERATION = st.one_of(
    st.tuples(st.just("put"), MCACHE_IDS, MCACHE_TOPICS, st.binary(max_size=3)),
    st.tuples(st.just("get"), MCACHE_IDS),
    st.tuples(st.just("get_for_peer"), MCACHE_IDS, MCACHE_PEERS, st.integers(-1, 3)),
    st.tuples(st.just("gossip_ids"), MCACHE_TOPICS),
    st.tuples(st.just("shift")),
    st.tuples(st.just("len")),
)


@settings(max_examples=300, deadline=None)
@given(
    shape=st.sampled_from([(5, 3, 100, 256), (3, 1, 4, 2), (2, 2, 2, 1), (1, 1, 3, 0)]),
    operations=st.lists(MCACHE_OPERATION, max_size=40),
)
def test_message_cache_backends_agree(
    shape: tuple[int, int, int, int], operations: list[tuple[Any, ...]]
) -> None:
    caches = [
        backend_module.implementation(name).message_cache(*shape) for name in ("pure", "native")
    ]
    for operation in operations:
        kind, *arguments = operation
        results = []
        for cache in caches:
            if kind == "len":
                results.append(len(cache))
            else:
                method = getattr(cache, kind)
                results.append(_outcome(lambda m=method, a=arguments: m(*a)))
        assert results[0] == results[1], operation
