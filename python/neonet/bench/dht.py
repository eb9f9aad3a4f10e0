"""``neonet bench dht``: lookup latency and hops of NeoNet DHT networks of 10, 50 and 200 nodes.

The network runs as several OS processes (``neonet.bench.dht_nodes``, 20 nodes or
fewer each) with real TCP on 127.0.0.1; each node joins through 3 random others and
then every node looks itself up twice (the spec's bootstrap). The workload, timed
inside the node processes: closest-peers lookups (FIND_NODE) for random keys, checked
against the true 20 closest of the whole network; values put from random nodes
and got from other random nodes (GET_VALUE, answering at the first valid value). Each
size runs on the native and the pure backend (``NEONET_PURE=1`` in the node
processes). ``Cluster`` is also what the 200-node scale test drives.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import trio

from neonet.proto.kad_records import blob_key

SIZES = (10, 50, 200)
NODES_PER_PROCESS = 20
FANOUT = 3  # bootstrap peers per node


@dataclass(frozen=True, slots=True)
class NodeInfo:
    process: int
    local: int
    peer_id: str
    peer_bytes: bytes
    addr: str


class WorkerProcess:
    """One ``dht_nodes`` process; ``command`` sends one JSON line and reads the answer."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""
        self._lock = trio.Lock()
        self.alive = True

    async def read_line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some(1 << 20)
            if not chunk:
                raise RuntimeError("DHT node process exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def command(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        async with self._lock:
            await self.process.stdin.send_all((json.dumps(command) + "\n").encode())
            answer = await self.read_line()
        if not answer.get("ok"):
            raise RuntimeError(f"DHT node process failed: {answer.get('error')}")
        return answer


class Cluster:
    """A running multi-process DHT network (see ``open_cluster``)."""

    def __init__(self, workers: list[WorkerProcess], nodes: list[NodeInfo]) -> None:
        self.workers = workers
        self.nodes = nodes

    def live_nodes(self) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if self.workers[node.process].alive]

    async def run(
        self, cmd: str, items: list[tuple[int, Any]], *, one_at_a_time: bool = False
    ) -> list[dict[str, Any]]:
        """Run ``cmd`` for (global node index, item) pairs; results in the same order.

        Items run concurrently unless ``one_at_a_time`` (for latency figures that a
        busy process would otherwise inflate).
        """
        if one_at_a_time:
            collected: list[dict[str, Any]] = []
            for item in items:
                collected += await self.run(cmd, [item])
            return collected
        groups: dict[int, list[int]] = {}
        for position, (index, _) in enumerate(items):
            groups.setdefault(self.nodes[index].process, []).append(position)
        results: list[dict[str, Any]] = [{} for _ in items]

        async def one(process: int, positions: list[int]) -> None:
            payload = []
            for position in positions:
                index, item = items[position]
                local = self.nodes[index].local
                payload.append([local, *item] if isinstance(item, list) else [local, item])
            answer = await self.workers[process].command({"cmd": cmd, "items": payload})
            for position, result in zip(positions, answer["results"], strict=True):
                results[position] = result

        async with trio.open_nursery() as nursery:
            for process, positions in groups.items():
                nursery.start_soon(one, process, positions)
        return results

    async def bootstrap(self, rng: random.Random, fanout: int = FANOUT) -> None:
        """Each node joins through ``fanout`` random others; then two rounds of self-lookups."""
        per_process: dict[int, list[list[Any]]] = {}
        for index, node in enumerate(self.nodes):
            others = rng.sample([i for i in range(len(self.nodes)) if i != index], fanout)
            per_process.setdefault(node.process, []).append(
                [node.local, [self.nodes[o].addr for o in others]]
            )
        async with trio.open_nursery() as nursery:
            for process, peers in per_process.items():
                nursery.start_soon(
                    self.workers[process].command, {"cmd": "bootstrap", "peers": peers}
                )
        for _ in range(2):
            async with trio.open_nursery() as nursery:
                for worker in self.workers:
                    nursery.start_soon(worker.command, {"cmd": "self_lookup"})

    def kill(self, processes: list[int]) -> None:
        """SIGKILL whole node processes (no goodbye to anyone)."""
        for process in processes:
            self.workers[process].process.send_signal(signal.SIGKILL)
            self.workers[process].alive = False

    def true_closest(self, key: bytes, exclude: int, count: int = 20) -> list[bytes]:
        target = int.from_bytes(sha256(key).digest())
        live = [self.nodes[i].peer_bytes for i in self.live_nodes() if i != exclude]
        live.sort(key=lambda peer: int.from_bytes(sha256(peer).digest()) ^ target)
        return live[:count]


@asynccontextmanager
async def open_cluster(
    size: int, *, pure: bool = False, per_process: int = NODES_PER_PROCESS
) -> AsyncIterator[Cluster]:
    """Start ``size`` nodes in ceil(size / per_process) processes; kill them all on exit."""
    env = dict(os.environ)
    if pure:
        env["NEONET_PURE"] = "1"
    else:
        env.pop("NEONET_PURE", None)
    counts = [per_process] * (size // per_process) + (
        [size % per_process] if size % per_process else []
    )
    workers: list[WorkerProcess] = []
    async with AsyncExitStack() as stack:

        async def stop_all() -> None:
            for worker in workers:
                if worker.process.returncode is None:
                    worker.process.kill()
                with trio.CancelScope(shield=True):
                    await worker.process.wait()

        stack.push_async_callback(stop_all)
        for count in counts:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "neonet.bench.dht_nodes", "--count", str(count)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            workers.append(WorkerProcess(process))
        nodes: list[NodeInfo] = []
        for process_index, worker in enumerate(workers):
            started = await worker.read_line()
            for local, entry in enumerate(started["nodes"]):
                from neonet.core.peer_id import PeerId

                peer_bytes = PeerId.from_string(entry["peer_id"]).to_bytes()
                nodes.append(
                    NodeInfo(process_index, local, entry["peer_id"], peer_bytes, entry["addr"])
                )
        yield Cluster(workers, nodes)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarise(results: list[dict[str, Any]]) -> dict[str, float]:
    good = [r for r in results if r.get("ok")]
    ms = [float(r["ms"]) for r in good]
    hops = [float(r.get("hops", 0)) for r in good]
    queried = [float(r.get("queried", 0)) for r in good]
    return {
        "count": len(results),
        "succeeded": len(good),
        "success_percent": 100.0 * len(good) / len(results) if results else 0.0,
        "median_ms": statistics.median(ms) if ms else float("nan"),
        "p99_ms": _percentile(ms, 0.99),
        "median_hops": statistics.median(hops) if hops else float("nan"),
        "max_hops": max(hops) if hops else float("nan"),
        "median_queried": statistics.median(queried) if queried else float("nan"),
    }


async def closest_lookups(
    cluster: Cluster, rng: random.Random, count: int, *, one_at_a_time: bool = False
) -> dict[str, float]:
    """``count`` FIND_NODE lookups from random live nodes; correctness against the truth."""
    live = cluster.live_nodes()
    items = [(rng.choice(live), rng.randbytes(32).hex()) for _ in range(count)]
    results = await cluster.run("closest", items, one_at_a_time=one_at_a_time)
    exact = 0
    for (origin, key_hex), result in zip(items, results, strict=True):
        truth = cluster.true_closest(bytes.fromhex(key_hex), origin)
        found = [bytes.fromhex(p) for p in result.get("peers", [])]
        if result.get("ok") and found == truth:
            exact += 1
    summary = summarise(results)
    summary["exact_percent"] = 100.0 * exact / count
    return summary


async def put_values(cluster: Cluster, rng: random.Random, count: int) -> list[tuple[bytes, bytes]]:
    """Put ``count`` content-addressed values from random nodes; return (key, value) pairs."""
    live = cluster.live_nodes()
    values = [rng.randbytes(64) for _ in range(count)]
    pairs = [(blob_key(value), value) for value in values]
    results = await cluster.run("put", [(rng.choice(live), [k.hex(), v.hex()]) for k, v in pairs])
    failed = [r for r in results if not r.get("ok")]
    if failed:
        raise RuntimeError(f"{len(failed)} of {count} puts failed: {failed[:3]}")
    return pairs


async def get_values(
    cluster: Cluster,
    rng: random.Random,
    pairs: list[tuple[bytes, bytes]],
    *,
    use_local: bool = True,
    one_at_a_time: bool = False,
) -> dict[str, float]:
    """Get each value from a random live node; a missing or wrong value is a failure."""
    live = cluster.live_nodes()
    items = [(rng.choice(live), [key.hex(), use_local]) for key, _ in pairs]
    results = await cluster.run("get", items, one_at_a_time=one_at_a_time)
    for (_, value), result in zip(pairs, results, strict=True):
        if result.get("ok") and bytes.fromhex(result["value"]) != value:
            result["ok"] = False  # a wrong value is a failure (cannot pass the validator)
    return summarise(results)


async def measure(size: int, *, pure: bool, lookups: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    started = time.perf_counter()
    async with open_cluster(size, pure=pure) as cluster:
        await cluster.bootstrap(rng)
        setup = time.perf_counter() - started
        closest = await closest_lookups(cluster, rng, lookups, one_at_a_time=True)
        pairs = await put_values(cluster, rng, lookups)
        # Network lookups only: with k=20 a small network stores every value everywhere.
        got = await get_values(cluster, rng, pairs, use_local=False, one_at_a_time=True)
    return {
        "nodes": size,
        "backend": "pure" if pure else "native",
        "setup_seconds": setup,
        "closest": closest,
        "get_value": got,
    }


def main(*, quick: bool, as_json: bool) -> None:
    lookups = 50 if quick else 200
    sizes = (10, 50) if quick else SIZES
    rows = []
    for size in sizes:
        for pure in (False, True):
            rows.append(trio.run(lambda s=size, p=pure: measure(s, pure=p, lookups=lookups)))  # type: ignore[misc]
            if not as_json:
                _print_row(rows[-1])
    if as_json:
        print(json.dumps({"lookups_per_case": lookups, "results": rows}))


def _print_row(row: dict[str, Any]) -> None:
    closest, got = row["closest"], row["get_value"]
    print(
        f"{row['nodes']:>4} nodes {row['backend']:<6} (setup {row['setup_seconds']:.1f} s) | "
        f"closest: {closest['exact_percent']:.0f}% exact, median {closest['median_ms']:.1f} ms, "
        f"p99 {closest['p99_ms']:.1f} ms, hops {closest['median_hops']:.0f}"
        f" (max {closest['max_hops']:.0f}), {closest['median_queried']:.0f} queried | "
        f"get: {got['success_percent']:.1f}% found, median {got['median_ms']:.1f} ms, "
        f"p99 {got['p99_ms']:.1f} ms, hops {got['median_hops']:.0f} (max {got['max_hops']:.0f})",
        flush=True,
    )
