"""Circuit relay v2 service and client (libp2p/specs relay/circuit-v2.md).

``open_relay(node)`` serves ``/libp2p/circuit/relay/0.2.0/hop``: RESERVE (with an
expiry and a signed voucher), CONNECT (a ``stop`` stream to the target, then the two
streams are spliced, within the circuit ``Limit`` of duration and bytes per direction),
and every table limit of ``RelayLimits``, each answered with its status code.

``open_relay_client(node, relays)`` reserves a slot on each relay, keeps the
reservations refreshed, advertises the resulting ``…/p2p/<relay>/p2p-circuit``
addresses, accepts relayed connections (``stop``) and lets the node dial circuit
addresses (``neonet.net.relayed``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import trio

from neonet.core.errors import DecodeError, NeoNetError, RemoteProtocolError, TransportError
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.net.relayed import (
    MESSAGE_TIMEOUT,
    RelayedTransport,
    RelayRefusedError,
    connection_of,
    read_frame,
)
from neonet.net.swarm import Connection
from neonet.net.yamux_session import YamuxStream
from neonet.proto.relay import (
    HOP_PROTOCOL_ID,
    STOP_PROTOCOL_ID,
    DataBudget,
    FrameReader,
    HopMessage,
    HopType,
    Limit,
    RelayLimits,
    RelayPeer,
    RelayResources,
    Reservation,
    Status,
    StopMessage,
    StopType,
    Voucher,
    decode_hop,
    decode_stop,
    encode_hop,
    encode_stop,
    make_voucher,
    open_voucher,
)
from neonet.services.identify import IdentifyService

logger = logging.getLogger("neonet.relay")

SPLICE_CHUNK = 262144


class NodeLike(Protocol):
    """What the relay needs of a node (``neonet.Node`` has it)."""

    @property
    def host(self) -> Host: ...

    @property
    def identify_service(self) -> IdentifyService: ...


@dataclass
class RelayStatistics:
    reservations_accepted: int = 0
    reservations_refused: int = 0
    circuits_opened: int = 0
    circuits_refused: int = 0
    circuits_limited: int = 0  # ended by the duration or data limit
    bytes_relayed: int = 0


def _ip_of(connection: Connection) -> str:
    for name, value in connection.remote_addr:
        if name in ("ip4", "ip6"):
            return value
    return str(connection.remote_addr)


class RelayService:
    """The relay (hop) side. ``now`` is a monotonic clock, ``wall_clock`` gives UNIX time."""

    def __init__(
        self,
        host: Host,
        limits: RelayLimits | None = None,
        *,
        public_addrs: Sequence[Multiaddr] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.resources = RelayResources(limits)
        self.limits = self.resources.limits
        self.public_addrs = list(public_addrs) if public_addrs is not None else None
        self.wall_clock = wall_clock
        self.statistics = RelayStatistics()

    def install(self) -> None:
        self.host.set_stream_handler(HOP_PROTOCOL_ID, self._handle_hop)
        self.host.swarm.on_disconnect.append(self._on_disconnect)

    def _on_disconnect(self, connection: Connection) -> None:
        if not self.host.swarm.connections_to(connection.remote_peer):
            self.resources.forget_peer(connection.remote_peer)

    def _advertised_addrs(self) -> list[bytes]:
        addrs = self.public_addrs if self.public_addrs is not None else self.host.listen_addrs
        return [a.with_peer_id(self.host.peer_id).to_bytes() for a in addrs]

    async def _reply(self, stream: YamuxStream, status: Status, **fields: object) -> None:
        message = HopMessage(HopType.STATUS, status=status, **fields)  # type: ignore[arg-type]
        await stream.send_all(encode_hop(message))

    async def _handle_hop(self, stream: YamuxStream) -> None:
        peer = stream.remote_peer
        assert isinstance(peer, PeerId)
        connection = connection_of(self.host, stream)
        reader = FrameReader()
        try:
            with trio.fail_after(MESSAGE_TIMEOUT):
                message = decode_hop(await read_frame(stream, reader))
        except (DecodeError, trio.TooSlowError) as exc:
            logger.info("bad hop message from %s: %s", peer, exc)
            await self._reply(stream, Status.MALFORMED_MESSAGE)
            return
        if connection is None or connection.relayed:
            # The spec: no reservations or circuits over relayed connections.
            await self._reply(stream, Status.PERMISSION_DENIED)
            return
        if message.type == HopType.RESERVE:
            await self._reserve(stream, peer, connection)
        elif message.type == HopType.CONNECT:
            assert message.peer is not None
            await self._connect(
                stream, peer, _ip_of(connection), message.peer.peer_id, reader.take_rest()
            )
        else:
            await self._reply(stream, Status.UNEXPECTED_MESSAGE)

    async def _reserve(self, stream: YamuxStream, peer: PeerId, connection: Connection) -> None:
        decision = self.resources.reserve(peer, _ip_of(connection), trio.current_time())
        if decision.status != Status.OK:
            self.statistics.reservations_refused += 1
            await self._reply(stream, decision.status)
            return
        self.statistics.reservations_accepted += 1
        expire = int(self.wall_clock()) + self.limits.reservation_ttl
        reservation = Reservation(
            expire=expire,
            addrs=tuple(self._advertised_addrs()),
            voucher=make_voucher(self.host.identity, peer, expire),
        )
        await self._reply(stream, Status.OK, reservation=reservation, limit=self.limits.circuit)
        await stream.send_eof()

    async def _connect(
        self, hop: YamuxStream, source: PeerId, source_ip: str, target: PeerId, early_data: bytes
    ) -> None:
        decision = self.resources.open_circuit(source, target, trio.current_time(), source_ip)
        if decision.status == Status.OK and not self.host.swarm.connections_to(target):
            self.resources.close_circuit(decision.circuit_id)
            decision = type(decision)(Status.NO_RESERVATION)
        if decision.status != Status.OK:
            self.statistics.circuits_refused += 1
            await self._reply(hop, decision.status)
            return
        limit = self.limits.circuit
        try:
            stop = await self._open_stop(source, target, limit)
            if stop is None:
                self.statistics.circuits_refused += 1
                await self._reply(hop, Status.CONNECTION_FAILED)
                return
            stop_stream, stop_early = stop
            await self._reply(hop, Status.OK, limit=limit)
            self.statistics.circuits_opened += 1
            await self._splice(hop, stop_stream, limit, early_data, stop_early)
        finally:
            self.resources.close_circuit(decision.circuit_id)

    async def _open_stop(
        self, source: PeerId, target: PeerId, limit: Limit
    ) -> tuple[YamuxStream, bytes] | None:
        try:
            with trio.fail_after(MESSAGE_TIMEOUT):
                stream = await self.host.new_stream(target, [STOP_PROTOCOL_ID])
                try:
                    await stream.send_all(
                        encode_stop(
                            StopMessage(StopType.CONNECT, peer=RelayPeer(source), limit=limit)
                        )
                    )
                    reader = FrameReader()
                    reply = decode_stop(await read_frame(stream, reader))
                except BaseException:
                    stream.reset()
                    raise
        except (NeoNetError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            logger.info("stop stream to %s failed: %s", target, exc)
            return None
        if reply.type != StopType.STATUS or reply.status != Status.OK:
            logger.info("%s refused the circuit from %s: %s", target, source, reply.status)
            stream.reset()
            return None
        return stream, reader.take_rest()

    async def _splice(
        self,
        hop: YamuxStream,
        stop: YamuxStream,
        limit: Limit,
        hop_early: bytes,
        stop_early: bytes,
    ) -> None:
        limited = False

        async def pump(source: YamuxStream, sink: YamuxStream, early: bytes) -> None:
            nonlocal limited
            budget = DataBudget(limit.data)
            data = early
            while True:
                if data:
                    allowed = budget.take(len(data))
                    if allowed:
                        await sink.send_all(data[:allowed])
                        self.statistics.bytes_relayed += allowed
                    if allowed < len(data) or budget.exhausted:
                        limited = True
                        nursery.cancel_scope.cancel()
                        return
                data = await source.receive_some(SPLICE_CHUNK)
                if not data:
                    await sink.send_eof()
                    return

        try:
            with trio.move_on_after(limit.duration or float("inf")) as duration_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pump, hop, stop, hop_early)
                    nursery.start_soon(pump, stop, hop, stop_early)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if limited or duration_scope.cancelled_caught:
            # The spec: past the limit, reset the stream to the source and to the target.
            self.statistics.circuits_limited += 1
            hop.reset()
            stop.reset()
        else:
            stop.close_now()


@asynccontextmanager
async def open_relay(
    node: NodeLike,
    limits: RelayLimits | None = None,
    *,
    public_addrs: Sequence[Multiaddr] | None = None,
) -> AsyncIterator[RelayService]:
    """Serve circuit relay v2 (hop) on ``node`` until the block ends."""
    service = RelayService(node.host, limits, public_addrs=public_addrs)
    service.install()
    node.identify_service.announce_change()
    try:
        yield service
    finally:
        node.host.remove_stream_handler(HOP_PROTOCOL_ID)
        if service._on_disconnect in node.host.swarm.on_disconnect:
            node.host.swarm.on_disconnect.remove(service._on_disconnect)


# --- the client ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ReservationInfo:
    """A reservation held on ``relay``: until ``expire`` (UNIX s), reachable at ``addrs``."""

    relay: PeerId
    expire: int
    addrs: tuple[Multiaddr, ...]
    limit: Limit | None
    voucher: Voucher | None


async def reserve(
    host: Host, relay_addr: Multiaddr, *, now: float | None = None
) -> ReservationInfo:
    """Reserve a slot on the relay at ``relay_addr`` (which ends in /p2p/<relay>)."""
    relay = relay_addr.peer_id()
    if relay is None:
        raise TransportError(f"{relay_addr}: a relay address must end in /p2p/<relay>")
    await host.connect(relay_addr)
    stream = await host.new_stream(relay, [HOP_PROTOCOL_ID])
    try:
        with trio.fail_after(MESSAGE_TIMEOUT):
            await stream.send_all(encode_hop(HopMessage(HopType.RESERVE)))
            reply = decode_hop(await read_frame(stream, FrameReader()))
    finally:
        await stream.aclose()
    if reply.type != HopType.STATUS:
        raise RemoteProtocolError(f"relay answered RESERVE with {reply.type.name}")
    if reply.status != Status.OK or reply.reservation is None:
        status = reply.status or Status.UNUSED
        raise RelayRefusedError(f"relay {relay} refused the reservation: {status.name}", status)
    voucher = None
    if reply.reservation.voucher is not None:
        voucher = open_voucher(reply.reservation.voucher)
        if voucher.relay != relay or voucher.peer != host.peer_id:
            raise RemoteProtocolError("reservation voucher names another relay or peer")
    wall = time.time() if now is None else now
    if reply.reservation.expire <= wall:
        raise RemoteProtocolError("relay granted a reservation that has already expired")
    own = []
    for raw in reply.reservation.addrs:
        try:
            address = Multiaddr.from_bytes(raw)
        except DecodeError:
            continue
        if address.peer_id() in (None, relay):
            own.append(address.with_peer_id(relay).encapsulate("/p2p-circuit"))
    if not own:  # the relay listed no address: use the one we reached it at
        own.append(relay_addr.with_peer_id(relay).encapsulate("/p2p-circuit"))
    return ReservationInfo(relay, reply.reservation.expire, tuple(own), reply.limit, voucher)


@dataclass
class RelayClient:
    """Reservations on relays plus the relayed transport of one node."""

    node: NodeLike
    transport: RelayedTransport
    reservations: dict[PeerId, ReservationInfo] = field(default_factory=dict)
    _changed: trio.Event = field(default_factory=trio.Event)

    def circuit_addrs(self) -> list[Multiaddr]:
        return [a for info in self.reservations.values() for a in info.addrs]

    async def wait_reserved(self, count: int = 1) -> None:
        """Wait until ``count`` reservations are held (the caller bounds the time)."""
        while len(self.reservations) < count:
            await self._changed.wait()

    async def wait_changed(self) -> None:
        """Wait for the next change of the reservations (made, refreshed or lost)."""
        await self._changed.wait()

    def drop(self, relay: PeerId) -> None:
        """Forget the reservation on ``relay`` and withdraw its circuit addresses (after the
        task that kept it was cancelled, e.g. when a client moves to another relay)."""
        self._set(relay, None)

    def _set(self, relay: PeerId, info: ReservationInfo | None) -> None:
        swarm_addrs = self.node.host.swarm.listen_addrs
        if info is None and relay not in self.reservations:
            return  # nothing held, nothing to withdraw or announce
        old = self.reservations.pop(relay, None)
        if old is not None:
            for address in old.addrs:
                if address in swarm_addrs:
                    swarm_addrs.remove(address)
        if info is not None:
            self.reservations[relay] = info
            swarm_addrs.extend(info.addrs)
        self.node.identify_service.announce_change()
        self._changed.set()
        self._changed = trio.Event()

    async def keep_reservation(
        self,
        relay_addr: Multiaddr,
        *,
        retry_interval: float = 5.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Hold a reservation on one relay: refresh at half its remaining time; retry on loss."""
        started = False
        relay = relay_addr.peer_id()
        assert relay is not None
        while True:
            try:
                info = await reserve(self.node.host, relay_addr)
            except (NeoNetError, trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
                logger.info("reservation on %s failed: %s", relay_addr, exc)
                self._set(relay, None)
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(retry_interval)
                continue
            self._set(relay, info)
            if not started:
                started = True
                task_status.started()
            remaining = info.expire - time.time()
            # Refresh early, and at once if the connection (hence the reservation) dies.
            with trio.move_on_after(max(1.0, remaining / 2)):
                await self._wait_disconnected(relay)

    async def _wait_disconnected(self, relay: PeerId) -> None:
        while self.node.host.swarm.connections_to(relay):
            gone = trio.Event()

            def on_gone(connection: Connection, gone: trio.Event = gone) -> None:
                if connection.remote_peer == relay:
                    gone.set()

            self.node.host.swarm.on_disconnect.append(on_gone)
            try:
                await gone.wait()
            finally:
                self.node.host.swarm.on_disconnect.remove(on_gone)


@asynccontextmanager
async def open_relay_client(
    node: NodeLike, relays: Sequence[Multiaddr | str] = (), *, accept_any_relay: bool = False
) -> AsyncIterator[RelayClient]:
    """Make ``node`` reachable through ``relays`` and able to dial circuit addresses.

    Relayed connections are accepted only from relays we hold a reservation on, unless
    ``accept_any_relay``. Reservations are made in the background: ``wait_reserved()``.
    """
    client: RelayClient

    def accept_from(relay: PeerId) -> bool:
        return accept_any_relay or relay in client.reservations

    transport = RelayedTransport(node.host, accept_from=accept_from)
    client = RelayClient(node, transport)
    transport.install()
    node.identify_service.announce_change()
    async with trio.open_nursery() as nursery:
        for relay in relays:
            address = Multiaddr.from_string(relay) if isinstance(relay, str) else relay
            nursery.start_soon(client.keep_reservation, address)
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()
            for relay_peer in list(client.reservations):
                client._set(relay_peer, None)
            node.host.remove_stream_handler(STOP_PROTOCOL_ID)
            node.host.swarm.circuit_dialer = None
