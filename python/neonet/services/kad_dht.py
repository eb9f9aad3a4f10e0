"""``KadDHT``, one Kademlia DHT node on a NeoNet host (/ipfs/kad/1.0.0): serving
requests, the outbound request streams it keeps for reuse, lookups, values, providers,
bootstrap, refresh and republish.

Split out of ``neonet.services.kad`` (whose module doc describes the service as a whole),
which re-exports ``KadDHT`` and the constants here.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from datetime import UTC, datetime

import trio

from neonet.core import backend
from neonet.core.errors import LimitExceededError, NeoNetError, RemoteProtocolError
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.core.ratelimit import RateLimiter
from neonet.net.host import Host
from neonet.net.swarm import Connection
from neonet.net.yamux_session import YamuxStream
from neonet.proto.identify import IdentifyInfo
from neonet.proto.kad import (
    PROTOCOL_ID,
    ConnectionType,
    K,
    KadMessage,
    KadPeer,
    KadRecord,
    Lookup,
    MessageReader,
    MessageType,
    frame_message,
    kad_key_of,
)
from neonet.proto.kad_records import InvalidRecordError, NamespacedValidator
from neonet.services import ping as ping_service
from neonet.services.identify import IdentifyService
from neonet.services.kad_config import KadConfig, LookupResult, default_validator
from neonet.services.kad_store import KadStore

logger = logging.getLogger("neonet.kad")

MAX_CACHED_PEERS = 10_000
# Outbound request streams kept open for reuse: per peer, in all, and for how long
# (below the idle timeouts of go-libp2p, 1 min, and NeoNet, 30 s, that close them).
STREAMS_KEPT_PER_PEER = 2
MAX_PEERS_WITH_IDLE_STREAMS = 512
STREAM_REUSE_IDLE = 10.0


class _StreamEnded(RemoteProtocolError):
    """The peer ended a kad stream without answering."""


_FAILURES = (
    NeoNetError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


def _rfc3339(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KadDHT:
    """A Kademlia DHT node on ``host``; run ``serve`` in a nursery (``open_kad`` does)."""

    def __init__(
        self,
        host: Host,
        identify: IdentifyService,
        *,
        config: KadConfig | None = None,
        store: KadStore | None = None,
        validator: NamespacedValidator | None = None,
        wall_clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.host = host
        self.identify = identify
        self.config = config or KadConfig()
        self.store = store or KadStore(limits=self.config.store_limits)
        self.validator = validator or default_validator()
        self.wall_clock = wall_clock
        self.random_bytes = random_bytes
        self.local_id = host.peer_id.to_bytes()
        self.table = backend.RoutingTable(self.local_id, bucket_size=self.config.k)
        self._limiter: RateLimiter[bytes] = RateLimiter(
            self.config.requests_per_second, self.config.request_burst, max_keys=4096
        )
        self._nursery: trio.Nursery | None = None
        self._checks = 0
        # Raw addresses per peer as last seen (identify or kad answers), so answers and
        # repeated mentions of a peer cost no multiaddr parsing; bounded, oldest dropped.
        self._addr_cache: OrderedDict[bytes, tuple[bytes, ...]] = OrderedDict()
        self._connected: dict[bytes, int] = {}  # peer -> live connections (for hints)
        self._idle_streams: OrderedDict[bytes, list[tuple[YamuxStream, float]]] = OrderedDict()
        self.refused: int = 0  # inbound requests refused (rate, invalid record, limits)

    # --- lifecycle ----------------------------------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve (in server mode) and maintain the table until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.identify.on_identified.append(self._on_identified)
            self.host.swarm.on_connection.append(self._on_connection)
            self.host.swarm.on_disconnect.append(self._on_disconnect)
            for peer in self.host.connected_peers():
                self._connected[peer.to_bytes()] = len(self.host.swarm.connections_to(peer))
            for peer, info in list(self.identify.results.items()):
                self._on_identified(peer, info)
            if self.config.mode == "server":
                self.host.set_stream_handler(PROTOCOL_ID, self._handle_stream)
                self.identify.announce_change()
            nursery.start_soon(self._maintain)
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                if self._on_identified in self.identify.on_identified:
                    self.identify.on_identified.remove(self._on_identified)
                for hooks, hook in (
                    (self.host.swarm.on_connection, self._on_connection),
                    (self.host.swarm.on_disconnect, self._on_disconnect),
                ):
                    if hook in hooks:
                        hooks.remove(hook)
                if self.config.mode == "server":
                    self.host.remove_stream_handler(PROTOCOL_ID)

    def _on_connection(self, connection: Connection) -> None:
        peer = connection.remote_peer.to_bytes()
        self._connected[peer] = self._connected.get(peer, 0) + 1

    def _on_disconnect(self, connection: Connection) -> None:
        peer = connection.remote_peer.to_bytes()
        left = self._connected.pop(peer, 0) - 1
        if left > 0:
            self._connected[peer] = left

    def _cache_addrs(self, peer_id: bytes, addrs: tuple[bytes, ...]) -> None:
        cache = self._addr_cache
        cache.pop(peer_id, None)
        cache[peer_id] = addrs
        while len(cache) > MAX_CACHED_PEERS:
            cache.popitem(last=False)

    def _on_identified(self, peer: PeerId, info: IdentifyInfo) -> None:
        if info.listen_addrs:
            self._cache_addrs(peer.to_bytes(), tuple(info.listen_addrs))
        if PROTOCOL_ID in info.protocols:
            self._seen(peer)
        else:
            self.table.remove(peer.to_bytes())  # a client, or a server that stopped

    def _seen(self, peer: PeerId) -> None:
        outcome = self.table.update(peer.to_bytes(), trio.current_time())
        if outcome.ping is not None and self._nursery is not None and self._checks < 256:
            self._checks += 1
            self._nursery.start_soon(self._check_alive, outcome.ping)

    async def _check_alive(self, peer_id: bytes) -> None:
        alive = False
        try:
            with trio.move_on_after(self.config.request_timeout):
                await ping_service.ping(self.host, PeerId(peer_id))
                alive = True
        except _FAILURES:
            pass
        finally:
            self._checks -= 1
        self.table.resolve_pending(peer_id, alive, trio.current_time())

    async def _maintain(self) -> None:
        last_republish = trio.current_time()
        while True:
            await trio.sleep(self.config.maintenance_interval)
            self.store.expire(self.wall_clock())
            now = trio.current_time()
            if len(self.table):
                await self.refresh(only_stale=True)
            if now - last_republish >= self.config.republish_interval:
                last_republish = now
                await self.republish()

    # --- inbound ------------------------------------------------------------------
    async def _handle_stream(self, stream: YamuxStream) -> None:
        peer = stream.remote_peer
        assert isinstance(peer, PeerId)
        reader = MessageReader()
        while True:
            data = b""
            with trio.move_on_after(self.config.stream_idle_timeout):
                data = await stream.receive_some(65536)
            if not data:
                return
            for request in reader.receive_data(data):
                if not self._limiter.allow(peer.to_bytes(), trio.current_time()):
                    self.refused += 1
                    raise LimitExceededError(f"{peer} exceeds the kad request rate")
                response = self.answer(peer, request)
                if response is not None:
                    await stream.send_all(frame_message(response))

    def _peer_entry(self, peer_id: bytes) -> KadPeer:
        addrs = self._addr_cache.get(peer_id)
        if addrs is None:
            addrs = tuple(a.to_bytes() for a in self.host.peerstore.addrs(PeerId(peer_id)))
            self._cache_addrs(peer_id, addrs)
        connected = peer_id in self._connected
        kind = ConnectionType.CONNECTED if connected else ConnectionType.NOT_CONNECTED
        return KadPeer(peer_id, addrs, kind)

    def _closer_peers(self, key: bytes, requester: PeerId | None) -> tuple[KadPeer, ...]:
        skip = requester.to_bytes() if requester is not None else b""
        found = self.table.closest(kad_key_of(key), self.config.k + 1)
        return tuple(self._peer_entry(p) for p in found if p != skip)[: self.config.k]

    def answer(self, requester: PeerId, request: KadMessage) -> KadMessage | None:
        """The response to one request (None for ADD_PROVIDER, which has none)."""
        now = self.wall_clock()
        kind = request.type
        if kind == MessageType.FIND_NODE:
            return KadMessage(
                kind, request.key, closer_peers=self._closer_peers(request.key, requester)
            )
        if kind == MessageType.GET_VALUE:
            value = self.store.get_record(request.key, now)
            record = KadRecord(request.key, value, _rfc3339(now)) if value is not None else None
            return KadMessage(
                kind, request.key, record, closer_peers=self._closer_peers(request.key, requester)
            )
        if kind == MessageType.PUT_VALUE:
            record = request.record
            if record is None or record.key != request.key:
                raise RemoteProtocolError("PUT_VALUE without a record for its key")
            try:
                self.store_record(record.key, record.value)
            except (InvalidRecordError, LimitExceededError):
                self.refused += 1
                raise
            return request
        if kind == MessageType.ADD_PROVIDER:
            for provider in request.provider_peers:
                if provider.peer_id != requester.to_bytes():
                    continue  # only the sender may announce itself
                try:
                    self.store.add_provider(
                        request.key,
                        provider.peer_id,
                        provider.addrs,
                        now,
                        now + self.config.provider_ttl,
                    )
                except LimitExceededError:
                    self.refused += 1
                    raise
                self._learn_addrs(provider)
            return None
        if kind == MessageType.GET_PROVIDERS:
            providers = tuple(
                KadPeer(p.peer_id, p.addrs or self._peer_entry(p.peer_id).addrs)
                for p in self.store.providers(request.key, now)[: self.config.k]
            )
            return KadMessage(
                kind,
                request.key,
                closer_peers=self._closer_peers(request.key, requester),
                provider_peers=providers,
            )
        return KadMessage(MessageType.PING)  # PING: kept for old peers; we never send it

    def store_record(self, key: bytes, value: bytes) -> None:
        """Validate and store a record locally; ``InvalidRecordError`` says why not."""
        now = self.wall_clock()
        if len(value) > self.config.max_value_size:
            raise InvalidRecordError(
                f"record value of {len(value)} bytes exceeds {self.config.max_value_size}"
            )
        self.validator.validate(key, value, now)
        existing = self.store.get_record(key, now)
        if (
            existing is not None
            and existing != value
            and self.validator.select(key, [existing, value]) == 0
        ):
            raise InvalidRecordError("a better record is already stored for this key")
        expires = now + self.config.record_ttl
        own_expiry = self.validator.expiry(key, value)
        if own_expiry is not None:
            expires = min(expires, own_expiry)
        self.store.put_record(key, value, now, expires)

    # --- outbound -----------------------------------------------------------------
    def _learn_addrs(self, peer: KadPeer) -> None:
        if (
            peer.peer_id == self.local_id
            or not peer.addrs
            or self._addr_cache.get(peer.peer_id) == peer.addrs
        ):
            return
        addrs = []
        for raw in peer.addrs:
            try:
                addrs.append(Multiaddr.from_bytes(raw))
            except NeoNetError:
                continue
        with suppress(NeoNetError):
            self.host.peerstore.add_addrs(PeerId(peer.peer_id), addrs)
            self._cache_addrs(peer.peer_id, peer.addrs)

    def _take_stream(self, peer: PeerId) -> YamuxStream | None:
        """An idle outbound kad stream to ``peer`` from the pool (fresh enough), or None."""
        idle = self._idle_streams.get(peer.to_bytes())
        now = trio.current_time()
        while idle:
            stream, since = idle.pop()
            if now - since <= STREAM_REUSE_IDLE and not stream.session.closed:
                return stream
            stream.close_now()
        return None

    def _give_back(self, peer: PeerId, stream: YamuxStream) -> None:
        key = peer.to_bytes()
        idle = self._idle_streams.pop(key, [])
        idle.append((stream, trio.current_time()))
        while len(idle) > STREAMS_KEPT_PER_PEER:
            idle.pop(0)[0].close_now()
        self._idle_streams[key] = idle
        while len(self._idle_streams) > MAX_PEERS_WITH_IDLE_STREAMS:
            for old, _ in self._idle_streams.popitem(last=False)[1]:
                old.close_now()

    async def _exchange(self, stream: YamuxStream, message: KadMessage) -> KadMessage:
        await stream.send_all(frame_message(message))
        reader = MessageReader()
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise _StreamEnded("kad stream ended before the response")
            responses = reader.receive_data(data)
            if responses:
                if len(responses) > 1 or reader.buffered:
                    raise RemoteProtocolError("kad peer sent more than one response")
                return responses[0]

    async def request(self, peer: PeerId, message: KadMessage) -> KadMessage | None:
        """Send one request to ``peer`` and return its response (None for ADD_PROVIDER).

        Requests reuse an idle outbound stream to the peer where one is pooled (the
        spec allows several requests per stream); when a pooled stream fails (the peer
        ended or reset it, e.g. its idle timeout raced our request) the request is sent
        again on a new stream, so a refused request may reach the peer twice.
        Cancel-safe: a request cut short resets its stream.
        """
        with trio.fail_after(self.config.request_timeout):
            if message.type == MessageType.ADD_PROVIDER:
                stream = await self.host.new_stream(peer, [PROTOCOL_ID])
                try:
                    await stream.send_all(frame_message(message))
                    # No response exists; the peer's end of the stream (after it read
                    # ours) tells us the announcement arrived.
                    await stream.send_eof()
                    while await stream.receive_some(65536):
                        pass
                finally:
                    await stream.aclose()
                return None
            while True:
                pooled = self._take_stream(peer)
                stream = pooled or await self.host.new_stream(peer, [PROTOCOL_ID])
                try:
                    response = await self._exchange(stream, message)
                except (_StreamEnded, trio.BrokenResourceError, trio.ClosedResourceError):
                    stream.reset()
                    if pooled is not None:
                        continue  # the peer closed the idle stream: once more, fresh
                    raise
                except BaseException:
                    stream.reset()
                    raise
                break
        if response.type != message.type:
            stream.reset()
            raise RemoteProtocolError(f"kad response of type {response.type.name}")
        self._give_back(peer, stream)
        self._seen(peer)
        for entry in (*response.closer_peers, *response.provider_peers):
            self._learn_addrs(entry)
        return response

    async def _lookup(
        self,
        key: bytes,
        request: KadMessage,
        on_answer: Callable[[PeerId, KadMessage, int], bool] | None = None,
    ) -> Lookup:
        """Run an iterative lookup towards ``kad_key_of(key)`` sending ``request``.

        ``on_answer(peer, response, hop)`` returning True ends the lookup early.
        """
        target = kad_key_of(key)
        lookup = Lookup(
            target,
            self.table.closest(target, self.config.k),
            local_peer_id=self.local_id,
            k=self.config.k,
            alpha=self.config.alpha,
        )
        if target != self.table.local_key:
            self.table.mark_refreshed(target, trio.current_time())
        send, receive = trio.open_memory_channel[tuple[bytes, KadMessage | None]](self.config.alpha)

        async def query(peer_id: bytes) -> None:
            response: KadMessage | None = None
            try:
                response = await self.request(PeerId(peer_id), request)
            except _FAILURES as exc:
                logger.debug("kad request to %s failed: %s", PeerId(peer_id), exc)
                self.table.remove(peer_id)
            await send.send((peer_id, response))

        with trio.move_on_after(self.config.lookup_timeout):
            async with trio.open_nursery() as nursery:
                for peer_id in lookup.next_queries():
                    nursery.start_soon(query, peer_id)
                while not lookup.finished:
                    peer_id, response = await receive.receive()
                    if response is None:
                        lookup.on_failure(peer_id)
                    else:
                        lookup.on_response(peer_id, [p.peer_id for p in response.closer_peers])
                        hop = lookup.hop_of(peer_id)
                        if on_answer is not None and on_answer(PeerId(peer_id), response, hop):
                            break
                    for next_peer in lookup.next_queries():
                        nursery.start_soon(query, next_peer)
                nursery.cancel_scope.cancel()
        return lookup

    def _result(self, lookup: Lookup, **found: object) -> LookupResult:
        stats = lookup.statistics()
        hops = found.pop("hops", stats.hops)
        return LookupResult(
            peers=[PeerId(p) for p in lookup.closest()],
            hops=int(hops),  # type: ignore[call-overload]
            queried=stats.queried,
            failed=stats.failed,
            **found,  # type: ignore[arg-type]
        )

    async def find_closest(self, key: bytes) -> LookupResult:
        """The k closest servers to ``key`` (FIND_NODE lookup)."""
        lookup = await self._lookup(key, KadMessage(MessageType.FIND_NODE, key))
        return self._result(lookup)

    async def find_peer(self, peer: PeerId) -> LookupResult:
        """Find ``peer``'s addresses; ``result.addrs`` is empty if nobody knew them."""
        known = self.host.peerstore.addrs(peer)
        if self.host.swarm.connections_to(peer) and known:
            return LookupResult(peers=[], addrs=known)
        wanted = peer.to_bytes()
        found: list[Multiaddr] = []
        hop_found = 0

        def on_answer(_: PeerId, response: KadMessage, hop: int) -> bool:
            nonlocal hop_found
            for entry in response.closer_peers:
                if entry.peer_id == wanted and entry.addrs:
                    found.extend(self.host.peerstore.addrs(peer))
                    hop_found = hop
                    return True
            return False

        lookup = await self._lookup(wanted, KadMessage(MessageType.FIND_NODE, wanted), on_answer)
        if not found and wanted in lookup.closest():
            found = self.host.peerstore.addrs(peer)
        return self._result(lookup, addrs=found, hops=hop_found or lookup.statistics().hops)

    async def put_value(self, key: bytes, value: bytes, *, remember: bool = True) -> int:
        """Store ``value`` under ``key`` on the k closest servers (and here, in server mode).

        Returns how many remote peers accepted it. ``InvalidRecordError`` if our own
        validator refuses the record. With ``remember`` it is republished periodically
        and after restarts.
        """
        now = self.wall_clock()
        self.validator.validate(key, value, now)
        if len(value) > self.config.max_value_size:
            raise InvalidRecordError(f"record value exceeds {self.config.max_value_size} bytes")
        if remember:
            self.store.set_published(key, value)
        if self.config.mode == "server":
            try:
                self.store_record(key, value)
            except InvalidRecordError as exc:
                logger.info("not storing our own record locally: %s", exc)
        closest = (await self.find_closest(key)).peers
        message = KadMessage(MessageType.PUT_VALUE, key, KadRecord(key, value))
        return await self._send_to_all(closest, message)

    async def _send_to_all(self, peers: Sequence[PeerId], message: KadMessage) -> int:
        accepted = 0

        async def send_one(peer: PeerId) -> None:
            nonlocal accepted
            try:
                await self.request(peer, message)
                accepted += 1
            except _FAILURES as exc:
                logger.debug("kad %s to %s failed: %s", message.type.name, peer, exc)

        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(send_one, peer)
        return accepted

    async def search_value(
        self, key: bytes, *, quorum: int = 1, use_local: bool = True
    ) -> LookupResult:
        """Look ``key`` up; ends when ``quorum`` valid values were seen (the local one counts).

        ``use_local=False`` ignores our own store (to measure the network lookup).
        """
        now = self.wall_clock()
        values: list[bytes] = []
        holders: list[tuple[PeerId, bytes]] = []
        local = self.store.get_record(key, now) if use_local else None
        if local is not None:
            values.append(local)
            if quorum <= 1:
                return LookupResult(peers=[], value=local)
        hop_found = 0

        def on_answer(peer: PeerId, response: KadMessage, hop: int) -> bool:
            nonlocal hop_found
            record = response.record
            if record is None or record.key != key:
                return False
            try:
                self.validator.validate(key, record.value, now)
            except InvalidRecordError as exc:
                logger.info("%s returned an invalid record: %s", peer, exc)
                return False
            if not values:
                hop_found = hop
            values.append(record.value)
            holders.append((peer, record.value))
            return len(values) >= quorum

        lookup = await self._lookup(key, KadMessage(MessageType.GET_VALUE, key), on_answer)
        if not values:
            return self._result(lookup, value=None)
        best = values[self.validator.select(key, values)]
        outdated = [peer for peer, value in holders if value != best]
        if outdated and self._nursery is not None:
            correction = KadMessage(MessageType.PUT_VALUE, key, KadRecord(key, best))
            self._nursery.start_soon(self._send_to_all, outdated, correction)
        return self._result(lookup, value=best, hops=hop_found)

    async def get_value(self, key: bytes, *, quorum: int = 1) -> bytes | None:
        return (await self.search_value(key, quorum=quorum)).value

    async def provide(self, key: bytes, *, remember: bool = True) -> int:
        """Announce this node as a provider of ``key`` to the k closest servers."""
        if remember:
            self.store.add_providing(key)
        now = self.wall_clock()
        own_addrs = tuple(a.without_peer_id().to_bytes() for a in self.host.listen_addrs)
        if self.config.mode == "server":
            self.store.add_provider(
                key, self.local_id, own_addrs, now, now + self.config.provider_ttl
            )
        closest = (await self.find_closest(key)).peers
        message = KadMessage(
            MessageType.ADD_PROVIDER, key, provider_peers=(KadPeer(self.local_id, own_addrs),)
        )
        return await self._send_to_all(closest, message)

    async def find_providers(self, key: bytes, *, count: int = K) -> LookupResult:
        """Providers of ``key``; stops once ``count`` distinct providers are known."""
        found: dict[bytes, KadPeer] = {}
        for stored in self.store.providers(key, self.wall_clock()):
            found[stored.peer_id] = KadPeer(stored.peer_id, stored.addrs)
        if len(found) >= count:
            return LookupResult(peers=[], providers=list(found.values())[:count])
        hop_found = 0

        def on_answer(_: PeerId, response: KadMessage, hop: int) -> bool:
            nonlocal hop_found
            for provider in response.provider_peers:
                if provider.peer_id not in found:
                    found[provider.peer_id] = provider
                    hop_found = hop_found or hop
            return len(found) >= count

        lookup = await self._lookup(key, KadMessage(MessageType.GET_PROVIDERS, key), on_answer)
        return self._result(lookup, providers=list(found.values())[:count], hops=hop_found)

    # --- bootstrap and maintenance -------------------------------------------------------
    async def add_peer(self, address: Multiaddr | str) -> PeerId | None:
        """Connect to ``address`` and, once identify says it serves kad, add it to the table."""
        try:
            with trio.fail_after(self.config.request_timeout):
                peer = await self.host.connect(address)
                info = await self.identify.wait_identified(peer)
        except _FAILURES as exc:
            logger.info("bootstrap peer %s unreachable: %s", address, exc)
            return None
        if PROTOCOL_ID in info.protocols:
            self._seen(peer)
            return peer
        return None

    async def bootstrap(self, addresses: Iterable[Multiaddr | str] = ()) -> int:
        """Connect to ``addresses``, then look ourselves up and refresh the table.

        Returns the routing table size afterwards.
        """
        async with trio.open_nursery() as nursery:
            for address in addresses:
                nursery.start_soon(self.add_peer, address)
        await self.refresh(only_stale=False)
        return len(self.table)

    def _random_key_in_bucket(self, index: int) -> bytes:
        """A random peer-ID-like key whose SHA-256 falls in bucket ``index`` (< 16 bits deep)."""
        while True:
            candidate = b"\x12\x20" + self.random_bytes(32)
            if self.table.bucket_index(kad_key_of(candidate)) == index:
                return candidate

    async def refresh(self, *, only_stale: bool) -> None:
        """Look ourselves up, then look up a random key in each (stale) shallow bucket."""
        await self.find_closest(self.local_id)
        now = trio.current_time()
        if only_stale:
            buckets = self.table.stale_buckets(now, self.config.refresh_interval)
        else:
            buckets = [i for i, size in enumerate(self.table.bucket_sizes()) if size]
        for index in buckets:
            if index < 16:
                await self.find_closest(self._random_key_in_bucket(index))
            self.table.mark_refreshed(index, now)

    async def republish(self) -> None:
        """Put again every value this node published and announce every key it provides."""
        for key, value in self.store.published():
            try:
                await self.put_value(key, value, remember=False)
            except InvalidRecordError as exc:
                logger.info("not republishing %r: %s", key, exc)
        for key in self.store.providing():
            await self.provide(key, remember=False)

    def statistics(self) -> dict[str, int]:
        now = self.wall_clock()
        return {
            "routing_table": len(self.table),
            "records": self.store.record_count(now),
            "refused": self.refused,
        }
