"""Three NeoNet nodes form a Kademlia DHT; one claims a name, another resolves it."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

import neonet
from neonet.proto.kad_records import InvalidRecordError
from neonet.services.kad import open_kad
from neonet.services.names import claim_name, resolve_name


async def main() -> None:
    async with AsyncExitStack() as stack:
        dhts = []
        for _ in range(3):
            node = await stack.enter_async_context(neonet.open_node())
            # Each node joins through the first one (which joins through nobody).
            bootstrap = [dhts[0].host.listen_addrs[0]] if dhts else []
            dhts.append(await stack.enter_async_context(open_kad(node, bootstrap=bootstrap)))

        alice = dhts[1]
        record, stored = await claim_name(alice, "Alice", alice.host.identity)
        print(f"claimed {record.name!r} (seq {record.seq}), stored on {stored} peers")

        found = await resolve_name(dhts[2], "ALICE")  # names are case-folded
        assert found is not None
        print(
            "alice is", found.peer_id, "- same as the claimer:", found.peer_id == alice.host.peer_id
        )

        key = b"/neonet-blob/" + b"0" * 64  # a key whose value does not hash to it
        try:
            await dhts[2].put_value(key, b"not the right content")
        except InvalidRecordError as refused:
            print("refused:", refused)


trio.run(main)
