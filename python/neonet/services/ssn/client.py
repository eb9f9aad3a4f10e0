"""The SSN client: pick a nearby SSN, register, look peers up, send and receive signals.

``open_ssn_client(host, seeds, ...)`` measures the round-trip time (connect + ping) to
the SSNs of the seed list, its own region first, picks the lowest of the region (any
region if none of its own answers), and registers there under the client's peer ID
and, optionally, a name (``proto.ssn.client_protocol``). A supervisor keeps it
registered: when the SSN's stream ends (the SSN died or restarted), it picks again
among the others and registers within ``FAILOVER_BOUND`` seconds (one RTT round of at
most ``probe_timeout`` plus one registration of at most ``request_timeout``); requests
made meanwhile wait for the new registration. Incoming signals are an async iterator
(``signals()``), fed from a bounded buffer: when the application does not read and the
buffer is full, newer signals are dropped and counted (``dropped_signals``).

Relays and hole punching (issue 6, "Relays"): given a ``Node`` (not only its ``Host``),
the client by default also runs a circuit relay v2 client that holds a reservation on
the SSN it is registered with (SSNs serve relay v2 unless ``neonet ssn serve
--no-relay``), moves it with the registration on fail-over, and registers again whenever
the relayed address changes, so a peer that looks the client up can dial it through its
SSN; and it runs DCUtR (``services.dcutr``), which upgrades relayed connections to direct
ones where the NATs allow. ``listen=`` addresses are opened after DCUtR has turned on
``SO_REUSEPORT``, so connections (to the SSN too) leave from the listening port and a
port-preserving NAT maps the hole punch like the SSN connection. ``connect(name)`` looks
a peer up, dials its direct addresses, falls back to its relayed address, waits for
DCUtR and says which path the connection ended on (``services.ssn.connectivity``).
``extra_addrs`` adds any other address to the presence record.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from neonet.core import backend
from neonet.core.errors import NeoNetError, RemoteProtocolError
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.proto.names import decode_name_record, sign_name_record
from neonet.proto.ssn import client_protocol as cp
from neonet.proto.ssn.connect_request import is_connect_request
from neonet.proto.ssn.membership import RandomSource
from neonet.proto.ssn.seeds import SeedEntry, SeedList
from neonet.services import ping as ping_service
from neonet.services.dcutr import DcutrService, open_dcutr
from neonet.services.relay import NodeLike, RelayClient, open_relay_client
from neonet.services.ssn.channel import ChannelClosedError, FramedChannel
from neonet.services.ssn.client_connect import MAX_DIALS_BACK, ClientConnect
from neonet.services.ssn.config import (
    ClientStatistics,
    IncomingSignal,
    PeerInfo,
    SsnClientConfig,
    SystemRandomness,
)
from neonet.services.ssn.connectivity import is_relayed_addr

logger = logging.getLogger("neonet.ssn.client")
# Seconds from losing the SSN's connection to being registered elsewhere (default config).
# An SSN that stops answering without closing the connection is noticed by the keep-alive
# ping first, which adds up to keepalive_interval + keepalive_timeout (15 s).
FAILOVER_BOUND = 10.0


def _is_reply(message: cp.ClientMessage) -> bool:
    return not isinstance(message, cp.Incoming | cp.Challenge)


def _entry_address(entry: SeedEntry) -> Multiaddr:
    address = Multiaddr.from_string(entry.addrs[0])
    return address if address.peer_id() else address.with_peer_id(entry.peer_id)


class SsnClient(ClientConnect):
    def __init__(
        self,
        host: Host,
        seeds: SeedList,
        *,
        name: str | None,
        region: str | None,
        config: SsnClientConfig,
        node: NodeLike | None = None,
        randomness: RandomSource | None = None,
    ) -> None:
        """``randomness``: the source of the registration backoff's jitter (the OS
        generator unless given)."""
        self._random: RandomSource = randomness or SystemRandomness()
        self.host = host
        self.node = node
        #: Set by ``open_ssn_client`` when it runs them (given a node).
        self.dcutr: DcutrService | None = None
        self.relay: RelayClient | None = None
        self._nursery: trio.Nursery | None = None  # for dials back (set while open)
        self._dials_back = 0
        self.seeds = seeds
        self.name = name
        self.region = region
        self.config = config
        self.ssn: PeerId | None = None
        self.ssn_addrs: list[Multiaddr] = []
        self.extra_addrs: list[str] = []
        self.stats = ClientStatistics()
        self._channel: FramedChannel[cp.ClientMessage] | None = None
        self._registered = trio.Event()
        self._changed = trio.Event()
        self._send_incoming, self._receive_incoming = trio.open_memory_channel[IncomingSignal](
            config.incoming_buffer
        )
        self._challenge: cp.Challenge | None = None
        self._seq = 0
        # set_signal_callback: incoming signals go there instead of ``signals()``.
        self._signal_callback: Callable[[bytes, bytes], None] | None = None
        # The channel whose request_nowait deadlines a task is sweeping (send_signal_nowait).
        self._swept: FramedChannel[cp.ClientMessage] | None = None

    # --- public API ---------------------------------------------------------------
    async def wait_registered(self) -> None:
        await self._registered.wait()

    async def lookup(self, query: str | PeerId) -> PeerInfo:
        """Find a peer by name or peer ID; ``SsnRequestError`` (UNKNOWN_PEER, ...) if not.

        Checks the presence signature (and, for a name, that the name record is valid and
        names the same key). Safe to cancel.
        """
        raw: str | bytes = query if isinstance(query, str) else query.to_bytes()
        reply = await self._request(lambda rid: cp.Lookup(rid, raw))
        assert isinstance(reply, cp.Found)
        presence = cp.decode_presence(reply.presence)
        cp.verify_presence(presence, time.time(), verify_ed25519=backend.verify_signature)
        name = None
        if reply.name_record is not None:
            from neonet.proto.names import verify_name_record

            name = decode_name_record(reply.name_record)
            verify_name_record(name, key=None, now=time.time())
            if name.peer_id.to_bytes() != presence.peer_id:
                raise cp.SsnRequestError(cp.ErrorCode.BAD_REQUEST, "name and presence disagree")
        if isinstance(query, PeerId) and presence.peer_id != query.to_bytes():
            raise cp.SsnRequestError(cp.ErrorCode.BAD_REQUEST, "the SSN answered for another peer")
        if isinstance(query, str) and (name is None or name.name != query.casefold()):
            raise cp.SsnRequestError(cp.ErrorCode.BAD_REQUEST, "the SSN answered another name")
        return PeerInfo(
            PeerId(presence.peer_id),
            tuple(Multiaddr.from_string(a) for a in presence.addrs),
            PeerId(presence.ssn_id),
            presence.seq,
            name,
        )

    def send_signal_nowait(
        self,
        peer: PeerId | bytes,
        payload: bytes,
        on_sent: Callable[[cp.SignalStatus | NeoNetError], None],
    ) -> None:
        """``send_signal`` without a task per signal, for senders of many (a load
        generator): ``on_sent(status)`` is called from the channel's reader when the SSN
        answers, ``on_sent(error)`` on an ERROR (``SsnRequestError``), when the channel
        closes, or past ``request_timeout`` (``ChannelClosedError``). No retry on another
        SSN. Raises ``ChannelClosedError`` when not registered now and
        ``LimitExceededError`` when the channel has too many requests pending."""
        channel = self._channel
        if channel is None or channel.closed:
            raise ChannelClosedError("not registered with an SSN now")
        to = peer if isinstance(peer, bytes) else peer.to_bytes()

        def on_reply(reply: cp.ClientMessage | None) -> None:
            if isinstance(reply, cp.SignalSent):
                self._run_callback(on_sent, reply.status)
            elif isinstance(reply, cp.Error):
                self._run_callback(on_sent, cp.SsnRequestError(reply.code, reply.text))
            else:
                self._run_callback(on_sent, ChannelClosedError("no answer from the SSN"))

        deadline = trio.current_time() + self.config.request_timeout
        if len(payload) <= cp.MAX_PAYLOAD:  # (framed by the backend, no message object)
            rid = channel.new_request_id()
            frame = backend.ssn_wire.encode_signal(rid, to, payload)
            channel.request_frame_nowait(rid, frame, on_reply, deadline=deadline)
        else:
            message = cp.Signal(channel.new_request_id(), to, payload)
            channel.request_nowait(message, on_reply, deadline=deadline)
        if self._swept is not channel:
            self._swept = channel
            channel.spawn(self._expire_requests, channel)

    async def _expire_requests(self, channel: FramedChannel[cp.ClientMessage]) -> None:
        """Fail ``send_signal_nowait`` requests past their deadline (cancelled with the
        channel's nursery)."""
        while not channel.closed:
            await trio.sleep(0.25)
            channel.expire(trio.current_time())

    def set_signal_callback(self, callback: Callable[[bytes, bytes], None] | None) -> None:
        """Hand incoming signals to ``callback(sender peer ID bytes, payload)`` from the
        channel's reader instead of ``signals()`` (no task switch per signal; the
        callback must not block). None goes back to ``signals()``."""
        self._signal_callback = callback

    def _run_callback(self, callback: Callable[..., None], *args: object) -> None:
        """Call an application callback from the channel's reader: an exception it raises
        is logged and dropped (counted in ``stats.callback_errors``), so that the channel
        and the other signals on it keep going."""
        try:
            callback(*args)
        except Exception:
            self.stats.callback_errors += 1
            logger.exception("SSN client: an application callback raised")

    async def send_signal(self, peer: PeerId, payload: bytes) -> cp.SignalStatus:
        """Deliver ``payload`` to ``peer`` through the SSNs: DELIVERED, or QUEUED in its
        mailbox; ``SsnRequestError`` says why not (OFFLINE, UNKNOWN_PEER, TOO_LARGE, ...)."""
        reply = await self._request(lambda rid: cp.Signal(rid, peer.to_bytes(), payload))
        assert isinstance(reply, cp.SignalSent)
        return reply.status

    async def signals(self) -> AsyncIterator[IncomingSignal]:
        """Incoming signals, in arrival order, until the client closes."""
        async for signal in self._receive_incoming:
            yield signal

    async def _current_channel(
        self, not_this: FramedChannel[cp.ClientMessage] | None
    ) -> FramedChannel[cp.ClientMessage]:
        with trio.fail_after(FAILOVER_BOUND + self.config.request_timeout):
            while True:
                channel = self._channel
                if channel is not None and channel is not not_this and not channel.closed:
                    return channel
                await self._changed.wait()

    def _state_changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _request(self, build: Callable[[int], cp.ClientMessage]) -> cp.ClientMessage:
        channel: FramedChannel[cp.ClientMessage] | None = None
        for attempt in range(2):
            # After a lost SSN, wait for the supervisor's registration elsewhere.
            channel = await self._current_channel(channel)
            try:
                message = build(channel.new_request_id())
                reply = await channel.request(message, answer_within=self.config.request_timeout)
            except ChannelClosedError:
                if attempt == 0:
                    continue
                raise
            if isinstance(reply, cp.Error):
                raise cp.SsnRequestError(reply.code, reply.text)
            return reply
        raise ChannelClosedError("no SSN answered")

    # --- choosing and registering -----------------------------------------------------
    async def _probe(self, entry: SeedEntry) -> float | None:
        try:
            with trio.fail_after(self.config.probe_timeout):
                started = trio.current_time()
                peer = await self.host.connect(_entry_address(entry))
                rtts = await ping_service.ping(self.host, peer, count=1)
                return min(rtts[0], trio.current_time() - started)
        except (NeoNetError, OSError, trio.TooSlowError, trio.BrokenResourceError):
            return None

    async def _choose(self, *, elsewhere: bool = False) -> list[SeedEntry]:
        """Reachable SSNs by RTT: of our own region (of any region if none of ours answers),
        or, ``elsewhere``, of the other regions only."""
        own = [e for e in self.seeds.entries if e.region == self.region]
        rest = [e for e in self.seeds.entries if e.region != self.region]
        groups = (rest,) if elsewhere else (own, rest)
        results: list[tuple[float, SeedEntry]] = []
        for group in groups:
            measured: dict[bytes, float] = {}

            async def measure(entry: SeedEntry, into: dict[bytes, float] = measured) -> None:
                rtt = await self._probe(entry)
                if rtt is not None:
                    into[entry.member_id] = rtt

            async with trio.open_nursery() as nursery:
                for entry in group[: self.config.max_probes]:
                    nursery.start_soon(measure, entry)
            for entry in group:
                if entry.member_id in measured:
                    results.append((measured[entry.member_id], entry))
                    self.stats.rtts[str(entry.peer_id)] = measured[entry.member_id]
            if results:
                break  # own region answered: do not spend time on the others
        results.sort(key=lambda item: item[0])
        if not results and not elsewhere:
            # Nobody answered a probe in time (an overloaded SSN is slow, not dead): try
            # them in seed-list order, own region first; registration has its own bounds.
            return self.seeds.in_region_first(self.region)
        return [entry for _, entry in results]

    async def _register(
        self, entry: SeedEntry, nursery: trio.Nursery
    ) -> FramedChannel[cp.ClientMessage]:
        if not self.host.swarm.connections_to(entry.peer_id):
            await self.host.connect(_entry_address(entry))  # the probe did not connect us
        stream = await self.host.new_stream(entry.peer_id, [cp.PROTOCOL_ID])
        channel: FramedChannel[cp.ClientMessage] = FramedChannel(
            stream,
            decode=cp.decode_message_fast,
            encode=cp.encode_message,
            is_reply=_is_reply,
            request_id_of=lambda m: m.request_id,
            framer=cp.frame_message_fast,
        )
        challenge_send, challenge_receive = trio.open_memory_channel[cp.Challenge](1)

        def on_message_nowait(message: cp.ClientMessage) -> bool:
            # Every message from the SSN is handled here, synchronously: no coroutine
            # per INCOMING, and the frames queued while a read is handled stay together.
            if isinstance(message, cp.Challenge):
                try:
                    challenge_send.send_nowait(message)
                except trio.WouldBlock:
                    raise RemoteProtocolError("the SSN sent a second CHALLENGE") from None
            elif isinstance(message, cp.Incoming):
                if is_connect_request(message.payload):
                    # Ours, not the application's (proto.ssn.connect_request).
                    self._on_connect_request(PeerId(message.sender), message.payload)
                    return True
                if self._signal_callback is not None:
                    self._run_callback(self._signal_callback, message.sender, message.payload)
                    return True
                try:
                    self._send_incoming.send_nowait(
                        IncomingSignal(PeerId(message.sender), message.payload)
                    )
                except trio.WouldBlock:
                    self.stats.dropped_signals += 1
            return True

        async def on_message(message: cp.ClientMessage) -> None:
            on_message_nowait(message)

        parse = backend.ssn_wire.parse_signal_path
        statuses = cp.SIGNAL_STATUSES

        def on_frame_nowait(body: bytes) -> bool:
            # The signal path's two answers read straight from the frame (backend parser):
            # SIGNAL_SENT to its send_signal_nowait callback, INCOMING to the signal
            # callback. Anything else (or None from the parser): the general decoder.
            fields = parse(body, False)
            if fields is None:
                return False
            if fields[0] == 6:
                callback = channel.take_reply_callback(fields[1])
                if callback is None:
                    return False  # (an awaited request's answer: the general path)
                callback(cp.SignalSent(fields[1], statuses[fields[2]]))
                return True
            signal_callback = self._signal_callback
            if fields[0] != 8 or signal_callback is None or is_connect_request(fields[3]):
                return False
            self._run_callback(signal_callback, fields[2], fields[3])
            return True

        await nursery.start(
            self._run_channel, channel, on_message, on_message_nowait, on_frame_nowait
        )
        try:
            with trio.fail_after(self.config.request_timeout):
                challenge = await challenge_receive.receive()
            if challenge.server_id != entry.member_id:
                raise cp.SsnRequestError(cp.ErrorCode.BAD_PROOF, "the SSN is not who we dialed")
            register = self._register_message(channel, challenge)
            reply = await channel.request(register, answer_within=self.config.request_timeout)
        except BaseException:
            await channel.aclose()
            raise
        if isinstance(reply, cp.Error):
            await channel.aclose()
            raise cp.SsnRequestError(reply.code, reply.text)
        nursery.start_soon(self._maintain, channel, challenge)
        self._challenge = challenge
        return channel

    @staticmethod
    async def _run_channel(
        channel: FramedChannel[cp.ClientMessage],
        on_message: Callable[[cp.ClientMessage], Awaitable[None]],
        on_message_nowait: Callable[[cp.ClientMessage], bool],
        on_frame_nowait: Callable[[bytes], bool],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await channel.run(
                on_message,
                on_message_nowait=on_message_nowait,
                on_frame_nowait=on_frame_nowait,
                task_status=task_status,
            )
        except RemoteProtocolError as exc:
            # A misbehaving SSN is treated like a lost one: the channel is closed, and the
            # supervisor registers elsewhere.
            logger.info("SSN broke the client protocol: %s", exc)

    async def refresh(self) -> None:
        """Register again now on the current SSN, e.g. to publish new addresses (a relayed
        address after a reservation on ``ssn``: it appears in ``host.listen_addrs``)."""
        channel = await self._current_channel(None)
        assert self._challenge is not None
        reply = await channel.request(
            self._register_message(channel, self._challenge),
            answer_within=self.config.request_timeout,
        )
        if isinstance(reply, cp.Error):
            raise cp.SsnRequestError(reply.code, reply.text)

    def _advertised_addrs(self) -> list[Multiaddr]:
        """Our addresses for others to dial: the host's listen addresses, or only its
        relayed ones unless ``advertise_listen_addrs``."""
        return [
            a
            for a in self.host.listen_addrs
            if self.config.advertise_listen_addrs or is_relayed_addr(a)
        ]

    def _register_message(
        self, channel: FramedChannel[cp.ClientMessage], challenge: cp.Challenge
    ) -> cp.Register:
        identity = self.host.identity
        self._seq = max(self._seq + 1, int(time.time() * 1000))
        expires = int(time.time()) + self.config.presence_lifetime
        addrs = [str(a) for a in self._advertised_addrs()] + self.extra_addrs
        presence = cp.sign_presence(
            identity, challenge.server_id, addrs, seq=self._seq, expires=expires
        ).encode()
        proof = identity.sign(cp.proof_bytes(challenge.nonce, challenge.server_id, presence))
        name_record = None
        if self.name is not None:
            name_record = sign_name_record(
                self.name, identity, seq=self._seq, expires=expires
            ).encode()
        return cp.Register(channel.new_request_id(), presence, proof, name_record)

    async def _maintain(
        self, channel: FramedChannel[cp.ClientMessage], challenge: cp.Challenge
    ) -> None:
        """Ping the SSN (yamux) every ``keepalive_interval`` (a silent SSN is given up after
        ``keepalive_timeout``) and renew the registration at half the presence lifetime."""
        peer = PeerId(challenge.server_id)
        renew_at = trio.current_time() + self.config.presence_lifetime / 2
        while not channel.closed:
            await trio.sleep(self.config.keepalive_interval)
            try:
                with trio.fail_after(self.config.keepalive_timeout):
                    # A yamux PING frame: answered by the SSN's session engine, no stream.
                    connections = self.host.swarm.connections_to(peer)
                    if not connections:
                        raise ChannelClosedError("the connection to the SSN is gone")
                    await connections[0].session.ping()
                    if trio.current_time() >= renew_at:
                        message = self._register_message(channel, challenge)
                        reply = await channel.request(
                            message, answer_within=self.config.keepalive_timeout
                        )
                        if isinstance(reply, cp.Error):
                            raise cp.SsnRequestError(reply.code, reply.text)
                        renew_at = trio.current_time() + self.config.presence_lifetime / 2
            except (NeoNetError, OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                logger.info("SSN %s stopped answering (%s); registering elsewhere", peer, exc)
                await channel.aclose()
                return

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay registered until cancelled; started once the first registration is done."""
        started = False
        lost_at: float | None = None
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    channel = await self._connect_somewhere(nursery)
                    self._channel = channel
                    self.stats.registrations += 1
                    if lost_at is not None:
                        self.stats.failovers += 1
                        self.stats.last_failover_seconds = trio.current_time() - lost_at
                    self._registered.set()
                    self._state_changed()
                    if not started:
                        started = True
                        task_status.started()
                    await channel.closed_event.wait()
                    nursery.cancel_scope.cancel()
            except cp.SsnRequestError as exc:
                if exc.code is cp.ErrorCode.NAME_TAKEN or not started:
                    raise
            lost_at = trio.current_time()
            self._state_changed()
            logger.info("lost SSN %s; registering elsewhere", self.ssn)

    async def _connect_somewhere(self, nursery: trio.Nursery) -> FramedChannel[cp.ClientMessage]:
        errors: list[str] = []
        refusals: list[cp.SsnRequestError] = []
        for round_number in range(1_000_000):
            tried: list[SeedEntry] = []
            # Our region first; only if every SSN there fails us, the other regions.
            for elsewhere in (False, True):
                if elsewhere and self.region is None:
                    break
                candidates = [e for e in await self._choose(elsewhere=elsewhere) if e not in tried]
                for entry in candidates:
                    tried.append(entry)
                    try:
                        channel = await self._register(entry, nursery)
                    except cp.SsnRequestError as exc:
                        errors.append(f"{entry.peer_id}: {exc}")
                        if exc.code is cp.ErrorCode.NAME_TAKEN:
                            raise
                        refusals.append(exc)
                        continue
                    except (
                        NeoNetError,
                        OSError,
                        trio.TooSlowError,
                        trio.BrokenResourceError,
                    ) as exc:
                        errors.append(f"{entry.peer_id}: {type(exc).__name__} {exc}".strip())
                        continue
                    self.ssn = entry.peer_id
                    self.ssn_addrs = [_entry_address(entry)]
                    for other in tried:
                        if other is not entry:
                            # Only the chosen SSN keeps a connection (each costs it memory).
                            nursery.start_soon(self.host.disconnect, other.peer_id)
                    return channel
            if round_number == 2 and self.ssn is None:
                if refusals and len(refusals) == len(errors):
                    raise refusals[-1]  # every SSN said no, and why (OVER_CAPACITY, ...)
                raise cp.SsnRequestError(
                    cp.ErrorCode.UNAVAILABLE, "no SSN accepted us: " + "; ".join(errors[-6:])
                )
            # Jittered: clients refused together (a busy SSN) do not all return together.
            backoff = min(2.0, 0.2 * math.pow(2, round_number))
            await trio.sleep(backoff * (0.5 + self._random.randrange(1024) / 2048))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.aclose()
        self._send_incoming.close()


@asynccontextmanager
async def open_ssn_client(
    host: Host | NodeLike,
    seeds: SeedList,
    *,
    name: str | None = None,
    region: str | None = None,
    config: SsnClientConfig | None = None,
    listen: Sequence[Multiaddr | str] = (),
    relay: bool | None = None,
    hole_punching: bool | None = None,
    randomness: RandomSource | None = None,
) -> AsyncIterator[SsnClient]:
    """Register with the best SSN of ``seeds`` (see the module docstring); stays registered
    (failing over) until the block ends. Raises ``SsnRequestError`` if no SSN takes us or
    the name is held by another key.

    Given a node (``neonet.Node``, or anything with ``host`` and ``identify_service``),
    ``relay`` (reserve on our SSN's circuit relay) and ``hole_punching`` (run DCUtR) are
    on unless set False; given a bare ``Host`` they are off and cannot be turned on.
    ``listen`` addresses are opened once DCUtR runs (see the module docstring): open the
    node with ``listen=()`` and pass its addresses here for hole punching through NATs.
    """
    node = None if isinstance(host, Host) else host
    the_host = host if isinstance(host, Host) else host.host
    if node is None and (relay or hole_punching):
        raise TypeError("relay and hole punching need a node (with identify), not a Host")
    client = SsnClient(
        the_host,
        seeds,
        name=name,
        region=region,
        config=config or SsnClientConfig(),
        node=node,
        randomness=randomness,
    )
    try:
        async with AsyncExitStack() as stack:
            if node is not None and relay is not False:
                client.relay = await stack.enter_async_context(open_relay_client(node))
            if node is not None and hole_punching is not False:
                client.dcutr = await stack.enter_async_context(
                    open_dcutr(node, dial_timeout=client.config.punch_timeout)
                )
            for address in listen:
                await the_host.listen(address)
            async with trio.open_nursery() as nursery:
                client._nursery = nursery
                await nursery.start(client.run)
                if client.relay is not None:
                    await nursery.start(client.keep_relay_on_ssn, client.relay)
                try:
                    yield client
                finally:
                    # Before the cancel: awaited in the cancelled nursery, a Cancelled would
                    # replace the caller's exception and the nursery would absorb it.
                    with trio.move_on_after(5) as cleanup:
                        cleanup.shield = True
                        await client.aclose()
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One error (the caller's own, or the client's) surfaces as itself, however many
        # nurseries it came through.
        single: BaseException = group
        while isinstance(single, BaseExceptionGroup) and len(single.exceptions) == 1:
            single = single.exceptions[0]
        if single is group:
            raise
        raise single from None


__all__ = [
    "FAILOVER_BOUND",
    "MAX_DIALS_BACK",
    "ClientStatistics",
    "IncomingSignal",
    "PeerInfo",
    "SsnClient",
    "SsnClientConfig",
    "open_ssn_client",
]
