"""A client stream of the SSN reset right after it opened: the SSN's stream table
(``SsnServer._streams``, one entry per client stream) keeps nothing of it, even when the
CHALLENGE cannot be sent any more (review of session 6, should-fix 2)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

import neonet
from tests.services.ssn.test_ssn import federation

HELD = "/neonet-test/held/1.0.0"


async def test_a_stream_reset_before_its_challenge_leaves_no_entry() -> None:
    with trio.fail_after(40):
        async with federation(["eu"]) as (_, servers, nodes), AsyncExitStack() as stack:
            ssn, ssn_node = servers[0], nodes[0]
            done = trio.Event()
            seen: list[int] = []

            async def held(stream: neonet.Stream) -> None:
                # The server side of a stream the client resets at once: wait for the
                # reset, then give it to the SSN's client handler (its CHALLENGE fails).
                try:
                    while await stream.receive_some():
                        pass
                except trio.BrokenResourceError:
                    pass
                seen.append(len(ssn._streams))
                try:
                    await ssn._handle_client(stream)  # type: ignore[arg-type]
                finally:
                    seen.append(len(ssn._streams))
                    done.set()

            ssn_node.set_stream_handler(HELD, held)
            node = await stack.enter_async_context(neonet.open_node())
            stream = await node.new_stream(ssn.host.listen_addrs[0], [HELD])
            stream.reset()  # type: ignore[attr-defined]
            await done.wait()
            assert seen == [0, 0]
            assert ssn._streams == {}
