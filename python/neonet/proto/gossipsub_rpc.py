"""Pubsub RPC codec, message IDs and message signing (sans-I/O).

Spec sections (libp2p/specs):

* ``pubsub/README.md`` "The RPC" and "The Message": the protobuf ``RPC`` and
  ``Message``; on the stream every RPC is prefixed with its length as an unsigned
  varint. "Message Identification": the default ID is ``from`` followed by ``seqno``.
  "Message Signing": the signature covers ``"libp2p-pubsub:"`` followed by the
  protobuf encoding of the message without its ``signature`` and ``key`` fields; the
  key is carried in ``key`` unless the peer ID inlines it (Ed25519). "Signature
  Policy Options": ``StrictSign`` (the default here) requires ``from``, ``seqno``
  and a valid signature.
* ``pubsub/gossipsub/gossipsub-v1.0.md`` "Control Messages" (IHAVE, IWANT, GRAFT,
  PRUNE), ``gossipsub-v1.1.md`` (PRUNE backoff and peer exchange) and
  ``gossipsub-v1.2.md`` (IDONTWANT).

Decoding bounds every list and size; anything malformed or oversized is a
``RemoteProtocolError`` (``DecodeError`` for bad bytes) for that stream.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from google.protobuf.message import DecodeError as ProtobufDecodeError

from neonet.core.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from neonet.core.keys import Ed25519Identity, KeyType, PublicKey
from neonet.core.peer_id import PeerId
from neonet.core.varint import encode_uvarint, try_decode_uvarint
from neonet.proto.pb import gossipsub_pb2 as pb

__all__ = [
    "DEFAULT_MAX_RPC_SIZE",
    "SIGNING_PREFIX",
    "Control",
    "Message",
    "Prune",
    "ReceivedMessage",
    "Rpc",
    "RpcLimits",
    "RpcReader",
    "SignaturePolicy",
    "decode_rpc",
    "decode_rpcs",
    "default_message_id",
    "encode_rpc",
    "frame",
    "sign_message",
    "verify_message",
]

SIGNING_PREFIX = b"libp2p-pubsub:"
DEFAULT_MAX_RPC_SIZE = 1 << 20  # go-libp2p-pubsub and rust-libp2p use 1 MiB as well
_MAX_FROM_LENGTH = 128
_MAX_SEQNO_LENGTH = 64
_MAX_SIGNATURE_LENGTH = 1024
_MAX_TOPIC_LENGTH = 1024


class SignaturePolicy(Enum):
    """What a router demands of messages (pubsub/README.md "Signature Policy Options")."""

    STRICT_SIGN = "strict_sign"  # sign our messages; require valid signatures
    STRICT_NO_SIGN = "strict_no_sign"  # no from/seqno/signature/key, in or out


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """Bounds on one decoded RPC; an RPC beyond any of them is refused whole."""

    max_rpc_size: int = DEFAULT_MAX_RPC_SIZE
    max_subscriptions: int = 1_000
    max_messages: int = 5_000
    max_control_entries: int = 5_000  # IHAVE + IWANT + GRAFT + PRUNE + IDONTWANT entries
    max_message_ids: int = 5_000  # IDs over all IHAVE, IWANT and IDONTWANT of one RPC
    max_px_peers: int = 64


@dataclass(frozen=True, slots=True)
class Message:
    """One pubsub message as it travels (fields as in the protobuf; None when absent)."""

    topic: str
    data: bytes
    from_peer: bytes | None = None
    seqno: bytes | None = None
    signature: bytes | None = None
    key: bytes | None = None

    def encode(self) -> bytes:
        """The protobuf encoding (fields in number order, as every implementation writes)."""
        return _to_pb(self).SerializeToString()

    def signed_bytes(self) -> bytes:
        """What the signature covers: the prefix and the message without signature and key."""
        unsigned = pb.Message()
        if self.from_peer is not None:
            unsigned.__setattr__("from", self.from_peer)
        unsigned.data = self.data
        if self.seqno is not None:
            unsigned.seqno = self.seqno
        unsigned.topic = self.topic
        return SIGNING_PREFIX + unsigned.SerializeToString()


@dataclass(frozen=True, slots=True)
class Prune:
    """A PRUNE: leave ``topic``'s mesh; peer exchange (peer ID bytes) and backoff seconds."""

    topic: str
    peers: tuple[bytes, ...] = ()
    backoff: int | None = None


@dataclass(slots=True)
class Control:
    """The control part of an RPC; IHAVE is (topic, message IDs)."""

    ihave: list[tuple[str, list[bytes]]] = field(default_factory=list)
    iwant: list[bytes] = field(default_factory=list)
    graft: list[str] = field(default_factory=list)
    prune: list[Prune] = field(default_factory=list)
    idontwant: list[bytes] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.ihave or self.iwant or self.graft or self.prune or self.idontwant)


@dataclass(slots=True)
class Rpc:
    """One RPC. ``messages`` holds decoded messages; encoding also takes raw ``Message``
    encodings in ``raw_messages`` (forwarding re-sends the bytes it received).

    ``decode_rpc(..., lazy=True)`` leaves the messages in ``received`` instead: parsed
    and bounds-checked, but not yet ``Message`` objects (see ``ReceivedMessage``).
    """

    subscriptions: list[tuple[bool, str]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    raw_messages: list[bytes] = field(default_factory=list)
    control: Control = field(default_factory=Control)
    received: list[ReceivedMessage] = field(default_factory=list)

    def empty(self) -> bool:
        return (
            not self.subscriptions
            and not self.messages
            and not self.raw_messages
            and not self.received
            and self.control.empty()
        )


class ReceivedMessage:
    """A message as it arrived, decoded only as far as routing needs.

    Most copies a node receives are duplicates (about 6 per message at D=6): the router
    needs just the topic and the ID fields to drop them, so ``topic``, ``from_peer``
    and ``seqno`` (b"" when absent) are read from the parsed protobuf, and ``decode()``
    (the ``Message``) and ``encode()`` (the bytes to forward) only for a new message.
    """

    __slots__ = ("_parsed", "from_peer", "seqno", "topic")

    def __init__(self, parsed: pb.Message) -> None:
        """Raises ``RemoteProtocolError`` where ``decode_rpc`` would refuse the message."""
        self._parsed = parsed
        self.topic: str = parsed.topic
        self.from_peer: bytes = getattr(parsed, "from")
        self.seqno: bytes = parsed.seqno
        if (
            len(self.from_peer) > _MAX_FROM_LENGTH
            or len(self.seqno) > _MAX_SEQNO_LENGTH
            or len(self.topic) > _MAX_TOPIC_LENGTH // 4
            or len(parsed.signature) > _MAX_SIGNATURE_LENGTH
            or not parsed.HasField("topic")
        ):
            _check_message(parsed)  # one of the bounds may be broken: say which

    def decode(self) -> Message:
        return _from_pb(self._parsed)

    def encode(self) -> bytes:
        return self._parsed.SerializeToString()


def _to_pb(message: Message) -> pb.Message:
    out = pb.Message()
    if message.from_peer is not None:
        out.__setattr__("from", message.from_peer)
    out.data = message.data
    if message.seqno is not None:
        out.seqno = message.seqno
    out.topic = message.topic
    if message.signature is not None:
        out.signature = message.signature
    if message.key is not None:
        out.key = message.key
    return out


_MESSAGE_TAG = b"\x12"  # RPC field 2 (publish), length-delimited


def encode_rpc(rpc: Rpc) -> bytes:
    """The protobuf encoding of ``rpc`` (without the length prefix).

    Raw message encodings are appended as ``publish`` fields: protobuf merges repeated
    fields from concatenated encodings, so this equals encoding them in the message.
    """
    if not rpc.subscriptions and not rpc.messages and rpc.control.empty():
        # The forwarding fast path: only raw messages, no protobuf object needed.
        return b"".join(_publish_parts(rpc.raw_messages))
    out = pb.RPC()
    for subscribe, topic in rpc.subscriptions:
        out.subscriptions.add(subscribe=subscribe, topicid=topic)
    for message in rpc.messages:
        out.publish.append(_to_pb(message))
    control = rpc.control
    if not control.empty():
        target = out.control
        for topic, ids in control.ihave:
            target.ihave.add(topicID=topic, messageIDs=ids)
        if control.iwant:
            target.iwant.add(messageIDs=control.iwant)
        for topic in control.graft:
            target.graft.add(topicID=topic)
        for prune in control.prune:
            entry = target.prune.add(topicID=prune.topic)
            for peer in prune.peers:
                entry.peers.add(peerID=peer)
            if prune.backoff is not None:
                entry.backoff = prune.backoff
        if control.idontwant:
            target.idontwant.add(messageIDs=control.idontwant)
    encoded = out.SerializeToString()
    if rpc.raw_messages:
        encoded = b"".join([encoded, *_publish_parts(rpc.raw_messages)])
    return encoded


def _publish_parts(raws: list[bytes]) -> list[bytes]:
    """Raw messages as RPC ``publish`` fields: tag, length and the bytes themselves, as
    separate parts for one ``join`` (no framed copy per message, nothing kept)."""
    parts: list[bytes] = []
    for raw in raws:
        parts += (_MESSAGE_TAG, encode_uvarint(len(raw)), raw)
    return parts


def frame(encoded_rpc: bytes) -> bytes:
    """Length-prefix one encoded RPC for the stream."""
    return encode_uvarint(len(encoded_rpc)) + encoded_rpc


def decode_rpc(data: bytes, limits: RpcLimits | None = None, *, lazy: bool = False) -> Rpc:
    """Decode one RPC (no length prefix); ``RemoteProtocolError`` when malformed or too big.

    With ``lazy`` the messages go to ``rpc.received`` (checked exactly as ``messages``
    would be, but not converted; see ``ReceivedMessage``).
    """
    limits = limits or RpcLimits()
    if len(data) > limits.max_rpc_size:
        raise RemoteProtocolError(f"RPC of {len(data)} bytes exceeds {limits.max_rpc_size}")
    return _decode(data, limits, lazy)


def decode_rpcs(encodings: list[bytes], limits: RpcLimits | None = None) -> list[Rpc]:
    """Decode the RPCs of one read lazily (``decode_rpc(..., lazy=True)`` each), in order.

    Consecutive RPCs that carry only messages (what forwarding sends) come back merged
    into one, up to ``max_messages``: one parse and one router call for all of them
    instead of one per RPC. Any other RPC is decoded alone, so control and subscription
    entries are handled in the order they arrived.
    """
    limits = limits or RpcLimits()
    decoded: list[Rpc] = []
    run: list[bytes] = []
    in_run = 0
    for encoded in encodings:
        if len(encoded) > limits.max_rpc_size:
            raise RemoteProtocolError(f"RPC of {len(encoded)} bytes exceeds {limits.max_rpc_size}")
        count = _messages_only(encoded)
        if count is not None and in_run + count <= limits.max_messages:
            run.append(encoded)
            in_run += count
            continue
        if run:
            decoded.append(_decode(b"".join(run), limits, True))
            run, in_run = [], 0
        if count is not None:  # messages only, but the run was full: start a new one
            run.append(encoded)
            in_run = count
        else:
            decoded.append(_decode(encoded, limits, True))
    if run:
        decoded.append(_decode(b"".join(run), limits, True))
    return decoded


def _messages_only(encoded: bytes) -> int | None:
    """How many ``publish`` entries ``encoded`` holds if it holds nothing else, else None.

    (Concatenated protobuf encodings parse as one message with the repeated fields
    joined, which is what makes merging such RPCs exact.)
    """
    count = 0
    offset = 0
    end = len(encoded)
    while offset < end:
        if encoded[offset] != 0x12:  # field 2, length-delimited
            return None
        length = encoded[offset + 1] if offset + 1 < end else 0x80
        if length < 0x80:
            offset += 2 + length
        elif offset + 2 < end and 0 < encoded[offset + 2] < 0x80:  # two bytes: most messages
            offset += 3 + (length & 0x7F) + (encoded[offset + 2] << 7)
        else:
            try:
                found = try_decode_uvarint(encoded, offset + 1)
            except DecodeError:
                return None
            if found is None:
                return None
            offset = found[1] + found[0]
        count += 1
    return count if offset == end else None


def _decode(data: bytes, limits: RpcLimits, lazy: bool) -> Rpc:
    parsed = pb.RPC()
    try:
        parsed.ParseFromString(data)
    except (ProtobufDecodeError, ValueError, RuntimeError) as exc:
        raise DecodeError(f"malformed pubsub RPC: {exc}") from exc
    if len(parsed.subscriptions) > limits.max_subscriptions:
        raise RemoteProtocolError("too many subscriptions in one RPC")
    if len(parsed.publish) > limits.max_messages:
        raise RemoteProtocolError("too many messages in one RPC")
    rpc = Rpc()
    for option in parsed.subscriptions:
        if not option.HasField("topicid"):
            raise RemoteProtocolError("subscription without a topic")
        _check_topic(option.topicid)
        rpc.subscriptions.append((bool(option.subscribe), option.topicid))
    if lazy:
        rpc.received.extend(map(ReceivedMessage, parsed.publish))
    else:
        for message in parsed.publish:
            rpc.messages.append(_from_pb(message))
    if parsed.HasField("control"):
        rpc.control = _decode_control(parsed.control, limits)
    return rpc


def _check_topic(topic: str) -> None:
    if len(topic) > _MAX_TOPIC_LENGTH // 4 and len(topic.encode()) > _MAX_TOPIC_LENGTH:
        raise RemoteProtocolError(f"topic longer than {_MAX_TOPIC_LENGTH} bytes")


def _check_message(message: pb.Message) -> None:
    """The bounds checks of a received message (``_from_pb`` runs them before building)."""
    if not message.HasField("topic"):
        raise RemoteProtocolError("message without a topic")
    _check_topic(message.topic)
    if len(getattr(message, "from")) > _MAX_FROM_LENGTH:
        raise RemoteProtocolError("message 'from' too long")
    if len(message.seqno) > _MAX_SEQNO_LENGTH:
        raise RemoteProtocolError("message seqno too long")
    if len(message.signature) > _MAX_SIGNATURE_LENGTH:
        raise RemoteProtocolError("message signature too long")


def _from_pb(message: pb.Message) -> Message:
    _check_message(message)
    present = {descriptor.name: value for descriptor, value in message.ListFields()}
    return Message(
        topic=message.topic,
        data=present.get("data", b""),
        from_peer=present.get("from"),
        seqno=present.get("seqno"),
        signature=present.get("signature"),
        key=present.get("key"),
    )


def _decode_control(control: pb.ControlMessage, limits: RpcLimits) -> Control:
    entries = (
        len(control.ihave)
        + len(control.iwant)
        + len(control.graft)
        + len(control.prune)
        + len(control.idontwant)
    )
    if entries > limits.max_control_entries:
        raise RemoteProtocolError("too many control entries in one RPC")
    ids = sum(len(entry.messageIDs) for entry in control.ihave)
    ids += sum(len(entry.messageIDs) for entry in control.iwant)
    ids += sum(len(entry.messageIDs) for entry in control.idontwant)
    if ids > limits.max_message_ids:
        raise RemoteProtocolError("too many message IDs in one RPC")
    out = Control()
    for ihave in control.ihave:
        _check_topic(ihave.topicID)
        out.ihave.append((ihave.topicID, list(ihave.messageIDs)))
    for iwant in control.iwant:
        out.iwant.extend(iwant.messageIDs)
    for graft in control.graft:
        _check_topic(graft.topicID)
        out.graft.append(graft.topicID)
    for prune in control.prune:
        _check_topic(prune.topicID)
        if len(prune.peers) > limits.max_px_peers:
            raise RemoteProtocolError("too many peers in a PRUNE")
        peers = tuple(info.peerID for info in prune.peers if info.HasField("peerID"))
        backoff = prune.backoff if prune.HasField("backoff") else None
        out.prune.append(Prune(prune.topicID, peers, backoff))
    for idontwant in control.idontwant:
        out.idontwant.extend(idontwant.messageIDs)
    return out


class RpcReader:
    """Splits a byte stream into RPCs: uvarint length, then that many bytes.

    ``feed`` returns the complete RPC encodings found so far; a length above
    ``max_rpc_size`` is a ``RemoteProtocolError`` (the stream must be dropped).
    """

    __slots__ = ("_buffer", "_max")

    def __init__(self, max_rpc_size: int = DEFAULT_MAX_RPC_SIZE) -> None:
        self._buffer = bytearray()
        self._max = max_rpc_size

    def feed(self, data: bytes) -> list[bytes]:
        buffer: bytes | bytearray
        if self._buffer:
            buffer = self._buffer
            buffer += data
        else:
            buffer = data  # the usual case: the read starts with a frame; no copy
        found: list[bytes] = []
        offset = 0
        while True:
            if len(buffer) >= offset + 2 and buffer[offset + 1] < 0x80 < buffer[offset]:
                # The common two-byte length (128 bytes to 16 KiB), decoded inline.
                decoded: tuple[int, int] | None = (
                    (buffer[offset] & 0x7F) | (buffer[offset + 1] << 7),
                    offset + 2,
                )
                if buffer[offset + 1] == 0:
                    raise DecodeError("non-minimal varint")
            else:
                decoded = try_decode_uvarint(buffer, offset)
            if decoded is None:
                if len(buffer) - offset > 10:
                    raise DecodeError("RPC length prefix is not a valid varint")
                break
            length, start = decoded
            if length > self._max:
                raise RemoteProtocolError(f"RPC of {length} bytes exceeds {self._max}")
            end = start + length
            if end > len(buffer):
                break
            found.append(bytes(buffer[start:end]))
            offset = end
        if buffer is self._buffer:
            if offset:
                del self._buffer[:offset]
        elif offset < len(buffer):
            self._buffer += buffer[offset:]  # an incomplete frame: keep it for the next read
        return found

    def pending(self) -> int:
        """Bytes held of an incomplete RPC."""
        return len(self._buffer)


# -- message IDs and signing ----------------------------------------------------------

MessageIdFunction = Callable[[Message], bytes]


def default_message_id(message: Message) -> bytes:
    """The spec's default ID: ``from`` followed by ``seqno`` (raw bytes)."""
    return (message.from_peer or b"") + (message.seqno or b"")


def sign_message(identity: Ed25519Identity, topic: str, data: bytes, seqno: int) -> Message:
    """A StrictSign message from ``identity`` (8-byte big-endian seqno; key inlined in from)."""
    if not 0 <= seqno < 1 << 64:
        raise LocalProtocolError("seqno must fit in 64 bits")
    peer = PeerId.from_public_key(identity.public_key)
    unsigned = Message(topic=topic, data=data, from_peer=peer.to_bytes(), seqno=seqno.to_bytes(8))
    signature = identity.sign(unsigned.signed_bytes())
    key = None
    if peer.extract_public_key() is None:  # not inlinable: send the key along
        key = identity.public_key.to_protobuf()
    return Message(
        topic=topic,
        data=data,
        from_peer=unsigned.from_peer,
        seqno=unsigned.seqno,
        signature=signature,
        key=key,
    )


Ed25519Verifier = Callable[[bytes, bytes, bytes], bool]  # (public key, message, signature)


@functools.lru_cache(maxsize=4096)
def _author_key(from_peer: bytes, key: bytes | None) -> PublicKey | str:
    """The author's public key (from ``key`` or inlined in the peer ID), or why not."""
    try:
        author = PeerId(from_peer)
        if key is not None:
            public_key = PublicKey.from_protobuf(key)
            if not author.matches_public_key(public_key):
                return "key does not match from"
            return public_key
        inlined = author.extract_public_key()
    except (DecodeError, ValueError) as exc:
        return f"bad author or key: {exc}"
    return "no key for a hashed peer ID" if inlined is None else inlined


def verify_message(
    message: Message, policy: SignaturePolicy, verify_ed25519: Ed25519Verifier | None = None
) -> str | None:
    """Check ``message`` against ``policy``; None when fine, else the reason it is invalid.

    ``verify_ed25519`` checks Ed25519 signatures (the backend's ``verify_signature``, the
    Rust core's when native); other key types use ``PublicKey.verify``.
    """
    if policy is SignaturePolicy.STRICT_NO_SIGN:
        if message.signature is not None or message.key is not None:
            return "signature present under StrictNoSign"
        if message.from_peer is not None or message.seqno is not None:
            return "from/seqno present under StrictNoSign"
        return None
    if message.from_peer is None or message.seqno is None:
        return "unsigned message (no from or seqno)"
    if message.signature is None:
        return "missing signature"
    public_key = _author_key(message.from_peer, message.key)
    if isinstance(public_key, str):
        return public_key
    signed = message.signed_bytes()
    if verify_ed25519 is not None and public_key.key_type == KeyType.ED25519:
        valid = verify_ed25519(public_key.data, signed, message.signature)
    else:
        valid = public_key.verify(message.signature, signed)
    return None if valid else "bad signature"
