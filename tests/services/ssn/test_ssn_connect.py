"""The SSN client's connectivity (services/ssn/connectivity.py): a reservation on the
SSN's relay that follows the registration, and ``connect(name)``: direct addresses, then
the relay, then DCUtR, reporting which path the connection ended on. In one process on
loopback (through real NATs: tests/nat/test_nat.py)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio

import neonet
from neonet.node import Node
from neonet.proto.dcutr import MAX_ATTEMPTS
from neonet.proto.ssn.client_protocol import ErrorCode, SsnRequestError
from neonet.proto.ssn.connect_request import PREFIX
from neonet.proto.ssn.seeds import SeedList
from neonet.services.relay import open_relay
from neonet.services.ssn.client import SsnClient, SsnClientConfig, open_ssn_client
from neonet.services.ssn.connectivity import ConnectError, is_relayed_addr
from tests.services.ssn.test_ssn import federation, federation_with_scopes
from tests.streams import echo, exchange

ECHO = "/echo/1.0.0"
LOOPBACK = "/ip4/127.0.0.1/tcp/0"


async def _relaying(stack: AsyncExitStack, nodes: list[Node]) -> None:
    """Make every SSN of a test federation serve circuit relay v2, as `neonet ssn serve` does."""
    for node in nodes:
        await stack.enter_async_context(open_relay(node))


async def _punching_client(
    stack: AsyncExitStack,
    seeds: SeedList,
    name: str,
    *,
    listen: tuple[str, ...] = (LOOPBACK,),
    config: SsnClientConfig | None = None,
) -> tuple[Node, SsnClient]:
    node = await stack.enter_async_context(neonet.open_node(listen=()))
    node.set_stream_handler(ECHO, echo)
    client = await stack.enter_async_context(
        open_ssn_client(node, seeds, name=name, region="eu", listen=listen, config=config)
    )
    return node, client


async def _echo_over(node: Node, peer: neonet.PeerId) -> tuple[bool, bool]:
    """Echo 64 KiB on a new stream; (echoed intact, the stream ran over a relay)."""
    stream = await node.new_stream(peer, [ECHO])
    relayed = any(
        c.relayed and c.session is stream.session for c in node.host.swarm.connections_to(peer)
    )
    payload = bytes(range(256)) * 256
    return await exchange(stream, payload) == payload, relayed


async def test_a_node_with_default_listeners_registers_reserves_and_connects_directly() -> None:
    """``open_node()`` listens without SO_REUSEPORT; DCUtR (on by default for a node) must
    not make its dials bind that port. The client reserves on its SSN, publishes the relayed
    address, and a caller that can dial a listen address connects directly."""
    with trio.fail_after(60):
        async with federation(["eu"]) as (seeds, _, nodes), AsyncExitStack() as stack:
            await _relaying(stack, nodes)
            alice_node = await stack.enter_async_context(neonet.open_node())
            alice = await stack.enter_async_context(
                open_ssn_client(alice_node, seeds, name="alice", region="eu")
            )
            assert alice.relay is not None and alice.dcutr is not None
            assert alice.ssn in alice.relay.reservations
            bob_node = await stack.enter_async_context(neonet.open_node())
            bob_node.set_stream_handler(ECHO, echo)
            bob = await stack.enter_async_context(
                open_ssn_client(bob_node, seeds, name="bob", region="eu")
            )

            found = await alice.lookup("bob")
            assert any(is_relayed_addr(a) for a in found.addrs)  # published after reserving
            assert any(not is_relayed_addr(a) for a in found.addrs)
            connected = await alice.connect("bob")
            assert (connected.peer, connected.path) == (bob_node.peer_id, "direct")
            assert connected.direct and connected.dial_errors == ()
            assert await _echo_over(alice_node, bob_node.peer_id) == (True, False)
            del bob

            with pytest.raises(TypeError):
                async with open_ssn_client(alice_node.host, seeds, relay=True):
                    pass


async def test_unreachable_direct_address_falls_back_to_the_relay_and_dcutr_goes_direct() -> None:
    """Alice publishes only a dead direct address and her relayed one: bob's dial to the
    first fails, the relay carries the connection, and DCUtR (alice starts it, as the
    receiver of the relayed connection) makes it direct; bob's result says so."""
    with trio.fail_after(60):
        async with federation(["eu"]) as (seeds, _, nodes), AsyncExitStack() as stack:
            await _relaying(stack, nodes)
            hidden = SsnClientConfig(advertise_listen_addrs=False)
            alice_node, alice = await _punching_client(stack, seeds, "alice", config=hidden)
            with trio.socket.socket() as closed:  # a port with nobody listening
                await closed.bind(("127.0.0.1", 0))
                dead_port = closed.getsockname()[1]
            alice.extra_addrs = [f"/ip4/127.0.0.1/tcp/{dead_port}/p2p/{alice_node.peer_id}"]
            await alice.refresh()
            bob_node, bob = await _punching_client(stack, seeds, "bob")

            connected = await bob.connect("alice")
            assert connected.peer == alice_node.peer_id
            assert len(connected.dial_errors) == 1 and str(dead_port) in connected.dial_errors[0]
            assert connected.path == "hole-punch", connected
            assert connected.hole_punch is not None and connected.hole_punch.success
            assert not connected.hole_punch.initiator  # bob answered alice's CONNECT
            assert await _echo_over(bob_node, alice_node.peer_id) == (True, False)
            # Alice's side of the punch: she initiated, and it worked.
            assert alice.dcutr is not None
            mine = await alice.dcutr.wait_result(bob_node.peer_id)
            assert mine.initiator and mine.success


async def test_connection_stays_relayed_when_no_punch_can_succeed() -> None:
    """Neither client listens: the addresses DCUtR exchanges (where the SSN saw them) have
    no listener behind them, every punch fails, and the connection keeps working over the
    relay; ``connect`` reports it relayed after the peer's attempts are used up."""
    with trio.fail_after(60):
        async with federation(["eu"]) as (seeds, _, nodes), AsyncExitStack() as stack:
            await _relaying(stack, nodes)
            quick = SsnClientConfig(punch_timeout=1.0, advertise_listen_addrs=False)
            alice_node, _ = await _punching_client(stack, seeds, "alice", listen=(), config=quick)
            bob_node, bob = await _punching_client(stack, seeds, "bob", listen=(), config=quick)

            connected = await bob.connect("alice", upgrade_timeout=0)
            assert connected.path == "relayed" and connected.hole_punch is None
            assert await _echo_over(bob_node, alice_node.peer_id) == (True, True)
            final = await bob.wait_upgrade(connected, within=30)
            assert final.path == "relayed" and not final.direct
            assert final.hole_punch is not None and not final.hole_punch.success
            assert bob.dcutr is not None
            since = bob.dcutr.results_since(connected.punch_mark)
            answered = [r for r in since if r.peer == alice_node.peer_id]
            assert len(answered) == MAX_ATTEMPTS and not any(r.success for r in answered)
            assert await _echo_over(bob_node, alice_node.peer_id) == (True, True)


async def test_unknown_peers_are_clear_errors_and_dead_addresses_are_reported() -> None:
    with trio.fail_after(60):
        async with federation(["eu"]) as (seeds, _, nodes), AsyncExitStack() as stack:
            await _relaying(stack, nodes)
            bob_node, bob = await _punching_client(stack, seeds, "bob")
            with pytest.raises(SsnRequestError) as unknown:
                await bob.connect("nobody")
            assert unknown.value.code is ErrorCode.UNKNOWN_PEER
            # Carol registers through a bare Host (no relay, no DCUtR) and her only
            # address is dead: bob's dial fails, and she dials him back when asked.
            carol_node = await stack.enter_async_context(neonet.open_node(listen=()))
            carol = await stack.enter_async_context(
                open_ssn_client(carol_node.host, seeds, name="carol", region="eu")
            )
            assert carol.relay is None and carol.dcutr is None
            carol.extra_addrs = [f"/ip4/127.0.0.1/tcp/1/p2p/{carol_node.peer_id}"]
            await carol.refresh()
            connected = await bob.connect("carol")
            assert connected.path == "reversed"
            assert len(connected.dial_errors) == 1 and "/tcp/1/" in connected.dial_errors[0]
            assert bob_node.host.swarm.connections_to(carol_node.peer_id)


async def test_an_error_inside_the_client_block_reaches_the_caller() -> None:
    """Closing the client must not swallow the caller's exception (it did: the close was
    awaited in the already cancelled nursery, and the Cancelled replaced the error)."""
    with trio.fail_after(60):
        async with federation(["eu"]) as (seeds, _, _nodes):
            node_context = neonet.open_node()
            node = await node_context.__aenter__()
            try:
                with pytest.raises(KeyError, match="mine"):
                    async with open_ssn_client(node, seeds, name="alice", region="eu"):
                        raise KeyError("mine")
                with pytest.raises(KeyError, match="mine"):
                    async with open_ssn_client(node.host, seeds, name="alice", region="eu"):
                        raise KeyError("mine")
            finally:
                await node_context.__aexit__(None, None, None)


async def test_the_reservation_follows_the_client_to_another_ssn() -> None:
    with trio.fail_after(60):
        async with federation_with_scopes(["eu", "eu"]) as fed, AsyncExitStack() as stack:
            await _relaying(stack, fed.nodes)
            alice_node, alice = await _punching_client(stack, fed.seeds, "alice")
            _, bob = await _punching_client(stack, fed.seeds, "bob")
            assert alice.relay is not None
            first = alice.ssn
            assert first is not None and list(alice.relay.reservations) == [first]
            fed.stop(next(i for i, n in enumerate(fed.nodes) if n.peer_id == first))
            while list(alice.relay.reservations) in ([], [first]) or alice.ssn == first:
                await alice.relay.wait_changed()
            second = alice.ssn
            assert second is not None and second != first
            assert list(alice.relay.reservations) == [second]
            # The new relayed address is published: a lookup shows it (once re-registered).
            while True:
                try:
                    found = await bob.lookup("alice")
                except neonet.NeoNetError:
                    found = None
                circuits = [a for a in found.addrs if is_relayed_addr(a)] if found else []
                if circuits and all(str(second) in str(a) for a in circuits):
                    break
                await trio.sleep(0.1)  # re-registration is a remote effect: poll the SSN
            assert alice_node.peer_id == found.peer_id


async def test_cancelling_everything_at_once_exits_cleanly() -> None:
    """A timeout around the whole stack cancels the node's identify service before the
    relay client withdraws its addresses: that must not turn into a RuntimeError."""
    with trio.fail_after(60):
        with trio.CancelScope() as scope:
            async with federation(["eu"]) as (seeds, _, nodes), AsyncExitStack() as stack:
                await _relaying(stack, nodes)
                _, alice = await _punching_client(stack, seeds, "alice")
                assert alice.relay is not None and alice.relay.reservations
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught


async def test_an_ssn_without_a_relay_costs_the_client_nothing() -> None:
    """`neonet ssn serve --no-relay`: the reservation attempt is refused at once, the client
    registers and connects as before (its presence lists no relayed address)."""
    with trio.fail_after(60):
        async with federation(["eu"]) as (seeds, _, _nodes), AsyncExitStack() as stack:
            started = trio.current_time()
            alice_node, alice = await _punching_client(stack, seeds, "alice")
            assert trio.current_time() - started < 5
            assert alice.relay is not None and not alice.relay.reservations
            bob_node, bob = await _punching_client(stack, seeds, "bob")
            found = await bob.lookup("alice")
            assert found.addrs and not any(is_relayed_addr(a) for a in found.addrs)
            connected = await bob.connect("alice")
            assert connected.path == "direct"
            assert await _echo_over(bob_node, alice_node.peer_id) == (True, False)


async def test_an_unreachable_peer_is_asked_to_dial_back() -> None:
    """Alice listens nowhere and her SSN runs no relay: her presence lists no address.
    Bob's connect finds nothing to dial, signals her a connect request with his addresses,
    and she dials him back; the connect request never reaches her application."""
    with trio.fail_after(60):
        async with federation(["eu"]) as (seeds, _, _nodes), AsyncExitStack() as stack:
            alice_node, alice = await _punching_client(stack, seeds, "alice", listen=())
            bob_node, bob = await _punching_client(stack, seeds, "bob")
            assert (await bob.lookup("alice")).addrs == ()

            connected = await bob.connect("alice")
            assert (connected.peer, connected.path) == (alice_node.peer_id, "reversed")
            assert connected.direct
            inbound = bob_node.host.swarm.connections_to(alice_node.peer_id)[0]
            assert inbound.direction == "inbound" and not inbound.relayed
            assert await _echo_over(bob_node, alice_node.peer_id) == (True, False)
            assert alice.stats.connect_requests == 1

            # A malformed connect request is dropped and counted; the application only
            # sees the ordinary signal sent after it.
            await bob.send_signal(alice_node.peer_id, PREFIX + b"\xff")
            await bob.send_signal(alice_node.peer_id, b"offer")
            signal = await alice.signals().__anext__()
            assert signal.payload == b"offer"
            assert alice.stats.dropped_connect_requests == 1


async def test_a_peer_that_does_not_dial_back_is_a_clear_error() -> None:
    with trio.fail_after(60):
        async with federation(["eu"]) as (seeds, _, _nodes), AsyncExitStack() as stack:
            refusing = SsnClientConfig(accept_connect_requests=False)
            await _punching_client(stack, seeds, "alice", listen=(), config=refusing)
            quick = SsnClientConfig(reverse_timeout=0.5)
            _, bob = await _punching_client(stack, seeds, "bob", config=quick)
            with pytest.raises(ConnectError) as error:
                await bob.connect("alice")
            assert "dial back" in error.value.errors[-1]
