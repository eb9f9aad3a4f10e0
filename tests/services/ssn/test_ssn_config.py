"""``SsnConfig.max_routed_pending``: the bound of the SSN's routed SIGNALs awaiting an
answer reaches its ``SignalRouter``, and a bound under 1 is refused."""

from __future__ import annotations

import pytest
import trio

from neonet.proto.ssn import client_protocol as cp
from neonet.services.ssn.server import SsnConfig
from tests.services.ssn.test_ssn import federation

TO = b"\x00\x04" + b"\x01" * 4
SENDER = b"\x00\x04" + b"\x02" * 4


def test_a_bound_under_one_is_refused() -> None:
    assert SsnConfig().max_routed_pending == 16_384
    with pytest.raises(ValueError, match="max_routed_pending"):
        SsnConfig(max_routed_pending=0)


async def test_the_bound_reaches_the_signal_router() -> None:
    with trio.fail_after(40):
        async with federation(["eu"], max_routed_pending=2) as (_, servers, _nodes):
            router = servers[0]._router
            router.set_route(TO, 1)
            router.open_link(1, 99)
            read = [cp.encode_message(cp.Signal(rid, TO, b"p")) for rid in range(4)]
            _, rest, taken = router.route(1, SENDER, read, 10, trio.current_time())
            assert (taken, rest) == (2, read[2:])
