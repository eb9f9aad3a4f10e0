"""``neonet bank`` as a user runs it: 4 validator processes on loopback, wallets, a POS."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from neonet.cli.bank import verify_receipt
from neonet.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _free_base_port() -> int:
    for _ in range(100):
        base = random.randrange(20_000, 60_000)
        try:
            for offset in range(4):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no four free consecutive ports")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["bank", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_bank_cli_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEONET_PASSPHRASE", "bank test")
    base_port = str(_free_base_port())
    run(capsys, "init", str(tmp_path), "--base-port", base_port, "--refund-grace", "0")
    bank = str(tmp_path / "bank.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    validators = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "neonet",
                "bank",
                "validator",
                "--bank",
                bank,
                "--index",
                str(i),
            ],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for i in range(4)
    ]
    try:
        for process in validators:
            assert process.stdout is not None
            assert "validator" in process.stdout.readline()
        alice_dir, shop_dir = str(tmp_path / "alice"), str(tmp_path / "shop")
        alice = run(capsys, "wallet", "create", "--wallet", alice_dir).strip()
        shop = run(capsys, "wallet", "create", "--wallet", shop_dir).strip()
        common = ["--bank", bank]
        run(capsys, "mint", "1000", "--to", alice, *common, "--wallet", str(tmp_path / "mint"))
        balance = json.loads(run(capsys, "wallet", "balance", *common, "--wallet", alice_dir))
        assert balance == {"account": alice, "balance": 0, "incoming": 1000}
        received = json.loads(run(capsys, "wallet", "receive", *common, "--wallet", alice_dir))
        assert received == {"received": 1000, "balance": 1000}
        run(capsys, "wallet", "send", shop, "100", *common, "--wallet", alice_dir)
        assert json.loads(run(capsys, "wallet", "receive", *common, "--wallet", shop_dir)) == {
            "received": 100,
            "balance": 100,
        }
        purse = json.loads(
            run(
                capsys,
                "wallet",
                "open-purse",
                "--cap",
                "50",
                "--count",
                "4",
                *common,
                "--wallet",
                alice_dir,
            )
        )
        assert purse["amount"] == 200
        # Offline: the payment token travels as text; the POS checks it with no network.
        token = run(capsys, "wallet", "pay-offline", shop, "30", "--wallet", alice_dir).strip()
        receipt = run(capsys, "pos", "accept", token, *common, "--wallet", shop_dir).strip()
        assert verify_receipt(receipt).accepted_at > 0
        assert main(["bank", "pos", "accept", token, *common, "--wallet", shop_dir]) == 0
        capsys.readouterr()
        over_cap = run(capsys, "wallet", "pay-offline", shop, "50", "--wallet", alice_dir).strip()
        run(capsys, "pos", "accept", over_cap, *common, "--wallet", shop_dir)
        assert main(["bank", "wallet", "pay-offline", shop, "51", "--wallet", alice_dir]) == 1
        assert "cap" in capsys.readouterr().err
        listed = run(capsys, "pos", "receipts", *common, "--wallet", shop_dir).splitlines()
        assert [json.loads(line)["amount"] for line in listed] == [30, 50]
        redeemed = json.loads(run(capsys, "pos", "redeem", *common, "--wallet", shop_dir))
        assert redeemed == {"redeemed": 80, "balance": 180}
        history = run(capsys, "wallet", "history", *common, "--wallet", alice_dir).splitlines()
        kinds = [json.loads(line)["kind"] for line in history]
        assert kinds == [0, 3, 2, 4]  # open, receive, transfer, open purse
        assert json.loads(history[-1])["balance"] == 700
        # A purse that expires at once (no grace in this bank) is refunded whole.
        expired = [*common, "--wallet", alice_dir, "--expires-in", "0"]
        run(capsys, "wallet", "open-purse", "--cap", "10", "--count", "2", *expired)
        refunded = json.loads(run(capsys, "wallet", "refund", *common, "--wallet", alice_dir))
        assert refunded == {"refunded": 20, "balance": 700}
        assert json.loads(run(capsys, "wallet", "refund", *common, "--wallet", alice_dir)) == {
            "refunded": 0,
            "balance": 700,
        }
        # Double spend: a copy of the wallet (its purse index at 2) pays index 2 twice,
        # at two POS that are offline together; both accept, the second redeem is refused
        # with a proof and the payer's account is frozen.
        shutil.copytree(alice_dir, tmp_path / "alice-copy")
        shop2_dir = str(tmp_path / "shop2")
        shop2 = run(capsys, "wallet", "create", "--wallet", shop2_dir).strip()
        first = run(capsys, "wallet", "pay-offline", shop, "40", "--wallet", alice_dir).strip()
        second = run(
            capsys, "wallet", "pay-offline", shop2, "45", "--wallet", str(tmp_path / "alice-copy")
        ).strip()
        run(capsys, "pos", "accept", first, *common, "--wallet", shop_dir)
        run(capsys, "pos", "accept", second, *common, "--wallet", shop2_dir)
        redeemed = json.loads(run(capsys, "pos", "redeem", *common, "--wallet", shop_dir))
        assert redeemed == {"redeemed": 40, "balance": 220}
        # Shop 2 learns at resync that the slot is lost: it proves the double spend.
        refused = run(capsys, "pos", "redeem", *common, "--wallet", shop2_dir).splitlines()
        assert json.loads(refused[0]) == {"lost": 2, "proof": True}
        assert json.loads(refused[-1])["redeemed"] == 0
        assert main(["bank", "wallet", "send", shop, "1", *common, "--wallet", alice_dir]) == 1
        assert "frozen" in capsys.readouterr().err
        # The losing POS claims its payment from alice's frozen funds, once.
        claimed = json.loads(run(capsys, "pos", "claim", *common, "--wallet", shop2_dir))
        assert claimed == {"claimed": 45, "balance": 45}
        assert json.loads(run(capsys, "pos", "claim", *common, "--wallet", shop2_dir)) == {
            "claimed": 0,
            "balance": 45,
        }
        history = run(capsys, "wallet", "history", *common, "--wallet", shop2_dir).splitlines()
        assert [json.loads(line)["kind"] for line in history] == [0, 7]  # open, claim
    finally:
        for process in validators:
            process.kill()
            process.wait(timeout=10)
