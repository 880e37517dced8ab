"""OpenSeeFace over UDP: packets that real OpenSeeFace sent for known pictures
(tests/data/openseeface_packets.json, made by scripts/openseeface_packets.py from scikit-image's
astronaut photo: as it is, mirrored, rolled +-15 deg, turned toward image-right and that mirrored)
are read by thacam's source; the angles it reads are held against the pictures' geometry and
against what thacam's own MediaPipe tracker reads from the very same pixels; the features drive
the ARKit shapes retarget reads; bad packets are counted and survived.

CI budget: ~3 s (MediaPipe on six 640x640 pictures).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from thacam.capture import CameraSettings
from thacam.errors import BadPacket, SourceError
from thacam.retarget import Retargeter
from thacam.sources import SOURCES, SourceContext, create_source
from thacam.sources.network import FRONTAL_PITCH_DEG
from thacam.sources.openseeface import (FACE_BYTES, FEATURES, PORT, OpenSeeFaceFaces,
                                        head_angles, parse_face)

from network_fixtures import Sender, fuzzed, receive_each, survive_storm

REPO = Path(__file__).resolve().parent.parent
RECORDED = json.loads((REPO / "tests" / "data" / "openseeface_packets.json").read_text())
PACKETS = {s["image"]: base64.b64decode(s["packet"]) for s in RECORDED["shots"]}
_FEATURES_AT = FACE_BYTES - 4 * len(FEATURES)


def _script():
    spec = importlib.util.spec_from_file_location(
        "openseeface_packets", REPO / "scripts" / "openseeface_packets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_values(packet: bytes, *, open_eyes: tuple[float, float] | None = None,
                **features: float) -> bytes:
    """A real packet with some eye openness or feature values written over (little-endian
    float32 at their places in the record)."""
    b = bytearray(packet)
    if open_eyes is not None:
        struct.pack_into("<2f", b, 20, *open_eyes)
    for name, value in features.items():
        struct.pack_into("<f", b, _FEATURES_AT + 4 * FEATURES.index(name), value)
    return bytes(b)


@pytest.fixture(scope="module")
def mediapipe_angles(landmarker_model) -> dict[str, tuple[float, float, float]]:
    """What thacam's own tracker reads from each recorded picture: (yaw, pitch, roll)."""
    from thacam.tracking import FaceTracker
    out = {}
    for name, rgb in _script().images().items():
        with FaceTracker(landmarker_model) as tracker:
            obs = tracker.detect_rgb(rgb, 0.0)
        assert obs is not None, f"MediaPipe found no face in {name}"
        out[name] = (obs.yaw, obs.pitch, obs.roll)
    return out


@pytest.fixture
def source():
    src = OpenSeeFaceFaces(0, host="127.0.0.1").open()
    yield src
    src.close()


@pytest.fixture
def received(source) -> dict[str, tuple[float, float, float]]:
    """Every recorded packet sent to the source over UDP: (yaw, pitch, roll) it read."""
    names = list(PACKETS)
    samples = receive_each(source, [PACKETS[n] for n in names])
    stats = source.packet_stats()
    assert stats.faces == stats.received == len(names) and stats.dropped == 0
    return {n: (s.obs.yaw, s.obs.pitch, s.obs.roll) for n, s in zip(names, samples)}


# ---------------------------------------------------------------------- the real packets

def test_the_recording_is_real_openseeface_output():
    assert RECORDED["openseeface_commit"] == _script().OSF_COMMIT
    assert set(PACKETS) == set(_script().SHOTS)
    for name, data in PACKETS.items():
        assert len(data) == FACE_BYTES == 1785, name
        face = parse_face(data)
        assert face.fitted and (face.width, face.height) == (640, 640)
        # OpenSeeFace's own Euler triple (cv2.RQDecomp3x3, a frontal face near (180, 0, 90))
        # and the quaternion are one rotation: its yaw agrees with the one read here.
        assert face.euler[0] == pytest.approx(165, abs=10) and face.euler[2] == pytest.approx(
            90, abs=20)


def test_landmark_sides_are_the_subjects():
    """Landmarks 36-41 (the eye OpenSeeFace's eye_blink[0] and eye_r come from) lie on
    image-left of an unmirrored picture: the subject's right eye, ARKit's eyeBlinkRight."""
    for name in ("original", "roll_ccw15", "roll_cw15", "turn_right25"):
        lms = parse_face(PACKETS[name]).landmarks
        assert lms[36:42, 0].max() < lms[42:48, 0].min(), name
        assert lms[58, 0] < lms[62, 0], name     # mouth_corner_*_r's corner is image-left too


def test_angles_follow_the_pictures_and_mediapipe(received, mediapipe_angles):
    osf, mp = received, mediapipe_angles
    table = "\n".join(f"{n:22s} OpenSeeFace {o[0]:6.1f} {o[1]:6.1f} {o[2]:6.1f}   MediaPipe "
                      f"{m[0]:6.1f} {m[1]:6.1f} {m[2]:6.1f}" for n in PACKETS
                      for o, m in [(osf[n], mp[n])])
    print("\nyaw, pitch, roll (deg):\n" + table)
    # Turned toward image-right: yaw > 0, as MediaPipe reads it; its mirror image the opposite.
    assert osf["turn_right25"][0] > 3 and mp["turn_right25"][0] > 3
    assert osf["turn_right25_mirrored"][0] < -3 and mp["turn_right25_mirrored"][0] < -3
    assert osf["turn_right25"][0] - osf["original"][0] > 5
    # The plain photo mirrored: the opposite yaw sign.
    assert np.sign(osf["original"][0]) == -np.sign(osf["mirrored"][0]) != 0
    # Rolled 15 deg counter-clockwise on screen / clockwise: roll up / down by about 15 deg,
    # the same sense as MediaPipe's.
    for name, turn in (("roll_ccw15", 15.0), ("roll_cw15", -15.0)):
        got = osf[name][2] - osf["original"][2]
        ref = mp[name][2] - mp["original"][2]
        assert got == pytest.approx(turn, abs=4), name
        assert np.sign(got) == np.sign(ref) == np.sign(turn), name
    assert osf["roll_ccw15"][2] > 5 > -5 > osf["roll_cw15"][2]
    # Pitch: the tilt in the picture's own plane leaves it where it was.
    pitches = [o[1] for o in osf.values()]
    assert max(pitches) - min(pitches) < 3


def test_a_failed_3d_fit_is_no_sample_and_no_error(source):
    data = bytearray(PACKETS["original"])
    data[28] = 0                                       # OpenSeeFace's "3-D fit failed" flag
    struct.pack_into("<4f", data, 33, 0, 0, 0, 0)       # what it sends with it
    receive_each(source, [PACKETS["original"]])
    sender = Sender(source.port)
    sender.send(bytes(data))
    sender.close()
    assert source.next(timeout=0.5) is None
    stats = source.packet_stats()
    assert stats.received == 2 and stats.faces == 1 and stats.dropped == 0


# ------------------------------------------------------------------------- the mapping

def test_features_drive_the_shapes_retarget_reads(source):
    base = PACKETS["original"]
    shut = with_values(base, open_eyes=(0.0, 0.0))
    wink = with_values(base, open_eyes=(1.0, 0.0))         # the subject's left eye shut
    talk = with_values(base, mouth_open=1.0)
    smile = with_values(base, mouth_corner_updown_l=-1.0, mouth_corner_updown_r=-1.0,
                        mouth_wide=0.6)
    pucker = with_values(base, mouth_wide=-1.0)
    brows = with_values(base, eyebrow_updown_l=1.0, eyebrow_updown_r=1.0)
    frown = with_values(base, eyebrow_updown_l=-1.0, eyebrow_updown_r=-1.0)
    names = ("base", "shut", "wink", "talk", "smile", "pucker", "brows", "frown")
    samples = receive_each(source, [base, shut, wink, talk, smile, pucker, brows, frown])
    got = dict(zip(names, (s.obs.blendshapes for s in samples)))
    assert got["base"]["eyeBlinkLeft"] == got["base"]["jawOpen"] == 0
    assert got["shut"]["eyeBlinkLeft"] == got["shut"]["eyeBlinkRight"] == 1
    assert got["wink"]["eyeBlinkLeft"] == 1 and got["wink"]["eyeBlinkRight"] == 0
    assert got["talk"]["jawOpen"] == 0.5
    assert got["smile"]["mouthSmileLeft"] == got["smile"]["mouthSmileRight"] == 1
    assert got["pucker"]["mouthPucker"] == pytest.approx(0.6)
    assert got["brows"]["browInnerUp"] == 1 and got["frown"]["browDownLeft"] == 1

    def pose(data_name: str, warm: int = 30):
        r = Retargeter()
        for i in range(warm):       # eyes open for a second first: the blink baselines learn
            r.update(samples[0].obs.__class__(samples[0].obs.blendshapes, 0, 0, 0, i * 33.0))
        obs = samples[names.index(data_name)].obs
        return r.update(obs.__class__(obs.blendshapes, obs.yaw, obs.pitch, obs.roll,
                                      warm * 33.0))
    assert pose("shut")["eye_wink_left"] == pose("shut")["eye_wink_right"] == 1
    assert pose("wink")["eye_wink_left"] == 1 and pose("wink")["eye_wink_right"] == 0
    assert max(pose("talk")[v] for v in ("mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee",
                                         "mouth_ooo")) > 0.9
    assert pose("smile")["mouth_raised_corner_left"] == 1
    assert pose("pucker")["mouth_uuu"] + pose("pucker")["mouth_ooo"] > 0.5
    assert pose("brows")["eyebrow_raised_left"] == 1
    assert pose("frown")["eyebrow_angry_left"] == 1


def test_pitch_reads_as_mediapipes_after_the_receiver(received):
    """The decoder gives pitch with MediaPipe's frontal bias taken off; the shared receiver puts
    it back: what comes out is OpenSeeFace's own reading."""
    face = parse_face(PACKETS["original"])
    assert received["original"][1] == pytest.approx(head_angles(face.quaternion)[1], abs=1e-6)
    assert FRONTAL_PITCH_DEG != 0


def test_a_mirrored_source_mirrors_like_the_webcam():
    src = create_source("openseeface:0", SourceContext(CameraSettings(mirror=True)))
    with src:
        [got] = receive_each(src, [with_values(PACKETS["turn_right25"], open_eyes=(1.0, 0.2))])
    yaw, pitch, roll = head_angles(parse_face(PACKETS["turn_right25"]).quaternion)
    assert got.obs.mirrored and got.obs.yaw == pytest.approx(-yaw)
    assert got.obs.roll == pytest.approx(-roll)
    assert got.obs.blendshapes["eyeBlinkRight"] == pytest.approx(0.8)


# --------------------------------------------------------------------------- bad packets

def test_bad_packets_get_clear_errors():
    real = PACKETS["original"]
    with pytest.raises(BadPacket, match=r"truncated: 1000 bytes is not a whole number of "
                                        r"1785-byte OpenSeeFace faces"):
        parse_face(real[:1000])
    with pytest.raises(BadPacket, match="truncated: 20 bytes, where an OpenSeeFace face takes "
                                        "1785"):
        parse_face(real[:20])
    with pytest.raises(BadPacket, match="malformed: .* not a whole number"):
        parse_face(real + real[:100])
    with pytest.raises(BadPacket, match="wrong protocol: .*not an OpenSeeFace packet"):
        parse_face(b"jawOpen&5|=head#1,2,3,0,0,0|" * 70)
    with pytest.raises(BadPacket, match="wrong protocol"):
        parse_face(b"/VMC/Ext/OK\0,i\0\0\0\0\0\1")
    with pytest.raises(BadPacket, match="malformed: the head holds a non-finite number"):
        parse_face(real[:33] + struct.pack("<f", float("nan")) + real[37:])
    with pytest.raises(BadPacket, match="malformed: landmarks or features"):
        parse_face(with_values(real, mouth_open=float("inf")))
    with pytest.raises(BadPacket, match="not a unit quaternion"):
        parse_face(real[:33] + struct.pack("<f", 3.0) + real[37:])
    # Two faces (OpenSeeFace --faces 2): the first is read.
    assert parse_face(real + PACKETS["mirrored"]).landmarks[36, 0] == pytest.approx(
        parse_face(real).landmarks[36, 0])


def test_bad_packets_are_counted_and_survived(source):
    rng = np.random.default_rng(11)
    storm = fuzzed(list(PACKETS.values()), rng, 200)
    storm["wrong protocol"] = [b"jawOpen&5|=head#1,2,3,0,0,0|", b"/VMC/Ext/OK\0,i\0\0\0\0\0\1",
                               bytes(FACE_BYTES), b"\xff" * FACE_BYTES]
    stats = survive_storm(source, storm, rng)
    assert stats.faces + stats.dropped == stats.received
    assert stats.rejected["truncated"] >= 150 and stats.rejected["wrong protocol"] >= 4
    print(f"\nOpenSeeFace fuzz: {stats.received} bad packets, {stats.faces} read as faces "
          f"(garbled values that still parse), {stats.dropped} dropped {stats.rejected}")
    [after] = receive_each(source, [PACKETS["roll_ccw15"]])
    assert after.obs.roll == pytest.approx(head_angles(
        parse_face(PACKETS["roll_ccw15"]).quaternion)[2])


# ------------------------------------------------------------------------------ registry

def test_the_source_is_registered_with_its_port():
    assert "openseeface" in SOURCES
    src = create_source("openseeface", SourceContext())
    assert isinstance(src, OpenSeeFaceFaces) and src.port == PORT == 11573
    assert create_source("openseeface:4000", SourceContext()).port == 4000
    with pytest.raises(SourceError, match="--source openseeface:x: the port must be a number"):
        create_source("openseeface:x", SourceContext())
