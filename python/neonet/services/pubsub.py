"""GossipSub for a running node: the trio layer around ``neonet.proto.gossipsub``.

``open_pubsub(node)`` serves /meshsub/1.2.0, /meshsub/1.1.0, /meshsub/1.0.0 and
/floodsub/1.0.0 (libp2p/specs pubsub/README.md, pubsub/gossipsub/) on the node. Per
peer it keeps one long-lived outbound stream for our RPCs (opened when a connection
comes up, or when identify says the peer speaks pubsub) and reads the peer's inbound
stream. The router engine decides everything; this module moves bytes, runs the
heartbeat (every ``heartbeat_interval``, 1 s by default), runs validators and hands
messages to subscriptions.

Bounds: each peer's outbound queue holds at most ``max_queued_bytes`` (RPCs beyond it
are dropped and counted, as go-libp2p-pubsub does with a full peer queue), each
subscription buffers ``buffer`` messages (later ones are dropped and counted), RPC
size and contents are bounded by the codec, async validations by the router.

A peer's malformed or oversized RPC resets that peer's stream only
(``RemoteProtocolError``); the node keeps running.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Protocol

import trio

from neonet.core.errors import LocalProtocolError, NeoNetError
from neonet.core.gossip import (
    PROTOCOL_FLOODSUB,
    PROTOCOL_MESHSUB_V10,
    PROTOCOL_MESHSUB_V11,
    PROTOCOL_MESHSUB_V12,
)
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.net.swarm import Connection
from neonet.net.yamux_session import YamuxStream
from neonet.proto.gossipsub import (
    GossipRouter,
    PendingValidation,
    RouterConfig,
    RouterOutput,
    ValidationResult,
)
from neonet.proto.gossipsub_rpc import Message, RpcLimits, RpcReader, decode_rpcs, encode_rpc
from neonet.proto.gossipsub_rpc import frame as frame_rpc
from neonet.proto.identify import IdentifyInfo
from neonet.services.identify import IdentifyService

__all__ = [
    "PROTOCOLS",
    "NodeLike",
    "Pubsub",
    "PubsubConfig",
    "PubsubMessage",
    "Subscription",
    "ValidationResult",
    "Validator",
    "open_pubsub",
]

logger = logging.getLogger("neonet.pubsub")

# In order of preference: what we propose on our outbound stream.
PROTOCOLS = (PROTOCOL_MESHSUB_V12, PROTOCOL_MESHSUB_V11, PROTOCOL_MESHSUB_V10, PROTOCOL_FLOODSUB)


@dataclass(frozen=True, slots=True)
class PubsubMessage:
    """A message delivered to a subscription."""

    topic: str
    data: bytes
    msg_id: bytes
    author: PeerId | None  # ``from``; None under StrictNoSign
    seqno: bytes | None
    received_from: PeerId | None  # the peer that sent it to us; None for our own


# A validator gets the message and the peer it came from (None for our own messages) and
# returns a verdict (a bool means ACCEPT / REJECT), or an awaitable of one.
ValidatorResult = ValidationResult | bool
Validator = Callable[[PubsubMessage], ValidatorResult | Awaitable[ValidatorResult]]


@dataclass(frozen=True, slots=True)
class PubsubConfig:
    """Service settings; ``router`` holds the protocol's parameters."""

    router: RouterConfig = field(default_factory=RouterConfig)
    rpc_limits: RpcLimits = field(default_factory=RpcLimits)
    max_queued_bytes: int = 8 << 20  # per peer
    validation_timeout: float = 10.0
    open_stream_timeout: float = 10.0
    inbound_wait_timeout: float = 10.0  # an inbound stream waits this long for our outbound one
    max_px_dials: int = 16
    # v1.1 "Explicit Peering Agreements": addresses ending in /p2p/<peer ID>. They are
    # dialed at start and redialed every ``explicit_redial_interval`` seconds while not
    # connected; the router never meshes them and always forwards to them.
    explicit_peers: tuple[str, ...] = ()
    explicit_redial_interval: float = 300.0


class Subscription:
    """An async iterable of ``PubsubMessage``; ``aclose()`` (or leaving ``async with``) ends it.

    Safe to cancel while waiting. When more than ``buffer`` messages are waiting, newer
    ones are dropped for this subscription and counted in ``dropped``.
    """

    def __init__(self, pubsub: Pubsub, topic: str, buffer: int) -> None:
        self.topic = topic
        self.dropped = 0
        self._pubsub = pubsub
        self._send, self._receive = trio.open_memory_channel[PubsubMessage](buffer)
        self._closed = False

    def _offer(self, message: PubsubMessage) -> None:
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self.dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def receive(self) -> PubsubMessage:
        """The next message; ``trio.EndOfChannel`` once closed."""
        return await self._receive.receive()

    def __aiter__(self) -> AsyncIterator[PubsubMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[PubsubMessage]:
        try:
            while True:
                yield await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._send.close()
            self._pubsub._unsubscribe(self)

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Writer:
    """One peer's outbound stream and its bounded queue of framed RPCs.

    An RPC goes straight into the stream (``send_nowait``: no task switch; the
    connection's writer sends all that a scheduler pass queued in one write) while the
    window takes it; what it does not take waits in the queue for this writer's task.
    """

    def __init__(self, stream: YamuxStream, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.dropped = 0
        self.wake = trio.Event()
        self.closed = False
        self.sending = False  # the task is inside send_all: keep the order, queue

    def put(self, data: bytes) -> None:
        if self.closed:
            return
        if self.queued + len(data) > self.limit:
            self.dropped += 1
            return
        if not self.queue and not self.sending:
            try:
                taken = self.stream.send_nowait(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, NeoNetError):
                self.wake.set()  # the task finds the stream broken and ends
                return
            if taken == len(data):
                return
            data = data[taken:]
        self.queue.append(data)
        self.queued += len(data)
        self.wake.set()

    async def run(self) -> None:
        """Send until the stream breaks; a reset is noticed even with nothing to send."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, nursery.cancel_scope)
            await self._send_loop()
            nursery.cancel_scope.cancel()

    async def _send_loop(self) -> None:
        while not self.closed:
            if not self.queue:
                await self.wake.wait()
                self.wake = trio.Event()
                continue
            chunk = b"".join(self.queue)
            self.queue.clear()
            self.queued = 0
            self.sending = True
            try:
                await self.stream.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError, NeoNetError) as exc:
                logger.debug("pubsub stream to %s ended: %s", self.stream.remote_peer, exc)
                return
            finally:
                self.sending = False

    async def _watch(self, scope: trio.CancelScope) -> None:
        # The peer never writes on our outbound stream; a reset ends the writer. A clean
        # end of its write side (some peers half-close) leaves our direction working.
        try:
            while await self.stream.receive_some():
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()


class Pubsub:
    """The node's pubsub service; create it with ``open_pubsub``."""

    def __init__(self, node: NodeLike, config: PubsubConfig, nursery: trio.Nursery) -> None:
        self.node = node
        self.config = config
        self._nursery = nursery
        host = node.host
        self.router = GossipRouter(
            host.identity,
            host.peer_id.to_bytes(),
            config.router,
            seed=random.getrandbits(64),
        )
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._validators: dict[str, Validator] = {}
        self._writers: dict[bytes, _Writer] = {}
        self._opening: set[bytes] = set()
        self._registered: dict[bytes, trio.Event] = {}
        self._had_inbound: set[bytes] = set()  # peers whose inbound stream we have read
        self._peer_ids: dict[bytes, PeerId] = {}
        self._px_dials = 0
        self._changed = trio.Event()
        self.dropped_rpcs = 0

    # -- public API -------------------------------------------------------------------

    def subscribe(self, topic: str, *, buffer: int = 1024) -> Subscription:
        """Join ``topic``; the subscription receives its messages until closed."""
        if not topic:
            raise LocalProtocolError("empty topic")
        subscription = Subscription(self, topic, buffer)
        self._subscriptions.setdefault(topic, []).append(subscription)
        self.router.subscribe(topic, trio.current_time())
        self._flush()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        remaining = self._subscriptions.get(subscription.topic, [])
        if subscription in remaining:
            remaining.remove(subscription)
        if not remaining:
            self._subscriptions.pop(subscription.topic, None)
            self.router.unsubscribe(subscription.topic, trio.current_time())
            self._flush()

    async def publish(self, topic: str, data: bytes) -> bytes:
        """Validate ``data`` locally, then send it; returns the message ID.

        Raises ``LocalProtocolError`` when our own validator rejects or ignores it. Safe
        to cancel: a cancelled publish sends nothing.
        """
        msg_id, message = self.router.make_message(topic, data)
        validator = self._validators.get(topic)
        if validator is not None:
            verdict = await self._run_validator(validator, self._wrap(msg_id, message, None))
            if verdict is not ValidationResult.ACCEPT:
                raise LocalProtocolError(f"local validation said {verdict.value}")
        self.router.publish(msg_id, message, trio.current_time())
        self._flush()
        return msg_id

    def set_validator(self, topic: str, validator: Validator | None) -> None:
        """Messages of ``topic`` are delivered and forwarded only when ``validator`` accepts."""
        if validator is None:
            self._validators.pop(topic, None)
        else:
            self._validators[topic] = validator
        self.router.set_validated(topic, validator is not None)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; it is re-checked after every router event.

        Use it with ``trio.fail_after`` (e.g. until ``mesh_peers(topic)`` has peers).
        """
        while not predicate():
            await self._changed.wait()

    def mesh_peers(self, topic: str) -> list[PeerId]:
        return [PeerId(peer) for peer in self.router.mesh_peers(topic)]

    def topic_peers(self, topic: str) -> list[PeerId]:
        return [PeerId(peer) for peer in self.router.topic_peers(topic)]

    def pubsub_peers(self) -> list[PeerId]:
        return [PeerId(peer) for peer in self.router.peers()]

    # -- engine output ----------------------------------------------------------------

    def _flush(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        out: RouterOutput = self.router.drain()
        for peer, rpc in out.send.items():
            writer = self._writers.get(peer)
            if writer is None:
                continue
            before = writer.dropped
            writer.put(frame_rpc(encode_rpc(rpc)))
            self.dropped_rpcs += writer.dropped - before
        for delivered in out.deliver:
            subscribers = self._subscriptions.get(delivered.message.topic)
            if subscribers:
                source = None if delivered.source is None else self._peer_id(delivered.source)
                wrapped = self._wrap(delivered.msg_id, delivered.message, source)
                for subscription in subscribers:
                    subscription._offer(wrapped)
        for pending in out.validate:
            self._start_validation(pending)
        for peer in out.px:
            self._dial_px(peer)

    def _peer_id(self, raw: bytes) -> PeerId | None:
        """``PeerId(raw)``, cached (every delivery names its author and its sender)."""
        known = self._peer_ids.get(raw)
        if known is None:
            try:
                known = PeerId(raw)
            except NeoNetError:
                return None
            if len(self._peer_ids) >= 4096:
                self._peer_ids.clear()
            self._peer_ids[raw] = known
        return known

    def _wrap(self, msg_id: bytes, message: Message, source: PeerId | None) -> PubsubMessage:
        author = None if message.from_peer is None else self._peer_id(message.from_peer)
        return PubsubMessage(message.topic, message.data, msg_id, author, message.seqno, source)

    # -- validation -------------------------------------------------------------------

    def _start_validation(self, pending: PendingValidation) -> None:
        validator = self._validators.get(pending.message.topic)
        if validator is None:
            self.router.validation_done(pending, ValidationResult.ACCEPT, trio.current_time())
            self._flush()
            return
        wrapped = self._wrap(pending.msg_id, pending.message, self._peer_id(pending.source))
        try:
            result = validator(wrapped)
        except Exception:
            logger.exception("validator for %r crashed", pending.message.topic)
            result = ValidationResult.IGNORE
        if inspect.isawaitable(result):
            self._nursery.start_soon(self._finish_validation, pending, result)
            return
        self.router.validation_done(pending, _verdict(result), trio.current_time())
        self._flush()

    async def _finish_validation(
        self, pending: PendingValidation, result: Awaitable[ValidatorResult]
    ) -> None:
        verdict = ValidationResult.IGNORE
        with trio.move_on_after(self.config.validation_timeout):
            try:
                verdict = _verdict(await result)
            except Exception:
                logger.exception("validator for %r crashed", pending.message.topic)
        self.router.validation_done(pending, verdict, trio.current_time())
        self._flush()

    async def _run_validator(
        self, validator: Validator, message: PubsubMessage
    ) -> ValidationResult:
        result = validator(message)
        if inspect.isawaitable(result):
            with trio.fail_after(self.config.validation_timeout):
                result = await result
        return _verdict(result)

    # -- peers and streams ------------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        self._ensure_outbound(connection.remote_peer)

    def _on_disconnect(self, connection: Connection) -> None:
        peer = connection.remote_peer
        if self.node.host.swarm.connections_to(peer):
            return
        self._drop_peer(peer.to_bytes())

    def _on_identified(self, peer: PeerId, info: IdentifyInfo) -> None:
        if any(protocol in info.protocols for protocol in PROTOCOLS):
            self._ensure_outbound(peer)

    def _ensure_outbound(self, peer: PeerId) -> None:
        key = peer.to_bytes()
        if key in self._writers or key in self._opening:
            return
        self._opening.add(key)
        self._registered.setdefault(key, trio.Event())
        self._nursery.start_soon(self._run_outbound, peer)

    async def _run_outbound(self, peer: PeerId) -> None:
        key = peer.to_bytes()
        try:
            with trio.fail_after(self.config.open_stream_timeout):
                stream = await self.node.host.new_stream(peer, PROTOCOLS)
        except (NeoNetError, trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
            logger.debug("no pubsub stream to %s: %s", peer, exc)
            self._opening.discard(key)
            event = self._registered.pop(key, None)
            if event is not None:
                event.set()
            return
        self._opening.discard(key)
        connections = self.node.host.swarm.connections_to(peer)
        if not connections:
            stream.reset()
            self._registered.pop(key, trio.Event()).set()
            return
        connection = connections[0]
        protocol = stream.protocol or PROTOCOL_MESHSUB_V10
        writer = _Writer(stream, self.config.max_queued_bytes)
        self._writers[key] = writer
        self.router.add_peer(
            key,
            protocol,
            connection.direction == "outbound",
            trio.current_time(),
            _ip_of(connection),
        )
        self._registered.setdefault(key, trio.Event()).set()
        self._flush()
        try:
            await writer.run()  # returns when the stream broke (errors are handled inside)
        finally:
            lost = self._writers.get(key) is writer
            if lost:
                self._drop_peer(key)
            stream.reset()
            if lost and self.node.host.swarm.connections_to(peer):
                # Our stream died but another connection to the peer lives: reopen on it
                # (after a pause, so that a peer resetting every stream costs little).
                self._nursery.start_soon(self._reopen, peer)

    async def _reopen(self, peer: PeerId) -> None:
        await trio.sleep(self.config.router.heartbeat_interval)
        if self.node.host.swarm.connections_to(peer):
            self._ensure_outbound(peer)

    def _drop_peer(self, key: bytes) -> None:
        writer = self._writers.pop(key, None)
        if writer is not None:
            writer.closed = True
            writer.wake.set()
        self._registered.pop(key, None)
        self._had_inbound.discard(key)
        if self.router.has_peer(key):
            self.router.remove_peer(key, trio.current_time())
            self._flush()

    async def _handle_inbound(self, stream: YamuxStream) -> None:
        peer = stream.remote_peer
        assert isinstance(peer, PeerId)
        key = peer.to_bytes()
        if key in self._had_inbound and self.router.has_peer(key):
            # A second inbound stream from a known peer is a new session on its side (its
            # previous outbound stream died, and with it what it knew of us).
            self.router.resend_subscriptions(key)
            self._flush()
        self._had_inbound.add(key)
        self._ensure_outbound(peer)
        event = self._registered.get(key)
        if event is not None and not self.router.has_peer(key):
            with trio.move_on_after(self.config.inbound_wait_timeout):
                await event.wait()
        if not self.router.has_peer(key):
            return  # we could not open our side: nothing to do with this peer
        limits = self.config.rpc_limits
        reader = RpcReader(limits.max_rpc_size)
        router = self.router

        def on_data(data: bytes) -> None:
            # Runs in the connection's reader as each read arrives: no task switch per
            # RPC; what the RPCs of one read produce leaves in one write per peer.
            now = trio.current_time()
            try:
                for rpc in decode_rpcs(reader.feed(data), limits):
                    router.handle_rpc(key, rpc, now)
            finally:
                self._flush()

        stream.set_data_callback(on_data)
        try:
            while await stream.receive_some():
                pass  # the callback takes all data; this waits for the end or a reset
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if stream.callback_error is None:
                raise
        if stream.callback_error is not None:
            raise stream.callback_error  # a malformed RPC: the swarm resets the stream

    def _dial_px(self, peer: bytes) -> None:
        if self._px_dials >= self.config.max_px_dials:
            return
        try:
            peer_id = PeerId(peer)
        except NeoNetError:
            return
        if not self.node.host.peerstore.addrs(peer_id):
            return  # PX without a signed record gives no address; only known peers are dialed
        self._px_dials += 1
        self._nursery.start_soon(self._px_dial, peer_id)

    async def _px_dial(self, peer: PeerId) -> None:
        try:
            with trio.move_on_after(self.config.open_stream_timeout):
                await self.node.host.connection_to(peer)
        except (NeoNetError, OSError) as exc:
            logger.debug("PX dial to %s failed: %s", peer, exc)
        finally:
            self._px_dials -= 1

    async def _keep_explicit_peers(self) -> None:
        host = self.node.host
        while True:
            for address in self.config.explicit_peers:
                peer = Multiaddr.from_string(address).peer_id()
                if peer is None or host.swarm.connections_to(peer):
                    continue
                try:
                    with trio.move_on_after(self.config.open_stream_timeout):
                        await host.connect(address)
                except (NeoNetError, OSError) as exc:
                    logger.info("explicit peer %s unreachable: %s", address, exc)
            await trio.sleep(self.config.explicit_redial_interval)

    async def _heartbeat(self) -> None:
        interval = self.config.router.heartbeat_interval
        while True:
            await trio.sleep(interval)
            self.router.heartbeat(trio.current_time())
            self._flush()


def _explicit_ids(addresses: tuple[str, ...]) -> frozenset[bytes]:
    ids = set()
    for address in addresses:
        peer = Multiaddr.from_string(address).peer_id()
        if peer is None:
            raise LocalProtocolError(f"explicit peer address without /p2p/: {address}")
        ids.add(peer.to_bytes())
    return frozenset(ids)


def _verdict(result: object) -> ValidationResult:
    if isinstance(result, ValidationResult):
        return result
    if isinstance(result, bool):
        return ValidationResult.ACCEPT if result else ValidationResult.REJECT
    raise LocalProtocolError(f"a validator returned {result!r}")


def _ip_of(connection: Connection) -> str | None:
    for name in ("ip4", "ip6"):
        value = connection.remote_addr.value_for(name)
        if value is not None:
            try:
                return str(ipaddress.ip_address(value))
            except ValueError:
                return None
    return None


class NodeLike(Protocol):
    """What ``open_pubsub`` needs of a node (``neonet.node.Node`` has it)."""

    host: Host
    identify_service: IdentifyService


@asynccontextmanager
async def open_pubsub(node: NodeLike, config: PubsubConfig | None = None) -> AsyncIterator[Pubsub]:
    """Run GossipSub on ``node`` until the block ends (then streams close, hooks go away)."""
    config = config or PubsubConfig()
    explicit = _explicit_ids(config.explicit_peers)
    if explicit:
        config = replace(
            config,
            router=replace(config.router, explicit_peers=config.router.explicit_peers | explicit),
        )
    try:
        async with trio.open_nursery() as nursery:
            pubsub = Pubsub(node, config, nursery)
            swarm = node.host.swarm
            for protocol in PROTOCOLS:
                node.host.set_stream_handler(protocol, pubsub._handle_inbound)
            node.identify_service.announce_change()
            swarm.on_connection.append(pubsub._on_connection)
            swarm.on_disconnect.append(pubsub._on_disconnect)
            node.identify_service.on_identified.append(pubsub._on_identified)
            nursery.start_soon(pubsub._heartbeat)
            if config.explicit_peers:
                nursery.start_soon(pubsub._keep_explicit_peers)
            for peer in swarm.connected_peers():
                pubsub._ensure_outbound(peer)
            try:
                yield pubsub
            finally:
                swarm.on_connection.remove(pubsub._on_connection)
                swarm.on_disconnect.remove(pubsub._on_disconnect)
                node.identify_service.on_identified.remove(pubsub._on_identified)
                for protocol in PROTOCOLS:
                    node.host.remove_stream_handler(protocol)
                for subscriptions in list(pubsub._subscriptions.values()):
                    for subscription in list(subscriptions):
                        subscription._send.close()
                for writer in pubsub._writers.values():
                    writer.stream.reset()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The caller's own error (or one service failure) surfaces as itself.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
