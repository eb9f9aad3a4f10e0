"""The cyclic garbage collector's setting for NeoNet's long-running processes.

A library never touches the collector on its own: an embedding application owns that
choice. The processes NeoNet itself starts and keeps running (``neonet ssn serve``,
``neonet bank validator``, and the benchmarks' server and load-generator processes) call
``settle_long_running_process`` once their set-up is done.

Why: CPython's default gen-0 threshold (700 allocations) makes the collector run many
times a second in a process that allocates a few tracked objects per message, and each
full collection walks every long-lived object (routing state, ledgers, wallets'
certified chains). Measured: about a quarter of an SSN's CPU per signal, and the whole
p99 tail of ``neonet bench bank`` (docs/benchmarks.md, session 5). Reference counting
still frees nearly everything at once; only cyclic garbage waits longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # allocations between gen-0 collections (CPython's default: 700)
OLDER_THRESHOLD = 20  # gen-0 passes per gen-1 pass, and gen-1 passes per full pass


def settle_long_running_process() -> None:
    """Move everything that exists now into the permanent generation (``gc.freeze``, so
    later collections never walk it) and make collections rarer."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
