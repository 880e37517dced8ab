"""What MediaPipe's landmarks say about the lips and brows, for retarget. Pure numpy.

Blendshapes describe how a face moves but not reliably how far: on real clips jawOpen - mouthClose
ranks the frames by how far the lips are apart with a rank correlation between 0.39 and 0.93
depending on the face, and closed-lip pursing or smiling reads as an open "u". The landmarks place
the inner lips and the brows directly, so retarget takes the amount of lip opening and brow motion
from them (the blendshapes still choose the mouth's shape) whenever an observation carries them.

Distances are ratios to a span of the same face, so they do not depend on the face's size in the
picture. The brows use 3-D landmark positions: a nod foreshortens the brow-to-eye distance in the
picture but not in 3-D (measured: the 2-D brow height follows head pitch with r up to -0.75 on a
clip where the brows hardly move; the 3-D one with r = 0.02).
"""

from __future__ import annotations

import numpy as np

from .tracking import FaceObservation

__all__ = ["has_landmarks", "lip_gap", "brow_heights"]

# Inner-lip pairs (upper, lower) across the middle of the mouth, and the mouth corners.
_INNER_LIPS = ((82, 87), (13, 14), (312, 317))
_MOUTH_CORNERS = (78, 308)
# Each brow's upper contour from the outer end to the inner end and its eye's corners (outer,
# inner); "left" is the subject's left, as in the blendshapes.
_BROW_LEFT = (300, 293, 334, 296, 336)
_BROW_RIGHT = (70, 63, 105, 66, 107)
_EYE_LEFT = (263, 362)
_EYE_RIGHT = (33, 133)


def has_landmarks(obs: FaceObservation) -> bool:
    """A full 468/478-point mesh with the picture size it is normalised to."""
    return obs.landmarks.shape[0] >= 468 and min(obs.image_size) > 0


def _points(obs: FaceObservation) -> np.ndarray:
    # z is normalised like x (MediaPipe), so the width scales all three axes.
    w, h = obs.image_size
    return obs.landmarks[:, :3].astype(np.float64) * np.array([w, h, w], np.float64)


def lip_gap(obs: FaceObservation) -> float:
    """Inner-lip gap over mouth width: ~0 with the lips together, ~0.3-0.4 speaking, ~0.7 wide.

    The gap is measured in the picture (the depth of barely parted lips is noise), the width in
    3-D so a turned head does not narrow the mouth and seem to open it.
    """
    p = _points(obs)
    gap = np.mean([np.linalg.norm(p[a, :2] - p[b, :2]) for a, b in _INNER_LIPS])
    width = np.linalg.norm(p[_MOUTH_CORNERS[0]] - p[_MOUTH_CORNERS[1]])
    return float(gap / width) if width > 0 else 0.0


def brow_heights(obs: FaceObservation) -> tuple[float, float]:
    """(left, right): each brow's mean 3-D distance above its eye's corner midpoint, over the
    distance between the outer eye corners. The corners do not move when the eye blinks."""
    p = _points(obs)
    span = np.linalg.norm(p[_EYE_LEFT[0]] - p[_EYE_RIGHT[0]])
    if span <= 0:
        return 0.0, 0.0

    def height(brow: tuple[int, ...], eye: tuple[int, int]) -> float:
        mid = (p[eye[0]] + p[eye[1]]) / 2
        return float(np.mean(np.linalg.norm(p[list(brow)] - mid, axis=1)) / span)

    return height(_BROW_LEFT, _EYE_LEFT), height(_BROW_RIGHT, _EYE_RIGHT)
