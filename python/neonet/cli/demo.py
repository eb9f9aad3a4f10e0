"""``neonet demo``: a small local NeoNet, SSNs in two regions and named clients finding
each other by name, signaling through the SSNs and then connecting directly.

Starts the SSNs as subprocesses (``neonet ssn serve``, see ``local_network``), then runs
the clients in this process: each registers with the nearest SSN of its region, looks
every other client up by name, sends it a signal (what a WebRTC offer would be), and
opens a NeoNet connection to the addresses the lookup returned, where it pings the peer.
Everything is on loopback and stops by itself; files go to a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from neonet.cli.local_network import LocalNetwork
from neonet.services.ssn.client import SsnClient, open_ssn_client

DEFAULT_CLIENTS = ("alice:eu", "bob:us", "carol:eu", "dave:us")


async def _clients(network: LocalNetwork, specs: list[tuple[str, str]]) -> int:
    """Run the named clients through lookups, signals and connections; return failures."""
    from neonet.node import Node, open_node

    failures = 0
    async with AsyncExitStack() as stack:
        clients: dict[str, tuple[Node, SsnClient]] = {}
        for name, region in specs:
            node = await stack.enter_async_context(open_node())
            # Registration has its own bounds (probe and request timeouts, three rounds).
            client = await stack.enter_async_context(
                open_ssn_client(node.host, network.seeds, name=name, region=region)
            )
            clients[name] = (node, client)
            ssn = next(s for s in network.ssns if s.peer_id == client.ssn)
            rtts = ", ".join(f"{v * 1000:.2f}" for v in client.stats.rtts.values())
            print(
                f"{name:>6} ({region}) registered with SSN {str(client.ssn)[-6:]} ({ssn.region});"
                f" RTTs measured (ms): {rtts}",
                flush=True,
            )
        print(flush=True)
        for name, (node, client) in clients.items():
            for other in clients:
                if other == name:
                    continue
                try:
                    with trio.fail_after(15):
                        info = await client.lookup(other)
                        status = await client.send_signal(info.peer_id, f"hello {other}".encode())
                        signal = await clients[other][1].signals().__anext__()
                        peer = await node.connect(info.addrs[0])
                        rtt = (await node.ping(peer))[0]
                except Exception as exc:  # the demo reports any failure and goes on
                    failures += 1
                    print(f"{name:>6} -> {other}: FAILED ({exc})", flush=True)
                    continue
                print(
                    f"{name:>6} found {other:<6} = {str(info.peer_id)[-6:]} via SSN"
                    f" {str(info.ssn_id)[-6:]}; signal {status.name.lower()}, received as"
                    f" {signal.payload.decode()!r}; connected directly, ping"
                    f" {rtt * 1000:.2f} ms",
                    flush=True,
                )
    return failures


async def _run(args: argparse.Namespace) -> None:
    specs = [(item.split(":", 1)[0], item.split(":", 1)[-1]) for item in args.clients.split(",")]
    regions = ["eu", "us"]
    with tempfile.TemporaryDirectory(prefix="neonet-demo-") as directory:
        network = LocalNetwork.create(
            Path(directory),
            [regions[i % 2] for i in range(args.ssns)],
            ["--protocol-period", "0.5"],
        )
        try:
            for index, ssn in enumerate(network.ssns):
                network.start(index)
                print(
                    f"SSN {index}: {ssn.peer_id} region {ssn.region} on {ssn.tcp_addr}", flush=True
                )
            failures = await _clients(network, specs)
            print(f"\n{len(specs)} clients, {failures} failures.", flush=True)
        finally:
            network.stop_all()


def add_commands(commands: object) -> None:
    demo = commands.add_parser(  # type: ignore[attr-defined]
        "demo", help="start a small local NeoNet: SSNs in two regions and named clients"
    )
    demo.add_argument("--ssns", type=int, default=4)
    demo.add_argument(
        "--clients", default=",".join(DEFAULT_CLIENTS), help="NAME:REGION,... (regions eu, us)"
    )
    demo.set_defaults(handler=lambda args: trio.run(_run, args))
