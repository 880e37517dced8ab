"""A pyvirtualcam backend that records what it is sent (registered through the real
``pyvirtualcam.register_backend``, driven by the real ``pyvirtualcam.Camera``)."""

from __future__ import annotations

import numpy as np
import pytest
import pyvirtualcam
from pyvirtualcam.camera import BACKENDS
from pyvirtualcam.util import decode_fourcc


class RecordingBackend:
    """Accepts the formats in ``accepts``; raises like the real backends for any other."""

    accepts = ("RGBA", "RGB")
    instances: list["RecordingBackend"] = []

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device, **kw):
        fmt = pyvirtualcam.PixelFormat(decode_fourcc(fourcc))
        if fmt.name not in self.accepts:
            raise RuntimeError("Unsupported image format.")
        self.width, self.height, self.fps, self.fmt = width, height, fps, fmt
        self.fourcc = fourcc
        self._device = device or "recording-cam"
        self.frames: list[np.ndarray] = []
        self.closed = False
        type(self).instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        channels = 4 if self.fmt is pyvirtualcam.PixelFormat.RGBA else 3
        self.frames.append(frame.reshape(self.height, self.width, channels).copy())

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return self._device

    def native_fourcc(self) -> int:
        return self.fourcc


class RgbOnlyBackend(RecordingBackend):
    accepts = ("RGB",)
    instances: list["RecordingBackend"] = []


@pytest.fixture
def recording_vcam():
    """Registers 'thacam-test' (RGBA and RGB) and 'thacam-test-rgb' (RGB only); removes them after."""
    saved = dict(BACKENDS)
    RecordingBackend.instances = []
    RgbOnlyBackend.instances = []
    pyvirtualcam.register_backend("thacam-test", RecordingBackend)
    pyvirtualcam.register_backend("thacam-test-rgb", RgbOnlyBackend)
    yield RecordingBackend
    BACKENDS.clear()
    BACKENDS.update(saved)


@pytest.fixture
def no_vcam_backend():
    """A system with no virtual camera at all (pyvirtualcam's backend table empty)."""
    saved = dict(BACKENDS)
    BACKENDS.clear()
    yield
    BACKENDS.update(saved)
