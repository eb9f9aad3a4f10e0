"""A load-generator process for ``neonet bench ssn``: hold many light SSN clients.

``python -m neonet.bench.ssn_hold SEEDS_FILE OPERATOR COUNT PREFIX [CONCURRENCY]``
registers ``COUNT`` light clients (a swarm and an ``SsnClient`` each, no listener, names
``PREFIX-<i>``) with the SSNs of the signed seed list, prints one JSON line (clients held,
failures, seconds), and holds them, each with the client's default keep-alive, until its
standard input closes. One Python process cannot drive 18,000 clients on a shared 2-core
machine (the generator, not the SSN, became the limit at ~12,200): the bench starts
several of these, each under the per-process open-files limit.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import trio

from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.proto.ssn.seeds import SeedList, verify_seed_list
from neonet.services.ssn.client import SsnClient, SsnClientConfig


async def light_client(nursery: trio.Nursery, seeds: SeedList, name: str | None) -> SsnClient:
    """A client with a bare host (no listener, no identify): what an SSN must hold."""
    host = Host(Ed25519Identity.generate())
    await nursery.start(host.swarm.serve)
    client = SsnClient(host, seeds, name=name, region=None, config=SsnClientConfig())
    await nursery.start(client.run)
    return client


async def hold(seeds: SeedList, count: int, prefix: str, concurrency: int) -> None:
    held = 0
    failures: list[str] = []
    limiter = trio.Semaphore(concurrency)
    async with trio.open_nursery() as nursery:

        async def add(index: int) -> None:
            nonlocal held
            async with limiter:
                try:
                    await light_client(nursery, seeds, f"{prefix}-{index}")
                except Exception as exc:  # (or a group of one): counted, reported
                    failures.append(repr(exc)[:300])
                    return
                held += 1

        started = time.perf_counter()
        async with trio.open_nursery() as adders:
            for index in range(count):
                adders.start_soon(add, index)
        report = {
            "held": held,
            "failures": len(failures),
            "failure_sample": failures[:3],
            "seconds": time.perf_counter() - started,
        }
        print(json.dumps(report), flush=True)
        # Hold until the bench closes our standard input.
        await trio.to_thread.run_sync(sys.stdin.read)
        nursery.cancel_scope.cancel()


def main(argv: list[str]) -> None:
    seeds_file, operator, count, prefix = argv[:4]
    concurrency = int(argv[4]) if len(argv) > 4 else 32
    seeds = verify_seed_list(
        Path(seeds_file).read_bytes(), PeerId.from_string(operator), time.time()
    )
    trio.run(hold, seeds, int(count), prefix, concurrency)


if __name__ == "__main__":
    main(sys.argv[1:])
