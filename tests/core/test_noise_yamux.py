"""The combined data-path engine (yamux inside Noise) on both backends, and differentially.

The pure ``NoiseYamuxConnection`` is the composition of the pure Noise transport and
yamux engines; the native one decrypts straight into its yamux input and encrypts
straight into its output. These tests check the engine on each backend, then drive a
pure and a native engine in lockstep (``Twin``) through hostile ciphertext, hostile
plaintext inside valid encryption, and the random two-sided workload of
test_yamux_fuzz.py, requiring identical events, bytes and errors throughout.
"""

from __future__ import annotations

import itertools
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neonet.core.backend import Implementation
from neonet.core.errors import LocalProtocolError, RemoteProtocolError
from neonet.core.noise_transport import MAX_NONCE
from neonet.core.noise_yamux import NoiseYamuxEngine
from neonet.core.yamux import (
    DataReceived,
    PongReceived,
    StreamAcknowledged,
    StreamOpened,
    YamuxConfig,
    YamuxEngine,
)
from tests.core.test_yamux_fuzz import CONFIG, YamuxLink
from tests.core.twins import NATIVE, PURE, Twin

CLIENT_KEY = bytes(range(32))
SERVER_KEY = bytes(range(100, 132))
SYN, ACK = 1, 2


def endpoint(
    backend: Implementation,
    *,
    is_client: bool,
    config: YamuxConfig | None = None,
    send_nonce: int = 0,
    received: bytes = b"",
) -> NoiseYamuxEngine:
    send, receive = (CLIENT_KEY, SERVER_KEY) if is_client else (SERVER_KEY, CLIENT_KEY)
    noise = backend.NoiseTransport(send, receive, received=received, send_nonce=send_nonce)
    return backend.NoiseYamuxConnection(noise, is_client=is_client, config=config)


def twin_endpoint(*, is_client: bool, config: YamuxConfig | None = None, **keywords: int) -> Twin:
    return Twin(
        endpoint(PURE, is_client=is_client, config=config, **keywords),
        endpoint(NATIVE, is_client=is_client, config=config, **keywords),
    )


def yamux_frame(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    return struct.pack(">BBHII", 0, frame_type, flags, stream_id, length)


def test_a_stream_both_ways_over_ciphertext(backend: Implementation) -> None:
    client = endpoint(backend, is_client=True)
    server = endpoint(backend, is_client=False)
    stream_id = client.open_stream()
    payload = bytes(range(256)) * 1000
    assert client.send_data(stream_id, payload) == len(payload)
    wire = client.data_to_send()
    assert payload[:1000] not in wire  # encrypted
    events = []
    for start in range(0, len(wire), 7_001):
        events += server.receive_data(wire[start : start + 7_001])
    assert events[0] == StreamOpened(stream_id)
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == payload
    server.consume(stream_id, len(payload))
    server.send_data(stream_id, b"ok")
    events = client.receive_data(server.data_to_send())
    assert StreamAcknowledged(stream_id) in events
    assert DataReceived(stream_id, b"ok") in events


def test_is_a_yamux_connection(backend: Implementation) -> None:
    engine = endpoint(backend, is_client=True)
    assert isinstance(engine, backend.YamuxConnection)
    assert engine.data_to_send() == b""
    assert not engine.has_output
    engine.ping(1)
    assert engine.has_output
    assert engine.statistics().bytes_buffered == 12  # plaintext queued, before encryption


def test_the_given_transport_is_handed_over(backend: Implementation) -> None:
    noise = backend.NoiseTransport(CLIENT_KEY, SERVER_KEY)
    backend.NoiseYamuxConnection(noise, is_client=True)
    with pytest.raises(LocalProtocolError, match="handed over"):
        noise.encrypt(b"reuse of the key")
    with pytest.raises(LocalProtocolError, match="handed over"):
        backend.NoiseYamuxConnection(noise, is_client=True)


def test_plaintext_read_ahead_and_ciphertext_received_with_the_handshake(
    backend: Implementation,
) -> None:
    peer = backend.NoiseTransport(SERVER_KEY, CLIENT_KEY)  # the server's sending side
    ping = yamux_frame(2, SYN, 0, 7)
    wire = peer.encrypt(ping) + peer.encrypt(yamux_frame(2, ACK, 0, 9))
    client = endpoint(backend, is_client=True, received=wire[:20])
    # Plaintext read past a negotiation comes first, then the channel's own bytes.
    assert client.receive_plaintext(yamux_frame(2, ACK, 0, 5)) == [PongReceived(5)]
    assert client.receive_data(wire[20:]) == [PongReceived(9)]
    client.data_to_send()


def test_tampered_ciphertext_fails_without_go_away(backend: Implementation) -> None:
    client = endpoint(backend, is_client=True)
    server = endpoint(backend, is_client=False)
    client.ping(3)
    wire = bytearray(client.data_to_send())
    wire[5] ^= 0x10
    with pytest.raises(RemoteProtocolError, match="authentication") as error:
        server.receive_data(bytes(wire))
    assert error.value.code is None
    assert server.data_to_send() == b""  # the channel is broken: nothing to say on it
    with pytest.raises(LocalProtocolError, match="Noise channel already failed"):
        server.receive_data(b"")


def test_yamux_violation_inside_valid_noise_sends_an_encrypted_go_away(
    backend: Implementation,
) -> None:
    client = endpoint(backend, is_client=True)
    sender = backend.NoiseTransport(SERVER_KEY, CLIENT_KEY)
    with pytest.raises(RemoteProtocolError, match="unknown frame type 9") as error:
        client.receive_data(sender.encrypt(yamux_frame(9, 0, 0, 0)))
    assert error.value.code == 1
    receiver = backend.NoiseTransport(SERVER_KEY, CLIENT_KEY)  # decrypts the client's side
    assert receiver.receive_data(client.data_to_send()) == yamux_frame(3, 0, 0, 1)
    with pytest.raises(LocalProtocolError, match="protocol error"):
        client.receive_data(b"")


def test_exhausted_send_nonce_loses_the_queued_output(backend: Implementation) -> None:
    client = endpoint(backend, is_client=True, send_nonce=MAX_NONCE + 1)
    client.ping(1)
    with pytest.raises(LocalProtocolError, match="nonce exhausted"):
        client.data_to_send()
    assert not client.has_output


# --- differential ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_random_ciphertext_fails_identically(data: bytes, cuts: list[int]) -> None:
    engine = twin_endpoint(is_client=False)
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        try:
            assert engine.receive_data(data[start:end]) == []
        except RemoteProtocolError:
            assert engine.data_to_send() == b""
            return


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plaintext=st.lists(st.binary(max_size=200), max_size=6),
    is_client=st.booleans(),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_random_frames_inside_valid_noise_behave_identically(
    plaintext: list[bytes], is_client: bool, cuts: list[int]
) -> None:
    send, receive = (SERVER_KEY, CLIENT_KEY) if is_client else (CLIENT_KEY, SERVER_KEY)
    sender = PURE.NoiseTransport(send, receive)
    wire = b"".join(sender.encrypt(p) for p in plaintext)
    engine = twin_endpoint(is_client=is_client)
    points = sorted({cut % (len(wire) + 1) for cut in cuts} | {0, len(wire)})
    for start, end in itertools.pairwise(points):
        try:
            engine.receive_data(wire[start:end])
        except RemoteProtocolError:
            break
        engine.data_to_send()
    engine.data_to_send()
    engine.statistics()


class NoiseYamuxLink(YamuxLink):
    """The two-sided random workload of test_yamux_fuzz.py, over Noise, on twin engines.

    Each delivery is cut into pieces at points derived from its length, so frames of
    both layers straddle the reads.
    """

    def __init__(self) -> None:
        super().__init__()
        self.engines: dict[str, YamuxEngine] = {
            "client": twin_endpoint(is_client=True, config=CONFIG),
            "server": twin_endpoint(is_client=False, config=CONFIG),
        }

    def _pump(self) -> None:
        for _ in range(10_000):
            for side in ("client", "server"):
                self._flush_writes(side)
            to_server = self.engines["client"].data_to_send()
            to_client = self.engines["server"].data_to_send()
            if not to_server and not to_client:
                self._check_windows_agree()
                return
            for side, wire in (("server", to_server), ("client", to_client)):
                splitter = random.Random(len(wire))
                position = 0
                while position < len(wire):
                    end = min(len(wire), position + splitter.randint(1, 90_000))
                    self._handle(side, self.engines[side].receive_data(wire[position:end]))
                    position = end
        raise AssertionError("the link did not settle")


NoiseYamuxLink.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
TestNoiseYamuxLink = NoiseYamuxLink.TestCase
