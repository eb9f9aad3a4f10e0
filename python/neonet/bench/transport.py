"""``neonet bench transport``: NeoNet vs py-libp2p vs raw trio TCP, side by side in one run.

Each implementation runs as two processes on 127.0.0.1 (a listener and a dialer of the
same implementation), so no side shares an interpreter or a GIL with the other. For each
it prints: connect (dial + upgrade) median, ping round-trip median, one-stream bulk MB/s
over 64 MiB (perf upload), and streams/s (open, negotiate, 1-byte echo, close).

py-libp2p 0.8.1 runs from its own virtualenv, built by the interop harness
(``python tests/interop/harness.py build py-libp2p`` in a source checkout); when it is
missing, its column says so instead of guessing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
PY_LIBP2P_VENV = Path.home() / ".cache" / "neonet-interop" / "py-libp2p-0.8.1"
PY_LIBP2P_PEER = REPO_ROOT / "tests" / "interop" / "peers" / "py" / "peer.py"


@dataclass
class Side:
    name: str
    argv: list[str]
    available: bool = True
    note: str = ""
    results: dict[str, Any] = field(default_factory=dict)


def _sides() -> list[Side]:
    own = [sys.executable, "-m", "neonet.bench.peer"]
    py_python = PY_LIBP2P_VENV / "bin" / "python"
    py_side = Side("py-libp2p 0.8.1", [str(py_python), str(PY_LIBP2P_PEER)])
    if not (py_python.exists() and PY_LIBP2P_PEER.exists()):
        py_side.available = False
        py_side.note = "not installed: run `python tests/interop/harness.py build py-libp2p`"
    return [Side("neonet", [*own, "neonet"]), py_side, Side("raw trio TCP", [*own, "raw-tcp"])]


class _Listener:
    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            [*argv, "listen", "--transport", "tcp", "--ip", "127.0.0.1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            error = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"listener {argv} printed nothing: {error[-2000:]}")
        self.addrs: list[str] = json.loads(line)["addrs"]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _dial(argv: list[str], address: str, *options: str, timeout: float = 300) -> dict[str, Any]:
    completed = subprocess.run(
        [*argv, "dial", "--addr", address, *options],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"dialer {argv} printed no result: {completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if not result.get("ok"):
        raise RuntimeError(f"dialer {argv} failed: {result.get('error')}")
    return result


def _perf_seconds(perf: dict[str, Any]) -> float:
    """Time from the request until the server, having drained the upload, closed (EOF).

    Peers that only report their phases give upload + download seconds, which covers
    the same span; a rate is never taken from a peer's own (possibly bit-based) figure.
    """
    if "total_seconds" in perf:
        return float(perf["total_seconds"])
    return float(perf["upload_seconds"]) + float(perf["download_seconds"])


def _measure(side: Side, *, rounds: int, pings: int, bulk: int, streams: int) -> None:
    listener = _Listener(side.argv)
    try:
        address = listener.addrs[0]
        connects: list[float] = []
        ping_medians: list[float] = []
        bulk_rates: list[float] = []
        stream_rates: list[float] = []
        for _ in range(rounds):
            result = _dial(side.argv, address, "--pings", str(pings))
            connects.append(result["connect_ms"])
            ping_medians.append(
                statistics.median(result["ping_rtt_ms"][1:] or result["ping_rtt_ms"])
            )
        for _ in range(rounds):
            result = _dial(side.argv, address, "--perf-upload", str(bulk), "--perf-download", "0")
            bulk_rates.append(bulk / _perf_seconds(result["perf"]) / 1e6)
        if side.name != "raw trio TCP":
            for _ in range(rounds):
                result = _dial(side.argv, address, "--streams", str(streams))
                stream_rates.append(result["streams_per_second"])
        side.results = {
            "connect_ms": statistics.median(connects),
            "ping_ms": statistics.median(ping_medians),
            "bulk_mbps": statistics.median(bulk_rates),
            "streams_per_second": statistics.median(stream_rates) if stream_rates else None,
        }
    finally:
        listener.close()


def main(*, quick: bool = False, as_json: bool = False, rounds: int | None = None) -> None:
    rounds = rounds or (3 if quick else 5)
    workload = {
        "rounds": rounds,
        "pings": 50 if quick else 200,
        "bulk": 64 * 1024 * 1024,
        "streams": 200 if quick else 1000,
    }
    sides = _sides()
    for side in sides:
        if not side.available:
            continue
        try:
            _measure(
                side,
                rounds=rounds,
                pings=workload["pings"],
                bulk=workload["bulk"],
                streams=workload["streams"],
            )
        except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
            side.available = False
            side.note = f"failed: {exc}"
    neonet, py, _raw = sides
    ratios: dict[str, float] = {}
    if neonet.results and py.results:
        ratios["bulk_vs_py_libp2p"] = neonet.results["bulk_mbps"] / py.results["bulk_mbps"]
        if py.results["streams_per_second"]:
            ratios["streams_vs_py_libp2p"] = (
                neonet.results["streams_per_second"] / py.results["streams_per_second"]
            )
    if as_json:
        document = {
            "workload": workload,
            "results": {side.name: side.results or {"note": side.note} for side in sides},
            "ratios": ratios,
        }
        print(json.dumps(document, indent=2))
        return
    print(f"neonet bench transport: 127.0.0.1, TCP; medians of {rounds} rounds; pid {os.getpid()}")
    print(f"{'':16}{'connect ms':>12}{'ping ms':>10}{'bulk MB/s':>12}{'streams/s':>12}")
    for side in sides:
        if not side.results:
            print(f"{side.name:16}  {side.note}")
            continue
        r = side.results
        streams = f"{r['streams_per_second']:.0f}" if r["streams_per_second"] else "-"
        print(
            f"{side.name:16}{r['connect_ms']:>12.2f}{r['ping_ms']:>10.3f}{r['bulk_mbps']:>12.1f}{streams:>12}"
        )
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    print(
        "targets: connect < 5 ms, ping < 0.25 ms, bulk >= 5x py-libp2p, streams/s >= 10x py-libp2p"
    )
