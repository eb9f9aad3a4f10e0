"""The yamux stream lifecycle: ``StreamState``, ``StreamInput``, the ``TRANSITIONS`` table
(with its hot-path views) and ``_Stream``, one stream's state and windows. Used by
``neonet.core.yamux_connection``; never import ``neonet._native`` or
``neonet.core.backend`` here.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


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
