"""Offline runs: the live stages driven by a recording instead of the clock, every frame kept.

    face samples (video file, or a live source recorded) ─▶ track() ─▶ PoseFrame ─▶ poses.jsonl
    PoseFrame ─▶ render_poses() ─▶ a FrameSink (video file, PNG folder)

``thacam track`` and ``thacam render`` are these loops with the stages built from a profile exactly
as the live run builds them (thacam.app.motion_stages). A poses file holds one JSON object per
frame: ``{"t_ms": ..., "face": true, "pose": {"head_y": 0.1, ...}}``; it is written under a
temporary name and renamed, so a crash never leaves half a file.

Must not import torch or thacam.cli.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import PoseValueError, UserError
from .files import atomic_open
from .lipsync import blend_mouth
from .pose import NAMES, Pose
from .sources import FaceSample, FaceSource

__all__ = ["PoseFrame", "video_samples", "source_samples", "track", "write_poses",
           "read_poses", "poses_fps", "render_poses"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoseFrame:
    """One frame of an offline run: its time, whether a face was seen, the pose to render."""

    t_ms: float
    face: bool
    pose: Pose


def video_samples(path: Path | str, tracker: Any) -> Iterator[FaceSample]:
    """Every frame of a video file, tracked, timed by the file's clock.

    Raises:
        CameraUnavailable: the file is missing or OpenCV cannot read it.
    """
    from .capture.opencv import video_frames  # OpenCV only when a video is read
    for frame in video_frames(path):
        t0 = time.perf_counter()
        obs = tracker.detect(frame)
        yield FaceSample(frame.t_ms, obs, frame.index, frame,
                         (time.perf_counter() - t0) * 1000.0)


def source_samples(source: FaceSource, frames: int | None = None,
                   seconds: float | None = None) -> Iterator[FaceSample]:
    """Samples from an opened live source (a phone tracker, the webcam) until ``frames``
    samples or ``seconds`` have passed, timed from the first sample. The caller opens the
    source, so an input that cannot start fails before anything else is shown."""
    t_end = None if seconds is None else time.monotonic() + seconds
    t0: float | None = None
    n = 0
    while (frames is None or n < frames) and (t_end is None or time.monotonic() < t_end):
        sample = source.next(timeout=0.1)
        if sample is None:
            continue
        t0 = sample.t_ms if t0 is None else t0
        yield FaceSample(sample.t_ms - t0, sample.obs, n, sample.frame, sample.sense_ms,
                         sample.speech)
        n += 1


def track(samples: Iterable[FaceSample], retargeter: Any, animator: Any | None,
          calibrate_frames: int = 0, lipsync: Any | None = None) -> Iterator[PoseFrame]:
    """Face samples -> retarget -> animation (None: raw retarget, neutral without a face) ->
    the sound's mouth blended in (``lipsync``: LipSyncSettings; samples carry their Speech).

    With ``calibrate_frames`` > 0 the first that many faces become the neutral pose before any
    frame is retargeted (they are kept, not read twice; a clip with fewer faces calibrates on
    what it has).
    """
    it = iter(samples)
    pending: list[FaceSample] = []
    if calibrate_frames > 0:
        faces = []
        for sample in it:
            pending.append(sample)
            if sample.obs is not None:
                faces.append(sample.obs)
                if len(faces) >= calibrate_frames:
                    break
        if faces:
            retargeter.calibrate(faces)
        else:
            log.warning("no face in the first %d frames: nothing to calibrate on", len(pending))

    def every() -> Iterator[FaceSample]:
        yield from pending
        yield from it

    for sample in every():
        pose = retargeter.update(sample.obs) if sample.obs is not None else None
        if animator is not None:
            pose = animator.step(pose, sample.t_ms / 1000.0)
        pose = pose if pose is not None else Pose()
        if lipsync is not None:
            pose = blend_mouth(pose, sample.speech, sample.obs is not None, lipsync)
        yield PoseFrame(sample.t_ms, sample.obs is not None, pose)


def write_poses(frames: Iterable[PoseFrame], path: Path | str,
                on_frame: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Write a poses.jsonl (temp file, then rename). Returns (frames, frames with a face)."""
    n = faces = 0
    with atomic_open(Path(path), "w") as f:
        for frame in frames:
            f.write(json.dumps({"t_ms": round(frame.t_ms, 3), "face": frame.face,
                                "pose": frame.pose.to_dict()}) + "\n")
            n += 1
            faces += frame.face
            if on_frame is not None:
                on_frame(n)
    return n, faces


def read_poses(path: Path | str) -> list[PoseFrame]:
    """A poses.jsonl from `thacam track`: one {"t_ms", "face", "pose": {name: value}} per line.

    Raises:
        UserError: a line is not JSON, lacks "pose", or names an unknown parameter.
    """
    out = []
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--poses {path}: no such file; make one with `thacam track`")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a text file (byte {exc.start} is not UTF-8); give a "
                        "poses.jsonl as `thacam track` writes it") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            pose = Pose.from_dict(obj["pose"], strict=False)
            t_ms = float(obj.get("t_ms", len(out) * 1000.0 / 30.0))
            face = bool(obj.get("face", True))
            # NaN would render a fully transparent frame without any other error.
            bad = [name for name, v in zip(NAMES, pose.values) if not math.isfinite(v)]
            if bad or not math.isfinite(t_ms):
                raise ValueError(f"not a finite number: {', '.join(bad) or 't_ms'}")
        except (ValueError, KeyError, TypeError, AttributeError, PoseValueError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise UserError(f"{path}:{n}: not a thacam pose line ({what}); expected "
                            '{"t_ms": ..., "face": true, "pose": {"head_y": 0.1, ...}} '
                            "as `thacam track` writes") from None
        out.append(PoseFrame(t_ms, face, pose.clamped()))
    if not out:
        raise UserError(f"--poses {path}: the file holds no poses")
    return out


def poses_fps(frames: list[PoseFrame]) -> float:
    """The frame rate a poses file was recorded at (median step), 30 when it cannot tell; kept
    within 1-240 (sub-millisecond steps would otherwise announce a video at 10^9 fps)."""
    steps = sorted(b.t_ms - a.t_ms for a, b in zip(frames, frames[1:]) if b.t_ms > a.t_ms)
    fps = 1000.0 / steps[len(steps) // 2] if steps else 30.0
    if not 1.0 <= fps <= 240.0:
        log.warning("the poses' timing gives %.3g fps; writing %g fps (set it with --fps)", fps,
                    min(240.0, max(1.0, fps)))
    return min(240.0, max(1.0, fps))


def render_poses(poses: Iterable[PoseFrame], renderer: Any, sink: Any, batch: int = 1,
                 on_frame: Callable[[int, Any], None] | None = None) -> int:
    """Render poses ``batch`` at a time into ``sink``, in order; ``on_frame(n, rgba)`` hears of
    each frame sent (n counts from 1).

    Where frames are still on their way (a GPU: ``in_flight``), batch k+1 is queued
    (Renderer.render_batch_async) before batch k's frames are waited for and sent, so the model
    works while the host encodes; on a CPU each batch is sent as soon as it is rendered, and a
    sink on its own thread (thacam.output.threaded.SinkThread) gives the overlap. Returns the
    number of frames written.
    """
    batch = max(1, int(batch))
    buf: list[PoseFrame] = []
    written = 0
    queued: tuple[list[PoseFrame], Any] | None = None

    def send(frames: list[PoseFrame], pending: Any) -> None:
        nonlocal written
        for p, rgba in zip(frames, pending.result()):
            sink.send(rgba, p.t_ms)
            written += 1
            if on_frame is not None:
                on_frame(written, rgba)

    def flush() -> None:
        nonlocal queued
        if not buf:
            return
        frames, pending = list(buf), renderer.render_batch_async([p.pose for p in buf])
        buf.clear()
        if queued is not None:
            send(*queued)
            queued = None
        if pending.in_flight:
            queued = (frames, pending)
        else:                   # nothing to overlap: holding it back would only delay it
            send(frames, pending)

    for p in poses:
        buf.append(p)
        if len(buf) >= batch:
            flush()
    flush()
    if queued is not None:
        send(*queued)
    return written
