"""The SSN client's ways to a peer (issue 6, "Relays"), a mixin of ``client.SsnClient``:
``connect`` (look up, dial direct, else through the peer's SSN relay, then wait for
DCUtR; else ask the peer in a signal to dial us back, ``proto.ssn.connect_request``),
the answer to such requests (``_on_connect_request``: dial back, at most
``MAX_DIALS_BACK`` at once), and ``keep_relay_on_ssn``: a circuit relay v2 reservation
held on the SSN the client is registered with, moved on fail-over, with a new
registration whenever the relayed address changes. See ``client``'s module docstring.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from neonet.core.errors import NeoNetError, RemoteProtocolError
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.proto.ssn import client_protocol as cp
from neonet.proto.ssn.connect_request import (
    ConnectRequest,
    decode_connect_request,
    encode_connect_request,
)
from neonet.services.dcutr import DcutrService
from neonet.services.relay import RelayClient
from neonet.services.ssn.config import ClientStatistics, PeerInfo, SsnClientConfig
from neonet.services.ssn.connectivity import (
    Connected,
    ConnectError,
    dial_peer,
    wait_dialed_back,
    wait_upgrade,
)

logger = logging.getLogger("neonet.ssn.client")
# Dials back at once for peers' connect requests; more requests meanwhile are dropped.
MAX_DIALS_BACK = 4


class ClientConnect:
    """Connecting to peers and the relay reservation of ``SsnClient`` (a mixin: the
    client owns the state below)."""

    host: Host
    config: SsnClientConfig
    stats: ClientStatistics
    dcutr: DcutrService | None
    ssn: PeerId | None
    ssn_addrs: list[Multiaddr]
    _nursery: trio.Nursery | None
    _dials_back: int
    _changed: trio.Event

    if TYPE_CHECKING:  # defined by SsnClient

        async def lookup(self, query: str | PeerId) -> PeerInfo: ...

        async def send_signal(self, peer: PeerId, payload: bytes) -> cp.SignalStatus: ...

        def _advertised_addrs(self) -> list[Multiaddr]: ...

        async def refresh(self) -> None: ...

    async def connect(
        self, query: str | PeerId, *, upgrade_timeout: float | None = None
    ) -> Connected:
        """Look ``query`` (a name or peer ID) up and connect to it: its direct addresses
        first, else through its SSN's relay, where DCUtR then tries to make the connection
        direct; waits for that at most ``upgrade_timeout`` (``config.upgrade_timeout``; 0
        returns at once, relayed, and ``wait_upgrade`` can follow). The result says whether
        the connection ended direct or relayed. When no address answers, the peer is asked
        in a signal to dial us back (``proto.ssn.connect_request``; path ``reversed``, or
        ``relayed`` if it came through our relay). Raises ``SsnRequestError`` (lookup, or
        the signal) or ``ConnectError`` (nothing answered, and no connection came back).
        Safe to cancel.
        """
        started = trio.current_time()
        info = await self.lookup(query)
        try:
            connected = await dial_peer(
                self.host,
                info.peer_id,
                info.addrs,
                dcutr=self.dcutr,
                direct_timeout=self.config.direct_timeout,
                relay_timeout=self.config.relay_timeout,
            )
        except ConnectError as failure:
            connected = await self._ask_to_dial_back(info.peer_id, failure, started)
        limit = self.config.upgrade_timeout if upgrade_timeout is None else upgrade_timeout
        if connected.path != "relayed" or limit <= 0:
            return connected
        return await wait_upgrade(self.host, self.dcutr, connected, limit)

    async def _ask_to_dial_back(
        self, peer: PeerId, failure: ConnectError, started: float
    ) -> Connected:
        """Nothing of ``peer`` answered: signal it our addresses and wait (at most
        ``reverse_timeout``) for its connection; ``failure`` again if none comes."""
        own = self._advertised_addrs()
        if not own:
            raise failure
        request = encode_connect_request(ConnectRequest(tuple(own)))
        return await wait_dialed_back(
            self.host,
            peer,
            lambda: self.send_signal(peer, request),
            failure,
            started=started,
            mark=self.dcutr.recorded if self.dcutr is not None else 0,
            within=self.config.reverse_timeout,
        )

    def _on_connect_request(self, sender: PeerId, payload: bytes) -> None:
        try:
            request = decode_connect_request(payload)
        except RemoteProtocolError as exc:
            logger.info("bad connect request from %s: %s", sender, exc)
            self.stats.dropped_connect_requests += 1
            return
        if (
            not self.config.accept_connect_requests
            or self._nursery is None
            or self._dials_back >= MAX_DIALS_BACK
        ):
            self.stats.dropped_connect_requests += 1
            return
        self.stats.connect_requests += 1
        self._dials_back += 1
        self._nursery.start_soon(self._dial_back, sender, request.addrs)

    async def _dial_back(self, peer: PeerId, addrs: tuple[Multiaddr, ...]) -> None:
        try:
            # Every address is dialed as /p2p/<peer>: Noise proves it is the peer that asked.
            await dial_peer(
                self.host,
                peer,
                addrs,
                dcutr=self.dcutr,
                direct_timeout=self.config.direct_timeout,
                relay_timeout=self.config.relay_timeout,
            )
        except ConnectError as exc:
            logger.info("could not dial %s back: %s", peer, exc)
        finally:
            self._dials_back -= 1

    async def wait_upgrade(self, connected: Connected, within: float | None = None) -> Connected:
        """After ``connect(..., upgrade_timeout=0)``: wait for DCUtR's outcome, at most
        ``within`` seconds (``config.upgrade_timeout``)."""
        limit = self.config.upgrade_timeout if within is None else within
        return await wait_upgrade(self.host, self.dcutr, connected, limit)

    async def keep_relay_on_ssn(
        self, relay: RelayClient, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Hold a relay reservation on the SSN we are registered with, move it along on
        fail-over, and register again whenever our relayed address changes. Started (after
        the first registration) once the first reservation attempt is over and, if it
        succeeded, the relayed address is registered."""
        started = False
        async with trio.open_nursery() as nursery:
            while True:
                ssn = self.ssn
                if ssn is None or not self.ssn_addrs:
                    await self._changed.wait()
                    continue
                async with trio.open_nursery() as holder:
                    await holder.start(relay.keep_reservation, self.ssn_addrs[0])
                    if not started:
                        published = set(relay.circuit_addrs())
                        if published:
                            await self._publish_quietly()
                        nursery.start_soon(self._republish, relay, published)
                        started = True
                        task_status.started()
                    while self.ssn == ssn:
                        await self._changed.wait()
                    holder.cancel_scope.cancel()
                relay.drop(ssn)

    async def _republish(self, relay: RelayClient, published: set[Multiaddr]) -> None:
        # Compare with what was last published rather than count wake-ups: a change that
        # lands while a registration is in flight must not be lost.
        while True:
            current = set(relay.circuit_addrs())
            if current == published:
                await relay.wait_changed()
                continue
            published = current
            await self._publish_quietly()

    async def _publish_quietly(self) -> None:
        try:
            await self.refresh()
        except (NeoNetError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            # The supervisor registers elsewhere (with the current addresses) if the SSN
            # is gone; nothing else to do here.
            logger.info("could not publish the new relayed address: %s", exc)
