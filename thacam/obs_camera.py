"""The OBS source that shows thacam's virtual camera (``thacam obs setup --via vcam``): OBS's
camera input on this OS, and the chroma key that removes the background colour thacam paints.

The one place thacam branches on the platform for OBS. Must not import anything heavy (obs.py
uses it; it imports no thacam module but errors, so no cycle).
"""

from __future__ import annotations

import glob
import os
import platform
from typing import Any

from .errors import ObsError

__all__ = ["CHROMA_FILTER_KIND", "camera_input", "chroma_settings"]

CHROMA_FILTER_KIND = "chroma_key_filter_v2"


def _find_v4l2loopback() -> str:
    """The first v4l2loopback device (the one pyvirtualcam picks), else /dev/video0."""
    devices = []
    for path in glob.glob("/sys/devices/virtual/video4linux/video*"):
        try:
            devices.append(int(os.path.basename(path)[len("video"):]))
        except ValueError:
            continue
    return f"/dev/video{min(devices)}" if devices else "/dev/video0"


def camera_input(settings: Any, system: str | None = None) -> tuple[str, dict[str, Any]]:
    """OBS input kind and settings that show thacam's virtual camera on this OS (``settings``:
    ObsSettings). Windows and macOS name the camera
    pyvirtualcam drives there ("OBS Virtual Camera"); ``settings.device`` overrides it.
    """
    system = system or platform.system()
    if system == "Linux":
        return "v4l2_input", {"device_id": settings.device or _find_v4l2loopback()}
    if system == "Windows":
        # dshow matches "name:path" ids by name when the path part is empty.
        return "dshow_input", {"video_device_id": f"{settings.device or 'OBS Virtual Camera'}:"}
    if system == "Darwin":
        return "av_capture_input", {"device_name": settings.device or "OBS Virtual Camera"}
    raise ObsError(f"thacam does not know OBS's camera source on {system}; add the virtual "
                   "camera to OBS by hand (Sources > + > Video Capture Device)")


def _obs_color(rgb: tuple[int, int, int]) -> int:
    # OBS stores colours as 0xAABBGGRR with red in the low byte (checked on OBS 29 with a blue key).
    r, g, b = (int(c) for c in rgb)
    return r | (g << 8) | (b << 16)


def chroma_settings(settings: Any) -> dict[str, Any]:
    """Settings of the chroma key filter (kind :data:`CHROMA_FILTER_KIND`) for this profile."""
    return {"key_color_type": "custom", "key_color": _obs_color(settings.key_color),
            "similarity": settings.similarity, "smoothness": settings.smoothness,
            "spill": settings.spill}
