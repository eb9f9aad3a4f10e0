"""``neonet bench relay``: circuit relay v2 and DCUtR figures on 127.0.0.1.

Three processes: a NeoNet relay, a target that holds a reservation on it (and serves
/perf/1.0.0), and this process as the dialer. Printed:

- circuit setup (ms): dial ``…/p2p/<relay>/p2p-circuit/p2p/<target>`` until the
  relayed connection is up (hop CONNECT, stop CONNECT, Noise and yamux inside the
  circuit), with the connection to the relay already open; median and p90;
- relay throughput (MB/s): /perf/1.0.0 upload and download through the relay, and the
  same exchange on a direct connection to the target, for the ratio;
- DCUtR on loopback: time from the relayed connection to the direct one (ms) and the
  success ratio over the runs (NAT traversal itself is tests/nat/test_nat.py).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import trio

from neonet.core import backend
from neonet.core.multiaddr import Multiaddr
from neonet.node import open_node
from neonet.proto.relay import Limit, RelayLimits
from neonet.services.dcutr import open_dcutr
from neonet.services.relay import open_relay, open_relay_client

# The benchmark measures the relay, not its abuse limits: lift them.
UNLIMITED = RelayLimits(
    circuit=Limit(duration=0, data=0),
    max_circuits_per_peer=1024,
    max_circuits_per_ip=1024,
    circuit_rate=1e6,
    circuit_burst=1_000_000,
    reservation_rate=1e6,
    reservation_burst=1_000_000,
)


def _say(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _wait_stdin_closed() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    async with stdin:
        while await stdin.receive_some(4096):
            pass


async def _serve_relay() -> None:
    async with open_node() as node, open_relay(node, UNLIMITED):
        _say({"addrs": [str(a) for a in node.listen_addrs]})
        await _wait_stdin_closed()


async def _serve_target(relay: str) -> None:
    async with open_node() as node, open_relay_client(node, [relay]) as client:
        with trio.fail_after(30):
            await client.wait_reserved()
        circuit = [str(a.with_peer_id(node.peer_id)) for a in client.circuit_addrs()]
        _say({"circuit": circuit[0], "direct": str(node.listen_addrs[0])})
        await _wait_stdin_closed()


class _Child:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "neonet.bench.relay", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"bench child {args[0]} printed nothing")
        self.info: dict[str, Any] = json.loads(line)

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _measure(circuit: str, direct: str, *, setups: int, bulk: int) -> dict[str, Any]:
    target = Multiaddr.from_string(circuit)
    peer = target.peer_id()
    assert peer is not None
    results: dict[str, Any] = {}
    async with open_node() as node, open_relay_client(node):
        relay_addr = Multiaddr.from_string(circuit.split("/p2p-circuit")[0])
        await node.connect(relay_addr)
        times = []
        for _ in range(setups):
            start = time.perf_counter()
            await node.connect(target)
            times.append((time.perf_counter() - start) * 1000)
            await node.host.disconnect(peer)
        results["circuit_setup_ms"] = {
            "median": round(statistics.median(times), 2),
            "p90": round(_percentile(times, 0.9), 2),
            "runs": setups,
        }
        await node.connect(target)
        relayed = await node.perf(peer, upload_bytes=bulk, download_bytes=bulk)
        await node.host.disconnect(peer)
        await node.connect(direct)
        plain = await node.perf(peer, upload_bytes=bulk, download_bytes=bulk)
    for name, result in (("relayed", relayed), ("direct", plain)):
        results[f"{name}_upload_mb_s"] = round(bulk / result.upload_seconds / 1e6, 1)
        results[f"{name}_download_mb_s"] = round(bulk / result.download_seconds / 1e6, 1)
    results["relayed_to_direct"] = round(
        (results["relayed_upload_mb_s"] + results["relayed_download_mb_s"])
        / (results["direct_upload_mb_s"] + results["direct_download_mb_s"]),
        2,
    )
    results["bulk_bytes"] = bulk
    return results


async def _dcutr_runs(runs: int) -> dict[str, Any]:
    """Relay, listener and dialer in this process; time relayed -> direct per run."""
    times: list[float] = []
    successes = 0
    async with open_node() as relay_node, open_relay(relay_node, UNLIMITED):
        for _ in range(runs):
            async with (
                open_node(listen=()) as listener,
                open_dcutr(listener, grace_period=0.1) as listener_dcutr,
            ):
                await listener.listen("/ip4/127.0.0.1/tcp/0")
                async with open_relay_client(listener, [relay_node.listen_addrs[0]]) as client:
                    await client.wait_reserved()
                    async with open_node(listen=()) as dialer, open_dcutr(dialer):
                        await dialer.listen("/ip4/127.0.0.1/tcp/0")
                        async with open_relay_client(dialer):
                            circuit = (
                                relay_node.listen_addrs[0]
                                .encapsulate("/p2p-circuit")
                                .with_peer_id(listener.peer_id)
                            )
                            start = time.perf_counter()
                            await dialer.connect(circuit)
                            with trio.move_on_after(10):
                                result = await listener_dcutr.wait_result(dialer.peer_id)
                                if result.success:
                                    successes += 1
                                    times.append((time.perf_counter() - start) * 1000)
    return {
        "runs": runs,
        "success_ratio": round(successes / runs, 3),
        "relayed_to_direct_ms_median": round(statistics.median(times), 2) if times else None,
    }


def main(*, quick: bool = False, as_json: bool = False) -> dict[str, Any]:
    setups, bulk, punches = (10, 16 << 20, 5) if quick else (50, 64 << 20, 20)
    relay = _Child("relay")
    try:
        target = _Child("target", relay.info["addrs"][0])
        try:
            figures = trio.run(
                lambda: _measure(
                    target.info["circuit"], target.info["direct"], setups=setups, bulk=bulk
                )
            )
        finally:
            target.stop()
    finally:
        relay.stop()
    figures["dcutr_loopback"] = trio.run(_dcutr_runs, punches)
    figures["backend"] = backend.BACKEND
    if as_json:
        print(json.dumps(figures))
    else:
        setup = figures["circuit_setup_ms"]
        print(f"relay bench ({figures['backend']} backend, {bulk >> 20} MiB perf each way)")
        print(f"  circuit setup      {setup['median']} ms median, {setup['p90']} ms p90")
        print(
            f"  through the relay  {figures['relayed_upload_mb_s']} MB/s up, "
            f"{figures['relayed_download_mb_s']} MB/s down"
        )
        print(
            f"  direct             {figures['direct_upload_mb_s']} MB/s up, "
            f"{figures['direct_download_mb_s']} MB/s down "
            f"(relayed/direct {figures['relayed_to_direct']})"
        )
        punch = figures["dcutr_loopback"]
        print(
            f"  DCUtR on loopback  {punch['success_ratio']:.0%} of {punch['runs']} runs direct, "
            f"{punch['relayed_to_direct_ms_median']} ms from relayed dial to direct"
        )
    return figures


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "relay":
        trio.run(_serve_relay)
    elif len(sys.argv) >= 3 and sys.argv[1] == "target":
        trio.run(_serve_target, sys.argv[2])
    else:
        main(quick="--quick" in sys.argv, as_json="--json" in sys.argv)
