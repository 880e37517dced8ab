"""The preview window (``--output window``): the avatar, the camera with its landmarks, status
lines, and the keyboard.

The window shows frames and hands every key press back to the pipeline as a ``KeyEvent``; what a
key does is decided in thacam.controls, not here (``v``, which only toggles this window's camera
view, is the exception). OpenCV reports no key releases, so the events say ``releases=False``.

OpenCV's window calls must stay in one thread: the pipeline uses this sink from its main loop only
(``send`` and ``pump``). Must not import torch.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from ..errors import OutputError
from . import FrameInfo, FrameSink, KeyEvent, SinkContext, composite, has_display

__all__ = ["PreviewSink"]

_ESC = 27
_CAMERA_VIEW = "v"


class PreviewSink(FrameSink):
    """An OpenCV window with the avatar and, toggled with ``v``, the camera with landmarks."""

    wants_info = True

    def __init__(self, title: str = "thacam", show_camera: bool = True,
                 background: tuple[int, int, int] = (48, 48, 48), check_display: bool = True):
        self.title = title
        self.show_camera = show_camera
        self.background = tuple(background)
        self.check_display = check_display
        self.description = "preview window"
        self._events: list[KeyEvent] = []
        self._open = False
        self._shown = False
        self._info = FrameInfo()
        self._message: tuple[str, float] | None = None

    @classmethod
    def from_spec(cls, arg: str | None, ctx: SinkContext) -> "PreviewSink":
        """``--output window``: shown over the [output] background colour."""
        return cls(background=ctx.settings.background)

    # -- window-free parts (tested without a display) ------------------------------------------

    def show_info(self, info: FrameInfo) -> None:
        """What the next frame shows beside the avatar: camera image, landmarks, overlay text."""
        self._info = info

    def notify(self, message: str, seconds: float = 3.0) -> None:
        self._message = (message, time.monotonic() + seconds)

    def handle_key(self, code: int) -> KeyEvent | None:
        """A cv2.waitKeyEx code -> the event it stands for (None: no key, or the view toggle)."""
        if code is None or code < 0:
            return None
        code &= 0xFF
        if code == _ESC:
            event = KeyEvent("escape")
        elif 32 <= code < 127:
            if chr(code) == _CAMERA_VIEW:
                self.show_camera = not self.show_camera
                return None
            event = KeyEvent(chr(code))
        else:
            return None
        self._events.append(event)
        return event

    def pump(self) -> list[KeyEvent]:
        """Pump the window (key presses, the close button); the events since the last call."""
        self.poll()
        out, self._events = self._events, []
        return out

    def compose(self, rgba: np.ndarray) -> np.ndarray:
        """The BGR image the window shows for this avatar frame."""
        avatar = composite(rgba, self.background, bgr=True)
        panels = [avatar]
        info = self._info
        if self.show_camera and info.camera_rgb is not None:
            cam = cv2.cvtColor(info.camera_rgb, cv2.COLOR_RGB2BGR)
            h = avatar.shape[0]
            scale = h / cam.shape[0]
            cam = cv2.resize(cam, (max(1, round(cam.shape[1] * scale)), h))
            if info.landmarks is not None and len(info.landmarks):
                pts = info.landmarks[:, :2] * np.array([cam.shape[1], cam.shape[0]])
                for x, y in pts.astype(int)[::2]:  # every other point is dense enough to read
                    cv2.circle(cam, (int(x), int(y)), 1, (80, 220, 255), -1, cv2.LINE_AA)
            panels.append(cam)
        image = np.ascontiguousarray(np.hstack(panels)) if len(panels) > 1 else avatar.copy()
        lines = list(info.lines)
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
        cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
        self._open = True
        return self

    def send(self, rgba: np.ndarray, t_capture_ms: float = 0.0) -> None:
        if not self._open:
            raise RuntimeError("PreviewSink.open() first")
        cv2.imshow(self.title, self.compose(rgba))
        self._shown = True
        self.poll()

    def poll(self, wait_ms: int = 1) -> None:
        """Read the window's events: key presses and the close button."""
        if not self._open:
            return
        self.handle_key(cv2.waitKeyEx(max(1, wait_ms)))
        if self._shown:
            try:
                visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
            except cv2.error:
                visible = 0
            if visible < 1:
                self._open = False
                self._events.append(KeyEvent("close"))

    def close(self) -> None:
        if self._open or self._shown:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # let HighGUI actually take the window down
            except cv2.error:
                pass
        self._open = False
