"""What a live run measured: per-stage timings, latency, counters, traces and the status
snapshot (thacam.pipeline fills them; the CLI, the panel and the tests read them).

Must not import torch or any stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .output import FrameSink
from .pose import Pose

__all__ = ["STAGES", "FrameTrace", "StageStats", "RunStats", "LiveStatus", "STATUS_WINDOW_S",
           "Window", "percentile", "stage_stats"]

STAGES = ("capture", "track", "retarget", "animate", "render", "output")


@dataclass(frozen=True)
class FrameTrace:
    """One output frame, for tests and debugging (``LiveSettings.trace``)."""

    out_index: int
    frame_index: int | None         # camera frame behind it; None = idle (no fresh camera frame)
    frame_position: int | None      # that frame's number in a video file (None for a camera)
    t_capture_ms: float | None
    t_send_ms: float                # right before the first sink got it
    newest_captured: int | None     # newest camera frame index when the render started
    newest_tracked: int | None      # newest tracked frame index when the render started
    face: bool
    pose: Pose                      # what was rendered


@dataclass(frozen=True)
class StageStats:
    mean_ms: float
    p50_ms: float
    p95_ms: float
    count: int


@dataclass(frozen=True)
class RunStats:
    """What a run (or one stats interval of it) did. Latency = capture -> handed to the sinks."""

    frames: int
    seconds: float
    fps: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    stages: dict[str, StageStats]
    captured: int = 0               # camera frames read
    tracked: int = 0                # camera frames tracked
    faces: int = 0                  # output frames driven by a tracked face
    idle_frames: int = 0            # output frames with no fresh camera frame
    # Camera frames the renders jumped over to stay current, the run so far (an interval's line
    # too): gaps between the camera frames rendered, so re-rendering one frame cannot hide any.
    dropped: int = 0
    render_errors: int = 0
    camera_losses: int = 0
    camera_reopens: int = 0
    stop_reason: str = ""
    shutdown_s: float = 0.0         # from the stop request to everything closed
    threads_left: tuple[str, ...] = ()
    trace: tuple[FrameTrace, ...] = field(default=(), repr=False)

    def line(self) -> str:
        """One status line: fps, latency, camera frames dropped so far, per-stage ms."""
        lat = ("latency p50 %.0f / p95 %.0f ms" % (self.latency_p50_ms, self.latency_p95_ms)
               if self.latency_p50_ms is not None else "latency n/a (no camera frames)")
        # A count that keeps climbing is the renderer falling behind the camera, seen while it
        # happens rather than only in the summary at the end.
        drop = f"  drop {self.dropped}" if self.captured else ""
        stages = "  ".join(f"{k} {v.mean_ms:.0f}" for k, v in self.stages.items() if v.count)
        return f"{self.fps:5.2f} fps  {lat}{drop}  |  ms: {stages}"


@dataclass(frozen=True)
class LiveStatus:
    """The running pipeline right now (``LivePipeline.status()``, from any thread). Rates and
    stage times are over the last ``STATUS_WINDOW_S`` seconds of frames."""

    running: bool
    frames: int                     # output frames so far
    fps: float
    latency_ms: float | None        # capture -> sinks, mean (None: no camera frame lately)
    stages_ms: dict[str, float]     # mean per stage (track, retarget, animate, render, output)
    face: bool                      # the newest frame was driven by a tracked face
    source: str
    source_connected: bool
    sinks: tuple[tuple[FrameSink, bool], ...]   # every sink, and whether it is open
    expression: str | None          # the expression preset on, if any
    pose: Pose | None               # the newest frame's pose


STATUS_WINDOW_S = 5.0


class Window:
    """Samples for one reporting interval and for the whole run."""

    def __init__(self) -> None:
        self.stage: dict[str, list[float]] = {s: [] for s in STAGES}
        self.latency: list[float] = []
        self.frames = 0
        self.t0 = time.monotonic()

    def add(self, stage: str, ms: float) -> None:
        self.stage[stage].append(ms)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def stage_stats(samples: Mapping[str, list[float]]) -> dict[str, StageStats]:
    out = {}
    for name, values in samples.items():
        if values:
            a = np.asarray(values)
            out[name] = StageStats(float(a.mean()), float(np.percentile(a, 50)),
                                   float(np.percentile(a, 95)), len(a))
        else:
            out[name] = StageStats(0.0, 0.0, 0.0, 0)
    return out
