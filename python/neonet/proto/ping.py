"""/ipfs/ping/1.0.0 (libp2p/specs ping/ping.md): the dialer sends 32 random bytes, the
listener echoes them; repeat on the same stream. Constants only: the logic is an echo."""

from __future__ import annotations

PROTOCOL_ID = "/ipfs/ping/1.0.0"
PAYLOAD_SIZE = 32
