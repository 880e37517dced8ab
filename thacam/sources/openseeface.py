"""OpenSeeFace (``--source openseeface[:PORT]``): the webcam tracker VSeeFace runs, over UDP.

OpenSeeFace's facetracker.py sends one datagram per camera frame to port 11573: for each tracked
face a fixed 1785-byte record, little-endian (as OpenSee.cs, its own Unity reader, reads it):

    time (f64), face id (i32), width, height (f32), eye openness right, left (f32),
    3-D fit succeeded (u8), fit error, rotation quaternion x y z w, Euler angles x y z,
    translation x y z (f32), 68 landmark confidences, 68 landmarks (x, y pixels),
    70 3-D points (x, y, z), 14 features (f32, order below)

thacam reads the first face of a datagram (OpenSeeFace tracks one unless told ``--faces N``).

Head angles come from the quaternion (the Euler triple is checked, not used), turned into
tracking.py's frame and split as MediaPipe's matrix is (``euler_from_matrix``), so a combined
turn and tilt couples the same way on both paths. OpenSeeFace's quaternion is of the transposed
PnP rotation (model -> camera), in a camera whose first axis is the image row, and its face model
runs y down the face and z into it: ``_CAMERA @ R @ _MODEL`` undoes both. The signs were set on
real OpenSeeFace output (scripts/openseeface_packets.py, tests/test_openseeface.py): rolled and
turned pictures read in the same sense as MediaPipe reads them, and on a real clip turning
+-10 deg, yaw, pitch and roll follow MediaPipe's frame by frame (correlation 0.95 / 0.92 / 0.98;
OpenSeeFace's yaw about twice as large). Pitch's zero is each tracker's own guess: on two real
clips OpenSeeFace's median pitch was within 2.5 deg of MediaPipe's, on the astronaut photo it
read -16 where MediaPipe read +13. It is taken as MediaPipe's frontal-biased pitch (the decoder
takes FRONTAL_PITCH_DEG off, the shared receiver puts it back); calibration (c) removes either.

Expressions: OpenSeeFace sends no ARKit shapes. Its eye openness (1 open, 0 shut) and 14
features, each roughly -1..1 about the user's own running median (0: as usual, +-1: the
extremes seen so far), fill these ARKit names; every other shape stays 0:

* eyeBlinkLeft/Right = 1 - eye openness (its ``eye_blink[1]``/``[0]``, from landmarks 42-47 and
  36-41: the subject's left and right, image-right and image-left of an unmirrored camera).
  retarget's per-user blink baselines then apply as to MediaPipe's eyeBlink.
* jawOpen = mouth_open above its median (x 0.5, so the widest opening seen is jaw_open_max's
  0.45 and a bit); on real clips it follows MediaPipe's jawOpen (correlation 0.54-0.58).
* mouthStretchLeft/Right = mouth_wide above its median (x 0.5); mouthPucker = mouth_wide below
  it (x 0.6): a narrow mouth is a rounded one (correlation with MediaPipe's pucker -0.82).
* mouthSmileLeft/Right = mouth_corner_updown_l/_r below their median: the feature is how far
  the upper lip sits above the corner, so it falls as the corner rises (correlation with
  MediaPipe's smile -0.55). Above the median it also rises as the jaw opens (+0.6 with jawOpen),
  so it is no frown: mouthFrown stays 0.
* browInnerUp, browOuterUpLeft/Right = eyebrow_updown_l/_r above their median (brow height over
  the nose, raised -> up); browDownLeft/Right = below it. The brows are the weakest mapping:
  MediaPipe's own brow scores barely agree with OpenSeeFace's on the test clips either way.
* Left at 0: eye squint/wide, gaze (eyeLook*: the gaze points are not read), cheeks, nose,
  jawForward/Left/Right, mouthClose/Funnel/Left/Right/Roll/Shrug/Press/Dimple/UpperUp/LowerDown,
  mouthFrown. eyebrow_quirk/steepness and mouth_corner_inout are read and checked, not used.

The 68 landmarks are not passed on: retarget's landmark measures are MediaPipe's 478-point mesh,
so it drives mouth and brows from the scores above, as for a phone. Must not import torch, cv2
or mediapipe.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from ..errors import BadPacket
from ..tracking import Blendshapes, FaceObservation, euler_from_matrix
from . import SourceContext
from .network import FRONTAL_PITCH_DEG, UdpFaces, finite, parse_port

__all__ = ["OpenSeeFaceFaces", "PORT", "FEATURES", "FACE_BYTES", "OsfFace", "parse_face",
           "shape_scores", "head_angles"]

PORT = 11573
FEATURES = ("eye_l", "eye_r", "eyebrow_steepness_l", "eyebrow_updown_l", "eyebrow_quirk_l",
            "eyebrow_steepness_r", "eyebrow_updown_r", "eyebrow_quirk_r",
            "mouth_corner_updown_l", "mouth_corner_inout_l", "mouth_corner_updown_r",
            "mouth_corner_inout_r", "mouth_open", "mouth_wide")

_HEAD = struct.Struct("<diffffBf4f3f3f")
_FACE_FLOATS = 68 + 68 * 2 + 70 * 3 + len(FEATURES)
FACE_BYTES = _HEAD.size + 4 * _FACE_FLOATS          # 1785
# Camera frames a tracker could send; anything else in the width/height slots is not a face.
_MAX_SIDE = 16384

# OpenSeeFace's camera axes (image row, image column, depth) -> tracking.py's (x right, y up).
_CAMERA = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
# Its face model's axes -> MediaPipe's canonical face's (y up the face, z out of it).
_MODEL = np.diag([1.0, -1.0, -1.0])


class OsfFace:
    """One face record of a packet, read and checked."""

    __slots__ = ("width", "height", "open_right", "open_left", "fitted", "quaternion", "euler",
                 "landmarks", "features")

    def __init__(self, width: float, height: float, open_right: float, open_left: float,
                 fitted: bool, quaternion: tuple[float, ...], euler: tuple[float, ...],
                 landmarks: np.ndarray, features: dict[str, float]):
        self.width, self.height = width, height
        self.open_right, self.open_left = open_right, open_left
        self.fitted = fitted
        self.quaternion = quaternion
        self.euler = euler
        self.landmarks = landmarks          # (68, 2) pixels, x right, y down
        self.features = features


def parse_face(data: bytes) -> OsfFace:
    """A datagram -> its first face.

    Raises:
        BadPacket: not an OpenSeeFace packet, or one cut short or garbled.
    """
    if len(data) < _HEAD.size:
        raise BadPacket("truncated" if _looks_like_osf(data) else "wrong protocol",
                        f"{len(data)} bytes, where an OpenSeeFace face takes {FACE_BYTES}")
    (t, _id, width, height, open_r, open_l, fitted, _err, qx, qy, qz, qw, ex, ey, ez,
     _tx, _ty, _tz) = _HEAD.unpack_from(data)
    if not _looks_like_osf(data):
        raise BadPacket("wrong protocol", f"a frame of {width:.4g}x{height:.4g} pixels and a "
                        f"fit flag of {fitted}: not an OpenSeeFace packet")
    if len(data) % FACE_BYTES:
        kind = "truncated" if len(data) < FACE_BYTES else "malformed"
        raise BadPacket(kind, f"{len(data)} bytes is not a whole number of {FACE_BYTES}-byte "
                        "OpenSeeFace faces")
    finite([t, open_r, open_l, qx, qy, qz, qw, ex, ey, ez], "the head")
    rest = np.frombuffer(data, "<f4", _FACE_FLOATS, _HEAD.size)
    if not np.isfinite(rest).all():
        raise BadPacket("malformed", "landmarks or features hold a non-finite number")
    if fitted and abs(qx * qx + qy * qy + qz * qz + qw * qw - 1.0) > 0.01:
        raise BadPacket("malformed", "the head rotation is not a unit quaternion")
    lms = rest[68:68 + 136].reshape(68, 2).astype(np.float32)
    feats = dict(zip(FEATURES, (float(v) for v in rest[-len(FEATURES):])))
    return OsfFace(width, height, open_r, open_l, bool(fitted), (qx, qy, qz, qw), (ex, ey, ez),
                   lms, feats)


def _looks_like_osf(data: bytes) -> bool:
    """Whether the header's frame size and fit flag are what a tracker writes (a binary protocol
    without a magic number: this tells other senders from a cut-off OpenSeeFace packet)."""
    if len(data) < 29:
        return len(data) >= 20 and _sides_ok(*struct.unpack_from("<2f", data, 12))
    width, height = struct.unpack_from("<2f", data, 12)
    return _sides_ok(width, height) and data[28] in (0, 1)


def _sides_ok(width: float, height: float) -> bool:
    return all(math.isfinite(s) and 16 <= s <= _MAX_SIDE and s == int(s)
               for s in (width, height))


def head_angles(quaternion: tuple[float, ...]) -> tuple[float, float, float]:
    """OpenSeeFace's quaternion -> (yaw, pitch, roll) in degrees, tracking.py's conventions."""
    x, y, z, w = quaternion
    q = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    # The quaternion is of the transpose of the rotation PnP found.
    return euler_from_matrix(_CAMERA @ q.T @ _MODEL)


def _up(v: float, gain: float = 1.0) -> float:
    return min(1.0, max(0.0, v * gain))


def shape_scores(face: OsfFace) -> dict[str, float]:
    """The ARKit scores a face's eye openness and features give (see the module docstring)."""
    f = face.features
    brow_l, brow_r = f["eyebrow_updown_l"], f["eyebrow_updown_r"]
    return {
        "eyeBlinkLeft": _up(1.0 - face.open_left), "eyeBlinkRight": _up(1.0 - face.open_right),
        "jawOpen": _up(f["mouth_open"], 0.5),
        "mouthStretchLeft": _up(f["mouth_wide"], 0.5),
        "mouthStretchRight": _up(f["mouth_wide"], 0.5),
        "mouthPucker": _up(-f["mouth_wide"], 0.6),
        "mouthSmileLeft": _up(-f["mouth_corner_updown_l"]),
        "mouthSmileRight": _up(-f["mouth_corner_updown_r"]),
        "browInnerUp": _up((brow_l + brow_r) / 2),
        "browOuterUpLeft": _up(brow_l), "browOuterUpRight": _up(brow_r),
        "browDownLeft": _up(-brow_l), "browDownRight": _up(-brow_r),
    }


class OpenSeeFaceFaces(UdpFaces):
    """OpenSeeFace's facetracker.py packets on a UDP port."""

    name = "openseeface"

    def __init__(self, port: int = PORT, **kw):
        super().__init__(port, **kw)

    @classmethod
    def from_spec(cls, arg: str | None, ctx: SourceContext) -> "OpenSeeFaceFaces":
        """``--source openseeface[:PORT]`` (facetracker.py's ``--port``, default 11573)."""
        return cls(parse_port(cls.name, arg, PORT), mirror=ctx.camera.mirror)

    def decode(self, data: bytes, t_ms: float) -> FaceObservation | None:
        face = parse_face(data)
        if not face.fitted:
            return None     # no head pose this frame (its rotation is zeros): keep the last one
        yaw, pitch, roll = head_angles(face.quaternion)
        return FaceObservation(Blendshapes.from_dict(shape_scores(face)), yaw=yaw,
                               pitch=pitch - FRONTAL_PITCH_DEG, roll=roll, t_ms=t_ms)
