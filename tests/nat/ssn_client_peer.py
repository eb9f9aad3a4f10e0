"""A NeoNet client behind a NAT for the NAT test (tests/nat/test_nat.py): the SSN client.

    python -m tests.nat.ssn_client_peer --seeds F --operator PEER_ID --name alice --listen MA
    python -m tests.nat.ssn_client_peer ... --name bob --find alice [--punch-wait S]

The client registers under ``--name`` with the SSN of the seed list, reserves a slot on
the SSN's circuit relay and publishes the relayed address (``open_ssn_client`` given a
node does both, and runs DCUtR), then prints one JSON line: its peer ID, its SSN, the
addresses a lookup of its own name returns, and where the SSN observed it.

Without ``--find`` it serves an echo protocol and keeps incoming signals until stdin
closes, then prints a second line: the signals received and its hole-punch results.
With ``--find NAME`` it looks NAME up, sends it a signal through the SSN, connects with
``SsnClient.connect`` (direct addresses first, then the relay), echoes data over the
relayed connection, waits for DCUtR, echoes again and prints one JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import trio

from neonet.core.peer_id import PeerId
from neonet.node import Node, Stream, open_node
from neonet.proto.ssn.seeds import verify_seed_list
from neonet.services.dcutr import HolePunchResult
from neonet.services.ssn.client import SsnClient, SsnClientConfig, open_ssn_client
from neonet.services.ssn.connectivity import Connected

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


def punch_report(result: HolePunchResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "initiator": result.initiator,
        "success": result.success,
        "attempts": result.attempts,
        "rtt_ms": round(result.rtt * 1000, 2) if result.rtt is not None else None,
        "elapsed_ms": round(result.elapsed * 1000, 2),
        "direct_addr": str(result.direct_addr) if result.direct_addr else None,
        "error": result.error,
    }


def connected_report(connected: Connected) -> dict[str, Any]:
    return {
        "path": connected.path,
        "direct": connected.direct,
        "dial_errors": list(connected.dial_errors),
        "hole_punch": punch_report(connected.hole_punch),
        "ms": round(connected.seconds * 1000, 2),
    }


async def exchange(node: Node, peer: PeerId, size: int) -> dict[str, Any]:
    """Echo ``size`` random bytes on a new stream: intact?, over a relay?, how long."""
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
    seconds = time.perf_counter() - start
    return {"ok": bytes(received) == payload, "relayed": relayed, "ms": round(seconds * 1e3, 2)}


async def registered_line(node: Node, client: SsnClient, name: str) -> dict[str, Any]:
    assert client.ssn is not None and client.relay is not None and client.dcutr is not None
    with trio.fail_after(10):
        # Where the SSN saw us (identify's observed address) is what DCUtR will advertise.
        await node.identify_service.wait_identified(client.ssn)
    own = await client.lookup(name)
    return {
        "peer_id": str(node.peer_id),
        "ssn": str(client.ssn),
        "reserved": [str(a) for a in client.relay.circuit_addrs()],
        "published": [str(a) for a in own.addrs],
        "observed": [str(a) for a in client.dcutr.observed.all()],
    }


async def serve(node: Node, client: SsnClient, line: dict[str, Any]) -> dict[str, Any]:
    signals: list[dict[str, str]] = []

    async def collect() -> None:
        async for signal in client.signals():
            signals.append({"from": str(signal.sender), "payload": signal.payload.decode()})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        say(line)
        await wait_stdin_closed()
        nursery.cancel_scope.cancel()
    assert client.dcutr is not None
    return {"signals": signals, "hole_punch": [punch_report(r) for r in client.dcutr.results]}


async def find(node: Node, client: SsnClient, args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"ok": False}
    started = time.perf_counter()
    info = await client.lookup(args.find)
    report["lookup_ms"] = round((time.perf_counter() - started) * 1000, 2)
    report["found_addrs"] = [str(a) for a in info.addrs]
    status = await client.send_signal(info.peer_id, f"hello {args.find}".encode())
    report["signal"] = status.name
    connected = await client.connect(args.find, upgrade_timeout=0)
    report["connect"] = connected_report(connected)
    report["relayed_echo"] = await exchange(node, info.peer_id, ECHO_BYTES)
    final = await client.wait_upgrade(connected, within=args.punch_wait)
    report["final"] = connected_report(final)
    report["final_echo"] = await exchange(node, info.peer_id, ECHO_BYTES)
    report["connections"] = [
        {"relayed": c.relayed, "direction": c.direction, "remote": str(c.remote_addr)}
        for c in node.host.swarm.connections_to(info.peer_id)
    ]
    report["ok"] = report["relayed_echo"]["ok"] and report["final_echo"]["ok"]
    return report


async def run(args: argparse.Namespace, seed_list: bytes) -> None:
    seeds = verify_seed_list(seed_list, PeerId.from_string(args.operator), time.time())
    config = SsnClientConfig(punch_timeout=3.0)
    async with open_node(listen=()) as node:
        node.set_stream_handler(ECHO, echo)
        async with open_ssn_client(
            node, seeds, name=args.name, listen=[args.listen], config=config
        ) as client:
            line = await registered_line(node, client, args.name)
            if args.find is None:
                say(await serve(node, client, line))
            else:
                report = await find(node, client, args)
                say({**line, **report})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", required=True)
    parser.add_argument("--operator", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--find")
    parser.add_argument("--punch-wait", type=float, default=25.0)
    args = parser.parse_args()
    try:
        trio.run(run, args, Path(args.seeds).read_bytes())
    except Exception as exc:  # one JSON line whatever happened
        say({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
