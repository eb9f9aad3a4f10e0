"""An in-memory network of GossipSub routers for the engine tests (no I/O, manual clock).

Every RPC goes through the real codec (encode, frame, decode) on its way between routers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from neonet.core.backend import Implementation
from neonet.core.gossip import PROTOCOL_MESHSUB_V12, SplitMix64
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.proto.gossipsub import (
    GossipRouter,
    PendingValidation,
    RouterConfig,
    ValidationResult,
)
from neonet.proto.gossipsub_rpc import Rpc, decode_rpc, encode_rpc

Validator = Callable[[int, PendingValidation], ValidationResult]
# (sender index, receiver index, rpc) -> the RPC to deliver, or None to drop it
LinkFilter = Callable[[int, int, Rpc], Rpc | None]


@dataclass
class Node:
    index: int
    identity: Ed25519Identity
    peer: bytes
    router: GossipRouter
    received: list[tuple[bytes, bytes]] = field(default_factory=list)  # (msg ID, data)


class GossipNetwork:
    """Routers indexed 0..n-1, links added with ``connect``; ``pump`` runs to quiescence."""

    def __init__(
        self,
        backend: Implementation,
        count: int,
        *,
        config: RouterConfig | None = None,
        configs: dict[int, RouterConfig] | None = None,
    ) -> None:
        self.now = 0.0
        self.nodes: list[Node] = []
        self.by_peer: dict[bytes, int] = {}
        self.validator: Validator | None = None
        self.link_filter: LinkFilter | None = None
        self.rpcs_delivered = 0
        self.px_learned: dict[int, list[bytes]] = defaultdict(list)
        for index in range(count):
            identity = Ed25519Identity.from_seed(index.to_bytes(32, "big"))
            peer = PeerId.from_public_key(identity.public_key).to_bytes()
            node_config = (configs or {}).get(index, config)
            router = GossipRouter(
                identity, peer, node_config, seed=index + 1, implementation=backend
            )
            self.nodes.append(Node(index, identity, peer, router))
            self.by_peer[peer] = index

    def connect(self, a: int, b: int, protocol: str = PROTOCOL_MESHSUB_V12) -> None:
        """``a`` dialed ``b``; both speak ``protocol``."""
        first, second = self.nodes[a], self.nodes[b]
        first.router.add_peer(second.peer, protocol, True, self.now)
        second.router.add_peer(first.peer, protocol, False, self.now)

    def disconnect(self, a: int, b: int) -> None:
        self.nodes[a].router.remove_peer(self.nodes[b].peer, self.now)
        self.nodes[b].router.remove_peer(self.nodes[a].peer, self.now)

    def connect_random(self, degree: int, seed: int, protocol: str = PROTOCOL_MESHSUB_V12) -> None:
        """A ring (so the graph is connected) plus random links up to about ``degree`` each."""
        rng = SplitMix64(seed)
        count = len(self.nodes)
        links: set[tuple[int, int]] = set()
        for index in range(count):
            links.add((index, (index + 1) % count))
        for index in range(count):
            others = [other for other in range(count) if other != index]
            for other in rng.sample(others, degree // 2):
                if (other, index) not in links:
                    links.add((index, other))
        for a, b in sorted(links):
            self.connect(a, b, protocol)

    def pump(self, max_rounds: int = 1000) -> None:
        """Move RPCs and validations, one hop per round, until nothing is left to do.

        A round drains every router, delivers the RPCs, and only then resolves the
        validations drained in that round: validation takes time, so control messages
        sent on receipt (IDONTWANT) reach peers before the forwards that follow it.
        """
        for _ in range(max_rounds):
            sends: list[tuple[int, int, Rpc]] = []
            validations: list[tuple[int, PendingValidation]] = []
            for node in self.nodes:
                out = node.router.drain()
                validations.extend((node.index, pending) for pending in out.validate)
                for delivered in out.deliver:
                    node.received.append((delivered.msg_id, delivered.message.data))
                self.px_learned[node.index].extend(out.px)
                for peer, rpc in out.send.items():
                    sends.append((node.index, self.by_peer[peer], rpc))
            if not sends and not validations:
                return
            for source, target, rpc in sends:
                if self.link_filter is not None:
                    filtered = self.link_filter(source, target, rpc)
                    if filtered is None:
                        continue
                    rpc = filtered
                self.rpcs_delivered += 1
                decoded = decode_rpc(encode_rpc(rpc), lazy=True)  # as the service decodes
                self.nodes[target].router.handle_rpc(self.nodes[source].peer, decoded, self.now)
            for index, pending in validations:
                verdict = (
                    ValidationResult.ACCEPT
                    if self.validator is None
                    else self.validator(index, pending)
                )
                self.nodes[index].router.validation_done(pending, verdict, self.now)
        raise AssertionError("the network did not settle")

    def heartbeat(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            self.now += 1.0
            for node in self.nodes:
                node.router.heartbeat(self.now)
            self.pump()

    def subscribe_all(self, topic: str, nodes: list[int] | None = None) -> None:
        for index in range(len(self.nodes)) if nodes is None else nodes:
            self.nodes[index].router.subscribe(topic, self.now)
        self.pump()

    def publish(self, index: int, topic: str, data: bytes) -> bytes:
        router = self.nodes[index].router
        msg_id, message = router.make_message(topic, data)
        router.publish(msg_id, message, self.now)
        self.pump()
        return msg_id

    def receivers(self, msg_id: bytes) -> list[int]:
        return [n.index for n in self.nodes if any(m == msg_id for m, _ in n.received)]

    def duplicates(self) -> int:
        return sum(node.router.stats.duplicates_received for node in self.nodes)
