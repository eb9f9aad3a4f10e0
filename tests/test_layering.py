"""Imports only point down the layers (ARCHITECTURE.md), and the sans-I/O layers do no I/O.

core < proto < net < services < apps < the top (node, cli, bench, the package itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "neonet"
LAYERS = {"core": 0, "proto": 1, "net": 2, "services": 3, "apps": 4}
TOP = 5
# Sans-I/O layers may not touch the clock, randomness, sockets or an event loop.
FORBIDDEN_IN_SANS_IO = {"trio", "socket", "asyncio", "time", "random", "selectors", "threading"}


def _layer_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return LAYERS[parts[1]]
    if len(parts) >= 2 and parts[1] in ("_native", "_version"):
        return 0
    return TOP


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        found.append((".".join(relative.parts).removesuffix(".__init__"), path))
    return found


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                names.append(".".join([*base, node.module or ""]).rstrip("."))
            elif node.module:
                names.append(node.module)
                if node.module == "neonet":
                    names.extend(f"neonet.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_down(module: str, path: Path) -> None:
    own = _layer_of(module)
    upward = [
        name
        for name in _imports(path, module)
        if name.startswith("neonet.") and _layer_of(name) > own and name != "neonet._version"
    ]
    assert not upward, f"{module} (layer {own}) imports from higher layers: {upward}"
    if own <= LAYERS["proto"]:
        io = [name for name in _imports(path, module) if name.split(".")[0] in FORBIDDEN_IN_SANS_IO]
        assert not io, f"{module} is sans-I/O but imports {io}"


def test_the_check_sees_a_violation() -> None:
    assert _layer_of("neonet.net.swarm") > _layer_of("neonet.proto.yamux")
    assert _layer_of("neonet.node") == TOP
