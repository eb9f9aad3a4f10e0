"""The SSN's signal path: SIGNAL, FORWARD and INCOMING (ARCHITECTURE.md, "The SSN").

Split from ``server.py`` (which keeps membership, records and stream handling):

- ``ClientStream``: one client's stream (REGISTER, then requests), with the raw SIGNAL
  frame hook (``on_frame_nowait``) that answers without a message object or a task when
  nothing needs a wait;
- ``SignalPath``, a mixin of ``SsnServer``: a signal to a client of ours (INCOMING, or
  its mailbox while it is briefly away), a FORWARD to the recipient's SSN
  (``proto.ssn.federation``) from the presence cache or the record owners, the answers
  to FORWARD/STORE/LOOKUP from other SSNs, and the task path ``_answer_client``.

The per-stream bound on requests in flight is ``slots.RequestSlots``.

The client protocol is ``proto.ssn.client_protocol``; the frames of the fast path are
built and parsed by ``backend.ssn_wire`` (Rust, or its pure-Python twin).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import suppress
from typing import TYPE_CHECKING

import trio

from neonet.core import backend
from neonet.core.errors import LimitExceededError
from neonet.core.peer_id import PeerId
from neonet.core.ratelimit import RateLimiter
from neonet.core.signal_router import Failed, SignalRouterInterface
from neonet.proto.names import name_key
from neonet.proto.ssn import client_protocol as cp
from neonet.proto.ssn import federation as fed
from neonet.proto.ssn.mailbox import Mailboxes, MailboxFull
from neonet.services.ssn.channel import ChannelClosedError, FramedChannel
from neonet.services.ssn.config import RequestFailed, ServerStatistics, SsnConfig
from neonet.services.ssn.slots import RequestSlots

if TYPE_CHECKING:
    from neonet.services.ssn.server import SsnServer

Code = cp.ErrorCode


class ClientSession:
    __slots__ = ("channel", "peer_id")

    def __init__(self, peer_id: bytes, channel: FramedChannel[cp.ClientMessage]) -> None:
        self.peer_id = peer_id
        self.channel = channel


class ClientStream:
    """One client's stream on this SSN: read in the stream handler's task (an idle client
    costs that task and its connection's reader, nothing else)."""

    __slots__ = ("address", "channel", "limiter", "nonce", "remote", "server", "session", "sid")

    def __init__(
        self,
        server: SsnServer,
        channel: FramedChannel[cp.ClientMessage],
        remote: PeerId,
        address: str,
    ) -> None:
        self.server = server
        self.channel = channel
        self.remote = remote
        self.address = address
        self.nonce = os.urandom(cp.NONCE_LENGTH)
        self.session: ClientSession | None = None
        self.limiter = RequestSlots(server.config.max_requests_in_flight)
        self.sid = server._add_stream(self)

    async def on_message(self, message: cp.ClientMessage) -> None:
        server, channel = self.server, self.channel
        rid = message.request_id
        if isinstance(message, cp.Register):
            try:
                self.session = session = await server._register(
                    self.remote, self.address, channel, self.nonce, message, self.session
                )
                await channel.send(cp.Registered(rid))
                for signal in server.mailboxes.take(session.peer_id, server._now()):
                    await channel.send(cp.Incoming(signal.sender, signal.payload))
            except RequestFailed as exc:
                server.stats.errors += 1
                await channel.send(cp.Error(rid, exc.code, exc.text[:500]))
            return
        if self.session is None:
            await channel.send(cp.Error(rid, Code.NOT_REGISTERED, "register before other requests"))
            return
        session = self.session
        refusal = self._rate_limited(session.peer_id, rid)
        if refusal is not None:
            await channel.send(refusal)
            return
        await self.limiter.acquire()
        if isinstance(message, cp.Signal) and server._signal_fast(
            channel, session.peer_id, message, self.limiter
        ):
            return
        self._answer_in_task(session.peer_id, message)

    def _rate_limited(self, peer_id: bytes, rid: int) -> cp.Error | None:
        """The RATE_LIMITED answer (counted) when the client is over its request rate."""
        server = self.server
        now = server._now()
        limits = server._client_limits
        if limits.allow(peer_id, now):
            return None
        server.stats.errors += 1
        wait = limits.retry_after(peer_id, now)
        return cp.Error(rid, Code.RATE_LIMITED, f"too many requests; retry in {wait:.2f} s")

    def _answer_in_task(self, peer_id: bytes, message: cp.ClientMessage) -> None:
        """Answer ``message`` in a task (its request slot is taken; the task frees it)."""
        server = self.server
        self.channel.spawn(server._answer_client, self.channel, peer_id, message, self.limiter)

    def on_read_nowait(self, bodies: list[bytes]) -> list[bytes]:
        """The frames of one read: the SIGNALs to peers at another SSN with an open link
        become FORWARDs in one ``SignalRouter`` call (one queue call per link), within the
        free request slots and rate tokens, up to the first frame it does not take: that one
        and all after it, in order, go to ``on_frame_nowait`` / ``on_message``."""
        session, channel, limiter = self.session, self.channel, self.limiter
        if session is None or limiter.free <= 0 or channel.buffered > channel.max_buffer:
            return bodies
        server = self.server
        now = server._now()
        budget = min(limiter.free, server._client_limits.available(session.peer_id, now))
        if budget <= 0:
            return bodies
        forwards, rest, taken = server._router.route(
            self.sid, session.peer_id, bodies, budget, trio.current_time()
        )
        if taken:
            server._client_limits.allow(session.peer_id, now, taken)
            limiter.take_many(taken)
            server.stats.signals += taken
            server._send_forwards(forwards)
        return rest

    def on_frame_nowait(self, body: bytes) -> bool:
        """``on_message`` for a SIGNAL frame when nothing needs a wait (registered, a
        request slot free, the answer buffer under its bound), read by the backend's
        parser: no message object, no coroutine per signal. False for anything else, or
        when a wait might be needed (nothing done yet): ``on_message`` takes it."""
        session, channel = self.session, self.channel
        if session is None or self.limiter.free <= 0 or channel.buffered > channel.max_buffer:
            return False
        fields = backend.ssn_wire.parse_signal_path(body, False)
        if fields is None or fields[0] != 5:
            return False
        _, rid, to, payload = fields
        refusal = self._rate_limited(session.peer_id, rid)
        if refusal is not None:
            with suppress(ChannelClosedError):
                channel.send_nowait(refusal)
            return True
        self.limiter.take_nowait()
        if not self.server._signal_fast_frame(
            channel, session.peer_id, rid, to, payload, self.limiter
        ):
            self._answer_in_task(session.peer_id, cp.Signal(rid, to, payload))
        return True


class SignalPath:
    """The signal path of ``SsnServer`` (a mixin: the server owns the state below)."""

    id: bytes
    config: SsnConfig
    stats: ServerStatistics
    store: fed.RecordStore
    mailboxes: Mailboxes
    clients: dict[bytes, ClientSession]
    _gone: OrderedDict[bytes, float]
    _presence_cache: OrderedDict[bytes, cp.PresenceRecord]
    _client_limits: RateLimiter[bytes]
    _fed_channels: dict[bytes, FramedChannel[fed.FederationMessage]]
    # The per-read SIGNAL -> FORWARD engine and its numbering: client streams (``sid``),
    # members with a federation link, links (one per outbound federation channel).
    _router: SignalRouterInterface
    _streams: dict[int, ClientStream]
    _members: dict[bytes, int]
    _link_channels: dict[int, FramedChannel[fed.FederationMessage]]
    _next_number: int

    if TYPE_CHECKING:  # defined by SsnServer

        def _now(self) -> float: ...

        def live_member_ids(self) -> list[bytes]: ...

        def _store_local(self, key: bytes, presence: bytes, name: bytes | None) -> None: ...

        async def _find(self, key: bytes, *, thorough: bool = False) -> fed.Entry | None: ...

        async def _fed_request(
            self, member_id: bytes, build: type, *fields: object
        ) -> fed.FederationMessage: ...

    # --- the SignalRouter's state and results ------------------------------------------
    def _number(self) -> int:
        self._next_number += 1
        return self._next_number

    def _add_stream(self, client: ClientStream) -> int:
        sid = self._number()
        self._streams[sid] = client
        return sid

    def _open_link(self, member_id: bytes, channel: FramedChannel[fed.FederationMessage]) -> int:
        """A new outbound federation channel to ``member_id``: its link number; the cached
        presences at that member get their routes."""
        member = self._members.get(member_id)
        if member is None:
            member = self._members[member_id] = self._number()
            for presence in self._presence_cache.values():
                if presence.ssn_id == member_id and presence.peer_id not in self.clients:
                    self._set_route(presence.peer_id, member)
        link = self._number()
        self._link_channels[link] = channel
        self._router.open_link(member, link)
        return link

    def _set_route(self, peer: bytes, member: int) -> None:
        # (an ID the router does not hold: its signals take the per-frame path)
        with suppress(ValueError, LimitExceededError):
            self._router.set_route(peer, member)

    def _close_link(self, link: int) -> None:
        """The link's channel closed: its FORWARDs still pending take the slow path."""
        self._link_channels.pop(link, None)
        self._fail_forwards(self._router.close_link(link))

    def _send_forwards(self, forwards: list[tuple[int, bytes]]) -> None:
        for link, blob in forwards:
            channel = self._link_channels.get(link)
            if channel is not None:
                try:
                    channel.send_frames_nowait(blob)
                    continue
                except ChannelClosedError:
                    pass
            self._close_link(link)

    def _fail_forwards(
        self, failed: list[Failed], code: Code = Code.UNAVAILABLE, text: str = ""
    ) -> None:
        """FORWARDs of the router without a FORWARDED: as ``_signal_fast_frame``'s
        ``on_reply`` (retry with the owners' newest record, or the error to the client)."""
        for sid, rid, to, payload in failed:
            self._forget_presence(to)
            client = self._streams.get(sid)
            if client is None:
                continue  # (the client is gone: nobody to answer)
            session, channel = client.session, client.channel
            if code in (Code.UNAVAILABLE, Code.OFFLINE) and session is not None:
                message = cp.Signal(rid, to, payload)
                try:
                    channel.spawn(
                        self._answer_client, channel, session.peer_id, message, client.limiter, 1
                    )
                except ChannelClosedError:
                    client.limiter.release()
                continue
            client.limiter.release()
            self.stats.errors += 1
            with suppress(ChannelClosedError):
                channel.send_nowait(cp.Error(rid, code, text[:500]))

    def _answers_read(self, link: int, bodies: list[bytes]) -> list[bytes]:
        """The frames of one read of our federation link: FORWARDED answers to the
        router's FORWARDs go to their clients as SIGNAL_SENT (one queue call per client);
        the rest is returned for the general path."""
        answers, rest = self._router.answer(link, bodies)
        streams = self._streams
        for sid, blob, count in answers:
            client = streams.get(sid)
            if client is not None:
                client.limiter.release(count)
                with suppress(ChannelClosedError):
                    client.channel.send_frames_nowait(blob)
        return rest

    def _unmatched_reply(self, link: int, message: fed.FederationMessage) -> None:
        """An answer no awaited request or callback took: the router's, if it is its."""
        if not isinstance(message, fed.FederationError | fed.Forwarded):
            return
        failed = self._router.take(link, message.request_id)
        if failed is None:
            return
        if isinstance(message, fed.FederationError):
            self._fail_forwards([failed], message.code, message.text)
            return
        client = self._streams.get(failed[0])
        if client is not None:
            client.limiter.release()
            with suppress(ChannelClosedError):
                client.channel.send_frame_nowait(
                    backend.ssn_wire.encode_status(False, failed[1], message.status)
                )

    def _forget_presence(self, peer: bytes) -> None:
        self._presence_cache.pop(peer, None)
        self._router.drop_route(peer)

    def _forwards_read(
        self, channel: FramedChannel[fed.FederationMessage], bodies: list[bytes]
    ) -> list[bytes]:
        """The frames of one read of another SSN's federation stream: its FORWARDs, one
        ``SignalRouter.deliver`` call for all, go as INCOMING to each recipient whose stream
        takes them now (one queue call per recipient) and their FORWARDED answers back in
        one queue call, up to the first other frame. That one and all after it, and the
        FORWARDs to a recipient not here or backed up, go in order to the per-frame path."""
        if channel.buffered > channel.max_buffer:
            return bodies
        groups, rest = self._router.deliver(bodies)
        if not groups:
            return rest
        clients = self.clients
        answers: list[bytes] = []
        refused: list[int] | None = None
        for to, incoming, forwarded, taken in groups:
            session = clients.get(to)
            client = None if session is None else session.channel
            if client is not None and not client.closed and client.buffered <= client.max_buffer:
                try:
                    client.send_frames_nowait(incoming)
                    answers.append(forwarded)
                    self.stats.forwards_in += len(taken)
                    continue
                except ChannelClosedError:
                    pass  # (nothing sent: the per-frame path queues them in the mailbox)
            refused = taken if refused is None else refused + taken
        if answers:
            with suppress(ChannelClosedError):
                channel.send_frames_nowait(b"".join(answers))
        if refused is None:
            return rest
        delivered = {index for group in groups for index in group[3]}.difference(refused)
        return [body for index, body in enumerate(bodies) if index not in delivered]

    def _forward_frame_nowait(
        self, channel: FramedChannel[fed.FederationMessage], body: bytes
    ) -> bool:
        """A FORWARD frame from another SSN to a client of ours whose stream takes it now:
        INCOMING and FORWARDED framed by the backend (``ssn_wire``), no message objects.
        False, with nothing done, for anything else (a mailbox, an error, a backed-up
        stream, another message): the federation handler then decodes it as before."""
        if channel.buffered > channel.max_buffer:
            return False
        wire = backend.ssn_wire
        fields = wire.parse_signal_path(body, True)
        if fields is None or fields[0] != 2:
            return False
        _, rid, sender, to, payload = fields
        if len(payload) > self.config.max_payload or len(payload) > cp.MAX_PAYLOAD:
            return False
        session = self.clients.get(to)
        if session is None:
            return False
        client = session.channel
        if client.closed or client.buffered > client.max_buffer:
            return False
        try:
            client.send_frame_nowait(wire.encode_incoming(sender, payload))
        except ChannelClosedError:
            return False  # (nothing sent: the general path queues it in the mailbox)
        self.stats.forwards_in += 1
        with suppress(ChannelClosedError):
            channel.send_frame_nowait(wire.encode_status(True, rid, cp.SignalStatus.DELIVERED))
        return True

    def _forwarded_frame_nowait(
        self, channel: FramedChannel[fed.FederationMessage], body: bytes
    ) -> bool:
        """A FORWARDED frame on our federation stream that answers a FORWARD of
        ``_signal_fast_frame``: its callback gets the answer without the general decoder
        and reply matching. False, with nothing done, for anything else."""
        fields = backend.ssn_wire.parse_signal_path(body, True)
        if fields is None or fields[0] != 5:
            return False
        callback = channel.take_reply_callback(fields[1])
        if callback is None:
            return False  # (an awaited request's answer, or a late one: the general path)
        callback(fed.Forwarded(fields[1], cp.SIGNAL_STATUSES[fields[2]]))
        return True

    def _answer_federation_now(
        self, message: fed.FederationMessage
    ) -> fed.FederationMessage | None:
        """The answer to a federation request, or None if it needs a task (a FORWARD to a
        client whose stream is backed up)."""
        rid = message.request_id
        if isinstance(message, fed.Forward):
            self.stats.forwards_in += 1
        try:
            if isinstance(message, fed.Store):
                self._store_local(message.key, message.presence, message.name_record)
                return fed.Stored(rid)
            if isinstance(message, fed.FederationLookup):
                entry = self.store.get(message.key, self._now())
                return fed.FederationFound(
                    rid,
                    None if entry is None else entry.presence_bytes,
                    None if entry is None else entry.name_bytes,
                )
            if isinstance(message, fed.Forward):
                if len(message.payload) > self.config.max_payload:
                    raise RequestFailed(Code.TOO_LARGE, "forwarded signal exceeds our payload cap")
                status = self._deliver_here_nowait(message.sender, message.to, message.payload)
                if status is None:
                    return None
                return fed.Forwarded(rid, status)
            raise RequestFailed(Code.BAD_REQUEST, "not a federation request")
        except RequestFailed as exc:
            return fed.FederationError(rid, exc.code, exc.text[:500])

    async def _forward_later(
        self,
        channel: FramedChannel[fed.FederationMessage],
        message: fed.Forward,
        limiter: RequestSlots,
    ) -> None:
        """Answer a FORWARD to a client whose stream is backed up (already counted)."""
        reply: fed.FederationMessage
        try:
            status = await self._deliver_here(message.sender, message.to, message.payload)
            reply = fed.Forwarded(message.request_id, status)
        except RequestFailed as exc:
            reply = fed.FederationError(message.request_id, exc.code, exc.text[:500])
        finally:
            limiter.release()
        with suppress(ChannelClosedError):
            await channel.send(reply)

    # --- signals ------------------------------------------------------------------
    async def _deliver_here(self, sender: bytes, to: bytes, payload: bytes) -> cp.SignalStatus:
        """Hand a signal to a client of this SSN, or its mailbox while it is briefly away."""
        status = self._deliver_here_nowait(sender, to, payload)
        if status is not None:
            return status
        session = self.clients.get(to)
        if session is not None and not session.channel.closed:
            try:
                await session.channel.send(cp.Incoming(sender, payload))
                return cp.SignalStatus.DELIVERED
            except ChannelClosedError:
                pass
        return self._queue_here(sender, to, payload)

    def _deliver_here_nowait(
        self, sender: bytes, to: bytes, payload: bytes
    ) -> cp.SignalStatus | None:
        """``_deliver_here`` without waiting; None if the client's stream is backed up."""
        session = self.clients.get(to)
        if session is not None and not session.channel.closed:
            if session.channel.buffered > session.channel.max_buffer:
                return None
            try:
                session.channel.send_nowait(cp.Incoming(sender, payload))
                return cp.SignalStatus.DELIVERED
            except ChannelClosedError:
                pass
        return self._queue_here(sender, to, payload)

    def _queue_here(self, sender: bytes, to: bytes, payload: bytes) -> cp.SignalStatus:
        gone_at = self._gone.get(to)
        if gone_at is None or gone_at < self._now() - self.config.offline_grace:
            raise RequestFailed(Code.OFFLINE, f"{PeerId(to)} is not connected to its SSN")
        try:
            self.mailboxes.put(to, sender, payload, self._now())
        except MailboxFull as exc:
            raise RequestFailed(Code.MAILBOX_FULL, str(exc)) from None
        return cp.SignalStatus.QUEUED

    async def _signal(
        self, sender: bytes, to: bytes, payload: bytes, *, first_attempt: int = 0
    ) -> cp.SignalStatus:
        if len(payload) > self.config.max_payload:
            raise RequestFailed(
                Code.TOO_LARGE, f"signal of {len(payload)} bytes exceeds {self.config.max_payload}"
            )
        if to in self.clients:
            return await self._deliver_here(sender, to, payload)
        live = set(self.live_member_ids())
        for attempt in range(first_attempt, 2):
            presence = self._presence_cache.get(to) if attempt == 0 else None
            if presence is None:
                entry = await self._find(fed.presence_key(to), thorough=attempt > 0)
                if entry is None:
                    raise RequestFailed(Code.UNKNOWN_PEER, f"no SSN knows {PeerId(to)}")
                presence = entry.presence
                self._remember_presence(presence)
            if presence.ssn_id == self.id:
                return await self._deliver_here(sender, to, payload)
            if presence.ssn_id not in live:
                self._forget_presence(to)
                if attempt == 0:
                    continue
                raise RequestFailed(Code.OFFLINE, f"the SSN of {PeerId(to)} is down")
            try:
                reply = await self._fed_request(presence.ssn_id, fed.Forward, sender, to, payload)
            except RequestFailed as exc:
                self._forget_presence(to)
                if attempt == 0 and exc.code in (Code.UNAVAILABLE, Code.OFFLINE):
                    continue
                raise
            assert isinstance(reply, fed.Forwarded)
            return reply.status
        raise RequestFailed(Code.OFFLINE, f"{PeerId(to)} cannot be reached")

    def _signal_fast(
        self,
        client_channel: FramedChannel[cp.ClientMessage],
        sender: bytes,
        message: cp.Signal,
        limiter: RequestSlots,
    ) -> bool:
        """``_signal_fast_frame`` of a decoded SIGNAL."""
        return self._signal_fast_frame(
            client_channel, sender, message.request_id, message.to, message.payload, limiter
        )

    def _signal_fast_frame(
        self,
        client_channel: FramedChannel[cp.ClientMessage],
        sender: bytes,
        rid: int,
        to: bytes,
        payload: bytes,
        limiter: RequestSlots,
    ) -> bool:
        """Handle a SIGNAL without a task when no wait is needed: to a client of ours whose
        stream takes it now, or a FORWARD on an open federation stream to the SSN of a
        cached presence, answered from that stream's reader. False: take the task path.
        On True, ``limiter`` is released once the client has its answer. The FORWARD and
        the SIGNAL_SENT are framed by the backend (``ssn_wire``), no message objects."""
        if len(payload) > self.config.max_payload:
            return False
        wire = backend.ssn_wire
        if to in self.clients:
            try:
                status = self._deliver_here_nowait(sender, to, payload)
            except RequestFailed:
                return False
            if status is None:
                return False
            self.stats.signals += 1
            limiter.release()
            with suppress(ChannelClosedError):
                client_channel.send_frame_nowait(wire.encode_status(False, rid, status))
            return True
        presence = self._presence_cache.get(to)
        if presence is None:
            return False
        federation = self._fed_channels.get(presence.ssn_id)
        if federation is None or federation.closed:
            return False  # (a dead member's stream is closed and dropped at once)

        def on_reply(reply: fed.FederationMessage | None) -> None:
            if isinstance(reply, fed.Forwarded):
                limiter.release()
                with suppress(ChannelClosedError):
                    client_channel.send_frame_nowait(wire.encode_status(False, rid, reply.status))
                return
            code = reply.code if isinstance(reply, fed.FederationError) else Code.UNAVAILABLE
            self._forget_presence(to)
            if code in (Code.UNAVAILABLE, Code.OFFLINE):
                # As _signal's first attempt failing: retry with the owners' newest record.
                message = cp.Signal(rid, to, payload)
                try:
                    client_channel.spawn(
                        self._answer_client, client_channel, sender, message, limiter, 1
                    )
                except ChannelClosedError:
                    limiter.release()  # the client is gone: nobody to answer
                return
            limiter.release()
            self.stats.errors += 1
            text = reply.text if isinstance(reply, fed.FederationError) else ""
            with suppress(ChannelClosedError):
                client_channel.send_nowait(cp.Error(rid, code, text[:500]))

        try:
            forward_id = federation.new_request_id()
            federation.request_frame_nowait(
                forward_id,
                wire.encode_forward(forward_id, sender, to, payload),
                on_reply,
                deadline=trio.current_time() + self.config.request_timeout,
            )
        except (ChannelClosedError, LimitExceededError):
            return False
        self.stats.signals += 1
        return True

    async def _expire_requests(self) -> None:
        """Fail federation requests sent without a waiting task once past their deadline."""
        while True:
            await trio.sleep(0.25)
            now = trio.current_time()
            for channel in list(self._fed_channels.values()):
                channel.expire(now)
            self._fail_forwards(self._router.expire(now))

    def _remember_presence(self, presence: cp.PresenceRecord) -> None:
        cache, router = self._presence_cache, self._router
        peer = presence.peer_id
        cache[peer] = presence
        cache.move_to_end(peer)
        while len(cache) > self.config.presence_cache:  # (first: routes <= cache size)
            router.drop_route(cache.popitem(last=False)[0])
        member = self._members.get(presence.ssn_id)
        if member is None or presence.ssn_id == self.id or peer in self.clients:
            router.drop_route(peer)
        else:
            self._set_route(peer, member)

    async def _answer_client(
        self,
        channel: FramedChannel[cp.ClientMessage],
        sender: bytes,
        message: cp.ClientMessage,
        limiter: RequestSlots,
        first_attempt: int = 0,
    ) -> None:
        """Answer a client's request; ``first_attempt`` 1 is the retry of a SIGNAL whose
        FORWARD from ``_signal_fast`` failed (counted there)."""
        rid = message.request_id
        reply: cp.ClientMessage
        try:
            if isinstance(message, cp.Lookup):
                self.stats.lookups += 1
                if isinstance(message.query, str):
                    try:
                        key = name_key(message.query)
                    except ValueError as exc:
                        raise RequestFailed(Code.BAD_REQUEST, str(exc)) from None
                else:
                    key = fed.presence_key(message.query)
                entry = await self._find(key)
                if entry is None:
                    raise RequestFailed(
                        Code.UNKNOWN_PEER, f"nobody is registered as {message.query!r}"
                    )
                reply = cp.Found(rid, entry.presence_bytes, entry.name_bytes)
            elif isinstance(message, cp.Signal):
                if first_attempt == 0:
                    self.stats.signals += 1
                status = await self._signal(
                    sender, message.to, message.payload, first_attempt=first_attempt
                )
                reply = cp.SignalSent(rid, status)
            else:
                raise RequestFailed(Code.BAD_REQUEST, "not a client request")
        except RequestFailed as exc:
            self.stats.errors += 1
            reply = cp.Error(rid, exc.code, exc.text[:500])
        finally:
            limiter.release()
        with suppress(ChannelClosedError):
            await channel.send(reply)
