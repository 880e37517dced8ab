"""Expression fidelity: does the avatar do what the face does? Measured against landmark geometry.

The truth here comes from MediaPipe's landmark positions only, never from the blendshapes that
retarget reads, so it can catch retarget's mistakes (the way the blink tests use the eye-aspect
ratio). Retarget must not import this module.

* lip gap: |13 - 14| / |78 - 308| (inner lips over mouth width); clearly open >= 0.35, clearly
  shut <= 0.02;
* brow raise: mean distance of brow points 105 / 334 to their eye's corner midpoint (33,133 /
  362,263; a blink does not move the corners) over |33 - 263|, divided by the clip's median;
  clearly raised >= 1.10, neutral <= 1.02;
* eye-aspect ratio per eye; shut when the mean is below 0.4 x the clip's median, clearly open
  when both are at least 0.75 x their medians.

Avatar side: the mouth is the largest vowel, the brow the larger eyebrow_raised, the eye the
strongest closing shape. Pure numpy; ``avatar_poses`` runs the stages as `thacam track` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from .pose import Pose
from .tracking import FaceObservation

if TYPE_CHECKING:
    from .profile import Profile

__all__ = ["Truth", "Figures", "truth", "figures", "pooled", "avatar_poses", "VOWELS", "mouth",
           "brow", "closure", "rank_correlation"]

VOWELS = ("mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee", "mouth_ooo")

# Written out here rather than taken from tracking.py so the truth stays independent.
_EAR_RIGHT = (33, 160, 158, 133, 153, 144)
_EAR_LEFT = (263, 387, 385, 362, 380, 373)

LIP_OPEN, LIP_SHUT = 0.35, 0.02
BROW_RAISED, BROW_NEUTRAL = 1.10, 1.02
MOUTH_WINDOW, BROW_WINDOW, BLINK_WINDOW = 2, 3, 4


def _px(o: FaceObservation) -> np.ndarray:
    w, h = o.image_size
    return o.landmarks[:, :2].astype(np.float64) * np.array([w, h], np.float64)


def lip_gap(o: FaceObservation) -> float:
    p = _px(o)
    return float(np.linalg.norm(p[13] - p[14]) / np.linalg.norm(p[78] - p[308]))


def brow_height(o: FaceObservation) -> float:
    p = _px(o)
    right = np.linalg.norm(p[105] - (p[33] + p[133]) / 2)
    left = np.linalg.norm(p[334] - (p[362] + p[263]) / 2)
    return float((right + left) / 2 / np.linalg.norm(p[33] - p[263]))


def eye_aspect(o: FaceObservation, idx: tuple[int, ...]) -> float:
    p = _px(o)[list(idx)]
    vertical = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
    return float(vertical / (2.0 * np.linalg.norm(p[0] - p[3])))


def mouth(p: Pose) -> float:
    return max(p[n] for n in VOWELS)


def brow(p: Pose) -> float:
    return max(p["eyebrow_raised_left"], p["eyebrow_raised_right"])


def closure(p: Pose, side: str) -> float:
    return max(p[f"eye_wink_{side}"], p[f"eye_happy_wink_{side}"], p[f"eye_relaxed_{side}"])


@dataclass(frozen=True)
class Truth:
    """Per frame (NaN without a face): lip gap, brow raise (over the clip's median), eye
    aspect ratios (left, right)."""

    lip_gap: np.ndarray
    brow_raise: np.ndarray
    ear_left: np.ndarray
    ear_right: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.lip_gap)

    @property
    def eyes_shut(self) -> np.ndarray:
        mean = (self.ear_left + self.ear_right) / 2
        return self.valid & (mean < 0.4 * np.nanmedian(mean))

    @property
    def eyes_open(self) -> np.ndarray:
        return (self.valid & (self.ear_left >= 0.75 * np.nanmedian(self.ear_left))
                & (self.ear_right >= 0.75 * np.nanmedian(self.ear_right)))


def truth(observations: Sequence[FaceObservation | None]) -> Truth:
    def per_frame(f, *args) -> np.ndarray:
        return np.array([f(o, *args) if o is not None else np.nan for o in observations])

    brows = per_frame(brow_height)
    return Truth(per_frame(lip_gap), brows / np.nanmedian(brows),
                 per_frame(eye_aspect, _EAR_LEFT), per_frame(eye_aspect, _EAR_RIGHT))


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); NaN when either side is constant."""
    def ranks(x: np.ndarray) -> np.ndarray:
        _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)
        return (ends - (counts + 1) / 2.0)[inverse]
    ra, rb = ranks(np.asarray(a, np.float64)), ranks(np.asarray(b, np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _window_max(x: np.ndarray, i: int, k: int) -> float:
    w = x[max(0, i - k):i + k + 1]
    return float(np.nanmax(w)) if np.any(~np.isnan(w)) else float("nan")


def _recall(events: np.ndarray, avatar: np.ndarray, k: int, level: float) -> tuple[float, int]:
    idx = np.flatnonzero(events)
    if not idx.size:
        return float("nan"), 0
    return float(np.mean([_window_max(avatar, i, k) >= level for i in idx])), int(idx.size)


def _rate(frames: np.ndarray, avatar: np.ndarray, level: float) -> tuple[float, int]:
    n = int(frames.sum())
    return (float(np.mean(avatar[frames] > level)) if n else float("nan")), n


@dataclass(frozen=True)
class Figures:
    """The issue's measures for one clip; each rate with the number of frames it is over."""

    mouth_recall: float
    mouth_open_frames: int
    mouth_phantom: float
    mouth_shut_frames: int
    mouth_rank: float
    brow_recall: float
    brow_raised_frames: int
    brow_phantom: float
    brow_neutral_frames: int
    blink_recall: float
    blink_shut_frames: int
    blink_phantom: float
    blink_open_frames: int


def figures(observations: Sequence[FaceObservation | None],
            poses: Sequence[Pose | None]) -> Figures:
    """Compare avatar poses (one per observation; None = no face) with the geometry truth.

    Mouth: lips clearly open -> largest vowel >= 0.3 within +-2 frames (recall); clearly shut ->
    largest vowel > 0.15 (phantom); Spearman rank correlation of lip gap and largest vowel.
    Brows: raised -> eyebrow_raised >= 0.3 within +-3 frames; neutral -> > 0.2 (phantom).
    Blinks: eyes shut -> both sides >= 0.8 within +-4 frames; clearly open -> any side >= 0.5.
    """
    t = truth(observations)

    def avatar(f) -> np.ndarray:
        return np.array([f(p) if p is not None else np.nan for p in poses])

    m, b = avatar(mouth), avatar(brow)
    left, right = avatar(lambda p: closure(p, "left")), avatar(lambda p: closure(p, "right"))
    ok = t.valid & ~np.isnan(m)
    return Figures(
        *_recall(ok & (t.lip_gap >= LIP_OPEN), m, MOUTH_WINDOW, 0.3),
        *_rate(ok & (t.lip_gap <= LIP_SHUT), m, 0.15),
        rank_correlation(t.lip_gap[ok], m[ok]),
        *_recall(ok & (t.brow_raise >= BROW_RAISED), b, BROW_WINDOW, 0.3),
        *_rate(ok & (t.brow_raise <= BROW_NEUTRAL), b, 0.2),
        *_blink_recall(ok & t.eyes_shut, left, right),
        # the blink tests' rule: an open eye fails at closure >= 0.5
        *_rate(ok & t.eyes_open, np.maximum(left, right), np.nextafter(0.5, 0.0)))


def pooled(rows: Iterable[Figures], rate: str, frames: str | None) -> tuple[float, int]:
    """A rate over several clips weighted by the frames it is over (as if one long clip), with
    that count; ``frames`` None (the rank correlation): the mean over clips, and their number."""
    rows = [r for r in rows if not np.isnan(getattr(r, rate))]
    if frames is None:
        vals = [getattr(r, rate) for r in rows]
        return (float(np.mean(vals)) if vals else float("nan")), len(vals)
    n = sum(getattr(r, frames) for r in rows)
    return (sum(getattr(r, rate) * getattr(r, frames) for r in rows) / n if n
            else float("nan")), n


def _blink_recall(shut: np.ndarray, left: np.ndarray,
                  right: np.ndarray) -> tuple[float, int]:
    idx = np.flatnonzero(shut)
    if not idx.size:
        return float("nan"), 0
    return float(np.mean([min(_window_max(left, i, BLINK_WINDOW),
                              _window_max(right, i, BLINK_WINDOW)) >= 0.8 for i in idx])), \
        int(idx.size)


def avatar_poses(observations: Sequence[FaceObservation | None], profile: "Profile | None" = None,
                 smooth: bool = True) -> list[Pose | None]:
    """The poses `thacam track --no-mirror` makes of these observations: the profile's retarget
    and smoothing, calibrated on the first 30 faces unless the profile is calibrated."""
    from .app import motion_stages
    from .offline import track
    from .profile import Profile
    from .sources import FaceSample
    profile = profile or Profile()
    retargeter, animator = motion_stages(profile, offline=True)
    samples = [FaceSample(o.t_ms if o is not None else 0.0, o, i)
               for i, o in enumerate(observations)]
    calibrate = 0 if profile.neutral is not None and profile.neutral.calibrated else 30
    return [f.pose if f.face else None
            for f in track(samples, retargeter, animator if smooth else None, calibrate)]
