#!/usr/bin/env python3
"""Soak test: the live loop for N minutes from a looping video, frames to a file, and the figures
that tell whether it can run a whole stream.

    .venv/bin/python scripts/soak.py --clip face.mp4 --minutes 30 [--out soak.mp4]

Every 10 s it prints resident memory, frames so far and the longest gap between two frames; at the
end, the memory slope after warm-up (least squares, MB per 10 minutes), the longest gap and the
frame count, and writes the same lines to --log. Goals: < 5 MB per 10 minutes after warm-up, no
gap over 2 s. Not a CI test: it takes as long as you ask.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from thacam.app import LiveOptions, LiveRun, live_sinks, live_source  # noqa: E402
from thacam.character import load_character  # noqa: E402
from thacam.cli.options import load_renderer  # noqa: E402
from thacam.files import atomic_write_text  # noqa: E402
from thacam.output import FrameSink  # noqa: E402
from thacam.profile import Profile  # noqa: E402
from thacam.runtime import tune_allocator  # noqa: E402
from thacam.settings.codec import set_raw  # noqa: E402
from thacam.weights import DEFAULT_WEIGHTS_DIR, sample_path  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class Clock(FrameSink):
    """Remembers when each frame went out (the gaps a viewer would see)."""

    description = "soak clock"

    def __init__(self) -> None:
        self.frames = 0
        self.last: float | None = None
        self.max_gap = 0.0
        self.lock = threading.Lock()

    def send(self, rgba, t_capture_ms) -> None:
        now = time.monotonic()
        with self.lock:
            if self.last is not None:
                self.max_gap = max(self.max_gap, now - self.last)
            self.last = now
            self.frames += 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", type=Path, required=True, help="a face video, played in a loop")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--warmup-minutes", type=float, default=3.0,
                   help="left out of the memory slope (caches, allocator pools fill up)")
    p.add_argument("--out", type=Path, default=Path("out/soak.mp4"))
    p.add_argument("--log", type=Path, default=Path("out/soak.log"))
    p.add_argument("--character", type=Path, default=None)
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "openvino"))
    p.add_argument("--fps", type=float, default=30.0)
    args = p.parse_args()

    tune_allocator()
    profile = Profile()
    for key, value in (("camera.source", str(args.clip)), ("camera.mirror", False),
                       ("model.device", "cpu"), ("model.backend", args.backend)):
        profile = set_raw(profile, key, value, source="soak")
    character = load_character(args.character or sample_path(DEFAULT_WEIGHTS_DIR))
    clock = Clock()
    sinks = live_sinks([str(args.out)], profile, args.fps) + [clock]
    source = live_source("webcam", profile, DEFAULT_WEIGHTS_DIR)
    renderer = load_renderer(profile.render_settings(DEFAULT_WEIGHTS_DIR))
    renderer.set_character(character)
    run = LiveRun(profile, None, source, sinks, renderer,
                  LiveOptions(fps=args.fps, stats_every_s=0.0))

    samples: list[tuple[float, float]] = []
    lines: list[str] = []
    t0 = time.monotonic()
    done = threading.Event()

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    def watch() -> None:
        while not done.wait(10.0):
            t = time.monotonic() - t0
            samples.append((t, rss_mb()))
            with clock.lock:
                frames, gap = clock.frames, clock.max_gap
            say(f"{t / 60:6.1f} min  rss {samples[-1][1]:8.1f} MB  frames {frames:7d}  "
                f"longest gap {gap:5.2f} s")
            if t >= args.minutes * 60:
                run.pipeline.stop("soak done")

    say(f"soak: {args.minutes:g} min of {args.clip.name} -> {args.out}, {renderer.description}")
    watcher = threading.Thread(target=watch, name="soak-watch", daemon=True)
    watcher.start()
    stats = run.run()
    done.set()
    after = [(t, m) for t, m in samples if t >= args.warmup_minutes * 60]
    slope = float(np.polyfit([t for t, _ in after], [m for _, m in after], 1)[0]) * 600 \
        if len(after) >= 2 else float("nan")
    say(f"frames {clock.frames} in {stats.seconds / 60:.1f} min ({stats.fps:.2f} fps); "
        f"resident memory {samples[0][1] if samples else float('nan'):.1f} -> "
        f"{samples[-1][1] if samples else float('nan'):.1f} MB; slope after "
        f"{args.warmup_minutes:g} min warm-up {slope:+.2f} MB per 10 min (goal < 5); longest gap "
        f"between frames {clock.max_gap:.2f} s (goal <= 2); stop: {stats.stop_reason}")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.log, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
