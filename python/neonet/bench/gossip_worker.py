"""One process of ``neonet bench gossip``: hosts several NeoNet nodes running GossipSub.

Driven by the coordinator (``neonet.bench.gossip``) with JSON lines on stdin; answers
with one JSON line per command on stdout. At start it prints the nodes' addresses.
Commands: ``connect`` (dial pairs), ``subscribe``, ``wait_mesh``, ``run`` (publish at a
fixed rate from some nodes), ``collect`` (wait, then report receptions, latencies,
duplicates), ``stop``. A message's data carries the run tag, the publisher, a sequence
number and the send time (``time.monotonic_ns``, one clock for all processes on Linux),
padded to the message size; latency is measured at each receiving node.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import trio

from neonet.node import Node, open_node
from neonet.proto.gossipsub_rpc import Rpc
from neonet.services.pubsub import Pubsub, Subscription, open_pubsub

TOPIC = "bench"
HEADER = struct.Struct(">IIIQ")  # tag, publisher, seqno, send time (ns)
BUCKET_US = 100  # latency histogram resolution


class Recorder:
    """Receptions of one process, per run tag."""

    def __init__(self) -> None:
        self.received: Counter[int] = Counter()  # tag -> messages received (not own)
        self.latency: dict[int, Counter[int]] = {}  # tag -> bucket -> count
        self.unique: set[tuple[int, int, int, int]] = set()  # (tag, node, publisher, seqno)
        self.duplicates_local = 0

    def record(self, node: int, data: bytes, now_ns: int) -> None:
        tag, publisher, seqno, sent = HEADER.unpack_from(data)
        if publisher == node:
            return
        key = (tag, node, publisher, seqno)
        if key in self.unique:
            self.duplicates_local += 1
            return
        self.unique.add(key)
        self.received[tag] += 1
        bucket = max(0, now_ns - sent) // (BUCKET_US * 1000)
        self.latency.setdefault(tag, Counter())[bucket] += 1


async def _drain(index: int, subscription: Subscription, recorder: Recorder) -> None:
    async for message in subscription:
        recorder.record(index, message.data, time.monotonic_ns())


async def _publish(
    pubsub: Pubsub, node: int, tag: int, rate: float, duration: float, size: int
) -> int:
    interval = 1.0 / rate
    start = trio.current_time()
    sent = 0
    padding = bytes(max(0, size - HEADER.size))
    while True:
        due = start + sent * interval
        if due - start >= duration:
            return sent
        await trio.sleep_until(due)
        data = HEADER.pack(tag, node, sent, time.monotonic_ns()) + padding
        await pubsub.publish(TOPIC, data)
        sent += 1


def _reply(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


async def _lines() -> Any:
    stream = trio.lowlevel.FdStream(sys.stdin.fileno())
    buffer = b""
    while True:
        chunk = await stream.receive_some(1 << 16)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


class Worker:
    """The nodes of this process and the commands the coordinator sends."""

    def __init__(self, first_index: int, members: list[tuple[Node, Pubsub]]) -> None:
        self.first = first_index
        self.members = members
        self.recorder = Recorder()
        self.cpu_at_run = time.process_time()

    async def connect(self, dials: list[tuple[int, str]]) -> dict[str, Any]:
        failures = 0
        limit = trio.CapacityLimiter(16)

        async def dial(local: int, address: str) -> None:
            nonlocal failures
            async with limit:
                try:
                    await self.members[local][0].connect(address)
                except Exception:
                    failures += 1

        async with trio.open_nursery() as dialers:
            for local, address in dials:
                dialers.start_soon(dial, local, address)
        return {"ok": failures == 0, "failures": failures}

    def subscribe(self, nursery: trio.Nursery) -> dict[str, Any]:
        for local, (_, pubsub) in enumerate(self.members):
            subscription = pubsub.subscribe(TOPIC, buffer=1 << 16)
            nursery.start_soon(_drain, self.first + local, subscription, self.recorder)
        return {"ok": True}

    async def wait_mesh(self, minimum: int, limit_s: float) -> dict[str, Any]:
        def meshed(pubsub: Pubsub) -> bool:
            return len(pubsub.router.mesh_peers(TOPIC)) >= minimum

        with trio.move_on_after(limit_s):
            for _, pubsub in self.members:
                await pubsub.wait_until(lambda p=pubsub: meshed(p))  # type: ignore[misc]
        sizes = [len(p.router.mesh_peers(TOPIC)) for _, p in self.members]
        return {"ok": min(sizes) >= minimum, "mesh": sizes}

    async def run(
        self, tag: int, rate: float, duration: float, size: int, publishers: list[int]
    ) -> dict[str, Any]:
        counts: list[int] = []
        self.cpu_at_run = time.process_time()

        async def publish(local: int) -> None:
            pubsub = self.members[local][1]
            counts.append(await _publish(pubsub, self.first + local, tag, rate, duration, size))

        async with trio.open_nursery() as nursery:
            for local in publishers:
                nursery.start_soon(publish, local)
        return {"published": sum(counts)}

    async def collect(self, tag: int, drain: float) -> dict[str, Any]:
        await trio.sleep(drain)
        recorder = self.recorder
        stats = [pubsub.router.stats for _, pubsub in self.members]
        return {
            "received": recorder.received[tag],
            "latency": {str(k): v for k, v in recorder.latency.get(tag, {}).items()},
            "duplicates": sum(s.duplicates_received for s in stats),
            "idontwant_suppressed": sum(s.idontwant_suppressed for s in stats),
            "dropped_rpcs": sum(pubsub.dropped_rpcs for _, pubsub in self.members),
            "cpu_s": time.process_time() - self.cpu_at_run,  # this process, run + drain
        }


def _count_rpc_sizes(
    members: list[tuple[Node, Pubsub]], directory: str, first_index: int
) -> Callable[[], None]:
    """Counts, for docs/benchmarks.md, the messages per received RPC and the IDs per
    IHAVE topic entry of this process's routers; the returned callable writes them to
    ``directory/rpc-sizes-<first_index>.json`` (``NEONET_BENCH_RPC_SIZES``)."""
    messages: Counter[int] = Counter()
    ihave_ids: Counter[int] = Counter()
    for _, pubsub in members:
        router = pubsub.router
        handle = router.handle_rpc

        def counted(peer: bytes, rpc: Rpc, now: float, handle: Any = handle) -> None:
            messages[len(rpc.messages) + len(rpc.received)] += 1
            for _, ids in rpc.control.ihave:
                ihave_ids[len(ids)] += 1
            handle(peer, rpc, now)

        router.handle_rpc = counted  # type: ignore[method-assign]

    def write() -> None:
        path = os.path.join(directory, f"rpc-sizes-{first_index}.json")
        with open(path, "w", encoding="utf-8") as file:
            json.dump({"messages_per_rpc": messages, "ihave_ids": ihave_ids}, file)

    return write


async def serve(first_index: int, count: int) -> None:
    async with AsyncExitStack() as stack:
        members: list[tuple[Node, Pubsub]] = []
        for _ in range(count):
            node = await stack.enter_async_context(open_node())
            members.append((node, await stack.enter_async_context(open_pubsub(node))))
        worker = Worker(first_index, members)
        if os.environ.get("NEONET_BENCH_GC") != "default":
            # A node process allocates a few hundred short-lived objects per message and
            # copy; at CPython's default gen-0 threshold (700) the collector ran ~25
            # times a second per process and took 6-7% of its CPU (measured with
            # gc.callbacks), nearly all of it re-scanning the long-lived node state.
            # Set-up objects go to the permanent generation and collections get rarer:
            # under 1%. (Refcounting frees the rest; the cycles wait a little longer.)
            gc.freeze()
            gc.set_threshold(10_000, 50, 1_000)
        sizes_dir = os.environ.get("NEONET_BENCH_RPC_SIZES")
        if sizes_dir:
            stack.callback(_count_rpc_sizes(members, sizes_dir, first_index))
        _reply({"addrs": [str(node.listen_addrs[0]) for node, _ in members]})
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        async for command in _lines():
            name = command["cmd"]
            if name == "connect":
                _reply(await worker.connect(command["dials"]))
            elif name == "subscribe":
                _reply(worker.subscribe(nursery))
            elif name == "wait_mesh":
                _reply(await worker.wait_mesh(int(command["minimum"]), float(command["timeout"])))
            elif name == "run":
                _reply(
                    await worker.run(
                        int(command["tag"]),
                        float(command["rate"]),
                        float(command["duration"]),
                        int(command["size"]),
                        [int(local) for local in command["publishers"]],
                    )
                )
            elif name == "collect":
                _reply(await worker.collect(int(command["tag"]), float(command["drain"])))
            elif name == "stop":
                _reply({"ok": True})
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neonet.bench.gossip_worker")
    parser.add_argument("--first", type=int, required=True, help="global index of node 0")
    parser.add_argument("--nodes", type=int, required=True)
    args = parser.parse_args(argv)
    profile_dir = os.environ.get("NEONET_BENCH_PROFILE")
    if profile_dir and args.first == 0:
        # One process under cProfile (for docs/benchmarks.md): the first one's nodes.
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(trio.run, serve, args.first, args.nodes)
        profiler.dump_stats(os.path.join(profile_dir, f"worker-{args.first}.prof"))
        return 0
    trio.run(serve, args.first, args.nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
