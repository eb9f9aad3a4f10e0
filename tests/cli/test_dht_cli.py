"""``neonet dht`` and ``neonet name`` run as a user would, against a running DHT."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from neonet.core.peer_id import PeerId
from neonet.node import open_node
from neonet.proto.kad_records import blob_key
from neonet.services.kad import open_kad


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neonet", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


async def _run(*args: str) -> dict[str, object]:
    done = await trio.to_thread.run_sync(lambda: _cli(*args, "--json"))
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


async def test_dht_and_name_commands(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            nodes, dhts = [], []
            for _ in range(3):
                node = await stack.enter_async_context(open_node())
                boot = [nodes[0].listen_addrs[0]] if nodes else []
                dhts.append(await stack.enter_async_context(open_kad(node, bootstrap=boot)))
                nodes.append(node)
            boot = ["--bootstrap", str(nodes[0].listen_addrs[0])]

            put = await _run("dht", "put", "--blob", "hello from the shell", *boot)
            assert put["key"] == blob_key(b"hello from the shell").decode() and put["stored"] == 3
            got = await _run("dht", "get", str(put["key"]), *boot)
            assert got["value"] == "hello from the shell"
            refused = await trio.to_thread.run_sync(
                lambda: _cli("dht", "put", "/nope/x", "v", *boot)
            )
            assert refused.returncode == 1 and "no validator for namespace 'nope'" in refused.stderr

            db = str(tmp_path / "provider.sqlite")
            provided = await _run("dht", "provide", "some content", "--server", "--db", db, *boot)
            found = await _run("dht", "find-providers", "some content", *boot)
            assert len(found["providers"]) == 1  # type: ignore[arg-type]
            peer = await _run("dht", "find-peer", str(nodes[2].peer_id), *boot)
            assert str(nodes[2].listen_addrs[0].without_peer_id()) in peer["addrs"]  # type: ignore[operator]
            assert provided["announced"] == 3

            old, new = tmp_path / "old.json", tmp_path / "new.json"
            for path in (old, new):
                assert _cli("identity", "create", "--file", str(path)).returncode == 0
            claimed = await _run("name", "claim", "Dave", "--identity", str(old), *boot)
            assert claimed["name"] == "dave" and claimed["seq"] == 1
            resolved = await _run("name", "resolve", "DAVE", *boot)
            assert resolved["peer_id"] == claimed["peer_id"]
            taken = await trio.to_thread.run_sync(
                lambda: _cli("name", "claim", "dave", "--identity", str(new), *boot)
            )
            assert taken.returncode == 1 and "claimed by" in taken.stderr
            rotated = await _run(
                "name", "rotate", "dave", "--identity", str(old), "--new-identity", str(new), *boot
            )
            assert rotated["seq"] == 2 and rotated["peer_id"] != claimed["peer_id"]
            resolved = await _run("name", "resolve", "dave", *boot)
            assert resolved["peer_id"] == rotated["peer_id"]
            assert PeerId.from_string(str(resolved["peer_id"]))


def test_dht_serve_prints_its_address(tmp_path: Path) -> None:
    done = _cli("dht", "serve", "--db", str(tmp_path / "d.sqlite"), "--json", "--exit-after-start")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    again = _cli("dht", "serve", "--db", str(tmp_path / "d.sqlite"), "--json", "--exit-after-start")
    assert json.loads(again.stdout)["peer_id"] == info["peer_id"]  # the identity persisted
    assert info["addrs"][0].startswith("/ip4/127.0.0.1/tcp/")
