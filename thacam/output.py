"""Output stage: where rendered RGBA frames go. One small interface, several sinks.

    FrameSink.send(rgba (H,W,4) uint8, t_capture_ms) ; close() ; context manager

Sinks: VideoFileSink (.mp4 over a background colour; .webm/.mov with alpha through ffmpeg; a
folder of numbered PNGs with alpha). Alpha is flattened onto the background colour in one place,
:func:`composite`. Files are written under a temporary name and renamed on close, so a crash
never leaves half a video behind under the final name.

Must not import torch.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import OutputError, UserError
from .weights import atomic_write_bytes, temp_beside

__all__ = ["FrameSink", "VideoFileSink", "composite", "CHROMA_GREEN", "ALPHA_SUFFIXES"]

log = logging.getLogger(__name__)

CHROMA_GREEN = (0, 255, 0)
ALPHA_SUFFIXES = (".webm", ".mov")


class FrameSink(Protocol):
    def send(self, rgba: np.ndarray, t_capture_ms: float) -> None: ...

    def close(self) -> None: ...


def composite(rgba: np.ndarray, background: tuple[int, int, int] = CHROMA_GREEN) -> np.ndarray:
    """Straight-alpha RGBA over a solid colour -> RGB uint8 (the one place alpha is flattened)."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, np.float32)
    rgb = rgba[..., :3].astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _check(rgba: np.ndarray, size: tuple[int, int] | None) -> tuple[int, int]:
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an (H, W, 4) uint8 frame, got {rgba.shape} {rgba.dtype}")
    h, w = rgba.shape[:2]
    if size is not None and (w, h) != size:
        raise ValueError(f"frame size changed: expected {size[0]}x{size[1]}, got {w}x{h}")
    return w, h


class VideoFileSink:
    """Writes frames to a video file or a folder of PNGs.

    ``.mp4`` (and other suffixes OpenCV writes) are flattened over ``background``; ``.webm``
    (VP9, yuva420p) and ``.mov`` (PNG codec, rgba) keep alpha and need the ``ffmpeg`` program;
    a path without a suffix (or an existing folder) gets numbered PNGs with alpha.
    """

    def __init__(self, path: Path | str, fps: float = 30.0,
                 background: tuple[int, int, int] = CHROMA_GREEN):
        self.path = Path(path)
        self.fps = float(fps)
        self.background = background
        self.frames = 0
        self._size: tuple[int, int] | None = None
        self._writer = None
        self._proc: subprocess.Popen | None = None
        self._closed = False
        suffix = self.path.suffix.lower()
        self.kind = "folder" if (not suffix or self.path.is_dir()) else \
            "alpha" if suffix in ALPHA_SUFFIXES else "opencv"
        if self.kind == "alpha" and shutil.which("ffmpeg") is None:
            raise UserError(f"--out {self.path}: writing {suffix} with alpha needs the `ffmpeg` "
                            "program (Debian/Ubuntu: sudo apt install ffmpeg); or write .mp4, or "
                            "a folder of PNG frames (a path without a suffix)")
        target_dir = self.path if self.kind == "folder" else self.path.parent
        target_dir.mkdir(parents=True, exist_ok=True)
        if self.kind == "folder":
            self._tmp = self.path
        else:
            self._tmp = temp_beside(self.path, suffix=f".part{suffix}")

    # -- opening happens on the first frame, when the size is known
    def _open(self, w: int, h: int) -> None:
        if self.kind == "opencv":
            import cv2
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise OutputError(f"OpenCV cannot write {self.path}; try a .mp4 name or a folder")
        elif self.kind == "alpha":
            codec = (["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-b:v", "0", "-crf", "30",
                      "-auto-alt-ref", "0", "-deadline", "realtime", "-cpu-used", "8"]
                     if self.path.suffix.lower() == ".webm" else ["-c:v", "png", "-pix_fmt", "rgba"])
            cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
                   "-pix_fmt", "rgba", "-s", f"{w}x{h}", "-r", f"{self.fps:g}", "-i", "-", *codec,
                   "-f", "webm" if self.path.suffix.lower() == ".webm" else "mov", str(self._tmp)]
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, rgba: np.ndarray, t_capture_ms: float = 0.0) -> None:
        w, h = _check(rgba, self._size)
        if self._size is None:
            self._size = (w, h)
            self._open(w, h)
        if self.kind == "opencv":
            import cv2
            self._writer.write(cv2.cvtColor(composite(rgba, self.background), cv2.COLOR_RGB2BGR))
        elif self.kind == "alpha":
            try:
                self._proc.stdin.write(np.ascontiguousarray(rgba).tobytes())
            except BrokenPipeError:
                err = self._proc.stderr.read().decode(errors="replace").strip()
                raise OutputError(f"ffmpeg stopped while writing {self.path}: {err}") from None
        else:
            import io

            from PIL import Image
            buf = io.BytesIO()
            Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=1)
            atomic_write_bytes(self.path / f"frame_{self.frames:06d}.png", buf.getvalue())
        self.frames += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.kind == "opencv" and self._writer is not None:
            self._writer.release()
        elif self.kind == "alpha" and self._proc is not None:
            self._proc.stdin.close()
            if self._proc.wait(timeout=120) != 0:
                err = self._proc.stderr.read().decode(errors="replace").strip()
                self._tmp.unlink(missing_ok=True)
                raise OutputError(f"ffmpeg failed writing {self.path}: {err}")
        if self.kind != "folder":
            if self.frames:
                os.replace(self._tmp, self.path)
            else:
                self._tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop a half-written file (on an error), leaving nothing under the final name."""
        self._closed = True
        if self._writer is not None:
            self._writer.release()
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        if self.kind != "folder":
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoFileSink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
