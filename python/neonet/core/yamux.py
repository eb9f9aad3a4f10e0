"""Sans-I/O yamux engine: the stream multiplexer of the libp2p yamux spec (``/yamux/1.0.0``).

Implements ``specs/yamux/README.md`` (the hashicorp yamux framing, flow control and
session termination, plus the libp2p ACK-backlog recommendation). ``YamuxConnection``
does no I/O: feed it received bytes with ``receive_data`` (it returns events), call its
command methods, and write whatever ``data_to_send`` returns. A driver such as
``neonet.net.yamux_session`` owns the sockets, tasks and clocks.

This is the pure twin of ``neonet._native.YamuxConnection`` (crates/neonet-core
``yamux.rs``), which follows every rule below with the same events, output bytes,
exception classes and texts; ``neonet.core.backend`` picks one (``YamuxConnection``
there). The event classes, ``YamuxConfig`` and ``YamuxStatistics`` here serve both.

Behaviour at every edge (the spec leaves most of these open):

Framing
    * Version must be 0 and the type one of Data, Window Update, Ping, Go Away; anything
      else is a connection error. Unknown flag bits are ignored (hashicorp compatibility).
    * Data and Window Update frames must name a stream (id != 0); Ping and Go Away must
      use stream 0. A data frame's length is checked as soon as its header arrives, so a
      partial frame never occupies more than the window it is allowed to fill.
    * Flags of one frame are applied in the order SYN, RST, ACK, payload (data or window
      delta), FIN. A frame carrying RST discards its payload.

Connection errors
    A connection-level violation (bad version or type, wrong stream id for the type,
    data beyond a stream's receive window, a SYN with our parity or reusing an id, a
    frame for a stream that never existed, a send window beyond 2**32 - 1, or a peer
    that makes us queue more than ``MAX_QUEUED_REPLIES`` replies between two
    ``data_to_send`` calls) queues GoAway(protocol error) and raises
    ``RemoteProtocolError(code=1)``. The connection is then dead: every later call except
    ``data_to_send`` and ``statistics`` raises ``LocalProtocolError``. Events produced
    by the failing ``receive_data`` call before the violation are discarded with it,
    and so is any partial frame.

Stream ids
    The client uses odd ids, the server even ones; ours increase by two from 1 or 2 and
    running out raises ``LimitExceededError``. The peer's SYNs may arrive out of order
    (go-yamux opens concurrently, rust-yamux sends the SYN with a stream's first frame),
    so ids the peer skipped are remembered as "not yet used", as ranges (one per jump,
    so a huge jump costs nothing; at most ``max_streams`` ranges, the oldest forgotten
    first, and a late SYN for a forgotten id counts as reuse).
    A frame without SYN for an id that was used and released is ignored: window
    updates, data or FIN may be in flight after a reset or close.

Opening
    ``open_stream`` queues a Window Update with SYN carrying ``initial_window - 256 KiB``
    of extra window, and data may follow at once. It raises ``LocalProtocolError`` after
    either side sent GoAway, and ``LimitExceededError`` when ``max_streams`` slots are
    held or ``max_ack_backlog`` of our streams wait for their ACK. An inbound SYN is
    ACKed at once (Window Update with ACK and the same extra window); it is refused with
    RST when ``max_streams`` slots are held or after we sent GoAway, which affects only
    that stream. SYN together with RST opens nothing (the id is used up). An ACK only
    means something on our own stream that awaits it; elsewhere it is ignored. Our
    stream leaves the ACK backlog on ACK, RST or when it is finished.

Closing
    FIN half-closes. Data or a second FIN after the peer's FIN is a stream-level
    violation: we reset that stream and report ``StreamReset`` (the connection lives on).
    Closing a stream we already finished raises ``LocalProtocolError``; closing or
    resetting a stream that is already released (for example reset by the peer
    meanwhile) does nothing. Sending on a stream closed for writing or released raises
    ``LocalProtocolError``. A stream is released when both sides sent FIN or either side
    sent RST (``stream_is_open`` turns false); ``StreamClosed`` is then reported exactly
    once. When our own command
    released it, the event leads the list of the next ``receive_data`` call, and the
    stream keeps its slot (``max_streams``, ``open_streams``) until then, which also
    bounds the number of such unreported events.

Flow control
    Each stream starts with the spec's 256 KiB window in both directions, plus what the
    SYN/ACK window updates add. Only data payload counts. ``consume`` returns credit:
    a window update goes out once at least half of the current window is free again
    (never per byte), and none once the peer finished sending. Window auto-tuning, a
    doubling rule without clocks: if the peer used up all of its credit at some point
    since our previous window update (it stalled on us, so the window limited the
    throughput), the update doubles the window, up to ``max_receive_window``. A slow
    reader that consumes in large gulps looks the same, so the cap is what bounds memory.
    ``consume`` after release is ignored; consuming more than was delivered raises.

Output
    ``data_to_send`` joins the queued frames once. A ``bytes`` payload (or a memoryview
    of one) is referenced until then, not copied; other buffers are copied by
    ``send_data``, so the caller may reuse them at once. Frames still queued are merged
    where the spec allows flags on data frames: our SYN or ACK that carries no extra
    window travels on the stream's next data frame. FIN always goes on a Window Update
    frame of its own, as go-yamux sends it: js-libp2p 3.x lost the data of a frame that
    also carried FIN.

Ping and GoAway
    A Ping with SYN is answered automatically; one without SYN is a pong and reported
    as ``PongReceived``. Every GoAway is reported; afterwards streams keep working and
    the peer may still open streams. After our own ``go_away`` (allowed once) inbound
    SYNs are refused with RST.

Bounds
    Inbound partial frames: at most one frame, whose payload cannot exceed the stream's
    receive window (``max_receive_window`` for a stream being refused or released).
    Outbound: data is bounded by the peer-granted send windows; control frames the peer
    provokes (ACKs, pongs, RSTs) are capped at ``MAX_QUEUED_REPLIES`` per
    ``data_to_send`` call. Streams: ``max_streams``. Per-stream buffered data the app has
    not consumed: at most its receive window.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NoReturn, Protocol, TypeAlias

from neonet.core.errors import LimitExceededError, LocalProtocolError, RemoteProtocolError

__all__ = [
    "GO_AWAY_INTERNAL_ERROR",
    "GO_AWAY_NORMAL",
    "GO_AWAY_PROTOCOL_ERROR",
    "MAX_QUEUED_REPLIES",
    "PROTOCOL_ID",
    "DataReceived",
    "GoAwayReceived",
    "PongReceived",
    "SendWindowIncreased",
    "StreamAcknowledged",
    "StreamClosed",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "YamuxConfig",
    "YamuxConnection",
    "YamuxEngine",
    "YamuxEvent",
    "YamuxStatistics",
]

PROTOCOL_ID: Final = "/yamux/1.0.0"

VERSION: Final = 0
HEADER: Final = struct.Struct(">BBHII")  # version, type, flags, stream id, length
HEADER_SIZE: Final = HEADER.size

TYPE_DATA: Final = 0x0
TYPE_WINDOW_UPDATE: Final = 0x1
TYPE_PING: Final = 0x2
TYPE_GO_AWAY: Final = 0x3

FLAG_SYN: Final = 0x1
FLAG_ACK: Final = 0x2
FLAG_FIN: Final = 0x4
FLAG_RST: Final = 0x8

GO_AWAY_NORMAL: Final = 0x0
GO_AWAY_PROTOCOL_ERROR: Final = 0x1
GO_AWAY_INTERNAL_ERROR: Final = 0x2

DEFAULT_WINDOW: Final = 256 * 1024  # the spec's initial window, assumed by both sides
MAX_U32: Final = 0xFFFFFFFF

_FAILED_MESSAGE: Final = "the connection failed with a protocol error and is closed"

# Frames the peer makes us send (ACKs, pongs, RSTs) that may pile up between two
# data_to_send() calls. A peer that does not read while flooding us with pings or
# SYNs would otherwise grow our output without bound; a well-behaved one never has more
# than its ACK backlog (256) plus a few pings outstanding.
MAX_QUEUED_REPLIES: Final = 16384


@dataclass(frozen=True, slots=True)
class YamuxConfig:
    """Limits and windows of one connection; the defaults follow the spec and go-yamux."""

    initial_window: int = 256 * 1024
    max_receive_window: int = 16 * 1024 * 1024
    max_streams: int = 1024
    max_ack_backlog: int = 256
    # go-libp2p 0.51 (go-yamux) intermittently ended a 1 MiB echo early when we sent
    # 256 KiB data frames (about 1 run in 20); with 64 KiB frames, 0 in 180.
    max_frame_payload: int = 64 * 1024

    def __post_init__(self) -> None:
        if not DEFAULT_WINDOW <= self.initial_window <= MAX_U32:
            # Both sides assume 256 KiB at first; a window can only grow from there.
            raise ValueError(f"initial_window must be in [{DEFAULT_WINDOW}, 2**32 - 1]")
        if not self.initial_window <= self.max_receive_window <= MAX_U32:
            raise ValueError("max_receive_window must be in [initial_window, 2**32 - 1]")
        if self.max_streams < 1 or self.max_ack_backlog < 1:
            raise ValueError("max_streams and max_ack_backlog must be at least 1")
        if not 1 <= self.max_frame_payload <= MAX_U32:
            raise ValueError("max_frame_payload must be in [1, 2**32 - 1]")


@dataclass(frozen=True, slots=True)
class YamuxStatistics:
    """A snapshot. ``bytes_buffered`` is output not yet taken by ``data_to_send``."""

    open_streams: int
    inbound_streams: int
    outbound_streams: int
    ack_backlog: int
    bytes_buffered: int
    partial_frame_bytes: int


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream (we have already ACKed it)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamAcknowledged:
    """The peer ACKed a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Payload for a stream; hand ``len(data)`` back with ``consume`` once it is taken.

    Data frames of one stream that follow each other with no other event between them
    (a bulk transfer: several 64 KiB frames per socket read) arrive as one event.
    """

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer sent FIN: it will send no more data on this stream."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream was reset by the peer (or by us after the peer broke the stream's rules)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class SendWindowIncreased:
    """The peer granted more send window on a stream we may still write to."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The peer answered a ping (or sent an unsolicited pong)."""

    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer is terminating the session; we may open no new streams."""

    code: int


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The stream is finished both ways or reset; its id is released."""

    stream_id: int


YamuxEvent: TypeAlias = (
    StreamOpened
    | StreamAcknowledged
    | DataReceived
    | StreamEnded
    | StreamReset
    | SendWindowIncreased
    | PongReceived
    | GoAwayReceived
    | StreamClosed
)


class YamuxEngine(Protocol):
    """The interface both backends' ``YamuxConnection`` implement (see the docstring)."""

    @property
    def has_output(self) -> bool: ...
    def receive_data(self, data: bytes | bytearray | memoryview) -> list[YamuxEvent]: ...
    def data_to_send(self) -> bytes: ...
    def open_stream(self) -> int: ...
    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int: ...
    def send_window(self, stream_id: int) -> int: ...
    def stream_is_open(self, stream_id: int) -> bool: ...
    def consume(self, stream_id: int, amount: int) -> None: ...
    def close_stream(self, stream_id: int) -> None: ...
    def reset_stream(self, stream_id: int) -> None: ...
    def ping(self, opaque: int) -> None: ...
    def go_away(self, code: int = ...) -> None: ...
    def statistics(self) -> YamuxStatistics: ...


def _join_adjacent_data(events: list[YamuxEvent]) -> list[YamuxEvent]:
    """Report each run of adjacent DataReceived of one stream as one event."""
    joined: list[YamuxEvent] = []
    run: list[bytes] = []
    run_stream = -1
    for event in events:
        if type(event) is DataReceived and event.stream_id == run_stream:
            run.append(event.data)
            continue
        if len(run) > 1:
            joined[-1] = DataReceived(run_stream, b"".join(run))
        if type(event) is DataReceived:
            run_stream, run = event.stream_id, [event.data]
        else:
            run_stream, run = -1, []
        joined.append(event)
    if len(run) > 1:
        joined[-1] = DataReceived(run_stream, b"".join(run))
    return joined


# --- the stream state machine ------------------------------------------------------------


class StreamState(IntEnum):
    OPEN = 0
    LOCAL_CLOSED = 1  # we sent FIN; the peer may still send
    REMOTE_CLOSED = 2  # the peer sent FIN; we may still send
    CLOSED = 3  # both sent FIN: released
    RESET = 4  # either sent RST: released


class StreamInput(IntEnum):
    SEND_DATA = 0
    SEND_FIN = 1
    SEND_RST = 2
    RECEIVE_DATA = 3
    RECEIVE_FIN = 4
    RECEIVE_RST = 5


_S = StreamState
_I = StreamInput
_LIVE = (_S.OPEN, _S.LOCAL_CLOSED, _S.REMOTE_CLOSED)

# The whole stream lifecycle. A pair missing here is a protocol error: LocalProtocolError
# for our inputs, a stream reset for the peer's (window updates are valid in every live
# state and change no state). CLOSED and RESET streams are released, never stored.
TRANSITIONS: Final[dict[tuple[StreamState, StreamInput], StreamState]] = {
    (_S.OPEN, _I.SEND_DATA): _S.OPEN,
    (_S.REMOTE_CLOSED, _I.SEND_DATA): _S.REMOTE_CLOSED,
    (_S.OPEN, _I.RECEIVE_DATA): _S.OPEN,
    (_S.LOCAL_CLOSED, _I.RECEIVE_DATA): _S.LOCAL_CLOSED,
    (_S.OPEN, _I.SEND_FIN): _S.LOCAL_CLOSED,
    (_S.REMOTE_CLOSED, _I.SEND_FIN): _S.CLOSED,
    (_S.OPEN, _I.RECEIVE_FIN): _S.REMOTE_CLOSED,
    (_S.LOCAL_CLOSED, _I.RECEIVE_FIN): _S.CLOSED,
    **{(state, _I.SEND_RST): _S.RESET for state in _LIVE},
    **{(state, _I.RECEIVE_RST): _S.RESET for state in _LIVE},
}

# Views of the table for the per-frame hot paths (one set lookup instead of a tuple key).
_CAN_SEND_DATA: Final = frozenset(s for (s, i) in TRANSITIONS if i is _I.SEND_DATA)
_CAN_RECEIVE_DATA: Final = frozenset(s for (s, i) in TRANSITIONS if i is _I.RECEIVE_DATA)


class _Stream:
    __slots__ = (
        "awaiting_ack",
        "outbound",
        "peer_stalled",
        "receive_target",
        "receive_window",
        "send_window",
        "state",
        "unconsumed",
    )

    def __init__(self, *, outbound: bool, receive_window: int, send_window: int) -> None:
        self.state = StreamState.OPEN
        self.outbound = outbound
        self.awaiting_ack = outbound
        self.send_window = send_window
        # Credit the peer still has, the window we aim to keep granted, and bytes handed
        # to the application but not yet consumed. receive_window + unconsumed never
        # exceeds receive_target.
        self.receive_window = receive_window
        self.receive_target = receive_window
        self.unconsumed = 0
        self.peer_stalled = False


class YamuxConnection:
    """One side of a yamux session, as a sans-I/O state machine (see the module docstring)."""

    def __init__(self, *, is_client: bool, config: YamuxConfig | None = None) -> None:
        self._config = config if config is not None else YamuxConfig()
        self._is_client = is_client
        self._own_parity = 1 if is_client else 0
        self._extra_window = self._config.initial_window - DEFAULT_WINDOW
        self._streams: dict[int, _Stream] = {}
        self._next_outbound_id = 1 if is_client else 2
        # The peer's first id is 2 (client side) or 1 (server side); start two below it.
        self._highest_inbound_id = 0 if is_client else -1
        self._outbound_streams = 0
        # Peer ids below _highest_inbound_id whose SYN has not arrived yet, as sorted
        # disjoint ranges [start, end] of ids of the peer's parity (see docstring).
        self._gap_starts: list[int] = []
        self._gap_ends: list[int] = []
        self._ack_backlog = 0
        # Outbound frames as a list of pieces, joined once by data_to_send(): payloads
        # backed by immutable bytes are referenced, not copied.
        self._output: list[bytes | memoryview] = []
        self._output_size = 0
        # The last queued frame, if later flags may still be merged into it:
        # (len(_output) right after it, stream id, type, flags, length).
        self._mergeable: tuple[int, int, int, int, int] | None = None
        self._queued_replies = 0
        # An incomplete frame carried over from the previous receive_data call.
        self._partial = bytearray()
        self._events: list[YamuxEvent] = []
        # StreamClosed events for streams our own commands released, reported next time.
        self._unreported_closes: list[YamuxEvent] = []
        self._failed = False
        self._go_away_sent = False
        self._go_away_received = False
        # Set when this call's events hold adjacent DataReceived of one stream.
        self._adjacent_data = False

    # --- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[YamuxEvent]:
        """Parse every whole frame in ``data`` (plus any carried-over partial frame)."""
        if self._failed:
            raise LocalProtocolError(_FAILED_MESSAGE)
        events = self._unreported_closes
        self._unreported_closes = []
        self._events = events
        view = memoryview(data)
        try:
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
            self._feed(view)
        except RemoteProtocolError as error:
            self._fail(error)
            raise
        finally:
            view.release()
            self._events = []
        if self._adjacent_data:
            self._adjacent_data = False
            return _join_adjacent_data(events)
        return events

    def _feed(self, view: memoryview) -> None:
        end = len(view)
        position = 0
        partial = self._partial
        if partial:
            position = self._complete_partial(view)
            if partial:
                return
        position = self._parse_frames(view, position, end)
        if position < end:
            # Keep the incomplete tail (less than one frame), checking its header now so
            # that an oversized frame is refused before we buffer it.
            partial += view[position:]
            if len(partial) >= HEADER_SIZE:
                self._frame_size(partial)

    def _complete_partial(self, view: memoryview) -> int:
        """Top up the carried-over frame from ``view``; parse it once whole. Returns bytes taken."""
        partial = self._partial
        taken = 0
        if len(partial) < HEADER_SIZE:
            taken = min(HEADER_SIZE - len(partial), len(view))
            partial += view[:taken]
            if len(partial) < HEADER_SIZE:
                return taken
        frame_size = self._frame_size(partial)
        more = min(frame_size - len(partial), len(view) - taken)
        if more:
            partial += view[taken : taken + more]
            taken += more
        if len(partial) == frame_size:
            with memoryview(partial) as frame:
                self._parse_frames(frame, 0, frame_size)
            partial.clear()
        return taken

    def _frame_size(self, header: bytes | bytearray | memoryview) -> int:
        """Validate a frame header ahead of its payload; return the whole frame's size."""
        version, frame_type, flags, stream_id, length = HEADER.unpack_from(header)
        if version != VERSION:
            self._violation(f"unsupported yamux version {version}")
        if frame_type == TYPE_DATA:
            if length > self._data_limit(flags, stream_id):
                self._violation(f"data frame of {length} bytes exceeds the window")
            return HEADER_SIZE + int(length)
        if frame_type > TYPE_GO_AWAY:
            self._violation(f"unknown frame type {frame_type}")
        return HEADER_SIZE

    def _data_limit(self, flags: int, stream_id: int) -> int:
        """The largest data payload the peer may send in a frame with this header."""
        if flags & FLAG_SYN:
            return self._config.initial_window
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream.receive_window
        # Released (in-flight data is discarded) or invalid (refused once complete).
        return self._config.max_receive_window

    def _parse_frames(self, view: memoryview, position: int, end: int) -> int:
        """Handle every whole frame in ``view[position:end]``; return where parsing stopped."""
        unpack_from = HEADER.unpack_from
        streams = self._streams
        events = self._events
        can_receive = _CAN_RECEIVE_DATA
        while end - position >= HEADER_SIZE:
            version, frame_type, flags, stream_id, length = unpack_from(view, position)
            if version != VERSION:
                self._violation(f"unsupported yamux version {version}")
            if frame_type == TYPE_DATA:
                stream = streams.get(stream_id)
                if stream is not None and not flags:
                    # Hot path: plain data on a known stream.
                    if length > stream.receive_window:
                        self._violation(f"data frame of {length} bytes exceeds the window")
                    payload_start = position + HEADER_SIZE
                    frame_end = payload_start + length
                    if frame_end > end:
                        break
                    position = frame_end
                    if not length:
                        continue
                    if stream.state not in can_receive:
                        self._stream_violation(stream_id, stream)
                        continue
                    remaining = stream.receive_window - length
                    stream.receive_window = remaining
                    if not remaining:
                        stream.peer_stalled = True
                    stream.unconsumed += length
                    if events and type(last := events[-1]) is DataReceived:
                        self._adjacent_data |= last.stream_id == stream_id
                    events.append(DataReceived(stream_id, bytes(view[payload_start:frame_end])))
                    continue
                if length > self._data_limit(flags, stream_id):
                    self._violation(f"data frame of {length} bytes exceeds the window")
                frame_end = position + HEADER_SIZE + length
                if frame_end > end:
                    break
                self._on_stream_frame(
                    TYPE_DATA, flags, stream_id, length, view[position + HEADER_SIZE : frame_end]
                )
                position = frame_end
            elif frame_type == TYPE_WINDOW_UPDATE:
                stream = streams.get(stream_id)
                if stream is not None and not flags:
                    if length:
                        self._grant(stream_id, stream, length)
                else:
                    self._on_stream_frame(TYPE_WINDOW_UPDATE, flags, stream_id, length, None)
                position += HEADER_SIZE
            elif frame_type == TYPE_PING:
                self._on_ping(flags, stream_id, length)
                position += HEADER_SIZE
            elif frame_type == TYPE_GO_AWAY:
                if stream_id != 0:
                    self._violation("GoAway on a stream other than 0")
                self._go_away_received = True
                events.append(GoAwayReceived(length))
                position += HEADER_SIZE
            else:
                self._violation(f"unknown frame type {frame_type}")
        return position

    def _on_stream_frame(
        self,
        frame_type: int,
        flags: int,
        stream_id: int,
        length: int,
        payload: memoryview | None,
    ) -> None:
        """A Data or Window Update frame, in the general case (flags or unknown stream)."""
        if stream_id == 0:
            self._violation("data or window update on stream 0")
        stream: _Stream | None
        if flags & FLAG_SYN:
            stream = self._accept_inbound(stream_id, flags)
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                self._check_was_used(stream_id)
                return  # a released stream: whatever was in flight is dropped
        if stream is None:
            return
        events = self._events
        if flags & FLAG_RST:
            self._release(stream_id, stream, _I.RECEIVE_RST)
            events.append(StreamReset(stream_id))
            events.append(StreamClosed(stream_id))
            return
        if flags & FLAG_ACK and stream.awaiting_ack:
            stream.awaiting_ack = False
            self._ack_backlog -= 1
            events.append(StreamAcknowledged(stream_id))
        if frame_type == TYPE_DATA:
            if length:
                if stream.state not in _CAN_RECEIVE_DATA:
                    self._stream_violation(stream_id, stream)
                    return
                # _parse_frames already checked length against the window.
                stream.receive_window -= length
                if not stream.receive_window:
                    stream.peer_stalled = True
                stream.unconsumed += length
                assert payload is not None
                if events and type(last := events[-1]) is DataReceived:
                    self._adjacent_data |= last.stream_id == stream_id
                events.append(DataReceived(stream_id, bytes(payload)))
        elif length:
            self._grant(stream_id, stream, length)
        if flags & FLAG_FIN:
            new_state = TRANSITIONS.get((stream.state, _I.RECEIVE_FIN))
            if new_state is None:
                self._stream_violation(stream_id, stream)
                return
            events.append(StreamEnded(stream_id))
            if new_state is _S.CLOSED:
                self._release(stream_id, stream, _I.RECEIVE_FIN)
                events.append(StreamClosed(stream_id))
            else:
                stream.state = new_state

    def _grant(self, stream_id: int, stream: _Stream, delta: int) -> None:
        """The peer's window update: more send window for ``stream``."""
        window = stream.send_window + delta
        if window > MAX_U32:
            self._violation("send window grew beyond 2**32 - 1")
        stream.send_window = window
        if stream.state in _CAN_SEND_DATA:
            self._events.append(SendWindowIncreased(stream_id))

    def _accept_inbound(self, stream_id: int, flags: int) -> _Stream | None:
        """Handle a SYN: validate the id, then accept (ACK) or refuse (RST) the stream."""
        if stream_id & 1 == self._own_parity:
            self._violation(f"SYN for stream {stream_id}, which has our parity")
        if stream_id in self._streams:
            self._violation(f"SYN for stream {stream_id}, which is open")
        if stream_id > self._highest_inbound_id:
            self._remember_gap(self._highest_inbound_id + 2, stream_id - 2)
            self._highest_inbound_id = stream_id
        elif not self._fill_gap(stream_id):
            self._violation(f"SYN reuses stream id {stream_id}")
        if flags & FLAG_RST:
            return None
        if self._go_away_sent or self._slots_held() >= self._config.max_streams:
            self._queue_reply(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)
            return None
        stream = _Stream(
            outbound=False,
            receive_window=self._config.initial_window,
            send_window=DEFAULT_WINDOW,
        )
        self._streams[stream_id] = stream
        self._events.append(StreamOpened(stream_id))
        self._queue_reply(TYPE_WINDOW_UPDATE, FLAG_ACK, stream_id, self._extra_window)
        self._mergeable = (
            len(self._output),
            stream_id,
            TYPE_WINDOW_UPDATE,
            FLAG_ACK,
            self._extra_window,
        )
        return stream

    def _remember_gap(self, start: int, end: int) -> None:
        """The peer skipped ids ``start..end``; they lie above every known gap."""
        if start > end:
            return
        self._gap_starts.append(start)
        self._gap_ends.append(end)
        if len(self._gap_starts) > self._config.max_streams:
            # Bounded memory: forget the oldest gap (its late SYN will count as reuse).
            del self._gap_starts[0], self._gap_ends[0]

    def _gap_index(self, stream_id: int) -> int:
        """The index of the gap range holding ``stream_id``, or -1."""
        index = bisect_right(self._gap_starts, stream_id) - 1
        if index >= 0 and stream_id <= self._gap_ends[index]:
            return index
        return -1

    def _fill_gap(self, stream_id: int) -> bool:
        """A late SYN: take ``stream_id`` out of the gaps; False if it was not in one."""
        index = self._gap_index(stream_id)
        if index < 0:
            return False
        starts, ends = self._gap_starts, self._gap_ends
        start, end = starts[index], ends[index]
        if start == end:
            del starts[index], ends[index]
        elif stream_id == start:
            starts[index] = start + 2
        elif stream_id == end:
            ends[index] = end - 2
        else:
            ends[index] = stream_id - 2
            starts.insert(index + 1, stream_id + 2)
            ends.insert(index + 1, end)
            if len(starts) > self._config.max_streams:
                del starts[0], ends[0]
        return True

    def _was_used(self, stream_id: int) -> bool:
        """Whether ``stream_id`` (not live now) belonged to a stream that once existed."""
        if stream_id & 1 == self._own_parity:
            return 0 < stream_id < self._next_outbound_id
        return 0 < stream_id <= self._highest_inbound_id and self._gap_index(stream_id) < 0

    def _check_was_used(self, stream_id: int) -> None:
        """Raise unless ``stream_id`` belongs to a stream that existed (and is released)."""
        if not self._was_used(stream_id):
            self._violation(f"frame for stream {stream_id}, which was never opened")

    def _on_ping(self, flags: int, stream_id: int, opaque: int) -> None:
        if stream_id != 0:
            self._violation("ping on a stream other than 0")
        if flags & FLAG_SYN:
            self._queue_reply(TYPE_PING, FLAG_ACK, 0, opaque)
        else:
            self._events.append(PongReceived(opaque))

    def _stream_violation(self, stream_id: int, stream: _Stream) -> None:
        """The peer broke a stream's rules (data or FIN after its FIN): reset that stream."""
        self._queue_reply(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)
        self._release(stream_id, stream, _I.SEND_RST)
        self._events.append(StreamReset(stream_id))
        self._events.append(StreamClosed(stream_id))

    def _release(self, stream_id: int, stream: _Stream, reason: StreamInput) -> None:
        stream.state = TRANSITIONS[(stream.state, reason)]
        del self._streams[stream_id]
        if stream.outbound:
            self._outbound_streams -= 1
            if stream.awaiting_ack:
                self._ack_backlog -= 1

    def _queue_reply(self, frame_type: int, flags: int, stream_id: int, length: int) -> None:
        """Queue a frame the peer provoked, refusing to let such frames pile up unread."""
        self._queued_replies += 1
        if self._queued_replies > MAX_QUEUED_REPLIES:
            self._violation(f"peer provoked more than {MAX_QUEUED_REPLIES} unsent replies")
        self._queue_frame(frame_type, flags, stream_id, length)

    def _queue_frame(self, frame_type: int, flags: int, stream_id: int, length: int) -> None:
        self._output.append(HEADER.pack(VERSION, frame_type, flags, stream_id, length))
        self._output_size += HEADER_SIZE

    def _violation(self, message: str) -> NoReturn:
        raise RemoteProtocolError(message, code=GO_AWAY_PROTOCOL_ERROR)

    def _fail(self, error: RemoteProtocolError) -> None:
        self._failed = True
        self._partial = bytearray()  # a dead connection keeps no partial frame
        code = error.code if error.code is not None else GO_AWAY_PROTOCOL_ERROR
        self._queue_frame(TYPE_GO_AWAY, 0, 0, code)

    # --- commands --------------------------------------------------------------------------

    @property
    def has_output(self) -> bool:
        """Whether frames are queued for the peer (``data_to_send`` would return bytes)."""
        return bool(self._output)

    def data_to_send(self) -> bytes:
        """Return and clear everything queued for the peer."""
        self._queued_replies = 0
        output = self._output
        if not output:
            return b""
        self._output = []
        self._output_size = 0
        self._mergeable = None
        if len(output) == 1 and type(output[0]) is bytes:
            return output[0]
        return b"".join(output)

    def open_stream(self) -> int:
        """Open an outbound stream and queue its SYN; data may be sent before the ACK."""
        if self._failed:
            raise LocalProtocolError(_FAILED_MESSAGE)
        if self._go_away_received:
            raise LocalProtocolError("the peer sent GoAway: no new streams")
        if self._go_away_sent:
            raise LocalProtocolError("we sent GoAway: no new streams")
        if self._slots_held() >= self._config.max_streams:
            raise LimitExceededError(f"{self._config.max_streams} streams are open")
        if self._ack_backlog >= self._config.max_ack_backlog:
            raise LimitExceededError(f"{self._ack_backlog} streams await the peer's ACK")
        stream_id = self._next_outbound_id
        if stream_id > MAX_U32:
            raise LimitExceededError("this connection has used up its stream ids")
        self._next_outbound_id = stream_id + 2
        self._streams[stream_id] = _Stream(
            outbound=True,
            receive_window=self._config.initial_window,
            send_window=DEFAULT_WINDOW,
        )
        self._ack_backlog += 1
        self._outbound_streams += 1
        self._queue_frame(TYPE_WINDOW_UPDATE, FLAG_SYN, stream_id, self._extra_window)
        self._mergeable = (
            len(self._output),
            stream_id,
            TYPE_WINDOW_UPDATE,
            FLAG_SYN,
            self._extra_window,
        )
        return stream_id

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the send window allows; return how many bytes."""
        if self._failed:
            raise LocalProtocolError(_FAILED_MESSAGE)
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_known(stream_id)
            raise LocalProtocolError(f"stream {stream_id} is closed")
        if stream.state not in _CAN_SEND_DATA:
            raise LocalProtocolError(f"stream {stream_id} is closed for writing")
        output = self._output
        max_payload = self._config.max_frame_payload
        view: memoryview | None = None
        whole: bytes | None = None  # immutable input, referenced rather than copied
        if isinstance(data, bytes):
            whole = data
            size = len(data)
        else:
            view = memoryview(data)
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
            size = len(view)
        amount = min(size, stream.send_window)
        if not amount:
            return 0
        stream.send_window -= amount
        flags = 0
        mergeable = self._mergeable
        if (
            mergeable is not None
            and mergeable[0] == len(output)
            and mergeable[1] == stream_id
            and mergeable[2] == TYPE_WINDOW_UPDATE
            and mergeable[4] == 0
        ):
            # Our SYN or ACK is still queued and carries no window: send it on the data.
            flags = mergeable[3]
            output.pop()
            self._output_size -= HEADER_SIZE
        if whole is not None and amount == size and amount <= max_payload:
            # The common case: one frame, the caller's bytes referenced as they are.
            output.append(HEADER.pack(VERSION, TYPE_DATA, flags, stream_id, amount))
            output.append(whole)
            self._output_size += HEADER_SIZE + amount
            self._mergeable = (len(output), stream_id, TYPE_DATA, flags, amount)
            return amount
        if view is None:
            view = memoryview(data)
        # Slices of immutable bytes are safe to keep until data_to_send(); anything the
        # caller could still modify is copied now.
        keep = view.c_contiguous and type(view.obj) is bytes
        pack = HEADER.pack
        frames = 0
        for start in range(0, amount, max_payload):
            chunk = view[start : min(start + max_payload, amount)]
            output.append(pack(VERSION, TYPE_DATA, flags, stream_id, len(chunk)))
            output.append(chunk if keep else bytes(chunk))
            frames += 1
            last_flags, flags = flags, 0
        self._output_size += frames * HEADER_SIZE + amount
        self._mergeable = (len(output), stream_id, TYPE_DATA, last_flags, len(chunk))
        return amount

    def send_window(self, stream_id: int) -> int:
        """Bytes we may send now (0 once the stream is closed for writing or released)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_known(stream_id)
            return 0
        return stream.send_window if stream.state in _CAN_SEND_DATA else 0

    def stream_is_open(self, stream_id: int) -> bool:
        """Whether ``stream_id`` is live (opened and not yet released)."""
        return stream_id in self._streams

    def consume(self, stream_id: int, amount: int) -> None:
        """The application took ``amount`` received bytes: give the peer credit when due."""
        if self._failed:
            raise LocalProtocolError(_FAILED_MESSAGE)
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_known(stream_id)
            return  # released: the peer sends nothing more, credit is moot
        if not 0 <= amount <= stream.unconsumed:
            raise LocalProtocolError(
                f"consume({amount}) but {stream.unconsumed} bytes are unconsumed on {stream_id}"
            )
        stream.unconsumed -= amount
        if stream.state not in _CAN_RECEIVE_DATA:
            return  # the peer finished sending: no window updates needed
        target = stream.receive_target
        credit = target - stream.receive_window - stream.unconsumed
        if credit < target >> 1:
            return
        if stream.peer_stalled:
            stream.peer_stalled = False
            if target < self._config.max_receive_window:
                target = min(target * 2, self._config.max_receive_window)
                stream.receive_target = target
                credit = target - stream.receive_window - stream.unconsumed
        stream.receive_window += credit
        self._queue_frame(TYPE_WINDOW_UPDATE, 0, stream_id, credit)

    def close_stream(self, stream_id: int) -> None:
        """Send FIN: our write side is done. A released stream is left alone."""
        if self._failed:
            raise LocalProtocolError(_FAILED_MESSAGE)
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_known(stream_id)
            return
        new_state = TRANSITIONS.get((stream.state, _I.SEND_FIN))
        if new_state is None:
            raise LocalProtocolError(f"stream {stream_id} is already closed for writing")
        # FIN always travels on its own Window Update frame, as go-yamux sends it:
        # js-libp2p 3.x (yamux 8) lost the data of a frame that also carried FIN, or hung
        # (1 run in 4 of a 1 MiB echo); go-libp2p truncated echoes in a similar way.
        self._queue_frame(TYPE_WINDOW_UPDATE, FLAG_FIN, stream_id, 0)
        if self._mergeable is not None and self._mergeable[1] == stream_id:
            self._mergeable = None
        if new_state is _S.CLOSED:
            self._release(stream_id, stream, _I.SEND_FIN)
            self._unreported_closes.append(StreamClosed(stream_id))
        else:
            stream.state = new_state

    def reset_stream(self, stream_id: int) -> None:
        """Send RST: abort both directions. A released stream is left alone."""
        if self._failed:
            raise LocalProtocolError(_FAILED_MESSAGE)
        stream = self._streams.get(stream_id)
        if stream is None:
            self._check_known(stream_id)
            return
        self._queue_frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)
        self._release(stream_id, stream, _I.SEND_RST)
        self._unreported_closes.append(StreamClosed(stream_id))

    def ping(self, opaque: int) -> None:
        """Queue a ping; the peer's answer arrives as ``PongReceived(opaque)``."""
        if self._failed:
            raise LocalProtocolError(_FAILED_MESSAGE)
        if not 0 <= opaque <= MAX_U32:
            raise LocalProtocolError("ping opaque value must fit in 32 bits")
        self._queue_frame(TYPE_PING, FLAG_SYN, 0, opaque)

    def go_away(self, code: int = GO_AWAY_NORMAL) -> None:
        """Announce session termination; afterwards inbound SYNs are refused."""
        if self._failed:
            raise LocalProtocolError(_FAILED_MESSAGE)
        if not 0 <= code <= MAX_U32:
            raise LocalProtocolError("GoAway code must fit in 32 bits")
        if self._go_away_sent:
            raise LocalProtocolError("GoAway was already sent")
        self._go_away_sent = True
        self._queue_frame(TYPE_GO_AWAY, 0, 0, code)

    def statistics(self) -> YamuxStatistics:
        return YamuxStatistics(
            open_streams=self._slots_held(),
            inbound_streams=len(self._streams) - self._outbound_streams,
            outbound_streams=self._outbound_streams,
            ack_backlog=self._ack_backlog,
            bytes_buffered=self._output_size,
            partial_frame_bytes=len(self._partial),
        )

    # --- helpers ---------------------------------------------------------------------------

    def _slots_held(self) -> int:
        return len(self._streams) + len(self._unreported_closes)

    def _check_known(self, stream_id: int) -> None:
        """Raise LocalProtocolError unless ``stream_id`` names a stream that once existed."""
        if stream_id <= 0 or stream_id > MAX_U32:
            raise LocalProtocolError(f"invalid stream id {stream_id}")
        if not self._was_used(stream_id):
            raise LocalProtocolError(f"stream {stream_id} was never opened")
