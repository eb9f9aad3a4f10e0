"""The installed NeoNet version (from the wheel's metadata)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neonet")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
