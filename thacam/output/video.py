"""File outputs: a video file (``.mp4`` over a background colour; ``.webm``/``.mov`` with alpha
through ffmpeg) or a folder of numbered PNGs with alpha. Files are written under a temporary
name and renamed on close, so a crash never leaves half a video under the final name.

Must not import torch.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import OutputError, UserError
from ..files import atomic_write_bytes, temp_beside
from . import CHROMA_GREEN, FrameSink, SinkContext, check_frame, composite

__all__ = ["VideoFileSink", "ALPHA_SUFFIXES"]

log = logging.getLogger(__name__)

ALPHA_SUFFIXES = (".webm", ".mov")


class VideoFileSink(FrameSink):
    """Writes frames to a video file or a folder of PNGs.

    ``.mp4`` (and other suffixes OpenCV writes) are flattened over ``background``; ``.webm``
    (VP9, yuva420p) and ``.mov`` (ProRes 4444) keep alpha and need the ``ffmpeg`` program;
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

    @classmethod
    def from_spec(cls, arg: str | None, ctx: SinkContext) -> "VideoFileSink":
        """``--output FILE`` (or ``file:FILE``): written at the run's rate over [output]
        background."""
        if not arg:
            raise UserError("--output file:PATH needs a path, e.g. --output out/live.mp4")
        return cls(Path(arg), fps=ctx.fps, background=ctx.settings.background)

    @property
    def description(self) -> str:
        return str(self.path)

    # -- opening happens on the first frame, when the size is known
    def _open(self, w: int, h: int) -> None:
        if self.kind == "opencv":
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise OutputError(f"OpenCV cannot write {self.path}; try a .mp4 name or a folder")
        elif self.kind == "alpha":
            codec = (["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-b:v", "0", "-crf", "30",
                      "-auto-alt-ref", "0", "-deadline", "realtime", "-cpu-used", "8"]
                     if self.path.suffix.lower() == ".webm" else
                     # ProRes 4444 keeps alpha and is what video editors import everywhere.
                     ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le",
                      "-alpha_bits", "16", "-vendor", "apl0"])
            cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
                   "-pix_fmt", "rgba", "-s", f"{w}x{h}", "-r", f"{self.fps:g}", "-i", "-", *codec,
                   "-f", "webm" if self.path.suffix.lower() == ".webm" else "mov", str(self._tmp)]
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, rgba: np.ndarray, t_capture_ms: float = 0.0) -> None:
        w, h = check_frame(rgba, self._size)
        if self._size is None:
            self._size = (w, h)
            self._open(w, h)
        if self.kind == "opencv":
            self._writer.write(cv2.cvtColor(composite(rgba, self.background), cv2.COLOR_RGB2BGR))
        elif self.kind == "alpha":
            try:
                self._proc.stdin.write(np.ascontiguousarray(rgba).tobytes())
            except BrokenPipeError:
                err = self._proc.stderr.read().decode(errors="replace").strip()
                raise OutputError(f"ffmpeg stopped while writing {self.path}: {err}") from None
        else:
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
