"""Circuit relay v2 (libp2p/specs relay/circuit-v2.md): codec, vouchers, relay bookkeeping.

Sans-I/O, three parts:

- the ``HopMessage`` / ``StopMessage`` codec ("Protobuf" section): uvarint
  length-prefixed protobufs of at most ``MAX_MESSAGE_SIZE`` bytes, decoded into frozen
  dataclasses and checked (a CONNECT names a valid peer, a STATUS carries a known
  status, lists are bounded); ``FrameReader`` splits a stream into frames and hands
  back what follows the last one (the relayed bytes after STATUS OK);
- reservation vouchers ("Reservation Vouchers"): a ``Voucher`` protobuf in a signed
  envelope, domain ``libp2p-relay-rsvp``, payload type 0x0302;
- ``RelayResources``: the relay's reservation and circuit tables with every limit the
  spec mentions (reservation expiry, total / per-peer / per-IP reservations, total and
  per-peer circuits). Time is an argument: ``now`` is a monotonic clock in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

from google.protobuf.message import DecodeError as ProtobufDecodeError

from neonet.core.envelope import open_envelope, seal
from neonet.core.errors import DecodeError, LocalProtocolError
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.core.ratelimit import RateLimiter
from neonet.core.varint import encode_uvarint, try_decode_uvarint
from neonet.proto.pb import relay_pb2

HOP_PROTOCOL_ID = "/libp2p/circuit/relay/0.2.0/hop"
STOP_PROTOCOL_ID = "/libp2p/circuit/relay/0.2.0/stop"
# go-libp2p and rust-libp2p cap relay messages at 4 KiB too.
MAX_MESSAGE_SIZE = 4096
MAX_ADDRS = 32
MAX_ADDR_SIZE = 1024
VOUCHER_DOMAIN = "libp2p-relay-rsvp"
VOUCHER_PAYLOAD_TYPE = b"\x03\x02"  # multicodec 0x0302, written as go and js write it
MAX_U32 = (1 << 32) - 1
_Key = TypeVar("_Key", PeerId, str)


class Status(IntEnum):
    UNUSED = 0
    OK = 100
    RESERVATION_REFUSED = 200
    RESOURCE_LIMIT_EXCEEDED = 201
    PERMISSION_DENIED = 202
    CONNECTION_FAILED = 203
    NO_RESERVATION = 204
    MALFORMED_MESSAGE = 400
    UNEXPECTED_MESSAGE = 401


class HopType(IntEnum):
    RESERVE = 0
    CONNECT = 1
    STATUS = 2


class StopType(IntEnum):
    CONNECT = 0
    STATUS = 1


@dataclass(frozen=True, slots=True)
class Limit:
    """Per-circuit limits: seconds and bytes per direction; 0 means unlimited."""

    duration: int = 0
    data: int = 0


@dataclass(frozen=True, slots=True)
class RelayPeer:
    peer_id: PeerId
    addrs: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Reservation:
    """``expire`` is a UNIX time in seconds; ``addrs`` are binary multiaddrs of the relay."""

    expire: int
    addrs: tuple[bytes, ...] = ()
    voucher: bytes | None = None


@dataclass(frozen=True, slots=True)
class HopMessage:
    type: HopType
    peer: RelayPeer | None = None
    reservation: Reservation | None = None
    limit: Limit | None = None
    status: Status | None = None


@dataclass(frozen=True, slots=True)
class StopMessage:
    type: StopType
    peer: RelayPeer | None = None
    limit: Limit | None = None
    status: Status | None = None


# --- framing --------------------------------------------------------------------------
def frame(body: bytes) -> bytes:
    if len(body) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError(f"relay message of {len(body)} bytes exceeds {MAX_MESSAGE_SIZE}")
    return encode_uvarint(len(body)) + body


class FrameReader:
    """Splits uvarint length-prefixed frames out of a byte stream, refusing oversized ones."""

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        # Refuse early: a peer cannot make us buffer more than one maximal frame.
        if len(self._buffer) > self._max_size + 10:
            self._check_head()

    def _check_head(self) -> tuple[int, int] | None:
        decoded = try_decode_uvarint(self._buffer)
        if decoded is None:
            return None
        length, offset = decoded
        if length > self._max_size:
            raise DecodeError(f"relay message of {length} bytes exceeds {self._max_size}")
        return length, offset

    def next_frame(self) -> bytes | None:
        """The next complete frame's body, or None when more bytes are needed."""
        head = self._check_head()
        if head is None:
            return None
        length, offset = head
        if len(self._buffer) < offset + length:
            return None
        body = bytes(self._buffer[offset : offset + length])
        del self._buffer[: offset + length]
        return body

    def take_rest(self) -> bytes:
        """Everything buffered after the frames read so far (relayed payload)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


# --- messages -------------------------------------------------------------------------
def _peer_to_pb(peer: RelayPeer, message: relay_pb2.Peer) -> None:
    message.id = peer.peer_id.to_bytes()
    message.addrs.extend(peer.addrs)


def _limit_to_pb(limit: Limit, message: relay_pb2.Limit) -> None:
    if not 0 <= limit.duration <= MAX_U32:
        raise LocalProtocolError("limit duration does not fit a uint32")
    if limit.duration:
        message.duration = limit.duration
    if limit.data:
        message.data = limit.data
    message.SetInParent()


def encode_hop(message: HopMessage) -> bytes:
    """A length-prefixed ``HopMessage``."""
    pb = relay_pb2.HopMessage(type=int(message.type))  # type: ignore[arg-type]
    if message.peer is not None:
        _peer_to_pb(message.peer, pb.peer)
    if message.reservation is not None:
        pb.reservation.expire = message.reservation.expire
        pb.reservation.addrs.extend(message.reservation.addrs)
        if message.reservation.voucher is not None:
            pb.reservation.voucher = message.reservation.voucher
    if message.limit is not None:
        _limit_to_pb(message.limit, pb.limit)
    if message.status is not None:
        pb.status = int(message.status)  # type: ignore[assignment]
    return frame(pb.SerializeToString())


def encode_stop(message: StopMessage) -> bytes:
    """A length-prefixed ``StopMessage``."""
    pb = relay_pb2.StopMessage(type=int(message.type))  # type: ignore[arg-type]
    if message.peer is not None:
        _peer_to_pb(message.peer, pb.peer)
    if message.limit is not None:
        _limit_to_pb(message.limit, pb.limit)
    if message.status is not None:
        pb.status = int(message.status)  # type: ignore[assignment]
    return frame(pb.SerializeToString())


def _check_addrs(addrs: list[bytes], what: str) -> tuple[bytes, ...]:
    if len(addrs) > MAX_ADDRS:
        raise DecodeError(f"{what} lists {len(addrs)} addresses, more than {MAX_ADDRS}")
    for address in addrs:
        if len(address) > MAX_ADDR_SIZE:
            raise DecodeError(f"{what} address longer than {MAX_ADDR_SIZE} bytes")
    return tuple(bytes(address) for address in addrs)


def _peer_from_pb(message: relay_pb2.Peer) -> RelayPeer:
    if not message.HasField("id"):
        raise DecodeError("relay Peer without an id")
    return RelayPeer(PeerId(bytes(message.id)), _check_addrs(list(message.addrs), "relay Peer"))


def _limit_from_pb(message: relay_pb2.Limit) -> Limit:
    return Limit(duration=message.duration, data=message.data)


def _status_from_pb(value: int) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise DecodeError(f"unknown relay status {value}") from None


def decode_hop(body: bytes) -> HopMessage:
    """Decode one ``HopMessage`` body; ``DecodeError`` if it is malformed or incomplete."""
    pb = relay_pb2.HopMessage()
    try:
        pb.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"malformed HopMessage: {exc}") from exc
    if not pb.HasField("type"):
        raise DecodeError("HopMessage without a type")
    try:
        kind = HopType(pb.type)
    except ValueError:
        raise DecodeError(f"unknown HopMessage type {pb.type}") from None
    peer = _peer_from_pb(pb.peer) if pb.HasField("peer") else None
    if kind == HopType.CONNECT and peer is None:
        raise DecodeError("HopMessage CONNECT without a peer")
    reservation = None
    if pb.HasField("reservation"):
        reservation = Reservation(
            expire=pb.reservation.expire,
            addrs=_check_addrs(list(pb.reservation.addrs), "Reservation"),
            voucher=bytes(pb.reservation.voucher) if pb.reservation.HasField("voucher") else None,
        )
    status = _status_from_pb(pb.status) if pb.HasField("status") else None
    if kind == HopType.STATUS and status is None:
        raise DecodeError("HopMessage STATUS without a status")
    return HopMessage(
        type=kind,
        peer=peer,
        reservation=reservation,
        limit=_limit_from_pb(pb.limit) if pb.HasField("limit") else None,
        status=status,
    )


def decode_stop(body: bytes) -> StopMessage:
    """Decode one ``StopMessage`` body; ``DecodeError`` if it is malformed or incomplete."""
    pb = relay_pb2.StopMessage()
    try:
        pb.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"malformed StopMessage: {exc}") from exc
    if not pb.HasField("type"):
        raise DecodeError("StopMessage without a type")
    try:
        kind = StopType(pb.type)
    except ValueError:
        raise DecodeError(f"unknown StopMessage type {pb.type}") from None
    peer = _peer_from_pb(pb.peer) if pb.HasField("peer") else None
    if kind == StopType.CONNECT and peer is None:
        raise DecodeError("StopMessage CONNECT without a peer")
    status = _status_from_pb(pb.status) if pb.HasField("status") else None
    if kind == StopType.STATUS and status is None:
        raise DecodeError("StopMessage STATUS without a status")
    return StopMessage(
        type=kind,
        peer=peer,
        limit=_limit_from_pb(pb.limit) if pb.HasField("limit") else None,
        status=status,
    )


# --- vouchers -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Voucher:
    relay: PeerId
    peer: PeerId
    expiration: int


def make_voucher(identity: Ed25519Identity, peer: PeerId, expiration: int) -> bytes:
    """A reservation voucher signed by the relay's ``identity`` (a signed envelope)."""
    relay = PeerId.from_public_key(identity.public_key)
    # Canonical: fields in id order, no unknown fields (protobuf's serializer does both).
    payload = relay_pb2.Voucher(
        relay=relay.to_bytes(), peer=peer.to_bytes(), expiration=expiration
    ).SerializeToString(deterministic=True)
    return seal(identity, VOUCHER_DOMAIN, VOUCHER_PAYLOAD_TYPE, payload)


def open_voucher(data: bytes) -> Voucher:
    """Verify a voucher envelope; the signer must be the relay it names."""
    opened = open_envelope(data, VOUCHER_DOMAIN, VOUCHER_PAYLOAD_TYPE)
    pb = relay_pb2.Voucher()
    try:
        pb.ParseFromString(opened.payload)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"malformed Voucher: {exc}") from exc
    if not (pb.HasField("relay") and pb.HasField("peer") and pb.HasField("expiration")):
        raise DecodeError("Voucher lacks relay, peer or expiration")
    voucher = Voucher(PeerId(bytes(pb.relay)), PeerId(bytes(pb.peer)), pb.expiration)
    if voucher.relay != opened.signer:
        raise DecodeError("Voucher is not signed by the relay it names")
    return voucher


# --- the relay's tables ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Limits of a relay; every one answers with a clear status when hit."""

    reservation_ttl: int = 3600  # seconds; the client refreshes before it runs out
    max_reservations: int = 1024
    max_reservations_per_ip: int = 8
    max_circuits: int = 256
    max_circuits_per_peer: int = 8  # as source or destination
    max_circuits_per_ip: int = 16  # opened from one source IP
    # Token buckets per source IP: requests per second and burst (RESERVE, CONNECT).
    reservation_rate: float = 1.0
    reservation_burst: int = 8
    circuit_rate: float = 10.0
    circuit_burst: int = 32
    circuit: Limit = field(default_factory=lambda: Limit(duration=120, data=1 << 20))


@dataclass(slots=True)
class _Reservation:
    ip: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ReserveDecision:
    status: Status
    expires_at: float = 0.0  # monotonic
    refreshed: bool = False


@dataclass(frozen=True, slots=True)
class CircuitDecision:
    status: Status
    circuit_id: int = 0


class RelayResources:
    """Reservations and circuits of one relay (circuit-v2.md "Reservation", "Connection
    Initiation"). Reservations are keyed by peer (one per peer; reserving again refreshes
    it) and die on expiry or when the peer disconnects (``forget_peer``).
    """

    def __init__(self, limits: RelayLimits | None = None) -> None:
        self.limits = limits or RelayLimits()
        self._reservations: dict[PeerId, _Reservation] = {}
        self._circuits: dict[int, tuple[PeerId, PeerId, str]] = {}
        self._circuits_by_peer: dict[PeerId, int] = {}
        self._circuits_by_ip: dict[str, int] = {}
        self._next_circuit = 1
        limits = self.limits
        self._reserve_rate: RateLimiter[str] = RateLimiter(
            limits.reservation_rate, limits.reservation_burst, max_keys=4 * limits.max_reservations
        )
        self._circuit_rate: RateLimiter[str] = RateLimiter(
            limits.circuit_rate, limits.circuit_burst, max_keys=4 * limits.max_reservations
        )

    def _expire(self, now: float) -> None:
        for peer in [p for p, r in self._reservations.items() if r.expires_at <= now]:
            del self._reservations[peer]

    def reserve(self, peer: PeerId, ip: str, now: float) -> ReserveDecision:
        self._expire(now)
        if not self._reserve_rate.allow(ip, now):
            return ReserveDecision(Status.RESOURCE_LIMIT_EXCEEDED)
        expires_at = now + self.limits.reservation_ttl
        existing = self._reservations.get(peer)
        if existing is not None and existing.ip == ip:
            existing.expires_at = expires_at
            return ReserveDecision(Status.OK, expires_at, refreshed=True)
        if existing is None and len(self._reservations) >= self.limits.max_reservations:
            return ReserveDecision(Status.RESERVATION_REFUSED)
        same_ip = sum(1 for p, r in self._reservations.items() if r.ip == ip and p != peer)
        if same_ip >= self.limits.max_reservations_per_ip:
            return ReserveDecision(Status.RESERVATION_REFUSED)
        self._reservations[peer] = _Reservation(ip, expires_at)
        return ReserveDecision(Status.OK, expires_at)

    def has_reservation(self, peer: PeerId, now: float) -> bool:
        self._expire(now)
        return peer in self._reservations

    def reservation_count(self, now: float) -> int:
        self._expire(now)
        return len(self._reservations)

    def forget_peer(self, peer: PeerId) -> None:
        """``peer`` disconnected: its reservation is no longer valid."""
        self._reservations.pop(peer, None)

    def open_circuit(
        self, source: PeerId, destination: PeerId, now: float, source_ip: str = ""
    ) -> CircuitDecision:
        if not self._circuit_rate.allow(source_ip, now):
            return CircuitDecision(Status.RESOURCE_LIMIT_EXCEEDED)
        if not self.has_reservation(destination, now):
            return CircuitDecision(Status.NO_RESERVATION)
        limit = self.limits.max_circuits_per_peer
        if (
            len(self._circuits) >= self.limits.max_circuits
            or self._circuits_by_peer.get(source, 0) >= limit
            or self._circuits_by_peer.get(destination, 0) >= limit
            or self._circuits_by_ip.get(source_ip, 0) >= self.limits.max_circuits_per_ip
        ):
            return CircuitDecision(Status.RESOURCE_LIMIT_EXCEEDED)
        circuit_id = self._next_circuit
        self._next_circuit += 1
        self._circuits[circuit_id] = (source, destination, source_ip)
        for peer in (source, destination):
            self._circuits_by_peer[peer] = self._circuits_by_peer.get(peer, 0) + 1
        self._circuits_by_ip[source_ip] = self._circuits_by_ip.get(source_ip, 0) + 1
        return CircuitDecision(Status.OK, circuit_id)

    def close_circuit(self, circuit_id: int) -> None:
        entry = self._circuits.pop(circuit_id, None)
        if entry is None:
            return
        source, destination, source_ip = entry
        _decrement(self._circuits_by_peer, source)
        _decrement(self._circuits_by_peer, destination)
        _decrement(self._circuits_by_ip, source_ip)

    @property
    def circuit_count(self) -> int:
        return len(self._circuits)


def _decrement(counts: dict[_Key, int], key: _Key) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


class DataBudget:
    """Bytes one direction of a circuit may still carry (``Limit.data``; 0 = unlimited)."""

    def __init__(self, limit: int) -> None:
        self._left = limit if limit > 0 else None

    def take(self, size: int) -> int:
        """How many of ``size`` bytes may pass now; less than ``size`` means the end."""
        if self._left is None:
            return size
        allowed = min(size, self._left)
        self._left -= allowed
        return allowed

    @property
    def exhausted(self) -> bool:
        return self._left == 0
