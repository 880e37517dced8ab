"""iFacialMocap (``--source ifacialmocap[:PORT]``): the iPhone app THA3's own puppeteer reads.

The app sends one UDP text packet per ARKit frame, ``|``-separated parts read as THA3's puppeteer
reads them (tha3/mocap/ifacialmocap_v2.py):

* v2: ``eyeBlink_L&37|jawOpen&5|...|=head#rx,ry,rz,tx,ty,tz|rightEye#x,y,z|leftEye#x,y,z``;
* v1: the same with ``name-value`` for the shapes.

Shape values are percent (0-100); ``_L``/``_R`` are ARKit's Left/Right, the user's anatomical
sides, which are MediaPipe's names too, so the retarget stage applies unchanged. Names MediaPipe
lacks (tongueOut, the app's own extras) are skipped. Angles are degrees. The eye rotations are
checked and not used: gaze comes from the eyeLook shapes, as in THA3 and on the webcam path.

Head angles, from the signs THA3's converter gives them (head_x = -rx, head_y = -ry,
neck_z = +rz) against retarget's (head_x = -pitch, head_y = -yaw, neck_z = +roll): yaw = ry,
pitch = rx (> 0 chin down), roll = rz, i.e. ARKit's face frame seen by a camera facing the user,
unmirrored. The head/body split, calibration and mirroring are then the webcam path's (and
uncalibrated, head_x = -rx/15 as in THA3: see FRONTAL_PITCH_DEG in thacam.sources.network).

The app starts sending once it gets the start handshake; with ``--phone IP`` thacam sends it on
open and again every few seconds while no packets come (the app restarted, the phone slept).
Without it, start the stream from the app. Must not import torch, cv2 or mediapipe.
"""

from __future__ import annotations

import socket

from ..errors import BadPacket, SourceError
from ..tracking import BLENDSHAPE_NAMES, Blendshapes, FaceObservation
from . import SourceContext
from .network import UdpFaces, finite, parse_port

__all__ = ["IFacialMocapFaces", "PORT", "START_V2", "parse_packet"]

PORT = 49983
# What the app waits for before it sends v2 packets (the same bytes THA3's puppeteer sends).
START_V2 = b"iFacialMocap_sahuasouryya9218sauhuiayeta91555dy3719|sendDataVersion=v2"

_KNOWN = frozenset(BLENDSHAPE_NAMES)


def _arkit(key: str) -> str:
    if key.endswith("_L"):
        return key[:-2] + "Left"
    if key.endswith("_R"):
        return key[:-2] + "Right"
    return key


def _numbers(part: str, prefix: str, count: int) -> list[float]:
    fields = part[len(prefix):].split(",")
    if len(fields) != count:
        raise BadPacket("truncated" if len(fields) < count else "malformed",
                        f"{prefix} has {len(fields)} numbers, expected {count}")
    try:
        return finite([float(f) for f in fields], prefix)
    except ValueError:
        raise BadPacket("malformed", f"{prefix} holds something that is not a number") from None


def _read_part(part: str, scores: dict[str, float]) -> list[float] | None:
    """One ``|``-separated part: a shape goes into ``scores``; the head's (rx, ry, rz) returns."""
    if part.startswith("=head#"):
        return _numbers(part, "=head#", 6)[:3]
    if part.startswith(("rightEye#", "leftEye#")):
        _numbers(part, part[:part.index("#") + 1], 3)
        return None
    sep = "&" if "&" in part else "-"       # v2, else v1
    key, found, value = part.partition(sep)
    if not found or not key:
        raise BadPacket("malformed", f"{part[:40]!r} is neither name&value nor name-value")
    try:
        v = float(value)
    except ValueError:
        raise BadPacket("malformed", f"{key[:40]!r} has no number") from None
    finite([v], key[:40])
    name = _arkit(key)
    if name in _KNOWN:
        scores[name] = min(1.0, max(0.0, v / 100.0))
    return None


def parse_packet(text: str) -> tuple[dict[str, float], tuple[float, float, float]]:
    """One packet (v1 or v2) -> (shape scores 0-1 by MediaPipe name, (rx, ry, rz) degrees).

    Raises:
        BadPacket: not an iFacialMocap packet, or one cut short or garbled.
    """
    scores: dict[str, float] = {}
    head: list[float] | None = None
    parts = [part.strip() for part in text.split("|") if part.strip()]
    for i, part in enumerate(parts):
        try:
            head = _read_part(part, scores) or head
        except BadPacket as exc:
            if i < len(parts) - 1 or head is not None:
                raise
            # The last part is broken: cut off mid-way, or the whole packet is something else.
            raise BadPacket("truncated" if scores else "wrong protocol", exc.detail) from None
    if head is None:
        # The app writes the head after the shapes: a packet cut short loses it first.
        kind = "truncated" if scores else "wrong protocol"
        raise BadPacket(kind, "no =head# part" + ("" if scores else " and no ARKit shapes: "
                                                  "not an iFacialMocap packet"))
    rx, ry, rz = head
    return scores, (rx, ry, rz)


class IFacialMocapFaces(UdpFaces):
    """iFacialMocap packets on a UDP port; ``phone`` (an address) gets the start handshake."""

    name = "ifacialmocap"

    def __init__(self, port: int = PORT, *, phone: str | None = None, phone_port: int = PORT,
                 **kw):
        super().__init__(port, **kw)
        self.phone = phone
        self.phone_port = phone_port        # where the app listens for the handshake

    @classmethod
    def from_spec(cls, arg: str | None, ctx: SourceContext) -> "IFacialMocapFaces":
        """``--source ifacialmocap[:PORT]``, ``--phone IP`` for the handshake."""
        port = parse_port(cls.name, arg, PORT)
        if ctx.phone is not None:
            try:
                socket.getaddrinfo(ctx.phone, PORT, socket.AF_INET, socket.SOCK_DGRAM)
            except (OSError, UnicodeError):
                raise SourceError(f"--phone {ctx.phone}: not an address this machine can reach; "
                                  "give the IP address iFacialMocap shows on the phone") from None
        return cls(port, phone=ctx.phone, mirror=ctx.camera.mirror)

    def greet(self, sock: socket.socket) -> None:
        if self.phone is not None:
            sock.sendto(START_V2, (self.phone, self.phone_port))

    def decode(self, data: bytes, t_ms: float) -> FaceObservation:
        # A garbled byte spoils one name or number (counted below), not the whole reading.
        scores, (rx, ry, rz) = parse_packet(data.decode("utf-8", errors="replace"))
        return FaceObservation(Blendshapes.from_dict(scores), yaw=ry, pitch=rx, roll=rz,
                               t_ms=t_ms)
