"""The yamux wire format and its fixed limits: the protocol ID, the 12-byte frame header
(``HEADER``, a ``struct.Struct`` that packs and unpacks version, type, flags, stream id and
length), the frame types, flags and GoAway codes, the spec's initial window and the reply
cap. Re-exported from ``neonet.core.yamux`` (see its docstring); imports nothing of
NeoNet, so neither ``neonet._native`` nor ``neonet.core.backend``.
"""

from __future__ import annotations

import struct
from typing import Final

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

# Frames the peer makes us send (ACKs, pongs, RSTs) that may pile up between two
# data_to_send() calls. A peer that does not read while flooding us with pings or
# SYNs would otherwise grow our output without bound; a well-behaved one never has more
# than its ACK backlog (256) plus a few pings outstanding.
MAX_QUEUED_REPLIES: Final = 16384
