"""NeoNet: a libp2p-compatible, offline-first P2P stack for Python (trio) with a Rust core."""

from __future__ import annotations

from typing import TYPE_CHECKING

from neonet._version import __version__
from neonet.core.keys import Ed25519Identity
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId

if TYPE_CHECKING:
    from neonet.node import Node, Stream, open_node


def __getattr__(name: str) -> object:
    # The node pulls in trio and the whole network stack; importing neonet.core alone
    # (values, codecs) should not, so it is loaded on first use.
    if name in ("Node", "Stream", "open_node"):
        from neonet import node

        return getattr(node, name)
    raise AttributeError(f"module 'neonet' has no attribute {name!r}")


__all__ = ["Ed25519Identity", "Multiaddr", "Node", "PeerId", "Stream", "__version__", "open_node"]
