"""The SSN federation as separate processes: 6 SSNs in 2 regions, 200 clients in 4 processes.

Proof for issue 6: every client finds every other client by name and signals it through
the SSNs (all 39,800 ordered pairs, ~85 s of the ~2 minutes), every delivered signal
arrives, pairs then open NeoNet connections and echo data;
two SSNs die by SIGKILL, their clients re-register elsewhere within the client's stated
bound, lookups and signals keep succeeding (20 random targets per client, 4,000 pairs;
ratio printed, >= 99.9% asserted), and a
restarted SSN comes back with its operator data from SQLite.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from neonet.cli.local_network import LocalNetwork
from neonet.services.ssn.client import FAILOVER_BOUND

WORKERS = 4
CLIENTS_PER_WORKER = 50
ALL = 1_000_000  # "per_client" larger than the number of clients: every other client
SAMPLE_PER_CLIENT = 20  # after the fail-over: 20 random targets per client (4,000 pairs)
WORKER = Path(__file__).with_name("ssn_client_worker.py")
SERVE_ARGS = ["--address-rate", "2000", "--address-burst", "5000"]


class WorkerProcess:
    def __init__(self, network: LocalNetwork, prefix: str, log: Path) -> None:
        self.prefix = prefix
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    str(network.seeds_file),
                    str(network.operator_peer),
                    prefix,
                    str(CLIENTS_PER_WORKER),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.prefix} exited ({self.process.poll()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.process.wait(timeout=20)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=10)


def ask_all(workers: list[WorkerProcess], command: dict[str, Any]) -> list[dict[str, Any]]:
    for worker in workers:
        worker.send(command)
    return [worker.read() for worker in workers]


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def exercise(
    workers: list[WorkerProcess], names: list[str], round_tag: str, seed: int, per_client: int
) -> tuple[Counter[str], float, list[float]]:
    command = {
        "cmd": "exercise",
        "names": names,
        "per_client": per_client,
        "seed": seed,
        "round": round_tag,
    }
    started = time.monotonic()
    results = ask_all(workers, command)
    total: Counter[str] = Counter()
    for result in results:
        total.update(result["outcome"])
    medians = [r["lookup_median_ms"] for r in results if r["lookup_median_ms"] is not None]
    return total, time.monotonic() - started, medians


def received(workers: list[WorkerProcess], round_tag: str) -> int:
    return sum(r["received"].get(round_tag, 0) for r in ask_all(workers, {"cmd": "received"}))


@pytest.mark.scale
def test_cluster_of_six_ssns_and_two_hundred_clients(tmp_path: Path) -> None:
    network = LocalNetwork.create(tmp_path, ["eu", "us"] * 3, SERVE_ARGS)
    workers: list[WorkerProcess] = []
    try:
        network.start_all()
        wait_for(
            lambda: all((network.stats(i) or {}).get("live_members") == 6 for i in range(6)),
            30,
            "6 SSNs to see each other",
        )
        started = time.monotonic()
        workers = [WorkerProcess(network, f"w{i}", tmp_path / f"w{i}.log") for i in range(WORKERS)]
        names = [name for worker in workers for name in worker.read()["ready"]]
        print(f"\n{len(names)} clients registered in {time.monotonic() - started:.1f} s")
        assert len(names) == WORKERS * CLIENTS_PER_WORKER

        # 1. Every client looks every other up by name and signals it (200 x 199 pairs).
        total, seconds, medians = exercise(workers, names, "r1", 1, ALL)
        jobs = len(names) * (len(names) - 1)
        print(
            f"round 1: {jobs} lookups + signals in {seconds:.1f} s, outcome {dict(total)},"
            f" lookup medians per process (ms) {[round(m, 2) for m in medians]}"
        )
        assert total["lookup_ok"] == jobs
        assert total["signal_delivered"] == jobs
        wait_for(lambda: received(workers, "r1") == jobs, 20, "every signal to arrive")

        # 2. Pairs open NeoNet connections to the looked-up addresses and echo data.
        pairs = [
            [names[i], names[(i + CLIENTS_PER_WORKER + 1) % len(names)]] for i in range(len(names))
        ]
        by_worker: dict[str, list[list[str]]] = {}
        for source, target in pairs:
            by_worker.setdefault(source.split("-")[0], []).append([source, target])
        for worker in workers:
            worker.send({"cmd": "connect", "pairs": by_worker[worker.prefix]})
        connected: Counter[str] = Counter()
        for worker in workers:
            connected.update(worker.read()["outcome"])
        print(f"connections: {dict(connected)}")
        assert connected["ok"] == len(pairs)

        # 3. SIGKILL two SSNs, one per region; their clients move within the bound.
        before = {
            n: c["ssn"]
            for w in ask_all(workers, {"cmd": "status"})
            for n, c in w["clients"].items()
        }
        victims = [0, 1]
        dead = {str(network.ssns[i].peer_id) for i in victims}
        moved = [n for n, ssn in before.items() if ssn in dead]
        killed_at = time.monotonic()
        for index in victims:
            network.kill(index)

        def all_moved() -> bool:
            status = {
                n: c for w in ask_all(workers, {"cmd": "status"}) for n, c in w["clients"].items()
            }
            return all(status[n]["ssn"] not in dead and status[n]["failovers"] >= 1 for n in moved)

        wait_for(all_moved, FAILOVER_BOUND + 10, "clients of the killed SSNs to re-register")
        status = {
            n: c for w in ask_all(workers, {"cmd": "status"}) for n, c in w["clients"].items()
        }
        failover_times = sorted(status[n]["last_failover_seconds"] for n in moved)
        print(
            f"{len(moved)} clients re-registered after SIGKILL of 2 SSNs; fail-over seconds"
            f" median {failover_times[len(failover_times) // 2]:.2f},"
            f" max {failover_times[-1]:.2f} (bound {FAILOVER_BOUND} s);"
            f" all moved {time.monotonic() - killed_at:.1f} s after the kill"
        )
        assert moved and failover_times[-1] <= FAILOVER_BOUND

        # 4. Lookups and signals right after the fail-over.
        total, seconds, _ = exercise(workers, names, "r2", 2, SAMPLE_PER_CLIENT)
        jobs = len(names) * SAMPLE_PER_CLIENT
        successes = total["signal_delivered"]
        ratio = successes / jobs
        print(
            f"round 2 (after fail-over): {jobs} lookups + signals in {seconds:.1f} s,"
            f" outcome {dict(total)}, success ratio {ratio:.4%}"
        )
        assert ratio >= 0.999

        # 5. Restart a killed SSN from its database alone: the operator data survived.
        first = network.ssns[0].started
        again = network.start(0, first_time=False)
        for key in ("peer_id", "region", "network", "serial", "operator"):
            assert again[key] == first[key], key
        wait_for(
            lambda: (network.stats(0) or {}).get("live_members") == 5,
            30,
            "the restarted SSN to rejoin the 4 survivors",
        )
        print(
            f"restarted SSN {again['peer_id']} kept region {again['region']}, seed list"
            f" serial {again['serial']} and operator {again['operator']}; rejoined"
        )
    finally:
        for worker in workers:
            worker.close()
        network.stop_all()
