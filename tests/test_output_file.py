"""VideoFileSink: every format decodes back with the right frame count, size and (where kept) alpha."""

from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image

from thacam.output import composite
from thacam.output.video import VideoFileSink


def _frames(n=3, size=64):
    frames = []
    for i in range(n):
        f = np.zeros((size, size, 4), np.uint8)
        f[8:40, 8 + i * 4:40 + i * 4] = (220, 40, 40, 255)  # an opaque red square that moves
        frames.append(f)
    return frames


def _decode_rgba(path, size):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt",
                          "rgba", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 4)


def test_mp4_is_flattened_over_the_background(tmp_path):
    out = tmp_path / "a.mp4"
    with VideoFileSink(out, fps=10, background=(0, 255, 0)) as sink:
        for f in _frames():
            sink.send(f, 0.0)
    cap = cv2.VideoCapture(str(out))
    got = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        got.append(bgr)
    assert len(got) == 3 and got[0].shape == (64, 64, 3)
    assert got[0][60, 60, 1] > 200 and got[0][60, 60, 2] < 60  # background green (BGR)
    assert got[0][20, 20, 2] > 170                               # the red square
    assert not list(tmp_path.glob(".*part*"))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
@pytest.mark.parametrize("suffix", [".webm", ".mov"])
def test_alpha_formats_keep_transparency(tmp_path, suffix):
    out = tmp_path / f"a{suffix}"
    with VideoFileSink(out, fps=10) as sink:
        for f in _frames():
            sink.send(f, 0.0)
    rgba = _decode_rgba(out, 64)
    if suffix == ".webm":  # VP9 alpha is in a side channel that only libvpx decodes
        rgba = np.frombuffer(subprocess.run(
            ["ffmpeg", "-v", "error", "-c:v", "libvpx-vp9", "-i", str(out), "-f", "rawvideo",
             "-pix_fmt", "rgba", "-"], capture_output=True, check=True).stdout,
            np.uint8).reshape(-1, 64, 64, 4)
    assert rgba.shape[0] == 3
    assert rgba[0, 60, 60, 3] < 16 and rgba[0, 20, 20, 3] > 240


def test_folder_of_pngs_and_abort_leaves_nothing(tmp_path):
    folder = tmp_path / "frames"
    with VideoFileSink(folder) as sink:
        for f in _frames():
            sink.send(f, 0.0)
    files = sorted(folder.glob("*.png"))
    assert [p.name for p in files] == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert np.array_equal(np.asarray(Image.open(files[1])), _frames()[1])
    out = tmp_path / "b.mp4"
    with pytest.raises(RuntimeError):
        with VideoFileSink(out) as sink:
            sink.send(_frames()[0], 0.0)
            raise RuntimeError("crash mid-write")
    assert not out.exists() and not list(tmp_path.glob(".b*"))


def test_composite_is_exact_for_every_colour_and_alpha_in_both_channel_orders():
    # Every (value, alpha) pair, one per pixel, over three backgrounds: round(mix / 255) exactly.
    c, a = np.meshgrid(np.arange(256), np.arange(256))
    f = np.stack([c, 255 - c, c // 2, a], axis=-1).astype(np.uint8)
    for bg in ((0, 255, 0), (255, 0, 77), (13, 128, 255)):
        rgb = composite(f, bg)
        mix = f[..., :3].astype(np.int64) * a[..., None] + np.array(bg) * (255 - a[..., None])
        assert np.array_equal(rgb, np.floor(mix / 255 + 0.5).astype(np.uint8)), bg
        assert np.array_equal(composite(f, bg, bgr=True), rgb[..., ::-1])
    assert rgb.dtype == np.uint8 and rgb.shape == (256, 256, 3)


def test_composite_and_frame_checks(tmp_path):
    f = np.zeros((2, 2, 4), np.uint8)
    f[0, 0] = (100, 100, 100, 128)
    rgb = composite(f, (0, 255, 0))
    assert tuple(rgb[0, 0]) == (50, 177, 50) and tuple(rgb[1, 1]) == (0, 255, 0)
    sink = VideoFileSink(tmp_path / "c.mp4")
    sink.send(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="frame size changed"):
        sink.send(np.zeros((16, 8, 4), np.uint8))
    sink.close()
