"""File outputs: a video file (``.mp4`` over a background colour; ``.webm``/``.mov`` with alpha
through ffmpeg) or a folder of numbered PNGs with alpha.

Nothing lost, nothing half-written: a video goes to a temporary name beside the target, is decoded
back when it closes (frame count and size: neither OpenCV nor ffmpeg reliably reports a full
disk) and only then renamed over the target; on any failure the temporary file goes and the old
file stays. PNG frames are each written whole (temp + rename), and frames left in the folder by an
earlier, longer render are removed when the new one is complete.

Must not import torch.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import OutputError, UserError
from ..files import atomic_write_bytes, temp_beside
from . import CHROMA_GREEN, FrameSink, SinkContext, check_frame, composite

__all__ = ["VideoFileSink", "ALPHA_SUFFIXES", "decode_count"]

log = logging.getLogger(__name__)

ALPHA_SUFFIXES = (".webm", ".mov")
_FRAME = re.compile(r"frame_(\d{6})\.png")


def decode_count(path: Path) -> tuple[int, tuple[int, int] | None]:
    """(frames that decode, (width, height)) of a video file; (0, None) when it does not open."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0, None
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        n = 0
        while cap.grab():
            n += 1
        return n, size
    finally:
        cap.release()


class VideoFileSink(FrameSink):
    """Writes frames to a video file or a folder of PNGs.

    ``.mp4`` (and other suffixes OpenCV writes) are flattened over ``background``; ``.webm``
    (VP9, yuva420p) and ``.mov`` (ProRes 4444) keep alpha and need the ``ffmpeg`` program;
    a path without a suffix (or an existing folder) gets numbered PNGs with alpha.

    Raises (when made, before anything renders): UserError for a suffix it cannot write, OSError
    for a place it cannot write to.
    """

    encodes = True

    def __init__(self, path: Path | str, fps: float = 30.0,
                 background: tuple[int, int, int] = CHROMA_GREEN):
        self.path = Path(path)
        self.fps = float(fps)
        self.background = background
        self.frames = 0
        self._size: tuple[int, int] | None = None
        self._writer = None
        self._proc: subprocess.Popen | None = None
        self._tmp: Path | None = None
        self._closed = False
        suffix = self.path.suffix.lower()
        self.kind = "folder" if (not suffix or self.path.is_dir()) else \
            "alpha" if suffix in ALPHA_SUFFIXES else "opencv"
        if self.kind == "alpha" and shutil.which("ffmpeg") is None:
            raise UserError(f"--out {self.path}: writing {suffix} with alpha needs the `ffmpeg` "
                            "program (Debian/Ubuntu: sudo apt install ffmpeg); or write .mp4, or "
                            "a folder of PNG frames (a path without a suffix)")
        folder = self.path if self.kind == "folder" else self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        # Checked now, not at the first frame: a model takes seconds to load before that.
        if not os.access(folder, os.W_OK | os.X_OK):
            code = errno.EROFS if _read_only(folder) else errno.EACCES
            raise OSError(code, os.strerror(code), str(folder))

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
        if self.kind == "folder":
            return
        suffix = self.path.suffix.lower()
        self._tmp = temp_beside(self.path, suffix=f".part{suffix}")
        if self.kind == "opencv":
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if suffix == ".mp4" else "MJPG"))
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise OutputError(f"OpenCV cannot write {self.path}; try a .mp4 name or a folder")
            return
        codec = (["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-b:v", "0", "-crf", "30",
                  "-auto-alt-ref", "0", "-deadline", "realtime", "-cpu-used", "8"]
                 if suffix == ".webm" else
                 # ProRes 4444 keeps alpha and is what video editors import everywhere.
                 ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le",
                  "-alpha_bits", "16", "-vendor", "apl0"])
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
               "-pix_fmt", "rgba", "-s", f"{w}x{h}", "-r", f"{self.fps:g}", "-i", "-", *codec,
               "-f", "webm" if suffix == ".webm" else "mov", str(self._tmp)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, rgba: np.ndarray, t_capture_ms: float = 0.0) -> None:
        w, h = check_frame(rgba, self._size)
        if self._size is None:
            self._size = (w, h)
            self._open(w, h)
        if self.kind == "opencv":
            self._writer.write(composite(rgba, self.background, bgr=True))
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
        """Finish the file, check it decodes back whole, then put it in place."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.kind == "folder":
                if self.frames:
                    self._drop_stale_frames()
                return
            if self._writer is not None:
                self._writer.release()
            if self._proc is not None:
                self._proc.stdin.close()
                if self._proc.wait(timeout=120) != 0:
                    err = self._proc.stderr.read().decode(errors="replace").strip()
                    raise OutputError(f"ffmpeg failed writing {self.path}: {err}; the previous "
                                      "file (if any) is kept")
            if self._tmp is None:       # no frame was sent: nothing to write
                return
            got, size = decode_count(self._tmp)
            if got != self.frames or size != self._size:
                raise OutputError(
                    f"{self.path}: the video does not decode back whole ({got} of {self.frames} "
                    "frames); it was not written and the previous file (if any) is kept. Is the "
                    "disk full? Free some space or write somewhere else")
            os.replace(self._tmp, self.path)
            self._tmp = None
        finally:
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop a half-written file (on an error or a signal), leaving the old file in place."""
        self._closed = True
        if self._writer is not None:
            self._writer.release()
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def _drop_stale_frames(self) -> None:
        # An earlier, longer render's frames past this one's end would play on after it.
        for f in self.path.iterdir():
            m = _FRAME.fullmatch(f.name)
            if m and int(m[1]) >= self.frames:
                f.unlink()


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
