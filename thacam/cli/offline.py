"""Commands that render or track without a live camera: pose, demo, track, render."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ..errors import PoseValueError, UserError
from .options import (add_flags, add_phone, add_profile, add_weights, load_renderer, positive,
                      profile_for, progress_bar, render_settings, save_png,
                      warn_if_not_conforming)

__all__ = ["add_pose", "add_demo", "add_track", "add_render"]

log = logging.getLogger("thacam")

# The render settings every rendering command takes (--variant, --precision, --device, ...).
MODEL = ["model."]
# Poses from sound alone come at the rate of a typical recording.
AUDIO_FPS = 30.0


def _offline_profile(args: argparse.Namespace, character: Path | None = None):
    """The profile an offline command applies, and whether the input is mirrored.

    A profile (--profile, or profiles/<character>.toml) applies exactly as in the live run, its
    camera.mirror included; without one, recordings are not mirrored unless --mirror says so.
    """
    profile, path = profile_for(args, character)
    mirror = args.mirror if args.mirror is not None else (profile.camera.mirror if path else False)
    return profile, path, mirror


# --------------------------------------------------------------------------------------- pose

def cmd_pose(args: argparse.Namespace) -> int:
    from ..character import load_character
    from ..pose import PARAMS, parse_assignments
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
    p.add_argument("--character", type=Path, metavar="IMG",
                   help="character image to pose (`thacam prepare` makes one from any picture)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a pose parameter (repeatable); see `thacam pose --list`")
    p.add_argument("--out", type=Path, metavar="OUT.png", help="PNG file to write the frame to")
    p.add_argument("--list", action="store_true", help="list the 45 parameters and their ranges")
    g = p.add_argument_group("model")
    add_weights(g)
    add_flags(g, MODEL)
    p.set_defaults(func=cmd_pose)


# --------------------------------------------------------------------------------------- demo

def cmd_demo(args: argparse.Namespace) -> int:
    from .. import demo
    from ..character import load_character
    from ..offline import PoseFrame, render_poses
    from ..output.threaded import SinkThread
    from ..output.video import VideoFileSink
    from ..weights import sample_path

    positive("--seconds", args.seconds)
    positive("--fps", args.fps)
    character = load_character(args.character or sample_path(args.weights))
    video = VideoFileSink(args.out)       # a place it cannot write fails before the model loads
    renderer = load_renderer(render_settings(args))
    renderer.set_character(character)
    gpu = renderer.device.type != "cpu"
    seconds, fps = demo.default_length(gpu)
    seconds = args.seconds or seconds
    video.fps = fps = args.fps or fps
    n = max(1, round(seconds * fps))
    sheet_every = max(1, n // 8)
    picks = []
    log.info("demo: %d frames (%.1f s at %d fps) of %s, %s", n, seconds, fps, character.name,
             renderer.description)

    def frame_done(done: int, rgba) -> None:
        if (done - 1) % sheet_every == 0 and len(picks) < 8:
            picks.append(rgba)
        bar.advance(task)

    poses = (PoseFrame(i * 1000.0 / fps, True, demo.scripted_pose(i / fps, seconds))
             for i in range(n))
    batch = demo.default_batch(gpu)
    t0 = time.perf_counter()
    with SinkThread(video, depth=2 * batch) as sink, progress_bar() as bar:
        task = bar.add_task("rendering demo", total=n)
        render_poses(poses, renderer, sink, batch, on_frame=frame_done)
    sheet_path = args.out.with_suffix(".png") if args.out.suffix else args.out / "contact.png"
    save_png(sheet_path, demo.contact_sheet(picks))
    elapsed = time.perf_counter() - t0
    print(f"wrote {args.out} ({n} frames, {n / elapsed:.2f} frames/s on {renderer.description}) "
          f"and contact sheet {sheet_path}")
    return 0


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="animate a sample character with a scripted motion (no "
                       "webcam needed)")
    p.add_argument("--out", type=Path, default=Path("out/demo.mp4"), metavar="OUT",
                   help="video file (.mp4, or .webm/.mov with alpha) (default: %(default)s)")
    p.add_argument("--character", type=Path, default=None, metavar="IMG",
                   help="character image (default: the bundled sample crypko_00)")
    p.add_argument("--seconds", type=float, default=None,
                   help="length (default: 5 s on CPU, 12 s on a GPU)")
    p.add_argument("--fps", type=int, default=None,
                   help="frame rate (default: 10 on CPU, 30 on a GPU)")
    g = p.add_argument_group("model")
    add_weights(g)
    add_flags(g, MODEL)
    p.set_defaults(func=cmd_demo)


# -------------------------------------------------------------------------------------- track

def _face_samples(args: argparse.Namespace, profile, mirror: bool, stack):
    """The samples `track` and `render` read: every frame of --input, a live --source, or
    --audio alone (a sample every 1/30 s); with the sound (--audio, else --input's own) heard by
    each."""
    from ..app import live_source
    from ..offline import source_samples, video_samples
    from ..sources.audio import audio_samples, read_audio, speech_track, with_speech
    from ..tracking import FaceTracker
    from ..weights import landmarker_path
    sound = _sound_path(args)
    speech = speech_track(read_audio(sound), profile.lipsync) if sound is not None else None
    if args.input is None and getattr(args, "source", None) is None:    # --audio alone
        samples = list(audio_samples(speech, AUDIO_FPS))
        return samples, len(samples)
    if args.input is None:       # track --source
        source = live_source(args.source, profile, args.weights,
                             phone=getattr(args, "phone", None))
        source.set_mirror(mirror)
        stack.enter_context(source)
        samples, total = source_samples(source, args.frames, args.seconds), None
    else:
        from ..capture.opencv import video_info
        total, _ = video_info(args.input)
        tracker = stack.enter_context(FaceTracker(landmarker_path(args.weights), mirror=mirror))
        samples, total = video_samples(args.input, tracker), total or None
    return (samples if speech is None else with_speech(samples, speech)), total


def _sound_path(args: argparse.Namespace) -> Path | None:
    """--audio, else the --input video's own sound (when it has any), else None."""
    from ..sources.audio import has_audio
    if getattr(args, "audio", None) is not None:
        if not args.audio.is_file():
            raise UserError(f"--audio {args.audio}: no such file; give a WAV/MP3/M4A or a video "
                            "with sound")
        return args.audio
    if getattr(args, "input", None) is not None:
        if not args.input.is_file():
            raise UserError(f"--input {args.input}: no such file; give the path of a video file")
        if has_audio(args.input):
            return args.input
    return None


def _calibrate_frames(args: argparse.Namespace, profile) -> int:
    """--calibrate-frames, or by default: none when the profile is calibrated, else 30."""
    if args.calibrate_frames is not None:
        positive("--calibrate-frames", args.calibrate_frames, allow_zero=True)
        return args.calibrate_frames
    return 0 if profile.neutral is not None else 30


def cmd_track(args: argparse.Namespace) -> int:
    import contextlib

    from ..app import motion_stages
    from ..offline import track, write_poses

    if args.input is None and args.source is None and args.audio is None:
        raise UserError("thacam track needs --input VIDEO, --source NAME or --audio FILE")
    profile, _, mirror = _offline_profile(args)
    face = args.input is not None or args.source is not None
    calibrate = _calibrate_frames(args, profile) if face else 0
    retargeter, animator = motion_stages(profile, offline=True)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        samples, total = _face_samples(args, profile, mirror, stack)
        bar = stack.enter_context(progress_bar())
        name = (args.input or args.audio).name if (args.input or args.audio) else \
            " + ".join(args.source)
        task = bar.add_task(f"tracking {name}", total=total)
        poses = track(samples, retargeter, animator if args.smooth else None, calibrate,
                      profile.lipsync)
        n, faces = write_poses(poses, args.out, on_frame=lambda i: bar.update(task, completed=i))
    elapsed = time.perf_counter() - t0
    print(f"wrote {args.out}: {n} frames, face in {faces} ({faces / max(n, 1):.0%}), "
          f"{1000 * elapsed / max(n, 1):.1f} ms/frame")
    return 0


def _add_tracking_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibrate-frames", type=int, default=None, metavar="N",
                   help="average the first N faces as the neutral head pose (0 = none; default: "
                        "none when the profile is calibrated, else 30)")
    add_profile(p)
    g = p.add_argument_group("profile overrides (flags beat the profile)")
    add_flags(g, ["camera.mirror"])


def _add_audio(p: argparse.ArgumentParser, alone: str) -> None:
    p.add_argument("--audio", type=Path, default=None, metavar="FILE",
                   help=f"sound that moves the mouth (WAV/MP3/M4A or a video's sound); {alone}")


def add_track(sub) -> None:
    p = sub.add_parser("track", help="track a face video (or a live source) into THA3 poses "
                       "(one JSON line per frame)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", type=Path, metavar="VIDEO", help="face video file (its own sound "
                     "moves the mouth too, unless --audio gives another)")
    src.add_argument("--source", action="append", metavar="NAME[:ARG]",
                     help="record from a live face source (see `thacam --help`) for --frames or "
                          "--seconds; repeat it for a fallback, first listed preferred")
    _add_audio(p, "alone: poses at 30 fps from the sound (idle motion, lip sync)")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="with --source: stop after N samples")
    p.add_argument("--seconds", type=float, default=None, metavar="S",
                   help="with --source: stop after S seconds")
    add_phone(p)
    p.add_argument("--out", type=Path, required=True, metavar="JSONL",
                   help='output: {"t_ms", "face", "pose": {45 names}} per line')
    p.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                   help="pass the poses through the animator: smoothing, breathing, and the idle "
                        "layer while no face is seen (default: on; --no-smooth = raw retarget)")
    _add_tracking_options(p)
    add_flags(p.add_argument_group("several sources (--source A --source B)"), ["sources."])
    add_weights(p, "face_landmarker.task")
    p.set_defaults(func=cmd_track)


# ------------------------------------------------------------------------------------- render

def cmd_render(args: argparse.Namespace) -> int:
    import contextlib

    from ..app import motion_stages
    from ..character import load_character
    from ..offline import poses_fps, read_poses, render_poses, track
    from ..output.threaded import SinkThread
    from ..output.video import VideoFileSink

    positive("--batch", args.batch)
    positive("--fps", args.fps)
    profile, _, mirror = _offline_profile(args, args.character)
    # The output first: a place it cannot write fails before the inputs are read or the model
    # loads.
    video = VideoFileSink(args.out, background=profile.output.background)
    sound = _sound_path(args)
    character = load_character(args.character)
    if args.poses is not None:
        frames = read_poses(args.poses)
        total, fps, name = len(frames), args.fps or poses_fps(frames), args.poses.name
    else:
        if not args.input.is_file():
            raise UserError(f"--input {args.input}: no such file; give the path of a video file")
        from ..capture.opencv import video_info
        total, file_fps = video_info(args.input)
        fps, name = args.fps or file_fps, args.input.name
    video.fps = fps
    renderer = load_renderer(profile.render_settings(args.weights))
    renderer.set_character(character)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        # Encoding on its own thread, at most two batches behind: nothing dropped, memory bounded.
        sink = stack.enter_context(SinkThread(video, depth=2 * args.batch))
        if args.poses is None:
            samples, _ = _face_samples(args, profile, mirror, stack)
            retargeter, animator = motion_stages(profile, offline=True)
            frames = track(samples, retargeter, animator, _calibrate_frames(args, profile),
                           profile.lipsync)
        bar = stack.enter_context(progress_bar())
        task = bar.add_task(f"rendering {name}", total=total or None)
        n = render_poses(frames, renderer, sink, args.batch,
                         on_frame=lambda done, _: bar.update(task, completed=done))
    elapsed = time.perf_counter() - t0
    if sound is not None and n and video.kind != "folder":
        from ..output.soundtrack import add_sound
        add_sound(args.out, sound)
    elif sound is not None and n:
        log.warning("PNG frames carry no sound: write a video (.mp4, .webm, .mov) to keep it")
    print(f"wrote {args.out}: {n} frames at {fps:g} fps "
          f"({n / max(elapsed, 1e-9):.2f} frames/s on {renderer.description})"
          + (f", with the sound of {sound.name}" if sound is not None and n else ""))
    return 0


def add_render(sub) -> None:
    p = sub.add_parser("render", help="drive a character offline from a face video or "
                       "poses.jsonl")
    p.add_argument("--character", type=Path, required=True, metavar="IMG",
                   help="character image to drive; profiles/<IMG stem>.toml applies when it "
                        "exists (or --profile)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, metavar="VIDEO",
                     help="face video: tracked, retargeted and animated like the live run; its "
                          "sound moves the mouth and is kept")
    src.add_argument("--poses", type=Path, metavar="JSONL", help="poses from `thacam track`")
    _add_audio(p, "the video keeps it, in sync (default: --input's own sound)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT",
                   help="video (.mp4 over --background; .webm/.mov keep alpha, need ffmpeg) or a "
                        "folder of PNGs with alpha (a path without a suffix)")
    p.add_argument("--fps", type=float, default=None,
                   help="output frame rate (default: the video's, or the poses' timing)")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="render N frames per model call (faster on a GPU) (default: %(default)s)")
    _add_tracking_options(p)
    g = p.add_argument_group("output and model")
    add_flags(g, ["output.background"])
    add_weights(g)
    add_flags(g, MODEL)
    p.set_defaults(func=cmd_render)
