"""Capture stage: a webcam, a capture device or a video file -> the newest ``Frame``.

A ``FrameSource`` opens and reads one kind of input (``CameraSource`` for ``--camera 0`` or
``/dev/video2``, ``VideoFileSource`` for ``--camera clip.mp4``, which plays at the file's own frame
rate, paced by the wall clock, and loops). ``Capture`` runs a source in its own thread and keeps
only the newest frame in a ``Latest`` slot: a reader always gets the newest frame and frames that
nobody read are dropped and counted, so nothing downstream can fall behind the camera. When the
source is lost mid-run, readers simply see no new frames and the thread reopens the source every
few seconds.

Colour order is settled here: every ``Frame.rgb`` is RGB (OpenCV's BGR never leaves this module).

Must not import torch, mediapipe or anything from the later stages.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import cv2
import numpy as np

from .errors import CameraUnavailable, CaptureError, UserError

__all__ = [
    "Frame", "Latest", "FrameSource", "CameraSource", "VideoFileSource", "Capture",
    "CaptureStats", "open_source", "parse_size", "probe_cameras", "now_ms",
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


def _quiet_opencv():
    """OpenCV logs a warning per camera index that does not open; silence it while probing."""
    try:
        from cv2.utils import logging as cvlog
        old = cvlog.getLogLevel()
        cvlog.setLogLevel(cvlog.LOG_LEVEL_SILENT)
        return lambda: cvlog.setLogLevel(old)
    except Exception:  # older/stripped builds have no cv2.utils.logging: noise is all we lose
        return lambda: None


def probe_cameras(indices: range = range(10)) -> list[int]:
    """Camera indices that open, checked quickly (on Linux only /dev/videoN that exist)."""
    found = []
    restore = _quiet_opencv()
    try:
        for i in indices:
            if platform.system() == "Linux" and not os.path.exists(f"/dev/video{i}"):
                continue
            cap = cv2.VideoCapture(i)
            try:
                if cap.isOpened() and cap.read()[0]:
                    found.append(i)
            finally:
                cap.release()
    finally:
        restore()
    return found


def _camera_help(what: str) -> str:
    found = probe_cameras()
    if found:
        return (f"{what} did not open; cameras that do open here: "
                f"{', '.join(str(i) for i in found)}; pass one with --camera INDEX "
                "(or a video file with --camera clip.mp4)")
    return (f"{what} did not open and no camera opens here (indices 0-9 tried); plug a webcam in, "
            "close other programs that use it, or drive thacam from a recording with "
            "--camera clip.mp4")


class CameraSource:
    """A webcam by index (``0``) or device path (``/dev/video2``), through OpenCV."""

    def __init__(self, device: int | str, size: tuple[int, int] | None = None,
                 fps: float | None = None):
        self.device = device
        self.size = size
        self.fps = fps
        self.description = f"camera {device}"
        self._cap: cv2.VideoCapture | None = None
        # Listing the cameras that do open helps once, at start; not on every retry mid-run.
        self._probe_on_failure = True

    def open(self) -> None:
        restore = _quiet_opencv()
        try:
            cap = cv2.VideoCapture(self.device)
            if cap.isOpened():
                if self.size:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
                if self.fps:
                    cap.set(cv2.CAP_PROP_FPS, self.fps)
                # Keep the driver's own queue short: thacam wants the newest image, not a backlog.
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            ok = cap.isOpened() and cap.grab()
        finally:
            restore()
        if not ok:
            cap.release()
            probe, self._probe_on_failure = self._probe_on_failure, False
            raise CameraUnavailable(_camera_help(self.description) if probe else
                                    f"{self.description} did not open")
        self._probe_on_failure = False
        self._cap = cap
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.size and (w, h) != self.size:
            log.warning("%s gives %dx%d, not the %dx%d asked for (the camera chose)",
                        self.description, w, h, *self.size)
        log.info("%s open: %dx%d at %.0f fps", self.description, w, h,
                 cap.get(cv2.CAP_PROP_FPS) or 0)

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFileSource:
    """A video file played as a camera: at its own frame rate, paced by the wall clock, looping.

    Falling behind (a slow machine) skips frames instead of slowing the clip down, exactly as a
    camera would; ``size`` resizes frames, ``fps`` overrides the file's rate.
    """

    def __init__(self, path: Path, size: tuple[int, int] | None = None, fps: float | None = None,
                 loop: bool = True):
        self.path = Path(path)
        self.size = size
        self.fps_override = fps
        self.loop = loop
        self.description = f"video file {self.path}"
        self._cap: cv2.VideoCapture | None = None
        self.fps = 0.0
        self.frame_count = 0
        self._start = 0.0
        self._played = 0       # frames delivered or skipped since open (drives the schedule)
        self.position: int | None = None   # number of the last delivered frame in the file
        self.skipped = 0

    def open(self) -> None:
        if not self.path.is_file():
            raise CameraUnavailable(f"{self.path}: no such video file; check the path")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise CameraUnavailable(f"{self.path}: OpenCV cannot read this video; convert it to "
                                    "mp4 (H.264) and try again")
        self._cap = cap
        file_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = float(self.fps_override or (file_fps if 1.0 <= file_fps <= 240.0 else 30.0))
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._start = time.monotonic()
        self._played = 0
        self._next_pos = 0
        self._grabbed = 0
        log.info("%s open: %d frames at %.2f fps%s", self.description, self.frame_count,
                 self.fps, " (looping)" if self.loop else "")

    def _grab(self) -> bool:
        """Grab the next frame (rewinding at the end when looping); counts the file position."""
        assert self._cap is not None
        if not self._cap.grab():
            if not self.loop:
                return False
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._next_pos = 0
            if not self._cap.grab():
                return False
        self._grabbed = self._next_pos
        self._next_pos += 1
        return True

    def next_due(self) -> float:
        return self._start + self._played / self.fps

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        due = self.next_due()
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        # Behind schedule by more than a frame: skip what a live camera would have shown meanwhile.
        while time.monotonic() - (self._start + (self._played + 1) / self.fps) > 0:
            if not self._grab():
                return None
            self._played += 1
            self.skipped += 1
        if not self._grab():
            return None
        ok, bgr = self._cap.retrieve()
        if not ok:
            return None
        self._played += 1
        self.position = self._grabbed
        if self.size and (bgr.shape[1], bgr.shape[0]) != self.size:
            bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def open_source(spec: str | int, size: tuple[int, int] | None = None,
                fps: float | None = None) -> FrameSource:
    """``--camera``: an index (``0``), a device (``/dev/video2``) or a video file.

    Returns the source unopened (``Capture.start`` opens it).
    """
    text = str(spec).strip()
    if text.isdigit():
        return CameraSource(int(text), size, fps)
    path = Path(text).expanduser()
    if text.startswith("/dev/") or (path.exists() and not path.is_file() and not path.is_dir()):
        return CameraSource(text, size, fps)
    if path.is_dir():
        raise UserError(f"--camera {text}: is a folder; give a camera index, a device or a "
                        "video file")
    if not path.exists():
        raise CameraUnavailable(f"--camera {text}: no such file or camera; give a camera index "
                                "(0, 1, ...), a device (/dev/video0) or a video file")
    return VideoFileSource(path, size, fps)


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
