"""thacam's alpha stream in a real OBS Studio 29 under Xvfb: the Media Source `thacam obs setup`
adds, what it shows (read back with GetSourceScreenshot), and the stream surviving OBS and thacam
coming and going. The session OBS is conftest.py's, the helpers test_obs.py's; the numbered
frames are test_output_stream.py's (the frame number sits in pixel (0, 0)).
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from obs_fixtures import HeadlessOBS, ObsDied, free_port, require_obs_binaries
from test_obs import (_enabled, _filters, _items, _settings, _wait_for, keyed_frame,  # noqa: F401
                      names)
from test_output_stream import Feeder, number
from thacam import cli
from thacam.obs import MARKER_KEY, PASSWORD_ENV, ObsController, ObsSession, ensure_setup
from thacam.obs_media import MEDIA_KIND, media_input
from thacam.output.stream import StreamSink


def test_media_input_reads_thacams_port_live_and_unbuffered():
    kind, s = media_input(9123)
    assert kind == MEDIA_KIND == "ffmpeg_source"
    assert s["input"] == "tcp://127.0.0.1:9123" and s["input_format"] == "nut"
    assert s["is_local_file"] is False and s["buffering_mb"] == 0


def screenshot(server: HeadlessOBS, source: str, size: tuple[int, int]) -> np.ndarray | None:
    """What OBS shows of ``source`` at ``size`` (RGBA), or None when OBS does not answer."""
    try:
        with server.client(timeout=5) as c:
            shot = c.send("GetSourceScreenshot", {"sourceName": source, "imageFormat": "png",
                                                  "imageWidth": size[0], "imageHeight": size[1]},
                          raw=True)
    except Exception:   # noqa: BLE001 - OBS starting, gone, or the source not there yet
        return None
    return np.array(Image.open(io.BytesIO(base64.b64decode(shot["imageData"].split(",", 1)[1]))))


# --------------------------------------------------------------------------- setup

@pytest.mark.obs
def test_setup_adds_a_media_source_without_a_key_by_default_and_via_switches(obs, names, capsys):
    base = ["obs", "setup", "--scene", names["scene"], "--obs-port", str(obs.port)]
    assert cli.main(base + ["--stream-port", "45999"]) == 0
    (item,) = _items(obs, names["scene"], "thacam-avatar")
    assert item["inputKind"] == MEDIA_KIND and item["sceneItemEnabled"] is False
    with obs.client() as c:
        got = c.send("GetInputSettings", {"inputName": "thacam-avatar"}, raw=True)["inputSettings"]
    _, wanted = media_input(45999)
    assert {k: got.get(k) for k in wanted} == wanted and MARKER_KEY in got
    assert _filters(obs, "thacam-avatar") == []                 # real alpha: no chroma key
    assert "alpha stream on port 45999" in capsys.readouterr().out

    assert cli.main(base + ["--stream-port", "45999"]) == 0
    assert "nothing changed" in capsys.readouterr().out

    assert cli.main(base + ["--via", "vcam"]) == 0               # for Zoom/Discord too
    (item,) = _items(obs, names["scene"], "thacam-avatar")
    assert item["inputKind"] == "v4l2_input" and len(_filters(obs, "thacam-avatar")) == 1
    assert cli.main(base + ["--via", "stream"]) == 0             # and back
    (item,) = _items(obs, names["scene"], "thacam-avatar")
    assert item["inputKind"] == MEDIA_KIND and _filters(obs, "thacam-avatar") == []
    capsys.readouterr()
    assert cli.main(["obs", "status", "--scene", names["scene"], "--obs-port", str(obs.port)]) == 0
    out = capsys.readouterr().out
    assert "(ffmpeg_source, thacam, hidden in the scene)" in out
    assert "filter" not in out and "run `thacam obs setup`" not in out


# --------------------------------------------------------------------------- pixels

@pytest.mark.obs
@pytest.mark.slow
def test_alpha_arrives_exactly(obs, names, keyed_frame):
    """A real THA3 frame through the stream: OBS shows the same alpha on every pixel
    (transparent background, opaque body, the soft hair edges' partial values) and the colour
    of every visible pixel."""
    rgba, _ = keyed_frame
    sink = StreamSink((512, 512), 10.0, "127.0.0.1", 0).open()
    settings = _settings(obs, names, stream_port=sink.port)
    try:
        with ObsSession(settings) as session:
            item = ensure_setup(session, settings).scene_item_id
            session.call("SetSceneItemEnabled", {"sceneName": names["scene"],
                                                 "sceneItemId": item, "sceneItemEnabled": True})
            # OBS pulls a Media Source's frames only while it is on air
            session.call("SetCurrentProgramScene", {"sceneName": names["scene"]})
        with Feeder(sink, fps=10.0, size=(512, 512), frame=rgba):
            (out,) = _wait_for(lambda: _visible(obs, names["source"]), 30,
                               "OBS to show the streamed frame")
    finally:
        sink.close()
    assert _filters(obs, names["source"]) == []
    soft = (rgba[..., 3] > 0) & (rgba[..., 3] < 255)
    assert (rgba[..., 3] == 0).mean() > 0.5 and (rgba[..., 3] == 255).mean() > 0.1
    assert soft.sum() > 500                         # crypko_00's anti-aliased outline and hair
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    visible = rgba[..., 3] > 0
    np.testing.assert_array_equal(out[visible, :3], rgba[visible, :3])


# --------------------------------------------------------------------------- coming and going

@pytest.mark.obs
def test_frames_resume_when_obs_starts_late_thacam_restarts_and_obs_is_killed(tmp_path,
                                                                               monkeypatch):
    require_obs_binaries()
    server = HeadlessOBS(tmp_path, password=secrets.token_urlsafe(12))
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    port = free_port()
    size = (64, 48)
    settings = _settings(server, {"scene": "thacam", "source": "thacam-avatar",
                                  "filter": "thacam-chroma"}, stream_port=port,
                         switch_scene=True, reconnect_initial_s=0.2, reconnect_max_s=1.0, poll_s=0.2)

    def shown() -> int | None:
        out = screenshot(server, settings.source, size)
        return number(out) if out is not None and out[0, 0, 3] == 255 else None

    def resumes(after: int, what: str) -> int:
        return _wait_for(lambda: (n := shown()) is not None and n > after and n, 30, what)

    sink = StreamSink(size, 10.0, "127.0.0.1", port).open()
    controller = ObsController(settings).start()
    try:
        with Feeder(sink, fps=10.0, size=size) as feeder:
            controller.on_frames_started()              # thacam runs before OBS is there
            time.sleep(1.0)
            server.start()
            first = resumes(-1, "frames after OBS started late")
            sink.close()                                # thacam stops ...
        sink = StreamSink(size, 10.0, "127.0.0.1", port).open()     # ... and starts again
        with Feeder(sink, fps=10.0, size=size) as feeder:
            feeder.n = 1000
            resumes(999, "frames from the restarted thacam")
            server.kill()                               # OBS crashes mid-run
            time.sleep(1.0)
            server.start(fresh=True)                    # and comes back with nothing set up
            last = feeder.n
            resumes(last, "frames after OBS was killed and restarted")
            assert feeder.longest_send_s < 0.05         # thacam never waited for any of it
        assert first >= 0 and sink.connections >= 2
    finally:
        controller.on_stop(timeout_s=5)
        sink.close()
        try:
            server.close()
        except ObsDied as exc:
            pytest.fail(str(exc))


# --------------------------------------------------------------------------- the live run

@pytest.mark.obs
@pytest.mark.slow
def test_live_run_shows_in_obs_with_alpha_through_setup_and_the_stream(obs, names, weights_dir,
                                                                       samples_dir, faces_dir,
                                                                       tmp_path):
    """`thacam obs setup` then `thacam --character ... --output stream --obs`, end to end, with
    the real model on CPU; the user puts the scene on air only after thacam started."""
    port = free_port()
    flags = ["--obs-port", str(obs.port), "--obs-scene", names["scene"], "--obs-source",
             names["source"]]
    assert cli.main(["obs", "setup", "--stream-port", str(port), *flags]) == 0
    cmd = [sys.executable, "-m", "thacam.cli", "--character", str(samples_dir / "crypko_00.png"),
           "--camera", str(faces_dir / "d19.mp4"), "--output", f"stream:{port}", "--obs",
           *flags, "--weights", str(weights_dir), "--device", "cpu", "--stats-every", "0"]
    log_path = tmp_path / "thacam.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env={**os.environ}, stdout=out, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parent.parent)
    try:
        def shown():
            if proc.poll() is not None:
                pytest.fail(f"thacam exited with rc {proc.returncode}:\n{log_path.read_text()}")
            return _enabled(obs, names["scene"], names["source"])

        _wait_for(shown, 180, "thacam's first frame to show its source in OBS")
        with obs.client() as c:
            c.send("SetCurrentProgramScene", {"sceneName": names["scene"]})     # on air
        try:
            (out,) = _wait_for(lambda: shown() and _visible(obs, names["source"]), 120,
                               "OBS to show thacam's frames")
        except BaseException:
            print(log_path.read_text(), "\n--- OBS:\n", obs.log_tail(60))
            raise
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        text = log_path.read_text()
    assert rc == 0, text
    assert _enabled(obs, names["scene"], names["source"]) is False, text
    assert _filters(obs, names["source"]) == []
    alpha = out[..., 3]
    # transparent corners (THA3 itself may leave a stray alpha of 1 there, pose by pose)
    assert alpha[:8, :8].max() <= 2 and alpha[-8:, -8:].max() <= 2
    assert (alpha == 255).mean() > 0.08                                  # the opaque body
    assert ((alpha > 0) & (alpha < 255)).sum() > 500                     # soft edges stay soft
    assert "alpha stream:" in text and "frames sent" in text


def _visible(server: HeadlessOBS, source: str):
    out = screenshot(server, source, (512, 512))
    return [out] if out is not None and (out[..., 3] == 255).any() else None
