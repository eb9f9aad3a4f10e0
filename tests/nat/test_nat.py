"""Two NeoNet clients behind two NAT routers find each other through an SSN, connect
through the SSN's circuit relay, and DCUtR tries to make the connection direct (issue 6,
"NAT").

The test builds its own network from Linux network namespaces (root, ``ip`` and
``iptables`` needed) and removes it afterwards, even on failure:

    alice (10.1.0.2) -- nat1 (10.1.0.1 | 192.0.2.11) --+
                                                       br0 (public segment) -- SSN 192.0.2.1
    bob   (10.2.0.2) -- nat2 (10.2.0.1 | 192.0.2.12) --+

The public side runs ``neonet ssn serve`` (a one-SSN federation from a seed list signed
with ``neonet ssn seeds make``; it serves circuit relay v2 too). Each private side runs
the SSN client (``tests/nat/ssn_client_peer.py``): it registers under a name, reserves a
slot on the SSN's relay and publishes the relayed address, and runs DCUtR. Bob looks
alice up by name, sends her a signal through the SSN, connects with
``SsnClient.connect`` (her private address fails, the relayed one works), echoes data
over the relay, then waits for DCUtR and echoes again.

The NAT routers masquerade their private network and drop unsolicited inbound TCP
(as home routers do: no RST for a SYN that matches no mapping). Nothing is routed to
the machine's real network. Two NAT types:

- ``endpoint-independent``: plain MASQUERADE keeps the source port, so the mapping a
  client's listening port gets towards the SSN is the one its hole-punch SYN gets too:
  DCUtR must end with a direct connection (asserted);
- ``symmetric``: MASQUERADE ``--random-fully`` picks a new port per connection, so the
  observed address is useless for the punch: the clients must keep working over the
  relay (asserted).

The report (``-s`` prints it) says which happened.
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
PEER = "tests.nat.ssn_client_peer"
PORT = 4001
SSN_IP = "192.0.2.1"


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
        self._buffer = b""

    async def line(self, limit: float) -> dict[str, Any]:
        """The next JSON line the process prints (within ``limit`` seconds)."""
        assert self.process.stdout is not None
        with trio.fail_after(limit):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    raise AssertionError(f"{self.label} exited without a report")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    async def close_stdin(self) -> None:
        if self.process.stdin is not None:
            await self.process.stdin.aclose()

    async def stop(self) -> None:
        """Close stdin (clients then finish), SIGTERM what is left after 5 s, SIGKILL after 5."""
        with trio.CancelScope(shield=True):
            await self.close_stdin()
            for stop in (self.process.terminate, self.process.kill):
                with trio.move_on_after(5):
                    await self.process.wait()
                if self.process.returncode is not None:
                    return
                stop()
            await self.process.wait()


async def start(network: Network, role: str, *argv: str) -> Process:
    command = ["ip", "netns", "exec", network.ns(role), sys.executable, *argv]
    process = await trio.lowlevel.open_process(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    return Process(process, role)


def neonet(*argv: str) -> dict[str, Any]:
    """``neonet ARGV --json`` (in the test's own namespace: no network needed)."""
    done = subprocess.run(
        [sys.executable, "-m", "neonet", *argv, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    parsed: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return parsed


def make_operator_data(directory: Path) -> tuple[Path, Path, str]:
    """An SSN identity in its database and a one-SSN seed list signed by a new operator,
    made with the CLI as an operator would: (SSN database, seed list, operator peer ID)."""
    operator_key = directory / "operator.json"
    subprocess.run(
        [sys.executable, "-m", "neonet", "identity", "create", "--file", str(operator_key)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    database = directory / "ssn.sqlite"
    ssn = neonet("ssn", "init", "--db", str(database), "--region", "public")["peer_id"]
    seeds = directory / "seeds.cbor"
    made = neonet(
        "ssn",
        "seeds",
        "make",
        "--operator-identity",
        str(operator_key),
        "--network",
        "nat-test",
        "--entry",
        f"{ssn}=public=/ip4/{SSN_IP}/tcp/{PORT}",
        "--out",
        str(seeds),
    )
    return database, seeds, str(made["operator"])


async def run_scenario(symmetric: bool, directory: Path) -> dict[str, Any]:
    database, seeds, operator = make_operator_data(directory)
    processes: list[Process] = []
    with nat_network(symmetric) as network:
        try:
            ssn = await start(
                network,
                "pub",
                *("-m", "neonet", "ssn", "serve", "--db", str(database), "--json"),
                *("--seeds", str(seeds), "--operator", operator),
                *("--listen", f"/ip4/{SSN_IP}/tcp/{PORT}"),
            )
            processes.append(ssn)
            serving = await ssn.line(60)
            client = ("-m", PEER, "--seeds", str(seeds), "--operator", operator)
            alice = await start(
                network, "c1", *client, "--name", "alice", "--listen", f"/ip4/10.1.0.2/tcp/{PORT}"
            )
            processes.append(alice)
            alice_line = await alice.line(60)
            assert "error" not in alice_line, alice_line
            bob = await start(
                network,
                "c2",
                *client,
                *("--name", "bob", "--listen", f"/ip4/10.2.0.2/tcp/{PORT}"),
                *("--find", "alice", "--punch-wait", "25"),
            )
            processes.append(bob)
            report = await bob.line(120)
            await alice.close_stdin()
            alice_final = await alice.line(30)
            return {"ssn": serving, "alice": {**alice_line, **alice_final}, "bob": report}
        finally:
            for process in reversed(processes):
                await process.stop()


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
@pytest.mark.parametrize("nat_type", ["endpoint-independent", "symmetric"])
async def test_two_clients_behind_nats_meet_through_an_ssn(nat_type: str, tmp_path: Path) -> None:
    symmetric = nat_type == "symmetric"
    report = await run_scenario(symmetric, tmp_path)
    print(f"\nNAT test ({nat_type}): {json.dumps(report, indent=1)}")
    bob, alice = report["bob"], report["alice"]
    assert bob["ok"], bob
    assert report["ssn"]["relay"] and bob["ssn"] == alice["ssn"] == report["ssn"]["peer_id"]
    # Both are registered by name and reachable through the SSN's relay.
    for client in (alice, bob):
        circuits = [f"{a}/p2p/{client['peer_id']}" for a in client["reserved"]]
        assert circuits and all(f"/p2p/{client['ssn']}/p2p-circuit/" in a for a in circuits)
        assert set(circuits) <= set(client["published"])
        # The SSN saw each client at its NAT's public address.
        assert client["observed"] and all("/ip4/192.0.2.1" in a for a in client["observed"])
    # Bob found alice by name and signalled her through the SSN.
    assert bob["found_addrs"] == alice["published"]
    assert bob["signal"] == "DELIVERED"
    assert alice["signals"] == [{"from": bob["peer_id"], "payload": "hello alice"}]
    # Her private address was tried and failed; the connection went through the relay,
    # and data flowed over it.
    assert bob["connect"]["path"] == "relayed", bob["connect"]
    assert any("/ip4/10.1.0.2/" in e for e in bob["connect"]["dial_errors"])
    assert bob["relayed_echo"] == {**bob["relayed_echo"], "ok": True, "relayed": True}
    assert bob["final_echo"]["ok"]
    # Alice received the relayed connection, so she started the hole punch.
    assert alice["hole_punch"] and all(r["initiator"] for r in alice["hole_punch"])
    if symmetric:
        # A new random port per connection: the observed port is useless, no direct path.
        assert bob["final"]["path"] == "relayed", bob["final"]
        assert bob["final_echo"]["relayed"]
        assert not any(r["success"] for r in alice["hole_punch"])
        assert bob["final"]["hole_punch"] and not bob["final"]["hole_punch"]["success"]
    else:
        # Port-preserving masquerade: the hole punch works and traffic leaves the relay.
        assert bob["final"]["path"] == "hole-punch", bob["final"]
        assert not bob["final_echo"]["relayed"]
        assert any(r["success"] for r in alice["hole_punch"])
        assert bob["final"]["hole_punch"]["success"]
