"""VMC protocol (``--source vmc[:PORT]``): OSC over UDP, as many phone and desktop trackers send it.

What thacam reads (https://protocol.vmc.info, the "performer" side's messages):

* ``/VMC/Ext/Blend/Val (s name, f value)``: one shape's value, held until
* ``/VMC/Ext/Blend/Apply``: the values so far become the face;
* ``/VMC/Ext/Bone/Pos (s bone, f px py pz, f qx qy qz qw)`` for ``Head`` (and ``Neck``, which the
  head turns on top of): the head's rotation.

Each packet (an OSC message or a bundle of them, nested bundles too) that applies shapes or moves
the head is one sample. Other VMC messages (root, other bones, /VMC/Ext/OK, time) are valid and
ignored; an OSC packet with no /VMC/ message is another protocol.

Shape names: ARKit's 52 in any case and with ``_L``/``_R`` ("perfect sync": eyeBlinkLeft,
EyeBlinkLeft, eyeBlink_L) are MediaPipe's names; the VRM presets a plain VRM sender uses (Blink,
Blink_L/R, A I U E O, Joy; VRM 1.0's blink, aa, ih, ou, ee, oh, happy) become the ARKit shapes
retarget reads for them (a mouth open for A, lips wide for I, ...). A preset's Left/Right is the
avatar's own side, which a faithful copy of the user shares.

Rotations are Unity's (left-handed: the model faces +Z, +X on its right, +Y up) with Unity's
Euler order (R = Ry Rx Rz). A model turning to its own right (Unity yaw > 0) turns toward
image-left of a camera facing it, so yaw = -unity_y; pitch = unity_x (> 0 chin down);
roll = -unity_z (Unity's +Z roll tilts the head to the model's left, clockwise on screen).

Must not import torch, cv2 or mediapipe.
"""

from __future__ import annotations

import math
import struct
from typing import Iterator

import numpy as np

from ..errors import BadPacket
from ..tracking import BLENDSHAPE_NAMES, Blendshapes, FaceObservation, euler_from_matrix
from . import SourceContext
from .network import UdpFaces, finite, parse_port

__all__ = ["VmcFaces", "PORT", "osc_messages", "shape_scores"]

# The port VMC performers send to by default (the marionette's).
PORT = 39539

_BUNDLE = b"#bundle\0"
_MAX_DEPTH = 8

_ARKIT = {n.lower(): n for n in BLENDSHAPE_NAMES if n != "_neutral"}
_BOTH_EYES = (("eyeBlinkLeft", 1.0), ("eyeBlinkRight", 1.0))
_WIDE = (("mouthStretchLeft", 1.0), ("mouthStretchRight", 1.0))
_SMILE = (("mouthSmileLeft", 1.0), ("mouthSmileRight", 1.0))
# VRM presets -> the ARKit shapes retarget turns into the same expression.
_PRESETS: dict[str, tuple[tuple[str, float], ...]] = {
    "blink": _BOTH_EYES, "blink_l": (("eyeBlinkLeft", 1.0),),
    "blink_r": (("eyeBlinkRight", 1.0),), "blinkleft": (("eyeBlinkLeft", 1.0),),
    "blinkright": (("eyeBlinkRight", 1.0),),
    "a": (("jawOpen", 1.0),), "aa": (("jawOpen", 1.0),),
    "i": _WIDE, "ih": _WIDE,
    "u": (("mouthPucker", 1.0),), "ou": (("mouthPucker", 1.0),),
    "e": (("jawOpen", 0.6),) + _WIDE, "ee": (("jawOpen", 0.6),) + _WIDE,
    "o": (("mouthFunnel", 1.0), ("jawOpen", 0.6)), "oh": (("mouthFunnel", 1.0), ("jawOpen", 0.6)),
    "joy": _SMILE, "happy": _SMILE, "fun": _SMILE,
}


# ------------------------------------------------------------------------------------- OSC

def _string(data: bytes, i: int) -> tuple[str, int]:
    end = data.find(b"\0", i)
    if end < 0:
        raise BadPacket("truncated", "an OSC string without its end")
    nxt = (end + 4) & ~3            # strings are padded to 4 bytes, terminator included
    if nxt > len(data):
        raise BadPacket("truncated", "an OSC string's padding is cut off")
    try:
        return data[i:end].decode("utf-8"), nxt
    except UnicodeDecodeError:
        raise BadPacket("malformed", "an OSC string that is not UTF-8") from None


_FIXED = {"f": ">f", "i": ">i", "d": ">d", "h": ">q", "t": ">Q"}


def _message(data: bytes) -> tuple[str, tuple]:
    address, i = _string(data, 0)
    if i >= len(data):
        return address, ()          # OSC 1.0 lets an old sender leave out the type tags
    tags, i = _string(data, i)
    if not tags.startswith(","):
        raise BadPacket("malformed", f"{address[:40]}: type tags {tags[:20]!r} lack their comma")
    args: list = []
    for tag in tags[1:]:
        if tag in _FIXED:
            fmt = _FIXED[tag]
            size = struct.calcsize(fmt)
            if i + size > len(data):
                raise BadPacket("truncated", f"{address[:40]}: arguments cut off")
            args.append(struct.unpack_from(fmt, data, i)[0])
            i += size
        elif tag == "s":
            s, i = _string(data, i)
            args.append(s)
        elif tag == "b":
            if i + 4 > len(data):
                raise BadPacket("truncated", f"{address[:40]}: a blob cut off")
            size = struct.unpack_from(">i", data, i)[0]
            if size < 0 or i + 4 + size > len(data):
                raise BadPacket("truncated", f"{address[:40]}: a blob cut off")
            args.append(data[i + 4:i + 4 + size])
            i += 4 + ((size + 3) & ~3)
        elif tag in "TFNI":
            args.append({"T": True, "F": False, "N": None, "I": math.inf}[tag])
        else:
            raise BadPacket("malformed", f"{address[:40]}: unknown OSC type tag {tag!r}")
    return address, tuple(args)


def osc_messages(data: bytes, depth: int = 0) -> Iterator[tuple[str, tuple]]:
    """An OSC packet (a message, or a bundle of them) -> (address, arguments) in order.

    Raises:
        BadPacket: not OSC, or OSC cut short or garbled.
    """
    if data.startswith(_BUNDLE):
        if depth >= _MAX_DEPTH:
            raise BadPacket("malformed", f"OSC bundles nested more than {_MAX_DEPTH} deep")
        if len(data) < 16:
            raise BadPacket("truncated", "an OSC bundle without its time tag")
        i = 16
        while i < len(data):
            if i + 4 > len(data):
                raise BadPacket("truncated", "an OSC bundle element's size is cut off")
            size = struct.unpack_from(">i", data, i)[0]
            i += 4
            if size <= 0 or size % 4:
                raise BadPacket("malformed", f"an OSC bundle element of {size} bytes")
            if i + size > len(data):
                raise BadPacket("truncated", "an OSC bundle element is cut off")
            yield from osc_messages(data[i:i + size], depth + 1)
            i += size
        return
    if not data.startswith(b"/"):
        raise BadPacket("wrong protocol", "neither an OSC message nor a bundle")
    if len(data) % 4:
        raise BadPacket("truncated", f"an OSC message of {len(data)} bytes (not a multiple of 4)")
    yield _message(data)


# ------------------------------------------------------------------------------------- VMC

def _key(name: str) -> str:
    """A sender's shape name, written one way (its case and _L/_R spellings vary by sender)."""
    key = name.lower()
    if key.endswith(("_l", "_r")) and key not in _PRESETS:
        key = key[:-2] + ("left" if key.endswith("_l") else "right")
    return key


def _targets(key: str) -> tuple[tuple[str, float], ...]:
    """The MediaPipe shapes (and weights) a shape key drives; () for unknown names."""
    if key in _ARKIT:
        return ((_ARKIT[key], 1.0),)
    return _PRESETS.get(key, ())


def shape_scores(values: dict[str, float]) -> dict[str, float]:
    """VMC shape values by sender's name -> scores by MediaPipe name (unknown names skipped)."""
    out: dict[str, float] = {}
    for name, value in values.items():
        v = min(1.0, max(0.0, value))
        for target, weight in _targets(_key(name)):
            out[target] = max(out.get(target, 0.0), v * weight)
    return out


def _rotation(q: tuple[float, float, float, float]) -> np.ndarray:
    x, y, z, w = q
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if n < 1e-6:
        raise BadPacket("malformed", "a bone rotation of length 0")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


class VmcFaces(UdpFaces):
    """VMC packets on a UDP port: shapes and the head bone."""

    name = "vmc"

    def __init__(self, port: int = PORT, **kw):
        super().__init__(port, **kw)
        self._pending: dict[str, float] = {}    # Blend/Val since the last Apply
        self._shapes: dict[str, float] = {}     # applied
        self._bones = {"Head": np.eye(3), "Neck": np.eye(3)}

    @classmethod
    def from_spec(cls, arg: str | None, ctx: SourceContext) -> "VmcFaces":
        """``--source vmc[:PORT]``."""
        return cls(parse_port(cls.name, arg, PORT), mirror=ctx.camera.mirror)

    def decode(self, data: bytes, t_ms: float) -> FaceObservation | None:
        # Read the whole packet before using any of it: a bad one changes nothing.
        messages = list(osc_messages(data))
        if not any(address.startswith("/VMC/") for address, _ in messages):
            raise BadPacket("wrong protocol", "OSC without /VMC/ messages: not a VMC packet")
        pending = dict(self._pending)
        shapes = None
        bones: dict[str, np.ndarray] = {}
        for address, args in messages:
            if address == "/VMC/Ext/Blend/Val":
                if len(args) < 2 or not isinstance(args[0], str) \
                        or not isinstance(args[1], (int, float)):
                    raise BadPacket("malformed", "/VMC/Ext/Blend/Val wants (name, value)")
                value = finite([float(args[1])], args[0][:40])[0]
                key = _key(args[0])
                if _targets(key):           # unknown names are not kept (nor can they pile up)
                    pending[key] = value
            elif address == "/VMC/Ext/Blend/Apply":
                shapes = {**(self._shapes if shapes is None else shapes), **pending}
                pending = {}
            elif address == "/VMC/Ext/Bone/Pos" and args and args[0] in self._bones:
                if len(args) < 8 or not all(isinstance(a, (int, float)) for a in args[1:8]):
                    raise BadPacket("malformed", "/VMC/Ext/Bone/Pos wants (bone, 3 positions, "
                                                 "4 rotations)")
                q = finite([float(a) for a in args[4:8]], args[0])
                bones[args[0]] = _rotation((q[0], q[1], q[2], q[3]))
        self._pending = pending
        if shapes is None and not bones:
            return None
        if shapes is not None:
            self._shapes = shapes
        self._bones.update(bones)
        uy, ux, uz = euler_from_matrix(self._bones["Neck"] @ self._bones["Head"])
        return FaceObservation(Blendshapes.from_dict(shape_scores(self._shapes)), yaw=-uy,
                               pitch=ux, roll=-uz, t_ms=t_ms)
