"""The alpha stream output against real readers: FFmpeg's own NUT demuxer (through PyAV, the
reader OBS's Media Source uses) and plain sockets that read slowly or not at all.

Frames carry their number in the first pixel (R = n & 255, G = n >> 8), so a reader knows which
frame it got and how far behind the newest one it is.
"""

from __future__ import annotations

import socket
import threading
import time

import av
import numpy as np
import pytest

from thacam.errors import SinkUnavailable, UserError
from thacam.output import OutputSettings, SinkContext, create_sink
from thacam.output.stream import StreamSink, parse_address

W, H = 64, 48


def numbered(n: int, size: tuple[int, int] = (W, H)) -> np.ndarray:
    """A frame with straight alpha of every kind: clear, opaque and partial, number in (0, 0)."""
    w, h = size
    f = np.zeros((h, w, 4), np.uint8)
    f[h // 4:, w // 4:] = (200, 40, 10, 255)
    f[h // 2:, w // 2:, 3] = 128
    f[h - 4:, :8] = (1, 2, 3, 7)            # a faint pixel keeps its colour too
    f[0, 0] = (n & 255, n >> 8, 0, 255)
    return f


def number(frame: np.ndarray) -> int:
    return int(frame[0, 0, 0]) | int(frame[0, 0, 1]) << 8


@pytest.fixture
def sink():
    s = StreamSink((W, H), 30.0, "127.0.0.1", 0).open()
    yield s
    s.close()


class Feeder:
    """Sends numbered frames at ``fps`` from its own thread, like the render loop; records the
    longest ``send`` call."""

    def __init__(self, sink: StreamSink, fps: float = 100.0, size=(W, H), frame=None):
        self.sink, self.period, self.size = sink, 1.0 / fps, size
        self.n = 0
        self.frame: np.ndarray | None = frame    # sent instead of numbered frames when set
        self.longest_send_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            frame = numbered(self.n, self.size) if self.frame is None else self.frame
            t = time.perf_counter()
            self.sink.send(frame, 0.0)
            self.longest_send_s = max(self.longest_send_s, time.perf_counter() - t)
            self.n += 1
            time.sleep(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def read_frames(port: int, count: int) -> list[np.ndarray]:
    with av.open(f"tcp://127.0.0.1:{port}", format="nut", timeout=10) as c:
        out = []
        for frame in c.decode(video=0):
            out.append(frame.to_ndarray(format="rgba"))
            if len(out) == count:
                return out
    raise AssertionError(f"the stream ended after {len(out)} frames")


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- spec and errors

def test_address_is_loopback_unless_named():
    assert parse_address(None, 45450) == ("127.0.0.1", 45450)
    assert parse_address("9000", 45450) == ("127.0.0.1", 9000)
    assert parse_address("0.0.0.0:9000", 45450) == ("0.0.0.0", 9000)
    with pytest.raises(UserError, match="expected a port number"):
        parse_address("abc", 45450)
    with pytest.raises(UserError, match="1..65535"):
        parse_address("70000", 45450)


def test_registered_and_follows_the_profiles_port():
    ctx = SinkContext((W, H), 30.0, OutputSettings(stream_port=9123))
    s = create_sink("stream", ctx)
    assert isinstance(s, StreamSink) and (s.host, s.port) == ("127.0.0.1", 9123)
    assert create_sink("stream:9124", ctx).port == 9124


def test_a_taken_port_is_a_skippable_output_with_the_fix(sink):
    with pytest.raises(SinkUnavailable, match="--output stream:PORT"):
        StreamSink((W, H), 30.0, "127.0.0.1", sink.port).open()


# --------------------------------------------------------------------------- frames

def test_reader_gets_exact_straight_alpha_and_the_newest_frame_first(sink):
    with Feeder(sink):
        _wait(lambda: sink._seq > 20, 10, "frames before any reader")   # a late reader
        produced = sink._seq
        frames = read_frames(sink.port, 12)
    first = number(frames[0])
    assert first >= produced - 2            # starts at the newest frame, not the first one
    for f in frames:
        np.testing.assert_array_equal(f, numbered(number(f)))   # every byte, alpha included
    numbers = [number(f) for f in frames]
    assert numbers == sorted(numbers)


def test_reader_leaves_and_comes_back_and_a_new_reader_replaces_an_old_one(sink):
    with Feeder(sink) as feeder:
        read_frames(sink.port, 3)                       # read, then hang up
        _wait(lambda: feeder.n > 30, 10, "more frames")
        again = read_frames(sink.port, 3)               # and come back: newest frames
        assert number(again[0]) >= 25
        idle = socket.create_connection(("127.0.0.1", sink.port))   # connects, never reads
        try:
            _wait(lambda: sink.connections >= 3, 10, "the idle reader to be served")
            read_frames(sink.port, 3)                   # a restarted OBS: served at once
        finally:
            idle.close()
        assert feeder.longest_send_s < 0.05
    assert sink.connections == 4


def test_a_slow_reader_costs_dropped_frames_not_latency_or_blocking():
    """A reader taking one frame every 0.2 s while thacam sends 50 a second: how far behind
    the newest frame each one it gets is must not grow, and send() never waits."""
    size = (512, 512)                   # OBS-sized frames: the socket buffers hold few of them
    sink = StreamSink(size, 30.0, "127.0.0.1", 0).open()
    lags: list[int] = []
    try:
        with Feeder(sink, fps=50.0, size=size) as feeder:
            with av.open(f"tcp://127.0.0.1:{sink.port}", format="nut", timeout=10,
                         options={"recv_buffer_size": str(512 * 512 * 4)}) as c:
                for i, frame in enumerate(c.decode(video=0)):
                    lags.append(feeder.n - number(frame.to_ndarray(format="rgba")))
                    if i == 15:
                        break
                    time.sleep(0.2)
            assert feeder.longest_send_s < 0.05
    finally:
        sink.close()
    assert sink.dropped > 80                            # ~9 of every 10 frames
    # A lag of k reads' worth (10 frames a read) is k frames in flight: about one in thacam's
    # send buffer, the one being written, two in the reader's 1 MB receive buffer (doubled by
    # Linux), a partial one in its demuxer. As many after 3 s as at the start.
    lags = lags[3:]
    assert max(lags) <= 80 and max(lags[-6:]) <= max(lags[:6]) + 5, lags

