"""The libp2p Noise secure channel, sans-I/O (protocol id ``/noise``).

Implements libp2p/specs noise/README.md ("noise-libp2p", r5): "Static Key Authentication",
"libp2p Data in Handshake Messages" with "The libp2p Handshake Payload" and "Noise
Extensions" (``stream_muxers``, see connections/inlined-muxer-negotiation.md), the XX
"Handshake Pattern", "Cryptographic Primitives", "Noise Protocol Name", "Wire Format" and
"Encryption and I/O"; over the Noise Protocol Framework rev 34: message format and
size limit (section 3), HKDF (4.3), CipherState with its nonce limit, SymmetricState and
HandshakeState (5.1-5.3), the XX pattern (7.5), the protocol name (8), the handshake
hash for channel binding (11.2), and the 25519, ChaChaPoly and SHA256 functions (12)::

    Noise_XX_25519_ChaChaPoly_SHA256, empty prologue
    -> e                   payload: empty
    <- e, ee, s, es        payload: the responder's NoiseHandshakePayload
    -> s, se               payload: the initiator's NoiseHandshakePayload

Each payload carries the sender's libp2p identity key and its signature over
``b"noise-libp2p-static-key:" + Noise static public key``, binding a fresh per-handshake
X25519 key to the long-lived identity. Every Noise message travels behind a 2-byte
big-endian length, so none exceeds 65535 bytes; after the handshake every message is an
AEAD ciphertext of at most 65519 plaintext bytes plus the 16-byte tag.

``_XXHandshakeState`` is the bare Noise core (any prologue, raw payloads) so it can be
checked against the Noise test vectors; ``NoiseHandshake`` adds framing and the libp2p
payload. The post-handshake channel (framing and the two cipher states) is the data
path, which ``neonet.core.backend`` provides in Rust or pure Python: ``into_transport``
returns the selected backend's ``NoiseTransport``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from google.protobuf.message import DecodeError as ProtobufDecodeError

from neonet.core import backend as _backend
from neonet.core.errors import (
    DecodeError,
    HandshakeError,
    LocalProtocolError,
    PeerIdMismatchError,
)
from neonet.core.keys import Ed25519Identity, PublicKey
from neonet.core.noise_transport import (
    MAX_MESSAGE_SIZE,
    MAX_PLAINTEXT_SIZE,
    TAG_SIZE,
    NoiseTransportEngine,
)
from neonet.core.noise_transport import CipherState as _CipherState
from neonet.core.peer_id import PeerId
from neonet.proto.pb import noise_pb2

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_PLAINTEXT_SIZE",
    "PROTOCOL_ID",
    "PROTOCOL_NAME",
    "NoiseHandshake",
]

PROTOCOL_ID = "/noise"
PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
STATIC_KEY_SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
DH_SIZE = 32
HASH_SIZE = 32
# Our payload must fit the larger of messages 2 and 3: e (32) + encrypted s (48) + its tag.
MAX_PAYLOAD_SIZE = MAX_MESSAGE_SIZE - DH_SIZE - (DH_SIZE + TAG_SIZE) - TAG_SIZE

_pack_header = struct.Struct(">H").pack

# The protocol name is exactly HASHLEN bytes, so InitializeSymmetric uses it unhashed as h
# and ck (Noise 5.2); with libp2p's empty prologue the first MixHash is then a constant.
assert len(PROTOCOL_NAME) == HASH_SIZE
_LIBP2P_INITIAL_HASH = hashlib.sha256(PROTOCOL_NAME).digest()


def _hkdf(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """Noise HKDF with two outputs (section 4.3), HMAC-SHA256 throughout."""
    temp_key = hmac.digest(chaining_key, input_key_material, "sha256")
    output1 = hmac.digest(temp_key, b"\x01", "sha256")
    output2 = hmac.digest(temp_key, output1 + b"\x02", "sha256")
    return output1, output2


def _x25519_public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:
        # Noise 12.1 lets an implementation refuse a point that yields the all-zero
        # output (a low-order point); OpenSSL does, and no honest peer sends one.
        raise HandshakeError("the peer sent an invalid X25519 public key") from exc


class _SymmetricState:
    """Noise SymmetricState (section 5.2) for Noise_XX_25519_ChaChaPoly_SHA256."""

    __slots__ = ("cipher", "ck", "h")

    def __init__(self, prologue: bytes) -> None:
        self.ck = PROTOCOL_NAME
        self.h = (
            _LIBP2P_INITIAL_HASH
            if not prologue
            else hashlib.sha256(PROTOCOL_NAME + prologue).digest()
        )
        self.cipher: _CipherState | None = None

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, key = _hkdf(self.ck, input_key_material)
        self.cipher = _CipherState(key)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = (
            plaintext if self.cipher is None else self.cipher.encrypt_with_ad(self.h, plaintext)
        )
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if self.cipher is None:
            plaintext = ciphertext
        else:
            try:
                plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
            except InvalidTag as exc:
                raise HandshakeError("a Noise handshake message failed authentication") from exc
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        """The initiator-to-responder and responder-to-initiator transport keys."""
        return _hkdf(self.ck, b"")


class _XXHandshakeState:
    """The Noise XX HandshakeState (sections 5.3, 7.5): no framing, no libp2p payload.

    Message 0 is the initiator's ``e``, message 1 the responder's ``e, ee, s, es``,
    message 2 the initiator's ``s, se``. Keys are given as raw 32-byte X25519 secrets.
    """

    __slots__ = (
        "_e",
        "_s",
        "_symmetric",
        "ephemeral_public",
        "initiator",
        "message_index",
        "remote_ephemeral",
        "remote_static",
        "static_public",
    )

    def __init__(
        self,
        *,
        initiator: bool,
        static_secret: bytes,
        ephemeral_secret: bytes,
        prologue: bytes = b"",
    ) -> None:
        self.initiator = initiator
        self._s = X25519PrivateKey.from_private_bytes(static_secret)
        self._e = X25519PrivateKey.from_private_bytes(ephemeral_secret)
        self.static_public = _x25519_public(self._s)
        self.ephemeral_public = _x25519_public(self._e)
        self.remote_static = b""
        self.remote_ephemeral = b""
        self._symmetric = _SymmetricState(prologue)
        self.message_index = 0

    @property
    def finished(self) -> bool:
        return self.message_index == 3

    @property
    def handshake_hash(self) -> bytes:
        return self._symmetric.h

    def _check_turn(self, *, writing: bool) -> int:
        index = self.message_index
        # Even-numbered messages go initiator -> responder.
        ours = (index % 2 == 0) == self.initiator
        if index >= 3 or ours != writing:
            action = "write" if writing else "read"
            raise LocalProtocolError(f"cannot {action} Noise XX message {index} now")
        return index

    def write_message(self, payload: bytes) -> bytes:
        index = self._check_turn(writing=True)
        symmetric = self._symmetric
        if index == 0:  # -> e
            parts = [self.ephemeral_public]
            symmetric.mix_hash(self.ephemeral_public)
        elif index == 1:  # <- e, ee, s, es
            parts = [self.ephemeral_public]
            symmetric.mix_hash(self.ephemeral_public)
            symmetric.mix_key(_dh(self._e, self.remote_ephemeral))
            parts.append(symmetric.encrypt_and_hash(self.static_public))
            symmetric.mix_key(_dh(self._s, self.remote_ephemeral))
        else:  # -> s, se
            parts = [symmetric.encrypt_and_hash(self.static_public)]
            symmetric.mix_key(_dh(self._s, self.remote_ephemeral))
        parts.append(symmetric.encrypt_and_hash(payload))
        message = b"".join(parts)
        if len(message) > MAX_MESSAGE_SIZE:
            # Only known once the payload is encrypted, when the transcript has already
            # moved on: this handshake is spent. NoiseHandshake sizes payloads up front.
            raise LocalProtocolError(f"Noise message of {len(message)} bytes exceeds 65535")
        self.message_index = index + 1
        return message

    def read_message(self, message: bytes) -> bytes:
        """Process one received message and return its decrypted payload."""
        index = self._check_turn(writing=False)
        symmetric = self._symmetric
        encrypted_static_size = DH_SIZE + TAG_SIZE
        if index == 0:  # -> e
            if len(message) < DH_SIZE:
                raise HandshakeError(f"Noise message 1 of {len(message)} bytes is too short")
            self.remote_ephemeral = message[:DH_SIZE]
            symmetric.mix_hash(self.remote_ephemeral)
            rest = message[DH_SIZE:]
        elif index == 1:  # <- e, ee, s, es
            if len(message) < DH_SIZE + encrypted_static_size + TAG_SIZE:
                raise HandshakeError(f"Noise message 2 of {len(message)} bytes is too short")
            self.remote_ephemeral = message[:DH_SIZE]
            symmetric.mix_hash(self.remote_ephemeral)
            symmetric.mix_key(_dh(self._e, self.remote_ephemeral))
            static_end = DH_SIZE + encrypted_static_size
            self.remote_static = symmetric.decrypt_and_hash(message[DH_SIZE:static_end])
            symmetric.mix_key(_dh(self._e, self.remote_static))
            rest = message[static_end:]
        else:  # -> s, se
            if len(message) < encrypted_static_size + TAG_SIZE:
                raise HandshakeError(f"Noise message 3 of {len(message)} bytes is too short")
            self.remote_static = symmetric.decrypt_and_hash(message[:encrypted_static_size])
            symmetric.mix_key(_dh(self._e, self.remote_static))
            rest = message[encrypted_static_size:]
        payload = symmetric.decrypt_and_hash(rest)
        self.message_index = index + 1
        return payload

    def split(self) -> tuple[bytes, bytes]:
        """This side's (send key, receive key) once all three messages have passed."""
        if not self.finished:
            raise LocalProtocolError("the Noise XX handshake has not finished")
        initiator_to_responder, responder_to_initiator = self._symmetric.split()
        if self.initiator:
            return initiator_to_responder, responder_to_initiator
        return responder_to_initiator, initiator_to_responder


class NoiseHandshake:
    """One side of the libp2p Noise XX handshake (sans-I/O, like h11/wsproto).

    The initiator calls ``initiate()``; both sides then pass received bytes to
    ``receive_data`` and send whatever ``data_to_send()`` returns, until ``complete``.
    ``into_transport()`` then yields the ``NoiseTransport`` for the rest of the stream.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        identity: Ed25519Identity,
        entropy: Callable[[int], bytes],
        expected_peer: PeerId | None = None,
        stream_muxers: Sequence[str] = (),
    ) -> None:
        static_secret = entropy(DH_SIZE)
        ephemeral_secret = entropy(DH_SIZE)
        if len(static_secret) != DH_SIZE or len(ephemeral_secret) != DH_SIZE:
            raise LocalProtocolError(f"entropy({DH_SIZE}) must return {DH_SIZE} bytes")
        self.initiator = initiator
        self._noise = _XXHandshakeState(
            initiator=initiator, static_secret=static_secret, ephemeral_secret=ephemeral_secret
        )
        self._expected_peer = expected_peer
        # Built (and signed) once up front so an oversized muxer list fails here, as the
        # caller's mistake, rather than half-way through the handshake.
        self._payload = self._make_payload(identity, stream_muxers)
        if len(self._payload) > MAX_PAYLOAD_SIZE:
            raise LocalProtocolError(
                f"Noise handshake payload of {len(self._payload)} bytes exceeds "
                f"{MAX_PAYLOAD_SIZE}: too many stream muxers"
            )
        self._inbox = bytearray()
        self._outbox: list[bytes] = []
        self._initiated = False
        self._failed = False
        self._transport_taken = False
        self.remote_peer_id: PeerId | None = None
        self.remote_public_key: PublicKey | None = None
        self.remote_stream_muxers: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self._noise.finished

    @property
    def handshake_hash(self) -> bytes:
        """The final transcript hash ``h`` (Noise 11.2 channel binding); valid once complete."""
        if not self.complete:
            raise LocalProtocolError("the Noise handshake is not complete")
        return self._noise.handshake_hash

    def initiate(self) -> None:
        """Queue message 1, ``-> e`` (initiator only, once)."""
        if not self.initiator or self._initiated:
            raise LocalProtocolError("initiate() is for the initiator, and only once")
        self._initiated = True
        # The spec forbids extensions in message 1 (it has no secrecy): empty payload.
        self._queue(self._noise.write_message(b""))

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (b"" if none)."""
        if not self._outbox:
            return b""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` and process every whole handshake message in it.

        Raises ``HandshakeError`` (or ``PeerIdMismatchError``) when the peer fails; the
        handshake is then dead. Bytes past message 3 are kept for ``into_transport``.
        """
        if self._failed:
            raise LocalProtocolError("the Noise handshake already failed")
        if self._transport_taken:
            raise LocalProtocolError("the handshake was handed over to a NoiseTransport")
        if self.initiator and not self._initiated:
            raise LocalProtocolError("the initiator must call initiate() first")
        inbox = self._inbox
        inbox += data
        try:
            while not self._noise.finished and len(inbox) >= 2:
                end = 2 + ((inbox[0] << 8) | inbox[1])
                if len(inbox) < end:
                    return
                message = bytes(inbox[2:end])
                del inbox[:end]
                self._receive_message(message)
        except HandshakeError:
            self._failed = True
            raise

    def _receive_message(self, message: bytes) -> None:
        noise = self._noise
        if noise.message_index == 0 and not self.initiator:
            # Any payload in message 1 is unauthenticated and (per the libp2p spec) never
            # carries extensions; it is only bound into the transcript hash.
            noise.read_message(message)
            self._queue(noise.write_message(self._payload))
        elif noise.message_index == 1 and self.initiator:
            verified = self._verify_payload(noise.read_message(message))
            self._queue(noise.write_message(self._payload))
            self._accept(*verified)
        elif noise.message_index == 2 and not self.initiator:
            self._accept(*self._verify_payload(noise.read_message(message)))
        else:  # unreachable while the turn order holds; kept as a guard
            raise HandshakeError(f"unexpected Noise handshake message {noise.message_index + 1}")

    def _queue(self, message: bytes) -> None:
        self._outbox.append(_pack_header(len(message)))
        self._outbox.append(message)

    def _make_payload(self, identity: Ed25519Identity, stream_muxers: Sequence[str]) -> bytes:
        payload = noise_pb2.NoiseHandshakePayload(
            identity_key=identity.public_key.to_protobuf(),
            identity_sig=identity.sign(STATIC_KEY_SIGNATURE_PREFIX + self._noise.static_public),
        )
        if stream_muxers:
            payload.extensions.stream_muxers.extend(stream_muxers)
        return payload.SerializeToString()

    def _verify_payload(self, data: bytes) -> tuple[PublicKey, PeerId, tuple[str, ...]]:
        """Check the peer's payload against the static key it just proved; nothing is kept."""
        payload = noise_pb2.NoiseHandshakePayload()
        try:
            payload.ParseFromString(data)
        except ProtobufDecodeError as exc:
            raise HandshakeError(f"malformed Noise handshake payload: {exc}") from exc
        if not payload.identity_key or not payload.identity_sig:
            raise HandshakeError("the Noise handshake payload lacks identity_key or identity_sig")
        try:
            key = PublicKey.from_protobuf(payload.identity_key)
            peer = PeerId.from_public_key(key)
        except DecodeError as exc:
            raise HandshakeError(f"the peer's identity key does not decode: {exc}") from exc
        # PublicKey.verify covers every libp2p key type (Ed25519, Secp256k1, ECDSA, RSA).
        signed = STATIC_KEY_SIGNATURE_PREFIX + self._noise.remote_static
        if not key.verify(payload.identity_sig, signed):
            raise HandshakeError("the peer's identity_sig does not sign its Noise static key")
        if self._expected_peer is not None and peer != self._expected_peer:
            raise PeerIdMismatchError(
                f"expected peer {self._expected_peer} but the remote proved to be {peer}"
            )
        # proto2 strings are not UTF-8 checked on the wire; upb hands invalid ones back as
        # bytes. Such a name can never match a muxer we speak, so it is dropped.
        muxers = tuple(name for name in payload.extensions.stream_muxers if isinstance(name, str))
        return key, peer, muxers

    def _accept(self, key: PublicKey, peer: PeerId, muxers: tuple[str, ...]) -> None:
        # Early data is exposed only once the signature has checked out (spec requirement).
        self.remote_public_key = key
        self.remote_peer_id = peer
        self.remote_stream_muxers = muxers

    def into_transport(
        self, implementation: _backend.Implementation | None = None
    ) -> NoiseTransportEngine:
        """The transport channel, with any bytes received past message 3 (once).

        Built by the selected backend's ``NoiseTransport`` unless ``implementation``
        names another (the tests run both).
        """
        if not self.complete:
            raise LocalProtocolError("the Noise handshake is not complete")
        if self._transport_taken:
            # A second transport would reuse the same keys and nonces.
            raise LocalProtocolError("into_transport() was already called")
        self._transport_taken = True
        send_key, receive_key = self._noise.split()
        received = bytes(self._inbox)
        self._inbox.clear()
        chosen = implementation if implementation is not None else _backend.ACTIVE
        return chosen.NoiseTransport(send_key, receive_key, received=received)
