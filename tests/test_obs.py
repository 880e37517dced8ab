"""OBS control against a real OBS Studio 29 (obs-websocket 5.1) under Xvfb.

CI budget: 120 s for this file (one session OBS, one extra OBS for the kill/restart test, one
THA3 frame on CPU). OBS runs with a WebSocket password in every test, so every test also proves the
password travels from THACAM_OBS_PASSWORD; the password test greps all captured output for it.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import os
import queue
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from obs_fixtures import HeadlessOBS, ObsDied, connections_to, require_obs_binaries
from thacam import cli
from thacam.errors import ObsAuthError, ObsConnectionError
from thacam.obs import (CHROMA_FILTER_KIND, MARKER_KEY, PASSWORD_ENV, ObsController, ObsSession,
                        ObsSettings, camera_input, chroma_settings, ensure_chroma_filter,
                        ensure_setup, read_status)


# --------------------------------------------------------------------------- no OBS needed

def test_settings_reject_out_of_range_values():
    with pytest.raises(ValueError, match=r"ObsSettings\.port"):
        ObsSettings(port=70000)
    with pytest.raises(ValueError, match=r"ObsSettings\.key_color"):
        ObsSettings(key_color=(0, 256, 0))
    with pytest.raises(ValueError, match=r"reconnect_initial_s"):
        ObsSettings(reconnect_initial_s=5.0, reconnect_max_s=1.0)
    # TOML gives lists; they become tuples so the settings stay hashable and comparable
    assert ObsSettings(key_color=[1, 2, 3], position=[4, 5]).key_color == (1, 2, 3)
    assert all("help" in f.metadata for f in dataclasses.fields(ObsSettings))
    assert "password" not in {f.name for f in dataclasses.fields(ObsSettings)}


def test_camera_input_per_platform():
    s = ObsSettings(device="/dev/video7")
    assert camera_input(s, "Linux") == ("v4l2_input", {"device_id": "/dev/video7"})
    assert camera_input(s, "Windows")[0] == "dshow_input"
    assert camera_input(ObsSettings(), "Darwin") == (
        "av_capture_input", {"device_name": "OBS Virtual Camera"})
    assert camera_input(ObsSettings(), "Linux")[1]["device_id"].startswith("/dev/video")


def test_key_color_uses_obs_byte_order():
    # OBS keeps colours as 0xAABBGGRR: red in the low byte.
    assert chroma_settings(ObsSettings(key_color=(0, 255, 0)))["key_color"] == 0x00FF00
    assert chroma_settings(ObsSettings(key_color=(0, 0, 255)))["key_color"] == 0xFF0000
    assert chroma_settings(ObsSettings(key_color=(10, 200, 30)))["key_color"] == 0x1EC80A


def test_obs_not_running_is_a_user_error():
    with pytest.raises(ObsConnectionError, match="--obs-host/--obs-port"):
        ObsSession(ObsSettings(port=1, timeout_s=1.0), password="")


# --------------------------------------------------------------------------- fixtures
# (the session's OBS, obs_server and obs, is conftest.py's: one OBS for every test file)

@pytest.fixture
def names(obs, request):
    """Unique scene/source/filter names for one test; removed from OBS afterwards."""
    tag = request.node.name.replace("[", "-").replace("]", "")[:40]
    made = {"scene": f"scene-{tag}", "source": f"src-{tag}", "filter": f"key-{tag}",
            "extra_inputs": [], "extra_scenes": []}
    yield made
    if not obs.alive():
        return
    with obs.client() as c:
        c.send("SetCurrentProgramScene", {"sceneName": "Scene"})
        inputs = {i["inputName"] for i in c.send("GetInputList", raw=True)["inputs"]}
        for name in [made["source"], "thacam-avatar", *made["extra_inputs"]]:
            if name in inputs:
                c.send("RemoveInput", {"inputName": name})
        scenes = {s["sceneName"] for s in c.send("GetSceneList", raw=True)["scenes"]}
        for name in [made["scene"], *made["extra_scenes"]]:
            if name in scenes:
                c.send("RemoveScene", {"sceneName": name})


def _settings(obs: HeadlessOBS, names: dict, **kw) -> ObsSettings:
    base = dict(port=obs.port, scene=names["scene"], source=names["source"],
                filter=names["filter"], timeout_s=5.0)
    return ObsSettings(**{**base, **kw})


def _items(obs: HeadlessOBS, scene: str, source: str) -> list[dict]:
    with obs.client() as c:
        items = c.send("GetSceneItemList", {"sceneName": scene}, raw=True)["sceneItems"]
    return [i for i in items if i["sourceName"] == source]


def _filters(obs: HeadlessOBS, source: str) -> list[dict]:
    with obs.client() as c:
        return c.send("GetSourceFilterList", {"sourceName": source}, raw=True)["filters"]


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def _enabled(obs: HeadlessOBS, scene: str, source: str):
    """True/False when the item is there, None when OBS or the item is not (yet)."""
    try:
        items = _items(obs, scene, source)
    except Exception:
        return None
    return items[0]["sceneItemEnabled"] if items else None


class EnableEvents:
    """SceneItemEnableStateChanged events from OBS (callbacks are matched by __name__)."""

    def __init__(self, obs: HeadlessOBS):
        self.q: queue.Queue = queue.Queue()
        self.client = obs.events()

        def on_scene_item_enable_state_changed(data):
            self.q.put((data.scene_name, data.scene_item_id, data.scene_item_enabled))

        self.client.callback.register(on_scene_item_enable_state_changed)

    def next(self, timeout_s: float = 15.0):
        try:
            return self.q.get(timeout=timeout_s)
        except queue.Empty:
            pytest.fail(f"no SceneItemEnableStateChanged event within {timeout_s} s")

    def settle(self, quiet_s: float = 0.5) -> list:
        """Everything delivered until OBS has been quiet for ``quiet_s`` (e.g. creation events)."""
        seen = []
        while True:
            try:
                seen.append(self.q.get(timeout=quiet_s))
            except queue.Empty:
                return seen

    def close(self):
        self.client.disconnect()


# --------------------------------------------------------------------------- setup / status

@pytest.mark.obs
def test_setup_command_via_vcam_creates_one_keyed_source_and_is_idempotent(obs, names, capsys):
    args = ["obs", "setup", "--via", "vcam", "--scene", names["scene"], "--obs-port",
            str(obs.port), "--key-color", "10,200,30"]
    assert cli.main(args) == 0
    items = _items(obs, names["scene"], "thacam-avatar")
    assert len(items) == 1
    kind, wanted = camera_input(ObsSettings())
    assert items[0]["inputKind"] == kind == "v4l2_input"
    assert items[0]["sceneItemEnabled"] is False        # shown only once frames flow
    with obs.client() as c:
        got = c.send("GetInputSettings", {"inputName": "thacam-avatar"}, raw=True)
    assert got["inputSettings"]["device_id"] == wanted["device_id"]
    assert MARKER_KEY in got["inputSettings"]
    (key,) = _filters(obs, "thacam-avatar")
    assert key["filterName"] == "thacam-chroma" and key["filterKind"] == CHROMA_FILTER_KIND
    assert key["filterEnabled"] is True
    assert key["filterSettings"]["key_color_type"] == "custom"
    assert key["filterSettings"]["key_color"] == 10 | 200 << 8 | 30 << 16
    capsys.readouterr()

    assert cli.main(args) == 0                          # again: nothing to do
    assert "nothing changed" in capsys.readouterr().out
    assert cli.main(args[:2] + args[4:]) == 0          # auto keeps the source thacam set up
    assert "nothing changed" in capsys.readouterr().out
    assert len(_items(obs, names["scene"], "thacam-avatar")) == 1
    assert len(_filters(obs, "thacam-avatar")) == 1

    assert cli.main(["obs", "status", "--scene", names["scene"], "--obs-port", str(obs.port)]) == 0
    out = capsys.readouterr().out
    assert "OBS 29" in out or "OBS 3" in out
    assert "source 'thacam-avatar': yes (v4l2_input, thacam, hidden in the scene)" in out
    assert "filter 'thacam-chroma': yes (key colour 10,200,30)" in out


@pytest.mark.obs
def test_setup_keys_the_profiles_background_colour(obs, names, tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text(f'[output]\nbackground = [255, 0, 255]\n\n[obs]\nscene = "{names["scene"]}"\n'
                       f'source = "{names["source"]}"\n')
    assert cli.main(["obs", "setup", "--via", "vcam", "--profile", str(profile), "--obs-port",
                     str(obs.port)]) == 0
    assert len(_items(obs, names["scene"], names["source"])) == 1
    (key,) = _filters(obs, names["source"])
    assert key["filterSettings"]["key_color"] == 0xFF00FF


@pytest.mark.obs
def test_setup_places_source_and_follows_profile_changes(obs, names):
    settings = _settings(obs, names, position=(32.0, 16.0), scale=0.5, via="vcam")
    with ObsSession(settings) as session:
        first = ensure_setup(session, settings)
        assert first.changed
        assert ensure_setup(session, settings).actions == ()
        # a new background colour in the profile updates the filter in place
        changed = dataclasses.replace(settings, key_color=(255, 0, 255))
        result = ensure_setup(session, changed)
        assert result.actions == (f"set key_color of filter {names['filter']!r}",)
        assert result.scene_item_id == first.scene_item_id
        t = session.call("GetSceneItemTransform", {"sceneName": names["scene"],
                                                   "sceneItemId": first.scene_item_id})
        status = read_status(session, changed)
    tr = t["sceneItemTransform"]
    assert (tr["positionX"], tr["positionY"], tr["scaleX"], tr["scaleY"]) == (32.0, 16.0, 0.5, 0.5)
    (key,) = _filters(obs, names["source"])
    assert key["filterSettings"]["key_color"] == 0xFF00FF
    assert status.source_is_thacam and status.filter_exists and status.key_color == (255, 0, 255)


@pytest.mark.obs
@pytest.mark.parametrize("kind", ["image_source", "v4l2_input"])
def test_foreign_source_with_the_same_name_is_left_alone(obs, names, capsys, kind):
    with obs.client() as c:
        c.send("CreateScene", {"sceneName": names["scene"]})
        c.send("CreateInput", {"sceneName": names["scene"], "inputName": "thacam-avatar",
                               "inputKind": kind, "inputSettings": {}, "sceneItemEnabled": True})
        before = c.send("GetInputSettings", {"inputName": "thacam-avatar"}, raw=True)
    rc = cli.main(["obs", "setup", "--via", "vcam", "--scene", names["scene"], "--obs-port",
                   str(obs.port)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "'thacam-avatar' that thacam did not create" in err and "Rename or remove" in err
    with obs.client() as c:
        after = c.send("GetInputSettings", {"inputName": "thacam-avatar"}, raw=True)
    assert after == before
    assert _filters(obs, "thacam-avatar") == []
    assert [i["sceneItemEnabled"] for i in _items(obs, names["scene"], "thacam-avatar")] == [True]


# --------------------------------------------------------------------------- keying

@pytest.fixture(scope="session")
def keyed_frame(renderer_cpu, samples_dir, tmp_path_factory):
    """A real THA3 frame (RGBA) and the same frame flattened onto the chroma green, as a PNG."""
    from thacam.character import load_character
    from thacam.output import composite
    from thacam.pose import Pose
    renderer_cpu.set_character(load_character(samples_dir / "crypko_00.png"))
    rgba = renderer_cpu.render(Pose.neutral())
    path = tmp_path_factory.mktemp("keyed") / "frame_on_green.png"
    Image.fromarray(composite(rgba, ObsSettings().key_color)).save(path)
    return rgba, path


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out &= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


@pytest.mark.obs
@pytest.mark.slow
def test_chroma_key_makes_the_background_transparent(obs, names, keyed_frame):
    rgba, png = keyed_frame
    settings = _settings(obs, names)
    image = names["source"]
    with ObsSession(settings) as session:
        session.call("CreateScene", {"sceneName": names["scene"]})
        session.call("CreateInput", {"sceneName": names["scene"], "inputName": image,
                                     "inputKind": "image_source",
                                     "inputSettings": {"file": str(png)},
                                     "sceneItemEnabled": True})
        ensure_chroma_filter(session, settings)         # the filter `thacam obs setup` adds
        shot = session.call("GetSourceScreenshot", {"sourceName": image, "imageFormat": "png",
                                                    "imageWidth": 512, "imageHeight": 512})
    out = np.array(Image.open(io.BytesIO(base64.b64decode(shot["imageData"].split(",", 1)[1]))))
    assert out.shape == (512, 512, 4)
    background = rgba[..., 3] == 0
    avatar = _erode(rgba[..., 3] == 255, 3)        # away from the anti-aliased edge
    assert background.mean() > 0.5 and avatar.mean() > 0.08     # crypko_00: 83% / 16% (uneroded)
    assert (out[background, 3] == 0).mean() > 0.99
    # Greenish-grey shading in crypko_00's hair keeps alpha 224..253 under OBS's default similarity
    # (about 2.6% of the interior); everything else stays fully opaque.
    assert (out[avatar, 3] == 255).mean() > 0.95
    assert (out[avatar, 3] >= 200).mean() > 0.995
    diff = np.abs(out[avatar, :3].astype(int) - rgba[avatar, :3].astype(int))
    assert np.median(diff) <= 3                     # the avatar's own colours come through


# --------------------------------------------------------------------------- live control

@pytest.mark.obs
def test_controller_shows_on_frames_and_hides_on_stop(obs, names):
    settings = _settings(obs, names, switch_scene=True)
    events = EnableEvents(obs)
    try:
        with ObsController(settings) as controller:
            _wait_for(lambda: controller.state == "connected", 15, "the controller to connect")
            assert _enabled(obs, names["scene"], names["source"]) is False
            assert all(not enabled for _, _, enabled in events.settle())   # set up hidden
            controller.on_frames_started()
            scene, item, enabled = events.next()
            assert (scene, enabled) == (names["scene"], True)
            assert item == _items(obs, names["scene"], names["source"])[0]["sceneItemId"]
            with obs.client() as c:
                current = c.send("GetCurrentProgramScene", raw=True)
            assert current["currentProgramSceneName"] == names["scene"]
        # leaving the with block is thacam stopping (also the path Ctrl-C takes)
        assert events.next() == (names["scene"], item, False)
        assert controller.state == "stopped"
    finally:
        events.close()


@pytest.mark.obs
def test_frame_loop_never_waits_for_a_frozen_obs(obs, names, caplog):
    caplog.set_level(logging.WARNING, logger="thacam.obs")
    settings = _settings(obs, names, timeout_s=30.0, poll_s=60.0)
    events = EnableEvents(obs)
    controller = ObsController(settings).start()
    try:
        _wait_for(lambda: controller.state == "connected", 15, "the controller to connect")
        events.settle()
        obs.freeze()
        try:
            # the worker now sends SetSceneItemEnabled into a frozen OBS and waits up to 30 s
            for _ in range(200):
                controller.on_frames_started()
            # had any call waited for OBS, the worker's request would have timed out first
            assert controller.state == "connected"
            assert not caplog.records
        finally:
            obs.thaw()
        assert events.next()[2] is True
    finally:
        controller.on_stop()
        events.close()
    assert _enabled(obs, names["scene"], names["source"]) is False


@pytest.mark.obs
def test_obs_absent_then_killed_costs_one_warning_each_and_reconnects(tmp_path, caplog,
                                                                      monkeypatch, record_property):
    require_obs_binaries()
    caplog.set_level(logging.INFO, logger="thacam.obs")
    server = HeadlessOBS(tmp_path, password=secrets.token_urlsafe(12))
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    settings = ObsSettings(port=server.port, timeout_s=3.0, reconnect_initial_s=0.2,
                           reconnect_max_s=1.0, poll_s=0.2, via="vcam")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    controller = ObsController(settings).start()
    try:
        controller.on_frames_started()           # frames flow before OBS is there
        _wait_for(lambda: controller.state == "waiting for OBS", 10, "the first failed connect")
        time.sleep(1.5)                          # several reconnect attempts, still one warning
        assert len(warnings()) == 1 and "cannot reach OBS" in warnings()[0]

        server.start()
        _wait_for(lambda: _enabled(server, settings.scene, settings.source), 30,
                  "the source to be set up and shown after OBS started")
        record_property("obs_launch_to_source_shown_s", round(time.monotonic() - server.launched_at, 2))
        assert len(_filters(server, settings.source)) == 1

        server.kill()                            # OBS crashes mid-run
        _wait_for(lambda: controller.state == "waiting for OBS", 10, "the controller to notice")
        for _ in range(100):
            controller.on_frames_started()       # the frame loop carries on meanwhile
        server.start(fresh=True)                 # comes back with nothing set up
        _wait_for(lambda: _enabled(server, settings.scene, settings.source), 30,
                  "the source to be set up again and shown after the restart")
        assert len(_filters(server, settings.source)) == 1
        assert len(warnings()) == 2              # one per outage
        assert controller.reconnects == 2
        controller.on_stop()
        assert _enabled(server, settings.scene, settings.source) is False
    finally:
        controller.on_stop(timeout_s=5)
        try:
            server.close()
        except ObsDied as exc:
            pytest.fail(str(exc))


# --------------------------------------------------------------------------- password

@pytest.mark.obs
def test_wrong_or_missing_password_names_the_variable_and_is_never_shown(obs, names, caplog,
                                                                         capsys, monkeypatch):
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-" + secrets.token_hex(8)
    status = ["obs", "-v", "status", "--obs-port", str(obs.port)]

    monkeypatch.setenv(PASSWORD_ENV, wrong)
    assert cli.main(status) == 2
    err = capsys.readouterr().err
    assert f"rejected the WebSocket password from {PASSWORD_ENV}" in err

    monkeypatch.delenv(PASSWORD_ENV)
    assert cli.main(status) == 2
    assert f"{PASSWORD_ENV} is not set" in capsys.readouterr().err
    before = connections_to(obs.port)
    with pytest.raises(ObsAuthError, match=PASSWORD_ENV) as refused:
        ObsSession(_settings(obs, names))
    # obsws-python leaves the socket of a failed identify open (OBS then waits on it); while the
    # error, and with it the half-made client, is still alive, the socket must be closed
    assert refused.value and connections_to(obs.port) == before

    # a live run: one warning, OBS control off, frames unaffected
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    controller = ObsController(_settings(obs, names)).start()
    _wait_for(lambda: controller.state == "password refused", 10,
              "the controller to give up on the password")
    controller.on_frames_started()
    controller.on_stop()
    assert PASSWORD_ENV in (controller.off_reason or "")

    monkeypatch.setenv(PASSWORD_ENV, obs.password)  # the right one works, and is not shown either
    assert cli.main(status) == 0
    captured = capsys.readouterr()
    assert "OBS 29" in captured.out or "OBS 3" in captured.out
    with ObsController(_settings(obs, names)) as controller:
        controller.on_frames_started()
        _wait_for(lambda: _enabled(obs, names["scene"], names["source"]), 15, "the source shown")

    text = captured.out + captured.err + capsys.readouterr().err + caplog.text + "".join(
        repr(r.args) for r in caplog.records)
    assert caplog.records                            # the log was really captured
    assert wrong not in text and obs.password not in text


# --------------------------------------------------------------------------- the live run

@pytest.mark.obs
@pytest.mark.slow
def test_live_run_keeps_writing_frames_through_an_obs_restart_and_hides_on_ctrl_c(
        tmp_path, weights_dir, samples_dir, faces_dir, record_property):
    """`thacam --character ... --obs`, end to end: a real THA3 run writing PNG frames."""
    require_obs_binaries()
    server = HeadlessOBS(tmp_path / "obs", password=secrets.token_urlsafe(12))
    profile = tmp_path / "p.toml"
    profile.write_text("[obs]\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\npoll_s = 0.2\n")
    frames = tmp_path / "frames"
    log_path = tmp_path / "thacam.log"
    cmd = [sys.executable, "-m", "thacam.cli", "--character", str(samples_dir / "crypko_00.png"),
           "--camera", str(faces_dir / "d19.mp4"), "--output", str(frames), "--obs",
           "--obs-port", str(server.port), "--profile", str(profile), "--weights",
           str(weights_dir), "--device", "cpu", "--stats-every", "0"]
    env = {**os.environ, PASSWORD_ENV: server.password}
    s = ObsSettings()

    def written() -> int:
        return len(list(frames.glob("*.png"))) if frames.is_dir() else 0

    server.start()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parent.parent)
    try:
        def shown():
            if proc.poll() is not None:
                pytest.fail(f"thacam exited with rc {proc.returncode}:\n{log_path.read_text()}")
            return _enabled(server, s.scene, s.source)

        _wait_for(shown, 180, "thacam's first frame to show its source in OBS")
        server.kill()                                   # OBS dies mid-run
        at_kill = written()
        _wait_for(lambda: written() >= at_kill + 2, 120, "frames while OBS is gone")
        server.start(fresh=True)                        # and comes back empty
        _wait_for(shown, 60, "thacam to set its source up again and show it")
        record_property("obs_launch_to_source_shown_s",
                        round(time.monotonic() - server.launched_at, 2))
        proc.send_signal(signal.SIGINT)                 # Ctrl-C
        rc = proc.wait(120)
        hidden = _enabled(server, s.scene, s.source)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            server.close()
        except ObsDied as exc:
            pytest.fail(str(exc))
    text = log_path.read_text()
    assert rc == 0, text
    assert hidden is False, "Ctrl-C did not hide thacam's source\n" + text
    assert written() >= at_kill + 2
    for png in sorted(frames.glob("*.png"))[-2:]:
        assert np.array(Image.open(png)).shape[2] == 4      # real RGBA frames, decodable
    assert text.count("lost the connection to OBS") == 1, text
    assert "OBS is back" in text
    assert server.password not in text
