"""Signed envelopes (libp2p/specs RFC/0002-signed-envelopes.md).

An envelope carries a payload, its type (a multicodec in raw bytes) and the signer's
public key, signed over ``uvarint(len(domain)) || domain || uvarint(len(type)) || type
|| uvarint(len(payload)) || payload``. The domain is never sent: both sides must agree
on it, so an envelope signed for one purpose cannot be replayed for another. Circuit
relay v2 reservation vouchers use it (domain ``libp2p-relay-rsvp``, type 0x0302).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError as ProtobufDecodeError

from neonet.core.errors import DecodeError
from neonet.core.keys import Ed25519Identity, PublicKey
from neonet.core.pb import envelope_pb2
from neonet.core.peer_id import PeerId
from neonet.core.varint import encode_uvarint

MAX_ENVELOPE_SIZE = 8 * 1024


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """A verified envelope: who signed it and what it says."""

    signer: PeerId
    public_key: PublicKey
    payload_type: bytes
    payload: bytes


def _signed_bytes(domain: str, payload_type: bytes, payload: bytes) -> bytes:
    domain_bytes = domain.encode("utf-8")
    return b"".join(
        (
            encode_uvarint(len(domain_bytes)),
            domain_bytes,
            encode_uvarint(len(payload_type)),
            payload_type,
            encode_uvarint(len(payload)),
            payload,
        )
    )


def seal(identity: Ed25519Identity, domain: str, payload_type: bytes, payload: bytes) -> bytes:
    """Sign ``payload`` for ``domain`` and return the encoded envelope."""
    message = envelope_pb2.Envelope(
        public_key=identity.public_key.to_protobuf(),
        payload_type=payload_type,
        payload=payload,
        signature=identity.sign(_signed_bytes(domain, payload_type, payload)),
    )
    return message.SerializeToString(deterministic=True)


def open_envelope(data: bytes, domain: str, payload_type: bytes) -> OpenedEnvelope:
    """Decode and verify an envelope; raise ``DecodeError`` unless it is valid for ``domain``."""
    if len(data) > MAX_ENVELOPE_SIZE:
        raise DecodeError(f"signed envelope larger than {MAX_ENVELOPE_SIZE} bytes")
    message = envelope_pb2.Envelope()
    try:
        message.ParseFromString(data)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"malformed signed envelope: {exc}") from exc
    if bytes(message.payload_type) != payload_type:
        raise DecodeError(
            f"signed envelope has payload type {bytes(message.payload_type).hex()}, "
            f"expected {payload_type.hex()}"
        )
    key = PublicKey.from_protobuf(bytes(message.public_key))
    signed = _signed_bytes(domain, bytes(message.payload_type), bytes(message.payload))
    if not key.verify(bytes(message.signature), signed):
        raise DecodeError("signed envelope has an invalid signature")
    return OpenedEnvelope(
        signer=PeerId.from_public_key(key),
        public_key=key,
        payload_type=bytes(message.payload_type),
        payload=bytes(message.payload),
    )
