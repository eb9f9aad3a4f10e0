"""The transport phase of a libp2p Noise channel, pure Python: framing and ChaCha20-Poly1305.

Implements libp2p/specs noise/README.md "Wire Format" and "Encryption and I/O" over the
Noise Protocol Framework rev 34: the CipherState with its nonce limit (section 5.1;
nonce 2**64 - 1 is reserved) and the ChaChaPoly nonce layout (12.3). Every transport
message travels behind a 2-byte big-endian length and is an AEAD ciphertext of at most
65519 plaintext bytes plus the 16-byte tag. The handshake that yields the two keys is
``neonet.proto.noise``.

This is the pure twin of ``neonet._native.NoiseTransport`` (crates/neonet-core
``noise_transport.rs``); ``neonet.core.backend`` picks one. Both frame, limit and fail
the same way, with the same exception classes and texts.
"""

from __future__ import annotations

import struct
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from neonet.core.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_NONCE",
    "MAX_PLAINTEXT_SIZE",
    "TAG_SIZE",
    "CipherState",
    "NoiseTransport",
    "NoiseTransportEngine",
]

TAG_SIZE: Final = 16
MAX_MESSAGE_SIZE: Final = 65535
MAX_PLAINTEXT_SIZE: Final = MAX_MESSAGE_SIZE - TAG_SIZE
# Noise section 5.1: nonce 2**64 - 1 is reserved, so 2**64 - 2 is the last one a key uses.
MAX_NONCE: Final = 2**64 - 2
KEY_SIZE: Final = 32

_SEND_NONCE_EXHAUSTED: Final = (
    "Noise send nonce exhausted (2**64 - 1 messages): the connection must close"
)
_SEND_NONCE_WOULD_EXHAUST: Final = "Noise send nonce exhausted: the connection must close"
_RECEIVE_NONCE_EXHAUSTED: Final = (
    "Noise receive nonce exhausted (2**64 - 1 messages): the connection must close"
)
_CHANNEL_FAILED: Final = "the Noise channel already failed"
_HANDED_OVER: Final = "the Noise transport was handed over to another owner"

_pack_header = struct.Struct(">H").pack
# ChaChaPoly nonce (Noise 12.3): 32 zero bits, then the 64-bit counter little-endian.
_pack_nonce = struct.Struct("<4xQ").pack


class CipherState:
    """A Noise CipherState: one ChaCha20-Poly1305 key (set up once) and its nonce."""

    __slots__ = ("_aead", "nonce")

    def __init__(self, key: bytes, nonce: int = 0) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.nonce = nonce

    def encrypt_with_ad(
        self, associated_data: bytes | None, plaintext: bytes | bytearray | memoryview
    ) -> bytes:
        nonce = self.nonce
        if nonce > MAX_NONCE:
            raise LocalProtocolError(_SEND_NONCE_EXHAUSTED)
        ciphertext = self._aead.encrypt(_pack_nonce(nonce), plaintext, associated_data)
        self.nonce = nonce + 1
        return ciphertext

    def decrypt_with_ad(
        self, associated_data: bytes | None, ciphertext: bytes | bytearray | memoryview
    ) -> bytes:
        """Raise ``InvalidTag`` on authentication failure; the nonce then stays put."""
        nonce = self.nonce
        if nonce > MAX_NONCE:
            raise RemoteProtocolError(_RECEIVE_NONCE_EXHAUSTED)
        plaintext = self._aead.decrypt(_pack_nonce(nonce), ciphertext, associated_data)
        self.nonce = nonce + 1
        return plaintext


class _RetiredCipherState(CipherState):
    """What a transport keeps after ``take()``: any use is the caller's mistake."""

    __slots__ = ()

    def __init__(self) -> None:
        self.nonce = 0

    def encrypt_with_ad(
        self, associated_data: bytes | None, plaintext: bytes | bytearray | memoryview
    ) -> bytes:
        raise LocalProtocolError(_HANDED_OVER)


class NoiseTransportEngine(Protocol):
    """The interface both backends' ``NoiseTransport`` implement."""

    @property
    def messages_sent(self) -> int: ...
    @property
    def messages_received(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    def encrypt(self, plaintext: bytes | bytearray | memoryview) -> bytes: ...
    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes: ...
    def take(self) -> NoiseTransportEngine: ...


class NoiseTransport:
    """The established channel: ``encrypt`` outgoing bytes, ``receive_data`` incoming ones.

    Built from the handshake's (send key, receive key); ``received`` are bytes that came
    behind the last handshake message (decrypted by the first ``receive_data``, so call
    it with b"" right away). The nonces start at 0 unless given (for tests of the
    limits). Incoming bytes are decrypted straight out of the caller's buffer; only the
    tail of a frame that has not fully arrived is copied aside (at most 65537 bytes),
    and on the next call only the bytes that frame still lacks are copied onto it.
    """

    __slots__ = ("_carried", "_failed", "_handed_over", "_inbox", "_receiver", "_sender")

    def __init__(
        self,
        send_key: bytes,
        receive_key: bytes,
        *,
        received: bytes = b"",
        send_nonce: int = 0,
        receive_nonce: int = 0,
    ) -> None:
        if len(send_key) != KEY_SIZE or len(receive_key) != KEY_SIZE:
            raise ValueError("a Noise transport key must be 32 bytes")
        if not (0 <= send_nonce < 2**64 and 0 <= receive_nonce < 2**64):
            raise ValueError("Noise nonces must be in [0, 2**64 - 1]")
        self._sender = CipherState(send_key, send_nonce)
        self._receiver = CipherState(receive_key, receive_nonce)
        # Bytes that arrived with the last handshake message; may hold several frames.
        self._carried = bytes(received)
        # The start of one incomplete frame (length prefix included).
        self._inbox = bytearray()
        self._failed = False
        self._handed_over = False

    @property
    def messages_sent(self) -> int:
        return self._sender.nonce

    @property
    def messages_received(self) -> int:
        return self._receiver.nonce

    @property
    def buffered(self) -> int:
        """Received bytes not yet decrypted (an incomplete frame, or carried-over bytes)."""
        return len(self._inbox) + len(self._carried)

    def take(self) -> NoiseTransport:
        """Move the whole channel state to a new transport; this one then refuses all use.

        For an engine that takes the channel over (``NoiseYamuxConnection``): two owners
        of one key would reuse nonces.
        """
        if self._handed_over:
            raise LocalProtocolError(_HANDED_OVER)
        taken = NoiseTransport.__new__(NoiseTransport)
        taken._sender, taken._receiver = self._sender, self._receiver
        taken._carried, taken._inbox = self._carried, self._inbox
        taken._failed, taken._handed_over = self._failed, False
        self._sender = self._receiver = _RetiredCipherState()
        self._carried, self._inbox = b"", bytearray()
        self._failed = self._handed_over = True
        return taken

    def encrypt(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        """Length-prefixed transport messages carrying ``plaintext`` (b"" for empty input)."""
        view = memoryview(plaintext)
        size = view.nbytes
        if size <= MAX_PLAINTEXT_SIZE:
            if not size:
                return b""
            ciphertext = self._sender.encrypt_with_ad(None, plaintext)
            return b"".join((_pack_header(size + TAG_SIZE), ciphertext))
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        frames = -(-size // MAX_PLAINTEXT_SIZE)
        sender = self._sender
        if self._handed_over:
            raise LocalProtocolError(_HANDED_OVER)
        if sender.nonce + frames - 1 > MAX_NONCE:
            # Refuse the whole write rather than spend nonces on frames never returned.
            raise LocalProtocolError(_SEND_NONCE_WOULD_EXHAUST)
        full_header = _pack_header(MAX_MESSAGE_SIZE)
        seal = sender.encrypt_with_ad
        parts: list[bytes] = []
        append = parts.append
        for start in range(0, size - MAX_PLAINTEXT_SIZE, MAX_PLAINTEXT_SIZE):
            append(full_header)
            append(seal(None, view[start : start + MAX_PLAINTEXT_SIZE]))
        last = (frames - 1) * MAX_PLAINTEXT_SIZE
        append(_pack_header(size - last + TAG_SIZE))
        append(seal(None, view[last:]))
        return b"".join(parts)

    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """All plaintext decryptable now (b"" if none), after buffering ``data``.

        Raises ``RemoteProtocolError`` if a message fails authentication or is shorter
        than its tag; the channel is then dead (later calls: ``LocalProtocolError``).
        """
        if self._failed:
            raise LocalProtocolError(_HANDED_OVER if self._handed_over else _CHANNEL_FAILED)
        if self._carried:
            data = self._carried + bytes(data)
            self._carried = b""
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        end = view.nbytes
        position = 0
        plaintexts: list[bytes] = []
        inbox = self._inbox
        if inbox:
            # Complete the frame begun last time, copying only the bytes it still lacks.
            have = len(inbox)
            if have < 2:
                position = min(2 - have, end)
                inbox += view[:position]
                if len(inbox) < 2:
                    return b""
            frame_end = 2 + ((inbox[0] << 8) | inbox[1])
            take = min(frame_end - len(inbox), end - position)
            inbox += view[position : position + take]
            position += take
            if len(inbox) < frame_end:
                return b""
            with memoryview(inbox) as whole, whole[2:] as body:
                plaintexts.append(self._open(body))
            inbox.clear()
        while end - position >= 2:
            frame_end = position + 2 + ((view[position] << 8) | view[position + 1])
            if frame_end > end:
                break
            plaintexts.append(self._open(view[position + 2 : frame_end]))
            position = frame_end
        if position < end:
            inbox += view[position:]
        if len(plaintexts) == 1:
            return plaintexts[0]
        return b"".join(plaintexts)

    def _open(self, ciphertext: memoryview) -> bytes:
        if len(ciphertext) < TAG_SIZE:
            self._failed = True
            # A literal zero-length frame included: every transport message carries a tag
            # (an empty message is a 16-byte frame), and go/rust/js all refuse these too.
            raise RemoteProtocolError(
                f"Noise transport message of {len(ciphertext)} bytes is shorter than its tag"
            )
        try:
            return self._receiver.decrypt_with_ad(None, ciphertext)
        except InvalidTag as exc:
            self._failed = True
            raise RemoteProtocolError("a Noise transport message failed authentication") from exc
        except RemoteProtocolError:
            self._failed = True
            raise
