"""``neonet bench core``: the Rust core against its pure-Python twins, side by side.

Each hot path (routing table, gossip fan-out and caches, ledger verification) has a
module ``neonet.bench.core_<part>`` with ``run(quick) -> list[Measurement]``. A
measurement times the same operations on the pure and the native backend in one
process, alternating rounds (pure, native, pure, native, ...) so a noisy moment on a
shared machine hits both alike; the ratio is taken per round and the median printed.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

# The parts, in the order they are printed; each names a module in neonet.bench.
PARTS = ("core_routing", "core_gossip", "core_router", "core_ledger", "core_datapath")


@dataclass(frozen=True, slots=True)
class Measurement:
    """One benchmark case: operations per second on each backend and their ratio."""

    case: str  # what was timed, e.g. "closest(20) over a 10,000-peer table"
    unit: str  # what one operation is, e.g. "lookups"
    pure_per_second: float
    native_per_second: float
    ratio: float  # median of the per-round native/pure ratios
    target_ratio: float | None = None
    extra: dict[str, float] = field(default_factory=dict)  # e.g. {"native_blocks_per_second": ...}

    @property
    def met(self) -> bool | None:
        return None if self.target_ratio is None else self.ratio >= self.target_ratio


def compare(
    case: str,
    unit: str,
    operations: int,
    pure: Callable[[], object],
    native: Callable[[], object],
    *,
    rounds: int,
    target_ratio: float | None = None,
) -> Measurement:
    """Time ``pure()`` and ``native()`` (each doing ``operations`` operations) in turns.

    Set-up belongs outside the callables; each call must do the same work every round.
    """
    pure_rates: list[float] = []
    native_rates: list[float] = []
    for _ in range(rounds):
        for runner, rates in ((pure, pure_rates), (native, native_rates)):
            started = time.perf_counter()
            runner()
            elapsed = time.perf_counter() - started
            rates.append(operations / elapsed if elapsed > 0 else float("inf"))
    ratios = [n / p for n, p in zip(native_rates, pure_rates, strict=True)]
    return Measurement(
        case=case,
        unit=unit,
        pure_per_second=statistics.median(pure_rates),
        native_per_second=statistics.median(native_rates),
        ratio=statistics.median(ratios),
        target_ratio=target_ratio,
    )


def run(quick: bool) -> list[Measurement]:
    results: list[Measurement] = []
    for part in PARTS:
        module = import_module(f"neonet.bench.{part}")
        results.extend(module.run(quick))
    return results


def _format_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def main(*, quick: bool, as_json: bool) -> None:
    from neonet.core import backend

    if not backend.NATIVE_AVAILABLE:
        raise SystemExit("neonet bench core needs neonet._native: build it with `maturin develop`")
    results = run(quick)
    if as_json:
        document: dict[str, Any] = {
            "quick": quick,
            "cases": [
                {
                    "case": m.case,
                    "unit": m.unit,
                    "pure_per_second": m.pure_per_second,
                    "native_per_second": m.native_per_second,
                    "ratio": m.ratio,
                    "target_ratio": m.target_ratio,
                    "met": m.met,
                    **m.extra,
                }
                for m in results
            ],
        }
        print(json.dumps(document, indent=2))
        return
    print(f"{'case':<58} {'pure/s':>12} {'native/s':>12} {'ratio':>8} {'target':>8}")
    for m in results:
        target = "" if m.target_ratio is None else f">={m.target_ratio:g}x"
        verdict = {True: " met", False: " NOT met", None: ""}[m.met]
        print(
            f"{m.case:<58} {_format_rate(m.pure_per_second):>12}"
            f" {_format_rate(m.native_per_second):>12} {m.ratio:>7.1f}x {target:>8}{verdict}"
        )
        for key, value in m.extra.items():
            print(f"    {key}: {_format_rate(value)}")
