"""SSN servers and clients in one process over loopback TCP (the federation, end to end)."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio

import neonet
from neonet.core.keys import Ed25519Identity
from neonet.node import Node
from neonet.proto.ssn.client_protocol import (
    PROTOCOL_ID,
    Challenge,
    ClientMessage,
    Error,
    ErrorCode,
    Found,
    FrameDecoder,
    Lookup,
    Register,
    Registered,
    Signal,
    SignalSent,
    SignalStatus,
    SsnRequestError,
    decode_message,
    encode_message,
    frame,
    proof_bytes,
    sign_presence,
)
from neonet.proto.ssn.federation import MEMBERSHIP_PROTOCOL_ID
from neonet.proto.ssn.federation import PROTOCOL_ID as FEDERATION_PROTOCOL_ID
from neonet.proto.ssn.membership import Member, MembershipConfig, MemberState, MessageKind
from neonet.proto.ssn.membership import Message as MembershipMessage
from neonet.proto.ssn.membership import encode_message as encode_membership
from neonet.proto.ssn.seeds import SeedEntry, SeedList, make_seed_list
from neonet.services.relay import open_relay, open_relay_client
from neonet.services.ssn.client import SsnClient, SsnClientConfig, open_ssn_client
from neonet.services.ssn.server import SsnConfig, SsnServer, open_ssn
from neonet.services.ssn.signals import ClientStream

FAST_MEMBERSHIP = MembershipConfig(protocol_period=0.5, ack_timeout=0.25, gossip_interval=0.05)


@dataclass
class Federation:
    seeds: SeedList
    servers: list[SsnServer]
    nodes: list[Node]
    scopes: list[trio.CancelScope]

    def stop(self, index: int) -> None:
        """Stop one SSN and its node at once (its connections close)."""
        self.scopes[index].cancel()


@asynccontextmanager
async def federation(
    regions: list[str], **config: object
) -> AsyncIterator[tuple[SeedList, list[SsnServer], list[Node]]]:
    async with federation_with_scopes(regions, **config) as fed:
        yield fed.seeds, fed.servers, fed.nodes


@asynccontextmanager
async def federation_with_scopes(regions: list[str], **config: object) -> AsyncIterator[Federation]:
    ssn_config = SsnConfig(membership=FAST_MEMBERSHIP, **config)  # type: ignore[arg-type]
    seeds_ready = trio.Event()
    shared: dict[str, SeedList] = {}
    servers: dict[int, SsnServer] = {}
    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        scopes: list[trio.CancelScope] = []

        async def run_one(index: int, region: str, *, task_status: trio.TaskStatus[Node]) -> None:
            with scopes[index]:
                async with neonet.open_node() as node:
                    task_status.started(node)
                    await seeds_ready.wait()
                    async with open_ssn(node.host, shared["seeds"], region, ssn_config) as server:
                        servers[index] = server
                        await trio.sleep_forever()

        for index, region in enumerate(regions):
            scopes.append(trio.CancelScope())
            nodes.append(await nursery.start(run_one, index, region))
        entries = [
            SeedEntry(node.peer_id.to_bytes(), region, (str(node.listen_addrs[0]),))
            for node, region in zip(nodes, regions, strict=True)
        ]
        shared["seeds"] = make_seed_list("test", 1, entries, issued_at=int(time.time()))
        seeds_ready.set()
        with trio.fail_after(40):
            while len(servers) < len(regions) or not all(  # noqa: ASYNC110 (polled views)
                len(s.live_member_ids()) == len(regions) for s in servers.values()
            ):
                await trio.sleep(0.05)
        try:
            yield Federation(
                shared["seeds"], [servers[i] for i in range(len(regions))], nodes, scopes
            )
        finally:
            nursery.cancel_scope.cancel()


async def _client(
    stack: AsyncExitStack, seeds: SeedList, name: str | None, region: str
) -> tuple[Node, SsnClient]:
    node = await stack.enter_async_context(neonet.open_node())
    client = await stack.enter_async_context(
        open_ssn_client(node.host, seeds, name=name, region=region)
    )
    return node, client


async def test_clients_find_each_other_signal_and_connect() -> None:
    with trio.fail_after(60):
        async with (
            federation(["eu", "eu", "us", "us"]) as (seeds, servers, _),
            AsyncExitStack() as stack,
        ):
            alice_node, alice = await _client(stack, seeds, "Alice", "eu")
            bob_node, bob = await _client(stack, seeds, "bob", "us")
            eu = {s.id for s in servers if s.region == "eu"}
            assert alice.ssn is not None and alice.ssn.to_bytes() in eu
            assert bob.ssn is not None and bob.ssn.to_bytes() not in eu

            found = await alice.lookup("BOB")
            assert found.peer_id == bob_node.peer_id
            assert found.name is not None and found.name.name == "bob"
            assert found.ssn_id == bob.ssn
            by_id = await bob.lookup(alice_node.peer_id)
            assert by_id.name is not None and by_id.name.name == "alice"

            status = await alice.send_signal(found.peer_id, b"offer: v=0")
            assert status is SignalStatus.DELIVERED
            incoming = bob.signals()
            signal = await incoming.__anext__()
            assert (signal.sender, signal.payload) == (alice_node.peer_id, b"offer: v=0")

            # After the signaling, a direct NeoNet connection to the looked-up addresses.
            peer = await alice_node.connect(found.addrs[0])
            assert peer == bob_node.peer_id
            assert len(await alice_node.ping(peer, count=2)) == 2

            with pytest.raises(SsnRequestError) as unknown:
                await alice.lookup("carol")
            assert unknown.value.code is ErrorCode.UNKNOWN_PEER
            with pytest.raises(SsnRequestError) as large:
                await alice.send_signal(bob_node.peer_id, b"x" * 20000)
            assert large.value.code is ErrorCode.TOO_LARGE
            stranger = neonet.PeerId.from_public_key(Ed25519Identity.generate().public_key)
            with pytest.raises(SsnRequestError) as nobody:
                await alice.send_signal(stranger, b"hi")
            assert nobody.value.code is ErrorCode.UNKNOWN_PEER


async def test_name_taken_by_another_key_is_refused() -> None:
    with trio.fail_after(60):
        async with federation(["eu", "eu", "eu"]) as (seeds, _, _), AsyncExitStack() as stack:
            await _client(stack, seeds, "dave", "eu")
            node = await stack.enter_async_context(neonet.open_node())
            with pytest.raises(SsnRequestError) as taken:
                async with open_ssn_client(node.host, seeds, name="Dave", region="eu"):
                    pass
            assert taken.value.code is ErrorCode.NAME_TAKEN


async def test_mailbox_holds_signals_for_a_briefly_offline_peer() -> None:
    with trio.fail_after(60):
        # Bob's region has one SSN, so he comes back to the SSN that holds his mailbox.
        async with federation(["eu", "us", "us"]) as (seeds, _, _), AsyncExitStack() as stack:
            _, alice = await _client(stack, seeds, "alice", "us")
            bob_node = await stack.enter_async_context(neonet.open_node())
            async with open_ssn_client(bob_node.host, seeds, name="bob", region="eu"):
                pass
            status = await alice.send_signal(bob_node.peer_id, b"are you there")
            assert status is SignalStatus.QUEUED
            async with open_ssn_client(bob_node.host, seeds, name="bob", region="eu") as bob:
                signal = await bob.signals().__anext__()
                assert signal.payload == b"are you there"
                assert signal.sender == alice.host.peer_id


async def test_client_fails_over_when_its_ssn_stops() -> None:
    with trio.fail_after(60):
        async with federation_with_scopes(["eu"] * 4) as fed, AsyncExitStack() as stack:
            _, alice = await _client(stack, fed.seeds, "alice", "eu")
            bob_node, bob = await _client(stack, fed.seeds, "bob", "eu")
            first = bob.ssn
            fed.stop(next(i for i, s in enumerate(fed.servers) if s.host.peer_id == first))
            started = trio.current_time()
            with trio.fail_after(10):
                while bob.ssn == first or bob.stats.failovers == 0:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            assert bob.stats.last_failover_seconds < 10
            assert trio.current_time() - started < 10
            with trio.fail_after(10):
                while True:
                    try:
                        found = await alice.lookup("bob")
                    except SsnRequestError:
                        found = None
                    if found is not None and found.ssn_id == bob.ssn:
                        break
                    await trio.sleep(0.1)
            assert await alice.send_signal(bob_node.peer_id, b"again") is SignalStatus.DELIVERED


async def _raw_session(node: Node, ssn: SsnServer) -> tuple[neonet.Stream, FrameDecoder, Challenge]:
    stream = await node.new_stream(ssn.host.listen_addrs[0], [PROTOCOL_ID])
    decoder = FrameDecoder()
    message = await _next_message(stream, decoder)
    assert isinstance(message, Challenge)
    return stream, decoder, message


async def _next_message(stream: neonet.Stream, decoder: FrameDecoder) -> ClientMessage:
    pending: list[bytes] = []
    while not pending:
        data = await stream.receive_some()
        assert data, "the SSN closed the stream"
        pending = decoder.feed(data)
    assert len(pending) == 1
    return decode_message(pending[0])


def _register_message(node: Node, challenge: Challenge, *, ssn_id: bytes | None = None) -> Register:
    identity = node.host.identity
    presence = sign_presence(
        identity,
        ssn_id or challenge.server_id,
        [str(a) for a in node.listen_addrs],
        seq=1,
        expires=int(time.time()) + 60,
    ).encode()
    proof = identity.sign(proof_bytes(challenge.nonce, challenge.server_id, presence))
    return Register(1, presence, proof, None)


async def test_protocol_errors_limits_and_garbage() -> None:
    with trio.fail_after(60):
        async with (
            # (A rate near zero: no token comes back during the test, however slow it runs.)
            federation(["eu"], max_clients=1, client_rate=1e-6, client_burst=2.0) as (
                seeds,
                servers,
                _,
            ),
            AsyncExitStack() as stack,
        ):
            ssn = servers[0]
            node = await stack.enter_async_context(neonet.open_node())
            stream, decoder, challenge = await _raw_session(node, ssn)
            # A request before registering.
            await stream.send_all(frame(encode_message(Lookup(5, "x"))))
            reply = await _next_message(stream, decoder)
            assert isinstance(reply, Error) and reply.code is ErrorCode.NOT_REGISTERED
            # A proof made for another nonce.
            bad = _register_message(node, Challenge(b"z" * 32, challenge.server_id))
            await stream.send_all(frame(encode_message(bad)))
            reply = await _next_message(stream, decoder)
            assert isinstance(reply, Error) and reply.code is ErrorCode.BAD_PROOF
            await stream.send_all(frame(encode_message(_register_message(node, challenge))))
            assert isinstance(await _next_message(stream, decoder), Registered)
            # The per-client rate: a burst of 2, then RATE_LIMITED with a retry time.
            codes = []
            for rid in range(10, 14):
                await stream.send_all(frame(encode_message(Lookup(rid, node.peer_id.to_bytes()))))
                reply = await _next_message(stream, decoder)
                codes.append(reply.code if isinstance(reply, Error) else "found")
            assert codes[:2] == ["found", "found"]
            assert codes[2:] == [ErrorCode.RATE_LIMITED] * 2
            # SIGNALs take the server's synchronous path: limited the same way (3 in one
            # write; no token has come back since the lookups).
            to_self = node.peer_id.to_bytes()
            await stream.send_all(
                b"".join(frame(encode_message(Signal(rid, to_self, b"hi"))) for rid in (15, 16, 17))
            )
            answers: dict[int, object] = {}
            while len(answers) < 3:
                data = await stream.receive_some()
                assert data, "the SSN closed the stream"
                for body in decoder.feed(data):  # (the answers may share a read)
                    reply = decode_message(body)
                    if isinstance(reply, Error | SignalSent):
                        answers[reply.request_id] = getattr(reply, "code", "sent")
            assert sorted(answers) == [15, 16, 17]
            assert list(answers.values()) == [ErrorCode.RATE_LIMITED] * 3

            # The SSN holds one client at most: a second one is told so.
            other = await stack.enter_async_context(neonet.open_node())
            with pytest.raises(SsnRequestError) as full:
                async with open_ssn_client(other.host, seeds, region="eu"):
                    pass
            assert full.value.code is ErrorCode.OVER_CAPACITY

            # Garbage on a stream ends that stream only; the SSN keeps serving.
            garbage, _, _ = await _raw_session(other, ssn)
            await garbage.send_all(b"\x05\xff\xff\xff\xff\xff")
            assert await garbage.receive_some() == b""
            await stream.send_all(frame(encode_message(Lookup(20, node.peer_id.to_bytes()))))
            assert isinstance(await _next_message(stream, decoder), Error | Found)
            assert ssn.statistics().clients == 1


async def test_client_reaches_an_ssn_over_websocket() -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            node = await stack.enter_async_context(
                neonet.open_node(listen=["/ip4/127.0.0.1/tcp/0/ws"])
            )
            entry = SeedEntry(node.peer_id.to_bytes(), "eu", (str(node.listen_addrs[0]),))
            seeds = make_seed_list("ws", 1, [entry], issued_at=int(time.time()))
            await stack.enter_async_context(open_ssn(node.host, seeds, "eu"))
            alice_node, alice = await _client(stack, seeds, "alice", "eu")
            _, bob = await _client(stack, seeds, "bob", "eu")
            assert "/ws" in str(alice.ssn_addrs[0])
            info = await bob.lookup("alice")
            assert info.peer_id == alice_node.peer_id
            assert await bob.send_signal(info.peer_id, b"over ws") is SignalStatus.DELIVERED
            nursery.cancel_scope.cancel()


async def test_registration_is_renewed_before_the_presence_expires() -> None:
    config = SsnClientConfig(presence_lifetime=4, keepalive_interval=0.2, keepalive_timeout=0.5)
    with trio.fail_after(60):
        async with (
            federation(["eu", "eu", "eu"]) as (seeds, _, _),
            AsyncExitStack() as stack,
        ):
            _, alice = await _client(stack, seeds, "alice", "eu")
            bob_node = await stack.enter_async_context(neonet.open_node())
            bob = await stack.enter_async_context(
                open_ssn_client(bob_node.host, seeds, name="bob", region="eu", config=config)
            )
            seqs = [(await alice.lookup("bob")).seq]
            started = trio.current_time()
            # Renewals every 2 s keep bob findable past his first record's 4 s lifetime.
            with trio.fail_after(15):
                while len(seqs) < 3:
                    found = await alice.lookup("bob")
                    assert found.ssn_id == bob.ssn
                    if found.seq != seqs[-1]:
                        seqs.append(found.seq)
                    await trio.sleep(0.1)
            assert seqs == sorted(seqs)
            assert trio.current_time() - started >= 3


async def test_client_without_a_listener_is_reached_through_its_ssns_relay() -> None:
    """Alice listens nowhere: she reserves on her SSN's circuit relay, publishes the
    relayed address by re-registering, and bob, having looked her up, connects through it."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            ssn_node = await stack.enter_async_context(neonet.open_node())
            entry = SeedEntry(ssn_node.peer_id.to_bytes(), "eu", (str(ssn_node.listen_addrs[0]),))
            seeds = make_seed_list("relay", 1, [entry], issued_at=int(time.time()))
            await stack.enter_async_context(open_relay(ssn_node))
            await stack.enter_async_context(open_ssn(ssn_node.host, seeds, "eu"))

            alice_node = await stack.enter_async_context(neonet.open_node(listen=()))
            alice = await stack.enter_async_context(
                open_ssn_client(alice_node.host, seeds, name="alice", region="eu")
            )
            relay_client = await stack.enter_async_context(
                open_relay_client(alice_node, alice.ssn_addrs)
            )
            await relay_client.wait_reserved()
            await alice.refresh()

            bob_node = await stack.enter_async_context(neonet.open_node(listen=()))
            await stack.enter_async_context(open_relay_client(bob_node))  # dials circuits
            _, bob = await _client(stack, seeds, "bob", "eu")
            info = await bob.lookup("alice")
            assert info.addrs and all("/p2p-circuit" in str(a) for a in info.addrs)
            peer = await bob_node.connect(info.addrs[0])
            assert peer == alice_node.peer_id
            assert len(await bob_node.ping(peer, count=2)) == 2
            nursery.cancel_scope.cancel()


async def test_registrations_per_address_are_rate_limited() -> None:
    with trio.fail_after(60):
        async with (
            federation(["eu"], address_rate=0.01, address_burst=1.0) as (seeds, _, _),
            AsyncExitStack() as stack,
        ):
            await _client(stack, seeds, "first", "eu")
            node = await stack.enter_async_context(neonet.open_node())
            with pytest.raises(SsnRequestError) as limited:
                async with open_ssn_client(node.host, seeds, region="eu"):
                    pass
            assert limited.value.code is ErrorCode.RATE_LIMITED
            assert "127.0.0.1" in limited.value.text


async def test_registration_backoff_jitter_comes_from_the_given_randomness() -> None:
    """No SSN answers: two jittered backoffs (after rounds 0 and 1), drawn from the
    injected source, then UNAVAILABLE."""

    class Recorder:
        def __init__(self) -> None:
            self.draws: list[int] = []

        def randrange(self, stop: int) -> int:
            self.draws.append(stop)
            return 0  # the shortest backoff: half the nominal one

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once closed
    gone = neonet.PeerId.from_public_key(Ed25519Identity.generate().public_key)
    seeds = make_seed_list(
        "test",
        1,
        [SeedEntry(gone.to_bytes(), "eu", (f"/ip4/127.0.0.1/tcp/{port}",))],
        issued_at=int(time.time()),
    )
    randomness = Recorder()
    with trio.fail_after(30):
        async with neonet.open_node() as node:
            with pytest.raises(SsnRequestError) as failed:
                async with open_ssn_client(node.host, seeds, region="eu", randomness=randomness):
                    pass
    assert failed.value.code is ErrorCode.UNAVAILABLE
    assert randomness.draws == [1024, 1024]


async def test_only_seed_list_members_speak_membership_and_federation() -> None:
    with trio.fail_after(60):
        async with federation(["eu", "eu"]) as (_, servers, _), AsyncExitStack() as stack:
            outsider = await stack.enter_async_context(neonet.open_node())
            victim = servers[1]
            # An outsider claims the victim is dead (a high incarnation would win if heard).
            update = Member(victim.id, "", "eu", 1 << 62, MemberState.DEAD)
            lie = encode_membership(MembershipMessage(MessageKind.GOSSIP, updates=(update,)))
            stream = await outsider.new_stream(
                servers[0].host.listen_addrs[0], [MEMBERSHIP_PROTOCOL_ID]
            )
            await stream.send_all(frame(lie))
            await stream.send_eof()
            assert await stream.receive_some() == b""
            federation_stream = await outsider.new_stream(
                servers[0].host.listen_addrs[0], [FEDERATION_PROTOCOL_ID]
            )
            assert await federation_stream.receive_some() == b""  # closed at once
            assert victim.id in servers[0].live_member_ids()
            state = servers[0].membership.member(victim.id)
            assert state is not None and state.state is MemberState.ALIVE


async def test_a_misbehaving_ssn_of_our_region_sends_us_to_another_region() -> None:
    """The eu SSN answers the challenge with garbage: the client is not hurt and registers
    with the SSN of the other region."""

    async def broken_ssn(stream: neonet.Stream) -> None:
        await stream.send_all(frame(encode_message(Challenge(b"n" * 32, fake.peer_id.to_bytes()))))
        await stream.receive_some()
        await stream.send_all(b"\x03\xff\xff\xff")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            fake = await stack.enter_async_context(neonet.open_node())
            fake.set_stream_handler(PROTOCOL_ID, broken_ssn)
            real = await stack.enter_async_context(neonet.open_node())
            seeds = make_seed_list(
                "mixed",
                1,
                [
                    SeedEntry(fake.peer_id.to_bytes(), "eu", (str(fake.listen_addrs[0]),)),
                    SeedEntry(real.peer_id.to_bytes(), "us", (str(real.listen_addrs[0]),)),
                ],
                issued_at=int(time.time()),
            )
            await stack.enter_async_context(open_ssn(real.host, seeds, "us"))
            _, client = await _client(stack, seeds, "alice", "eu")
            assert client.ssn == real.peer_id
            assert (await client.lookup("alice")).ssn_id == real.peer_id
            nursery.cancel_scope.cancel()


async def test_signals_sent_and_received_without_a_task_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``send_signal_nowait`` answers through a callback, ``set_signal_callback`` hands
    signals over from the reader: the load generator's path (bench.ssn). The SSN takes
    the SIGNAL frames on its synchronous path (``ClientStream.on_frame_nowait``), and
    application callbacks that raise do not break the client's channel."""
    # SIGNALs taken per frame, per read by the SignalRouter; FORWARDs delivered per read
    taken = [0, 0, 0]
    on_frame_nowait = ClientStream.on_frame_nowait
    on_read_nowait = ClientStream.on_read_nowait
    forwards_read = SsnServer._forwards_read

    def counting_forwards(self: SsnServer, channel: Any, bodies: list[bytes]) -> list[bytes]:
        rest = forwards_read(self, channel, bodies)
        taken[2] += len(bodies) - len(rest)
        return rest

    def counting(self: ClientStream, body: bytes) -> bool:
        done = on_frame_nowait(self, body)
        taken[0] += done
        return done

    def counting_reads(self: ClientStream, bodies: list[bytes]) -> list[bytes]:
        rest = on_read_nowait(self, bodies)
        taken[1] += len(bodies) - len(rest)
        return rest

    monkeypatch.setattr(ClientStream, "on_frame_nowait", counting)
    monkeypatch.setattr(ClientStream, "on_read_nowait", counting_reads)
    monkeypatch.setattr(SsnServer, "_forwards_read", counting_forwards)
    with trio.fail_after(60):
        async with (
            federation(["eu", "us"]) as (seeds, _, _),
            AsyncExitStack() as stack,
        ):
            alice_node, alice = await _client(stack, seeds, "alice", "eu")
            bob_node, bob = await _client(stack, seeds, "bob", "us")
            await alice.lookup(bob_node.peer_id)
            # The presence is now cached on alice's SSN, with its federation link.
            assert await alice.send_signal(bob_node.peer_id, b"warm") is SignalStatus.DELIVERED
            got: list[tuple[bytes, bytes]] = []
            results: list[object] = []
            all_answered, all_received = trio.Event(), trio.Event()
            count = 200

            def on_signal(sender: bytes, payload: bytes) -> None:
                got.append((sender, payload))
                if len(got) == count:
                    all_received.set()
                if payload.endswith(b"7"):
                    raise RuntimeError("an application bug")  # logged, dropped

            def on_sent(result: object) -> None:
                results.append(result)
                if len(results) == count + 1:
                    all_answered.set()
                if len(results) % 10 == 3:
                    raise KeyError("an application bug")

            bob.set_signal_callback(on_signal)
            for index in range(count):
                alice.send_signal_nowait(bob_node.peer_id, b"candidate %d" % index, on_sent)
            stranger = neonet.PeerId.from_public_key(Ed25519Identity.generate().public_key)
            alice.send_signal_nowait(stranger, b"hi", on_sent)
            await all_answered.wait()
            assert results.count(SignalStatus.DELIVERED) == count
            errors = [r for r in results if isinstance(r, SsnRequestError)]
            assert [e.code for e in errors] == [ErrorCode.UNKNOWN_PEER]
            await all_received.wait()
            sender = alice_node.peer_id.to_bytes()
            # (Order is kept per path; the first signals may take the lookup path.)
            assert sorted(got) == sorted((sender, b"candidate %d" % i) for i in range(count))
            assert alice.stats.callback_errors == 20  # results 3, 13, ..., 193 (of 201)
            assert bob.stats.callback_errors == 20  # payloads ending in 7
            # Both channels survived the raising callbacks.
            assert await alice.send_signal(bob_node.peer_id, b"after") is SignalStatus.DELIVERED
            assert alice.ssn is not None and alice.stats.failovers == 0
            assert bob.stats.failovers == 0
            # Most SIGNALs took the SSN's synchronous paths (all but the first few), most
            # of them the per-read ones (FORWARDs of the SignalRouter, delivered by the
            # receiving SSN's SignalRouter.deliver).
            assert sum(taken[:2]) >= count // 2
            assert taken[1] >= count // 2
            assert taken[2] >= count // 2


async def test_an_error_answering_a_routed_forward_reaches_the_client_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A FORWARD of the per-read ``SignalRouter`` answered by a federation ERROR (the
    peer left its SSN) goes the slow path's way at once (retry with the record owners,
    then the error to the client), not after the request timeout (30 s here)."""
    routed = [0]
    on_read_nowait = ClientStream.on_read_nowait

    def counting_reads(self: ClientStream, bodies: list[bytes]) -> list[bytes]:
        rest = on_read_nowait(self, bodies)
        routed[0] += len(bodies) - len(rest)
        return rest

    monkeypatch.setattr(ClientStream, "on_read_nowait", counting_reads)
    with trio.fail_after(60):
        async with (
            federation(["eu", "us"], offline_grace=0.0, request_timeout=30.0) as (seeds, _, _),
            AsyncExitStack() as stack,
        ):
            _, alice = await _client(stack, seeds, "alice", "us")
            bob_node = await stack.enter_async_context(neonet.open_node())
            async with open_ssn_client(bob_node.host, seeds, name="bob", region="eu"):
                await alice.lookup(bob_node.peer_id)
                assert await alice.send_signal(bob_node.peer_id, b"1") is SignalStatus.DELIVERED
                assert await alice.send_signal(bob_node.peer_id, b"2") is SignalStatus.DELIVERED
                assert routed[0] >= 1  # the route is known: the router forwards
            before = routed[0]
            with trio.fail_after(4), pytest.raises(SsnRequestError) as gone:
                await alice.send_signal(bob_node.peer_id, b"3")
            assert gone.value.code is ErrorCode.OFFLINE
            assert routed[0] == before + 1


async def test_busy_ssn_refuses_new_registrations_early_but_renews_held_clients() -> None:
    """Admission control: past ``max_registrations_in_flight`` new registrations get
    OVER_CAPACITY at once, a held client's renewal still goes through, and the SSN takes
    newcomers again once the ones in progress are done."""
    with trio.fail_after(60):
        async with (
            federation(["eu"], max_registrations_in_flight=1) as (_, servers, _),
            AsyncExitStack() as stack,
        ):
            ssn = servers[0]
            held, slow, late = [
                await stack.enter_async_context(neonet.open_node()) for _ in range(3)
            ]
            held_stream, held_decoder, held_challenge = await _raw_session(held, ssn)
            await held_stream.send_all(
                frame(encode_message(_register_message(held, held_challenge)))
            )
            assert isinstance(await _next_message(held_stream, held_decoder), Registered)

            # The next registration gets stuck in its STOREs (a slow federation); later
            # ones store at once.
            stores = ssn._store_everywhere
            entered, release = trio.Event(), trio.Event()

            async def slow_store(keys: list[bytes], presence: bytes, name: bytes | None) -> None:
                if not entered.is_set():
                    entered.set()
                    await release.wait()
                await stores(keys, presence, name)

            ssn._store_everywhere = slow_store  # type: ignore[method-assign]
            slow_stream, slow_decoder, slow_challenge = await _raw_session(slow, ssn)
            await slow_stream.send_all(
                frame(encode_message(_register_message(slow, slow_challenge)))
            )
            await entered.wait()

            late_stream, late_decoder, late_challenge = await _raw_session(late, ssn)
            late_register = _register_message(late, late_challenge)
            await late_stream.send_all(frame(encode_message(late_register)))
            refused = await _next_message(late_stream, late_decoder)
            assert isinstance(refused, Error) and refused.code is ErrorCode.OVER_CAPACITY
            assert "busy" in refused.text
            assert ssn.statistics().registrations_refused_busy == 1

            # While the slow one is still in progress, the held client renews.
            renewal = _register_message(held, held_challenge)
            await held_stream.send_all(frame(encode_message(renewal)))
            assert isinstance(await _next_message(held_stream, held_decoder), Registered)
            assert not release.is_set()
            release.set()
            assert isinstance(await _next_message(slow_stream, slow_decoder), Registered)

            # Nothing in progress any more: the refused client gets in on its next try.
            await late_stream.send_all(frame(encode_message(late_register)))
            assert isinstance(await _next_message(late_stream, late_decoder), Registered)
            assert ssn.statistics().clients == 3
            assert ssn.statistics().registrations_refused_busy == 1
