"""``neonet bench ssn``: what one SSN process holds and moves, next to a Node.js ``ws`` relay.

Starts 4 SSN processes (2 regions, ``cli.local_network``) and drives them with light
clients (a swarm and an SSN client each, no listener, the client's default keep-alive):

- clients held by one SSN and its memory per client (RSS growth / clients it holds), and
  registrations per second while they connect (NeoNet connection + Noise + yamux +
  challenge, proof and STORE on the R=3 owners), from ``GENERATOR_CLIENTS``-client
  generator processes (``bench.ssn_hold``): one Python process cannot drive 18,000;
- lookup latency (median, p99), one at a time, of peers registered in the same region
  and in the other region (both are one federation hop at most; on loopback the region
  is a label, so the difference is the hop, not the distance);
- signals per second from senders on one SSN to receivers on another (client -> SSN ->
  SSN -> client, each signal acknowledged end to end), counted at the receivers;
  lookups and signals are driven from this process.

Then the same load against ``bench/ssn-relay/relay.mjs`` (a minimal room relay, what the
original NeoNet server is) from this same process over plain WebSocket (wsproto):
connections per second, memory per idle connection, and messages per second from
senders through the relay to receivers. The load generator is Python in both cases;
the figures say when it, rather than the server, is the limit.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

from neonet.bench import children
from neonet.bench.ssn_hold import light_client
from neonet.cli.local_network import LocalNetwork
from neonet.core.errors import NeoNetError
from neonet.proto.ssn.seeds import SeedList, make_seed_list
from neonet.services.ssn.client import SsnClient

RELAY_DIR = Path(__file__).resolve().parents[3] / "bench" / "ssn-relay"
SERVE_ARGS = [
    "--address-rate", "1000000", "--address-burst", "1000000",
    "--client-rate", "1000000", "--max-clients", "19000",
]  # fmt: skip
# Clients per load-generator process (each holds one socket per client).
GENERATOR_CLIENTS = 4500
# Registrations each generator keeps in flight. More only queue up on the SSN (whose
# CPU is the limit) and delay the keep-alive pings of the clients it already holds past
# their timeout, which makes them re-register: at 4 x 32 a loaded machine collapsed at
# ~9,700 clients (docs/benchmarks.md).
GENERATOR_CONCURRENCY = 8
# One signal: what an ICE candidate line looks like (the relay part sends the same bytes).
SIGNAL_PAYLOAD = b"candidate:1 1 udp 2113937151"
# Signals each sender keeps in flight (sent, not yet acknowledged end to end); an SSN
# takes up to SsnConfig.max_requests_in_flight (256) per client before it pushes back.
SIGNALS_IN_FLIGHT = 32


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _system_calls(pid: int) -> tuple[int, int]:
    """Read-like and write-like system calls of a process so far (Linux /proc/<pid>/io:
    syscr, syscw; on loopback each write also does the receiver's TCP work)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["syscr"]), int(fields["syscw"])


def _only(seeds: SeedList, index: int) -> SeedList:
    """A seed list naming one SSN, so a light client registers exactly there."""
    entry = seeds.entries[index]
    return make_seed_list(seeds.network, seeds.serial, [entry], issued_at=seeds.issued_at)


async def _hold_clients(
    network: LocalNetwork, directory: Path, held: int
) -> tuple[list[subprocess.Popen[str]], dict[str, Any]]:
    """Start generator processes that register ``held`` clients on SSN 0; wait for them."""
    seeds_file = directory / "ssn0-only.cbor"
    seeds_file.write_bytes(_only(network.seeds, 0).sign(network.operator))
    counts = [GENERATOR_CLIENTS] * (held // GENERATOR_CLIENTS)
    if held % GENERATOR_CLIENTS:
        counts.append(held % GENERATOR_CLIENTS)
    processes = _start_generators(network, seeds_file, counts)
    reports: list[dict[str, Any]] = []
    for process in processes:
        assert process.stdout is not None
        line = await trio.to_thread.run_sync(process.stdout.readline)
        # A generator that died prints nothing: its clients count as failed.
        reports.append(json.loads(line) if line else {"held": 0, "failures": 1, "seconds": 0})
    return processes, {
        "held": sum(r["held"] for r in reports),
        "failures": sum(r["failures"] for r in reports),
        "failure_sample": [x for r in reports for x in r.get("failure_sample", [])][:3],
        "seconds": max(r["seconds"] for r in reports),
        "generators": len(processes),
    }


def _start_generators(
    network: LocalNetwork, seeds_file: Path, counts: list[int]
) -> list[subprocess.Popen[str]]:
    module = [sys.executable, "-m", "neonet.bench.ssn_hold", str(seeds_file)]
    concurrency = str(GENERATOR_CONCURRENCY)
    return [
        subprocess.Popen(
            [*module, str(network.operator_peer), str(count), f"held{index}", concurrency],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index, count in enumerate(counts)
    ]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _ssn_part(quick: bool, directory: Path, held_clients: int | None) -> dict[str, Any]:
    held = held_clients or (500 if quick else 4000)
    seconds = 3.0 if quick else 8.0
    network = LocalNetwork.create(directory, ["eu", "eu", "us", "us"], SERVE_ARGS)
    results: dict[str, Any] = {}
    generators: list[subprocess.Popen[str]] = []
    try:
        await trio.to_thread.run_sync(network.start_all)
        with trio.fail_after(30):
            while not all(  # noqa: ASYNC110 (polling the SSN processes' statistics files)
                (network.stats(i) or {}).get("live_members") == 4 for i in range(4)
            ):
                await trio.sleep(0.2)
        pid = network.ssns[0].process.pid  # type: ignore[union-attr]
        async with trio.open_nursery() as nursery:
            # 1. Clients held by SSN 0, registrations/s, memory per client.
            await trio.sleep(1.0)
            rss_before = _rss_kib(pid)
            generators, report = await _hold_clients(network, directory, held)
            await trio.sleep(2.0)
            rss_after = _rss_kib(pid)
            holding = (network.stats(0) or {}).get("clients", 0)
            results["clients_held"] = holding
            results["generator_processes"] = report["generators"]
            results["registration_failures"] = report["failures"]
            results["registration_failure_sample"] = report["failure_sample"]
            results["registrations_per_s"] = report["held"] / max(report["seconds"], 1e-9)
            results["kib_per_client"] = (rss_after - rss_before) / max(1, holding)
            results["ssn_rss_mib"] = rss_after / 1024
            clients = [
                await light_client(nursery, _only(network.seeds, 0), f"near0-{i}") for i in range(9)
            ]

            # 2. Lookup latency within the region (targets on SSN 1, eu) and across (SSN 2, us).
            far = [
                await light_client(nursery, _only(network.seeds, 2), f"far-{i}") for i in range(50)
            ]
            near = [
                await light_client(nursery, _only(network.seeds, 1), f"near-{i}") for i in range(50)
            ]
            asker = clients[0]
            for label, targets in (("within_region", near), ("across_regions", far)):
                latencies = []
                for round_number in range(200 if quick else 1000):
                    target = targets[round_number % len(targets)]
                    assert target.host.peer_id is not None
                    begun = time.perf_counter()
                    await asker.lookup(target.host.peer_id)
                    latencies.append(time.perf_counter() - begun)
                results[f"lookup_{label}_median_ms"] = 1000 * statistics.median(latencies)
                results[f"lookup_{label}_p99_ms"] = 1000 * _percentile(latencies, 0.99)

            # 3. Signals/s between two SSNs: senders on SSN 0, receivers on SSN 2.
            senders = clients[1:9]
            receivers = far[:8]
            received = 0

            # Both ends use the clients' task-free path: signals sent with
            # send_signal_nowait (the next one from the previous one's answer, 32 in
            # flight per pair) and counted by a callback from the channel's reader.
            def count(sender: bytes, payload: bytes) -> None:
                nonlocal received
                received += 1

            for receiver in receivers:
                receiver.set_signal_callback(count)
            stop_at = trio.current_time() + seconds
            acknowledged = 0
            failures: list[str] = []
            in_flight = 0
            done = trio.Event()

            def pump(sender: SsnClient, to: bytes) -> None:
                nonlocal in_flight

                def on_sent(result: object) -> None:
                    nonlocal acknowledged, in_flight
                    in_flight -= 1
                    if isinstance(result, Exception):
                        failures.append(repr(result)[:200])
                    else:
                        acknowledged += 1
                    if trio.current_time() < stop_at and not failures:
                        try:
                            pump(sender, to)
                        except NeoNetError as exc:  # the channel closed, say
                            failures.append(repr(exc)[:200])
                    if in_flight == 0:
                        done.set()

                sender.send_signal_nowait(to, SIGNAL_PAYLOAD, on_sent)
                in_flight += 1

            base = received
            # CPU per signal of each process taking part: the sending SSN, the receiving
            # SSN, and this process (the generator, both clients' ends).
            cpu_pids = {
                "ssn_sender": pid,
                "ssn_receiver": network.ssns[2].process.pid,  # type: ignore[union-attr]
                "generator": os.getpid(),
            }
            cpu_before = {label: children.cpu_seconds(p) for label, p in cpu_pids.items()}
            calls_before = {label: _system_calls(p) for label, p in cpu_pids.items()}
            started = time.perf_counter()
            for sender, receiver in zip(senders, receivers, strict=True):
                assert receiver.host.peer_id is not None
                for _ in range(SIGNALS_IN_FLIGHT):
                    pump(sender, receiver.host.peer_id.to_bytes())
            with trio.fail_after(seconds + 30):
                await done.wait()
            elapsed = time.perf_counter() - started
            signals = max(1, received - base)
            results["cpu_us_per_signal"] = {
                label: 1e6 * (children.cpu_seconds(p) - cpu_before[label]) / signals
                for label, p in cpu_pids.items()
            }
            calls_after = {label: _system_calls(p) for label, p in cpu_pids.items()}
            results["reads_writes_per_signal"] = {
                label: [
                    (calls_after[label][kind] - calls_before[label][kind]) / signals
                    for kind in (0, 1)
                ]
                for label in cpu_pids
            }
            if failures:
                results["signal_failures"] = len(failures)
                results["signal_failure_sample"] = failures[:3]
            results["signals_per_s_between_ssns"] = (received - base) / elapsed
            results["signals_acknowledged"] = acknowledged
            nursery.cancel_scope.cancel()
    finally:
        if generators:
            await trio.to_thread.run_sync(children.stop, generators)
        await trio.to_thread.run_sync(network.stop_all)
    return results


# --- the Node.js ws relay -------------------------------------------------------------
class _WsClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.received = 0

    @classmethod
    async def connect(cls, port: int, ident: str) -> _WsClient:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        client = cls(stream)
        await stream.send_all(client.ws.send(Request(host="127.0.0.1", target="/")))
        await client._until(lambda e: isinstance(e, AcceptConnection))
        await stream.send_all(client.ws.send(TextMessage(ident)))
        await client._until(lambda e: isinstance(e, TextMessage))
        return client

    async def _until(self, wanted: Any) -> None:
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError("relay closed the connection")
            self.ws.receive_data(data)
            if any(wanted(event) for event in self.ws.events()):
                return

    async def count_forever(self) -> None:
        while data := await self.stream.receive_some(65536):
            self.ws.receive_data(data)
            self.received += sum(isinstance(e, BytesMessage) for e in self.ws.events())


def _install_relay() -> None:
    """``npm install`` the relay's one dependency (``ws``, pinned by package-lock.json)."""
    npm = shutil.which("npm")
    if npm is not None and not (RELAY_DIR / "node_modules" / "ws").exists():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"], cwd=RELAY_DIR, check=False, timeout=300
        )


def _start_relay(node: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [node, str(RELAY_DIR / "relay.mjs"), "0"], stdout=subprocess.PIPE, text=True
    )


async def _relay_part(quick: bool) -> dict[str, Any]:
    node = shutil.which("node")
    await trio.to_thread.run_sync(_install_relay)
    if node is None or not (RELAY_DIR / "node_modules" / "ws").exists():
        return {"skipped": f"needs node and `npm install` in {RELAY_DIR}"}
    held = 500 if quick else 4000
    seconds = 3.0 if quick else 8.0
    process = _start_relay(node)
    results: dict[str, Any] = {}
    try:
        assert process.stdout is not None
        started_line = await trio.to_thread.run_sync(process.stdout.readline)
        port = json.loads(started_line)["port"]
        await trio.sleep(0.5)
        rss_before = _rss_kib(process.pid)
        clients: list[_WsClient] = []
        limiter = trio.Semaphore(64)

        async def add(index: int) -> None:
            async with limiter:
                clients.append(await _WsClient.connect(port, f"c{index}"))

        begun = time.perf_counter()
        async with trio.open_nursery() as adders:
            for index in range(held):
                adders.start_soon(add, index)
        elapsed = time.perf_counter() - begun
        await trio.sleep(1.0)
        results["connections_held"] = len(clients)
        results["connections_per_s"] = len(clients) / elapsed
        results["kib_per_connection"] = (_rss_kib(process.pid) - rss_before) / len(clients)

        pairs = [
            (await _WsClient.connect(port, f"s{i}"), await _WsClient.connect(port, f"r{i}"))
            for i in range(8)
        ]
        payload = SIGNAL_PAYLOAD
        async with trio.open_nursery() as nursery:
            for _, receiver in pairs:
                nursery.start_soon(receiver.count_forever)
            stop_at = trio.current_time() + seconds

            async def pump(sender: _WsClient, to: str) -> None:
                frame = sender.ws.send(BytesMessage(to.encode() + b"\n" + payload))
                batch = frame * 64
                while trio.current_time() < stop_at:
                    await sender.stream.send_all(batch)

            begun = time.perf_counter()
            async with trio.open_nursery() as pumps:
                for index, (sender, _) in enumerate(pairs):
                    pumps.start_soon(pump, sender, f"r{index}")
            await trio.sleep(0.5)  # let the relay drain what is in flight
            elapsed = time.perf_counter() - begun
            results["messages_per_s"] = sum(r.received for _, r in pairs) / elapsed
            nursery.cancel_scope.cancel()
        for client in clients + [c for pair in pairs for c in pair]:
            await client.stream.aclose()
    finally:
        process.terminate()
        await trio.to_thread.run_sync(process.wait)
        if process.stdout is not None:
            process.stdout.close()
    return results


async def _run(quick: bool, clients: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="neonet-bench-ssn-") as directory:
        ssn = await _ssn_part(quick, Path(directory), clients)
    # The SSN clients' sockets are closed when collected: free the descriptors before
    # the relay part opens its own (one process may hold 20,000).
    gc.collect()
    relay = await _relay_part(quick)
    return {"quick": quick, "cpus": os.cpu_count(), "ssn": ssn, "node_ws_relay": relay}


def main(*, quick: bool, as_json: bool, clients: int | None = None) -> None:
    results = trio.run(_run, quick, clients)
    if as_json:
        print(json.dumps(results))
        return
    ssn, relay = results["ssn"], results["node_ws_relay"]
    print("SSN (one process; 4 SSNs in 2 regions on loopback, Python load generator)")
    print(
        f"  clients held by one SSN      {ssn['clients_held']}"
        f" ({ssn['registration_failures']} registrations failed;"
        f" {ssn['generator_processes']} generator processes)"
    )
    print(
        f"  memory per client            {ssn['kib_per_client']:.1f} KiB"
        f" (SSN RSS {ssn['ssn_rss_mib']:.0f} MiB)"
    )
    print(f"  registrations/s              {ssn['registrations_per_s']:.0f}")
    print(f"  signals/s between two SSNs   {ssn['signals_per_s_between_ssns']:.0f}")
    cpu = ssn["cpu_us_per_signal"]
    print(
        f"  CPU per signal               sending SSN {cpu['ssn_sender']:.1f} us,"
        f" receiving SSN {cpu['ssn_receiver']:.1f} us, generator {cpu['generator']:.1f} us"
    )
    calls = ssn["reads_writes_per_signal"]
    print(
        "  reads + writes per signal    "
        + ", ".join(
            f"{label.replace('ssn_', '')} {reads:.2f} + {writes:.2f}"
            for label, (reads, writes) in calls.items()
        )
    )
    if ssn.get("signal_failures"):
        sample = ssn["signal_failure_sample"]
        print(f"  signal failures              {ssn['signal_failures']}: {sample}")
    for label in ("within_region", "across_regions"):
        print(
            f"  lookup {label.replace('_', ' '):15}"
            f"  median {ssn[f'lookup_{label}_median_ms']:.2f} ms,"
            f" p99 {ssn[f'lookup_{label}_p99_ms']:.2f} ms"
        )
    print("Node.js ws room relay (same load generator)")
    if "skipped" in relay:
        print(f"  skipped: {relay['skipped']}")
        return
    print(f"  connections held             {relay['connections_held']}")
    print(f"  memory per connection        {relay['kib_per_connection']:.1f} KiB")
    print(f"  connections/s                {relay['connections_per_s']:.0f}")
    print(f"  messages/s relayed           {relay['messages_per_s']:.0f}")
