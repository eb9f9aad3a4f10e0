"""``neonet ssn client --connect`` as a user runs it: real SSN and client processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from neonet.cli.local_network import LocalNetwork


async def _first_line(process: trio.Process) -> dict[str, Any]:
    assert process.stdout is not None
    data = b""
    while b"\n" not in data:
        chunk = await process.stdout.receive_some(65536)
        assert chunk, "the client exited before registering"
        data += chunk
    parsed: dict[str, Any] = json.loads(data.split(b"\n", 1)[0])
    return parsed


async def test_client_connects_by_name_and_says_how(tmp_path: Path) -> None:
    network = LocalNetwork.create(tmp_path, ["eu"])
    try:
        network.start(0)
        common = [sys.executable, "-m", "neonet", "ssn", "client", "--json", "--region", "eu"]
        common += ["--seeds", str(network.seeds_file), "--operator", str(network.operator_peer)]
        alice = await trio.lowlevel.open_process(
            [*common, "--name", "alice", "--stay"], stdout=subprocess.PIPE
        )
        try:
            with trio.fail_after(60):
                registered = await _first_line(alice)
                assert registered["name"] == "alice"
                bob = await trio.run_process(
                    [*common, "--name", "bob", "--connect", "alice"], capture_stdout=True
                )
            lines = [json.loads(line) for line in bob.stdout.decode().splitlines()]
            assert lines[0]["name"] == "bob" and lines[0]["ssn"] == registered["ssn"]
            connected = lines[1]
            assert connected["connect"] == "alice"
            assert connected["peer_id"] == registered["peer_id"]
            # Alice listens on loopback: her direct address answers, no relay needed.
            assert connected["path"] == "direct" and connected["dial_errors"] == []
            assert connected["ping_ms"] > 0
        finally:
            alice.terminate()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(10):
                    await alice.wait()
                if alice.returncode is None:
                    alice.kill()
                    await alice.wait()
    finally:
        network.stop_all()
