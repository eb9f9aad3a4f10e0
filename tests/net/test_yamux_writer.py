"""The session writer's idle exit: one shared task per trio run ends writers that had
no output for ``WRITER_IDLE_EXIT`` seconds (no timer per wait), and output after that
starts a new writer."""

from __future__ import annotations

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
