"""VMC over UDP: OSC bundles written from a real clip's MediaPipe faces (perfect-sync shape names,
the head as a Unity quaternion made by scipy, not by thacam) come out as the webcam path's poses;
VRM presets drive the expressions they name; bad packets are counted and survived.

CI budget: ~5 s (the clip is tracked once per session and shared with test_ifacialmocap.py).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from thacam.capture import CameraSettings
from thacam.retarget import Retargeter
from thacam.sources import SourceContext, create_source
from thacam.sources.network import FRONTAL_PITCH_DEG
from thacam.sources.vmc import VmcFaces
from thacam.tracking import BLENDSHAPE_NAMES, FaceObservation

from network_fixtures import (clip_faces, fuzzed, pose_gap, receive_each, send_all,  # noqa: F401
                              survive_storm)


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def osc(address: str, *args) -> bytes:
    tags, body = ",", b""
    for a in args:
        if isinstance(a, str):
            tags, body = tags + "s", body + _pad(a.encode())
        elif isinstance(a, int):
            tags, body = tags + "i", body + struct.pack(">i", a)
        else:
            tags, body = tags + "f", body + struct.pack(">f", a)
    return _pad(address.encode()) + _pad(tags.encode()) + body


def bundle(*elements: bytes) -> bytes:
    return b"#bundle\0" + struct.pack(">Q", 1) + b"".join(
        struct.pack(">i", len(e)) + e for e in elements)


def head_quaternion(yaw: float, pitch: float, roll: float) -> tuple[float, ...]:
    """The head bone a VMC sender would send for this face: Unity's left-handed frame, the model
    facing +Z with +X on its right, so turning toward image-left of a camera facing it (the
    model's own right) is +Y and its roll runs the other way round on screen. A bone reads a
    face looking ahead as pitch 0, where MediaPipe reads FRONTAL_PITCH_DEG."""
    return tuple(Rotation.from_euler("YXZ", [-yaw, pitch - FRONTAL_PITCH_DEG, -roll],
                                     degrees=True).as_quat())


def packet(obs: FaceObservation, capital: bool = False) -> bytes:
    shapes = [osc("/VMC/Ext/Blend/Val", (n[0].upper() + n[1:]) if capital else n,
                  float(obs.blendshapes[n])) for n in BLENDSHAPE_NAMES[1:]]
    return bundle(
        bundle(osc("/VMC/Ext/OK", 1), osc("/VMC/Ext/T", 12.5)),
        osc("/VMC/Ext/Root/Pos", "root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
        osc("/VMC/Ext/Bone/Pos", "Head", 0.0, 0.06, 0.0,
            *head_quaternion(obs.yaw, obs.pitch, obs.roll)),
        bundle(*shapes, osc("/VMC/Ext/Blend/Apply")))


@pytest.fixture
def source():
    src = VmcFaces(0, host="127.0.0.1").open()
    yield src
    src.close()


def test_poses_over_udp_equal_the_webcam_paths_poses(source, clip_faces):
    samples = receive_each(source, [packet(o, capital=i % 2 == 1)
                                    for i, o in enumerate(clip_faces)])
    for sample, obs in zip(samples, clip_faces):
        assert (sample.obs.yaw, sample.obs.pitch, sample.obs.roll) == pytest.approx(
            (obs.yaw, obs.pitch, obs.roll), abs=1e-3)
    gap = pose_gap(samples, clip_faces)
    print(f"\nVMC: max |pose difference| {gap.max():.5f} over {len(samples)} packets")
    assert gap.max() < 0.01                  # float32 values on the wire; nothing else differs
    assert source.packet_stats().dropped == 0


def test_vrm_presets_drive_the_expressions_they_name(source):
    def pose(*shapes):
        [sample] = receive_each(source, [bundle(
            *[osc("/VMC/Ext/Blend/Val", name, value) for name, value in shapes],
            osc("/VMC/Ext/Blend/Apply"))])
        return Retargeter().update(sample.obs)

    wink = pose(("Blink_L", 1.0))
    assert wink["eye_wink_left"] > 0.8 and wink["eye_wink_right"] < 0.2
    assert pose(("A", 1.0))["mouth_aaa"] > 0.8
    assert pose(("A", 0.0), ("U", 1.0))["mouth_uuu"] > 0.5
    assert pose(("U", 0.0), ("Joy", 1.0))["mouth_raised_corner_left"] > 0.8
    # Values persist from one Apply to the next until they change: Joy is still on.
    assert pose()["mouth_raised_corner_right"] > 0.8


def test_blend_values_wait_for_apply_and_a_bone_alone_moves_the_head(source):
    send_all(source, [osc("/VMC/Ext/Blend/Val", "jawOpen", 1.0)])
    assert source.next(timeout=0.2) is None                  # a value alone is no frame
    [sample] = receive_each(source, [osc("/VMC/Ext/Bone/Pos", "Head", 0.0, 0.0, 0.0,
                                         *head_quaternion(12.0, 0.0, 0.0))])
    assert sample.obs.yaw == pytest.approx(12.0, abs=1e-3)
    assert sample.obs.blendshapes["jawOpen"] == 0.0          # not applied yet
    [applied] = receive_each(source, [osc("/VMC/Ext/Blend/Apply")])
    assert applied.obs.blendshapes["jawOpen"] == 1.0 and applied.obs.yaw == pytest.approx(12.0)


def test_a_mirrored_source_mirrors_like_the_webcam(clip_faces):
    src = create_source("vmc:0", SourceContext(CameraSettings(mirror=True)))
    with src:
        [got] = receive_each(src, [packet(clip_faces[60])])
    want = clip_faces[60]
    assert got.obs.mirrored
    assert (got.obs.yaw, got.obs.roll) == pytest.approx((-want.yaw, -want.roll), abs=1e-3)
    assert got.obs.blendshapes["eyeBlinkRight"] == pytest.approx(
        want.blendshapes["eyeBlinkLeft"], abs=1e-6)


def test_bad_packets_are_counted_and_survived(source, clip_faces):
    rng = np.random.default_rng(16)
    real = [packet(o) for o in clip_faces[::4]]
    storm = fuzzed(real, rng, 300)
    nested = osc("/VMC/Ext/Blend/Apply")
    for _ in range(20):
        nested = bundle(nested)
    storm["wrong protocol"] = [b"eyeBlink_L&50|=head#1,2,3,0,0,0|", b'{"yaw": 3}',
                               osc("/avatar/parameters/Blink", 1.0)]
    storm["malformed"] = [nested, osc("/VMC/Ext/Blend/Val", 1.0, "jawOpen"),
                          osc("/VMC/Ext/Bone/Pos", "Head", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
                          osc("/VMC/Ext/Blend/Val", "jawOpen", float("nan"))]
    stats = survive_storm(source, storm, rng)
    # A packet with only valid non-face VMC messages is neither a face nor rejected.
    assert stats.faces + stats.dropped <= stats.received
    assert stats.rejected["truncated"] >= 250
    assert stats.rejected["wrong protocol"] >= 3 and stats.rejected["malformed"] >= 4
    print(f"\nVMC fuzz: {stats.received} bad packets sent, {stats.faces} survived as faces "
          f"(garbled values that still parse), {stats.dropped} dropped {stats.rejected}")
    [after] = receive_each(source, [packet(clip_faces[7])])
    assert after.obs.yaw == pytest.approx(clip_faces[7].yaw, abs=1e-3)
    assert after.obs.blendshapes["jawOpen"] == pytest.approx(
        clip_faces[7].blendshapes["jawOpen"], abs=1e-6)
