"""Which multihashes are peer IDs (libp2p/specs peer-ids/peer-ids.md, "Peer Ids").

A leaf module (it imports only ``errors`` and ``varint``) so that both
``neonet.core.peer_id`` and the backend's pure codecs (``neonet.core.ssn_wire``, which
``neonet.core.backend`` loads before ``peer_id`` can be imported) use one check.
"""

from __future__ import annotations

from neonet.core.errors import DecodeError
from neonet.core.varint import decode_uvarint

__all__ = ["IDENTITY_CODE", "MAX_MULTIHASH_LENGTH", "SHA256_CODE", "check_multihash"]

IDENTITY_CODE = 0x00
SHA256_CODE = 0x12
# Identity multihashes inline the key; anything longer than a generous RSA key is refused.
MAX_MULTIHASH_LENGTH = 2048 + 8


def check_multihash(multihash: bytes) -> None:
    """``DecodeError`` unless ``multihash`` is an identity or SHA-256 multihash whose
    length matches its digest (what ``PeerId`` accepts)."""
    if len(multihash) > MAX_MULTIHASH_LENGTH:
        raise DecodeError("peer ID multihash too long")
    code, offset = decode_uvarint(multihash)
    length, offset = decode_uvarint(multihash, offset)
    if code not in (IDENTITY_CODE, SHA256_CODE):
        raise DecodeError(f"unsupported multihash code {code:#x} in peer ID")
    if len(multihash) - offset != length:
        raise DecodeError("multihash length does not match its digest")
    if code == SHA256_CODE and length != 32:
        raise DecodeError("SHA-256 multihash digest must be 32 bytes")
    if code == IDENTITY_CODE and length > MAX_MULTIHASH_LENGTH:
        raise DecodeError("identity multihash too long")
