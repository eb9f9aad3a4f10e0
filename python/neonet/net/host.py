"""The host: a swarm plus a peer store and the stream-handler API applications use.

``Host`` knows nothing of identify, ping or perf; ``neonet.node`` adds those services.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import trio

from neonet.core.errors import TransportError
from neonet.core.keys import Ed25519Identity
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net.swarm import Connection, StreamHandler, Swarm, SwarmConfig
from neonet.net.yamux_session import YamuxStream

# Addresses remembered per peer (newest kept).
MAX_ADDRS_PER_PEER = 32
MAX_PEERS_IN_STORE = 10_000


class PeerStore:
    """Addresses and protocols learned about peers; bounded, oldest peers evicted first."""

    def __init__(self) -> None:
        self._addrs: dict[PeerId, list[Multiaddr]] = {}
        self._protocols: dict[PeerId, tuple[str, ...]] = {}
        self._agents: dict[PeerId, str] = {}

    def add_addrs(self, peer: PeerId, addrs: Iterable[Multiaddr]) -> None:
        known = self._addrs.pop(peer, [])
        for address in addrs:
            address = address.without_peer_id()
            if address in known:
                known.remove(address)
            known.append(address)
        self._addrs[peer] = known[-MAX_ADDRS_PER_PEER:]
        while len(self._addrs) > MAX_PEERS_IN_STORE:
            oldest = next(iter(self._addrs))
            self.forget(oldest)

    def addrs(self, peer: PeerId) -> list[Multiaddr]:
        return list(self._addrs.get(peer, ()))

    def set_protocols(self, peer: PeerId, protocols: Iterable[str]) -> None:
        self._protocols[peer] = tuple(protocols)

    def protocols(self, peer: PeerId) -> tuple[str, ...]:
        return self._protocols.get(peer, ())

    def set_agent(self, peer: PeerId, agent: str) -> None:
        self._agents[peer] = agent

    def agent(self, peer: PeerId) -> str | None:
        return self._agents.get(peer)

    def forget(self, peer: PeerId) -> None:
        self._addrs.pop(peer, None)
        self._protocols.pop(peer, None)
        self._agents.pop(peer, None)


class Host:
    """A libp2p host: listen, connect, open and accept protocol streams."""

    def __init__(self, identity: Ed25519Identity, config: SwarmConfig | None = None) -> None:
        self.identity = identity
        self.swarm = Swarm(identity, config)
        self.peer_id = self.swarm.local_peer
        self.peerstore = PeerStore()

    @property
    def listen_addrs(self) -> list[Multiaddr]:
        """Our listen addresses, each ending in /p2p/<our peer ID>."""
        return [address.with_peer_id(self.peer_id) for address in self.swarm.listen_addrs]

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Run ``handler(stream)`` in its own task for each inbound stream of ``protocol``.

        The stream is closed when the handler returns; an exception in the handler resets
        that stream only.
        """
        self.swarm.handlers[protocol] = handler

    def remove_stream_handler(self, protocol: str) -> None:
        self.swarm.handlers.pop(protocol, None)

    @property
    def protocols(self) -> list[str]:
        return sorted(self.swarm.handlers)

    async def listen(self, address: Multiaddr | str) -> list[Multiaddr]:
        address = Multiaddr.from_string(address) if isinstance(address, str) else address
        bound = await self.swarm.listen(address)
        return [a.with_peer_id(self.peer_id) for a in bound]

    async def connect(self, address: Multiaddr | str) -> PeerId:
        """Dial ``address`` (ideally ending in /p2p/<peer ID>) and return the peer's ID."""
        address = Multiaddr.from_string(address) if isinstance(address, str) else address
        connection = await self.swarm.dial(address)
        self.peerstore.add_addrs(connection.remote_peer, [address])
        return connection.remote_peer

    async def connection_to(self, peer: PeerId) -> Connection:
        """A live connection to ``peer``, dialing a known address if there is none."""
        live = self.swarm.connections_to(peer)
        if live:
            return live[0]
        errors: list[str] = []
        for address in self.peerstore.addrs(peer):
            try:
                return await self.swarm.dial(address.with_peer_id(peer))
            except (TransportError, OSError, trio.TooSlowError) as exc:
                errors.append(f"{address}: {exc}")
        raise TransportError(f"cannot reach {peer}: " + ("; ".join(errors) or "no known address"))

    async def new_stream(
        self, peer: PeerId | Multiaddr | str, protocols: Sequence[str]
    ) -> YamuxStream:
        """Open a stream to ``peer`` (connecting first if needed) speaking one of ``protocols``.

        The chosen protocol is ``stream.protocol``. Cancel-safe: a cancelled call leaves no
        half-negotiated stream behind.
        """
        if isinstance(peer, (str, Multiaddr)):
            peer = await self.connect(peer)
        await self.connection_to(peer)
        announced = self.peerstore.protocols(peer)
        known = next((protocol for protocol in protocols if protocol in announced), None)
        return await self.swarm.new_stream(peer, protocols, known_supported=known)

    def connected_peers(self) -> list[PeerId]:
        return self.swarm.connected_peers()

    async def disconnect(self, peer: PeerId) -> None:
        for connection in self.swarm.connections_to(peer):
            await connection.aclose()
