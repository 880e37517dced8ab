"""Where a character's face is, and where THA3 wants it.

THA3 animates a 512x512 character whose head sits where the official samples have theirs. This
module owns that target (measured with MediaPipe's face detector on the ten samples) and the
means to measure a picture against it: :class:`FaceFinder` (the ``face_detector.tflite`` inside
``face_landmarker.task``), :func:`silhouette_face` (a guess from the alpha mask when the detector
finds nothing) and :func:`face_problems` (a face box judged against the samples). Both the check
of a loaded character (character.py) and ``thacam prepare`` (prepare.py) use them.

mediapipe is loaded through tracking.load_vision_tasks when a FaceFinder is made, and cv2 only
inside silhouette_face, so that character.py can import this module and stay light. Must not
import torch, character or prepare.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import IncompatibleCheckpoint
from .tracking import create_task, load_vision_tasks, quiet_stderr

__all__ = ["SIZE", "FACE_TARGET", "FACE_CX_RANGE", "FACE_CY_RANGE", "FACE_W_RANGE",
           "DETECTOR_MIN_CONFIDENCE", "FaceBox", "FaceFinder", "on_white", "face_problems",
           "silhouette_box", "silhouette_face"]

# The side of a THA3 character image, in pixels.
SIZE = 512

# Where the official samples have their faces: MediaPipe's face detector (face_detector.tflite in
# face_landmarker.task, min confidence 0.3, best box) on each of the 10 samples composited on
# white. Centre x, centre y and width of the box in px; tests/test_prepare.py re-measures them.
FACE_TARGET = (259.85, 156.15, 86.1)       # the mean: where `thacam prepare` puts the face
FACE_CX_RANGE = (251.5, 271.5)
FACE_CY_RANGE = (142.0, 164.0)
FACE_W_RANGE = (70.0, 96.0)

# The confidence at which the detector finds the face in all 10 official samples on white
# (their best scores are 0.49-0.85; real anime faces sit well below photo-face scores).
DETECTOR_MIN_CONFIDENCE = 0.3


@dataclass(frozen=True)
class FaceBox:
    """A square face box in some image's pixel coordinates (x, y = top-left corner)."""

    x: float
    y: float
    size: float
    score: float = 1.0

    @property
    def cx(self) -> float:
        return self.x + self.size / 2

    @property
    def cy(self) -> float:
        return self.y + self.size / 2

    @classmethod
    def around(cls, cx: float, cy: float, size: float, score: float = 1.0) -> "FaceBox":
        return cls(cx - size / 2, cy - size / 2, size, score)

    def text(self) -> str:
        return f"{self.x:.0f},{self.y:.0f},{self.size:.0f}"


class FaceFinder:
    """MediaPipe's face detector (taken out of face_landmarker.task), on RGB uint8 pictures.

    Use as a context manager: the detector holds native resources and must be closed.

    Raises:
        MissingWeights: no ``landmarker_task``.
        IncompatibleCheckpoint: it holds no face detector MediaPipe can load.
        ImportError: mediapipe is missing or broken.
    """

    def __init__(self, landmarker_task: Path, min_confidence: float = DETECTOR_MIN_CONFIDENCE):
        path = Path(landmarker_task)
        tasks = load_vision_tasks(path)
        try:
            model = zipfile.ZipFile(path).read("face_detector.tflite")
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise IncompatibleCheckpoint(path, f"no face detector inside ({exc})",
                                         "delete it and run `thacam fetch` again") from None
        self._mp = tasks.mp
        vision = tasks.vision
        opts = vision.FaceDetectorOptions(base_options=tasks.BaseOptions(model_asset_buffer=model),
                                          min_detection_confidence=min_confidence)
        self._det = create_task(path, "face detector",
                                lambda: vision.FaceDetector.create_from_options(opts))
        self._warm = False

    def close(self) -> None:
        det, self._det = self._det, None
        if det is not None:
            with quiet_stderr():
                det.close()

    def __enter__(self) -> "FaceFinder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def find(self, rgb: np.ndarray) -> list[FaceBox]:
        """Face boxes in ``rgb`` (H,W,3 uint8), best score first."""
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                               data=np.ascontiguousarray(rgb))
        if self._warm:
            result = self._det.detect(image)
        else:  # the first inference prints native banners
            with quiet_stderr():
                result = self._det.detect(image)
            self._warm = True
        boxes = []
        for d in result.detections:
            b = d.bounding_box
            # The detector's boxes are square; keep the centre if one ever is not.
            boxes.append(FaceBox.around(b.origin_x + b.width / 2, b.origin_y + b.height / 2,
                                        float(b.width), float(d.categories[0].score)))
        return sorted(boxes, key=lambda f: -f.score)


def on_white(prem: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Premultiplied float RGBA -> uint8 RGB over white (how the sample targets were measured)."""
    return np.clip((prem + (1.0 - alpha)[..., None]) * 255 + 0.5, 0, 255).astype(np.uint8)


def face_problems(face: FaceBox | None, slack_px: float = 12.0, slack: float = 0.15) -> list[str]:
    """What is wrong with a face box in a 512x512 character, against the official samples."""
    if face is None:
        return ["no face found"]
    problems = []
    (x0, x1), (y0, y1), (w0, w1) = FACE_CX_RANGE, FACE_CY_RANGE, FACE_W_RANGE
    if not x0 - slack_px <= face.cx <= x1 + slack_px:
        problems.append(f"face centre x {face.cx:.0f} is outside {x0 - slack_px:.0f}-"
                        f"{x1 + slack_px:.0f}")
    if not y0 - slack_px <= face.cy <= y1 + slack_px:
        problems.append(f"face centre y {face.cy:.0f} is outside {y0 - slack_px:.0f}-"
                        f"{y1 + slack_px:.0f}")
    if not w0 * (1 - slack) <= face.size <= w1 * (1 + slack):
        problems.append(f"face width {face.size:.0f} px is outside {w0 * (1 - slack):.0f}-"
                        f"{w1 * (1 + slack):.0f}")
    return problems


def silhouette_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the bounding box of the pixels with alpha above 0.05."""
    ys, xs = np.nonzero(alpha > 0.05)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def silhouette_face(alpha: np.ndarray) -> FaceBox:
    """Guess the face box from the mask's shape alone (no face found).

    The head is the blob at the top of the silhouette: its width H is found as the median width
    of the mask's run through the head's centre column over the first H rows (a fixed point).
    On the 10 official samples the detector's face box is 0.65-0.92 H wide (mean 0.77) and its
    centre lies 0.75-1.04 H (mean 0.87) below the top of the silhouette.
    """
    x0, y0, x1, y1 = silhouette_box(alpha)
    k = min(1.0, 512.0 / max(x1 - x0, y1 - y0))  # measure on a ~512 px mask: cheap, same ratios
    crop = alpha[y0:y1, x0:x1]
    if k < 1.0:
        import cv2  # here, not at the top: character.py imports this module and must stay cv2-free
        crop = cv2.resize(crop, (max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k))),
                          interpolation=cv2.INTER_AREA)
    mask = crop > 0.5
    if not mask.any():
        mask = crop > 0
    ys, xs = np.nonzero(mask)
    top = int(ys.min())
    xc = int(np.median(xs[ys < top + max(3, mask.shape[0] // 50)]))
    widths = np.zeros(mask.shape[0], np.float32)
    for y in range(top, mask.shape[0]):
        row = mask[y]
        if not row[xc]:
            continue
        left = np.nonzero(~row[:xc])[0]
        right = np.nonzero(~row[xc:])[0]
        widths[y] = (xc - (left[-1] + 1 if left.size else 0)) + (right[0] if right.size
                                                                  else row.size - xc)
    head = mask.shape[1] * 0.4
    for _ in range(12):
        rows = widths[top:top + max(3, int(head))]
        head = float(np.median(rows)) if rows.size else head
        head = max(head, 4.0)
    size = 0.77 * head / k
    return FaceBox.around(x0 + (xc + 0.5) / k, y0 + (top + 0.87 * head) / k, size, 0.0)
