"""render_poses: batches in order, the next batch queued before the previous one is waited for."""

from __future__ import annotations

import numpy as np
import pytest

from thacam.offline import PoseFrame, render_poses
from thacam.pose import Pose


class Pending:
    def __init__(self, log, k, frames, in_flight):
        self.log, self.k, self.frames, self.in_flight = log, k, frames, in_flight

    def result(self):
        self.log.append(f"wait {self.k}")
        return self.frames


class QueueingRenderer:
    """Like Renderer.render_batch_async: on a GPU it returns at once, frames come with result();
    on a CPU the frames are there when it returns."""

    def __init__(self, gpu: bool):
        self.log: list[str] = []
        self.gpu = gpu

    def render_batch_async(self, poses):
        k = sum(e.startswith("queue") for e in self.log)
        self.log.append(f"queue {k}")
        frames = np.stack([np.full((2, 2, 4), round(p["head_y"] * 100), np.uint8)
                           for p in poses])
        return Pending(self.log, k, frames, self.gpu)


class Recorder:
    def __init__(self):
        self.sent: list[tuple[int, float]] = []

    def send(self, rgba, t_capture_ms=0.0):
        self.sent.append((int(rgba[0, 0, 0]), t_capture_ms))


@pytest.mark.parametrize("gpu", [True, False])
def test_batches_overlap_and_every_frame_arrives_in_order(gpu):
    poses = []
    for i in range(7):
        p = Pose()
        p["head_y"] = i / 100
        poses.append(PoseFrame(i * 10.0, True, p))
    renderer, sink, heard = QueueingRenderer(gpu), Recorder(), []
    n = render_poses(iter(poses), renderer, sink, batch=3,
                     on_frame=lambda done, rgba: heard.append((done, int(rgba[0, 0, 0]))))
    assert n == 7
    assert sink.sent == [(i, i * 10.0) for i in range(7)]
    assert heard == [(i + 1, i) for i in range(7)]
    if gpu:     # batch k+1 is queued before batch k is waited for: the GPU never idles
        assert renderer.log == ["queue 0", "queue 1", "wait 0", "queue 2", "wait 1", "wait 2"]
    else:       # on a CPU a batch is done when it returns: sent at once, never held back
        assert renderer.log == ["queue 0", "wait 0", "queue 1", "wait 1", "queue 2", "wait 2"]
