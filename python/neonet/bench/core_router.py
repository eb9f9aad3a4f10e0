"""``neonet bench core``, router part: the GossipSub router's per-RPC path, native vs pure.

The gossip part times the core's calls alone; this part times what a node does with each
RPC it reads, with the core of either backend under the same Python router
(``neonet.proto.gossipsub``): decode the RPC (lazily, as the pubsub service does),
``handle_rpc``, ``drain`` and encode the RPCs it leaves per peer. No sockets, no trio.

Workload, shaped like the 20-node ``neonet bench gossip --quick`` network: a router with
8 GossipSub v1.1 peers, default scoring and StrictSign, joined to one topic (mesh D=6);
messages of 256 bytes signed by 5 authors; each message arrives from 7 of the peers (a
node there receives ~7 copies per message), the first copy new (signature check,
delivery, forward to the mesh), the other 6 duplicates. RPCs carry ``per_rpc`` messages
(1 or 4; the bench network's RPCs carry 1-4, up to 20 when backlogged). Rates are
received copies per second, in CPU time. No target applies: the router is the same
Python on both backends, and the issue's ratios are for the core's own calls (gossip
part). The row shows how much of a node's per-copy work the core is.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

from neonet.bench.core import Measurement
from neonet.core import backend
from neonet.core.gossip import PROTOCOL_MESHSUB_V11
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.proto.gossipsub import GossipRouter
from neonet.proto.gossipsub_rpc import Message, Rpc, decode_rpc, encode_rpc, sign_message

TOPIC = "neonet/bench"
PEERS = 8
COPIES = 7
AUTHORS = 5
DATA_SIZE = 256


def _identity(number: int) -> tuple[Ed25519Identity, bytes]:
    identity = Ed25519Identity.from_seed(number.to_bytes(32, "big"))
    return identity, PeerId.from_public_key(identity.public_key).to_bytes()


def _messages(count: int) -> list[Message]:
    authors = [_identity(100 + number)[0] for number in range(AUTHORS)]
    return [
        sign_message(
            authors[seqno % AUTHORS], TOPIC, seqno.to_bytes(8, "big") * (DATA_SIZE // 8), seqno
        )
        for seqno in range(1, count + 1)
    ]


def _traffic(
    peers: list[bytes], messages: list[Message], per_rpc: int
) -> list[tuple[bytes, bytes]]:
    """(sender, RPC encoding): every message from ``COPIES`` peers, ``per_rpc`` at a time."""
    traffic: list[tuple[bytes, bytes]] = []
    for copy in range(COPIES):
        for at in range(0, len(messages), per_rpc):
            rpc = Rpc(messages=messages[at : at + per_rpc])
            traffic.append((peers[copy], encode_rpc(rpc)))
    return traffic


def _router(name: backend.BackendName, peers: list[bytes]) -> GossipRouter:
    identity, local = _identity(1)
    router = GossipRouter(identity, local, seed=3, implementation=backend.implementation(name))
    for index, peer in enumerate(peers):
        router.add_peer(peer, PROTOCOL_MESHSUB_V11, index % 2 == 0, 0.0, "127.0.0.1")
        router.handle_rpc(peer, Rpc(subscriptions=[(True, TOPIC)]), 0.0)
    router.subscribe(TOPIC, 0.0)
    router.heartbeat(1.0)
    router.drain()
    return router


class _Rounds:
    """One fresh router per timed round (built before timing), fed the whole traffic."""

    def __init__(
        self, name: backend.BackendName, peers: list[bytes], traffic: list[tuple[bytes, bytes]]
    ) -> None:
        self.make: Callable[[], GossipRouter] = lambda: _router(name, peers)
        self.traffic = traffic
        self.ready = [self.make()]
        self.delivered: list[bytes] = []

    def __call__(self) -> None:
        router = self.ready.pop()
        delivered = self.delivered = []
        now = 2.0
        for peer, data in self.traffic:
            router.handle_rpc(peer, decode_rpc(data, lazy=True), now)
            out = router.drain()
            for rpc in out.send.values():
                encode_rpc(rpc)
            delivered.extend(item.msg_id for item in out.deliver)
        self.ready.append(self.make())  # the next round's router, built outside its timing


def run(quick: bool) -> list[Measurement]:
    """Router rows for RPCs of 1 and of 4 messages; ``quick`` uses fewer messages.

    Each round times pure then native back to back, in CPU time of this thread (the
    machine is shared: preemption is not counted); the ratio is taken per round and the
    median printed, with the CPU microseconds per received copy."""
    rounds = 5 if quick else 9
    count = 480 if quick else 1920
    peers = [_identity(10 + number)[1] for number in range(PEERS)]
    messages = _messages(count)
    copies = count * COPIES
    results: list[Measurement] = []
    for per_rpc in (1, 4):
        traffic = _traffic(peers, messages, per_rpc)
        names: tuple[backend.BackendName, ...] = ("pure", "native")
        runs = {name: _Rounds(name, peers, traffic) for name in names}
        for each in runs.values():  # a warm-up round; both deliver every message
            each()
        assert runs["pure"].delivered == runs["native"].delivered
        assert len(runs["pure"].delivered) == count
        gc.collect()
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, each in runs.items():
                started = time.thread_time()
                each()
                seconds[name].append(time.thread_time() - started)
        pure, native = seconds["pure"], seconds["native"]
        results.append(
            Measurement(
                case=f"GossipSub router per RPC: {per_rpc} msg/RPC, 7 copies (reference)",
                unit="copies",
                pure_per_second=copies / statistics.median(pure),
                native_per_second=copies / statistics.median(native),
                ratio=statistics.median(p / n for p, n in zip(pure, native, strict=True)),
                extra={
                    "pure_us_per_copy": statistics.median(pure) / copies * 1e6,
                    "native_us_per_copy": statistics.median(native) / copies * 1e6,
                },
            )
        )
    return results
