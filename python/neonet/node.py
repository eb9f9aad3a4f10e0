"""``open_node``: a ready NeoNet node (host + identify, ping and perf), the usual entry point.

async with neonet.open_node(listen=["/ip4/127.0.0.1/tcp/0"]) as node:
    print(node.listen_addrs)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from neonet.core.errors import NeoNetError
from neonet.core.keys import Ed25519Identity
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.net.secure import warm_up
from neonet.net.swarm import StreamHandler, SwarmConfig
from neonet.net.yamux_session import YamuxStream
from neonet.proto.identify import IdentifyInfo
from neonet.proto.perf import PROTOCOL_ID as PERF_PROTOCOL_ID
from neonet.proto.ping import PROTOCOL_ID as PING_PROTOCOL_ID
from neonet.services import perf as perf_service
from neonet.services import ping as ping_service
from neonet.services.identify import IdentifyService

DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0",)
# The stream type handlers receive and new_stream returns (a trio HalfCloseableStream).
Stream = YamuxStream


class Node:
    """A running NeoNet node. Create it with ``open_node``."""

    def __init__(self, host: Host, identify: IdentifyService) -> None:
        self.host = host
        self.identify_service = identify

    @property
    def peer_id(self) -> PeerId:
        return self.host.peer_id

    @property
    def listen_addrs(self) -> list[Multiaddr]:
        return self.host.listen_addrs

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve ``protocol``: ``handler(stream)`` runs per inbound stream, which closes after.

        Connected peers that support identify push learn of the new protocol at once.
        """
        known = protocol in self.host.protocols
        self.host.set_stream_handler(protocol, handler)
        if not known:
            self.identify_service.announce_change()

    def remove_stream_handler(self, protocol: str) -> None:
        if protocol in self.host.protocols:
            self.host.remove_stream_handler(protocol)
            self.identify_service.announce_change()

    async def listen(self, address: Multiaddr | str) -> list[Multiaddr]:
        bound = await self.host.listen(address)
        self.identify_service.announce_change()
        return bound

    async def connect(self, address: Multiaddr | str) -> PeerId:
        """Dial ``address`` and return the peer's ID (a /p2p/<peer ID> suffix is checked)."""
        return await self.host.connect(address)

    async def new_stream(
        self, peer: PeerId | Multiaddr | str, protocols: Sequence[str]
    ) -> YamuxStream:
        """Open a stream speaking the first of ``protocols`` the peer accepts."""
        return await self.host.new_stream(peer, protocols)

    async def _peer_of(self, target: PeerId | Multiaddr | str) -> PeerId:
        if isinstance(target, PeerId):
            return target
        return await self.connect(target)

    async def ping(self, target: PeerId | Multiaddr | str, *, count: int = 1) -> list[float]:
        """Round-trip times in seconds of ``count`` pings over one stream."""
        return await ping_service.ping(self.host, await self._peer_of(target), count=count)

    async def identify(self, target: PeerId | Multiaddr | str) -> IdentifyInfo:
        return await self.identify_service.identify(await self._peer_of(target))

    async def perf(
        self, target: PeerId | Multiaddr | str, *, upload_bytes: int, download_bytes: int
    ) -> perf_service.PerfResult:
        return await perf_service.perf(
            self.host,
            await self._peer_of(target),
            upload_bytes=upload_bytes,
            download_bytes=download_bytes,
        )

    def connected_peers(self) -> list[PeerId]:
        return self.host.connected_peers()


@asynccontextmanager
async def open_node(
    *,
    identity: Ed25519Identity | None = None,
    listen: Sequence[Multiaddr | str] = DEFAULT_LISTEN,
    config: SwarmConfig | None = None,
) -> AsyncIterator[Node]:
    """Start a node listening on ``listen`` (loopback TCP on a free port by default).

    The node stops, closing its connections, when the ``async with`` block ends.
    """
    host = Host(identity or Ed25519Identity.generate(), config)
    warm_up(host.identity)
    host.set_stream_handler(PING_PROTOCOL_ID, ping_service.handle_ping)
    host.set_stream_handler(PERF_PROTOCOL_ID, perf_service.handle_perf)
    identify = IdentifyService(host)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(host.swarm.serve)
            await nursery.start(identify.run)
            for address in listen:
                await host.listen(address)
            try:
                yield Node(host, identify)
            finally:
                await host.swarm.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One error (the caller's own, or a node failure) surfaces as itself rather than
        # as the hidden nursery's group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        errors = group.subgroup(NeoNetError)
        if errors is not None and errors.exceptions:
            raise errors.exceptions[0] from group
        raise
