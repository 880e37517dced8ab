"""Faults and bad input from the operating system and signals: a full disk, a read-only place, a
folder where a file should be, SIGTERM and Ctrl-C, NaN poses and weights, files that are not text,
a WebSocket server that is not OBS, MediaPipe's silencer hiding other threads' logs.

Every case ends in one line (exit 2 for what the user can fix), keeps the previous file, and leaves
no temporary file behind. A full disk is a real tmpfs of a few hundred KB (mounting needs root:
CI runs as root; elsewhere those cases skip with the reason).
CI budget: ~40 s (two short renders with the real model, a few MediaPipe runs).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from thacam.cli import main
from thacam.errors import IncompatibleCheckpoint, OutputError, UserError
from thacam.model import build_network, load_official
from thacam.offline import read_poses
from thacam.output.video import VideoFileSink

REPO = Path(__file__).resolve().parent.parent
TORCH = ["--device", "cpu", "--backend", "torch"]


@contextlib.contextmanager
def _mount(tmp_path: Path, size: str, read_only: bool = False):
    """A real small (or read-only) filesystem, unmounted afterwards."""
    where = tmp_path / ("ro" if read_only else "small")
    where.mkdir()
    opts = f"size={size}" + (",ro" if read_only else "")
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({run.stderr.strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _one_line(err: str) -> str:
    """The one error line (a progress bar drawn before it may stand above it)."""
    lines = [line for line in err.strip().splitlines() if line.startswith("thacam")]
    assert len(lines) == 1 and lines[0].startswith("thacam: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _noise(n: int, size: int = 256) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, size, size, 4), dtype=np.uint8)
    frames[..., 3] = 255
    return list(frames)


# ------------------------------------------------------------------------------- disk full

@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_full_disk_never_replaces_a_good_video_with_a_broken_one(tmp_path, suffix):
    with _mount(tmp_path, "400k") as disk:
        target = disk / f"avatar{suffix}"
        target.write_bytes(b"the previous, good video")
        sink = VideoFileSink(target, fps=10)
        with pytest.raises((OutputError, OSError)) as info:
            with sink:
                for frame in _noise(60):                  # incompressible: far over 400 KB
                    sink.send(frame, 0.0)
        if isinstance(info.value, OutputError):
            assert "previous file (if any) is kept" in str(info.value)
        assert target.read_bytes() == b"the previous, good video"
        assert sorted(p.name for p in disk.iterdir()) == [target.name]   # no .part left


def test_a_full_disk_in_a_png_folder_keeps_the_frames_already_there(tmp_path):
    with _mount(tmp_path, "300k") as disk:
        folder = disk / "frames"
        folder.mkdir()
        (folder / "frame_000000.png").write_bytes(b"old frame")
        sink = VideoFileSink(folder)
        with pytest.raises(OSError):
            with sink:
                for frame in _noise(40):
                    sink.send(frame, 0.0)
        assert not [p for p in folder.iterdir() if not p.name.startswith("frame_")]


def test_track_on_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, faces_dir,
                                                                  landmarker_model, capsys):
    with _mount(tmp_path, "4k") as disk:
        out = disk / "poses.jsonl"
        out.write_text("old poses\n")
        rc = main(["track", "--input", str(faces_dir / "d0.mp4"), "--out", str(out),
                   "--weights", str(landmarker_model.parent)])
        line = _one_line(capsys.readouterr().err)
        assert rc == 2 and f"{out}: No space left on device; free some space" in line
        assert out.read_text() == "old poses\n" and sorted(os.listdir(disk)) == ["poses.jsonl"]


# -------------------------------------------------------------------------- other OS errors

def test_read_only_places_and_folders_are_one_line_before_anything_loads(tmp_path, samples_dir,
                                                                           capsys):
    character = str(samples_dir / "crypko_00.png")
    poses = str(_poses_file(tmp_path / "p.jsonl", 3))
    with _mount(tmp_path, "64k", read_only=True) as ro:
        t0 = time.monotonic()
        for argv in (["render", "--character", character, "--poses", poses, "--out",
                      str(ro / "o.mp4")],
                     ["profile", "init", character, "--out", str(ro / "p.toml")],
                     ["track", "--input", character, "--out", str(ro / "sub" / "p.jsonl")]):
            assert main(argv) == 2, argv
            line = _one_line(capsys.readouterr().err)
            assert "Read-only file system" in line and "write somewhere else" in line, line
        assert time.monotonic() - t0 < 5          # nothing was loaded first
    folder = tmp_path / "taken"
    folder.mkdir()
    assert main(["profile", "init", character, "--out", str(folder), "--force"]) == 2
    assert "give a file name, not a folder" in _one_line(capsys.readouterr().err)
    assert folder.is_dir() and not list(folder.iterdir())


# ---------------------------------------------------------------------------------- signals

def _poses_file(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        rows.append(json.dumps({"t_ms": 100.0 * i, "face": True,
                                "pose": {"head_y": (i % 10) / 10.0}}))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_render_keeps_the_old_video_and_leaves_no_part_file(
        tmp_path, weights_dir, samples_dir, sig, code, word):
    out = tmp_path / "avatar.mp4"
    out.write_bytes(b"the previous, good video")
    poses = _poses_file(tmp_path / "p.jsonl", 200)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "thacam.py"), "render", "--character",
         str(samples_dir / "crypko_00.png"), "--poses", str(poses), "--out", str(out),
         "--weights", str(weights_dir), *TORCH], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not [p for p in tmp_path.iterdir() if ".part" in p.name]:   # the first frame
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"thacam: {word}" and "Traceback" not in err
    assert out.read_bytes() == b"the previous, good video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avatar.mp4", "p.jsonl"]


# ------------------------------------------------------------------------------ bad inputs

def test_nan_and_non_text_poses_are_refused_with_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"t_ms": 0, "pose": {"head_y": 0.1}}\n'
                    '{"t_ms": 33, "pose": {"head_y": NaN, "mouth_aaa": 0.5}}\n')
    with pytest.raises(UserError, match=r"p.jsonl:2: not a thacam pose line \(not a finite "
                                        r"number: head_y\)"):
        read_poses(path)
    path.write_bytes(b'{"t_ms": 0, "pose": {}}\n\xff\xfe\x00garbage\n')
    with pytest.raises(UserError, match=r"p.jsonl: not a text file \(byte 24 is not UTF-8\)"):
        read_poses(path)


def test_nan_weights_and_random_bytes_are_refused_at_load(tmp_path):
    net = build_network("eyebrow_decomposer", "separable")
    state = net.state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    path = tmp_path / "eyebrow_decomposer.pt"
    torch.save(state, path)
    with pytest.raises(IncompatibleCheckpoint, match="NaN or infinite values in " + key):
        load_official(path, build_network("eyebrow_decomposer", "separable"),
                      "eyebrow_decomposer")
    path.write_bytes(os.urandom(4096))
    with pytest.raises(IncompatibleCheckpoint) as info:
        load_official(path, build_network("eyebrow_decomposer", "separable"),
                      "eyebrow_decomposer")
    assert "not a PyTorch checkpoint" in str(info.value) and "unsafe" not in str(info.value)


def test_prepare_refuses_to_write_an_empty_character(tmp_path, samples_dir, weights_dir,
                                                     capsys):
    out = tmp_path / "o.png"
    rc = main(["prepare", str(samples_dir / "crypko_00.png"), "--out", str(out), "--scale",
               "999", "--weights", str(weights_dir)])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    line = _one_line(err)
    assert "almost nothing of the character lands in the 512x512 frame" in line
    assert "mediapipe" not in err.lower() and "tflite" not in err.lower()


def test_stale_frames_from_a_longer_render_are_removed(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        (folder / f"frame_{i:06d}.png").write_bytes(b"old")
    (folder / "notes.txt").write_text("mine")
    with VideoFileSink(folder) as sink:
        for frame in _noise(2, 16):
            sink.send(frame, 0.0)
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000000.png", "frame_000001.png",
                                                         "notes.txt"]
    assert cv2.imread(str(folder / "frame_000001.png")) is not None


# ----------------------------------------------------------------------------------- OBS

class _NotObs:
    """A WebSocket server that answers the handshake, then speaks something else."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(4096).decode(errors="replace")
                key = next((line.split(":", 1)[1].strip() for line in request.split("\r\n")
                            if line.lower().startswith("sec-websocket-key:")), "")
                accept = base64.b64encode(hashlib.sha1(
                    (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
                conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                              "\r\n\r\n").encode())
                payload = b'{"hello": "I am a chat server"}'
                conn.sendall(bytes([0x81, len(payload)]) + payload)
                time.sleep(0.5)

    def close(self):
        self.sock.close()


def test_a_websocket_server_that_is_not_obs_is_named_as_such(capsys):
    server = _NotObs()
    try:
        assert main(["obs", "status", "--obs-port", str(server.port), "-v"]) == 2
    finally:
        server.close()
    line = _one_line(capsys.readouterr().err)
    assert f"127.0.0.1:{server.port} is not obs-websocket 5" in line


# ------------------------------------------------------------------------------- logging

def test_silencing_mediapipe_does_not_hide_other_threads_logging(tmp_path):
    code = """
import logging, os, sys, threading, time
from rich.console import Console
from rich.logging import RichHandler
from thacam.tracking import quiet_stderr
logging.basicConfig(level=logging.INFO, format="%(message)s",
                    handlers=[RichHandler(console=Console(stderr=True), show_time=False,
                                          show_path=False)])
def other():
    time.sleep(0.1)
    logging.getLogger("thacam.obs").warning("OBS rejected the password; OBS control is off")
t = threading.Thread(target=other)
with quiet_stderr():
    t.start()
    os.write(2, b"I0000 mediapipe banner from C++\\n")
    t.join()
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert "OBS rejected the password" in run.stderr       # the other thread's warning shows
    assert "mediapipe banner" not in run.stderr            # the C++ banner does not
