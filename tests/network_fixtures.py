"""What the network-source tests share: a real clip's MediaPipe faces, a UDP sender, the direct
path to compare with, and a fuzzer that cuts and garbles real packets.

The packets the tests send are built from what MediaPipe really saw in d11 (a person talking,
blinking twice and turning the head about +-10 deg), written in each protocol the way the trackers
write them, so the poses that come out of a network source can be held against the poses the
webcam path makes from the very same faces.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from thacam.pose import NAMES
from thacam.retarget import Retargeter
from thacam.tracking import FaceObservation, FaceTracker

CLIP = "d11"        # 225 frames at 25 fps; blinks, mouth to jawOpen 0.61, yaw -9..+10 deg


@pytest.fixture(scope="session")
def clip_faces(landmarker_model: Path, faces_dir: Path) -> list[FaceObservation]:
    """Every face MediaPipe finds in the clip (unmirrored, the file's clock)."""
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(faces_dir / f"{CLIP}.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    out = []
    with FaceTracker(landmarker_model) as tracker:
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            obs = tracker.detect_rgb(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), i * 1000.0 / fps)
            if obs is not None:
                out.append(obs)
            i += 1
    cap.release()
    assert len(out) > 200, f"{CLIP}: MediaPipe found {len(out)} faces"
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sender:
    """A UDP socket aimed at a source's port on this machine."""

    def __init__(self, port: int):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, data: bytes) -> float:
        from thacam.capture import now_ms
        t = now_ms()
        self.sock.sendto(data, ("127.0.0.1", self.port))
        return t

    def close(self) -> None:
        self.sock.close()


def receive_each(source, packets: list[bytes]) -> list:
    """Send each packet and take the sample it makes before sending the next (none skipped)."""
    source.next(timeout=0.0)        # whatever came before is not an answer to these
    sender = Sender(source.port)
    try:
        samples = []
        for data in packets:
            sender.send(data)
            sample = source.next(timeout=2.0)
            assert sample is not None, f"no sample for packet {len(samples)}"
            samples.append(sample)
        return samples
    finally:
        sender.close()


def send_all(source, packets: list[bytes], every: int = 16) -> None:
    """Send every packet, waiting for the receiver to read each batch (a local UDP buffer that
    overflows would drop datagrams before the source ever saw them)."""
    sender = Sender(source.port)
    try:
        start = source.packet_stats().received
        for n, data in enumerate(packets, 1):
            sender.send(data)
            if n % every == 0 or n == len(packets):
                deadline = time.monotonic() + 5.0
                while source.packet_stats().received < start + n:
                    assert time.monotonic() < deadline, "the receiver stopped reading"
                    time.sleep(0.001)
    finally:
        sender.close()


def pose_gap(samples, faces: list[FaceObservation]) -> np.ndarray:
    """Max |difference| per pose parameter between the poses of the received samples and the
    direct path's poses of the same faces at the same times (a fresh Retargeter each). The
    direct faces lose their landmarks: a phone sends scores and angles only, and retarget opens
    the mouth by the landmarks' lip gap when it has them."""
    over_udp, direct = Retargeter(), Retargeter()
    gaps = np.zeros(len(NAMES))
    no_landmarks = np.zeros((0, 3), np.float32)
    for sample, obs in zip(samples, faces, strict=True):
        a = over_udp.update(sample.obs).values
        b = direct.update(dataclasses.replace(obs, t_ms=sample.obs.t_ms,
                                              landmarks=no_landmarks)).values
        gaps = np.maximum(gaps, np.abs(a - b))
    return gaps


def fuzzed(packets: list[bytes], rng: np.random.Generator, n: int) -> dict[str, list[bytes]]:
    """Real packets cut short, garbled and blown up, plus other protocols' and random bytes."""
    pick = [packets[int(i)] for i in rng.integers(0, len(packets), n)]
    garbled = []
    for p in pick:
        b = bytearray(p)
        for i in rng.integers(0, len(b), 1 + int(rng.integers(0, 8))):
            b[int(i)] = int(rng.integers(0, 256))
        garbled.append(bytes(b))
    return {
        "truncated": [p[:int(rng.integers(1, len(p)))] for p in pick],
        "garbled": garbled,
        "oversized": [pick[0] * (1 + 40_000 // len(pick[0])), bytes(65_000)],
        "random": [rng.bytes(int(rng.integers(1, 3000))) for _ in range(n // 4)] + [b""],
    }


def survive_storm(source, storm: dict[str, list[bytes]], rng: np.random.Generator):
    """Send every packet of ``storm`` (shuffled) and check what every network source must do:
    nothing raised, every packet counted, each oversized one rejected as such. Returns the
    stats for the source's own checks."""
    everything = [p for group in storm.values() for p in group]
    rng.shuffle(everything)
    send_all(source, everything)
    stats = source.packet_stats()
    assert source.error is None and stats.received == len(everything)
    assert stats.rejected["oversized"] == len(storm["oversized"])
    return stats
