"""One process of a multi-process DHT network: N NeoNet DHT server nodes on loopback.

    python -m neonet.bench.dht_nodes --count N [--seed S]

Starts ``N`` nodes (real TCP on 127.0.0.1, each its own host and DHT), prints one
line ``{"nodes": [{"peer_id": ..., "addr": ...}, ...]}`` and then answers one JSON
command per stdin line with one JSON line (``neonet.bench.dht`` drives it):

    {"cmd": "bootstrap", "peers": [[i, [MA, ...]], ...]}  node i joins through MAs
    {"cmd": "self_lookup"}                          every node looks itself up
    {"cmd": "closest", "items": [[i, KEY_HEX], ...]}  FIND_NODE lookups
    {"cmd": "put", "items": [[i, KEY_HEX, VALUE_HEX], ...]}
    {"cmd": "get", "items": [[i, KEY_HEX, USE_LOCAL], ...]}  (USE_LOCAL optional, true)
    {"cmd": "claim", "items": [[i, NAME], ...]}     node i claims NAME with its key
    {"cmd": "resolve", "items": [[i, NAME], ...]}
    {"cmd": "stats"}

Lookup answers carry the latency in milliseconds (timed here), hops and peers queried.
Items run concurrently, at most ``CONCURRENCY`` at a time per process. The process
ends at EOF on stdin.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import trio

from neonet.node import Node, open_node
from neonet.services.kad import KadConfig, KadDHT, open_kad
from neonet.services.names import claim_name, resolve_name

CONCURRENCY = 32


async def _each(
    items: list[Any], work: Callable[[Any], Awaitable[dict[str, Any]]]
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in items]
    limit = trio.Semaphore(CONCURRENCY)

    async def one(index: int, item: Any) -> None:
        async with limit:
            started = trio.current_time()
            try:
                result = await work(item)
            except Exception as exc:  # reported to the driver, which counts failures
                result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            result["ms"] = (trio.current_time() - started) * 1000
            results[index] = result

    async with trio.open_nursery() as nursery:
        for index, item in enumerate(items):
            nursery.start_soon(one, index, item)
    return results


class Worker:
    def __init__(self, nodes: list[Node], dhts: list[KadDHT]) -> None:
        self.nodes = nodes
        self.dhts = dhts

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        cmd = command["cmd"]
        dhts = self.dhts
        if cmd == "bootstrap":

            async def join(item: list[Any]) -> dict[str, Any]:
                dht = dhts[item[0]]
                for address in item[1]:
                    await dht.add_peer(address)
                return {"ok": True, "table": len(dht.table)}

            return {"results": await _each(command["peers"], join)}
        if cmd == "self_lookup":

            async def lookup_self(index: int) -> dict[str, Any]:
                await dhts[index].find_closest(dhts[index].local_id)
                return {"ok": True, "table": len(dhts[index].table)}

            return {"results": await _each(list(range(len(dhts))), lookup_self)}
        if cmd == "closest":

            async def closest(item: list[Any]) -> dict[str, Any]:
                result = await dhts[item[0]].find_closest(bytes.fromhex(item[1]))
                peers = [p.to_bytes().hex() for p in result.peers]
                return {"ok": True, "peers": peers, "hops": result.hops, "queried": result.queried}

            return {"results": await _each(command["items"], closest)}
        if cmd == "put":

            async def put(item: list[Any]) -> dict[str, Any]:
                key, value = bytes.fromhex(item[1]), bytes.fromhex(item[2])
                stored = await dhts[item[0]].put_value(key, value, remember=False)
                return {"ok": stored > 0, "stored": stored}

            return {"results": await _each(command["items"], put)}
        if cmd == "get":

            async def get(item: list[Any]) -> dict[str, Any]:
                use_local = len(item) < 3 or bool(item[2])
                key = bytes.fromhex(item[1])
                result = await dhts[item[0]].search_value(key, use_local=use_local)
                value = result.value.hex() if result.value is not None else None
                return {
                    "ok": value is not None,
                    "value": value,
                    "hops": result.hops,
                    "queried": result.queried,
                }

            return {"results": await _each(command["items"], get)}
        if cmd == "claim":

            async def claim(item: list[Any]) -> dict[str, Any]:
                node = self.nodes[item[0]]
                record, stored = await claim_name(dhts[item[0]], item[1], node.host.identity)
                return {"ok": stored > 0, "peer_id": str(record.peer_id)}

            return {"results": await _each(command["items"], claim)}
        if cmd == "resolve":

            async def resolve(item: list[Any]) -> dict[str, Any]:
                record = await resolve_name(dhts[item[0]], item[1])
                return {
                    "ok": record is not None,
                    "peer_id": str(record.peer_id) if record else None,
                }

            return {"results": await _each(command["items"], resolve)}
        if cmd == "stats":
            return {
                "tables": [len(d.table) for d in dhts],
                "connections": sum(n.host.swarm.connection_count() for n in self.nodes),
            }
        raise ValueError(f"unknown command {cmd!r}")


async def main(count: int) -> None:
    config = KadConfig(request_timeout=5.0, maintenance_interval=3600.0)
    async with AsyncExitStack() as stack:
        nodes: list[Node] = []
        dhts: list[KadDHT] = []
        for _ in range(count):
            node = await stack.enter_async_context(open_node())
            dhts.append(await stack.enter_async_context(open_kad(node, config=config)))
            nodes.append(node)
        info = [{"peer_id": str(n.peer_id), "addr": str(n.listen_addrs[0])} for n in nodes]
        print(json.dumps({"nodes": info}), flush=True)
        worker = Worker(nodes, dhts)
        stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
        buffer = b""
        while True:
            chunk = await stdin.receive_some(1 << 16)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    reply = {"ok": True, **await worker.handle(json.loads(line))}
                except Exception as exc:
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20)
    trio.run(main, parser.parse_args().count)
