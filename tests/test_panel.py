"""The control panel's API and server: the settings table from the metadata, the gate (token,
Origin, Host), invalid values refused with the profile's own message, the WebSocket, the
preview (throttled, alpha kept, decoded back), and `--panel` on the command line.

A synthetic face drives the real retarget and animation stages; the renderer paints head_y as a
colour (pixels of the real model are in test_panel_page.py). CI budget: ~10 s, plus one real
frame for the command-line run.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import websocket
from PIL import Image

from thacam import settings as S
from thacam.errors import PanelError, ProfileError
from thacam.panel import DEFAULT_PORT, PanelAddress, parse_address
from thacam.panel.api import live_settings
from thacam.panel.preview import PanelPreview
from thacam.profile import Profile, load_profile

from panel_fixtures import (YAW, base_of, live_panel, obs_section, request, token_of, wait_for,
                            write_profile)

REPO = Path(__file__).resolve().parent.parent


def _head_y(range_deg: float, body_share: float = 0.25) -> float:
    # the mirrored camera turns the avatar the other way; the body carries its share
    return -min(1.0, YAW / range_deg * (1.0 - body_share))


def test_addresses_bind_this_machine_unless_told_otherwise():
    assert parse_address(None) == PanelAddress("127.0.0.1", DEFAULT_PORT)
    assert parse_address("9000") == PanelAddress("127.0.0.1", 9000)
    assert parse_address("localhost:0") == PanelAddress("localhost", 0)
    assert parse_address("[::1]:9001") == PanelAddress("::1", 9001)
    with pytest.raises(PanelError, match="is not a port"):
        parse_address("127.0.0.1:http")
    with pytest.raises(PanelError, match="--panel-allow-remote"):
        parse_address("0.0.0.0:9000")
    with pytest.raises(PanelError, match="other machines"):
        parse_address("192.168.1.20")
    assert not parse_address("0.0.0.0:9000", allow_remote=True).loopback


def test_the_settings_table_is_every_live_setting_with_its_metadata():
    keys = live_settings()
    assert len(keys) == len(set(keys)) > 50
    assert {"camera.mirror", "retarget.head_y_range_deg", "breathing.depth",
            "smoothing.enabled", "retarget.eyebrow_family"} <= set(keys)
    for key in keys:
        assert S.field_info(Profile, key).live, key
    assert not [k for k in keys if k.startswith(("model.", "obs.", "output.", "character."))]


def test_the_api_answers_only_its_own_page_with_the_token(tmp_path):
    with live_panel(tmp_path) as (run, url):
        base, token = base_of(url), token_of(url)
        assert url.startswith("http://127.0.0.1:") and len(token) >= 32
        assert request(f"{base}/api/state")[0] == 401
        assert request(f"{base}/api/state", token="wrong")[0] == 401
        assert request(f"{base}/api/state?token={token}")[0] == 401   # query: page and ws only
        # a page elsewhere, even one that somehow had the token: refused
        status, body = request(f"{base}/api/settings", "POST", {"breathing.depth": 0.1},
                               token=token, headers={"Origin": "http://evil.example"})
        assert status == 403 and "other web pages" in body["error"]
        # DNS rebinding: another name pointed at 127.0.0.1 is not this panel
        port = base.rsplit(":", 1)[1]
        assert request(f"{base}/api/state", token=token,
                       headers={"Host": f"evil.example:{port}"})[0] == 403
        assert run.controls.profile.breathing.depth == 1.0
        status, state = request(f"{base}/api/state", token=token, headers={"Origin": base})
        assert status == 200 and state["sources"][0]["description"] == "synthetic turned face"
        # the link sets an HttpOnly, same-site cookie and leaves the token out of the address
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args):
                return None
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as info:
            opener.open(url, timeout=10)
        assert info.value.code == 303 and info.value.headers["Location"] == "/"
        cookie = info.value.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        name_value = cookie.split(";")[0]
        status, state = request(f"{base}/api/state", headers={"Cookie": name_value})
        assert status == 200
        status, page = request(f"{base}/", headers={"Cookie": name_value})
        assert status == 200 and b"panel.js" in page


def test_settings_apply_live_and_invalid_values_get_the_profiles_message(tmp_path):
    with live_panel(tmp_path) as (run, url):
        base, token = base_of(url), token_of(url)
        state = wait_for(lambda: (s := request(f"{base}/api/state", token=token)[1])["face"]
                         and s, what="a tracked face")
        assert state["pose"]["head_y"] == pytest.approx(_head_y(10.0), abs=1e-3)
        table = request(f"{base}/api/settings", token=token)[1]["settings"]
        entry = table["retarget.head_y_range_deg"]
        info = S.field_info(Profile, "retarget.head_y_range_deg")
        assert entry == {"value": 10.0, "min": 1.0, "max": 60.0, "step": 1.0,
                         "help": info.help, "type": "float"}
        assert table["retarget.eyebrow_family"]["choices"] == list(info.spec.choices or
                                                                    S.field_info(
            Profile, "retarget.eyebrow_family").spec.choices)

        # out of range: 400, with exactly the problem `thacam profile check` reports
        status, body = request(f"{base}/api/settings", "POST",
                               {"retarget.head_y_range_deg": 99}, token=token)
        bad = tmp_path / "bad.toml"
        bad.write_text("[retarget]\nhead_y_range_deg = 99\n")
        with pytest.raises(ProfileError) as info_bad:
            load_profile(bad)
        assert status == 400 and body["key"] == "retarget.head_y_range_deg"
        assert body["error"] == f"panel: retarget.head_y_range_deg: {info_bad.value.problem}"
        for wrong, words in (({"model.device": "cpu"}, "cannot change while thacam runs"),
                             ({"retarget.nope": 1}, "not a settings key"),
                             ({"breathing.depth": "deep"}, "expected a number")):
            status, body = request(f"{base}/api/settings", "POST", wrong, token=token)
            assert status == 400 and words in body["error"], body
        # a batch with one bad value changes nothing
        status, _ = request(f"{base}/api/settings", "POST",
                            {"breathing.depth": 0.2, "idle.sway_head": 7}, token=token)
        assert status == 400 and run.controls.profile.breathing.depth == 1.0
        assert request(f"{base}/api/settings", "POST", b"{nope", token=token)[0] == 400

        status, body = request(f"{base}/api/settings", "POST",
                               {"retarget.head_y_range_deg": 40}, token=token)
        assert status == 200 and body["values"] == {"retarget.head_y_range_deg": 40.0}
        # the running pipeline has it: the next frames' pose and pixels show it
        want = _head_y(40.0)
        state = wait_for(lambda: (s := request(f"{base}/api/state", token=token)[1])
                         and abs(s["pose"]["head_y"] - want) < 1e-3 and s, what="new pose")
        def preview_red():
            status, png = request(f"{base}/api/preview.png", token=token)
            return int(np.asarray(Image.open(io.BytesIO(png)))[256, 256, 0]) if status == 200 \
                else -1
        # the preview lags by its throttle and the encode; it gets there
        wait_for(lambda: abs(preview_red() - (want + 1) * 127.5) <= 1, 15, "the new frame")
        assert state["unsaved"] is True


def test_expressions_hold_while_on_and_toggle_to_the_state_asked(tmp_path):
    with live_panel(tmp_path) as (run, url):
        base, token = base_of(url), token_of(url)

        def expression():
            return request(f"{base}/api/state", token=token)[1]["expression"]

        def send(name, on):
            return request(f"{base}/api/expression", "POST", {"name": name, "on": on},
                           token=token)

        assert send("wink", True)[0] == 200 and expression() == "wink"
        time.sleep(0.3)
        assert expression() == "wink"                     # held: it stays on
        assert send("wink", False)[0] == 200 and expression() is None
        assert send("1", True)[1]["name"] == "happy"       # by hotkey too
        assert send("happy", True)[1]["message"] == "happy on already"   # not flipped off
        assert expression() == "happy"
        assert send("happy", False)[0] == 200 and expression() is None
        status, body = send("grumpy", True)
        assert status == 404 and "wink (5)" in body["error"]
        assert request(f"{base}/api/expression", "POST", {"name": "wink", "on": "yes"},
                       token=token)[0] == 400
        assert request(f"{base}/api/calibrate", "POST", {}, token=token)[0] == 200
        assert run.controls.profile.calibration.calibrated


def test_the_websocket_speaks_the_same_commands_and_pushes_state_and_preview(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("THACAM_OBS_PASSWORD", "hunter2-never-shown")
    with live_panel(tmp_path) as (run, url):
        base, token = base_of(url), token_of(url)
        ws_url = base.replace("http://", "ws://") + "/api/ws"
        with pytest.raises(websocket.WebSocketBadStatusException) as info:
            websocket.create_connection(ws_url, timeout=10)
        assert info.value.status_code == 401
        with pytest.raises(websocket.WebSocketBadStatusException) as info:
            websocket.create_connection(f"{ws_url}?token={token}", timeout=10,
                                        origin="http://evil.example")
        assert info.value.status_code == 403
        ws = websocket.create_connection(f"{ws_url}?token={token}", timeout=10)
        try:
            seen: list = []

            def receive(kind):
                while True:
                    op, data = ws.recv_data()
                    if op == websocket.ABNF.OPCODE_BINARY:
                        seen.append(data)
                        if kind == "binary":
                            return data
                        continue
                    message = json.loads(data)
                    seen.append(data)
                    if message["type"] == kind:
                        return message

            state = receive("state")
            assert {"fps", "stages_ms", "face", "sources", "sinks", "history"} <= set(state)
            ws.send(json.dumps({"cmd": "set", "id": 7, "settings": {"breathing.depth": 2}}))
            reply = receive("reply")
            assert reply["id"] == 7 and reply["status"] == 400 and "[0, 1]" in reply["error"]
            ws.send(json.dumps({"cmd": "set", "id": 8, "settings": {"breathing.depth": 0.5}}))
            assert receive("reply")["ok"] and run.controls.profile.breathing.depth == 0.5
            ws.send(json.dumps({"cmd": "expression", "name": "wink", "on": True}))
            assert receive("reply")["ok"] and run.pipeline.expression.name == "wink"
            ws.send(json.dumps({"cmd": "expression", "name": "wink", "on": False}))
            assert receive("reply")["ok"] and run.pipeline.expression is None
            ws.send(json.dumps({"cmd": "preview", "on": True}))
            png = receive("binary")
            rgba = np.asarray(Image.open(io.BytesIO(png)))
            assert rgba.shape == (512, 512, 4) and rgba[0, 0, 3] == 0 and rgba[256, 256, 3] == 255
            ws.send(json.dumps({"cmd": "settings", "id": "s"}))
            reply = receive("reply")
            assert reply["id"] == "s" and reply["settings"]["breathing.depth"]["value"] == 0.5
            ws.send(json.dumps({"cmd": "calibrate"}))
            assert receive("reply")["ok"] and run.controls.profile.calibration.calibrated
            ws.send(json.dumps({"cmd": "jump"}))
            assert receive("reply")["status"] == 404
            ws.send("not json")
            assert receive("reply")["status"] == 400
        finally:
            ws.close()
        texts = [request(f"{base}{p}", token=token)[1] for p in ("/api/state", "/api/settings")]
        everything = json.dumps(texts) + "".join(
            s if isinstance(s, str) else "" for s in seen)
        assert "hunter2" not in everything


def test_obs_not_running_shows_in_the_state_with_what_to_do(tmp_path):
    """OBS never there (nothing listens on its port): the state says so, with the command
    line's own one-line advice. A real OBS coming and going, and a wrong password, are in
    test_panel_page.py."""
    from obs_fixtures import free_port
    port = free_port()
    with live_panel(tmp_path, obs=obs_section(port)) as (run, url):
        base, token = base_of(url), token_of(url)
        state = wait_for(lambda: (s := request(f"{base}/api/state", token=token)[1])["obs"]
                         == "waiting for OBS" and s, 15, "OBS reported unreachable")
        assert state["obs_problem"] == (
            f"cannot reach OBS at 127.0.0.1:{port} (ConnectionRefusedError); start OBS and "
            "enable Tools > WebSocket Server Settings > Enable WebSocket server, or point "
            "thacam at it with --obs-host/--obs-port")
        wait_for(lambda: run.pipeline.status().frames > 0, 15, "frames without OBS")
    # a run without --obs: nothing about OBS at all
    with live_panel(tmp_path) as (run, url):
        state = request(f"{base_of(url)}/api/state", token=token_of(url))[1]
        assert state["obs"] is None and state["obs_problem"] is None


def test_the_preview_keeps_the_newest_frame_at_its_rate_and_alpha_survives():
    sink = PanelPreview(fps=20).open()
    try:
        t0 = time.monotonic()
        sent = 200
        for i in range(sent):                  # a renderer of up to 400 fps
            frame = np.zeros((512, 512, 4), np.uint8)
            frame[100:400, 100:400] = (i % 256, 50, 200, 128)
            sink.send(frame)
            time.sleep(0.0025)
        elapsed = time.monotonic() - t0
    finally:
        sink.close()
    seq, png = sink.newest()
    # at most 20 a second were kept (and encoded), the rest skipped
    assert 2 <= seq <= elapsed * 20 + 1 and sent - seq > 150
    got = np.asarray(Image.open(io.BytesIO(png)))
    assert got.shape == (512, 512, 4) and got[0, 0, 3] == 0 and tuple(got[200, 200, 1:]) == (
        50, 200, 128)
    # a big output is previewed smaller
    from thacam.panel.preview import encode_png
    big = np.asarray(Image.open(io.BytesIO(encode_png(np.zeros((1080, 1920, 4), np.uint8)))))
    assert big.shape == (360, 640, 4)


@pytest.mark.parametrize("flag, words", [
    ("0.0.0.0:8765", "--panel-allow-remote"),
    ("127.0.0.1:99999", "is not a port"),
])
def test_panel_flags_are_checked_before_anything_loads(flag, words, tmp_path, capsys):
    from thacam.cli import main
    image = tmp_path / "c.png"
    Image.new("RGBA", (512, 512)).save(image)
    assert main(["--character", str(image), "--panel", flag]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_port_in_use_is_one_line_saying_what_to_do(tmp_path):
    import socket
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        from thacam.panel.api import PanelApi
        from thacam.panel.server import PanelServer
        from thacam.controls import Controls
        server = PanelServer(PanelApi(Controls(Profile()), dict), PanelAddress(port=port))
        with pytest.raises(PanelError, match=f"127.0.0.1:{port}: cannot listen there.*"
                                             "choose another"):
            server.start()
        server.stop()
    finally:
        holder.close()


def test_thacam_live_with_panel_prints_a_tokened_link(tmp_path, weights_dir, samples_dir,
                                                     faces_dir):
    profile = write_profile(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "thacam.cli", "--character", str(samples_dir / "crypko_00.png"),
         "--profile", str(profile), "--camera", str(faces_dir / "d0.mp4"), "--frames", "1",
         "--output", str(tmp_path / "frames/"), "--panel", "127.0.0.1:0", "--backend", "torch",
         "--device", "cpu", "--weights", str(weights_dir), "--stats-every", "0"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if "control panel" in line]
    assert len(lines) == 1, run.stdout
    link = lines[0].split("control panel: ")[1]
    assert link.startswith("http://127.0.0.1:") and len(token_of(link)) >= 32
    assert token_of(link) not in run.stderr      # printed once, never logged


@pytest.mark.parametrize("host, origin, given, remote, status", [
    ("127.0.0.1:8765", None, "T" * 32, False, None),              # a bot: no Origin
    ("127.0.0.1:8765", "http://127.0.0.1:8765", "T" * 32, False, None),
    ("localhost:8765", "http://localhost:8765", "T" * 32, False, None),
    ("[::1]:8765", "http://[::1]:8765", "T" * 32, False, None),
    ("127.0.0.1:8765", "http://127.0.0.1:9999", "T" * 32, False, 403),   # another local app
    ("127.0.0.1:8765", "null", "T" * 32, False, 403),              # a file:// page, a sandbox
    ("evil.example:8765", "http://evil.example:8765", "T" * 32, False, 403),  # DNS rebinding
    ("192.168.1.5:8765", "http://192.168.1.5:8765", "T" * 32, True, None),  # --panel-allow-remote
    ("192.168.1.5:8765", "http://evil.example", "T" * 32, True, 403),
    ("127.0.0.1:8765", None, None, False, 401),
    ("127.0.0.1:8765", None, "T" * 31, False, 401),
])
def test_the_gate(host, origin, given, remote, status):
    from thacam.panel.api import check_request
    refusal = check_request(token="T" * 32, given=given, origin=origin, host=host, port=8765,
                            allow_remote=remote)
    assert (refusal.status if refusal else None) == status


def test_listening_beyond_this_machine_says_so(caplog):
    from thacam.controls import Controls
    from thacam.panel.api import PanelApi
    from thacam.panel.server import PanelServer
    address = parse_address("0.0.0.0:0", allow_remote=True)
    with PanelServer(PanelApi(Controls(Profile()), dict), address) as server:
        assert "other machines can reach it" in caplog.text
        assert server.token not in caplog.text
        base = f"http://127.0.0.1:{server.port}"
        assert server.url.startswith(base + "/?token=")
        assert request(f"{base}/api/settings", token=server.token)[0] == 200
        # by the machine's name from elsewhere: that page is its own origin
        host = {"Host": f"192.0.2.7:{server.port}"}
        assert request(f"{base}/api/settings", token=server.token,
                       headers={**host, "Origin": f"http://192.0.2.7:{server.port}"})[0] == 200
        assert request(f"{base}/api/settings", token=server.token,
                       headers={**host, "Origin": "http://evil.example"})[0] == 403
