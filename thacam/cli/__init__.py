"""thacam's command line.

    thacam --character IMG [live options]     the main job: face -> avatar -> virtual camera
    thacam fetch                              put the model files in place
    thacam pose --character IMG --set NAME=V  render one posed frame
    thacam demo                               animate a sample character into a video
    thacam track / render                     face video -> poses.jsonl -> avatar video
    thacam prepare / profile / obs / bench    tools

One module per group of commands (live.py, offline.py, tools.py), each registering its
subcommands with an ``add_*`` function listed in :data:`COMMANDS`; options several commands share
are declared once in options.py. Nothing imports this package; ``thacam.py``, ``python -m thacam``
and the console script run it.

How a command ends, decided here once for all of them: a UserError or an OSError from the system
(disk full, read-only place) prints one line on stderr and exits 2; Ctrl-C prints one line and
exits 130, SIGTERM 143 (both unwind through every ``with``, so outputs are finished or aborted
and no temporary file is left); anything else is a bug and keeps its traceback (exit 1). The live
run stops on either signal like on q and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from typing import Callable, Iterator, Sequence

from .. import __version__
from ..errors import Terminated, UserError, os_error_message
from . import live, offline, tools, voice
from .options import add_common

__all__ = ["main", "run", "build_parser", "COMMANDS"]

# Each registers one subcommand; `thacam --help` lists them in this order.
COMMANDS: list[Callable] = [tools.add_fetch, offline.add_pose, offline.add_demo, tools.add_bench,
                            tools.add_obs, tools.add_profile, offline.add_track,
                            offline.add_render, tools.add_prepare, voice.add_voice]


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
        with _sigterm_as_interrupt():
            return func(args)
    except UserError as exc:
        print(f"thacam: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"thacam: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"thacam: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread, so it unwinds exactly
    like Ctrl-C: sinks abort or finish, temporary files go, the old file stays."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise Terminated()

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run() -> None:
    sys.exit(main())
