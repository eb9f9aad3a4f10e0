"""``neonet bench core``, routing part: the Kademlia routing table, Rust against pure Python.

The issue's case is ``closest(key, 20)`` over a table of 10,000 peers (bucket_size large
enough to keep them all, as the simulator's large tables do), target native >= 30x
pure. Extras, without targets: the batches ``closest_many`` (a list per key) and
``closest_many_flat`` (all answers in one list, for bulk callers), a k=20 table as a real DHT
node has (a few hundred peers), seeing known peers again, and loading 10,000 peers with
``update_many``. Peer IDs have the shape of sha2-256 multihashes; targets are fixed
SHA-256 outputs, so every run does the same work.
"""

from __future__ import annotations

import hashlib
from typing import Any

from neonet.bench.core import Measurement, compare
from neonet.core import backend

LOCAL = b"\x12\x20" + hashlib.sha256(b"neonet bench local peer").digest()
TABLE_PEERS = 10_000


def _peer_ids(count: int) -> list[bytes]:
    return [b"\x12\x20" + hashlib.sha256(b"peer %d" % number).digest() for number in range(count)]


def _targets(count: int) -> list[bytes]:
    return [hashlib.sha256(b"target %d" % number).digest() for number in range(count)]


def _tables(bucket_size: int, peer_ids: list[bytes]) -> tuple[Any, Any]:
    tables = []
    for name in ("pure", "native"):
        table = backend.implementation(name).RoutingTable(LOCAL, bucket_size=bucket_size)
        table.update_many(peer_ids, 0.0)
        tables.append(table)
    return tables[0], tables[1]


def _lookups(table: Any, targets: list[bytes]) -> None:
    closest = table.closest
    for target in targets:
        closest(target, 20)


def run(quick: bool) -> list[Measurement]:
    rounds = 7 if quick else 21
    peer_ids = _peer_ids(TABLE_PEERS)
    targets = _targets(3_000 if quick else 5_000)
    pure_large, native_large = _tables(TABLE_PEERS, peer_ids)
    assert len(pure_large) == len(native_large) == TABLE_PEERS
    results = [
        compare(
            "closest(20) over a 10,000-peer table",
            "lookups",
            len(targets),
            lambda: _lookups(pure_large, targets),
            lambda: _lookups(native_large, targets),
            rounds=rounds,
            target_ratio=30.0,
        ),
        compare(
            f"closest_many({len(targets):,} keys, 20), 10,000 peers",
            "lookups",
            len(targets),
            lambda: pure_large.closest_many(targets, 20),
            lambda: native_large.closest_many(targets, 20),
            rounds=rounds,
        ),
        compare(
            f"closest_many_flat({len(targets):,} keys, 20), 10,000 peers",
            "lookups",
            len(targets),
            lambda: pure_large.closest_many_flat(targets, 20),
            lambda: native_large.closest_many_flat(targets, 20),
            rounds=rounds,
        ),
    ]
    pure_small, native_small = _tables(20, peer_ids)
    results.append(
        compare(
            f"closest(20), k=20 table ({len(pure_small)} peers)",
            "lookups",
            len(targets),
            lambda: _lookups(pure_small, targets),
            lambda: _lookups(native_small, targets),
            rounds=rounds,
        )
    )
    known = peer_ids[: len(targets)]

    def see_again(table: Any) -> None:
        update = table.update
        for peer_id in known:
            update(peer_id, 1.0)

    results.append(
        compare(
            "update() of a known peer, 10,000 peers",
            "updates",
            len(known),
            lambda: see_again(pure_large),
            lambda: see_again(native_large),
            rounds=rounds,
        )
    )

    def load(name: backend.BackendName) -> None:
        table = backend.implementation(name).RoutingTable(LOCAL, bucket_size=TABLE_PEERS)
        table.update_many(peer_ids, 0.0)

    results.append(
        compare(
            "update_many(10,000 new peers) into an empty table",
            "peers",
            TABLE_PEERS,
            lambda: load("pure"),
            lambda: load("native"),
            rounds=max(3, rounds // 3),
        )
    )
    return results
