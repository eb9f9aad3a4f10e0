"""The SSN server: one signaling server of the federation (ARCHITECTURE.md, "The SSN").

A NeoNet node (TCP and /ws) that serves three protocols:

- ``/neonet/ssn/client/1.0.0`` (``proto.ssn.client_protocol``): clients register (proof of
  key possession against our nonce, a signed presence record, an optional name record),
  look peers up by name or peer ID, and send signals, which reach the recipient's SSN
  and are pushed to it as INCOMING, or wait in a mailbox while it is briefly away;
- ``/neonet/ssn/membership/1.0.0``: the SWIM engine (``proto.ssn.membership``), one
  message per stream, members admitted only from the operator-signed seed list;
- ``/neonet/ssn/federation/1.0.0`` (``proto.ssn.federation``): STORE records on their
  ``R`` owners (rendezvous hashing over the live members), LOOKUP at an owner (one hop),
  FORWARD a signal to the recipient's SSN, and handoff copies when members change.

Limits, each with its own error code: clients per SSN (OVER_CAPACITY), per-client request
rate and per-address registration rate (RATE_LIMITED), payload size (TOO_LARGE), mailbox
space (MAILBOX_FULL); the swarm caps connections. Operator data lives in SQLite
(``operator_store``). ``serve_ssn`` runs until cancelled; ``open_ssn`` wraps it. The
signal path (SIGNAL, FORWARD, INCOMING, the client stream reader) is ``signals.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress

import trio

from neonet.core import backend
from neonet.core.errors import (
    DecodeError,
    NeoNetError,
    RemoteProtocolError,
)
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.core.ratelimit import RateLimiter
from neonet.net.host import Host
from neonet.net.yamux_session import YamuxStream
from neonet.proto.kad_records import InvalidRecordError
from neonet.proto.names import KEY_PREFIX, decode_name_record
from neonet.proto.ssn import client_protocol as cp
from neonet.proto.ssn import federation as fed
from neonet.proto.ssn.mailbox import Mailboxes
from neonet.proto.ssn.membership import (
    MemberDied,
    MemberJoined,
    MemberLeft,
    MemberRecovered,
    Membership,
)
from neonet.proto.ssn.placement import handoff, owners
from neonet.proto.ssn.seeds import SeedList
from neonet.services.ssn.channel import ChannelClosedError, FramedChannel
from neonet.services.ssn.config import RequestFailed, ServerStatistics, SsnConfig, SystemRandomness
from neonet.services.ssn.signals import ClientSession, ClientStream, SignalPath
from neonet.services.ssn.slots import RequestSlots

logger = logging.getLogger("neonet.ssn.server")
Code = cp.ErrorCode


def _request_id_of(message: cp.ClientMessage | fed.FederationMessage) -> int:
    return message.request_id


def _is_client_reply(message: cp.ClientMessage) -> bool:
    return False  # a server never waits for answers from a client


def _is_fed_reply(message: fed.FederationMessage) -> bool:
    return isinstance(
        message, fed.Stored | fed.FederationFound | fed.Forwarded | fed.FederationError
    )


def _member_address(entry_addrs: Sequence[str], member_id: bytes) -> str:
    address = Multiaddr.from_string(entry_addrs[0])
    return str(address if address.peer_id() else address.with_peer_id(PeerId(member_id)))


class SsnServer(SignalPath):
    """Create with ``open_ssn`` / ``serve_ssn``; ``statistics()`` for a snapshot."""

    def __init__(
        self, host: Host, seeds: SeedList, region: str, config: SsnConfig | None = None
    ) -> None:
        self.host = host
        self.config = config or SsnConfig()
        self.seeds = seeds
        self.region = region
        self.id = host.peer_id.to_bytes()
        if seeds.entry(self.id) is None:
            raise NeoNetError(f"this SSN ({host.peer_id}) is not on the seed list")
        self.store = fed.RecordStore(verify_ed25519=backend.verify_signature)
        self.mailboxes = Mailboxes(self.config.mailbox)
        self.clients: dict[bytes, ClientSession] = {}
        self._gone: OrderedDict[bytes, float] = OrderedDict()
        self._presence_cache: OrderedDict[bytes, cp.PresenceRecord] = OrderedDict()
        self._client_limits: RateLimiter[bytes] = RateLimiter(
            self.config.client_rate, self.config.client_burst
        )
        self._address_limits: RateLimiter[str] = RateLimiter(
            self.config.address_rate, self.config.address_burst
        )
        self._fed_channels: dict[bytes, FramedChannel[fed.FederationMessage]] = {}
        self._fed_opening: dict[bytes, trio.Lock] = {}
        self._router = backend.SignalRouter(
            min(self.config.max_payload, cp.MAX_PAYLOAD),
            self.config.request_timeout,
            self.config.max_routed_pending,
            max(1, self.config.presence_cache),
        )
        self._streams: dict[int, ClientStream] = {}
        self._members: dict[bytes, int] = {}
        self._link_channels: dict[int, FramedChannel[fed.FederationMessage]] = {}
        self._next_number = 0
        self._membership: Membership | None = None
        self._membership_wakeup = trio.Event()
        self._membership_sends = 0
        self._nursery: trio.Nursery | None = None
        self._registering = 0  # new registrations between their first check and their answer
        self.stats = ServerStatistics()

    # --- views --------------------------------------------------------------------
    def statistics(self) -> ServerStatistics:
        self.stats.clients = len(self.clients)
        self.stats.stored_records = len(self.store)
        return dataclasses.replace(self.stats)

    @property
    def membership(self) -> Membership:
        assert self._membership is not None, "the SSN is not running"
        return self._membership

    def live_member_ids(self) -> list[bytes]:
        return [m.member_id for m in self.membership.live_members()]

    def _now(self) -> float:
        return time.time()

    # --- lifecycle ----------------------------------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        address = str(self.host.listen_addrs[0])
        rng = SystemRandomness()
        self._membership = Membership(
            self.id,
            address,
            self.region,
            now=trio.current_time(),
            rng=rng,
            config=self.config.membership,
            admit=lambda member_id: self.seeds.entry(member_id) is not None,
            # A restarted SSN must outrank its own old "dead" record everywhere.
            incarnation=int(time.time()),
        )
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.host.set_stream_handler(cp.PROTOCOL_ID, self._handle_client)
            self.host.set_stream_handler(fed.PROTOCOL_ID, self._handle_federation)
            self.host.set_stream_handler(fed.MEMBERSHIP_PROTOCOL_ID, self._handle_membership)
            self.membership.join(
                [
                    (e.member_id, _member_address(e.addrs, e.member_id))
                    for e in self.seeds.entries
                    if e.member_id != self.id
                ],
                trio.current_time(),
            )
            nursery.start_soon(self._membership_loop)
            nursery.start_soon(self._housekeeping)
            nursery.start_soon(self._expire_requests)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                for protocol in (cp.PROTOCOL_ID, fed.PROTOCOL_ID, fed.MEMBERSHIP_PROTOCOL_ID):
                    self.host.remove_stream_handler(protocol)

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(10)
            now = self._now()
            self.store.expire(now)
            self.mailboxes.expire(now)
            horizon = now - self.config.offline_grace
            while self._gone and next(iter(self._gone.values())) < horizon:
                self._gone.popitem(last=False)

    # --- membership over NeoNet streams -------------------------------------------
    async def _membership_loop(self) -> None:
        engine = self.membership
        while True:
            with trio.move_on_at(engine.next_timer()):
                await self._membership_wakeup.wait()
            self._membership_wakeup = trio.Event()
            engine.handle_timer(trio.current_time())
            self._after_membership_input(wake=False)

    def _after_membership_input(self, *, wake: bool = True) -> None:
        engine = self.membership
        nursery = self._nursery
        assert nursery is not None
        for outgoing in engine.data_to_send():
            if self._membership_sends >= 256:
                break  # SWIM tolerates lost messages; do not pile up dials
            self._membership_sends += 1
            nursery.start_soon(self._send_membership, outgoing.to, outgoing.address, outgoing.data)
        events = engine.events()
        if any(
            isinstance(e, MemberJoined | MemberDied | MemberLeft | MemberRecovered) for e in events
        ):
            before = {e.member.member_id for e in events if isinstance(e, MemberJoined)}
            gone = {e.member.member_id for e in events if isinstance(e, MemberDied | MemberLeft)}
            after = self.live_member_ids()
            previous = [m for m in after if m not in before] + sorted(gone)
            for member_id in gone:
                channel = self._fed_channels.pop(member_id, None)
                for link, linked in list(self._link_channels.items()):
                    if linked is channel:
                        self._close_link(link)  # (no more FORWARDs to a dead member)
                if channel is not None:
                    nursery.start_soon(channel.aclose)
            nursery.start_soon(self._hand_off, previous, after)
        if wake:
            self._membership_wakeup.set()  # the engine may have a new, earlier timer

    async def _send_membership(self, to: bytes, address: str | None, data: bytes) -> None:
        try:
            peer = PeerId(to)
            # A late message is harmless (SWIM counts a late ACK as missing), but a budget
            # shorter than a Noise handshake under load would keep members from ever
            # connecting: so a generous bound for the dial and the write.
            with trio.move_on_after(max(5.0, 2 * self.config.membership.protocol_period)):
                if not self.host.swarm.connections_to(peer):
                    if address is None:
                        return
                    await self.host.connect(address)
                stream = await self.host.new_stream(peer, [fed.MEMBERSHIP_PROTOCOL_ID])
                try:
                    await stream.send_all(cp.frame(data))
                    await stream.send_eof()
                finally:
                    await stream.aclose()
        except (NeoNetError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("membership message to %s lost: %s", PeerId(to), exc)
        finally:
            self._membership_sends -= 1

    async def _handle_membership(self, stream: YamuxStream) -> None:
        sender = stream.session.remote_peer
        assert isinstance(sender, PeerId)
        if self.seeds.entry(sender.to_bytes()) is None:
            return  # only SSNs of the seed list may tell us who is alive or dead
        decoder = cp.FrameDecoder(self.config.membership.max_message_size)
        with trio.move_on_after(10):
            while data := await stream.receive_some(65536):
                for body in decoder.feed(data):
                    try:
                        self.membership.receive(sender.to_bytes(), body, trio.current_time())
                    except RemoteProtocolError as exc:
                        logger.info("bad membership message from %s: %s", sender, exc)
                        return
                    self._after_membership_input()

    async def _hand_off(self, before: list[bytes], after: list[bytes]) -> None:
        plan = handoff(self.store.keys(), before, after, self.id, self.config.replicas)
        now = self._now()
        for member_id, keys in plan.items():
            for key in keys:
                entry = self.store.get(key, now)
                if entry is None:
                    continue
                try:
                    await self._store_at(member_id, key, entry.presence_bytes, entry.name_bytes)
                except RequestFailed as exc:
                    logger.debug("handoff of a record to %s failed: %s", PeerId(member_id), exc)

    # --- federation ---------------------------------------------------------------
    async def _channel_to(self, member_id: bytes) -> FramedChannel[fed.FederationMessage]:
        channel = self._fed_channels.get(member_id)
        if channel is not None and not channel.closed:
            return channel
        lock = self._fed_opening.setdefault(member_id, trio.Lock())
        async with lock:
            channel = self._fed_channels.get(member_id)
            if channel is not None and not channel.closed:
                return channel
            member = self.membership.member(member_id)
            peer = PeerId(member_id)
            if member is not None and member.address and not self.host.swarm.connections_to(peer):
                await self.host.connect(member.address)
            stream = await self.host.new_stream(peer, [fed.PROTOCOL_ID])
            channel = FramedChannel(
                stream,
                decode=fed.decode_message_fast,
                encode=fed.encode_message,
                framer=fed.frame_message_fast,
                is_reply=_is_fed_reply,
                request_id_of=lambda m: m.request_id,
            )
            assert self._nursery is not None
            link = self._open_link(member_id, channel)
            self._nursery.start_soon(self._run_outbound_channel, channel, link)
            self._fed_channels[member_id] = channel
            return channel

    async def _run_outbound_channel(
        self, channel: FramedChannel[fed.FederationMessage], link: int
    ) -> None:
        async def unexpected(message: fed.FederationMessage) -> None:
            raise RemoteProtocolError("a federation peer sent a request on our stream")

        try:
            await channel.run(
                unexpected,
                on_frame_nowait=lambda body: self._forwarded_frame_nowait(channel, body),
                on_read_nowait=lambda bodies: self._answers_read(link, bodies),
                on_unmatched_reply=lambda message: self._unmatched_reply(link, message),
            )
        except RemoteProtocolError as exc:
            logger.info("federation stream closed: %s", exc)
            await channel.aclose()
        finally:
            self._close_link(link)

    async def _fed_request(
        self, member_id: bytes, build: type, *fields: object
    ) -> fed.FederationMessage:
        """One federation request; RequestFailed(UNAVAILABLE) if the member does not answer."""
        try:
            with trio.fail_after(self.config.request_timeout):
                channel = await self._channel_to(member_id)
                message = build(channel.new_request_id(), *fields)
                reply = await channel.request(message, answer_within=self.config.request_timeout)
        except (NeoNetError, OSError, trio.TooSlowError, ChannelClosedError) as exc:
            raise RequestFailed(
                Code.UNAVAILABLE, f"SSN {PeerId(member_id)} did not answer: {exc}"
            ) from None
        if isinstance(reply, fed.FederationError):
            raise RequestFailed(reply.code, reply.text)
        return reply

    async def _store_at(
        self, member_id: bytes, key: bytes, presence: bytes, name: bytes | None
    ) -> None:
        if member_id == self.id:
            self._store_local(key, presence, name)
            return
        await self._fed_request(member_id, fed.Store, key, presence, name)

    def _store_local(self, key: bytes, presence: bytes, name: bytes | None) -> None:
        try:
            self.store.put(key, presence, name, self._now())
        except fed.NameTakenError as exc:
            raise RequestFailed(Code.NAME_TAKEN, str(exc)) from None
        except fed.StoreFullError as exc:
            raise RequestFailed(Code.OVER_CAPACITY, str(exc)) from None
        except (DecodeError, InvalidRecordError) as exc:
            raise RequestFailed(Code.BAD_REQUEST, f"record refused: {exc}") from None

    async def _find(self, key: bytes, *, thorough: bool = False) -> fed.Entry | None:
        """The record under ``key`` from its owners: the first that has it, or (thorough)
        the newest of all owners' copies."""
        found: list[tuple[bytes, bytes | None]] = []
        failures: list[RequestFailed] = []

        async def ask(member_id: bytes) -> None:
            if member_id == self.id:
                entry = self.store.get(key, self._now())
                if entry is not None:
                    found.append((entry.presence_bytes, entry.name_bytes))
                return
            try:
                reply = await self._fed_request(member_id, fed.FederationLookup, key)
            except RequestFailed as exc:
                failures.append(exc)
                return
            if isinstance(reply, fed.FederationFound) and reply.presence is not None:
                found.append((reply.presence, reply.name_record))

        ranked = owners(key, self.live_member_ids(), self.config.replicas)
        if thorough:
            async with trio.open_nursery() as nursery:
                for member_id in ranked:
                    nursery.start_soon(ask, member_id)
        else:
            for member_id in ranked:
                await ask(member_id)
                if found:
                    break
        best: fed.Entry | None = None
        best_seq = -1
        now = self._now()
        for presence_bytes, name_bytes in found:
            # Owners checked the signatures on STORE (owners are seed-list SSNs, trusted as
            # much as we trust ourselves); the client checks them again on its side.
            try:
                presence = cp.decode_presence(presence_bytes)
            except DecodeError:
                continue
            if presence.expires <= now:
                continue
            if best is None or presence.seq > best_seq:
                best = fed.Entry(presence_bytes, name_bytes, presence.expires)
                best_seq = presence.seq
        if best is None and failures and len(failures) == len(ranked):
            raise failures[0]
        return best

    async def _handle_federation(self, stream: YamuxStream) -> None:
        sender = stream.session.remote_peer
        assert isinstance(sender, PeerId)
        if self.seeds.entry(sender.to_bytes()) is None:
            return  # only SSNs of the seed list speak federation
        channel: FramedChannel[fed.FederationMessage] = FramedChannel(
            stream,
            decode=fed.decode_message_fast,
            encode=fed.encode_message,
            framer=fed.frame_message_fast,
            is_reply=lambda m: False,
            request_id_of=_request_id_of,
            tasks=self._nursery,
        )
        limiter = RequestSlots(self.config.max_requests_in_flight)

        async def on_message(message: fed.FederationMessage) -> None:
            # Answered in this task when no wait is needed (STORE, LOOKUP, and a FORWARD
            # to a client whose stream takes it now): no task per request.
            reply = self._answer_federation_now(message)
            if reply is not None:
                with suppress(ChannelClosedError):
                    await channel.send(reply)
                return
            # Only a FORWARD to a backed-up client waits.
            assert isinstance(message, fed.Forward)
            await limiter.acquire()
            channel.spawn(self._forward_later, channel, message, limiter)

        def on_message_nowait(message: fed.FederationMessage) -> bool:
            # on_message without a coroutine, when neither the send nor a slot may wait.
            if channel.buffered > channel.max_buffer or limiter.free <= 0:
                return False
            reply = self._answer_federation_now(message)
            if reply is None:  # a FORWARD to a backed-up client: a slot is free
                assert isinstance(message, fed.Forward)
                limiter.take_nowait()
                channel.spawn(self._forward_later, channel, message, limiter)
                return True
            with suppress(ChannelClosedError):
                channel.send_nowait(reply)
            return True

        try:
            await channel.run(
                on_message,
                on_message_nowait=on_message_nowait,
                on_frame_nowait=lambda body: self._forward_frame_nowait(channel, body),
                on_read_nowait=lambda bodies: self._forwards_read(channel, bodies),
            )
        except RemoteProtocolError as exc:
            logger.info("bad federation message from %s: %s", sender, exc)

    # --- clients ------------------------------------------------------------------
    async def _handle_client(self, stream: YamuxStream) -> None:
        remote = stream.session.remote_peer
        assert isinstance(remote, PeerId)
        # The channel's answer tasks run in the SSN's nursery: a nursery per client
        # would be memory per client (docs/benchmarks.md); answers are bounded by
        # request_timeout and end quietly once the channel has closed.
        channel: FramedChannel[cp.ClientMessage] = FramedChannel(
            stream,
            decode=cp.decode_message_fast,
            encode=cp.encode_message,
            framer=cp.frame_message_fast,
            is_reply=_is_client_reply,
            request_id_of=_request_id_of,
            tasks=self._nursery,
        )
        client = ClientStream(self, channel, remote, self._remote_ip(remote))
        try:  # (from its registration in _streams on: the finally forgets it)
            try:
                channel.send_nowait(cp.Challenge(client.nonce, self.id))
            except ChannelClosedError:
                return  # reset before its CHALLENGE: nothing to serve
            try:
                await channel.run(
                    client.on_message,
                    on_frame_nowait=client.on_frame_nowait,
                    on_read_nowait=client.on_read_nowait,
                )
            except RemoteProtocolError as exc:
                # That stream ends; the SSN and the client's other streams go on.
                logger.info("bad client message from %s: %s", remote, exc)
        finally:
            self._streams.pop(client.sid, None)
            session = client.session
            if session is not None and self.clients.get(session.peer_id) is session:
                del self.clients[session.peer_id]
                self._gone[session.peer_id] = self._now()
                self._gone.move_to_end(session.peer_id)
                while len(self._gone) > self.config.max_clients * 4:
                    self._gone.popitem(last=False)

    def _remote_ip(self, remote: PeerId) -> str:
        for connection in self.host.swarm.connections_to(remote):
            parts = str(connection.remote_addr).split("/")
            return parts[2] if len(parts) > 2 else str(connection.remote_addr)
        return "?"

    async def _register(
        self,
        remote: PeerId,
        address: str,
        channel: FramedChannel[cp.ClientMessage],
        nonce: bytes,
        message: cp.Register,
        current: ClientSession | None,
    ) -> ClientSession:
        now = self._now()
        if not self._address_limits.allow(address, now):
            raise RequestFailed(Code.RATE_LIMITED, f"too many registrations from {address}")
        if current is not None:
            # A renewal of a client we hold: never refused for load, so that a burst of
            # newcomers cannot push out the clients already served.
            return await self._register_admitted(remote, channel, nonce, message, current, now)
        limit = self.config.max_registrations_in_flight
        if self._registering >= limit:
            # Admission control: work queued behind this many registrations would delay
            # every held client's keep-alive answers until they all give up and return at
            # once. Refuse early and cheaply; the client backs off or tries another SSN.
            self.stats.registrations_refused_busy += 1
            raise RequestFailed(
                Code.OVER_CAPACITY,
                f"busy: {limit} registrations in progress; retry shortly or use another SSN",
            )
        self._registering += 1
        try:
            return await self._register_admitted(remote, channel, nonce, message, current, now)
        finally:
            self._registering -= 1

    async def _register_admitted(
        self,
        remote: PeerId,
        channel: FramedChannel[cp.ClientMessage],
        nonce: bytes,
        message: cp.Register,
        current: ClientSession | None,
        now: float,
    ) -> ClientSession:
        try:
            presence = cp.decode_presence(message.presence)
            cp.verify_presence(presence, now, verify_ed25519=backend.verify_signature)
            cp.verify_proof(
                presence, message.proof, nonce, self.id, verify_ed25519=backend.verify_signature
            )
        except DecodeError as exc:
            raise RequestFailed(Code.BAD_PROOF, str(exc)) from None
        if presence.peer_id != remote.to_bytes():
            raise RequestFailed(Code.BAD_PROOF, "the presence is not of the connected peer")
        if presence.ssn_id != self.id:
            raise RequestFailed(Code.BAD_REQUEST, "the presence names another SSN")
        if current is None and len(self.clients) >= self.config.max_clients:
            raise RequestFailed(
                Code.OVER_CAPACITY,
                f"this SSN holds its maximum of {self.config.max_clients} clients",
            )
        keys = [fed.presence_key(presence.peer_id)]
        if message.name_record is not None:
            try:
                record = decode_name_record(message.name_record)
            except DecodeError as exc:
                raise RequestFailed(Code.BAD_REQUEST, f"bad name record: {exc}") from None
            keys.append(KEY_PREFIX + record.name.encode("ascii"))
        await self._store_everywhere(keys, message.presence, message.name_record)
        session = ClientSession(presence.peer_id, channel)
        old = self.clients.get(presence.peer_id)
        self.clients[presence.peer_id] = session
        self._router.drop_route(presence.peer_id)  # (signals to our own clients stay here)
        # Not put in the presence cache: signals to our own clients never consult it, and
        # it would hold a decoded record per client (memory per client).
        self._gone.pop(presence.peer_id, None)
        if old is not None and old.channel is not channel:
            assert self._nursery is not None
            self._nursery.start_soon(old.channel.aclose)
        self.stats.registrations += 1
        return session

    async def _store_everywhere(
        self, keys: list[bytes], presence: bytes, name: bytes | None
    ) -> None:
        """STORE under each key at its owners; each key needs one owner that took it."""
        live = self.live_member_ids()
        outcomes: dict[bytes, list[RequestFailed | None]] = {key: [] for key in keys}

        async def store(member_id: bytes, key: bytes) -> None:
            try:
                await self._store_at(member_id, key, presence, name)
                outcomes[key].append(None)
            except RequestFailed as exc:
                outcomes[key].append(exc)

        async with trio.open_nursery() as nursery:
            for key in keys:
                for member_id in owners(key, live, self.config.replicas):
                    nursery.start_soon(store, member_id, key)
        for results in outcomes.values():
            refusals = [r for r in results if r is not None]
            taken = [r for r in refusals if r.code is Code.NAME_TAKEN]
            if taken:
                raise taken[0]
            if len(refusals) == len(results):
                raise refusals[0] if refusals else RequestFailed(Code.UNAVAILABLE, "no owner")


async def serve_ssn(
    host: Host,
    seeds: SeedList,
    region: str,
    config: SsnConfig | None = None,
    *,
    task_status: trio.TaskStatus[SsnServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an SSN on ``host`` (already listening) until cancelled; starts with the server."""
    server = SsnServer(host, seeds, region, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        task_status.started(server)


@asynccontextmanager
async def open_ssn(
    host: Host, seeds: SeedList, region: str, config: SsnConfig | None = None
) -> AsyncIterator[SsnServer]:
    async with trio.open_nursery() as nursery:
        server: SsnServer = await nursery.start(serve_ssn, host, seeds, region, config)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


__all__ = ["ServerStatistics", "SsnConfig", "SsnServer", "open_ssn", "serve_ssn"]
