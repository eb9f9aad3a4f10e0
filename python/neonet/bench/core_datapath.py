"""The connection data path's engines alone, pure twin vs Rust, in memory (no sockets).

What ``neonet bench transport`` measures end to end (with trio, sockets and two
processes), this measures for the engines only: Noise transport framing and
ChaCha20-Poly1305, the yamux engine, and the combined engine fed whole socket reads.
Each case runs the same operations on both backends in alternating rounds
(``neonet.bench.core.compare``). Run it with ``python -m neonet.bench.core_datapath``;
``run(quick)`` plugs into ``neonet bench core`` like the other parts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from neonet.bench.core import Measurement, compare
from neonet.core import backend
from neonet.core.backend import Implementation
from neonet.core.noise_yamux import NoiseYamuxEngine
from neonet.core.yamux import DataReceived, YamuxConfig

CLIENT_KEY = bytes(range(32))
SERVER_KEY = bytes(range(100, 132))
READ_SIZE = 256 * 1024  # what the session reads from a socket at a time
# Windows big enough that a 256 KiB write never waits for credit in these loops.
BULK_CONFIG = YamuxConfig(initial_window=16 << 20, max_receive_window=16 << 20)


def _noise_round_trip(implementation: Implementation, size: int, count: int) -> Callable[[], None]:
    sender = implementation.NoiseTransport(CLIENT_KEY, SERVER_KEY)
    receiver = implementation.NoiseTransport(SERVER_KEY, CLIENT_KEY)
    plaintext = bytes(size)

    def run() -> None:
        for _ in range(count):
            receiver.receive_data(sender.encrypt(plaintext))

    return run


def _stream_echo(implementation: Implementation, count: int) -> Callable[[], None]:
    client = implementation.YamuxConnection(is_client=True)
    server = implementation.YamuxConnection(is_client=False)

    def run() -> None:
        for _ in range(count):
            stream_id = client.open_stream()
            client.send_data(stream_id, b"x")
            for event in server.receive_data(client.data_to_send()):
                if type(event) is DataReceived:
                    server.consume(stream_id, len(event.data))
                    server.send_data(stream_id, event.data)
                    server.close_stream(stream_id)
            for event in client.receive_data(server.data_to_send()):
                if type(event) is DataReceived:
                    client.consume(stream_id, len(event.data))
            client.close_stream(stream_id)
            server.receive_data(client.data_to_send())
            client.receive_data(b"")

    return run


def _endpoints(
    implementation: Implementation, config: YamuxConfig | None = None
) -> tuple[NoiseYamuxEngine, NoiseYamuxEngine, int]:
    client = implementation.NoiseYamuxConnection(
        implementation.NoiseTransport(CLIENT_KEY, SERVER_KEY), is_client=True, config=config
    )
    server = implementation.NoiseYamuxConnection(
        implementation.NoiseTransport(SERVER_KEY, CLIENT_KEY), is_client=False, config=config
    )
    stream_id = client.open_stream()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return client, server, stream_id


def _bulk(implementation: Implementation, writes: int) -> Callable[[], None]:
    client, server, stream_id = _endpoints(implementation, BULK_CONFIG)
    chunk = bytes(READ_SIZE)

    def run() -> None:
        for _ in range(writes):
            client.send_data(stream_id, chunk)
            wire = client.data_to_send()
            for start in range(0, len(wire), READ_SIZE):
                for event in server.receive_data(wire[start : start + READ_SIZE]):
                    if type(event) is DataReceived:
                        server.consume(stream_id, len(event.data))
            client.receive_data(server.data_to_send())

    return run


def _messages(implementation: Implementation, count: int) -> Callable[[], None]:
    client, server, stream_id = _endpoints(implementation)
    message = bytes(32)

    def run() -> None:
        for _ in range(count):
            client.send_data(stream_id, message)
            for event in server.receive_data(client.data_to_send()):
                if type(event) is DataReceived:
                    server.consume(stream_id, len(event.data))
                    server.send_data(stream_id, event.data)
            for event in client.receive_data(server.data_to_send()):
                if type(event) is DataReceived:
                    client.consume(stream_id, len(event.data))

    return run


def run(quick: bool) -> list[Measurement]:
    pure = backend.implementation("pure")
    native = backend.implementation("native")
    rounds = 3 if quick else 7
    scale = 1 if quick else 4
    cases: list[Measurement] = []
    count = 64 * scale
    cases.append(
        compare(
            "Noise transport: encrypt + decrypt 256 KiB messages",
            "MiB",
            count // 4,
            _noise_round_trip(pure, READ_SIZE, count),
            _noise_round_trip(native, READ_SIZE, count),
            rounds=rounds,
        )
    )
    count = 2000 * scale
    cases.append(
        compare(
            "yamux: open + 1-byte echo + close, both engines",
            "streams",
            count,
            _stream_echo(pure, count),
            _stream_echo(native, count),
            rounds=rounds,
        )
    )
    count = 64 * scale
    cases.append(
        compare(
            "Noise+yamux: 256 KiB writes, read 256 KiB at a time",
            "MiB",
            count // 4,
            _bulk(pure, count),
            _bulk(native, count),
            rounds=rounds,
        )
    )
    count = 5000 * scale
    cases.append(
        compare(
            "Noise+yamux: 32-byte echo on one stream",
            "round trips",
            count,
            _messages(pure, count),
            _messages(native, count),
            rounds=rounds,
        )
    )
    return cases


def main() -> None:
    if not backend.NATIVE_AVAILABLE:
        raise SystemExit("needs neonet._native: build it with `maturin develop`")
    print(f"{'case':<58} {'unit':>12} {'pure/s':>10} {'native/s':>10} {'ratio':>7}")
    for m in run(quick="--quick" in sys.argv):
        print(
            f"{m.case:<58} {m.unit:>12} {m.pure_per_second:>10,.0f}"
            f" {m.native_per_second:>10,.0f} {m.ratio:>6.2f}x"
        )


if __name__ == "__main__":
    main()
