"""libp2p keys: our Ed25519 identity, and verification of any peer's public key.

Encodings follow libp2p/specs peer-ids/peer-ids.md: a key travels as the protobuf
``PublicKey {Type, Data}``; Ed25519 ``Data`` is the raw 32-byte key; a stored private
key is ``PrivateKey {Ed25519, private(32) || public(32)}``. NeoNet identities are
Ed25519 only; remote RSA, Secp256k1 and ECDSA keys are verified so that peers of other
implementations with those identities can still be authenticated.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from google.protobuf.message import DecodeError as ProtobufDecodeError
from nacl.bindings import crypto_sign

from neonet.core.errors import DecodeError
from neonet.core.pb import crypto_pb2

# A serialized public key larger than this is not accepted from the network (an RSA
# 8192-bit key in DER is about 1.1 KB; this leaves room without inviting abuse).
MAX_PUBLIC_KEY_BYTES = 2048
# RSA keys weaker than this are refused (the libp2p spec says 2048 bits minimum).
MIN_RSA_BITS = 2048


class KeyType(IntEnum):
    RSA = 0
    ED25519 = 1
    SECP256K1 = 2
    ECDSA = 3


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A peer's public key: its type and the raw ``Data`` bytes of the libp2p encoding."""

    key_type: KeyType
    data: bytes

    def to_protobuf(self) -> bytes:
        """The canonical libp2p protobuf encoding (fields in order, minimal varints)."""
        # Hand-assembled because peer IDs hash these exact bytes: field 1 varint, field 2 bytes.
        length = len(self.data)
        out = bytearray((0x08, int(self.key_type), 0x12))
        while length >= 0x80:
            out.append((length & 0x7F) | 0x80)
            length >>= 7
        out.append(length)
        out += self.data
        return bytes(out)

    @classmethod
    def from_protobuf(cls, encoded: bytes) -> PublicKey:
        """Decode a protobuf ``PublicKey``; raise ``DecodeError`` on anything malformed."""
        if len(encoded) > MAX_PUBLIC_KEY_BYTES:
            raise DecodeError(f"public key of {len(encoded)} bytes exceeds {MAX_PUBLIC_KEY_BYTES}")
        message = crypto_pb2.PublicKey()
        try:
            message.ParseFromString(encoded)
        except ProtobufDecodeError as exc:
            raise DecodeError(f"malformed PublicKey protobuf: {exc}") from exc
        try:
            key_type = KeyType(message.Type)
        except ValueError as exc:
            raise DecodeError(f"unknown key type {message.Type}") from exc
        key = cls(key_type, bytes(message.Data))
        key._check_shape()
        if key.to_protobuf() != encoded:
            raise DecodeError("non-canonical PublicKey encoding")
        return key

    def _check_shape(self) -> None:
        if self.key_type == KeyType.ED25519 and len(self.data) != 32:
            raise DecodeError(f"Ed25519 public key must be 32 bytes, got {len(self.data)}")
        if self.key_type == KeyType.SECP256K1 and len(self.data) != 33:
            raise DecodeError("Secp256k1 public key must be 33 bytes (compressed)")

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Check a libp2p signature by this key over ``message``; never raises on bad input."""
        try:
            if self.key_type == KeyType.ED25519:
                ed25519.Ed25519PublicKey.from_public_bytes(self.data).verify(signature, message)
            elif self.key_type == KeyType.SECP256K1:
                point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), self.data)
                point.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            elif self.key_type == KeyType.ECDSA:
                loaded = serialization.load_der_public_key(self.data)
                if not isinstance(loaded, ec.EllipticCurvePublicKey):
                    return False
                loaded.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            else:
                loaded_rsa = serialization.load_der_public_key(self.data)
                if (
                    not isinstance(loaded_rsa, rsa.RSAPublicKey)
                    or loaded_rsa.key_size < MIN_RSA_BITS
                ):
                    return False
                loaded_rsa.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError, UnsupportedAlgorithm, TypeError):
            return False
        return True


class Ed25519Identity:
    """Our own Ed25519 key pair: signs with the private key, exposes the ``PublicKey``."""

    __slots__ = ("_private", "_secret", "public_key")

    def __init__(self, private: ed25519.Ed25519PrivateKey) -> None:
        self._private = private
        raw_public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = PublicKey(KeyType.ED25519, raw_public)
        # libsodium's form of the same key (seed || public) for ``sign``: Ed25519
        # signatures are deterministic (RFC 8032), so both libraries give the same bytes,
        # and libsodium signs a short message in ~16 us against OpenSSL's ~28 us here.
        self._secret = self.seed() + raw_public

    @classmethod
    def generate(cls) -> Ed25519Identity:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Identity:
        """Derive the key from a 32-byte seed (the raw Ed25519 private key)."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        return crypto_sign(bytes(message), self._secret)[:64]

    def to_private_protobuf(self) -> bytes:
        """The libp2p ``PrivateKey`` encoding: Ed25519 ``Data`` is private || public."""
        message = crypto_pb2.PrivateKey(
            Type=crypto_pb2.Ed25519, Data=self.seed() + self.public_key.data
        )
        return message.SerializeToString()

    @classmethod
    def from_private_protobuf(cls, encoded: bytes) -> Ed25519Identity:
        message = crypto_pb2.PrivateKey()
        try:
            message.ParseFromString(encoded)
        except ProtobufDecodeError as exc:
            raise DecodeError(f"malformed PrivateKey protobuf: {exc}") from exc
        if message.Type != crypto_pb2.Ed25519:
            raise DecodeError("only Ed25519 private keys are supported for NeoNet identities")
        data = bytes(message.Data)
        if len(data) == 96 and data[32:64] == data[64:96]:
            data = data[:64]  # older encodings repeat the public key
        if len(data) != 64:
            raise DecodeError("Ed25519 private key data must be 64 bytes")
        identity = cls.from_seed(data[:32])
        if identity.public_key.data != data[32:]:
            raise DecodeError("Ed25519 private key does not match its public half")
        return identity
