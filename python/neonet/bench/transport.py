"""``neonet bench transport``: NeoNet vs py-libp2p vs raw trio TCP, side by side in one run.

Each implementation runs as two processes on 127.0.0.1 (a listener and a dialer of the
same implementation), so no side shares an interpreter with another. Rounds are
interleaved (round 1 of every side, then round 2, ...) so that a noisy moment on this
shared machine hits every side alike, and ratios are taken per round, then the median.

Printed per side: connect (dial + upgrade; the first dial of a fresh dialer process),
warm connect (later dials in the same process, where the dialer supports it), ping
round trip (32 bytes on one stream), bulk MB/s (64 MiB uploaded with /perf/1.0.0 on one
stream, timed until the server, having drained it, answers; MB/s is computed here
from bytes and seconds for every side), streams/s (open, negotiate, 1-byte echo, close).

py-libp2p 0.8.1 runs from the virtualenv the interop harness builds
(``python tests/interop/harness.py build py-libp2p`` in a source checkout); when it is
missing, its row says so.

NeoNet's peers run on the backend this process selected (``NEONET_PURE`` is inherited
by the child processes; the row names it). With ``both_backends`` a second NeoNet row
runs the other backend in the same interleaved rounds, and the per-round ratios of
native to pure are printed too.
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

from neonet.core import backend

REPO_ROOT = Path(__file__).resolve().parents[3]
PY_LIBP2P_VENV = Path.home() / ".cache" / "neonet-interop" / "py-libp2p-0.8.1"
PY_LIBP2P_PEER = REPO_ROOT / "tests" / "interop" / "peers" / "py" / "peer.py"
BULK_BYTES = 64 * 1024 * 1024
# Connects timed back to back in one warm dialer process, per round.
WARM_CONNECTS = 10
METRICS = ("connect_ms", "warm_connect_ms", "ping_ms", "bulk_mbps", "streams_per_second")


@dataclass
class Side:
    name: str
    argv: list[str]
    repeated_connects: bool = False  # its dialer understands --connects
    has_streams: bool = True
    note: str = ""
    environment: dict[str, str] | None = None  # for the side's processes (None: inherit)
    rounds: list[dict[str, float | None]] = field(default_factory=list)

    def median(self, metric: str) -> float | None:
        values = [r[metric] for r in self.rounds if r.get(metric) is not None]
        return statistics.median(values) if values else None  # type: ignore[type-var]


def _backend_environment(name: backend.BackendName) -> dict[str, str]:
    environment = dict(os.environ)
    environment.pop(backend.PURE_ENV_VAR, None)
    if name == "pure":
        environment[backend.PURE_ENV_VAR] = "1"
    return environment


def _sides(*, both_backends: bool = False) -> list[Side]:
    own = [sys.executable, "-m", "neonet.bench.peer"]
    py_python = PY_LIBP2P_VENV / "bin" / "python"
    py_side = Side("py-libp2p 0.8.1", [str(py_python), str(PY_LIBP2P_PEER)])
    if not (py_python.exists() and PY_LIBP2P_PEER.exists()):
        py_side.note = "not installed: run `python tests/interop/harness.py build py-libp2p`"
    sides = [
        Side(f"neonet {backend.BACKEND}", [*own, "neonet"], repeated_connects=True),
        py_side,
        Side("raw trio TCP", [*own, "raw-tcp"], repeated_connects=True, has_streams=False),
    ]
    if both_backends:
        other: backend.BackendName = "pure" if backend.BACKEND == "native" else "native"
        if other == "native" and not backend.NATIVE_AVAILABLE:
            raise SystemExit("--both-backends needs neonet._native: run `maturin develop`")
        sides.insert(
            1,
            Side(
                f"neonet {other}",
                [*own, "neonet"],
                repeated_connects=True,
                environment=_backend_environment(other),
            ),
        )
    return sides


class _Listener:
    def __init__(self, argv: list[str], environment: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*argv, "listen", "--transport", "tcp", "--ip", "127.0.0.1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=environment,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"listener {argv} printed no address")
        self.address: str = json.loads(line)["addrs"][0]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _dial(side: Side, address: str, *options: str, timeout: float = 300) -> dict[str, Any]:
    argv = side.argv
    completed = subprocess.run(
        [*argv, "dial", "--addr", address, *options],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=side.environment,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"dialer {argv} printed no result: {completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if not result.get("ok"):
        raise RuntimeError(f"dialer {argv} failed: {result.get('error')}")
    return result


def _perf_seconds(perf: dict[str, Any]) -> float:
    """Time from the request until the server, having drained the upload, answered.

    Peers that only report their phases give upload + download seconds, which covers
    the same span; a rate is never taken from a peer's own (possibly bit-based) figure.
    """
    if "total_seconds" in perf:
        return float(perf["total_seconds"])
    return float(perf["upload_seconds"]) + float(perf["download_seconds"])


def _one_round(side: Side, address: str, *, pings: int, streams: int) -> dict[str, float | None]:
    options = ["--pings", str(pings)]
    if side.repeated_connects:
        options += ["--connects", str(WARM_CONNECTS)]
    result = _dial(side, address, *options)
    rtts = result["ping_rtt_ms"][1:] or result["ping_rtt_ms"]
    warm = result.get("connect_ms_all")
    row: dict[str, float | None] = {
        "connect_ms": float(result["connect_ms"]),
        "warm_connect_ms": statistics.median(warm) if warm else None,
        "ping_ms": statistics.median(rtts),
    }
    result = _dial(side, address, "--perf-upload", str(BULK_BYTES), "--perf-download", "0")
    row["bulk_mbps"] = BULK_BYTES / _perf_seconds(result["perf"]) / 1e6
    row["streams_per_second"] = None
    if side.has_streams:
        result = _dial(side, address, "--streams", str(streams))
        row["streams_per_second"] = float(result["streams_per_second"])
    return row


def run(*, rounds: int, pings: int, streams: int, both_backends: bool = False) -> list[Side]:
    sides = _sides(both_backends=both_backends)
    listeners: dict[str, _Listener] = {}
    try:
        for side in sides:
            if side.note:
                continue
            try:
                listeners[side.name] = _Listener(side.argv, side.environment)
            except (RuntimeError, OSError, ValueError, KeyError) as exc:
                side.note = f"listener failed: {exc}"
        for _ in range(rounds):
            for side in sides:
                if side.note:
                    continue
                try:
                    side.rounds.append(
                        _one_round(side, listeners[side.name].address, pings=pings, streams=streams)
                    )
                except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
                    side.note = f"failed: {exc}"
    finally:
        for listener in listeners.values():
            listener.close()
    return sides


def _ratios(neonet: Side, other: Side) -> dict[str, float]:
    """Per-round ratios (NeoNet / other for rates, other / NeoNet for times), then medians."""
    ratios: dict[str, float] = {}
    pairs = list(zip(neonet.rounds, other.rounds, strict=False))
    for metric, higher_is_better in (
        ("bulk_mbps", True),
        ("streams_per_second", True),
        ("ping_ms", False),
    ):
        values = []
        for mine, theirs in pairs:
            a, b = mine.get(metric), theirs.get(metric)
            if a and b:
                values.append(a / b if higher_is_better else b / a)
        if values:
            ratios[metric] = statistics.median(values)
    return ratios


def _cell(side: Side, metric: str, width: int, digits: int) -> str:
    value = side.median(metric)
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def main(
    *,
    quick: bool = False,
    as_json: bool = False,
    rounds: int | None = None,
    both_backends: bool = False,
) -> None:
    rounds = rounds or (3 if quick else 7)
    pings, streams = (50, 200) if quick else (200, 1000)
    sides = run(rounds=rounds, pings=pings, streams=streams, both_backends=both_backends)
    neonet, py_side = sides[0], sides[-2]
    ratios = _ratios(neonet, py_side) if neonet.rounds and py_side.rounds else {}
    # With both backends: the second NeoNet row vs py-libp2p, and native vs pure.
    other_ratios: dict[str, float] = {}
    backend_ratios: dict[str, float] = {}
    if both_backends and sides[1].rounds:
        other = sides[1]
        if other.rounds and py_side.rounds:
            other_ratios = _ratios(other, py_side)
        native, pure = (neonet, other) if backend.BACKEND == "native" else (other, neonet)
        if native.rounds and pure.rounds:
            backend_ratios = _ratios(native, pure)
    if as_json:
        document = {
            "workload": {
                "rounds": rounds,
                "pings": pings,
                "streams": streams,
                "bulk_bytes": BULK_BYTES,
            },
            "results": {
                side.name: {
                    "medians": {m: side.median(m) for m in METRICS},
                    "rounds": side.rounds,
                    "note": side.note,
                }
                for side in sides
            },
            "backend": backend.BACKEND,
            "ratios_vs_py_libp2p": ratios,
        }
        if both_backends:
            document["other_backend_ratios_vs_py_libp2p"] = other_ratios
            document["native_vs_pure"] = backend_ratios
        print(json.dumps(document, indent=2))
        return
    print(f"neonet bench transport: 127.0.0.1, TCP + Noise + yamux; {rounds} interleaved rounds")
    print(
        f"{'':16}{'connect ms':>11}{'warm ms':>9}{'ping ms':>9}{'bulk MB/s':>11}{'streams/s':>11}"
    )
    for side in sides:
        if not side.rounds:
            print(f"{side.name:16}  {side.note}")
            continue

        cells = [
            _cell(side, "connect_ms", 11, 2),
            _cell(side, "warm_connect_ms", 9, 2),
            _cell(side, "ping_ms", 9, 3),
            _cell(side, "bulk_mbps", 11, 1),
            _cell(side, "streams_per_second", 11, 0),
        ]
        note = f"  ({side.note})" if side.note else ""
        print(f"{side.name:16}{''.join(cells)}{note}")
    for metric, value in ratios.items():
        print(f"{neonet.name} vs py-libp2p, {metric}: {value:.2f}x (median of per-round ratios)")
    for metric, value in other_ratios.items():
        print(f"{sides[1].name} vs py-libp2p, {metric}: {value:.2f}x")
    for metric, value in backend_ratios.items():
        print(f"neonet native vs pure, {metric}: {value:.2f}x")
    print("connect: first dial of a fresh dialer process; warm: later dials in that process")
    print(
        "targets: connect < 5 ms, ping < 0.25 ms, bulk >= 5x py-libp2p, streams/s >= 10x py-libp2p"
    )
