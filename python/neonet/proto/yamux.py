"""yamux (libp2p/specs yamux/README.md), as a sans-I/O engine.

Frames have a 12-byte header: version 0, type (Data, Window Update, Ping, Go Away),
flags (SYN, ACK, FIN, RST), stream ID and length, all big-endian. Streams opened by the
client have odd IDs, by the server even ones. Each stream has a receive window
(initially 256 KiB); a sender may only send what the peer's window allows, and the
receiver re-opens it with Window Update frames as its application consumes data.

Edge behaviour, decided here once:
- Connection-level violations (bad version or type, data beyond the window, a SYN for a
  live stream or with the peer's-parity rule broken, a frame over the size limit) queue
  GoAway(protocol error) and raise ``RemoteProtocolError(code=1)``; the engine is dead.
- Data after the peer's own FIN is a stream-level violation: that stream is reset.
- Frames for stream IDs we do not know (already closed, or reset by us) are ignored:
  they may have been in flight when the stream ended.
- Inbound SYNs are ACKed at once; above ``max_streams`` they are answered with RST.
- Our outbound streams not yet ACKed count against ``max_ack_backlog``.
- Receive windows grow (doubling, up to ``max_receive_window``) each time the
  application has consumed half a window, so a fast reader gets a large window and a
  slow one never buffers more than it was granted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from neonet.core.errors import LimitExceededError, LocalProtocolError, RemoteProtocolError

VERSION = 0
TYPE_DATA = 0
TYPE_WINDOW_UPDATE = 1
TYPE_PING = 2
TYPE_GO_AWAY = 3
FLAG_SYN = 1
FLAG_ACK = 2
FLAG_FIN = 4
FLAG_RST = 8
GO_AWAY_NORMAL = 0
GO_AWAY_PROTOCOL_ERROR = 1
GO_AWAY_INTERNAL_ERROR = 2
INITIAL_WINDOW = 256 * 1024
HEADER = struct.Struct(">BBHII")
HEADER_SIZE = HEADER.size


@dataclass(frozen=True, slots=True)
class YamuxConfig:
    initial_window: int = INITIAL_WINDOW
    max_receive_window: int = 16 * 1024 * 1024
    max_streams: int = 1024
    max_ack_backlog: int = 256
    max_frame_payload: int = 256 * 1024


@dataclass(frozen=True, slots=True)
class StreamOpened:
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamAcknowledged:
    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int


@dataclass(frozen=True, slots=True)
class SendWindowIncreased:
    stream_id: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    code: int


@dataclass(frozen=True, slots=True)
class StreamClosed:
    stream_id: int


YamuxEvent = (
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


@dataclass(frozen=True, slots=True)
class YamuxStatistics:
    open_streams: int
    ack_backlog: int
    bytes_buffered: int


class _Stream:
    __slots__ = (
        "acknowledged",
        "local_finished",
        "outbound",
        "receive_window",
        "receive_window_size",
        "remote_finished",
        "send_window",
        "unacknowledged_credit",
    )

    def __init__(self, *, outbound: bool, receive_window: int) -> None:
        self.outbound = outbound
        self.acknowledged = not outbound
        self.send_window = INITIAL_WINDOW
        self.receive_window = receive_window  # what the peer may still send
        self.receive_window_size = receive_window
        self.unacknowledged_credit = 0  # consumed bytes not yet returned by a window update
        self.local_finished = False
        self.remote_finished = False


class YamuxConnection:
    """One end of a yamux session."""

    def __init__(self, *, is_client: bool, config: YamuxConfig | None = None) -> None:
        self.config = config or YamuxConfig()
        if self.config.initial_window < INITIAL_WINDOW:
            raise ValueError("yamux windows start at 256 KiB at least")
        self.is_client = is_client
        self._next_id = 1 if is_client else 2
        self._streams: dict[int, _Stream] = {}
        self._ack_backlog = 0
        self._out: list[bytes] = []
        self._out_size = 0
        self._inbox = bytearray()
        self._dead = False
        self._local_go_away = False
        self._remote_go_away = False

    # --- output ------------------------------------------------------------------
    def _frame(
        self, kind: int, flags: int, stream_id: int, length: int, payload: bytes = b""
    ) -> None:
        self._out.append(HEADER.pack(VERSION, kind, flags, stream_id, length))
        self._out_size += HEADER_SIZE
        if payload:
            self._out.append(payload)
            self._out_size += len(payload)

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        self._out_size = 0
        return data

    def statistics(self) -> YamuxStatistics:
        return YamuxStatistics(len(self._streams), self._ack_backlog, self._out_size)

    # --- commands ----------------------------------------------------------------
    def _check_alive(self) -> None:
        if self._dead:
            raise LocalProtocolError("the yamux connection is closed")

    def _live_stream(self, stream_id: int) -> _Stream:
        self._check_alive()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"stream {stream_id} is not open")
        return stream

    def open_stream(self) -> int:
        self._check_alive()
        if self._remote_go_away or self._local_go_away:
            raise LocalProtocolError("the session is going away: no new streams")
        if self._ack_backlog >= self.config.max_ack_backlog:
            raise LimitExceededError(f"{self._ack_backlog} streams await the peer's ACK")
        if len(self._streams) >= self.config.max_streams:
            raise LimitExceededError(f"stream limit {self.config.max_streams} reached")
        stream_id = self._next_id
        if stream_id > 0xFFFFFFFF:
            raise LocalProtocolError("stream IDs exhausted")
        self._next_id += 2
        self._streams[stream_id] = _Stream(outbound=True, receive_window=self.config.initial_window)
        self._ack_backlog += 1
        self._frame(
            TYPE_WINDOW_UPDATE, FLAG_SYN, stream_id, self.config.initial_window - INITIAL_WINDOW
        )
        return stream_id

    def send_window(self, stream_id: int) -> int:
        return self._live_stream(stream_id).send_window

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        stream = self._live_stream(stream_id)
        if stream.local_finished:
            raise LocalProtocolError(f"stream {stream_id} is closed for writing")
        amount = min(len(data), stream.send_window)
        if amount <= 0:
            return 0
        stream.send_window -= amount
        limit = self.config.max_frame_payload
        if amount <= limit:
            # Copy unless it is an immutable bytes object sent whole: the caller may reuse its buffer.
            chunk = (
                data
                if type(data) is bytes and amount == len(data)
                else bytes(memoryview(data)[:amount])
            )
            self._frame(TYPE_DATA, 0, stream_id, amount, chunk)
            return amount
        view = memoryview(data).cast("B")
        for start in range(0, amount, limit):
            chunk = bytes(view[start : min(start + limit, amount)])
            self._frame(TYPE_DATA, 0, stream_id, len(chunk), chunk)
        return amount

    def consume(self, stream_id: int, amount: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or self._dead or stream.remote_finished:
            return  # nothing more will arrive: no credit to return
        stream.unacknowledged_credit += amount
        if stream.unacknowledged_credit * 2 < stream.receive_window_size:
            return
        credit = stream.unacknowledged_credit
        if stream.receive_window_size < self.config.max_receive_window:
            grown = min(stream.receive_window_size * 2, self.config.max_receive_window)
            credit += grown - stream.receive_window_size
            stream.receive_window_size = grown
        stream.unacknowledged_credit = 0
        stream.receive_window += credit
        self._frame(TYPE_WINDOW_UPDATE, 0, stream_id, credit)

    def close_stream(self, stream_id: int) -> None:
        stream = self._live_stream(stream_id)
        if stream.local_finished:
            return
        stream.local_finished = True
        self._frame(TYPE_WINDOW_UPDATE, FLAG_FIN, stream_id, 0)
        if stream.remote_finished:
            self._release(stream_id)

    def reset_stream(self, stream_id: int) -> None:
        self._live_stream(stream_id)
        self._frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)
        self._release(stream_id)

    def stream_is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def ping(self, opaque: int) -> None:
        self._check_alive()
        self._frame(TYPE_PING, FLAG_SYN, 0, opaque & 0xFFFFFFFF)

    def go_away(self, code: int = GO_AWAY_NORMAL) -> None:
        self._check_alive()
        if not self._local_go_away:
            self._local_go_away = True
            self._frame(TYPE_GO_AWAY, 0, 0, code)

    def _release(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None and stream.outbound and not stream.acknowledged:
            self._ack_backlog -= 1

    # --- input -------------------------------------------------------------------
    def _fail(self, message: str) -> RemoteProtocolError:
        if not self._dead:
            self._frame(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR)
            self._dead = True
        return RemoteProtocolError(message, code=GO_AWAY_PROTOCOL_ERROR)

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[YamuxEvent]:
        self._check_alive()
        inbox = self._inbox
        inbox += data
        events: list[YamuxEvent] = []
        offset = 0
        end = len(inbox)
        unpack = HEADER.unpack_from
        limit = max(self.config.max_receive_window, self.config.max_frame_payload)
        try:
            while end - offset >= HEADER_SIZE:
                version, kind, flags, stream_id, length = unpack(inbox, offset)
                if version != VERSION:
                    raise self._fail(f"unsupported yamux version {version}")
                if kind == TYPE_DATA:
                    if length > limit:
                        raise self._fail(f"yamux data frame of {length} bytes exceeds any window")
                    if end - offset - HEADER_SIZE < length:
                        break
                    start = offset + HEADER_SIZE
                    payload = bytes(inbox[start : start + length]) if length else b""
                    offset = start + length
                    self._on_stream_frame(events, flags, stream_id, 0, payload, is_data=True)
                elif kind == TYPE_WINDOW_UPDATE:
                    offset += HEADER_SIZE
                    self._on_stream_frame(events, flags, stream_id, length, b"", is_data=False)
                elif kind == TYPE_PING:
                    offset += HEADER_SIZE
                    if stream_id != 0:
                        raise self._fail("yamux ping on a stream ID other than 0")
                    if flags & FLAG_SYN:
                        self._frame(TYPE_PING, FLAG_ACK, 0, length)
                    elif flags & FLAG_ACK:
                        events.append(PongReceived(length))
                elif kind == TYPE_GO_AWAY:
                    offset += HEADER_SIZE
                    self._remote_go_away = True
                    events.append(GoAwayReceived(length))
                else:
                    raise self._fail(f"unknown yamux frame type {kind}")
        finally:
            if offset:
                del inbox[:offset]
        if len(inbox) > limit + HEADER_SIZE:  # pragma: no cover - guarded by the length check
            raise self._fail("yamux receive buffer overflow")
        return events

    def _on_stream_frame(
        self,
        events: list[YamuxEvent],
        flags: int,
        stream_id: int,
        delta: int,
        payload: bytes,
        *,
        is_data: bool,
    ) -> None:
        if stream_id == 0:
            raise self._fail("yamux stream frame on stream ID 0")
        streams = self._streams
        stream = streams.get(stream_id)
        if flags & FLAG_SYN:
            if stream is not None:
                raise self._fail(f"yamux SYN for stream {stream_id}, which is open")
            if (stream_id % 2 == 1) == self.is_client:
                raise self._fail(f"yamux SYN for stream {stream_id} with our parity")
            if self._local_go_away or len(streams) >= self.config.max_streams:
                self._frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)
                return
            stream = _Stream(outbound=False, receive_window=self.config.initial_window)
            streams[stream_id] = stream
            grow = self.config.initial_window - INITIAL_WINDOW
            self._frame(TYPE_WINDOW_UPDATE, FLAG_ACK, stream_id, grow)
            events.append(StreamOpened(stream_id))
        elif stream is None:
            return  # a frame for a stream that already ended: it was in flight
        if flags & FLAG_ACK and stream.outbound and not stream.acknowledged:
            stream.acknowledged = True
            self._ack_backlog -= 1
            events.append(StreamAcknowledged(stream_id))
        if flags & FLAG_RST:
            self._release(stream_id)
            events.append(StreamReset(stream_id))
            events.append(StreamClosed(stream_id))
            return
        if is_data:
            if payload:
                if stream.remote_finished:
                    self._frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)
                    self._release(stream_id)
                    events.append(StreamReset(stream_id))
                    events.append(StreamClosed(stream_id))
                    return
                if len(payload) > stream.receive_window:
                    raise self._fail(f"yamux stream {stream_id} sent beyond its receive window")
                stream.receive_window -= len(payload)
                events.append(DataReceived(stream_id, payload))
        elif delta:
            stream.send_window += delta
            if stream.send_window > 0xFFFFFFFF:
                raise self._fail(f"yamux stream {stream_id} window overflow")
            events.append(SendWindowIncreased(stream_id))
        if flags & FLAG_FIN and not stream.remote_finished:
            stream.remote_finished = True
            events.append(StreamEnded(stream_id))
            if stream.local_finished:
                self._release(stream_id)
                events.append(StreamClosed(stream_id))
