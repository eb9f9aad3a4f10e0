"""The pure-Python yamux engine, ``YamuxConnection`` (its behaviour is specified in the
docstring of ``neonet.core.yamux``, which re-exports it). Never import ``neonet._native`` or
``neonet.core.backend`` here.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Final, NoReturn

from neonet.core.errors import LimitExceededError, LocalProtocolError, RemoteProtocolError
from neonet.core.yamux_events import (
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
    YamuxEvent,
    YamuxStatistics,
    _join_adjacent_data,
)
from neonet.core.yamux_frames import (
    DEFAULT_WINDOW,
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    HEADER,
    HEADER_SIZE,
    MAX_QUEUED_REPLIES,
    MAX_U32,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    VERSION,
)
from neonet.core.yamux_streams import (
    _CAN_RECEIVE_DATA,
    _CAN_SEND_DATA,
    _I,
    _S,
    TRANSITIONS,
    StreamInput,
    _Stream,
)

_FAILED_MESSAGE: Final = "the connection failed with a protocol error and is closed"


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
