"""libp2p peer IDs (libp2p/specs peer-ids/peer-ids.md).

A peer ID is a multihash of the protobuf-encoded public key: the identity multihash
when that encoding is at most 42 bytes (every Ed25519 key), SHA-256 otherwise. It is
written as base58btc of the multihash ("12D3KooW...", "Qm...") or as a CIDv1 with the
``libp2p-key`` codec in multibase base32 ("bafz...").
"""

from __future__ import annotations

import base64
import hashlib

from neonet.core import backend
from neonet.core.errors import DecodeError
from neonet.core.keys import PublicKey
from neonet.core.peer_id_multihash import (
    IDENTITY_CODE,
    MAX_MULTIHASH_LENGTH,
    SHA256_CODE,
    check_multihash,
)
from neonet.core.varint import decode_uvarint, encode_uvarint

__all__ = [
    "CID_V1",
    "IDENTITY_CODE",
    "LIBP2P_KEY_CODEC",
    "MAX_INLINE_KEY_LENGTH",
    "MAX_MULTIHASH_LENGTH",
    "SHA256_CODE",
    "PeerId",
]

LIBP2P_KEY_CODEC = 0x72
CID_V1 = 0x01
MAX_INLINE_KEY_LENGTH = 42


class PeerId:
    """An immutable, hashable peer ID; compare and hash by the multihash bytes."""

    __slots__ = ("_multihash", "_text")

    def __init__(self, multihash: bytes) -> None:
        check_multihash(multihash)
        self._multihash = bytes(multihash)
        self._text: str | None = None

    @classmethod
    def from_public_key(cls, key: PublicKey) -> PeerId:
        encoded = key.to_protobuf()
        if len(encoded) <= MAX_INLINE_KEY_LENGTH:
            return cls(bytes((IDENTITY_CODE, len(encoded))) + encoded)
        return cls(bytes((SHA256_CODE, 32)) + hashlib.sha256(encoded).digest())

    @classmethod
    def from_string(cls, text: str) -> PeerId:
        """Parse the base58btc form or the CIDv1 (multibase 'b', base32) form."""
        if text.startswith(("Qm", "1")):
            return cls(backend.base58btc_decode(text))
        if text.startswith("b"):
            return cls._from_cid(text)
        return cls(backend.base58btc_decode(text))

    @classmethod
    def _from_cid(cls, text: str) -> PeerId:
        body = text[1:].upper()
        padding = "=" * (-len(body) % 8)
        try:
            raw = base64.b32decode(body + padding)
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"invalid base32 in CID peer ID: {exc}") from exc
        version, offset = decode_uvarint(raw)
        codec, offset = decode_uvarint(raw, offset)
        if version != CID_V1 or codec != LIBP2P_KEY_CODEC:
            raise DecodeError(
                f"CID is not a CIDv1 libp2p-key (version {version}, codec {codec:#x})"
            )
        return cls(raw[offset:])

    @property
    def multihash(self) -> bytes:
        return self._multihash

    def to_bytes(self) -> bytes:
        return self._multihash

    def to_base58(self) -> str:
        if self._text is None:
            self._text = backend.base58btc_encode(self._multihash)
        return self._text

    def to_cid(self) -> str:
        raw = encode_uvarint(CID_V1) + encode_uvarint(LIBP2P_KEY_CODEC) + self._multihash
        return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")

    def extract_public_key(self) -> PublicKey | None:
        """The inlined public key of an identity multihash, else None."""
        if self._multihash[0] != IDENTITY_CODE:
            return None
        return PublicKey.from_protobuf(self._multihash[2:])

    def matches_public_key(self, key: PublicKey) -> bool:
        return PeerId.from_public_key(key) == self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PeerId) and other._multihash == self._multihash

    def __hash__(self) -> int:
        return hash(self._multihash)

    def __str__(self) -> str:
        return self.to_base58()

    def __repr__(self) -> str:
        return f"PeerId({self.to_base58()!r})"
