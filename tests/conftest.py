"""Shared fixtures: the real model files, the sample characters, the real face clips.

Tests that need the fetched model files skip with a stated reason when they are absent (a user's
fresh checkout), except under CI (CI set, or THACAM_REQUIRE_WEIGHTS=1), where a missing file
is a failure: CI must never go green by skipping the real model.
"""

from __future__ import annotations

import os
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
