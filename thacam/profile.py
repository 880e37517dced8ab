"""Profile stage: one TOML file per character holding every stage's settings.

A profile (``profiles/<image stem>.toml``) bundles the character image, the model choice, the
camera, the calibration, every retarget/animation setting, the expression presets, the output and
the OBS connection. ``load_profile`` validates it completely before anything starts (unknown key
with the closest valid name, wrong type, out of range, NaN, missing image, a password in the file,
broken TOML with line and column) and raises ``ProfileError`` naming the file, the key path and
what is expected. ``save_profile`` writes changes back with tomlkit, so the user's comments and
layout survive.

The TOML layer is generic: it reads each settings dataclass's fields, type hints and
``field(metadata={"range": (lo, hi), "help": ..., "choices": ...})``, so a stage that adds a
field gets it loaded, validated, saved and documented in ``profiles/default.toml`` with no code
here. Precedence is built-in defaults < profile < command-line flags (``resolve_profile``, then
``apply_overrides``), each override logged once. ``Tuner`` maps live key presses (calibrate,
cycle eyebrow family / wink mode, nudge gains, save) onto the profile without any window code.

Must not import torch, cv2 or mediapipe: profiles load and validate in milliseconds, and
``thacam profile check`` works on a machine without the models.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import difflib
import enum
import functools
import logging
import math
import os
import re
import sys
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from .animation import (BUILTIN_PRESETS, BreathingSettings, ExpressionPreset, IdleSettings,
                        SmoothingSettings)
from .errors import ProfileError
from .obs import ObsSettings
from .pose import NAMES as POSE_NAMES
from .pose import PARAMS as POSE_PARAMS
from .retarget import Calibration, RetargetSettings
from .tracking import BLENDSHAPE_NAMES
from .weights import REPO_ROOT, atomic_write_bytes

__all__ = [
    "Profile", "CharacterSettings", "ModelSettings", "CameraSettings", "OutputSettings",
    "load_profile", "save_profile", "parse_profile", "render_toml", "default_toml",
    "resolve_profile", "apply_overrides", "add_override_arguments", "profile_path_for",
    "init_profile", "offer_profile", "profile_changes", "effective_sources", "Tuner", "TuneEvent",
    "PROFILES_DIR", "DEFAULT_PROFILE", "PASSWORD_ENV",
]

log = logging.getLogger(__name__)

PROFILES_DIR = Path(os.environ.get("THACAM_PROFILES", REPO_ROOT / "profiles"))
DEFAULT_PROFILE = REPO_ROOT / "profiles" / "default.toml"
PASSWORD_ENV = "THACAM_OBS_PASSWORD"
# Any of these key names anywhere in a file is refused: a secret in a file that people share with
# their character image is a leak waiting to happen.
_SECRET_KEYS = {"password", "passwd", "obs_password", "secret", "token"}
HOTKEYS = tuple("123456789")


# ------------------------------------------------------------------ settings owned by this module
# Capture and output are configured by plain arguments in their modules (which import cv2), so
# their profile sections are defined here.

@dataclass(frozen=True)
class CharacterSettings:
    """The character drawn by THA3."""

    image: Path | None = field(default=None, metadata={
        "help": "The character image (512x512 RGBA PNG). A relative path is relative to this "
                "profile's folder; empty = give it with --character.",
        "must_exist": True})


@dataclass(frozen=True)
class ModelSettings:
    """Which THA3 networks run, where, and at which precision."""

    variant: Literal["separable", "standard"] = field(default="separable", metadata={
        "help": "THA3 network variant; standard needs the official standard_float folder."})
    precision: Literal["auto", "float", "half"] = field(default="auto", metadata={
        "help": "auto = half on a GPU, float on CPU."})
    device: Literal["auto", "cpu", "cuda", "mps"] = field(default="auto", metadata={
        "help": "Where THA3 runs; auto = a GPU when there is one."})
    threads: int = field(default=0, metadata={
        "range": (0, 256), "help": "CPU threads for torch; 0 = torch's default."})
    backend: Literal["auto", "torch", "openvino"] = field(default="auto", metadata={
        "help": "CPU float32 engine; auto = openvino when installed (pip install openvino), "
                "else torch."})


@dataclass(frozen=True)
class CameraSettings:
    """The webcam (or video file) that is tracked."""

    source: str = field(default="0", metadata={
        "help": "Camera index (0, 1, ...), device (/dev/video2) or video file, as --camera."})
    width: int = field(default=640, metadata={
        "range": (64, 4096), "help": "Capture width asked of the camera, in pixels."})
    height: int = field(default=480, metadata={
        "range": (64, 4096), "help": "Capture height asked of the camera, in pixels."})
    fps: int = field(default=30, metadata={
        "range": (1, 240), "help": "Capture frame rate asked of the camera."})
    mirror: bool = field(default=True, metadata={
        "help": "Mirror the camera image, so raising your right hand looks like a mirror."})


@dataclass(frozen=True)
class OutputSettings:
    """The frames sent to the virtual camera: size, background and where the avatar sits."""

    width: int = field(default=512, metadata={
        "range": (64, 4096), "help": "Output frame width in pixels."})
    height: int = field(default=512, metadata={
        "range": (64, 4096), "help": "Output frame height in pixels."})
    background: tuple[int, int, int] = field(default=(0, 255, 0), metadata={
        "range": (0, 255),
        "help": "Background colour [R, G, B] behind the avatar; OBS keys this colour out."})
    placement: Literal["center", "bottom", "bottom-left", "bottom-right", "top-left",
                       "top-right"] = field(default="center", metadata={
                           "help": "Where the 512x512 avatar sits in the output frame."})
    scale: float = field(default=1.0, metadata={
        "range": (0.1, 8.0), "help": "Avatar size as a multiple of 512 pixels."})
    backend: Literal["auto", "v4l2loopback", "obs", "unitycapture"] = field(
        default="auto", metadata={
            "help": "Virtual camera backend (pyvirtualcam); auto = the first that works."})
    device: str = field(default="", metadata={
        "help": "Virtual camera device (e.g. /dev/video10); empty = the backend's first free one."})


# --------------------------------------------------------- metadata the owning modules lack
# The generic layer reads ``help``/``range``/``choices`` from field metadata. Where a stage's
# dataclass does not carry an entry yet, it is supplied here so the file stays documented and
# validated (and the Tuner can cycle choices); a field's own metadata always wins, so an entry can
# be deleted as soon as the owning module carries it.
_SUPPLEMENT: dict[tuple[type, str], dict[str, Any]] = {
    # OBS keys out the colour thacam paints and reads the device thacam writes: both are set once,
    # in [output], and copied into the OBS settings (see _check_profile).
    (ObsSettings, "key_color"): {"profile": False, "set_by": "output.background"},
    (ObsSettings, "device"): {"profile": False, "set_by": "output.device"},
    (Calibration, "yaw"): {"range": (-90.0, 90.0),
                           "help": "Neutral head yaw in degrees, subtracted from the tracked yaw."},
    (Calibration, "pitch"): {"range": (-90.0, 90.0),
                             "help": "Neutral head pitch in degrees, subtracted from the tracked "
                                     "pitch (used when frames > 0; else retarget.pitch_bias_deg)."},
    (Calibration, "roll"): {"range": (-90.0, 90.0),
                            "help": "Neutral head roll in degrees, subtracted from the tracked "
                                    "roll."},
    (Calibration, "frames"): {"range": (0, 1_000_000),
                              "help": "How many frames the neutral face was taken from; 0 = "
                                      "not calibrated yet (press c in the preview window)."},
    (Calibration, "blendshapes"): {"range": (0.0, 1.0), "names": BLENDSHAPE_NAMES,
                                   "help": "The neutral face's 52 MediaPipe blendshape scores, "
                                           "subtracted when retarget.calibrate_expressions is on."},
    (ExpressionPreset, "name"): {"help": "Name shown when the preset is switched on."},
    (ExpressionPreset, "overrides"): {
        "help": "Pose parameters the preset forces (name = value, `thacam pose --list` shows the "
                "45 names); every other parameter keeps tracking."},
    (ExpressionPreset, "fade_s"): {"range": (0.0, 10.0),
                                   "help": "Seconds to fade the preset in and out."},
    (ExpressionPreset, "mode"): {"choices": ("hold", "toggle"),
                                 "help": "hold = on while the key is held; toggle = each press "
                                         "switches it on or off."},
}

# The built-in presets on hotkeys 1-6, in animation.py's order.
DEFAULT_EXPRESSIONS: dict[str, ExpressionPreset] = {
    str(i + 1): p for i, p in enumerate(BUILTIN_PRESETS.values()) if i < len(HOTKEYS)}


# -------------------------------------------------------------------------------------- Profile

def _section(cls: type, help: str = "") -> Any:
    return field(default_factory=cls, metadata={"help": help} if help else {})


@dataclass(frozen=True)
class Profile:
    """Everything one character needs; each stage takes its own section."""

    character: CharacterSettings = _section(CharacterSettings)
    model: ModelSettings = _section(ModelSettings)
    camera: CameraSettings = _section(CameraSettings)
    calibration: Calibration = field(
        default_factory=lambda: Calibration(frames=0), metadata={
            "help": "The user's neutral face (head angles and expression scores), captured with "
                    "the calibrate key (c) in the preview window and saved with s."})
    retarget: RetargetSettings = _section(
        RetargetSettings, "How face tracking becomes the 45 THA3 pose parameters: thresholds, "
        "gains, eyebrow family, wink mode, head/body split, iris.")
    smoothing: SmoothingSettings = _section(SmoothingSettings)
    breathing: BreathingSettings = _section(BreathingSettings, "Breathing cycle of the avatar.")
    idle: IdleSettings = _section(
        IdleSettings, "What the avatar does when the face is lost: hold, then ease into a "
        "neutral pose that sways and blinks.")
    expressions: dict[str, ExpressionPreset] = field(
        default_factory=lambda: dict(DEFAULT_EXPRESSIONS), metadata={
            "keys": HOTKEYS,
            "help": "Expression presets on hotkeys 1-9, one [expressions.N] table each. They fade "
                    "in over tracking: the channels they name are forced, head and mouth keep "
                    "tracking. A profile with any [expressions.N] table replaces the whole "
                    "default set."})
    output: OutputSettings = _section(OutputSettings)
    obs: ObsSettings = _section(
        ObsSettings, "OBS Studio control (obs-websocket). The password is never stored here: set "
        "the environment variable THACAM_OBS_PASSWORD. The key colour and the "
        "camera device OBS reads are output.background and output.device.")

    def render_settings(self, weights_dir: Path | None = None):
        """The Renderer's settings (imported late: render.py brings torch)."""
        from .render import RenderSettings
        kw = {} if weights_dir is None else {"weights_dir": Path(weights_dir)}
        return RenderSettings(variant=self.model.variant, device=self.model.device,
                              precision=self.model.precision, threads=self.model.threads,
                              backend=self.model.backend, **kw)

    def expression_for_key(self, key: str) -> ExpressionPreset | None:
        return self.expressions.get(key)

    @property
    def neutral(self) -> Calibration | None:
        """The calibration to hand the Retargeter: None until the user has calibrated."""
        return self.calibration if self.calibration.frames > 0 else None


# ============================================================ generic dataclass <-> TOML layer

@dataclass(frozen=True)
class _Spec:
    """What a field holds, reduced to the few shapes TOML can express."""

    kind: str                      # bool int float str path choice tuple table map
    tp: Any = None                 # dataclass class (table), enum class (choice) or None
    choices: tuple = ()
    item: "_Spec | None" = None    # tuple element / map value
    length: int | None = None      # fixed tuple length
    key_int: bool = False          # map keys are ints (TOML keys are always strings)
    optional: bool = False


@dataclass(frozen=True)
class FieldInfo:
    name: str
    spec: _Spec
    default: Any
    range: tuple[float | None, float | None] | None
    help: str
    meta: Mapping[str, Any]
    required: bool = False


def _spec_of(tp: Any, meta: Mapping[str, Any], where: str) -> _Spec:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            inner = _spec_of(rest[0], meta, where)
            if inner.kind in ("table", "map"):
                raise TypeError(f"{where}: an optional table cannot go in a profile")
            # TOML has no null: None is "" for strings and paths, an absent key otherwise.
            return dataclasses.replace(inner, optional=True)
        raise TypeError(f"{where}: union type {tp} cannot go in a profile")
    if origin is Literal:
        return _Spec("choice", choices=tuple(args))
    if tp is bool:
        return _Spec("bool")
    if tp is int:
        return _Spec("int")
    if tp is float:
        return _Spec("float")
    if tp is str:
        if meta.get("choices"):
            return _Spec("choice", choices=tuple(meta["choices"]))
        return _Spec("str")
    if isinstance(tp, type) and issubclass(tp, Path):
        return _Spec("path")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _Spec("choice", tp=tp, choices=tuple(m.value for m in tp))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _Spec("table", tp=tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _Spec("tuple", item=_spec_of(args[0], meta, where))
        if args and all(a is args[0] for a in args):
            return _Spec("tuple", item=_spec_of(args[0], meta, where), length=len(args))
        if args and all(a in (int, float) for a in args):
            return _Spec("tuple", item=_Spec("float"), length=len(args))
        raise TypeError(f"{where}: tuple type {tp} cannot go in a profile")
    if origin in (dict, Mapping, collections.abc.Mapping) or tp is dict:
        if len(args) != 2 or args[0] not in (str, int):
            raise TypeError(f"{where}: a mapping in a profile needs str or int keys, got {tp}")
        return _Spec("map", item=_spec_of(args[1], {}, where), key_int=args[0] is int)
    raise TypeError(f"{where}: type {tp!r} cannot go in a profile; use float, int, bool, str, "
                    "Path, a Literal, a tuple of numbers, a dict or a nested dataclass")


@functools.lru_cache(maxsize=None)
def fields_of(cls: type) -> tuple[FieldInfo, ...]:
    """The profile-visible fields of a settings dataclass, with their types and metadata."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = {**_SUPPLEMENT.get((cls, f.name), {}), **f.metadata}
        if not f.init or meta.get("profile", True) is False:
            continue
        if f.name.lower() in _SECRET_KEYS:
            continue  # secrets come from the environment, never from or into a file
        required = False
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default, required = None, True  # e.g. a preset's name: the table must give it
        rng = meta.get("range")
        out.append(FieldInfo(f.name, _spec_of(hints[f.name], meta, f"{cls.__name__}.{f.name}"),
                             default, tuple(rng) if rng is not None else None,
                             str(meta.get("help", "")).strip(), meta, required))
    return tuple(out)


# ---------------------------------------------------------------------------------- decoding

@dataclass(frozen=True)
class _Ctx:
    file: str                     # what ProfileError names as the source ("profiles/x.toml")
    base_dir: Path | None         # relative paths resolve against this (None = cwd)
    check_files: bool = True


def _num(v: float) -> str:
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:g}"


def _describe_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, (int, float)):
        return _num(v) if isinstance(v, float) else str(v)
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def _describe(spec: _Spec, rng: tuple | None) -> str:
    k = spec.kind
    if k in ("int", "float"):
        what = "an integer" if k == "int" else "a number"
        if rng is not None:
            lo, hi = rng
            if lo is not None and hi is not None:
                return f"{what} in [{_num(lo)}, {_num(hi)}]"
            if lo is not None:
                return f"{what} >= {_num(lo)}"
            return f"{what} <= {_num(hi)}"
        return what
    if k == "bool":
        return "true or false"
    if k == "str":
        return "a string"
    if k == "path":
        return "a file path (a string)"
    if k == "choice":
        return "one of " + ", ".join(repr(c) for c in spec.choices)
    if k == "tuple":
        inner = _describe(spec.item, rng)
        n = f"{spec.length} " if spec.length else ""
        return f"a list of {n}values, each {inner}"
    return "a table"


# A numeric field without a range whose name says it is a rate, time or frequency can still not
# be negative; a negative breathing rate would run the cycle backwards, not stop it.
_NONNEG = re.compile(r"(rate|fps|hz|period|fade|duration|interval|delay|timeout|_s$|_ms$|_min$)")


def _decode_scalar(v: Any, spec: _Spec, info: FieldInfo, key: str, ctx: _Ctx) -> Any:
    def bad(problem: str | None = None) -> ProfileError:
        return ProfileError(ctx.file, key, problem or
                            f"expected {_describe(spec, info.range)}, got {_describe_value(v)}")

    k = spec.kind
    if k == "bool":
        if not isinstance(v, bool):
            raise bad()
        return v
    if k in ("int", "float"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad()
        if k == "int" and isinstance(v, float):
            raise bad()
        if not math.isfinite(v):
            raise bad(f"expected a finite number, got {_describe_value(v)}")
        if info.range is not None:
            lo, hi = info.range
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise bad()
        elif v < 0 and _NONNEG.search(info.name):
            raise bad(f"expected a number >= 0 (a {info.name} cannot be negative), "
                      f"got {_describe_value(v)}")
        return float(v) if k == "float" else int(v)
    if k == "str":
        if not isinstance(v, str):
            raise bad()
        pattern = info.meta.get("pattern")
        if pattern and not re.fullmatch(pattern, v):
            raise bad(f"expected a string matching {pattern}, got {v!r}")
        return None if (spec.optional and v == "") else v
    if k == "choice":
        if not isinstance(v, str) or v not in spec.choices:
            close = difflib.get_close_matches(str(v), [str(c) for c in spec.choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close and isinstance(v, str) else ""
            raise bad(f"expected {_describe(spec, None)}, got {_describe_value(v)}{hint}")
        return spec.tp(v) if spec.tp is not None else v
    if k == "path":
        if not isinstance(v, str):
            raise bad()
        if v == "":
            if spec.optional:
                return None
            raise bad("expected a file path, got an empty string")
        p = Path(v).expanduser()
        if not p.is_absolute() and ctx.base_dir is not None:
            p = ctx.base_dir / p
        p = Path(os.path.normpath(p))
        if ctx.check_files and info.meta.get("must_exist") and not p.exists():
            where = (f" (a relative path is relative to {ctx.base_dir})"
                     if not Path(v).expanduser().is_absolute() and ctx.base_dir else "")
            raise ProfileError(ctx.file, key, f"file not found: {p}{where}; fix the path or run "
                               "`thacam profile init IMG` for the right image")
        return p
    raise AssertionError(k)


def _check_secret(k: str, key: str, ctx: _Ctx) -> None:
    if k.lower() in _SECRET_KEYS:
        raise ProfileError(ctx.file, key, "a password is never read from a profile file; delete "
                           f"this key and set the environment variable {PASSWORD_ENV} instead")


def _decode_value(v: Any, spec: _Spec, info: FieldInfo, key: str, ctx: _Ctx) -> Any:
    if spec.kind == "table":
        if not isinstance(v, dict):
            raise ProfileError(ctx.file, key, f"expected a table ([{key}]), got "
                               f"{_describe_value(v)}")
        return _decode_table(spec.tp, v, key, ctx)
    if spec.kind == "tuple" and info.meta.get("names"):
        names = tuple(info.meta["names"])
        if not isinstance(v, dict):
            raise ProfileError(ctx.file, key, f"expected a table of {len(names)} named numbers "
                               f"({names[0]} = ..., ...), got {_describe_value(v)}")
        for k in v:
            if k not in names:
                close = difflib.get_close_matches(k, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ProfileError(ctx.file, f"{key}.{k}", f"unknown name {k!r}; {hint}(fix or "
                                   "remove it)")
        # a name left out keeps its default
        return tuple(_decode_scalar(v[n], spec.item, info, f"{key}.{n}", ctx) if n in v else d
                     for n, d in zip(names, info.default))
    if spec.kind == "tuple":
        if not isinstance(v, list) or (spec.length is not None and len(v) != spec.length):
            got = f"{len(v)} values" if isinstance(v, list) else _describe_value(v)
            raise ProfileError(ctx.file, key, f"expected {_describe(spec, info.range)}, got {got}")
        return tuple(_decode_scalar(x, spec.item, info, f"{key}[{i}]", ctx)
                     for i, x in enumerate(v))
    if spec.kind == "map":
        if not isinstance(v, dict):
            raise ProfileError(ctx.file, key, f"expected a table, got {_describe_value(v)}")
        allowed = info.meta.get("keys")
        out = {}
        for k, item in v.items():
            sub = f"{key}.{k}"
            _check_secret(k, sub, ctx)
            if allowed is not None and k not in allowed:
                raise ProfileError(ctx.file, sub, f"unexpected key {k!r}; the keys of [{key}] are "
                                   + ", ".join(allowed))
            if spec.key_int:
                try:
                    k = int(k)
                except ValueError:
                    raise ProfileError(ctx.file, sub, "expected an integer key") from None
            vinfo = dataclasses.replace(info, meta={}, range=None)
            out[k] = _decode_value(item, spec.item, vinfo, sub, ctx)
        return out
    return _decode_scalar(v, spec, info, key, ctx)


def _decode_table(cls: type, table: Mapping[str, Any], prefix: str, ctx: _Ctx) -> Any:
    infos = {i.name: i for i in fields_of(cls)}
    kwargs = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        _check_secret(k, key, ctx)
        info = infos.get(k)
        set_by = _SUPPLEMENT.get((cls, k), {}).get("set_by")
        if info is None and set_by:
            raise ProfileError(ctx.file, key, f"not a setting of its own: it always equals "
                               f"{set_by}; delete it and set {set_by} instead")
        if info is None:
            close = difflib.get_close_matches(k, list(infos), n=1, cutoff=0.6)
            where = f"[{prefix}]" if prefix else "the top level"
            if close:
                raise ProfileError(ctx.file, key, f"unknown key {k!r}; did you mean "
                                   f"{close[0]!r}? (fix or remove it)")
            raise ProfileError(ctx.file, key, f"unknown key {k!r}; the keys of {where} are "
                               + ", ".join(infos))
        kwargs[k] = _decode_value(v, info.spec, info, key, ctx)
    for info in infos.values():
        if info.required and info.name not in kwargs:
            key = f"{prefix}.{info.name}" if prefix else info.name
            raise ProfileError(ctx.file, key, f"missing; [{prefix}] needs {info.name} = "
                               f"{_describe(info.spec, info.range)}")
    hook = _VALIDATORS.get(cls)
    if hook is not None:
        kwargs = hook(kwargs, table, prefix, ctx)
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
        return obj
    except (ValueError, TypeError) as exc:
        # The stage's own cross-field checks (low below high, ...): name the key it mentions.
        raise _owner_error(exc, cls, infos, prefix, ctx) from None


def _owner_error(exc: Exception, cls: type, infos: Mapping[str, FieldInfo], prefix: str,
                 ctx: _Ctx) -> ProfileError:
    msg = str(exc)
    owner = f"{cls.__name__}."
    hits = [(m.start(), n) for n in infos if (m := re.search(rf"\b{n}\b", msg))]
    name = min(hits)[1] if hits else None
    key = f"{prefix}.{name}" if (prefix and name) else (name or prefix or None)
    # "retarget.x = 3 is ..." / "IdleSettings.x: ..." -> drop the echo of the key itself
    for lead in (f"{prefix}.{name}: ", f"{owner}{name}: ", f"{prefix}.{name} ", f"{name}: "):
        if name and msg.startswith(lead):
            msg = msg[len(lead):] if lead.endswith(": ") else f"{name} {msg[len(lead):]}"
            break
    return ProfileError(ctx.file, key, msg)


def _check_overrides(kwargs: dict[str, Any], table: Mapping[str, Any], prefix: str,
                     ctx: _Ctx) -> dict[str, Any]:
    """Expression overrides name pose parameters: check names and ranges like `thacam pose`."""
    overrides = kwargs.get("overrides") or {}
    limits = {p.name: p for p in POSE_PARAMS}
    for name, value in overrides.items():
        key = f"{prefix}.overrides.{name}"
        spec = limits.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, POSE_NAMES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ProfileError(ctx.file, key, f"unknown pose parameter {name!r}; {hint}"
                               "(`thacam pose --list` shows the 45 names)")
        if not (spec.low <= value <= spec.high):
            raise ProfileError(ctx.file, key, f"expected a number in [{_num(spec.low)}, "
                               f"{_num(spec.high)}], got {_describe_value(value)}")
    return kwargs


def _check_profile(kwargs: dict[str, Any], table: Mapping[str, Any], prefix: str,
                   ctx: _Ctx) -> dict[str, Any]:
    kwargs["obs"] = _linked_obs(kwargs.get("obs", ObsSettings()),
                                kwargs.get("output", OutputSettings()))
    return kwargs


def _linked_obs(obs: ObsSettings, output: OutputSettings) -> ObsSettings:
    """OBS keys out the output's background colour and reads the output's device."""
    if tuple(obs.key_color) == tuple(output.background) and obs.device == output.device:
        return obs
    return dataclasses.replace(obs, key_color=tuple(output.background), device=output.device)


_VALIDATORS: dict[type, Callable[..., dict[str, Any]]] = {
    ExpressionPreset: _check_overrides, Profile: _check_profile}


# ---------------------------------------------------------------------------------- encoding

def _encode_value(v: Any, spec: _Spec, base_dir: Path | None,
                  names: Sequence[str] | None = None) -> Any:
    k = spec.kind
    if k == "table":
        return encode(v, base_dir)
    if k == "tuple" and names:
        return {n: _encode_value(x, spec.item, base_dir) for n, x in zip(names, v)}
    if k == "tuple":
        return [_encode_value(x, spec.item, base_dir) for x in v]
    if k == "map":
        return {str(key): _encode_value(x, spec.item, base_dir) for key, x in v.items()}
    if v is None:
        return ""
    if k == "choice":
        return v.value if isinstance(v, enum.Enum) else v
    if k == "path":
        return _relative(Path(v), base_dir)
    if k == "float":
        return float(v)
    return v


def _relative(p: Path, base_dir: Path | None) -> str:
    """A path as written in a profile: relative to the profile when it lives nearby."""
    if base_dir is None or not p.is_absolute():
        return str(p)
    try:
        rel = Path(os.path.relpath(p, base_dir))
    except ValueError:  # another drive on Windows
        return str(p)
    # Beside or below the profile, or one level up (profiles/../weights/...): keep it relative
    # so the repository can move; further away an absolute path is clearer.
    if rel.parts[:2] == ("..", ".."):
        return str(p)
    return rel.as_posix()


def encode(obj: Any, base_dir: Path | None = None) -> dict[str, Any]:
    """A settings dataclass -> plain TOML-ready dict (paths relative to ``base_dir``)."""
    out = {}
    for i in fields_of(type(obj)):
        value = getattr(obj, i.name)
        if value is None and i.spec.optional and i.spec.kind not in ("str", "path"):
            continue  # no TOML null: an unset optional number is an absent key
        out[i.name] = _encode_value(value, i.spec, base_dir, i.meta.get("names"))
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are leaves."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def _fmt(v: Any) -> str:
    import tomlkit
    return tomlkit.item(v).as_string()


# ----------------------------------------------------------------------------------- loading

def _parse_toml(text: str, file: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = None
    if tomllib is not None:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
            if m:
                raise ProfileError(file, None, f"invalid TOML at line {m[1]}, column {m[2]}: "
                                   f"{msg[:m.start()]}; fix the syntax") from None
            raise ProfileError(file, None, f"invalid TOML: {msg}; fix the syntax") from None
    import tomlkit
    from tomlkit.exceptions import ParseError
    try:
        return tomlkit.parse(text).unwrap()
    except ParseError as exc:
        raise ProfileError(file, None, f"invalid TOML at line {exc.line}, column {exc.col + 1}: "
                           f"{str(exc).split(' at line')[0]}; fix the syntax") from None


def parse_profile(text: str, *, file: str = "<profile>", base_dir: Path | None = None,
                  check_files: bool = True) -> Profile:
    """Validate TOML text into a Profile (``load_profile`` without the file)."""
    ctx = _Ctx(file, base_dir, check_files)
    return _decode_table(Profile, _parse_toml(text, file), "", ctx)


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


# ------------------------------------------------------------------------------------ writing

def _wrap_comment(text: str, indent: str = "") -> list[str]:
    return [f"{indent}# {line}" if line else f"{indent}#"
            for para in text.split("\n")
            for line in (textwrap.wrap(para, 97 - len(indent), break_on_hyphens=False,
                                       break_long_words=False) or [""])]


def _field_doc(info: FieldInfo) -> str:
    text = info.help or "(not documented yet)"
    spec = info.spec
    extra = []
    if spec.kind == "choice" and not all(str(c) in text for c in spec.choices):
        extra.append("one of: " + ", ".join(str(c) for c in spec.choices))
    elif spec.kind in ("int", "float") or (spec.kind == "tuple"
                                           and spec.item.kind in ("int", "float")):
        if info.range is not None:
            lo, hi = info.range
            extra.append(f"range {'-inf' if lo is None else _num(lo)} .. "
                         f"{'inf' if hi is None else _num(hi)}")
    if extra:
        text = f"{text} ({'; '.join(extra)})"
    return text


def _class_doc(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature
        return ""
    return doc.split("\n\n")[0].replace("\n", " ")


def render_toml(profile: Profile = Profile(), *, base_dir: Path | None = None, docs: bool = True,
                header: str = "", annotate: Mapping[str, str] | None = None) -> str:
    """Profile -> TOML text. ``docs`` puts each key's help above it; ``annotate`` appends a
    trailing comment per key path (``thacam profile show`` says where each value came from)."""
    lines: list[str] = _wrap_comment(header) + [""] if header else []
    documented: set[tuple[Any, str]] = set()

    def table(obj: Any, name: str, doc: str) -> None:
        cls = type(obj)
        infos = fields_of(cls)
        def is_sub(i: FieldInfo) -> bool:
            return i.spec.kind in ("table", "map") or bool(i.meta.get("names"))
        scalars = [i for i in infos if not is_sub(i)]
        subs = [i for i in infos if is_sub(i)]
        if name and (scalars or not subs):
            if lines and lines[-1] != "":
                lines.append("")
            if docs and doc:
                lines.extend(_wrap_comment(doc))
            lines.append(f"[{name}]")
        for info in scalars:
            key = f"{name}.{info.name}" if name else info.name
            if docs and (cls, info.name) not in documented:
                lines.extend(_wrap_comment(_field_doc(info)))
                documented.add((cls, info.name))
            raw = getattr(obj, info.name)
            if raw is None and info.spec.optional and info.spec.kind not in ("str", "path"):
                lines.append(f"# {info.name} = ...   (not set)")
                continue
            value = _encode_value(raw, info.spec, base_dir)
            note = f"  # {annotate[key]}" if annotate and key in annotate else ""
            lines.append(f"{info.name} = {_fmt(value)}{note}")
        for info in subs:
            key = f"{name}.{info.name}" if name else info.name
            sub_doc = _field_doc(info) if info.help else _class_doc(info.spec.tp or object)
            value = getattr(obj, info.name)
            if info.spec.kind == "table":
                table(value, key, info.help or _class_doc(info.spec.tp))
            elif info.spec.kind == "tuple":
                named = dict(zip(info.meta["names"], value))
                mapping(named, dataclasses.replace(info, spec=_Spec("map", item=info.spec.item)),
                        key, _field_doc(info))
            else:
                mapping(value, info, key, sub_doc)

    def mapping(value: Mapping, info: FieldInfo, name: str, doc: str) -> None:
        item = info.spec.item
        if lines and lines[-1] != "":
            lines.append("")
        if docs and doc and (id(info), "") not in documented:
            lines.extend(_wrap_comment(doc))
            documented.add((id(info), ""))
        if item.kind == "table":
            if docs:
                lines.append("")
            if not value:
                lines.append(f"# [{name}.1] ...")
            first = True
            for k, v in value.items():
                table(v, f"{name}.{k}", _class_doc(item.tp) if first else "")
                first = False
            return
        lines.append(f"[{name}]")
        for k, v in value.items():
            full = f"{name}.{k}"
            note = f"  # {annotate[full]}" if annotate and full in annotate else ""
            lines.append(f"{_key(str(k))} = {_fmt(_encode_value(v, item, base_dir))}{note}")

    table(profile, "", "")
    return "\n".join(lines).rstrip("\n") + "\n"


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _fmt(k)


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
    return render_toml(Profile(), base_dir=DEFAULT_PROFILE.parent, header=DEFAULT_HEADER)


def _atomic_write_text(path: Path, text: str) -> None:
    """Temp file + os.replace (thacam.weights.atomic_write_bytes), keeping the file's mode."""
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def save_profile(profile: Profile, path: Path | str) -> Path:
    """Write ``profile`` to ``path``, changing only the keys whose values differ from the file.

    An existing file keeps its comments, order, blank lines and number formatting (tomlkit); a
    key the file does not have is added only when its value differs from the built-in default.
    A new file gets the fully documented layout.
    """
    import tomlkit
    path = Path(path)
    base_dir = path.resolve().parent
    if not path.exists():
        _atomic_write_text(path, render_toml(profile, base_dir=base_dir,
                                             header="thacam profile, saved by thacam."))
        return path
    text = path.read_text(encoding="utf-8")
    old = parse_profile(text, file=str(path), base_dir=base_dir, check_files=False)
    doc = tomlkit.parse(text)
    before = flatten(encode(old, base_dir))
    after = flatten(encode(profile, base_dir))
    for key, value in after.items():
        if before.get(key, _MISSING) != value or (key not in before):
            _doc_set(doc, key.split("."), value)
    for key in before.keys() - after.keys():
        _doc_delete(doc, key.split("."))
    _atomic_write_text(path, tomlkit.dumps(doc))
    log.info("saved profile %s", path)
    return path


_MISSING = object()


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


# ---------------------------------------------------------------------- key paths and changes

def get_key(profile: Any, key: str) -> Any:
    node = profile
    for part in key.split("."):
        node = node[part] if isinstance(node, Mapping) else getattr(node, part)
    return node


def with_value(obj: Any, key: str, value: Any) -> Any:
    """A copy of a (frozen) settings tree with ``key`` (dotted path) set to an already-valid
    value."""
    head, _, rest = key.partition(".")
    if isinstance(obj, Mapping):
        new = dict(obj)
        new[head] = with_value(obj[head], rest, value) if rest else value
        return new
    if rest:
        return dataclasses.replace(obj, **{head: with_value(getattr(obj, head), rest, value)})
    return dataclasses.replace(obj, **{head: value})


def _field_info(key: str) -> FieldInfo:
    """The FieldInfo of a dotted key through dataclass sections (not through mappings)."""
    cls: Any = Profile
    info = None
    for part in key.split("."):
        info = next((i for i in fields_of(cls) if i.name == part), None)
        if info is None:
            raise KeyError(key)
        cls = info.spec.tp
    assert info is not None
    return info


def set_raw(profile: Profile, key: str, raw: Any, *, source: str,
            check_files: bool = True) -> Profile:
    """Set ``key`` from a TOML-typed value, with the same validation as a file (errors name
    ``source``, e.g. "flag --device")."""
    tree = encode(profile, None)
    node = tree
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(node, dict):
            raise ProfileError(source, key, "not a settings key; see profiles/default.toml")
        node = node.setdefault(p, {})
    if not isinstance(node, dict):
        raise ProfileError(source, key, "not a settings key; see profiles/default.toml")
    node[parts[-1]] = raw
    return _decode_table(Profile, tree, "", _Ctx(source, Path.cwd(), check_files))


def profile_changes(profile: Profile, base: Profile | None = None,
                    base_dir: Path | None = None) -> list[tuple[str, Any]]:
    """(key path, value) for every leaf where ``profile`` differs from ``base`` (the defaults)."""
    a = flatten(encode(base if base is not None else Profile(), base_dir))
    b = flatten(encode(profile, base_dir))
    return [(k, v) for k, v in b.items() if a.get(k, _MISSING) != v]


# ----------------------------------------------------------------------------- precedence

@dataclass(frozen=True)
class _Flag:
    dest: str
    flag: str
    key: str


# argparse dest -> profile key. A flag left at None means "not given": flags that can come from a
# profile must default to None, otherwise the flag's default would silently beat the profile.
FLAGS: tuple[_Flag, ...] = (
    _Flag("character", "--character", "character.image"),
    _Flag("variant", "--variant", "model.variant"),
    _Flag("precision", "--precision", "model.precision"),
    _Flag("device", "--device", "model.device"),
    _Flag("threads", "--threads", "model.threads"),
    _Flag("backend", "--backend", "model.backend"),
    _Flag("camera", "--camera", "camera.source"),
    _Flag("camera_fps", "--camera-fps", "camera.fps"),
    _Flag("mirror", "--mirror/--no-mirror", "camera.mirror"),
    _Flag("vcam_backend", "--vcam-backend", "output.backend"),
    _Flag("obs_host", "--obs-host", "obs.host"),
    _Flag("obs_port", "--obs-port", "obs.port"),
    _Flag("obs_scene", "--obs-scene", "obs.scene"),
    _Flag("obs_source", "--obs-source", "obs.source"),
)


def add_override_arguments(p: argparse.ArgumentParser, *, skip: Iterable[str] = ()) -> None:
    """The profile-overriding flags (all default None = take the profile's value), plus
    ``--profile`` and ``--set KEY=VALUE`` for any other key. ``skip`` leaves out dests the
    caller defines itself (still with default None)."""
    skip = set(skip)
    g = p.add_argument_group("profile overrides (flags beat the profile)")

    def add(dest: str, *names: str, **kw: Any) -> None:
        if dest not in skip:
            g.add_argument(*names, dest=dest, default=None, **kw)

    add("profile", "--profile", metavar="PATH|NAME",
        help="profile file, or NAME for profiles/NAME.toml (default: profiles/<image stem>.toml)")
    add("variant", "--variant", choices=_choices("model", "variant"))
    add("precision", "--precision", choices=_choices("model", "precision"))
    add("device", "--device", choices=_choices("model", "device"))
    add("threads", "--threads", type=int, metavar="N")
    add("backend", "--backend", choices=_choices("model", "backend"))
    add("camera", "--camera", metavar="INDEX|DEVICE|FILE")
    add("camera_fps", "--camera-fps", type=int, metavar="FPS")
    if "mirror" not in skip:
        g.add_argument("--mirror", dest="mirror", action=argparse.BooleanOptionalAction,
                       default=None, help="mirror the camera image")
    add("vcam_backend", "--vcam-backend", choices=_choices("output", "backend"))
    add("obs_host", "--obs-host", metavar="HOST")
    add("obs_port", "--obs-port", type=int, metavar="PORT")
    add("obs_scene", "--obs-scene", metavar="NAME")
    add("obs_source", "--obs-source", metavar="NAME")
    add("profile_set", "--set-profile", action="append", metavar="KEY=VALUE",
        help="set any profile key, e.g. --set-profile retarget.blink_full=0.3 (repeatable)")


def _choices(section: str, name: str) -> tuple:
    sec = next(i for i in fields_of(Profile) if i.name == section)
    return next(i for i in fields_of(sec.spec.tp) if i.name == name).spec.choices


def _parse_assignment(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ProfileError("flag --set-profile", None, f"expected KEY=VALUE, got {item!r}")
    try:
        raw = _parse_toml(f"v = {text.strip()}", "flag")["v"]
    except ProfileError:
        raw = text.strip()  # a bare word is a string: --set-profile retarget.wink_mode=relaxed
    return key, raw


def apply_overrides(profile: Profile, cli_args: argparse.Namespace | Mapping[str, Any],
                    *, quiet: bool = False) -> Profile:
    """Apply command-line flags over a profile (flags win), logging each change once.

    ``cli_args`` is the argparse namespace (or a dict); attributes that are absent or None were
    not given. Values are validated exactly like profile values.

    Raises:
        ProfileError: a flag's value is invalid for its profile key (source "flag --x").
    """
    get = (cli_args.get if isinstance(cli_args, Mapping)
           else lambda name, default=None: getattr(cli_args, name, default))
    assignments: list[tuple[str, str, Any]] = []
    for f in FLAGS:
        value = get(f.dest, None)
        if value is None:
            continue
        if f.dest == "character":
            value = str(Path(value).expanduser().resolve())
        if f.dest == "mirror":
            flag = "--mirror" if value else "--no-mirror"
        else:
            flag = f.flag
        assignments.append((flag, f.key, value))
    for item in get("profile_set", None) or ():
        key, raw = _parse_assignment(item)
        assignments.append((f"--set-profile {key}", key, raw))
    for flag, key, raw in assignments:
        before = _safe_get(profile, key)
        profile = set_raw(profile, key, raw, source=f"flag {flag}")
        after = get_key(profile, key)
        if after != before and not quiet:
            log.info("flag %s overrides %s = %s", flag.split(" ")[0], key, _show(after))
    return profile


def _safe_get(profile: Profile, key: str) -> Any:
    try:
        return get_key(profile, key)
    except (AttributeError, KeyError):
        return _MISSING


def _show(value: Any) -> str:
    """A value for a log line: TOML-like, strings bare ("model.device = cuda")."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (Path, str)):
        return str(value)
    if dataclasses.is_dataclass(value):
        return _fmt(encode(value)).strip()
    if isinstance(value, tuple):
        value = list(value)
    try:
        return _fmt(value)
    except Exception:  # noqa: BLE001 - anything tomlkit cannot print is shown by repr
        return repr(value)


def profile_path_for(name_or_path: str | Path, profiles_dir: Path | None = None) -> Path:
    """``--profile`` value -> file: a path as given, or a bare NAME -> profiles/NAME.toml."""
    text = str(name_or_path)
    p = Path(text).expanduser()
    if p.suffix == ".toml" or "/" in text or os.sep in text or p.exists():
        return p
    return Path(profiles_dir or PROFILES_DIR) / f"{text}.toml"


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
        for key, value in profile_changes(profile):
            log.info("profile sets %s = %s", key, _show(get_key(profile, key)))
    if character_path is not None and profile.character.image is None:
        image = Path(character_path).expanduser().resolve()
        profile = with_value(profile, "character.image", image)
    return profile, path


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
    profile = with_value(Profile(), "character.image", image)
    text = render_toml(profile, base_dir=out.resolve().parent,
                       header=f"thacam profile for {image.name}, created by `thacam profile init`."
                              "\n\n" + INIT_NOTE)
    _atomic_write_text(out, text)
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


def effective_sources(profile_file: Profile | None, flags: Profile, file_label: str = "profile",
                      ) -> dict[str, str]:
    """Key path -> "profile" / "flag" for the values that are not built-in defaults."""
    defaults = flatten(encode(Profile()))
    from_file = flatten(encode(profile_file)) if profile_file is not None else defaults
    final = flatten(encode(flags))
    out = {}
    for key, value in final.items():
        if from_file.get(key, _MISSING) != value:
            out[key] = "from the command line"
        elif defaults.get(key, _MISSING) != value:
            out[key] = f"from {file_label}"
    return out


# ---------------------------------------------------------------------------------- live tuning

@dataclass(frozen=True)
class TuneEvent:
    """What one key press did. ``action``: calibrate, cycle, gain, save, expression."""

    action: str
    message: str
    key: str | None = None                 # the profile key changed, if any
    preset: ExpressionPreset | None = None
    hotkey: str | None = None


@dataclass(frozen=True)
class _Gain:
    """One tunable gain over one or more settings, each moved by a factor of STEP per press.

    ``keys`` pairs each setting with its base (another key, or None for 0): for a threshold pair
    (jaw_open_min..jaw_open_max) it is the span between them that scales. ``inverse``: the
    settings are spans or ranges, so more gain = smaller values."""

    label: str
    keys: tuple[tuple[str, str | None], ...]
    down: str
    up: str
    inverse: bool = False


class Tuner:
    """Live tuning as pure key handling: ``press(key)`` changes ``self.profile`` and says what
    happened; the preview window routes keys here and shows ``key_help()``.

    Calibration needs the live face: pass ``calibrate``, a callable that captures the neutral pose
    (``Retargeter.calibrate`` on the newest observation) and returns the Calibration, or None
    when there is no face.
    """

    CALIBRATE = "c"
    EYEBROW = "e"
    WINK = "w"
    SAVE = "s"
    GAINS = (
        # A narrower jawOpen span opens the avatar's mouth further for the same jaw movement.
        # (o/O: "m" is the preview window's mirror toggle)
        _Gain("mouth gain", (("retarget.jaw_open_max", "retarget.jaw_open_min"),), "o", "O",
              inverse=True),
        # A narrower start..full span (and a lower adapted peak) shuts the eyes on a smaller blink.
        _Gain("blink gain", (("retarget.blink_full", "retarget.blink_start"),
                             ("retarget.blink_full_max", "retarget.blink_start"),
                             ("retarget.blink_full_fraction", None)), "b", "B", inverse=True),
        # Fewer degrees for a full turn = the avatar's head moves more.
        _Gain("head gain", (("retarget.head_y_range_deg", None),
                            ("retarget.head_x_range_deg", None),
                            ("retarget.neck_z_range_deg", None)), "h", "H", inverse=True),
        _Gain("breathing depth", (("breathing.depth", None),), "r", "R"),
    )
    CYCLES = {EYEBROW: ("eyebrow family", "retarget.eyebrow_family"),
              WINK: ("wink mode", "retarget.wink_mode")}
    STEP = 1.1  # one press = 10 %: fine enough to tune, big enough to see at once

    def __init__(self, profile: Profile, path: Path | str | None = None, *,
                 calibrate: Callable[[], Any] | None = None,
                 on_change: Callable[[Profile], None] | None = None):
        self.profile = profile
        self.path = Path(path) if path is not None else None
        self._calibrate = calibrate
        self._on_change = on_change
        self.dirty = False

    @staticmethod
    def key_help() -> list[tuple[str, str]]:
        """(keys, what they do) for the preview overlay."""
        rows = [(Tuner.CALIBRATE, "calibrate: look straight ahead, relax, press"),
                (Tuner.EYEBROW, "next eyebrow family"),
                (Tuner.WINK, "next wink mode")]
        rows += [(f"{g.down} / {g.up}", f"{g.label} down / up") for g in Tuner.GAINS]
        rows += [("1-9", "expression presets"), (Tuner.SAVE, "save to the profile")]
        return rows

    def press(self, key: str | int) -> TuneEvent | None:
        """Handle one key (a character, or a cv2.waitKey code). None = not a tuning key."""
        if isinstance(key, int):
            if key < 0:
                return None
            key = chr(key & 0xFF)
        if key == self.CALIBRATE:
            return self._do_calibrate()
        if key in self.CYCLES:
            return self._cycle(*self.CYCLES[key])
        for g in self.GAINS:
            if key in (g.down, g.up):
                return self._nudge(g, up=key == g.up)
        if key == self.SAVE:
            path = self.save()
            return TuneEvent("save", f"saved {path}" if path else "no profile file to save to")
        if key in HOTKEYS:
            preset = self.profile.expressions.get(key)
            if preset is None:
                return None
            return TuneEvent("expression", f"expression {key}: {preset.name}", preset=preset,
                             hotkey=key)
        return None

    def set_calibration(self, calibration: Any) -> TuneEvent:
        return self._set("calibration", calibration, "calibration", "calibrated: neutral pose saved"
                         " (press s to keep it)")

    def _do_calibrate(self) -> TuneEvent:
        if self._calibrate is None:
            return TuneEvent("calibrate", "calibration is not available here")
        calibration = self._calibrate()
        if calibration is None:
            return TuneEvent("calibrate", "no face in view: look at the camera and press again")
        return self.set_calibration(calibration)

    def _cycle(self, label: str, key: str) -> TuneEvent:
        info = _field_info(key)
        choices = info.spec.choices
        current = get_key(self.profile, key)
        current = current.value if isinstance(current, enum.Enum) else current
        nxt = choices[(choices.index(current) + 1) % len(choices)]
        value = info.spec.tp(nxt) if info.spec.tp is not None else nxt
        return self._set(key, value, "cycle", f"{label}: {nxt}")

    def _nudge(self, gain: _Gain, *, up: bool) -> TuneEvent:
        factor = self.STEP if up != gain.inverse else 1.0 / self.STEP
        profile = self.profile
        shown = []
        for key, base_key in gain.keys:
            base = float(get_key(self.profile, base_key)) if base_key else 0.0
            info = _field_info(key)
            value = float(get_key(profile, key))
            span = value - base
            if span == 0.0 and factor > 1.0:
                # zero cannot grow by a factor: step to a tenth of the field's range instead
                lo, hi = info.range or (0.0, 1.0)
                span = 0.1 * ((hi if hi is not None else 1.0) - (lo if lo is not None else 0.0))
                new = base + span
            else:
                new = base + span * factor
            new = float(f"{new:.3g}")  # 1.21 in the file, not 1.2100000000000002
            if info.range is not None:
                lo, hi = info.range
                new = min(hi, new) if hi is not None else new
                new = max(lo, new) if lo is not None else new
            if info.spec.kind == "int":
                new = int(round(new))
            try:
                profile = set_raw(profile, key, new, source="tuning", check_files=False)
            except ProfileError as exc:
                return TuneEvent("gain", f"{gain.label}: at its limit ({exc.problem})", key=key)
            shown.append(f"{key} = {_num(new)}")
        direction = "up" if up else "down"
        if profile == self.profile:
            return TuneEvent("gain", f"{gain.label}: at its limit", key=gain.keys[0][0])
        self.profile = profile
        self.dirty = True
        if self._on_change is not None:
            self._on_change(self.profile)
        return TuneEvent("gain", f"{gain.label} {direction}: " + ", ".join(shown),
                         key=gain.keys[0][0])

    def _set(self, key: str, value: Any, action: str, message: str) -> TuneEvent:
        self.profile = with_value(self.profile, key, value)
        self.dirty = True
        if self._on_change is not None:
            self._on_change(self.profile)
        return TuneEvent(action, message, key=key)

    def save(self) -> Path | None:
        """Write the tuned profile back (comments kept). None when the run has no profile file."""
        if self.path is None:
            return None
        save_profile(self.profile, self.path)
        self.dirty = False
        return self.path


# ------------------------------------------------------------------------------------- script

def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m thacam.profile``: regenerate profiles/default.toml from the dataclasses."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--check"]:
        current = DEFAULT_PROFILE.read_text(encoding="utf-8") if DEFAULT_PROFILE.exists() else ""
        ok = current == default_toml()
        print(f"{DEFAULT_PROFILE}: {'current' if ok else 'out of date'}")
        return 0 if ok else 1
    _atomic_write_text(DEFAULT_PROFILE, default_toml())
    print(f"wrote {DEFAULT_PROFILE}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
