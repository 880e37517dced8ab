"""Settings, declared once: one field helper and one validator (the TOML codec is codec.py).

Every stage owns a frozen dataclass of its settings (``RetargetSettings`` in retarget.py,
``ObsSettings`` in obs.py, ...). Each field is declared with :func:`setting`, which records its
default, range or choices, help text, whether it may change while thacam runs (``live``) and,
for the few that have one, its command-line flag (and, where the profile's wording would read
oddly after a flag, the flag's own help). Everything else reads that one declaration:

* :class:`Settings` (the base class) checks every field on construction with :func:`check_field`
  and then the class's own cross-field rules (``check()``); errors are ``SettingsError`` naming
  the class and the field;
* the TOML codec (thacam.settings.codec: ``decode``, ``encode``, ``render_toml``) loads,
  validates, saves and documents any tree of such dataclasses (profiles/default.toml is
  generated from it);
* the CLI builds its profile-backed flags from :func:`flags_of`, and the control panel its
  sliders from the same ranges and help.

Types a field may have: bool, int, float, str, Path, a Literal or Enum (choices), a tuple of
numbers (fixed length, or named items with ``names=``), a mapping (str or int keys) and a nested
settings dataclass; ``X | None`` for optional values (TOML has no null: an empty string for str and
Path, an absent key otherwise).

Must not import any stage or anything heavy (tomlkit only when writing).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import enum
import functools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from ..errors import SettingsError

__all__ = [
    "setting", "Settings", "FieldInfo", "Spec", "fields_of", "field_info", "check_field",
    "get_key", "with_value", "flags_of", "Flag", "describe", "field_doc", "SECRET_KEYS",
    "PASSWORD_ENV", "MISSING",
]

MISSING = dataclasses.MISSING
# Any of these key names anywhere in a settings file is refused: a secret in a file that people
# share with their character image is a leak waiting to happen.
SECRET_KEYS = frozenset({"password", "passwd", "obs_password", "secret", "token"})
# ... they come from the environment instead; this is the only one thacam has.
PASSWORD_ENV = "THACAM_OBS_PASSWORD"


def setting(default: Any = MISSING, lo: float | None = None, hi: float | None = None, *,
            help: str, choices: Sequence[Any] | None = None, live: bool = False,
            flag: str | None = None, metavar: str | None = None, cli_help: str | None = None,
            names: Sequence[str] | None = None, keys: Sequence[str] | None = None,
            must_exist: bool = False, pattern: str | None = None, profile: bool = True,
            factory: Any = MISSING) -> Any:
    """One setting: its default (or ``factory``), range ``[lo, hi]`` (either may be None for an
    open end), ``choices`` for a str, ``help`` (shown in profiles, ``--help`` and the panel),
    ``live`` = may change while running, ``flag`` = its command-line option, ``cli_help`` = that
    option's help where ``help`` speaks of the profile, ``names`` = the items of a tuple written
    as a named table, ``keys`` = the keys a mapping allows,
    ``must_exist`` = a path that must exist when a profile is loaded, ``profile=False`` = not
    read from or written to profiles (set by thacam itself)."""
    if cli_help is not None and flag is None:
        raise TypeError("setting(cli_help=...) needs flag=: only a flag shows it")
    meta: dict[str, Any] = {"help": help, "live": live}
    if lo is not None or hi is not None:
        meta["range"] = (lo, hi)
    for key, value in (("choices", choices), ("flag", flag), ("metavar", metavar),
                       ("cli_help", cli_help), ("names", names), ("keys", keys),
                       ("pattern", pattern)):
        if value is not None:
            meta[key] = tuple(value) if isinstance(value, (list, tuple)) else value
    if must_exist:
        meta["must_exist"] = True
    if not profile:
        meta["profile"] = False
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# ------------------------------------------------------------------------------ field specs

@dataclass(frozen=True)
class Spec:
    """What a field holds, reduced to the few shapes TOML can express."""

    kind: str                      # bool int float str path choice tuple table map
    tp: Any = None                 # dataclass class (table), enum class (choice) or None
    choices: tuple = ()
    item: "Spec | None" = None     # tuple element / map value
    length: int | None = None      # fixed tuple length
    key_int: bool = False          # map keys are ints (TOML keys are always strings)
    optional: bool = False


@dataclass(frozen=True)
class FieldInfo:
    name: str
    spec: Spec
    default: Any
    range: tuple[float | None, float | None] | None
    help: str
    meta: Mapping[str, Any]
    required: bool = False

    @property
    def live(self) -> bool:
        return bool(self.meta.get("live"))

    @property
    def in_profile(self) -> bool:
        return self.meta.get("profile", True) is not False and self.name not in SECRET_KEYS


def _spec_of(tp: Any, meta: Mapping[str, Any], where: str) -> Spec:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            inner = _spec_of(rest[0], meta, where)
            if inner.kind in ("table", "map"):
                raise TypeError(f"{where}: an optional table cannot be a setting")
            return dataclasses.replace(inner, optional=True)
        raise TypeError(f"{where}: union type {tp} cannot be a setting")
    if origin is Literal:
        return Spec("choice", choices=tuple(args))
    if tp is bool:
        return Spec("bool")
    if tp is int:
        return Spec("int")
    if tp is float:
        return Spec("float")
    if tp is str:
        if meta.get("choices"):
            return Spec("choice", choices=tuple(meta["choices"]))
        return Spec("str")
    if isinstance(tp, type) and issubclass(tp, Path):
        return Spec("path")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return Spec("choice", tp=tp, choices=tuple(m.value for m in tp))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return Spec("table", tp=tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return Spec("tuple", item=_spec_of(args[0], meta, where))
        if args and all(a is args[0] for a in args):
            return Spec("tuple", item=_spec_of(args[0], meta, where), length=len(args))
        if args and all(a in (int, float) for a in args):
            return Spec("tuple", item=Spec("float"), length=len(args))
        raise TypeError(f"{where}: tuple type {tp} cannot be a setting")
    if origin in (dict, Mapping, collections.abc.Mapping) or tp is dict:
        if len(args) != 2 or args[0] not in (str, int):
            raise TypeError(f"{where}: a mapping setting needs str or int keys, got {tp}")
        return Spec("map", item=_spec_of(args[1], {}, where), key_int=args[0] is int)
    raise TypeError(f"{where}: type {tp!r} cannot be a setting; use float, int, bool, str, "
                    "Path, a Literal, a tuple of numbers, a dict or a nested dataclass")


@functools.lru_cache(maxsize=None)
def _all_fields(cls: type) -> tuple[FieldInfo, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        required = False
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default, required = None, True  # e.g. a preset's name: the table must give it
        rng = f.metadata.get("range")
        spec = _spec_of(hints[f.name], f.metadata, f"{cls.__name__}.{f.name}")
        out.append(FieldInfo(f.name, spec, default, tuple(rng) if rng is not None else None,
                             str(f.metadata.get("help", "")).strip(), f.metadata, required))
    return tuple(out)


def fields_of(cls: type) -> tuple[FieldInfo, ...]:
    """The fields of a settings dataclass that profiles read and write (secrets never)."""
    return tuple(i for i in _all_fields(cls) if i.in_profile)


def field_info(root: type, key: str) -> FieldInfo:
    """The FieldInfo of a dotted key through nested settings classes (not through mappings).

    Raises:
        KeyError: no such setting.
    """
    cls: Any = root
    info = None
    for part in key.split("."):
        if cls is None:
            raise KeyError(key)
        info = next((i for i in fields_of(cls) if i.name == part), None)
        if info is None:
            raise KeyError(key)
        cls = info.spec.tp if info.spec.kind == "table" else None
    assert info is not None
    return info


# ------------------------------------------------------------------------------- checking

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
        return _num(v) if isinstance(v, float) and math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, Mapping):
        return "a table"
    return type(v).__name__


def describe(spec: Spec, rng: tuple | None) -> str:
    """What a field expects, in words ("an integer in [1, 240]")."""
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
        inner = describe(spec.item, rng)
        n = f"{spec.length} " if spec.length else ""
        return f"a list of {n}values, each {inner}"
    return "a table"


# A numeric field without a range whose name says it is a rate, time or frequency can still not
# be negative; a negative breathing rate would run the cycle backwards, not stop it.
_NONNEG = re.compile(r"(rate|fps|hz|period|fade|duration|interval|delay|timeout|_s$|_ms$|_min$)")


class _Bad(Exception):
    """A value problem found below a field (``where`` is "" or "[2]" or ".name")."""

    def __init__(self, problem: str, where: str = ""):
        self.problem, self.where = problem, where


def _check_scalar(v: Any, spec: Spec, info: FieldInfo) -> Any:
    """One TOML- or Python-typed scalar -> the field's value; raises _Bad with the problem."""
    def bad(problem: str | None = None) -> _Bad:
        return _Bad(problem or f"expected {describe(spec, info.range)}, got {_describe_value(v)}")

    k = spec.kind
    if v is None and spec.optional:
        return None
    if k == "bool":
        if not isinstance(v, bool):
            raise bad()
        return v
    if k in ("int", "float"):
        if isinstance(v, bool) or not isinstance(v, (int, float)) and not _is_np_number(v):
            raise bad()
        if k == "int" and (isinstance(v, float) or (_is_np_number(v) and int(v) != v)):
            raise bad()
        if not math.isfinite(v):
            raise bad(f"expected a finite number, got {_describe_value(float(v))}")
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
        raw = v.value if isinstance(v, enum.Enum) else v
        if not isinstance(raw, str) or raw not in spec.choices:
            close = difflib.get_close_matches(str(raw), [str(c) for c in spec.choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close and isinstance(raw, str) else ""
            raise bad(f"expected {describe(spec, None)}, got {_describe_value(raw)}{hint}")
        return spec.tp(raw) if spec.tp is not None else raw
    if k == "path":
        if isinstance(v, str):
            if v == "":
                if spec.optional:
                    return None
                raise bad("expected a file path, got an empty string")
            return Path(v)
        if not isinstance(v, Path):
            raise bad()
        return v
    raise AssertionError(k)


def _is_np_number(v: Any) -> bool:
    # numpy scalars (a calibration's medians) are numbers too; checked by name so numpy is not
    # imported here.
    return type(v).__module__ == "numpy" and hasattr(v, "dtype") and v.dtype.kind in "iuf"


def _check_value(v: Any, spec: Spec, info: FieldInfo) -> Any:
    """A Python value -> the field's value (lists become tuples); raises _Bad."""
    if spec.kind == "table":
        if not isinstance(v, spec.tp):
            raise _Bad(f"expected {spec.tp.__name__}, got {type(v).__name__}")
        return v
    if spec.kind == "tuple":
        if not isinstance(v, (list, tuple)) or (spec.length is not None and len(v) != spec.length):
            got = f"{len(v)} values" if isinstance(v, (list, tuple)) else _describe_value(v)
            raise _Bad(f"expected {describe(spec, info.range)}, got {got}")
        out = []
        for i, x in enumerate(v):
            try:
                out.append(_check_scalar(x, spec.item, info))
            except _Bad as exc:
                names = info.meta.get("names")
                raise _Bad(exc.problem, f".{names[i]}" if names else f"[{i}]") from None
        return tuple(out)
    if spec.kind == "map":
        if not isinstance(v, Mapping):
            raise _Bad(f"expected a table, got {_describe_value(v)}")
        item_info = dataclasses.replace(info, meta={}, range=None)
        out_map = {}
        for key, x in v.items():
            try:
                out_map[key] = _check_value(x, spec.item, item_info)
            except _Bad as exc:
                raise _Bad(exc.problem, f".{key}{exc.where}") from None
        return out_map
    return _check_scalar(v, spec, info)


def check_field(owner: str, info: FieldInfo, value: Any) -> Any:
    """The one validator: ``value`` for field ``info`` -> the value to keep (lists become tuples,
    ints in float fields floats). Raises SettingsError(owner, field, problem)."""
    try:
        return _check_value(value, info.spec, info)
    except _Bad as exc:
        raise SettingsError(owner, info.name + exc.where, exc.problem) from None


class Settings:
    """Base of every stage's settings dataclass (use with ``@dataclass(frozen=True)``).

    Construction checks every field against its declaration (:func:`check_field`), turns TOML's
    lists into tuples, then runs the class's ``check()`` for rules between fields. A settings
    object that exists is valid.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self):
        """Check every field and the cross-field rules; returns self. Raises SettingsError."""
        owner = type(self).__name__
        for info in _all_fields(type(self)):
            value = getattr(self, info.name)
            checked = check_field(owner, info, value)
            if checked is not value:
                object.__setattr__(self, info.name, checked)
        self.check()
        return self

    def check(self) -> None:
        """Rules between fields (low below high, ...): raise SettingsError naming the field."""

    def _bad(self, field_name: str, problem: str) -> SettingsError:
        return SettingsError(type(self).__name__, field_name, problem)


def field_doc(info: FieldInfo, *, cli: bool = False) -> str:
    """A field's help with its choices or range appended (profile comments; ``cli``: its flag's
    --help, which prefers the setting's ``cli_help``)."""
    text = (info.meta.get("cli_help") if cli else None) or info.help or "(not documented yet)"
    spec = info.spec
    extra = []
    # argparse already prints a choice flag's {a,b,c}: listing them again only adds noise
    if spec.kind == "choice" and not cli and not all(str(c) in text for c in spec.choices):
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


# ------------------------------------------------------------------------------ key paths

def get_key(tree: Any, key: str) -> Any:
    node = tree
    for part in key.split("."):
        node = node[part] if isinstance(node, Mapping) else getattr(node, part)
    return node


def with_value(obj: Any, key: str, value: Any) -> Any:
    """A copy of a (frozen) settings tree with ``key`` (dotted path) set to ``value``
    (validated by the settings class it lands in)."""
    head, _, rest = key.partition(".")
    if isinstance(obj, Mapping):
        new = dict(obj)
        new[head] = with_value(obj[head], rest, value) if rest else value
        return new
    if rest:
        return dataclasses.replace(obj, **{head: with_value(getattr(obj, head), rest, value)})
    return dataclasses.replace(obj, **{head: value})


# ----------------------------------------------------------------------------------- flags

@dataclass(frozen=True)
class Flag:
    """A command-line option that sets one setting (declared with ``setting(flag=...)``)."""

    flag: str           # "--device"
    key: str            # "model.device"
    info: FieldInfo

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def flags_of(root: type, prefix: str = "") -> tuple[Flag, ...]:
    """Every flag declared anywhere in a settings tree, in declaration order."""
    out: list[Flag] = []
    for info in fields_of(root):
        key = f"{prefix}.{info.name}" if prefix else info.name
        if info.meta.get("flag"):
            out.append(Flag(info.meta["flag"], key, info))
        if info.spec.kind == "table":
            out.extend(flags_of(info.spec.tp, key))
    return tuple(out)
