"""The settings spine: one field helper, one validator, the generic TOML codec, flags.

No models, no files beyond tmp_path: milliseconds. CI budget: ~1 s.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Literal

import pytest

from thacam import profile as P
from thacam import settings as S
from thacam.settings import codec as C
from thacam.errors import ProfileError, SettingsError
from thacam.settings import Settings, setting


class Speed(str, enum.Enum):
    SLOW = "slow"
    FAST = "fast"


@dataclass(frozen=True)
class Widget:
    """A settings class a future stage might add: no profile code needed for it."""

    rate_hz: float = field(default=1.0, metadata={"help": "no range, but a rate"})
    mode: Literal["a", "b"] = field(default="a", metadata={"help": "choice"})
    speed: Speed = field(default=Speed.SLOW, metadata={"help": "enum"})
    size: tuple[int, int] = field(default=(1, 2), metadata={"help": "pair", "range": (0, 9)})
    seed: int | None = field(default=None, metadata={"help": "optional int"})
    label: str | None = field(default=None, metadata={"help": "optional str"})


def _decode(table: dict) -> Widget:
    return C.decode(Widget, table, file="w.toml", prefix="widget")


def test_generic_layer_reads_types_from_the_dataclass():
    w = _decode({"rate_hz": 2, "mode": "b", "speed": "fast", "size": [3, 4], "seed": 7,
                 "label": ""})
    assert w == Widget(rate_hz=2.0, mode="b", speed=Speed.FAST, size=(3, 4), seed=7, label=None)
    assert isinstance(w.rate_hz, float) and isinstance(w.size, tuple)
    assert C.encode(w) == {"rate_hz": 2.0, "mode": "b", "speed": "fast", "size": [3, 4],
                           "seed": 7, "label": ""}
    assert "seed" not in C.encode(Widget())  # no TOML null: an unset optional is absent
    for table, message in [
            ({"rate_hz": -1.0}, "widget.rate_hz: expected a number >= 0 (a rate_hz cannot be "
                                "negative), got -1"),
            ({"speed": "medium"}, "widget.speed: expected one of 'slow', 'fast', got the string "
                                  "'medium'"),
            ({"size": [1, 10]}, "widget.size[1]: expected an integer in [0, 9], got 10"),
            ({"seed": 1.5}, "widget.seed: expected an integer, got 1.5")]:
        with pytest.raises(ProfileError) as info:
            _decode(table)
        assert str(info.value) == f"w.toml: {message}"


@dataclass(frozen=True)
class Gadget(Settings):
    """A stage's settings written the thacam way."""

    level: float = setting(0.5, 0.0, 1.0, help="how much", live=True, flag="--level")
    low: int = setting(1, 0, 10, help="low end")
    high: int = setting(5, 0, 10, help="high end")
    colour: tuple[int, int, int] = setting((1, 2, 3), 0, 255, help="R, G, B")
    kind: str = setting("x", choices=("x", "y"), help="which")

    def check(self) -> None:
        if self.low >= self.high:
            raise self._bad("high", f"must be above low ({self.low})")


def test_one_validator_for_python_and_toml_with_the_same_words():
    assert Gadget(colour=[4, 5, 6]).colour == (4, 5, 6)          # TOML lists become tuples
    assert isinstance(Gadget(level=1).level, float)
    cases = [({"level": 2.0}, "level", "expected a number in [0, 1], got 2"),
             ({"level": float("nan")}, "level", "expected a finite number, got nan"),
             ({"level": True}, "level", "expected a number in [0, 1], got true"),
             ({"low": 1.5}, "low", "expected an integer in [0, 10], got 1.5"),
             ({"colour": (1, 2)}, "colour",
              "expected a list of 3 values, each an integer in [0, 255], got 2 values"),
             ({"colour": (1, 2, 300)}, "colour[2]", "expected an integer in [0, 255], got 300"),
             ({"kind": "z"}, "kind", "expected one of 'x', 'y', got the string 'z'"),
             ({"low": 6}, "high", "must be above low (6)")]
    for kwargs, name, problem in cases:
        with pytest.raises(SettingsError) as info:
            Gadget(**kwargs)
        assert (info.value.owner, info.value.field, info.value.problem) == ("Gadget", name,
                                                                            problem)
        assert isinstance(info.value, ValueError)
        # the codec reports the same problem against the file and the key path
        table = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
        with pytest.raises(ProfileError) as toml:
            C.decode(Gadget, table, file="g.toml", prefix="gadget")
        assert str(toml.value) == f"g.toml: gadget.{name}: {problem}"


def test_metadata_reaches_flags_help_and_live():
    (flag,) = S.flags_of(Gadget)
    assert (flag.flag, flag.key, flag.dest) == ("--level", "level", "level")
    info = S.field_info(Gadget, "level")
    assert info.live and not S.field_info(Gadget, "low").live
    assert S.field_doc(info) == "how much (range 0 .. 1)"
    text = C.render_toml(Gadget())
    assert "# how much (range 0 .. 1)\nlevel = 0.5" in text
    assert C.decode(Gadget, C.parse_toml(text, "x"), file="x") == Gadget()


def test_a_flag_may_have_its_own_help_and_the_profile_keeps_the_settings():
    @dataclass(frozen=True)
    class Lamp(Settings):
        image: str = setting("", flag="--lamp", help="The lamp; empty = give it with --lamp.",
                             cli_help="The lamp to light.")
        watts: int = setting(40, 1, 100, flag="--watts", help="power", cli_help="its power")

    image, watts = S.fields_of(Lamp)
    assert S.field_doc(image) == "The lamp; empty = give it with --lamp."
    assert S.field_doc(image, cli=True) == "The lamp to light."
    assert S.field_doc(watts, cli=True) == "its power (range 1 .. 100)"   # the range still shows
    assert "# The lamp; empty = give it with --lamp." in C.render_toml(Lamp())
    # without one, the flag shows the profile's help
    assert S.field_doc(S.field_info(Gadget, "level"), cli=True) == "how much (range 0 .. 1)"
    with pytest.raises(TypeError, match="needs flag="):
        setting(1, help="no flag", cli_help="shown nowhere")


def test_a_choice_flag_leaves_its_choices_to_argparse_and_the_profile_lists_them():
    @dataclass(frozen=True)
    class Lamp(Settings):
        colour: str = setting("warm", choices=("warm", "cold"), flag="--colour", help="light")

    (colour,) = S.fields_of(Lamp)
    assert S.field_doc(colour) == "light (one of: warm, cold)"
    assert S.field_doc(colour, cli=True) == "light"     # --help shows {warm,cold} already
    assert "# light (one of: warm, cold)\ncolour = " in C.render_toml(Lamp())


def test_key_paths_set_and_changes():
    profile = P.Profile()
    tuned = C.set_raw(profile, "retarget.jaw_open_max", 0.3, source="test")
    assert tuned.retarget.jaw_open_max == 0.3 and S.get_key(tuned, "retarget.jaw_open_max") == 0.3
    assert C.changes(tuned, profile) == [("retarget.jaw_open_max", 0.3)]
    with pytest.raises(ProfileError, match="did you mean 'jaw_open_max'"):
        C.set_raw(profile, "retarget.jaw_open_mx", 0.3, source="test")
    with pytest.raises(KeyError):
        S.field_info(P.Profile, "retarget.nope")


def _profile_classes() -> list[type]:
    out, todo = [], [P.Profile]
    while todo:
        cls = todo.pop()
        out.append(cls)
        for info in S.fields_of(cls):
            sub = info.spec.item if info.spec.kind == "map" else info.spec
            if sub is not None and sub.kind == "table":
                todo.append(sub.tp)
    return out


def test_every_stage_setting_is_declared_once_with_help_and_bounds():
    for cls in _profile_classes():
        assert issubclass(cls, Settings), f"{cls.__name__} does not use thacam.settings"
        for f in dataclasses.fields(cls):
            meta = f.metadata
            assert "help" in meta, f"{cls.__name__}.{f.name} is not declared with setting()"
            info = next((i for i in S._all_fields(cls) if i.name == f.name))
            numeric = info.spec.kind in ("int", "float") or (
                info.spec.kind == "tuple" and info.spec.item.kind in ("int", "float"))
            if numeric and f.name != "seed":
                assert info.range is not None, f"{cls.__name__}.{f.name} has no range"
    # the live-tunable ones are exactly those the running stages can take
    live = {f.key for f in _live_keys()}
    assert {k.split(".")[0] for k in live} == {"retarget", "smoothing", "breathing", "idle",
                                               "camera", "lipsync"}


@dataclass(frozen=True)
class _Key:
    key: str


def _live_keys(cls=P.Profile, prefix=""):
    for info in S.fields_of(cls):
        key = f"{prefix}.{info.name}" if prefix else info.name
        if info.spec.kind == "table":
            yield from _live_keys(info.spec.tp, key)
        elif info.live:
            yield _Key(key)
