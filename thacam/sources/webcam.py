"""The webcam face source (``--source webcam``, the default): a camera, capture device or video
file (thacam.capture) tracked by MediaPipe's FaceLandmarker (thacam.tracking).

Two threads meet here: the capture thread keeps only the newest camera frame; ``next`` (called
from the pipeline's tracking thread) takes the newest one and tracks it, so tracking never works
through a backlog. Must not import torch.
"""

from __future__ import annotations

from typing import Any

from ..capture import Capture, now_ms
from . import FaceSample, FaceSource, SourceContext, SourceStats

__all__ = ["WebcamFaces"]


class WebcamFaces(FaceSource):
    """A Capture (not started: ``open`` starts it) and a tracker with ``detect(frame)``."""

    def __init__(self, capture: Capture, tracker: Any):
        self.capture = capture
        self.tracker = tracker
        self.description = capture.source.description
        self._seq = 0

    @classmethod
    def from_spec(cls, arg: str | None, ctx: SourceContext) -> "WebcamFaces":
        """``--source webcam`` (the profile's camera) or ``webcam:INDEX|DEVICE|FILE``."""
        from ..capture.opencv import VideoFileSource, open_source
        from ..tracking import FaceTracker
        from ..weights import DEFAULT_WEIGHTS_DIR, landmarker_path
        cam = ctx.camera
        source = open_source(arg or cam.source, (cam.width, cam.height), cam.fps)
        if isinstance(source, VideoFileSource):
            source.size, source.fps_override = ctx.file_size, ctx.file_fps
        tracker = FaceTracker(landmarker_path(ctx.weights_dir or DEFAULT_WEIGHTS_DIR),
                              mirror=cam.mirror)
        return cls(Capture(source), tracker)

    def check(self) -> None:
        check = getattr(self.capture.source, "check", None)
        if check is not None:
            check()

    def open(self) -> "WebcamFaces":
        self.capture.start()
        return self

    def close(self) -> None:
        try:
            self.capture.stop()
        finally:
            close = getattr(self.tracker, "close", None)
            if close is not None:
                close()

    def wake(self) -> None:
        self.capture.frames.wake()

    def next(self, timeout: float) -> FaceSample | None:
        got = self.capture.frames.wait_newer(self._seq, timeout)
        if got is None:
            return None
        self._seq, frame = got
        t0 = now_ms()
        obs = self.tracker.detect(frame)
        return FaceSample(frame.t_ms, obs, frame.index, frame, now_ms() - t0)

    @property
    def error(self) -> BaseException | None:      # the capture thread's failure, if any
        return self.capture.error

    @property
    def connected(self) -> bool:
        return self.capture.connected

    @property
    def newest_index(self) -> int | None:
        seq = self.capture.frames.seq
        return seq - 1 if seq else None

    @property
    def mirror(self) -> bool:
        return bool(getattr(self.tracker, "mirror", False))

    def set_mirror(self, mirror: bool) -> bool:
        if not hasattr(self.tracker, "mirror"):
            return False
        self.tracker.mirror = bool(mirror)
        return self.tracker.mirror

    def stats(self) -> SourceStats:
        cap = self.capture.stats
        return SourceStats(cap.frames, cap.losses, cap.reopens, tuple(self.capture.recent_read_ms))
