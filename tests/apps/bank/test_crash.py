"""Scenario: a wallet killed with SIGKILL during sends and restarted (docs/bank.md, "Wallet").

The child (``crash_wallet``) signs, persists, gathers votes and certifies in a loop with
SQLite stores; we kill it at arbitrary points three times and restart it. Then: the
wallet never signed two blocks for one sequence, no validator voted for a block the
wallet does not hold, and after a final restart every signed block is certified in the
wallet's chain (no lost block), which verifies end to end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from neonet.core import backend
from tests.apps.bank.crash_wallet import open_world, step
from tests.proto.bank.world import identity, key_of

ROOT = Path(__file__).resolve().parents[3]


def _run_and_kill(directory: Path, after: int) -> list[str]:
    """Start the child, read ``after`` lines of output, then SIGKILL it mid-loop."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.bank.crash_wallet", str(directory)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'python'}{os.pathsep}{ROOT}"},
        text=True,
    )
    lines = []
    try:
        assert child.stdout is not None
        while len(lines) < after:
            line = child.stdout.readline()
            assert line, f"child ended early: {lines[-3:]}"
            lines.append(line.split())
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    return lines  # type: ignore[return-value]


def test_sigkill_during_sends_loses_no_block_and_never_double_signs(tmp_path: Path) -> None:
    signed: dict[int, set[str]] = {}
    resumed = 0
    # Odd and even cut points land the kill on either side of persisting and certifying.
    for after in (37, 52, 45):
        for line in _run_and_kill(tmp_path, after):
            if line[0] == "signed":
                signed.setdefault(int(line[1]), set()).add(line[2])
            resumed += line[0] == "resumed"
    assert len(signed) > 50
    assert all(len(hashes) == 1 for hashes in signed.values()), "a sequence was signed twice"

    world, stores, wallet = open_world(tmp_path)
    resumed += wallet.pending is not None
    # The kills landed between signing and certifying at least once (else this proves little).
    print("restarts with a pending block:", resumed, "of 3")
    assert resumed >= 1
    # Restarted: the pending block (if any) is resent, not replaced.
    if wallet.pending is not None:
        step(world, stores, wallet, key_of(identity("crash-payee")))
    assert wallet.pending is None and wallet.head is not None
    chain = {c.decoded().sequence: c.decoded().hash().hex() for c in wallet.history}
    # No lost block: everything the wallet ever released is in its certified chain.
    for sequence, hashes in signed.items():
        assert chain[sequence] in hashes
    # No validator voted for anything else, on any slot.
    for store in stores:
        for (_, sequence), block in store.votes().items():
            from neonet.core.ledger import decode_block

            assert decode_block(block).hash().hex() == chain[sequence]
    blocks = [c.block for c in wallet.history]
    verdict = backend.verify_chain(blocks, mint_account=world.mint_account)
    assert verdict.ok and verdict.head == world.validators[0].ledger.head(wallet.account)
