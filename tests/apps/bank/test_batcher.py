"""The client's SIGN_BATCH batcher: with more than one sender (``BATCH_SENDERS``), every
sender keeps working."""

from __future__ import annotations

import gc

import pytest
import trio
import trio.testing

from neonet.apps.bank import client as bank_client
from neonet.apps.bank.client import BankClient, CertificationFailed, _Pending, open_bank_client
from neonet.core.errors import RemoteProtocolError
from neonet.core.peer_id import PeerId
from tests.proto.bank.world import World


class HeldAsks:
    """Stands in for ``BankClient.ask``: records each SIGN_BATCH and holds it until released."""

    def __init__(self) -> None:
        self.in_flight: list[int] = []  # items per SIGN_BATCH not yet answered
        self.sent = 0
        self.release = trio.Event()

    async def ask(self, index: int, message: list[object], protocol: str) -> list[object]:
        items = message[1]
        assert isinstance(items, list)
        self.in_flight.append(len(items))
        self.sent += 1
        try:
            await self.release.wait()
        finally:
            self.in_flight.remove(len(items))
        raise RemoteProtocolError("held ask released")  # every item settles as failed


async def test_each_sender_sends_again_after_all_went_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bank_client, "BATCH_SENDERS", 2)
    world = World()
    peer = PeerId.from_public_key(world.validator_ids[0].public_key)
    held = HeldAsks()
    settled: list[_Pending] = []
    done = trio.Event()

    def enqueue(client: BankClient, block: bytes) -> None:
        client._batcher(0).enqueue(block, [], bytes(32), settled.append, done)

    with trio.fail_after(10):
        async with open_bank_client(object(), world.committee, [peer] * 4) as client:  # type: ignore[arg-type]
            monkeypatch.setattr(client, "ask", held.ask)
            # Two SIGNs, one after the other: each sender takes one.
            enqueue(client, b"a")
            await trio.testing.wait_all_tasks_blocked()
            enqueue(client, b"b")
            await trio.testing.wait_all_tasks_blocked()
            assert held.in_flight == [1, 1]
            # Both answers come in: both senders go idle.
            held.release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert len(settled) == 2 and held.in_flight == []
            held.release = trio.Event()
            # Again: the second SIGN must not wait for the first one's answer.
            enqueue(client, b"c")
            await trio.testing.wait_all_tasks_blocked()
            enqueue(client, b"d")
            await trio.testing.wait_all_tasks_blocked()
            assert held.in_flight == [1, 1], "a sender stayed asleep"
            assert held.sent == 4
            held.release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert len(settled) == 4
            assert all(isinstance(p.error, RemoteProtocolError) for p in settled)


async def test_certify_leaves_no_reference_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A certify's closures, lists and votes are freed by reference counting when it
    ends: none of its closures is left for the cyclic collector (they were, through the
    retry callback's reference to itself, ~80 objects per transfer in flight)."""
    world = World()
    peer = PeerId.from_public_key(world.validator_ids[0].public_key)
    held = HeldAsks()
    held.release.set()  # every SIGN_BATCH fails at once: four refusals, no quorum
    block = world.mint.open()
    gc.collect()
    gc.disable()
    try:
        with trio.fail_after(10):
            async with open_bank_client(object(), world.committee, [peer] * 4) as client:  # type: ignore[arg-type]
                monkeypatch.setattr(client, "ask", held.ask)
                for _ in range(3):
                    with pytest.raises(CertificationFailed):
                        await client.certify(block)
                await trio.testing.wait_all_tasks_blocked()
                assert held.sent == 12
                # Before the client's tasks end (their cancellation makes cycles of its own).
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                left = [
                    o.__qualname__
                    for o in gc.garbage
                    if getattr(o, "__qualname__", "").startswith("BankClient.certify.")
                ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == [], left
