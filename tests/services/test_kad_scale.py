"""200 NeoNet DHT nodes in 10 processes on loopback TCP; then 30% of them are killed.

Before the kill every lookup must succeed (closest peers, values, names); after
SIGKILLing 3 of the 10 processes (60 nodes, no goodbye) at least 99% of the values
stored before must still be found and every name must still resolve. The figures are
printed (``-s``); on the shared 2-core machine the test takes 75-145 s, most of it the
first contacts between nodes (TCP + Noise + yamux + identify each).
"""

from __future__ import annotations

import random
import time

import pytest
import trio

from neonet.bench.dht import closest_lookups, get_values, open_cluster, put_values

pytestmark = pytest.mark.scale


async def test_200_nodes_survive_losing_30_percent() -> None:
    rng = random.Random(4)
    started = time.monotonic()
    with trio.fail_after(240):
        async with open_cluster(200, per_process=20) as cluster:
            await cluster.bootstrap(rng)
            setup = time.monotonic() - started

            closest = await closest_lookups(cluster, rng, 100)
            closest.pop("items")  # the (origin, key) pairs, not a figure
            assert closest["success_percent"] == 100.0
            # Every lookup must answer; exactness (all 20 of the true closest) is ~100% on a
            # quiet machine, but under heavy load a request timing out drops a live peer
            # from that lookup (88% seen once at load 10+), so only a collapse fails here.
            assert closest["exact_percent"] >= 75.0
            pairs = await put_values(cluster, rng, 100)
            before = await get_values(cluster, rng, pairs)
            assert before["success_percent"] == 100.0

            names = [f"user-{index}" for index in range(20)]
            owners = rng.sample(range(200), len(names))
            claims = await cluster.run("claim", list(zip(owners, names, strict=True)))
            assert all(claim["ok"] for claim in claims)
            resolved = await cluster.run("resolve", [(rng.randrange(200), name) for name in names])
            assert [r["peer_id"] for r in resolved] == [c["peer_id"] for c in claims]

            cluster.kill(rng.sample(range(10), 3))
            assert len(cluster.live_nodes()) == 140
            after = await get_values(cluster, rng, pairs)
            live = cluster.live_nodes()
            resolved = await cluster.run("resolve", [(rng.choice(live), name) for name in names])
            total = time.monotonic() - started
            print(
                f"\n200 nodes: setup {setup:.1f} s, total {total:.1f} s\n"
                f"closest: {closest}\nget before: {before}\nget after killing 60: {after}"
            )
            assert after["success_percent"] >= 99.0
            assert [r.get("peer_id") for r in resolved] == [c["peer_id"] for c in claims]
