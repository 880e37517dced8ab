"""Output stage: where rendered RGBA frames go. One small interface, sinks you register.

    FrameSink: open() ; send(rgba (H,W,4) uint8, t_capture_ms) ; close() | abort()

A sink is one module with a FrameSink subclass and one ``SINKS.register`` line below, naming
it for ``--output NAME[:ARG]``. The registry holds the class as "module:Class" text and imports it
only when that output is asked for, so this module (and the profile) load without OpenCV,
pyvirtualcam or ffmpeg. ``--output`` values that are not a registered name are file outputs when
they look like a path (a suffix or a slash); anything else is refused with the list of names.

Alpha is flattened onto a background colour in one place, :func:`composite`; :func:`place` puts
the 512x512 avatar on the output canvas. Must not import torch.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import UserError
from ..registry import Registry
from ..settings import Settings, setting

__all__ = [
    "FrameSink", "FrameInfo", "KeyEvent", "SinkContext", "OutputSettings", "create_sink", "composite", "place", "check_frame", "has_display",
    "CHROMA_GREEN", "PLACEMENTS", "SINKS",
]

log = logging.getLogger(__name__)

CHROMA_GREEN = (0, 255, 0)
PLACEMENTS = ("center", "bottom", "bottom-left", "bottom-right", "top-left", "top-right")


@dataclass(frozen=True)
class OutputSettings(Settings):
    """The frames sent to the outputs: size, background and where the avatar sits."""

    width: int = setting(512, 64, 4096, help="Output frame width in pixels.")
    height: int = setting(512, 64, 4096, help="Output frame height in pixels.")
    background: tuple[int, int, int] = setting(
        CHROMA_GREEN, 0, 255, flag="--background", metavar="R,G,B",
        help="Background colour [R, G, B] behind the avatar in outputs without alpha; OBS keys "
        "this colour out.",
        cli_help="Background colour behind the avatar in outputs without alpha, e.g. 0,255,0; "
        "OBS keys this colour out.")
    placement: Literal["center", "bottom", "bottom-left", "bottom-right", "top-left",
                       "top-right"] = setting(
        "center", help="Where the 512x512 avatar sits in the output frame.")
    scale: float = setting(1.0, 0.1, 8.0, help="Avatar size as a multiple of 512 pixels.")
    backend: Literal["auto", "v4l2loopback", "obs", "unitycapture"] = setting(
        "auto", flag="--vcam-backend",
        help="Virtual camera backend (pyvirtualcam); auto = the first that works.")
    device: str = setting(
        "", flag="--vcam-device", metavar="DEVICE",
        help="Virtual camera device (e.g. /dev/video10); empty = the backend's first free one.",
        cli_help="Virtual camera device, e.g. /dev/video10 (default: the profile's, else the "
        "backend's first free one).")
    stream_port: int = setting(
        45450, 1, 65535, flag="--stream-port", metavar="PORT",
        help="TCP port of --output stream on 127.0.0.1 (OBS's Media Source reads "
        "tcp://127.0.0.1:PORT); --output stream:PORT overrides it for one run.",
        cli_help="TCP port of --output stream on 127.0.0.1 (OBS's Media Source reads "
        "tcp://127.0.0.1:PORT); --output stream:PORT beats it.")


# --------------------------------------------------------------------------- the interface

@dataclass(frozen=True)
class KeyEvent:
    """A key from an interactive output: a character ("c", "1"), or "escape", or "close" (the
    window was closed). ``releases``: the input also reports key releases (``pressed=False``);
    without them a hold-mode expression toggles instead."""

    key: str
    pressed: bool = True
    releases: bool = False


@dataclass(frozen=True)
class FrameInfo:
    """What the pipeline tells sinks that show more than the avatar (the preview window)."""

    lines: tuple[str, ...] = ()               # status text: fps, latency, "no face", ...
    camera_rgb: np.ndarray | None = None      # the image the face came from, as tracked
    landmarks: np.ndarray | None = None       # (N, 3) normalised face landmarks in that image


class FrameSink:
    """Where frames go. Subclasses implement ``send`` and whichever hooks they need.

    The pipeline opens each sink once (``open`` may raise ``SinkUnavailable``: that output is
    skipped with its message when others work), calls ``send`` from its main thread for every
    frame, and then exactly one of ``close`` (the run ended normally) or ``abort`` (an error:
    drop half-written files). Interactive sinks return key presses from ``pump``, which the main
    thread calls often, and receive ``FrameInfo`` and short messages when ``wants_info``.
    """

    description = "output"
    wants_info = False
    # send() encodes or writes files: the live run gives such a sink a thread of its own
    # (thacam.output.threaded), so the render loop never waits for the disk.
    encodes = False

    @classmethod
    def from_spec(cls, arg: str | None, ctx: "SinkContext") -> "FrameSink":
        """Build from ``--output NAME[:ARG]`` (ARG after the colon, or None) and the run."""
        raise NotImplementedError

    def open(self) -> "FrameSink":
        return self

    def send(self, rgba: np.ndarray, t_capture_ms: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.close()

    def pump(self) -> list[KeyEvent]:
        return []

    def show_info(self, info: FrameInfo) -> None:
        pass

    def notify(self, message: str) -> None:
        pass

    def __enter__(self) -> "FrameSink":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass(frozen=True)
class SinkContext:
    """What a sink may need from the run: output size, frame rate and the [output] settings."""

    size: tuple[int, int]
    fps: float
    settings: OutputSettings = OutputSettings()


# ---------------------------------------------------------------------------- the registry

SINKS = Registry("an output", "--output")


def create_sink(spec: str, ctx: SinkContext) -> FrameSink:
    """``--output`` value -> an unopened sink. A value that is no registered name but looks like
    a path (a suffix or a slash, or an existing folder) is a file output.

    Raises:
        UserError: not a registered name and not a file path (the message lists the names).
    """
    name = spec.partition(":")[0]
    if name in SINKS:
        return SINKS.create(spec, ctx)
    path = Path(spec)
    if path.suffix or os.sep in spec or "/" in spec or path.is_dir():
        return SINKS.create(spec, ctx, name="file")
    raise UserError(f"--output {spec}: not an output; choose one of "
                    f"{', '.join(SINKS.usages(skip=('file',)))}, or give a file name (.mp4, "
                    ".webm, .mov) or a folder (frames/)")


# The outputs thacam has. A new one: a module with a FrameSink subclass, and one line here
# ("module:Class" is imported only when that output is asked for).
SINKS.register("vcam", "thacam.output.vcam:VirtualCamSink",
              "the virtual camera OBS, Zoom or Discord select (pyvirtualcam; RGB over "
              "--background, RGBA where the backend takes it)")
SINKS.register("window", "thacam.output.preview:PreviewSink",
              "a preview window with the camera view, status and tuning keys")
SINKS.register("stream", "thacam.output.stream:StreamSink",
              "live frames with real alpha on a local TCP port for OBS's Media Source (NUT raw "
              "RGBA; `thacam obs setup` adds the source)", usage="stream[:PORT]")
SINKS.register("file", "thacam.output.video:VideoFileSink",
              "a video (.mp4 over --background; .webm/.mov keep alpha) or a folder of PNGs",
              usage="FILE")


# ----------------------------------------------------------------------------- frames

def check_frame(rgba: np.ndarray, size: tuple[int, int] | None) -> tuple[int, int]:
    """(w, h) of an (H, W, 4) uint8 frame; raises ValueError on anything else or a size change."""
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an (H, W, 4) uint8 frame, got {rgba.shape} {rgba.dtype}")
    h, w = rgba.shape[:2]
    if size is not None and (w, h) != tuple(size):
        raise ValueError(f"frame size changed: expected {size[0]}x{size[1]}, got {w}x{h}")
    return w, h


def composite(rgba: np.ndarray, background: tuple[int, int, int] = CHROMA_GREEN,
              bgr: bool = False) -> np.ndarray:
    """Straight-alpha RGBA over a solid colour -> RGB uint8 (the one place alpha is flattened).

    ``bgr``: channels in OpenCV's order, so writers need no colour conversion afterwards.
    Exact: each channel is round((c * a + bg * (255 - a)) / 255).
    """
    # Integer maths in uint16 (255 * 255 + 255 fits): float32 took 16-50 ms a 512x512 frame on
    # a 2-core VM, a GPU's whole budget several times over; this takes a third of that.
    a = rgba[..., 3:4].astype(np.uint16)
    rgb = rgba[..., 2::-1] if bgr else rgba[..., :3]
    bg = np.asarray(background[::-1] if bgr else background, np.uint16)
    x = rgb * a
    x += (255 - a) * bg
    x += 128
    x += x >> 8         # (x + 128 + ((x + 128) >> 8)) >> 8 == round(x / 255) for x <= 65280
    x >>= 8
    return x.astype(np.uint8)


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
        import cv2  # only a scaled layout needs it
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


def has_display() -> bool:
    """Whether a window can be opened (Linux needs an X11 or Wayland session)."""
    if platform.system() == "Linux":
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True

