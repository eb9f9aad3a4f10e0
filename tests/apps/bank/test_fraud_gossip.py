"""Fraud proofs travel over GossipSub and freeze the account at every node; false ones do not."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio

from neonet.apps.bank.fraud_gossip import (
    FRAUD_PROOF_TOPIC,
    publish_fraud_proof,
    serve_fraud_gossip,
)
from neonet.core.errors import LocalProtocolError
from neonet.node import open_node
from neonet.proto.bank.messages import FraudProof
from neonet.proto.bank.state import BankLedger
from neonet.proto.bank.wallet import MemoryWalletStore, Wallet
from neonet.services.pubsub import open_pubsub
from tests.proto.bank.world import World, identity


def _proofs(world: World) -> tuple[FraudProof, FraudProof]:
    """A valid proof against the mint, and one of two blocks of different slots."""
    mint = world.mint
    world.commit(mint, mint.open())
    world.commit(mint, mint.issue(10))
    twin = Wallet(mint.account, mint.key, world.mint_id.sign, MemoryWalletStore())
    twin.synced(list(mint.history))
    a = mint.transfer(identity("x").public_key.data, 10)
    b = twin.transfer(identity("y").public_key.data, 9)
    previous = world.observer.certificate_at(mint.account, 1)
    valid = FraudProof.of_blocks(a, b, previous)
    false = FraudProof.of_blocks(a, mint.history[1].block, previous)
    return valid, false


async def test_proofs_are_gossiped_checked_and_freeze_everywhere() -> None:
    world = World()
    valid, false = _proofs(world)
    async with AsyncExitStack() as stack:
        members = []
        for _ in range(3):
            node = await stack.enter_async_context(open_node())
            pubsub = await stack.enter_async_context(open_pubsub(node))
            members.append((node, pubsub))
        for index in (1, 2):
            await members[index][0].connect(members[index - 1][0].listen_addrs[0])
        ledgers = [BankLedger(world.committee, world.mint_account) for _ in members]
        frozen = trio.Event()
        nursery = await stack.enter_async_context(trio.open_nursery())
        for (_, pubsub), ledger in zip(members, ledgers, strict=True):

            def on_proof(proof: FraudProof, account: bytes, ledger: BankLedger = ledger) -> None:
                ledger.apply_fraud_proof(proof)
                if all(world.mint_account in each.frozen for each in ledgers):
                    frozen.set()

            await nursery.start(serve_fraud_gossip, pubsub, world.committee, on_proof)
        with trio.fail_after(15):
            # The mesh forms at the heartbeats (1 s): wait for the chain 0-1-2 to be meshed.
            for _, pubsub in members:
                await pubsub.wait_until(lambda p=pubsub: len(p.mesh_peers(FRAUD_PROOF_TOPIC)) >= 1)
            # A false proof is refused by the publisher's own validator and goes nowhere.
            with pytest.raises(LocalProtocolError):
                await publish_fraud_proof(members[0][1], false)
            await publish_fraud_proof(members[0][1], valid)
            await frozen.wait()
        assert all(world.mint_account in ledger.frozen for ledger in ledgers)
        nursery.cancel_scope.cancel()
