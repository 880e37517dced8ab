"""Capture stage: the newest-frame slot, video files played as cameras, lost and returning sources.

CI budget: ~5 s (no model; one real clip decoded).
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from thacam.capture import Capture, Latest, parse_size
from thacam.capture.opencv import (CameraSource, VideoFileSource, open_source, probe_cameras,
                                   video_frames, video_info)
from thacam.errors import CameraUnavailable, CaptureError, UserError


# ------------------------------------------------------------------------------ the slot

def test_latest_keeps_only_the_newest_and_counts_what_nobody_read():
    slot: Latest[int] = Latest()
    assert slot.peek() == (0, None)
    assert slot.wait_newer(0, timeout=0.01) is None
    for v in (10, 11, 12):
        slot.put(v)
    assert slot.wait_newer(0, timeout=0) == (3, 12)
    assert slot.dropped == 2                     # 10 and 11 were overwritten unread
    slot.put(13)
    assert slot.peek() == (4, 13)
    slot.put(14)
    assert slot.dropped == 2                     # 13 was read: nothing dropped
    assert slot.wait_newer(5, timeout=0.01) is None


def test_latest_wakes_a_waiting_reader():
    slot: Latest[str] = Latest()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.wait_newer(0, timeout=5)))
    t.start()
    slot.put("frame")
    t.join(5)
    assert got == [(1, "frame")]


# ------------------------------------------------------------------------------ sources

def test_video_file_is_rgb_and_paced_by_the_wall_clock(faces_dir):
    clip = faces_dir / "d0.mp4"
    cap = cv2.VideoCapture(str(clip))
    ok, bgr0 = cap.read()
    cap.release()
    src = VideoFileSource(clip)
    src.open()
    try:
        assert src.fps == pytest.approx(25.0)
        first = src.read()
        assert first.shape == (512, 512, 3) and first.dtype == np.uint8
        assert np.array_equal(first, cv2.cvtColor(bgr0, cv2.COLOR_BGR2RGB))  # RGB, not BGR
        assert src.position == 0
        time.sleep(0.6)
        src.read()
        # 0.6 s later a camera would be >= 15 frames further: the file skips, it never queues.
        assert src.position >= 14 and src.skipped >= 13
    finally:
        src.close()


def test_video_file_loops_and_resizes(tmp_path):
    path = tmp_path / "three.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 100, (64, 48))
    for i in range(3):
        w.write(np.full((48, 64, 3), 60 * i + 20, np.uint8))
    w.release()
    src = VideoFileSource(path, size=(32, 24), fps=50.0)
    src.open()
    positions = []
    for _ in range(7):
        frame = src.read()
        assert frame.shape == (24, 32, 3)
        # position names the file frame really shown (grey level 20, 80, 140)
        assert abs(int(frame.mean()) - (60 * src.position + 20)) < 10
        positions.append(src.position)
    src.close()
    assert set(positions) <= {0, 1, 2}
    assert any(b < a for a, b in zip(positions, positions[1:]))   # it wrapped around


def test_open_source_parses_indices_devices_and_files(tmp_path, faces_dir):
    assert isinstance(open_source("0"), CameraSource) and open_source("0").device == 0
    assert isinstance(open_source("/dev/video7"), CameraSource)
    assert isinstance(open_source(str(faces_dir / "d0.mp4")), VideoFileSource)
    with pytest.raises(CameraUnavailable, match="no such file or camera"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(UserError, match="is a folder"):
        open_source(str(tmp_path))
    assert parse_size("640x480") == (640, 480) and parse_size(None) is None
    for bad in ("640", "0x480", "axb"):
        with pytest.raises(UserError, match="WIDTHxHEIGHT"):
            parse_size(bad)


def test_a_missing_camera_lists_the_cameras_that_do_open():
    found = probe_cameras()
    missing = next(i for i in range(50, 60) if i not in found)
    with pytest.raises(CameraUnavailable) as info:
        CameraSource(missing).open()
    msg = str(info.value)
    assert f"camera {missing} did not open" in msg
    if found:
        assert "cameras that do open here: " + ", ".join(map(str, found)) in msg
    else:
        assert "no camera opens here" in msg and "--camera clip.mp4" in msg


# ------------------------------------------------------------------------------ the thread

class FlakySource:
    """Delivers ``good`` frames, then is lost; reopening fails ``refusals`` times, then works."""

    description = "flaky test camera"

    def __init__(self, good: int, refusals: int):
        self.good = good
        self.refusals = refusals
        self.opens = 0
        self.reads = 0
        self.is_open = False

    def open(self) -> None:
        self.opens += 1
        if 1 < self.opens <= 1 + self.refusals:
            raise CameraUnavailable("still unplugged")
        self.is_open = True

    def read(self):
        time.sleep(0.002)
        if not self.is_open:
            return None
        self.reads += 1
        if self.reads == self.good:     # lost once, right after the good frames
            return None
        return np.full((4, 4, 3), self.reads % 256, np.uint8)

    def close(self) -> None:
        self.is_open = False


def test_capture_survives_a_lost_source_and_reopens_it():
    src = FlakySource(good=5, refusals=2)
    cap = Capture(src, retry_s=0.01)
    with cap:
        deadline = time.monotonic() + 10
        while cap.stats.reopens < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        seq_back = cap.frames.seq
        got = cap.frames.wait_newer(seq_back, timeout=5)
        assert cap.alive
    assert not cap.alive and not src.is_open                 # stopped and closed
    st = cap.stats
    assert st.losses == 1 and st.reopens == 1 and src.opens == 4   # start + 2 refused + back
    assert got is not None and got[1].index >= 4              # frames flow again after the loss
    assert not [t for t in threading.enumerate() if t.name == "thacam-capture"]


def test_capture_start_fails_at_once_on_a_missing_camera():
    class Missing:
        description = "camera 9"

        def open(self):
            raise CameraUnavailable("camera 9 did not open")

        def read(self):
            raise AssertionError("never read")

        def close(self):
            pass

    with pytest.raises(CaptureError, match="camera 9"):
        Capture(Missing()).start()


def test_video_frames_reads_every_frame_on_the_files_clock(tmp_path, faces_dir):
    frames = list(video_frames(faces_dir / "d0.mp4"))
    count, fps = video_info(faces_dir / "d0.mp4")
    assert len(frames) == count == 78 and fps > 0
    assert [f.index for f in frames] == list(range(count))
    assert [f.position for f in frames] == list(range(count))
    assert frames[1].t_ms == pytest.approx(1000.0 / fps) and frames[0].rgb.shape[2] == 3
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(CameraUnavailable, match="cannot decode"):
        list(video_frames(broken))
