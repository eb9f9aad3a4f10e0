"""identify and identify push (libp2p/specs identify/README.md).

Every new connection is identified in the background: the peer's protocols, agent,
listen addresses and the address it observed us at go into the peer store. When our
own protocols or addresses change, the new record is pushed to connected peers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from neonet._version import __version__
from neonet.core.errors import NeoNetError, RemoteProtocolError
from neonet.core.keys import PublicKey
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.net.swarm import Connection
from neonet.net.yamux_session import YamuxStream
from neonet.proto.identify import (
    PROTOCOL_ID,
    PUSH_PROTOCOL_ID,
    IdentifyInfo,
    IdentifyReader,
    encode_identify,
    merge_push,
)

logger = logging.getLogger("neonet.identify")

PROTOCOL_VERSION = "ipfs/0.1.0"
AGENT_VERSION = f"neonet/{__version__}"
IDENTIFY_TIMEOUT = 10.0


class IdentifyService:
    """Answers identify requests, identifies new connections and pushes changes."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.results: dict[PeerId, IdentifyInfo] = {}
        self._identified: dict[PeerId, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        #: Called (synchronously, must not block) with each new record, from identify or push.
        self.on_identified: list[Callable[[PeerId, IdentifyInfo], None]] = []
        host.set_stream_handler(PROTOCOL_ID, self._handle_identify)
        host.set_stream_handler(PUSH_PROTOCOL_ID, self._handle_push)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.host.swarm.on_connection.append(self._on_connection)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                # Stopped (the node is closing): a late announce_change has nobody to push to,
                # and must not fail on the closed nursery.
                self._nursery = None

    def _local_info(self, observed: Multiaddr | None) -> IdentifyInfo:
        return IdentifyInfo(
            protocol_version=PROTOCOL_VERSION,
            agent_version=AGENT_VERSION,
            public_key=self.host.identity.public_key.to_protobuf(),
            listen_addrs=tuple(a.without_peer_id().to_bytes() for a in self.host.listen_addrs),
            observed_addr=observed.to_bytes() if observed is not None else None,
            protocols=tuple(self.host.protocols),
            signed_peer_record=None,
        )

    async def _handle_identify(self, stream: YamuxStream) -> None:
        connection = self._connection_of(stream)
        observed = connection.remote_addr if connection is not None else None
        await stream.send_all(encode_identify(self._local_info(observed)))
        await stream.send_eof()

    async def _handle_push(self, stream: YamuxStream) -> None:
        peer = stream.remote_peer
        assert isinstance(peer, PeerId)
        info = await _read_identify(stream)
        base = self.results.get(peer)
        merged = merge_push(base, info) if base is not None else info
        self._record(peer, merged)

    def _connection_of(self, stream: YamuxStream) -> Connection | None:
        for connection in self.host.swarm.connections_to(stream.remote_peer):  # type: ignore[arg-type]
            if connection.session is stream.session:
                return connection
        return None

    def _on_connection(self, connection: Connection) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._identify_quietly, connection.remote_peer)

    async def _identify_quietly(self, peer: PeerId) -> None:
        try:
            await self.identify(peer)
        except (
            NeoNetError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
        ) as exc:
            logger.info("identify of %s failed: %s", peer, exc)

    async def identify(self, peer: PeerId) -> IdentifyInfo:
        """Ask ``peer`` for its identify record (and remember it)."""
        with trio.fail_after(IDENTIFY_TIMEOUT):
            stream = await self.host.new_stream(peer, [PROTOCOL_ID])
            try:
                await stream.send_eof()
                info = await _read_identify(stream)
            finally:
                await stream.aclose()
        self._record(peer, info)
        return info

    async def wait_for_record(self, peer: PeerId) -> IdentifyInfo:
        """Wait for the next identify record (or push) from ``peer``; the caller bounds the time."""
        event = self._identified.setdefault(peer, trio.Event())
        await event.wait()
        return self.results[peer]

    def announce_change(self) -> None:
        """Our protocols or addresses changed: push the new record to connected peers."""
        if self._nursery is not None:
            self._nursery.start_soon(self.push)

    async def wait_identified(self, peer: PeerId) -> IdentifyInfo:
        """Wait until ``peer`` has been identified (the caller bounds the time)."""
        while peer not in self.results:
            event = self._identified.setdefault(peer, trio.Event())
            await event.wait()
        return self.results[peer]

    def _record(self, peer: PeerId, info: IdentifyInfo) -> None:
        if info.public_key is not None:
            key = PublicKey.from_protobuf(info.public_key)
            if PeerId.from_public_key(key) != peer:
                raise RemoteProtocolError("identify public key does not match the peer ID")
        self.results[peer] = info
        self.host.peerstore.set_protocols(peer, info.protocols)
        if info.agent_version:
            self.host.peerstore.set_agent(peer, info.agent_version)
        addrs = []
        for raw in info.listen_addrs:
            try:
                addrs.append(Multiaddr.from_bytes(raw))
            except NeoNetError:
                continue  # an address we cannot parse is skipped, not fatal
        self.host.peerstore.add_addrs(peer, addrs)
        event = self._identified.pop(peer, None)
        if event is not None:
            event.set()
        for callback in self.on_identified:
            callback(peer, info)

    async def push(self) -> None:
        """Send our current record to every connected peer that speaks identify push."""
        for peer in self.host.connected_peers():
            if PUSH_PROTOCOL_ID not in self.host.peerstore.protocols(peer):
                continue
            try:
                with trio.fail_after(IDENTIFY_TIMEOUT):
                    stream = await self.host.new_stream(peer, [PUSH_PROTOCOL_ID])
                    try:
                        await stream.send_all(encode_identify(self._local_info(None)))
                        await stream.send_eof()
                    finally:
                        await stream.aclose()
            except (NeoNetError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                logger.info("identify push to %s failed: %s", peer, exc)


async def _read_identify(stream: YamuxStream) -> IdentifyInfo:
    reader = IdentifyReader()
    infos: list[IdentifyInfo] = []
    while True:
        data = await stream.receive_some(65536)
        if not data:
            infos.extend(reader.finish())
            break
        infos.extend(reader.receive_data(data))
    if not infos:
        raise RemoteProtocolError("identify stream carried no message")
    merged = infos[0]
    for info in infos[1:]:
        merged = merge_push(merged, info)
    return merged
