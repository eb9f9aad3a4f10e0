#!/usr/bin/env bash
# Sets up NeoNet (venv, Rust core) if needed, then starts a small local NeoNet: SSNs in two
# regions (subprocesses) and named clients that find each other by name, signal through
# the SSNs and connect directly. Extra arguments go to `neonet demo` (see `neonet demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/setup.sh
exec neonet demo "$@"
