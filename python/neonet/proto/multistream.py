"""multistream-select 1.0 (multiformats/multistream-select; libp2p/specs connections/README.md).

Every message is an unsigned-varint length, then UTF-8 text, then "\\n" (the newline is
counted in the length). Both sides first send the header "/multistream/1.0.0"; the
dialer then proposes protocol IDs one at a time and the listener echoes a proposal to
accept it or answers "na". A dialer may also send "ls" to ask for the listener's list.

Both engines are sans-I/O: feed received bytes to ``receive_data``, write whatever
``data_to_send`` returns. Once ``done`` is true, ``selected`` is the agreed protocol and
``leftover`` holds the bytes that arrived behind the final negotiation message: they
are the first bytes of the selected protocol and belong to the application.

Pipelining: the dialer queues its header and first proposal together at construction,
so they go out in one write without waiting for the listener's header.

The common opening, header and one proposal in one read (every pipelining dialer sends
that), has a fast path on both sides: ``match_pipelined_proposal`` recognises it
without the general message loop, and the dialer recognises an answer that echoes its
opening byte for byte. Anything else goes through the general loop, so the results
(selected protocol, answer bytes, leftover, errors) are the same either way.

Optimistic ("lazy") use, as go- and rust-libp2p do when there is exactly one protocol
to propose: build ``MultistreamDialer([protocol])``, write ``data_to_send()`` and then
immediately write application data, before any answer. The listener's ``leftover``
then holds that application data. The dialer keeps being fed whatever is read from
the stream: it consumes the listener's header and echo, puts anything behind them in
its own ``leftover``, and raises ``NegotiationError`` if the answer is "na" (the
application data already sent is then lost, which is the risk the caller accepted).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from functools import lru_cache

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
# Upper bound on one message (text plus newline); longer ones are refused as soon as
# their length prefix is read, before their body is buffered.
MAX_MESSAGE_LENGTH = 1024
# A prefix for a length up to MAX_MESSAGE_LENGTH takes at most this many bytes.
_MAX_PREFIX_BYTES = len(encode_uvarint(MAX_MESSAGE_LENGTH))
DEFAULT_MAX_ROUNDS = 32
# Our own "ls" answer is one message holding a framed list; cap what we are willing to send.
MAX_LISTING_LENGTH = 64 * 1024
_RESERVED = frozenset({"", NOT_AVAILABLE, LIST})


def encode_message(text: str) -> bytes:
    """Frame one multistream message: varint length, UTF-8 text, newline."""
    body = text.encode("utf-8") + b"\n"
    if len(body) > MAX_MESSAGE_LENGTH:
        raise LocalProtocolError(
            f"multistream message of {len(body)} bytes exceeds {MAX_MESSAGE_LENGTH}"
        )
    return encode_uvarint(len(body)) + body


HEADER_MESSAGE = encode_message(PROTOCOL_ID)
_HEADER_LENGTH = len(HEADER_MESSAGE)
# Protocol IDs whose proposal (and opening) bytes are cached; a node speaks a few dozen.
_OPENING_CACHE_SIZE = 256


@lru_cache(maxsize=_OPENING_CACHE_SIZE)
def _opening(protocol: str) -> bytes:
    """Header plus a proposal of ``protocol``: a dialer's first write, and also the
    listener's whole answer when it accepts that proposal (it echoes both messages)."""
    # "na" and "ls" are control messages; an empty ID could never be echoed usefully.
    if protocol in _RESERVED or "\n" in protocol:
        raise LocalProtocolError(f"{protocol!r} cannot be proposed as a protocol")
    return HEADER_MESSAGE + encode_message(protocol)  # LocalProtocolError if too long


def match_pipelined_proposal(data: bytes | bytearray | memoryview) -> tuple[str, int] | None:
    """The protocol proposed by a dialer's opening at the start of ``data`` (the header,
    then one proposal of at most 127 bytes), and how many bytes that opening takes.

    None when ``data`` starts any other way, is incomplete or malformed: the general
    engine then reads it (and reports what is wrong). A match is exactly what
    ``MultistreamListener`` would read from those bytes: framing is canonical here (a
    one-byte length), so a listener accepting the protocol answers ``data[:used]``.
    """
    if len(data) <= _HEADER_LENGTH or data[:_HEADER_LENGTH] != HEADER_MESSAGE:
        return None
    length = data[_HEADER_LENGTH]
    used = _HEADER_LENGTH + 1 + length
    # 0x80 and above start a multi-byte length; 0 or 1 leave no room for text + newline.
    if length < 2 or length >= 0x80 or len(data) < used or data[used - 1] != 0x0A:
        return None
    try:
        protocol = bytes(data[_HEADER_LENGTH + 1 : used - 1]).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return protocol, used


def _encode_listing(protocols: Collection[str]) -> bytes:
    """The "ls" answer: one message whose text is the framed protocol IDs.

    The README of multistream-select shows two different layouts; this is the one that
    go- and rust-libp2p put on the wire. Entries that cannot be framed (too long) are
    skipped, and the list stops before it would pass MAX_LISTING_LENGTH.
    """
    inner = bytearray()
    for protocol in sorted(protocols):
        try:
            entry = encode_message(protocol)
        except LocalProtocolError:
            continue
        if len(inner) + len(entry) + 1 > MAX_LISTING_LENGTH:
            break
        inner += entry
    inner += b"\n"
    return encode_uvarint(len(inner)) + bytes(inner)


def _check_max_rounds(max_rounds: int) -> int:
    if max_rounds < 1:
        raise LocalProtocolError("max_rounds must be at least 1")
    return max_rounds


class _MessageReader:
    """Splits received bytes into messages; never holds more than one partial message."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    def __bool__(self) -> bool:
        """True while a partial message is buffered."""
        return bool(self._buffer)

    def next_message(self) -> str | None:
        """The next complete message, or None if more bytes are needed."""
        decoded = try_decode_uvarint(self._buffer)
        if decoded is None:
            # Every allowed length fits in _MAX_PREFIX_BYTES; a longer prefix is oversize.
            if len(self._buffer) >= _MAX_PREFIX_BYTES:
                raise DecodeError(
                    f"multistream message longer than {MAX_MESSAGE_LENGTH} bytes announced"
                )
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
            raise DecodeError("multistream message is not valid UTF-8") from exc

    def take_rest(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


class _Engine:
    """What both sides share: outgoing queue, input loop, done/failed bookkeeping."""

    def __init__(self) -> None:
        self._reader = _MessageReader()
        self._outgoing = bytearray()
        self._header_seen = False
        self._failed = False
        self.done = False
        self.selected: str | None = None
        self.leftover = b""

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (empty if none)."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the peer; may queue replies and may finish the negotiation."""
        if self.done:
            raise LocalProtocolError("negotiation already finished; use leftover")
        if self._failed:
            raise LocalProtocolError("negotiation already failed")
        self._reader.feed(data)
        try:
            while not self.done:
                message = self._reader.next_message()
                if message is None:
                    return
                if not self._header_seen:
                    # Whatever the other side sends first must be the header (both directions).
                    if message != PROTOCOL_ID:
                        raise RemoteProtocolError(
                            f"expected the multistream header, got {message!r}"
                        )
                    self._header_seen = True
                    continue
                self._handle(message)
        except RemoteProtocolError:
            self._failed = True
            raise

    def _handle(self, message: str) -> None:
        raise NotImplementedError

    def _finish(self, protocol: str) -> None:
        self.done = True
        self.selected = protocol
        self.leftover = self._reader.take_rest()


class MultistreamDialer(_Engine):
    """The initiator's side: proposes ``protocols`` in preference order until one is accepted.

    Raises ``NegotiationError`` when the listener refuses every proposal and
    ``RemoteProtocolError`` (or ``DecodeError``) on a malformed or unexpected reply.
    ``max_rounds`` bounds the number of proposals; passing more protocols than that is a
    ``LocalProtocolError``.
    """

    def __init__(self, protocols: Sequence[str], *, max_rounds: int = DEFAULT_MAX_ROUNDS) -> None:
        super().__init__()
        self._max_rounds = _check_max_rounds(max_rounds)
        if not protocols:
            raise LocalProtocolError("no protocols to propose")
        if len(protocols) > self._max_rounds:
            raise LocalProtocolError(
                f"{len(protocols)} protocols to propose, more than max_rounds={self._max_rounds}"
            )
        openings = [_opening(protocol) for protocol in protocols]  # checks each
        self._protocols = tuple(protocols)
        self._index = 0
        # A listener that accepts the first proposal answers exactly these bytes.
        self._opening = openings[0]
        self._outgoing += self._opening

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        # Fast path: the whole answer (and maybe data behind it) in the first read.
        if not self._header_seen and not self.done and not self._failed and not self._reader:
            opening = self._opening
            if data[: len(opening)] == opening:
                self._header_seen = True
                self.done = True
                self.selected = self._protocols[0]
                self.leftover = bytes(data[len(opening) :])
                return
        super().receive_data(data)

    def _handle(self, message: str) -> None:
        proposed = self._protocols[self._index]
        if message == proposed:
            self._finish(proposed)
            return
        if message != NOT_AVAILABLE:
            raise RemoteProtocolError(f"peer answered {message!r} to our proposal {proposed!r}")
        self._index += 1
        if self._index >= len(self._protocols):
            raise NegotiationError(
                f"none of {list(self._protocols)} supported by peer (all answered 'na')"
            )
        self._outgoing += encode_message(self._protocols[self._index])


def accept_pipelined_proposal(
    data: bytes | bytearray | memoryview, supported: Callable[[str], bool]
) -> tuple[str, bytes, bytes] | None:
    """Negotiate in one step when ``data`` opens with the header and a proposal that
    ``supported`` accepts: return ``(protocol, answer, leftover)``, the same as a fresh
    ``MultistreamListener`` fed ``data`` would give; None in every other case (feed a
    ``MultistreamListener`` then).
    """
    match = match_pipelined_proposal(data)
    if match is None:
        return None
    protocol, used = match
    if protocol in _RESERVED or not supported(protocol):
        return None
    return protocol, bytes(data[:used]), bytes(data[used:])


class MultistreamListener(_Engine):
    """The responder's side: accepts the first proposal that ``supported`` allows.

    ``supported`` is either a predicate or a collection of protocol IDs; only a
    collection can be listed, so "ls" is answered with "na" for a predicate.

    The listener queues its header at construction, without waiting for the dialer's:
    the spec lets both sides send the header simultaneously, and this saves a round trip.
    More than ``max_rounds`` proposals (including "ls") is a ``RemoteProtocolError``.
    """

    def __init__(
        self,
        supported: Callable[[str], bool] | Collection[str],
        *,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
    ) -> None:
        super().__init__()
        self._max_rounds = _check_max_rounds(max_rounds)
        self._listing: Collection[str] | None
        if callable(supported):
            self._is_supported: Callable[[str], bool] = supported
            self._listing = None
        else:
            self._is_supported = supported.__contains__
            self._listing = supported
        self._rounds = 0
        self._outgoing += HEADER_MESSAGE

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        # Fast path: a pipelined opening of a supported protocol in the first read.
        if not self._header_seen and not self.done and not self._failed and not self._reader:
            accepted = accept_pipelined_proposal(data, self._is_supported)
            if accepted is not None:
                protocol, answer, leftover = accepted
                self._header_seen = True
                self._rounds = 1
                self._outgoing += answer[_HEADER_LENGTH:]
                self.done = True
                self.selected = protocol
                self.leftover = leftover
                return
        super().receive_data(data)

    def _handle(self, message: str) -> None:
        self._rounds += 1
        if self._rounds > self._max_rounds:
            raise RemoteProtocolError(
                f"peer made more than {self._max_rounds} proposals without agreeing"
            )
        if message == LIST:
            if self._listing is not None:
                self._outgoing += _encode_listing(self._listing)
            else:
                self._outgoing += encode_message(NOT_AVAILABLE)
            return
        if message not in _RESERVED and self._is_supported(message):
            self._outgoing += encode_message(message)
            self._finish(message)
            return
        self._outgoing += encode_message(NOT_AVAILABLE)
