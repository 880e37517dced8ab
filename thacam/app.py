"""The composition root: builds runs from a resolved profile, a face source and output sinks.

The commands in thacam.cli parse arguments and resolve the profile; everything they then need is
built here, in one place, the same way for the live run and the offline commands:

* :func:`motion_stages` - the Retargeter and Animator a profile describes (calibration,
  thresholds, smoothing, breathing, idle; offline with a fixed idle seed so files repeat);
* :func:`live_sinks` / :func:`live_source` - ``--output`` and ``--source`` through the
  registries (checked before the model loads, so a typo fails in a second, not after 20);
* :class:`LiveRun` - the pipeline, its controls (keys, the panel) and the OBS controller.

Must not import thacam.cli.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .animation import Animator
from .controls import Controls
from .output import FrameSink, SinkContext, create_sink, has_display
from .output.threaded import SinkThread
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


def live_source(spec: str, profile: Profile, weights_dir: Path | None = None, *,
                file_size: tuple[int, int] | None = None,
                file_fps: float | None = None) -> FaceSource:
    """``--source`` value -> an unopened face source built from the profile's [camera], checked
    as far as that is possible without opening it.

    Raises:
        UserError: an unknown source, or an input that certainly cannot start.
    """
    source = create_source(spec, SourceContext(profile.camera, weights_dir, file_size, file_fps))
    source.check()
    return source


@dataclass(frozen=True)
class LiveOptions:
    fps: float = 30.0
    stats_every_s: float = 5.0
    obs: bool = False


class LiveRun:
    """A live run ready to go: ``run(frames)`` returns its RunStats.

    ``controls`` is the one way to change it while it runs (the preview's keys are bound to it);
    tuned settings are saved to ``profile_path`` (or profiles/<character>.toml).
    """

    def __init__(self, profile: Profile, profile_path: Path | None, source: FaceSource,
                 sinks: Sequence[FrameSink], renderer: Any, options: LiveOptions = LiveOptions(),
                 on_stats: Callable[[RunStats], None] | None = None):
        out = profile.output
        controllers = []
        if options.obs:
            from .obs import ObsController
            controllers.append(ObsController(profile.obs))
        settings = LiveSettings(fps=options.fps, size=(out.width, out.height),
                                placement=out.placement, scale=out.scale,
                                stats_every_s=options.stats_every_s)
        retargeter, animator = motion_stages(profile)
        self.pipeline = LivePipeline(source, retargeter, animator, renderer, sinks, settings,
                                     controllers=controllers, on_stats=on_stats,
                                     on_key=self._on_key)
        image = profile.character.image
        path = profile_path or PROFILES_DIR / f"{Path(image or 'character').stem}.toml"
        self.controls = Controls(profile, path, target=self.pipeline)

    def _on_key(self, event) -> str | None:
        result = self.controls.key(event)
        return result.message if result is not None else None

    def run(self, frames: int | None = None) -> RunStats:
        return self.pipeline.run(frames)
