"""Two NeoNet clients behind two NAT routers reach each other through a relay, then
DCUtR tries to make the connection direct (issue 6, "NAT").

The test builds its own network from Linux network namespaces (root, ``ip`` and
``iptables`` needed) and removes it afterwards, even on failure:

    client1 (10.1.0.2) -- nat1 (10.1.0.1 | 192.0.2.11) --+
                                                         br0 (public segment) -- relay 192.0.2.1
    client2 (10.2.0.2) -- nat2 (10.2.0.1 | 192.0.2.12) --+

The NAT routers masquerade their private network and drop unsolicited inbound TCP
(as home routers do: no RST for a SYN that matches no mapping). Nothing is routed to
the machine's real network. Two NAT types:

- ``endpoint-independent``: plain MASQUERADE keeps the source port, so the mapping a
  client's listening port gets towards the relay is the one its hole-punch SYN gets
  too: DCUtR should end with a direct connection;
- ``symmetric``: MASQUERADE ``--random-fully`` picks a new port per connection, so the
  observed address is useless for the punch: the clients stay on the relay.

Either way data must flow; the report says which happened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

pytestmark = pytest.mark.scale

ROOT = Path(__file__).resolve().parents[2]
PEER = "tests.nat.nat_peer"
PORT = 4001


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian package {'iproute2' if tool == 'ip' else tool})"
    return None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class Network:
    """The namespaces of one test; ``names`` are removed by ``teardown``."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.names: list[str] = []

    def ns(self, role: str) -> str:
        return f"nn{self.tag}-{role}"

    def add(self, role: str) -> str:
        name = self.ns(role)
        _run("ip", "netns", "add", name)
        self.names.append(name)
        self.run(role, "ip", "link", "set", "lo", "up")
        return name

    def run(self, role: str, *argv: str) -> None:
        _run("ip", "netns", "exec", self.ns(role), *argv)

    def link(self, a: str, a_if: str, b: str, b_if: str) -> None:
        """A veth pair between namespaces ``a`` and ``b`` (interfaces named a_if, b_if)."""
        temp_a, temp_b = f"v{self.tag}{a_if}"[:15], f"v{self.tag}{b_if}"[:15]
        _run("ip", "link", "add", temp_a, "type", "veth", "peer", "name", temp_b)
        _run("ip", "link", "set", temp_a, "netns", self.ns(a), "name", a_if)
        _run("ip", "link", "set", temp_b, "netns", self.ns(b), "name", b_if)
        self.run(a, "ip", "link", "set", a_if, "up")
        self.run(b, "ip", "link", "set", b_if, "up")

    def teardown(self) -> None:
        for name in reversed(self.names):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self.names.clear()


@contextmanager
def nat_network(symmetric: bool) -> Iterator[Network]:
    network = Network(f"{os.getpid() % 100000}{'s' if symmetric else 'e'}")
    try:
        network.add("pub")
        network.run("pub", "ip", "link", "add", "br0", "type", "bridge")
        network.run("pub", "ip", "addr", "add", "192.0.2.1/24", "dev", "br0")
        network.run("pub", "ip", "link", "set", "br0", "up")
        for index in (1, 2):
            nat, client = f"nat{index}", f"c{index}"
            network.add(nat)
            network.add(client)
            network.link(nat, "wan", "pub", f"p{index}")
            network.run("pub", "ip", "link", "set", f"p{index}", "master", "br0")
            network.run(nat, "ip", "addr", "add", f"192.0.2.1{index}/24", "dev", "wan")
            network.link(nat, "lan", client, "eth0")
            network.run(nat, "ip", "addr", "add", f"10.{index}.0.1/24", "dev", "lan")
            network.run(client, "ip", "addr", "add", f"10.{index}.0.2/24", "dev", "eth0")
            network.run(client, "ip", "route", "add", "default", "via", f"10.{index}.0.1")
            network.run(nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            masquerade = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan"]
            masquerade += ["-j", "MASQUERADE"] + (["--random-fully"] if symmetric else [])
            network.run(nat, *masquerade)
            # Unsolicited inbound TCP is dropped silently (no RST), as home routers do.
            established = ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
            network.run(nat, "iptables", "-A", "FORWARD", "-i", "wan", *established)
            network.run(nat, "iptables", "-A", "FORWARD", "-i", "wan", "-j", "DROP")
            network.run(nat, "iptables", "-A", "INPUT", "-i", "wan", "-p", "tcp", "-j", "DROP")
        yield network
    finally:
        network.teardown()


class Process:
    def __init__(self, process: trio.Process, label: str) -> None:
        self.process = process
        self.label = label

    async def line(self, limit: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        data = b""
        with trio.fail_after(limit):
            while b"\n" not in data:
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    raise AssertionError(f"{self.label} exited without a report")
                data += chunk
        parsed: dict[str, Any] = json.loads(data.split(b"\n", 1)[0])
        return parsed

    async def stop(self) -> None:
        with trio.CancelScope(shield=True):
            if self.process.stdin is not None:
                await self.process.stdin.aclose()
            with trio.move_on_after(5):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


async def start(network: Network, role: str, *args: str) -> Process:
    argv = ["ip", "netns", "exec", network.ns(role), sys.executable, "-m", PEER, *args]
    process = await trio.lowlevel.open_process(
        argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    return Process(process, role)


async def run_scenario(symmetric: bool) -> dict[str, Any]:
    processes: list[Process] = []
    with nat_network(symmetric) as network:
        try:
            relay = await start(network, "pub", "relay", "--listen", f"/ip4/192.0.2.1/tcp/{PORT}")
            processes.append(relay)
            relay_addr = (await relay.line(30))["addrs"][0]
            listener = await start(
                network,
                "c1",
                "listener",
                "--listen",
                f"/ip4/10.1.0.2/tcp/{PORT}",
                "--relay",
                relay_addr,
            )
            processes.append(listener)
            listening = await listener.line(30)
            dialer = await start(
                network,
                "c2",
                "dialer",
                "--listen",
                f"/ip4/10.2.0.2/tcp/{PORT}",
                "--relay",
                relay_addr,
                "--target",
                listening["addrs"][0],
                "--punch-wait",
                "15",
            )
            processes.append(dialer)
            report = await dialer.line(90)
            report["listener_observed"] = listening["observed"]
            return report
        finally:
            for process in reversed(processes):
                await process.stop()


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
@pytest.mark.parametrize("nat_type", ["endpoint-independent", "symmetric"])
async def test_two_clients_behind_nats(nat_type: str) -> None:
    symmetric = nat_type == "symmetric"
    report = await run_scenario(symmetric)
    print(f"\nNAT test ({nat_type}): {json.dumps(report, indent=1)}")
    assert report["ok"], report
    # Data flowed over the relay first, then over whatever connection won.
    assert report["relayed_echo"] == {**report["relayed_echo"], "ok": True, "relayed": True}
    assert report["final_echo"]["ok"]
    # The relay saw each client at its NAT's public address.
    assert all("/ip4/192.0.2.1" in a for a in report["observed"] + report["listener_observed"])
    if symmetric:
        # A new random port per connection: the observed port is useless, no direct path.
        assert not report["direct"], report
        assert report["final_echo"]["relayed"]
        assert report["hole_punch"] and not any(r["success"] for r in report["hole_punch"])
    else:
        # Port-preserving masquerade: the hole punch works and traffic moves off the relay.
        assert report["direct"], report
        assert not report["final_echo"]["relayed"]
        assert any(r["success"] for r in report["hole_punch"])
