"""The Kademlia DHT service (/ipfs/kad/1.0.0) on a NeoNet host, driven by trio.

libp2p/specs kad-dht/README.md: "Client and server mode" (a server registers the
protocol, so identify advertises it; peers enter our routing table only when identify
says they serve kad, or when they answered a kad request), "Peer routing", "Value
storage and retrieval", "Content provider advertisement and discovery", "Bootstrap
process" and "RPC messages". The wire codec and the lookup state machine are in
``neonet.proto.kad``; record validation in ``neonet.proto.kad_records``; storage in
``neonet.services.kad_store`` (SQLite). The routing table is the selected backend's
``RoutingTable`` (Rust, or the pure twin with NEONET_PURE=1).

A lookup answers as soon as it has what was asked (the first valid value with
quorum 1, enough providers, the peer's address), cancelling queries still in flight,
so dead or slow peers only cost time when nothing better is known. Each request has
its own timeout; a peer that fails a request leaves the routing table.

Limits: per-peer inbound request rate (token bucket), request size (MAX_MESSAGE_SIZE),
record value size and store sizes (``StoreLimits``), candidate peers per lookup.
A bad request resets that stream only; an invalid record is refused with the reason
and never stored.

``KadDHT`` lives in ``neonet.services.kad_dht``; ``KadConfig``, ``LookupResult`` and
``default_validator`` in ``neonet.services.kad_config``. This module re-exports them and
runs a DHT on a node with ``open_kad``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Protocol

import trio

from neonet.core.multiaddr import Multiaddr
from neonet.net.host import Host
from neonet.proto.kad_records import NamespacedValidator
from neonet.services.identify import IdentifyService
from neonet.services.kad_config import KadConfig as KadConfig
from neonet.services.kad_config import LookupResult as LookupResult
from neonet.services.kad_config import default_validator as default_validator
from neonet.services.kad_dht import MAX_CACHED_PEERS as MAX_CACHED_PEERS
from neonet.services.kad_dht import MAX_PEERS_WITH_IDLE_STREAMS as MAX_PEERS_WITH_IDLE_STREAMS
from neonet.services.kad_dht import STREAM_REUSE_IDLE as STREAM_REUSE_IDLE
from neonet.services.kad_dht import STREAMS_KEPT_PER_PEER as STREAMS_KEPT_PER_PEER
from neonet.services.kad_dht import KadDHT as KadDHT
from neonet.services.kad_store import KadStore


class _NodeLike(Protocol):
    @property
    def host(self) -> Host: ...
    @property
    def identify_service(self) -> IdentifyService: ...


@asynccontextmanager
async def open_kad(
    node: _NodeLike,
    *,
    config: KadConfig | None = None,
    store: KadStore | None = None,
    validator: NamespacedValidator | None = None,
    bootstrap: Iterable[Multiaddr | str] = (),
    republish_on_start: bool = True,
) -> AsyncIterator[KadDHT]:
    """Run a DHT on ``node`` (a ``neonet.Node``) for the ``async with`` block.

    With ``bootstrap`` addresses the node joins through them first; then what the
    store says this node published is put again (values and provider keys survive
    restarts that way).
    """
    dht = KadDHT(node.host, node.identify_service, config=config, store=store, validator=validator)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(dht.serve)
            addresses = list(bootstrap)
            if addresses:
                await dht.bootstrap(addresses)
            if republish_on_start and (dht.store.published() or dht.store.providing()):
                nursery.start_soon(dht.republish)
            try:
                yield dht
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The caller's own error (or the DHT's) surfaces as itself, not as a group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
