"""Property tests of the yamux engine on both backends, and differential tests between them.

Framing round trips and garbage input run on each backend; garbage and a random
two-sided workload also run on a pure and a native engine in lockstep (``Twin``), which
must give identical events, output bytes, statistics and exceptions at every step.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from neonet.core import backend as backend_module
from neonet.core.errors import LimitExceededError, LocalProtocolError, RemoteProtocolError
from neonet.core.yamux import (
    _CAN_RECEIVE_DATA,
    DataReceived,
    GoAwayReceived,
    PongReceived,
    SendWindowIncreased,
    StreamAcknowledged,
    StreamClosed,
    StreamEnded,
    StreamOpened,
    StreamReset,
    YamuxConfig,
    YamuxEngine,
    YamuxEvent,
)
from tests.core.twins import BACKEND_NAMES, NATIVE, PURE, Twin

DATA, WINDOW_UPDATE, PING, GO_AWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8
INITIAL_WINDOW = 256 * 1024


def frame(frame_type: int, flags: int, stream_id: int, length: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BBHII", 0, frame_type, flags, stream_id, length) + payload


def join_data(events: list[YamuxEvent]) -> list[YamuxEvent]:
    """Adjacent DataReceived of one stream joined: how one receive_data call reports them."""
    joined: list[YamuxEvent] = []
    for event in events:
        last = joined[-1] if joined else None
        if (
            isinstance(event, DataReceived)
            and isinstance(last, DataReceived)
            and last.stream_id == event.stream_id
        ):
            joined[-1] = DataReceived(event.stream_id, last.data + event.data)
        else:
            joined.append(event)
    return joined


def feed(engine: YamuxEngine, wire: bytes, cuts: list[int]) -> list[YamuxEvent]:
    """Deliver ``wire`` cut at ``cuts``; the events, with data joined across calls."""
    events: list[YamuxEvent] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(wire)]:
        batch = engine.receive_data(wire[start:cut])
        assert join_data(batch) == batch, "one call reports adjacent data of a stream as one"
        events += batch
        start = cut
    return join_data(events)


# --- (a) valid frame sequences round-trip however they are split --------------------------


@dataclass
class _PeerStream:
    window: int = INITIAL_WINDOW
    finished: bool = False
    payload: bytearray = field(default_factory=bytearray)


@st.composite
def valid_client_traffic(draw: st.DrawFn) -> tuple[bytes, dict[int, bytes]]:
    """Frames a correct client may send to a fresh server; also what each stream carries."""
    live: dict[int, _PeerStream] = {}
    released: list[int] = []
    skipped: list[int] = []
    delivered: dict[int, bytes] = {}
    next_id = 1
    wire = bytearray()
    for _ in range(draw(st.integers(0, 40))):
        choice = draw(st.sampled_from(["open", "data", "window", "fin", "rst", "ping", "late"]))
        if choice == "open" or not live:
            fill_a_gap = draw(st.booleans()) if skipped else False
            if fill_a_gap:
                stream_id = skipped.pop(draw(st.integers(0, len(skipped) - 1)))
            else:
                jump = draw(st.integers(0, 2))
                skipped.extend(range(next_id, next_id + 2 * jump, 2))
                stream_id = next_id + 2 * jump
                next_id = stream_id + 2
            stream = live[stream_id] = _PeerStream()
            if draw(st.booleans()):
                wire += frame(WINDOW_UPDATE, SYN, stream_id, draw(st.integers(0, 1 << 16)))
            else:
                payload = draw(st.binary(max_size=64))
                stream.window -= len(payload)
                stream.payload += payload
                wire += frame(DATA, SYN, stream_id, len(payload), payload)
            continue
        stream_id = draw(st.sampled_from(sorted(live)))
        stream = live[stream_id]
        if choice == "data" and not stream.finished:
            size = draw(st.integers(0, min(stream.window, 3000)))
            payload = draw(st.binary(min_size=size, max_size=size))
            flags = draw(st.sampled_from([0, 0, FIN, ACK]))
            stream.window -= size
            stream.payload += payload
            stream.finished = bool(flags & FIN)
            wire += frame(DATA, flags, stream_id, size, payload)
        elif choice == "window":
            wire += frame(WINDOW_UPDATE, 0, stream_id, draw(st.integers(0, 1 << 16)))
        elif choice == "fin" and not stream.finished:
            stream.finished = True
            wire += frame(WINDOW_UPDATE, FIN, stream_id, 0)
        elif choice == "rst":
            del live[stream_id]
            released.append(stream_id)
            delivered[stream_id] = bytes(stream.payload)
            wire += frame(WINDOW_UPDATE, RST, stream_id, 0)
        elif choice == "ping":
            wire += frame(
                PING, draw(st.sampled_from([SYN, ACK])), 0, draw(st.integers(0, 2**32 - 1))
            )
        elif choice == "late" and released:
            # Frames still in flight for a stream that was reset: ignored by the receiver.
            late_id = draw(st.sampled_from(released))
            wire += frame(WINDOW_UPDATE, 0, late_id, 100) + frame(DATA, 0, late_id, 3, b"old")
    if draw(st.booleans()):
        wire += frame(GO_AWAY, 0, 0, draw(st.integers(0, 2)))
    for stream_id, stream in live.items():
        delivered[stream_id] = bytes(stream.payload)
    return bytes(wire), delivered


def twin_engines(**keywords: object) -> Twin:
    """A pure and a native YamuxConnection in lockstep."""
    return Twin(PURE.YamuxConnection(**keywords), NATIVE.YamuxConnection(**keywords))


@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traffic=valid_client_traffic(), data=st.data())
def test_valid_frames_give_the_same_events_however_they_are_split(
    name: backend_module.BackendName, traffic: tuple[bytes, dict[int, bytes]], data: st.DataObject
) -> None:
    backend = backend_module.implementation(name)
    wire, delivered = traffic
    whole = backend.YamuxConnection(is_client=False)
    whole_events = whole.receive_data(wire)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=30))
    split = backend.YamuxConnection(is_client=False)
    assert feed(split, wire, cuts) == whole_events
    assert split.data_to_send() == whole.data_to_send()
    for stream_id, payload in delivered.items():
        got = b"".join(
            e.data for e in whole_events if isinstance(e, DataReceived) and e.stream_id == stream_id
        )
        assert got == payload
    assert split.statistics() == whole.statistics()


@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(deadline=None)
@given(data=st.data())
def test_byte_at_a_time_equals_whole(name: backend_module.BackendName, data: st.DataObject) -> None:
    backend = backend_module.implementation(name)
    wire, _ = data.draw(valid_client_traffic())
    whole_events = backend.YamuxConnection(is_client=False).receive_data(wire)
    split = backend.YamuxConnection(is_client=False)
    assert feed(split, wire, list(range(len(wire)))) == whole_events


@settings(max_examples=300, deadline=None)
@given(traffic=valid_client_traffic(), data=st.data())
def test_backends_agree_on_valid_traffic(
    traffic: tuple[bytes, dict[int, bytes]], data: st.DataObject
) -> None:
    wire, _ = traffic
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    engine = twin_engines(is_client=False)
    feed(engine, wire, cuts)
    engine.data_to_send()
    engine.statistics()


# --- (b) garbage gives events or RemoteProtocolError, nothing else ------------------------


def _check_garbage(engine: YamuxEngine, wire: bytes, cuts: list[int]) -> None:
    start = 0
    for cut in [*sorted(set(cuts)), len(wire)]:
        failure: RemoteProtocolError | None = None
        try:
            events = engine.receive_data(wire[start:cut])
        except RemoteProtocolError as error:  # the only exception garbage may cause
            failure = error
        if failure is not None:
            assert failure.code == 1
            assert engine.data_to_send().endswith(frame(GO_AWAY, 0, 0, 1))
            with pytest.raises(LocalProtocolError):
                engine.receive_data(b"\x00")
            return
        assert isinstance(events, list)
        engine.data_to_send()
        start = cut
    stats = engine.statistics()
    assert stats.partial_frame_bytes <= len(wire)


def _engine(name: str, is_client: bool) -> YamuxEngine:
    """One backend's engine, or (for "twin") both in lockstep."""
    if name == "twin":
        return twin_engines(is_client=is_client)
    return backend_module.implementation(name).YamuxConnection(is_client=is_client)


@pytest.mark.parametrize("name", [*BACKEND_NAMES, "twin"])
@settings(max_examples=500, deadline=None)
@given(
    wire=st.binary(max_size=4096),
    cuts=st.lists(st.integers(0, 4096), max_size=10),
    is_client=st.booleans(),
)
def test_random_bytes_never_raise_anything_else(
    name: str, wire: bytes, cuts: list[int], is_client: bool
) -> None:
    _check_garbage(_engine(name, is_client), wire, [c for c in cuts if c <= len(wire)])


_headers = st.tuples(
    st.sampled_from([0, 0, 0, 0, 0, 0, 1]),  # mostly version 0, so parsing goes deep
    st.integers(0, 4),
    st.sampled_from([0, SYN, ACK, FIN, RST, SYN | FIN, ACK | FIN, SYN | RST, 0x10, 0xFFFF]),
    st.integers(0, 8),
    st.one_of(st.integers(0, 40), st.integers(0, 2**32 - 1)),
)


@pytest.mark.parametrize("name", [*BACKEND_NAMES, "twin"])
@settings(max_examples=500, deadline=None)
@given(headers=st.lists(_headers, max_size=60), data=st.data())
def test_random_frames_never_raise_anything_else(
    name: str, headers: list[tuple[int, int, int, int, int]], data: st.DataObject
) -> None:
    wire = bytearray()
    for version, frame_type, flags, stream_id, length in headers:
        wire += struct.pack(">BBHII", version, frame_type, flags, stream_id, length)
        if frame_type == DATA and length <= 40:
            wire += bytes(length)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    _check_garbage(_engine(name, data.draw(st.booleans())), bytes(wire), cuts)


# --- (c) a random workload over a link keeps every invariant ------------------------------

PATTERN = bytes(range(251)) * ((1 << 20) // 251 + 2)
MAX_CHUNK = 1 << 20
CONFIG = YamuxConfig(
    max_streams=4, max_ack_backlog=3, max_frame_payload=40_000, max_receive_window=1 << 20
)
SIDES = ("client", "server")


@dataclass
class _Direction:
    """One direction of one stream: what the writer queued and what the reader got."""

    pending: int = 0  # the writer's application still wants to send this much
    sent: int = 0  # bytes the writing engine accepted
    fin_requested: bool = False
    fin_sent: bool = False
    received: int = 0
    unconsumed: int = 0
    ended: bool = False  # the reader saw StreamEnded


@dataclass
class _StreamModel:
    opener: str
    directions: dict[str, _Direction] = field(
        default_factory=lambda: {side: _Direction() for side in SIDES}
    )  # keyed by writer
    reset: bool = False
    known_by: set[str] = field(default_factory=set)
    closed_reported: set[str] = field(default_factory=set)


def _other(side: str) -> str:
    return "server" if side == "client" else "client"


class YamuxLink(RuleBasedStateMachine):
    """A client and a server, each a pure and a native engine in lockstep (``Twin``).

    Every command and every delivery goes to both backends and must give identical
    results; the model's invariants are checked against the pure engines' state.
    """

    def __init__(self) -> None:
        super().__init__()
        self.engines = {
            "client": twin_engines(is_client=True, config=CONFIG),
            "server": twin_engines(is_client=False, config=CONFIG),
        }
        self.streams: dict[int, _StreamModel] = {}
        self.pongs: dict[str, list[int]] = {side: [] for side in SIDES}
        self.pings: dict[str, list[int]] = {side: [] for side in SIDES}

    # --- helpers ---
    def _pick(self, side: str, index: int) -> int | None:
        ids = sorted(i for i, model in self.streams.items() if side in model.known_by)
        return ids[index % len(ids)] if ids else None

    def _flush_writes(self, side: str) -> None:
        engine = self.engines[side]
        for stream_id, model in self.streams.items():
            direction = model.directions[side]
            if model.reset or direction.fin_sent or not engine.stream_is_open(stream_id):
                direction.pending = 0
                continue
            while direction.pending:
                start = direction.sent % 251
                size = min(direction.pending, MAX_CHUNK)
                sent = engine.send_data(stream_id, memoryview(PATTERN)[start : start + size])
                assert 0 <= sent <= size
                direction.sent += sent
                direction.pending -= sent
                if sent < size:
                    break
            if direction.fin_requested and not direction.pending:
                engine.close_stream(stream_id)
                direction.fin_sent = True

    def _handle(self, side: str, events: list[YamuxEvent]) -> None:
        for event in events:
            if isinstance(event, StreamOpened):
                model = self.streams[event.stream_id]
                assert model.opener == _other(side)
                assert side not in model.known_by
                model.known_by.add(side)
            elif isinstance(event, DataReceived):
                model = self.streams[event.stream_id]
                direction = model.directions[_other(side)]
                start = direction.received % 251
                assert event.data == PATTERN[start : start + len(event.data)], "out of order"
                direction.received += len(event.data)
                direction.unconsumed += len(event.data)
                assert direction.received <= direction.sent, "delivered more than was sent"
            elif isinstance(event, StreamEnded):
                direction = self.streams[event.stream_id].directions[_other(side)]
                assert direction.fin_sent and not direction.ended
                assert direction.received == direction.sent
                direction.ended = True
            elif isinstance(event, StreamReset):
                self.streams[event.stream_id].reset = True
            elif isinstance(event, StreamClosed):
                model = self.streams[event.stream_id]
                assert side not in model.closed_reported, "StreamClosed twice"
                model.closed_reported.add(side)
                assert not self.engines[side].stream_is_open(event.stream_id)
            elif isinstance(event, PongReceived):
                self.pongs[side].append(event.opaque)
            else:
                assert isinstance(event, StreamAcknowledged | SendWindowIncreased | GoAwayReceived)

    def _pump(self) -> None:
        for _ in range(10_000):
            for side in SIDES:
                self._flush_writes(side)
            to_server = self.engines["client"].data_to_send()
            to_client = self.engines["server"].data_to_send()
            if not to_server and not to_client:
                self._check_windows_agree()
                return
            if to_server:
                self._handle("server", self.engines["server"].receive_data(to_server))
            if to_client:
                self._handle("client", self.engines["client"].receive_data(to_client))
        raise AssertionError("the link did not settle")

    def _check_windows_agree(self) -> None:
        """With nothing in flight, each writer's send window is its reader's receive window."""
        for writer in SIDES:
            sending = self.engines[writer]._streams
            receiving = self.engines[_other(writer)]._streams
            for stream_id, state in sending.items():
                peer_state = receiving.get(stream_id)
                if peer_state is not None and peer_state.state in _CAN_RECEIVE_DATA:
                    assert state.send_window == peer_state.receive_window

    def _consume_all(self) -> None:
        for stream_id, model in self.streams.items():
            for writer, direction in model.directions.items():
                if direction.unconsumed:
                    self.engines[_other(writer)].consume(stream_id, direction.unconsumed)
                    direction.unconsumed = 0

    # --- rules ---
    @rule(side=st.sampled_from(SIDES))
    def open_stream(self, side: str) -> None:
        engine = self.engines[side]
        before = engine.statistics()
        try:
            stream_id = engine.open_stream()
        except LimitExceededError:
            assert (
                before.open_streams >= CONFIG.max_streams
                or before.ack_backlog >= CONFIG.max_ack_backlog
            )
            return
        assert stream_id not in self.streams
        assert (stream_id % 2 == 1) == (side == "client")
        self.streams[stream_id] = _StreamModel(opener=side, known_by={side})

    @precondition(lambda self: self.streams)
    @rule(
        side=st.sampled_from(SIDES),
        index=st.integers(0, 100),
        size=st.one_of(st.integers(1, 5_000), st.integers(100_000, 1_500_000)),
    )
    def write(self, side: str, index: int, size: int) -> None:
        stream_id = self._pick(side, index)
        if stream_id is None:
            return
        model = self.streams[stream_id]
        direction = model.directions[side]
        if not direction.fin_requested and not model.reset:
            direction.pending += size
            self._flush_writes(side)

    @precondition(lambda self: self.streams)
    @rule(
        side=st.sampled_from(SIDES),
        index=st.integers(0, 100),
        fraction=st.floats(0, 1),
    )
    def consume(self, side: str, index: int, fraction: float) -> None:
        stream_id = self._pick(side, index)
        if stream_id is None:
            return
        direction = self.streams[stream_id].directions[_other(side)]
        amount = int(direction.unconsumed * fraction)
        self.engines[side].consume(stream_id, amount)
        direction.unconsumed -= amount

    @precondition(lambda self: self.streams)
    @rule(side=st.sampled_from(SIDES), index=st.integers(0, 100))
    def close(self, side: str, index: int) -> None:
        stream_id = self._pick(side, index)
        if stream_id is None:
            return
        self.streams[stream_id].directions[side].fin_requested = True
        self._flush_writes(side)

    @precondition(lambda self: self.streams)
    @rule(side=st.sampled_from(SIDES), index=st.integers(0, 100))
    def reset(self, side: str, index: int) -> None:
        stream_id = self._pick(side, index)
        if stream_id is None:
            return
        self.engines[side].reset_stream(stream_id)  # a no-op once released
        self.streams[stream_id].reset = True

    @rule(side=st.sampled_from(SIDES), opaque=st.integers(0, 2**32 - 1))
    def ping(self, side: str, opaque: int) -> None:
        self.engines[side].ping(opaque)
        self.pings[side].append(opaque)

    @rule()
    def pump(self) -> None:
        self._pump()

    @rule()
    def drain(self) -> None:
        """Consume everything until quiet: every write completes unless its stream was reset."""
        for _ in range(1000):
            self._pump()
            if not any(d.unconsumed for m in self.streams.values() for d in m.directions.values()):
                break
            self._consume_all()
        else:
            raise AssertionError("draining did not finish")
        for stream_id, model in self.streams.items():
            if model.reset:
                continue
            for direction in model.directions.values():
                assert direction.pending == 0, f"stream {stream_id} stalled"
                assert direction.received == direction.sent
                assert direction.ended == direction.fin_sent
        for side in SIDES:
            assert sorted(self.pongs[side]) == sorted(self.pings[side])

    # --- invariants ---
    @invariant()
    def limits_and_windows_hold(self) -> None:
        for side, engine in self.engines.items():
            stats = engine.statistics()
            assert 0 <= stats.open_streams <= CONFIG.max_streams
            assert 0 <= stats.ack_backlog <= CONFIG.max_ack_backlog
            for stream_id, model in self.streams.items():
                if engine.stream_is_open(stream_id):
                    assert engine.send_window(stream_id) >= 0
                    state = engine._streams[stream_id]
                    assert state.receive_window >= 0
                    assert state.unconsumed >= 0
                    assert state.receive_window + state.unconsumed <= state.receive_target
                    assert state.receive_target <= CONFIG.max_receive_window
                    assert state.unconsumed == model.directions[_other(side)].unconsumed


YamuxLink.TestCase.settings = settings(
    max_examples=250, stateful_step_count=50, deadline=None, suppress_health_check=list(HealthCheck)
)
TestYamuxLink = YamuxLink.TestCase
