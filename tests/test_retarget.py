"""Retarget stage on synthetic observations: every driven channel, left/right, settings edges.

Pure numpy, milliseconds: no model, no video. The real-video checks (blinks on real clips, flip and
rotation) are in test_tracking.py.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from thacam.pose import NAMES, PARAMS, Pose
from thacam.retarget import (EYEBROW_FAMILIES, Calibration, RetargetSettings, Retargeter,
                             split_rotation)
from thacam.settings.codec import decode, encode
from thacam.tracking import BLENDSHAPE_NAMES, Blendshapes, FaceObservation

FPS = 30.0


def obs(t_ms: float = 0.0, yaw: float = 0.0, pitch: float = 8.0, roll: float = 0.0,
        **scores: float) -> FaceObservation:
    """A face; pitch defaults to the uncalibrated bias so the head rests at head_x = 0."""
    return FaceObservation(Blendshapes.from_dict(scores), yaw, pitch, roll, t_ms)


def run(r: Retargeter, frames: list[dict], start_ms: float = 0.0) -> list[Pose]:
    """Feed one observation per frame at 30 fps; each dict holds angles and scores."""
    out = []
    for i, f in enumerate(frames):
        out.append(r.update(obs(start_ms + i * 1000.0 / FPS, **f)))
    return out


def closure(p: Pose, side: str) -> float:
    return max(p[f"eye_wink_{side}"], p[f"eye_happy_wink_{side}"], p[f"eye_relaxed_{side}"])


def open_eyes(level_l: float, level_r: float | None = None, n: int = 60, **extra) -> list[dict]:
    level_r = level_l if level_r is None else level_r
    rng = np.random.default_rng(0)
    return [dict(eyeBlinkLeft=level_l + 0.03 * rng.standard_normal(),
                 eyeBlinkRight=level_r + 0.03 * rng.standard_normal(), **extra) for _ in range(n)]


# ------------------------------------------------------------------------------ pose basics

def test_neutral_face_gives_neutral_pose():
    p = Retargeter().update(obs())
    assert isinstance(p, Pose)
    assert np.allclose(p.values, 0.0, atol=1e-6), p


def test_extreme_scores_stay_in_range():
    r = Retargeter()
    rng = np.random.default_rng(1)
    for i in range(200):
        o = FaceObservation(Blendshapes(rng.uniform(0, 1, 52)), *rng.uniform(-90, 90, 3), i * 33.0)
        v = r.update(o).values
        assert np.all(np.isfinite(v))
        for spec, x in zip(PARAMS, v):
            assert spec.low - 1e-6 <= x <= spec.high + 1e-6, (spec.name, x)


# ------------------------------------------------------------------------------------ blink

@pytest.mark.parametrize("open_level, peak", [(0.0, 0.45), (0.1, 0.65), (0.35, 0.8)])
def test_blink_closes_both_eyes_for_any_open_level(open_level, peak):
    r = Retargeter()
    poses = run(r, open_eyes(open_level, n=90))
    assert max(closure(p, s) for p in poses for s in ("left", "right")) < 0.5
    blink = run(r, [dict(eyeBlinkLeft=peak, eyeBlinkRight=peak)] * 3, start_ms=3000)
    assert min(closure(blink[-1], "left"), closure(blink[-1], "right")) >= 0.8
    after = run(r, open_eyes(open_level, n=10), start_ms=3100)
    assert closure(after[-1], "left") < 0.3 and closure(after[-1], "right") < 0.3


def test_uneven_blink_closes_both_eyes():
    # MediaPipe's blinks are often uneven (measured 0.54 / 0.37 with both eyes shut).
    r = Retargeter()
    run(r, open_eyes(0.05, n=90))
    p = run(r, [dict(eyeBlinkLeft=0.55, eyeBlinkRight=0.33)] * 2, start_ms=3000)[-1]
    assert closure(p, "left") >= 0.8 and closure(p, "right") >= 0.8


@pytest.mark.parametrize("side, other", [("left", "right"), ("right", "left")])
def test_wink_stays_one_eyed(side, other):
    r = Retargeter()
    run(r, open_eyes(0.05, n=90))
    shut = {f"eyeBlink{side.capitalize()}": 0.7, f"eyeBlink{other.capitalize()}": 0.12}
    p = run(r, [shut] * 5, start_ms=3000)[-1]
    assert p[f"eye_wink_{side}"] >= 0.8
    assert closure(p, other) < 0.2


def test_eyes_held_shut_stay_shut():
    r = Retargeter()
    run(r, open_eyes(0.05, n=60))
    poses = run(r, [dict(eyeBlinkLeft=0.85, eyeBlinkRight=0.85)] * 600, start_ms=2000)  # 20 s
    assert min(closure(p, "left") for p in poses) >= 0.8


def test_squint_or_smile_alone_is_not_a_blink():
    r = Retargeter()
    frames = open_eyes(0.1, n=90)
    poses = run(r, frames)
    squint = [dict(f, eyeSquintLeft=0.8, eyeSquintRight=0.8, mouthSmileLeft=0.9,
                   mouthSmileRight=0.9, eyeBlinkLeft=f["eyeBlinkLeft"] + 0.08,
                   eyeBlinkRight=f["eyeBlinkRight"] + 0.08) for f in open_eyes(0.1, n=30)]
    poses += run(r, squint, start_ms=3000)
    assert max(closure(p, s) for p in poses for s in ("left", "right")) < 0.5


def test_smile_turns_blink_into_happy_wink_and_wink_mode_relaxed():
    smiling = dict(mouthSmileLeft=0.9, mouthSmileRight=0.9)
    r = Retargeter()
    run(r, open_eyes(0.05, n=60, **smiling))
    p = run(r, [dict(eyeBlinkLeft=0.7, eyeBlinkRight=0.7, **smiling)] * 3, start_ms=2000)[-1]
    assert p["eye_happy_wink_left"] >= 0.8 and p["eye_happy_wink_right"] >= 0.8
    assert p["eye_wink_left"] == 0 and p["eye_relaxed_left"] == 0

    r = Retargeter(RetargetSettings(wink_mode="relaxed"))
    run(r, open_eyes(0.05, n=60))
    p = run(r, [dict(eyeBlinkLeft=0.7, eyeBlinkRight=0.7)] * 3, start_ms=2000)[-1]
    assert p["eye_relaxed_left"] >= 0.8 and p["eye_relaxed_right"] >= 0.8
    assert p["eye_wink_left"] == 0 and p["eye_happy_wink_left"] == 0


def test_wink_family_crossfades_over_time_not_frames():
    # The same 0.15 s crossfade at 30 and at 120 fps: frame-rate independent.
    for fps in (30.0, 120.0):
        r = Retargeter()
        t = 0.0
        for _ in range(int(fps)):           # 1 s neutral
            r.update(obs(t, eyeBlinkLeft=0.05, eyeBlinkRight=0.05))
            t += 1000.0 / fps
        vals = []
        for _ in range(int(fps * 0.3)):     # 0.3 s smiling with closed eyes
            p = r.update(obs(t, eyeBlinkLeft=0.8, eyeBlinkRight=0.8, mouthSmileLeft=0.9,
                             mouthSmileRight=0.9))
            vals.append((t, p["eye_happy_wink_left"]))
            # Mid-crossfade the eye stays fully shut: the two shapes share one closure.
            assert p["eye_happy_wink_left"] + p["eye_wink_left"] == pytest.approx(1.0, abs=1e-5)
            t += 1000.0 / fps
        t0 = vals[0][0]
        mid = [v for tt, v in vals if abs(tt - t0 - 75.0) <= 1000.0 / fps / 2]
        assert mid and 0.3 < mid[0] < 0.7, (fps, mid)
        assert vals[-1][1] >= 0.95


# --------------------------------------------------------------------- brows, eyes, gaze

@pytest.mark.parametrize("family", EYEBROW_FAMILIES)
def test_eyebrow_family_left_right(family):
    r = Retargeter(RetargetSettings(eyebrow_family=family))
    p = r.update(obs(browDownLeft=0.5))
    assert p[f"eyebrow_{family}_left"] == pytest.approx(1.0)
    assert p[f"eyebrow_{family}_right"] == 0.0
    for other in EYEBROW_FAMILIES:
        if other != family:
            assert p[f"eyebrow_{other}_left"] == 0.0
    # A smile suppresses the lowered-brow family and drives happy brows instead.
    p = r.update(obs(33.0, browDownLeft=0.5, mouthSmileLeft=0.9, mouthSmileRight=0.9))
    assert p[f"eyebrow_{family}_left"] == 0.0
    assert p["eyebrow_happy_left"] > 0.8 and p["eyebrow_happy_right"] > 0.8


def test_eyebrow_raised_by_side():
    p = Retargeter().update(obs(browOuterUpRight=0.9, browInnerUp=0.3))
    assert p["eyebrow_raised_right"] > p["eyebrow_raised_left"] > 0.0
    p = Retargeter().update(obs(browInnerUp=1.0, browOuterUpLeft=1.0, browOuterUpRight=1.0))
    assert p["eyebrow_raised_left"] == 1.0 and p["eyebrow_raised_right"] == 1.0


def test_eye_surprised_by_side():
    p = Retargeter().update(obs(eyeWideLeft=0.7))
    assert p["eye_surprised_left"] == 1.0 and p["eye_surprised_right"] == 0.0


def test_lower_eyelid_follows_squint_above_the_users_usual():
    r = Retargeter()
    # A face whose resting squint reads 0.6 (measured on two clips) has relaxed lower lids...
    rest = run(r, [dict(eyeSquintLeft=0.6, eyeSquintRight=0.6)] * 60)
    assert rest[-1]["eye_raised_lower_eyelid_left"] == 0.0
    # ...and a squint of the left eye beyond that raises the left lower lid only.
    p = run(r, [dict(eyeSquintLeft=0.95, eyeSquintRight=0.6)] * 3, start_ms=2000)[-1]
    assert p["eye_raised_lower_eyelid_left"] > 0.5
    assert p["eye_raised_lower_eyelid_right"] == 0.0


def test_iris_gaze_directions():
    # Both eyes toward the subject's left = image-right: avatar looks screen-right (THA3 < 0).
    p = Retargeter().update(obs(eyeLookOutLeft=0.6, eyeLookInRight=0.6))
    assert p["iris_rotation_y"] < -0.5
    p = Retargeter().update(obs(eyeLookInLeft=0.6, eyeLookOutRight=0.6))
    assert p["iris_rotation_y"] > 0.5
    p = Retargeter().update(obs(eyeLookUpLeft=0.6, eyeLookUpRight=0.6))
    assert p["iris_rotation_x"] > 0.5
    p = Retargeter().update(obs(eyeLookDownLeft=0.6, eyeLookDownRight=0.6))
    assert p["iris_rotation_x"] < -0.5
    p = Retargeter().update(obs(eyeLookOutLeft=0.04))          # inside the dead zone
    assert p["iris_rotation_y"] == 0.0


def test_iris_small_constant():
    p = Retargeter(RetargetSettings(iris_small=0.4)).update(obs())
    assert p["iris_small_left"] == pytest.approx(0.4) and p["iris_small_right"] == pytest.approx(0.4)


# ------------------------------------------------------------------------------------ mouth

VOWELS = ("mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee", "mouth_ooo")


def dominant(p: Pose) -> str:
    return max(VOWELS, key=lambda n: p[n])


@pytest.mark.parametrize("scores, vowel", [
    (dict(jawOpen=0.6, mouthLowerDownLeft=0.4, mouthLowerDownRight=0.4), "mouth_aaa"),
    (dict(jawOpen=0.05, mouthLowerDownLeft=0.45, mouthLowerDownRight=0.45,
          mouthStretchLeft=0.3, mouthStretchRight=0.3), "mouth_iii"),
    (dict(jawOpen=0.1, mouthPucker=0.9, mouthFunnel=0.1), "mouth_uuu"),
    (dict(jawOpen=0.45, mouthFunnel=0.6, mouthPucker=0.3), "mouth_ooo"),
    (dict(jawOpen=0.35, mouthStretchLeft=0.5, mouthStretchRight=0.5), "mouth_eee"),
])
def test_vowels_closed_form(scores, vowel):
    p = Retargeter().update(obs(**scores))
    assert dominant(p) == vowel, {n: round(p[n], 2) for n in VOWELS}
    assert p[vowel] > 0.4
    assert sum(p[n] for n in VOWELS) <= 1.0 + 1e-6


def test_closed_mouth_has_no_vowel_and_eee_can_be_switched_off():
    p = Retargeter().update(obs(jawOpen=0.02))
    assert all(p[n] == 0.0 for n in VOWELS)
    wide_open = dict(jawOpen=0.35, mouthStretchLeft=0.5, mouthStretchRight=0.5)
    p = Retargeter(RetargetSettings(vowel_eee=False)).update(obs(**wide_open))
    assert p["mouth_eee"] == 0.0 and p["mouth_iii"] > 0.4


def test_vowels_are_monotonic_in_jaw_opening():
    r = Retargeter()
    aaa = [r.update(obs(i * 33.0, jawOpen=j))["mouth_aaa"] for i, j in
           enumerate(np.linspace(0, 1, 21))]
    assert all(b >= a for a, b in zip(aaa, aaa[1:])) and aaa[-1] == 1.0


def test_mouth_corners_by_side():
    p = Retargeter().update(obs(mouthSmileLeft=0.8))
    assert p["mouth_raised_corner_left"] == 1.0 and p["mouth_raised_corner_right"] == 0.0
    p = Retargeter().update(obs(mouthFrownRight=0.4))
    assert p["mouth_lowered_corner_right"] == 1.0 and p["mouth_lowered_corner_left"] == 0.0
    # THA3 drops corners only on a closed mouth: an open mouth fades the frown out.
    p = Retargeter().update(obs(mouthFrownRight=0.4, jawOpen=0.6))
    assert p["mouth_lowered_corner_right"] == 0.0


def mesh(t_ms: float, gap: float, brow: float = 1.0, brow_left: float | None = None,
         **scores: float) -> FaceObservation:
    """A face with landmarks: inner lips ``gap`` x mouth width apart, brows ``brow`` (left:
    ``brow_left``) times a height of 0.2 x the eye span above the eye corners."""
    lm = np.zeros((478, 3), np.float32)
    lm[[78, 308], :2] = (0.40, 0.70), (0.60, 0.70)              # mouth corners, width 0.2
    for up, down, x in ((82, 87, 0.47), (13, 14, 0.50), (312, 317, 0.53)):
        lm[up, :2], lm[down, :2] = (x, 0.70 - 0.1 * gap), (x, 0.70 + 0.1 * gap)
    lm[[33, 133, 362, 263], :2] = (0.35, 0.4), (0.45, 0.4), (0.55, 0.4), (0.65, 0.4)
    for idx, x, k in (((70, 63, 105, 66, 107), 0.40, brow),
                      ((300, 293, 334, 296, 336), 0.60, brow if brow_left is None else brow_left)):
        lm[list(idx), 0], lm[list(idx), 1] = x, 0.4 - 0.06 * k    # 0.2 x the 0.3 eye span
    return FaceObservation(Blendshapes.from_dict(scores), 0.0, 8.0, 0.0, t_ms, lm, (100, 100))


def test_closed_lips_never_open_the_mouth():
    """Pursed or smiling lips that touch: corner shapes only, whatever the mouth scores say."""
    r = Retargeter()
    for i, scores in enumerate((dict(mouthPucker=0.9, mouthFunnel=0.4, jawOpen=0.2),
                                dict(mouthSmileLeft=0.9, mouthSmileRight=0.9, jawOpen=0.15),
                                dict(mouthSmileLeft=0.7, mouthSmileRight=0.1))):
        p = r.update(mesh(i * 33.0, 0.0, **scores))
        assert all(p[n] == 0.0 for n in VOWELS), (scores, {n: p[n] for n in VOWELS})
    assert p["mouth_raised_corner_left"] == 1.0 and p["mouth_smirk"] == 1.0
    # Without landmarks (a tracker that sends only scores) the scores still decide.
    assert Retargeter().update(obs(mouthPucker=0.9, jawOpen=0.2))["mouth_uuu"] > 0.3


def test_mouth_opens_as_far_as_the_lips_part_in_the_shape_the_scores_give():
    r = Retargeter()
    gaps = np.linspace(0.0, 0.8, 17)
    for shape, vowel in ((dict(jawOpen=0.5), "mouth_aaa"),
                         (dict(jawOpen=0.3, mouthFunnel=0.7, mouthPucker=0.2), "mouth_ooo"),
                         (dict(), "mouth_aaa")):       # lips apart, jaw still: an "a" anyway
        poses = [r.update(mesh(i * 33.0, g, **shape)) for i, g in enumerate(gaps)]
        largest = [max(p[n] for n in VOWELS) for p in poses]
        assert all(b > a for a, b in zip(largest, largest[1:]) if a < 1.0), largest
        assert largest[0] == 0.0 and largest[-1] == 1.0
        assert all(dominant(p) == vowel for p in poses[1:])
        assert all(sum(p[n] for n in VOWELS) <= 1.0 + 1e-6 for p in poses)


def test_brows_follow_their_own_motion_not_the_scores():
    r = Retargeter()
    rest = [r.update(mesh(i * 33.0, 0.0)) for i in range(90)]           # 3 s at rest
    assert max(p["eyebrow_raised_left"] for p in rest) == 0.0
    t = 3000.0
    p = r.update(mesh(t, 0.0, 1.12))
    assert p["eyebrow_raised_left"] == 1.0 and p["eyebrow_raised_right"] == 1.0
    # Brow scores that rise with a still brow (a smile, a nod, a user whose scores run high)
    # raise nothing; a brow that rises raises whatever the scores say.
    up = dict(browInnerUp=0.9, browOuterUpLeft=0.9, browOuterUpRight=0.9)
    assert r.update(mesh(t + 33, 0.0, 1.0, **up))["eyebrow_raised_left"] == 0.0
    # One brow: mostly its own side; a lowered brow drives the profile's family.
    p = r.update(mesh(t + 66, 0.0, 1.0, brow_left=1.16))
    assert p["eyebrow_raised_left"] >= 0.9 and p["eyebrow_raised_right"] < 0.2
    p = r.update(mesh(t + 99, 0.0, 0.88))
    family = f"eyebrow_{RetargetSettings().eyebrow_family}"
    assert p[f"{family}_left"] == 1.0 and p[f"{family}_right"] == 1.0
    assert p["eyebrow_raised_left"] == 0.0
    # A resting height that changes for good (a new user, the camera moved) becomes the rest.
    late = [r.update(mesh(t + 133 + i * 33.0, 0.0, 1.12)) for i in range(300)]
    assert late[-1]["eyebrow_raised_left"] == 0.0


def test_smirk_follows_an_uneven_smile_on_either_side():
    for left, right in ((0.8, 0.2), (0.2, 0.8)):
        p = Retargeter().update(obs(mouthSmileLeft=left, mouthSmileRight=right))
        assert p["mouth_smirk"] == 1.0
    assert Retargeter().update(obs(mouthSmileLeft=0.8, mouthSmileRight=0.8))["mouth_smirk"] == 0.0


# ------------------------------------------------------------------------------ head, body

def test_head_directions_and_scale():
    s = RetargetSettings(body_share=0.0)
    p = Retargeter(s).update(obs(yaw=5.0))
    assert p["head_y"] == pytest.approx(-5.0 / s.head_y_range_deg)   # image-right = screen-right
    assert p["body_y"] == 0.0
    p = Retargeter(s).update(obs(roll=6.0))
    assert p["neck_z"] == pytest.approx(6.0 / s.neck_z_range_deg)    # CCW stays CCW
    p = Retargeter(s).update(obs(pitch=8.0 + 7.5))                    # chin down -> look down
    assert p["head_x"] == pytest.approx(-7.5 / s.head_x_range_deg)


def test_large_turns_continue_into_the_body():
    s = RetargetSettings()
    r = Retargeter(s)
    small = r.update(obs(yaw=4.0))
    big = r.update(obs(33.0, yaw=25.0))
    assert big["head_y"] == -1.0
    assert big["body_y"] < small["body_y"] < 0.0
    # Neither clips at 25 deg: head and body together carry exactly the turn.
    turn = -(big["head_y"] * s.head_y_range_deg + big["body_y"] * s.body_y_range_deg)
    assert turn == pytest.approx(25.0, abs=1e-4)
    roll = r.update(obs(66.0, roll=-20.0))
    assert roll["neck_z"] == -1.0
    assert roll["neck_z"] * s.neck_z_range_deg + roll["body_z"] * s.body_z_range_deg == \
        pytest.approx(-20.0, abs=1e-4)


@pytest.mark.parametrize("deg", [-80.0, -30.0, -12.0, -3.0, 0.0, 2.0, 9.0, 14.0, 40.0])
@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_split_rotation(deg, share):
    head, body = split_rotation(deg, 10.0, share, 15.0)
    assert -1.0 <= head <= 1.0 and -1.0 <= body <= 1.0
    if abs(deg) <= 10.0 + 15.0 * 0.99 and (share < 1 or abs(deg) <= 15):
        assert head * 10.0 + body * 15.0 == pytest.approx(deg)
    h2, b2 = split_rotation(-deg, 10.0, share, 15.0)
    assert (h2, b2) == pytest.approx((-head, -body))
    if abs((1 - share) * deg) <= 10.0:
        assert head == pytest.approx((1 - share) * deg / 10.0)


def test_mirrored_observation_mirrors_the_pose():
    """Swap L/R shapes and negate yaw/roll: head_y, neck_z, body, gaze negate and sides swap."""
    rng = np.random.default_rng(3)
    a, b = Retargeter(), Retargeter()
    for i in range(40):
        scores = rng.uniform(0, 0.6, 52)
        yaw, pitch, roll = rng.uniform(-25, 25), rng.uniform(-10, 20), rng.uniform(-20, 20)
        o = FaceObservation(Blendshapes(scores), yaw, pitch, roll, i * 33.0)
        m = FaceObservation(Blendshapes(scores).swapped(), -yaw, pitch, -roll, i * 33.0)
        p, q = a.update(o), b.update(m)
    for name in NAMES:
        if name.endswith("_left"):
            assert p[name] == pytest.approx(q[name[:-5] + "_right"], abs=1e-5), name
        elif name in ("head_y", "neck_z", "body_y", "body_z", "iris_rotation_y"):
            assert p[name] == pytest.approx(-q[name], abs=1e-5), name
        elif not name.endswith("_right"):
            assert p[name] == pytest.approx(q[name], abs=1e-5), name


# ------------------------------------------------------------------------------ calibration

def test_calibration_subtracts_neutral_angles_and_expression():
    r = Retargeter()
    neutral = [obs(i * 33.0, yaw=3.0, pitch=13.0, roll=-2.0, browInnerUp=0.5, browOuterUpLeft=0.5,
                   browOuterUpRight=0.5) for i in range(10)]
    assert r.update(neutral[0])["head_x"] < -0.3          # uncalibrated: the bias shows
    cal = r.calibrate(neutral)
    assert (cal.yaw, cal.pitch, cal.roll, cal.frames) == (3.0, 13.0, -2.0, 10)
    p = r.update(obs(400.0, yaw=3.0, pitch=13.0, roll=-2.0, browInnerUp=0.5,
                     browOuterUpLeft=0.5, browOuterUpRight=0.5))
    assert abs(p["head_x"]) < 1e-6 and abs(p["head_y"]) < 1e-6 and abs(p["neck_z"]) < 1e-6
    assert p["eyebrow_raised_left"] == 0.0                 # the resting brow is the zero point
    p = r.update(obs(433.0, yaw=3.0, pitch=13.0, roll=-2.0, browInnerUp=1.0,
                     browOuterUpLeft=1.0, browOuterUpRight=1.0))
    assert p["eyebrow_raised_left"] == 1.0                 # and the full raise is still reachable
    assert r.calibration == cal


def test_uncalibrated_calibration_is_ignored_and_round_trips():
    r = Retargeter(calibration=Calibration())              # the profile's default, frames = 0
    assert r.update(obs(pitch=8.0))["head_x"] == 0.0       # pitch_bias_deg applies
    cal = Calibration.from_observations([obs(yaw=1.5, pitch=9.0, roll=0.5, jawOpen=0.1)])
    back = decode(Calibration, encode(cal))                 # through the profile's codec
    assert back == cal
    assert dict(zip(BLENDSHAPE_NAMES, back.blendshapes))["jawOpen"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="at least one frame"):
        Calibration.from_observations([])


# --------------------------------------------------------------------------------- settings

def test_every_setting_is_documented_with_a_range_or_choices():
    for f in dataclasses.fields(RetargetSettings):
        assert f.metadata.get("help"), f.name
        if f.type not in ("bool", "str"):
            lo, hi = f.metadata["range"]
            assert lo <= getattr(RetargetSettings(), f.name) <= hi, f.name
        if f.type == "str":
            assert getattr(RetargetSettings(), f.name) in f.metadata["choices"], f.name
    RetargetSettings().validate()


@pytest.mark.parametrize("changes, named", [
    (dict(jaw_open_min=0.3, jaw_open_max=0.3), "jaw_open_max"),          # zero-width ramp
    (dict(jaw_open_min=0.5, jaw_open_max=0.2), "jaw_open_max"),          # inverted
    (dict(blink_start=0.4, blink_full=0.3), "blink_full"),
    (dict(smile_min=0.6, smile_max=0.6), "smile_max"),
    (dict(round_min=0.6, round_max=0.5), "round_max"),
    (dict(frown_min=0.0, frown_max=0.0), "frown_max"),
    (dict(head_y_range_deg=0.0), "head_y_range_deg"),                    # would divide by zero
    (dict(body_z_range_deg=-5.0), "body_z_range_deg"),
    (dict(blink_open_percentile=50.0, blink_peak_percentile=50.0), "blink_peak_percentile"),
    (dict(eyebrow_family="sad"), "eyebrow_family"),
    (dict(wink_mode="blink"), "wink_mode"),
    (dict(gaze_gain=float("nan")), "gaze_gain"),
    (dict(vowel_eee="yes"), "vowel_eee"),
])
def test_bad_settings_name_the_field(changes, named):
    # Settings check themselves on construction: a RetargetSettings that exists is valid.
    with pytest.raises(ValueError, match=named):
        RetargetSettings(**changes)
    # ... and validate() finds the same problem in one built around the constructor.
    broken = object.__new__(RetargetSettings)
    for f in dataclasses.fields(RetargetSettings):
        object.__setattr__(broken, f.name, changes.get(f.name, f.default))
    with pytest.raises(ValueError, match=named):
        broken.validate()
    with pytest.raises(ValueError, match=named):
        Retargeter(broken)


def test_timestamps_may_repeat_or_jump():
    r = Retargeter()
    for t in (0.0, 0.0, 33.0, 10_000.0, 10_000.0, 5.0):   # a restart sends time backwards
        v = r.update(obs(t, eyeBlinkLeft=0.1, eyeBlinkRight=0.1)).values
        assert np.all(np.isfinite(v))
    assert math.isfinite(r.update(obs(6.0)).values.sum())
