"""Offline payment over a NeoNet stream on loopback (no validator reachable)."""

from __future__ import annotations

import pytest
import trio

from neonet.apps.bank.pos_service import POS_PROTOCOL, PaymentRefusedError, pay_pos, serve_pos
from neonet.node import open_node
from neonet.proto.bank.messages import PursePayload
from neonet.proto.bank.pos import MemoryPosStore, PointOfSale
from neonet.proto.bank.wallet import PurseWallet
from tests.proto.bank.world import World, identity, key_of


async def test_pay_a_pos_over_a_stream_and_get_a_receipt() -> None:
    world = World()
    alice = world.funded("alice", 500)
    purse_key = identity("stream-purse")
    certificate = world.commit(
        alice, alice.open_purse(200, PursePayload(key_of(purse_key), 100, 2, 10_000))
    )
    shop_id = identity("stream-shop")
    pos = PointOfSale(world.committee, key_of(shop_id), shop_id.sign, MemoryPosStore())
    purse = PurseWallet(certificate, purse_key.sign)
    with trio.fail_after(20):
        async with open_node() as shop_node, open_node() as payer_node:
            serve_pos(shop_node, pos, clock=lambda: 50)
            peer = await payer_node.connect(shop_node.listen_addrs[0])
            payment = purse.pay(key_of(shop_id), 60, now=49)
            receipt = await pay_pos(payer_node, peer, payment)
            assert receipt.verify() and receipt.accepted_at == 50
            # The same slot spent again with other content: refused with a proof.
            copy = PurseWallet(certificate, purse_key.sign)
            with pytest.raises(PaymentRefusedError) as refused:
                await pay_pos(payer_node, peer, copy.pay(key_of(shop_id), 70, now=49))
            assert refused.value.proof is not None
            # Garbage is refused and the POS keeps serving.
            stream = await payer_node.new_stream(peer, [POS_PROTOCOL])
            await stream.send_all(b"\x03\x01\x02\x03")
            assert b"bad request" in await stream.receive_some(1000)
            await stream.aclose()
            second = purse.pay(key_of(shop_id), 100, now=49)
            assert (await pay_pos(payer_node, peer, second)).verify()
