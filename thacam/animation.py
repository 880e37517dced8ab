"""Animation stage: makes a tracked Pose feel alive.

``Animator.step(pose | None, t_s) -> Pose`` composes, in this order:

1. **smoothing**: a One-Euro filter per channel, driven by timestamps so it behaves the same at
   any frame rate, with per-group settings (fast for eyes and mouth so blinks and syllables pass,
   steadier for head/body and iris where tracker jitter shows most);
2. **idle crossfade**: when the face has been missing for ``lost_after_s`` the pose eases within
   ``ease_s`` to a neutral pose that sways slightly and blinks at random; before that the last
   tracked pose is held; when the face returns the pose eases back to tracking without a jump;
3. **expression blend**: presets (happy, wink, ...) fade in and out over the result, forcing
   their channels while every other channel (head, mouth) keeps tracking;
4. **breathing**: a (1 - cos)/2 oscillator written into ``breathing``;

and clamps the result to each parameter's range.

Pure numpy + thacam.pose. Must not import torch, cv2 or mediapipe.
"""

from __future__ import annotations

import difflib
import functools
import logging
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from . import pose as posemod
from .pose import NAMES, NUM_PARAMS, Pose
from .settings import Settings, setting

__all__ = [
    "SmoothingSettings", "BreathingSettings", "IdleSettings",
    "ExpressionPreset", "BUILTIN_PRESETS", "OneEuroFilter", "Animator", "channel_groups",
    "breathing_value",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ settings
# Every animation setting except the idle seed can change while running (Animator.configure).
tunable = functools.partial(setting, live=True)
_CUT = (0.01, 30.0)
_BETA = (0.0, 50.0)


@dataclass(frozen=True)
class SmoothingSettings(Settings):
    """One-Euro settings per channel group.

    ``min_cutoff_hz`` is the cutoff while the channel is still (lower = steadier, more lag on slow
    moves); ``beta`` raises the cutoff with speed (higher = less lag on fast moves, more jitter).
    Head defaults are the trade-off measured on ../shared/data/faces (head_y = -yaw/10): a full
    head step (0 -> 1) reaches 93% on the third frame at 30 fps (a 0.5 step: 79%, 90% on the
    fifth), and head_y's high-frequency residual drops by 54-73% on six clips; on a fast head
    shake (d11) only by 20%, because there the residual is real motion, not jitter. Eyes and
    mouth are fast so a two-frame blink still closes the eyes (>= 0.9).
    """

    enabled: bool = tunable(True, help="smooth the tracked pose at all")
    head_min_cutoff_hz: float = tunable(
        0.7, *_CUT, help="head_x/head_y/neck_z/body_*: cutoff at rest (Hz)")
    head_beta: float = tunable(
        1.0, *_BETA, help="head and body: how fast the cutoff opens with speed")
    eyes_min_cutoff_hz: float = tunable(
        5.0, *_CUT, help="eye_* (blinks, winks): cutoff at rest (Hz)")
    eyes_beta: float = tunable(2.0, *_BETA, help="eyes: how fast the cutoff opens with speed")
    mouth_min_cutoff_hz: float = tunable(4.0, *_CUT, help="mouth_*: cutoff at rest (Hz)")
    mouth_beta: float = tunable(2.0, *_BETA, help="mouth: how fast the cutoff opens with speed")
    brows_min_cutoff_hz: float = tunable(2.0, *_CUT, help="eyebrow_*: cutoff at rest (Hz)")
    brows_beta: float = tunable(
        1.0, *_BETA, help="eyebrows: how fast the cutoff opens with speed")
    iris_min_cutoff_hz: float = tunable(
        1.0, *_CUT, help="iris_*: cutoff at rest (Hz); gaze is noisy")
    iris_beta: float = tunable(0.5, *_BETA, help="iris: how fast the cutoff opens with speed")
    d_cutoff_hz: float = tunable(
        0.7, 0.05, 30.0, help="cutoff of the speed estimate itself (Hz)")


@dataclass(frozen=True)
class BreathingSettings(Settings):
    """Breathing cycle of the avatar."""

    rate_per_min: float = tunable(
        20.0, 0.0, 60.0, help="breaths per minute; 0 turns breathing off")
    depth: float = tunable(1.0, 0.0, 1.0, help="how far the chest lifts (0..1)")


@dataclass(frozen=True)
class IdleSettings(Settings):
    """What the avatar does when the face is lost: hold, then ease into a neutral pose that sways
    and blinks."""

    enabled: bool = tunable(True, help="go idle when the face is lost (off: hold the last pose)")
    lost_after_s: float = tunable(
        0.5, 0.0, 60.0, help="seconds without a face before idling; until then the last pose is "
        "held")
    ease_s: float = tunable(
        0.5, 0.05, 5.0, help="seconds to ease into idle and back to tracking")
    blink_interval_s: tuple[float, float] = tunable(
        (2.0, 6.0), 0.3, 60.0, help="[low, high] seconds between random idle blinks")
    blink_duration_s: float = tunable(
        0.25, 0.08, 1.0, help="length of one idle blink (close, hold, open)")
    sway_head: float = tunable(
        0.08, 0.0, 1.0, help="idle sway amplitude of head_x/head_y/neck_z (pose units)")
    sway_body: float = tunable(
        0.05, 0.0, 1.0, help="idle sway amplitude of body_y/body_z (pose units)")
    sway_period_s: float = tunable(7.0, 1.0, 60.0, help="main period of the idle sway (s)")
    seed: int | None = setting(
        None, help="random seed for idle blinks and sway (none: random; offline commands use 0)")

    def check(self) -> None:
        lo, hi = self.blink_interval_s
        if lo > hi:
            raise self._bad("blink_interval_s", f"low {lo!r} is above high {hi!r}; give "
                            "[low, high]")


# ------------------------------------------------------------------------------------- groups

_HEAD = ("head_x", "head_y", "neck_z", "body_y", "body_z")


def channel_groups() -> dict[str, tuple[str, ...]]:
    """Smoothing group -> parameter names. ``breathing`` is in none: the animator drives it."""
    groups: dict[str, list[str]] = {"head": [], "eyes": [], "mouth": [], "brows": [], "iris": []}
    for name in NAMES:
        if name in _HEAD:
            groups["head"].append(name)
        elif name.startswith("eyebrow_"):
            groups["brows"].append(name)
        elif name.startswith("eye_"):
            groups["eyes"].append(name)
        elif name.startswith("iris_"):
            groups["iris"].append(name)
        elif name.startswith("mouth_"):
            groups["mouth"].append(name)
    return {k: tuple(v) for k, v in groups.items()}


def _filter_params(s: SmoothingSettings) -> tuple[np.ndarray, np.ndarray]:
    # Ungrouped channels (breathing) get an infinite cutoff: they pass through untouched.
    min_cutoff = np.full(NUM_PARAMS, np.inf)
    beta = np.zeros(NUM_PARAMS)
    for group, names in channel_groups().items():
        idx = [posemod.index(n) for n in names]
        min_cutoff[idx] = getattr(s, f"{group}_min_cutoff_hz")
        beta[idx] = getattr(s, f"{group}_beta")
    return min_cutoff, beta


# ------------------------------------------------------------------------------------ filters

def _alpha(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray:
    # Exact discretisation of a first-order low-pass over dt (1 - exp(-dt/tau)), rather than the
    # usual 1/(1 + tau/dt) approximation, so the response depends on time, not on frame count.
    return -np.expm1(-2.0 * np.pi * np.asarray(cutoff_hz, dtype=np.float64) * dt)


class OneEuroFilter:
    """Casiez et al.'s One-Euro filter over a vector of channels, driven by timestamps.

    The speed estimate uses raw-sample differences (as the original does), so a clean signal gives
    the same curve at 30 and 60 fps. A sample whose timestamp does not advance is ignored.
    """

    def __init__(self, min_cutoff: np.ndarray | float, beta: np.ndarray | float,
                 d_cutoff: float):
        self.set_params(min_cutoff, beta, d_cutoff)
        self.reset()

    def set_params(self, min_cutoff: np.ndarray | float, beta: np.ndarray | float,
                   d_cutoff: float) -> None:
        self.min_cutoff = np.asarray(min_cutoff, dtype=np.float64)
        self.beta = np.asarray(beta, dtype=np.float64)
        self.d_cutoff = float(d_cutoff)

    def reset(self) -> None:
        self._t: float | None = None
        self._x_raw: np.ndarray | None = None
        self._x_hat: np.ndarray | None = None
        self._dx_hat: np.ndarray | None = None

    def __call__(self, x: np.ndarray, t_s: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x_hat is None or self._t is None:
            self._t, self._x_raw, self._x_hat = t_s, x.copy(), x.copy()
            self._dx_hat = np.zeros_like(x)
            return x.copy()
        dt = t_s - self._t
        if not dt > 0:
            return self._x_hat.copy()
        dx = (x - self._x_raw) / dt
        self._dx_hat = self._dx_hat + _alpha(self.d_cutoff, dt) * (dx - self._dx_hat)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx_hat)
        a = np.where(np.isinf(cutoff), 1.0, _alpha(np.where(np.isinf(cutoff), 0.0, cutoff), dt))
        self._x_hat = self._x_hat + a * (x - self._x_hat)
        self._t, self._x_raw = t_s, x.copy()
        return self._x_hat.copy()


# ---------------------------------------------------------------------------------- breathing

def breathing_value(phase_cycles: float, depth: float) -> float:
    """depth * (1 - cos(2 pi phase)) / 2: starts and ends each breath at rest, smoothly."""
    return depth * (1.0 - math.cos(2.0 * math.pi * phase_cycles)) / 2.0


def _smoothstep(u: float | np.ndarray) -> float | np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


# -------------------------------------------------------------------------------- expressions

_MODES = ("hold", "toggle")


@dataclass(frozen=True)
class ExpressionPreset(Settings):
    """Named pose overrides that fade in over tracking.

    ``mode`` says how a hotkey drives it: ``hold`` = active while the key is held, ``toggle`` =
    each press switches it on or off (see Animator.press_expression / release_expression).
    """

    name: str = setting(help="Name shown when the preset is switched on.")
    overrides: Mapping[str, float] = setting(
        help="Pose parameters the preset forces (name = value, `thacam pose --list` shows the 45 "
        "names); every other parameter keeps tracking.")
    fade_s: float = setting(0.25, 0.0, 10.0, help="Seconds to fade the preset in and out.")
    mode: str = setting(
        "toggle", choices=_MODES, help="hold = on while the key is held (an input with key "
        "releases: the panel, the API; in the OpenCV window, which reports no releases, hold "
        "presets toggle); toggle = each press switches it on or off.")

    def check(self) -> None:
        if not self.name.strip():
            raise self._bad("name", f"expected a non-empty name, got {self.name!r}")
        if not self.overrides:
            raise self._bad("overrides", "expected at least one pose parameter, e.g. "
                            "{eyebrow_happy_left = 1.0}")
        for key, value in self.overrides.items():
            if key not in posemod.NAMES:
                close = difflib.get_close_matches(key, posemod.NAMES, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self._bad(f"overrides.{key}", f"unknown pose parameter {key!r}; {hint}"
                                "(`thacam pose --list` shows the 45 names)")
            if key == "breathing":
                raise self._bad(f"overrides.{key}", "breathing is driven by the breathing "
                                "settings, not by presets")
            spec = posemod.PARAMS[posemod.index(key)]
            if not spec.low <= value <= spec.high:
                raise self._bad(f"overrides.{key}", f"expected a number in [{spec.low:g}, "
                                f"{spec.high:g}], got {value:g}")
        # Frozen copy so a caller mutating its dict cannot change a preset under the animator.
        object.__setattr__(self, "overrides", dict(self.overrides))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(mask, values) over the 45 channels."""
        mask = np.zeros(NUM_PARAMS, dtype=bool)
        values = np.zeros(NUM_PARAMS, dtype=np.float64)
        for key, value in self.overrides.items():
            i = posemod.index(key)
            mask[i], values[i] = True, float(value)
        return mask, values


_BROW_FAMILIES = ("troubled", "angry", "lowered", "raised", "happy", "serious")


def _both(base: str, value: float) -> dict[str, float]:
    return {f"{base}_left": value, f"{base}_right": value}


def _brows(family: str, value: float) -> dict[str, float]:
    # A preset sets every brow family so a tracked family (angry, say) cannot fight the preset's.
    out: dict[str, float] = {}
    for fam in _BROW_FAMILIES:
        out.update(_both(f"eyebrow_{fam}", value if fam == family else 0.0))
    return out


BUILTIN_PRESETS: dict[str, ExpressionPreset] = {p.name: p for p in (
    ExpressionPreset("happy", {**_brows("happy", 1.0), **_both("eye_happy_wink", 1.0),
                               **_both("eye_wink", 0.0), **_both("eye_relaxed", 0.0),
                               **_both("eye_surprised", 0.0)}),
    ExpressionPreset("angry", {**_brows("angry", 1.0), **_both("eye_raised_lower_eyelid", 0.6),
                               **_both("eye_unimpressed", 0.3), **_both("eye_surprised", 0.0),
                               **_both("eye_happy_wink", 0.0)}),
    ExpressionPreset("sad", {**_brows("troubled", 1.0), **_both("eye_relaxed", 0.35),
                             **_both("eye_surprised", 0.0), **_both("eye_happy_wink", 0.0)}),
    ExpressionPreset("surprised", {**_brows("raised", 1.0), **_both("eye_surprised", 1.0),
                                   **_both("iris_small", 0.6), **_both("eye_relaxed", 0.0),
                                   **_both("eye_happy_wink", 0.0)}),
    ExpressionPreset("wink", {"eye_wink_right": 1.0, "eye_happy_wink_right": 0.0,
                              **_brows("happy", 0.4)}, fade_s=0.12, mode="hold"),
    ExpressionPreset("smug", {**_brows("serious", 0.4), **_both("eye_relaxed", 0.45),
                              **_both("eye_happy_wink", 0.0), "mouth_smirk": 1.0}),
)}


class _Layer:
    """One preset's weight track: eases from w0 to target over dur seconds from t0."""

    __slots__ = ("preset", "mask", "values", "w0", "target", "t0", "dur")

    def __init__(self, preset: ExpressionPreset, t0: float):
        self.preset = preset
        self.mask, self.values = preset.arrays()
        self.w0, self.target, self.t0, self.dur = 0.0, 0.0, t0, 0.0

    def weight(self, t: float) -> float:
        if self.dur <= 0.0:
            return self.target
        return float(self.w0 + (self.target - self.w0) * _smoothstep((t - self.t0) / self.dur))

    def retarget(self, target: float, t: float) -> None:
        w = self.weight(t)
        # Time proportional to the distance left, so reversing half-way takes half the fade.
        self.w0, self.target, self.t0 = w, target, t
        self.dur = self.preset.fade_s * abs(target - w)


# ----------------------------------------------------------------------------------- animator

_EYE_CLOSE = ("eye_wink_left", "eye_wink_right")
# Blink shape as fractions of its duration: fast close, short hold, slower open (as real lids do).
_BLINK_CLOSE, _BLINK_HOLD = 0.3, 0.15


def _blink_shape(u: float) -> float:
    if u <= 0.0 or u >= 1.0:
        return 0.0
    if u < _BLINK_CLOSE:
        return 0.5 * (1.0 - math.cos(math.pi * u / _BLINK_CLOSE))
    if u < _BLINK_CLOSE + _BLINK_HOLD:
        return 1.0
    v = (u - _BLINK_CLOSE - _BLINK_HOLD) / (1.0 - _BLINK_CLOSE - _BLINK_HOLD)
    return 0.5 * (1.0 + math.cos(math.pi * v))


class Animator:
    """Tracked pose (or None when the face is lost) + time -> the pose to render.

    Feed it every frame with increasing timestamps in seconds. Deterministic for a given seed
    (``seed``, else ``idle.seed``).
    """

    def __init__(self, smoothing: SmoothingSettings | None = None,
                 breathing: BreathingSettings | None = None, idle: IdleSettings | None = None,
                 seed: int | None = None):
        self.smoothing = smoothing or SmoothingSettings()
        self.breathing = breathing or BreathingSettings()
        self.idle = idle or IdleSettings()
        self._seed = seed if seed is not None else self.idle.seed
        self._filter = OneEuroFilter(*_filter_params(self.smoothing), self.smoothing.d_cutoff_hz)
        self._layers: list[_Layer] = []
        self.reset()

    # -- configuration --------------------------------------------------------------------

    def configure(self, smoothing: SmoothingSettings | None = None,
                  breathing: BreathingSettings | None = None,
                  idle: IdleSettings | None = None) -> None:
        """Swap settings while running (live tuning) without restarting the motion."""
        if smoothing is not None:
            self.smoothing = smoothing
            self._filter.set_params(*_filter_params(smoothing), smoothing.d_cutoff_hz)
        if breathing is not None:
            self.breathing = breathing
        if idle is not None:
            self.idle = idle

    def reset(self) -> None:
        """Forget all motion state (the camera restarted); the next step starts fresh."""
        self._rng = np.random.default_rng(self._seed)
        # Two incommensurate sines per rotation channel with random phases: slow, never-repeating sway.
        self._sway_phase = self._rng.uniform(0.0, 2.0 * np.pi, size=(len(_HEAD), 2))
        self._filter.reset()
        self._last_t: float | None = None
        self._held = Pose.neutral().values.astype(np.float64)  # last tracked (smoothed) pose
        self._last_face_t: float | None = None
        self._lost_since: float | None = None
        self._ret_from: np.ndarray | None = None
        self._ret_t0 = 0.0
        self._ret_dur = 0.0
        self._idle_w = 0.0  # linear progress into idle, 0..1; eased with smoothstep when used
        self._next_blink: float | None = None
        self._blink_start: float | None = None
        self._breath_phase = 0.0
        self._layers = []
        self._active: ExpressionPreset | None = None

    # -- expressions ----------------------------------------------------------------------

    @property
    def expression(self) -> ExpressionPreset | None:
        """The preset currently fading in or held (None when none is)."""
        return self._active

    def set_expression(self, preset: ExpressionPreset | None, t_s: float) -> None:
        """Fade ``preset`` in over its fade_s (and any other out); None fades everything out."""
        if preset is not None and self._active is not None and self._active.name == preset.name:
            return
        for layer in self._layers:
            if layer.target > 0.0:
                layer.retarget(0.0, t_s)
        self._active = preset
        if preset is None:
            return
        for layer in self._layers:
            if layer.preset.name == preset.name:
                # Still fading out: reverse it in place so its weight stays continuous.
                self._layers.remove(layer)
                break
        else:
            layer = _Layer(preset, t_s)
        layer.preset = preset
        layer.mask, layer.values = preset.arrays()
        layer.retarget(1.0, t_s)
        self._layers.append(layer)  # on top of those fading out
        log.debug("expression %s on at %.3f s", preset.name, t_s)

    def press_expression(self, preset: ExpressionPreset, t_s: float) -> None:
        """A hotkey went down: hold presets switch on, toggle presets flip."""
        if preset.mode == "toggle" and self._active is not None and self._active.name == preset.name:
            self.set_expression(None, t_s)
        else:
            self.set_expression(preset, t_s)

    def release_expression(self, preset: ExpressionPreset, t_s: float) -> None:
        """A hotkey went up: hold presets switch off; toggle presets ignore it."""
        if preset.mode == "hold" and self._active is not None and self._active.name == preset.name:
            self.set_expression(None, t_s)

    # -- the frame step -------------------------------------------------------------------

    @property
    def idle_weight(self) -> float:
        """How far the output is into the idle pose (0 = tracking, 1 = fully idle)."""
        return float(_smoothstep(self._idle_w))

    def step(self, pose: Pose | None, t_s: float) -> Pose:
        """One frame: the tracked pose (None = no face) at time t_s (seconds) -> pose to render."""
        t = float(t_s)
        if self._last_t is not None and t < self._last_t:
            log.warning("animation time went backwards (%.3f s -> %.3f s); treating it as no "
                        "time passing", self._last_t, t)
            t = self._last_t
        dt = 0.0 if self._last_t is None else t - self._last_t
        self._last_t = t

        tracked = self._track(pose, t)
        out = self._idle_mix(tracked, pose is None, t, dt)
        for layer in list(self._layers):
            w = layer.weight(t)
            if w > 0.0:
                out = np.where(layer.mask, out + w * (layer.values - out), out)
            elif layer.target == 0.0:
                self._layers.remove(layer)
        if self.breathing.rate_per_min > 0.0:
            self._breath_phase = (self._breath_phase + dt * self.breathing.rate_per_min / 60.0) % 1.0
            out[posemod.index("breathing")] = breathing_value(self._breath_phase, self.breathing.depth)
        return Pose(out).clamped()

    def _track(self, pose: Pose | None, t: float) -> np.ndarray:
        if pose is None:
            if self._lost_since is None:
                self._lost_since = self._last_face_t if self._last_face_t is not None else t
                log.debug("face lost at %.3f s", t)
            return self._held
        x = pose.values.astype(np.float64)
        x = np.where(np.isfinite(x), x, self._held)  # a NaN from upstream must not poison the filter
        if self._lost_since is not None:
            gap = t - (self._last_face_t if self._last_face_t is not None else self._lost_since)
            # The filter's memory is from before the gap: start afresh from the new face and
            # ease from the held pose over at most ease_s (a short dropout gets a short ease,
            # so the avatar does not lag behind the face after a one-frame miss).
            self._filter.reset()
            self._ret_from = self._held.copy()
            self._ret_t0, self._ret_dur = t, min(self.idle.ease_s, max(gap, 0.0))
            self._lost_since = None
            log.debug("face back at %.3f s after %.2f s", t, gap)
        smoothed = self._filter(x, t) if self.smoothing.enabled else x
        if self._ret_from is not None:
            u = 1.0 if self._ret_dur <= 0 else (t - self._ret_t0) / self._ret_dur
            if u >= 1.0:
                self._ret_from = None
            else:
                smoothed = self._ret_from + float(_smoothstep(u)) * (smoothed - self._ret_from)
        self._held = smoothed
        self._last_face_t = t
        return smoothed

    def _idle_mix(self, tracked: np.ndarray, lost: bool, t: float, dt: float) -> np.ndarray:
        s = self.idle
        idling = (lost and s.enabled and self._lost_since is not None
                  and t - self._lost_since >= s.lost_after_s)
        if idling and self._idle_w == 0.0:
            log.info("face lost for %.1f s: idling", t - (self._lost_since or t))
        if not idling and self._idle_w == 1.0:
            log.info("face back: easing back to tracking")
        step = dt / s.ease_s
        self._idle_w = min(1.0, self._idle_w + step) if idling else max(0.0, self._idle_w - step)
        if self._idle_w <= 0.0:
            self._next_blink = self._blink_start = None
            return tracked.copy()
        w = float(_smoothstep(self._idle_w))
        return tracked + w * (self._idle_pose(t) - tracked)

    def _idle_pose(self, t: float) -> np.ndarray:
        s = self.idle
        out = Pose.neutral().values.astype(np.float64)
        period = s.sway_period_s
        for k, name in enumerate(_HEAD):
            amp = s.sway_head if name in ("head_x", "head_y", "neck_z") else s.sway_body
            # 0.7/0.3 mix of the main period and a 1.618x slower one: drifts like a person
            # settling, never repeating exactly.
            ph = self._sway_phase[k]
            out[posemod.index(name)] = amp * (
                0.7 * math.sin(2 * math.pi * t / period + ph[0])
                + 0.3 * math.sin(2 * math.pi * t / (period * 1.618) + ph[1]))
        lo, hi = s.blink_interval_s
        if self._next_blink is None:
            # First blink once the ease-in is done: a settling blink tells the viewer "idle".
            self._next_blink = t + s.ease_s * (1.0 - self._idle_w) + self._rng.uniform(0.0, 0.3)
        if self._blink_start is None and t >= self._next_blink:
            self._blink_start = self._next_blink
            self._next_blink = self._blink_start + max(self._rng.uniform(lo, hi), s.blink_duration_s)
        if self._blink_start is not None:
            u = (t - self._blink_start) / s.blink_duration_s
            if u >= 1.0:
                self._blink_start = None
            else:
                closure = _blink_shape(u)
                for name in _EYE_CLOSE:
                    out[posemod.index(name)] = closure
        return out
