"""Capture stage: a webcam, a capture device or a video file -> the newest ``Frame``.

A ``FrameSource`` opens and reads one kind of input (thacam.capture.opencv has ``CameraSource``
for ``--camera 0`` or ``/dev/video2`` and ``VideoFileSource`` for ``--camera clip.mp4``, which
plays at the file's own frame rate, paced by the wall clock, and loops). ``Capture`` runs a source
in its own thread and keeps only the newest frame in a ``Latest`` slot: a reader always gets the
newest frame and frames that nobody read are dropped and counted, so nothing downstream can fall
behind the camera. When the source is lost mid-run, readers simply see no new frames and the
thread reopens the source every few seconds.

Colour order is settled here: every ``Frame.rgb`` is RGB (OpenCV's BGR never leaves
thacam.capture.opencv). This package's own module imports no OpenCV, so the camera settings load
without it.

Must not import torch, mediapipe or anything from the later stages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np

from ..errors import CaptureError, UserError
from ..settings import Settings, setting

__all__ = [
    "Frame", "Latest", "FrameSource", "Capture", "CaptureStats", "CameraSettings", "parse_size",
    "now_ms",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


def now_ms() -> float:
    """The one clock every stage stamps frames with (monotonic, milliseconds)."""
    return time.monotonic() * 1000.0


@dataclass(frozen=True)
class Frame:
    """One camera image: RGB uint8 (H, W, 3), when it was captured, and its sequence number.

    ``position`` is the frame's number inside a video file (None for a camera): with skipping and
    looping it differs from ``index``, the count of frames delivered.
    """

    rgb: np.ndarray
    t_ms: float
    index: int
    position: int | None = None


class Latest(Generic[T]):
    """A one-value slot shared between threads: writers overwrite, readers get the newest.

    Each ``put`` gets a sequence number; ``wait_newer(seq)`` blocks until something newer than
    ``seq`` is there. A value overwritten before anyone took it counts as dropped.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: T | None = None
        self._seq = 0
        self._taken = True
        self.dropped = 0

    def put(self, value: T) -> int:
        with self._cond:
            if not self._taken:
                self.dropped += 1
            self._value = value
            self._seq += 1
            self._taken = False
            self._cond.notify_all()
            return self._seq

    def peek(self) -> tuple[int, T | None]:
        """The newest (sequence number, value) without waiting; (0, None) before the first put."""
        with self._cond:
            self._taken = True
            return self._seq, self._value

    def newest(self) -> T | None:
        """The newest value without taking it (for monitoring: it is not counted as read)."""
        with self._cond:
            return self._value

    def wait_newer(self, seq: int, timeout: float | None) -> tuple[int, T] | None:
        """The newest value once its sequence number is above ``seq``; None on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > seq, timeout):
                return None
            self._taken = True
            return self._seq, self._value  # type: ignore[return-value]

    @property
    def seq(self) -> int:
        with self._cond:
            return self._seq

    def wake(self) -> None:
        """Wake waiting readers (used on shutdown so nobody sleeps through a stop)."""
        with self._cond:
            self._cond.notify_all()


# ------------------------------------------------------------------------------------- sources

class FrameSource(Protocol):
    """Something ``Capture`` can open, read from and close (a camera, a file, a test fake)."""

    description: str

    def open(self) -> None:
        """Raises CaptureError (CameraUnavailable) when the input cannot be opened."""

    def read(self) -> np.ndarray | None:
        """The next RGB frame (H, W, 3) uint8; None when the input is lost."""

    def close(self) -> None: ...

    def check(self) -> None:
        """Raises CaptureError now when the input certainly cannot open (before a model loads);
        cheap, and may pass for an input that still fails to open later."""

    # Optional: ``next_due() -> float | None``, the monotonic time the next frame is due (a file
    # played in real time). Capture then waits for it itself, interruptibly, and times only the
    # decoding as the capture stage.


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'640x480' -> (640, 480); None passes through."""
    if text is None:
        return None
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h))
    except ValueError:
        size = (0, 0)
    if not sep or size[0] <= 0 or size[1] <= 0:
        raise UserError(f"size {text!r} is not WIDTHxHEIGHT; write it like 640x480")
    return size


@dataclass(frozen=True)
class CameraSettings(Settings):
    """The webcam (or video file) that is tracked."""

    source: str = setting("0", help="Camera index (0, 1, ...), device (/dev/video2) or video "
                          "file, as --camera.", flag="--camera", metavar="INDEX|DEVICE|FILE",
                          cli_help="Camera index (0, 1, ...), device (/dev/video2) or video file "
                          "to track.")
    width: int = setting(640, 64, 4096, help="Capture width asked of the camera, in pixels.")
    height: int = setting(480, 64, 4096, help="Capture height asked of the camera, in pixels.")
    fps: int = setting(30, 1, 240, help="Capture frame rate asked of the camera.",
                       flag="--camera-fps", metavar="FPS")
    mirror: bool = setting(True, live=True, help="Mirror the camera image, so raising your right "
                           "hand looks like a mirror.", flag="--mirror")


# ------------------------------------------------------------------------------------- capture

@dataclass(frozen=True)
class CaptureStats:
    frames: int            # frames read from the source
    dropped: int           # frames overwritten before anyone took them
    losses: int            # times the source was lost mid-run
    reopens: int           # times it came back
    read_ms: float         # mean time in source.read() (for a camera: mostly waiting for it)


class Capture:
    """Runs a FrameSource in its own thread; ``frames`` holds the newest Frame.

    ``start()`` opens the source in the caller's thread, so a missing camera fails at once with
    CameraUnavailable; after that, a lost source makes the thread retry every ``retry_s`` seconds
    while readers see no new frames. ``stop()`` joins the thread.
    """

    def __init__(self, source: FrameSource, retry_s: float = 3.0):
        self.source = source
        self.retry_s = retry_s
        self.frames: Latest[Frame] = Latest()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._count = 0
        self._losses = 0
        self._reopens = 0
        self._read_ms_total = 0.0
        # The last reads' durations, for percentiles (a deque: bounded, appends are thread-safe).
        self.recent_read_ms: deque[float] = deque(maxlen=2000)
        self.error: BaseException | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def stats(self) -> CaptureStats:
        return CaptureStats(self._count, self.frames.dropped, self._losses, self._reopens,
                            self._read_ms_total / max(1, self._count))

    def start(self) -> "Capture":
        self.source.open()
        self._connected.set()
        self._thread = threading.Thread(target=self._run, name="thacam-capture", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.5) -> None:
        self._stop.set()
        self.frames.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the capture thread did not stop within %.1f s (a driver call is "
                            "stuck); leaving it to exit with the program", timeout)
            else:
                self._thread = None
        try:
            self.source.close()
        except Exception:
            log.exception("closing %s failed", self.source.description)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._connected.is_set():
                    self._reconnect()
                    continue
                next_due = getattr(self.source, "next_due", None)
                if next_due is not None:
                    # The source's clock, not its decoder, sets the pace: wait here, where a
                    # stop request can cut the wait short.
                    wait = next_due() - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
                t0 = now_ms()
                rgb = self.source.read()
                t1 = now_ms()
                if rgb is None:
                    if self._stop.is_set():
                        break
                    self._losses += 1
                    self._connected.clear()
                    log.warning("%s lost; the avatar idles and thacam retries every %.0f s",
                                self.source.description, self.retry_s)
                    self.source.close()
                    continue
                self._read_ms_total += t1 - t0
                self.recent_read_ms.append(t1 - t0)
                self.frames.put(Frame(rgb, t1, self._count,
                                      getattr(self.source, "position", None)))
                self._count += 1
        except BaseException as exc:  # the pipeline re-raises it in the main thread
            self.error = exc
            log.debug("capture thread failed", exc_info=True)

    def _reconnect(self) -> None:
        if self._stop.wait(self.retry_s):
            return
        try:
            self.source.open()
        except CaptureError as exc:
            log.debug("reopening %s failed: %s", self.source.description, exc)
            return
        self._reopens += 1
        self._connected.set()
        log.warning("%s is back", self.source.description)
