"""Drive real libp2p implementations (py, rust, go, js) as interop peers.

Each implementation has a small peer program under ``tests/interop/peers/`` with one
command-line contract (see ``tests/interop/README.md``)::

    <peer> listen --transport tcp|ws [--ip IP] [--seed-hex HEX]   -> one JSON line
    <peer> dial --addr MA [--echo-bytes N] [--pings N] [--perf-upload N --perf-download M]
                [--streams N] [--seed-hex HEX]                      -> one JSON line

This module builds those peers (cached under ``~/.cache/neonet-interop/``, keyed by a
hash of their sources) and runs them from trio:

    argv = ensure_built("go-libp2p")                 # slow the first time: call it outside
                                                     # any per-test timeout
    async with start_listener("go-libp2p", "tcp") as peer:
        result = await run_dialer("rust-libp2p", peer.addrs[0], echo_bytes=1 << 20)

Command line (for CI and by hand)::

    python tests/interop/harness.py build [NAME...]          # prebuild (default: all)
    python tests/interop/harness.py pair LISTENER DIALER [--transport ws] [--echo-bytes N] ...

Only the standard library and trio are used.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

import trio

IMPLEMENTATIONS: Final = ("py-libp2p", "rust-libp2p", "go-libp2p", "js-libp2p")
TRANSPORTS: Final = ("tcp", "ws")

PEERS_DIR: Final = Path(__file__).resolve().parent / "peers"
CACHE_DIR: Final = Path(
    os.environ.get("NEONET_INTEROP_CACHE", str(Path.home() / ".cache" / "neonet-interop"))
)

PY_LIBP2P_VERSION: Final = "0.8.1"
PY_VENV: Final = CACHE_DIR / f"py-libp2p-{PY_LIBP2P_VERSION}"
RUST_TARGET_DIR: Final = CACHE_DIR / "rust-target"
BIN_DIR: Final = CACHE_DIR / "bin"

#: Parallel jobs for cargo/go builds (the machines have 2 cores shared with others).
BUILD_JOBS: Final = os.environ.get("NEONET_INTEROP_JOBS", "2")

LISTEN_TIMEOUT: Final = 30.0  # seconds until a listener must have printed its address
DIAL_TIMEOUT: Final = 120.0  # seconds for one whole dialer run
STOP_GRACE: Final = 5.0  # seconds a listener gets to exit after stdin closes

_STDERR_TAIL: Final = 4000


class InteropError(RuntimeError):
    """Something went wrong building or running an interop peer."""


class ToolchainMissing(InteropError):
    """A compiler, runtime or system library needed to build a peer is not installed."""


class PeerFailed(InteropError):
    """A peer process failed; ``stderr`` holds the tail of its log, ``result`` its JSON."""

    def __init__(self, message: str, *, stderr: str = "", result: dict[str, Any] | None = None):
        full = message if not stderr else f"{message}\n--- peer stderr (tail) ---\n{stderr}"
        super().__init__(full)
        self.stderr = stderr
        self.result = result


# --------------------------------------------------------------------------- building


def _check_name(name: str) -> None:
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {name!r}; expected one of {IMPLEMENTATIONS}")


def _source_files(root: Path, patterns: Iterable[str]) -> list[Path]:
    files: set[Path] = set()
    for pattern in patterns:
        files.update(p for p in root.glob(pattern) if p.is_file())
    return sorted(files)


def _fingerprint(root: Path, patterns: Iterable[str], *extra: str) -> str:
    """Hash of the peer's sources (relative paths and contents) plus ``extra`` strings."""
    digest = hashlib.sha256()
    for path in _source_files(root, patterns):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    for item in extra:
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()[:16]


def _require_tool(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if found is None and tool == "cargo":
        candidate = Path.home() / ".cargo" / "bin" / "cargo"
        found = str(candidate) if candidate.exists() else None
    if found is None:
        raise ToolchainMissing(f"`{tool}` not found on PATH: {hint}")
    return found


def _run_build(argv: list[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> None:
    """Run one build step, echoing nothing unless it fails."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-_STDERR_TAIL:]
        raise InteropError(f"build step failed ({proc.returncode}): {' '.join(argv)}\n{tail}")


@contextlib.contextmanager
def _build_lock(name: str) -> Iterator[None]:
    """Serialize builds of one peer across processes (e.g. parallel test workers)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install_binary(built: Path, prefix: str, key: str) -> Path:
    """Copy a fresh build to ``BIN_DIR/<prefix>-<key>`` and drop older copies."""
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    target = BIN_DIR / f"{prefix}-{key}"
    tmp = target.with_suffix(".tmp")
    shutil.copy2(built, tmp)
    tmp.replace(target)
    # Other checkouts (git worktrees) may still use their binaries: only old ones go.
    for old in BIN_DIR.glob(f"{prefix}-*"):
        if old != target and time.time() - old.stat().st_mtime > 86_400:
            old.unlink(missing_ok=True)
    return target


def _build_py() -> list[str]:
    src = PEERS_DIR / "py"
    key = _fingerprint(src, ["requirements.txt", "constraints.txt"], sys.version)
    python = PY_VENV / "bin" / "python"
    stamp = PY_VENV / ".neonet-stamp"
    argv = [str(python), str(src / "peer.py")]
    if python.exists() and stamp.exists() and stamp.read_text().strip() == key:
        return argv
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        raise ToolchainMissing(
            "py-libp2p needs a C compiler (fastecdsa builds from source): "
            "apt-get install build-essential"
        )
    gmp_headers = [Path("/usr/include/gmp.h"), *Path("/usr/include").glob("*/gmp.h")]
    if not any(p.exists() for p in gmp_headers):
        raise ToolchainMissing(
            "py-libp2p needs the GMP headers (fastecdsa builds from source): "
            "apt-get install libgmp-dev"
        )
    if PY_VENV.exists():
        shutil.rmtree(PY_VENV)
    _run_build([sys.executable, "-m", "venv", str(PY_VENV)], cwd=src)
    _run_build(
        [
            str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
            "-r", "requirements.txt", "-c", "constraints.txt",
        ],
        cwd=src,
    )  # fmt: skip
    stamp.write_text(key + "\n")
    return argv


def _build_rust() -> list[str]:
    src = PEERS_DIR / "rust"
    cargo = _require_tool("cargo", "install Rust with rustup (https://rustup.rs)")
    key = _fingerprint(src, ["Cargo.toml", "Cargo.lock", "src/**/*.rs"])
    binary = BIN_DIR / f"rust-peer-{key}"
    if binary.exists():
        return [str(binary)]
    # One target directory per checkout: cargo decides freshness by file times, so a
    # target shared by two worktrees hands one the other's binary (seen with git
    # worktrees building different peers). A new one is seeded from the shared one.
    target = RUST_TARGET_DIR / hashlib.sha256(str(src).encode()).hexdigest()[:12]
    if not target.exists() and (RUST_TARGET_DIR / "release").exists():
        shutil.copytree(RUST_TARGET_DIR / "release", target / "release", symlinks=True)
    _run_build(
        [cargo, "build", "--release", "--locked", "-j", BUILD_JOBS],
        cwd=src,
        env={"CARGO_TARGET_DIR": str(target)},
    )
    return [str(_install_binary(target / "release" / "rust-peer", "rust-peer", key))]


def _build_go() -> list[str]:
    src = PEERS_DIR / "go"
    go = _require_tool("go", "install Go >= 1.26 (go-libp2p v0.51.0 requires it)")
    key = _fingerprint(src, ["go.mod", "go.sum", "*.go"])
    binary = BIN_DIR / f"go-peer-{key}"
    if binary.exists():
        return [str(binary)]
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    out = BIN_DIR / "go-peer.build"
    _run_build(
        [go, "build", "-mod=readonly", "-trimpath", "-p", BUILD_JOBS, "-o", str(out), "."],
        cwd=src,
    )
    try:
        return [str(_install_binary(out, "go-peer", key))]
    finally:
        out.unlink(missing_ok=True)


def _node_major(node: str) -> int:
    proc = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"v(\d+)\.", proc.stdout.strip())
    if proc.returncode != 0 or match is None:
        raise ToolchainMissing(f"cannot tell the Node.js version: {proc.stdout}{proc.stderr}")
    return int(match.group(1))


def _build_js() -> list[str]:
    src = PEERS_DIR / "js"
    node = _require_tool("node", "install Node.js >= 20")
    major = _node_major(node)
    if major < 20:
        raise ToolchainMissing(f"js-libp2p 3.x needs Node.js >= 20, found v{major}")
    key = _fingerprint(src, ["package.json", "package-lock.json"], f"node{major}")
    stamp = src / "node_modules" / ".neonet-stamp"
    if not (stamp.exists() and stamp.read_text().strip() == key):
        npm = _require_tool("npm", "install npm (it comes with Node.js)")
        _run_build(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=src,
            env={"npm_config_update_notifier": "false"},
        )
        stamp.write_text(key + "\n")
    argv = [node]
    if major < 22:
        # Node 20 has no global WebSocket (the /ws dialer needs it) unless this flag.
        argv.append("--experimental-websocket")
    # The polyfill adds Promise.withResolvers (Node 22+) before libp2p loads.
    argv += ["--import", (src / "polyfill.mjs").as_uri(), str(src / "peer.mjs")]
    return argv


_BUILDERS: Final = {
    "py-libp2p": _build_py,
    "rust-libp2p": _build_rust,
    "go-libp2p": _build_go,
    "js-libp2p": _build_js,
}


def ensure_built(name: str) -> list[str]:
    """Build or install the peer for ``name`` if its sources changed; return its argv prefix.

    Blocking, and slow when cold (rust ~3 min, go ~1.5 min on 2 cores): call it before
    any per-test timeout starts. Raises :class:`ToolchainMissing` when a toolchain is
    not installed and :class:`InteropError` when a build fails.
    """
    _check_name(name)
    with _build_lock(name):
        return _BUILDERS[name]()


# --------------------------------------------------------------------------- running


def _read_tail(path: Path, limit: int = _STDERR_TAIL) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _stderr_file(label: str) -> tuple[IO[bytes], Path]:
    fd, name = tempfile.mkstemp(prefix=f"neonet-interop-{label}-", suffix=".log")
    return os.fdopen(fd, "wb"), Path(name)


class ListeningPeer:
    """A running ``<peer> listen`` process; an async context manager that stops it."""

    def __init__(
        self,
        name: str,
        transport: str,
        process: trio.Process,
        peer_id: str,
        addrs: list[str],
        stderr_path: Path,
    ) -> None:
        self.name = name
        self.transport = transport
        self.process = process
        self.peer_id = peer_id
        self.addrs = addrs
        self.stderr_path = stderr_path
        self.returncode: int | None = None
        #: The whole line the peer printed (modes may add fields to peer_id and addrs).
        self.info: dict[str, Any] = {}
        self._final_stderr: str | None = None

    @property
    def addr(self) -> str:
        """The first listen address (with ``/p2p/<peer id>``)."""
        return self.addrs[0]

    def stderr(self) -> str:
        """The tail of the peer's log (kept after the peer stopped)."""
        if self._final_stderr is not None:
            return self._final_stderr
        return _read_tail(self.stderr_path)

    async def aclose(self) -> None:
        """Close stdin, give the peer ``STOP_GRACE`` s to exit, then SIGTERM, then kill."""
        if self.returncode is not None:
            return
        with trio.CancelScope(shield=True):
            self.returncode = await _stop_process(self.process)
            self._final_stderr = _read_tail(self.stderr_path)
            self.stderr_path.unlink(missing_ok=True)

    async def __aenter__(self) -> ListeningPeer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<ListeningPeer {self.name} {self.transport} {self.peer_id}>"


async def _stop_process(process: trio.Process) -> int:
    if process.stdin is not None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await process.stdin.aclose()
    for action in (None, signal.SIGTERM, signal.SIGKILL):
        if action is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(action)
        with trio.move_on_after(STOP_GRACE if action is None else 3.0):
            return await process.wait()
    return await process.wait()


async def _start(
    name: str,
    transport: str,
    ip: str,
    seed_hex: str | None,
    time_limit: float,
    argv_prefix: list[str] | None,
) -> ListeningPeer:
    _check_name(name)
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; expected one of {TRANSPORTS}")
    prefix = argv_prefix if argv_prefix is not None else ensure_built(name)
    argv = [*prefix, "listen", "--transport", transport, "--ip", ip]
    if seed_hex is not None:
        argv += ["--seed-hex", seed_hex]
    return await _start_argv(name, transport, argv, time_limit)


async def _start_argv(
    name: str, transport: str, argv: list[str], time_limit: float
) -> ListeningPeer:
    """Start ``argv``, wait for its ``{"peer_id", "addrs"}`` line; the process keeps running."""
    err_file, err_path = _stderr_file(f"{name}-listen")
    try:
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err_file
        )
    except BaseException:
        err_file.close()
        err_path.unlink(missing_ok=True)
        raise
    err_file.close()  # the child holds its own descriptor
    try:
        line = b""
        assert process.stdout is not None
        with trio.move_on_after(time_limit) as scope:
            while b"\n" not in line:
                chunk = await process.stdout.receive_some(65536)
                if not chunk:
                    break
                line += chunk
        if scope.cancelled_caught:
            raise PeerFailed(
                f"{name} listener printed no address within {time_limit:.0f} s",
                stderr=_read_tail(err_path),
            )
        text = line.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        try:
            info = json.loads(text)
            peer_id = str(info["peer_id"])
            addrs = [str(a) for a in info["addrs"]]
        except (ValueError, KeyError, TypeError) as exc:
            await trio.sleep(0.2)  # let a dying peer finish its stderr
            raise PeerFailed(
                f"{name} listener did not print its address (got {text[:200]!r})",
                stderr=_read_tail(err_path),
            ) from exc
        if not addrs:
            raise PeerFailed(f"{name} listener reported no address", stderr=_read_tail(err_path))
    except BaseException:
        with trio.CancelScope(shield=True):
            await _stop_process(process)
        err_path.unlink(missing_ok=True)
        raise
    peer = ListeningPeer(name, transport, process, peer_id, addrs, err_path)
    if isinstance(info, dict):
        peer.info = info
    return peer


class _ListenerStarter:
    """What :func:`start_listener` returns: awaitable, or usable with ``async with``."""

    def __init__(self, *args: Any) -> None:
        self._args = args
        self._peer: ListeningPeer | None = None

    def __await__(self) -> Generator[Any, None, ListeningPeer]:
        return _start(*self._args).__await__()

    async def __aenter__(self) -> ListeningPeer:
        self._peer = await _start(*self._args)
        return self._peer

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._peer is not None:
            await self._peer.aclose()


def start_listener(
    name: str,
    transport: str = "tcp",
    ip: str = "127.0.0.1",
    *,
    seed_hex: str | None = None,
    time_limit: float = LISTEN_TIMEOUT,
    argv_prefix: list[str] | None = None,
) -> _ListenerStarter:
    """Start ``<name> listen`` and wait (at most ``time_limit`` s) for its address line.

    Use as ``async with start_listener("go-libp2p", "ws") as peer:`` or
    ``peer = await start_listener(...)`` followed by ``async with peer:`` /
    ``await peer.aclose()``. The process always stops on exit (stdin closed, then
    SIGTERM, then SIGKILL). Builds the peer first if needed; pass ``argv_prefix``
    (from :func:`ensure_built`) to skip even the source hashing.
    """
    return _ListenerStarter(name, transport, ip, seed_hex, time_limit, argv_prefix)


def dialer_argv(addr: str, options: Mapping[str, int | str | None]) -> list[str]:
    """``dial --addr ADDR`` plus ``--flag value`` per option (``echo_bytes``: ``--echo-bytes``)."""
    argv = ["dial", "--addr", addr]
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            raise TypeError(f"option {key} must be an int or a string, not a bool")
        argv += ["--" + key.replace("_", "-"), str(value)]
    return argv


async def run_dialer(
    name: str,
    addr: str,
    *,
    time_limit: float = DIAL_TIMEOUT,
    argv_prefix: list[str] | None = None,
    **options: int | str | None,
) -> dict[str, Any]:
    """Run ``<name> dial --addr ADDR [options]`` and return its JSON report.

    Options map to flags: ``echo_bytes``, ``pings``, ``perf_upload``, ``perf_download``,
    ``streams``, ``seed_hex``. Raises :class:`PeerFailed` (with the peer's stderr and,
    if any, its ``{"ok": false, "error": ...}`` report) when the peer exits non-zero,
    prints no JSON, reports ``ok: false`` or runs longer than ``time_limit`` seconds
    (the process is then killed).
    """
    _check_name(name)
    prefix = argv_prefix if argv_prefix is not None else ensure_built(name)
    return await _run_json(name, [*prefix, *dialer_argv(addr, options)], time_limit)


async def _run_json(name: str, argv: list[str], time_limit: float) -> dict[str, Any]:
    """Run a one-shot peer command and return its JSON report (see :func:`run_dialer`)."""
    err_file, err_path = _stderr_file(f"{name}-dial")
    proc: subprocess.CompletedProcess[bytes] | None = None
    try:
        with trio.move_on_after(time_limit):
            proc = await trio.run_process(
                argv,
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                stderr=err_file,
                check=False,
            )
        err_file.close()
        stderr = _read_tail(err_path)
    finally:
        err_file.close()
        err_path.unlink(missing_ok=True)
    if proc is None:
        raise PeerFailed(f"{name} dialer did not finish within {time_limit:.0f} s", stderr=stderr)
    result: dict[str, Any] | None = None
    for raw in reversed(proc.stdout.decode("utf-8", "replace").splitlines()):
        if raw.strip().startswith("{"):
            with contextlib.suppress(ValueError):
                parsed = json.loads(raw)
                if isinstance(parsed, dict):
                    result = parsed
                    break
    if result is None:
        raise PeerFailed(
            f"{name} dialer printed no JSON (exit code {proc.returncode})", stderr=stderr
        )
    if proc.returncode != 0 or result.get("ok") is not True:
        raise PeerFailed(
            f"{name} dialer failed (exit code {proc.returncode}): "
            f"{result.get('error', 'no error given')}",
            stderr=stderr,
            result=result,
        )
    return result


# --------------------------------------------------------------------------- pubsub peers

#: Implementations with a pubsub peer (the JSON-lines contract in tests/interop/README.md).
PUBSUB_IMPLEMENTATIONS: Final = IMPLEMENTATIONS


def pubsub_argv(name: str) -> list[str]:
    """The command that starts ``name``'s pubsub peer (built first if needed)."""
    _check_name(name)
    prefix = ensure_built(name)
    if name == "py-libp2p":
        return [prefix[0], str(PEERS_DIR / "py" / "pubsub_peer.py")]
    if name == "js-libp2p":  # the prefix ends with peer.mjs
        return [*prefix[:-1], str(PEERS_DIR / "js" / "pubsub.mjs")]
    return [*prefix, "pubsub"]


class PubsubPeer:
    """A running pubsub peer: send commands, wait for the JSON events it prints."""

    def __init__(self, name: str, process: trio.Process, stderr_path: Path) -> None:
        self.name = name
        self.process = process
        self.stderr_path = stderr_path
        self.peer_id = ""
        self.addrs: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._changed = trio.Event()

    @property
    def addr(self) -> str:
        return self.addrs[0]

    def stderr(self) -> str:
        return _read_tail(self.stderr_path)

    async def _read_events(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        while True:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                self._changed.set()
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    self.events.append(event)
            self._changed.set()
            self._changed = trio.Event()

    async def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps(command).encode() + b"\n")

    async def wait_event(
        self, event: str, time_limit: float = 30.0, **match: Any
    ) -> dict[str, Any]:
        """The first event named ``event`` whose fields include ``match``; PeerFailed if none."""
        seen = 0
        with trio.move_on_after(time_limit):
            while True:
                for found in self.events[seen:]:
                    if found.get("event") == "error":
                        raise PeerFailed(f"{self.name}: {found}", stderr=self.stderr())
                    if found.get("event") == event and all(
                        found.get(k) == v for k, v in match.items()
                    ):
                        return found
                seen = len(self.events)
                if self.process.returncode is not None:
                    break
                await self._changed.wait()
        raise PeerFailed(
            f"{self.name} printed no {event} {match} within {time_limit:.0f} s",
            stderr=self.stderr(),
        )

    async def command(self, cmd: str, reply: str, **fields: Any) -> dict[str, Any]:
        """Send ``cmd`` and wait for its ``reply`` event (one command at a time)."""
        start = len(self.events)
        await self.send(cmd=cmd, **fields)
        seen = start
        with trio.move_on_after(30):
            while True:
                for found in self.events[seen:]:
                    if found.get("event") == "error":
                        raise PeerFailed(f"{self.name}: {found}", stderr=self.stderr())
                    if found.get("event") == reply:
                        return found
                seen = len(self.events)
                await self._changed.wait()
        raise PeerFailed(f"{self.name}: no reply to {cmd}", stderr=self.stderr())

    def messages(self, topic: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "message" and e.get("topic") == topic]


@contextlib.asynccontextmanager
async def start_pubsub_peer(
    name: str, *, ip: str = "127.0.0.1", argv: list[str] | None = None
) -> Any:
    """Start ``name``'s pubsub peer; it stops (stdin closed, then signals) on exit."""
    command = argv if argv is not None else pubsub_argv(name)
    err_file, err_path = _stderr_file(f"{name}-pubsub")
    try:
        process = await trio.lowlevel.open_process(
            [*command, "--ip", ip], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err_file
        )
    finally:
        err_file.close()
    peer = PubsubPeer(name, process, err_path)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer._read_events)
            try:
                listening = await peer.wait_event("listening", LISTEN_TIMEOUT)
                peer.peer_id = str(listening["peer_id"])
                peer.addrs = [str(a) for a in listening["addrs"]]
                yield peer
            finally:
                with trio.CancelScope(shield=True):
                    await _stop_process(process)
                nursery.cancel_scope.cancel()
    finally:
        err_path.unlink(missing_ok=True)


def _mode_argv(mode: str, options: Mapping[str, int | str | None]) -> list[str]:
    argv = [mode]
    for key, value in options.items():
        if value is not None:
            argv += ["--" + key.replace("_", "-"), str(value)]
    return argv


async def start_mode(
    name: str,
    mode: str,
    *,
    time_limit: float = LISTEN_TIMEOUT,
    argv_prefix: list[str] | None = None,
    **options: int | str | None,
) -> ListeningPeer:
    """Start a long-running peer mode other than ``listen`` (e.g. go's ``relay`` or
    ``relay-reserve``) that prints one ``{"peer_id", "addrs", ...}`` line and serves
    until stdin closes. Stop it with ``async with`` / ``aclose()`` like a listener."""
    _check_name(name)
    prefix = argv_prefix if argv_prefix is not None else ensure_built(name)
    return await _start_argv(name, mode, [*prefix, *_mode_argv(mode, options)], time_limit)


async def run_mode(
    name: str,
    mode: str,
    *,
    time_limit: float = DIAL_TIMEOUT,
    argv_prefix: list[str] | None = None,
    **options: int | str | None,
) -> dict[str, Any]:
    """Run a one-shot peer mode other than ``dial`` (e.g. go's ``relay-dial``); its JSON."""
    _check_name(name)
    prefix = argv_prefix if argv_prefix is not None else ensure_built(name)
    return await _run_json(name, [*prefix, *_mode_argv(mode, options)], time_limit)


# --------------------------------------------------------------------------- kad peers

#: Implementations with a Kademlia peer program (JSON commands on stdin, answers on stdout).
KAD_IMPLEMENTATIONS: Final = ("py-libp2p", "rust-libp2p")


def kad_peer_argv(name: str) -> list[str]:
    """The command that starts ``name``'s Kademlia peer (building it if needed; blocking)."""
    if name == "py-libp2p":
        python = ensure_built(name)[0]
        return [python, str(PEERS_DIR / "py" / "kad_peer.py")]
    if name == "rust-libp2p":
        return [*ensure_built(name), "kad"]
    raise ValueError(f"no kad peer for {name!r}; expected one of {KAD_IMPLEMENTATIONS}")


class KadPeer(ListeningPeer):
    """A running Kademlia peer: ``await peer.command("get", key=...)`` returns its answer.

    Every command is one JSON line in and one out (see ``peers/py/kad_peer.py``); an
    answer with ``"ok": false`` raises ``PeerFailed``.
    """

    def __init__(self, *args: Any, leftover: bytes = b"") -> None:
        super().__init__(*args)
        self._buffer = leftover
        self._lock = trio.Lock()

    async def command(self, cmd: str, *, time_limit: float = 60.0, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        async with self._lock:
            line = (json.dumps({"cmd": cmd, **args}) + "\n").encode()
            await self.process.stdin.send_all(line)
            with trio.move_on_after(time_limit):
                while b"\n" not in self._buffer:
                    chunk = await self.process.stdout.receive_some(65536)
                    if not chunk:
                        break
                    self._buffer += chunk
            if b"\n" not in self._buffer:
                raise PeerFailed(
                    f"{self.name} kad peer gave no answer to {cmd}", stderr=self.stderr()
                )
            answer, self._buffer = self._buffer.split(b"\n", 1)
        result: dict[str, Any] = json.loads(answer)
        if not result.get("ok"):
            raise PeerFailed(
                f"{self.name} kad {cmd} failed: {result.get('error')}",
                stderr=self.stderr(),
                result=result,
            )
        return result


@contextlib.asynccontextmanager
async def start_kad_peer(
    name: str,
    *,
    argv: list[str] | None = None,
    extra_args: Iterable[str] = (),
    time_limit: float = LISTEN_TIMEOUT,
) -> AsyncIterator[KadPeer]:
    """Start ``name``'s Kademlia peer on 127.0.0.1; it stops when the block ends."""
    command = [*(argv if argv is not None else kad_peer_argv(name)), *extra_args]
    err_file, err_path = _stderr_file(f"{name}-kad")
    try:
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err_file
        )
    finally:
        err_file.close()
    peer: KadPeer | None = None
    try:
        buffer = b""
        assert process.stdout is not None
        with trio.move_on_after(time_limit):
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some(65536)
                if not chunk:
                    break
                buffer += chunk
        line, _, rest = buffer.partition(b"\n")
        try:
            info = json.loads(line)
            peer_id, addrs = str(info["peer_id"]), [str(a) for a in info["addrs"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise PeerFailed(
                f"{name} kad peer did not print its address (got {line[:200]!r})",
                stderr=_read_tail(err_path),
            ) from exc
        peer = KadPeer(name, "tcp", process, peer_id, addrs, err_path, leftover=rest)
        yield peer
    finally:
        if peer is not None:
            await peer.aclose()
        else:
            with trio.CancelScope(shield=True):
                await _stop_process(process)
            err_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- command line


def _cmd_build(names: list[str]) -> int:
    failed = False
    for name in names or list(IMPLEMENTATIONS):
        t0 = time.monotonic()
        try:
            argv = ensure_built(name)
        except InteropError as exc:
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"{name}: ready in {time.monotonic() - t0:.1f} s: {' '.join(argv)}", flush=True)
    return 1 if failed else 0


async def _pair(args: argparse.Namespace) -> dict[str, Any]:
    async with start_listener(args.listener, args.transport, args.ip) as peer:
        return await run_dialer(
            args.dialer,
            peer.addr,
            pings=args.pings,
            echo_bytes=args.echo_bytes,
            perf_upload=args.perf_upload,
            perf_download=args.perf_download,
            streams=args.streams,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="harness.py", description="Build and run NeoNet's libp2p interop peers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build/install peers (default: all)")
    build.add_argument("names", nargs="*", metavar="NAME", help=", ".join(IMPLEMENTATIONS))
    pair = sub.add_parser("pair", help="run one listener and one dialer against each other")
    pair.add_argument("listener", choices=IMPLEMENTATIONS)
    pair.add_argument("dialer", choices=IMPLEMENTATIONS)
    pair.add_argument("--transport", choices=TRANSPORTS, default="tcp")
    pair.add_argument("--ip", default="127.0.0.1")
    pair.add_argument("--pings", type=int)
    pair.add_argument("--echo-bytes", type=int)
    pair.add_argument("--perf-upload", type=int)
    pair.add_argument("--perf-download", type=int)
    pair.add_argument("--streams", type=int)
    args = parser.parse_args(argv)
    if args.command == "build":
        unknown = [n for n in args.names if n not in IMPLEMENTATIONS]
        if unknown:
            parser.error(f"unknown implementation(s) {unknown}; expected {IMPLEMENTATIONS}")
        return _cmd_build(list(args.names))
    for name in {args.listener, args.dialer}:
        ensure_built(name)
    try:
        result = trio.run(_pair, args)
    except PeerFailed as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
