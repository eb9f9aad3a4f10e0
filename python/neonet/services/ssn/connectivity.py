"""Reaching a looked-up peer: direct addresses first, then its SSN's relay, then DCUtR.

``SsnClient.connect(name)`` (``services/ssn/client.py``) looks the peer up and calls
``dial_peer`` here: every direct address of the presence record is tried in turn within
``direct_timeout`` (an address on another private network fails or times out there);
if none answers, the relayed addresses (``…/p2p/<ssn>/p2p-circuit/p2p/<peer>``, circuit
relay v2 on the peer's SSN) are dialed. Over a relayed connection the peer, which
received it, starts DCUtR (libp2p/specs relay/DCUtR.md: the receiver of the relayed
connection sends CONNECT); ``wait_upgrade`` waits until a direct connection exists or
the peer has used up its ``MAX_ATTEMPTS`` hole punches, and says which happened.
When nothing answers at all, ``wait_dialed_back`` asks the peer (a connect request in a
signal) to dial the caller's addresses and waits for that connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

import trio

from neonet.core.errors import NeoNetError
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.proto.dcutr import MAX_ATTEMPTS
from neonet.services.dcutr import DcutrService, HolePunchResult

_DIAL_ERRORS = (NeoNetError, OSError, trio.BrokenResourceError, trio.TooSlowError)

#: How the connection in use was made: a dial to a direct address, a relayed connection
#: that DCUtR made direct, the relay still, or the peer dialed us back directly when we
#: asked it to in a signal (``proto.ssn.connect_request``).
Path = Literal["direct", "hole-punch", "relayed", "reversed"]


class ConnectError(NeoNetError):
    """No address of the peer (direct or relayed) could be dialed; ``errors`` says why."""

    def __init__(self, message: str, errors: tuple[str, ...]) -> None:
        super().__init__(message + (": " + "; ".join(errors) if errors else ""))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Connected:
    """The outcome of ``SsnClient.connect``: whom, over which path, and how it got there."""

    peer: PeerId
    path: Path
    #: Direct addresses that failed before the relay was used ("address: error").
    dial_errors: tuple[str, ...] = ()
    #: The last DCUtR result for this peer after the relayed connection opened, if any.
    hole_punch: HolePunchResult | None = None
    seconds: float = 0.0
    #: ``DcutrService.recorded`` when the relayed connection opened (for ``wait_upgrade``).
    punch_mark: int = 0

    @property
    def direct(self) -> bool:
        return self.path != "relayed"


def is_relayed_addr(address: Multiaddr) -> bool:
    return "p2p-circuit" in address.protocol_names()


async def dial_peer(
    host: Host,
    peer: PeerId,
    addrs: tuple[Multiaddr, ...],
    *,
    dcutr: DcutrService | None,
    direct_timeout: float,
    relay_timeout: float,
) -> Connected:
    """Connect to ``peer`` at ``addrs`` (a presence record's): direct first, else relayed.

    Raises ``ConnectError`` when nothing answers. Safe to cancel (a dial in progress is
    abandoned; a connection already made stays up).
    """
    started = trio.current_time()
    if host.swarm.direct_connection(peer) is not None:
        return Connected(peer, "direct", seconds=0.0)
    errors: list[str] = []
    direct = [a for a in addrs if not is_relayed_addr(a)]
    relayed = [a for a in addrs if is_relayed_addr(a)]
    with trio.move_on_after(direct_timeout) as scope:
        for address in direct:
            try:
                await host.swarm.dial(address.with_peer_id(peer), peer=peer)
            except _DIAL_ERRORS as exc:
                errors.append(f"{address}: {type(exc).__name__} {exc}".strip())
                continue
            if host.swarm.direct_connection(peer) is not None:
                return Connected(peer, "direct", tuple(errors), None, _since(started))
    if scope.cancelled_caught:
        errors.append(f"direct dials timed out after {direct_timeout} s")
    mark = dcutr.recorded if dcutr is not None else 0
    if host.swarm.circuit_dialer is None and relayed:
        errors.append("no relay client runs here: relayed addresses not tried")
        relayed = []
    for address in relayed:
        try:
            with trio.fail_after(relay_timeout):
                await host.swarm.dial(address.with_peer_id(peer), peer=peer)
        except _DIAL_ERRORS as exc:
            errors.append(f"{address}: {type(exc).__name__} {exc}".strip())
            continue
        path: Path = "relayed" if host.swarm.direct_connection(peer) is None else "hole-punch"
        return Connected(peer, path, tuple(errors), None, _since(started), mark)
    raise ConnectError(f"cannot reach {peer}", tuple(errors))


async def wait_dialed_back(
    host: Host,
    peer: PeerId,
    ask: Callable[[], Awaitable[object]],
    failure: ConnectError,
    *,
    started: float,
    mark: int,
    within: float,
) -> Connected:
    """``ask`` the peer to dial us back (a connect request in a signal), then wait at most
    ``within`` seconds for its connection; raises ``failure``, extended, if none comes."""
    await ask()
    with trio.move_on_after(within):
        await host.swarm.wait_connection(peer)
    connections = host.swarm.connections_to(peer)
    if not connections:
        waited = f"asked {peer} to dial back: no connection within {within} s"
        raise ConnectError(f"cannot reach {peer}", (*failure.errors, waited))
    path: Path = "relayed" if connections[0].relayed else "reversed"
    return Connected(peer, path, failure.errors, None, _since(started), mark)


async def wait_upgrade(
    host: Host, dcutr: DcutrService | None, connected: Connected, within: float
) -> Connected:
    """Wait (at most ``within`` s) until DCUtR made the connection to the peer direct, or
    the peer's hole punches are used up; the returned ``Connected`` says which path won."""
    if connected.direct:
        return connected
    peer = connected.peer
    started = trio.current_time()

    def outcome() -> tuple[bool, HolePunchResult | None]:
        since = dcutr.results_since(connected.punch_mark) if dcutr is not None else []
        mine = [r for r in since if r.peer == peer]
        done = host.swarm.direct_connection(peer) is not None or any(r.success for r in mine)
        failures = sum(1 for r in mine if not r.success)
        # When the peer (B) starts the punch, we answer each of its attempts and record
        # each; B's giving up is recorded on its side only, so count our answers. When we
        # are B (the peer dialed our relayed address back), our one result ends the series.
        settled = done or failures >= MAX_ATTEMPTS or any(r.initiator for r in mine)
        return settled, (mine[-1] if mine else None)

    if dcutr is not None:
        with trio.move_on_after(within):
            while not outcome()[0]:
                await _next_change(host, dcutr, peer)
    last = outcome()[1]
    path: Path = "hole-punch" if host.swarm.direct_connection(peer) is not None else "relayed"
    return replace(
        connected,
        path=path,
        hole_punch=last,
        seconds=connected.seconds + (trio.current_time() - started),
    )


async def _next_change(host: Host, dcutr: DcutrService, peer: PeerId) -> None:
    """Return at the next DCUtR result or the next direct connection to ``peer``."""
    async with trio.open_nursery() as nursery:

        async def result_arrived() -> None:
            await dcutr.wait_next_result()
            nursery.cancel_scope.cancel()

        nursery.start_soon(result_arrived)
        await host.swarm.wait_connection(peer, direct=True)
        nursery.cancel_scope.cancel()


def _since(started: float) -> float:
    return trio.current_time() - started
