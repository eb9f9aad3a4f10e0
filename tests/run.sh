#!/usr/bin/env bash
# The test command: sets up what it needs, then runs every check and test.
#   bash tests/run.sh         what CI runs: lint, types, Rust, Python on both backends, and
#                             interop with py-, rust-, go- and js-libp2p (peers built and
#                             cached in ~/.cache/neonet-interop, about 4 minutes cold)
#   bash tests/run.sh --fast  interop with py-libp2p only (no rust/go/js builds)
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup.sh

fast=0
[ "${1:-}" = "--fast" ] && fast=1

step() { printf '\n== %s\n' "$*"; }

step "ruff"
ruff check python tests examples
ruff format --check python tests examples

step "mypy --strict"
mypy
python -m mypy.stubtest neonet._native --mypy-config-file pyproject.toml

step "cargo fmt, clippy, test"
cargo fmt --all --check
cargo clippy --workspace --all-targets -q -- -D warnings

cargo test --workspace -q

step "interop peers"
if [ ! -f tests/interop/harness.py ]; then
  echo "no interop harness in this checkout"
elif [ "$fast" = 1 ]; then
  python tests/interop/harness.py build py-libp2p
  export NEONET_INTEROP="py-libp2p"
else
  python tests/interop/harness.py build
fi

step "pytest (native backend), then the suite again on the pure-Python backend"
python -m pytest -q -p no:cacheprovider
NEONET_PURE=1 python -m pytest -q -p no:cacheprovider -m "not interop and not scale"
