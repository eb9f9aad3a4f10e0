"""Group commit holds every vote until the row it depends on is on disk (``docs/bank.md``,
"Storage"): a resend of a block whose batch is being written waits for that batch, and a
failed write answers no vote at all."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing

from neonet.apps.bank.service import ValidatorService, receive_message
from neonet.apps.bank.store import SqliteVoteStore
from neonet.net.yamux_session import YamuxStream
from neonet.proto.bank import wire
from neonet.proto.bank.validator import Validator
from tests.proto.bank.world import World


class HeldStore(SqliteVoteStore):
    """A deferred store whose batch write waits for ``release`` (or fails, if told)."""

    def __init__(self, path: Path, *, fail: bool = False) -> None:
        super().__init__(path, deferred=True)
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def write_batch(self, batch: list[tuple[str, tuple[object, ...]]]) -> None:
        self.started.set()
        assert self.release.wait(20)
        if self.fail:
            raise OSError("disk full")
        super().write_batch(batch)


def on_disk(path: Path) -> dict[tuple[bytes, int], bytes]:
    store = SqliteVoteStore(path)
    try:
        return store.votes()
    finally:
        store.close()


class Client:
    def __init__(self, service: ValidatorService, nursery: trio.Nursery) -> None:
        self.stream, server = trio.testing.memory_stream_pair()
        nursery.start_soon(service._serve, cast(YamuxStream, server))
        self.reader = wire.FrameReader()
        self.answers: list[list[object] | None] = []

    async def send(self, message: list[object]) -> None:
        await self.stream.send_all(wire.frame(message))

    async def collect(self) -> None:
        self.answers.append(await receive_message(cast(YamuxStream, self.stream), self.reader))
        await self.stream.aclose()  # one request per client: the service's loop ends


def _service(world: World, store: HeldStore) -> ValidatorService:
    """Validator 0 of ``world`` on ``store``, as a service."""
    validator = Validator(
        world.committee, 0, world.validator_ids[0].sign, world.mint_account, store
    )
    return ValidatorService(validator, store)


async def test_a_resent_block_waits_for_the_batch_in_flight(tmp_path: Path) -> None:
    world = World()
    path = tmp_path / "votes.db"
    store = HeldStore(path)
    service = _service(world, store)
    block = world.mint.open()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            first, second = Client(service, nursery), Client(service, nursery)
            await first.send(wire.sign_request(block, []))
            nursery.start_soon(first.collect)
            await trio.to_thread.run_sync(store.started.wait)  # batch 0 is being written
            # The same block again, from another client, while its row is in flight.
            await second.send(wire.sign_request(block, []))
            nursery.start_soon(second.collect)
            await trio.testing.wait_all_tasks_blocked()
            assert first.answers == [] and second.answers == []  # no signature yet
            assert on_disk(path) == {}
            store.release.set()
        answers = first.answers + second.answers
        assert [a[0] if a else None for a in answers] == [wire.VOTE, wire.VOTE]
        assert list(on_disk(path).values()) == [block]


async def test_a_failed_write_answers_no_vote(tmp_path: Path) -> None:
    world = World()
    path = tmp_path / "votes.db"
    store = HeldStore(path, fail=True)
    service = _service(world, store)
    block = world.mint.open()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            first, second = Client(service, nursery), Client(service, nursery)
            await first.send(wire.sign_request(block, []))
            nursery.start_soon(first.collect)
            await trio.to_thread.run_sync(store.started.wait)
            await second.send(wire.sign_request(block, []))
            nursery.start_soon(second.collect)
            await trio.testing.wait_all_tasks_blocked()
            store.release.set()
        # Both streams end without an answer; a later request gets none either.
        assert first.answers == [None] and second.answers == [None]
        async with trio.open_nursery() as nursery:
            third = Client(service, nursery)
            await third.send(wire.sign_request(block, []))
            await third.collect()
        assert third.answers == [None]
    assert on_disk(path) == {}


def test_a_failed_store_refuses_later_calls(tmp_path: Path) -> None:
    store = SqliteVoteStore(tmp_path / "votes.db", deferred=True)
    store.begin_request()
    assert store.record(b"a" * 32, 0, b"block", None) is None
    assert store.needed_batch() == 0
    store.batch_failed(OSError("disk full"))
    with pytest.raises(RuntimeError, match="could not be written"):
        store.record(b"a" * 32, 0, b"block", None)


def test_any_queued_row_holds_the_answer(tmp_path: Path) -> None:
    store = SqliteVoteStore(tmp_path / "votes.db", deferred=True)
    world = World()
    certificate = world.commit(world.mint, world.mint.open())
    store.begin_request()
    store.add_certificate(certificate)  # no vote, but a row the answer reports as done
    assert store.needed_batch() == 0
    store.flush()
    store.begin_request()
    assert store.voted(b"a" * 32, 0) is None and store.needed_batch() is None
