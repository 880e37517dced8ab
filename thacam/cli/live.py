"""`thacam --character IMG [...]` with no subcommand: face -> avatar -> virtual camera/window."""

from __future__ import annotations

import argparse
import logging
import sys

from ..controls import key_help
from ..errors import UserError
from ..output import SINKS
from ..sources import SOURCES
from .options import (add_flags, add_phone, add_profile, add_weights, load_renderer, positive,
                      profile_for, warn_if_not_conforming)

__all__ = ["add_live_options", "cmd_live", "EPILOG"]

log = logging.getLogger("thacam")

EPILOG = ("preview window keys:\n" + "\n".join(f"  {k:8s} {what}" for k, what in key_help())
          + "\n\nThe window reports no key releases: expression presets with mode = \"hold\" "
          "toggle there.")


def add_live_options(p: argparse.ArgumentParser) -> None:
    """The top-level options of the live run."""
    g = p.add_argument_group("live run (thacam --character IMG)")
    add_flags(g, ["character."])
    outputs = "; ".join(f"{e.usage}: {e.help}" for e in SINKS.entries.values())
    g.add_argument("--output", action="append", default=None, metavar="NAME|FILE",
                   help=f"where frames go (repeatable) - {outputs} (default: vcam, plus window "
                        "when there is a display)")
    sources = "; ".join(f"{e.usage}: {e.help}" for e in SOURCES.entries.values())
    g.add_argument("--source", action="append", default=None, metavar="NAME[:ARG]",
                   help=f"where the face comes from - {sources} (default: webcam); repeat it "
                        "for a fallback: the first listed drives while it sees a face, the next "
                        "one that does takes over when it does not")
    g.add_argument("--mic", nargs="?", const="", default=None, metavar="DEVICE",
                   help="lip sync from the microphone (DEVICE: a number or part of a name from "
                        "`thacam voice devices`; default: the system's input); with no camera, "
                        "the microphone alone drives the avatar (idle motion and lip sync)")
    add_phone(g)
    g.add_argument("--camera-size", default=None, metavar="WxH",
                   help="capture size asked of the camera (default: the profile's, 640x480)")
    g.add_argument("--size", default=None, metavar="WxH",
                   help="output frame size (default: the profile's, 512x512)")
    g.add_argument("--fps", type=float, default=30.0,
                   help="most frames per second rendered and announced to the outputs "
                        "(default: %(default)s)")
    g.add_argument("--frames", type=int, default=None, metavar="N",
                   help="stop after N output frames (default: run until Ctrl-C, q or Esc)")
    g.add_argument("--obs", action="store_true",
                   help="show thacam's source in OBS while frames flow (see `thacam obs setup`)")
    g.add_argument("--panel", nargs="?", const="", default=None, metavar="HOST:PORT",
                   help="serve the control panel (sliders, calibrate, expressions, save; a JSON "
                        "and WebSocket API) and print its link (default 127.0.0.1:8765; the "
                        "link holds this run's token)")
    g.add_argument("--panel-allow-remote", action="store_true",
                   help="let --panel listen on an address other machines reach (anyone with "
                        "the link can then change your avatar)")
    g.add_argument("--stats-every", type=float, default=5.0, metavar="S",
                   help="print fps/latency/stage times every S seconds (0 = only at the end)")
    add_weights(g)
    o = p.add_argument_group("profile overrides (flags beat the profile)")
    add_profile(o)
    add_flags(o, ["model.", "camera.", "sources.", "output.", "obs."])


def cmd_live(args: argparse.Namespace) -> int:
    try:
        return _run_live(args)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM while the model or the camera was still loading: a normal way to stop.
        print("thacam: stopped before the first frame", file=sys.stderr)
        return 0


def _run_live(args: argparse.Namespace) -> int:
    from ..app import LiveOptions, LiveRun, live_sinks, live_source
    from ..capture import parse_size
    from ..character import load_character
    from ..panel import parse_address
    from ..settings.codec import set_raw

    positive("--frames", args.frames)
    positive("--fps", args.fps)
    positive("--stats-every", args.stats_every, allow_zero=True)
    if args.panel_allow_remote and args.panel is None:
        # Alone it would do nothing, and the user would believe the panel is reachable.
        raise UserError("--panel-allow-remote opens the control panel to other machines, but "
                        "there is no panel: add --panel [HOST:]PORT, e.g. --panel 0.0.0.0:8765")
    panel = (parse_address(args.panel, args.panel_allow_remote) if args.panel is not None
             else None)
    profile, profile_path = profile_for(args, args.character)
    for flag, text, keys in (("--camera-size", args.camera_size, ("camera.width", "camera.height")),
                             ("--size", args.size, ("output.width", "output.height"))):
        if text is not None:
            for key, value in zip(keys, parse_size(text)):
                profile = set_raw(profile, key, value, source=f"flag {flag}")
    if profile.character.image is None:
        raise UserError("no character: give --character IMG (or a profile that names one)")
    # Everything a typo can break is built before the model loads (seconds on a CPU).
    sinks = live_sinks(args.output or [], profile, args.fps)
    source = live_source(args.source or ["webcam"], profile, args.weights,
                         file_size=parse_size(args.camera_size), file_fps=args.camera_fps,
                         mic=args.mic, phone=args.phone)
    character = load_character(profile.character.image)
    warn_if_not_conforming(character, args.weights)
    renderer = load_renderer(profile.render_settings(args.weights))
    renderer.set_character(character)
    if renderer.device.type == "cpu" and profile.model.device == "auto":
        log.warning("no GPU found: THA3 renders on the CPU, about 1-2 s per frame, so the avatar "
                    "updates about once a second (a CUDA GPU gives 30 fps)")

    def show(stats) -> None:
        from rich.console import Console
        Console(stderr=True).print(f"[dim]thacam[/dim] {stats.line()}", highlight=False)

    run = LiveRun(profile, profile_path, source, sinks, renderer,
                  LiveOptions(fps=args.fps, stats_every_s=args.stats_every, obs=args.obs,
                              panel=panel),
                  on_stats=show if args.stats_every > 0 else None,
                  on_panel=lambda url: print(f"thacam: control panel: {url}", flush=True))
    _print_run_stats(run.run(args.frames))
    return 0


def _print_run_stats(stats) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console(stderr=True)
    table = Table(title=f"thacam: {stats.frames} frames in {stats.seconds:.1f} s "
                        f"({stats.stop_reason})")
    for col in ("stage", "mean ms", "p50 ms", "p95 ms", "samples"):
        table.add_column(col, justify="right")
    for name, st in stats.stages.items():
        if st.count:
            table.add_row(name, f"{st.mean_ms:.1f}", f"{st.p50_ms:.1f}", f"{st.p95_ms:.1f}",
                          str(st.count))
    console.print(table)
    lat = (f"p50 {stats.latency_p50_ms:.0f} ms, p95 {stats.latency_p95_ms:.0f} ms"
           if stats.latency_p50_ms is not None else "n/a (no camera frames)")
    # "dropped" is the status line's "drop N" (RunStats.dropped): one definition, so the
    # summary never contradicts the last line printed before it.
    console.print(f"output {stats.fps:.2f} fps; camera->output latency {lat}; camera frames "
                  f"{stats.captured} read, {stats.dropped} dropped to stay current; "
                  f"{stats.idle_frames} idle frames; {stats.render_errors} render errors; "
                  f"camera lost {stats.camera_losses}x, back {stats.camera_reopens}x; "
                  f"stopped in {stats.shutdown_s:.2f} s")
