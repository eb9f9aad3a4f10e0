"""ping engines: echo matching, partial delivery, misbehaving peers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core.errors import LocalProtocolError, RemoteProtocolError
from neonet.proto.ping import PAYLOAD_SIZE, PROTOCOL_ID, PingClient, PingServer


def counting_entropy() -> PingClient:
    counter = itertools.count()
    return PingClient(lambda size: bytes([next(counter) % 256]) * size)


def test_protocol_id() -> None:
    assert PROTOCOL_ID == "/ipfs/ping/1.0.0"
    assert PAYLOAD_SIZE == 32


def test_echo_completes_payload() -> None:
    client = counting_entropy()
    server = PingServer()
    payload = client.send()
    assert len(payload) == 32 and client.outstanding == 1
    echo = server.receive_data(payload)
    assert echo == payload
    assert client.receive_data(echo) == [payload]
    assert client.outstanding == 0
    server.finish()


def test_pipelined_pings_byte_by_byte() -> None:
    client = counting_entropy()
    server = PingServer()
    payloads = [client.send() for _ in range(3)]
    echoed = b"".join(server.receive_data(bytes([byte])) for byte in b"".join(payloads))
    completed = []
    for byte in echoed:
        completed += client.receive_data(bytes([byte]))
    assert completed == payloads


def test_mismatch_raises() -> None:
    client = counting_entropy()
    payload = client.send()
    with pytest.raises(RemoteProtocolError, match="does not match"):
        client.receive_data(bytes(a ^ 1 for a in payload))


def test_unsolicited_bytes_raise() -> None:
    client = counting_entropy()
    with pytest.raises(RemoteProtocolError):
        client.receive_data(b"\x00")
    client = counting_entropy()
    payload = client.send()
    with pytest.raises(RemoteProtocolError):
        client.receive_data(payload + b"\x00")


def test_outstanding_bound_and_bad_entropy() -> None:
    client = PingClient(lambda size: bytes(size), max_outstanding=2)
    client.send()
    client.send()
    with pytest.raises(LocalProtocolError):
        client.send()
    with pytest.raises(LocalProtocolError):
        PingClient(lambda size: b"short").send()


def test_server_partial_payload_at_eof() -> None:
    server = PingServer()
    assert server.receive_data(bytes(40)) == bytes(32)
    with pytest.raises(RemoteProtocolError):
        server.finish()


@settings(max_examples=300)
@given(st.binary(max_size=500), st.integers(min_value=0, max_value=8), st.binary(min_size=1))
def test_random_bytes_into_client(data: bytes, in_flight: int, seed: bytes) -> None:
    client = PingClient(lambda size: (seed * size)[:size])
    for _ in range(in_flight):
        client.send()
    try:
        completed = client.receive_data(data)
        assert len(completed) <= in_flight
    except RemoteProtocolError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=500), st.data())
def test_server_split_matches_whole(data: bytes, draw: st.DataObject) -> None:
    server = PingServer()
    echoed = b""
    rest = data
    while rest:
        cut = draw.draw(st.integers(min_value=1, max_value=len(rest)))
        echoed += server.receive_data(rest[:cut])
        rest = rest[cut:]
    whole = len(data) - len(data) % PAYLOAD_SIZE
    assert echoed == data[:whole]
    try:
        server.finish()
    except RemoteProtocolError:
        assert whole != len(data)
