"""A NeoNet node for the NAT test, run inside a network namespace (tests/nat/test_nat.py).

    python -m tests.nat.nat_peer relay --listen MA
    python -m tests.nat.nat_peer listener --listen MA --relay RELAY_MA
    python -m tests.nat.nat_peer dialer --listen MA --relay RELAY_MA --target CIRCUIT_MA

``relay`` and ``listener`` print one JSON line (``peer_id``, ``addrs``, ...) and serve
until stdin closes. ``dialer`` connects to the listener through the relay, echoes data
over the relayed connection, waits for DCUtR, echoes again and prints one JSON report:
whether the connection became direct, the hole-punch results and the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import trio

from neonet.core.multiaddr import Multiaddr
from neonet.node import Node, Stream, open_node
from neonet.proto.dcutr import MAX_ATTEMPTS
from neonet.proto.relay import Limit, RelayLimits
from neonet.services.dcutr import DcutrService, HolePunchResult, open_dcutr
from neonet.services.relay import open_relay, open_relay_client

ECHO = "/echo/1.0.0"
ECHO_BYTES = 256 * 1024


async def echo(stream: Stream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


def say(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def wait_stdin_closed() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    async with stdin:
        while await stdin.receive_some(4096):
            pass


async def exchange(node: Node, peer: Any, size: int) -> tuple[bool, bool, float]:
    """Echo ``size`` bytes on a new stream; (ok, over a relay, seconds)."""
    start = time.perf_counter()
    stream = await node.new_stream(peer, [ECHO])
    relayed = any(
        c.relayed and c.session is stream.session for c in node.host.swarm.connections_to(peer)
    )
    payload = os.urandom(size)
    received = bytearray()

    async def reader() -> None:
        while chunk := await stream.receive_some():
            received.extend(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await stream.send_all(payload)
        await stream.send_eof()
    await stream.aclose()
    return bytes(received) == payload, relayed, time.perf_counter() - start


async def run_relay(args: argparse.Namespace) -> None:
    limits = RelayLimits(circuit=Limit(duration=120, data=16 << 20))
    async with open_node(listen=[args.listen]) as node, open_relay(node, limits) as service:
        node.set_stream_handler(ECHO, echo)
        say({"peer_id": str(node.peer_id), "addrs": [str(a) for a in node.listen_addrs]})
        await wait_stdin_closed()
        del service


async def run_listener(args: argparse.Namespace) -> None:
    async with open_node(listen=()) as node, open_dcutr(node, dial_timeout=3.0) as dcutr:
        await node.listen(args.listen)
        node.set_stream_handler(ECHO, echo)
        async with open_relay_client(node, [args.relay]) as client:
            with trio.fail_after(30):
                await client.wait_reserved()
            say(
                {
                    "peer_id": str(node.peer_id),
                    "addrs": [str(a.with_peer_id(node.peer_id)) for a in client.circuit_addrs()],
                    "observed": [str(a) for a in dcutr.observed.all()],
                }
            )
            await wait_stdin_closed()


async def run_dialer(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"ok": False}
    async with open_node(listen=()) as node, open_dcutr(node, dial_timeout=3.0) as dcutr:
        await node.listen(args.listen)
        async with open_relay_client(node):
            relay = await node.connect(args.relay)
            # Learn our observed address (what CONNECT advertises) before punching.
            with trio.fail_after(10):
                await node.identify(relay)
            report["observed"] = [str(a) for a in dcutr.observed.all()]
            target = Multiaddr.from_string(args.target)
            start = time.perf_counter()
            with trio.fail_after(20):
                peer = await node.connect(target)
            report["circuit_setup_ms"] = round((time.perf_counter() - start) * 1000, 2)
            ok, relayed, seconds = await exchange(node, peer, ECHO_BYTES)
            report["relayed_echo"] = {"ok": ok, "relayed": relayed, "ms": round(seconds * 1e3, 2)}
            report["direct"] = await wait_direct(node, dcutr, peer, args.punch_wait)
            report["hole_punch"] = [
                {
                    "initiator": r.initiator,
                    "success": r.success,
                    "attempts": r.attempts,
                    "elapsed_ms": round(r.elapsed * 1000, 2),
                    "direct_addr": str(r.direct_addr) if r.direct_addr else None,
                    "error": r.error,
                }
                for r in dcutr.results
            ]
            ok2, relayed2, seconds2 = await exchange(node, peer, ECHO_BYTES)
            report["final_echo"] = {"ok": ok2, "relayed": relayed2, "ms": round(seconds2 * 1e3, 2)}
            report["connections"] = [
                {"relayed": c.relayed, "direction": c.direction, "remote": str(c.remote_addr)}
                for c in node.host.swarm.connections_to(peer)
            ]
            report["ok"] = ok and ok2
    return report


async def wait_direct(node: Node, dcutr: DcutrService, peer: Any, limit: float) -> bool:
    """Wait (at most ``limit`` s) until a hole punch with ``peer`` succeeded."""

    def settled(result: HolePunchResult) -> bool:
        failures = sum(1 for r in dcutr.results if r.peer == peer and not r.success)
        return result.peer == peer and (result.success or failures >= MAX_ATTEMPTS)

    with trio.move_on_after(limit):
        await dcutr.wait_for(settled)
    return any(not c.relayed for c in node.host.swarm.connections_to(peer))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["relay", "listener", "dialer"])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--relay")
    parser.add_argument("--target")
    parser.add_argument("--punch-wait", type=float, default=20.0)
    args = parser.parse_args()
    if args.role == "relay":
        trio.run(run_relay, args)
    elif args.role == "listener":
        trio.run(run_listener, args)
    else:
        try:
            say(trio.run(run_dialer, args))
        except Exception as exc:  # one JSON line whatever happened
            say({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
