"""The relayed transport: connections through a circuit relay v2 (libp2p/specs
relay/circuit-v2.md, "Connection Initiation" and "Stop Protocol").

Dialing ``<relay addr>/p2p/<relay>/p2p-circuit/p2p/<target>`` opens a ``hop`` stream
to the relay, sends CONNECT and, on STATUS OK, hands that stream to the swarm as a raw
connection, which it upgrades with Noise and yamux like a TCP one. On the other end the
relay opens a ``stop`` stream; ``RelayedTransport`` answers OK and hands that stream to
the swarm as an inbound connection. Both need the swarm: install with
``RelayedTransport(host).install()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from neonet.core.errors import (
    DecodeError,
    NeoNetError,
    RemoteProtocolError,
    TransportError,
)
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.net.swarm import Connection
from neonet.net.transport import RawConnection
from neonet.net.yamux_session import YamuxStream
from neonet.proto.relay import (
    HOP_PROTOCOL_ID,
    STOP_PROTOCOL_ID,
    FrameReader,
    HopMessage,
    HopType,
    Limit,
    RelayPeer,
    Status,
    StopMessage,
    StopType,
    decode_hop,
    decode_stop,
    encode_hop,
    encode_stop,
)

logger = logging.getLogger("neonet.relayed")

MESSAGE_TIMEOUT = 10.0
CIRCUIT = "p2p-circuit"


class RelayRefusedError(TransportError):
    """The relay (or the target behind it) answered with a status other than OK."""

    def __init__(self, message: str, status: Status) -> None:
        super().__init__(message)
        self.status = status


def split_circuit_address(address: Multiaddr) -> tuple[Multiaddr, PeerId, PeerId]:
    """``(relay address ending in /p2p/<relay>, relay, target)`` of a circuit address."""
    components = address.components
    names = [protocol.name for protocol, _ in components]
    if names.count(CIRCUIT) != 1:
        raise TransportError(f"{address} is not a circuit address (one /p2p-circuit)")
    index = names.index(CIRCUIT)
    relay_addr = Multiaddr(components[:index])
    tail = Multiaddr(components[index + 1 :]) if index + 1 < len(components) else None
    relay = relay_addr.peer_id()
    target = tail.peer_id() if tail is not None else None
    if relay is None or target is None or tail is None or len(tail.components) != 1:
        raise TransportError(f"dial {address}: need …/p2p/<relay>/p2p-circuit/p2p/<target>")
    return relay_addr, relay, target


def connection_of(host: Host, stream: YamuxStream) -> Connection | None:
    """The connection that carries ``stream``."""
    peer = stream.remote_peer
    if not isinstance(peer, PeerId):
        return None
    for connection in host.swarm.connections_to(peer):
        if connection.session is stream.session:
            return connection
    return None


async def read_frame(stream: YamuxStream, reader: FrameReader) -> bytes:
    """The next length-prefixed message on ``stream`` (the caller bounds the time)."""
    while True:
        body = reader.next_frame()
        if body is not None:
            return body
        data = await stream.receive_some(4096)
        if not data:
            raise RemoteProtocolError("the relay stream ended before a complete message")
        reader.receive_data(data)


def circuit_addr(relayed_via: Multiaddr, relay: PeerId) -> Multiaddr:
    """``<address of the relay>/p2p/<relay>/p2p-circuit``."""
    return relayed_via.with_peer_id(relay).encapsulate(f"/{CIRCUIT}")


class RelayedTransport:
    """Dials circuit addresses and accepts relayed connections for ``host``.

    ``accept_from(relay)`` decides whether a relay may terminate a circuit here (by
    default any relay on a direct connection; the relay client narrows it to the relays
    it holds reservations on).
    """

    def __init__(self, host: Host, *, accept_from: Callable[[PeerId], bool] | None = None) -> None:
        self.host = host
        self.accept_from = accept_from or (lambda relay: True)
        self.accepted = 0
        self.dialed = 0

    def install(self) -> None:
        self.host.set_stream_handler(STOP_PROTOCOL_ID, self._handle_stop)
        self.host.swarm.circuit_dialer = self.dial

    async def dial(self, address: Multiaddr) -> RawConnection:
        """Open a relayed raw connection to the target of ``address`` (CONNECT on hop)."""
        relay_addr, relay, target = split_circuit_address(address)
        await self.host.connect(relay_addr)
        relay_connection = self.host.swarm.connections_to(relay)[0]
        if relay_connection.relayed:
            raise TransportError(f"refusing to dial {address} over a relayed connection")
        stream = await self.host.new_stream(relay, [HOP_PROTOCOL_ID])
        try:
            reader = FrameReader()
            with trio.fail_after(MESSAGE_TIMEOUT):
                await stream.send_all(
                    encode_hop(HopMessage(HopType.CONNECT, peer=RelayPeer(target)))
                )
                reply = decode_hop(await read_frame(stream, reader))
            if reply.type != HopType.STATUS:
                raise RemoteProtocolError(f"relay answered CONNECT with {reply.type.name}")
            if reply.status != Status.OK:
                assert reply.status is not None
                raise RelayRefusedError(
                    f"relay {relay} refused the circuit to {target}: {reply.status.name}",
                    reply.status,
                )
        except trio.TooSlowError as exc:
            stream.reset()
            raise TransportError(f"relay {relay} did not answer CONNECT in time") from exc
        except BaseException:
            stream.reset()
            raise
        stream.unread(reader.take_rest())
        self.dialed += 1
        via = circuit_addr(relay_connection.remote_addr, relay)
        return RawConnection(stream, via, via.with_peer_id(target))

    async def _handle_stop(self, stream: YamuxStream) -> None:
        relay = stream.remote_peer
        assert isinstance(relay, PeerId)
        connection = connection_of(self.host, stream)
        reader = FrameReader()
        try:
            with trio.fail_after(MESSAGE_TIMEOUT):
                message = decode_stop(await read_frame(stream, reader))
        except (DecodeError, trio.TooSlowError) as exc:
            logger.info("bad stop message from %s: %s", relay, exc)
            await _stop_status(stream, Status.MALFORMED_MESSAGE)
            return
        if message.type != StopType.CONNECT or message.peer is None:
            await _stop_status(stream, Status.UNEXPECTED_MESSAGE)
            return
        if connection is None or connection.relayed or not self.accept_from(relay):
            await _stop_status(stream, Status.PERMISSION_DENIED)
            return
        source = message.peer.peer_id
        await _stop_status(stream, Status.OK)
        stream.unread(reader.take_rest())
        self.accepted += 1
        via = circuit_addr(connection.remote_addr, relay)
        logger.debug("relayed connection from %s via %s (limit %s)", source, relay, message.limit)
        try:
            await self.host.swarm.accept_inbound(
                RawConnection(stream, via, via.with_peer_id(source))
            )
        except NeoNetError as exc:
            logger.info("relayed connection from %s failed: %s", source, exc)


async def _stop_status(stream: YamuxStream, status: Status) -> None:
    await stream.send_all(encode_stop(StopMessage(StopType.STATUS, status=status)))


def relay_limit_text(limit: Limit | None) -> str:
    if limit is None:
        return "unlimited"
    return f"{limit.duration or '∞'} s, {limit.data or '∞'} bytes each way"
