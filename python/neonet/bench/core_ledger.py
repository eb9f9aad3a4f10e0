"""Ledger verification, pure twin against Rust core (part of ``neonet bench core``).

The issue's figure is the first case: verifying one account's chain of 10,000 signed
blocks (decode, structure, balance, BLAKE3 hash, ZIP-215 Ed25519), target native >= 3x
pure and >= 50,000 blocks/s natively on one core. The other cases show where the time
goes: signatures by many distinct keys (no per-key coalescing in the batch), one
signature per call, one hash per call, and decoding one block as generic CBOR.
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
import time
from collections.abc import Callable

from nacl.signing import SigningKey

from neonet.bench.core import Measurement, compare
from neonet.core import backend
from neonet.core.ledger import Block, BlockKind, encode_block

CHAIN_BLOCKS = 10_000
TARGET_RATIO = 3.0
TARGET_NATIVE_BLOCKS_PER_SECOND = 50_000.0


def make_chain(count: int, seed: int = 1) -> list[bytes]:
    """A valid chain for one account: OPEN, then receives and transfers with a memo."""
    signer = SigningKey(hashlib.sha256(seed.to_bytes(8, "little")).digest())
    key = bytes(signer.verify_key)
    blocks = []
    previous, balance = bytes(32), 0
    for sequence in range(count):
        if sequence == 0:
            kind, amount = BlockKind.OPEN, 0
        elif sequence % 2:
            kind, amount = BlockKind.RECEIVE, 1_000
        else:
            kind, amount = BlockKind.TRANSFER, 400
        balance += -amount if kind == BlockKind.TRANSFER else amount
        block = Block(key, sequence, previous, kind, amount, balance, key, b"invoice 1234")
        previous = block.hash()
        signed = dataclasses.replace(block, signature=signer.sign(previous).signature)
        blocks.append(encode_block(signed))
    return blocks


def _cpu_rate(function: Callable[[], object], operations: int, rounds: int) -> float:
    """Operations per second of this thread's CPU time (median of rounds).

    The Rust call runs on the calling thread (it only releases the GIL), so thread time
    counts it; unlike wall time it does not shrink when the shared machine is busy.
    """
    rates = []
    for _ in range(rounds):
        started = time.thread_time()
        function()
        rates.append(operations / (time.thread_time() - started))
    return statistics.median(rates)


def run(quick: bool) -> list[Measurement]:
    pure = backend.implementation("pure")
    native = backend.implementation("native")
    results = []

    chain = make_chain(CHAIN_BLOCKS)
    rounds = 3 if quick else 7
    for implementation in (pure, native):  # both must accept it before it is timed
        assert implementation.verify_chain(chain, mint_account=None).valid_count == CHAIN_BLOCKS
    chain_case = compare(
        f"verify_chain, one account, {CHAIN_BLOCKS:,} blocks",
        "blocks",
        CHAIN_BLOCKS,
        lambda: pure.verify_chain(chain, mint_account=None),
        lambda: native.verify_chain(chain, mint_account=None),
        rounds=rounds,
        target_ratio=TARGET_RATIO,
    )
    native_cpu = _cpu_rate(
        lambda: native.verify_chain(chain, mint_account=None), CHAIN_BLOCKS, rounds
    )
    pure_cpu = _cpu_rate(lambda: pure.verify_chain(chain, mint_account=None), CHAIN_BLOCKS, rounds)
    results.append(
        Measurement(
            chain_case.case,
            chain_case.unit,
            chain_case.pure_per_second,
            chain_case.native_per_second,
            chain_case.ratio,
            chain_case.target_ratio,
            {
                "native blocks/s, wall clock (target >= 50,000)": chain_case.native_per_second,
                "native blocks per CPU second (one thread)": native_cpu,
                "pure blocks per CPU second (one thread)": pure_cpu,
                "ratio of CPU rates": native_cpu / pure_cpu,
            },
        )
    )

    distinct = 1_000 if quick else 4_000
    items = []
    for index in range(distinct):
        signer = SigningKey(hashlib.sha256(b"bench" + index.to_bytes(4, "little")).digest())
        message = hashlib.sha256(index.to_bytes(4, "little")).digest()
        items.append((bytes(signer.verify_key), message, signer.sign(message).signature))
    results.append(
        compare(
            f"verify_signatures, {distinct:,} distinct keys",
            "signatures",
            distinct,
            lambda: pure.verify_signatures(items),
            lambda: native.verify_signatures(items),
            rounds=3 if quick else 5,
        )
    )

    single = items[0]
    calls = 2_000 if quick else 10_000
    results.append(
        compare(
            "verify_signature, one per call",
            "signatures",
            calls,
            lambda: [pure.verify_signature(*single) for _ in range(calls)],
            lambda: [native.verify_signature(*single) for _ in range(calls)],
            rounds=3 if quick else 5,
        )
    )

    body = chain[1][1:-66]
    calls = 50_000 if quick else 200_000
    results.append(
        compare(
            "hash_block_body, one per call",
            "hashes",
            calls,
            lambda: [pure.hash_block_body(body) for _ in range(calls)],
            lambda: [native.hash_block_body(body) for _ in range(calls)],
            rounds=3 if quick else 5,
        )
    )
    results.append(
        compare(
            "cbor_decode of a signed block, one per call",
            "blocks",
            calls,
            lambda: [pure.cbor_decode(chain[1]) for _ in range(calls)],
            lambda: [native.cbor_decode(chain[1]) for _ in range(calls)],
            rounds=3 if quick else 5,
        )
    )
    return results
