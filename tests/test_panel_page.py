"""The control panel's page in a real headless Chromium (Debian's, driven by Playwright), and
a setting's effect on the real THA3 model's frame.

The browser tests drive a live run with a synthetic turned face and a renderer that paints
head_y as a colour; the page's own controls are used the way a person uses them (keyboard on a
slider, pointer held down on a button). Screenshots go to tmp_path, and also to
$THACAM_SCREENSHOTS when set. The OBS chip is checked against the session's real headless OBS
(conftest.py), killed and started again under the run. CI budget: ~15 s, plus ~3 real frames
(~5 s), plus ~15 s with OBS.
"""

from __future__ import annotations

import http.server
import io
import json
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thacam.character import load_character
from thacam.panel.api import live_settings
from thacam.profile import load_profile

from panel_fixtures import (PROFILE_TEXT, base_of, live_panel, obs_section, request, token_of,
                            wait_for)
from test_obs import names  # noqa: F401  (unique OBS names, removed after the test)
from thacam.settings import PASSWORD_ENV

CHROMIUM = Path(os.environ.get("THACAM_CHROMIUM", "/usr/bin/chromium"))
# Flags that keep a headless Chromium quiet and self-contained here (no network of its own).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        msg = f"chromium not found at {CHROMIUM} (bash scripts/setup --test installs it)"
        if os.environ.get("CI") or os.environ.get("THACAM_REQUIRE_WEIGHTS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        # Playwright gives every launch a fresh profile folder of its own.
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("THACAM_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    return path


def _preview_red(page) -> int:
    """The red channel at the preview's centre, as the browser decoded it."""
    return page.evaluate("""() => {
        const img = document.getElementById('preview');
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0);
        return g.getImageData(c.width / 2, c.height / 2, 1, 1).data[0];
    }""")


@pytest.mark.browser
def test_the_panel_works_in_a_real_browser(tmp_path, browser):
    with live_panel(tmp_path) as (run, url):
        base, token = base_of(url), token_of(url)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        assert page.url == base + "/"                     # the token left the address bar
        page.wait_for_selector("#st-face.ok")              # status: face found
        page.wait_for_selector("#st-link.ok")              # the WebSocket is up
        # (polled from here: the page's CSP rightly refuses Playwright's eval-based waits)
        wait_for(lambda: page.evaluate("document.getElementById('preview').naturalWidth") == 512,
                 10, "the preview")
        assert page.locator(".row").count() == len(live_settings())
        assert page.inner_text("#st-camera") == "camera on"
        assert page.inner_text("#st-vcam") == "virtual camera not used"
        assert page.inner_text("#st-obs") == "OBS not used"
        row = page.locator(".row[data-key='retarget.head_y_range_deg']")
        assert "head turn (deg)" in row.inner_text() and "(1 … 60)" in row.inner_text()
        time.sleep(2.5)                                    # a few seconds of plot
        _shot(page, tmp_path, "panel.png")
        page.fill("#filter", "jaw_open")                   # the filter leaves only those
        assert page.locator(".row:visible").count() == len(
            [k for k in live_settings() if "jaw_open" in k]) == 2
        assert page.locator("details:visible").count() == 1
        page.fill("#filter", "")

        # A slider moved with the keyboard reaches the running pipeline: the pose in the API
        # state, and the frame the browser shows.
        page.focus("#set-retarget-head_y_range_deg")
        page.keyboard.press("End")                         # its maximum, 60 degrees
        wait_for(lambda: run.controls.profile.retarget.head_y_range_deg == 60.0, 15, "the set")
        want = -20.0 / 60.0 * 0.75                         # turn / range, less the body's share
        wait_for(lambda: abs(request(f"{base}/api/state", token=token)[1]["pose"]["head_y"]
                             - want) < 1e-3, 15, "the new pose")
        wait_for(lambda: abs(_preview_red(page) - (want + 1) * 127.5) <= 1, 15, "the new frame")
        assert page.input_value("#set-retarget-head_y_range_deg") == "60"
        page.wait_for_selector("#unsaved:text('unsaved changes')")

        # An invalid value: the server's message, the row marked, the running value kept.
        low = page.locator("#set-idle-blink_interval_s input").first
        low.fill("0.1")
        low.press("Tab")
        page.wait_for_selector("#message.error")
        assert "idle.blink_interval_s" in page.inner_text("#message")
        assert "expected" in page.inner_text("#message")
        assert run.controls.profile.idle.blink_interval_s == (2.0, 6.0)

        # Press and hold: a hold preset is on only while the pointer is down.
        wink = page.locator("#expressions button[data-name='wink']")
        wink.scroll_into_view_if_needed()
        box = wink.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        wait_for(lambda: getattr(run.pipeline.expression, "name", None) == "wink", 15, "wink on")
        time.sleep(1.0)
        assert run.pipeline.expression.name == "wink"
        assert request(f"{base}/api/state", token=token)[1]["expression"] == "wink"
        _shot(page, tmp_path, "panel-holding-wink.png")
        page.mouse.up()
        wait_for(lambda: run.pipeline.expression is None, 15, "wink off on release")
        # a toggle preset stays on after the click, and the next click turns it off
        page.click("#expressions button[data-name='happy']")
        wait_for(lambda: getattr(run.pipeline.expression, "name", None) == "happy", 15, "happy")
        time.sleep(0.5)
        assert run.pipeline.expression.name == "happy"
        page.wait_for_selector("#expressions button[data-name='happy'].on")
        page.click("#expressions button[data-name='happy']")
        wait_for(lambda: run.pipeline.expression is None, 15, "happy off")

        # Save: the profile gets the new value and keeps its comments.
        page.click("#calibrate")
        page.wait_for_selector("#message:text('calibrated')")
        page.click("#save")
        wait_for(lambda: page.inner_text("#message").startswith("saved "), 20, "saved")
        text = (tmp_path / "panel_test.toml").read_text()
        assert "head_y_range_deg = 60.0  # degrees" in text
        for line in PROFILE_TEXT.splitlines():
            if line.startswith("#"):
                assert line in text
        assert load_profile(tmp_path / "panel_test.toml").retarget.head_y_range_deg == 60.0
        wait_for(lambda: page.inner_text("#unsaved") == "", 15, "no unsaved changes")

        # A tab closed while a hold preset is held lets go of it.
        wink.scroll_into_view_if_needed()
        box = wink.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        wait_for(lambda: getattr(run.pipeline.expression, "name", None) == "wink", 15, "wink on")
        page.close(run_before_unload=True)
        wait_for(lambda: run.pipeline.expression is None, 15, "wink off when the tab closed")


def _api_state(url: str) -> dict:
    return request(f"{base_of(url)}/api/state", token=token_of(url))[1]


def _obs_state(url: str, wanted: str, timeout: float = 20.0) -> dict:
    return wait_for(lambda: (s := _api_state(url))["obs"] == wanted and s, timeout,
                    f"the API's OBS state {wanted!r}")


@pytest.mark.obs
@pytest.mark.browser
def test_the_obs_chip_follows_a_real_obs_going_and_coming_back(tmp_path, browser, obs, names):
    section = obs_section(obs.port, names["scene"], names["source"])
    with live_panel(tmp_path, obs=section) as (run, url):
        state = _obs_state(url, "connected")
        assert state["obs_problem"] is None
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#st-obs.ok")
        assert page.inner_text("#st-obs") == "OBS connected"
        assert not page.is_visible("#obs-problem")

        obs.kill()                        # OBS closed under the run (or crashed)
        state = _obs_state(url, "waiting for OBS", 10)
        problem = state["obs_problem"]
        assert problem.startswith(f"cannot reach OBS at 127.0.0.1:{obs.port} (")
        assert "start OBS and enable Tools > WebSocket Server Settings" in problem
        page.wait_for_selector("#st-obs.bad")
        assert page.inner_text("#st-obs") == "OBS not reachable"
        # the same one line the log has, in full (the reconnects may name another error type)
        wait_for(lambda: page.is_visible("#obs-problem")
                 and page.inner_text("#obs-problem") == _api_state(url)["obs_problem"],
                 10, "the page to show what to do")
        _shot(page, tmp_path, "panel-obs-down.png")

        obs.start()                       # and it is back: connected again, nothing to do
        _obs_state(url, "connected")
        page.wait_for_selector("#st-obs.ok")
        assert page.inner_text("#st-obs") == "OBS connected"
        assert not page.is_visible("#obs-problem")
        assert run.obs.reconnects == 1
        page.close()


@pytest.mark.obs
@pytest.mark.browser
def test_the_obs_chip_reports_a_wrong_password_and_never_shows_it(tmp_path, browser, obs, names,
                                                                  monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-" + secrets.token_hex(8)
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    section = obs_section(obs.port, names["scene"], names["source"])
    with live_panel(tmp_path, obs=section) as (run, url):
        state = _obs_state(url, "password refused")
        assert state["obs_problem"] == (
            f"OBS at 127.0.0.1:{obs.port} rejected the WebSocket password from {PASSWORD_ENV}; "
            f"set {PASSWORD_ENV} to the password shown in OBS under Tools > WebSocket Server "
            "Settings > Show Connect Info")
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#st-obs.bad")
        assert page.inner_text("#st-obs") == "OBS password refused"
        wait_for(lambda: page.inner_text("#obs-problem") == state["obs_problem"], 10,
                 "the page to show what to do")
        _shot(page, tmp_path, "panel-obs-password.png")
        seen = json.dumps([request(f"{base_of(url)}{p}", token=token_of(url))[1]
                           for p in ("/api/state", "/api/settings")]) + page.content()
        page.close()
    monkeypatch.delenv(PASSWORD_ENV)      # no password at all: the same chip, its own advice
    with live_panel(tmp_path, obs=section) as (run, url):
        state = _obs_state(url, "password refused")
        assert f"{PASSWORD_ENV} is not set" in state["obs_problem"]
    seen += json.dumps(state) + caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "rejected the WebSocket password" in caplog.text   # the log was really captured
    assert wrong not in seen and obs.password not in seen


class _Elsewhere(http.server.BaseHTTPRequestHandler):
    """A web page on another port that tries to drive the panel from the streamer's browser."""

    panel = ""

    def do_GET(self):
        script = f"""
          fetch("{self.panel}/api/settings", {{method: "POST", mode: "no-cors",
                 credentials: "include", body: '{{"breathing.depth": 0.0}}'}})
            .finally(() => {{ document.title = "tried"; }});"""
        body = f"<html><body><script>{script}</script></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.browser
def test_a_page_elsewhere_cannot_change_the_running_avatar(tmp_path, browser):
    with live_panel(tmp_path) as (run, url):
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)                                   # the streamer has the panel open
        page.wait_for_selector("#st-link.ok")
        _Elsewhere.panel = base_of(url)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Elsewhere)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            other = context.new_page()
            other.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            wait_for(lambda: other.title() == "tried", 20, "the other page's try")
        finally:
            server.shutdown()
        time.sleep(0.3)
        assert run.controls.profile.breathing.depth == 1.0
        context.close()


def test_a_setting_changes_the_real_models_frame(tmp_path, renderer_cpu, samples_dir):
    """The real THA3 model: the head turn range moved through the API turns the avatar's head
    in the next frame, and the panel's preview is that very frame, alpha and all."""
    renderer_cpu.set_character(load_character(samples_dir / "crypko_00.png"))
    renders: list = []

    class Recording:
        def render(self, pose):
            rgba = renderer_cpu.render(pose)
            renders.append((float(pose["head_y"]), rgba.copy()))
            return rgba

    with live_panel(tmp_path, renderer=Recording(), fps=30) as (run, url):
        base, token = base_of(url), token_of(url)
        wait_for(lambda: renders, 60, "the first frame")
        status, _ = request(f"{base}/api/settings", "POST", {"retarget.head_y_range_deg": 60},
                            token=token)
        assert status == 200
        wait_for(lambda: abs(renders[-1][0] + 0.25) < 1e-3, 60, "a frame after the change")
    # The run is over (the panel with it): what it showed last is the last frame's.
    state = run.status()
    _, png = run.panel.preview.newest()
    before = next(rgba for head_y, rgba in renders if head_y == pytest.approx(-1.0, abs=1e-3))
    after_head_y, after = renders[-1]
    assert state["pose"]["head_y"] == pytest.approx(after_head_y, abs=1e-4)
    # The head turned back towards the front: a clear change where the character is.
    visible = (after[..., 3] > 8) | (before[..., 3] > 8)
    changed = (np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 16) & visible
    assert changed.mean() > 0.005
    # The preview is exactly the last frame (PNG is lossless), its transparent background kept.
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), after)
    assert (after[..., 3] < 8).mean() > 0.3
