"""OpenCV frame sources: webcams, capture devices and video files (the only code that reads
pixels through OpenCV; BGR never leaves this module).

Must not import torch or mediapipe.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import CameraUnavailable, UserError
from . import Frame, FrameSource

__all__ = ["CameraSource", "VideoFileSource", "open_source", "probe_cameras", "video_info",
           "video_frames"]

log = logging.getLogger(__name__)


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

    def check(self) -> None:
        """Fail at once, before a model loads, on a camera that is certainly not there."""
        if platform.system() != "Linux":
            return      # elsewhere only opening tells
        dev = f"/dev/video{self.device}" if isinstance(self.device, int) else str(self.device)
        if not os.path.exists(dev):
            raise CameraUnavailable(_camera_help(self.description))

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


def _undecodable(path: Path) -> str:
    return f"{path}: OpenCV cannot decode it as a video; convert it to .mp4 (H.264) and try again"


def _file_fps(cap: cv2.VideoCapture) -> float:
    """The file's frame rate; 30 when the container does not say (or says nonsense)."""
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    return float(fps) if 1.0 <= fps <= 240.0 else 30.0


class VideoFileSource:
    """A video file played as a camera: at its own frame rate, paced by the wall clock, looping.

    Falling behind (a slow machine) skips frames instead of slowing the clip down, exactly as a
    camera would; ``size`` resizes frames, ``fps`` overrides the file's rate. With
    ``realtime=False`` (offline commands) every frame is read as fast as it decodes.
    """

    def __init__(self, path: Path, size: tuple[int, int] | None = None, fps: float | None = None,
                 loop: bool = True, realtime: bool = True):
        self.path = Path(path)
        self.size = size
        self.fps_override = fps
        self.loop = loop
        self.realtime = realtime
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
            raise CameraUnavailable(_undecodable(self.path))
        self._cap = cap
        self.fps = float(self.fps_override or _file_fps(cap))
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._start = time.monotonic()
        self._played = 0
        self._next_pos = 0
        self._grabbed = 0
        log.info("%s open: %d frames at %.2f fps%s", self.description, self.frame_count,
                 self.fps, " (looping)" if self.loop else "")

    def check(self) -> None:
        """Fail at once, before a model loads, on a file that is missing or does not open."""
        self.open()
        self.close()

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
        """When the next frame is due (monotonic s); always now when not played in real time."""
        return self._start + self._played / self.fps if self.realtime else 0.0

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        if self.realtime:
            wait = self.next_due() - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            # Behind schedule by more than a frame: skip what a live camera would have shown
            # meanwhile.
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




def video_info(path: Path | str) -> tuple[int, float]:
    """(frames, fps) of a video file: frames 0 when the container does not say, fps 30 then."""
    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), _file_fps(cap)
    finally:
        cap.release()


def video_frames(path: Path | str, fps: float | None = None) -> Iterator[Frame]:
    """Every frame of a video file, in order, timed by the file's clock (offline commands).

    Raises:
        CameraUnavailable: the file is missing or OpenCV cannot read it.
    """
    source = VideoFileSource(Path(path), fps=fps, loop=False, realtime=False)
    source.open()
    try:
        i = 0
        rgb = source.read()
        if rgb is None:     # opens, but not one frame decodes (a broken or foreign file)
            raise CameraUnavailable(_undecodable(source.path))
        while rgb is not None:
            yield Frame(rgb, i * 1000.0 / source.fps, i, source.position)
            i += 1
            rgb = source.read()
    finally:
        source.close()
