"""NeoNet against real libp2p implementations: py-libp2p, rust-libp2p, go-libp2p, js-libp2p.

Each case runs the other implementation as its own process (tests/interop/peers/, built
and cached by tests/interop/harness.py) and checks, in both directions and over TCP and
WebSocket, with Noise and yamux: connect, ping, identify, and /echo/1.0.0 moving 1 MiB
each way. ``NEONET_INTEROP`` (comma-separated names) narrows the set.
"""

from __future__ import annotations

import os

import pytest
import trio

from neonet.core.multiaddr import Multiaddr
from neonet.node import open_node
from tests.interop import harness
from tests.streams import echo, exchange

pytestmark = pytest.mark.interop

ECHO = "/echo/1.0.0"
ONE_MIB = 1024 * 1024
TIMEOUT = 60


def _selected() -> list[str]:
    wanted = os.environ.get("NEONET_INTEROP")
    names = list(harness.IMPLEMENTATIONS)
    if wanted:
        names = [name for name in names if name in wanted.split(",")]
    return names


CASES = [(name, transport) for name in _selected() for transport in ("tcp", "ws")]


@pytest.mark.parametrize(("implementation", "transport"), CASES)
async def test_neonet_dials(implementation: str, transport: str) -> None:
    harness.ensure_built(implementation)
    with trio.fail_after(TIMEOUT):
        async with (
            harness.start_listener(implementation, transport) as peer,
            open_node(listen=()) as node,
        ):
            address = Multiaddr.from_string(peer.addrs[0])
            remote = await node.connect(address)
            assert str(remote) == peer.peer_id
            assert len(await node.ping(remote, count=3)) == 3
            info = await node.identify(remote)
            assert "/ipfs/ping/1.0.0" in info.protocols
            assert ECHO in info.protocols
            assert info.agent_version
            payload = os.urandom(ONE_MIB)
            stream = await node.new_stream(remote, [ECHO])
            assert await exchange(stream, payload) == payload


@pytest.mark.parametrize(("implementation", "transport"), CASES)
async def test_neonet_is_dialed(implementation: str, transport: str) -> None:
    harness.ensure_built(implementation)
    listen = "/ip4/127.0.0.1/tcp/0" + ("/ws" if transport == "ws" else "")
    with trio.fail_after(TIMEOUT):
        async with open_node(listen=[listen]) as node:
            node.set_stream_handler(ECHO, echo)
            result = await harness.run_dialer(
                implementation, str(node.listen_addrs[0]), echo_bytes=ONE_MIB, pings=3
            )
            assert result["ok"], result
            assert result["remote_peer_id"] == str(node.peer_id)
            assert len(result["ping_rtt_ms"]) == 3
            assert result["echo_ok"] is True
            assert result["echo_bytes"] == ONE_MIB
            identify = result["identify"]
            assert identify["agent_version"].startswith("neonet/")
            assert ECHO in identify["protocols"]
            # The dialer saw us from its own address; identify told it where that was.
            assert identify["observed_addr"].startswith("/ip4/127.0.0.1/tcp/")
