"""Options and helpers the commands share, each declared once.

The profile-backed flags (--device, --camera, --obs-port, ...) are generated from the settings
declarations (``setting(flag=...)``): their choices, ranges and help come from the same place as
the profile's. Everything else several commands take (--weights, --profile, -v/-q, the progress
bar, the renderer with its one-time export bar) is defined here and nowhere else.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import UserError
from ..profile import FLAGS, Profile, apply_overrides, resolve_profile
from ..settings import Flag, field_doc
from ..weights import DEFAULT_WEIGHTS_DIR

__all__ = ["add_common", "add_weights", "add_phone", "add_profile", "add_flags", "parse_rgb",
           "progress_bar", "load_renderer", "save_png", "warn_if_not_conforming",
           "profile_for", "positive", "render_settings"]

log = logging.getLogger("thacam")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def add_weights(p: argparse.ArgumentParser | Any, what: str = "the model files") -> None:
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR, metavar="DIR",
                   help=f"folder with {what} (default: %(default)s)")


def add_phone(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument("--phone", default=None, metavar="IP",
                   help="with --source ifacialmocap: the phone's address, sent the start "
                        "handshake (as the app expects) on start and while no packets come")


def add_profile(p: argparse.ArgumentParser | Any, set_profile: bool = True) -> None:
    """--profile PATH|NAME (and --set-profile KEY=VALUE)."""
    p.add_argument("--profile", default=None, metavar="PATH|NAME",
                   help="profile file, or NAME for profiles/NAME.toml (default: "
                        "profiles/<image stem>.toml when it exists)")
    if set_profile:
        p.add_argument("--set-profile", dest="profile_set", action="append",
                       metavar="KEY=VALUE", help="set any profile key, e.g. --set-profile "
                       "retarget.blink_full=0.3 (repeatable)")


def _number_list(text: str) -> list[float | int]:
    """'0,255,0' -> [0, 255, 0] (checked against the setting by the profile's validator)."""
    try:
        return [int(p) if p.strip().lstrip("-").isdigit() else float(p)
                for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas") \
            from None


def _argument(flag: Flag) -> dict[str, Any]:
    info = flag.info
    kw: dict[str, Any] = {"dest": flag.dest, "default": None,
                          "help": field_doc(info, cli=True).replace("%", "%%")}
    kind = info.spec.kind
    if kind == "bool":
        kw["action"] = argparse.BooleanOptionalAction
    elif kind == "choice":
        kw["choices"] = info.spec.choices
    elif kind in ("int", "float"):
        kw["type"] = int if kind == "int" else float
    elif kind == "tuple":
        kw["type"] = _number_list
    elif kind == "path":
        kw["type"] = Path
    if "metavar" in info.meta and kind not in ("bool", "choice"):
        kw["metavar"] = info.meta["metavar"]
    return kw


def add_flags(p: argparse.ArgumentParser | Any, keys: Iterable[str] | None = None, *,
              aliases: dict[str, Sequence[str]] | None = None) -> None:
    """The profile-backed flags whose keys start with one of ``keys`` (all when None), each
    defaulting to None = "take the profile's value". ``aliases`` adds option names to a key."""
    prefixes = tuple(keys) if keys is not None else None
    for flag in FLAGS:
        if prefixes is not None and not flag.key.startswith(prefixes):
            continue
        names = [flag.flag, *(aliases or {}).get(flag.key, ())]
        p.add_argument(*names, **_argument(flag))


def profile_for(args: argparse.Namespace, character: Path | None = None,
                ) -> tuple[Profile, Path | None]:
    """The run's profile: --profile (or profiles/<character>.toml), then the flags over it."""
    profile, path = resolve_profile(character, getattr(args, "profile", None))
    return apply_overrides(profile, args), path


def render_settings(args: argparse.Namespace) -> Any:
    """RenderSettings from the model flags alone (commands that take no profile)."""
    return apply_overrides(Profile(), args, quiet=True).render_settings(args.weights)


def parse_rgb(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected R,G,B with each 0..255, e.g. 0,255,0")
    return parts  # type: ignore[return-value]


def positive(flag: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    """Refuse a count or rate that is not above zero (or not at least zero)."""
    if value is None:
        return
    if not (value >= 0 if allow_zero else value > 0):
        raise UserError(f"{flag} {value}: must be {'0 or more' if allow_zero else 'above 0'}")


def progress_bar(transient: bool = False):
    """A rich progress bar on stderr (the one style every long command uses)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=transient)


def load_renderer(settings: Any):
    """The Renderer, with a progress bar while a first run builds the OpenVINO graphs."""
    from ..render.engine import Renderer
    with progress_bar(transient=True) as bar:
        task = None

        def progress(stage: str, i: int, n: int) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task("building the OpenVINO model (once per machine)", total=n)
            bar.update(task, completed=i, description=f"building the OpenVINO model "
                                                      f"(once per machine): {stage}")
        return Renderer(settings, progress=progress)


def save_png(path: Path, rgba: Any) -> None:
    """Write a PNG to a temporary name and rename it (never half a file)."""
    from PIL import Image

    from ..files import atomic_write_bytes
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())


def warn_if_not_conforming(character: Any, weights_dir: Path | None = None) -> list[str]:
    """Print (stderr) what about a loaded character differs from what THA3 expects, and the
    `thacam prepare` command that fixes it. Returns the problems (empty: nothing printed)."""
    from ..character import character_advice, check_character
    task = Path(weights_dir) / "face_landmarker.task" if weights_dir else None
    problems = check_character(character, task)
    if problems:
        print(character_advice(character, problems), file=sys.stderr)
    return problems
