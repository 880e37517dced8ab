"""Tracking + retarget on real faces: the astronaut photo and the real clips in ../shared/data/faces.

Metamorphic checks (flip, in-plane rotation) and an independent eye-aspect-ratio blink detector
judge the whole webcam -> pose path without hand labels. Each clip is tracked once per session
(``tracked``); the file's CI budget is about 60 s on 2 cores (MediaPipe ~12 ms per frame).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from thacam.errors import MissingWeights
from thacam.retarget import RetargetSettings, Retargeter
from thacam.tracking import (BLENDSHAPE_NAMES, LEFT_EYE, RIGHT_EYE, FaceObservation, FaceTracker,
                             euler_from_matrix)

BLINK_CLIPS = ("d0", "d11", "d14", "d20")   # three with blinks, d20 with high open scores
FLIP_CLIP = "d11"                                  # the most head motion
ROTATE_CLIP = "d0"                                 # short, nearly upright


def _read_clip(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    assert frames, f"could not decode {path}"
    return frames, fps


def _pad_rotate(rgb: np.ndarray, angle: float) -> np.ndarray:
    """30 % black border, then rotate about the centre (angle > 0 = counter-clockwise)."""
    h, w = rgb.shape[:2]
    ph, pw = int(0.3 * h), int(0.3 * w)
    big = cv2.copyMakeBorder(rgb, ph, ph, pw, pw, cv2.BORDER_CONSTANT, value=0)
    if angle == 0:
        return big
    m = cv2.getRotationMatrix2D((big.shape[1] / 2, big.shape[0] / 2), angle, 1.0)
    return cv2.warpAffine(big, m, (big.shape[1], big.shape[0]))


def _track(model: Path, frames, fps: float, mirror: bool = False, transform=None):
    out = []
    with FaceTracker(model, mirror=mirror) as tracker:
        for i, rgb in enumerate(frames):
            out.append(tracker.detect_rgb(transform(rgb) if transform else rgb, i * 1000.0 / fps))
    return out


@pytest.fixture(scope="session")
def tracked(landmarker_model, faces_dir):
    """(clip, variant) -> list of FaceObservation | None, computed once per session."""
    cache: dict[tuple[str, str], list] = {}
    clips: dict[str, tuple[list, float]] = {}

    def get(clip: str, variant: str = "plain"):
        key = (clip, variant)
        if key not in cache:
            if clip not in clips:
                clips[clip] = _read_clip(faces_dir / f"{clip}.mp4")
            frames, fps = clips[clip]
            if variant == "plain":
                cache[key] = _track(landmarker_model, frames, fps)
            elif variant == "mirror":
                cache[key] = _track(landmarker_model, frames, fps, mirror=True)
            elif variant.startswith("rot"):
                angle = float(variant[3:])
                cache[key] = _track(landmarker_model, frames, fps,
                                    transform=lambda f, a=angle: _pad_rotate(f, a))
            else:
                raise KeyError(variant)
        return cache[key]
    return get


def _ear(obs: FaceObservation, idx) -> float:
    p = obs.landmarks_px()
    outer, u1, u2, inner, l2, l1 = (p[k] for k in idx)
    return float((np.linalg.norm(u1 - l1) + np.linalg.norm(u2 - l2))
                 / (2 * np.linalg.norm(outer - inner)))


def _closure(pose, side: str) -> float:
    return max(pose[f"eye_wink_{side}"], pose[f"eye_happy_wink_{side}"],
               pose[f"eye_relaxed_{side}"])


def _poses(observations, settings: RetargetSettings | None = None, calibrate: int = 0):
    rt = Retargeter(settings)
    if calibrate:
        rt.calibrate([o for o in observations[:calibrate] if o is not None])
    return [rt.update(o) if o is not None else None for o in observations]


# ----------------------------------------------------------------------------- the photo

@pytest.fixture(scope="module")
def astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut())


def test_astronaut_observation(landmarker_model, astronaut):
    with FaceTracker(landmarker_model) as tracker:
        obs = tracker.detect_rgb(astronaut, 0.0)
    assert obs is not None
    assert obs.landmarks.shape == (478, 3)
    assert obs.blendshapes.array.shape == (52,) and len(obs.blendshapes) == 52
    # She smiles broadly and faces the camera (tracking.md: yaw -0.3, pitch +14.9, roll -3.6).
    assert obs.blendshapes["mouthSmileLeft"] > 0.6 and obs.blendshapes["mouthSmileRight"] > 0.6
    assert abs(obs.yaw) < 5 and 8 < obs.pitch < 22 and abs(obs.roll) < 8
    # The anatomical-left eye is on image-right in an unmirrored photo.
    assert obs.landmarks[LEFT_EYE[0], 0] > obs.landmarks[RIGHT_EYE[0], 0]
    assert (obs.yaw, obs.pitch, obs.roll) == pytest.approx(euler_from_matrix(obs.matrix))
    pose = Retargeter().update(obs)
    assert pose["mouth_raised_corner_left"] > 0.5 and pose["eyebrow_happy_left"] > 0.5


def test_no_face_gives_none(landmarker_model, astronaut):
    blank = np.full((480, 640, 3), 90, np.uint8)
    with FaceTracker(landmarker_model) as tracker:
        assert tracker.detect_rgb(blank, 0.0) is None
        assert tracker.detect_rgb(astronaut, 33.0) is not None     # still usable after a miss
        assert tracker.detect_rgb(astronaut[:8, :8], 66.0) is None  # a degenerate frame


def test_mirror_option_equals_flipped_input(landmarker_model, astronaut):
    """Mirroring is applied in one place: FaceTracker(mirror=True) sees exactly the flipped image."""
    with FaceTracker(landmarker_model, mirror=True) as tracker:
        mirrored = tracker.detect_rgb(astronaut, 0.0)
    with FaceTracker(landmarker_model) as tracker:
        flipped = tracker.detect_rgb(np.ascontiguousarray(astronaut[:, ::-1]), 0.0)
    with FaceTracker(landmarker_model) as tracker:   # VIDEO mode would track from the last ROI
        plain = tracker.detect_rgb(astronaut, 0.0)
    assert mirrored.mirrored and not flipped.mirrored
    np.testing.assert_allclose(mirrored.blendshapes.array, flipped.blendshapes.array, atol=1e-6)
    np.testing.assert_allclose(mirrored.landmarks, flipped.landmarks, atol=1e-6)
    # And the flip really moves things: the nose tip's x mirrors about the centre.
    assert mirrored.landmarks[1, 0] == pytest.approx(1 - plain.landmarks[1, 0], abs=0.02)


def test_timestamps_need_not_increase(landmarker_model, astronaut):
    """Repeated or backward capture times are nudged forward instead of crashing VIDEO mode."""
    with FaceTracker(landmarker_model) as tracker:
        for t in (100.0, 100.0, 100.4, 50.0):
            assert tracker.detect_rgb(astronaut, t) is not None


def test_closed_tracker_and_missing_model(landmarker_model, astronaut, tmp_path):
    tracker = FaceTracker(landmarker_model)
    tracker.close()
    tracker.close()   # twice is fine
    with pytest.raises(RuntimeError):
        tracker.detect_rgb(astronaut, 0.0)
    with pytest.raises(MissingWeights, match="thacam fetch"):
        FaceTracker(tmp_path / "nope.task")


# ----------------------------------------------------------------------------- real clips

def test_flip_negates_head_and_swaps_sides(tracked):
    plain, mirror = tracked(FLIP_CLIP), tracked(FLIP_CLIP, "mirror")
    assert all(o is not None for o in plain) and all(o is not None for o in mirror)
    p, m = _poses(plain, calibrate=10), _poses(mirror, calibrate=10)
    for name in ("head_y", "neck_z", "body_y", "body_z"):
        a = np.array([q[name] for q in p])
        b = np.array([q[name] for q in m])
        assert np.std(a) > 0.02, f"{name} hardly moves in {FLIP_CLIP}; the check would be empty"
        assert np.median(np.abs(a + b)) < 0.05, name
        assert np.corrcoef(a, b)[0, 1] < -0.9, name
    # head_x (pitch) does not change sign.
    hx = np.array([[q["head_x"], r["head_x"]] for q, r in zip(p, m)])
    assert np.median(np.abs(hx[:, 0] - hx[:, 1])) < 0.1
    # Every L/R blendshape pair swaps: swapped differences are clearly smaller than unswapped.
    bs = np.array([o.blendshapes.array for o in plain])
    bs_m = np.array([o.blendshapes.array for o in mirror])
    bs_swapped = np.array([o.blendshapes.swapped().array for o in mirror])
    sided = [i for i, n in enumerate(BLENDSHAPE_NAMES) if n.endswith(("Left", "Right"))]
    swapped = np.abs(bs[:, sided] - bs_swapped[:, sided]).mean()
    unswapped = np.abs(bs[:, sided] - bs_m[:, sided]).mean()
    assert swapped < 0.75 * unswapped
    # The avatar's eye closure follows the swap too.
    wl = np.array([_closure(q, "left") for q in p])
    wr_m = np.array([_closure(q, "right") for q in m])
    assert np.mean(np.abs(wl - wr_m)) < 0.1


@pytest.mark.parametrize("angle", [10.0, -10.0])
def test_rotation_moves_neck_z(tracked, angle):
    settings = RetargetSettings()
    base = _poses(tracked(ROTATE_CLIP, "rot0"), settings)
    rot = _poses(tracked(ROTATE_CLIP, f"rot{angle:g}"), settings)
    assert all(q is not None for q in base + rot)
    neck = np.array([(r["neck_z"] - b["neck_z"]) * settings.neck_z_range_deg
                     for b, r in zip(base, rot)])
    body = np.array([(r["body_z"] - b["body_z"]) * settings.body_z_range_deg
                     for b, r in zip(base, rot)])
    # A counter-clockwise picture (angle > 0) is a counter-clockwise head: neck_z > 0. The neck
    # carries the tilt minus the body's share, and neck + body carry all of it.
    assert np.mean(neck) == pytest.approx((1 - settings.body_share) * angle, abs=1.5)
    assert np.mean(neck + body) == pytest.approx(angle, abs=1.5)


@pytest.fixture(scope="module")
def blink_runs(tracked):
    """Per clip: (EAR array (n, 2), avatar closure (n, 2)) over frames with a face."""
    runs = {}
    for clip in BLINK_CLIPS:
        obs = tracked(clip)
        poses = _poses(obs)
        keep = [i for i, o in enumerate(obs) if o is not None]
        ear = np.array([[_ear(obs[i], LEFT_EYE), _ear(obs[i], RIGHT_EYE)] for i in keep])
        closure = np.array([[_closure(poses[i], "left"), _closure(poses[i], "right")]
                            for i in keep])
        runs[clip] = (ear, closure)
    return runs


def test_every_blink_closes_both_avatar_eyes(blink_runs):
    seen = 0
    for clip, (ear, closure) in blink_runs.items():
        shut = np.where((ear < 0.4 * np.median(ear, axis=0)).all(axis=1))[0]
        seen += len(shut)
        for i in shut:
            window = closure[max(0, i - 4):i + 5]
            assert window.min(axis=1).max() >= 0.8, (
                f"{clip} frame {i}: eyes shut (EAR {ear[i].round(3)}) but the avatar's "
                f"closure peaks at {window.max(axis=0).round(2)}")
    assert seen >= 50, "too few shut-eye frames for the check to mean anything"


def test_open_eyes_stay_open(blink_runs):
    for clip, (ear, closure) in blink_runs.items():
        open_ = (ear >= 0.75 * np.median(ear, axis=0)).all(axis=1)
        assert open_.sum() > 50
        frac = np.mean(closure[open_].max(axis=1) < 0.5)
        assert frac >= 0.98, f"{clip}: only {frac:.1%} of clearly open frames look open"


def test_detection_on_every_clip_frame(tracked):
    for clip in BLINK_CLIPS:
        obs = tracked(clip)
        assert np.mean([o is not None for o in obs]) >= 0.99, clip
        t = [o.t_ms for o in obs if o is not None]
        assert all(b > a for a, b in zip(t, t[1:]))


# ----------------------------------------------------------------------------- thacam track

def test_track_command_writes_jsonl(landmarker_model, faces_dir, tmp_path):
    from thacam.cli import main
    from thacam.pose import NAMES
    out = tmp_path / "poses.jsonl"
    rc = main(["track", "--input", str(faces_dir / "d0.mp4"), "--out", str(out),
               "--weights", str(landmarker_model.parent), "--calibrate-frames", "5"])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 78
    assert all(r["face"] for r in rows)
    assert list(rows[0]["pose"]) == list(NAMES)
    assert all(b["t_ms"] > a["t_ms"] for a, b in zip(rows, rows[1:]))
    # Calibrated on its first frames, a steady face starts near head_x = head_y = 0.
    assert abs(rows[2]["pose"]["head_y"]) < 0.15 and abs(rows[2]["pose"]["head_x"]) < 0.15
    assert not list(tmp_path.glob("*.tmp*")), "temp file left behind"


def test_track_command_user_errors(landmarker_model, tmp_path, capsys):
    from thacam.cli import main
    bad = tmp_path / "not_a_video.mp4"
    bad.write_bytes(b"this is not a video")
    out = tmp_path / "poses.jsonl"
    assert main(["track", "--input", str(bad), "--out", str(out),
                 "--weights", str(landmarker_model.parent)]) == 2
    err = capsys.readouterr().err
    assert "not_a_video.mp4" in err and not out.exists()
    empty = tmp_path / "w"
    empty.mkdir()
    assert main(["track", "--input", str(bad), "--out", str(out), "--weights", str(empty)]) == 2
    assert "thacam fetch" in capsys.readouterr().err
