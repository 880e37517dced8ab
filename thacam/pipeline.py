"""The live loop: face source -> retarget -> animation -> render -> outputs.

Two threads of thacam's own, each working on the newest thing there is and never on a queue
(a face source may run more, e.g. the webcam's capture thread):

    thacam-tracking  source.next() -> the newest FaceSample -> Pose (retarget);
                     keeps only the newest result                         (_TrackingWorker)
    main thread      the newest result -> Animator -> Renderer -> every sink; pumps the
                     sinks' keys and Ctrl-C                                (LivePipeline.run)

so rendering one frame overlaps sensing and tracking the next, a slow renderer skips inputs
instead of falling behind, and the input->output latency stays one render long. The render stays
in the main thread because OpenCV's window must live there and because Ctrl-C can then interrupt
a render in progress.

Every resource (source, sinks, OBS controller, threads, the signal handlers) is opened inside one
ExitStack in ``run`` and closed on every way out: ``--frames`` reached, Ctrl-C or SIGTERM, q/Esc
or the window closed, or an error. Faults that are not fatal: input lost (the avatar idles, the source
reopens it), face lost (the animator's idle layer), a frame that fails to render (logged and
skipped), an output that cannot open (its message, the other outputs go on).

The running pipeline changes through a few thread-safe methods (``apply_settings``,
``calibrate``, ``press_expression``/``release_expression``, ``set_mirror``, ``stop``): that is the
whole interface thacam.controls (keys, the panel) talks to; ``status()`` is a snapshot of the
run for any thread (the panel shows it). Key presses from the sinks go to the ``on_key``
callback. Must not import thacam.cli, torch, or any concrete source or sink.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from .capture import Latest, now_ms
from .errors import SinkUnavailable, Terminated
from .lipsync import blend_mouth
from .output import FrameInfo, FrameSink, KeyEvent, place
from .pose import Pose
from .runstats import (STAGES, STATUS_WINDOW_S, FrameTrace, LiveStatus, RunStats, StageStats,
                       Window, percentile, stage_stats)
from .sources import FaceSample, FaceSource

__all__ = ["LiveSettings", "LivePipeline", "LiveStatus", "RunStats", "StageStats", "FrameTrace",
           "Tracked", "STAGES"]

log = logging.getLogger(__name__)

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
    camera_stale_s: float = 1.0     # no new sample for this long counts as input lost
    first_frame_wait_s: float = 3.0  # at start, wait this long for a tracked face before idling
    # Tracking runs at the input's rate while renders are fast, but never spends more than a
    # quarter of a render's time between two results, and never waits longer than this: on a
    # CPU where a render takes seconds, tracking all 30 frames a second would take the cores the
    # render needs, for results nobody sees.
    max_track_interval_s: float = 0.2
    trace: bool = False             # keep a FrameTrace per output frame in RunStats (tests, debug)
    max_trace: int = 10_000


@dataclass(frozen=True)
class Tracked:
    """The tracking thread's result for one sample."""

    sample: FaceSample
    pose: Pose | None               # retargeted pose, None when no face
    retarget_ms: float

    @property
    def frame(self):
        return self.sample.frame

    @property
    def obs(self):
        return self.sample.obs


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
    """source.next() -> FaceSample -> Pose, in its own thread; the newest result kept."""

    def __init__(self, source: FaceSource, retarget: Callable[[Any], Pose],
                 interval_s: Callable[[], float] = lambda: 0.0):
        self.source = source
        self.retarget = retarget
        self.interval_s = interval_s
        self.results: Latest[Tracked] = Latest()
        self.error: BaseException | None = None
        self.tracked = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thacam-tracking", daemon=True)
        self._sense_failed = _RateLimitedLog("face tracking of an input")
        self._retarget_failed = _RateLimitedLog("retargeting a face")

    def start(self) -> "_TrackingWorker":
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.5) -> None:
        self._stop.set()
        self.source.wake()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the tracking thread did not stop within %.1f s", timeout)

    def _run(self) -> None:
        last = 0.0
        try:
            while not self._stop.is_set():
                wait = last + self.interval_s() - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                try:
                    sample = self.source.next(timeout=0.1)
                except Exception as exc:  # one bad input must not end the run
                    self._sense_failed(exc)
                    continue
                if sample is None:
                    continue
                last = time.monotonic()
                t0 = now_ms()
                pose = None
                if sample.obs is not None:
                    try:
                        pose = self.retarget(sample.obs)
                    except Exception as exc:
                        self._retarget_failed(exc)
                self.tracked += 1
                self.results.put(Tracked(sample, pose, now_ms() - t0))
        except BaseException as exc:  # re-raised in the main thread
            self.error = exc


class LivePipeline:
    """Wires the stages; ``run(frames)`` drives them until told to stop and returns RunStats.

    Args:
        source: a FaceSource (not opened: run opens and closes it).
        retargeter: has ``update(obs) -> Pose``, ``calibrate(obs)`` and ``apply_settings``.
        animator: has ``step(pose | None, t_s) -> Pose``, ``configure`` and the expression calls.
        lipsync: LipSyncSettings: the source's ``speech()`` (read at render time) moves the
            mouth by its blend rule; None = the face alone.
        renderer: has ``render(pose) -> (512, 512, 4) uint8`` (Renderer).
        sinks: FrameSinks, opened here. One that raises SinkUnavailable is dropped with its
            message as a warning, unless it is the only one.
        controllers: things told about the run (ObsController): entered as context managers,
            ``on_frames_started()`` after the first frame, closed on exit.
        on_stats: called every ``settings.stats_every_s`` with the interval's RunStats.
        on_key: called (main thread) with each KeyEvent a sink reports; text it returns is shown
            on the sinks. A window being closed stops the run whatever it returns.
    """

    def __init__(self, source: FaceSource, retargeter: Any, animator: Any,
                 renderer: _Renderer, sinks: Sequence[FrameSink],
                 settings: LiveSettings = LiveSettings(), *, controllers: Sequence[Any] = (),
                 on_stats: Callable[[RunStats], None] | None = None,
                 on_key: Callable[[KeyEvent], str | None] | None = None,
                 lipsync: Any = None):
        if not sinks:
            raise ValueError("LivePipeline needs at least one sink")
        self.source = source
        self.retargeter = retargeter
        self.animator = animator
        self.renderer = renderer
        self.sinks = list(sinks)
        self.settings = settings
        self.controllers = list(controllers)
        self.on_stats = on_stats
        self.on_key = on_key
        self.lipsync = lipsync
        # The tracking thread retargets and the main thread animates while controls change
        # both from other threads (keys, the panel): each object has its own lock.
        self._retarget_lock = threading.Lock()
        self._animate_lock = threading.Lock()
        self._worker: _TrackingWorker | None = None
        self._last_worker: _TrackingWorker | None = None
        self._open_sinks: list[FrameSink] = []
        self._stop = threading.Event()
        self._stop_reason = ""
        self._stop_t: float | None = None
        self._in_render = False
        self._render_failed = _RateLimitedLog("rendering a frame")
        self._render_s = 0.0            # recent render time (EWMA), paces the tracking thread
        # (t, stage ms, latency ms | None, face, pose) per recent frame, for status()
        self._recent: collections.deque = collections.deque(maxlen=1000)
        self._recent_lock = threading.Lock()
        self._frames_out = 0

    # -- the control interface (thread-safe) ---------------------------------------------------

    @property
    def tracked_results(self) -> Latest[Tracked] | None:
        """The tracking thread's newest-result slot while running (None otherwise)."""
        return self._worker.results if self._worker is not None else None

    def stop(self, reason: str = "stopped") -> None:
        """Ask the loop to finish; run() returns after closing everything."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop_t = time.monotonic()
        self._stop.set()

    def calibrate(self) -> Any | None:
        """Take the newest face as the neutral pose. Returns the Calibration, or None (no face)."""
        slot = self.tracked_results
        tracked = slot.newest() if slot is not None else None
        if tracked is None or tracked.obs is None:
            log.warning("calibration needs a face in view: look at the camera and calibrate again")
            return None
        with self._retarget_lock:
            calibration = self.retargeter.calibrate(tracked.obs)
        log.info("calibrated: this is your neutral pose now")
        return calibration

    def apply_settings(self, retarget: Any = None, smoothing: Any = None, breathing: Any = None,
                       idle: Any = None, lipsync: Any = None) -> None:
        """Swap stage settings while running (the ones given); motion and history are kept."""
        if lipsync is not None:
            with self._animate_lock:
                self.lipsync = lipsync
            tune = getattr(self.source, "apply_settings", None)
            if tune is not None:        # a source that hears analyses with them
                tune(lipsync)
        if retarget is not None:
            with self._retarget_lock:
                self.retargeter.apply_settings(retarget)
        if smoothing is not None or breathing is not None or idle is not None:
            with self._animate_lock:
                self.animator.configure(smoothing=smoothing, breathing=breathing, idle=idle)

    def press_expression(self, preset: Any) -> None:
        with self._animate_lock:
            self.animator.press_expression(preset, time.monotonic())

    def release_expression(self, preset: Any) -> None:
        with self._animate_lock:
            self.animator.release_expression(preset, time.monotonic())

    @property
    def expression(self) -> Any | None:
        """The expression preset that is on (None when none is)."""
        return self.animator.expression

    def set_mirror(self, mirror: bool) -> bool:
        """Mirror the input left-right (selfie view); returns the state now."""
        state = self.source.set_mirror(mirror)
        log.info("mirror %s", "on" if state else "off")
        return state

    @property
    def mirror(self) -> bool:
        return self.source.mirror

    def status(self) -> LiveStatus:
        """A snapshot of the run for other threads (the panel): rates, stage times, face."""
        now = time.monotonic()
        with self._recent_lock:
            recent = [r for r in self._recent if now - r[0] <= STATUS_WINDOW_S]
            last = self._recent[-1] if self._recent else None
            frames = self._frames_out
        rows = recent or ([last] if last is not None else [])
        stages = {k: float(np.mean([r[1][k] for r in rows if k in r[1]]))
                  for k in STAGES if any(k in r[1] for r in rows)}
        latencies = [r[2] for r in rows if r[2] is not None]
        open_sinks = [id(k) for k in self._open_sinks]
        return LiveStatus(
            running=self._worker is not None, frames=frames, fps=len(recent) / STATUS_WINDOW_S,
            latency_ms=float(np.mean(latencies)) if latencies else None, stages_ms=stages,
            face=bool(last is not None and last[3]), source=self.source.description,
            source_connected=self.source.connected,
            sinks=tuple((k, id(k) in open_sinks) for k in self.sinks),
            expression=getattr(self.animator.expression, "name", None),
            pose=last[4] if last is not None else None)

    def notify(self, message: str) -> None:
        """Show a short message on the sinks that show text (main thread only: windows)."""
        for sink in self._open_sinks:
            sink.notify(message)

    # -- the loop ------------------------------------------------------------------------------

    def run(self, frames: int | None = None) -> RunStats:
        """Run until ``frames`` output frames were sent (None: until stopped)."""
        self._stop.clear()
        self._stop_reason, self._stop_t = "", None
        self._render_s = 0.0
        with self._recent_lock:
            self._recent.clear()
            self._frames_out = 0
        total = Window()
        window = Window()
        trace: list[FrameTrace] = []
        counts = {"faces": 0, "idle": 0, "dropped": 0}
        t_start = time.monotonic()
        try:
            with contextlib.ExitStack() as stack:
                self._install_signals(stack)
                sinks = self._open(stack)
                for c in self.controllers:
                    if hasattr(c, "__enter__"):
                        stack.enter_context(c)
                stack.enter_context(self.source)
                self._worker = _TrackingWorker(self.source, self._retarget,
                                               self._track_interval).start()
                stack.callback(self._worker.stop)
                log.info("running: %s -> %s; Ctrl-C stops", self.source.description,
                         ", ".join(k.description for k in sinks))
                stack.callback(self._note_shutdown_start)   # runs first on the way out
                self._loop(frames, sinks, total, window, trace, counts)
        except KeyboardInterrupt:
            # Ctrl-C outside a render (e.g. while opening): everything above is closed already.
            self._stop_reason = self._stop_reason or "interrupted"
        except BaseException:
            self._stop_reason = self._stop_reason or "error"
            raise
        finally:
            self._last_worker = self._worker
            self._worker = None
            self._open_sinks = []
        end = time.monotonic()
        left = tuple(t.name for t in threading.enumerate()
                     if t.name in _THREAD_NAMES and t.is_alive())
        if left:
            log.warning("threads still running after shutdown: %s", ", ".join(left))
        stats = self._stats(total, end - t_start, counts, trace)
        shutdown = end - self._stop_t if self._stop_t is not None else 0.0
        return replace(stats, stop_reason=self._stop_reason or "stopped",
                       shutdown_s=shutdown, threads_left=left)

    def _retarget(self, obs: Any) -> Pose:
        with self._retarget_lock:
            return self.retargeter.update(obs)

    def _track_interval(self) -> float:
        return min(self.settings.max_track_interval_s, self._render_s / 4.0)

    def _note_shutdown_start(self) -> None:
        if self._stop_t is None:
            self._stop_t = time.monotonic()

    def _install_signals(self, stack: contextlib.ExitStack) -> None:
        """Ctrl-C and SIGTERM stop the run the same clean way: every output finished, the
        recording kept."""
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum, frame):
            first = not self._stop.is_set()
            self.stop("interrupted" if signum == signal.SIGINT else "terminated")
            # A render takes seconds on a CPU: abort it rather than wait (a second signal
            # aborts whatever is running).
            if self._in_render or not first:
                raise KeyboardInterrupt if signum == signal.SIGINT else Terminated()

        for sig in (signal.SIGINT, signal.SIGTERM):
            stack.callback(signal.signal, sig, signal.signal(sig, on_signal))

    def _open(self, stack: contextlib.ExitStack) -> list[FrameSink]:
        opened: list[FrameSink] = []
        unavailable: list[SinkUnavailable] = []
        for sink in self.sinks:
            try:
                opened.append(stack.enter_context(sink))
            except SinkUnavailable as exc:
                unavailable.append(exc)
        if unavailable:
            if not opened:
                raise unavailable[0]
            for exc in unavailable:
                log.warning("%s; going on with the other outputs", exc)
        self._open_sinks = opened
        return opened

    def _loop(self, frames: int | None, sinks: list[FrameSink], total: Window, window: Window,
              trace: list[FrameTrace], counts: dict[str, int]) -> None:
        s = self.settings
        worker = self._worker
        assert worker is not None
        informed = [k for k in sinks if k.wants_info]
        min_interval = 1.0 / s.fps
        idle_wait = 1.0 / s.fps
        last_start = -1e9
        last_seq = 0
        last_index = -1             # the newest camera frame rendered so far
        last_report = time.monotonic()
        out = 0
        # The first render should show the user, not the idle pose: tracking starts in well
        # under a second, a render can take seconds.
        self._wait(s.first_frame_wait_s, sinks, worker.results, 0)
        while True:
            if frames is not None and out >= frames:
                self.stop("frames")
            if self._stop.is_set():
                break
            self._check_threads()
            # Pace to at most fps; then render on the next tracked sample, or without one
            # after idle_wait (input slow or lost: the avatar keeps breathing).
            self._wait(last_start + min_interval - time.monotonic(), sinks, None, 0)
            if self._stop.is_set():
                break
            self._wait(idle_wait, sinks, worker.results, last_seq)
            if self._stop.is_set():
                break
            self._pump(sinks)
            t_render = time.monotonic()
            last_start = t_render
            # The newest tracked sample, whatever came before it is skipped. Re-rendering the
            # same one (input slower than fps) is fine: the face is still there.
            last_seq, tracked = worker.results.peek()
            fresh = (tracked is not None and self.source.connected
                     and now_ms() - tracked.sample.t_ms < s.camera_stale_s * 1000.0)
            newest_input = self.source.newest_index
            t0 = now_ms()
            with self._animate_lock:
                pose = self.animator.step(tracked.pose if fresh else None, t_render)
                if self.lipsync is not None:
                    pose = blend_mouth(pose, self.source.speech(),
                                       bool(fresh and tracked.pose is not None), self.lipsync)
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
            if informed:
                info = self._info(tracked if fresh else None, window)
                for sink in informed:
                    sink.show_info(info)
            t_capture = tracked.sample.t_ms if fresh else t2
            t_send = now_ms()
            for sink in sinks:
                sink.send(rgba, t_capture)
            t3 = now_ms()
            out += 1
            frame_ms = {"animate": t1 - t0, "render": t2 - t1, "output": t3 - t_send}
            if fresh:
                frame_ms.update(track=tracked.sample.sense_ms, retarget=tracked.retarget_ms)
            with self._recent_lock:
                self._frames_out += 1
                self._recent.append((time.monotonic(), frame_ms,
                                     t_send - t_capture if fresh else None,
                                     bool(fresh and tracked.pose is not None), pose))
            if out == 1:
                log.info("first frame out")
                for c in self.controllers:
                    if hasattr(c, "on_frames_started"):
                        c.on_frames_started()
            for w in (total, window):
                w.frames += 1
                for stage, ms in frame_ms.items():
                    w.add(stage, ms)
                if fresh:
                    w.latency.append(t_send - t_capture)
            if fresh:
                # a reopened source may count from 0 again: a new start, not a drop
                if tracked.sample.index > last_index:
                    counts["dropped"] += tracked.sample.index - last_index - 1
                last_index = tracked.sample.index
            if fresh and tracked.pose is not None:
                counts["faces"] += 1
            elif not fresh:
                counts["idle"] += 1
            if s.trace and len(trace) < s.max_trace:
                frame = tracked.frame if fresh else None
                trace.append(FrameTrace(
                    out - 1, tracked.sample.index if fresh else None,
                    frame.position if frame is not None else None,
                    tracked.sample.t_ms if fresh else None, t_send, newest_input,
                    tracked.sample.index if tracked is not None else None,
                    bool(fresh and tracked.pose is not None), pose))
            now = time.monotonic()
            if s.stats_every_s > 0 and now - last_report >= s.stats_every_s:
                if self.on_stats is not None:
                    self.on_stats(self._stats(window, now - window.t0,
                                              {"dropped": counts["dropped"]}, []))
                window.__init__()
                last_report = now

    def _wait(self, seconds: float, sinks: list[FrameSink], slot: Latest | None,
              seq: int) -> bool:
        """Sleep up to ``seconds``, or until ``slot`` holds something newer than ``seq`` (True),
        keeping interactive sinks responsive and noticing a stop request."""
        deadline = time.monotonic() + max(0.0, seconds)
        interactive = any(k.wants_info for k in sinks)
        while True:
            if slot is not None and slot.seq > seq:
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                return False
            # Short steps: a window must be pumped often, and a stop noticed quickly.
            step = min(left, 0.02 if interactive else 0.1)
            if slot is not None:
                if slot.wait_newer(seq, step) is not None:
                    return True
            else:
                self._stop.wait(step)
            self._pump(sinks)

    def _pump(self, sinks: list[FrameSink]) -> None:
        for sink in sinks:
            for event in sink.pump():
                if event.key == "close":
                    self.stop("window closed")
                    continue
                message = self.on_key(event) if self.on_key is not None else None
                if message:
                    self.notify(message)

    def _info(self, tracked: Tracked | None, window: Window) -> FrameInfo:
        elapsed = max(1e-6, time.monotonic() - window.t0)
        lat = window.latency[-1] if window.latency else None
        lines = [f"{window.frames / elapsed:.1f} fps"
                 + (f"  latency {lat:.0f} ms" if lat is not None else "")]
        if tracked is None:
            lines.append("input lost: idling" if not self.source.connected else "waiting")
            return FrameInfo(tuple(lines))
        if tracked.obs is None:
            lines.append("no face")
        frame = tracked.frame
        if frame is None:
            return FrameInfo(tuple(lines))
        rgb = frame.rgb
        if getattr(tracked.obs, "mirrored", False):
            rgb = rgb[:, ::-1]
        return FrameInfo(tuple(lines), rgb, getattr(tracked.obs, "landmarks", None))

    def _check_threads(self) -> None:
        for err in (self.source.error, self._worker.error if self._worker else None):
            if err is not None:
                self._stop_reason = "error"
                raise err

    def _stats(self, w: Window, seconds: float, counts: dict[str, int],
               trace: list[FrameTrace]) -> RunStats:
        src = self.source.stats()
        worker = self._worker or self._last_worker
        stages = {k: v for k, v in w.stage.items()}
        stages["capture"] = list(src.read_ms)
        return RunStats(
            frames=w.frames, seconds=seconds, fps=w.frames / seconds if seconds > 0 else 0.0,
            latency_p50_ms=percentile(w.latency, 50), latency_p95_ms=percentile(w.latency, 95),
            stages=stage_stats(stages), captured=src.inputs,
            tracked=worker.tracked if worker else 0, faces=counts.get("faces", 0),
            idle_frames=counts.get("idle", 0), dropped=counts.get("dropped", 0),
            render_errors=self._render_failed.count,
            camera_losses=src.losses, camera_reopens=src.reopens, trace=tuple(trace))
