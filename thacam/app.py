"""The composition root: builds runs from a resolved profile, a face source and output sinks.

The commands in thacam.cli parse arguments and resolve the profile; everything they then need is
built here, in one place, the same way for the live run and the offline commands:

* :func:`motion_stages` - the Retargeter and Animator a profile describes (calibration,
  thresholds, smoothing, breathing, idle; offline with a fixed idle seed so files repeat);
* :func:`live_sinks` / :func:`live_source` - ``--output`` and ``--source`` through the
  registries (checked before the model loads, so a typo fails in a second, not after 20);
* :class:`LiveRun` - the pipeline, its controls (keys, the panel) and the OBS controller; with
  ``--panel``, the panel's server, its preview output and the state it shows.

Must not import thacam.cli.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .animation import Animator
from .controls import Controls
from .errors import CameraUnavailable
from .output import SINKS, FrameSink, SinkContext, create_sink, has_display
from .output.threaded import SinkThread
from .panel import PanelAddress
from .pipeline import LivePipeline, LiveSettings, RunStats
from .profile import PROFILES_DIR, Profile
from .retarget import Retargeter
from .sources import FaceSource, SourceContext, create_source

__all__ = ["motion_stages", "live_sinks", "live_source", "LiveRun", "OFFLINE_SEED"]

log = logging.getLogger(__name__)

# Offline commands seed the idle layer (random blinks and sway) when the profile does not, so the
# same input gives the same file on every run.
OFFLINE_SEED = 0


def motion_stages(profile: Profile, *, offline: bool = False) -> tuple[Retargeter, Animator]:
    """The Retargeter and Animator for a profile: its calibration, thresholds and gains,
    smoothing, breathing and idle settings (offline: seeded)."""
    seed = profile.idle.seed
    if offline and seed is None:
        seed = OFFLINE_SEED
    return (Retargeter(profile.retarget, profile.neutral),
            Animator(profile.smoothing, profile.breathing, profile.idle, seed=seed))


def live_sinks(outputs: Sequence[str], profile: Profile, fps: float) -> list[FrameSink]:
    """``--output`` values -> unopened sinks; none given = the virtual camera, plus the preview
    window when there is a display.

    Raises:
        UserError: an unknown output name, or a file output that cannot be written.
    """
    out = profile.output
    ctx = SinkContext((out.width, out.height), fps, out)
    if not outputs:
        outputs = ["vcam"] + (["window"] if has_display() else [])
        if "window" not in outputs:
            log.info("no display: no preview window (add --output FILE to see the frames)")
    # Encoders on their own threads, newest frame wins: a slow disk costs recorded frames, never
    # latency (the pipeline already renders only the newest face).
    return [SinkThread(sink, newest_wins=True) if sink.encodes else sink
            for sink in (create_sink(spec, ctx) for spec in outputs)]


def live_source(spec: str | Sequence[str], profile: Profile, weights_dir: Path | None = None,
                *, file_size: tuple[int, int] | None = None,
                file_fps: float | None = None, mic: str | None = None,
                phone: str | None = None) -> FaceSource:
    """``--source`` value(s) -> an unopened face source built from the profile's [camera],
    checked as far as that is possible without opening it. Several values: one source that
    fails over between them in that order (thacam.sources.merge, the profile's [sources]).
    ``mic`` (``--mic [DEVICE]``, "" = the default input) adds the microphone's lip sync; when
    the one camera then cannot start, the microphone goes on alone (mic-only mode: idle motion
    and lip sync). ``phone`` (``--phone IP``) is where a phone tracker sends its start
    handshake.

    Raises:
        UserError: an unknown source, or an input that certainly cannot start.
    """
    ctx = SourceContext(profile.camera, weights_dir, file_size, file_fps, profile.lipsync,
                        phone)
    specs = [spec] if isinstance(spec, str) else list(spec)
    if len(specs) > 1:
        from .sources.merge import MergedFaces
        merged = MergedFaces.from_specs(specs, ctx, profile.sources)
        merged.check()
        if mic is None:
            return merged
        from .sources.audio import MicFaces
        heard = MicFaces(mic or None, profile.lipsync, inner=merged)
        heard.check()
        return heard
    spec = specs[0]
    if mic is not None and spec == "mic":
        spec = f"mic:{mic}" if mic else "mic"
    if mic is not None and spec.split(":")[0] != "mic":
        from .sources.audio import MicFaces
        heard = MicFaces(mic or None, profile.lipsync)
        heard.check()           # no microphone: an error, whatever the camera does
        try:
            source = create_source(spec, ctx)
            source.check()
        except CameraUnavailable as exc:
            log.warning("%s: going on with the microphone alone (idle motion and lip sync)", exc)
            return heard
        heard.inner = source
        return heard
    source = create_source(spec, ctx)
    source.check()
    return source


@dataclass(frozen=True)
class LiveOptions:
    fps: float = 30.0
    stats_every_s: float = 5.0
    obs: bool = False
    panel: PanelAddress | None = None    # serve the control panel there (--panel)


class LiveRun:
    """A live run ready to go: ``run(frames)`` returns its RunStats.

    ``controls`` is the one way to change it while it runs (the preview's keys are bound to it);
    tuned settings are saved to ``profile_path`` (or profiles/<character>.toml).
    """

    def __init__(self, profile: Profile, profile_path: Path | None, source: FaceSource,
                 sinks: Sequence[FrameSink], renderer: Any, options: LiveOptions = LiveOptions(),
                 on_stats: Callable[[RunStats], None] | None = None,
                 on_panel: Callable[[str], None] | None = None):
        out = profile.output
        self.obs = None
        if options.obs:
            from .obs import ObsController
            obs = profile.obs
            # The Media Source reads the port this run's stream output really serves on.
            ports = [p for p in (getattr(s, "stream_port", None) for s in sinks) if p]
            if ports:
                obs = dataclasses.replace(obs, stream_port=ports[0])
            self.obs = ObsController(obs)
        settings = LiveSettings(fps=options.fps, size=(out.width, out.height),
                                placement=out.placement, scale=out.scale,
                                stats_every_s=options.stats_every_s)
        self.panel = None
        preview = None
        if options.panel is not None:
            from .panel.preview import PanelPreview
            preview = PanelPreview()
            sinks = [*sinks, preview]
        retargeter, animator = motion_stages(profile)
        self.pipeline = LivePipeline(source, retargeter, animator, renderer, sinks, settings,
                                     controllers=[self.obs] if self.obs else [],
                                     on_stats=on_stats, on_key=self._on_key,
                                     lipsync=profile.lipsync)
        image = profile.character.image
        path = profile_path or PROFILES_DIR / f"{Path(image or 'character').stem}.toml"
        self.controls = Controls(profile, path, target=self.pipeline)
        # Keys (main thread) and the panel (its own thread) act one at a time.
        self._lock = threading.RLock()
        self.on_panel = on_panel
        if options.panel is not None:
            from .panel.api import PanelApi
            from .panel.server import PanelServer
            self.panel = PanelServer(PanelApi(self.controls, self.status, self._lock),
                                     options.panel, preview)

    def _on_key(self, event) -> str | None:
        with self._lock:
            result = self.controls.key(event)
        return result.message if result is not None else None

    def status(self) -> dict[str, Any]:
        """The run's state as the panel and its API show it (JSON-ready; no secrets)."""
        st = self.pipeline.status()
        return {
            "running": st.running, "frames": st.frames, "fps": round(st.fps, 2),
            "latency_ms": None if st.latency_ms is None else round(st.latency_ms, 1),
            "stages_ms": {k: round(v, 2) for k, v in st.stages_ms.items()},
            "face": st.face, "expression": st.expression,
            "pose": st.pose.to_dict(4) if st.pose is not None else None,
            "sources": self.pipeline.source.status_rows(),
            "sinks": [{"name": _sink_name(k), "description": k.description, "open": is_open}
                      for k, is_open in st.sinks],
            "obs": self.obs.state if self.obs is not None else None,
            "obs_problem": self.obs.problem if self.obs is not None else None,
        }

    def run(self, frames: int | None = None) -> RunStats:
        with contextlib.ExitStack() as stack:
            if self.panel is not None:
                stack.enter_context(self.panel)
                # Printed, never logged: the link holds the token.
                (self.on_panel or print)(self.panel.url)
            return self.pipeline.run(frames)


def _sink_name(sink: FrameSink) -> str:
    """The --output name a sink was made from ("vcam", "window", "file"; "panel" for the
    panel's preview)."""
    target = f"{type(sink).__module__}:{type(sink).__name__}"
    return next((name for name, e in SINKS.entries.items() if e.target == target),
                getattr(sink, "kind", "other"))
