"""The neonet command, run as a user would (a real subprocess where a node is involved)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from neonet.cli.main import main
from neonet.node import open_node


def test_identity_create_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "id.json"
    assert main(["identity", "create", "--file", str(key_file)]) == 0
    created = capsys.readouterr().out
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert main(["identity", "show", "--file", str(key_file), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["peer_id"] in created
    assert shown["cid"].startswith("bafz")
    assert main(["identity", "create", "--file", str(key_file)]) == 1  # refuses to overwrite
    assert "exists" in capsys.readouterr().err


def test_encrypted_identity_needs_the_passphrase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "id.json"
    monkeypatch.setenv("NEONET_PASSPHRASE", "open sesame")
    assert main(["identity", "create", "--file", str(key_file), "--encrypt"]) == 0
    assert main(["identity", "show", "--file", str(key_file)]) == 0
    monkeypatch.setenv("NEONET_PASSPHRASE", "wrong")
    assert main(["identity", "show", "--file", str(key_file)]) == 1
    assert "wrong passphrase" in capsys.readouterr().err


def test_missing_identity_gives_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identity", "show", "--file", str(tmp_path / "none.json")]) == 1
    assert "neonet identity create" in capsys.readouterr().err


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neonet", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_ping_and_perf_commands_against_a_running_node() -> None:
    with trio.fail_after(60):
        async with open_node() as node:
            address = str(node.listen_addrs[0])
            ping = await trio.to_thread.run_sync(lambda: _cli("ping", address, "--count", "2"))
            assert ping.returncode == 0, ping.stderr
            assert ping.stdout.count("ms") == 2
            perf = await trio.to_thread.run_sync(
                lambda: _cli("perf", address, "--upload", "1MiB", "--download", "2MiB", "--json")
            )
            assert perf.returncode == 0, perf.stderr
            result = json.loads(perf.stdout)
            assert result["upload_bytes"] == 1024 * 1024
            assert result["download_bytes"] == 2 * 1024 * 1024


def test_run_prints_its_addresses() -> None:
    run = _cli("run", "--json", "--exit-after-start")
    assert run.returncode == 0, run.stderr
    started = json.loads(run.stdout)
    assert started["peer_id"].startswith("12D3KooW")
    assert any(address.endswith(f"/p2p/{started['peer_id']}") for address in started["addrs"])
    assert any("/ws/p2p/" in address for address in started["addrs"])


def test_unreachable_ping_is_a_clear_error() -> None:
    ping = _cli("ping", "/ip4/127.0.0.1/tcp/1", "--timeout", "5")
    assert ping.returncode == 1
    assert "neonet: error:" in ping.stderr
    assert "Traceback" not in ping.stderr
