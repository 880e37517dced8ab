"""Output stage: where rendered RGBA frames go. One small interface, several sinks.

    FrameSink.send(rgba (H,W,4) uint8, t_capture_ms) ; close() ; context manager

Sinks: VideoFileSink (.mp4 over a background colour; .webm/.mov with alpha through ffmpeg; a
folder of numbered PNGs with alpha), VirtualCamSink (pyvirtualcam), PreviewSink (an OpenCV window
whose key presses come back to the pipeline as events). Alpha is flattened onto the background colour in one place,
:func:`composite`. Files are written under a temporary name and renamed on close, so a crash
never leaves half a video behind under the final name.

Must not import torch.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .errors import OutputError, UserError, VirtualCameraUnavailable
from .weights import atomic_write_bytes, temp_beside

__all__ = ["FrameSink", "VideoFileSink", "VirtualCamSink", "PreviewSink", "PreviewEvent",
           "composite", "place", "vcam_instructions", "has_display", "CHROMA_GREEN",
           "ALPHA_SUFFIXES", "PLACEMENTS"]

log = logging.getLogger(__name__)

CHROMA_GREEN = (0, 255, 0)
ALPHA_SUFFIXES = (".webm", ".mov")


class FrameSink(Protocol):
    """Where frames go. ``t_capture_ms`` is when the camera frame behind this avatar frame was
    captured (thacam.capture.now_ms clock), for sinks that measure or stamp latency."""

    def send(self, rgba: np.ndarray, t_capture_ms: float) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> "FrameSink": ...

    def __exit__(self, *exc: object) -> None: ...


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
                     if self.path.suffix.lower() == ".webm" else
                     # ProRes 4444 keeps alpha and is what video editors import everywhere.
                     ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le",
                      "-alpha_bits", "16", "-vendor", "apl0"])
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


# ------------------------------------------------------------------------------------- layout

PLACEMENTS = ("center", "bottom", "bottom-left", "bottom-right", "top-left", "top-right")


def place(rgba: np.ndarray, size: tuple[int, int], placement: str = "center",
          scale: float = 1.0) -> np.ndarray:
    """Put the avatar (H,W,4) on a transparent (size[1], size[0], 4) canvas.

    ``scale`` multiplies the avatar's size; ``placement`` says where it sits. Parts that fall
    outside the canvas are cut off (a big avatar in a small frame shows its middle).
    """
    if placement not in PLACEMENTS:
        raise UserError(f"placement {placement!r} is not one of {', '.join(PLACEMENTS)}")
    w, h = size
    if scale != 1.0:
        import cv2
        aw = max(1, round(rgba.shape[1] * scale))
        ah = max(1, round(rgba.shape[0] * scale))
        rgba = cv2.resize(rgba, (aw, ah), interpolation=cv2.INTER_AREA if scale < 1
                          else cv2.INTER_LINEAR)
    ah, aw = rgba.shape[:2]
    if (aw, ah) == (w, h):
        return rgba
    x = {"center": (w - aw) // 2, "bottom": (w - aw) // 2, "bottom-left": 0, "top-left": 0,
         "bottom-right": w - aw, "top-right": w - aw}[placement]
    y = (h - ah) // 2 if placement == "center" else 0 if placement.startswith("top") else h - ah
    canvas = np.zeros((h, w, 4), np.uint8)
    # Intersection of the avatar's rectangle with the canvas, in both coordinate systems.
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + aw, w), min(y + ah, h)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = rgba[y0 - y:y1 - y, x0 - x:x1 - x]
    return canvas


# ----------------------------------------------------------------------------- virtual camera

def vcam_instructions(system: str | None = None) -> str:
    """How to get a virtual camera on this OS (the one place that branches on the platform)."""
    system = system or platform.system()
    if system == "Linux":
        return ("install v4l2loopback (Debian/Ubuntu: sudo apt install v4l2loopback-dkms) and "
                "load it with `sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
                "card_label=thacam`, then start thacam again")
    if system == "Windows":
        return ("install OBS Studio 28+ and click 'Start Virtual Camera' once (then 'Stop'), or "
                "install Unity Capture (keeps transparency; recommended when OBS itself should "
                "pick thacam up), then start thacam again")
    if system == "Darwin":
        return ("install OBS Studio 28+, click 'Start Virtual Camera' once, then 'Stop' (this "
                "installs the camera extension), then start thacam again")
    return "no virtual camera is supported on this system; use --output window or a file"


def has_display() -> bool:
    """Whether a window can be opened (Linux needs an X11 or Wayland session)."""
    if platform.system() == "Linux":
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class VirtualCamSink:
    """Frames to a virtual camera through pyvirtualcam.

    The camera is opened in RGBA where the backend takes it (Unity Capture), else in RGB with the
    avatar flattened over ``background`` (a chroma-key green by default, for OBS to key out). In
    RGBA the colour of fully transparent pixels is the background too, so an app that ignores
    alpha still sees a clean key colour.

    Raises (on open):
        VirtualCameraUnavailable: no virtual camera exists; the message says how to get one.
        UserError: an unknown backend name.
    """

    def __init__(self, size: tuple[int, int] = (512, 512), fps: float = 30.0,
                 backend: str = "auto", device: str | None = None,
                 background: tuple[int, int, int] = CHROMA_GREEN, alpha: bool = True):
        self.size = size
        self.fps = float(fps)
        self.backend = backend or "auto"
        self.device = device or None
        self.background = tuple(background)
        self.alpha = alpha
        self.camera = None
        self.fmt: str | None = None       # "RGBA" or "RGB" once open
        self.frames = 0

    @property
    def description(self) -> str:
        if self.camera is None:
            return "virtual camera"
        return f"virtual camera {self.camera.device} ({self.camera.backend}, {self.fmt})"

    def open(self) -> "VirtualCamSink":
        import pyvirtualcam
        from pyvirtualcam.camera import BACKENDS
        if self.backend != "auto" and self.backend not in BACKENDS:
            known = ", ".join(["auto", *BACKENDS]) if BACKENDS else "none on this system"
            raise UserError(f"virtual camera backend {self.backend!r} does not exist here; "
                            f"choose one of: {known}")
        w, h = self.size
        formats = [pyvirtualcam.PixelFormat.RGB]
        if self.alpha:
            formats.insert(0, pyvirtualcam.PixelFormat.RGBA)
        errors: list[str] = []
        for fmt in formats:
            try:
                self.camera = pyvirtualcam.Camera(
                    w, h, self.fps, fmt=fmt, device=self.device,
                    backend=None if self.backend == "auto" else self.backend)
            except (RuntimeError, ValueError) as exc:
                errors.append(str(exc).strip())
                continue
            self.fmt = fmt.name
            break
        if self.camera is None:
            # The last attempt (RGB) has the reason that matters; RGBA is only a preference.
            reason = errors[-1] if errors and errors[-1] else "no virtual camera backend here"
            raise VirtualCameraUnavailable(
                f"no virtual camera could be opened ({reason.splitlines()[-1]}); "
                + vcam_instructions())
        log.info("%s open: %dx%d at %g fps", self.description, w, h, self.fps)
        return self

    def send(self, rgba: np.ndarray, t_capture_ms: float = 0.0) -> None:
        if self.camera is None:
            raise RuntimeError("VirtualCamSink.open() first")
        _check(rgba, self.size)
        if self.fmt == "RGBA":
            frame = rgba.copy()
            frame[rgba[..., 3] == 0, :3] = self.background
        else:
            frame = composite(rgba, self.background)
        self.camera.send(frame)
        self.frames += 1

    def close(self) -> None:
        cam, self.camera = self.camera, None
        if cam is not None:
            cam.close()

    def __enter__(self) -> "VirtualCamSink":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------ preview

@dataclass(frozen=True)
class PreviewEvent:
    """A key press (or the window closing) the pipeline acts on.

    ``kind``: quit, calibrate, mirror, expression (``slot`` = "1".."9"), message (a key handler
    returned text to show; ``text``).
    """

    kind: str
    slot: str | None = None
    text: str | None = None


_ESC = 27


class PreviewSink:
    """An OpenCV window with the avatar and, toggled with ``v``, the camera with landmarks.

    Keys: c calibrate, m mirror, 1-9 expression presets, v camera view on/off, q or Esc quit.
    ``key_handlers`` maps further keys (one character) to callables; a handler's return value, if
    it is text (or has a ``message``), is shown in the window for a few seconds. A handler for a
    built-in key replaces it. Events are collected in ``events()`` for the pipeline.

    OpenCV's window calls must stay in one thread: the pipeline uses this sink from its main loop
    only (``send`` and ``poll``).
    """

    def __init__(self, title: str = "thacam", show_camera: bool = True,
                 background: tuple[int, int, int] = (48, 48, 48),
                 key_handlers: dict[str, Callable[[], object]] | None = None,
                 check_display: bool = True):
        self.title = title
        self.show_camera = show_camera
        self.background = tuple(background)
        self.key_handlers: dict[str, Callable[[], object]] = dict(key_handlers or {})
        self.check_display = check_display
        self._events: list[PreviewEvent] = []
        self._open = False
        self._shown = False
        self._camera: np.ndarray | None = None
        self._landmarks: np.ndarray | None = None
        self._lines: list[str] = []
        self._message: tuple[str, float] | None = None

    # -- window-free parts (tested without a display) ------------------------------------------

    def set_info(self, camera_rgb: np.ndarray | None = None, landmarks: np.ndarray | None = None,
                 lines: list[str] | None = None) -> None:
        """What the next frame shows beside the avatar: camera image, landmarks, overlay text."""
        self._camera = camera_rgb
        self._landmarks = landmarks
        self._lines = list(lines or [])

    def handle_key(self, key: int) -> PreviewEvent | None:
        """A cv2.waitKeyEx code -> the event it stands for (and run any key handler)."""
        if key is None or key < 0:
            return None
        code = key & 0xFF
        ch = chr(code) if 32 <= code < 127 else ""
        event: PreviewEvent | None = None
        if ch and ch in self.key_handlers:
            result = self.key_handlers[ch]()
            text = result if isinstance(result, str) else getattr(result, "message", None)
            if text:
                self._message = (str(text), time.monotonic() + 3.0)
                event = PreviewEvent("message", text=str(text))
        elif code == _ESC or ch == "q":
            event = PreviewEvent("quit")
        elif ch == "c":
            event = PreviewEvent("calibrate")
        elif ch == "m":
            event = PreviewEvent("mirror")
        elif ch in "123456789" and ch:
            event = PreviewEvent("expression", slot=ch)
        elif ch == "v":
            self.show_camera = not self.show_camera
        if event is not None and event.kind != "message":
            self._events.append(event)
        return event

    def events(self) -> list[PreviewEvent]:
        """Events since the last call, oldest first."""
        out, self._events = self._events, []
        return out

    def show_message(self, text: str, seconds: float = 3.0) -> None:
        self._message = (text, time.monotonic() + seconds)

    def compose(self, rgba: np.ndarray) -> np.ndarray:
        """The BGR image the window shows for this avatar frame."""
        import cv2
        avatar = cv2.cvtColor(composite(rgba, self.background), cv2.COLOR_RGB2BGR)
        panels = [avatar]
        if self.show_camera and self._camera is not None:
            cam = cv2.cvtColor(self._camera, cv2.COLOR_RGB2BGR)
            h = avatar.shape[0]
            scale = h / cam.shape[0]
            cam = cv2.resize(cam, (max(1, round(cam.shape[1] * scale)), h))
            if self._landmarks is not None and len(self._landmarks):
                pts = self._landmarks[:, :2] * np.array([cam.shape[1], cam.shape[0]])
                for x, y in pts.astype(int)[::2]:  # every other point is dense enough to read
                    cv2.circle(cam, (int(x), int(y)), 1, (80, 220, 255), -1, cv2.LINE_AA)
            panels.append(cam)
        image = np.ascontiguousarray(np.hstack(panels)) if len(panels) > 1 else avatar.copy()
        lines = list(self._lines)
        if self._message is not None:
            if time.monotonic() < self._message[1]:
                lines.append(self._message[0])
            else:
                self._message = None
        for i, line in enumerate(lines):
            y = 22 + 22 * i
            cv2.putText(image, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3,
                        cv2.LINE_AA)
            cv2.putText(image, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1,
                        cv2.LINE_AA)
        return image

    # -- the window -----------------------------------------------------------------------------

    def open(self) -> "PreviewSink":
        if self.check_display and not has_display():
            raise OutputError("no display here for the preview window (DISPLAY is not set); "
                              "leave out --output window, or run thacam inside a desktop session")
        import cv2
        cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
        self._open = True
        return self

    def send(self, rgba: np.ndarray, t_capture_ms: float = 0.0) -> None:
        if not self._open:
            raise RuntimeError("PreviewSink.open() first")
        import cv2
        cv2.imshow(self.title, self.compose(rgba))
        self._shown = True
        self.poll()

    def poll(self, wait_ms: int = 1) -> None:
        """Pump the window's events: key presses and the close button."""
        if not self._open:
            return
        import cv2
        self.handle_key(cv2.waitKeyEx(max(1, wait_ms)))
        if self._shown:
            try:
                visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
            except cv2.error:
                visible = 0
            if visible < 1:
                self._open = False
                self._events.append(PreviewEvent("quit", text="window closed"))

    def close(self) -> None:
        if self._open or self._shown:
            import cv2
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # let HighGUI actually take the window down
            except cv2.error:
                pass
        self._open = False

    def __enter__(self) -> "PreviewSink":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
