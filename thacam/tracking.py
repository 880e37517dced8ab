"""Tracking stage: an RGB frame -> a FaceObservation (or None when no face is seen).

MediaPipe's FaceLandmarker (Tasks API, VIDEO mode, one face, blendshapes and the facial
transformation matrix on) runs on each frame. The observation carries the 52 blendshape scores by
ARKit name, the head angles in degrees, the 478 normalised landmarks and the frame's timestamp.

Conventions (measured; see ../shared/notes/tracking.md), all in the image the landmarker saw:

* yaw > 0: the face turns toward image-right; pitch > 0: the chin goes down (frontal faces read
  +5..15 deg, so retarget calibrates it away); roll > 0: the head tilts counter-clockwise on screen.
  R = Ry(yaw) @ Rx(pitch) @ Rz(roll) (intrinsic Y-X-Z, camera space OpenGL-style).
* ``eyeBlinkLeft`` and the other ``*Left`` shapes are the subject's anatomical left, which is on
  image-right of an unmirrored frame.

Mirroring (selfie view) is one option, ``FaceTracker(mirror=True)``, applied in one place: the frame
is flipped left-right before detection, so everything downstream (yaw and roll signs, L/R shapes,
landmark x) describes the mirrored picture consistently and nothing else needs to know.

mediapipe is imported lazily, by :func:`load_vision_tasks` (which FaceTracker and the face finder of
``thacam prepare`` share), so that importing this module (retarget does, for FaceObservation)
stays cheap. Must not import torch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, TypeVar

import numpy as np

from .errors import IncompatibleCheckpoint, MissingWeights

__all__ = [
    "BLENDSHAPE_NAMES", "NUM_BLENDSHAPES", "Blendshapes", "FaceObservation", "FaceTracker",
    "euler_from_matrix", "load_vision_tasks", "create_task", "VisionTasks", "quiet_stderr",
    "RIGHT_EYE", "LEFT_EYE", "RIGHT_IRIS", "LEFT_IRIS",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# MediaPipe's blendshape order (mediapipe.tasks...face_landmarker.Blendshapes), ARKit names.
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
NUM_BLENDSHAPES = len(BLENDSHAPE_NAMES)
_BS_INDEX = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}
assert NUM_BLENDSHAPES == 52

# Eye contours for an eye-aspect ratio, (outer corner, upper 1, upper 2, inner corner, lower 2,
# lower 1) in the usual EAR order; "LEFT" is the subject's left (image-right when unmirrored).
RIGHT_EYE = (33, 160, 158, 133, 153, 144)
LEFT_EYE = (263, 387, 385, 362, 380, 373)
# Iris centre then four rim points (the refined 478-point mesh).
RIGHT_IRIS = (468, 469, 470, 471, 472)
LEFT_IRIS = (473, 474, 475, 476, 477)


class Blendshapes(Mapping[str, float]):
    """The 52 scores, by ARKit name (``bs["eyeBlinkLeft"]``) and as ``bs.array`` (float32[52])."""

    __slots__ = ("array",)

    def __init__(self, scores: Any):
        arr = np.asarray(scores, dtype=np.float32).reshape(-1).copy()
        if arr.shape != (NUM_BLENDSHAPES,):
            raise ValueError(f"expected {NUM_BLENDSHAPES} blendshape scores, got {arr.size}")
        arr.setflags(write=False)
        self.array = arr

    @classmethod
    def from_dict(cls, scores: Mapping[str, float]) -> "Blendshapes":
        """Build from a partial mapping (missing names score 0); unknown names are an error."""
        arr = np.zeros(NUM_BLENDSHAPES, dtype=np.float32)
        for name, value in scores.items():
            if name not in _BS_INDEX:
                raise KeyError(f"unknown blendshape {name!r}")
            arr[_BS_INDEX[name]] = value
        return cls(arr)

    def __getitem__(self, name: str) -> float:
        return float(self.array[_BS_INDEX[name]])

    def __iter__(self) -> Iterator[str]:
        return iter(BLENDSHAPE_NAMES)

    def __len__(self) -> int:
        return NUM_BLENDSHAPES

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)

    def swapped(self) -> "Blendshapes":
        """Left and right exchanged (what a mirrored frame reports)."""
        arr = self.array.copy()
        for i, name in enumerate(BLENDSHAPE_NAMES):
            if name.endswith("Left"):
                j = _BS_INDEX[name[:-4] + "Right"]
                arr[i], arr[j] = self.array[j], self.array[i]
        return Blendshapes(arr)

    def __repr__(self) -> str:
        top = sorted(self.items(), key=lambda kv: -kv[1])[:5]
        return "Blendshapes(" + ", ".join(f"{k}={v:.2f}" for k, v in top) + ", ...)"


@dataclass(frozen=True)
class FaceObservation:
    """What the tracker saw of one face in one frame (in the possibly mirrored image)."""

    blendshapes: Blendshapes
    yaw: float                      # degrees, > 0 = face turned toward image-right
    pitch: float                    # degrees, > 0 = chin down
    roll: float                     # degrees, > 0 = counter-clockwise on screen
    t_ms: float
    # (478, 3) float32, x and y normalised to the image width and height, z roughly like x.
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32),
                                  repr=False)
    image_size: tuple[int, int] = (0, 0)           # (width, height) in pixels
    matrix: np.ndarray | None = field(default=None, repr=False)   # 4x4 face->camera, cm
    mirrored: bool = False

    def landmarks_px(self) -> np.ndarray:
        """Landmark x, y in pixels (so distances are not squashed by the aspect ratio)."""
        w, h = self.image_size
        return self.landmarks[:, :2] * np.array([w, h], dtype=np.float32)


def euler_from_matrix(m: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from MediaPipe's facial transformation matrix.

    R = Ry(yaw) Rx(pitch) Rz(roll); identical to scipy's as_euler('YXZ'). The columns are
    normalised first in case the matrix carries the canonical model's scale.
    """
    r = np.asarray(m, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(r, axis=0)
    r = r / np.where(norms > 0, norms, 1.0)
    yaw = math.degrees(math.atan2(r[0, 2], r[2, 2]))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, -r[1, 2]))))
    roll = math.degrees(math.atan2(r[1, 0], r[1, 1]))
    return yaw, pitch, roll


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temp file while MediaPipe's C++ side starts up.

    The library prints glog/TFLite banners straight to fd 2 (GLOG_minloglevel does not stop them)
    when a landmarker is created and on its first inference. They are kept at DEBUG level instead.
    Python's own writes are not silenced: other threads log meanwhile (OBS warnings, the live
    status), so while fd 2 is redirected ``sys.stderr`` writes to a copy of the real descriptor.
    """
    # The C++ side writes to descriptor 2 whatever sys.stderr is (pytest, rich and IDEs replace
    # that object), so descriptor 2 is what gets redirected.
    fd = 2
    try:
        saved = os.dup(fd)
    except OSError:   # no descriptor 2 at all (a daemon): nothing to silence
        yield
        return
    old = sys.stderr
    if old is not None:
        old.flush()
    keep = None
    if _on_fd(old, fd):
        keep = os.fdopen(os.dup(saved), "w", encoding=getattr(old, "encoding", None) or "utf-8",
                         errors="replace", buffering=1)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        if keep is not None:
            sys.stderr = keep
        try:
            yield
        finally:
            if keep is not None:
                sys.stderr = old
                keep.close()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("mediapipe: %s", text)


def _on_fd(stream: Any, fd: int) -> bool:
    try:
        return stream is not None and stream.fileno() == fd
    except (AttributeError, OSError, ValueError):   # a replaced stream without a descriptor
        return False


class VisionTasks(NamedTuple):
    """The parts of MediaPipe thacam uses: ``mp`` (Image, ImageFormat), ``BaseOptions`` and
    ``vision`` (FaceLandmarker, FaceDetector and their options)."""

    mp: Any
    BaseOptions: Any
    vision: Any


def load_vision_tasks(task_file: Path) -> VisionTasks:
    """Check that ``task_file`` (face_landmarker.task) exists, then import MediaPipe's Tasks API.

    The one place thacam imports mediapipe (lazily: importing this module stays cheap); the face
    tracker and the face finder of ``thacam prepare`` both start here.

    Raises:
        MissingWeights: no ``task_file``.
        ImportError: mediapipe is missing or broken (the message says how to reinstall it).
    """
    task_file = Path(task_file)
    if not task_file.is_file():
        raise MissingWeights(task_file, "MediaPipe face landmarker model not found",
                             "run `thacam fetch` to download it")
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as exc:
        raise ImportError(f"mediapipe is not usable here ({exc}); reinstall it with "
                          "`pip install mediapipe==1.2.2`") from exc
    return VisionTasks(mp, BaseOptions, vision)


def create_task(task_file: Path, what: str, create: Callable[[], T]) -> T:
    """``create()`` a MediaPipe task with its native start-up banners kept out of the terminal.

    Raises:
        IncompatibleCheckpoint: MediaPipe could not load the model from ``task_file``.
    """
    try:
        with quiet_stderr():
            return create()
    except (RuntimeError, ValueError) as exc:
        raise IncompatibleCheckpoint(task_file, f"MediaPipe could not load the {what} ({exc})",
                                     "delete it and run `thacam fetch` again") from None


class FaceTracker:
    """MediaPipe FaceLandmarker in VIDEO mode. Use as a context manager (it must be closed).

    ``detect(frame)`` takes anything with ``rgb`` (HxWx3 uint8, RGB) and ``t_ms`` (capture time,
    ms), such as capture.Frame; ``detect_rgb(rgb, t_ms)`` takes the two directly.
    """

    def __init__(self, model_path: Path, mirror: bool = False, *,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        model_path = Path(model_path)
        tasks = load_vision_tasks(model_path)
        self.model_path = model_path
        self.mirror = bool(mirror)
        self._mp = tasks.mp
        self._last_ts: int | None = None
        self._warm = False
        self._landmarker = None
        vision = tasks.vision
        opts = vision.FaceLandmarkerOptions(
            # By buffer: a path with non-ASCII characters trips the C API on some systems.
            base_options=tasks.BaseOptions(model_asset_buffer=model_path.read_bytes()),
            running_mode=vision.RunningMode.VIDEO, num_faces=1,
            min_face_detection_confidence=min_detection_confidence,
            min_face_presence_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
            output_face_blendshapes=True, output_facial_transformation_matrixes=True)
        self._landmarker = create_task(model_path, "face landmarker",
                                       lambda: vision.FaceLandmarker.create_from_options(opts))

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        lm, self._landmarker = self._landmarker, None
        if lm is not None:
            lm.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- detection ---------------------------------------------------------------------------
    def detect(self, frame: Any) -> FaceObservation | None:
        return self.detect_rgb(frame.rgb, frame.t_ms)

    def detect_rgb(self, rgb: np.ndarray, t_ms: float) -> FaceObservation | None:
        """One frame -> the face in it, or None. Frames must come in time order."""
        if self._landmarker is None:
            raise RuntimeError("FaceTracker is closed")
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        if h < 16 or w < 16:
            return None
        if self.mirror:
            rgb = rgb[:, ::-1]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                               data=np.ascontiguousarray(rgb))
        # VIDEO mode rejects a timestamp that does not increase; two frames in the same
        # millisecond (or a clock that steps back) get the next free one instead.
        ts = int(math.floor(t_ms))
        if self._last_ts is not None and ts <= self._last_ts:
            ts = self._last_ts + 1
        self._last_ts = ts
        if self._warm:
            result = self._landmarker.detect_for_video(image, ts)
        else:
            with quiet_stderr():
                result = self._landmarker.detect_for_video(image, ts)
            self._warm = True
        if not result.face_landmarks or not result.face_blendshapes:
            return None
        scores = np.zeros(NUM_BLENDSHAPES, dtype=np.float32)
        for cat in result.face_blendshapes[0]:
            i = _BS_INDEX.get(cat.category_name, cat.index)
            scores[i] = cat.score
        lms = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], dtype=np.float32)
        if result.facial_transformation_matrixes:
            matrix = np.asarray(result.facial_transformation_matrixes[0], dtype=np.float32)
            yaw, pitch, roll = euler_from_matrix(matrix)
        else:   # pragma: no cover - the option is always on
            matrix, yaw, pitch, roll = None, 0.0, 0.0, 0.0
        return FaceObservation(Blendshapes(scores), yaw, pitch, roll, float(t_ms), lms,
                               (w, h), matrix, self.mirror)
