"""The live loop: capture -> tracking -> retarget -> animation -> render -> outputs.

Three threads, each working on the newest thing there is and never on a queue:

    thacam-capture   reads the camera; keeps only the newest Frame        (capture.Capture)
    thacam-tracking  takes the newest Frame -> FaceObservation -> Pose;
                     keeps only the newest result                         (_TrackingWorker)
    main thread      takes the newest result -> Animator -> Renderer ->
                     every sink; handles the preview's keys and Ctrl-C     (LivePipeline.run)

so rendering one frame overlaps capturing and tracking the next, a slow renderer skips camera
frames instead of falling behind, and the camera->output latency stays one render long. The
render stays in the main thread because OpenCV's window must live there and because Ctrl-C can
then interrupt a render in progress.

Every resource (camera, landmarker, sinks, OBS controller, threads, the SIGINT handler) is opened
inside one ExitStack in ``run`` and closed on every way out: ``--frames`` reached, Ctrl-C, q/Esc or
the window closed, or an error. Faults that are not fatal: camera lost (the avatar idles, the
camera is reopened every few seconds), face lost (the animator's idle layer), a frame that fails
to render (logged and skipped), a virtual camera that does not exist (instructions, the other
sinks go on).

The stages are passed in as objects, so tests can hand in a fake tracker, a failing camera or a
slow renderer. Must not import thacam.cli.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from .capture import Capture, Frame, Latest, now_ms
from .errors import VirtualCameraUnavailable
from .output import PreviewEvent, PreviewSink, VirtualCamSink, place
from .pose import Pose

__all__ = ["LiveSettings", "LivePipeline", "RunStats", "StageStats", "FrameTrace", "Tracked",
           "STAGES", "PoseFrame", "video_poses", "read_poses", "render_poses", "video_frame_count"]

log = logging.getLogger(__name__)

STAGES = ("capture", "track", "retarget", "animate", "render", "output")
_THREAD_NAMES = ("thacam-capture", "thacam-tracking")


class _Renderer(Protocol):
    def render(self, pose: Pose) -> np.ndarray: ...


@dataclass(frozen=True)
class LiveSettings:
    fps: float = 30.0               # most frames per second rendered (and what sinks announce)
    size: tuple[int, int] | None = None     # output frame (w, h); None = the avatar's 512x512
    placement: str = "center"
    scale: float = 1.0
    stats_every_s: float = 5.0      # how often a stats line goes to ``on_stats`` (0 = never)
    camera_stale_s: float = 1.0     # no new camera frame for this long counts as camera lost
    first_frame_wait_s: float = 3.0  # at start, wait this long for a tracked face before idling
    # Tracking runs at the camera's rate while renders are fast, but never spends more than a
    # quarter of a render's time between two results, and never waits longer than this: on a
    # CPU where a render takes seconds, tracking all 30 frames a second would take the cores the
    # render needs, for results nobody sees.
    max_track_interval_s: float = 0.2
    trace: bool = False             # keep a FrameTrace per output frame in RunStats (tests, debug)
    max_trace: int = 10_000


@dataclass(frozen=True)
class Tracked:
    """The tracking thread's result for one camera frame."""

    frame: Frame
    obs: Any | None                 # FaceObservation, or None: no face
    pose: Pose | None               # retargeted pose, None when no face
    track_ms: float
    retarget_ms: float
    capture_ms: float               # how long the source took to deliver this frame


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
    render_errors: int = 0
    camera_losses: int = 0
    camera_reopens: int = 0
    stop_reason: str = ""
    shutdown_s: float = 0.0         # from the stop request to everything closed
    threads_left: tuple[str, ...] = ()
    trace: tuple[FrameTrace, ...] = field(default=(), repr=False)

    @property
    def skipped_camera_frames(self) -> int:
        """Camera frames never rendered (skipped on purpose to stay current)."""
        return max(0, self.captured - (self.frames - self.idle_frames))

    def line(self) -> str:
        """One status line: fps, latency, per-stage ms."""
        lat = ("latency p50 %.0f / p95 %.0f ms" % (self.latency_p50_ms, self.latency_p95_ms)
               if self.latency_p50_ms is not None else "latency n/a (no camera frames)")
        stages = "  ".join(f"{k} {v.mean_ms:.0f}" for k, v in self.stages.items() if v.count)
        return f"{self.fps:5.2f} fps  {lat}  |  ms: {stages}"


class _Window:
    """Samples for one reporting interval and for the whole run."""

    def __init__(self) -> None:
        self.stage: dict[str, list[float]] = {s: [] for s in STAGES}
        self.latency: list[float] = []
        self.frames = 0
        self.t0 = time.monotonic()

    def add(self, stage: str, ms: float) -> None:
        self.stage[stage].append(ms)


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _stage_stats(samples: Mapping[str, list[float]]) -> dict[str, StageStats]:
    out = {}
    for name, values in samples.items():
        if values:
            a = np.asarray(values)
            out[name] = StageStats(float(a.mean()), float(np.percentile(a, 50)),
                                   float(np.percentile(a, 95)), len(a))
        else:
            out[name] = StageStats(0.0, 0.0, 0.0, 0)
    return out


class _RateLimitedLog:
    """The first failure with its traceback, then one line per ``every_s`` with a count."""

    def __init__(self, what: str, every_s: float = 5.0):
        self.what = what
        self.every_s = every_s
        self.count = 0
        self._last = -1e9
        self._since = 0

    def __call__(self, exc: BaseException) -> None:
        self.count += 1
        self._since += 1
        now = time.monotonic()
        if self.count == 1:
            log.error("%s failed; skipping it and going on", self.what, exc_info=exc)
            self._last = now
            self._since = 0
        elif now - self._last >= self.every_s:
            log.error("%s failed %d more times (last: %s)", self.what, self._since, exc)
            self._last = now
            self._since = 0


class _TrackingWorker:
    """Newest camera frame -> FaceObservation -> Pose, in its own thread; newest result kept."""

    def __init__(self, capture: Capture, tracker: Any, retargeter: Any, lock: threading.Lock,
                 interval_s: Callable[[], float] = lambda: 0.0):
        self.capture = capture
        self.interval_s = interval_s
        self.tracker = tracker
        self.retargeter = retargeter
        self.lock = lock
        self.results: Latest[Tracked] = Latest()
        self.error: BaseException | None = None
        self.tracked = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thacam-tracking", daemon=True)
        self._track_failed = _RateLimitedLog("face tracking of a frame")
        self._retarget_failed = _RateLimitedLog("retargeting a face")

    def start(self) -> "_TrackingWorker":
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.5) -> None:
        self._stop.set()
        self.capture.frames.wake()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the tracking thread did not stop within %.1f s", timeout)

    def _run(self) -> None:
        seq = 0
        last = 0.0
        try:
            while not self._stop.is_set():
                wait = last + self.interval_s() - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                got = self.capture.frames.wait_newer(seq, timeout=0.1)
                if got is None:
                    continue
                seq, frame = got
                last = time.monotonic()
                t0 = now_ms()
                try:
                    obs = self.tracker.detect(frame)
                except Exception as exc:  # one bad frame must not end the run
                    self._track_failed(exc)
                    obs = None
                t1 = now_ms()
                pose = None
                if obs is not None:
                    try:
                        with self.lock:
                            pose = self.retargeter.update(obs)
                    except Exception as exc:
                        self._retarget_failed(exc)
                t2 = now_ms()
                self.tracked += 1
                # capture_ms: the source's read time, kept on the frame's side of the slot.
                self.results.put(Tracked(frame, obs, pose, t1 - t0, t2 - t1, 0.0))
        except BaseException as exc:  # re-raised in the main thread
            self.error = exc


class LivePipeline:
    """Wires the stages; ``run(frames)`` drives them until told to stop and returns RunStats.

    Args:
        capture: a Capture (not started; run starts and stops it).
        tracker: has ``detect(frame) -> observation | None``; entered as a context manager if it
            is one (FaceTracker).
        retargeter: has ``update(obs) -> Pose`` and ``calibrate(obs)`` (Retargeter).
        animator: has ``step(pose | None, t_s) -> Pose`` and ``set_expression`` (Animator).
        renderer: has ``render(pose) -> (512, 512, 4) uint8`` (Renderer).
        sinks: FrameSinks, entered here. A VirtualCamSink that cannot open is dropped with the
            instructions as a warning, unless it is the only sink.
        presets: hotkey ("1".."9") -> ExpressionPreset for the preview's number keys.
        controllers: things told about the run (ObsController): entered as context managers,
            ``on_frames_started()`` after the first frame, closed on exit.
        on_stats: called every ``settings.stats_every_s`` with the interval's RunStats.
    """

    def __init__(self, capture: Capture, tracker: Any, retargeter: Any, animator: Any,
                 renderer: _Renderer, sinks: Sequence[Any], settings: LiveSettings = LiveSettings(),
                 *, presets: Mapping[str, Any] | None = None, controllers: Sequence[Any] = (),
                 on_stats: Callable[[RunStats], None] | None = None):
        if not sinks:
            raise ValueError("LivePipeline needs at least one sink")
        self.capture = capture
        self.tracker = tracker
        self.retargeter = retargeter
        self.animator = animator
        self.renderer = renderer
        self.sinks = list(sinks)
        self.settings = settings
        self.presets = dict(presets or {})
        self.controllers = list(controllers)
        self.on_stats = on_stats
        self._retarget_lock = threading.Lock()
        self._worker: _TrackingWorker | None = None
        self._stop = threading.Event()
        self._stop_reason = ""
        self._stop_t: float | None = None
        self._in_render = False
        self._render_failed = _RateLimitedLog("rendering a frame")
        self._render_s = 0.0            # recent render time (EWMA), paces the tracking thread

    # -- control from outside the loop ---------------------------------------------------------

    @property
    def tracked_results(self) -> Latest[Tracked] | None:
        """The tracking thread's newest-result slot while running (None otherwise)."""
        return self._worker.results if self._worker is not None else None

    def stop(self, reason: str = "stopped") -> None:
        """Ask the loop to finish (thread-safe); run() returns after closing everything."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop_t = time.monotonic()
        self._stop.set()

    def calibrate(self) -> Any | None:
        """Take the newest face as the neutral pose. Returns the Calibration, or None (no face)."""
        worker = self._worker
        if worker is None:
            return None
        _, tracked = worker.results.peek()
        if tracked is None or tracked.obs is None:
            log.warning("calibration needs a face in view: look at the camera and press c again")
            return None
        with self._retarget_lock:
            calibration = self.retargeter.calibrate(tracked.obs)
        log.info("calibrated: this is your neutral pose now")
        return calibration

    def toggle_mirror(self) -> bool | None:
        if not hasattr(self.tracker, "mirror"):
            log.warning("this tracker cannot mirror")
            return None
        self.tracker.mirror = not self.tracker.mirror
        log.info("mirror %s", "on" if self.tracker.mirror else "off")
        return self.tracker.mirror

    # -- the loop ------------------------------------------------------------------------------

    def run(self, frames: int | None = None) -> RunStats:
        """Run until ``frames`` output frames were sent (None: until stopped)."""
        self._stop.clear()
        self._stop_reason, self._stop_t = "", None
        self._render_s = 0.0
        total = _Window()
        window = _Window()
        trace: list[FrameTrace] = []
        counts = {"faces": 0, "idle": 0}
        t_start = time.monotonic()
        previews: list[PreviewSink] = []
        try:
            with contextlib.ExitStack() as stack:
                self._install_sigint(stack)
                if hasattr(self.tracker, "__enter__"):
                    stack.enter_context(self.tracker)
                sinks = self._open_sinks(stack)
                previews = [p for p in sinks if isinstance(p, PreviewSink)]
                for c in self.controllers:
                    if hasattr(c, "__enter__"):
                        stack.enter_context(c)
                self.capture.start()
                stack.callback(self.capture.stop)
                self._worker = _TrackingWorker(self.capture, self.tracker, self.retargeter,
                                               self._retarget_lock, self._track_interval).start()
                stack.callback(self._worker.stop)
                log.info("running: %s -> %s; Ctrl-C stops", self.capture.source.description,
                         ", ".join(_describe(k) for k in sinks))
                stack.callback(self._note_shutdown_start)   # runs first on the way out
                self._loop(frames, sinks, previews, total, window, trace, counts)
        except KeyboardInterrupt:
            # Ctrl-C outside a render (e.g. while opening): everything above is closed already.
            self._stop_reason = self._stop_reason or "interrupted"
        except BaseException:
            self._stop_reason = self._stop_reason or "error"
            raise
        finally:
            self._last_worker = self._worker
            self._worker = None
        end = time.monotonic()
        left = tuple(t.name for t in threading.enumerate()
                     if t.name in _THREAD_NAMES and t.is_alive())
        if left:
            log.warning("threads still running after shutdown: %s", ", ".join(left))
        stats = self._stats(total, end - t_start, counts, trace)
        shutdown = end - self._stop_t if self._stop_t is not None else 0.0
        return replace(stats, stop_reason=self._stop_reason or "stopped",
                       shutdown_s=shutdown, threads_left=left)

    def _track_interval(self) -> float:
        return min(self.settings.max_track_interval_s, self._render_s / 4.0)

    def _note_shutdown_start(self) -> None:
        if self._stop_t is None:
            self._stop_t = time.monotonic()

    def _install_sigint(self, stack: contextlib.ExitStack) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_sigint(signum, frame):
            first = not self._stop.is_set()
            self.stop("interrupted")
            # A render takes seconds on a CPU: abort it rather than wait (a second Ctrl-C
            # aborts whatever is running).
            if self._in_render or not first:
                raise KeyboardInterrupt

        old = signal.signal(signal.SIGINT, on_sigint)
        stack.callback(signal.signal, signal.SIGINT, old)

    def _open_sinks(self, stack: contextlib.ExitStack) -> list[Any]:
        opened: list[Any] = []
        unavailable: list[VirtualCameraUnavailable] = []
        for sink in self.sinks:
            try:
                opened.append(stack.enter_context(sink) if hasattr(sink, "__enter__") else sink)
            except VirtualCameraUnavailable as exc:
                unavailable.append(exc)
        if unavailable:
            if not opened:
                raise unavailable[0]
            for exc in unavailable:
                log.warning("%s; going on with the other outputs", exc)
        return opened

    def _loop(self, frames: int | None, sinks: list[Any], previews: list[PreviewSink],
              total: _Window, window: _Window, trace: list[FrameTrace],
              counts: dict[str, int]) -> None:
        s = self.settings
        worker = self._worker
        assert worker is not None
        min_interval = 1.0 / s.fps
        idle_wait = 1.0 / s.fps
        last_start = -1e9
        last_seq = 0
        last_report = time.monotonic()
        out = 0
        # The first render should show the user, not the idle pose: tracking starts in well
        # under a second, a render can take seconds.
        self._wait(s.first_frame_wait_s, previews, worker.results, 0)
        while True:
            if frames is not None and out >= frames:
                self.stop("frames")
            if self._stop.is_set():
                break
            self._check_threads()
            # Pace to at most fps; then render on the next tracked frame, or without one
            # after idle_wait (camera slow or lost: the avatar keeps breathing).
            self._wait(last_start + min_interval - time.monotonic(), previews, None, 0)
            if self._stop.is_set():
                break
            self._wait(idle_wait, previews, worker.results, last_seq)
            if self._stop.is_set():
                break
            self._handle_events(previews)
            t_render = time.monotonic()
            last_start = t_render
            # The newest tracked frame, whatever came before it is skipped. Re-rendering the
            # same one (camera slower than fps) is fine: the face is still there.
            last_seq, tracked = worker.results.peek()
            fresh = (tracked is not None and self.capture.connected
                     and now_ms() - tracked.frame.t_ms < s.camera_stale_s * 1000.0)
            newest_captured = self.capture.frames.seq - 1 if self.capture.frames.seq else None
            t0 = now_ms()
            pose_in = tracked.pose if fresh else None
            pose = self.animator.step(pose_in, t_render)
            t1 = now_ms()
            try:
                self._in_render = True
                rgba = self.renderer.render(pose)
            except KeyboardInterrupt:
                break
            except Exception as exc:
                self._render_failed(exc)
                continue
            finally:
                self._in_render = False
            t2 = now_ms()
            self._render_s = (t2 - t1) / 1000.0 if out == 0 else \
                0.8 * self._render_s + 0.2 * (t2 - t1) / 1000.0
            if s.size is not None or s.scale != 1.0:
                rgba = place(rgba, s.size or (rgba.shape[1], rgba.shape[0]), s.placement,
                             s.scale)
            if previews and fresh:
                self._preview_info(previews, tracked, window)
            elif previews:
                self._preview_info(previews, None, window)
            t_capture = tracked.frame.t_ms if fresh else t2
            t_send = now_ms()
            for sink in sinks:
                sink.send(rgba, t_capture)
            t3 = now_ms()
            out += 1
            if out == 1:
                log.info("first frame out")
                for c in self.controllers:
                    if hasattr(c, "on_frames_started"):
                        c.on_frames_started()
            for w in (total, window):
                w.frames += 1
                w.add("animate", t1 - t0)
                w.add("render", t2 - t1)
                w.add("output", t3 - t_send)
                if fresh:
                    w.latency.append(t_send - t_capture)
                    w.add("track", tracked.track_ms)
                    w.add("retarget", tracked.retarget_ms)
            if fresh and tracked.pose is not None:
                counts["faces"] += 1
            elif not fresh:
                counts["idle"] += 1
            if s.trace and len(trace) < s.max_trace:
                trace.append(FrameTrace(
                    out - 1, tracked.frame.index if fresh else None,
                    tracked.frame.position if fresh else None,
                    tracked.frame.t_ms if fresh else None, t_send, newest_captured,
                    tracked.frame.index if tracked is not None else None,
                    bool(fresh and tracked.pose is not None), pose))
            now = time.monotonic()
            if s.stats_every_s > 0 and now - last_report >= s.stats_every_s:
                if self.on_stats is not None:
                    self.on_stats(self._stats(window, now - window.t0, {}, []))
                window.__init__()
                last_report = now

    def _wait(self, seconds: float, previews: list[PreviewSink], slot: Latest | None,
              seq: int) -> bool:
        """Sleep up to ``seconds``, or until ``slot`` holds something newer than ``seq`` (True),
        keeping the preview window responsive and noticing a stop request."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if slot is not None and slot.seq > seq:
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                return False
            # Short steps: a preview must be pumped often, and a stop noticed quickly.
            step = min(left, 0.02 if previews else 0.1)
            if slot is not None:
                if slot.wait_newer(seq, step) is not None:
                    return True
            else:
                self._stop.wait(step)
            for p in previews:
                p.poll()
            if previews:
                self._handle_events(previews)

    def _handle_events(self, previews: list[PreviewSink]) -> None:
        for p in previews:
            for ev in p.events():
                self._on_event(ev, p)

    def _on_event(self, ev: PreviewEvent, preview: PreviewSink) -> None:
        if ev.kind == "quit":
            self.stop("window closed" if ev.text == "window closed" else "quit key")
        elif ev.kind == "calibrate":
            ok = self.calibrate() is not None
            preview.show_message("calibrated" if ok else "no face: look at the camera, press c")
        elif ev.kind == "mirror":
            state = self.toggle_mirror()
            if state is not None:
                preview.show_message(f"mirror {'on' if state else 'off'}")
        elif ev.kind == "expression" and ev.slot is not None:
            preset = self.presets.get(ev.slot)
            if preset is None:
                preview.show_message(f"no expression on key {ev.slot}")
                return
            t = time.monotonic()
            active = getattr(self.animator, "expression", None)
            # OpenCV reports no key releases, so in the window every preset toggles.
            if active is not None and active.name == preset.name:
                self.animator.set_expression(None, t)
                preview.show_message(f"{preset.name} off")
            else:
                self.animator.set_expression(preset, t)
                preview.show_message(f"{preset.name} on")

    def _preview_info(self, previews: list[PreviewSink], tracked: Tracked | None,
                      window: _Window) -> None:
        elapsed = max(1e-6, time.monotonic() - window.t0)
        lat = window.latency[-1] if window.latency else None
        lines = [f"{window.frames / elapsed:.1f} fps"
                 + (f"  latency {lat:.0f} ms" if lat is not None else "")]
        if tracked is None:
            lines.append("camera lost: idling" if not self.capture.connected else "waiting")
        elif tracked.obs is None:
            lines.append("no face")
        for p in previews:
            if tracked is None:
                p.set_info(None, None, lines)
                continue
            rgb = tracked.frame.rgb
            if getattr(tracked.obs, "mirrored", False):
                rgb = rgb[:, ::-1]
            landmarks = getattr(tracked.obs, "landmarks", None)
            p.set_info(rgb, landmarks, lines)

    def _check_threads(self) -> None:
        for err in (self.capture.error, self._worker.error if self._worker else None):
            if err is not None:
                self._stop_reason = "error"
                raise err

    def _stats(self, w: _Window, seconds: float, counts: dict[str, int],
               trace: list[FrameTrace]) -> RunStats:
        cap = self.capture.stats
        worker = self._worker or getattr(self, "_last_worker", None)
        stages = {k: v for k, v in w.stage.items()}
        stages["capture"] = list(self.capture.recent_read_ms)
        return RunStats(
            frames=w.frames, seconds=seconds, fps=w.frames / seconds if seconds > 0 else 0.0,
            latency_p50_ms=_pct(w.latency, 50), latency_p95_ms=_pct(w.latency, 95),
            stages=_stage_stats(stages), captured=cap.frames,
            tracked=worker.tracked if worker else 0, faces=counts.get("faces", 0),
            idle_frames=counts.get("idle", 0), render_errors=self._render_failed.count,
            camera_losses=cap.losses, camera_reopens=cap.reopens, trace=tuple(trace))


def _describe(sink: Any) -> str:
    if isinstance(sink, VirtualCamSink):
        return sink.description
    if isinstance(sink, PreviewSink):
        return "preview window"
    path = getattr(sink, "path", None)
    return str(path) if path is not None else type(sink).__name__


# ------------------------------------------------------------------------------------ offline
# `thacam render`: the same stages driven by a recording instead of the clock, every frame kept.

@dataclass(frozen=True)
class PoseFrame:
    """One frame of an offline run: file time, whether a face was seen, the pose to render."""

    t_ms: float
    face: bool
    pose: Pose


def video_frame_count(path) -> tuple[int, float]:
    """(frames, fps) of a video file as OpenCV reports them (0, 0.0 when unknown)."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def video_poses(path, tracker: Any, retargeter: Any, animator: Any,
                calibrate_frames: int = 0) -> Iterator[PoseFrame]:
    """Every frame of a video -> tracking -> retarget -> animation, timed by the file's clock.

    The first ``calibrate_frames`` observations with a face become the neutral pose before any
    frame is retargeted (they are tracked once and kept, not read twice).

    Raises:
        CameraUnavailable: the file cannot be read.
    """
    import cv2

    from .errors import CameraUnavailable
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise CameraUnavailable(f"{path}: OpenCV cannot read this video; convert it to mp4 "
                                "(H.264) and try again")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 1.0 <= fps <= 240.0 else 30.0
    try:
        def frames():
            i = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                t_ms = i * 1000.0 / fps
                yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t_ms, i)
                i += 1

        it = frames()
        pending: list[tuple[Frame, Any]] = []
        if calibrate_frames > 0:
            faces = []
            for frame in it:
                obs = tracker.detect(frame)
                pending.append((frame, obs))
                if obs is not None:
                    faces.append(obs)
                if len(faces) >= calibrate_frames:
                    break
            if faces:
                retargeter.calibrate(faces)
            else:
                log.warning("no face in the first %d frames: nothing to calibrate on",
                            len(pending))

        def tracked():
            yield from pending
            for frame in it:
                yield frame, tracker.detect(frame)

        for frame, obs in tracked():
            pose = retargeter.update(obs) if obs is not None else None
            yield PoseFrame(frame.t_ms, obs is not None, animator.step(pose, frame.t_ms / 1000.0))
    finally:
        cap.release()


def read_poses(path) -> list[PoseFrame]:
    """A poses.jsonl from `thacam track`: one {"t_ms", "face", "pose": {name: value}} per line.

    Raises:
        UserError: a line is not JSON, lacks "pose", or names an unknown parameter.
    """
    import json
    from pathlib import Path

    from .errors import UserError
    from .pose import PoseValueError
    out = []
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--poses {path}: no such file; make one with `thacam track`")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                pose = Pose.from_dict(obj["pose"], strict=False).clamped()
                t_ms = float(obj.get("t_ms", len(out) * 1000.0 / 30.0))
                face = bool(obj.get("face", True))
            except (ValueError, KeyError, TypeError, AttributeError, PoseValueError) as exc:
                what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
                raise UserError(f"{path}:{n}: not a thacam pose line ({what}); expected "
                                '{"t_ms": ..., "face": true, "pose": {"head_y": 0.1, ...}} '
                                "as `thacam track` writes") from None
            out.append(PoseFrame(t_ms, face, pose))
    if not out:
        raise UserError(f"--poses {path}: the file holds no poses")
    return out


def render_poses(poses: Iterable[PoseFrame], renderer: Any, sink: Any, batch: int = 1,
                 on_frame: Callable[[int], None] | None = None) -> int:
    """Render poses ``batch`` at a time (Renderer.render_batch) into ``sink``, in order.

    Returns the number of frames written.
    """
    batch = max(1, int(batch))
    buf: list[PoseFrame] = []
    written = 0

    def flush() -> None:
        nonlocal written
        if not buf:
            return
        images = renderer.render_batch([p.pose for p in buf])
        for p, rgba in zip(buf, images):
            sink.send(rgba, p.t_ms)
            written += 1
            if on_frame is not None:
                on_frame(written)
        buf.clear()

    for p in poses:
        buf.append(p)
        if len(buf) >= batch:
            flush()
    flush()
    return written
