"""Differential testing helper: one engine per backend, driven in lockstep.

``Twin(pure_engine, native_engine)`` forwards every method call and attribute read to
both engines and requires the same outcome: equal results (events, bytes, statistics)
or the same exception class, text and wire code. It then returns (or raises) the pure
engine's outcome, so any test written for one engine runs unchanged on a twin and
becomes a differential test of the two backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neonet.core import backend as backend_module

PURE = backend_module.implementation("pure")
NATIVE = backend_module.implementation("native")
BACKEND_NAMES = ("pure", "native")


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result) or ("error", (class, text, code))."""
    try:
        return "ok", call()
    except Exception as error:  # the comparison itself decides what is acceptable
        return "error", (type(error), str(error), getattr(error, "code", None), error)


def same_outcome(pure: tuple[str, Any], native: tuple[str, Any], what: str) -> None:
    if pure[0] == "error" or native[0] == "error":
        assert pure[0] == native[0], f"{what}: pure {pure} but native {native}"
        assert pure[1][:3] == native[1][:3], f"{what}: pure {pure[1][:3]} native {native[1][:3]}"
        return
    assert pure[1] == native[1], f"{what}: pure {pure[1]!r} but native {native[1]!r}"


class Twin:
    """A pure and a native engine that must behave identically (see the module docstring)."""

    def __init__(self, pure: Any, native: Any) -> None:
        self.pure = pure
        self.native = native

    def __getattr__(self, name: str) -> Any:
        pure_attribute = getattr(self.pure, name)
        if name.startswith("_"):
            return pure_attribute  # private state: only the pure twin has it
        if not callable(pure_attribute):
            same_outcome(("ok", pure_attribute), outcome(lambda: getattr(self.native, name)), name)
            return pure_attribute
        native_attribute = getattr(self.native, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            pure_result = outcome(lambda: pure_attribute(*args, **kwargs))
            native_result = outcome(lambda: native_attribute(*args, **kwargs))
            same_outcome(pure_result, native_result, name)
            if pure_result[0] == "error":
                raise pure_result[1][3]
            return pure_result[1]

        return call
