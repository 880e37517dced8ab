"""The 45 THA3 pose parameters, named once.

Everything else in thacam reads and writes the pose by name (``Param.EYE_WINK_LEFT``,
``pose["head_y"]``) or by group slice (``EYEBROW``, ``FACE``, ``ROTATION``); nothing indexes it by
a bare number. The order is THA3's (``tha3/poser/modes/pose_parameters.py``), which the networks
were trained on: eyebrow 0-12 feed the eyebrow morphing combiner, face 12-39 the face morpher,
rotation 39-45 the rotator and the editor.

Must not import torch, cv2 or mediapipe.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from .errors import PoseValueError

__all__ = [
    "Param", "ParamSpec", "PARAMS", "NAMES", "NUM_PARAMS", "EYEBROW", "FACE", "ROTATION",
    "Pose", "PoseValueError", "parse_assignments",
]


class Group(str, enum.Enum):
    EYEBROW = "eyebrow"
    FACE = "face"
    ROTATION = "rotation"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    group: Group
    low: float
    high: float
    # Where the parameter rests when nothing drives it (THA3 gives mouth_aaa a default of 1.0 in
    # its GUI slider table, but a neutral face has a closed mouth, so thacam rests everything at 0).
    neutral: float = 0.0

    def clamp(self, value: float) -> float:
        return min(self.high, max(self.low, value))


# (base name, arity, range). Arity 2 means a _left/_right pair, left first, as in THA3.
_TABLE: list[tuple[str, int, tuple[float, float]]] = [
    ("eyebrow_troubled", 2, (0.0, 1.0)),
    ("eyebrow_angry", 2, (0.0, 1.0)),
    ("eyebrow_lowered", 2, (0.0, 1.0)),
    ("eyebrow_raised", 2, (0.0, 1.0)),
    ("eyebrow_happy", 2, (0.0, 1.0)),
    ("eyebrow_serious", 2, (0.0, 1.0)),
    ("eye_wink", 2, (0.0, 1.0)),
    ("eye_happy_wink", 2, (0.0, 1.0)),
    ("eye_surprised", 2, (0.0, 1.0)),
    ("eye_relaxed", 2, (0.0, 1.0)),
    ("eye_unimpressed", 2, (0.0, 1.0)),
    ("eye_raised_lower_eyelid", 2, (0.0, 1.0)),
    ("iris_small", 2, (0.0, 1.0)),
    ("mouth_aaa", 1, (0.0, 1.0)),
    ("mouth_iii", 1, (0.0, 1.0)),
    ("mouth_uuu", 1, (0.0, 1.0)),
    ("mouth_eee", 1, (0.0, 1.0)),
    ("mouth_ooo", 1, (0.0, 1.0)),
    ("mouth_delta", 1, (0.0, 1.0)),
    ("mouth_lowered_corner", 2, (0.0, 1.0)),
    ("mouth_raised_corner", 2, (0.0, 1.0)),
    ("mouth_smirk", 1, (0.0, 1.0)),
    ("iris_rotation_x", 1, (-1.0, 1.0)),
    ("iris_rotation_y", 1, (-1.0, 1.0)),
    ("head_x", 1, (-1.0, 1.0)),
    ("head_y", 1, (-1.0, 1.0)),
    ("neck_z", 1, (-1.0, 1.0)),
    ("body_y", 1, (-1.0, 1.0)),
    ("body_z", 1, (-1.0, 1.0)),
    ("breathing", 1, (0.0, 1.0)),
]

# Group boundaries, as THA3's NUM_EYEBROW_PARAMS = 12, NUM_FACE_PARAMS = 27, NUM_ROTATION_PARAMS = 6.
EYEBROW = slice(0, 12)
FACE = slice(12, 39)
ROTATION = slice(39, 45)


def _build() -> list[ParamSpec]:
    specs: list[ParamSpec] = []
    for base, arity, (low, high) in _TABLE:
        names = [f"{base}_left", f"{base}_right"] if arity == 2 else [base]
        for name in names:
            i = len(specs)
            group = (Group.EYEBROW if i < EYEBROW.stop else
                     Group.FACE if i < FACE.stop else Group.ROTATION)
            specs.append(ParamSpec(name, group, low, high))
    return specs


PARAMS: tuple[ParamSpec, ...] = tuple(_build())
NAMES: tuple[str, ...] = tuple(p.name for p in PARAMS)
NUM_PARAMS = len(PARAMS)
assert NUM_PARAMS == 45 and len(set(NAMES)) == 45

# Param.HEAD_Y == 40 and so on: the one place where a number stands for a parameter.
Param = enum.IntEnum("Param", {n.upper(): i for i, n in enumerate(NAMES)})
_INDEX = {n: i for i, n in enumerate(NAMES)}
LOW = np.array([p.low for p in PARAMS], dtype=np.float32)
HIGH = np.array([p.high for p in PARAMS], dtype=np.float32)


def index(name: str) -> int:
    try:
        return _INDEX[name]
    except KeyError:
        import difflib
        close = difflib.get_close_matches(name, NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PoseValueError(
            f"unknown pose parameter {name!r}{hint}; valid names: {', '.join(NAMES)}") from None


class Pose:
    """A 45-float pose, addressed by name. Cheap to copy; the array is float32."""

    __slots__ = ("values",)

    def __init__(self, values: Iterable[float] | np.ndarray | None = None):
        if values is None:
            self.values = np.array([p.neutral for p in PARAMS], dtype=np.float32)
        else:
            arr = np.asarray(values, dtype=np.float32).reshape(-1).copy()
            if arr.shape != (NUM_PARAMS,):
                raise PoseValueError(f"a pose has {NUM_PARAMS} values, got {arr.size}")
            self.values = arr

    @classmethod
    def neutral(cls) -> "Pose":
        return cls()

    @classmethod
    def from_dict(cls, mapping: Mapping[str, float], *, strict: bool = True) -> "Pose":
        pose = cls()
        for name, value in mapping.items():
            if strict:
                pose.set_checked(name, value)
            else:
                pose[name] = value
        return pose

    def __getitem__(self, name: str) -> float:
        return float(self.values[index(name)])

    def __setitem__(self, name: str, value: float) -> None:
        self.values[index(name)] = value

    def set_checked(self, name: str, value: float) -> None:
        spec = PARAMS[index(name)]
        if not (spec.low <= value <= spec.high):  # also rejects NaN
            raise PoseValueError(
                f"{name}={value} is out of range; {name} takes values in [{spec.low:g}, {spec.high:g}]")
        self[name] = value

    def clamped(self) -> "Pose":
        return Pose(np.clip(self.values, LOW, HIGH))

    def copy(self) -> "Pose":
        return Pose(self.values)

    def to_dict(self, ndigits: int | None = 5) -> dict[str, float]:
        if ndigits is None:
            return {n: float(v) for n, v in zip(NAMES, self.values)}
        return {n: round(float(v), ndigits) for n, v in zip(NAMES, self.values)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pose) and np.array_equal(self.values, other.values)

    def __repr__(self) -> str:
        nonzero = {n: round(float(v), 3) for n, v in zip(NAMES, self.values) if v != 0}
        return f"Pose({nonzero})"


def parse_assignments(items: Iterable[str]) -> Pose:
    """Parse ``NAME=VALUE`` strings (the CLI's ``--set``) into a checked Pose."""
    pose = Pose()
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise PoseValueError(f"expected NAME=VALUE, got {item!r}")
        try:
            value = float(text)
        except ValueError:
            raise PoseValueError(f"{name.strip()}: {text!r} is not a number") from None
        pose.set_checked(name.strip(), value)
    return pose
