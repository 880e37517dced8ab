"""The live loop: real clip -> real tracking -> real model -> file and virtual camera; scheduling
(newest frame only, latency), faults (camera lost and back, render errors, no virtual camera),
Ctrl-C; and `thacam render`.

CI budget: ~120 s on 2 CPU cores, almost all of it the real THA3 model (about 1.7 s a frame):
the real loop renders 5 frames + 4 reference frames, the Ctrl-C run 1-2 frames, `thacam render`
2 + 2 frames and 2 reference frames: ~20 renders, ~50 s on an idle machine (265 s measured for
all output/capture/pipeline tests with 8 jobs sharing the 2 cores). Scheduling and fault tests use a fake tracker and renderer (pixels do not matter
there) with the real Capture, Animator and sinks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from thacam.animation import Animator
from thacam.capture import Capture, now_ms
from thacam.capture.opencv import VideoFileSource
from thacam.cli.live import _print_run_stats
from thacam.errors import CameraUnavailable
from thacam.output import FrameSink, composite
from thacam.output.vcam import VirtualCamSink, vcam_instructions
from thacam.output.video import VideoFileSink
from thacam.pipeline import LivePipeline, LiveSettings
from thacam.pose import Pose
from thacam.runstats import RunStats, StageStats
from thacam.sources.webcam import WebcamFaces

from output_fixtures import no_vcam_backend, recording_vcam  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
EYE_CLOSURE = [f"eye_{kind}_{side}" for kind in ("wink", "happy_wink", "relaxed")
               for side in ("left", "right")]


def _decode(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


# ------------------------------------------------------------------------------------- fakes

class FakeObs:
    def __init__(self, frame):
        self.frame = frame
        self.landmarks = np.full((478, 3), 0.5, np.float32)
        self.mirrored = False


class FakeTracker:
    """Sees a face in every frame; remembers every frame's capture time."""

    def __init__(self):
        self.t_by_index: dict[int, float] = {}
        self.mirror = False

    def detect(self, frame):
        self.t_by_index[frame.index] = frame.t_ms
        return FakeObs(frame)


class FakeRetargeter:
    def apply_settings(self, settings) -> None:
        self.settings = settings

    def update(self, obs) -> Pose:
        pose = Pose()
        pose["mouth_aaa"] = (obs.frame.index % 100) / 100.0
        return pose

    def calibrate(self, obs):
        return "calibrated"


class FakeRenderer:
    def __init__(self, delay_s: float = 0.0, fail_on: set[int] = frozenset(), hook=None):
        self.delay_s = delay_s
        self.fail_on = set(fail_on)
        self.calls = 0
        self.hook = hook

    def render(self, pose: Pose) -> np.ndarray:
        self.calls += 1
        if self.hook is not None:
            self.hook(self.calls)
        if self.calls in self.fail_on:
            raise RuntimeError(f"render {self.calls} failed on purpose")
        if self.delay_s:
            time.sleep(self.delay_s)
        out = np.zeros((64, 64, 4), np.uint8)
        out[16:48, 16:48] = (255, 0, 0, 255)
        return out


class RecordingSink(FrameSink):
    """Remembers (capture time it was given, time it was called); can stop the run."""

    def __init__(self, on_send=None):
        self.sent: list[tuple[float, float]] = []
        self.on_send = on_send
        self.entered = self.closed = False

    def open(self):
        self.entered = True
        return self

    def send(self, rgba, t_capture_ms):
        self.sent.append((t_capture_ms, now_ms()))
        if self.on_send is not None:
            self.on_send(self)

    def close(self):
        self.closed = True


class GatedSource:
    """A camera whose frames the test lets through, ``release(n)`` at a time; once ``free`` it
    is an ordinary 200 fps camera (a real camera's read always returns within a frame time)."""

    description = "gated test camera"

    def __init__(self, free: bool = False):
        self.gate = threading.Semaphore(0)
        self.delivered = 0
        self.stopped = False
        self.free = free

    def release(self, n: int) -> None:
        for _ in range(n):
            self.gate.release()

    def open(self):
        pass

    def read(self):
        while not self.gate.acquire(timeout=0.005):
            if self.free:
                break
        self.delivered += 1
        return np.full((8, 8, 3), self.delivered % 256, np.uint8)

    def close(self):
        self.stopped = True


class FlakySource:
    """``good`` frames, then lost; reopening fails ``refusals`` times, then it is back."""

    description = "flaky test camera"

    def __init__(self, good: int, refusals: int):
        self.good, self.refusals = good, refusals
        self.opens = self.reads = 0
        self.is_open = False

    def open(self):
        self.opens += 1
        if 1 < self.opens <= 1 + self.refusals:
            raise CameraUnavailable("still unplugged")
        self.is_open = True

    def read(self):
        time.sleep(0.01)
        if not self.is_open:
            return None
        self.reads += 1
        if self.reads == self.good:
            return None
        return np.zeros((8, 8, 3), np.uint8)

    def close(self):
        self.is_open = False


def _no_thacam_threads():
    return not [t.name for t in threading.enumerate() if t.name.startswith("thacam-")
                and t.name != "thacam-obs"]


# ------------------------------------------------------------------------- scheduling (fakes)

def test_a_slow_renderer_always_gets_the_newest_frame_and_latency_is_capture_to_send(capsys):
    source = GatedSource()
    tracker = FakeTracker()
    pipeline: LivePipeline | None = None
    rounds = 6
    burst = 3

    def between_renders(call: int) -> None:
        # While frame k renders, the camera delivers 3 more frames and all of them are tracked:
        # a queue would render them one by one; thacam must jump to the last.
        target = burst * call
        if call == rounds:
            # The last render: let the camera run so the run can end, and wait for two frames
            # that no render will take (the run stops first): read, but not dropped.
            source.free = True
            target = burst * (rounds - 1) + 2
        else:
            source.release(burst)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            newest = pipeline.tracked_results.newest()
            if newest is not None and newest.frame.index >= target:
                break
            time.sleep(0.002)
        time.sleep(0.03)          # the renderer is slow, too

    sink = RecordingSink()
    periodic: list[RunStats] = []
    pipeline = LivePipeline(WebcamFaces(Capture(source, retry_s=0.05), tracker),
                            FakeRetargeter(), Animator(seed=1),
                            FakeRenderer(hook=between_renders), [sink],
                            LiveSettings(fps=1000, trace=True, stats_every_s=1e-6,
                                         camera_stale_s=30), on_stats=periodic.append)
    source.release(1)
    stats = pipeline.run(frames=rounds)
    indices = [t.frame_index for t in stats.trace]
    # Frame 0 first; after that each render takes the newest of each burst of 3: 3, 6, 9, ...
    assert indices == [burst * k for k in range(rounds)]
    for t in stats.trace:
        assert t.newest_tracked == t.frame_index == t.newest_captured
    # The capture time handed to the sink is that newest frame's, exactly.
    assert [c for c, _ in sink.sent] == [tracker.t_by_index[i] for i in indices]
    # Reported latency = capture -> send, as the sink itself measured it.
    sink_latency = [s - c for c, s in sink.sent]
    trace_latency = [t.t_send_ms - t.t_capture_ms for t in stats.trace]
    assert all(0 <= s - r < 50 for s, r in zip(sink_latency, trace_latency))
    assert stats.latency_p50_ms == pytest.approx(np.percentile(trace_latency, 50))
    assert stats.latency_p95_ms == pytest.approx(np.percentile(trace_latency, 95))
    assert stats.captured >= 1 + burst * (rounds - 1)
    # The periodic lines count the frames dropped so far in the run, not just in their interval:
    # the 2 of each burst of 3 that no render took.
    assert [p.dropped for p in periodic] == [2 * k for k in range(rounds)]
    assert stats.dropped == 2 * (rounds - 1)
    assert f"drop {2 * (rounds - 1)}  |" in periodic[-1].line()
    # The end-of-run summary says the last status line's figure, although frames were read
    # after the last render (an "unrendered frames" count would have called them skipped).
    assert stats.captured >= rounds + stats.dropped + 2
    capsys.readouterr()
    _print_run_stats(stats)
    summary = " ".join(capsys.readouterr().err.split())     # rich wraps at the console width
    assert f"{stats.captured} read, {periodic[-1].dropped} dropped to stay current" in summary
    assert sink.entered and sink.closed and _no_thacam_threads()


def test_the_status_line_shows_the_camera_frames_skipped_so_far():
    stage = {"render": StageStats(40.0, 40.0, 45.0, 10)}
    stats = RunStats(frames=10, seconds=2.0, fps=5.0, latency_p50_ms=60.0, latency_p95_ms=80.0,
                     stages=stage, captured=60, dropped=35)
    assert stats.line() == " 5.00 fps  latency p50 60 / p95 80 ms  drop 35  |  ms: render 40"
    caught_up = RunStats(frames=10, seconds=2.0, fps=5.0, latency_p50_ms=60.0,
                         latency_p95_ms=80.0, stages=stage, captured=25)
    assert "  drop 0  |" in caught_up.line()
    # no camera frames at all: nothing to drop, no field
    idle = RunStats(frames=10, seconds=2.0, fps=5.0, latency_p50_ms=None, latency_p95_ms=None,
                    stages=stage)
    assert idle.line() == " 5.00 fps  latency n/a (no camera frames)  |  ms: render 40"


def test_camera_lost_mid_run_idles_then_recovers():
    source = FlakySource(good=10, refusals=3)
    capture = Capture(source, retry_s=0.15)
    pipeline: LivePipeline | None = None
    state = {"back_frames": 0}

    def on_send(sink):
        newest = pipeline.tracked_results.newest()
        if capture.stats.reopens >= 1 and newest is not None and newest.frame.index > 10:
            state["back_frames"] += 1
        if state["back_frames"] >= 5 or len(sink.sent) > 3000:
            pipeline.stop()

    sink = RecordingSink(on_send)
    pipeline = LivePipeline(WebcamFaces(capture, FakeTracker()), FakeRetargeter(),
                            Animator(seed=2), FakeRenderer(delay_s=0.005), [sink],
                            LiveSettings(fps=100, trace=True, stats_every_s=0,
                                         camera_stale_s=0.2))
    stats = pipeline.run()
    idx = [t.frame_index for t in stats.trace]
    # Camera frames 0-8 came before the loss, 9 on after it (frame 9 is the first after reopening).
    last_before = max(p for p, i in enumerate(idx) if i is not None and i <= 8)
    first_after = min(p for p, i in enumerate(idx) if i is not None and i >= 9)
    assert last_before < first_after
    idle = stats.trace[last_before + 1:first_after]
    assert len(idle) >= 3 and all(t.frame_index is None for t in idle)  # frames kept coming
    assert len([i for i in idx[first_after:] if i is not None]) >= 5      # and it recovered
    # ... and the avatar kept moving (breathing, sway), not a frozen frame.
    assert len({t.pose.values.tobytes() for t in idle}) == len(idle)
    assert stats.camera_losses == 1 and stats.camera_reopens == 1 and stats.idle_frames >= 5
    assert stats.stop_reason == "stopped" and _no_thacam_threads()


def test_a_frame_that_fails_to_render_is_skipped_not_fatal(caplog):
    source = GatedSource(free=True)
    sink = RecordingSink()
    pipeline = LivePipeline(WebcamFaces(Capture(source), FakeTracker()), FakeRetargeter(),
                            Animator(seed=3), FakeRenderer(fail_on={2, 3}), [sink],
                            LiveSettings(fps=200, stats_every_s=0))
    stats = pipeline.run(frames=4)
    assert stats.frames == 4 and len(sink.sent) == 4 and stats.render_errors == 2
    assert "rendering a frame failed" in caplog.text and "on purpose" in caplog.text


def test_no_virtual_camera_still_writes_the_file_and_says_how_to_get_one(tmp_path, caplog,
                                                                          no_vcam_backend):
    source = GatedSource(free=True)
    out = tmp_path / "out.mp4"
    pipeline = LivePipeline(WebcamFaces(Capture(source), FakeTracker()), FakeRetargeter(),
                            Animator(seed=4), FakeRenderer(),
                            [VirtualCamSink((64, 64)), VideoFileSink(out, fps=10)],
                            LiveSettings(fps=200, stats_every_s=0))
    stats = pipeline.run(frames=3)
    frames = _decode(out)
    assert stats.frames == 3 and len(frames) == 3 and frames[0].shape == (64, 64, 3)
    assert vcam_instructions() in caplog.text
    # With nothing else to send to, the missing camera is the error itself.
    with pytest.raises(Exception, match="no virtual camera"):
        LivePipeline(WebcamFaces(Capture(GatedSource(free=True)), FakeTracker()),
                     FakeRetargeter(), Animator(), FakeRenderer(),
                     [VirtualCamSink((64, 64))]).run(frames=1)
    assert _no_thacam_threads()


def test_keys_from_a_sink_reach_the_controls_and_the_running_stages():
    from thacam.controls import Controls
    from thacam.output import KeyEvent
    from thacam.profile import Profile

    keys = iter([KeyEvent("H"), KeyEvent("1"), KeyEvent("m"), KeyEvent("q")])

    class KeySink(RecordingSink):
        """A window stand-in: one key per frame shown, messages remembered."""
        wants_info = True

        def __init__(self):
            super().__init__()
            self.notes: list[str] = []
            self.infos = 0

        def pump(self):
            if len(self.sent) > len(self.notes) + 3:     # a key every few frames
                event = next(keys, None)
                return [event] if event else []
            return []

        def show_info(self, info):
            self.infos += 1

        def notify(self, message):
            self.notes.append(message)

    sink = KeySink()
    retargeter, animator, tracker = FakeRetargeter(), Animator(seed=5), FakeTracker()
    pipeline = LivePipeline(WebcamFaces(Capture(GatedSource(free=True)), tracker), retargeter,
                            animator, FakeRenderer(), [sink],
                            LiveSettings(fps=500, stats_every_s=0))
    controls = Controls(Profile(), target=pipeline)
    pipeline.on_key = lambda event: getattr(controls.key(event), "message", None)
    stats = pipeline.run(frames=2000)
    assert stats.stop_reason == "quit key" and stats.frames < 2000
    assert retargeter.settings == controls.profile.retarget            # head gain reached it
    assert retargeter.settings.head_y_range_deg < Profile().retarget.head_y_range_deg
    assert animator.expression.name == Profile().expressions["1"].name  # the preset is on
    assert tracker.mirror is True                                      # 'm' flipped the source
    assert [n.split(":")[0] for n in sink.notes] == [
        "head gain up", f"{Profile().expressions['1'].name} on", "mirror on", "quitting"]
    assert sink.infos == stats.frames and _no_thacam_threads()


# ------------------------------------------------------------------------ the real loop

def _blink_clip(faces_dir: Path, path: Path, open_frame=50, closed_frame=66, hold=35) -> int:
    """d0's open-eye frame and its blink frame, each held ``hold`` frames (one loop period)."""
    cap = cv2.VideoCapture(str(faces_dir / "d0.mp4"))
    frames = {}
    i = 0
    while len(frames) < 2:
        ok, bgr = cap.read()
        assert ok
        if i in (open_frame, closed_frame):
            frames[i] = bgr
        i += 1
    cap.release()
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (512, 512))
    for bgr in [frames[open_frame]] * hold + [frames[closed_frame]] * hold:
        w.write(bgr)
    w.release()
    return hold


def _eye_distance(out_rgb, pose: Pose, renderer, eyes: float):
    """Mean distance of the output's eye region to a render of ``pose`` and to the same pose
    with the eyes set to ``eyes`` (0 open, 1 shut); the region is where those two differ."""
    other = pose.copy()
    for name in EYE_CLOSURE:
        other[name] = 0.0
    if eyes:
        other["eye_wink_left"] = other["eye_wink_right"] = 1.0
    a = composite(renderer.render(pose)).astype(np.float32)
    b = composite(renderer.render(other)).astype(np.float32)
    mask = np.abs(a - b).max(axis=2) > 40
    out = out_rgb.astype(np.float32)
    whole = float(np.abs(out - a).mean())
    d_same = float(np.abs(out - a)[mask].mean()) if mask.any() else 0.0
    d_other = float(np.abs(out - b)[mask].mean()) if mask.any() else 0.0
    return int(mask.sum()), whole, d_same, d_other


@pytest.mark.slow
def test_real_loop_from_a_clip_writes_the_frames_and_the_blink_shows(
        tmp_path, faces_dir, landmarker_model, samples_dir, renderer_cpu, recording_vcam):
    from thacam.character import load_character
    from thacam.retarget import Retargeter
    from thacam.tracking import FaceTracker

    clip = tmp_path / "blink.mp4"
    hold = _blink_clip(faces_dir, clip)
    renderer_cpu.set_character(load_character(samples_dir / "crypko_00.png"))
    out = tmp_path / "live.mp4"
    n = 5

    class Paced:
        """The real renderer, never faster than 1 s a frame: five frames then span both halves
        of the clip (1.4 s each) whatever this machine's render time (1-2 s)."""

        def render(self, pose):
            t0 = time.monotonic()
            rgba = renderer_cpu.render(pose)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
            return rgba

    pipeline = LivePipeline(
        WebcamFaces(Capture(VideoFileSource(clip)), FaceTracker(landmarker_model, mirror=False)),
        Retargeter(), Animator(seed=0), Paced(),
        [VideoFileSink(out, fps=5), VirtualCamSink((512, 512), fps=30, backend="thacam-test")],
        LiveSettings(fps=30, trace=True, stats_every_s=0))
    stats = pipeline.run(frames=n)

    frames = _decode(out)
    assert len(frames) == n and frames[0].shape == (512, 512, 3)
    (cam,) = recording_vcam.instances
    assert (cam.width, cam.height, cam.fps, cam.fmt.name) == (512, 512, 30, "RGBA")
    assert len(cam.frames) == n and cam.frames[0].shape == (512, 512, 4) and cam.closed
    assert stats.frames == n and len(stats.trace) == n and stats.faces >= 1
    assert stats.latency_p50_ms is not None and stats.stages["render"].count == n

    # Which output frames came from the blink half of the clip (a transition frame or two is
    # left out: the tracker may take a frame to follow a jump).
    by_state = {"closed": [], "open": []}
    for t, rgb in zip(stats.trace, frames):
        if t.frame_position is None or t.frame_position % hold < 2:
            continue
        by_state["closed" if t.frame_position >= hold else "open"].append((t, rgb))
    assert by_state["closed"], f"no output frame came from the blink ({stats.trace})"
    t, rgb = by_state["closed"][0]
    pixels, whole, d_closed, d_open = _eye_distance(rgb, t.pose, renderer_cpu, eyes=0)
    print(f"positions {[t.frame_position for t in stats.trace]}; closed frame: {pixels} px, "
          f"whole {whole:.2f}, eyes {d_closed:.1f} vs open {d_open:.1f}; "
          f"closure {[round(t.pose[n], 2) for n in EYE_CLOSURE]}; {stats.line()}")
    assert whole < 4.0                   # the file holds exactly the render of that pose
    assert pixels > 200                  # the pose's eyes are shut enough to change the image
    assert d_closed < 0.5 * d_open       # and the output shows shut eyes there
    if by_state["open"]:
        t, rgb = by_state["open"][0]
        pixels, whole, d_open, d_shut = _eye_distance(rgb, t.pose, renderer_cpu, eyes=1)
        print(f"open frame: {pixels} px, whole {whole:.2f}, eyes {d_open:.1f} vs shut {d_shut:.1f}")
        assert whole < 4.0 and pixels > 200 and d_open < 0.5 * d_shut


@pytest.mark.slow
@pytest.mark.parametrize("sig, reason", [(signal.SIGINT, "interrupted"),
                                         (signal.SIGTERM, "terminated")])
def test_ctrl_c_or_sigterm_exits_0_quickly_keeps_the_recording_and_leaves_no_thread(
        tmp_path, faces_dir, weights_dir, samples_dir, sig, reason):
    out = tmp_path / "live.mp4"
    cmd = [sys.executable, str(REPO / "thacam.py"), "--character",
           str(samples_dir / "crypko_00.png"), "--weights", str(weights_dir), "--camera",
           str(faces_dir / "d0.mp4"), "--no-mirror", "--device", "cpu", "--output", str(out),
           "--stats-every", "0", "--profile", str(tmp_path / "none.toml")]
    # No profile file may leak in from the checkout: point --profile at a fresh default one.
    (tmp_path / "none.toml").write_text("")
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    lines: list[str] = []
    first = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if "first frame out" in line:
                first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first.wait(240), "".join(lines)
        time.sleep(0.3)               # now inside the next render, the case that takes longest
        t0 = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    text = "".join(lines)
    assert rc == 0, text
    assert f"({reason})" in text and "Traceback" not in text
    assert "threads still running" not in text and "did not stop" not in text
    assert len(_decode(out)) >= 1                        # the live recording is kept
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []
    print(f"{sig.name} -> exit in {took:.2f} s")


# ---------------------------------------------------------------------------- thacam render

@pytest.mark.slow
def test_render_from_poses_writes_exactly_those_renders(tmp_path, weights_dir, samples_dir,
                                                        renderer_cpu):
    from thacam.character import load_character
    from thacam.cli import main

    poses = [Pose(), Pose()]
    poses[1]["eye_wink_left"] = 1.0
    poses[1]["head_y"] = 0.5
    jsonl = tmp_path / "poses.jsonl"
    jsonl.write_text("".join(json.dumps({"t_ms": 40.0 * i, "face": True, "pose": p.to_dict()})
                             + "\n" for i, p in enumerate(poses)))
    folder = tmp_path / "frames"
    character = samples_dir / "crypko_00.png"
    rc = main(["render", "--character", str(character), "--poses", str(jsonl), "--out",
               str(folder), "--weights", str(weights_dir), "--device", "cpu", "--batch", "2",
               "--backend", "torch"])  # the exact path: renders must equal the fixture's
    assert rc == 0
    from PIL import Image
    files = sorted(folder.glob("*.png"))
    assert [f.name for f in files] == ["frame_000000.png", "frame_000001.png"]
    renderer_cpu.set_character(load_character(character))
    want = renderer_cpu.render_batch(poses)
    for f, w in zip(files, want):
        got = np.asarray(Image.open(f))
        assert got.shape == (512, 512, 4)
        assert np.abs(got.astype(int) - w).max() <= 1       # batch of 2 = the same renders


@pytest.mark.slow
def test_render_from_a_video_tracks_every_frame(tmp_path, faces_dir, weights_dir, samples_dir,
                                                capsys):
    from thacam.cli import main
    clip = tmp_path / "two.mp4"
    cap = cv2.VideoCapture(str(faces_dir / "d0.mp4"))
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (512, 512))
    for _ in range(2):
        w.write(cap.read()[1])
    w.release()
    cap.release()
    out = tmp_path / "out.mp4"
    rc = main(["render", "--character", str(samples_dir / "crypko_00.png"), "--input", str(clip),
               "--out", str(out), "--weights", str(weights_dir), "--device", "cpu",
               "--calibrate-frames", "1", "--batch", "2"])
    assert rc == 0
    frames = _decode(out)
    assert len(frames) == 2 and frames[0].shape == (512, 512, 3)
    assert abs(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) - 25) < 0.5
    assert "wrote" in capsys.readouterr().out
    assert main(["render", "--character", str(samples_dir / "crypko_00.png"), "--input",
                 str(tmp_path / "missing.mp4"), "--out", str(out)]) == 2
