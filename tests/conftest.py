"""Shared fixtures: the backend fixture runs hot-path tests on both pure and native."""

from __future__ import annotations

import socket

import pytest

from neonet.core import backend as backend_module


@pytest.fixture(params=["pure", "native"])
def backend(request: pytest.FixtureRequest) -> backend_module.Implementation:
    """Each hot-path test runs once per backend; native must be built (CI always builds it)."""
    name = request.param
    if name == "native" and not backend_module.NATIVE_AVAILABLE:
        pytest.fail("neonet._native is not built: run `maturin develop` or `pip install -e .`")
    return backend_module.implementation(name)


def has_ipv6_loopback() -> bool:
    """Whether this machine can bind ::1 (IPv6 tests skip, saying so, where it cannot)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
