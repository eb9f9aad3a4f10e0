"""``ClientStream.on_frame_nowait``, the SSN's synchronous SIGNAL path, and its fallbacks
to ``on_message`` (no session, no free request slot, not a SIGNAL), with a stand-in
server: what it answers itself (RATE_LIMITED) and what it hands on; and
``ClientStream.on_read_nowait``, the per-read ``SignalRouter`` call before them."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from neonet.core import backend
from neonet.core.peer_id import PeerId
from neonet.core.ratelimit import RateLimiter
from neonet.proto.ssn import client_protocol as cp
from neonet.proto.ssn import federation as fed
from neonet.services.ssn.channel import FramedChannel
from neonet.services.ssn.config import ServerStatistics
from neonet.services.ssn.signals import ClientSession, ClientStream, SignalPath

PEER = b"\x00\x04keys"
TO = b"\x00\x02to"


class StandIn:
    """The parts of ``SsnServer`` that ``ClientStream`` uses; records fast signals."""

    def __init__(self, rate: float, burst: float, slots: int = 1) -> None:
        self.config = SimpleNamespace(max_requests_in_flight=slots)
        self.stats = ServerStatistics()
        self._client_limits: RateLimiter[bytes] = RateLimiter(rate, burst)
        self.fast: list[tuple[int, bytes, bytes]] = []
        self._router = backend.SignalRouter(1024, 3.0, 64, 16)
        self.forwards: list[tuple[int, bytes]] = []

    def _add_stream(self, client: object) -> int:
        return 1

    def _send_forwards(self, forwards: list[tuple[int, bytes]]) -> None:
        self.forwards.extend(forwards)

    def _now(self) -> float:
        return 100.0

    def _signal_fast_frame(
        self, channel: object, sender: bytes, rid: int, to: bytes, payload: bytes, slots: object
    ) -> bool:
        self.fast.append((rid, to, payload))
        return True


def _stream(server: StandIn) -> tuple[ClientStream, FramedChannel[cp.ClientMessage]]:
    left, _right = trio.testing.memory_stream_pair()  # frames stay in the channel's buffer
    channel: FramedChannel[cp.ClientMessage] = FramedChannel(
        left,
        decode=cp.decode_message,
        encode=cp.encode_message,
        is_reply=lambda m: False,
        request_id_of=lambda m: m.request_id,
    )
    stand_in: Any = server
    stream = ClientStream(stand_in, channel, PeerId(PEER), "127.0.0.1")
    return stream, channel


def _signal(rid: int) -> bytes:
    return cp.encode_message(cp.Signal(rid, TO, b"candidate"))


def _sent(channel: FramedChannel[cp.ClientMessage]) -> list[cp.ClientMessage]:
    decoder = cp.FrameDecoder()
    return [cp.decode_message(body) for body in decoder.feed(bytes(channel._buffer))]


def test_a_signal_is_taken_on_the_fast_path_with_a_request_slot() -> None:
    server = StandIn(rate=1.0, burst=5.0)
    stream, channel = _stream(server)
    assert stream.on_frame_nowait(_signal(7)) is False  # not registered yet
    stream.session = ClientSession(PEER, channel)
    assert stream.on_frame_nowait(_signal(7)) is True
    assert server.fast == [(7, TO, b"candidate")]
    assert stream.limiter.free == 0  # its slot is held until the answer
    # No free slot: nothing done, on_message (which waits for one) takes it.
    assert stream.on_frame_nowait(_signal(8)) is False
    stream.limiter.release()
    # Not a SIGNAL: on_message.
    assert stream.on_frame_nowait(cp.encode_message(cp.Lookup(9, TO))) is False
    assert server.fast == [(7, TO, b"candidate")]
    assert _sent(channel) == []


def test_a_signal_over_the_rate_is_answered_rate_limited_at_once() -> None:
    server = StandIn(rate=1e-6, burst=1.0)
    stream, channel = _stream(server)
    stream.session = ClientSession(PEER, channel)
    assert stream.on_frame_nowait(_signal(1)) is True
    stream.limiter.release()
    assert stream.on_frame_nowait(_signal(2)) is True  # answered, not handed on
    assert server.fast == [(1, TO, b"candidate")]
    assert stream.limiter.free == 1  # a refused signal takes no slot
    assert server.stats.errors == 1
    (answer,) = _sent(channel)
    assert isinstance(answer, cp.Error)
    assert (answer.request_id, answer.code) == (2, cp.ErrorCode.RATE_LIMITED)
    assert "retry in" in answer.text


def test_a_read_of_signals_becomes_forwards_within_slots_and_rate_tokens() -> None:
    trio.run(_a_read_of_signals)  # (deadlines come from trio's clock)


async def _a_read_of_signals() -> None:
    server = StandIn(rate=1e-6, burst=2.0, slots=3)
    stream, channel = _stream(server)
    server._router.set_route(TO, 1)
    server._router.open_link(1, 10)
    lookup = cp.encode_message(cp.Lookup(9, TO))
    read = [_signal(1), lookup, _signal(2), _signal(3)]
    assert stream.on_read_nowait(read) is read  # not registered yet: all handed on
    stream.session = ClientSession(PEER, channel)
    rest = stream.on_read_nowait(read)
    # Two rate tokens, three slots. Only the prefix up to the LOOKUP is forwarded: the
    # LOOKUP keeps its place, so the per-frame path gives it the second token, and the
    # SIGNALs after it are refused RATE_LIMITED (the order of the read, as on main).
    assert rest == [lookup, _signal(2), _signal(3)]
    assert rest[0] is lookup
    assert (stream.limiter.free, server.stats.signals) == (2, 1)
    assert server._client_limits.available(PEER, server._now()) == 1
    ((link, blob),) = server.forwards
    forwards = [fed.decode_message(body) for body in cp.FrameDecoder().feed(blob)]
    assert link == 10
    assert [(m.sender, m.to, m.payload) for m in forwards] == [(PEER, TO, b"candidate")]
    # The per-frame path, in order: the LOOKUP is not a SIGNAL (on_message takes it and
    # its rate token), then the two SIGNALs get RATE_LIMITED at once.
    assert stream.on_frame_nowait(rest[0]) is False
    assert stream._rate_limited(PEER, 9) is None  # (on_message's check for the LOOKUP)
    assert stream.on_frame_nowait(rest[1]) is True
    assert stream.on_frame_nowait(rest[2]) is True
    answers = _sent(channel)
    assert [(a.request_id, a.code) for a in answers if isinstance(a, cp.Error)] == [
        (2, cp.ErrorCode.RATE_LIMITED),
        (3, cp.ErrorCode.RATE_LIMITED),
    ]
    assert len(answers) == 2
    assert server.fast == []


def test_nothing_after_a_malformed_frame_is_forwarded() -> None:
    trio.run(_after_a_malformed_frame)


async def _after_a_malformed_frame() -> None:
    server = StandIn(rate=1.0, burst=5.0, slots=3)
    stream, channel = _stream(server)
    server._router.set_route(TO, 1)
    server._router.open_link(1, 10)
    stream.session = ClientSession(PEER, channel)
    read = [_signal(1)[:-1], _signal(2)]  # a cut SIGNAL, then a good one
    assert stream.on_read_nowait(read) == read  # both to the per-frame path, in order
    assert (server.forwards, server.stats.signals, stream.limiter.free) == ([], 0, 3)


class _Presences(SignalPath):
    """The presence cache and routes of ``SignalPath`` alone (no server around them)."""

    def __init__(self, size: int) -> None:
        self.id = b"\x00\x04self"
        self.config = SimpleNamespace(presence_cache=size)  # type: ignore[assignment]
        self.clients = {}
        self._presence_cache = OrderedDict()
        self._router = backend.SignalRouter(1024, 3.0, 16, size)
        self._members = {b"\x00\x04ssn1": 1}


def _presence(index: int, ssn_id: bytes = b"\x00\x04ssn1") -> cp.PresenceRecord:
    return cp.PresenceRecord(bytes((0, 4)) + index.to_bytes(4, "big"), ssn_id, (), 1, 0, b"")


def test_routes_follow_the_presence_cache_up_to_its_bound() -> None:
    path = _Presences(size=3)
    for index in range(10):  # the cache is full from the fourth on: evictions
        path._remember_presence(_presence(index))
    assert list(path._presence_cache) == [_presence(i).peer_id for i in (7, 8, 9)]
    assert path._router.routes == 3
    path._remember_presence(_presence(10, ssn_id=path.id))  # at this SSN: no route
    path._remember_presence(_presence(11, ssn_id=b"\x00\x04ssn2"))  # no link yet
    assert path._router.routes == 1
    path._forget_presence(_presence(9).peer_id)
    assert (len(path._presence_cache), path._router.routes) == (2, 0)
