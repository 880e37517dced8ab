"""SinkThread: another sink's work on its own thread; offline nothing dropped, live newest wins,
errors back on the caller's thread, a real video written from the worker decodes back whole."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from thacam.app import live_sinks
from thacam.output import FrameSink
from thacam.output.threaded import SinkThread
from thacam.output.video import VideoFileSink, decode_count
from thacam.profile import Profile


class Gated(FrameSink):
    """Records frames; each send waits until the test opens the gate."""

    def __init__(self):
        self.got: list[int] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.closed = self.aborted = False

    def send(self, rgba, t_capture_ms=0.0):
        self.entered.set()
        assert self.gate.wait(10)
        self.threads.add(threading.current_thread().name)
        self.got.append(int(rgba[0, 0, 0]))

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True


def _frame(i: int) -> np.ndarray:
    return np.full((4, 4, 4), i, np.uint8)


def test_offline_keeps_every_frame_in_order_and_blocks_when_the_queue_is_full():
    inner = Gated()
    sink = SinkThread(inner, depth=2).open()
    sink.send(_frame(0))
    assert inner.entered.wait(10)              # the worker holds frame 0
    sink.send(_frame(1))
    sink.send(_frame(2))                       # the queue is now full
    blocked = threading.Thread(target=sink.send, args=(_frame(3),))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive(), "send must wait for room, not drop or grow the queue"
    inner.gate.set()
    blocked.join(10)
    sink.close()
    assert inner.got == [0, 1, 2, 3] and inner.closed and sink.dropped == 0
    assert inner.threads == {"thacam-sink output"}


def test_live_newest_wins_one_slot():
    inner = Gated()
    with SinkThread(inner, newest_wins=True) as sink:
        sink.send(_frame(0))
        assert inner.entered.wait(10)          # frame 0 is being written
        for i in range(1, 5):
            sink.send(_frame(i))               # never blocks: each replaces the waiting one
        inner.gate.set()
    assert inner.got == [0, 4] and sink.dropped == 3 and inner.closed


def test_an_error_on_the_worker_comes_back_to_the_caller_and_no_file_is_left(tmp_path):
    out = tmp_path / "e.mp4"
    sink = SinkThread(VideoFileSink(out), depth=4)
    sink.open()
    sink.send(np.zeros((16, 16, 4), np.uint8))
    sink.send(np.zeros((32, 16, 4), np.uint8))     # a size change: the worker's send raises
    with pytest.raises(ValueError, match="frame size changed"):
        for _ in range(100):                        # it surfaces at a later send or at close
            sink.send(np.zeros((16, 16, 4), np.uint8))
        sink.close()
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_video_written_on_the_worker_decodes_back_whole(tmp_path):
    out = tmp_path / "v.mp4"
    rng = np.random.default_rng(0)
    with SinkThread(VideoFileSink(out, fps=10), depth=3) as sink:
        for _ in range(7):
            sink.send(rng.integers(0, 256, (32, 48, 4), np.uint8))
    assert decode_count(out) == (7, (48, 32))


def test_abort_drops_the_queue_and_aborts_the_wrapped_sink():
    inner = Gated()
    sink = SinkThread(inner, depth=8).open()
    for i in range(5):
        sink.send(_frame(i))
    assert inner.entered.wait(10)              # frame 0 is being written, 1-4 wait
    threading.Timer(0.3, inner.gate.set).start()
    sink.abort()                               # waits for frame 0, drops the rest
    assert inner.got == [0] and inner.aborted and not inner.closed


def test_the_live_run_gives_file_outputs_a_thread_of_their_own(tmp_path):
    sinks = live_sinks([str(tmp_path / "live.mp4"), "vcam"], Profile(), 30.0)
    assert isinstance(sinks[0], SinkThread) and sinks[0].newest_wins
    assert isinstance(sinks[0].sink, VideoFileSink)
    assert not isinstance(sinks[1], SinkThread)    # the virtual camera stays on the loop
