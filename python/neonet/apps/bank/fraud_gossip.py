"""Fraud proofs over GossipSub (docs/bank.md, "Fraud proofs"; ARCHITECTURE.md, "NeoBankof").

Every node that finds a double spend publishes the proof on ``FRAUD_PROOF_TOPIC``; every
node checks each proof before it is delivered or forwarded (a topic validator running
``check_fraud_proof`` against the committee), so only proofs that convict an account
travel, and a peer that sends a false one is penalised by the router's scoring like any
invalid message. ``serve_fraud_gossip`` hands each valid proof to a callback, for
example ``Validator.handle_fraud_proof`` (the account is then frozen) or a wallet's
ledger view.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from neonet.core.errors import DecodeError
from neonet.proto.bank.messages import Committee, FraudProof, check_fraud_proof
from neonet.services.pubsub import Pubsub, PubsubMessage, ValidationResult

FRAUD_PROOF_TOPIC = "/neonet/bank/fraud-proofs/1"
MAX_PROOF_SIZE = 16 * 1024

logger = logging.getLogger("neonet.bank.fraud")


def _convicted(message: PubsubMessage, committee: Committee) -> bytes | None:
    if len(message.data) > MAX_PROOF_SIZE:
        return None
    try:
        proof = FraudProof.decode(message.data)
    except DecodeError:
        return None
    return check_fraud_proof(proof, committee)


async def serve_fraud_gossip(
    pubsub: Pubsub,
    committee: Committee,
    on_proof: Callable[[FraudProof, bytes], object],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Validate the topic's messages and call ``on_proof(proof, account)`` for each valid
    proof received (from others or ourselves). Runs until cancelled."""

    def validate(message: PubsubMessage) -> ValidationResult:
        if _convicted(message, committee) is None:
            return ValidationResult.REJECT
        return ValidationResult.ACCEPT

    pubsub.set_validator(FRAUD_PROOF_TOPIC, validate)
    try:
        async with pubsub.subscribe(FRAUD_PROOF_TOPIC) as subscription:
            task_status.started()
            async for message in subscription:
                proof = FraudProof.decode(message.data)  # validated above
                account = check_fraud_proof(proof, committee)
                if account is not None:
                    on_proof(proof, account)
    finally:
        pubsub.set_validator(FRAUD_PROOF_TOPIC, None)


async def publish_fraud_proof(pubsub: Pubsub, proof: FraudProof) -> bytes:
    """Publish a proof (our own validator checks it first); the message ID."""
    return await pubsub.publish(FRAUD_PROOF_TOPIC, proof.encode())
