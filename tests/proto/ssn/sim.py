"""A simulated network of membership engines: virtual time, per-link latency, kills."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable

from neonet.proto.ssn.membership import (
    Member,
    Membership,
    MembershipConfig,
    MembershipEvent,
    MemberState,
)


def member_id(index: int) -> bytes:
    return b"ssn-" + index.to_bytes(2, "big")


class Network:
    """Delivers the engines' messages after ``latency`` (+ per-node extra) seconds."""

    def __init__(
        self,
        size: int,
        *,
        seed: int = 1,
        config: MembershipConfig | None = None,
        latency: float = 0.002,
    ) -> None:
        self.config = config or MembershipConfig()
        self.seed = seed
        self.latency = latency
        self.now = 0.0
        self.engines: dict[bytes, Membership] = {}
        self.events: list[tuple[float, bytes, MembershipEvent]] = []
        self.down: set[bytes] = set()
        self.extra_delay: dict[bytes, float] = {}
        self.cut: set[frozenset[bytes]] = set()
        self.delivered = 0
        self._queue: list[tuple[float, int, bytes, bytes, bytes]] = []
        self._counter = 0
        for index in range(size):
            self.add(index)

    def add(self, index: int, *, incarnation: int = 0) -> Membership:
        identity = member_id(index)
        engine = Membership(
            identity,
            f"/ip4/127.0.0.1/tcp/{4000 + index}",
            "eu" if index % 2 == 0 else "us",
            now=self.now,
            rng=random.Random(self.seed * 1000 + index),
            config=self.config,
            incarnation=incarnation,
        )
        self.engines[identity] = engine
        self.down.discard(identity)
        return engine

    def join_all(self, seeds: Iterable[int] = (0,)) -> None:
        seed_list = [(member_id(i), self.engines[member_id(i)].local.address) for i in seeds]
        for engine in self.engines.values():
            engine.join(seed_list, self.now)
        self._collect()

    def kill(self, index: int) -> None:
        self.down.add(member_id(index))

    def _collect(self) -> None:
        for identity, engine in self.engines.items():
            for event in engine.events():
                self.events.append((self.now, identity, event))
            if identity in self.down:
                engine.data_to_send()
                continue
            for out in engine.data_to_send():
                if out.to in self.down or frozenset((identity, out.to)) in self.cut:
                    continue
                delay = self.latency + self.extra_delay.get(identity, 0.0)
                delay += self.extra_delay.get(out.to, 0.0)
                self._counter += 1
                heapq.heappush(
                    self._queue, (self.now + delay, self._counter, out.to, identity, out.data)
                )

    def run_until(self, end: float) -> None:
        self._collect()  # anything the engines queued from outside the loop (join, leave)
        while True:
            live = [e for i, e in self.engines.items() if i not in self.down]
            next_timer = min(e.next_timer() for e in live)
            next_message = self._queue[0][0] if self._queue else float("inf")
            step = min(next_timer, next_message)
            if step > end:
                self.now = end
                return
            self.now = max(self.now, step)
            if next_message <= next_timer:
                _, _, to, sender, data = heapq.heappop(self._queue)
                if to not in self.down and to in self.engines:
                    self.engines[to].receive(sender, data, self.now)
                    self.delivered += 1
            else:
                for engine in live:
                    if engine.next_timer() <= self.now:
                        engine.handle_timer(self.now)
            self._collect()

    def view(self, index: int) -> dict[bytes, tuple[MemberState, int]]:
        engine = self.engines[member_id(index)]
        return {m.member_id: (m.state, m.incarnation) for m in engine.members()}

    def states_of(self, target: int) -> set[MemberState | None]:
        """The state of ``target`` in every other running engine's view (None: unknown)."""
        found: set[MemberState | None] = set()
        for identity, engine in self.engines.items():
            if identity in self.down or identity == member_id(target):
                continue
            member: Member | None = engine.member(member_id(target))
            found.add(member.state if member is not None else None)
        return found
