"""thacam's command line.

    thacam --character IMG [live options]     the main job: face -> avatar -> virtual camera
    thacam fetch                              put the model files in place
    thacam pose --character IMG --set NAME=V  render one posed frame
    thacam demo                               animate a sample character into a video
    thacam track / render                     face video -> poses.jsonl -> avatar video
    thacam prepare / profile / obs / bench    tools

One module per group of commands (live.py, offline.py, tools.py), each registering its
subcommands with an ``add_*`` function listed in :data:`COMMANDS`; options several commands share
are declared once in options.py. A UserError prints one line on stderr and exits with code 2;
anything else is a bug and keeps its traceback (exit 1). Nothing imports this package;
``thacam.py``, ``python -m thacam.cli`` and the console script run it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from .. import __version__
from ..errors import UserError
from . import live, offline, tools
from .options import add_common

__all__ = ["main", "run", "build_parser", "COMMANDS"]

# Each registers one subcommand; `thacam --help` lists them in this order.
COMMANDS: list[Callable] = [tools.add_fetch, offline.add_pose, offline.add_demo, tools.add_bench,
                            tools.add_obs, tools.add_profile, offline.add_track,
                            offline.add_render, tools.add_prepare]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thacam", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Turn one drawing of an anime character into a live VTuber avatar.",
        epilog=live.EPILOG)
    parser.add_argument("--version", action="version", version=f"thacam {__version__}")
    add_common(parser)
    live.add_live_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    for p in sub.choices.values():
        add_common(p)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.logging import RichHandler
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    handler = RichHandler(show_time=False, show_path=False, markup=False,
                          console=Console(stderr=True))
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    logging.getLogger("thacam").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    func = getattr(args, "func", None)
    if func is None and args.command is None and args.character is not None:
        func = live.cmd_live
    if func is None:
        parser.print_help()
        return 2
    if func is not tools.cmd_bench:  # the bench times the reference untuned first, then tunes
        from ..runtime import tune_allocator
        tune_allocator()
    try:
        return func(args)
    except UserError as exc:
        print(f"thacam: error: {exc}", file=sys.stderr)
        return exc.exit_code


def run() -> None:
    sys.exit(main())
