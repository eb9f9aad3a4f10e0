"""One side of the per-stream A/B (see README.md): `listen`, or `dial ADDR N`.

The listener prints its address, then one JSON line of counters per line read on
stdin. The dialer connects, waits for identify, warms up (300 streams), prints
"ready", and on the next stdin line runs N sequential echo streams (open, negotiate,
1-byte echo, close: the `neonet bench transport` workload) and prints the counters
spent on them. Counters: process CPU seconds, and with AB_INSTR=1 trio task steps
(total and per task name) and I/O waits (all, and those that could block). The
instrument itself costs CPU: read CPU from runs without it. AB_BULK=1 makes the
dialer upload N MiB with /perf/1.0.0 instead; AB_PROF=path writes a cProfile of the
measured part.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import trio

STEPS_BY_TASK: dict[str, int] = {}


class Counter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = 0
        self.waits = 0
        self.blocking_waits = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1
        name = task.name.rsplit(".", 1)[-1]
        STEPS_BY_TASK[name] = STEPS_BY_TASK.get(name, 0) + 1

    def before_io_wait(self, timeout: float) -> None:
        self.waits += 1
        if timeout > 0:
            self.blocking_waits += 1


COUNTER = Counter()
PROFILE_PATH = os.environ.get("AB_PROF")
_profile: Any = None


def toggle_profile(tag: str) -> None:
    global _profile
    if not PROFILE_PATH:
        return
    import cProfile

    if _profile is None:
        _profile = cProfile.Profile(time.process_time)
        _profile.enable()
    else:
        _profile.disable()
        _profile.dump_stats(f"{PROFILE_PATH}.{tag}")
        _profile = None


def counters(node: Any) -> dict[str, Any]:
    connections = [c for cs in node.host.swarm._connections.values() for c in cs]
    return {
        "cpu": time.process_time(),
        "steps": COUNTER.steps,
        "waits": COUNTER.waits,
        "bwaits": COUNTER.blocking_waits,
        "writes": sum(c.session.statistics().writes for c in connections),
        "bytask": dict(STEPS_BY_TASK),
    }


async def stdin_lines() -> AsyncIterator[str]:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    while data := await stdin.receive_some(4096):
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode().strip()


async def listen() -> None:
    from neonet.bench.peer import ECHO, _echo
    from neonet.node import open_node

    if os.environ.get("AB_INSTR") == "1":
        trio.lowlevel.add_instrument(COUNTER)
    async with open_node(listen=["/ip4/127.0.0.1/tcp/0"]) as node:
        node.set_stream_handler(ECHO, _echo)
        print(json.dumps({"addrs": [str(a) for a in node.listen_addrs]}), flush=True)
        async for _ in stdin_lines():
            print(json.dumps(counters(node)), flush=True)
            toggle_profile("listener")


async def dial(address: str, count: int) -> None:
    from neonet.bench.peer import ECHO
    from neonet.node import open_node

    if os.environ.get("AB_INSTR") == "1":
        trio.lowlevel.add_instrument(COUNTER)
    async with open_node(listen=()) as node:
        peer = await node.connect(address)
        await node.identify(peer)

        async def streams(k: int) -> None:
            for _ in range(k):
                stream = await node.new_stream(peer, [ECHO])
                await stream.send_all(b"x")
                if await stream.receive_some(1) != b"x":
                    raise RuntimeError("bad echo")
                await stream.aclose()

        async def bulk(k: int) -> None:
            await node.perf(peer, upload_bytes=k * 1024 * 1024, download_bytes=0)

        run = bulk if os.environ.get("AB_BULK") == "1" else streams
        await run(8 if run is bulk else 300)
        print("ready", flush=True)
        async for _ in stdin_lines():
            before = counters(node)
            toggle_profile("dialer")
            start = time.perf_counter()
            await run(count)
            wall = time.perf_counter() - start
            toggle_profile("dialer")
            after = counters(node)
            spent = {k: after[k] - before[k] for k in after if k != "bytask"}
            spent["wall"] = wall
            spent["bytask"] = {
                k: (v - before["bytask"].get(k, 0)) / count for k, v in after["bytask"].items()
            }
            print(json.dumps(spent), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "listen":
        trio.run(listen)
    else:
        trio.run(dial, sys.argv[2], int(sys.argv[3]))
