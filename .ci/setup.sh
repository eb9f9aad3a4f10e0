#!/usr/bin/env bash
# Idempotent set-up shared by the README's two commands and CI: Debian packages (when
# root), the Rust toolchain check, and .venv with NeoNet built from source (editable,
# with the native module) plus the dev tools. Source it from the repo root.
set -euo pipefail

NEONET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$NEONET_ROOT/.venv"
PYTHON_BIN=${PYTHON:-python3}

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
dpkg -s libgmp-dev >/dev/null 2>&1 || need_apt+=(libgmp-dev)  # py-libp2p's fastecdsa (interop tests)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)  # the NAT test (tests/nat), as root
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
"$PYTHON_BIN" -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install these Debian packages: ${need_apt[*]}" >&2
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: Rust is needed to build NeoNet's core: install it with rustup (https://rustup.rs)" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON_BIN" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi

# Rebuild when the Rust sources, the Python dependencies or the venv changed.
stamp="$VENV/.neonet-installed"
fingerprint=$(cat "$NEONET_ROOT/pyproject.toml" "$NEONET_ROOT/Cargo.toml" "$NEONET_ROOT"/Cargo.lock \
  $(find "$NEONET_ROOT/crates" -name '*.rs' -o -name Cargo.toml | sort) 2>/dev/null | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$fingerprint" ]; then
  echo "setup: building and installing NeoNet (editable, with the Rust core) into $VENV"
  "$VENV/bin/pip" install -q -e "$NEONET_ROOT[dev]"
  echo "$fingerprint" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
