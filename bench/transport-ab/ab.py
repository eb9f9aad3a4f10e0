"""Interleaved A/B of CPU and scheduler steps per echo stream between code trees.

    python bench/transport-ab/ab.py N ROUNDS NAME=PYTHONPATH [NAME=PYTHONPATH ...]

Each round runs every variant once (order alternating between rounds): a fresh
listener and dialer process pair (ab_peer.py) with PYTHONPATH set to the variant's
tree, N measured streams (or MiB with AB_BULK=1). Prints per-round figures, medians,
and the median of per-round ratios of each variant to the first. AB_PURE=1 runs the
pure backend; AB_INSTR=1 adds trio step counts (and their CPU cost).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def one_pair(path: str, count: int) -> dict[str, float]:
    environment = dict(os.environ, PYTHONPATH=path)
    environment.pop("NEONET_PURE", None)
    if os.environ.get("AB_PURE") == "1":
        environment["NEONET_PURE"] = "1"
    peer = [sys.executable, f"{HERE}/ab_peer.py"]
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    listener = subprocess.Popen([*peer, "listen"], env=environment, **pipes)
    address = json.loads(listener.stdout.readline())["addrs"][0]
    dialer = subprocess.Popen([*peer, "dial", address, str(count)], env=environment, **pipes)
    assert dialer.stdout.readline().strip() == "ready"

    def ask(process: subprocess.Popen[str]) -> dict[str, Any]:
        process.stdin.write("go\n")
        process.stdin.flush()
        return dict(json.loads(process.stdout.readline()))

    listener_before = ask(listener)
    dialer_spent = ask(dialer)
    listener_after = ask(listener)
    for process in (dialer, listener):
        process.stdin.close()
        process.wait()
    listener_spent = {
        k: listener_after[k] - listener_before[k]
        for k in ("cpu", "steps", "waits", "bwaits", "writes")
    }
    if os.environ.get("AB_INSTR") == "1":
        before = listener_before["bytask"]
        print(
            "  dialer steps by task",
            {k: round(v, 2) for k, v in dialer_spent["bytask"].items() if v > 0.01},
        )
        print(
            "  listener steps by task",
            {
                k: round((v - before.get(k, 0)) / count, 2)
                for k, v in listener_after["bytask"].items()
                if (v - before.get(k, 0)) / count > 0.01
            },
        )
    return {
        "dialer_cpu_us": dialer_spent["cpu"] / count * 1e6,
        "listener_cpu_us": listener_spent["cpu"] / count * 1e6,
        "per_second": count / dialer_spent["wall"],
        "dialer_steps": dialer_spent["steps"] / count,
        "listener_steps": listener_spent["steps"] / count,
        "dialer_io_waits": dialer_spent["waits"] / count,
        "listener_io_waits": listener_spent["waits"] / count,
        "dialer_writes": dialer_spent["writes"] / count,
        "listener_writes": listener_spent["writes"] / count,
    }


def main() -> None:
    count, rounds = int(sys.argv[1]), int(sys.argv[2])
    variants = [argument.split("=", 1) for argument in sys.argv[3:]]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    for round_number in range(rounds):
        order = variants if round_number % 2 == 0 else variants[::-1]
        for name, path in order:
            figures = one_pair(path, count)
            results[name].append(figures)
            print(
                round_number, name, " ".join(f"{k}={v:.2f}" for k, v in figures.items()), flush=True
            )
    print("load average", os.getloadavg(), "pure" if os.environ.get("AB_PURE") == "1" else "native")
    keys = list(results[variants[0][0]][0])
    for name, _ in variants:
        medians = {k: statistics.median(r[k] for r in results[name]) for k in keys}
        print(f"median {name}:", " ".join(f"{k}={v:.2f}" for k, v in medians.items()))
    base = variants[0][0]
    for name, _ in variants[1:]:
        for key in ("dialer_cpu_us", "listener_cpu_us", "per_second"):
            ratios = [b[key] / a[key] for a, b in zip(results[base], results[name], strict=True)]
            print(
                f"{name}/{base} {key}: median of per-round ratios {statistics.median(ratios):.3f}"
            )


if __name__ == "__main__":
    main()
