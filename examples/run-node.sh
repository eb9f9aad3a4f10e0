#!/usr/bin/env bash
# Sets up NeoNet (venv, Rust core) if needed, then runs a node on loopback that prints its
# addresses. Extra arguments go to `neonet run` (see `neonet run --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup.sh
exec neonet run "$@"
