"""``neonet bench gossip``: a GossipSub network of NeoNet nodes in several processes.

``nodes`` nodes (50; ``--quick``: 20) run in ``processes`` worker processes
(``neonet.bench.gossip_worker``) on 127.0.0.1 over real TCP (Noise, yamux), each node
dialing ``dials`` random others; all subscribe to one topic. ``publishers`` nodes then
publish 256-byte signed messages at a fixed total rate. Printed per backend:

* the main run (100 msgs/s for 20 s; quick: 50 msgs/s for 5 s): delivery ratio
  (receptions / (messages x (nodes - 1))), latency median and p99 (publish call to
  delivery at each subscriber), duplicates per message per node;
* a rate sweep (rising rates, shorter runs, before the main run): the highest rate
  whose delivery was at least 99.9% with a bounded backlog (p99 under 1 s); once a
  rate falls short, higher ones are not tried.

Both backends run by default, each in its own set of processes (``NEONET_PURE``).
With ``NEONET_BENCH_RPC_SIZES=<folder>`` the workers also count the messages per received
RPC and the IDs per IHAVE entry (files under ``<folder>/<backend>/``), and the share of
messages by RPC size is printed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import IO, Any

from neonet.bench.gossip_worker import BUCKET_US

# A rate is "sustained" when delivery is >= 99.9% and the backlog stays bounded: p99
# latency under this (a growing backlog shows as seconds of latency).
BOUNDED_P99_MS = 1000.0


@dataclass(frozen=True, slots=True)
class Plan:
    nodes: int = 50
    processes: int = 5
    dials: int = 8
    publishers: int = 5
    size: int = 256
    rate: float = 100.0
    duration: float = 20.0
    drain: float = 3.0
    sweep: tuple[float, ...] = (10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0)
    sweep_duration: float = 8.0


QUICK = Plan(
    nodes=20,
    processes=4,
    dials=6,
    publishers=4,
    rate=50.0,
    duration=5.0,
    drain=2.0,
    sweep=(10.0, 25.0, 50.0, 100.0),
    sweep_duration=3.0,
)


class _Worker:
    def __init__(self, first: int, count: int, environment: dict[str, str]) -> None:
        self.first = first
        self.count = count
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "neonet.bench.gossip_worker",
                "--first",
                str(first),
                "--nodes",
                str(count),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            text=True,
        )
        self.addrs: list[str] = self.read()["addrs"]

    def send(self, **command: Any) -> None:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()

    def read(self) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"bench worker {self.first} exited ({self.process.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        try:
            self.send(cmd="stop")
            self.read()
        except (OSError, RuntimeError, ValueError):
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _all(workers: list[_Worker], **command: Any) -> list[dict[str, Any]]:
    for worker in workers:
        worker.send(**command)
    return [worker.read() for worker in workers]


def _percentile(histogram: Counter[int], fraction: float) -> float | None:
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = fraction * (total - 1)
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen > rank:
            return (bucket + 0.5) * BUCKET_US / 1000  # milliseconds
    return None


def _one_run(
    workers: list[_Worker],
    plan: Plan,
    publishers: list[int],
    tag: int,
    rate: float,
    duration: float,
    duplicates_before: int,
) -> dict[str, Any]:
    per_publisher = rate / len(publishers)
    for worker in workers:
        local = [
            p - worker.first for p in publishers if worker.first <= p < worker.first + worker.count
        ]
        worker.send(
            cmd="run",
            tag=tag,
            rate=per_publisher,
            duration=duration,
            size=plan.size,
            publishers=local,
        )
    published = sum(worker.read()["published"] for worker in workers)
    replies = _all(workers, cmd="collect", tag=tag, drain=plan.drain)
    received = sum(r["received"] for r in replies)
    histogram: Counter[int] = Counter()
    for reply in replies:
        histogram.update({int(k): v for k, v in reply["latency"].items()})
    duplicates = sum(r["duplicates"] for r in replies)
    expected = published * (plan.nodes - 1)
    return {
        "rate": rate,
        "duration_s": duration,
        "published": published,
        "delivery": received / expected if expected else 0.0,
        "latency_median_ms": _percentile(histogram, 0.5),
        "latency_p99_ms": _percentile(histogram, 0.99),
        "duplicates_per_message": (duplicates - duplicates_before) / expected if expected else 0,
        "dropped_rpcs": sum(r["dropped_rpcs"] for r in replies),
        # CPU per message per node (all processes, publishing to drained): what caps the
        # rate on a machine, whatever else runs on it.
        "cpu_us_per_message_node": (
            sum(r["cpu_s"] for r in replies) / (published * plan.nodes) * 1e6 if published else None
        ),
        "_duplicates_total": duplicates,
    }


def run_backend(name: str, plan: Plan, seed: int = 1) -> dict[str, Any]:
    environment = dict(os.environ)
    environment.pop("NEONET_PURE", None)
    if name == "pure":
        environment["NEONET_PURE"] = "1"
    sizes_dir = environment.get("NEONET_BENCH_RPC_SIZES")
    if sizes_dir:  # each backend's workers count into a folder of their own
        sizes_dir = environment["NEONET_BENCH_RPC_SIZES"] = os.path.join(sizes_dir, name)
        os.makedirs(sizes_dir, exist_ok=True)
        for stale in os.listdir(sizes_dir):
            if stale.startswith("rpc-sizes-"):
                os.remove(os.path.join(sizes_dir, stale))
    rng = random.Random(seed)
    per_process = [
        plan.nodes // plan.processes + (i < plan.nodes % plan.processes)
        for i in range(plan.processes)
    ]
    workers: list[_Worker] = []
    rpc_sizes: dict[str, Any] = {}
    started = time.monotonic()
    try:
        first = 0
        for count in per_process:
            workers.append(_Worker(first, count, environment))
            first += count
        addrs = [address for worker in workers for address in worker.addrs]
        links: set[tuple[int, int]] = set()
        for node in range(plan.nodes):
            others = [o for o in range(plan.nodes) if o != node]
            for other in rng.sample(others, plan.dials):
                if (other, node) not in links:
                    links.add((node, other))
        for worker in workers:
            dials = [
                [a - worker.first, addrs[b]]
                for a, b in sorted(links)
                if worker.first <= a < worker.first + worker.count
            ]
            worker.send(cmd="connect", dials=dials)
        connect_failures = sum(worker.read()["failures"] for worker in workers)
        _all(workers, cmd="subscribe")
        meshes = _all(workers, cmd="wait_mesh", minimum=4, timeout=15)
        setup_s = time.monotonic() - started
        publishers = sorted(rng.sample(range(plan.nodes), plan.publishers))
        # The sweep runs first, on the fresh network: a main run beyond capacity leaves a
        # backlog behind that would slow whatever ran next.
        duplicates = 0
        sweep: list[dict[str, Any]] = []
        best: float | None = None
        for index, rate in enumerate(plan.sweep):
            result = _one_run(
                workers, plan, publishers, 2 + index, rate, plan.sweep_duration, duplicates
            )
            duplicates = result.pop("_duplicates_total")
            sweep.append(result)
            p99 = result["latency_p99_ms"]
            if result["delivery"] < 0.999 or p99 is None or p99 > BOUNDED_P99_MS:
                break
            best = rate
        main = _one_run(workers, plan, publishers, 1, plan.rate, plan.duration, duplicates)
        main.pop("_duplicates_total")
        return {
            "backend": name,
            "nodes": plan.nodes,
            "processes": plan.processes,
            "links": len(links),
            "connect_failures": connect_failures,
            "mesh_min": min(min(m["mesh"]) for m in meshes),
            "setup_s": round(setup_s, 1),
            "main": main,
            "sweep": sweep,
            "highest_rate_999": best,
            "rpc_sizes": rpc_sizes,  # filled in when the workers have stopped
            "load_average_1min": round(os.getloadavg()[0], 1),
        }
    finally:
        for worker in workers:
            worker.close()
        if sizes_dir:
            rpc_sizes.update(_rpc_sizes(sizes_dir))


def _rpc_sizes(directory: str) -> dict[str, Any]:
    """The workers' counts (``NEONET_BENCH_RPC_SIZES``): share of the received messages
    that came in RPCs of each size, and IHAVE IDs per topic entry."""
    sizes: Counter[int] = Counter()
    ihave: Counter[int] = Counter()
    for entry in sorted(os.listdir(directory)):
        if entry.startswith("rpc-sizes-"):
            with open(os.path.join(directory, entry), encoding="utf-8") as file:
                data = json.load(file)
            sizes.update({int(k): v for k, v in data["messages_per_rpc"].items()})
            ihave.update({int(k): v for k, v in data["ihave_ids"].items()})
    messages = sum(size * count for size, count in sizes.items())
    entries = sum(ihave.values())
    return {
        "rpcs": sum(sizes.values()),
        "messages": messages,
        "message_share_by_rpc_size": {
            size: size * count / messages for size, count in sorted(sizes.items()) if size
        },
        "ihave_entries": entries,
        "ihave_ids_per_entry": sum(k * v for k, v in ihave.items()) / entries if entries else 0,
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(*, quick: bool = False, as_json: bool = False, backends: tuple[str, ...] = ()) -> None:
    from neonet.core import backend as backend_module

    plan = QUICK if quick else Plan()
    names = backends or (("native", "pure") if backend_module.NATIVE_AVAILABLE else ("pure",))
    results = [run_backend(name, plan) for name in names]
    if as_json:
        print(json.dumps({"plan": dataclasses.asdict(plan), "results": results}))
        return
    print(
        f"GossipSub: {plan.nodes} nodes in {plan.processes} processes, "
        f"{plan.dials} dials each, {plan.publishers} publishers, "
        f"{plan.size}-byte signed messages, 127.0.0.1 TCP"
    )
    for result in results:
        main_run = result["main"]
        print(
            f"\n[{result['backend']}] links {result['links']}, smallest mesh "
            f"{result['mesh_min']}, set-up {result['setup_s']} s"
        )
        print(
            f"  {main_run['rate']:.0f} msgs/s for {main_run['duration_s']:.0f} s: "
            f"{main_run['published']} messages, delivery {main_run['delivery'] * 100:.3f}%, "
            f"latency median {_fmt(main_run['latency_median_ms'])} ms, "
            f"p99 {_fmt(main_run['latency_p99_ms'])} ms, "
            f"duplicates/msg/node {main_run['duplicates_per_message']:.2f}"
        )
        cpu = main_run["cpu_us_per_message_node"]
        if cpu:
            cores = os.cpu_count() or 1
            print(
                f"  CPU per message per node {cpu:.0f} us: {plan.nodes} nodes saturate "
                f"{cores} cores at about {cores * 1e6 / (cpu * plan.nodes):.0f} msgs/s"
            )
        for step in result["sweep"]:
            print(
                f"  sweep {step['rate']:>5.0f} msgs/s: delivery {step['delivery'] * 100:.3f}%, "
                f"median {_fmt(step['latency_median_ms'])} ms, "
                f"p99 {_fmt(step['latency_p99_ms'])} ms"
            )
        best = _fmt(result["highest_rate_999"], 0)
        print(f"  highest rate with >= 99.9% delivery and p99 < 1 s: {best} msgs/s")
        print(f"  (load average at the end: {result['load_average_1min']})")
        sizes = result["rpc_sizes"]
        if sizes:
            shares = ", ".join(
                f"{size}: {share * 100:.1f}%"
                for size, share in sizes["message_share_by_rpc_size"].items()
            )
            print(
                f"  messages by RPC size (share): {shares}; IHAVE IDs per entry "
                f"{sizes['ihave_ids_per_entry']:.0f} ({sizes['ihave_entries']} entries)"
            )
