"""One process of SSN clients for the cluster test: commands in, JSON results out.

python tests/scale/ssn_client_worker.py SEEDS_FILE OPERATOR_PEER_ID PREFIX COUNT

Starts COUNT NeoNet nodes, each with an SSN client named PREFIX-<i> (regions alternate
eu/us), then reads one JSON command per line on stdin and answers one JSON line:
``exercise`` (look names up and send signals), ``connect`` (dial looked-up peers and echo
data over a NeoNet stream), ``received`` (signals received per round), ``status``
(SSN, fail-overs, fail-over times) and ``quit``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import trio

from neonet.core.peer_id import PeerId
from neonet.node import Node, open_node
from neonet.proto.ssn.client_protocol import SsnRequestError
from neonet.proto.ssn.seeds import verify_seed_list
from neonet.services.ssn.client import SsnClient, open_ssn_client

ECHO = "/neonet/test/echo/1.0.0"
CONCURRENCY = 24


async def echo(stream: Any) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


class Worker:
    def __init__(self) -> None:
        self.clients: dict[str, tuple[Node, SsnClient]] = {}
        self.received: Counter[str] = Counter()

    async def drain(self, client: SsnClient) -> None:
        async for signal in client.signals():
            round_tag = signal.payload.split(b":", 1)[0].decode()
            self.received[round_tag] += 1

    async def exercise(self, command: dict[str, Any]) -> dict[str, Any]:
        names: list[str] = command["names"]
        rng = random.Random(command["seed"])
        tag = command["round"]
        jobs: list[tuple[str, str]] = []
        for name in self.clients:
            others = [n for n in names if n != name]
            count = command["per_client"]
            chosen = others if count >= len(others) else rng.sample(others, count)
            jobs.extend((name, target) for target in chosen)
        outcome: Counter[str] = Counter()
        latencies: list[float] = []
        limiter = trio.Semaphore(CONCURRENCY)

        async def one(source: str, target: str) -> None:
            async with limiter:
                client = self.clients[source][1]
                try:
                    with trio.fail_after(20):
                        started = time.perf_counter()
                        info = await client.lookup(target)
                        latencies.append(time.perf_counter() - started)
                        outcome["lookup_ok"] += 1
                        status = await client.send_signal(
                            info.peer_id, f"{tag}:{source}>{target}".encode()
                        )
                        outcome[f"signal_{status.name.lower()}"] += 1
                except SsnRequestError as exc:
                    outcome[f"error_{exc.code.name.lower()}"] += 1
                except Exception as exc:
                    outcome[f"error_{type(exc).__name__}"] += 1

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for source, target in jobs:
                nursery.start_soon(one, source, target)
        latencies.sort()
        return {
            "jobs": len(jobs),
            "outcome": dict(outcome),
            "seconds": time.perf_counter() - started,
            "lookup_median_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        }

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        outcome: Counter[str] = Counter()

        async def one(source: str, target: str) -> None:
            node, client = self.clients[source]
            try:
                with trio.fail_after(20):
                    info = await client.lookup(target)
                    peer = await node.connect(info.addrs[0])
                    stream = await node.new_stream(peer, [ECHO])
                    data = f"{source} says hello to {target}".encode() * 40
                    await stream.send_all(data)
                    await stream.send_eof()
                    reply = b""
                    while chunk := await stream.receive_some():
                        reply += chunk
                outcome["ok" if reply == data else "mismatch"] += 1
            except Exception as exc:
                outcome[f"error_{type(exc).__name__}"] += 1

        async with trio.open_nursery() as nursery:
            for source, target in command["pairs"]:
                nursery.start_soon(one, source, target)
        return {"outcome": dict(outcome)}

    def status(self) -> dict[str, Any]:
        return {
            "clients": {
                name: {
                    "ssn": str(client.ssn),
                    "failovers": client.stats.failovers,
                    "last_failover_seconds": client.stats.last_failover_seconds,
                }
                for name, (_, client) in self.clients.items()
            }
        }


async def main() -> None:
    seeds_file, operator, prefix, count = sys.argv[1:5]
    seeds = verify_seed_list(
        await trio.Path(seeds_file).read_bytes(), PeerId.from_string(operator), time.time()
    )
    worker = Worker()
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        started = time.perf_counter()
        for index in range(int(count)):
            node = await stack.enter_async_context(open_node())
            node.set_stream_handler(ECHO, echo)
            name = f"{prefix}-{index}"
            client = await stack.enter_async_context(
                open_ssn_client(node.host, seeds, name=name, region=("eu", "us")[index % 2])
            )
            worker.clients[name] = (node, client)
            nursery.start_soon(worker.drain, client)
        print(
            json.dumps({"ready": list(worker.clients), "seconds": time.perf_counter() - started}),
            flush=True,
        )
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            kind = command["cmd"]
            if kind == "quit":
                break
            if kind == "exercise":
                result = await worker.exercise(command)
            elif kind == "connect":
                result = await worker.connect(command)
            elif kind == "received":
                result = {"received": dict(worker.received)}
            else:
                result = worker.status()
            print(json.dumps(result), flush=True)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
