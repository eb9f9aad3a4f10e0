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

from typing import Protocol

# The engine and its parts live in their own modules, all re-exported here (the native
# binding imports the event classes, YamuxStatistics and YamuxConfig from this module at
# run time): yamux_frames (wire format, constants), yamux_events (YamuxConfig,
# YamuxStatistics, the events), yamux_streams (the stream state machine) and
# yamux_connection (YamuxConnection). The "X as X" imports keep the names outside __all__
# importable from here too. None of them may import neonet._native or neonet.core.backend.
from neonet.core.yamux_connection import YamuxConnection
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
)
from neonet.core.yamux_frames import DEFAULT_WINDOW as DEFAULT_WINDOW
from neonet.core.yamux_frames import FLAG_ACK as FLAG_ACK
from neonet.core.yamux_frames import FLAG_FIN as FLAG_FIN
from neonet.core.yamux_frames import FLAG_RST as FLAG_RST
from neonet.core.yamux_frames import FLAG_SYN as FLAG_SYN
from neonet.core.yamux_frames import (
    GO_AWAY_INTERNAL_ERROR,
    GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR,
    MAX_QUEUED_REPLIES,
    PROTOCOL_ID,
)
from neonet.core.yamux_frames import HEADER as HEADER
from neonet.core.yamux_frames import HEADER_SIZE as HEADER_SIZE
from neonet.core.yamux_frames import MAX_U32 as MAX_U32
from neonet.core.yamux_frames import TYPE_DATA as TYPE_DATA
from neonet.core.yamux_frames import TYPE_GO_AWAY as TYPE_GO_AWAY
from neonet.core.yamux_frames import TYPE_PING as TYPE_PING
from neonet.core.yamux_frames import TYPE_WINDOW_UPDATE as TYPE_WINDOW_UPDATE
from neonet.core.yamux_frames import VERSION as VERSION
from neonet.core.yamux_streams import _CAN_RECEIVE_DATA as _CAN_RECEIVE_DATA
from neonet.core.yamux_streams import _CAN_SEND_DATA as _CAN_SEND_DATA
from neonet.core.yamux_streams import TRANSITIONS as TRANSITIONS
from neonet.core.yamux_streams import StreamInput as StreamInput
from neonet.core.yamux_streams import StreamState as StreamState

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
