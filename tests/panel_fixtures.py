"""A live run with the control panel for the panel tests: a synthetic face source (a face
turned 20 degrees, 50 times a second), the real retarget and animation stages, a renderer that
paints head_y as a colour (or the real THA3), and small HTTP helpers."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from thacam.app import LiveOptions, LiveRun
from thacam.capture import now_ms
from thacam.output import FrameSink
from thacam.panel import PanelAddress
from thacam.profile import load_profile
from thacam.sources import FaceSample, FaceSource

from controls_fixtures import face

YAW = 20.0
PROFILE_TEXT = """\
# Hand-tuned for this character: keep these comments.
[retarget]
# a small turn range: a small head turn is a big avatar turn
head_y_range_deg = 10.0  # degrees

[smoothing]
enabled = false
"""


class TurnedFace(FaceSource):
    description = "synthetic turned face"

    def __init__(self, yaw: float = YAW):
        self.yaw = yaw
        self.index = 0
        self.closed = threading.Event()

    def next(self, timeout):
        if self.closed.wait(0.02):
            return None
        self.index += 1
        t = now_ms()
        return FaceSample(t, face(t, yaw=self.yaw), self.index)

    def wake(self):
        self.closed.set()

    def close(self):
        self.closed.set()


class HeadColour:
    """Paints head_y into the frame: red = (head_y + 1) * 127.5, and a transparent border."""

    def render(self, pose):
        out = np.zeros((512, 512, 4), np.uint8)
        red = int(round((float(pose["head_y"]) + 1.0) * 127.5))
        out[64:448, 64:448] = (red, 255 - red, 0, 255)
        return out


class Keep(FrameSink):
    description = "test sink"

    def __init__(self):
        self.frames = []

    def send(self, rgba, t_capture_ms):
        self.frames.append(rgba.copy())


def write_profile(folder: Path, extra: str = "") -> Path:
    path = folder / "panel_test.toml"
    path.write_text(PROFILE_TEXT + extra, encoding="utf-8")
    return path


def obs_section(port: int, scene: str = "thacam", source: str = "thacam-avatar") -> str:
    """The profile's [obs] for a run that drives the OBS on ``port``: quick to notice OBS going
    and coming back, so a test waits seconds, not the defaults' tens of seconds."""
    return (f'\n[obs]\nport = {port}\nscene = "{scene}"\nsource = "{source}"\ntimeout_s = 2.0\n'
            "reconnect_initial_s = 0.2\nreconnect_max_s = 0.5\npoll_s = 0.2\n")


@contextmanager
def live_panel(tmp_path: Path, renderer=None, fps: float = 50.0, frames: int | None = None,
               sink: FrameSink | None = None, obs: str | None = None):
    """A LiveRun with --panel on a free port, running in a thread; yields (run, url).
    ``obs``: an [obs] profile section (:func:`obs_section`), and the run drives OBS (--obs)."""
    path = write_profile(tmp_path, obs or "")
    urls: list[str] = []
    run = LiveRun(load_profile(path), path, TurnedFace(), [sink or Keep()],
                  renderer or HeadColour(),
                  LiveOptions(fps=fps, stats_every_s=0, obs=obs is not None,
                              panel=PanelAddress(port=0)),
                  on_panel=urls.append)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(stats=run.run(frames)),
                              name="test-live-run")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not urls and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert urls, "the panel never started"
        run.result = result
        yield run, urls[0]
    finally:
        run.pipeline.stop("test over")
        thread.join(30)
        assert not thread.is_alive()


def base_of(url: str) -> str:
    return url.split("/?")[0]


def token_of(url: str) -> str:
    return url.split("token=")[1]


def request(url: str, method: str = "GET", body=None, headers: dict | None = None,
            token: str | None = None) -> tuple[int, object]:
    """(status, decoded JSON or raw bytes)."""
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            raw, status, kind = res.read(), res.status, res.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        raw, status, kind = exc.read(), exc.code, exc.headers.get_content_type()
    return status, (json.loads(raw) if kind == "application/json" else raw)


def wait_for(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
