"""Direct Connection Upgrade through Relay (libp2p/specs relay/DCUtR.md): codec and state.

Sans-I/O parts of ``/libp2p/dcutr``:

- the ``HolePunch`` codec ("RPC messages"): uvarint length-prefixed proto2 messages of
  at most 4 KiB, type CONNECT or SYNC, with the sender's observed addresses;
- ``ObservedAddrs``: the small, bounded set of addresses other peers report seeing us
  at (identify's ``observed_addr``); an address counts as confirmed once
  ``min_observers`` distinct peers reported it. These are what CONNECT advertises.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from google.protobuf.message import DecodeError as ProtobufDecodeError

from neonet.core.errors import DecodeError
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.proto.pb import dcutr_pb2
from neonet.proto.relay import FrameReader, frame

PROTOCOL_ID = "/libp2p/dcutr"
MAX_MESSAGE_SIZE = 4096  # the spec: refuse messages larger than 4 KiB
MAX_ADDRS = 32
MAX_ATTEMPTS = 3  # the spec: the inbound peer tries three times in all


class HolePunchType(IntEnum):
    CONNECT = 100
    SYNC = 300


@dataclass(frozen=True, slots=True)
class HolePunch:
    type: HolePunchType
    addrs: tuple[Multiaddr, ...] = ()


def encode_hole_punch(message: HolePunch) -> bytes:
    pb = dcutr_pb2.HolePunch(type=int(message.type))  # type: ignore[arg-type]
    pb.ObsAddrs.extend(address.to_bytes() for address in message.addrs[:MAX_ADDRS])
    return frame(pb.SerializeToString())


def decode_hole_punch(body: bytes) -> HolePunch:
    """Decode one message; addresses NeoNet cannot parse are skipped, not fatal."""
    if len(body) > MAX_MESSAGE_SIZE:
        raise DecodeError(f"HolePunch message larger than {MAX_MESSAGE_SIZE} bytes")
    pb = dcutr_pb2.HolePunch()
    try:
        pb.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"malformed HolePunch: {exc}") from exc
    if not pb.HasField("type"):
        raise DecodeError("HolePunch without a type")
    try:
        kind = HolePunchType(pb.type)
    except ValueError:
        raise DecodeError(f"unknown HolePunch type {pb.type}") from None
    if len(pb.ObsAddrs) > MAX_ADDRS:
        raise DecodeError(f"HolePunch lists more than {MAX_ADDRS} addresses")
    addrs = []
    for raw in pb.ObsAddrs:
        try:
            addrs.append(Multiaddr.from_bytes(bytes(raw)))
        except DecodeError:
            continue
    return HolePunch(kind, tuple(addrs))


class HolePunchReader(FrameReader):
    """Frames of ``/libp2p/dcutr`` (4 KiB at most)."""

    def __init__(self) -> None:
        super().__init__(MAX_MESSAGE_SIZE)


def tcp_candidates(addrs: tuple[Multiaddr, ...] | list[Multiaddr]) -> list[Multiaddr]:
    """The addresses a TCP hole punch can use: /ip4|ip6/…/tcp/… with no relay or /ws part."""
    found = []
    for address in addrs:
        names = address.without_peer_id().protocol_names()
        candidate = len(names) == 2 and names[0] in ("ip4", "ip6") and names[1] == "tcp"
        if candidate and address.without_peer_id() not in found:
            found.append(address.without_peer_id())
    return found


class ObservedAddrs:
    """What others observe our address to be, bounded to ``capacity`` addresses.

    Each address keeps the set of peers that reported it (at most ``MAX_OBSERVERS``);
    the least recently reported address is dropped when the set is full.
    """

    MAX_OBSERVERS = 16

    def __init__(self, *, capacity: int = 8, min_observers: int = 1) -> None:
        self.capacity = capacity
        self.min_observers = min_observers
        self._seen: dict[Multiaddr, set[PeerId]] = {}

    def record(self, address: Multiaddr, observer: PeerId) -> None:
        if "p2p-circuit" in address.protocol_names():
            return  # a relayed connection says nothing about our own NAT mapping
        address = address.without_peer_id()
        observers = self._seen.pop(address, set())
        if len(observers) < self.MAX_OBSERVERS:
            observers.add(observer)
        self._seen[address] = observers
        while len(self._seen) > self.capacity:
            del self._seen[next(iter(self._seen))]

    def confirmed(self) -> list[Multiaddr]:
        """Addresses reported by at least ``min_observers`` peers, most recent first."""
        return [a for a, o in reversed(self._seen.items()) if len(o) >= self.min_observers]

    def all(self) -> list[Multiaddr]:
        return list(reversed(self._seen))
