"""The swarm: live connections by peer, dialing (deduplicated), listening, and limits.

Every connection is upgraded (Noise, yamux) before it counts; inbound streams are
negotiated against the registered protocol handlers. Errors on one connection or
stream are logged and close only that connection or stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

from neonet.core.errors import (
    HandshakeError,
    LimitExceededError,
    NegotiationError,
    NeoNetError,
    PeerIdMismatchError,
    ProtocolError,
    RemoteProtocolError,
    TransportError,
)
from neonet.core.keys import Ed25519Identity, PublicKey
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net import transport
from neonet.net.negotiate import (
    accept_buffered,
    accept_protocol,
    select_protocol,
    send_preamble,
)
from neonet.net.upgrader import Direction, upgrade
from neonet.net.yamux_session import YamuxSession, YamuxStream
from neonet.proto.multistream import MultistreamDialer

logger = logging.getLogger("neonet.swarm")

StreamHandler = Callable[[YamuxStream], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SwarmConfig:
    """Limits of one node; every one has a defined behaviour when hit."""

    max_connections: int = (
        1024  # inbound over it are closed at once; dials raise LimitExceededError
    )
    max_connections_per_peer: int = 4
    max_pending_inbound: int = 128  # handshakes in progress; more are closed at once
    handshake_timeout: float = 10.0
    negotiation_timeout: float = 10.0
    dial_timeout: float = 15.0


@dataclass(eq=False)
class Connection:
    """An upgraded (secure, multiplexed) connection to one peer."""

    remote_peer: PeerId
    remote_public_key: PublicKey
    local_addr: Multiaddr
    remote_addr: Multiaddr
    direction: Direction
    session: YamuxSession
    opened_at: float = field(default_factory=trio.current_time)
    #: Whether the connection runs over a relay (a /p2p-circuit address).
    relayed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.relayed = "p2p-circuit" in self.remote_addr.protocol_names()

    async def open_stream(self) -> YamuxStream:
        return await self.session.open_stream()

    @property
    def closed(self) -> bool:
        return self.session.closed

    async def aclose(self) -> None:
        await self.session.aclose()


class _ConnectionStarted:
    """The task status ``YamuxSession.run`` reports to: registers the connection, tells the
    ``on_connection`` callbacks, and passes the connection on to a ``nursery.start`` caller."""

    __slots__ = ("_connection", "_outer", "_swarm", "registered")

    def __init__(
        self,
        swarm: Swarm,
        connection: Connection,
        outer: trio.TaskStatus[Connection] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._swarm = swarm
        self._connection = connection
        self._outer = outer
        self.registered = False

    def started(self, value: None = None) -> None:
        connection = self._connection
        self._swarm._connections.setdefault(connection.remote_peer, []).append(connection)
        self._swarm._connection_count += 1
        self.registered = True
        self._outer.started(connection)
        for callback in self._swarm.on_connection:
            callback(connection)


class Swarm:
    """Owns connections; run ``serve(task_status=...)`` inside a nursery to activate it."""

    def __init__(self, identity: Ed25519Identity, config: SwarmConfig | None = None) -> None:
        self.identity = identity
        self.local_peer = PeerId.from_public_key(identity.public_key)
        self.config = config or SwarmConfig()
        self.handlers: dict[str, StreamHandler] = {}
        self._connections: dict[PeerId, list[Connection]] = {}
        # Kept up to date: counting on every inbound connection was O(connections), which
        # an SSN with 18,000 clients pays for every registration.
        self._connection_count = 0
        self._dials: dict[PeerId, trio.Event] = {}
        self._dial_errors: dict[PeerId, BaseException] = {}
        self._pending_inbound = 0
        self._nursery: trio.Nursery | None = None
        self.listen_addrs: list[Multiaddr] = []
        #: Called (synchronously, must not block) when a connection is up, and when it is gone.
        self.on_connection: list[Callable[[Connection], None]] = []
        self.on_disconnect: list[Callable[[Connection], None]] = []
        #: Dials /p2p-circuit addresses (set by the relay client, neonet.services.relay).
        self.circuit_dialer: Callable[[Multiaddr], Awaitable[transport.RawConnection]] | None = None
        #: Listen with SO_REUSEPORT and dial from the listening port (NAT hole punching).
        self.reuse_port = False
        #: Listen addresses opened with SO_REUSEPORT: only their ports can be shared by dials
        #: (binding a dial to the port of a listener without it fails with EADDRINUSE).
        self.reusable_listen_addrs: list[Multiaddr] = []
        #: Hole punches in progress where we are the client: remote address -> peer. A
        #: connection from there that lands on our listener (the peer's SYN won the race,
        #: as on loopback) is upgraded as if we had dialed it (DCUtR, services/dcutr.py).
        self.punch_as_client: dict[Multiaddr, PeerId] = {}

    # --- lifecycle ---------------------------------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def _require_nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("the swarm is not running")
        return self._nursery

    async def listen(self, address: Multiaddr) -> list[Multiaddr]:
        """Start listening on ``address``; return the bound addresses (port 0 resolved)."""
        listener = transport.Listener(address, reuse_port=self.reuse_port)
        addrs: list[Multiaddr] = await self._require_nursery().start(
            listener.serve, self._handle_inbound
        )
        self.listen_addrs.extend(addrs)
        if self.reuse_port:
            self.reusable_listen_addrs.extend(addrs)
        return addrs

    async def aclose(self) -> None:
        for connections in list(self._connections.values()):
            for connection in connections:
                await connection.aclose()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # --- connections -------------------------------------------------------------
    def connection_count(self) -> int:
        return self._connection_count

    def connections_to(self, peer: PeerId) -> list[Connection]:
        """Live connections to ``peer``, direct ones before relayed ones."""
        live = [c for c in self._connections.get(peer, []) if not c.closed]
        if len(live) > 1:
            live.sort(key=lambda connection: connection.relayed)
        return live

    def direct_connection(self, peer: PeerId) -> Connection | None:
        """A live direct (not relayed) connection to ``peer``, if there is one."""
        return next((c for c in self.connections_to(peer) if not c.relayed), None)

    async def wait_connection(self, peer: PeerId, *, direct: bool = False) -> None:
        """Return once there is a live connection to ``peer`` (a direct one if ``direct``):
        at once if there is one, else when the next opens. Bound it with a timeout."""
        if self.direct_connection(peer) if direct else self.connections_to(peer):
            return
        arrived = trio.Event()

        def on_connection(connection: Connection) -> None:
            if connection.remote_peer == peer and not (direct and connection.relayed):
                arrived.set()

        self.on_connection.append(on_connection)
        try:
            await arrived.wait()
        finally:
            self.on_connection.remove(on_connection)

    def connected_peers(self) -> list[PeerId]:
        return [peer for peer in self._connections if self.connections_to(peer)]

    async def _handle_inbound(self, raw: transport.RawConnection) -> None:
        punching = self.punch_as_client.get(raw.remote_addr)
        if punching is not None:
            try:
                await self.upgrade_outbound(raw, raw.remote_addr, punching)
            except (NeoNetError, trio.TooSlowError) as exc:
                logger.info("hole-punched connection from %s failed: %s", raw.remote_addr, exc)
            return
        if (
            self._pending_inbound >= self.config.max_pending_inbound
            or self.connection_count() >= self.config.max_connections
        ):
            logger.info("refusing inbound connection from %s: connection limit", raw.remote_addr)
            await trio.aclose_forcefully(raw.stream)
            return
        self._pending_inbound += 1
        try:
            with trio.fail_after(self.config.handshake_timeout):
                if raw.local_addr.protocol_names()[-1:] == ("ws",):
                    raw = await transport.upgrade_websocket_inbound(raw)
                channel = await upgrade(raw.stream, self.identity, direction="inbound")
        except (trio.TooSlowError, NeoNetError, trio.BrokenResourceError, OSError) as exc:
            logger.info("inbound handshake from %s failed: %s", raw.remote_addr, exc)
            await trio.aclose_forcefully(raw.stream)
            return
        finally:
            self._pending_inbound -= 1
        if len(self.connections_to(channel.remote_peer)) >= self.config.max_connections_per_peer:
            logger.info("refusing connection from %s: per-peer limit", channel.remote_peer)
            await trio.aclose_forcefully(channel.secure)
            return
        connection = self._new_connection(raw, channel, "inbound")
        # The handshake's objects (the Noise stream, its retired channel) are not kept
        # alive by this frame while the connection lives: they cost memory per peer.
        del raw, channel
        await self._run_session(connection, _ConnectionStarted(self, connection))

    async def accept_inbound(self, raw: transport.RawConnection) -> None:
        """Upgrade and run an inbound connection that arrived some other way (a relayed
        stream); returns when the connection ends."""
        await self._handle_inbound(raw)

    async def _run_connection(
        self,
        raw: transport.RawConnection,
        channel: object,
        direction: Direction,
        *,
        task_status: trio.TaskStatus[Connection] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        connection = self._new_connection(raw, channel, direction)
        del raw, channel  # see _handle_inbound
        await self._run_session(connection, _ConnectionStarted(self, connection, task_status))

    def _new_connection(
        self, raw: transport.RawConnection, channel: object, direction: Direction
    ) -> Connection:
        from neonet.net.upgrader import SecuredChannel

        assert isinstance(channel, SecuredChannel)
        # The session's engine takes the Noise channel over and reads the raw transport.
        transport_stream, noise, read_ahead = channel.secure.into_parts()
        session = YamuxSession(
            transport_stream,
            is_client=direction == "outbound",
            on_stream=self._handle_stream,
            initial_data=channel.muxer_initial_data + read_ahead,
            remote_peer=channel.remote_peer,
            noise=noise,
        )
        return Connection(
            remote_peer=channel.remote_peer,
            remote_public_key=channel.secure.remote_public_key,
            local_addr=raw.local_addr,
            remote_addr=raw.remote_addr,
            direction=direction,
            session=session,
        )

    async def _run_session(self, connection: Connection, started: _ConnectionStarted) -> None:
        """Run the connection's session in this task (one task less per connection than a
        nursery around it) until it ends; ``started`` registers it once it runs."""
        try:
            await connection.session.run(task_status=started)
        finally:
            if started.registered:
                peers = self._connections.get(connection.remote_peer, [])
                if connection in peers:
                    peers.remove(connection)
                    self._connection_count -= 1
                if not peers:
                    self._connections.pop(connection.remote_peer, None)
                for callback in self.on_disconnect:
                    callback(connection)

    async def _handle_stream(self, stream: YamuxStream) -> None:
        try:
            selected = accept_buffered(stream, self.handlers.__contains__)
            if selected is None:
                with trio.fail_after(self.config.negotiation_timeout):
                    selected = await accept_protocol(stream, self.handlers.__contains__)
            protocol, leftover = selected
        except (
            trio.TooSlowError,
            NegotiationError,
            ProtocolError,
            trio.BrokenResourceError,
        ) as exc:
            logger.debug("inbound stream negotiation failed: %s", exc)
            stream.reset()
            return
        stream.unread(leftover)
        stream.protocol = protocol
        handler = self.handlers[protocol]
        try:
            await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, NeoNetError) as exc:
            logger.info("handler for %s ended with an error: %s", protocol, exc)
            stream.reset()
        except Exception:
            logger.exception("handler for %s crashed", protocol)
            stream.reset()
        finally:
            stream.close_now()

    # --- dialing -----------------------------------------------------------------
    async def dial(self, address: Multiaddr, *, peer: PeerId | None = None) -> Connection:
        """Connect to ``address`` (reusing a live connection to its peer).

        Concurrent dials to the same peer share one attempt. Raises ``TransportError``,
        ``PeerIdMismatchError`` (the peer is not the one in /p2p/...) or ``LimitExceededError``.
        """
        expected = peer or address.peer_id()
        if expected is not None:
            if expected == self.local_peer:
                raise TransportError("refusing to dial ourselves")
            existing = self.connections_to(expected)
            if existing:
                return existing[0]
            pending = self._dials.get(expected)
            if pending is not None:
                await pending.wait()
                existing = self.connections_to(expected)
                if existing:
                    return existing[0]
                error = self._dial_errors.get(expected)
                raise TransportError(f"dial to {expected} failed: {error}") from error
            event = trio.Event()
            self._dials[expected] = event
            try:
                return await self._dial_new(address, expected)
            except BaseException as exc:
                self._dial_errors[expected] = exc
                raise
            finally:
                del self._dials[expected]
                event.set()
                self._dial_errors.pop(expected, None)
        return await self._dial_new(address, None)

    async def _dial_new(self, address: Multiaddr, expected: PeerId | None) -> Connection:
        if self.connection_count() >= self.config.max_connections:
            raise LimitExceededError(f"connection limit {self.config.max_connections} reached")
        with trio.fail_after(self.config.dial_timeout):
            if "p2p-circuit" in address.protocol_names():
                if self.circuit_dialer is None:
                    raise TransportError(f"cannot dial {address}: no relay client is running")
                raw = await self.circuit_dialer(address)
            else:
                raw = await transport.dial(address, local_port=self.reuse_port_for(address))
        return await self.upgrade_outbound(raw, address, expected)

    def reuse_port_for(self, address: Multiaddr) -> int | None:
        if not self.reuse_port:
            return None
        family = address.protocol_names()[0]
        for listen in self.reusable_listen_addrs:
            names = listen.protocol_names()
            if names[0] == family and names[1:] == ("tcp",):
                return int(listen.value_for("tcp") or 0)
        return None

    async def upgrade_outbound(
        self,
        raw: transport.RawConnection,
        address: Multiaddr,
        expected: PeerId | None,
        *,
        role: Direction = "outbound",
    ) -> Connection:
        """Secure, multiplex and run a connection we opened (``role="inbound"`` makes us
        the Noise responder and yamux server, for the server side of a hole punch)."""
        with trio.fail_after(self.config.dial_timeout):
            try:
                if role == "outbound":
                    channel = await upgrade(
                        raw.stream, self.identity, direction="outbound", expected_peer=expected
                    )
                else:
                    channel = await upgrade(raw.stream, self.identity, direction="inbound")
                    if expected is not None and channel.remote_peer != expected:
                        raise PeerIdMismatchError(
                            f"{address} is {channel.remote_peer}, not {expected}"
                        )
            except (trio.BrokenResourceError, OSError) as exc:
                await trio.aclose_forcefully(raw.stream)
                raise TransportError(
                    f"connection to {address} broke during the upgrade: {exc}"
                ) from exc
            except RemoteProtocolError as exc:
                await trio.aclose_forcefully(raw.stream)
                if isinstance(exc, HandshakeError | NegotiationError):
                    raise
                # Typically the listener hung up at once: it may be at its connection limit.
                raise TransportError(
                    f"{address} closed the connection during the upgrade: {exc}"
                ) from exc
            except BaseException:
                await trio.aclose_forcefully(raw.stream)
                raise
        connection: Connection = await self._require_nursery().start(
            self._run_connection, raw, channel, role
        )
        return connection

    async def new_stream(
        self, peer: PeerId, protocols: Sequence[str], *, known_supported: str | None = None
    ) -> YamuxStream:
        """Open a stream on a live connection to ``peer`` and negotiate one of ``protocols``.

        With ``known_supported`` (a protocol the peer announced through identify) the
        proposal goes out with the first data, saving a round trip; the peer's answer is
        checked on the first read.
        """
        connections = self.connections_to(peer)
        if not connections:
            raise TransportError(f"not connected to {peer}")
        # The SYN and the proposal wait one scheduler pass for the caller's first write,
        # so that all of them share one packet (see YamuxStream.queue_bytes_nowait).
        stream = await connections[0].open_stream()
        if known_supported is not None:
            dialer = MultistreamDialer([known_supported])
            try:
                await send_preamble(stream, dialer.data_to_send())
            except BaseException:
                stream.reset()
                raise
            stream.protocol = known_supported
            stream.expect_negotiation(dialer)
            return stream
        try:
            with trio.fail_after(self.config.negotiation_timeout):
                protocol, leftover = await select_protocol(stream, protocols)
        except BaseException:
            stream.reset()
            raise
        stream.unread(leftover)
        stream.protocol = protocol
        return stream
