"""The panel's live preview: an output that keeps the newest frame for the browser.

``send`` runs on the render thread, so all it does is copy at most one frame every ``1 / fps``
seconds and wake the encoder; the PNG (alpha kept, so the page shows the
transparent background as such) is made on the ``thacam-panel-preview`` thread, where a slow
browser or a slow encode can only make the preview skip frames. Added by thacam.app when
``--panel`` is on; not an ``--output`` of its own. Must not import torch or cv2.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np

from ..output import FrameSink

__all__ = ["PanelPreview", "PREVIEW_FPS", "PREVIEW_MAX_SIDE"]

PREVIEW_FPS = 10.0        # plenty to judge a setting by eye; a GPU run renders 30
PREVIEW_MAX_SIDE = 640    # a 1920x1080 output is previewed at half size


class PanelPreview(FrameSink):
    description = "panel preview"
    kind = "panel"                 # how the panel's state names this output

    def __init__(self, fps: float = PREVIEW_FPS):
        self.interval_s = 1.0 / fps
        self._pending: np.ndarray | None = None
        self._last_kept = -1e9
        self._cond = threading.Condition()
        self._png: tuple[int, bytes] | None = None     # (sequence number, PNG)
        self._closed = False
        self._thread: threading.Thread | None = None
        self.encode_ms = 0.0                            # the last encode, for the benchmark

    def open(self) -> "PanelPreview":
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="thacam-panel-preview",
                                        daemon=True)
        self._thread.start()
        return self

    def send(self, rgba: np.ndarray, t_capture_ms: float = 0.0) -> None:
        now = time.monotonic()
        if now - self._last_kept < self.interval_s:
            return
        self._last_kept = now
        frame = rgba.copy()   # the renderer may reuse its buffer for the next frame
        with self._cond:
            self._pending = frame
            self._cond.notify()

    def newest(self) -> tuple[int, bytes] | None:
        """(sequence number, PNG bytes) of the newest encoded frame; None before the first."""
        return self._png

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        seq = 0
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:   # closed, and the last frame is encoded
                    return
                frame, self._pending = self._pending, None
            t0 = time.perf_counter()
            png = encode_png(frame)
            self.encode_ms = (time.perf_counter() - t0) * 1000.0
            seq += 1
            self._png = (seq, png)


def encode_png(rgba: np.ndarray) -> bytes:
    """RGBA -> PNG bytes at the fastest compression (bandwidth is free on localhost)."""
    from PIL import Image
    image = Image.fromarray(rgba, "RGBA")
    factor = -(-max(image.size) // PREVIEW_MAX_SIDE)   # ceil
    if factor > 1:
        image = image.reduce(factor)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
