"""Profiles: one TOML file per character holding every stage's settings.

A profile (``profiles/<image stem>.toml``) bundles the character image with each stage's own
settings class as a section: [model] (render), [camera] (capture), [sources] (several face
sources at once), [calibration] and [retarget] (retarget), [smoothing], [breathing], [idle] and [expressions] (animation), [lipsync], [output]
and [obs].
Each stage declares its settings once (thacam.settings); this module only assembles them, loads a
file (validated completely before anything starts, errors naming the file, the key path and what
is expected), resolves which profile a run uses, applies command-line overrides (built-in
defaults < profile < flags, each override logged once) and saves changes back with tomlkit so the
user's comments and layout survive.

Must not import torch, cv2 or mediapipe: profiles load and validate in milliseconds, and
``thacam profile check`` works on a machine without the models.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import settings as S
from .settings import codec as C
from .animation import (BUILTIN_PRESETS, BreathingSettings, ExpressionPreset, IdleSettings,
                        SmoothingSettings)
from .capture import CameraSettings
from .errors import ProfileError
from .files import atomic_write_text
from .lipsync import LipSyncSettings
from .obs import ObsSettings
from .output import OutputSettings
from .render import RenderSettings
from .retarget import Calibration, RetargetSettings
from .sources.merge import MergeSettings
from .settings import Settings, setting
from .weights import REPO_ROOT

__all__ = [
    "Profile", "CharacterSettings", "load_profile", "save_profile", "parse_profile",
    "default_toml", "resolve_profile", "apply_overrides", "profile_path_for", "init_profile",
    "offer_profile", "profile_changes", "effective_sources", "HOTKEYS", "PROFILES_DIR",
    "DEFAULT_PROFILE", "DERIVED",
]

log = logging.getLogger(__name__)

PROFILES_DIR = Path(os.environ.get("THACAM_PROFILES", REPO_ROOT / "profiles"))
DEFAULT_PROFILE = REPO_ROOT / "profiles" / "default.toml"
HOTKEYS = tuple("123456789")
# Keys that are not settings of their own: OBS keys out the colour thacam paints and reads the
# device (or stream port) thacam writes, so they always equal the [output] values.
DERIVED = {"obs.key_color": "output.background", "obs.device": "output.device",
           "obs.stream_port": "output.stream_port"}


@dataclass(frozen=True)
class CharacterSettings(Settings):
    """The character drawn by THA3."""

    image: Path | None = setting(
        None, must_exist=True, flag="--character", metavar="IMG",
        help="The character image (512x512 RGBA PNG). A relative path is relative to this "
        "profile's folder; empty = give it with --character.",
        cli_help="The character image (PNG with transparency, 512x512 best); overrides the "
        "profile's character.")


# The built-in presets on hotkeys 1-6, in animation.py's order.
DEFAULT_EXPRESSIONS: dict[str, ExpressionPreset] = {
    str(i + 1): p for i, p in enumerate(BUILTIN_PRESETS.values()) if i < len(HOTKEYS)}


def _section(cls: type) -> Any:
    # A section's help is its class's docstring (the first paragraph goes into the file).
    return setting(factory=cls, help="")


@dataclass(frozen=True)
class Profile(Settings):
    """Everything one character needs; each stage takes its own section."""

    character: CharacterSettings = _section(CharacterSettings)
    model: RenderSettings = _section(RenderSettings)
    camera: CameraSettings = _section(CameraSettings)
    sources: MergeSettings = _section(MergeSettings)
    calibration: Calibration = _section(Calibration)
    retarget: RetargetSettings = _section(RetargetSettings)
    smoothing: SmoothingSettings = _section(SmoothingSettings)
    breathing: BreathingSettings = _section(BreathingSettings)
    idle: IdleSettings = _section(IdleSettings)
    lipsync: LipSyncSettings = _section(LipSyncSettings)
    expressions: dict[str, ExpressionPreset] = setting(
        factory=lambda: dict(DEFAULT_EXPRESSIONS), keys=HOTKEYS,
        help="Expression presets on hotkeys 1-9, one [expressions.N] table each. They fade in "
        "over tracking: the channels they name are forced, head and mouth keep tracking. A "
        "profile with any [expressions.N] table replaces the whole default set.")
    output: OutputSettings = _section(OutputSettings)
    obs: ObsSettings = _section(ObsSettings)

    def check(self) -> None:
        out = self.output
        if (self.obs.key_color, self.obs.device, self.obs.stream_port) != (
                tuple(out.background), out.device, out.stream_port):
            object.__setattr__(self, "obs", dataclasses.replace(
                self.obs, key_color=tuple(out.background), device=out.device,
                stream_port=out.stream_port))

    def render_settings(self, weights_dir: Path | None = None) -> RenderSettings:
        """The renderer's settings ([model], plus the weights folder from the command line)."""
        if weights_dir is None:
            return self.model
        return dataclasses.replace(self.model, weights_dir=Path(weights_dir))

    @property
    def neutral(self) -> Calibration | None:
        """The calibration to hand the Retargeter: None until the user has calibrated."""
        return self.calibration if self.calibration.calibrated else None


# ----------------------------------------------------------------------------------- loading

def parse_profile(text: str, *, file: str = "<profile>", base_dir: Path | None = None,
                  check_files: bool = True) -> Profile:
    """Validate TOML text into a Profile (``load_profile`` without the file)."""
    return C.decode(Profile, C.parse_toml(text, file), file=file, base_dir=base_dir,
                    check_files=check_files, derived=DERIVED)


def load_profile(path: Path | str) -> Profile:
    """Read and fully validate a profile; paths inside it resolve against its folder.

    Raises:
        ProfileError: missing or unreadable file, broken TOML, unknown key, wrong type, out of
            range, NaN/inf, negative rate, missing character image, a password in the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(path, None, "no such profile file; check the path, or create it with "
                           "`thacam profile init IMG`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(path, None, f"cannot read the file ({exc}); check its permissions "
                           "and that it is UTF-8 text") from None
    return parse_profile(text, file=str(path), base_dir=path.resolve().parent)


def profile_changes(profile: Profile, base: Profile | None = None,
                    base_dir: Path | None = None) -> list[tuple[str, Any]]:
    """(key path, value as written) for every leaf where ``profile`` differs from ``base``
    (the built-in defaults)."""
    return C.changes(profile, base if base is not None else Profile(), base_dir)


# ------------------------------------------------------------------------------------ writing

DEFAULT_HEADER = """\
thacam profile: every key, what it does, and its built-in default.

Copy this file to profiles/<image stem>.toml (or run `thacam profile init IMG`) and change what \
you need; a key you leave out keeps the default shown here. Precedence: built-in defaults < \
profile < command-line flags. The OBS password is never stored in a profile: set the environment \
variable THACAM_OBS_PASSWORD.

Generated from the settings dataclasses by `python -m thacam.profile`; do not edit by hand \
(tests/test_profile.py checks that it is current)."""


INIT_NOTE = """\
Every key is listed with what it does and its built-in default; change what you need. \
Precedence: built-in defaults < this file < command-line flags. In the preview window c \
calibrates, the tuning keys nudge gains, and s saves them back into this file (comments are \
kept). The OBS password is never stored here: set the environment variable THACAM_OBS_PASSWORD."""


def default_toml() -> str:
    """The text of profiles/default.toml."""
    return C.render_toml(Profile(), base_dir=DEFAULT_PROFILE.parent, header=DEFAULT_HEADER)


def save_profile(profile: Profile, path: Path | str, keys: Iterable[str] | None = None) -> Path:
    """Write ``profile`` to ``path``, changing only the keys whose values differ from the file
    (and, when ``keys`` is given, only those keys: another program's edits to other keys stay).

    An existing file keeps its comments, order, blank lines and number formatting (tomlkit); a
    key the file does not have is added only when its value differs from the built-in default.
    A new file gets the fully documented layout.
    """
    import tomlkit
    path = Path(path)
    base_dir = path.resolve().parent
    if not path.exists():
        atomic_write_text(path, C.render_toml(profile, base_dir=base_dir,
                                              header="thacam profile, saved by thacam."))
        return path
    text = path.read_text(encoding="utf-8")
    old = parse_profile(text, file=str(path), base_dir=base_dir, check_files=False)
    doc = tomlkit.parse(text)
    before = C.flatten(C.encode(old, base_dir))
    after = C.flatten(C.encode(profile, base_dir))
    wanted = None if keys is None else set(keys)

    def chosen(key: str) -> bool:
        return wanted is None or any(key == k or key.startswith(k + ".") for k in wanted)

    for key, value in after.items():
        if chosen(key) and (key not in before or before[key] != value):
            _doc_set(doc, key.split("."), value)
    for key in before.keys() - after.keys():
        if chosen(key):
            _doc_delete(doc, key.split("."))
    atomic_write_text(path, tomlkit.dumps(doc))
    log.info("saved profile %s", path)
    return path


def _doc_set(doc: Any, parts: list[str], value: Any) -> None:
    import tomlkit
    node = doc
    for p in parts[:-1]:
        if p not in node:
            node[p] = tomlkit.table()
        node = node[p]
    leaf = parts[-1]
    if leaf in node:
        old = node[leaf]
        if isinstance(old, (float, int)) and not isinstance(old, bool) and \
                isinstance(value, (int, float)) and old == value:
            return  # keep "1.20" as the user wrote it
    node[leaf] = value


def _doc_delete(doc: Any, parts: list[str]) -> None:
    chain = [doc]
    for p in parts[:-1]:
        if p not in chain[-1]:
            return
        chain.append(chain[-1][p])
    if parts[-1] in chain[-1]:
        del chain[-1][parts[-1]]
    # drop tables emptied by the deletion (a removed expression preset)
    for node, name in zip(reversed(chain[1:]), reversed(parts[:-1])):
        parent = chain[chain.index(node) - 1]
        if len(node) == 0:
            del parent[name]
        else:
            break


def init_profile(image: Path | str, out: Path | str | None = None, *, force: bool = False,
                 profiles_dir: Path | None = None) -> Path:
    """Write a fully documented profile for ``image`` (profiles/<stem>.toml by default).

    Raises:
        CharacterError: the image is missing or unusable.
        ProfileError: the profile exists already (and not ``force``).
    """
    from .character import load_character
    image = Path(image).expanduser().resolve()
    load_character(image)  # a profile for an image thacam cannot use would only fail later
    if out is None:
        out = Path(profiles_dir or PROFILES_DIR) / f"{image.stem}.toml"
    out = Path(out)
    if out.exists() and not force:
        raise ProfileError(out, None, "already exists; edit it, or pass --force to replace it "
                           "with a fresh one")
    profile = S.with_value(Profile(), "character.image", image)
    text = C.render_toml(profile, base_dir=out.resolve().parent,
                         header=f"thacam profile for {image.name}, created by `thacam profile "
                                "init`.\n\n" + INIT_NOTE)
    atomic_write_text(out, text)
    return out


def offer_profile(character_path: Path | str, *, profiles_dir: Path | None = None,
                  ask: Callable[[str], str] | None = None) -> Path | None:
    """Ask (on a terminal) whether to create profiles/<stem>.toml for this character.

    Returns the new file, or None when declined or not interactive (then it logs how to).
    """
    target = Path(profiles_dir or PROFILES_DIR) / f"{Path(character_path).stem}.toml"
    if ask is None:
        if not sys.stdin.isatty():
            log.info("`thacam profile init %s` saves this character's settings in %s",
                     character_path, target)
            return None
        ask = input
    answer = ask(f"No profile for {Path(character_path).name} yet. Create {target} "
                 "(calibration and tuning are saved there)? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        return None
    return init_profile(character_path, target)


# ----------------------------------------------------------------------------- precedence

def profile_path_for(name_or_path: str | Path, profiles_dir: Path | None = None) -> Path:
    """``--profile`` value -> file: a path as given, or a bare NAME -> profiles/NAME.toml."""
    text = str(name_or_path)
    p = Path(text).expanduser()
    if p.suffix == ".toml" or "/" in text or os.sep in text or p.exists():
        return p
    return Path(profiles_dir or PROFILES_DIR) / f"{text}.toml"


def show_value(value: Any) -> str:
    """A value for a log line: TOML-like, strings bare ("model.device = cuda")."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (Path, str)):
        return str(value)
    if dataclasses.is_dataclass(value):
        return C.toml_value(C.encode(value)).strip()
    if isinstance(value, tuple):
        value = list(value)
    try:
        return C.toml_value(value)
    except Exception:  # noqa: BLE001 - anything tomlkit cannot print is shown by repr
        return repr(value)


def resolve_profile(character_path: Path | str | None, profile_arg: str | Path | None,
                    *, profiles_dir: Path | None = None) -> tuple[Profile, Path | None]:
    """Pick and load the profile for a run, logging each value it sets (once, at start).

    ``profile_arg`` (``--profile PATH|NAME``) wins; otherwise ``profiles/<image stem>.toml`` when
    it exists; otherwise the built-in defaults (path None: the caller may ``offer_profile``).
    When the chosen profile names no image, ``character_path`` fills it in.

    Raises:
        ProfileError: the named profile does not exist or is broken.
    """
    profiles_dir = Path(profiles_dir or PROFILES_DIR)
    path: Path | None = None
    if profile_arg is not None:
        path = profile_path_for(profile_arg, profiles_dir)
        if not path.exists():
            have = sorted(p.stem for p in profiles_dir.glob("*.toml")) if profiles_dir.is_dir() \
                else []
            listed = f" (existing profiles: {', '.join(have)})" if have else ""
            raise ProfileError(path, None, f"no such profile{listed}; give an existing file or "
                               "create one with `thacam profile init IMG`")
    elif character_path is not None:
        candidate = profiles_dir / f"{Path(character_path).stem}.toml"
        if candidate.exists():
            path = candidate
    if path is None:
        profile = Profile()
        log.info("no profile for this character: using the built-in defaults")
    else:
        profile = load_profile(path)
        log.info("profile %s", path)
        for key, _ in profile_changes(profile):
            log.info("profile sets %s = %s", key, show_value(S.get_key(profile, key)))
    if character_path is not None and profile.character.image is None:
        image = Path(character_path).expanduser().resolve()
        profile = S.with_value(profile, "character.image", image)
    return profile, path


FLAGS = S.flags_of(Profile)


def parse_assignment(item: str) -> tuple[str, Any]:
    """``--set-profile KEY=VALUE`` -> (key, TOML-typed value); a bare word is a string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ProfileError("flag --set-profile", None, f"expected KEY=VALUE, got {item!r}")
    try:
        raw = C.parse_toml(f"v = {text.strip()}", "flag")["v"]
    except ProfileError:
        raw = text.strip()  # a bare word is a string: --set-profile retarget.wink_mode=relaxed
    return key, raw


def apply_overrides(profile: Profile, values: Mapping[str, Any] | Any, *,
                    quiet: bool = False) -> Profile:
    """Apply command-line flags over a profile (flags win), logging each change once.

    ``values`` maps each flag's dest ("device", "obs_port", ...; an argparse namespace works) to
    its value; absent or None = not given. ``profile_set`` holds ``--set-profile`` items. Values
    are validated exactly like profile values.

    Raises:
        ProfileError: a flag's value is invalid for its profile key (source "flag --x").
    """
    get = (values.get if isinstance(values, Mapping)
           else lambda name, default=None: getattr(values, name, default))
    assignments: list[tuple[str, str, Any]] = []
    for f in FLAGS:
        value = get(f.dest, None)
        if value is None:
            continue
        flag = f.flag
        if f.info.spec.kind == "bool" and not value:
            flag = f"--no-{flag[2:]}"
        if f.info.spec.kind == "path":
            value = str(Path(value).expanduser().resolve())
        if isinstance(value, tuple):
            value = list(value)
        assignments.append((flag, f.key, value))
    for item in get("profile_set", None) or ():
        key, raw = parse_assignment(item)
        assignments.append((f"--set-profile {key}", key, raw))
    for flag, key, raw in assignments:
        before = _safe_get(profile, key)
        profile = C.set_raw(profile, key, raw, source=f"flag {flag.split(' ')[0]}",
                            derived=DERIVED)
        after = S.get_key(profile, key)
        if after != before and not quiet:
            log.info("flag %s overrides %s = %s", flag.split(" ")[0], key, show_value(after))
    return profile


def _safe_get(profile: Profile, key: str) -> Any:
    try:
        return S.get_key(profile, key)
    except (AttributeError, KeyError):
        return None


def effective_sources(profile_file: Profile | None, flags: Profile, file_label: str = "profile",
                      ) -> dict[str, str]:
    """Key path -> "from <file>" / "from the command line" for values that are not defaults."""
    defaults = C.flatten(C.encode(Profile()))
    from_file = C.flatten(C.encode(profile_file)) if profile_file is not None else defaults
    out = {}
    for key, value in C.flatten(C.encode(flags)).items():
        if from_file.get(key) != value:
            out[key] = "from the command line"
        elif defaults.get(key) != value:
            out[key] = f"from {file_label}"
    return out


# ------------------------------------------------------------------------------------- script

def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m thacam.profile``: regenerate profiles/default.toml from the dataclasses."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--check"]:
        current = DEFAULT_PROFILE.read_text(encoding="utf-8") if DEFAULT_PROFILE.exists() else ""
        ok = current == default_toml()
        print(f"{DEFAULT_PROFILE}: {'current' if ok else 'out of date'}")
        return 0 if ok else 1
    atomic_write_text(DEFAULT_PROFILE, default_toml())
    print(f"wrote {DEFAULT_PROFILE}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
