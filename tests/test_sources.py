"""Face sources: the registry, and a source that is not a camera driving the live pipeline
(what phone trackers and the microphone will be). No models; CI budget: ~2 s."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from thacam.animation import Animator
from thacam.capture import CameraSettings, now_ms
from thacam.errors import UserError
from thacam.output import FrameSink
from thacam.pipeline import LivePipeline, LiveSettings
from thacam.pose import Pose
from thacam.sources import SOURCES, FaceSample, FaceSource, SourceContext, create_source


class PacketSource(FaceSource):
    """Observations arriving like network packets: no camera frame, its own thread, may go
    quiet. ``obs`` values are plain numbers here (the retargeter below reads them)."""

    description = "test packets"

    def __init__(self, values, quiet_after: int | None = None):
        self.values = list(values)
        self.quiet_after = quiet_after
        self.cond = threading.Condition()
        self.sent = 0
        self.opened = self.closed = False

    @classmethod
    def from_spec(cls, arg, ctx):
        return cls([float(arg or 0)])

    def open(self):
        self.opened = True
        return self

    def next(self, timeout):
        with self.cond:
            if self.sent >= len(self.values) or (self.quiet_after is not None
                                                 and self.sent >= self.quiet_after):
                self.cond.wait(timeout)
                return None
            value = self.values[self.sent]
            self.sent += 1
            return FaceSample(now_ms(), value, self.sent - 1)

    def wake(self):
        with self.cond:
            self.cond.notify_all()

    def close(self):
        self.closed = True


class MouthRetargeter:
    def update(self, value):
        pose = Pose()
        pose["mouth_aaa"] = value
        return pose


class Keep(FrameSink):
    def __init__(self):
        self.frames = 0

    def send(self, rgba, t_capture_ms):
        self.frames += 1


class Blank:
    def __init__(self):
        self.poses = []

    def render(self, pose):
        self.poses.append(pose)
        return np.zeros((8, 8, 4), np.uint8)


def test_registry_builds_sources_by_name_and_lists_them_on_a_typo():
    assert "webcam" in SOURCES.usages()
    with pytest.raises(UserError) as info:
        create_source("kinect", SourceContext())
    assert str(info.value).startswith("--source kinect: not a face source; choose one of webcam")
    saved = SOURCES.snapshot()
    try:
        SOURCES.register("packets", f"{__name__}:PacketSource", "test", usage="packets[:V]")
        made = create_source("packets:0.5", SourceContext(CameraSettings()))
        assert isinstance(made, PacketSource) and made.values == [0.5]
        assert "packets[:V]" in SOURCES.usages()
    finally:
        SOURCES.restore(saved)


def test_a_source_without_a_camera_drives_the_pipeline_and_going_quiet_idles():
    values = [0.2, 0.4, 0.6, 0.8, 1.0] * 4
    source = PacketSource(values, quiet_after=len(values))
    renderer = Blank()
    pipeline = LivePipeline(source, MouthRetargeter(), Animator(seed=1), renderer, [Keep()],
                            LiveSettings(fps=100, stats_every_s=0, camera_stale_s=0.2,
                                         trace=True))
    t0 = time.monotonic()
    stats = pipeline.run(frames=60)
    assert source.opened and source.closed and time.monotonic() - t0 < 10
    faces = [t for t in stats.trace if t.face]
    idle = [t for t in stats.trace if t.frame_index is None]
    assert faces and idle and stats.trace[-1].frame_index is None   # quiet -> idle at the end
    assert max(t.pose["mouth_aaa"] for t in faces) > 0.3            # the packets moved the mouth
    assert stats.captured == 0 and stats.frames == 60               # no camera was involved
