"""``neonet ssn`` and ``neonet demo`` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from neonet.cli.local_network import LocalNetwork
from neonet.cli.main import main
from neonet.core.keyfile import encode_keyfile
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.node import open_node
from neonet.services.ssn.client import FAILOVER_BOUND, SsnClientConfig, open_ssn_client


def test_seed_list_make_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    operator = Ed25519Identity.generate()
    key_file = tmp_path / "operator.json"
    key_file.write_bytes(encode_keyfile(operator, None))
    ssn = tmp_path / "ssn.sqlite"
    assert main(["ssn", "init", "--db", str(ssn), "--region", "eu", "--json"]) == 0
    ssn_peer = json.loads(capsys.readouterr().out)["peer_id"]
    out = tmp_path / "seeds.cbor"
    entry = f"{ssn_peer}=eu=/ip4/127.0.0.1/tcp/4001,/ip4/127.0.0.1/tcp/4002/ws"
    assert (
        main(
            [
                "ssn",
                "seeds",
                "make",
                "--operator-identity",
                str(key_file),
                "--network",
                "test",
                "--entry",
                entry,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    operator_peer = str(PeerId.from_public_key(operator.public_key))
    assert main(["ssn", "seeds", "show", str(out), "--operator", operator_peer, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["entries"] == [
        {
            "peer_id": ssn_peer,
            "region": "eu",
            "addrs": ["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4002/ws"],
        }
    ]
    stranger = str(PeerId.from_public_key(Ed25519Identity.generate().public_key))
    assert main(["ssn", "seeds", "show", str(out), "--operator", stranger]) == 1
    assert "not signed by the expected operator" in capsys.readouterr().err
    # Same identity on a second init: the SSN keeps its peer ID.
    assert main(["ssn", "init", "--db", str(ssn), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["peer_id"] == ssn_peer


def test_demo_finds_everyone_by_name_and_connects() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "neonet", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum("connected directly" in line for line in lines) == 12  # 4 clients, all pairs
    assert "4 clients, 0 failures." in lines


def test_client_leaves_an_ssn_that_stops_answering(tmp_path: Path) -> None:
    """SIGSTOP freezes the client's SSN with its connections open: only the keep-alive
    can tell. The client must register with the other SSN within the bound."""
    network = LocalNetwork.create(tmp_path, ["eu", "eu"], ["--protocol-period", "0.5"])
    config = SsnClientConfig(keepalive_interval=0.3, keepalive_timeout=0.7, probe_timeout=1.0)
    frozen: list[int] = []

    async def scenario() -> float:
        async with (
            open_node() as node,
            open_ssn_client(
                node.host, network.seeds, name="carol", region="eu", config=config
            ) as client,
        ):
            first = client.ssn
            index = next(i for i, s in enumerate(network.ssns) if s.peer_id == first)
            process = network.ssns[index].process
            assert process is not None
            os.kill(process.pid, signal.SIGSTOP)
            frozen.append(process.pid)
            started = trio.current_time()
            with trio.fail_after(FAILOVER_BOUND + 5):
                while client.ssn == first:  # noqa: ASYNC110 (polled client state)
                    await trio.sleep(0.05)
            return trio.current_time() - started

    try:
        network.start_all()
        seconds = trio.run(scenario)
        assert seconds < FAILOVER_BOUND + 5  # keep-alive (0.3 + 0.7 s) + probes + register
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        network.stop_all()
