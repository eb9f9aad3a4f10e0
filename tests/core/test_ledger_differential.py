"""Differential tests: chains with random faults give identical verdicts on both backends."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core import backend as backend_module
from neonet.core.ledger import BlockKind, ChainVerdict, decode_block
from tests.core.ledger_chains import DEBITS, Account

PURE = backend_module.implementation("pure")
NATIVE = backend_module.implementation("native")
U64_MAX = 2**64 - 1

FAULTS = [
    "balance",
    "overdraw",
    "overflow",
    "sequence",
    "previous",
    "kind",
    "open",
    "issue",
    "rotate-amount",
    "rotate-payload",
    "signer",
    "key",
    "account",
    "flip",
    "truncate",
    "append",
]
KINDS = [
    BlockKind.RECEIVE,
    BlockKind.TRANSFER,
    BlockKind.REDEEM,
    BlockKind.OPEN_PURSE,
    BlockKind.ISSUE,
    BlockKind.ROTATE_KEY,
    BlockKind.CLAIM,
    BlockKind.REFUND,
]
# An honest block: kind, amount and a seed for the payload or the new key.
honest = st.tuples(st.sampled_from(KINDS), st.integers(0, 10**6), st.integers(0, 2**16))


def _honest(alice: Account, kind: int, amount: int, choice: int, mint: bytes | None) -> None:
    balance = 0 if alice.head is None else alice.head.balance
    if kind == BlockKind.ROTATE_KEY:
        alice.rotate(1000 + choice)
        return
    if kind == BlockKind.ISSUE and mint != alice.account:
        kind = BlockKind.RECEIVE
    if kind in DEBITS:
        amount %= balance + 1
    alice.block(kind, amount, payload=bytes(choice % 7))


def _faulty(alice: Account, other: Account, fault: str, choice: int) -> bytes:
    """A block that breaks one rule (or, for byte-level faults, maybe none)."""
    balance = 0 if alice.head is None else alice.head.balance
    sequence = 0 if alice.head is None else alice.head.sequence + 1
    kind, amount = BlockKind.RECEIVE, choice
    overrides: dict[str, object] = {}
    if fault == "balance":
        overrides["balance"] = (balance + amount + 1 + choice % 3) % (U64_MAX + 1)
    elif fault == "overdraw":
        kind, amount = BlockKind.TRANSFER, balance + 1 + choice
        overrides["balance"] = 0
    elif fault == "overflow":
        amount = min(U64_MAX, U64_MAX - balance + 1 + choice % 5)
        overrides["balance"] = choice % 5
    elif fault == "sequence":
        skipped, repeated = sequence + 1 + choice % 3, sequence - 1 if sequence else 1
        overrides["sequence"] = skipped if choice % 4 else repeated
    elif fault == "previous":
        overrides["previous"] = choice.to_bytes(32, "little")
    elif fault == "kind":
        kind, amount = (9 + choice if choice % 2 else U64_MAX - choice), 0
        overrides["balance"] = balance
    elif fault == "open":
        kind, amount = BlockKind.OPEN, 0
    elif fault == "issue":
        kind = BlockKind.ISSUE
    elif fault == "rotate-amount":
        kind, amount = BlockKind.ROTATE_KEY, 1 + choice
        overrides["payload"], overrides["balance"] = other.key, balance
    elif fault == "rotate-payload":
        kind, amount = BlockKind.ROTATE_KEY, 0
        overrides["payload"] = other.key[: choice % 32] if choice % 3 else other.key + b"\x00"
    elif fault == "signer":
        overrides["signer"] = other.signer
    elif fault == "key":
        overrides["key"] = other.key
    elif fault == "account":
        overrides["account"] = other.account
    encoded = alice.block(kind, amount, advance=False, **overrides)  # type: ignore[arg-type]
    if fault == "flip":
        position = choice % len(encoded)
        flipped = encoded[position] ^ (1 << choice % 8)
        encoded = encoded[:position] + bytes([flipped]) + encoded[position + 1 :]
    elif fault == "truncate":
        encoded = encoded[: choice % len(encoded)]
    elif fault == "append":
        encoded += bytes([choice % 256])
    return encoded


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 24).flatmap(lambda size: st.lists(honest, min_size=size, max_size=size)),
    st.one_of(
        st.none(), st.tuples(st.integers(0, 24), st.sampled_from(FAULTS), st.integers(0, 2**16))
    ),
    st.sampled_from(["own", "none", "other"]),
    st.integers(0, 24),
    st.lists(honest, max_size=3),
)
def test_backends_agree_on_chains(
    operations: list[tuple[int, int, int]],
    fault: tuple[int, str, int] | None,
    mint: str,
    split: int,
    after: list[tuple[int, int, int]],
) -> None:
    alice = Account(100)
    other = Account(101)
    mint_account = {"none": None, "own": alice.account, "other": other.account}[mint]
    fault_at = None if fault is None else min(fault[0], len(operations))
    blocks: list[bytes] = []
    for position in range(len(operations) + 1):
        if position == fault_at and fault is not None:
            blocks.append(_faulty(alice, other, fault[1], fault[2]))
            # Honest-looking blocks after the fault continue the honest head.
            for kind, amount, choice in after:
                _honest(alice, kind, amount, choice, mint_account)
                blocks.append(alice.blocks[-1])
            break
        if position == 0:
            alice.block(BlockKind.OPEN)
        else:
            _honest(alice, *operations[position - 1], mint_account)
        blocks.append(alice.blocks[-1])

    pure = PURE.verify_chain(blocks, mint_account=mint_account)
    native = NATIVE.verify_chain(blocks, mint_account=mint_account)
    assert pure == native
    assert isinstance(native, ChainVerdict)
    if fault is None:
        assert pure.ok and pure.head == alice.head
    elif fault[1] not in ("flip", "truncate", "append", "open", "issue", "previous"):
        # A rule-breaking block is refused where it is. (Byte-level faults may break
        # nothing; nor do OPEN at sequence 0, ISSUE on the mint, or zeros as `previous`
        # at sequence 0.)
        assert pure.failure is not None and pure.failure.index == fault_at

    # The same chain verified in two ranges, continuing from the first range's head.
    split = min(split, pure.valid_count)
    if split:
        first = PURE.verify_chain(blocks[:split], mint_account=mint_account)
        assert first.ok
        rest = [
            implementation.verify_chain(blocks[split:], mint_account=mint_account, start=first.head)
            for implementation in (PURE, NATIVE)
        ]
        assert rest[0] == rest[1]
        assert rest[0].head == pure.head
        assert rest[0].valid_count == pure.valid_count - split
        if pure.failure is not None:
            assert rest[0].failure is not None
            assert rest[0].failure.index == pure.failure.index - split
            assert (rest[0].failure.reason, rest[0].failure.message) == (
                pure.failure.reason,
                pure.failure.message,
            )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2))
def test_backends_agree_on_arbitrary_bytes(data: bytes, valid_before: int) -> None:
    alice = Account(102)
    alice.block(BlockKind.OPEN)
    alice.block(BlockKind.RECEIVE, 10)
    blocks = [*alice.blocks[:valid_before], data]
    assert PURE.verify_chain(blocks, mint_account=None) == NATIVE.verify_chain(
        blocks, mint_account=None
    )


@st.composite
def mutated_block(draw: st.DrawFn) -> bytes:
    alice = Account(103)
    alice.block(BlockKind.OPEN, payload=draw(st.binary(max_size=8)))
    data = bytearray(alice.blocks[0])
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(mutated_block())
def test_backends_agree_on_mutated_blocks(data: bytes) -> None:
    pure = PURE.verify_chain([data], mint_account=None)
    assert pure == NATIVE.verify_chain([data], mint_account=None)
    # decode_block refuses exactly what verify_chain refuses for its format.
    try:
        decode_block(data)
    except ValueError:
        assert pure.failure is not None
        assert pure.failure.reason in (1, 2)
    else:
        assert pure.failure is None or pure.failure.reason > 2
