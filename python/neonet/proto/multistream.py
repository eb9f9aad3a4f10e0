"""multistream-select 1.0 (multiformats/multistream-select; libp2p/specs connections/).

Every message is an unsigned-varint length, then UTF-8 text ending in "\\n" (counted in
the length). Both sides start with "/multistream/1.0.0"; the dialer proposes protocols
one at a time; the listener echoes a proposal to accept it or answers "na".

The dialer sends its header and first proposal in one write (pipelining). With a single
proposal it may also send application data right away, before the listener's answer
("lazy" negotiation, as go- and rust-libp2p do): the listener's ``leftover`` then holds
that data, and the dialer raises ``NegotiationError`` if the answer is "na".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from neonet.core.errors import (
    DecodeError,
    LocalProtocolError,
    NegotiationError,
    RemoteProtocolError,
)
from neonet.core.varint import encode_uvarint, try_decode_uvarint

PROTOCOL_ID = "/multistream/1.0.0"
NOT_AVAILABLE = "na"
LIST = "ls"
# A message (protocol ID plus newline) longer than this is refused before it is buffered.
MAX_MESSAGE_LENGTH = 1024
DEFAULT_MAX_ROUNDS = 32


def encode_message(text: str) -> bytes:
    """Frame one multistream message."""
    body = text.encode("utf-8") + b"\n"
    if len(body) > MAX_MESSAGE_LENGTH:
        raise LocalProtocolError(f"multistream message longer than {MAX_MESSAGE_LENGTH} bytes")
    return encode_uvarint(len(body)) + body


class _MessageReader:
    """Splits the byte stream into messages; keeps the bytes after the last one read."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    def next_message(self) -> str | None:
        decoded = try_decode_uvarint(self._buffer)
        if decoded is None:
            if len(self._buffer) > 2:
                raise DecodeError("multistream length prefix too long")
            return None
        length, offset = decoded
        if length > MAX_MESSAGE_LENGTH:
            raise DecodeError(f"multistream message of {length} bytes exceeds {MAX_MESSAGE_LENGTH}")
        if len(self._buffer) < offset + length:
            return None
        body = bytes(self._buffer[offset : offset + length])
        del self._buffer[: offset + length]
        if not body.endswith(b"\n"):
            raise DecodeError("multistream message does not end in a newline")
        try:
            return body[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("multistream message is not UTF-8") from exc

    def take_rest(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


class MultistreamDialer:
    """The initiator's side: proposes ``protocols`` in order until one is accepted."""

    def __init__(self, protocols: Sequence[str], *, max_rounds: int = DEFAULT_MAX_ROUNDS) -> None:
        if not protocols:
            raise LocalProtocolError("no protocols to propose")
        self._protocols = list(protocols)
        self._index = 0
        self._max_rounds = max_rounds
        self._reader = _MessageReader()
        self._outgoing = bytearray(encode_message(PROTOCOL_ID) + encode_message(self._protocols[0]))
        self._header_seen = False
        self.done = False
        self.selected: str | None = None
        self.leftover = b""

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self.done:
            raise LocalProtocolError("negotiation already finished")
        self._reader.feed(data)
        while not self.done:
            message = self._reader.next_message()
            if message is None:
                return
            self._handle(message)

    def _handle(self, message: str) -> None:
        if not self._header_seen:
            if message != PROTOCOL_ID:
                raise RemoteProtocolError(f"expected the multistream header, got {message!r}")
            self._header_seen = True
            return
        proposed = self._protocols[self._index]
        if message == proposed:
            self.done = True
            self.selected = proposed
            self.leftover = self._reader.take_rest()
            return
        if message != NOT_AVAILABLE:
            raise RemoteProtocolError(f"peer answered {message!r} to our proposal {proposed!r}")
        self._index += 1
        if self._index >= len(self._protocols) or self._index >= self._max_rounds:
            raise NegotiationError(f"none of {self._protocols} is supported by the peer")
        self._outgoing += encode_message(self._protocols[self._index])


class MultistreamListener:
    """The responder's side: accepts the first proposal that ``supported`` allows.

    The header is sent at once (before the dialer's arrives); both orders are valid.
    "ls" is answered with the supported list when ``supported`` is a collection.
    """

    def __init__(
        self,
        supported: Callable[[str], bool] | Collection[str],
        *,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
    ) -> None:
        if callable(supported):
            self._is_supported: Callable[[str], bool] = supported
            self._listing: Collection[str] | None = None
        else:
            self._is_supported = supported.__contains__
            self._listing = supported
        self._max_rounds = max_rounds
        self._rounds = 0
        self._reader = _MessageReader()
        self._outgoing = bytearray(encode_message(PROTOCOL_ID))
        self._header_seen = False
        self.done = False
        self.selected: str | None = None
        self.leftover = b""

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self.done:
            raise LocalProtocolError("negotiation already finished")
        self._reader.feed(data)
        while not self.done:
            message = self._reader.next_message()
            if message is None:
                return
            self._handle(message)

    def _handle(self, message: str) -> None:
        if not self._header_seen:
            if message != PROTOCOL_ID:
                raise RemoteProtocolError(f"expected the multistream header, got {message!r}")
            self._header_seen = True
            return
        self._rounds += 1
        if self._rounds > self._max_rounds:
            raise RemoteProtocolError(f"more than {self._max_rounds} proposals")
        if message == LIST and self._listing is not None:
            listing = b"".join(encode_message(protocol) for protocol in sorted(self._listing))
            self._outgoing += encode_uvarint(len(listing) + 1) + listing + b"\n"
            return
        if message and message not in (NOT_AVAILABLE, LIST) and self._is_supported(message):
            self._outgoing += encode_message(message)
            self.done = True
            self.selected = message
            self.leftover = self._reader.take_rest()
            return
        self._outgoing += encode_message(NOT_AVAILABLE)
