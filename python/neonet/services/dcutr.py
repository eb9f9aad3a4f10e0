"""Direct Connection Upgrade through Relay (libp2p/specs relay/DCUtR.md), over TCP.

When a relayed connection comes in, this side (B in the spec) opens ``/libp2p/dcutr``
on it, sends CONNECT with the addresses others observed it at, times the answer (the
peer's CONNECT) as the relay RTT, sends SYNC and dials the peer's addresses after
RTT/2. The peer (A) dials B's addresses as soon as SYNC arrives. Both dial from their
listening port (``swarm.reuse_port``), so the two SYNs can cross and open one TCP
connection through both NATs (simultaneous open). A is the client (Noise initiator,
yamux client) of that connection and B the server, as the spec says. The first direct
connection wins; the relayed one is closed after a grace period. B tries three times.
Where no NAT drops the first SYN (loopback), the peer's SYN can reach our listener
before we dial: while we punch as the client, ``swarm.punch_as_client`` makes the
swarm upgrade a connection from the peer's punch address as if we had dialed it.

Observed addresses come from identify (``observed_addr``) and are kept in a small
bounded set (``neonet.proto.dcutr.ObservedAddrs``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from neonet.core.errors import DecodeError, NeoNetError, RemoteProtocolError
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net import transport
from neonet.net.relayed import connection_of, read_frame
from neonet.net.swarm import Connection
from neonet.net.upgrader import Direction
from neonet.net.yamux_session import YamuxStream
from neonet.proto.dcutr import (
    MAX_ATTEMPTS,
    PROTOCOL_ID,
    HolePunch,
    HolePunchReader,
    HolePunchType,
    ObservedAddrs,
    decode_hole_punch,
    encode_hole_punch,
    tcp_candidates,
)
from neonet.proto.identify import IdentifyInfo
from neonet.services.relay import NodeLike

logger = logging.getLogger("neonet.dcutr")

MESSAGE_TIMEOUT = 10.0
IDENTIFY_WAIT = 10.0
MAX_RESULTS = 256
# A peer's CONNECT makes us dial what it lists: dial a few of them, not 32 arbitrary hosts.
MAX_PUNCH_ADDRS = 8
_DIAL_ERRORS = (NeoNetError, OSError, trio.BrokenResourceError, trio.TooSlowError)


@dataclass(frozen=True, slots=True)
class HolePunchResult:
    """How one upgrade attempt series ended (``direct_addr`` is set on success)."""

    peer: PeerId
    initiator: bool  # True on B, the side that sent CONNECT first
    success: bool
    attempts: int
    rtt: float | None
    elapsed: float
    direct_addr: Multiaddr | None = None
    error: str | None = None


class DcutrService:
    """Upgrades relayed connections of ``node`` to direct ones where the network allows."""

    def __init__(
        self,
        node: NodeLike,
        *,
        observed: ObservedAddrs | None = None,
        dial_timeout: float = 5.0,
        grace_period: float = 2.0,
        initiate: bool = True,
    ) -> None:
        self.node = node
        self.host = node.host
        self.observed = observed or ObservedAddrs()
        self.dial_timeout = dial_timeout
        self.grace_period = grace_period
        self.initiate = initiate
        self.results: list[HolePunchResult] = []
        #: How many results were ever recorded (``results`` keeps the last MAX_RESULTS).
        self.recorded = 0
        self._result_event = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._active: set[PeerId] = set()
        self._responding: set[PeerId] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.host.set_stream_handler(PROTOCOL_ID, self._handle)
            self.host.swarm.on_connection.append(self._on_connection)
            self.node.identify_service.on_identified.append(self._on_identified)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self.host.remove_stream_handler(PROTOCOL_ID)
                self.host.swarm.on_connection.remove(self._on_connection)
                self.node.identify_service.on_identified.remove(self._on_identified)

    # --- observed addresses ------------------------------------------------------------
    def _on_identified(self, peer: PeerId, info: IdentifyInfo) -> None:
        if not info.observed_addr:
            return
        try:
            address = Multiaddr.from_bytes(info.observed_addr)
        except DecodeError:
            return
        self.observed.record(address, peer)

    def advertised_addrs(self) -> list[Multiaddr]:
        """What CONNECT carries: confirmed observed TCP addresses, else our listen addresses."""
        found = tcp_candidates(self.observed.confirmed())
        return found or tcp_candidates(self.host.swarm.listen_addrs)

    def _connect_message(self) -> bytes:
        return encode_hole_punch(HolePunch(HolePunchType.CONNECT, tuple(self.advertised_addrs())))

    # --- results ------------------------------------------------------------------------
    def _record(self, result: HolePunchResult) -> None:
        self.results.append(result)
        self.recorded += 1
        del self.results[:-MAX_RESULTS]
        self._result_event.set()
        self._result_event = trio.Event()
        logger.info("hole punch with %s: %s", result.peer, result)

    async def wait_result(self, peer: PeerId) -> HolePunchResult:
        """The latest result for ``peer``, or the next one; the caller bounds the time."""
        return await self.wait_for(lambda result: result.peer == peer)

    async def wait_for(self, predicate: Callable[[HolePunchResult], bool]) -> HolePunchResult:
        """The latest result that satisfies ``predicate``, or the next one that does."""
        while True:
            for result in reversed(self.results):
                if predicate(result):
                    return result
            await self._result_event.wait()

    async def wait_next_result(self) -> None:
        """Return when the next result (for any peer) is recorded."""
        await self._result_event.wait()

    def results_since(self, mark: int) -> list[HolePunchResult]:
        """The results recorded after ``recorded`` was ``mark`` (at most MAX_RESULTS)."""
        count = self.recorded - mark
        return self.results[-count:] if count > 0 else []

    def direct_connection(self, peer: PeerId) -> Connection | None:
        """A direct (not relayed) connection to ``peer``, if there is one."""
        return self.host.swarm.direct_connection(peer)

    # --- B: the side that received the relayed connection --------------------------------
    def _on_connection(self, connection: Connection) -> None:
        if (
            self.initiate
            and connection.relayed
            and connection.direction == "inbound"
            and self._nursery is not None
            and connection.remote_peer not in self._active
        ):
            self._nursery.start_soon(self._initiate, connection)

    async def _initiate(self, relayed: Connection) -> None:
        peer = relayed.remote_peer
        self._active.add(peer)
        start = trio.current_time()
        rtt: float | None = None
        error: str | None = None
        attempt = 0
        try:
            with trio.move_on_after(IDENTIFY_WAIT):
                await self.node.identify_service.wait_identified(peer)
            if PROTOCOL_ID not in self.host.peerstore.protocols(peer):
                error = "the peer does not speak /libp2p/dcutr"
                return
            for attempt in range(1, MAX_ATTEMPTS + 1):
                if relayed.closed:
                    error = "the relayed connection closed"
                    return
                try:
                    remote_addrs, rtt = await self._exchange(peer)
                    await trio.sleep(rtt / 2)
                    direct = await self._dial_any(peer, remote_addrs, role="inbound")
                except (NeoNetError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    continue
                if direct is not None:
                    error = None
                    self._record(
                        HolePunchResult(
                            peer,
                            True,
                            True,
                            attempt,
                            rtt,
                            trio.current_time() - start,
                            direct.remote_addr,
                        )
                    )
                    await self._retire(relayed)
                    return
                error = "no direct connection"
        finally:
            self._active.discard(peer)
            if error is not None:
                self._record(
                    HolePunchResult(
                        peer, True, False, attempt, rtt, trio.current_time() - start, error=error
                    )
                )

    async def _exchange(self, peer: PeerId) -> tuple[list[Multiaddr], float]:
        """CONNECT / CONNECT / SYNC on a new stream; the peer's addresses and the RTT."""
        with trio.fail_after(MESSAGE_TIMEOUT):
            stream = await self.host.new_stream(peer, [PROTOCOL_ID])
            try:
                reader = HolePunchReader()
                sent = trio.current_time()
                await stream.send_all(
                    encode_hole_punch(
                        HolePunch(HolePunchType.CONNECT, tuple(self.advertised_addrs()))
                    )
                )
                reply = decode_hole_punch(await read_frame(stream, reader))
                rtt = trio.current_time() - sent
                if reply.type != HolePunchType.CONNECT:
                    raise RemoteProtocolError("expected CONNECT in answer to CONNECT")
                await stream.send_all(encode_hole_punch(HolePunch(HolePunchType.SYNC)))
                await stream.send_eof()
            finally:
                stream.close_now()
        addrs = tcp_candidates(reply.addrs)[:MAX_PUNCH_ADDRS]
        if not addrs:
            raise RemoteProtocolError("the peer sent no TCP address to punch")
        return addrs, rtt

    # --- A: the side that dialed the relayed connection ----------------------------------
    async def _handle(self, stream: YamuxStream) -> None:
        peer = stream.remote_peer
        assert isinstance(peer, PeerId)
        relayed = connection_of(self.host, stream)
        if relayed is None or not relayed.relayed or peer in self._responding:
            stream.reset()  # nothing to upgrade on a direct connection; one punch at a time
            return
        self._responding.add(peer)
        try:
            await self._respond(stream, peer, relayed)
        finally:
            self._responding.discard(peer)

    async def _respond(self, stream: YamuxStream, peer: PeerId, relayed: Connection) -> None:
        start = trio.current_time()
        reader = HolePunchReader()
        try:
            with trio.fail_after(MESSAGE_TIMEOUT):
                connect = decode_hole_punch(await read_frame(stream, reader))
                if connect.type != HolePunchType.CONNECT:
                    raise RemoteProtocolError("DCUtR stream did not start with CONNECT")
                await stream.send_all(
                    encode_hole_punch(
                        HolePunch(HolePunchType.CONNECT, tuple(self.advertised_addrs()))
                    )
                )
                sync = decode_hole_punch(await read_frame(stream, reader))
                if sync.type != HolePunchType.SYNC:
                    raise RemoteProtocolError("expected SYNC after CONNECT")
        except (NeoNetError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            logger.info("DCUtR exchange with %s failed: %s", peer, exc)
            stream.reset()
            return
        addrs = tcp_candidates(connect.addrs)[:MAX_PUNCH_ADDRS]
        direct = await self._dial_any(peer, addrs, role="outbound") if addrs else None
        self._record(
            HolePunchResult(
                peer,
                False,
                direct is not None,
                1,
                None,
                trio.current_time() - start,
                direct.remote_addr if direct is not None else None,
                None if direct is not None else "no direct connection",
            )
        )
        if direct is not None:
            await self._retire(relayed)

    # --- both ------------------------------------------------------------------------------
    async def _dial_any(
        self, peer: PeerId, addrs: list[Multiaddr], *, role: Direction
    ) -> Connection | None:
        """Dial every address at once from our listening port; first direct connection wins.

        A connection that arrives at our listener in the meantime (the peer's SYN got
        through first) counts too.
        """
        expected = self.host.swarm.punch_as_client
        if role == "outbound":
            for address in addrs:
                expected[address] = peer
        try:
            return await self._race(peer, addrs, role)
        finally:
            for address in addrs:
                if expected.get(address) == peer:
                    del expected[address]

    async def _race(
        self, peer: PeerId, addrs: list[Multiaddr], role: Direction
    ) -> Connection | None:
        winner: Connection | None = None
        with trio.move_on_after(self.dial_timeout):
            async with trio.open_nursery() as nursery:

                async def attempt(address: Multiaddr) -> None:
                    nonlocal winner
                    try:
                        raw = await transport.dial(
                            address, local_port=self.host.swarm.reuse_port_for(address)
                        )
                        connection = await self.host.swarm.upgrade_outbound(
                            raw, address, peer, role=role
                        )
                    except (
                        NeoNetError,
                        OSError,
                        trio.BrokenResourceError,
                        trio.TooSlowError,
                    ) as exc:
                        logger.debug("hole punch dial to %s failed: %s", address, exc)
                        return
                    if winner is None:
                        winner = connection
                    elif winner is not connection:
                        # Another attempt (or the listener) won: one direct connection is enough.
                        await connection.aclose()
                        return
                    nursery.cancel_scope.cancel()

                async def watch_inbound() -> None:
                    nonlocal winner
                    await self.host.swarm.wait_connection(peer, direct=True)
                    if winner is None:
                        winner = self.host.swarm.direct_connection(peer)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_inbound)
                for address in addrs:
                    nursery.start_soon(attempt, address)
        return winner if winner is not None else self.host.swarm.direct_connection(peer)

    async def _retire(self, relayed: Connection) -> None:
        """Close the relayed connection after a grace period; new streams already go direct."""
        if self._nursery is None:
            return

        async def later() -> None:
            await trio.sleep(self.grace_period)
            await relayed.aclose()

        self._nursery.start_soon(later)


@asynccontextmanager
async def open_dcutr(
    node: NodeLike,
    *,
    dial_timeout: float = 5.0,
    grace_period: float = 2.0,
    min_observers: int = 1,
) -> AsyncIterator[DcutrService]:
    """Run DCUtR on ``node`` until the block ends.

    Hole punching needs outbound connections to leave from the listening port: this
    turns ``swarm.reuse_port`` on, which only affects listeners opened afterwards, so
    open the node with ``listen=()`` and call ``node.listen(...)`` inside this block.
    """
    node.host.swarm.reuse_port = True
    service = DcutrService(
        node,
        observed=ObservedAddrs(min_observers=min_observers),
        dial_timeout=dial_timeout,
        grace_period=grace_period,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        node.identify_service.announce_change()
        try:
            yield service
        finally:
            nursery.cancel_scope.cancel()
