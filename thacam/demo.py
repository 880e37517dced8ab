"""`thacam demo`: a scripted performance of a sample character, for machines without a webcam.

The script is a pure function of time (``scripted_pose(t, length)``), laid out in fractions of the
clip so that any length shows everything: a blink, a wink, the five vowels, a head turn and tilt,
a body sway, surprise, a smile, and breathing throughout.

Must not import cv2 or mediapipe.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .pose import Pose

__all__ = ["scripted_pose", "contact_sheet", "default_length", "default_batch"]

BREATH_PERIOD_S = 3.0  # 20 breaths per minute, THA3's default


def _bump(u: float, centre: float, width: float) -> float:
    """A smooth 0->1->0 bump of total ``width`` centred on ``centre`` (raised cosine)."""
    x = (u - centre) / width
    return 0.5 * (1 + math.cos(2 * math.pi * x)) if abs(x) < 0.5 else 0.0


def scripted_pose(t: float, length: float) -> Pose:
    u = t / length  # 0..1 over the clip
    p = Pose()
    p["breathing"] = 0.5 * (1 - math.cos(2 * math.pi * t / BREATH_PERIOD_S))

    # Head and body: one slow turn left-right, a nod, a tilt; the body follows at half amplitude.
    turn = math.sin(2 * math.pi * u)
    p["head_y"] = 0.9 * turn
    p["body_y"] = 0.5 * turn
    p["head_x"] = 0.5 * math.sin(4 * math.pi * u)
    p["neck_z"] = 0.6 * math.sin(2 * math.pi * u + math.pi / 3)
    p["body_z"] = 0.4 * math.sin(2 * math.pi * u + math.pi / 3)
    p["iris_rotation_y"] = -0.6 * turn  # eyes lead the turn back toward the camera

    # Eyes: a blink, a left wink, a right wink, another blink; brief enough at any fps.
    blink = max(_bump(u, 0.08, 0.06), _bump(u, 0.92, 0.06))
    p["eye_wink_left"] = max(blink, _bump(u, 0.2, 0.1))
    p["eye_wink_right"] = max(blink, _bump(u, 0.3, 0.1))

    # Talk through the vowels, each a short open-close.
    for i, vowel in enumerate(("aaa", "iii", "uuu", "eee", "ooo")):
        p[f"mouth_{vowel}"] = _bump(u, 0.4 + i * 0.06, 0.07)

    # Surprise (raised brows, wide eyes), then a happy smile with happy eyes to close.
    surprise = _bump(u, 0.72, 0.12)
    for side in ("left", "right"):
        p[f"eyebrow_raised_{side}"] = surprise
        p[f"eye_surprised_{side}"] = surprise
        smile = _bump(u, 0.86, 0.16)
        p[f"eye_happy_wink_{side}"] = smile
        p[f"mouth_raised_corner_{side}"] = smile
        p[f"eyebrow_happy_{side}"] = smile
    return p.clamped()


def default_length(gpu: bool) -> tuple[float, int]:
    """(seconds, fps): about two minutes of CPU work at ~1.7 s a frame; longer/smoother on a GPU."""
    return (12.0, 30) if gpu else (5.0, 10)


def default_batch(gpu: bool) -> int:
    """Frames per model call: a GPU's throughput doubles with batches (H200: 209 frames/s at
    batch 1, 443 at 4, 569 at 16); a CPU gains little from them."""
    return 8 if gpu else 1


def contact_sheet(frames: list[np.ndarray], columns: int = 4, cell: int = 256,
                  background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Tile frames (RGBA uint8) into one RGB picture over a plain background."""
    rows = math.ceil(len(frames) / columns)
    sheet = Image.new("RGB", (columns * cell, rows * cell), background)
    for i, rgba in enumerate(frames):
        tile = Image.new("RGBA", (rgba.shape[1], rgba.shape[0]), background + (255,))
        tile.alpha_composite(Image.fromarray(rgba, "RGBA"))
        sheet.paste(tile.convert("RGB").resize((cell, cell), Image.LANCZOS),
                    ((i % columns) * cell, (i // columns) * cell))
    return np.asarray(sheet)
