"""The values both yamux backends share: ``YamuxConfig``, ``YamuxStatistics`` and the
events ``receive_data`` reports (``YamuxEvent``), plus the helper that joins adjacent
``DataReceived`` of one stream. Re-exported from ``neonet.core.yamux``, where the native
binding looks the classes up at run time: never import ``neonet._native`` or
``neonet.core.backend`` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from neonet.core.yamux_frames import DEFAULT_WINDOW, MAX_U32


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
