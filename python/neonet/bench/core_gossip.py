"""``neonet bench core``, gossip part: seen-cache and fan-out selection, native vs pure.

Workloads (the issue's): 1,000,000 seen-cache inserts and 1,000,000 lookups, and fan-out
selection for 10,000 messages over 100 peers in 10 topics. Targets (native >= 5x pure)
apply to the batch calls, timed against the pure twin's batch calls with the same
signature; the one-call-per-item forms are printed for reference, without a target.

Seen-cache: message IDs are 32 random bytes arriving 1000 per simulated second with the
spec's ``seen_ttl`` of 120 s, so after a warm-up the cache holds a steady window of
120,000 IDs: every insert is new and each second's batch first expires the batch of two
minutes ago. Lookups come in batches of 1000 (an IHAVE's worth), half of them IDs in the
window (equal, freshly made bytes objects, as if parsed from the wire) and half unknown.

Fan-out: 100 peers with 38-byte IDs, each subscribed to 5 of 10 topics (50 subscribers
per topic), a third of them outbound; 5 topics joined (mesh of D=6), 5 only published to
(fan-out). 10,000 messages on random topics, 3 in 4 forwarded from a random peer (the
source, never sent back), 1 in 4 our own.

The targets apply to the batch calls whose input and output cross the native boundary
once: ``add_packed``/``contains_packed`` (the 1000 IDs of a batch back to back in one
``bytes``, one result byte per ID) and ``publish_targets_flat`` (all targets in one list
plus a count per message). The list forms (``add_many``/``contains_many``, one bool per
ID; ``publish_targets_many``, one list per message) are printed for reference: there the
native side pays the C-API per item and CPython's allocation and cyclic-GC traversal of
10,000 live result lists, as the pure twin does.
"""

from __future__ import annotations

import gc
import os
import random
from collections.abc import Callable

from neonet.bench.core import Measurement, compare
from neonet.core import backend
from neonet.core.gossip import PROTOCOL_MESHSUB_V11, MeshStateInterface, SeenCacheInterface

SEEN_TTL = 120.0
IDS_PER_SECOND = 1000
PEERS = 100
TOPICS = 10
TOPICS_PER_PEER = 5
MESSAGES = 10_000
ID_LENGTH = 32


def _settle() -> None:
    """Freeze what exists (set-up, other parts) out of the cyclic GC: its collections
    then cost the same in every round, on both backends (``run`` unfreezes at the end)."""
    gc.collect()
    gc.freeze()


def _message_ids(count: int) -> list[bytes]:
    blob = os.urandom(32 * count)
    return [blob[index : index + 32] for index in range(0, len(blob), 32)]


class _SeenWorkload:
    """One backend's seen-cache fed the steady stream (the clock lives with the cache)."""

    def __init__(self, make: Callable[..., SeenCacheInterface], batches: list[list[bytes]]) -> None:
        self.cache = make(SEEN_TTL, 1 << 20)
        self.batches = batches
        self.clock = 0.0

    def insert_all(self) -> None:
        add_many = self.cache.add_many
        clock = self.clock
        for batch in self.batches:
            add_many(batch, clock)
            clock += 1.0
        self.clock = clock

    def insert_all_one_by_one(self) -> None:
        add = self.cache.add
        clock = self.clock
        for batch in self.batches:
            for msg_id in batch:
                add(msg_id, clock)
            clock += 1.0
        self.clock = clock

    def lookup_all(self, probes: list[list[bytes]]) -> None:
        contains_many = self.cache.contains_many
        for batch in probes:
            contains_many(batch)

    def insert_all_packed(self, packed: list[bytes]) -> None:
        add_packed = self.cache.add_packed
        clock = self.clock
        for batch in packed:
            add_packed(batch, ID_LENGTH, clock)
            clock += 1.0
        self.clock = clock

    def lookup_all_packed(self, probes: list[bytes]) -> None:
        contains_packed = self.cache.contains_packed
        for batch in probes:
            contains_packed(batch, ID_LENGTH)


def _seen_cases(quick: bool, rounds: int) -> list[Measurement]:
    count = 200_000 if quick else 1_000_000
    ids = _message_ids(count)
    batches = [ids[start : start + IDS_PER_SECOND] for start in range(0, count, IDS_PER_SECOND)]
    pure = _SeenWorkload(backend.implementation("pure").seen_cache, batches)
    native = _SeenWorkload(backend.implementation("native").seen_cache, batches)
    for workload in (pure, native):
        workload.insert_all()  # warm-up: reach the steady 120 s window
        assert len(workload.cache) == int(SEEN_TTL) * IDS_PER_SECOND

    choose = random.Random(3)
    window = ids[-int(SEEN_TTL) * IDS_PER_SECOND :]
    unknown = _message_ids(count // 2)
    probes = []
    for _ in range(count // IDS_PER_SECOND):
        batch = [bytes(bytearray(choose.choice(window))) for _ in range(IDS_PER_SECOND // 2)]
        batch += [choose.choice(unknown) for _ in range(IDS_PER_SECOND // 2)]
        choose.shuffle(batch)
        probes.append(batch)
    packed_batches = [b"".join(batch) for batch in batches]
    packed_probes = [b"".join(batch) for batch in probes]
    expected = pure.cache.contains_many(probes[0])
    assert native.cache.contains_many(probes[0]) == expected
    for workload in (pure, native):
        assert workload.cache.contains_packed(packed_probes[0], ID_LENGTH) == bytes(expected)
    _settle()

    results = [
        compare(
            f"seen add_packed: {count:,} new IDs, 120k live",
            "inserts",
            count,
            lambda: pure.insert_all_packed(packed_batches),
            lambda: native.insert_all_packed(packed_batches),
            rounds=rounds,
            target_ratio=5.0,
        ),
        compare(
            f"seen contains_packed: {count:,} IDs, half known",
            "lookups",
            count,
            lambda: pure.lookup_all_packed(packed_probes),
            lambda: native.lookup_all_packed(packed_probes),
            rounds=rounds,
            target_ratio=5.0,
        ),
        compare(
            f"seen add_many, lists: {count:,} new IDs (reference)",
            "inserts",
            count,
            pure.insert_all,
            native.insert_all,
            rounds=rounds,
        ),
        compare(
            f"seen contains_many, lists: {count:,} IDs (reference)",
            "lookups",
            count,
            lambda: pure.lookup_all(probes),
            lambda: native.lookup_all(probes),
            rounds=rounds,
        ),
    ]

    results.append(
        compare(
            "seen add, one call per ID (reference)",
            "inserts",
            count,
            pure.insert_all_one_by_one,
            native.insert_all_one_by_one,
            rounds=rounds,
        )
    )
    return results


def _peer_id(number: int) -> bytes:
    return b"\x00\x24\x08\x01\x12\x20" + number.to_bytes(4, "big") * 8


def _mesh_state(make: Callable[..., MeshStateInterface]) -> MeshStateInterface:
    state = make()
    for number in range(PEERS):
        identity = _peer_id(number)
        state.add_peer(identity, number % 3 == 0, PROTOCOL_MESHSUB_V11)
        for offset in range(TOPICS_PER_PEER):
            state.peer_subscribed(identity, f"neonet/topic-{(number + offset * 2) % TOPICS}")
    for topic in range(TOPICS // 2):
        state.join(f"neonet/topic-{topic}", 0.0, topic)
    state.heartbeat(1.0, 1)
    return state


def _fanout_cases(quick: bool, rounds: int) -> list[Measurement]:
    choose = random.Random(5)
    messages: list[tuple[str, bytes | None]] = []
    for _ in range(MESSAGES):
        topic = f"neonet/topic-{choose.randrange(TOPICS)}"
        source = _peer_id(choose.randrange(PEERS)) if choose.random() < 0.75 else None
        messages.append((topic, source))
    pure = _mesh_state(backend.implementation("pure").mesh_state)
    native = _mesh_state(backend.implementation("native").mesh_state)
    for state in (pure, native):
        state.publish_targets_many(messages, False, 2.0, 9)  # creates the fan-outs once
    assert pure.publish_targets_many(messages, False, 2.0, 9) == native.publish_targets_many(
        messages, False, 2.0, 9
    )
    _settle()

    # Each timed round selects for the 10,000 messages `repeats` times (a round of a few
    # milliseconds is at the mercy of the shared machine's scheduler).
    repeats = 5 if quick else 20

    def batch(state: MeshStateInterface, flood: bool) -> Callable[[], None]:
        def run() -> None:
            for _ in range(repeats):
                state.publish_targets_many(messages, flood, 2.0, 9)

        return run

    def flat(state: MeshStateInterface, flood: bool) -> Callable[[], None]:
        def run() -> None:
            for _ in range(repeats):
                state.publish_targets_flat(messages, flood, 2.0, 9)

        return run

    for flood in (False, True):
        peers, counts = pure.publish_targets_flat(messages, flood, 2.0, 9)
        assert (peers, counts) == native.publish_targets_flat(messages, flood, 2.0, 9)
        lists = native.publish_targets_many(messages, flood, 2.0, 9)
        assert peers == [peer for targets in lists for peer in targets]
        assert counts == [len(targets) for targets in lists]

    def one_by_one(state: MeshStateInterface) -> Callable[[], None]:
        def run() -> None:
            publish = state.publish_targets
            for _ in range(repeats):
                for topic, source in messages:
                    publish(topic, source, False, 2.0, 9)

        return run

    heartbeats = 20 if quick else 100

    def beat(state: MeshStateInterface) -> Callable[[], None]:
        def run() -> None:
            for tick in range(heartbeats):
                state.heartbeat(3.0, tick)

        return run

    return [
        compare(
            "fan-out publish_targets_flat: 10k msgs, 100 peers",
            "messages",
            MESSAGES * repeats,
            flat(pure, False),
            flat(native, False),
            rounds=rounds,
            target_ratio=5.0,
        ),
        compare(
            "flood publish_targets_flat: 10k msgs, 100 peers",
            "messages",
            MESSAGES * repeats,
            flat(pure, True),
            flat(native, True),
            rounds=rounds,
            target_ratio=5.0,
        ),
        compare(
            "fan-out publish_targets_many, lists (reference)",
            "messages",
            MESSAGES * repeats,
            batch(pure, False),
            batch(native, False),
            rounds=rounds,
        ),
        compare(
            "flood publish_targets_many, lists (reference)",
            "messages",
            MESSAGES * repeats,
            batch(pure, True),
            batch(native, True),
            rounds=rounds,
        ),
        compare(
            "fan-out publish_targets, one call each (reference)",
            "messages",
            MESSAGES * repeats,
            one_by_one(pure),
            one_by_one(native),
            rounds=rounds,
        ),
        compare(
            "heartbeat: 100 peers, 10 topics (reference)",
            "heartbeats",
            heartbeats,
            beat(pure),
            beat(native),
            rounds=rounds,
        ),
    ]


def run(quick: bool) -> list[Measurement]:
    """The gossip cases; ``quick`` uses 200k seen-cache operations and 3 rounds."""
    rounds = 3 if quick else 7
    try:
        return _seen_cases(quick, rounds) + _fanout_cases(quick, rounds)
    finally:
        gc.unfreeze()
