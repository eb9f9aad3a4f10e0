"""perf request framing and the server's parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from neonet.proto.perf import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    MAX_U64,
    PerfRequest,
    PerfServerState,
    decode_perf_request,
    encode_perf_request,
)


def test_request_encoding() -> None:
    assert encode_perf_request(0) == bytes(8)
    assert encode_perf_request(1 << 20) == bytes.fromhex("0000000000100000")
    assert encode_perf_request(MAX_U64) == b"\xff" * 8
    for bad in (-1, MAX_U64 + 1):
        with pytest.raises(LocalProtocolError):
            encode_perf_request(bad)
    assert decode_perf_request(encode_perf_request(5), limit=5) == 5
    with pytest.raises(DecodeError):
        decode_perf_request(b"\x00" * 7, limit=5)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decode_perf_request(encode_perf_request(6), limit=5)


def test_server_state_request_then_upload() -> None:
    state = PerfServerState()
    assert state.receive_data(encode_perf_request(1000)[:3]) is None
    assert state.receive_data(encode_perf_request(1000)[3:] + b"up") == PerfRequest(1000)
    assert state.receive_data(b"load") is None
    assert state.request == PerfRequest(1000)
    assert state.upload_bytes == 6
    assert state.eof() == 1000
    with pytest.raises(LocalProtocolError):
        state.receive_data(b"late")


def test_server_state_limit() -> None:
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        PerfServerState().receive_data(encode_perf_request(DEFAULT_MAX_DOWNLOAD_BYTES + 1))
    state = PerfServerState(max_download_bytes=MAX_U64)
    assert state.receive_data(encode_perf_request(MAX_U64)) == PerfRequest(MAX_U64)


def test_server_state_eof_before_header() -> None:
    state = PerfServerState()
    state.receive_data(b"\x00\x00")
    with pytest.raises(RemoteProtocolError, match="2 of 8"):
        state.eof()


@settings(max_examples=300)
@given(st.binary(max_size=200), st.data())
def test_random_bytes_split_matches_whole(data: bytes, draw: st.DataObject) -> None:
    def run(chunks: list[bytes]) -> tuple[object, ...]:
        state = PerfServerState(max_download_bytes=1 << 40)
        try:
            requests = [r for chunk in chunks if (r := state.receive_data(chunk)) is not None]
            return ("ok", requests, state.upload_bytes, state.eof())
        except RemoteProtocolError as exc:
            return ("error", type(exc))

    chunks = []
    rest = data
    while rest:
        cut = draw.draw(st.integers(min_value=1, max_value=len(rest)))
        chunks.append(rest[:cut])
        rest = rest[cut:]
    assert run(chunks) == run([data])
