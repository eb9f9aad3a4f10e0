"""A local SSN federation as subprocesses: what ``neonet demo``, the cluster test and
``neonet bench ssn`` start.

``LocalNetwork.create(directory, regions)`` makes an operator identity and one SQLite
file per SSN (its identity and region), picks loopback ports, signs the seed list, and
``start(index)`` runs ``python -m neonet ssn serve`` for one SSN, waiting for the JSON
line it prints once it listens. ``kill(index)`` sends SIGKILL (no goodbye: the fault the
federation must survive); ``stop_all`` terminates what is left. Seed list entries carry
the TCP and /ws addresses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.proto.ssn.seeds import SeedEntry, SeedList, make_seed_list
from neonet.services.ssn.operator_store import OperatorStore


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SsnProcess:
    db: Path
    peer_id: PeerId
    region: str
    tcp_port: int
    ws_port: int
    process: subprocess.Popen[str] | None = None
    started: dict[str, Any] = field(default_factory=dict)

    @property
    def tcp_addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.tcp_port}/p2p/{self.peer_id}"


@dataclass
class LocalNetwork:
    directory: Path
    operator: Ed25519Identity
    seeds: SeedList
    seeds_file: Path
    ssns: list[SsnProcess]
    serve_args: list[str] = field(default_factory=list)

    @property
    def operator_peer(self) -> PeerId:
        return PeerId.from_public_key(self.operator.public_key)

    @classmethod
    def create(
        cls, directory: Path, regions: list[str], serve_args: list[str] | None = None
    ) -> LocalNetwork:
        directory.mkdir(parents=True, exist_ok=True)
        operator = Ed25519Identity.generate()
        ssns: list[SsnProcess] = []
        for index, region in enumerate(regions):
            db = directory / f"ssn{index}.sqlite"
            store = OperatorStore(db)
            identity = store.load_or_create_identity()
            store.set_text("region", region)
            store.close()
            peer = PeerId.from_public_key(identity.public_key)
            ssns.append(SsnProcess(db, peer, region, free_port(), free_port()))
        entries = [
            SeedEntry(
                s.peer_id.to_bytes(),
                s.region,
                (f"/ip4/127.0.0.1/tcp/{s.tcp_port}", f"/ip4/127.0.0.1/tcp/{s.ws_port}/ws"),
            )
            for s in ssns
        ]
        seeds = make_seed_list("local", 1, entries, issued_at=int(time.time()))
        seeds_file = directory / "seeds.cbor"
        seeds_file.write_bytes(seeds.sign(operator))
        return cls(directory, operator, seeds, seeds_file, ssns, list(serve_args or []))

    def start(
        self, index: int, *, first_time: bool = True, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Run SSN ``index``; return the JSON it printed on start. Without ``first_time`` the
        SSN gets only ``--db`` and must find everything else in it."""
        ssn = self.ssns[index]
        command = [sys.executable, "-m", "neonet", "ssn", "serve", "--db", str(ssn.db), "--json"]
        command += ["--listen", f"/ip4/127.0.0.1/tcp/{ssn.tcp_port}"]
        command += ["--listen", f"/ip4/127.0.0.1/tcp/{ssn.ws_port}/ws"]
        command += ["--stats-file", str(self.stats_path(index))]
        if first_time:
            command += ["--seeds", str(self.seeds_file), "--operator", str(self.operator_peer)]
        command += self.serve_args
        log = (self.directory / f"ssn{index}.log").open("a")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
        log.close()
        ssn.process = process
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("{"):
                ssn.started = json.loads(line)
                return ssn.started
            if not line and process.poll() is not None:
                break
        raise RuntimeError(
            f"SSN {index} did not start: {line!r}; see {self.directory / f'ssn{index}.log'}"
        )

    def stats_path(self, index: int) -> Path:
        return self.directory / f"ssn{index}.stats.json"

    def stats(self, index: int) -> dict[str, Any] | None:
        """The SSN's latest statistics snapshot (None before the first one)."""
        try:
            return json.loads(self.stats_path(index).read_text())  # type: ignore[no-any-return]
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def start_all(self) -> None:
        for index in range(len(self.ssns)):
            self.start(index)

    def kill(self, index: int) -> None:
        process = self.ssns[index].process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for ssn in self.ssns:
            process = ssn.process
            if process is None or process.poll() is not None:
                continue
            process.terminate()
        for ssn in self.ssns:
            process = ssn.process
            if process is None:
                continue
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
