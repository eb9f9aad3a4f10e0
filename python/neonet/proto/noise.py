"""Noise XX for libp2p (libp2p/specs noise/README.md over the Noise Protocol Framework rev 34).

Handshake ``Noise_XX_25519_ChaChaPoly_SHA256`` with an empty prologue::

    -> e
    <- e, ee, s, es        payload: responder's NoiseHandshakePayload
    -> s, se               payload: initiator's NoiseHandshakePayload

The payload carries the peer's libp2p identity key and its signature over
``"noise-libp2p-static-key:" + the Noise static key``, which binds the fresh X25519 key to
the long-lived identity. Every Noise message travels with a 2-byte big-endian length
prefix and is at most 65535 bytes; after the handshake, each transport message is an
AEAD ciphertext (plaintext up to 65519 bytes plus a 16-byte tag).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf.message import DecodeError as ProtobufDecodeError

from neonet.core.errors import (
    DecodeError,
    HandshakeError,
    LocalProtocolError,
    PeerIdMismatchError,
    RemoteProtocolError,
)
from neonet.core.keys import Ed25519Identity, PublicKey
from neonet.core.peer_id import PeerId
from neonet.proto.pb import noise_pb2

PROTOCOL_ID = "/noise"
PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
MAX_MESSAGE = 65535
TAG_SIZE = 16
MAX_PLAINTEXT = MAX_MESSAGE - TAG_SIZE
DH_SIZE = 32
# Nonce 2**64 - 1 is reserved by the Noise spec; a cipher state stops before it.
MAX_NONCE = 2**64 - 2

_LENGTH = struct.Struct(">H")
_NONCE = struct.Struct("<4xQ")


def _hkdf(chaining_key: bytes, material: bytes) -> tuple[bytes, bytes]:
    temp_key = hmac.digest(chaining_key, material, "sha256")
    first = hmac.digest(temp_key, b"\x01", "sha256")
    second = hmac.digest(temp_key, first + b"\x02", "sha256")
    return first, second


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class _CipherState:
    """A ChaCha20-Poly1305 key with its 64-bit nonce counter."""

    __slots__ = ("_aead", "nonce")

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.nonce = 0

    def encrypt(self, associated: bytes | None, plaintext: bytes | memoryview) -> bytes:
        if self.nonce > MAX_NONCE:
            raise LocalProtocolError("Noise nonce exhausted: the connection must be re-established")
        ciphertext = self._aead.encrypt(_NONCE.pack(self.nonce), plaintext, associated)
        self.nonce += 1
        return ciphertext

    def decrypt(self, associated: bytes | None, ciphertext: bytes | memoryview) -> bytes:
        if self.nonce > MAX_NONCE:
            raise RemoteProtocolError("Noise nonce exhausted")
        plaintext = self._aead.decrypt(_NONCE.pack(self.nonce), ciphertext, associated)
        self.nonce += 1
        return plaintext


class _SymmetricState:
    __slots__ = ("chaining_key", "cipher", "hash")

    def __init__(self) -> None:
        # The protocol name is exactly 32 bytes (HASHLEN), so it is used unpadded.
        self.hash = PROTOCOL_NAME
        self.chaining_key = PROTOCOL_NAME
        self.cipher: _CipherState | None = None
        self.mix_hash(b"")  # the empty prologue

    def mix_hash(self, data: bytes) -> None:
        self.hash = hashlib.sha256(self.hash + data).digest()

    def mix_key(self, material: bytes) -> None:
        self.chaining_key, key = _hkdf(self.chaining_key, material)
        self.cipher = _CipherState(key)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = plaintext if self.cipher is None else self.cipher.encrypt(self.hash, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if self.cipher is None:
            plaintext = ciphertext
        else:
            try:
                plaintext = self.cipher.decrypt(self.hash, ciphertext)
            except InvalidTag as exc:
                raise HandshakeError("Noise handshake message failed authentication") from exc
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[_CipherState, _CipherState]:
        first, second = _hkdf(self.chaining_key, b"")
        return _CipherState(first), _CipherState(second)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # a low-order point gives an all-zero secret
        raise HandshakeError("peer sent an invalid X25519 public key") from exc


class NoiseHandshake:
    """One side of the libp2p Noise XX handshake (sans-I/O)."""

    def __init__(
        self,
        *,
        initiator: bool,
        identity: Ed25519Identity,
        entropy: Callable[[int], bytes],
        expected_peer: PeerId | None = None,
        stream_muxers: Sequence[str] = (),
    ) -> None:
        self.initiator = initiator
        self._identity = identity
        self._expected_peer = expected_peer
        self._stream_muxers = tuple(stream_muxers)
        self._static = X25519PrivateKey.from_private_bytes(entropy(32))
        self._ephemeral = X25519PrivateKey.from_private_bytes(entropy(32))
        self._remote_ephemeral = b""
        self._remote_static = b""
        self._symmetric = _SymmetricState()
        self._inbox = bytearray()
        self._outbox = bytearray()
        # The next message index (0, 1, 2) of the three; 3 means complete.
        self._step = 0
        self._failed = False
        self._initiated = False
        self.remote_peer_id: PeerId | None = None
        self.remote_public_key: PublicKey | None = None
        self.remote_stream_muxers: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self._step == 3

    def initiate(self) -> None:
        """Queue message 1 (initiator only)."""
        if not self.initiator or self._initiated:
            raise LocalProtocolError("initiate() is called once, by the initiator")
        self._initiated = True
        ephemeral = _public_bytes(self._ephemeral)
        self._symmetric.mix_hash(ephemeral)
        message = ephemeral + self._symmetric.encrypt_and_hash(b"")
        self._send(message)
        self._step = 1

    def data_to_send(self) -> bytes:
        data = bytes(self._outbox)
        self._outbox.clear()
        return data

    def _send(self, message: bytes) -> None:
        if len(message) > MAX_MESSAGE:
            raise LocalProtocolError("Noise handshake message too large")
        self._outbox += _LENGTH.pack(len(message)) + message

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._failed:
            raise LocalProtocolError("the handshake already failed")
        if self.initiator and not self._initiated:
            raise LocalProtocolError("the initiator must call initiate() first")
        self._inbox += data
        try:
            while not self.complete and len(self._inbox) >= 2:
                (length,) = _LENGTH.unpack_from(self._inbox)
                if len(self._inbox) < 2 + length:
                    return
                message = bytes(self._inbox[2 : 2 + length])
                del self._inbox[: 2 + length]
                self._receive_message(message)
        except (HandshakeError, DecodeError) as exc:
            self._failed = True
            if isinstance(exc, HandshakeError):
                raise
            raise HandshakeError(f"bad Noise handshake payload: {exc}") from exc

    def _receive_message(self, message: bytes) -> None:
        symmetric = self._symmetric
        if not self.initiator and self._step == 0:
            # <- e (message 1): the ephemeral key, then a payload that must be empty.
            if len(message) < DH_SIZE:
                raise HandshakeError("Noise message 1 too short")
            self._remote_ephemeral = message[:DH_SIZE]
            symmetric.mix_hash(self._remote_ephemeral)
            symmetric.decrypt_and_hash(message[DH_SIZE:])
            self._write_message_2()
            return
        if self.initiator and self._step == 1:
            self._read_message_2(message)
            self._write_message_3()
            return
        if not self.initiator and self._step == 2:
            self._read_message_3(message)
            return
        raise HandshakeError("unexpected Noise handshake message")

    def _write_message_2(self) -> None:
        symmetric = self._symmetric
        ephemeral = _public_bytes(self._ephemeral)
        symmetric.mix_hash(ephemeral)
        symmetric.mix_key(_dh(self._ephemeral, self._remote_ephemeral))  # ee
        encrypted_static = symmetric.encrypt_and_hash(_public_bytes(self._static))
        symmetric.mix_key(_dh(self._static, self._remote_ephemeral))  # es
        payload = symmetric.encrypt_and_hash(self._payload())
        self._send(ephemeral + encrypted_static + payload)
        self._step = 2

    def _read_message_2(self, message: bytes) -> None:
        symmetric = self._symmetric
        static_length = DH_SIZE + TAG_SIZE
        if len(message) < DH_SIZE + static_length + TAG_SIZE:
            raise HandshakeError("Noise message 2 too short")
        self._remote_ephemeral = message[:DH_SIZE]
        symmetric.mix_hash(self._remote_ephemeral)
        symmetric.mix_key(_dh(self._ephemeral, self._remote_ephemeral))  # ee
        self._remote_static = symmetric.decrypt_and_hash(message[DH_SIZE : DH_SIZE + static_length])
        symmetric.mix_key(_dh(self._ephemeral, self._remote_static))  # es
        self._check_payload(symmetric.decrypt_and_hash(message[DH_SIZE + static_length :]))

    def _write_message_3(self) -> None:
        symmetric = self._symmetric
        encrypted_static = symmetric.encrypt_and_hash(_public_bytes(self._static))
        symmetric.mix_key(_dh(self._static, self._remote_ephemeral))  # se
        payload = symmetric.encrypt_and_hash(self._payload())
        self._send(encrypted_static + payload)
        self._step = 3

    def _read_message_3(self, message: bytes) -> None:
        symmetric = self._symmetric
        static_length = DH_SIZE + TAG_SIZE
        if len(message) < static_length + TAG_SIZE:
            raise HandshakeError("Noise message 3 too short")
        self._remote_static = symmetric.decrypt_and_hash(message[:static_length])
        symmetric.mix_key(_dh(self._ephemeral, self._remote_static))  # se
        self._check_payload(symmetric.decrypt_and_hash(message[static_length:]))
        self._step = 3

    def _payload(self) -> bytes:
        payload = noise_pb2.NoiseHandshakePayload(
            identity_key=self._identity.public_key.to_protobuf(),
            identity_sig=self._identity.sign(SIGNATURE_PREFIX + _public_bytes(self._static)),
        )
        if self._stream_muxers:
            payload.extensions.stream_muxers.extend(self._stream_muxers)
        return payload.SerializeToString()

    def _check_payload(self, data: bytes) -> None:
        payload = noise_pb2.NoiseHandshakePayload()
        try:
            payload.ParseFromString(data)
        except ProtobufDecodeError as exc:
            raise HandshakeError(f"malformed Noise handshake payload: {exc}") from exc
        if not payload.HasField("identity_key") or not payload.HasField("identity_sig"):
            raise HandshakeError("Noise handshake payload lacks the identity key or signature")
        key = PublicKey.from_protobuf(payload.identity_key)
        if not key.verify(payload.identity_sig, SIGNATURE_PREFIX + self._remote_static):
            raise HandshakeError("the peer's identity signature over its Noise key is invalid")
        peer = PeerId.from_public_key(key)
        if self._expected_peer is not None and peer != self._expected_peer:
            raise PeerIdMismatchError(
                f"dialed {self._expected_peer} but the peer proved to be {peer}"
            )
        self.remote_public_key = key
        self.remote_peer_id = peer
        if payload.HasField("extensions"):
            self.remote_stream_muxers = tuple(payload.extensions.stream_muxers)[:16]

    def into_transport(self) -> NoiseTransport:
        """The transport ciphers, carrying over any bytes received past the handshake."""
        if not self.complete:
            raise LocalProtocolError("the Noise handshake is not complete")
        initiator_to_responder, responder_to_initiator = self._symmetric.split()
        if self.initiator:
            transport = NoiseTransport(initiator_to_responder, responder_to_initiator)
        else:
            transport = NoiseTransport(responder_to_initiator, initiator_to_responder)
        transport._inbox += self._inbox
        self._inbox.clear()
        return transport


class NoiseTransport:
    """Encrypts outgoing and decrypts incoming transport messages after the handshake."""

    __slots__ = ("_inbox", "_offset", "_receiver", "_sender")

    def __init__(self, sender: _CipherState, receiver: _CipherState) -> None:
        self._sender = sender
        self._receiver = receiver
        self._inbox = bytearray()
        self._offset = 0

    def encrypt(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        """Length-prefixed transport messages for ``plaintext`` (b"" for empty input)."""
        size = len(plaintext)
        if size <= MAX_PLAINTEXT:
            if not size:
                return b""
            ciphertext = self._sender.encrypt(None, plaintext)
            return _LENGTH.pack(len(ciphertext)) + ciphertext
        view = memoryview(plaintext).cast("B")
        parts = []
        for start in range(0, size, MAX_PLAINTEXT):
            ciphertext = self._sender.encrypt(None, view[start : start + MAX_PLAINTEXT])
            parts.append(_LENGTH.pack(len(ciphertext)))
            parts.append(ciphertext)
        return b"".join(parts)

    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """All plaintext decryptable now; ``RemoteProtocolError`` if a message fails."""
        inbox = self._inbox
        if data:
            inbox += data
        offset = self._offset
        end = len(inbox)
        plaintexts = []
        view = memoryview(inbox)
        try:
            while end - offset >= 2:
                (length,) = _LENGTH.unpack_from(inbox, offset)
                if end - offset - 2 < length:
                    break
                if length < TAG_SIZE:
                    raise RemoteProtocolError("Noise transport message shorter than its tag")
                try:
                    plaintexts.append(
                        self._receiver.decrypt(None, view[offset + 2 : offset + 2 + length])
                    )
                except InvalidTag as exc:
                    raise RemoteProtocolError(
                        "Noise transport message failed authentication"
                    ) from exc
                offset += 2 + length
        finally:
            view.release()
        if offset == end:
            inbox.clear()
            offset = 0
        elif offset > 1 << 20:
            del inbox[:offset]
            offset = 0
        self._offset = offset
        if len(plaintexts) == 1:
            return plaintexts[0]
        return b"".join(plaintexts)
