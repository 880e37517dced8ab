"""Animation stage: One-Euro smoothing, breathing, the idle layer and expression presets.

Synthetic signals only, no models: the whole file runs in about a second (CI budget 10 s). The
real-clip jitter figure (head_y high-frequency residual on ../shared/data/faces) is checked by
the tracking tests, which own the clips.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

from thacam.animation import (
    BUILTIN_PRESETS, Animator, BreathingSettings, ExpressionPreset, IdleSettings, OneEuroFilter,
    SmoothingSettings, breathing_value, channel_groups,
)
from thacam.errors import SettingsError
from thacam.pose import NAMES, Pose

NO_BREATH = BreathingSettings(rate_per_min=0.0)
EYES_CLOSED = ("eye_wink_left", "eye_wink_right")


def _pose(**values: float) -> Pose:
    return Pose.from_dict(values)


def _run(animator: Animator, times, inputs) -> np.ndarray:
    """Step through (t, Pose|None) and return the outputs as an (N, 45) array."""
    return np.array([animator.step(p, float(t)).values for t, p in zip(times, inputs)])


def hf_residual(x: np.ndarray) -> float:
    """RMS of the value minus its centred 5-frame average (the issue's jitter measure)."""
    avg = np.convolve(x, np.ones(5) / 5, mode="valid")
    return float(np.sqrt(np.mean((x[2:-2] - avg) ** 2)))


# ---------------------------------------------------------------------------------- smoothing

@pytest.mark.parametrize("channel", ["head_y", "head_x", "neck_z", "body_y", "body_z"])
def test_head_step_reaches_90_percent_within_3_frames_at_30fps(channel):
    fps = 30
    times = np.arange(0, 1.0, 1 / fps)
    k = 15  # first frame of the step
    inputs = [_pose(**{channel: 1.0 if i >= k else 0.0}) for i in range(len(times))]
    y = _run(Animator(breathing=NO_BREATH, seed=0), times, inputs)[:, NAMES.index(channel)]
    assert y[k + 2] >= 0.9, f"{channel} after 3 frames: {y[k:k + 3]}"
    # It does smooth (the first frame is not the raw step) and never overshoots.
    assert y[k] < 0.9
    assert y.max() <= 1.0 + 1e-6
    assert np.all(np.diff(y) >= -1e-9)


def test_short_blink_passes_the_fast_eye_filter():
    # A two-frame blink at 30 fps (MediaPipe often sees no more) must still close the eyes.
    fps = 30
    closed = {6, 7}
    times = np.arange(12) / fps
    inputs = [_pose(eye_wink_left=1.0 if i in closed else 0.0,
                    eye_wink_right=1.0 if i in closed else 0.0) for i in range(12)]
    y = _run(Animator(breathing=NO_BREATH, seed=0), times, inputs)
    assert y[:, NAMES.index("eye_wink_left")].max() >= 0.9
    assert y[:, NAMES.index("eye_wink_right")].max() >= 0.9
    # ... and opens again within a few frames.
    assert y[11, NAMES.index("eye_wink_left")] < 0.1


def _head_curve(fps: float, signal, seconds: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    times = np.arange(0, seconds, 1 / fps)
    y = _run(Animator(breathing=NO_BREATH, seed=0), times,
             [_pose(head_y=float(signal(t))) for t in times])
    return times, y[:, NAMES.index("head_y")]


def test_smoothing_is_frame_rate_independent():
    # A fast head turn (1.2 across in ~0.3 s) plus a sway: the 30 fps curve and the 60 fps curve
    # sampled at the same instants agree.
    def turn(t):
        return 0.6 * np.tanh((t - 1.0) / 0.15) + 0.15 * np.sin(2 * np.pi * 0.8 * t)

    t30, y30 = _head_curve(30, turn)
    t60, y60 = _head_curve(60, turn)
    assert np.allclose(t30, t60[::2])
    assert np.abs(y30 - y60[::2]).max() < 0.05
    # A per-frame filter (the same alpha every frame) would move twice as fast at 60 fps;
    # check that this test catches that: a fixed-alpha EMA differs by far more.
    def per_frame_ema(xs, alpha=0.3):
        out = np.empty_like(xs)
        out[0] = xs[0]
        for i in range(1, len(xs)):
            out[i] = out[i - 1] + alpha * (xs[i] - out[i - 1])
        return out

    assert np.abs(per_frame_ema(turn(t30)) - per_frame_ema(turn(t60))[::2]).max() > 0.1

    # A step: the moment it reaches 90% differs by less than one 30 fps frame.
    def step(t):
        return 1.0 if t >= 1.0 - 1e-9 else 0.0

    t30, y30 = _head_curve(30, np.vectorize(step))
    t60, y60 = _head_curve(60, np.vectorize(step))
    c30 = t30[np.argmax(y30 >= 0.9)]
    c60 = t60[np.argmax(y60 >= 0.9)]
    assert abs(c30 - c60) <= 1 / 30 + 1e-9


def test_smoothing_halves_high_frequency_jitter_and_keeps_the_motion():
    rng = np.random.default_rng(7)
    fps = 30
    times = np.arange(0, 10, 1 / fps)
    clean = 0.3 * np.sin(2 * np.pi * 0.25 * times) + 0.15 * np.sin(2 * np.pi * 0.6 * times + 1)
    raw = clean + rng.normal(0, 0.02, times.size)
    y = _run(Animator(breathing=NO_BREATH, seed=0), times,
             [_pose(head_y=float(v)) for v in raw])[:, NAMES.index("head_y")]
    assert hf_residual(y) <= 0.5 * hf_residual(raw)
    # Still the same motion, not a flattened one.
    assert np.std(y) >= 0.85 * np.std(clean)
    assert np.corrcoef(y, clean)[0, 1] > 0.95


def test_smoothing_off_passes_the_pose_through():
    times = np.arange(10) / 30
    raw = np.linspace(-0.5, 0.5, 10)
    a = Animator(SmoothingSettings(enabled=False), NO_BREATH, seed=0)
    y = _run(a, times, [_pose(head_y=float(v)) for v in raw])[:, NAMES.index("head_y")]
    assert np.allclose(y, raw, atol=1e-6)


def test_one_euro_ignores_repeated_timestamps():
    f = OneEuroFilter(1.0, 0.5, 1.0)
    f(np.array([0.0]), 0.0)
    a = f(np.array([1.0]), 0.1)
    b = f(np.array([5.0]), 0.1)  # same time again: no information, no division by zero
    assert np.isfinite(b).all() and b[0] == a[0]


def test_every_channel_but_breathing_is_in_one_smoothing_group():
    groups = channel_groups()
    grouped = [n for names in groups.values() for n in names]
    assert len(grouped) == len(set(grouped))
    assert set(NAMES) - set(grouped) == {"breathing"}
    assert "eye_wink_left" in groups["eyes"] and "eyebrow_happy_left" in groups["brows"]
    assert "iris_rotation_x" in groups["iris"] and "mouth_aaa" in groups["mouth"]


# ---------------------------------------------------------------------------------- breathing

def test_breathing_follows_one_minus_cos_at_the_set_rate():
    fps, rate, depth = 30, 20.0, 0.8
    times = np.arange(0, 9, 1 / fps)
    a = Animator(breathing=BreathingSettings(rate_per_min=rate, depth=depth), seed=0)
    b = _run(a, times, [Pose()] * times.size)[:, NAMES.index("breathing")]
    period = 60 / rate
    expected = depth * (1 - np.cos(2 * np.pi * times / period)) / 2
    assert np.abs(b - expected).max() < 1e-4
    # Three breaths in 9 s: rests at 0 at 0, 3, 6 s and peaks at depth half-way.
    assert b.max() == pytest.approx(depth, abs=1e-3)
    assert b[int(1.5 * fps)] == pytest.approx(depth, abs=1e-3)
    assert b[int(3.0 * fps)] == pytest.approx(0.0, abs=1e-3)
    assert breathing_value(0.25, 1.0) == pytest.approx(0.5)


def test_breathing_rate_zero_is_off_and_rate_change_is_continuous():
    times = np.arange(0, 4, 1 / 30)
    a = Animator(breathing=BreathingSettings(rate_per_min=0.0), seed=0)
    b = _run(a, times, [Pose()] * times.size)[:, NAMES.index("breathing")]
    assert np.all(b == 0.0)

    a = Animator(breathing=BreathingSettings(rate_per_min=20.0), seed=0)
    out = []
    for i, t in enumerate(times):
        if i == 40:  # a live nudge of the rate
            a.configure(breathing=BreathingSettings(rate_per_min=40.0))
        out.append(a.step(Pose(), float(t))["breathing"])
    assert np.abs(np.diff(out)).max() < 0.1


# --------------------------------------------------------------------------------------- idle

def _clip_with_gap(fps: float, seconds: float = 7.0, cut=(2.0, 4.0)):
    """A 'face' that turns, talks and blinks, missing for 2 s in the middle.

    Everything but the blinks moves by less than 0.15 per frame, so any bigger output jump is
    the animator's doing.
    """
    times = np.arange(0, seconds, 1 / fps)
    inputs: list[Pose | None] = []
    for t in times:
        if cut[0] <= t < cut[1]:
            inputs.append(None)
            continue
        blink = 1.0 if (t % 2.3) < 0.1 else 0.0
        inputs.append(_pose(head_y=float(0.5 * math.sin(1.3 * t)),
                            head_x=float(0.3 * math.sin(0.7 * t + 1.0)),
                            neck_z=0.2, body_y=float(0.25 * math.sin(1.3 * t)),
                            mouth_aaa=float(0.3 + 0.25 * math.sin(9 * t)),
                            eye_wink_left=blink, eye_wink_right=blink))
    return times, inputs


def _blink_frames(closure: np.ndarray, duration_frames: int) -> np.ndarray:
    """Frames within a blink: near (in time) a frame where the eyes are shut (>= 0.8)."""
    near = np.zeros(closure.size, dtype=bool)
    for i in np.flatnonzero(closure >= 0.8):
        near[max(0, i - duration_frames): i + duration_frames + 1] = True
    return near


@pytest.mark.parametrize("fps", [25, 30])
def test_face_cut_for_2s_gives_a_continuous_pose_that_blinks_and_breathes(fps):
    times, inputs = _clip_with_gap(fps)
    idle = IdleSettings()
    out = _run(Animator(idle=idle, seed=3), times, inputs)
    jumps = np.abs(np.diff(out, axis=0))
    eye = [NAMES.index(n) for n in EYES_CLOSED]
    others = [i for i in range(len(NAMES)) if i not in eye]
    worst = int(np.argmax(jumps[:, others].max(axis=0)))
    assert jumps[:, others].max() <= 0.15, f"jump in {NAMES[others[worst]]}"
    # Eye closure moves fast only as part of a blink (a blink is faster than 0.15/frame by
    # nature: ~0.25 s to close and open); any other jump would be a layer switching.
    closure = out[:, eye].max(axis=1)
    in_blink = _blink_frames(closure, int(math.ceil(idle.blink_duration_s * fps)) + 1)
    big = np.flatnonzero(jumps[:, eye].max(axis=1) > 0.15)
    assert np.all(in_blink[big] | in_blink[big + 1])

    missing = (times >= 2.0) & (times < 4.0)
    # Blinks while the face is missing (the input has none then).
    assert closure[missing].max() >= 0.8
    # Breathes while the face is missing: the oscillator goes on through the whole gap.
    b = out[missing, NAMES.index("breathing")]
    assert b.max() - b.min() > 0.3
    expected = (1 - np.cos(2 * np.pi * times[missing] / 3.0)) / 2
    assert np.abs(b - expected).max() < 1e-4
    # Settled into idle: the head is near neutral (only the small sway) late in the gap.
    deep = (times >= 3.3) & (times < 4.0)
    assert np.abs(out[deep, NAMES.index("head_y")]).max() <= idle.sway_head + 1e-6
    assert np.abs(out[deep, NAMES.index("mouth_aaa")]).max() < 1e-6
    # Back to tracking after the face returns (ease over ~0.5 s).
    late = times >= 5.0
    tracked_late = np.array([p["head_y"] for p, keep in zip(inputs, late) if keep])
    assert np.abs(out[late, NAMES.index("head_y")] - tracked_late).max() < 0.1


def test_before_lost_after_the_last_pose_is_held():
    fps = 30
    idle = IdleSettings(lost_after_s=1.0)
    times = np.arange(0, 3.0, 1 / fps)
    inputs = [_pose(head_y=0.6, mouth_aaa=0.4) if t < 1.0 else None for t in times]
    out = _run(Animator(breathing=NO_BREATH, idle=idle, seed=0), times, inputs)
    last = out[int(1.0 * fps) - 1]
    held = (times >= 1.0) & (times < 1.0 + idle.lost_after_s - 1 / fps)
    assert np.allclose(out[held], last, atol=1e-6)
    # ... and only then eases away, reaching idle within ease_s.
    gone = times >= 1.0 + idle.lost_after_s + idle.ease_s + 0.05
    assert np.abs(out[gone, NAMES.index("mouth_aaa")]).max() < 1e-6


def test_idle_blinks_every_few_seconds_and_is_deterministic_with_a_seed():
    fps = 30
    times = np.arange(0, 30, 1 / fps)
    idle = IdleSettings(blink_interval_s=(2.0, 5.0))
    a = _run(Animator(idle=idle, seed=11), times, [None] * times.size)
    b = _run(Animator(idle=idle, seed=11), times, [None] * times.size)
    c = _run(Animator(idle=idle, seed=12), times, [None] * times.size)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    closure = a[:, NAMES.index("eye_wink_left")]
    shut = closure >= 0.8
    starts = np.flatnonzero(shut[1:] & ~shut[:-1])
    # ~29 s idling with gaps of 2-5 s: between 6 and 15 blinks, never two within 2 s.
    assert 6 <= starts.size <= 15
    assert np.diff(starts).min() >= 2.0 * fps - 1
    # Both eyes together, and open between blinks.
    assert np.array_equal(closure, a[:, NAMES.index("eye_wink_right")])
    assert np.median(closure) == 0.0
    # It sways, slightly.
    head = a[int(2 * fps):, NAMES.index("head_y")]
    assert 0.01 < np.abs(head).max() <= idle.sway_head + 1e-6


def test_idle_disabled_holds_the_last_pose():
    times = np.arange(0, 4, 1 / 30)
    inputs = [_pose(head_y=0.7) if t < 1 else None for t in times]
    out = _run(Animator(breathing=NO_BREATH, idle=IdleSettings(enabled=False), seed=0), times,
               inputs)
    assert np.allclose(out[:, NAMES.index("head_y")][30:], 0.7, atol=1e-6)


def test_a_one_frame_dropout_does_not_jump_or_lag():
    fps = 30
    times = np.arange(0, 3, 1 / fps)
    signal = 0.8 * np.sin(2 * np.pi * 0.5 * times)
    inputs = [None if i == 45 else _pose(head_y=float(v)) for i, v in enumerate(signal)]
    out = _run(Animator(breathing=NO_BREATH, seed=0), times, inputs)[:, NAMES.index("head_y")]
    ref = _run(Animator(breathing=NO_BREATH, seed=0), times,
               [_pose(head_y=float(v)) for v in signal])[:, NAMES.index("head_y")]
    assert np.abs(np.diff(out)).max() <= 0.15
    # Stays close to the uninterrupted run and converges to it.
    assert np.abs(out[46:] - ref[46:]).max() < 0.05
    assert np.abs(out[-15:] - ref[-15:]).max() < 0.005


@pytest.mark.parametrize("gap_s", [0.4, 0.7])  # back before idling / half-way into idle
def test_face_returning_elsewhere_eases_instead_of_jumping(gap_s):
    # The face vanishes looking left and comes back looking right: the held pose must ease to
    # the new one, not snap (1.2 in one frame).
    fps = 30
    times = np.arange(0, 3, 1 / fps)
    inputs = [_pose(head_y=-0.6) if t < 1.0 else None if t < 1.0 + gap_s else _pose(head_y=0.6)
              for t in times]
    out = _run(Animator(breathing=NO_BREATH, seed=0), times, inputs)[:, NAMES.index("head_y")]
    assert np.abs(np.diff(out)).max() <= 0.2
    assert out[-1] == pytest.approx(0.6, abs=1e-3)


def test_reset_starts_afresh():
    times, inputs = _clip_with_gap(30, seconds=5.0)
    a = Animator(seed=5)
    first = _run(a, times, inputs)
    a.reset()
    again = _run(a, times, inputs)
    assert np.array_equal(first, again)


def test_time_going_backwards_does_not_break_the_animator():
    a = Animator(seed=0)
    a.step(_pose(head_y=0.2), 1.0)
    p = a.step(_pose(head_y=0.9), 0.5)
    assert np.isfinite(p.values).all()
    nan_pose = Pose()
    nan_pose.values[NAMES.index("head_x")] = np.nan
    assert np.isfinite(a.step(nan_pose, 1.1).values).all()


def test_output_is_clamped_to_ranges():
    a = Animator(SmoothingSettings(enabled=False), BreathingSettings(depth=1.0),
                 IdleSettings(sway_head=1.0, sway_body=1.0), seed=0)
    times = np.arange(0, 20, 1 / 30)
    out = _run(a, times, [None] * times.size)
    from thacam.pose import HIGH, LOW
    assert np.all(out >= LOW - 1e-7) and np.all(out <= HIGH + 1e-7)


# -------------------------------------------------------------------------------- expressions

def test_expression_holds_its_channels_while_head_y_keeps_following():
    fps = 30
    times = np.arange(0, 3.0, 1 / fps)
    inputs = [_pose(head_y=float(0.6 * math.sin(2.0 * t)), mouth_aaa=float(0.5 + 0.4 * math.sin(7 * t)),
                    eyebrow_angry_left=0.7, eyebrow_angry_right=0.7) for t in times]
    happy = BUILTIN_PRESETS["happy"]
    on_at, off_at = 0.5, 1.5 + happy.fade_s
    plain = _run(Animator(seed=1), times, inputs)
    a = Animator(seed=1)
    out = []
    for t, p in zip(times, inputs):
        if abs(t - on_at) < 1e-9:
            a.set_expression(happy, float(t))
        if abs(t - off_at) < 1e-6 or (t > off_at and a.expression is not None):
            a.set_expression(None, float(t))
        out.append(a.step(p, float(t)).values)
    out = np.array(out)
    held = (times >= on_at + happy.fade_s) & (times < off_at)
    assert held.sum() >= fps  # held for at least 1 s
    for name, value in happy.overrides.items():
        assert np.allclose(out[held, NAMES.index(name)], value, atol=1e-6), name
    # The tracked angry brows are overridden by the preset's own family ...
    assert np.all(out[held, NAMES.index("eyebrow_angry_left")] == 0.0)
    # ... while head and mouth keep tracking exactly as without the preset.
    for name in ("head_y", "mouth_aaa", "breathing"):
        assert np.allclose(out[:, NAMES.index(name)], plain[:, NAMES.index(name)], atol=1e-6), name
    assert np.ptp(out[held, NAMES.index("head_y")]) > 0.5
    # Fades: part-way during the fade in, and back to tracking once faded out.
    mid = np.argmin(np.abs(times - (on_at + happy.fade_s / 2)))
    assert 0.2 < out[mid, NAMES.index("eye_happy_wink_left")] < 0.8
    after = times >= off_at + happy.fade_s + 1e-6
    assert np.allclose(out[after], plain[after], atol=1e-6)
    assert a.expression is None


def test_hold_and_toggle_modes():
    a = Animator(breathing=NO_BREATH, seed=0)
    wink, happy = BUILTIN_PRESETS["wink"], BUILTIN_PRESETS["happy"]
    assert wink.mode == "hold" and happy.mode == "toggle"
    a.press_expression(wink, 0.0)
    assert a.expression is wink
    a.release_expression(wink, 0.5)
    assert a.expression is None
    a.press_expression(happy, 1.0)
    a.release_expression(happy, 1.1)
    assert a.expression is happy
    a.press_expression(happy, 2.0)
    assert a.expression is None


def test_switching_presets_is_continuous():
    a = Animator(breathing=NO_BREATH, seed=0)
    times = np.arange(0, 2, 1 / 60)
    out = []
    for t in times:
        if abs(t - 0.3) < 1e-9:
            a.set_expression(BUILTIN_PRESETS["angry"], float(t))
        if abs(t - 0.4) < 1e-9:  # half-way through the fade: switch to another
            a.set_expression(BUILTIN_PRESETS["surprised"], float(t))
        if abs(t - 1.0) < 1e-9:
            a.set_expression(BUILTIN_PRESETS["angry"], float(t))
        out.append(a.step(Pose(), float(t)).values)
    out = np.array(out)
    # 60 fps and a 0.25 s smoothstep fade: at most 1.5 * (1/60) / 0.25 = 0.1 per frame per
    # preset; two overlapping fades (one out, one in) at most double that. A switch without
    # fading would jump by 1.
    assert np.abs(np.diff(out, axis=0)).max() <= 0.21
    assert out[-1, NAMES.index("eyebrow_angry_left")] == pytest.approx(1.0)
    assert out[-1, NAMES.index("eye_surprised_left")] == pytest.approx(0.0)


def test_builtin_presets_are_valid_and_leave_head_and_mouth_vowels_alone():
    assert {"happy", "angry", "sad", "surprised", "wink", "smug"} <= set(BUILTIN_PRESETS)
    for name, preset in BUILTIN_PRESETS.items():
        assert preset.name == name
        keys = set(preset.overrides)
        assert not keys & {"head_x", "head_y", "neck_z", "body_y", "body_z", "breathing",
                           "mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee", "mouth_ooo"}


@pytest.mark.parametrize("kwargs, field, words", [
    ({"overrides": {"eyebrow_hapy_left": 1.0}}, "overrides.eyebrow_hapy_left",
     "eyebrow_happy_left"),
    ({"overrides": {"eye_wink_left": 1.5}}, "overrides.eye_wink_left", "[0, 1]"),
    ({"overrides": {"breathing": 0.5}}, "overrides.breathing", "breathing settings"),
    ({"overrides": {}}, "overrides", "at least one"),
    ({"fade_s": -0.1}, "fade_s", "expected a number in [0, 10], got -0.1"),
    ({"mode": "press"}, "mode", "'hold', 'toggle'"),
])
def test_expression_preset_validation_names_the_field(kwargs, field, words):
    args = {"name": "x", "overrides": {"eye_wink_left": 1.0}, **kwargs}
    with pytest.raises(SettingsError) as err:
        ExpressionPreset(**args)
    assert err.value.field == field
    assert field in str(err.value) and words in str(err.value)


def test_preset_overrides_are_copied():
    src = {"eye_wink_left": 1.0}
    p = ExpressionPreset("x", src)
    src["eye_wink_left"] = 0.0
    assert p.overrides["eye_wink_left"] == 1.0


# ----------------------------------------------------------------------------------- settings

@pytest.mark.parametrize("cls, kwargs, field, words", [
    (SmoothingSettings, {"head_beta": -1.0}, "head_beta", "expected a number in [0, 50]"),
    (SmoothingSettings, {"eyes_min_cutoff_hz": 0.0}, "eyes_min_cutoff_hz", "in [0.01, 30]"),
    (SmoothingSettings, {"d_cutoff_hz": float("nan")}, "d_cutoff_hz", "finite"),
    (SmoothingSettings, {"enabled": "yes"}, "enabled", "true or false"),
    (SmoothingSettings, {"mouth_beta": "2"}, "mouth_beta", "expected a number"),
    (BreathingSettings, {"rate_per_min": -5.0}, "rate_per_min", "in [0, 60], got -5"),
    (BreathingSettings, {"depth": 1.5}, "depth", "[0, 1]"),
    (IdleSettings, {"ease_s": 0.0}, "ease_s", "in [0.05, 5], got 0"),
    (IdleSettings, {"lost_after_s": float("inf")}, "lost_after_s", "finite"),
    (IdleSettings, {"blink_interval_s": (6.0, 2.0)}, "blink_interval_s", "above high"),
    (IdleSettings, {"blink_interval_s": (0.0, 2.0)}, "blink_interval_s[0]", "in [0.3, 60]"),
    (IdleSettings, {"blink_interval_s": 3.0}, "blink_interval_s", "a list of 2 values"),
    (IdleSettings, {"seed": 1.5}, "seed", "integer"),
])
def test_settings_validation_names_the_field(cls, kwargs, field, words):
    with pytest.raises(ValueError) as err:
        cls(**kwargs)
    assert isinstance(err.value, SettingsError) and err.value.field == field
    assert f"{cls.__name__}.{field}" in str(err.value) and words in str(err.value)
    # validate() on an existing instance finds the same problem (frozen: patch via replace
    # would re-validate, so bypass __init__ to build a broken one).
    broken = object.__new__(cls)
    for f in dataclasses.fields(cls):
        object.__setattr__(broken, f.name, kwargs.get(f.name, f.default))
    with pytest.raises(SettingsError, match=re.escape(field)):
        broken.validate()


@pytest.mark.parametrize("cls", [SmoothingSettings, BreathingSettings, IdleSettings])
def test_settings_defaults_are_valid_and_documented(cls):
    cls().validate()
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
        if isinstance(f.default, float):
            lo, hi = f.metadata["range"]
            assert lo <= f.default <= hi
        # Frozen: live tuning goes through Animator.configure with a new instance.
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cls(), f.name, f.default)
