"""identify and identify push (libp2p/specs identify/README.md): the message codec.

An identify message is the protobuf ``Identify``. The spec does not say how it is
framed on the stream; go-, rust- and js-libp2p prefix every message with an unsigned
varint length and then close the stream, and go-libp2p may split one record over two
messages (the signed peer record on its own), so a stream can carry several messages
that the receiver merges. Some older implementations write one bare protobuf and close
the stream, its end marking the end of the message.

``IdentifyReader`` accepts both: it yields length-prefixed messages as they complete,
and if the data never parsed as a length-prefixed message, ``finish()`` (called at
EOF) decodes the whole stream as one bare protobuf. The two cannot always be told
apart from the first bytes; a bare message is taken for a framed one only if its first
byte, read as a length, is followed by that many bytes forming a well-formed protobuf,
which the leading fields real peers send (a tag byte followed by a key or an address)
do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError as ProtobufDecodeError

from neonet.core.errors import DecodeError, LocalProtocolError
from neonet.core.varint import encode_uvarint, try_decode_uvarint
from neonet.proto.pb import identify_pb2

PROTOCOL_ID = "/ipfs/id/1.0.0"
PUSH_PROTOCOL_ID = "/ipfs/id/push/1.0.0"
MAX_MESSAGE_SIZE = 64 * 1024
MAX_LISTEN_ADDRS = 100
MAX_PROTOCOLS = 500
MAX_PROTOCOL_LENGTH = 1024  # bytes of UTF-8
# go-libp2p sends at most two messages per stream; a few more leaves room, many is abuse.
MAX_MESSAGES_PER_STREAM = 8

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class IdentifyInfo:
    """One identify record; None / empty means the field was absent."""

    protocol_version: str | None = None
    agent_version: str | None = None
    public_key: bytes | None = None  # a protobuf-encoded PublicKey (peer-ids spec)
    listen_addrs: tuple[bytes, ...] = ()  # binary multiaddrs, parsed by the caller
    observed_addr: bytes | None = None  # binary multiaddr
    protocols: tuple[str, ...] = ()
    signed_peer_record: bytes | None = None  # a signed envelope, verified by the caller


def _check_limits(listen_addrs: int, protocols: list[str] | tuple[str, ...]) -> str | None:
    """The first limit the record breaks, as a message; None if it is within bounds."""
    if listen_addrs > MAX_LISTEN_ADDRS:
        return f"identify lists {listen_addrs} addresses, more than {MAX_LISTEN_ADDRS}"
    if len(protocols) > MAX_PROTOCOLS:
        return f"identify lists {len(protocols)} protocols, more than {MAX_PROTOCOLS}"
    for protocol in protocols:
        if len(protocol.encode("utf-8")) > MAX_PROTOCOL_LENGTH:
            return f"identify protocol ID longer than {MAX_PROTOCOL_LENGTH} bytes"
    return None


def _to_protobuf(info: IdentifyInfo) -> identify_pb2.Identify:
    message = identify_pb2.Identify()
    if info.protocol_version is not None:
        message.protocolVersion = info.protocol_version
    if info.agent_version is not None:
        message.agentVersion = info.agent_version
    if info.public_key is not None:
        message.publicKey = info.public_key
    message.listenAddrs.extend(info.listen_addrs)
    if info.observed_addr is not None:
        message.observedAddr = info.observed_addr
    message.protocols.extend(info.protocols)
    if info.signed_peer_record is not None:
        message.signedPeerRecord = info.signed_peer_record
    return message


def encode_identify(info: IdentifyInfo) -> bytes:
    """The varint-length-prefixed protobuf.

    Raises ``LocalProtocolError`` for a record our own reader (and, with these limits,
    a careful peer) would refuse.
    """
    problem = _check_limits(len(info.listen_addrs), info.protocols)
    if problem is not None:
        raise LocalProtocolError(problem)
    body = _to_protobuf(info).SerializeToString()
    if len(body) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError(
            f"identify message of {len(body)} bytes exceeds {MAX_MESSAGE_SIZE}"
        )
    return encode_uvarint(len(body)) + body


def _text(name: str, value: object) -> str:
    # For proto2 string fields upb hands back bytes instead of str when they are not
    # valid UTF-8; the spec's strings are text, so that is a malformed message.
    if not isinstance(value, str):
        raise DecodeError(f"identify {name} is not valid UTF-8")
    return value


def _parse(body: bytes) -> identify_pb2.Identify:
    """The protobuf alone; ``DecodeError`` if the bytes are not a well-formed message."""
    if len(body) > MAX_MESSAGE_SIZE:
        raise DecodeError(f"identify message of {len(body)} bytes exceeds {MAX_MESSAGE_SIZE}")
    message = identify_pb2.Identify()
    try:
        message.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"malformed identify message: {exc}") from exc
    return message


def _to_info(message: identify_pb2.Identify) -> IdentifyInfo:
    """Check a parsed message against the limits and the spec's types."""
    protocols = [_text("protocol", protocol) for protocol in message.protocols]
    problem = _check_limits(len(message.listenAddrs), protocols)
    if problem is not None:
        raise DecodeError(problem)
    return IdentifyInfo(
        protocol_version=_text("protocolVersion", message.protocolVersion)
        if message.HasField("protocolVersion")
        else None,
        agent_version=_text("agentVersion", message.agentVersion)
        if message.HasField("agentVersion")
        else None,
        public_key=message.publicKey if message.HasField("publicKey") else None,
        listen_addrs=tuple(message.listenAddrs),
        observed_addr=message.observedAddr if message.HasField("observedAddr") else None,
        protocols=tuple(protocols),
        signed_peer_record=message.signedPeerRecord
        if message.HasField("signedPeerRecord")
        else None,
    )


def decode_identify(body: bytes | bytearray | memoryview) -> IdentifyInfo:
    """Decode one bare ``Identify`` protobuf (no length prefix), enforcing the limits."""
    return _to_info(_parse(bytes(body)))


# The longest length prefix a frame within MAX_MESSAGE_SIZE can carry.
_MAX_PREFIX_BYTES = len(encode_uvarint(MAX_MESSAGE_SIZE))


class IdentifyReader:
    """Incremental reader of the identify messages on one stream (see the module docstring).

    ``receive_data`` returns the length-prefixed messages completed so far; call
    ``finish`` at EOF. Both raise ``DecodeError`` on malformed or oversize input.

    The reader starts undecided. The first complete frame that parses as a protobuf
    commits it to framed mode, where every later error is fatal. A first frame that
    cannot be one (bad prefix, oversize length, malformed protobuf) commits it to bare
    mode, where it only buffers, up to MAX_MESSAGE_SIZE, until ``finish``. Deciding once
    keeps the work linear however the bytes are split.
    work linear however the bytes are split.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._mode: str | None = None  # None (undecided), "framed" or "bare"
        self._count = 0
        self._finished = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[IdentifyInfo]:
        if self._finished:
            raise LocalProtocolError("identify reader already finished")
        self._buffer += data
        infos: list[IdentifyInfo] = []
        while self._buffer and self._mode != "bare":
            info = self._next_framed()
            if info is None:
                break
            infos.append(info)
        # What is left is one partial frame (prefix plus at most MAX_MESSAGE_SIZE), or
        # the start of a bare message (at most MAX_MESSAGE_SIZE).
        limit = MAX_MESSAGE_SIZE if self._mode == "bare" else MAX_MESSAGE_SIZE + _MAX_PREFIX_BYTES
        if len(self._buffer) > limit:
            raise DecodeError(f"identify message larger than {MAX_MESSAGE_SIZE} bytes")
        return infos

    def _not_a_frame(self, problem: str) -> None:
        if self._mode == "framed":
            raise DecodeError(problem)
        self._mode = "bare"

    def _next_framed(self) -> IdentifyInfo | None:
        try:
            decoded = try_decode_uvarint(self._buffer)
        except DecodeError as exc:
            self._not_a_frame(f"bad identify length prefix: {exc}")
            return None
        if decoded is None:
            if len(self._buffer) >= _MAX_PREFIX_BYTES:
                self._not_a_frame(f"identify message larger than {MAX_MESSAGE_SIZE} bytes")
            return None
        length, offset = decoded
        if length > MAX_MESSAGE_SIZE:
            self._not_a_frame(f"identify message of {length} bytes exceeds {MAX_MESSAGE_SIZE}")
            return None
        if len(self._buffer) < offset + length:
            return None
        try:
            message = _parse(bytes(self._buffer[offset : offset + length]))
        except DecodeError as exc:
            self._not_a_frame(str(exc))
            return None
        # A well-formed protobuf behind a plausible prefix settles the framing: from here
        # on, broken limits or bad text are errors now rather than a reason to wait.
        del self._buffer[: offset + length]
        self._mode = "framed"
        info = _to_info(message)
        self._count += 1
        if self._count > MAX_MESSAGES_PER_STREAM:
            raise DecodeError(f"more than {MAX_MESSAGES_PER_STREAM} identify messages")
        return info

    def finish(self) -> list[IdentifyInfo]:
        """At EOF: an unframed stream is one bare protobuf; a framed one must end cleanly."""
        if self._finished:
            raise LocalProtocolError("identify reader already finished")
        self._finished = True
        if not self._buffer:
            return []
        if self._mode == "framed":
            raise DecodeError("identify stream ended inside a message")
        body = bytes(self._buffer)
        self._buffer.clear()
        return [decode_identify(body)]


def merge_push(base: IdentifyInfo, push: IdentifyInfo) -> IdentifyInfo:
    """Apply an identify push: every field the push carries replaces the old value.

    A repeated field cannot be told apart from an absent one on the wire when it is
    empty, so an empty ``listen_addrs`` or ``protocols`` in the push keeps the old list
    (the spec: missing fields are ignored, pushes may be partial).
    """
    return IdentifyInfo(
        protocol_version=_pick(push.protocol_version, base.protocol_version),
        agent_version=_pick(push.agent_version, base.agent_version),
        public_key=_pick(push.public_key, base.public_key),
        listen_addrs=push.listen_addrs or base.listen_addrs,
        observed_addr=_pick(push.observed_addr, base.observed_addr),
        protocols=push.protocols or base.protocols,
        signed_peer_record=_pick(push.signed_peer_record, base.signed_peer_record),
    )


def _pick(new: _T | None, old: _T | None) -> _T | None:
    return new if new is not None else old
