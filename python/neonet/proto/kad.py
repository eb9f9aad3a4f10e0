"""Kademlia DHT (/ipfs/kad/1.0.0): the message codec, framing and the lookup engine.

libp2p/specs kad-dht/README.md. "RPC messages": every message is the protobuf
``Message`` prefixed with its length as an unsigned varint; a stream may carry several
requests, each answered in order. ``encode_message`` / ``decode_message`` convert
between the protobuf and the frozen ``KadMessage``; ``MessageReader`` splits a byte
stream into messages and refuses anything larger than ``MAX_MESSAGE_SIZE``.

"Peer routing": ``Lookup`` is the iterative search as a synchronous state machine.
It is seeded with peers from the routing table, hands out at most ``alpha`` queries at
a time (``next_queries``), is fed each answer (``on_response`` with the closer peers
the answer named) or failure (``on_failure``, also for timeouts, which the caller
measures), and is finished when the ``k`` closest peers it has heard of have all
answered, or when nobody is left to ask. Value and provider searches use the same
engine and stop earlier when the caller has what it needs. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from hashlib import sha256

from google.protobuf.message import DecodeError as ProtobufDecodeError

from neonet.core.errors import DecodeError, LocalProtocolError
from neonet.core.varint import encode_uvarint, try_decode_uvarint
from neonet.proto.pb import kad_pb2

PROTOCOL_ID = "/ipfs/kad/1.0.0"
K = 20  # replication parameter (spec: "recommended value for k is 20")
ALPHA = 10  # lookup concurrency (spec: "default value of 10")
MAX_MESSAGE_SIZE = 1 << 20  # one framed message (go-libp2p allows 4 MiB; records here are small)
MAX_PEERS_PER_MESSAGE = 64  # closerPeers / providerPeers entries accepted in one message
MAX_ADDRS_PER_PEER = 32
MAX_ADDR_LENGTH = 1024
MAX_PEER_ID_LENGTH = 128
MAX_KEY_LENGTH = 1024
MAX_LOOKUP_CANDIDATES = 1024  # peers a lookup remembers; the farthest are dropped
_MAX_PREFIX_BYTES = len(encode_uvarint(MAX_MESSAGE_SIZE))


class MessageType(IntEnum):
    PUT_VALUE = 0
    GET_VALUE = 1
    ADD_PROVIDER = 2
    GET_PROVIDERS = 3
    FIND_NODE = 4
    PING = 5


class ConnectionType(IntEnum):
    NOT_CONNECTED = 0
    CONNECTED = 1
    CAN_CONNECT = 2
    CANNOT_CONNECT = 3


@dataclass(frozen=True, slots=True)
class KadPeer:
    """A ``Message.Peer``: a peer ID (binary multihash) and its binary multiaddrs."""

    peer_id: bytes
    addrs: tuple[bytes, ...] = ()
    connection: ConnectionType = ConnectionType.NOT_CONNECTED


@dataclass(frozen=True, slots=True)
class KadRecord:
    """A ``Record``: the value stored under ``key``; ``time_received`` is RFC 3339 text."""

    key: bytes
    value: bytes
    time_received: str = ""


@dataclass(frozen=True, slots=True)
class KadMessage:
    """One request or response; unused fields stay empty."""

    type: MessageType
    key: bytes = b""
    record: KadRecord | None = None
    closer_peers: tuple[KadPeer, ...] = ()
    provider_peers: tuple[KadPeer, ...] = ()


def kad_key_of(key: bytes) -> bytes:
    """The point in the keyspace of a record key, provider key or peer ID: SHA-256."""
    return sha256(key).digest()


def _peers_to_pb(peers: Sequence[KadPeer], out: object) -> None:
    for peer in peers:
        entry = out.add()  # type: ignore[attr-defined]
        entry.id = peer.peer_id
        entry.addrs.extend(peer.addrs)
        entry.connection = int(peer.connection)


def encode_message(message: KadMessage) -> bytes:
    """The protobuf body of ``message`` (no length prefix)."""
    pb = kad_pb2.Message()
    pb.type = int(message.type)  # type: ignore[assignment]
    pb.key = message.key
    if message.record is not None:
        pb.record.key = message.record.key
        pb.record.value = message.record.value
        pb.record.timeReceived = message.record.time_received
    _peers_to_pb(message.closer_peers, pb.closerPeers)
    _peers_to_pb(message.provider_peers, pb.providerPeers)
    return pb.SerializeToString()


def frame_message(message: KadMessage) -> bytes:
    """``message`` with its uvarint length prefix, ready for the stream."""
    body = encode_message(message)
    if len(body) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError(f"kad message of {len(body)} bytes exceeds {MAX_MESSAGE_SIZE}")
    return encode_uvarint(len(body)) + body


def _peers_from_pb(entries: Iterable[kad_pb2.Message.Peer], what: str) -> tuple[KadPeer, ...]:
    peers: list[KadPeer] = []
    for entry in entries:
        if len(peers) >= MAX_PEERS_PER_MESSAGE:
            raise DecodeError(f"more than {MAX_PEERS_PER_MESSAGE} {what} in one kad message")
        if not 0 < len(entry.id) <= MAX_PEER_ID_LENGTH:
            raise DecodeError(f"kad peer ID of {len(entry.id)} bytes in {what}")
        if len(entry.addrs) > MAX_ADDRS_PER_PEER:
            raise DecodeError(f"kad peer with more than {MAX_ADDRS_PER_PEER} addresses")
        for address in entry.addrs:
            if len(address) > MAX_ADDR_LENGTH:
                raise DecodeError(f"kad peer address of {len(address)} bytes")
        try:
            connection = ConnectionType(entry.connection)
        except ValueError:
            connection = ConnectionType.NOT_CONNECTED  # unknown hints are only hints
        peers.append(KadPeer(bytes(entry.id), tuple(bytes(a) for a in entry.addrs), connection))
    return tuple(peers)


def decode_message(body: bytes | bytearray | memoryview) -> KadMessage:
    """Parse one protobuf body; ``DecodeError`` on malformed input or broken limits."""
    if len(body) > MAX_MESSAGE_SIZE:
        raise DecodeError(f"kad message of {len(body)} bytes exceeds {MAX_MESSAGE_SIZE}")
    pb = kad_pb2.Message()
    try:
        pb.ParseFromString(bytes(body))
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(f"malformed kad message: {exc}") from None
    try:
        message_type = MessageType(pb.type)
    except ValueError:
        raise DecodeError(f"unknown kad message type {pb.type}") from None
    if len(pb.key) > MAX_KEY_LENGTH:
        raise DecodeError(f"kad key of {len(pb.key)} bytes exceeds {MAX_KEY_LENGTH}")
    record = None
    if pb.HasField("record"):
        if len(pb.record.key) > MAX_KEY_LENGTH:
            raise DecodeError(f"kad record key of {len(pb.record.key)} bytes")
        record = KadRecord(bytes(pb.record.key), bytes(pb.record.value), pb.record.timeReceived)
    return KadMessage(
        type=message_type,
        key=bytes(pb.key),
        record=record,
        closer_peers=_peers_from_pb(pb.closerPeers, "closer peers"),
        provider_peers=_peers_from_pb(pb.providerPeers, "provider peers"),
    )


class MessageReader:
    """Splits the bytes of one kad stream into messages (uvarint length + protobuf)."""

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max = max_message_size

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[KadMessage]:
        """Messages completed by ``data``; ``DecodeError`` on a bad prefix, size or body."""
        self._buffer += data
        messages: list[KadMessage] = []
        while self._buffer:
            decoded = try_decode_uvarint(self._buffer)
            if decoded is None:
                if len(self._buffer) >= _MAX_PREFIX_BYTES:
                    raise DecodeError(f"kad message larger than {self._max} bytes")
                break
            length, offset = decoded
            if length > self._max:
                raise DecodeError(f"kad message of {length} bytes exceeds {self._max}")
            if len(self._buffer) < offset + length:
                break
            body = bytes(self._buffer[offset : offset + length])
            del self._buffer[: offset + length]
            messages.append(decode_message(body))
        return messages

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held (non-zero at EOF means a truncated message)."""
        return len(self._buffer)


# --- the lookup engine ---------------------------------------------------------------


class PeerState(IntEnum):
    WAITING = 0  # heard of, not asked yet
    IN_FLIGHT = 1
    SUCCEEDED = 2
    FAILED = 3


@dataclass(slots=True)
class _Candidate:
    peer_id: bytes
    distance: int
    hop: int  # 1 for seeds, n + 1 for peers named by a hop-n answer
    state: PeerState = PeerState.WAITING


@dataclass(frozen=True, slots=True)
class LookupStatistics:
    queried: int
    succeeded: int
    failed: int
    in_flight: int
    hops: int  # the deepest hop among the k closest peers that answered


@dataclass
class Lookup:
    """An iterative Kademlia lookup for ``target`` (a 32-byte key; see ``kad_key_of``).

    ``next_queries()`` returns peers to ask now (and marks them in flight);
    ``on_response(peer, closer)`` / ``on_failure(peer)`` report answers. ``finished``
    turns true when the ``k`` closest peers not known to have failed have all
    answered, or nothing is left to ask; ``closest()`` is then the result.
    """

    target: bytes
    seeds: Iterable[bytes]
    local_peer_id: bytes = b""
    k: int = K
    alpha: int = ALPHA
    _candidates: dict[bytes, _Candidate] = field(default_factory=dict, init=False)
    _order: list[_Candidate] = field(default_factory=list, init=False)
    _target_int: int = field(default=0, init=False)
    _dirty: bool = field(default=False, init=False)
    _in_flight: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if len(self.target) != 32:
            raise LocalProtocolError("a lookup target is a 32-byte key")
        if self.k < 1 or self.alpha < 1:
            raise LocalProtocolError("k and alpha must be at least 1")
        self._target_int = int.from_bytes(self.target)
        self._add(self.seeds, hop=1)

    def _add(self, peers: Iterable[bytes], hop: int) -> None:
        for peer_id in peers:
            if peer_id == self.local_peer_id or peer_id in self._candidates:
                continue
            distance = int.from_bytes(kad_key_of(peer_id)) ^ self._target_int
            candidate = _Candidate(peer_id, distance, hop)
            self._candidates[peer_id] = candidate
            self._order.append(candidate)
            self._dirty = True
        if self._dirty:
            self._order.sort(key=lambda candidate: candidate.distance)
            self._dirty = False
            # Bound memory: forget the farthest peers that are not being asked.
            while len(self._order) > MAX_LOOKUP_CANDIDATES:
                for index in range(len(self._order) - 1, -1, -1):
                    if self._order[index].state != PeerState.IN_FLIGHT:
                        dropped = self._order.pop(index)
                        del self._candidates[dropped.peer_id]
                        break
                else:
                    break

    def _live_closest(self) -> list[_Candidate]:
        """The k closest candidates that have not failed."""
        live: list[_Candidate] = []
        for candidate in self._order:
            if candidate.state != PeerState.FAILED:
                live.append(candidate)
                if len(live) == self.k:
                    break
        return live

    def next_queries(self) -> list[bytes]:
        """Peers to query now (closest first), keeping at most ``alpha`` in flight."""
        chosen: list[bytes] = []
        if self._in_flight >= self.alpha:
            return chosen
        for candidate in self._live_closest():
            if candidate.state == PeerState.WAITING:
                candidate.state = PeerState.IN_FLIGHT
                self._in_flight += 1
                chosen.append(candidate.peer_id)
                if self._in_flight >= self.alpha:
                    break
        return chosen

    def _take(self, peer_id: bytes) -> _Candidate:
        candidate = self._candidates.get(peer_id)
        if candidate is None or candidate.state != PeerState.IN_FLIGHT:
            raise LocalProtocolError("answer for a peer that was not queried")
        self._in_flight -= 1
        return candidate

    def on_response(self, peer_id: bytes, closer: Iterable[bytes]) -> None:
        """``peer_id`` answered and named ``closer`` peers."""
        candidate = self._take(peer_id)
        candidate.state = PeerState.SUCCEEDED
        self._add(closer, hop=candidate.hop + 1)

    def on_failure(self, peer_id: bytes) -> None:
        """``peer_id`` could not be reached, timed out or answered nonsense."""
        self._take(peer_id).state = PeerState.FAILED

    @property
    def finished(self) -> bool:
        live = self._live_closest()
        if all(candidate.state == PeerState.SUCCEEDED for candidate in live):
            return True
        return self._in_flight == 0 and not any(
            candidate.state == PeerState.WAITING for candidate in live
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def closest(self) -> list[bytes]:
        """The (up to) k closest peers that answered, nearest first."""
        return [c.peer_id for c in self._order if c.state == PeerState.SUCCEEDED][: self.k]

    def hop_of(self, peer_id: bytes) -> int:
        candidate = self._candidates.get(peer_id)
        return candidate.hop if candidate is not None else 0

    def statistics(self) -> LookupStatistics:
        states = [candidate.state for candidate in self._order]
        answered = [c for c in self._order if c.state == PeerState.SUCCEEDED][: self.k]
        return LookupStatistics(
            queried=sum(state != PeerState.WAITING for state in states),
            succeeded=states.count(PeerState.SUCCEEDED),
            failed=states.count(PeerState.FAILED),
            in_flight=self._in_flight,
            hops=max((c.hop for c in answered), default=0),
        )
