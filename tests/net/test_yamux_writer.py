"""The session writer's idle exit: one shared task per trio run ends writers that had
no output for ``WRITER_IDLE_EXIT`` seconds (no timer per wait), and output after that
starts a new writer."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from neonet.net.yamux_session import WRITER_IDLE_EXIT, YamuxSession, YamuxStream


async def _echo(stream: YamuxStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.aclose()


async def _round_trip(session: YamuxSession, payload: bytes) -> None:
    stream = await session.open_stream()
    await stream.send_all(payload)
    await stream.send_eof()
    received = b""
    while chunk := await stream.receive_some():
        received += chunk
    assert received == payload
    await stream.aclose()


async def test_idle_writers_end_and_restart(autojump_clock: trio.testing.MockClock) -> None:
    left, right = trio.testing.memory_stream_pair()
    client = YamuxSession(left, is_client=True, on_stream=_echo)
    server = YamuxSession(right, is_client=False, on_stream=_echo)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        await nursery.start(server.run)
        for round_number in range(3):
            await _round_trip(client, b"round %d" % round_number)
            assert client.statistics().writer_running
            assert server.statistics().writer_running
            # Still running halfway through the idle period, ended within two periods.
            await trio.sleep(WRITER_IDLE_EXIT / 2)
            assert client.statistics().writer_running
            await trio.sleep(WRITER_IDLE_EXIT * 2)
            assert not client.statistics().writer_running
            assert not server.statistics().writer_running
        await client.aclose()
        await server.aclose()


async def test_a_busy_writer_is_not_ended(autojump_clock: trio.testing.MockClock) -> None:
    # Output more often than the idle period keeps the same writer: it never ends.
    left, right = trio.testing.memory_stream_pair()
    client = YamuxSession(left, is_client=True, on_stream=_echo)
    server = YamuxSession(right, is_client=False, on_stream=_echo)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        await nursery.start(server.run)
        await _round_trip(client, b"x")
        for _ in range(10):
            await trio.sleep(WRITER_IDLE_EXIT * 0.4)
            assert client.statistics().writer_running
            assert server.statistics().writer_running
            await _round_trip(client, b"x")
        await client.aclose()
        await server.aclose()


class _StepsOf(trio.abc.Instrument):
    """Counts the scheduler steps of tasks with a given name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == self.name:
            self.steps += 1


async def test_the_idle_writers_task_sleeps_when_no_writer_idles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    client = YamuxSession(left, is_client=True, on_stream=_echo)
    server = YamuxSession(right, is_client=False, on_stream=_echo)
    counter = _StepsOf("neonet idle writers")
    trio.lowlevel.add_instrument(counter)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            await nursery.start(server.run)
            await _round_trip(client, b"x")
            await trio.sleep(WRITER_IDLE_EXIT * 3)
            assert not client.statistics().writer_running
            woken = counter.steps
            assert woken >= 1  # it ran, and ended both writers
            # Nothing idles now: it waits without a timer, however long nothing happens.
            await trio.sleep(WRITER_IDLE_EXIT * 1000)
            assert counter.steps == woken
            await client.aclose()
            await server.aclose()
    finally:
        trio.lowlevel.remove_instrument(counter)


async def test_a_failure_ending_one_writer_leaves_the_others(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shared task is a trio system task: an error escaping it would end the whole
    # run. One session whose writer cannot be ended is logged; the others still end.
    pairs = [trio.testing.memory_stream_pair() for _ in range(2)]
    clients = [YamuxSession(left, is_client=True, on_stream=_echo) for left, _ in pairs]
    servers = [YamuxSession(right, is_client=False, on_stream=_echo) for _, right in pairs]

    def broken() -> None:
        raise RuntimeError("cannot end this writer")

    monkeypatch.setattr(clients[0], "_expire_writer", broken)
    async with trio.open_nursery() as nursery:
        for session in clients + servers:
            await nursery.start(session.run)
        for client in clients:
            await _round_trip(client, b"x")
        await trio.sleep(WRITER_IDLE_EXIT * 3)
        assert clients[0].statistics().writer_running  # its end failed: still there
        assert not clients[1].statistics().writer_running
        await _round_trip(clients[1], b"after")
        for session in clients + servers:
            await session.aclose()
