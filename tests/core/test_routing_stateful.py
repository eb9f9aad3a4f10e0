"""Stateful Hypothesis test of the routing table's invariants, on both backends.

A RuleBasedStateMachine drives one table with updates, batches, liveness answers,
removals and lookups while a clock moves forward, and checks after every step: no
duplicate peers, no bucket over k, our own peer never stored, every peer in the bucket
of its shared-prefix length, replacement caches bounded and disjoint from the stored
peers, the pending peer stored in its bucket, and closest() exact and sorted by XOR.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from neonet.core import backend as backend_module
from neonet.core.backend import BackendName
from neonet.core.routing import UpdateStatus

LOCAL = b"\x00\x24local-peer"
POOL = [b"\x12\x20" + number.to_bytes(4, "big") for number in range(40)] + [LOCAL]
BUCKET_SIZE = 3
REPLACEMENT_SIZE = 2


def _key(peer: bytes) -> int:
    return int.from_bytes(hashlib.sha256(peer).digest(), "big")


def machine_for(name: BackendName) -> type[RuleBasedStateMachine]:
    class RoutingTableMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            implementation = backend_module.implementation(name)
            self.table: Any = implementation.RoutingTable(
                LOCAL,
                bucket_size=BUCKET_SIZE,
                replacement_size=REPLACEMENT_SIZE,
                pending_timeout=5.0,
            )
            self.now = 0.0
            self.local_key = _key(LOCAL)

        @rule(peer=st.sampled_from(POOL), elapsed=st.floats(0.0, 3.0))
        def update(self, peer: bytes, elapsed: float) -> None:
            self.now += elapsed
            outcome = self.table.update(peer, self.now)
            if peer == LOCAL:
                assert outcome.status is UpdateStatus.REFUSED
            elif outcome.status in (UpdateStatus.ADDED, UpdateStatus.UPDATED):
                assert peer in self.table
                assert self.table.last_seen(peer) == self.now
            else:
                assert peer not in self.table
                assert peer in self.table.replacements(self._bucket(peer))
            if outcome.status is UpdateStatus.PENDING:
                assert outcome.ping == self.table.pending(self._bucket(peer))

        @rule(batch=st.lists(st.sampled_from(POOL), max_size=12))
        def update_many(self, batch: list[bytes]) -> None:
            outcomes = self.table.update_many(batch, self.now)
            assert len(outcomes) == len(batch)

        @precondition(lambda self: any(self.table.pending(index) for index in range(8)))
        @rule(index=st.integers(0, 7), alive=st.booleans())
        def answer_check(self, index: int, alive: bool) -> None:
            checked = self.table.pending(index)
            if checked is None:
                return
            size_before = self.table.bucket_sizes()[index]
            waiting = self.table.replacements(index)
            assert self.table.resolve_pending(checked, alive, self.now) is True
            assert self.table.pending(index) is None
            if alive:
                assert self.table.bucket_peers(index)[-1] == checked
            else:
                assert checked not in self.table
                if waiting:
                    assert self.table.bucket_peers(index)[-1] == waiting[-1]
                    assert self.table.bucket_sizes()[index] == size_before
                else:
                    assert self.table.bucket_sizes()[index] == size_before - 1

        @rule(peer=st.sampled_from(POOL))
        def remove(self, peer: bytes) -> None:
            self.table.remove(peer)
            assert peer not in self.table
            if peer != LOCAL:
                assert peer not in self.table.replacements(self._bucket(peer))

        @rule(key=st.binary(min_size=32, max_size=32), n=st.integers(0, 45))
        def closest(self, key: bytes, n: int) -> None:
            found = self.table.closest(key, n)
            stored = self.table.peers()
            target = int.from_bytes(key, "big")
            assert len(found) == min(n, len(stored))
            distances = [_key(peer) ^ target for peer in found]
            assert distances == sorted(distances)
            assert len(set(found)) == len(found)
            assert found == sorted(stored, key=lambda peer: _key(peer) ^ target)[:n]

        @rule(index=st.integers(0, 7), elapsed=st.floats(0.0, 20.0))
        def refresh(self, index: int, elapsed: float) -> None:
            self.now += elapsed
            self.table.mark_refreshed(index, self.now)
            assert index not in self.table.stale_buckets(self.now, 1.0)

        def _bucket(self, peer: bytes) -> int:
            return 256 - (_key(peer) ^ self.local_key).bit_length()

        @invariant()
        def buckets_hold_their_invariants(self) -> None:
            stored = self.table.peers()
            assert len(stored) == len(set(stored)) == len(self.table)
            assert LOCAL not in stored
            assert LOCAL not in self.table
            sizes = self.table.bucket_sizes()
            assert sum(sizes) == len(stored)
            assert all(size <= BUCKET_SIZE for size in sizes)
            stored_set = set(stored)
            for index in range(8):
                members = self.table.bucket_peers(index)
                assert len(members) == sizes[index]
                assert all(self._bucket(peer) == index for peer in members)
                waiting = self.table.replacements(index)
                assert len(waiting) <= REPLACEMENT_SIZE
                assert len(set(waiting)) == len(waiting)
                assert not stored_set & set(waiting)
                assert all(self._bucket(peer) == index for peer in waiting)
                checked = self.table.pending(index)
                assert checked is None or checked in members
                # Candidates only wait while the bucket is full; a vacancy takes one.
                if sizes[index] < BUCKET_SIZE:
                    assert not waiting

    RoutingTableMachine.__name__ = f"RoutingTableMachine_{name}"
    return RoutingTableMachine


_SETTINGS = settings(max_examples=120, stateful_step_count=40, deadline=None)
TestPureRoutingTable = machine_for("pure").TestCase
TestPureRoutingTable.settings = _SETTINGS
TestNativeRoutingTable = machine_for("native").TestCase
TestNativeRoutingTable.settings = _SETTINGS
