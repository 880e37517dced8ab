"""The virtual camera output (``--output vcam``): frames to OBS, Zoom or Discord through
pyvirtualcam. The one place that branches on the operating system for virtual cameras.

Must not import torch.
"""

from __future__ import annotations

import logging
import platform

import numpy as np

from ..errors import UserError, VirtualCameraUnavailable
from . import CHROMA_GREEN, FrameSink, SinkContext, check_frame, composite

__all__ = ["VirtualCamSink", "vcam_instructions"]

log = logging.getLogger(__name__)


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


class VirtualCamSink(FrameSink):
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

    @classmethod
    def from_spec(cls, arg: str | None, ctx: SinkContext) -> "VirtualCamSink":
        """``--output vcam`` (or ``vcam:DEVICE``): the [output] backend, device and background."""
        s = ctx.settings
        return cls(ctx.size, ctx.fps, backend=s.backend, device=arg or s.device or None,
                   background=s.background)

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
        check_frame(rgba, self.size)
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
