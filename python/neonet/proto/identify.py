"""identify and identify push (libp2p/specs identify/README.md): the message codec.

An identify message is a protobuf ``Identify``; go-, rust- and js-libp2p send it with an
unsigned-varint length prefix and then close the stream, older implementations send the
bare protobuf. ``IdentifyReader`` accepts both: length-prefixed messages as they arrive,
and the whole stream as one message at EOF if it was not length-prefixed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from google.protobuf.message import DecodeError as ProtobufDecodeError

from neonet.core.errors import DecodeError
from neonet.core.varint import encode_uvarint, try_decode_uvarint
from neonet.proto.pb import identify_pb2

PROTOCOL_ID = "/ipfs/id/1.0.0"
PUSH_PROTOCOL_ID = "/ipfs/id/push/1.0.0"
MAX_MESSAGE_SIZE = 64 * 1024
MAX_LISTEN_ADDRS = 100
MAX_PROTOCOLS = 500
MAX_PROTOCOL_LENGTH = 1024
MAX_MESSAGES_PER_STREAM = 8


@dataclass(frozen=True, slots=True)
class IdentifyInfo:
    protocol_version: str | None = None
    agent_version: str | None = None
    public_key: bytes | None = None  # a protobuf PublicKey
    listen_addrs: tuple[bytes, ...] = ()  # binary multiaddrs
    observed_addr: bytes | None = None
    protocols: tuple[str, ...] = ()
    signed_peer_record: bytes | None = None


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
    """The varint-length-prefixed protobuf."""
    body = _to_protobuf(info).SerializeToString()
    if len(body) > MAX_MESSAGE_SIZE:
        raise ValueError(f"identify message of {len(body)} bytes exceeds {MAX_MESSAGE_SIZE}")
    return encode_uvarint(len(body)) + body


def _parse(body: bytes) -> identify_pb2.Identify:
    if len(body) > MAX_MESSAGE_SIZE:
        raise DecodeError(f"identify message of {len(body)} bytes exceeds {MAX_MESSAGE_SIZE}")
    message = identify_pb2.Identify()
    try:
        message.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"malformed identify message: {exc}") from exc
    return message


def _convert(message: identify_pb2.Identify) -> IdentifyInfo:
    if len(message.listenAddrs) > MAX_LISTEN_ADDRS:
        raise DecodeError(f"identify lists more than {MAX_LISTEN_ADDRS} addresses")
    if len(message.protocols) > MAX_PROTOCOLS:
        raise DecodeError(f"identify lists more than {MAX_PROTOCOLS} protocols")
    if any(len(protocol) > MAX_PROTOCOL_LENGTH for protocol in message.protocols):
        raise DecodeError("identify protocol ID too long")
    return IdentifyInfo(
        protocol_version=message.protocolVersion if message.HasField("protocolVersion") else None,
        agent_version=message.agentVersion if message.HasField("agentVersion") else None,
        public_key=message.publicKey if message.HasField("publicKey") else None,
        listen_addrs=tuple(message.listenAddrs),
        observed_addr=message.observedAddr if message.HasField("observedAddr") else None,
        protocols=tuple(message.protocols),
        signed_peer_record=message.signedPeerRecord if message.HasField("signedPeerRecord") else None,
    )


def decode_identify(body: bytes) -> IdentifyInfo:
    """Decode one bare ``Identify`` protobuf, enforcing the limits."""
    return _convert(_parse(body))


class IdentifyReader:
    """Incremental reader of the messages on one identify stream."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._count = 0
        self._framed = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[IdentifyInfo]:
        self._buffer += data
        if len(self._buffer) > MAX_MESSAGE_SIZE + 10:
            raise DecodeError(f"identify data beyond {MAX_MESSAGE_SIZE} bytes")
        infos = []
        while self._buffer:
            decoded = try_decode_uvarint(self._buffer)
            if decoded is None:
                break
            length, offset = decoded
            if length > MAX_MESSAGE_SIZE:
                # Not a plausible length prefix: maybe an unframed message; decide at EOF.
                break
            if len(self._buffer) < offset + length:
                break
            body = bytes(self._buffer[offset : offset + length])
            try:
                message = _parse(body)
            except DecodeError:
                if self._framed:
                    raise
                break  # possibly an unframed message after all; decide at EOF
            info = _convert(message)
            del self._buffer[: offset + length]
            self._framed = True
            self._count += 1
            if self._count > MAX_MESSAGES_PER_STREAM:
                raise DecodeError("too many identify messages on one stream")
            infos.append(info)
        return infos

    def finish(self) -> list[IdentifyInfo]:
        """At EOF: whatever remains must be one bare protobuf (or nothing)."""
        if not self._buffer:
            return []
        if self._framed:
            raise DecodeError("identify stream ended inside a message")
        body = bytes(self._buffer)
        self._buffer.clear()
        return [decode_identify(body)]


def merge_push(base: IdentifyInfo, push: IdentifyInfo) -> IdentifyInfo:
    """Apply an identify push: fields the push carries replace the old ones."""
    changes: dict[str, object] = {}
    for name in (
        "protocol_version",
        "agent_version",
        "public_key",
        "observed_addr",
        "signed_peer_record",
    ):
        value = getattr(push, name)
        if value is not None:
            changes[name] = value
    if push.listen_addrs:
        changes["listen_addrs"] = push.listen_addrs
    if push.protocols:
        changes["protocols"] = push.protocols
    return replace(base, **changes)  # type: ignore[arg-type]
